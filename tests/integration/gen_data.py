"""gen_data.py OUT MIB: writes MIB MiB of deterministic, moderately compressible text (words
from a fixed vocabulary, blocks cut from a 16 MiB base at pseudo-random offsets) for the
compressor round trip. Fast: about 1 s per 100 MiB."""
import random
import sys

out, mib = sys.argv[1], int(sys.argv[2])
rng = random.Random(20240101)
vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 11)))
         for _ in range(6000)]
base = " ".join(rng.choices(vocab, k=2_700_000)).encode()[: 16 << 20]
block = 1 << 20
with open(out, "wb") as f:
    for i in range(mib):
        off = rng.randrange(len(base) - block)
        head = b"block %d\n" % i
        f.write(head + base[off : off + block - len(head)])
