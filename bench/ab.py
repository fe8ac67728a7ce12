#!/usr/bin/env python3
"""ab.py: A/B of two gomalloc builds (e.g. default vs -Dsecure=true) on compare.py's workload
programs, under LD_PRELOAD, interleaved: each repetition runs every workload under A then B, or
B then A on odd repetitions, so drift from other load on the machine hits both alike. Prints
the median elapsed_s per build, the ratio of the medians (B/A) and the median of the per-
repetition ratios (paired: A and B of one repetition ran back to back, so a slow phase of the
host, which can double every time for a minute, falls on both; prefer it when the runs spread
widely); exits 1 when a run fails, reports errors>0 or
the two builds' checksums differ. The programs come from build A. Stdlib only.
--cpu compares the child's CPU time (user + sys) instead of elapsed_s: steadier when other
guests steal the machine's cores, but it also counts spinning and leaves out waiting.
Usage: bench/ab.py BUILD_A BUILD_B [--reps 5] [--only churn,larson-2t] [--env-b GOMALLOC=...] [--cpu]"""

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import WORKLOADS  # noqa: E402


def run(argv, lib, env_extra, cpu=False):
    env = {k: v for k, v in os.environ.items() if k not in ('LD_PRELOAD', 'GOMALLOC')}
    env['LD_PRELOAD'] = lib
    env.update(env_extra)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=600)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    kv = dict(re.findall(r'(\w+)=(\S+)', p.stdout.decode(errors='replace')))
    if p.returncode != 0 or kv.get('errors', '0') != '0' or 'elapsed_s' not in kv or \
            not kv.get('allocator', '').startswith('gomalloc'):
        sys.exit(f'!!! {" ".join(argv)} under {lib}: rc {p.returncode}, output '
                 f'{p.stdout.decode(errors="replace").strip()} {p.stderr.decode(errors="replace")[-400:]}')
    if cpu:
        return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), kv.get('checksum')
    return float(kv['elapsed_s']), kv.get('checksum')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('build_a')
    ap.add_argument('build_b')
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--only', default='churn,larson-2t,prodcons-2t,mstress-2t,cache-scratch-2t,realloc,frag')
    ap.add_argument('--env-a', action='append', default=[], metavar='KEY=VALUE')
    ap.add_argument('--env-b', action='append', default=[], metavar='KEY=VALUE')
    ap.add_argument('--cpu', action='store_true', help='compare CPU time (user + sys), not elapsed_s')
    args = ap.parse_args()
    only = args.only.split(',')
    work = [w for w in WORKLOADS if w[0] in only]
    builds = [(os.path.abspath(b) + '/alloc/libgomalloc.so', dict(e.split('=', 1) for e in env))
              for b, env in ((args.build_a, args.env_a), (args.build_b, args.env_b))]
    times = {w[0]: ([], []) for w in work}
    for rep in range(args.reps):
        for name, argv in work:
            argv = [os.path.join(os.path.abspath(args.build_a), 'bench', argv[0])] + argv[1:]
            sums = {}
            for i in ((0, 1) if rep % 2 == 0 else (1, 0)):
                t, sums[i] = run(argv, *builds[i], cpu=args.cpu)
                times[name][i].append(t)
            if sums[0] != sums[1]:
                sys.exit(f'!!! {name}: checksums differ: {sums}')
        print(f'rep {rep + 1}/{args.reps} done', file=sys.stderr, flush=True)
    print(f'{"workload":<18} {"A median s":>10} {"B median s":>10} {"B/A":>6} {"paired":>6}   A runs | B runs'
          + ('   (CPU time, user + sys)' if args.cpu else ''))
    for name, (a, b) in times.items():
        ma, mb = statistics.median(a), statistics.median(b)
        runs = ' '.join(f'{x:.3f}' for x in a) + ' | ' + ' '.join(f'{x:.3f}' for x in b)
        paired = statistics.median(y / x for x, y in zip(a, b))
        print(f'{name:<18} {ma:>10.3f} {mb:>10.3f} {mb / ma:>6.3f} {paired:>6.3f}   {runs}')


if __name__ == '__main__':
    main()
