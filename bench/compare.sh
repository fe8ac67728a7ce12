#!/bin/sh
# compare.sh: runs the bench programs of a build dir under glibc, jemalloc, mimalloc, tcmalloc and
# gomalloc (LD_PRELOAD), interleaved, and prints median time / peak RSS with gomalloc/X ratios.
# Usage: bench/compare.sh BUILDDIR [--reps 5] [--csv PATH] [--callgrind] ...  (see compare.py -h)
exec python3 "$(dirname "$0")/compare.py" "$@"
