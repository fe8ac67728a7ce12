/* test_threads.c: cross-thread behaviour. A mimalloc-style stress (shared transfer array,
 * cookie-filled blocks verified before every free, objects outliving their thread), a
 * producer/consumer pipe, thread-exit churn with bounded memory, late pthread-key
 * destructors that allocate after gomalloc's own, and threads whose first call is unusual. */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "gm_test.h"

#include "gomalloc.h"

/* cmocka's asserts longjmp, so worker threads only record failures; the test thread asserts. */
static atomic_int thread_failures;
static char failure_text[256];
static void thread_fail(const char *fmt, ...) {
    if (atomic_fetch_add(&thread_failures, 1) == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(failure_text, sizeof failure_text, fmt, ap);
        va_end(ap);
    }
}
static void reset_failures(void) { atomic_store(&thread_failures, 0); }
static void assert_no_thread_failures(void) {
    if (atomic_load(&thread_failures) != 0)
        fail_msg("%d thread failure(s), first: %s", atomic_load(&thread_failures), failure_text);
}

#define STRESS_THREADS_MAX 16
static uint64_t heap_objects(void) {
    gm_memstats m;
    gm_read_memstats(&m);
    return m.heap_objects;
}

/* glibc keeps up to 40 MiB of exited threads' stacks, each with its DTV, which glibc
 * allocates with malloc. Filling that cache first makes heap_objects comparable across a
 * test: the DTVs alive before are the DTVs alive after. */
static void *idle_thread(void *a) { return a; }
static void warm_thread_cache(void) {
    /* gomalloc's scavenger thread starts once the heap grows past two arenas, and glibc
     * allocates its DTV (one live object, for good) through malloc: grow the heap once so
     * the thread exists before any baseline is taken. */
    free(malloc((size_t)200 << 20));
    pthread_t t[STRESS_THREADS_MAX];
    for (int i = 0; i < STRESS_THREADS_MAX; i++) assert_int_equal(pthread_create(&t[i], NULL, idle_thread, NULL), 0);
    for (int i = 0; i < STRESS_THREADS_MAX; i++) pthread_join(t[i], NULL);
}

/* ---- cookie blocks: word 0 holds the size; every other checked word is derived from the
 * block's address, size and index, so overlap, stale data and double hand-out all show. ---- */
