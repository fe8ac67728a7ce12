#!/usr/bin/env python3
"""profile_pprof.py: heap profiles written by gomalloc, read back by the standard tools.

Runs tests/prof_sites.c (allocation sites with known totals) under LD_PRELOAD=libgomalloc.so
at GOMALLOC=memprofilerate=65536, then asks google-pprof and go tool pprof for in-use and
allocated space and objects per function, and checks each against the truth the program
prints (within 15%). Also: profiles written by a fork child and its parent, on a signal,
and with profiling off are complete and readable. Output is TAP.

usage: profile_pprof.py PROF_SITES LIBGOMALLOC_SO"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

RATE = 65536
TOL = 0.15
results = []


def tap(ok, name, detail=''):
    results.append(ok)
    detail = ' | '.join(l for l in str(detail).splitlines() if l.strip())
    print(f"{'ok' if ok else 'not ok'} {len(results)} - {name}" + (f' # {detail}' if detail else ''))
    sys.stdout.flush()


def find_go():
    go = shutil.which('go')
    if go:
        return go
    cands = sorted(glob.glob('/usr/lib/go-*/bin/go'))
    return cands[-1] if cands else None


def run(cmd, env=None, timeout=300):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=timeout)


def parse_number(tok):
    """'546888479B', '24709', '1.5MB' -> float (units as pprof prints them)."""
    m = re.fullmatch(r'([0-9.]+)([kMGT]?)B?', tok)
    if not m:
        return None
    mult = {'': 1, 'k': 1e3, 'M': 1e6, 'G': 1e9, 'T': 1e12}[m.group(2)]
    if tok.endswith('B') and m.group(2):
        mult = {'k': 2**10, 'M': 2**20, 'G': 2**30, 'T': 2**40}[m.group(2)]
    return float(m.group(1)) * mult


def flat_by_function(text):
    """Flat value per function from a pprof text report (both tools' layout)."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or not parts[1].endswith('%'):
            continue
        v = parse_number(parts[0])
        if v is not None:
            out[parts[-1]] = v
    return out


VIEWS = ['inuse_space', 'inuse_objects', 'alloc_space', 'alloc_objects']


def pprof_views(tool, go, prog, prof):
    """{view: {function: flat}} from one tool, or an error string."""
    res = {}
    for view in VIEWS:
        if tool == 'google-pprof':
            cmd = ['google-pprof', '--text', '--nodefraction=0', '--edgefraction=0', f'--{view}', prog, prof]
            if view.endswith('space'):
                cmd.insert(2, '--show_bytes')
        else:
            cmd = [go, 'tool', 'pprof', '-text', '-nodefraction=0', '-edgefraction=0',
                   f'-sample_index={view}', prog, prof]
            if view.endswith('space'):
                cmd.insert(4, '-unit=B')
        r = run(cmd, env={'HOME': tempfile.gettempdir()})
        if r.returncode != 0:
            return f'{" ".join(cmd)}: exit {r.returncode}: {r.stderr.strip()[-300:]}'
        res[view] = flat_by_function(r.stdout)
    return res


def check_profile_file(path):
    """Header totals equal the record sums; mappings present. Returns (ok, detail)."""
    try:
        lines = open(path).read().split('\n')
    except OSError as e:
        return False, str(e)
    m = re.fullmatch(r'heap profile: (\d+): (\d+) \[(\d+): (\d+)\] @ heap_v2/(\d+)', lines[0])
    if not m:
        return False, f'bad header {lines[0]!r}'
    head = [int(x) for x in m.groups()[:4]]
    sums = [0, 0, 0, 0]
    i = 1
    while i < len(lines) and lines[i] != 'MAPPED_LIBRARIES:':
        if lines[i]:
            r = re.fullmatch(r'(\d+): (\d+) \[(\d+): (\d+)\] @( 0x[0-9a-f]+)+', lines[i])
            if not r:
                return False, f'bad record {lines[i]!r}'
            for k in range(4):
                sums[k] += int(r.group(k + 1))
        i += 1
    if i == len(lines):
        return False, 'no MAPPED_LIBRARIES section'
    if sums != head:
        return False, f'header {head} != record sums {sums}'
    if not any(' r-xp ' in l for l in lines[i:]):
        return False, 'no executable mapping listed'
    return True, f'{sum(1 for l in lines[1:i] if l)} records'


def main():
    prog, lib = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    go = find_go()
    tools = ['google-pprof', 'go']
    if shutil.which('google-pprof') is None or go is None:
        print('# google-pprof and go (packages google-perftools, golang-go) are needed: run .ci/setup')
        tap(False, 'pprof tools present')
        print('1..1')
        return 1
    d = tempfile.mkdtemp(prefix='gm-prof-')
    base_env = {'LD_PRELOAD': lib}

    # 1. the sites, read back by both tools in all four views
    env = dict(base_env, GOMALLOC=f'memprofilerate={RATE},memprofile={d}/sites.%p.heap')
    r = run([prog, 'sites'], env)
    truth = {}
    for line in r.stdout.splitlines():
        if line.startswith('truth '):
            parts = line.split()
            truth[parts[1]] = {k: int(v) for k, v in (p.split('=') for p in parts[2:])}
    files = glob.glob(f'{d}/sites.*.heap')
    tap(r.returncode == 0 and len(truth) == 3 and len(files) == 1, 'prof_sites ran and wrote one profile',
        f'rc={r.returncode} files={files} {r.stderr.strip()[-200:]}')
    ok, detail = check_profile_file(files[0]) if files else (False, 'no file')
    tap(ok, 'profile well-formed', detail)
    for tool in tools:
        views = pprof_views(tool, go, prog, files[0]) if files else 'no profile'
        if isinstance(views, str):
            for view in VIEWS:
                tap(False, f'{tool} {view}', views)
            continue
        for view in VIEWS:
            bad = []
            for fn, t in truth.items():
                want = t[view.replace('_space', '_bytes')]
                got = views[view].get(fn, 0.0)
                if want == 0:
                    # nothing live: at most a sample or two may still be open (2 MiB, 64 objects)
                    limit = 2 << 20 if view.endswith('space') else 64
                    if got > limit:
                        bad.append(f'{fn} {got:.0f} (want ~0)')
                elif abs(got - want) > TOL * want:
                    bad.append(f'{fn} {got:.0f} vs {want} ({(got / want - 1) * 100:+.1f}%)')
                else:
                    print(f'#   {tool} {view} {fn}: {got:.0f} vs {want} ({(got / want - 1) * 100:+.1f}%)')
            tap(not bad, f'{tool} {view} per function within {TOL:.0%}', '; '.join(bad))

    # 2. fork: the child writes its own complete profile, the parent its own
    env = dict(base_env, GOMALLOC=f'memprofilerate={RATE},memprofile={d}/fork.%p.heap')
    r = run([prog, 'fork'], env)
    m = re.search(r'child (\d+) status 0', r.stdout)
    tap(r.returncode == 0 and m is not None, 'fork mode ran', r.stdout[-200:] + r.stderr[-200:])
    child = f'{d}/fork.{m.group(1)}.heap' if m else ''
    parents = [f for f in glob.glob(f'{d}/fork.*.heap') if f != child]
    for name, path in (('child', child), ('parent', parents[0] if parents else '')):
        ok, detail = check_profile_file(path) if path else (False, 'missing')
        tap(ok, f'fork {name} profile well-formed', detail)
        views = pprof_views('google-pprof', go, prog, path) if ok else {}
        got = views.get('inuse_space', {}).get('keep_blocks', 0) if isinstance(views, dict) else 0
        want = truth.get('keep_blocks', {}).get('inuse_bytes', 0) * (2 if name == 'child' else 1)
        tap(want > 0 and abs(got - want) <= TOL * want, f'fork {name} keep_blocks in use ({got:.0f} vs {want})')
    # Without %p both processes write the same path: the survivor is still complete.
    env = dict(base_env, GOMALLOC=f'memprofilerate={RATE},memprofile={d}/same.heap')
    r = run([prog, 'fork'], env)
    ok, detail = check_profile_file(f'{d}/same.heap')
    leftovers = glob.glob(f'{d}/same.heap.tmp.*')
    tap(r.returncode == 0 and ok and not leftovers, 'fork writing one path leaves one complete profile',
        f'{detail} leftovers={leftovers}')

    # 3. memprofile_signal: a profile per signal, written by gomalloc's thread
    env = dict(base_env, GOMALLOC=f'memprofilerate={RATE},memprofile_signal=USR2,memprofile={d}/sig.%n.heap')
    r = run([prog, 'signal', '2', f'{d}/sig.%n.heap'], env, timeout=60)
    tap(r.returncode == 0, 'two SIGUSR2 each wrote a profile', r.stdout[-300:] + r.stderr[-300:])
    for n in (0, 1):
        ok, detail = check_profile_file(f'{d}/sig.{n}.heap')
        tap(ok, f'signal profile {n} well-formed', detail)
    ok, detail = check_profile_file(f'{d}/sig.2.heap')
    tap(ok, 'exit profile after the signals is dump number 2', detail)

    # 4. profiling off: the exit profile is empty but valid
    env = dict(base_env, GOMALLOC=f'memprofilerate=0,memprofile={d}/off.heap')
    r = run([prog, 'sites'], env)
    ok, detail = check_profile_file(f'{d}/off.heap')
    head = open(f'{d}/off.heap').readline().strip() if os.path.exists(f'{d}/off.heap') else ''
    tap(r.returncode == 0 and ok and head.startswith('heap profile: 0: 0 [0: 0]'), 'rate 0: empty valid profile',
        f'{detail} {head!r}')
    # 5. a bad path: one warning line, exit status unchanged
    env = dict(base_env, GOMALLOC=f'memprofilerate={RATE},memprofile=/nonexistent-dir/x.heap')
    r = run([prog, 'sites'], env)
    warn = [l for l in r.stderr.splitlines() if l.startswith('gomalloc: could not write heap profile')]
    tap(r.returncode == 0 and len(warn) == 1, 'unwritable path: one warning, program unaffected', r.stderr[-200:])

    shutil.rmtree(d, ignore_errors=True)
    print(f'1..{len(results)}')
    return 0 if all(results) else 1


if __name__ == '__main__':
    sys.exit(main())
