#!/usr/bin/env python3
"""compare.py: runs the bench programs of a meson build dir under glibc, jemalloc, mimalloc,
tcmalloc and gomalloc (LD_PRELOAD), interleaved per repetition; prints median time and peak RSS
with gomalloc/X ratios, checks checksums agree, writes a CSV. --callgrind: instructions per
malloc+free pair under valgrind. --report DIR: both, plus DIR/report.md and a chart (report.py).
Python 3 stdlib only. Usage: bench/compare.sh BUILDDIR [-h]"""

import argparse
import datetime
import csv
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import callgrind as cg  # noqa: E402

LIBDIR = '/usr/lib/x86_64-linux-gnu'
TIME = '/usr/bin/time'
# name, default preload path (None = the system malloc), substring of its object file name
ALLOCATORS = [
    ('glibc', None, 'libc.so'),
    ('jemalloc', LIBDIR + '/libjemalloc.so.2', 'jemalloc'),
    ('mimalloc', LIBDIR + '/libmimalloc.so.2', 'mimalloc'),
    ('tcmalloc', LIBDIR + '/libtcmalloc_minimal.so.4', 'tcmalloc'),
    ('gomalloc', '{build}/alloc/libgomalloc.so', 'gomalloc'),
]
SHORT = {'glibc': 'glibc', 'jemalloc': 'je', 'mimalloc': 'mi', 'tcmalloc': 'tc', 'gomalloc': 'gm'}
# workload name -> argv relative to BUILDDIR/bench (each ~0.2-3 s on 2 cores). Names ending in
# -<N>t form the scalability table: the same total work split over N threads.
WORKLOADS = [
    ('churn', ['churn']),
    ('larson-2t', ['larson', '2', '6000000']),
    ('larson-8t', ['larson', '8', '1500000']),
    ('larson-16t', ['larson', '16', '750000']),
    ('prodcons-2t', ['prodcons', '1', '1']),
    ('prodcons-8t', ['prodcons', '4', '4']),
    ('prodcons-16t', ['prodcons', '8', '8']),
    ('mstress-2t', ['mstress', '2']),
    ('mstress-8t', ['mstress', '8']),
    ('mstress-16t', ['mstress', '16']),
    ('cache-scratch-2t', ['cache', 'scratch', '2']),
    ('cache-scratch-8t', ['cache', 'scratch', '8']),
    ('cache-scratch-16t', ['cache', 'scratch', '16']),
    ('cache-thrash-2t', ['cache', 'thrash', '2']),
    ('realloc', ['realloc']),
    ('large', ['large']),
    ('frag', ['frag']),
]
EXTRA = ['ops', 'rss_end_kib', 'live_peak_kib', 'live_end_kib']  # copied from program output
FAILED = []  # messages about crashes, mismatches and preloads that did not take


def loud(msg):
    FAILED.append(msg)
    print('!!! ' + msg, file=sys.stderr, flush=True)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('builddir')
    ap.add_argument('--reps', type=int, default=5, help='repetitions (default 5); the median is reported')
    ap.add_argument('--csv', default='/tmp/gomalloc-bench.csv', help='CSV output (default %(default)s)')
    ap.add_argument('--allocators', default=','.join(a[0] for a in ALLOCATORS),
                    help='comma list to run (default: all)')
    ap.add_argument('--lib', action='append', default=[], metavar='NAME=PATH',
                    help='override the preload library of NAME (repeatable)')
    ap.add_argument('--only', default='', help='comma list of benches: ' +
                    ','.join(w[0] for w in WORKLOADS) + ',micro (default: all)')
    ap.add_argument('--micro-filter', default='BM_', help='--benchmark_filter regex for bench_micro')
    ap.add_argument('--micro-min-time', default='0.05', help='--benchmark_min_time for bench_micro')
    ap.add_argument('--timeout', type=float, default=300, help='seconds before a run is killed')
    ap.add_argument('--callgrind', action='store_true', help='instead: Ir per malloc+free pair')
    ap.add_argument('--cg-pairs', type=int, default=1000000, help='pairs for --callgrind')
    ap.add_argument('--report', metavar='DIR', help='also run --callgrind; write DIR/results.csv, '
                    'DIR/callgrind.csv, DIR/run.json, DIR/report.md and DIR/chart.{svg,png}')
    return ap.parse_args()