static uint64_t cookie(const void *p, size_t size, size_t i) {
    return ((uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ULL) ^ (size << 20) ^ (i * 0xBF58476D1CE4E5B9ULL);
}
/* Words checked: all of them up to 4 KiB, else the first and last 256. */
#define FULL_WORDS 512
static void *cookie_alloc(size_t size) {
    if (size < 8) size = 8;
    uint64_t *p = malloc(size);
    if (p == NULL) {
        thread_fail("malloc(%zu) returned NULL", size);
        return NULL;
    }
    size_t n = size / 8;
    p[0] = size;
    for (size_t i = 1; i < n; i++)
        if (n <= FULL_WORDS || i < 256 || i >= n - 256) p[i] = cookie(p, size, i);
    return p;
}
static void cookie_free(void *v) {
    if (v == NULL) return;
    uint64_t *p = v;
    size_t size = p[0];
    if (size < 8 || size > 64 * GM_MIB) {
        thread_fail("block %p: size word %#zx corrupted", v, size);
        return;
    }
    size_t n = size / 8;
    for (size_t i = 1; i < n; i++)
        if ((n <= FULL_WORDS || i < 256 || i >= n - 256) && p[i] != cookie(p, size, i)) {
            thread_fail("block %p (%zu B): word %zu corrupted", v, size, i);
            return;
        }
    if (malloc_usable_size(p) < size) thread_fail("block %p: usable %zu < %zu", v, malloc_usable_size(p), size);
    free(p);
}
static size_t random_size(uint64_t *rng) {
    uint64_t r = rng_next(rng);
    unsigned pick = (unsigned)(r % 1000);
    r >>= 10;
    if (pick < 700) return 8 + r % 256;
    if (pick < 950) return 8 + r % 4096;
    if (pick < 999) return 8 + r % (64 * GM_KIB);
    return 8 + r % GM_MIB;
}

/* ---- stress ---- */
#define STRESS_THREADS 8
#define STRESS_ROUNDS 10
#define STRESS_OPS 20000
#define TRANSFERS 1000
#define RETAINED 200
static _Atomic(void *) transfer[TRANSFERS];

static void *stress_thread(void *arg) {
    uint64_t rng = 0x1234567ULL + (uintptr_t)arg * 7919;
    void *retained[RETAINED] = {0};
    for (int op = 0; op < STRESS_OPS; op++) {
        unsigned r = (unsigned)(rng_next(&rng) % 100);
        if (r < 50) {
            size_t i = rng_next(&rng) % RETAINED;
            cookie_free(retained[i]);
            retained[i] = cookie_alloc(random_size(&rng));
        } else if (r < 80) {
            size_t i = rng_next(&rng) % TRANSFERS;
            void *mine = cookie_alloc(random_size(&rng));
            cookie_free(atomic_exchange(&transfer[i], mine));
        } else {
            size_t i = rng_next(&rng) % TRANSFERS;
            cookie_free(atomic_exchange(&transfer[i], NULL));
        }
    }
    /* Free half; leave the rest in the transfer array to outlive this thread. */
    for (size_t i = 0; i < RETAINED; i++) {
        if (i % 2 == 0) {
            cookie_free(retained[i]);
        } else {
            size_t t = rng_next(&rng) % TRANSFERS;
            cookie_free(atomic_exchange(&transfer[t], retained[i]));
        }
    }
    return NULL;
}

static void test_stress_transfer(void **state) {
    (void)state;
    reset_failures();
    warm_thread_cache();
    uint64_t before = heap_objects();
    for (int round = 0; round < STRESS_ROUNDS; round++) {
        pthread_t t[STRESS_THREADS];
        for (uintptr_t i = 0; i < STRESS_THREADS; i++)
            assert_int_equal(pthread_create(&t[i], NULL, stress_thread, (void *)(i + 100 * (uintptr_t)round)), 0);
        for (int i = 0; i < STRESS_THREADS; i++) pthread_join(t[i], NULL);
        assert_no_thread_failures();
    }
    for (size_t i = 0; i < TRANSFERS; i++) cookie_free(atomic_exchange(&transfer[i], NULL));
    assert_no_thread_failures();
    uint64_t after = heap_objects();
    if (after != before)
        fail_msg("heap_objects %llu before, %llu after every block was freed",
                 (unsigned long long)before, (unsigned long long)after);
}

/* ---- producer / consumer ---- */
#define PC_PAIRS 2
#define PC_ITEMS 100000
#define PC_CAP 1024
static struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    void *buf[PC_CAP];
    size_t head, count;
    int producers_left;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0, 0};

static void *producer(void *arg) {
    uint64_t rng = 99 + (uintptr_t)arg;
    for (int i = 0; i < PC_ITEMS; i++) {
        void *b = cookie_alloc(random_size(&rng) % 8192);
        pthread_mutex_lock(&q.mu);
        while (q.count == PC_CAP) pthread_cond_wait(&q.not_full, &q.mu);
        q.buf[(q.head + q.count++) % PC_CAP] = b;
        pthread_cond_signal(&q.not_empty);
        pthread_mutex_unlock(&q.mu);
    }
    pthread_mutex_lock(&q.mu);
    q.producers_left--;
    pthread_cond_broadcast(&q.not_empty);
    pthread_mutex_unlock(&q.mu);
    return NULL;
}
static void *consumer(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&q.mu);
        while (q.count == 0 && q.producers_left > 0) pthread_cond_wait(&q.not_empty, &q.mu);
        if (q.count == 0) {
            pthread_mutex_unlock(&q.mu);
            return NULL;
        }
        void *b = q.buf[q.head];
        q.head = (q.head + 1) % PC_CAP;
        q.count--;
        pthread_cond_signal(&q.not_full);
        pthread_mutex_unlock(&q.mu);
        cookie_free(b);
    }
}

static void test_producer_consumer(void **state) {
    (void)state;
    reset_failures();
    warm_thread_cache();
    uint64_t before = heap_objects();
    q.producers_left = PC_PAIRS;
    pthread_t p[PC_PAIRS], c[PC_PAIRS];
    for (uintptr_t i = 0; i < PC_PAIRS; i++) {
        assert_int_equal(pthread_create(&p[i], NULL, producer, (void *)i), 0);
        assert_int_equal(pthread_create(&c[i], NULL, consumer, NULL), 0);
    }
    for (int i = 0; i < PC_PAIRS; i++) {
        pthread_join(p[i], NULL);
        pthread_join(c[i], NULL);
    }
    assert_no_thread_failures();
    assert_int_equal(q.count, 0);
    assert_int_equal(heap_objects(), before);
}

