#!/usr/bin/env python3
"""callgrind.py: the --callgrind mode of compare.py: instructions per steady-state malloc+free
pair (16..1024 B) of each allocator, from cg_pairs under valgrind --tool=callgrind, as
(Ir(2N) - Ir(N)) / N; deterministic, so it can be compared across commits. Both runs pay
the one-time costs (start-up, the heap profiler's first sample mapping its tables and
reading unwind tables), so they cancel; against N = 0 they did not, since a warm-up alone
may take no sample. Stdlib only."""

import csv
import os
import tempfile


def parse_callgrind(path):
    """Total Ir and self Ir per object file from an uncompressed callgrind.out."""
    total, by_ob, ob, skip = None, {}, '?', False
    with open(path) as f:
        for line in f:
            c = line[:1]
            if c.isdigit() or c in '+-*':
                if skip:
                    skip = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    by_ob[ob] = by_ob.get(ob, 0) + int(parts[1])
            elif line.startswith('ob='):
                ob = line[3:].strip()
            elif line.startswith('calls='):
                skip = True
            elif line.startswith(('summary:', 'totals:')):
                total = int(line.split()[1])
    return total, by_ob


def callgrind(args, allocs, run, check_run, loud):
    """Prints the table and returns rows (name, Ir/pair, alloc, loop, libc)."""
    exe = os.path.join(args.builddir, 'bench', 'cg_pairs')
    n = args.cg_pairs
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, lib, obkey in allocs:
            ir = {}  # k -> (total, alloc, loop, libc)
            for k in (n, 2 * n):
                out = os.path.join(d, f'{name}.{k}.out')
                cmd = ['valgrind', '--tool=callgrind', '--callgrind-out-file=' + out,
                       '--compress-strings=no', '--compress-pos=no']
                if lib:
                    cmd.append(f'--soname-synonyms=somalloc=*{obkey}*')
                cmd += [exe, str(k)]
                r = run(cmd, lib, args.timeout * 4, rss=False)
                if not check_run('callgrind', name, cmd, lib, r):
                    break
                if f'allocator={name}' not in r['out']:
                    loud(f'callgrind under {name}: program output: {r["out"].strip()} (preload not in effect?)')
                total, by_ob = parse_callgrind(out)
                ir[k] = (total, *split_objects(by_ob, exe, name))
            if len(ir) < 2:
                continue
            rows.append((name,) + tuple((ir[2 * n][i] - ir[n][i]) / n for i in range(4)))
    glibc_libc = next((r[4] for r in rows if r[0] == 'glibc'), None)
    gm = next((r[1] for r in rows if r[0] == 'gomalloc'), None)
    print(f'\ncallgrind: instructions per steady-state malloc+free pair, sizes 16..1024 B, '
          f'(Ir(2N) - Ir(N)) / N, N={n}.\n"alloc" = Ir in the allocator\'s own code (for glibc: libc), '
          f'"loop" = the test loop in cg_pairs, "libc" = Ir in libc.so')
    print(f'{"allocator":<10} {"Ir/pair":>8} {"alloc":>7} {"loop":>6} {"libc":>6} {"gm/X":>6}')
    for name, per, alloc, loop, libc in rows:
        ratio = f'{gm / per:.2f}' if gm and per else '-'
        print(f'{name:<10} {per:>8.1f} {alloc:>7.1f} {loop:>6.1f} {libc:>6.1f} {ratio:>6}')
        if name != 'glibc' and (alloc < 0.5 * per or (glibc_libc and libc > 0.5 * glibc_libc)):
            loud(f'callgrind: counts for {name} may not come from {name} '
                 f'(alloc {alloc:.1f} Ir/pair, libc {libc:.1f}, glibc run libc {glibc_libc})')
    return rows


def write_csv(path, rows, pairs):
    with open(path, 'w', newline='') as f:
        wr = csv.writer(f)
        wr.writerow(['allocator', 'ir_per_pair', 'alloc_ir', 'loop_ir', 'libc_ir', 'pairs'])
        for r in rows:
            wr.writerow([r[0]] + [f'{v:.2f}' for v in r[1:]] + [pairs])


def split_objects(by_ob, exe, name):
    """(allocator, loop, libc) self Ir: the allocator is libc for glibc, else every object other
    than libc, ld.so, valgrind's preload and the program (tcmalloc's malloc shows up as '???')."""
    alloc = loop = libc = 0
    for ob, v in by_ob.items():
        base = os.path.basename(ob)
        if base.startswith('libc.so'):
            libc += v
        elif base == os.path.basename(exe):
            loop += v
        elif base.startswith('ld-linux') or base.startswith('vgpreload'):
            continue
        elif name != 'glibc':
            alloc += v
    return (libc if name == 'glibc' else alloc), loop, libc
