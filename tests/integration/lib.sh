# lib.sh: sourced by every integration case (case_*.sh). Picks the allocator to preload
# (GM_ALLOC=gomalloc|glibc|jemalloc, default gomalloc), makes a temp dir, and provides
# gm_run (run a program under that allocator, optionally timed) and gm_check_loaded.
# shellcheck shell=bash
set -euo pipefail

GM_SO=${1:?usage: $0 LIBGOMALLOC_SO}
GM_ALLOC=${GM_ALLOC:-gomalloc}
GM_JEMALLOC=${GM_JEMALLOC:-/usr/lib/x86_64-linux-gnu/libjemalloc.so.2}
GM_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
GM_PY=/usr/bin/python3
GM_CASE=$(basename "$0" .sh)
GM_CASE=${GM_CASE#case_}

fail() { echo "FAIL ($GM_CASE, $GM_ALLOC): $*" >&2; exit 1; }

case $GM_ALLOC in
gomalloc) [[ -f $GM_SO ]] || fail "no library at $GM_SO"; GM_PRELOAD=$(realpath "$GM_SO") ;;
jemalloc) [[ -f $GM_JEMALLOC ]] || fail "no jemalloc at $GM_JEMALLOC"; GM_PRELOAD=$GM_JEMALLOC ;;
glibc) GM_PRELOAD= ;;
*) fail "GM_ALLOC must be gomalloc, glibc or jemalloc" ;;
esac

T=$(mktemp -d /tmp/gm-integ."$GM_CASE".XXXXXX)
gm_cleanup_hooks=()
gm_cleanup() {
  local h
  for h in "${gm_cleanup_hooks[@]}"; do eval "$h" || true; done
  rm -rf "$T"
}
trap gm_cleanup EXIT
trap 'exit 130' INT TERM

# need PROGRAM PACKAGE: a missing program is a failure (CI installs GM_PACKAGES), not a skip.
need() {
  command -v "$1" >/dev/null 2>&1 || fail "$1 not found: install Debian package $2 (it is in GM_PACKAGES, .ci/lib.sh)"
}

# The environment a program under test gets: the preload, and under gomalloc the at-exit
# JSON report on stderr (one {"gomalloc":{...}} object per process) unless GM_STATS=0.
gm_env() {
  [[ -n $GM_PRELOAD ]] && printf '%s\n' "LD_PRELOAD=$GM_PRELOAD"
  [[ $GM_ALLOC == gomalloc && ${GM_STATS:-1} == 1 ]] && printf '%s\n' "GOMALLOC=stats=json"
  return 0
}

# gm_run ERRFILE CMD...: runs CMD under the chosen allocator, stdout passed through,
# stderr appended to ERRFILE. With GM_TIMES set (compare.sh, soak.sh), appends
# "<case> <wall s> <max RSS KiB>" for this command to that file.
gm_run() {
  local err=$1 envs rc=0
  shift
  mapfile -t envs < <(gm_env)
  if [[ -n ${GM_TIMES:-} ]]; then
    /usr/bin/time -o "$T/.time" -f '%e %M' env "${envs[@]}" "$@" 2>>"$err" || rc=$?
    printf '%s %s\n' "$GM_CASE" "$(tail -n 1 "$T/.time")" >>"$GM_TIMES"
  else
    env "${envs[@]}" "$@" 2>>"$err" || rc=$?
  fi
  return $rc
}

# gm_check_loaded ERRFILE MIN_MALLOCS: under gomalloc, ERRFILE must hold at least one
# JSON report, one process must have made MIN_MALLOCS mallocs, and gomalloc must have
# printed no warning ("gomalloc: ..." lines). A no-op under the other allocators.
gm_check_loaded() {
  [[ $GM_ALLOC == gomalloc ]] || return 0
  "$GM_PY" "$GM_HERE/check_stats.py" "$1" "$2" || fail "gomalloc report check failed (stderr: $1)"
}

# show_err FILE: the last lines of a stderr file, without the JSON reports.
show_err() { grep -v '^{"gomalloc"' "$1" | tail -n 25 >&2 || true; }
# died STATUS WHAT: a program under test failed; show its stderr ($T/err) and fail.
died() { local rc=$1; shift; show_err "$T/err"; fail "$* (exit status $rc)"; }
