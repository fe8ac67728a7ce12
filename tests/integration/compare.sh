#!/bin/bash
# compare.sh BUILD_DIR [CASE...]: runs each integration case under glibc, jemalloc and
# gomalloc in turn (interleaved, one run each) and prints a markdown table: pass/fail, wall
# time (sum over the timed program runs, /usr/bin/time %e) and peak RSS (largest %M).
set -euo pipefail
build=$(realpath "${1:?usage: $0 BUILD_DIR [CASE...]}")
shift
here=$(cd "$(dirname "$0")" && pwd -P)
so=$build/alloc/libgomalloc.so
cases=("$@")
((${#cases[@]})) || cases=(python python_regrtest sqlite perl git compress gcc cxx memcached)
allocs=(glibc jemalloc gomalloc)
out=$(mktemp -d /tmp/gm-compare.XXXXXX)
trap 'rm -rf "$out"' EXIT

for c in "${cases[@]}"; do
  extra=()
  [[ $c == cxx ]] && extra=("$build/tests/integration/cxx_threads")
  for a in "${allocs[@]}"; do
    : >"$out/$c.$a.times"
    if GM_ALLOC=$a GM_TIMES=$out/$c.$a.times bash "$here/case_$c.sh" "$so" "${extra[@]}" \
      >"$out/$c.$a.log" 2>&1; then r=pass; else r=FAIL; fi
    echo "$r" >"$out/$c.$a.result"
    echo "$c $a $r" >&2
    [[ $r == pass ]] || sed 's/^/    /' "$out/$c.$a.log" | tail -n 15 >&2
  done
done

# one row per case: result, wall seconds and peak RSS (MiB) per allocator
printf '| program | result (glibc / jemalloc / gomalloc) | wall s: glibc | jemalloc | gomalloc | peak RSS MiB: glibc | jemalloc | gomalloc |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|\n'
for c in "${cases[@]}"; do
  res=() wall=() rss=()
  for a in "${allocs[@]}"; do
    res+=("$(cat "$out/$c.$a.result")")
    read -r w m < <(awk 'NF == 3 && $2 ~ /^[0-9.]+$/ { w += $2; if ($3 > m) m = $3 }
      END { printf "%.1f %.0f\n", w, m / 1024 }' "$out/$c.$a.times")
    wall+=("$w") rss+=("$m")
  done
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$c" "${res[0]} / ${res[1]} / ${res[2]}" \
    "${wall[@]}" "${rss[@]}"
done
