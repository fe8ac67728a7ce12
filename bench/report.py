#!/usr/bin/env python3
"""report.py: turns the output of `compare.sh BUILD --report DIR` (results.csv, callgrind.csv,
run.json) into DIR/report.md and DIR/chart.svg + chart.png (gnuplot; installed with apt-get if
missing and we are root, else skipped with a hint). Stdlib only. Usage: bench/report.py DIR"""

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys

BASES = ['glibc', 'jemalloc', 'mimalloc', 'tcmalloc']
SHORT = {'glibc': 'glibc', 'jemalloc': 'je', 'mimalloc': 'mi', 'tcmalloc': 'tc', 'gomalloc': 'gm'}
GM = 'gomalloc'


def gmean(xs):
    xs = [x for x in xs if x]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def load(d):
    med, order = {}, []
    with open(os.path.join(d, 'results.csv')) as f:
        for r in csv.DictReader(f):
            if r['rep'] != 'median':
                continue
            if r['bench'] not in order:
                order.append(r['bench'])
            med[(r['bench'], r['allocator'])] = r
    cgrows = []
    p = os.path.join(d, 'callgrind.csv')
    if os.path.exists(p):
        with open(p) as f:
            cgrows = list(csv.DictReader(f))
    meta = {}
    p = os.path.join(d, 'run.json')
    if os.path.exists(p):
        with open(p) as f:
            meta = json.load(f)
    return med, order, cgrows, meta


def r2(x):
    return '-' if x is None else f'{x:.2f}'


def cell(x, digits=1):
    return '-' if x is None else f'{x:.{digits}f}'


def ratio_table(out, title, benches, names, val, unit_fmt, best=True, note=''):
    """Values per allocator, gomalloc/X per baseline and gomalloc/min(baselines). Returns
    {bench: {X: ratio, 'best': ratio, 'best_name': X}}."""
    bases = [n for n in BASES if n in names]
    out.append(f'\n### {title}\n')
    if note:
        out.append(note + '\n')
    head = ['workload'] + names + [f'gm/{SHORT[b]}' for b in bases] + (['best of 4', 'gm/best'] if best else [])
    out.append('| ' + ' | '.join(head) + ' |')
    out.append('|' + '---|' * len(head))
    res = {}
    for b in benches:
        v = {n: val(b, n) for n in names}
        g = v.get(GM)
        row = {x: (g / v[x] if g and v[x] else None) for x in bases}
        have = [x for x in bases if v[x]]
        if have:
            bn = min(have, key=lambda x: v[x])
            row['best'], row['best_name'] = (g / v[bn] if g else None), bn
        res[b] = row
        cols = [b] + [unit_fmt(v[n]) for n in names] + [r2(row[x]) for x in bases]
        if best:
            cols += [row.get('best_name', '-'), r2(row.get('best'))]
        out.append('| ' + ' | '.join(cols) + ' |')
    geo = ['**geomean**'] + [''] * len(names) + [f'**{r2(gmean([res[b][x] for b in benches]))}**' for x in bases]
    if best:
        geo += ['', f'**{r2(gmean([res[b].get("best") for b in benches]))}**']
    out.append('| ' + ' | '.join(geo) + ' |')
    return res


def scalability(out, med, work, names):
    groups = {}
    for b in work:
        m = re.match(r'(.+)-(\d+)t$', b)
        if m:
            groups.setdefault(m.group(1), []).append((int(m.group(2)), b))
    if not groups:
        return
    out.append('\n## Scalability: throughput at 2, 8 and 16 threads (2 cores)\n')
    out.append('Million operations per second (ops reported by the program / median elapsed time); the '
               'total work is the same at every thread count, so on 2 cores a flat row is ideal and '
               '`16t/2t` below 1 shows the cost of oversubscription. Operations: larson = replacements, '
               'prodcons = blocks passed (half producers, half consumers), mstress = slot operations '
               '(threads recreated for 10 rounds), cache-scratch = objects (each written 200 times).\n')
    head = ['workload', 'threads'] + names + ['gm/best']
    out.append('| ' + ' | '.join(head) + ' |')
    out.append('|' + '---|' * len(head))
    for g, lst in groups.items():
        tput = {}
        for t, b in sorted(lst):
            ops = {n: (num(med.get((b, n), {}).get('ops')), num(med.get((b, n), {}).get('time'))) for n in names}
            mops = {n: (o / (ms / 1e3) / 1e6 if o and ms else None) for n, (o, ms) in ops.items()}
            tput[t] = mops
            bestb = max((mops[n] for n in names if n != GM and mops[n]), default=None)
            out.append('| ' + ' | '.join([g, str(t)] + [cell(mops[n], 2) for n in names] +
                                         [r2(bestb / mops[GM] if bestb and mops.get(GM) else None)]) + ' |')
        ts = sorted(tput)
        if len(ts) > 1:
            row = [g, f'{ts[-1]}t/{ts[0]}t'] + [r2(tput[ts[-1]][n] / tput[ts[0]][n]
                                                  if tput[ts[-1]][n] and tput[ts[0]][n] else None) for n in names]
            out.append('| ' + ' | '.join(row + ['']) + ' |')
    out.append('\n(`gm/best` here is best baseline throughput / gomalloc throughput, i.e. a time ratio: '
               'below 1 means gomalloc is faster.)')


