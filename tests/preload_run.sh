#!/bin/bash
# preload_run.sh MODE LIBGOMALLOC_SO PROGRAM [DATA]: runs a real program under
# LD_PRELOAD=libgomalloc.so, checks its output against a known result, that the library is
# really mapped in that process, and that gomalloc printed no warning. Exit 0 = pass.
set -u
mode=$1 so=$2 prog=$3
data=${4:-}
[ -f "$so" ] || { echo "no library at $so"; exit 1; }
tmp=$(mktemp -d /tmp/gm-preload.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL ($mode): $*"; [ -s "$tmp/err" ] && { echo "--- stderr:"; head -20 "$tmp/err"; }; exit 1; }

check_stderr() {
    if grep -q 'gomalloc' "$tmp/err"; then fail "gomalloc wrote to stderr"; fi
}

case $mode in
python)
    LD_PRELOAD=$so timeout 120 "$prog" "$data" >"$tmp/out" 2>"$tmp/err" || fail "exit status $?"
    expected=$'result 7228194456 child 0\ngomalloc mapped: True'
    [ "$(cat "$tmp/out")" = "$expected" ] || fail "output: $(cat "$tmp/out")"
    check_stderr
    ;;
perl)
    script='my %h; $h{$_} = [ ("x") x ($_ % 50) ] for 1..300000; my $s = "";
        $s .= chr(65 + $_ % 26) for 1..5000000; my $t = 0; $t += scalar @{$h{$_}} for keys %h;
        print length($s), " ", $t, "\n"; open my $m, "<", "/proc/self/maps" or die;
        print((grep { /libgomalloc/ } <$m>) ? "mapped\n" : "not mapped\n");'
    LD_PRELOAD=$so timeout 120 "$prog" -e "$script" >"$tmp/out" 2>"$tmp/err" || fail "exit status $?"
    [ "$(cat "$tmp/out")" = $'5000000 7350000\nmapped' ] || fail "output: $(cat "$tmp/out")"
    check_stderr
    # GOMALLOC=stats=1: the at-exit heap report proves gomalloc served this process.
    GOMALLOC=stats=1 LD_PRELOAD=$so timeout 60 "$prog" -e 'my @a = map { "x" x $_ } 1..2000; print scalar(@a), "\n"' \
        >"$tmp/out" 2>"$tmp/err" || fail "stats run: exit status $?"
    [ "$(cat "$tmp/out")" = 2000 ] || fail "stats run output: $(cat "$tmp/out")"
    grep -q '^gomalloc' "$tmp/err" || fail "GOMALLOC=stats=1 printed no report line starting with 'gomalloc'"
    ;;
sort)
    # 300000 pseudo-random lines; sort reads them from a FIFO so the wrapper can look at
    # /proc/PID/maps of the running sort before any data arrives.
    awk 'BEGIN { x = 12345; for (i = 0; i < 300000; i++) { x = (x * 1103515245 + 12345) % 2147483648;
         printf "%d line-%x %s\n", x % 1000003, x, substr("abcdefghijklmnopqrstuvwxyz", 1 + x % 26) } }' >"$tmp/in"
    LC_ALL=C "$prog" -k1,1n -k2,2 "$tmp/in" >"$tmp/expected" || fail "reference sort failed"
    mkfifo "$tmp/fifo"
    LC_ALL=C LD_PRELOAD=$so "$prog" --parallel=2 -S 2M -T "$tmp" -k1,1n -k2,2 "$tmp/fifo" \
        >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    mapped=no
    for _ in $(seq 1 500); do
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
        if [ "${exe##*/}" = sort ] && grep -q libgomalloc "/proc/$pid/maps" 2>/dev/null; then mapped=yes; break; fi
        sleep 0.01
    done
    cat "$tmp/in" >"$tmp/fifo"
    wait "$pid" || fail "exit status $?"
    [ $mapped = yes ] || fail "libgomalloc not mapped in the sort process"
    cmp -s "$tmp/out" "$tmp/expected" || fail "sorted output differs from the reference sort"
    [ "$(wc -l <"$tmp/out")" -eq 300000 ] || fail "line count"
    check_stderr
    ;;
*)
    fail "unknown mode"
    ;;
esac
echo "ok ($mode)"