def pick_allocators(args):
    want = [a for a in args.allocators.split(',') if a]
    over = dict(kv.split('=', 1) for kv in args.lib)
    chosen = []
    for name, path, obkey in ALLOCATORS:
        if name not in want:
            continue
        path = over.get(name, path)
        if path:
            path = os.path.abspath(path.format(build=args.builddir))
            if not os.path.exists(path):
                print(f'note: {name}: {path} not found, skipped', file=sys.stderr)
                continue
        chosen.append((name, path, obkey))
    return chosen


def run(cmd, preload, timeout, rss=True):
    """Runs cmd with LD_PRELOAD=preload; returns rc (-N for signal N), stdout, stderr, wall
    seconds and peak RSS in KiB. The RSS comes from /usr/bin/time, because a child forked from
    this Python process inherits Python's own high-water RSS in getrusage's maxrss."""
    env = dict(os.environ)
    env.pop('LD_PRELOAD', None)
    env.pop('MALLOC_PERTURB_', None)
    use_time = rss and os.access(TIME, os.X_OK)
    with tempfile.TemporaryFile() as errf, tempfile.NamedTemporaryFile('r') as tf:
        if use_time:
            full = [TIME, '-f', '%M', '-o', tf.name, 'env'] + ([f'LD_PRELOAD={preload}'] if preload else []) + cmd
        else:
            full = cmd
            if preload:
                env['LD_PRELOAD'] = preload
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=errf, env=env)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        out = p.stdout.read()
        p.stdout.close()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        timer.cancel()
        p.returncode = rc = os.waitstatus_to_exitcode(status)
        errf.seek(0)
        err = errf.read().decode(errors='replace')
        maxrss = ru.ru_maxrss
        if use_time:
            lines = tf.read().split('\n')
            sig = next((l for l in lines if 'terminated by signal' in l), None)
            if sig:
                rc = -int(sig.split()[-1])
            nums = [l for l in lines if l.strip().isdigit()]
            maxrss = int(nums[-1]) if nums else 0
    return dict(rc=rc, out=out.decode(errors='replace'), err=err, wall=wall, maxrss=maxrss)


def repro(cmd, preload):
    return (f'LD_PRELOAD={preload} ' if preload else '') + ' '.join(shlex.quote(c) for c in cmd)


def tail(text, n=8):
    return ''.join('\n      ' + l for l in text.strip().splitlines()[-n:])


def check_run(bench, name, cmd, preload, r):
    if r['rc'] != 0:
        why = f'signal {-r["rc"]}' if r['rc'] < 0 else f'exit {r["rc"]}'
        loud(f'{bench} under {name} failed ({why}); reproduce: {repro(cmd, preload)}'
             f'{tail(r["out"] + r["err"])}')
        return False
    return True


def run_workload(bench, argv, name, preload, args, rep, results):
    cmd = [os.path.join(args.builddir, 'bench', argv[0])] + argv[1:]
    r = run(cmd, preload, args.timeout)
    line = next((l for l in r['out'].splitlines() if 'checksum=' in l), '')
    kv = dict(re.findall(r'(\w+)=(\S+)', line))
    ok = check_run(bench, name, cmd, preload, r)
    if ok and not line:
        loud(f'{bench} under {name}: no result line; reproduce: {repro(cmd, preload)}')
        ok = False
    if ok and kv.get('allocator') != name:
        loud(f'{bench} under {name}: program reports allocator={kv.get("allocator")} '
             f'(preload not in effect?)')
    if ok and kv.get('errors', '0') != '0':
        loud(f'{bench} under {name}: {kv["errors"]} corrupted blocks; reproduce: {repro(cmd, preload)}')
    results.setdefault((bench, name), []).append(dict(
        rep=rep, time=float(kv['elapsed_s']) * 1e3 if ok else None, unit='ms', wall=r['wall'],
        maxrss=r['maxrss'] if ok else None, checksum=kv.get('checksum', ''), rc=r['rc'],
        cmd=repro(cmd, preload), **{k: kv.get(k, '') for k in EXTRA}))