def chart(d, work, tres, rres, names):
    """Grouped bars of gomalloc/X per workload, time above and peak RSS below, log scale."""
    bases = [n for n in BASES if n in names]
    if not shutil.which('gnuplot'):
        if os.geteuid() == 0 and shutil.which('apt-get'):
            print('report: installing gnuplot-nox for the chart (apt-get)', file=sys.stderr)
            subprocess.run(['apt-get', 'install', '-y', '-q', 'gnuplot-nox'], stdout=subprocess.DEVNULL, check=False)
        if not shutil.which('gnuplot'):
            print('report: gnuplot not found, no chart; install it with: apt-get install gnuplot-nox',
                  file=sys.stderr)
            return False
    dat = os.path.join(d, 'chart.dat')
    with open(dat, 'w') as f:
        f.write('# workload ' + ' '.join(f'time_{b}' for b in bases) + ' ' +
                ' '.join(f'rss_{b}' for b in bases) + '\n')
        for b in work:
            vals = [tres[b].get(x) for x in bases] + [rres[b].get(x) for x in bases]
            f.write(b + ' ' + ' '.join(f'{v:.4f}' if v else 'NaN' for v in vals) + '\n')
    nb = len(bases)
    colors = {'glibc': '#999999', 'jemalloc': '#1f77b4', 'mimalloc': '#2ca02c', 'tcmalloc': '#d62728'}
    plots = []
    for panel, off in (('time', 2), ('peak RSS', 2 + nb)):
        cmds = [f"'chart.dat' using {off + i}:xtic(1) title 'gomalloc / {b}' lc rgb '{colors[b]}'"
                for i, b in enumerate(bases)]
        plots.append((panel, ', '.join(cmds)))
    script = f"""
set datafile missing 'NaN'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 noborder
set boxwidth 0.9
set logscale y 2
set yrange [0.03125:8]
set ytics ('1/32' 0.03125, '1/16' 0.0625, '1/8' 0.125, '1/4' 0.25, '1/2' 0.5, '1' 1, '2' 2, '4' 4, '8' 8)
set grid ytics lc rgb '#dddddd'
set xtics rotate by -35 font ',10' nomirror
set key top left horizontal font ',10'
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead lc rgb 'black' lw 1.5 front
set multiplot layout 2,1 title 'gomalloc / baseline per workload (median of runs; below 1 = gomalloc better)' font ',13'
set ylabel 'time ratio'
plot {plots[0][1]}
set ylabel 'peak RSS ratio'
plot {plots[1][1]}
unset multiplot
"""
    ok = True
    for term, name in (("svg size 1200,900 dynamic font 'sans,11' background rgb 'white'", 'chart.svg'),
                       ("pngcairo size 1200,900 font 'sans,10'", 'chart.png')):
        r = subprocess.run(['gnuplot'], input=f'set terminal {term}\nset output "{name}"\n' + script,
                           text=True, cwd=d, capture_output=True)
        if r.returncode != 0:
            print(f'report: gnuplot failed for {name}:\n{r.stderr}', file=sys.stderr)
            ok = False
    return ok


