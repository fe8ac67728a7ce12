/* realloc: growth from 1 B to 64 MiB, as vectors and string builders do. Each round grows 4
 * buffers in turn (so they get in each other's way) by small steps (+1..16 B up to 64 KiB, then
 * +1/16) and one buffer by doubling; every byte written is a function of its index, spot-checked
 * after each realloc and fully checked at the end. Run: realloc [rounds=2] [max=64Mi] */
#include "bench_common.h"

#define NBUF 4

static unsigned long g_errors;

static inline unsigned char pat(size_t i, unsigned k)
{
    return (unsigned char)((i ^ (i >> 9) ^ (i >> 17)) * 0x9d + k * 0x3b);
}

static void fill(unsigned char *b, size_t from, size_t to, unsigned k)
{
    for (size_t i = from; i < to; i++) b[i] = pat(i, k);
}

/* After realloc to a larger size: the old bytes must have come along. */
static void spot(const unsigned char *b, size_t old, unsigned k)
{
    if (old == 0) return;
    size_t at[3] = {0, old / 2, old - 1};
    for (int j = 0; j < 3; j++) g_errors += b[at[j]] != pat(at[j], k);
}

static uint64_t full(const unsigned char *b, size_t n, unsigned k)
{
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) {
        g_errors += b[i] != pat(i, k);
        s += b[i];
    }
    return s;
}

static unsigned char *grow(unsigned char *b, size_t old, size_t n, unsigned k)
{
    unsigned char *nb = realloc(b, n);
    if (!nb) { perror("realloc"); exit(2); }
    spot(nb, old, k);
    fill(nb, old, n, k);
    return nb;
}

int main(int argc, char **argv)
{
    unsigned rounds = (unsigned)bench_arg(argc, argv, 1, 2);
    size_t max = bench_arg(argc, argv, 2, (size_t)64 << 20);
    bench_rng rng;
    bench_rng_seed(&rng, 99);
    uint64_t sum = 0;
    unsigned long reallocs = 0;

    double t0 = bench_now();
    for (unsigned r = 0; r < rounds; r++) {
        unsigned char *buf[NBUF] = {0};
        size_t len[NBUF] = {0};
        for (int active = NBUF; active > 0;) {
            active = 0;
            for (unsigned k = 0; k < NBUF; k++) {
                if (len[k] >= max) continue;
                active++;
                size_t step = len[k] < 65536 ? 1 + (size_t)(bench_rand(&rng) % 16) : len[k] / 16;
                size_t n = len[k] + step > max ? max : len[k] + step;
                buf[k] = grow(buf[k], len[k], n, k + r);
                len[k] = n;
                reallocs++;
            }
        }
        for (unsigned k = 0; k < NBUF; k++) {
            sum += full(buf[k], len[k], k + r);
            free(buf[k]);
        }
        unsigned char *d = NULL;
        size_t dl = 0;
        for (size_t n = 1; n <= max; n *= 2, reallocs++) {
            d = grow(d, dl, n, 7 + r);
            dl = n;
        }
        sum += full(d, dl, 7 + r);
        free(d);
    }
    double el = bench_now() - t0;

    printf("realloc: allocator=%s rounds=%u max=%zu ops=%lu errors=%lu checksum=%016llx "
           "elapsed_s=%.4f\n",
           bench_malloc_name(), rounds, max, reallocs, g_errors, (unsigned long long)sum, el);
    return g_errors ? 1 : 0;
}
