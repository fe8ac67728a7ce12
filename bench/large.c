/* large: large allocations. A live set of SLOTS blocks of random log-distributed sizes 64 KiB ..
 * 32 MiB; each step frees a random slot (checking one byte per 4 KiB page) and allocates a new
 * block, touching every page. Page faults and zeroing dominate, so it measures how well an
 * allocator reuses large free memory. Run: large [steps=1500] [slots=12] [seed=5] */
#include "bench_common.h"

#define PAGE 4096
#define MAX_SIZE ((size_t)32 << 20)

static void touch(unsigned char *b, size_t n, uint64_t tag)
{
    bench_fill(b, n, tag);
    for (size_t i = PAGE; i + 8 < n; i += PAGE) b[i] = (unsigned char)(tag + (i >> 12));
}

static int check(const unsigned char *b, uint64_t *tag)
{
    int bad = bench_check(b, MAX_SIZE + PAGE, tag);
    if (bad) return 1;
    uint64_t w1;
    memcpy(&w1, b + 8, 8);
    size_t n = (size_t)(w1 ^ *tag);
    for (size_t i = PAGE; i + 8 < n; i += PAGE) bad |= b[i] != (unsigned char)(*tag + (i >> 12));
    return bad;
}

int main(int argc, char **argv)
{
    unsigned long steps = bench_arg(argc, argv, 1, 1500);
    unsigned long slots = bench_arg(argc, argv, 2, 12);
    unsigned long seed = bench_arg(argc, argv, 3, 5);
    if (slots == 0) slots = 1;
    bench_rng rng;
    bench_rng_seed(&rng, seed);
    unsigned char **slot = calloc(slots, sizeof *slot);
    if (!slot) { perror("calloc"); return 2; }
    uint64_t sum = 0, seq = 0, bytes = 0;
    unsigned long errors = 0;

    double t0 = bench_now();
    for (unsigned long s = 0; s < steps + slots; s++) { /* first SLOTS steps fill the set */
        unsigned long i = s < slots ? s : (unsigned long)(bench_rand(&rng) % slots);
        if (slot[i]) {
            uint64_t tag;
            errors += (unsigned long)check(slot[i], &tag);
            sum += tag;
            free(slot[i]);
        }
        size_t n = bench_log_size(&rng, 16, 25);     /* 64 KiB .. 32 MiB */
        slot[i] = malloc(n);
        if (!slot[i]) { perror("malloc"); return 2; }
        touch(slot[i], n, bench_mix64(seed ^ ++seq));
        bytes += n;
    }
    for (unsigned long i = 0; i < slots; i++) {
        if (!slot[i]) continue;
        uint64_t tag;
        errors += (unsigned long)check(slot[i], &tag);
        sum += tag;
        free(slot[i]);
    }
    free(slot);
    double el = bench_now() - t0;

    printf("large: allocator=%s steps=%lu slots=%lu bytes=%llu ops=%lu errors=%lu checksum=%016llx "
           "elapsed_s=%.4f\n",
           bench_malloc_name(), steps, slots, (unsigned long long)bytes, steps + slots, errors,
           (unsigned long long)sum, el);
    return errors ? 1 : 0;
}
