#!/bin/bash
# case_sqlite.sh LIBGOMALLOC_SO: sqlite3 builds a 600k-row table with a 256 MB page cache
# (malloc'd), indexes it, aggregates, deletes a third, VACUUMs and checks integrity; every
# result is compared with values worked out by hand (see the comments).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need sqlite3 sqlite3

cat >"$T/script.sql" <<'SQL'
PRAGMA journal_mode=WAL;
PRAGMA cache_size=-262144;
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c INTEGER);
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 600000)
  INSERT INTO t SELECT x, printf('%08x-%s', (x * 2654435761) % 4294967296, substr('abcdefghijklmnopqrstuvwxyz', 1, x % 27)), x % 1000 FROM n;
CREATE INDEX ib ON t(b);
CREATE INDEX ic ON t(c, a);
SELECT count(*), sum(a), sum(c), sum(length(b)) FROM t;
SELECT c, count(*), sum(a) FROM t WHERE c IN (0, 1, 999) GROUP BY c ORDER BY c;
SELECT count(DISTINCT substr(b, 1, 3)) FROM t;
DELETE FROM t WHERE a % 3 = 0;
VACUUM;
PRAGMA integrity_check;
SELECT count(*), sum(a) FROM t;
SELECT count(*) FROM t WHERE c BETWEEN 100 AND 199;
SQL
# count 600000; sum(a) = 600000*600001/2; sum(c) = 600 * (0+...+999); length(b) = 9 + x%27,
# and 600000 = 22222*27 + 6, so sum = 600000*9 + 22222*351 + (1+2+...+6).
# After deleting a%3==0: 400000 rows, sum(a) = 180000300000 - 3*(200000*200001/2).
# c in 100..199 keeps 100 values * 600 rows * 2/3 (a%3 cycles evenly over each c) = 40000.
expected='wal
600000|180000300000|299700000|13199943
0|600|180300000
1|600|179700600
999|600|180299400
4096
ok
400000|120000000000
40000'
gm_run "$T/err" sqlite3 "$T/t.db" <"$T/script.sql" >"$T/out" || died $? "sqlite3"
[[ $(cat "$T/out") == "$expected" ]] || { diff <(echo "$expected") "$T/out" >&2; fail "wrong output"; }
gm_check_loaded "$T/err" 100000
echo "ok: sqlite3"