def run_micro(name, preload, args, rep, results, order):
    cmd = [os.path.join(args.builddir, 'bench', 'bench_micro'), '--benchmark_filter=' + args.micro_filter,
           '--benchmark_min_time=' + args.micro_min_time, '--benchmark_format=json']
    r = run(cmd, preload, args.timeout)
    if not check_run('micro', name, cmd, preload, r):
        return
    try:
        data = json.loads(r['out'])
    except ValueError:
        loud(f'micro under {name}: output is not JSON; reproduce: {repro(cmd, preload)}{tail(r["out"])}')
        return
    got = data.get('context', {}).get('allocator')
    if got != name:
        loud(f'micro under {name}: benchmark reports allocator={got} (preload not in effect?)')
    scale = {'ns': 1.0, 'us': 1e3, 'ms': 1e6, 's': 1e9}
    for b in data['benchmarks']:
        if b.get('run_type', 'iteration') != 'iteration':
            continue
        bench = b['name'].replace('BM_', '', 1).replace('/real_time', '')
        ips = b.get('items_per_second')  # ns per item: batches count each object
        if bench not in order:
            order.append(bench)
        results.setdefault((bench, name), []).append(dict(
            rep=rep, time=1e9 / ips if ips else b['cpu_time'] * scale[b.get('time_unit', 'ns')],
            unit='ns', wall=r['wall'],
            maxrss=r['maxrss'], checksum='', rc=0, cmd=repro(cmd, preload), **{k: '' for k in EXTRA}))


def median(rows, key):
    vals = [r[key] for r in rows if r[key] is not None]
    return statistics.median(vals) if vals else None


def median_extra(rows, key):
    vals = [float(r[key]) for r in rows if r[key] not in ('', None) and r['time'] is not None]
    return round(statistics.median(vals)) if vals else ''


def fmt(v, unit):
    if v is None:
        return 'FAIL'
    return f'{v:.1f}' if unit == 'ms' or v >= 100 else f'{v:.2f}'


def table(title, benches, names, cell):
    """cell(bench, name) -> (value, unit) or (None, unit). Prints values and gm/X ratios."""
    base = [n for n in names if n != 'gomalloc']
    has_gm = 'gomalloc' in names
    head = ['bench', 'unit'] + names + ([f'gm/{SHORT[n]}' for n in base] if has_gm else [])
    rows = []
    for b in benches:
        vals = {n: cell(b, n) for n in names}
        unit = next((u for v, u in vals.values() if u), '')
        row = [b, unit] + [fmt(vals[n][0], unit) for n in names]
        if has_gm:
            g = vals['gomalloc'][0]
            row += [f'{g / vals[n][0]:.2f}' if g and vals[n][0] else '-' for n in base]
        rows.append(row)
    w = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    print(f'\n{title}')
    for r in [head] + rows:
        print('  '.join(str(c).ljust(w[i]) if i == 0 else str(c).rjust(w[i]) for i, c in enumerate(r)))


