#!/bin/bash
# case_git.sh LIBGOMALLOC_SO: git (and every git subprocess) under the allocator: init, add
# and commit 6000 files, modify 1000, commit again, gc --aggressive (threaded delta search),
# fsck, log, diff. Dates and names are fixed, so the commit ids are known in advance.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need git git

export GIT_AUTHOR_NAME=gm GIT_AUTHOR_EMAIL=gm@example.invalid GIT_COMMITTER_NAME=gm \
  GIT_COMMITTER_EMAIL=gm@example.invalid GIT_AUTHOR_DATE='2024-01-01T00:00:00Z' \
  GIT_COMMITTER_DATE='2024-01-01T00:00:00Z' GIT_CONFIG_NOSYSTEM=1 HOME=$T LC_ALL=C
g() { gm_run "$T/err" git -C "$T/repo" -c gc.autoDetach=false -c pack.threads=2 "$@" || died $? "git $1"; }

# 60 directories of 100 files each, deterministic text (written by python, not under test)
"$GM_PY" - "$T/repo" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(60):
    os.makedirs(f"{root}/dir{d:02d}", exist_ok=True)
    for f in range(100):
        n = d * 100 + f
        with open(f"{root}/dir{d:02d}/file{f:03d}.txt", "w") as fh:
            fh.write("".join(f"line {i} of file {n}: {'abcdefgh' * (1 + (n + i) % 9)}\n" for i in range(40 + n % 60)))
PY
g init -q -b main
g add -A
g commit -q -m first
# change every sixth file: 1000 files modified in the second commit
"$GM_PY" -c 'import sys, glob
for i, p in enumerate(sorted(glob.glob(sys.argv[1] + "/dir*/file*.txt"))):
    if i % 6 == 0:
        open(p, "a").write("appended line %d\n" % i)' "$T/repo"
g commit -q -a -m second
g gc -q --aggressive
g fsck --no-progress --strict >"$T/fsck" || fail "git fsck failed: $(cat "$T/fsck")"

{
  g rev-list --count HEAD
  g ls-files | wc -l
  g diff --shortstat HEAD~1 HEAD
  g count-objects -v | grep -E '^(count|in-pack|packs):'
  g log --format='%H %s'
  g log -p | wc -l
} >"$T/out"
# in-pack: 6000 + 1000 blobs, 61 trees per commit, 2 commits. The ids were recorded with
# glibc's malloc, which is the point: the same bytes in must give the same objects out.
expected='2
6000
 1000 files changed, 1000 insertions(+)
count: 0
in-pack: 7124
packs: 1
202e922cd75c2e1dc392d3bfde1041076178830f second
d93c0f6a5464e8f3f6e50db24b9986cb0a3946b0 first
462013'
got=$(cat "$T/out")
[[ $got == "$expected" ]] || { diff <(echo "$expected") "$T/out" >&2; fail "wrong output"; }
gm_check_loaded "$T/err" 10000
echo "ok: git"
