#!/bin/bash
# case_gcc.sh LIBGOMALLOC_SO: gcc -O2 (driver, cc1, as, collect2, ld, all under the
# allocator) compiles a generated 2 MB C file of 3000 functions; the program it builds must
# print the value gen_c.py computed in Python.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need gcc gcc

want=$("$GM_PY" "$GM_HERE/gen_c.py" "$T/big.c" 3000)
gm_run "$T/err" gcc -O2 -o "$T/big" "$T/big.c" || died $? "gcc"
got=$("$T/big") || fail "compiled program exit status $?"
[[ $got == "$want" ]] || fail "compiled program printed $got, expected $want"
gm_check_loaded "$T/err" 1000000
echo "ok: gcc -O2 ($got)"
