/* test_tsan.c: the multi-threaded patterns of test_threads.c and test_stats.c through the
 * gm_* API, for ThreadSanitizer: linked with the allocator built with -fsanitize=thread and
 * without override.c, so TSan keeps its own malloc. argv[1]: stress, churn, memstats or profile. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gm_test.h" /* rng_next, pat_fill, pat_check (cmocka itself is not used) */
#include "gomalloc.h"


static atomic_int failures;
#define CHECK(cond, ...)                       \
    do {                                       \
        if (!(cond)) {                         \
            fprintf(stderr, __VA_ARGS__);      \
            fputc('\n', stderr);               \
            atomic_fetch_add(&failures, 1);    \
        }                                      \
    } while (0)

static size_t pick_size(uint64_t r) {
    switch (r & 7) {
    case 0: return 33000 + (r >> 8) % 300000; /* large */
    case 1: return 1024 + (r >> 8) % 31744;   /* upper small classes */
    default: return 1 + (r >> 8) % 512;
    }
}

/* A block carries its size and a seed in its first two words, the pattern after them. */
static void *make_block(uint64_t r) {
    size_t n = pick_size(r);
    if (n < 16) n = 16;
    uint64_t *p = gm_malloc(n);
    CHECK(p != NULL, "gm_malloc(%zu) failed", n);
    if (p == NULL) return NULL;
    p[0] = n;
    p[1] = r;
    pat_fill(p + 2, n - 16, (uint32_t)r);
    return p;
}
static void check_free(void *v) {
    if (v == NULL) return;
    uint64_t *p = v;
    CHECK(gm_usable_size(p) >= p[0], "usable size %zu < %zu", gm_usable_size(p), (size_t)p[0]);
    CHECK(pat_check(p + 2, p[0] - 16, (uint32_t)p[1]) == (size_t)-1, "block %p corrupted", v);
    gm_free(p);
}

/* ---- cross-thread stress: blocks are freed by whichever thread takes the slot next ---- */
#define SLOTS 1024
static _Atomic(void *) slots[SLOTS];
static atomic_bool stop;

static void *stress_thread(void *arg) {
    uint64_t rng = (uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    void *mine[32] = {0};
    for (int i = 0; i < 12000; i++) {
        uint64_t r = rng_next(&rng);
        void *p = make_block(r);
        if ((r >> 40) & 1) {
            check_free(atomic_exchange(&slots[(r >> 44) % SLOTS], p));
        } else {
            unsigned k = (r >> 50) % 32;
            check_free(mine[k]);
            mine[k] = p;
        }
        if (i % 4096 == 0) { /* realloc across threads' blocks too */
            void *q = atomic_exchange(&slots[(r >> 20) % SLOTS], NULL);
            if (q != NULL) {
                uint64_t *b = gm_realloc(q, ((uint64_t *)q)[0] + 4096);
                CHECK(b != NULL, "gm_realloc failed");
                if (b != NULL) check_free(b);
            }
        }
    }
    for (unsigned k = 0; k < 32; k++) check_free(mine[k]);
    return NULL;
}

static void run_stress(void) {
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, stress_thread, (void *)(i + 1));
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    for (unsigned i = 0; i < SLOTS; i++) check_free(atomic_exchange(&slots[i], NULL));
}

/* ---- thread churn: short-lived threads whose caches go back at exit; some blocks
 * outlive their thread and are freed by the next generation ---- */
static void *churn_thread(void *arg) {
    uint64_t rng = (uintptr_t)arg;
    void *local[64];
    for (int i = 0; i < 64; i++) local[i] = make_block(rng_next(&rng));
    for (int i = 0; i < 64; i += 2) check_free(local[i]);
    for (int i = 1; i < 64; i += 2) check_free(atomic_exchange(&slots[(rng_next(&rng) >> 7) % SLOTS], local[i]));
    return NULL;
}