def targets(out, work, tres, rres, micro, cgrows):
    out.append('\n## Issue 5 targets\n')
    cg = {r['allocator']: num(r['ir_per_pair']) for r in cgrows}
    lines = []
    if cg.get(GM):
        lines.append((cg[GM] <= 40, f'fast path <= 40 Ir per malloc+free pair: {cg[GM]:.1f}'))
    for x in ('jemalloc', 'tcmalloc'):
        bad = [f'{b} {tres[b][x]:.2f}' for b in work if tres[b].get(x) and tres[b][x] > 1.0]
        lines.append((not bad, f'time <= 1.0x {x} on every workload: ' + (', '.join(bad) + ' above' if bad else 'all met')))
    gmi = gmean([tres[b].get('mimalloc') for b in work])
    if gmi:
        lines.append((gmi <= 0.9, f'time geomean <= 0.9x mimalloc: {gmi:.2f}'))
    bad = [f'{b} {tres[b]["best"]:.2f} (best: {tres[b]["best_name"]})' for b in work
           if tres[b].get('best') and tres[b]['best'] > 1.2]
    lines.append((not bad, 'time <= 1.2x best of the four on every workload: ' + (', '.join(bad) if bad else 'all met')))
    grss = gmean([rres[b].get('best') for b in work])
    if grss:
        lines.append((grss <= 1.0, f'peak RSS geomean <= 1.0x smallest baseline: {grss:.2f}'))
    bad = [f'{b} {rres[b]["best"]:.2f} (smallest: {rres[b]["best_name"]})' for b in work
           if rres[b].get('best') and rres[b]['best'] > 1.25]
    lines.append((not bad, 'peak RSS <= 1.25x smallest baseline on every workload: ' + (', '.join(bad) if bad else 'all met')))
    for ok, text in lines:
        out.append(f'- {"met" if ok else "**missed**"}: {text}')


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else 'docs/bench'
    med, order, cgrows, meta = load(d)
    gm_lib = meta.get('allocators', {}).get(GM, '')
    if gm_lib.endswith('/alloc/libgomalloc.so'):  # show the build dir as BUILD, not /tmp/...
        build = gm_lib[:-len('/alloc/libgomalloc.so')]
        meta['command'] = meta.get('command', '').replace(build, 'BUILD')
        meta['allocators'][GM] = 'BUILD/alloc/libgomalloc.so'
    names = [n for n in BASES + [GM] if any(k[1] == n for k in med)]
    work = [b for b in order if any(med[k]['unit'] == 'ms' for k in med if k[0] == b)]
    micro = [b for b in order if b not in work]
    t = lambda b, n: num(med.get((b, n), {}).get('time'))
    rss = lambda b, n: (num(med.get((b, n), {}).get('maxrss_kib')) or 0) / 1024 or None
    out = ['# gomalloc benchmark report\n',
           '<!-- generated by bench/report.py from results.csv, callgrind.csv and run.json; do not edit -->\n',
           f'Run {meta.get("date", "?")}: {meta.get("reps", "?")} interleaved repetitions per allocator, '
           f'median reported; {meta.get("nproc", "?")} CPUs ({meta.get("cpu", "?")}), kernel '
           f'{meta.get("kernel", "?")}; load average {meta.get("load_start", "?")} at the start and '
           f'{meta.get("load_end", "?")} at the end (the machine was shared with other work, so expect '
           f'noise of several percent); suite took {meta.get("seconds", "?")} s.\n',
           f'Reproduce: `{meta.get("command", "bench/compare.sh BUILD --report docs/bench")}` '
           '(after `meson setup BUILD && meson compile -C BUILD`). Ratios are gomalloc/X: below 1 means '
           'gomalloc is faster or smaller. Same binaries for every allocator; the others via `LD_PRELOAD` '
           "of Debian's packages: " + ', '.join(f'{k}: `{v}`' for k, v in meta.get('allocators', {}).items()) + '.\n',
           '![gomalloc / baseline ratios](chart.png)\n']
    if meta.get('problems'):
        out.append('**Problems during the run:**\n\n' + '\n'.join(f'- `{p}`' for p in meta['problems']) + '\n')
    tmp = []
    tres = ratio_table(tmp, 'Time (ms, median elapsed as reported by each program)', work, names, t,
                       lambda v: cell(v, 0))
    rres = ratio_table(tmp, 'Peak RSS (MiB, /usr/bin/time %M)', work, names, rss, lambda v: cell(v, 1),
                       note='`gm/best` is against the smallest of the four baselines.')
    mres = ratio_table(tmp, 'Micro benchmarks (ns per operation, google-benchmark)', micro, names, t,
                       lambda v: cell(v, 2))
    cg = {r['allocator']: num(r['ir_per_pair']) for r in cgrows}
    out.append('## Headline\n')
    out.append(f'Geometric means of gomalloc/X over {len(work)} workloads and {len(micro)} micro benchmarks; '
               'callgrind is instructions per malloc+free pair.\n')
    bases = [n for n in BASES if n in names]
    out.append('| | ' + ' | '.join(f'vs {b}' for b in bases) + ' | vs best of 4 |')
    out.append('|---|' + '---|' * (len(bases) + 1))
    for label, res in (('workload time', tres), ('workload peak RSS', rres), ('micro time', mres)):
        bs = list(res)
        out.append(f'| {label} | ' + ' | '.join(r2(gmean([res[b].get(x) for b in bs])) for x in bases) +
                   f' | {r2(gmean([res[b].get("best") for b in bs]))} |')
    if cg.get(GM):
        cgb = [cg[x] for x in bases if cg.get(x)]
        out.append('| callgrind Ir/pair | ' + ' | '.join(r2(cg[GM] / cg[x] if cg.get(x) else None) for x in bases) +
                   f' | {r2(cg[GM] / min(cgb)) if cgb else "-"} |')
    targets(out, work, tres, rres, micro, cgrows)
    out.append('\n## Workloads\n')
    out.extend(tmp[:tmp.index(next(l for l in tmp if l.startswith('\n### Micro')))])
    if ('frag', GM) in med:
        out.append('\n### frag: live bytes against RSS\n')
        out.append('Peak RSS / peak live bytes, and RSS at the end (long-lived objects still allocated, '
                   'read from /proc/self/statm) / live bytes then.\n')
        out.append('| allocator | live peak MiB | peak RSS MiB | peak RSS/live | live end MiB | RSS end MiB | end RSS/live |')
        out.append('|---|---|---|---|---|---|---|')
        for n in names:
            r = med.get(('frag', n), {})
            lp, le, re_ = (num(r.get(k)) for k in ('live_peak_kib', 'live_end_kib', 'rss_end_kib'))
            pk = num(r.get('maxrss_kib'))
            out.append(f'| {n} | {cell(lp and lp / 1024)} | {cell(pk and pk / 1024)} | {r2(pk / lp if pk and lp else None)} '
                       f'| {cell(le and le / 1024)} | {cell(re_ and re_ / 1024)} | {r2(re_ / le if re_ and le else None)} |')
    scalability(out, med, work, names)
    if cgrows:
        out.append('\n## callgrind: instructions per malloc+free pair\n')
        out.append(f'Steady-state pairs of 16..1024 B (`cg_pairs`), (Ir(2N) - Ir(N)) / N with N = '
                   f'{cgrows[0]["pairs"]}, including the calls and a ~14 Ir test loop. Deterministic. '
                   '`alloc` = the allocator\'s own object (for glibc: libc).\n')
        out.append('| allocator | Ir/pair | alloc | loop | libc | gm/X |')
        out.append('|---|---|---|---|---|---|')
        for r in cgrows:
            p = num(r['ir_per_pair'])
            out.append(f'| {r["allocator"]} | {p:.1f} | {num(r["alloc_ir"]):.1f} | {num(r["loop_ir"]):.1f} | '
                       f'{num(r["libc_ir"]):.1f} | {r2(cg[GM] / p if cg.get(GM) and p else None)} |')
    out.append('\n## Micro benchmarks\n')
    out.append('`malloc_free/N`: one malloc+free pair at every gomalloc size-class edge (and one byte past '
               'a few edges); `batch1000/N`: per object of 1000 allocated then freed (0 = random sizes); '
               '`realloc_*`: per realloc call; `threads:2`: per pair on each of 2 threads.'
               + '\n')
    out.extend(tmp[tmp.index(next(l for l in tmp if l.startswith('\n### Micro'))) + 1:])
    out.append('\n## Workloads, briefly\n')
    out.append('See [bench/README.md](../../bench/README.md). Every block is tagged and checked; the '
               'checksum of each workload is the same under every allocator (a mismatch is listed above).')
    have_chart = chart(d, work, tres, rres, names)
    if not have_chart:
        out = [l for l in out if not l.startswith('![')]
    with open(os.path.join(d, 'report.md'), 'w') as f:
        f.write('\n'.join(out) + '\n')
    print(f'report: {os.path.join(d, "report.md")}' + (f', {d}/chart.svg, {d}/chart.png' if have_chart else ''))


if __name__ == '__main__':
    main()
