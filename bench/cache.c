/* cache: Hoard's cache-scratch and cache-thrash (false sharing). Each of THREADS threads loops
 * ITERS/THREADS times: malloc OBJSIZE bytes, write every word REPS times, check, free. In scratch
 * mode the main thread first allocates one object per thread back to back and each thread frees
 * the one it is handed (passive false sharing: a LIFO cache hands that slot right back).
 * Run: cache scratch|thrash [threads=2] [iters=2000000] [objsize=16] [reps=200] */
#include "bench_common.h"

#include <pthread.h>

static unsigned long g_iters, g_reps;
static size_t g_objsize;

typedef struct {
    unsigned id;
    pthread_t th;
    void *handed; /* scratch: the object allocated by main, freed first by this thread */
    uint64_t sum;
    unsigned long errors;
} worker;

static void *run(void *arg)
{
    /* The counters stay on this stack until the end. The workers' structs sit side by side
     * in one calloc block: updated in place, they shared cache lines between threads, at a
     * cost that depended on where each allocator put the block. Only the inputs are copied
     * in (main may still be writing th). */
    worker *shared = arg, local = {.id = shared->id, .handed = shared->handed}, *w = &local;
    if (w->handed) {
        uint64_t tag;
        w->errors += (unsigned long)bench_check(w->handed, g_objsize, &tag);
        w->sum += tag;
        free(w->handed);
    }
    size_t words = g_objsize / 8;
    for (unsigned long i = 1; i <= g_iters; i++) {
        uint64_t tag = bench_mix64(((uint64_t)(w->id + 1) << 40) | i);
        volatile uint64_t *p = malloc(g_objsize);
        if (!p) { perror("malloc"); exit(2); }
        bench_fill((void *)p, g_objsize, tag);
        for (unsigned long r = 0; r < g_reps; r++)
            for (size_t k = 0; k < words; k++) p[k] = p[k] + 1;
        for (size_t k = 0; k < words; k++) p[k] = p[k] - g_reps;
        uint64_t got;
        w->errors += (unsigned long)bench_check((void *)p, g_objsize, &got) + (got != tag);
        w->sum += got;
        free((void *)p);
    }
    shared->sum = w->sum;
    shared->errors = w->errors;
    return NULL;
}

int main(int argc, char **argv)
{
    int scratch = argc > 1 && strcmp(argv[1], "scratch") == 0;
    if (argc < 2 || (!scratch && strcmp(argv[1], "thrash") != 0)) {
        fprintf(stderr, "usage: cache scratch|thrash [threads] [iters] [objsize] [reps]\n");
        return 2;
    }
    unsigned nt = (unsigned)bench_arg(argc, argv, 2, 2);
    unsigned long iters = bench_arg(argc, argv, 3, 2000000);
    g_objsize = bench_arg(argc, argv, 4, 16);
    g_reps = bench_arg(argc, argv, 5, 200);
    if (nt == 0) nt = 1;
    if (g_objsize < 16) g_objsize = 16;
    g_objsize &= ~(size_t)7;
    g_iters = iters / nt;

    worker *w = calloc(nt, sizeof *w);
    if (!w) { perror("calloc"); return 2; }
    double t0 = bench_now();
    for (unsigned i = 0; i < nt; i++) {
        w[i].id = i;
        if (scratch) {
            w[i].handed = malloc(g_objsize);
            if (!w[i].handed) { perror("malloc"); return 2; }
            bench_fill(w[i].handed, g_objsize, bench_mix64(0xcafe0000ULL + i));
        }
    }
    for (unsigned i = 0; i < nt; i++)
        if (pthread_create(&w[i].th, NULL, run, &w[i]) != 0) { perror("pthread_create"); return 2; }
    uint64_t sum = 0;
    unsigned long errors = 0;
    for (unsigned i = 0; i < nt; i++) {
        pthread_join(w[i].th, NULL);
        sum += w[i].sum;
        errors += w[i].errors;
    }
    double el = bench_now() - t0;
    free(w);

    printf("cache-%s: allocator=%s threads=%u ops=%lu objsize=%zu reps=%lu errors=%lu "
           "checksum=%016llx elapsed_s=%.4f\n",
           scratch ? "scratch" : "thrash", bench_malloc_name(), nt, g_iters * nt, g_objsize, g_reps,
           errors, (unsigned long long)sum, el);
    return errors ? 1 : 0;
}
