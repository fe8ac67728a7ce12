#!/usr/bin/env python3
"""Writes docs/options.md from alloc/options.def, the one table of GOMALLOC options.
With --check, exits 1 (and says why) when docs/options.md is out of date instead."""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
defs = (root / "alloc" / "options.def").read_text()
rows = re.findall(r'^GM_OPTION\((\w+),\s*(\w+),\s*([^,]+),\s*"((?:[^"\\]|\\.)*)"\)', defs, re.M)
if not rows:
    sys.exit("gen_options.py: no GM_OPTION lines found in alloc/options.def")

out = [
    "# GOMALLOC options",
    "",
    "gomalloc reads one environment variable, `GOMALLOC`, at start-up: comma-separated",
    "`key=value` pairs, like Go's `GODEBUG` (for example `GOMALLOC=stats=1,verbose=1`).",
    "A bare key turns a switch on. Unknown keys and bad values are reported with one line",
    "on stderr and otherwise ignored. `GOMALLOC=help=1` prints this table with the values",
    "in effect. Sizes take K, M, G or T suffixes (powers of 1024).",
    "",
    "This file is generated from `alloc/options.def` by `docs/gen_options.py`; a test",
    "fails when the two disagree.",
    "",
    "| option | type | default | meaning |",
    "|---|---|---|---|",
]
for name, typ, default, desc in rows:
    out.append(f"| `{name}` | {typ} | `{default.strip()}` | {desc} |")
text = "\n".join(out) + "\n"

target = root / "docs" / "options.md"
if "--check" in sys.argv:
    if not target.exists() or target.read_text() != text:
        sys.exit("docs/options.md is out of date: run python3 docs/gen_options.py")
    print("docs/options.md matches alloc/options.def")
else:
    target.write_text(text)
