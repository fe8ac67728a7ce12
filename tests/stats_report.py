#!/usr/bin/env python3
"""stats_report.py LAUNCHER: runs real programs under the `gomalloc` command with --json and
--stats and parses the exit reports back: the JSON is one valid object with every MemStats
field and 66 by_size entries obeying the invariants; the text report names every field.
Also checks the launcher's own errors (unknown option, missing program)."""
import json
import subprocess
import sys

FIELDS = ["alloc", "total_alloc", "sys", "mallocs", "frees", "heap_alloc", "heap_sys",
          "heap_idle", "heap_inuse", "heap_released", "heap_inuse_released", "heap_objects", "mspan_inuse",
          "mspan_sys", "mcache_inuse", "mcache_sys", "other_sys", "peak_rss"]
PY = "/usr/bin/python3"
WORK = "d={str(i): [i]*3 for i in range(50000)}; print(sum(len(v) for v in d.values()))"


def run(args, env_extra=None):
    import os
    env = dict(os.environ, PYTHONMALLOC="malloc", **(env_extra or {}))
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def main(launcher):
    r = run(["sh", launcher, "--json", "--", PY, "-c", WORK])
    if r.returncode != 0 or r.stdout.strip() != "150000":
        fail(f"python under gomalloc --json: rc={r.returncode} out={r.stdout!r} err={r.stderr[-500:]!r}")
    lines = [l for l in r.stderr.splitlines() if l.startswith("{")]
    if len(lines) != 1:
        fail(f"expected one JSON line on stderr, got {len(lines)}: {r.stderr[-500:]!r}")
    m = json.loads(lines[0])["gomalloc"]
    for f in FIELDS:
        if not isinstance(m.get(f), int):
            fail(f"JSON report lacks integer field {f}")
    bs = m["by_size"]
    if len(bs) != 66 or bs[0]["size"] != 0 or [b["size"] for b in bs[1:]] != sorted(b["size"] for b in bs[1:]):
        fail("by_size must have 66 entries, entry 0 for large objects, sizes ascending")
    checks = {
        "heap_sys == heap_idle + heap_inuse": m["heap_sys"] == m["heap_idle"] + m["heap_inuse"],
        "alloc == heap_alloc": m["alloc"] == m["heap_alloc"],
        "heap_objects == mallocs - frees": m["heap_objects"] == m["mallocs"] - m["frees"],
        "heap_inuse >= heap_alloc": m["heap_inuse"] >= m["heap_alloc"],
        "heap_inuse_released <= heap_inuse": m["heap_inuse_released"] <= m["heap_inuse"],
        "heap_released <= heap_idle": m["heap_released"] <= m["heap_idle"],
        "sys == sum": m["sys"] == m["heap_sys"] + m["mspan_sys"] + m["mcache_sys"] + m["other_sys"],
        "mallocs == sum(by_size)": m["mallocs"] == sum(b["mallocs"] for b in bs),
        "python really allocated through gomalloc": m["mallocs"] > 100000,
        "peak_rss plausible": m["peak_rss"] > 1 << 20,
    }
    for name, ok in checks.items():
        if not ok:
            fail(f"JSON report: {name} does not hold: {m}")

    r = run(["sh", launcher, "--stats", "--", "/usr/bin/sort", "/etc/passwd"])
    if r.returncode != 0 or "root:" not in r.stdout:
        fail(f"sort under gomalloc --stats: rc={r.returncode}")
    for f in FIELDS:  # sort closes stderr before exit: the report must still arrive
        if not any(l.startswith(f"gomalloc:   {f} ") for l in r.stderr.splitlines()):
            fail(f"text report has no {f} line: {r.stderr[-800:]!r}")

    r = run(["sh", launcher, "--bogus", "true"])
    if r.returncode != 2 or "unknown option '--bogus'" not in r.stderr:
        fail(f"unknown launcher option: rc={r.returncode} err={r.stderr!r}")
    r = run(["sh", launcher, "--stats"])
    if r.returncode != 2 or "usage:" not in r.stderr:
        fail(f"launcher without a program: rc={r.returncode} err={r.stderr!r}")
    r = run(["sh", launcher, "--", PY, "-c", "print(1)"], {"GOMALLOC": "bogus_key=1"})
    if r.returncode != 0 or r.stderr.count("\n") != 1 or "unknown option 'bogus_key'" not in r.stderr:
        fail(f"GOMALLOC=bogus_key=1 must give exactly one warning line: {r.stderr!r}")
    print("ok: JSON and text reports parsed back; launcher errors checked")


if __name__ == "__main__":
    main(sys.argv[1])
