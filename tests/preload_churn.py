# preload_churn.py: dict/list/str/json churn on 4 threads plus a fork, run under
# LD_PRELOAD=libgomalloc.so by preload_run.sh; prints a fixed result and whether the
# library is mapped in this process.
import json, sys, threading, os
def churn(seed):
    d = {}
    for i in range(60000):
        k = "k%d_%d" % (seed, i * 7919 % 100003)
        d[k] = [i, str(i) * (i % 17), {"x": i % 13}]
    s = json.dumps(d, sort_keys=True)
    back = json.loads(s)
    total = sum(v[0] + len(v[1]) + v[2]["x"] for v in back.values())
    parts = "".join(sorted(back)[::997])
    return total + len(s) + len(parts)
results = [0] * 4
def worker(n):
    results[n] = churn(n)
ts = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
for t in ts: t.start()
for t in ts: t.join()
pid = os.fork()
if pid == 0:
    os._exit(0 if churn(9) > 0 else 1)
_, st = os.waitpid(pid, 0)
print("result", sum(results), "child", st)
with open("/proc/self/maps") as f:
    print("gomalloc mapped:", any("libgomalloc" in l for l in f))
