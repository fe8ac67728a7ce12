#!/bin/bash
# case_python.sh LIBGOMALLOC_SO: CPython (PYTHONMALLOC=malloc, so objects go through malloc)
# runs py_churn.py: dict/str/json/list churn and threads; every phase's line must match the
# known answer, and gomalloc's JSON report must show the traffic.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need "$GM_PY" python3

expected='dict 400000 59999900000
str 3788877 4443420 300000 3113106915
json 8573374 1416894011
list 134334 995413166
threads 479996'
PYTHONMALLOC=malloc gm_run "$T/err" "$GM_PY" "$GM_HERE/py_churn.py" >"$T/out" ||
  died $? "python3"
[[ $(cat "$T/out") == "$expected" ]] || { diff <(echo "$expected") "$T/out" >&2; fail "wrong output"; }
gm_check_loaded "$T/err" 1000000
echo "ok: python churn"