/* ---- thread create/exit churn ---- */
#define CHURN_THREADS 20000
#define CHURN_BATCH 4
#define CHURN_KEEP 8
typedef struct {
    int kind;
    void *keep[CHURN_KEEP]; /* handed to the main thread, which frees them */
} churn_arg;

static void *churn_thread(void *v) {
    churn_arg *a = v;
    static const size_t sizes[] = {16, 48, 100, 256, 1000, 3000, 9000, 30000, 70000};
    if (a->kind == 1) {
        a->keep[0] = cookie_alloc(64);
    } else if (a->kind == 2) {
        void *tmp[64];
        for (int i = 0; i < 64; i++) tmp[i] = cookie_alloc(sizes[i % ARRAY_LEN(sizes)]);
        for (int i = 0; i < 64; i++) {
            if (i < CHURN_KEEP) a->keep[i] = tmp[i];
            else cookie_free(tmp[i]); /* these sit in this thread's cache at exit */
        }
    }
    return NULL;
}

static void churn(int nthreads) {
    churn_arg args[CHURN_BATCH];
    pthread_t t[CHURN_BATCH];
    for (int done = 0; done < nthreads; done += CHURN_BATCH) {
        for (int i = 0; i < CHURN_BATCH; i++) {
            memset(&args[i], 0, sizeof args[i]);
            args[i].kind = (done / CHURN_BATCH + i) % 3;
            assert_int_equal(pthread_create(&t[i], NULL, churn_thread, &args[i]), 0);
        }
        for (int i = 0; i < CHURN_BATCH; i++) {
            pthread_join(t[i], NULL);
            for (int k = 0; k < CHURN_KEEP; k++) cookie_free(args[i].keep[k]);
        }
    }
}

static void test_thread_exit_churn(void **state) {
    (void)state;
    reset_failures();
    churn(400); /* warm: thread stacks cached, spans in place */
    gm_memstats a, b;
    gm_read_memstats(&a);
    long rss_a = (long)rss_bytes();
    churn(CHURN_THREADS);
    gm_read_memstats(&b);
    long rss_b = (long)rss_bytes();
    assert_no_thread_failures();
    if (b.heap_objects != a.heap_objects)
        fail_msg("heap_objects %llu -> %llu after churn", (unsigned long long)a.heap_objects,
                 (unsigned long long)b.heap_objects);
    /* A leaked cache per thread would hold >= 6 spans (48 KiB+) each: ~1 GiB over 20000 threads. */
    if (b.heap_inuse > a.heap_inuse + 16 * GM_MIB)
        fail_msg("heap_inuse grew %llu -> %llu over %d thread exits", (unsigned long long)a.heap_inuse,
                 (unsigned long long)b.heap_inuse, CHURN_THREADS);
    if (b.mcache_inuse > a.mcache_inuse + GM_MIB)
        fail_msg("mcache_inuse grew %llu -> %llu: per-thread caches leak", (unsigned long long)a.mcache_inuse,
                 (unsigned long long)b.mcache_inuse);
    assert_true(rss_a > 0 && rss_b > 0);
    if (rss_b > rss_a + 64 * (long)GM_MIB) fail_msg("RSS grew %ld -> %ld over thread churn", rss_a, rss_b);
}

/* ---- late destructors: a key created after the thread's first malloc, so glibc runs its
 * destructor after gomalloc's in every round, and it keeps re-arming itself. ---- */
static pthread_key_t late_key;
static pthread_once_t late_once = PTHREAD_ONCE_INIT;
static atomic_int late_rounds;
static _Atomic(void *) late_handoff[64];
static atomic_int late_handoff_n;

static void late_dtor(void *v) {
    uintptr_t round = (uintptr_t)v;
    atomic_fetch_add(&late_rounds, 1);
    void *keep = NULL;
    for (size_t s = 1; s <= 70000; s = s * 3 + 1) {
        void *p = cookie_alloc(s);
        void *c = calloc(1, s);
        if (c == NULL) { thread_fail("calloc(%zu) in destructor round %zu failed", s, (size_t)round); continue; }
        for (size_t i = 0; i < s; i++)
            if (((unsigned char *)c)[i]) { thread_fail("calloc in destructor not zeroed"); break; }
        c = realloc(c, s * 2 + 1);
        free(c);
        if (keep == NULL) keep = p;
        else cookie_free(p);
    }
    int slot = atomic_fetch_add(&late_handoff_n, 1);
    if (slot < 64) atomic_store(&late_handoff[slot], keep); /* the main thread frees it */
    else cookie_free(keep);
    if (round < 10 && pthread_setspecific(late_key, (void *)(round + 1)) != 0)
        thread_fail("pthread_setspecific in destructor failed");
}
static void make_late_key(void) {
    if (pthread_key_create(&late_key, late_dtor) != 0) thread_fail("pthread_key_create failed");
}
static void *late_thread(void *arg) {
    (void)arg;
    void *p = cookie_alloc(100); /* the thread's first malloc: gomalloc's own key is set now */
    pthread_once(&late_once, make_late_key);
    pthread_setspecific(late_key, (void *)1);
    cookie_free(p);
    p = cookie_alloc(5000); /* leave something in the cache too */
    cookie_free(p);
    return NULL;
}

