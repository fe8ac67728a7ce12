#!/bin/bash
# case_python_regrtest.sh LIBGOMALLOC_SO: a selection of CPython's own regression tests
# (Debian's libpython3.11-testsuite) run with `python3 -m test -j2` under the allocator,
# PYTHONMALLOC=malloc. The selection (about 80 s on 2 cores) is explained in docs/integration.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need "$GM_PY" python3
"$GM_PY" -c 'import test.test_multiprocessing_fork' 2>/dev/null ||
  fail "CPython's test package is missing: install libpython3.11-testsuite (in GM_PACKAGES)"

tests=(test_threading test_thread test_threading_local test_gc test_dict test_list
  test_unicode test_json test_subprocess test_multiprocessing_fork test_os test_re
  test_mmap test_set test_pickle test_bytes test_weakref)
# No GOMALLOC=stats=json here: the workers and the pythons the tests start inherit the
# environment, and some tests require an empty stderr from their children. Instead the main
# process checks that malloc is gomalloc's (gm_is_redirected) before handing over to regrtest.
# SIGINT gets its usual handler back: a shell without job control starts background jobs with
# it ignored, and test_threading and test_multiprocessing_fork then fail under any allocator.
wrap='import ctypes, runpy, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
if sys.argv[1] == "gomalloc":
    assert "libgomalloc" in open("/proc/self/maps").read(), "libgomalloc not mapped"
    assert ctypes.CDLL(None).gm_is_redirected() == 1, "malloc is not gomalloc'"'"'s"
    print("gomalloc: mapped and malloc redirected in the regrtest main process")
sys.argv = ["python3 -m test"] + sys.argv[2:]
runpy.run_module("test", run_name="__main__", alter_sys=True)'
cd "$T"
GM_STATS=0 PYTHONMALLOC=malloc gm_run "$T/err" "$GM_PY" -c "$wrap" "$GM_ALLOC" \
  -j2 -w --timeout 240 --tempdir "$T/tmp" "${tests[@]}" >"$T/out" ||
  { rc=$?; tail -n 60 "$T/out" >&2; died $rc "python3 -m test"; }
# -w re-runs a failed test method once, verbosely: timing-sensitive threading tests can fail
# on a loaded machine under any allocator. A test that fails twice fails the case; one that
# passed on the re-run is named in the log ("FAILURE then SUCCESS").
grep -Eq '^Tests result: (FAILURE then )?SUCCESS$' "$T/out" ||
  { tail -n 60 "$T/out" >&2; fail "not every test passed"; }
grep -A2 -E 'Re-running [a-z_]+ in verbose|re-run tests?:' "$T/out" || true
[[ $GM_ALLOC != gomalloc ]] || grep -q '^gomalloc: mapped and malloc redirected' "$T/out" ||
  fail "gomalloc check line missing"
grep -E '^gomalloc:|^Total duration' "$T/out"
echo "ok: python regrtest (${#tests[@]} test modules)"