static void run_churn(void) {
    for (uintptr_t gen = 0; gen < 100; gen++) {
        pthread_t t[4];
        for (uintptr_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn_thread, (void *)(gen * 4 + i + 1));
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    }
    for (unsigned i = 0; i < SLOTS; i++) check_free(atomic_exchange(&slots[i], NULL));
}

/* ---- memstats under load, with explicit release and a memory limit racing the workers ---- */
static void *hammer(void *arg) {
    uint64_t rng = (uintptr_t)arg * 7919 + 1;
    void *mine[64] = {0};
    while (!atomic_load(&stop)) {
        uint64_t r = rng_next(&rng);
        void *p = make_block(r);
        if ((r >> 20) & 1) {
            check_free(atomic_exchange(&slots[(r >> 24) % SLOTS], p));
        } else {
            unsigned k = (r >> 30) % 64;
            check_free(mine[k]);
            mine[k] = p;
        }
    }
    for (unsigned k = 0; k < 64; k++) check_free(mine[k]);
    return NULL;
}

static void *releaser(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        gm_free_os_memory();
        usleep(2000);
    }
    return NULL;
}

static void run_memstats(void) {
    pthread_t t[3], rel;
    gm_set_memory_limit(32 << 20); /* keeps the background scavenger busy */
    atomic_store(&stop, false);
    for (uintptr_t i = 0; i < 3; i++) pthread_create(&t[i], NULL, hammer, (void *)(i + 1));
    pthread_create(&rel, NULL, releaser, NULL);
    static gm_memstats m;
    uint64_t last = 0;
    for (int i = 0; i < 6000; i++) {
        gm_read_memstats(&m);
        CHECK(m.frees <= m.mallocs, "frees %llu > mallocs %llu", (unsigned long long)m.frees,
              (unsigned long long)m.mallocs);
        CHECK(m.heap_sys == m.heap_idle + m.heap_inuse, "heap_sys != idle + inuse");
        CHECK(m.heap_released <= m.heap_idle, "released > idle");
        CHECK(m.mallocs >= last, "mallocs went backwards");
        last = m.mallocs;
        if (i % 16 == 0) usleep(300);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    pthread_join(rel, NULL);
    for (unsigned i = 0; i < SLOTS; i++) check_free(atomic_exchange(&slots[i], NULL));
    gm_set_memory_limit(INT64_MAX);
}

/* ---- heap profiling: every allocation sampled (rate 1) while blocks cross threads and
 * another thread writes profiles ---- */
static void *profile_writer(void *arg) {
    const char *path = arg;
    while (!atomic_load(&stop)) {
        CHECK(gm_write_heap_profile(path) == 0, "gm_write_heap_profile failed");
        usleep(5000);
    }
    return NULL;
}

static void run_profile(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/gm-tsan-%d.heap", (int)getpid());
    gm_set_memprofile_rate(1);
    atomic_store(&stop, false);
    pthread_t t[3], w;
    for (uintptr_t i = 0; i < 3; i++) pthread_create(&t[i], NULL, hammer, (void *)(i + 11));
    pthread_create(&w, NULL, profile_writer, path);
    usleep(1500 * 1000);
    atomic_store(&stop, true);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    pthread_join(w, NULL);
    for (unsigned i = 0; i < SLOTS; i++) check_free(atomic_exchange(&slots[i], NULL));
    gm_set_memprofile_rate(0);
    unlink(path);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "stress") == 0) run_stress();
    else if (strcmp(mode, "churn") == 0) run_churn();
    else if (strcmp(mode, "memstats") == 0) run_memstats();
    else if (strcmp(mode, "profile") == 0) run_profile();
    else {
        fprintf(stderr, "usage: %s stress|churn|memstats\n", argv[0]);
        return 2;
    }
    int f = atomic_load(&failures);
    if (f != 0) fprintf(stderr, "%d check(s) failed\n", f);
    return f != 0;
}