static void test_late_destructors(void **state) {
    (void)state;
    reset_failures();
    warm_thread_cache();
    free(malloc(1));
    uint64_t before = heap_objects();
    for (int i = 0; i < 16; i++) {
        atomic_store(&late_rounds, 0);
        atomic_store(&late_handoff_n, 0);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, late_thread, NULL), 0);
        pthread_join(t, NULL);
        assert_no_thread_failures();
        if (atomic_load(&late_rounds) != PTHREAD_DESTRUCTOR_ITERATIONS)
            fail_msg("late destructor ran %d rounds, expected %d", atomic_load(&late_rounds),
                     PTHREAD_DESTRUCTOR_ITERATIONS);
        int n = atomic_load(&late_handoff_n);
        for (int k = 0; k < n && k < 64; k++) cookie_free(atomic_exchange(&late_handoff[k], NULL));
        assert_no_thread_failures();
    }
    uint64_t after = heap_objects();
    if (after != before)
        fail_msg("heap_objects %llu -> %llu: blocks from late destructors leaked or miscounted",
                 (unsigned long long)before, (unsigned long long)after);
}

/* ---- threads whose first allocator call is not malloc ---- */
static void *shared_block;
static size_t shared_usable;
static void *first_free_null(void *a) {
    (void)a;
    free(NULL);
    void *p = cookie_alloc(300);
    cookie_free(p);
    return NULL;
}
static void *first_realloc(void *a) {
    (void)a;
    unsigned char *p = realloc(shared_block, 100000);
    if (p == NULL) { thread_fail("first-call realloc failed"); return NULL; }
    if (pat_check(p, 1000, 42) != (size_t)-1) thread_fail("first-call realloc lost contents");
    shared_block = p;
    return NULL;
}
static void *first_usable_size(void *a) {
    (void)a;
    if (malloc_usable_size(shared_block) != shared_usable)
        thread_fail("malloc_usable_size as first call: %zu, expected %zu", malloc_usable_size(shared_block), shared_usable);
    return NULL;
}
static void *first_free_foreign_thread(void *a) {
    (void)a;
    free(shared_block);
    shared_block = NULL;
    void *p = cookie_alloc(64);
    cookie_free(p);
    return NULL;
}
static void *first_posix_memalign(void *a) {
    (void)a;
    void *p = NULL;
    if (posix_memalign(&p, 4096, 10000) != 0 || ((uintptr_t)p & 4095)) thread_fail("first-call posix_memalign");
    free(p);
    unsigned char *c = calloc(1000, 10);
    for (int i = 0; c && i < 10000; i++)
        if (c[i]) { thread_fail("first-call calloc not zeroed"); break; }
    free(c);
    return NULL;
}

static void run1(void *(*fn)(void *)) {
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fn, NULL), 0);
    pthread_join(t, NULL);
    assert_no_thread_failures();
}

static void test_first_call_paths(void **state) {
    (void)state;
    reset_failures();
    warm_thread_cache();
    uint64_t before = heap_objects();
    for (int i = 0; i < 50; i++) {
        run1(first_free_null);
        shared_block = malloc(1000);
        assert_non_null(shared_block);
        pat_fill(shared_block, 1000, 42);
        run1(first_realloc);
        shared_usable = malloc_usable_size(shared_block);
        run1(first_usable_size);
        run1(first_free_foreign_thread);
        assert_null(shared_block);
        run1(first_posix_memalign);
    }
    assert_int_equal(heap_objects(), before);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress_transfer),
        cmocka_unit_test(test_producer_consumer),
        cmocka_unit_test(test_thread_exit_churn),
        cmocka_unit_test(test_late_destructors),
        cmocka_unit_test(test_first_call_paths),
    };
    return cmocka_run_group_tests_name("threads", tests, NULL, NULL);
}
