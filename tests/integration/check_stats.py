#!/usr/bin/python3
"""check_stats.py STDERR_FILE MIN_MALLOCS: proves gomalloc served a run. Finds every
{"gomalloc":{...}} report (GOMALLOC=stats=json, one per process at exit) in the file, needs
one process with >= MIN_MALLOCS mallocs, and rejects gomalloc warning lines."""
import json
import sys

path, min_mallocs = sys.argv[1], int(sys.argv[2])
text = open(path, encoding="utf-8", errors="replace").read()
dec = json.JSONDecoder()
reports, pos = [], 0
while (i := text.find('{"gomalloc":', pos)) >= 0:
    try:
        obj, pos = dec.raw_decode(text, i)
        reports.append(obj["gomalloc"])
    except (ValueError, KeyError):
        pos = i + 1
warnings = [l for l in text.splitlines() if l.startswith("gomalloc:")]
if warnings:
    print("gomalloc printed warnings:\n  " + "\n  ".join(warnings[:10]))
    sys.exit(1)
if not reports:
    print("no gomalloc JSON report on stderr: was libgomalloc.so really loaded?")
    sys.exit(1)
top = max(reports, key=lambda r: r["mallocs"])
print(f"gomalloc: {len(reports)} process report(s), {sum(r['mallocs'] for r in reports)} mallocs"
      f" in all, busiest process {top['mallocs']} mallocs, peak_rss {top['peak_rss'] >> 20} MiB")
if top["mallocs"] < min_mallocs:
    print(f"busiest process made {top['mallocs']} mallocs, expected >= {min_mallocs}")
    sys.exit(1)
