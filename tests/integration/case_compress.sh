#!/bin/bash
# case_compress.sh LIBGOMALLOC_SO: 200 MiB of generated text through zstd and xz, both
# multi-threaded (-T2), compress and decompress under the allocator; the round trips must
# give back the exact bytes (sha256), and the compressed files must pass their own tests.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need zstd zstd
need xz xz-utils

"$GM_PY" "$GM_HERE/gen_data.py" "$T/data" 200
want=$(sha256sum <"$T/data")
gm_run "$T/err" zstd -q -T2 -12 --long=27 "$T/data" -o "$T/data.zst" || died $? "zstd compress"
gm_run "$T/err" zstd -q -d --long=27 -c "$T/data.zst" >"$T/back" || died $? "zstd decompress"
[[ $(sha256sum <"$T/back") == "$want" ]] || fail "zstd round trip changed the data"
gm_run "$T/err" zstd -q -t --long=27 "$T/data.zst" || fail "zstd -t"
gm_run "$T/err" xz -T2 -1 -c "$T/data" >"$T/data.xz" || died $? "xz compress"
gm_run "$T/err" xz -T2 -d -c "$T/data.xz" >"$T/back" || died $? "xz decompress"
[[ $(sha256sum <"$T/back") == "$want" ]] || fail "xz round trip changed the data"
gm_run "$T/err" xz -t "$T/data.xz" || fail "xz -t"
echo "zstd $(stat -c %s "$T/data.zst") B, xz $(stat -c %s "$T/data.xz") B, from $(stat -c %s "$T/data") B"
gm_check_loaded "$T/err" 20
echo "ok: zstd and xz round trips"
