/* prodcons: xmalloc-style producer/consumer. Producers malloc tagged blocks (16 B..1 KiB,
 * log-distributed) and push batches onto a bounded mutex+condvar queue; consumers verify and free
 * them, so nearly every free is cross-thread. Run: prodcons [producers=2] [consumers=2]
 * [blocks=10000000] [batch=64]   (prints checksum and elapsed_s) */
#include "bench_common.h"

#include <pthread.h>

#define MAX_SIZE ((size_t)1 << 10)
#define QCAP 256

typedef struct batch {
    unsigned count;
    void *blk[];
} batch;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    batch *ring[QCAP];
    unsigned head, len, producers_left;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0, 0};

static unsigned long g_per_producer, g_batch;

typedef struct {
    unsigned id;
    pthread_t th;
    uint64_t sum;
    unsigned long errors, freed;
} worker;

static void push(batch *b)
{
    pthread_mutex_lock(&q.mu);
    while (q.len == QCAP) pthread_cond_wait(&q.not_full, &q.mu);
    q.ring[(q.head + q.len++) % QCAP] = b;
    pthread_cond_signal(&q.not_empty);
    pthread_mutex_unlock(&q.mu);
}

static batch *pop(void)
{
    pthread_mutex_lock(&q.mu);
    while (q.len == 0 && q.producers_left > 0) pthread_cond_wait(&q.not_empty, &q.mu);
    batch *b = NULL;
    if (q.len > 0) {
        b = q.ring[q.head];
        q.head = (q.head + 1) % QCAP;
        q.len--;
        pthread_cond_signal(&q.not_full);
    }
    pthread_mutex_unlock(&q.mu);
    return b;
}

static void *producer(void *arg)
{
    worker *w = arg;
    bench_rng rng;
    bench_rng_seed(&rng, 1000 + w->id);
    uint64_t seq = 0;
    unsigned long left = g_per_producer;
    while (left > 0) {
        unsigned n = (unsigned)(left < g_batch ? left : g_batch);
        batch *b = malloc(sizeof *b + n * sizeof(void *));
        if (!b) { perror("malloc"); exit(2); }
        b->count = n;
        for (unsigned i = 0; i < n; i++) {
            size_t sz = bench_log_size(&rng, 4, 10);
            b->blk[i] = malloc(sz);
            if (!b->blk[i]) { perror("malloc"); exit(2); }
            bench_fill(b->blk[i], sz, bench_mix64(((uint64_t)w->id << 40) | ++seq));
        }
        push(b);
        left -= n;
    }
    pthread_mutex_lock(&q.mu);
    if (--q.producers_left == 0) pthread_cond_broadcast(&q.not_empty);
    pthread_mutex_unlock(&q.mu);
    return NULL;
}

static void *consumer(void *arg)
{
    /* The counters stay on this stack until the end. The workers' structs sit side by side
     * in one calloc block: updated in place, they shared cache lines between threads, at a
     * cost that depended on where each allocator put the block. Only the inputs are copied
     * in (main may still be writing th). */
    worker *shared = arg, local = {.id = shared->id}, *w = &local;
    batch *b;
    while ((b = pop()) != NULL) {
        for (unsigned i = 0; i < b->count; i++) {
            uint64_t tag;
            w->errors += (unsigned long)bench_check(b->blk[i], MAX_SIZE, &tag);
            w->sum += tag;
            free(b->blk[i]);
        }
        w->freed += b->count;
        free(b);
    }
    shared->sum = w->sum;
    shared->errors = w->errors;
    shared->freed = w->freed;
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned np = (unsigned)bench_arg(argc, argv, 1, 2);
    unsigned nc = (unsigned)bench_arg(argc, argv, 2, 2);
    unsigned long blocks = bench_arg(argc, argv, 3, 10000000);
    g_batch = bench_arg(argc, argv, 4, 64);
    if (np == 0) np = 1;
    if (nc == 0) nc = 1;
    if (g_batch == 0) g_batch = 1;
    g_per_producer = blocks / np;
    q.producers_left = np;

    worker *w = calloc(np + nc, sizeof *w);
    if (!w) { perror("calloc"); return 2; }
    double t0 = bench_now();
    for (unsigned i = 0; i < np + nc; i++) {
        w[i].id = i;
        if (pthread_create(&w[i].th, NULL, i < np ? producer : consumer, &w[i]) != 0) {
            perror("pthread_create");
            return 2;
        }
    }
    uint64_t sum = 0;
    unsigned long errors = 0, freed = 0;
    for (unsigned i = 0; i < np + nc; i++) {
        pthread_join(w[i].th, NULL);
        sum += w[i].sum;
        errors += w[i].errors;
        freed += w[i].freed;
    }
    double el = bench_now() - t0;
    free(w);
    if (freed != g_per_producer * np) errors++;

    printf("prodcons: allocator=%s producers=%u consumers=%u blocks=%lu ops=%lu errors=%lu "
           "checksum=%016llx elapsed_s=%.4f\n",
           bench_malloc_name(), np, nc, freed, freed, errors, (unsigned long long)sum, el);
    return errors ? 1 : 0;
}
