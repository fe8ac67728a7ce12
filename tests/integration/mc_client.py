"""mc_client.py PORT: a bounded memcached client for the integration suite. Four threads,
each with its own key space and connection (reopened every 500 ops), do a fixed sequence of
set/get/delete/multi-get/append/incr over the text protocol, check every reply against a
local model, read back every key, and compare the server's item count with the model.
Prints the totals; any mismatch exits 1."""
import socket
import sys
import threading

PORT, THREADS, OPS, KEYS = int(sys.argv[1]), 4, 15000, 1500
errors, totals, lock = [], {}, threading.Lock()


def value(key, i):
    n = (i * 7919) % 24000 + 1  # 1 B .. 24 KB
    unit = f"{key}#{i};".encode()
    return (unit * (n // len(unit) + 1))[:n]


class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
        self.f = self.s.makefile("rb")

    def cmd(self, line, data=None):
        msg = line.encode() + b"\r\n" + (data + b"\r\n" if data is not None else b"")
        self.s.sendall(msg)
        return self.f.readline().rstrip(b"\r\n")

    def get(self, *keys):
        self.s.sendall(b"get " + " ".join(keys).encode() + b"\r\n")
        out = {}
        while (line := self.f.readline().rstrip(b"\r\n")) != b"END":
            _, k, _, n = line.split()
            out[k.decode()] = self.f.read(int(n) + 2)[:-2]
        return out


def worker(t):
    c, model, n = Conn(), {}, {"set": 0, "get": 0, "hit": 0, "miss": 0, "del": 0}

    def check_get(*keys):
        got = c.get(*keys)
        n["get"] += len(keys)
        for k in keys:
            if got.get(k) != model.get(k):
                errors.append(f"thread {t}: get {k}: {len(got.get(k) or b'')} B, want {len(model.get(k) or b'')} B")
            n["hit" if k in got else "miss"] += 1

    ctr = 0
    c.cmd(f"set t{t}:ctr 0 0 1", b"0")
    for i in range(OPS):
        if i % 500 == 499:  # connection churn: the server allocates per-connection state
            c.s.close()
            c = Conn()
        k = f"t{t}:k{(i * 31) % KEYS}"
        v = value(k, i)
        if c.cmd(f"set {k} 0 0 {len(v)}", v) != b"STORED":
            errors.append(f"thread {t}: set {k} failed")
        model[k] = v
        n["set"] += 1
        check_get(k)
        if i % 10 == 3:
            r = c.cmd(f"delete {k}")
            if r != b"DELETED":
                errors.append(f"thread {t}: delete {k}: {r!r}")
            del model[k]
            n["del"] += 1
            check_get(k)
        if i % 7 == 0:
            check_get(*[f"t{t}:k{(i + j * 97) % KEYS}" for j in range(12)])
        if i % 13 == 5 and k in model:
            extra = b"+%d" % i
            if c.cmd(f"append {k} 0 0 {len(extra)}", extra) != b"STORED":
                errors.append(f"thread {t}: append {k} failed")
            model[k] += extra
        ctr += i % 100
        if c.cmd(f"incr t{t}:ctr {i % 100}") != str(ctr).encode():
            errors.append(f"thread {t}: incr gave the wrong value")
    for j in range(0, KEYS, 50):
        check_get(*[f"t{t}:k{x}" for x in range(j, j + 50)])
    n["live"] = len(model)
    with lock:
        for key, val in n.items():
            totals[key] = totals.get(key, 0) + val
    c.s.close()


threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
for th in threads:
    th.start()
for th in threads:
    th.join()
c = Conn()
c.s.sendall(b"stats\r\n")
stats = {}
while (line := c.f.readline().rstrip(b"\r\n")) != b"END":
    _, k, v = line.decode().split(" ", 2)
    stats[k] = v
if int(stats["curr_items"]) != totals["live"] + THREADS:
    errors.append(f"server has {stats['curr_items']} items, the model {totals['live'] + THREADS}")
if stats["evictions"] != "0":
    errors.append(f"server evicted {stats['evictions']} items: raise -m")
if errors:
    print(f"{len(errors)} errors, first: " + "; ".join(errors[:5]))
    sys.exit(1)
print(" ".join(f"{k} {totals[k]}" for k in sorted(totals)))
