#!/usr/bin/env python3
"""profile_cost.py: what heap profiling costs on the workload suite. Runs every workload of
bench/compare.py under LD_PRELOAD=libgomalloc.so with GOMALLOC=memprofilerate=0 and with
the default rate (or --rate), interleaved, --reps times each, and prints the median wall
time of each and their ratio. Same binary, same library; only the sampling differs.

usage: bench/profile_cost.py BUILDDIR [--reps 5] [--rate 524288] [--only churn,frag]"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import WORKLOADS  # noqa: E402


def run_once(argv, env):
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    dt = time.perf_counter() - t0
    if r.returncode != 0 or 'allocator=gomalloc' not in r.stdout:
        sys.exit(f'{" ".join(argv)} failed (rc {r.returncode}): {r.stdout[-200:]} {r.stderr[-200:]}')
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('builddir')
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--rate', type=int, default=524288)
    ap.add_argument('--only', default='')
    a = ap.parse_args()
    lib = os.path.abspath(os.path.join(a.builddir, 'alloc', 'libgomalloc.so'))
    only = set(a.only.split(',')) if a.only else None
    settings = [('rate0', 'memprofilerate=0'), ('default', f'memprofilerate={a.rate}')]
    print(f'workload               rate0 s  rate{a.rate} s   ratio   (median of {a.reps}, interleaved)')
    ratios = []
    for name, argv in WORKLOADS:
        if only and name not in only:
            continue
        exe = [os.path.join(a.builddir, 'bench', argv[0])] + argv[1:]
        times = {k: [] for k, _ in settings}
        for _ in range(a.reps):
            for k, g in settings:
                env = dict(os.environ, LD_PRELOAD=lib, GOMALLOC=g)
                times[k].append(run_once(exe, env))
        m0, m1 = statistics.median(times['rate0']), statistics.median(times['default'])
        ratios.append(m1 / m0)
        print(f'{name:20s} {m0:9.3f} {m1:12.3f} {m1 / m0:8.3f}', flush=True)
    if ratios:
        print(f'geomean ratio {statistics.geometric_mean(ratios):.3f}; max {max(ratios):.3f}')


if __name__ == '__main__':
    main()
