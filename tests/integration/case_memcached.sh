#!/bin/bash
# case_memcached.sh LIBGOMALLOC_SO: memcached (4 worker threads) under the allocator on a
# free 127.0.0.1 port; mc_client.py (not preloaded) drives a fixed, checked set/get/delete/
# append/incr load over 4 connections. The server is always killed on the way out.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need memcached memcached

free_port() { "$GM_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
stop_server() {
  local pid
  pid=$(cat "$T/mc.pid" 2>/dev/null) && kill -TERM "$pid" 2>/dev/null
  [[ -n ${job:-} ]] && { wait "$job" 2>/dev/null || true; }
}
gm_cleanup_hooks+=(stop_server)

up=no
for _ in 1 2 3; do  # the port could be taken between free_port and bind: retry
  port=$(free_port)
  rm -f "$T/mc.pid"
  gm_run "$T/err" memcached -l 127.0.0.1 -p "$port" -U 0 -t 4 -m 512 -c 64 -u "$(id -un)" \
    -P "$T/mc.pid" &
  job=$!
  for _ in $(seq 100); do
    if [[ -s $T/mc.pid ]] && "$GM_PY" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$port" 2>/dev/null; then
      up=yes; break
    fi
    kill -0 "$job" 2>/dev/null || break
    sleep 0.1
  done
  [[ $up == yes ]] && break
  stop_server
done
[[ $up == yes ]] || { show_err "$T/err"; fail "memcached did not start"; }
pid=$(cat "$T/mc.pid")
if [[ $GM_ALLOC == gomalloc ]]; then
  grep -q libgomalloc "/proc/$pid/maps" || fail "libgomalloc not mapped in memcached (pid $pid)"
fi

timeout 120 "$GM_PY" "$GM_HERE/mc_client.py" "$port" >"$T/out" || fail "client: $(cat "$T/out")"
expected='del 6000 get 174864 hit 153320 live 5400 miss 21544 set 60000'
[[ $(cat "$T/out") == "$expected" ]] || fail "client totals: $(cat "$T/out"), expected $expected"
kill -0 "$pid" || fail "memcached died during the run"
kill -TERM "$pid"
rc=0
wait "$job" || rc=$?
job=
[[ $rc == 0 ]] || died $rc "memcached after SIGTERM"
gm_check_loaded "$T/err" 200
echo "ok: memcached ($(cat "$T/out"))"
