/* larson: larson-style server. THREADS threads each do OPS replacements of random slots of one
 * shared pool (atomic exchange), so a block is usually freed by a thread other than its
 * allocator. Sizes 16..512 B uniform. Run: larson [threads=2] [ops_per_thread=6000000]
 * [slots=20000]   (prints checksum and elapsed_s) */
#include "bench_common.h"

#include <pthread.h>
#include <stdatomic.h>

#define MIN_SIZE 16
#define MAX_SIZE 512

static _Atomic(void *) *g_pool;
static unsigned long g_slots, g_ops;

typedef struct {
    unsigned id;
    pthread_t th;
    uint64_t sum;
    unsigned long errors;
} worker;

static void *run(void *arg)
{
    /* The counters stay on this stack until the end. The workers' structs sit side by side
     * in one calloc block: updated in place, they shared cache lines between threads, at a
     * cost that depended on where each allocator put the block. Only the inputs are copied
     * in (main may still be writing th). */
    worker *shared = arg, local = {.id = shared->id}, *w = &local;
    bench_rng rng;
    bench_rng_seed(&rng, 7000 + w->id);
    for (unsigned long op = 1; op <= g_ops; op++) {
        uint64_t x = bench_rand(&rng);
        unsigned long i = (unsigned long)((x >> 20) % g_slots);
        size_t n = MIN_SIZE + (size_t)(x % (MAX_SIZE - MIN_SIZE + 1));
        void *p = malloc(n);
        if (!p) { perror("malloc"); exit(2); }
        bench_fill(p, n, bench_mix64(((uint64_t)(w->id + 1) << 40) | op));
        void *old = atomic_exchange_explicit(&g_pool[i], p, memory_order_acq_rel);
        uint64_t tag;
        w->errors += (unsigned long)bench_check(old, MAX_SIZE, &tag);
        w->sum += tag;
        free(old);
    }
    shared->sum = w->sum;
    shared->errors = w->errors;
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned nt = (unsigned)bench_arg(argc, argv, 1, 2);
    g_ops = bench_arg(argc, argv, 2, 6000000);
    g_slots = bench_arg(argc, argv, 3, 20000);
    if (nt == 0) nt = 1;
    if (g_slots == 0) g_slots = 1;

    double t0 = bench_now();
    g_pool = malloc(g_slots * sizeof *g_pool);
    worker *w = calloc(nt, sizeof *w);
    if (!g_pool || !w) { perror("malloc"); return 2; }
    bench_rng rng;
    bench_rng_seed(&rng, 6999);
    for (unsigned long i = 0; i < g_slots; i++) {
        size_t n = MIN_SIZE + (size_t)(bench_rand(&rng) % (MAX_SIZE - MIN_SIZE + 1));
        void *p = malloc(n);
        if (!p) { perror("malloc"); return 2; }
        bench_fill(p, n, bench_mix64(i));
        atomic_init(&g_pool[i], p);
    }
    for (unsigned i = 0; i < nt; i++) {
        w[i].id = i;
        if (pthread_create(&w[i].th, NULL, run, &w[i]) != 0) { perror("pthread_create"); return 2; }
    }
    uint64_t sum = 0;
    unsigned long errors = 0;
    for (unsigned i = 0; i < nt; i++) {
        pthread_join(w[i].th, NULL);
        sum += w[i].sum;
        errors += w[i].errors;
    }
    for (unsigned long i = 0; i < g_slots; i++) {
        void *p = atomic_load(&g_pool[i]);
        uint64_t tag;
        errors += (unsigned long)bench_check(p, MAX_SIZE, &tag);
        sum += tag;
        free(p);
    }
    free((void *)g_pool);
    free(w);
    double el = bench_now() - t0;

    printf("larson: allocator=%s threads=%u ops=%lu slots=%lu errors=%lu checksum=%016llx "
           "elapsed_s=%.4f\n",
           bench_malloc_name(), nt, g_ops * nt, g_slots, errors, (unsigned long long)sum, el);
    return errors ? 1 : 0;
}
