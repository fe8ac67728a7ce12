/* churn: single-threaded heap churn. A live set of SLOTS blocks (log-distributed 16 B..4 KiB,
 * 1% 4..64 KiB) is refreshed by replacing a random slot each step; blocks are tagged and checked.
 * Run: churn [steps=10000000] [slots=100000] [seed=42]   (prints checksum and elapsed_s) */
#include "bench_common.h"

#define MAX_SIZE ((size_t)1 << 16)

static size_t pick_size(bench_rng *r)
{
    if (bench_rand(r) % 100 == 0) return bench_log_size(r, 12, 16); /* 4 KiB .. 64 KiB */
    return bench_log_size(r, 4, 12);                                 /* 16 B .. 4 KiB */
}

int main(int argc, char **argv)
{
    unsigned long steps = bench_arg(argc, argv, 1, 10000000);
    unsigned long slots = bench_arg(argc, argv, 2, 100000);
    unsigned long seed = bench_arg(argc, argv, 3, 42);
    if (slots == 0) slots = 1;

    bench_rng rng;
    bench_rng_seed(&rng, seed);
    uint64_t sum = 0, seq = 0, bytes = 0;
    unsigned long errors = 0;

    double t0 = bench_now();
    void **slot = malloc(slots * sizeof *slot);
    if (!slot) { perror("malloc"); return 2; }
    for (unsigned long i = 0; i < slots; i++) {
        size_t n = pick_size(&rng);
        slot[i] = malloc(n);
        if (!slot[i]) { perror("malloc"); return 2; }
        bench_fill(slot[i], n, bench_mix64(seed ^ ++seq));
        bytes += n;
    }
    for (unsigned long s = 0; s < steps; s++) {
        unsigned long i = (unsigned long)(bench_rand(&rng) % slots);
        uint64_t tag;
        errors += (unsigned long)bench_check(slot[i], MAX_SIZE, &tag);
        sum += tag;
        free(slot[i]);
        size_t n = pick_size(&rng);
        slot[i] = malloc(n);
        if (!slot[i]) { perror("malloc"); return 2; }
        bench_fill(slot[i], n, bench_mix64(seed ^ ++seq));
        bytes += n;
    }
    for (unsigned long i = 0; i < slots; i++) {
        uint64_t tag;
        errors += (unsigned long)bench_check(slot[i], MAX_SIZE, &tag);
        sum += tag;
        free(slot[i]);
    }
    free(slot);
    double el = bench_now() - t0;

    printf("churn: allocator=%s steps=%lu slots=%lu bytes=%llu errors=%lu checksum=%016llx "
           "elapsed_s=%.4f\n",
           bench_malloc_name(), steps, slots, (unsigned long long)bytes, errors,
           (unsigned long long)sum, el);
    return errors ? 1 : 0;
}