def compare(args, allocs):
    names = [a[0] for a in allocs]
    only = set(x for x in args.only.split(',') if x)
    work = [w for w in WORKLOADS if not only or w[0] in only]
    do_micro = not only or 'micro' in only
    if do_micro and not os.path.exists(os.path.join(args.builddir, 'bench', 'bench_micro')):
        print('note: bench_micro not built (no C++ compiler or libbenchmark), skipped', file=sys.stderr)
        do_micro = False
    results, micro_order = {}, []
    t_start, load0 = time.time(), os.getloadavg()[0]
    for rep in range(args.reps):
        order = allocs[rep % len(allocs):] + allocs[:rep % len(allocs)]  # rotate the start
        for bench, argv in work:
            for name, lib, _ in order:
                run_workload(bench, argv, name, lib, args, rep, results)
        if do_micro:
            for name, lib, _ in order:
                run_micro(name, lib, args, rep, results, micro_order)
        print(f'rep {rep + 1}/{args.reps} done ({time.time() - t_start:.0f} s)', file=sys.stderr, flush=True)

    # checksums must agree across allocators and repetitions
    for bench, _ in work:
        sums = {n: sorted(set(r['checksum'] for r in results.get((bench, n), []) if r['time'] is not None))
                for n in names}
        distinct = set(s for v in sums.values() for s in v)
        if len(distinct) > 1:
            loud(f'CHECKSUM MISMATCH in {bench}: ' + ', '.join(f'{n}={"/".join(v)}' for n, v in sums.items()))

    benches = [w[0] for w in work] + micro_order
    med = lambda b, n, k: (median(results.get((b, n), []), k), (results.get((b, n)) or [{}])[0].get('unit'))
    print(f'\ngomalloc comparison: {args.reps} reps, interleaved, median; nproc={os.cpu_count()}; '
          f'micro min_time={args.micro_min_time}s; load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}; '
          f'ratio = gomalloc/X (<1: gomalloc better)')
    table('time (workloads: ms elapsed as reported by the program; micro: ns per op = 1e9/items_per_second)',
          benches, names, lambda b, n: med(b, n, 'time'))
    table('peak RSS (MiB, /usr/bin/time %M)', [w[0] for w in work], names,
          lambda b, n: ((median(results.get((b, n), []), 'maxrss') or 0) / 1024 or None, 'MiB'))

    if 'gomalloc' in names and 'jemalloc' in names:
        def ratio(b):
            g, j = med(b, 'gomalloc', 'time')[0], med(b, 'jemalloc', 'time')[0]
            return g / j if g and j else None
        print('\nheadline, gomalloc time / jemalloc time (<1: gomalloc faster):')
        pairs = [ratio(f'malloc_free/{s}') for s in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)]
        pairs = [p for p in pairs if p]
        if pairs:
            gm = math.exp(sum(math.log(p) for p in pairs) / len(pairs))
            print(f'  malloc+free pairs 16-4096 B: geomean {gm:.2f} (range {min(pairs):.2f}-{max(pairs):.2f}, '
                  f'{len(pairs)} sizes)')
        for b in ['malloc_free_random'] + [w[0] for w in work]:
            if ratio(b):
                print(f'  {b}: {ratio(b):.2f}')

    with open(args.csv, 'w', newline='') as f:
        wr = csv.writer(f)
        wr.writerow(['bench', 'allocator', 'rep', 'time', 'unit', 'wall_s', 'maxrss_kib', 'checksum', 'rc',
                     'command'] + EXTRA)
        for b in benches:
            for n in names:
                rows = results.get((b, n), [])
                for r in rows:
                    wr.writerow([b, n, r['rep'], r['time'] and round(r['time'], 4), r['unit'], f'{r["wall"]:.4f}', r['maxrss'],
                                 r['checksum'], r['rc'], r['cmd']] + [r[k] for k in EXTRA])
                if rows:
                    wr.writerow([b, n, 'median', round(median(rows, 'time') or 0, 4), rows[0]['unit'],
                                 f'{median(rows, "wall"):.4f}', median(rows, 'maxrss'), '', '', '']
                                + [median_extra(rows, k) for k in EXTRA])
    print(f'\nCSV: {args.csv}')
    return dict(reps=args.reps, load_start=round(load0, 2), load_end=round(os.getloadavg()[0], 2),
                seconds=round(time.time() - t_start), micro_min_time=args.micro_min_time)


def cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            return next((l.split(':', 1)[1].strip() for l in f if l.startswith('model name')), '?')
    except OSError:
        return '?'


def main():
    args = parse_args()
    args.builddir = os.path.abspath(args.builddir)
    allocs = pick_allocators(args)
    if not allocs:
        sys.exit('no allocator to run')
    if args.report:
        os.makedirs(args.report, exist_ok=True)
        args.csv = os.path.join(args.report, 'results.csv')
    if args.callgrind and not args.report:
        cg.callgrind(args, allocs, run, check_run, loud)
    else:
        meta = compare(args, allocs)
    if args.report:
        rows = cg.callgrind(args, allocs, run, check_run, loud)
        cg.write_csv(os.path.join(args.report, 'callgrind.csv'), rows, args.cg_pairs)
        meta.update(date=datetime.datetime.now().strftime('%Y-%m-%d %H:%M'), nproc=os.cpu_count(),
                    kernel=os.uname().release, cpu=cpu_model(), problems=list(dict.fromkeys(FAILED)),
                    command='bench/compare.sh ' + ' '.join(shlex.quote(a) for a in sys.argv[1:]),
                    allocators={n: lib or 'system libc' for n, lib, _ in allocs})
        with open(os.path.join(args.report, 'run.json'), 'w') as f:
            json.dump(meta, f, indent=1)
        subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'report.py'),
                        args.report], check=False)
    if FAILED:
        uniq = list(dict.fromkeys(FAILED))
        print(f'\n!!! {len(uniq)} distinct problem(s):\n' + '\n'.join('!!! ' + m for m in uniq), file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
