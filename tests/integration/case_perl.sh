#!/bin/bash
# case_perl.sh LIBGOMALLOC_SO: perl hash/array/string churn (a 500k-key hash of arrays, half
# deleted, sorting, string growth, join, regex substitution) with a known output.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need perl perl

cat >"$T/churn.pl" <<'PERL'
use strict; use warnings;
my %h;
$h{"k$_"} = [ ("x") x ($_ % 40), $_ ] for 1 .. 500_000;
delete $h{"k$_"} for grep { $_ % 2 } 1 .. 500_000;
$h{"n$_"} = { id => $_, s => "y" x ($_ % 200) } for 1 .. 200_000;
my ($n, $sum) = (0, 0);
for my $k (sort keys %h) { my $v = $h{$k}; $n++; $sum += ref $v eq 'ARRAY' ? $v->[-1] : $v->{id}; }
print "hash $n $sum\n";
my $s = "";
$s .= chr(65 + $_ % 26) x ($_ % 5) for 1 .. 2_000_000;
(my $t = $s) =~ s/BB/-/g;
my $dashes = ($t =~ tr/-//);
print "string ", length($s), " ", length($t), " $dashes\n";
my @a = map { ($_ * 7919) % 1_000_003 } 1 .. 1_000_000;
@a = sort { $a <=> $b } @a;
splice @a, 1000, 500_000;
my $j = join ",", @a[0 .. 9999];
print "array ", scalar(@a), " $a[-1] ", length($j), "\n";
PERL
# hash: even k (2+4+...+500000 = 62500250000) + ids 1..200000 (20000100000); the string and
# array lines were worked out independently with python3 (same arithmetic, no perl).
expected='hash 450000 82500350000
string 4000000 3938460 61540
array 500000 1000002 66892'
gm_run "$T/err" perl "$T/churn.pl" >"$T/out" || died $? "perl"
[[ $(cat "$T/out") == "$expected" ]] || { diff <(echo "$expected") "$T/out" >&2; fail "wrong output"; }
gm_check_loaded "$T/err" 1000000
echo "ok: perl"
