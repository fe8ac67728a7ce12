#!/bin/bash
# case_cxx.sh LIBGOMALLOC_SO CXX_THREADS_BINARY: runs the multi-threaded C++ pipeline
# (cxx_threads.cc, built by meson) under the allocator; the checksum is known, nothing may be
# misaligned, and under gomalloc every sampled operator new / aligned new pointer is gomalloc's.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
prog=${2:?usage: $0 LIBGOMALLOC_SO CXX_THREADS_BINARY}
[[ -x $prog ]] || fail "no C++ test program at $prog (g++ is in GM_PACKAGES; rebuild)"

gm_run "$T/err" "$prog" 400000 >"$T/out" || died $? "cxx_threads"
[[ $(cat "$T/out") == 'items 1200000 checksum ce2aeb628f9d19d1 misaligned 0' ]] ||
  fail "wrong output: $(cat "$T/out")"
if [[ $GM_ALLOC == gomalloc ]]; then
  grep -E '^gm_owns checked [0-9]+ pointers, 0 not' "$T/err" || { show_err "$T/err"; fail "gm_owns check"; }
fi
gm_check_loaded "$T/err" 1000000
echo "ok: C++ threads"
