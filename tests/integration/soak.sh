#!/bin/bash
# soak.sh BUILD_DIR SECONDS [CASE...]: not run by CI. Runs the integration cases under gomalloc
# in a loop until SECONDS have passed, one line per case run (time, round, result, wall s,
# peak RSS MiB), then per case the peak RSS of the first and last rounds: growth means a leak.
set -euo pipefail
build=$(realpath "${1:?usage: $0 BUILD_DIR SECONDS [CASE...]}")
secs=${2:?usage: $0 BUILD_DIR SECONDS [CASE...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd -P)
cases=("$@")
((${#cases[@]})) || cases=(python sqlite perl git compress gcc cxx memcached python_regrtest)
log=$(mktemp /tmp/gm-soak.XXXXXX.log)
times=$(mktemp /tmp/gm-soak.XXXXXX.times)
trap 'rm -f "$times"' EXIT
echo "soak: ${cases[*]} for $secs s; log $log"
printf '%8s %5s %-16s %-4s %8s %8s\n' elapsed round case ok wall_s rss_MiB | tee -a "$log"
start=$SECONDS round=0 failures=0
while ((SECONDS - start < secs)); do
  round=$((round + 1))
  for c in "${cases[@]}"; do
    ((SECONDS - start < secs)) || break
    extra=()
    [[ $c == cxx ]] && extra=("$build/tests/integration/cxx_threads")
    : >"$times"
    if GM_TIMES=$times bash "$here/case_$c.sh" "$build/alloc/libgomalloc.so" "${extra[@]}" \
      >"$times.out" 2>&1; then r=ok; else r=FAIL; failures=$((failures + 1)); cat "$times.out" >>"$log"; fi
    read -r w m < <(awk 'NF == 3 && $2 ~ /^[0-9.]+$/ { w += $2; if ($3 > m) m = $3 }
      END { printf "%.1f %.0f\n", w, m / 1024 }' "$times")
    printf '%8d %5d %-16s %-4s %8s %8s\n' $((SECONDS - start)) "$round" "$c" "$r" "$w" "$m" | tee -a "$log"
  done
done
rm -f "$times.out"
echo "== peak RSS (MiB) per case: first round -> last round"
awk 'NR > 1 && $4 == "ok" { if (!($3 in first)) first[$3] = $6; last[$3] = $6; n[$3]++ }
  END { for (c in first) printf "%-16s %6d -> %6d  (%d runs)\n", c, first[c], last[c], n[c] }' "$log"
echo "$round rounds, $failures failures; log: $log"
((failures == 0))
