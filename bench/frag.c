/* frag: fragmentation and RSS. PHASES phases each allocate MIB MiB in one size band (bands rotate:
 * 16..128 B, 128 B..1 KiB, 1..8 KiB, 8..64 KiB, mixed); 7/8 of the objects die at the phase's end
 * (freed in random order), 1/8 live two more phases and 1/64 live to the end, so sparse survivors
 * pin memory that the next band cannot reuse. Prints live bytes at the peak and at the end, and
 * the RSS at the end (/proc/self/statm, long-lived objects still live). Run: frag [phases=15] [mib=32] */
#include "bench_common.h"

#define MAX_SIZE ((size_t)64 << 10)

typedef struct { void *p; size_t n; } obj;
typedef struct { obj *v; size_t len, cap; } vec;

static uint64_t g_sum, g_live, g_live_peak;
static unsigned long g_errors, g_ops;

static void push(vec *v, void *p, size_t n)
{
    if (v->len == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 1024;
        v->v = realloc(v->v, v->cap * sizeof *v->v);
        if (!v->v) { perror("realloc"); exit(2); }
    }
    v->v[v->len++] = (obj){p, n};
}

static void drop(vec *v)
{
    for (size_t i = 0; i < v->len; i++) {
        uint64_t tag;
        g_errors += (unsigned long)bench_check(v->v[i].p, MAX_SIZE, &tag);
        g_sum += tag;
        g_live -= v->v[i].n;
        free(v->v[i].p);
    }
    v->len = 0;
}

static size_t band_size(bench_rng *r, unsigned band)
{
    static const unsigned lo[5] = {4, 7, 10, 13, 4}, hi[5] = {7, 10, 13, 16, 16};
    return bench_log_size(r, lo[band % 5], hi[band % 5]);
}

int main(int argc, char **argv)
{
    unsigned phases = (unsigned)bench_arg(argc, argv, 1, 15);
    uint64_t per_phase = (uint64_t)bench_arg(argc, argv, 2, 32) << 20;
    bench_rng rng;
    bench_rng_seed(&rng, 3);
    vec shortv = {0}, longv = {0}, medium[3] = {{0}};
    uint64_t seq = 0;

    double t0 = bench_now();
    for (unsigned ph = 0; ph < phases; ph++) {
        drop(&medium[ph % 3]); /* allocated three phases ago */
        for (uint64_t bytes = 0; bytes < per_phase;) {
            size_t n = band_size(&rng, ph);
            void *p = malloc(n);
            if (!p) { perror("malloc"); return 2; }
            bench_fill(p, n, bench_mix64(++seq));
            bytes += n;
            g_live += n;
            g_ops++;
            uint64_t x = bench_rand(&rng) % 64;
            push(x == 0 ? &longv : x < 8 ? &medium[ph % 3] : &shortv, p, n);
        }
        if (g_live > g_live_peak) g_live_peak = g_live;
        for (size_t i = shortv.len; i > 1; i--) { /* Fisher-Yates: free in random order */
            size_t j = (size_t)(bench_rand(&rng) % i);
            obj t = shortv.v[i - 1];
            shortv.v[i - 1] = shortv.v[j];
            shortv.v[j] = t;
        }
        drop(&shortv);
    }
    for (int k = 0; k < 3; k++) drop(&medium[k]);
    uint64_t live_end = g_live;
    unsigned long rss_end = bench_rss_kib();
    drop(&longv);
    free(shortv.v);
    free(longv.v);
    for (int k = 0; k < 3; k++) free(medium[k].v);
    double el = bench_now() - t0;

    printf("frag: allocator=%s phases=%u ops=%lu live_peak_kib=%llu live_end_kib=%llu "
           "rss_end_kib=%lu errors=%lu checksum=%016llx elapsed_s=%.4f\n",
           bench_malloc_name(), phases, g_ops, (unsigned long long)(g_live_peak >> 10),
           (unsigned long long)(live_end >> 10), rss_end, g_errors, (unsigned long long)g_sum, el);
    return g_errors ? 1 : 0;
}
