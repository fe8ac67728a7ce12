"""The main job of .ci/setup: a real program (CPython on a small JSON/dict/sort workload)
run under gomalloc, then a one-line summary.

    main_job.py BUILD/alloc/gomalloc  run the workload under the gomalloc command with --stats
    main_job.py --workload         the workload itself (what the child runs)

The child gets PYTHONMALLOC=malloc so every Python object goes through malloc/free (CPython's
own small-object arenas would otherwise take most of the traffic away from gomalloc). gomalloc
prints its heap report to stderr at exit; it is passed through unchanged.
"""
import ctypes
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time

ENTRIES = 200_000
THREADS = 4


def workload():
    rng = random.Random(20240601)
    # A dict of 200k entries, each a short list of int, float and str.
    table = {f"k{i:06d}-{rng.getrandbits(32):08x}": [i, rng.random(), str(i) * 3] for i in range(ENTRIES)}
    # JSON round trip: one big string out, a fresh copy of everything back in.
    text = json.dumps(table)
    back = json.loads(text)
    if back != table:
        raise SystemExit("json round trip changed the data")
    del table
    # Sort by value, then hash in that order.
    order = sorted(back.items(), key=lambda kv: (kv[1][1], kv[0]))
    digest = hashlib.sha256()
    for key, (i, x, s) in order:
        digest.update(f"{key}:{i}:{x!r}:{s};".encode())
    # A few threads allocate and free at once (each gets its own mcache in gomalloc).
    chunks = [dict(order[j::THREADS]) for j in range(THREADS)]
    sizes = [0] * THREADS

    def encode(j):
        for _ in range(3):
            sizes[j] = len(json.dumps(chunks[j], sort_keys=True))

    threads = [threading.Thread(target=encode, args=(j,)) for j in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        redirected = "yes" if ctypes.CDLL(None).gm_is_redirected() else "no"
    except (AttributeError, OSError):
        redirected = "not loaded"
    print(f"entries={len(back)} json_bytes={len(text)} thread_json_bytes={sum(sizes)} "
          f"sha256={digest.hexdigest()[:16]} gomalloc={redirected}")


def main(launcher):
    if not os.path.isfile(launcher):
        raise SystemExit(f"error: {launcher} not found (build first: meson compile -C build)")
    # PYTHONMALLOC=malloc: CPython's own small-object pools would otherwise hide most
    # allocations from any malloc.
    env = dict(os.environ, PYTHONMALLOC="malloc")
    cmd = ["sh", launcher, "--stats", "--", sys.executable, os.path.abspath(__file__), "--workload"]
    print(f"$ PYTHONMALLOC=malloc {os.path.relpath(launcher)} --stats -- "
          f"{sys.executable} .ci/main_job.py --workload", flush=True)
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, errors="replace")
    wall = time.monotonic() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the only child

    print(proc.stdout, end="", flush=True)
    if proc.stderr.strip():
        print("---- gomalloc heap report (stderr) ----", flush=True)
        sys.stderr.write(proc.stderr)
        sys.stderr.flush()
        print("---- end of report ----", flush=True)
    else:
        print("(the program wrote nothing to stderr: no heap report from GOMALLOC=stats=1)")
    result = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "no output"
    if proc.returncode < 0:
        status = f"FAILED (killed by signal {-proc.returncode})"
    elif proc.returncode > 0:
        status = f"FAILED (exit {proc.returncode})"
    elif "gomalloc=yes" not in result:
        status = "FAILED (gomalloc's malloc was not in effect: gm_is_redirected() did not say 1)"
    else:
        status = "ok"
    print(f"main job: {status}; {result}; wall {wall:.2f} s; peak RSS {peak_kib / 1024:.1f} MiB")
    return 0 if status == "ok" else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--workload"]:
        workload()
    elif len(sys.argv) == 2:
        sys.exit(main(sys.argv[1]))
    else:
        sys.exit(__doc__)
