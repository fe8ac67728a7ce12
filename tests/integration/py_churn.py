"""py_churn.py: CPython dict/list/str/json churn with a fixed answer (no randomness that
depends on the allocator or hash seed). Run with PYTHONMALLOC=malloc so every object goes
through malloc. Prints one line per phase; case_python.sh compares them with known values."""
import json
import threading
import zlib

def crc(s):
    return zlib.crc32(s.encode() if isinstance(s, str) else s)

# 1. a 400k-entry dict of lists, half deleted and refilled (dict resize and free churn)
d = {}
for i in range(400_000):
    d[f"key-{i:07d}"] = [i, str(i) * (i % 7), (i, i * 2)]
for i in range(0, 400_000, 2):
    del d[f"key-{i:07d}"]
for i in range(200_000):
    d[f"new-{i}"] = {"n": i, "s": "x" * (i % 300)}
total = sum(v[0] if isinstance(v, list) else v["n"] for v in d.values())
print("dict", len(d), total)

# 2. strings: build, join, split, replace, encode (realloc-heavy)
parts = []
for i in range(300_000):
    parts.append("%d:%s" % (i, "abcdefghij"[: i % 11]))
s = "|".join(parts)
s2 = s.replace("abc", "ABCDEF").upper()
words = s2.split("|")
print("str", len(s), len(s2), len(words), crc(s2))

# 3. json round trip of a nested document
doc = [{"id": i, "name": "item%d" % i, "tags": ["t%d" % (i % 13)] * (i % 5),
        "nested": {"a": [i, i + 1, {"b": str(i)}]}} for i in range(80_000)]
text = json.dumps(doc, sort_keys=True)
back = json.loads(text)
assert back == doc
print("json", len(text), crc(text))

# 4. lists: sort, slice, grow, shrink
lst = [(i * 7919) % 1_000_003 for i in range(500_000)]
lst.sort()
lst = lst[::3] + [x * 2 for x in lst[1::3]]
del lst[1000:200_000]
print("list", len(lst), sum(lst) % 1_000_000_007)

# 5. threads: each builds and tears down its own structures; objects cross threads
results = [None] * 4
def work(k):
    acc = []
    for i in range(60_000):
        acc.append({"k": k, "v": [str(i)] * 3})
    results[k] = acc
threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
# freed in this thread, allocated in the others
n = sum(len(r) for r in results) + sum(int(r[-1]["v"][0]) for r in results)
results = None
print("threads", n)
