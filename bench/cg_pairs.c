/* cg_pairs: the callgrind probe. After a fixed warm-up, does N steady-state malloc+free pairs of
 * sizes 16..1024 B (fixed table); compare.sh --callgrind runs it with N and with 2N and divides
 * the difference in instructions by N. Run: cg_pairs N [warmup=20000] */
#include "bench_common.h"

#define TABLE 4096

int main(int argc, char **argv)
{
    unsigned long n = bench_arg(argc, argv, 1, 1000000);
    unsigned long warm = bench_arg(argc, argv, 2, 20000);
    static unsigned short size[TABLE];
    bench_rng rng;
    bench_rng_seed(&rng, 1);
    for (unsigned i = 0; i < TABLE; i++) size[i] = (unsigned short)(16 + bench_rand(&rng) % 1009);

    /* A small live set, so the pairs run against a heap that is not empty. */
    void *live[64];
    for (unsigned i = 0; i < 64; i++) live[i] = malloc(size[i]);

    unsigned long total = warm + n;
    uint64_t acc = 0;
    for (unsigned long i = 0; i < total; i++) {
        unsigned char *p = malloc(size[i & (TABLE - 1)]);
        p[0] = (unsigned char)i;
        acc += p[0];
        free(p);
    }
    for (unsigned i = 0; i < 64; i++) free(live[i]);
    printf("cg_pairs: allocator=%s pairs=%lu warmup=%lu acc=%llu\n", bench_malloc_name(), n, warm,
           (unsigned long long)acc);
    return 0;
}
