/* mstress: mimalloc-bench's mstress pattern. ROUNDS times, THREADS fresh threads each replace
 * random slots of a private live set with random sizes (mostly 16 B..1 KiB, 10% to 32 KiB, 1% to
 * 256 KiB) and swap 1 in 16 blocks through a shared transfer array, so blocks outlive the thread
 * that allocated them and are freed by threads of later rounds (thread churn + cross-thread frees).
 * Run: mstress [threads=2] [rounds=10] [total_ops=16000000] [live=2000]   (checksum, elapsed_s) */
#include "bench_common.h"

#include <pthread.h>
#include <stdatomic.h>

#define MAX_SIZE ((size_t)256 << 10)
#define TRANSFER 1024

static _Atomic(void *) g_transfer[TRANSFER];
static unsigned long g_ops, g_live;

typedef struct {
    unsigned id, round;
    pthread_t th;
    uint64_t sum;
    unsigned long errors;
} worker;

static size_t pick_size(bench_rng *r)
{
    uint64_t x = bench_rand(r) % 100;
    if (x == 0) return bench_log_size(r, 15, 18); /* 32 KiB .. 256 KiB */
    if (x < 11) return bench_log_size(r, 10, 15); /* 1 KiB .. 32 KiB */
    return bench_log_size(r, 4, 10);              /* 16 B .. 1 KiB */
}

static void retire(worker *w, void *p)
{
    if (!p) return;
    uint64_t tag;
    w->errors += (unsigned long)bench_check(p, MAX_SIZE, &tag);
    w->sum += tag;
    free(p);
}

static void *run(void *arg)
{
    /* The counters stay on this stack until the end. The workers' structs sit side by side
     * in one calloc block: updated in place, they shared cache lines between threads, at a
     * cost that depended on where each allocator put the block. Only the inputs are copied
     * in (main may still be writing th). */
    worker *shared = arg, local = {.id = shared->id, .round = shared->round}, *w = &local;
    bench_rng rng;
    bench_rng_seed(&rng, ((uint64_t)w->round << 20) | w->id);
    void **live = calloc(g_live, sizeof *live);
    if (!live) { perror("calloc"); exit(2); }
    uint64_t seq = 0, base = ((uint64_t)w->round << 48) | ((uint64_t)(w->id + 1) << 32);
    for (unsigned long op = 0; op < g_ops; op++) {
        uint64_t x = bench_rand(&rng);
        unsigned long i = (unsigned long)((x >> 16) % g_live);
        if ((x & 15) == 0) { /* hand our block to whoever takes this transfer slot next */
            unsigned long t = (unsigned long)((x >> 40) % TRANSFER);
            live[i] = atomic_exchange_explicit(&g_transfer[t], live[i], memory_order_acq_rel);
            continue;
        }
        retire(w, live[i]);
        size_t n = pick_size(&rng);
        live[i] = malloc(n);
        if (!live[i]) { perror("malloc"); exit(2); }
        bench_fill(live[i], n, bench_mix64(base | ++seq));
    }
    /* Leave half the live set behind in the transfer array's place: free the rest. */
    for (unsigned long i = 0; i < g_live; i++) {
        if ((i & 1) && live[i]) {
            unsigned long t = (unsigned long)((bench_rand(&rng) >> 20) % TRANSFER);
            live[i] = atomic_exchange_explicit(&g_transfer[t], live[i], memory_order_acq_rel);
        }
        retire(w, live[i]);
    }
    free(live);
    shared->sum = w->sum;
    shared->errors = w->errors;
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned nt = (unsigned)bench_arg(argc, argv, 1, 2);
    unsigned rounds = (unsigned)bench_arg(argc, argv, 2, 10);
    unsigned long total = bench_arg(argc, argv, 3, 16000000);
    g_live = bench_arg(argc, argv, 4, 2000);
    if (nt == 0) nt = 1;
    if (rounds == 0) rounds = 1;
    if (g_live == 0) g_live = 1;
    g_ops = total / ((unsigned long)nt * rounds);

    worker *w = calloc(nt, sizeof *w);
    if (!w) { perror("calloc"); return 2; }
    uint64_t sum = 0;
    unsigned long errors = 0;
    double t0 = bench_now();
    for (unsigned r = 0; r < rounds; r++) {
        for (unsigned i = 0; i < nt; i++) {
            w[i] = (worker){.id = i, .round = r};
            if (pthread_create(&w[i].th, NULL, run, &w[i]) != 0) { perror("pthread_create"); return 2; }
        }
        for (unsigned i = 0; i < nt; i++) {
            pthread_join(w[i].th, NULL);
            sum += w[i].sum;
            errors += w[i].errors;
        }
    }
    worker main_w = {0};
    for (unsigned t = 0; t < TRANSFER; t++) retire(&main_w, atomic_exchange(&g_transfer[t], NULL));
    sum += main_w.sum;
    errors += main_w.errors;
    double el = bench_now() - t0;
    free(w);

    printf("mstress: allocator=%s threads=%u rounds=%u ops=%lu live=%lu errors=%lu checksum=%016llx "
           "elapsed_s=%.4f\n",
           bench_malloc_name(), nt, rounds, g_ops * nt * rounds, g_live, errors,
           (unsigned long long)sum, el);
    return errors ? 1 : 0;
}
