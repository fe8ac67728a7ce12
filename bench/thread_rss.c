/* thread_rss: what an allocator costs per thread in resident memory. Starts THREADS threads
 * (64 KiB stacks); each mallocs one object in each of CLASSES sizes (16 B doubling up to
 * 2 KiB, then repeating with +8 B so every object is a new size class), writes it, and
 * waits until all threads are up; the RSS growth over the threads' start, divided by the
 * thread count, is the per-thread figure. Run with CLASSES=0 for the allocator-independent
 * part (stack, TLS); the rest is the allocator's: its per-thread cache and the pages it
 * hands each thread per size class. Usage: thread_rss [threads=200] [classes=8] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"

#define MAX_THREADS 1000
#define MAX_CLASSES 16

static pthread_barrier_t g_up, g_done;
static unsigned long g_classes, g_errors;
static uint64_t g_sum;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static size_t class_size(unsigned long i) { return ((size_t)16 << (i % 8)) + 8 * (i / 8); }

static void *run(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    void *p[MAX_CLASSES];
    for (unsigned long i = 0; i < g_classes; i++) {
        size_t n = class_size(i);
        p[i] = malloc(n);
        if (!p[i]) { perror("malloc"); exit(2); }
        bench_fill(p[i], n, bench_mix64(id << 8 | i));
    }
    pthread_barrier_wait(&g_up);
    pthread_barrier_wait(&g_done);
    unsigned long errors = 0;
    uint64_t sum = 0;
    for (unsigned long i = 0; i < g_classes; i++) {
        uint64_t tag;
        errors += (unsigned long)bench_check(p[i], 4096, &tag);
        sum += tag;
        free(p[i]);
    }
    pthread_mutex_lock(&g_mu);
    g_errors += errors;
    g_sum += sum;
    pthread_mutex_unlock(&g_mu);
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned long nt = bench_arg(argc, argv, 1, 200);
    g_classes = bench_arg(argc, argv, 2, 8);
    if (nt < 1 || nt > MAX_THREADS || g_classes > MAX_CLASSES) {
        fprintf(stderr, "usage: thread_rss [threads 1..%d] [classes 0..%d]\n", MAX_THREADS, MAX_CLASSES);
        return 2;
    }
    static pthread_t th[MAX_THREADS];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 << 10);
    pthread_barrier_init(&g_up, NULL, (unsigned)nt + 1);
    pthread_barrier_init(&g_done, NULL, (unsigned)nt + 1);
    free(malloc(16)); /* the allocator's own start-up is not a per-thread cost */
    double t0 = bench_now();
    unsigned long rss0 = bench_rss_kib();
    for (unsigned long i = 0; i < nt; i++)
        if (pthread_create(&th[i], &attr, run, (void *)(uintptr_t)(i + 1)) != 0) { perror("pthread_create"); return 2; }
    pthread_barrier_wait(&g_up);
    unsigned long rss1 = bench_rss_kib();
    pthread_barrier_wait(&g_done);
    for (unsigned long i = 0; i < nt; i++) pthread_join(th[i], NULL);
    printf("thread_rss: allocator=%s threads=%lu classes=%lu rss_before_kib=%lu rss_up_kib=%lu "
           "per_thread_kib=%.1f errors=%lu checksum=%016llx elapsed_s=%.4f\n",
           bench_malloc_name(), nt, g_classes, rss0, rss1, (double)(rss1 - rss0) / (double)nt, g_errors,
           (unsigned long long)g_sum, bench_now() - t0);
    return g_errors != 0;
}
