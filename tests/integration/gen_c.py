"""gen_c.py OUT.c NFUNCS: writes a large C program (NFUNCS functions with loops, switches
and lookup tables, chained from main) and prints the value the compiled program must print,
computed here in Python with the same 64-bit arithmetic."""
import random
import sys

out, nfuncs = sys.argv[1], int(sys.argv[2])
M = (1 << 64) - 1
rng = random.Random(4242)
funcs, lines = [], ["#include <stdio.h>", "#include <stdint.h>", ""]
for i in range(nfuncs):
    k1, k2, k3 = (rng.getrandbits(64) | 1 for _ in range(3))
    s, rounds = rng.randint(7, 41), rng.randint(3, 12)
    table = [rng.getrandbits(32) for _ in range(16)]
    funcs.append((k1, k2, k3, s, rounds, table))
    lines += [
        f"static const uint64_t t{i}[16] = {{{', '.join(f'{v}u' for v in table)}}};",
        f"static uint64_t f{i}(uint64_t x) {{",
        f"  uint64_t a = x * {k1}u + {k2}u;",
        f"  for (int j = 0; j < {rounds}; j++) {{ a ^= a >> {s}; a *= {k3}u; a += t{i}[(a + j) & 15]; }}",
        "  switch (a % 5) {",
        f"  case 0: a += {table[0]}u; break;",
        f"  case 1: a ^= {table[1]}u; break;",
        "  case 2: a = a * 3u; break;",
        "  case 3: a = (a << 7) | (a >> 57); break;",
        f"  default: a -= {table[2]}u;",
        "  }",
        "  return a;",
        "}",
    ]
lines += ["int main(void) {", "  uint64_t x = 1;"]
lines += [f"  x = f{i}(x);" for i in range(nfuncs)]
lines += ['  printf("%llu\\n", (unsigned long long)x);', "  return 0;", "}"]
with open(out, "w") as f:
    f.write("\n".join(lines) + "\n")

x = 1
for k1, k2, k3, s, rounds, table in funcs:
    a = (x * k1 + k2) & M
    for j in range(rounds):
        a ^= a >> s
        a = (a * k3) & M
        a = (a + table[(a + j) & 15]) & M
    r = a % 5
    if r == 0:
        a = (a + table[0]) & M
    elif r == 1:
        a ^= table[1]
    elif r == 2:
        a = (a * 3) & M
    elif r == 3:
        a = ((a << 7) | (a >> 57)) & M
    else:
        a = (a - table[2]) & M
    x = a
print(x)
