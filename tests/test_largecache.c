/* test_largecache.c: the per-thread cache of large spans (issue 5). A same-size free then
 * malloc on one thread reuses the span without the heap lock; stats stay exact while spans
 * sit in caches; a thread's exit, gm_free_os_memory, the scavenger's aging and a fork child
 * all get cached spans back to the heap. Double frees of cached spans: test_badinput.c.
 * A -Dsecure=true build runs it at secure=1, where each span also holds its guard page
 * (tests/test_secure.c checks what the guard of a cached span still does). */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gm_test.h"
#include "internal.h"

static volatile size_t vsize;
static void *vmalloc(size_t n) { vsize = n; return malloc(vsize); } /* keep -O2 from pairing calls */

static size_t pages_of(size_t n) { return (n + GM_PAGE_SIZE - 1) / GM_PAGE_SIZE; }
/* In secure mode (a -Dsecure=true build runs this suite at secure=1) every large span has
 * a guard page after the object: counted in the stats and in the cache's page counts, not
 * in the usable size. */
static size_t guard_pages(void) { return gm_opt.secure ? 1 : 0; }
static size_t span_bytes(size_t n) { return (pages_of(n) + guard_pages()) * GM_PAGE_SIZE; }
/* The largest request the cache serves: 1 MiB, less the guard page in secure mode. */
static size_t top_size(void) { return (GM_LARGE_CACHE_MAX_PAGES - guard_pages()) * GM_PAGE_SIZE; }

static gm_memstats stats(void) {
    gm_memstats m;
    gm_read_memstats(&m);
    return m;
}

/* Every thread's cached spans back to the heap (and all free pages to the OS), so a test
 * starts from empty caches and exact numbers. */
static int setup(void **state) {
    (void)state;
    gm_free_os_memory();
    return 0;
}

/* Sizes the cache serves: one byte past the small limit up to the top (main sets it). */
static size_t kSizes[] = {32769, 65536, 100000, 262144, 0};

static void test_same_size_reuse(void **state) {
    (void)state;
    for (unsigned i = 0; i < ARRAY_LEN(kSizes); i++) {
        size_t n = kSizes[i];
        char *p = vmalloc(n);
        assert_non_null(p);
        pat_fill(p, n, (uint32_t)i);
        assert_int_equal(gm_usable_size(p), pages_of(n) * GM_PAGE_SIZE);
        free(p);
        assert_int_equal(gm_usable_size(p), 0); /* a cached span reads as freed */
        gm_memstats a = stats();
        char *q = vmalloc(n);
        gm_memstats b = stats();
        assert_ptr_equal(q, p);
        assert_int_equal(b.heap_inuse, a.heap_inuse); /* no span allocated */
        assert_int_equal(b.by_size[0].mallocs - a.by_size[0].mallocs, 1);
        assert_int_equal(b.heap_alloc - a.heap_alloc, span_bytes(n));
        assert_int_equal(gm_usable_size(q), pages_of(n) * GM_PAGE_SIZE);
        free(q);
        /* calloc from a cached (dirty) span must still clear it */
        unsigned char *z = calloc(1, n);
        assert_ptr_equal(z, p);
        for (size_t k = 0; k < n; k += 509) assert_int_equal(z[k], 0);
        assert_int_equal(z[n - 1], 0);
        free(z);
    }
}

/* The point of the cache: a free+malloc of the same size takes no allocator lock. In a
 * child, with the heap lock held by the test itself, the pair must complete (a path that
 * took the lock would spin until the alarm). */
static void test_reuse_takes_no_heap_lock(void **state) {
    (void)state;
    void *p = vmalloc(200000);
    assert_non_null(p);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(10);
        gm_lock(&gm_heap_lock);
        for (int i = 0; i < 1000; i++) {
            free(p);
            void *q = vmalloc(200000);
            if (q != p) _exit(3);
        }
        gm_unlock(&gm_heap_lock);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (WIFSIGNALED(st)) fail_msg("child killed by signal %d: the cached pair waited for the heap lock", WTERMSIG(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    free(p);
}

/* Exact MemStats at quiet points while spans are parked, reused, and flushed. */
static void test_stats_exact_with_cached_spans(void **state) {
    (void)state;
    static void *p[ARRAY_LEN(kSizes)];
    uint64_t bytes = 0;
    for (unsigned i = 0; i < ARRAY_LEN(kSizes); i++) bytes += span_bytes(kSizes[i]);
    assert_true(bytes <= (uint64_t)gm_opt.largecache);
    gm_memstats a = stats();
    for (unsigned i = 0; i < ARRAY_LEN(kSizes); i++) p[i] = vmalloc(kSizes[i]);
    for (unsigned i = 0; i < ARRAY_LEN(kSizes); i++) free(p[i]);
    gm_memstats b = stats(); /* all five spans parked in this thread's cache */
    assert_int_equal(b.mallocs - a.mallocs, ARRAY_LEN(kSizes));
    assert_int_equal(b.frees - a.frees, ARRAY_LEN(kSizes));
    assert_int_equal(b.by_size[0].frees - a.by_size[0].frees, ARRAY_LEN(kSizes));
    assert_int_equal(b.heap_alloc, a.heap_alloc);
    assert_int_equal(b.heap_objects, a.heap_objects);
    assert_int_equal(b.total_alloc - a.total_alloc, bytes);
    assert_int_equal(b.heap_inuse - a.heap_inuse, bytes); /* cached spans are heap_inuse */
    assert_int_equal(b.heap_sys, b.heap_idle + b.heap_inuse);
    for (unsigned i = 0; i < ARRAY_LEN(kSizes); i++) p[i] = vmalloc(kSizes[i]);
    gm_memstats c = stats(); /* all five from the cache */
    assert_int_equal(c.heap_inuse, b.heap_inuse);
    assert_int_equal(c.heap_alloc - a.heap_alloc, bytes);
    assert_int_equal(c.heap_objects - a.heap_objects, ARRAY_LEN(kSizes));
    assert_int_equal(c.by_size[0].mallocs - b.by_size[0].mallocs, ARRAY_LEN(kSizes));
    assert_int_equal(c.total_alloc - b.total_alloc, bytes);
    assert_true(c.heap_inuse >= c.heap_alloc);
    for (unsigned i = 0; i < ARRAY_LEN(kSizes); i++) free(p[i]);
    gm_free_os_memory(); /* takes the spans out of the cache: no free is counted twice */
    gm_memstats d = stats();
    assert_int_equal(d.heap_inuse, a.heap_inuse);
    assert_int_equal(d.heap_alloc, a.heap_alloc);
    assert_int_equal(d.frees - a.frees, 2 * ARRAY_LEN(kSizes));
    assert_int_equal(d.mallocs - a.mallocs, 2 * ARRAY_LEN(kSizes));
    assert_int_equal(d.heap_sys, d.heap_idle + d.heap_inuse);
}

/* The byte budget holds: many distinct sizes freed in a row park at most largecache bytes. */
static void test_budget_bounds_cached_bytes(void **state) {
    (void)state;
    static void *p[64];
    gm_memstats a = stats();
    for (unsigned i = 0; i < 64; i++) p[i] = vmalloc((size_t)(40 + 2 * i) << 13); /* 40..166 pages */
    gm_memstats b = stats();
    for (unsigned i = 0; i < 64; i++) free(p[i]);
    gm_memstats c = stats();
    assert_int_equal(c.heap_alloc, a.heap_alloc);
    uint64_t parked = c.heap_inuse - a.heap_inuse;
    assert_true(b.heap_inuse > c.heap_inuse);
    if (parked > (uint64_t)gm_opt.largecache)
        fail_msg("%llu bytes parked, budget %lld", (unsigned long long)parked, (long long)gm_opt.largecache);
}

/* Over budget, a freed span displaces parked spans larger than itself, largest first, and
 * never smaller ones: a miss costs about the same whatever its size, so small spans give
 * the budget more hits. */
static void test_budget_evicts_larger(void **state) {
    (void)state;
    const size_t big = top_size(), mid = 900 << 10, small = 200000;
    uint64_t budget = (uint64_t)gm_opt.largecache;
    assert_true(span_bytes(big) + span_bytes(mid) <= budget);
    assert_true(span_bytes(big) + span_bytes(mid) + span_bytes(small) > budget);
    char *pb = vmalloc(big), *pm = vmalloc(mid), *ps = vmalloc(small), *ps2 = vmalloc(small);
    free(pb);
    free(pm);
    assert_int_equal(span_of((uintptr_t)pb)->state, MSPAN_CACHED);
    assert_int_equal(span_of((uintptr_t)pm)->state, MSPAN_CACHED);
    gm_memstats a = stats();
    free(ps); /* does not fit: the biggest parked span goes back to the heap */
    gm_memstats b = stats();
    assert_int_equal(span_of((uintptr_t)ps)->state, MSPAN_CACHED);
    assert_ptr_equal(span_of((uintptr_t)pb), &mspan_dead);
    assert_int_equal(span_of((uintptr_t)pm)->state, MSPAN_CACHED);
    assert_int_equal(a.heap_inuse - b.heap_inuse, span_bytes(big));
    assert_int_equal(b.frees - a.frees, 1); /* the evicted span's free was counted when parked */
    assert_int_equal(a.heap_alloc - b.heap_alloc, span_bytes(small));
    /* a larger span than any parked one is not parked when it does not fit */
    char *pb2 = vmalloc(big);
    free(ps2);
    assert_int_equal(span_of((uintptr_t)ps2)->state, MSPAN_CACHED);
    free(pb2);
    assert_ptr_equal(span_of((uintptr_t)pb2), &mspan_dead);
    assert_int_equal(span_of((uintptr_t)pm)->state, MSPAN_CACHED);
}

/* A thread's exit returns its cached spans: heap_inuse back to the baseline. */
#define TN 6
static size_t alive_rss;
static void *cache_and_exit(void *arg) {
    gm_memstats *alive = arg;
    void *p[TN];
    for (unsigned i = 0; i < TN; i++) {
        p[i] = vmalloc((size_t)(5 + 7 * i) << 13);
        memset(p[i], 0x77, (size_t)(5 + 7 * i) << 13);
    }
    for (unsigned i = 0; i < TN; i++) free(p[i]);
    gm_read_memstats(alive);
    alive_rss = rss_bytes();
    return NULL;
}
static void test_thread_exit_returns_spans(void **state) {
    (void)state;
    gm_memstats alive;
    pthread_t t;
    /* warm up glibc's thread-stack cache and our struct pools */
    assert_int_equal(pthread_create(&t, NULL, cache_and_exit, &alive), 0);
    pthread_join(t, NULL);
    gm_free_os_memory();
    gm_memstats a = stats();
    assert_int_equal(pthread_create(&t, NULL, cache_and_exit, &alive), 0);
    pthread_join(t, NULL);
    gm_memstats b = stats();
    uint64_t bytes = 0;
    for (unsigned i = 0; i < TN; i++) bytes += (uint64_t)(5 + 7 * i) << 13;
    if (alive.heap_inuse < a.heap_inuse + bytes)
        fail_msg("thread's spans were not cached: inuse %llu, baseline %llu", (unsigned long long)alive.heap_inuse,
                 (unsigned long long)a.heap_inuse);
    assert_int_equal(b.heap_inuse, a.heap_inuse);
    assert_int_equal(b.heap_alloc, a.heap_alloc);
    assert_int_equal(b.by_size[0].mallocs - a.by_size[0].mallocs, TN);
    assert_int_equal(b.by_size[0].frees - a.by_size[0].frees, TN);
    /* and the freed pages go back to the OS like any others */
    gm_free_os_memory();
    gm_memstats c = stats();
    assert_true(c.heap_released >= b.heap_released + bytes);
    size_t rss = rss_bytes();
    if (gm_opt.madvdontneed && rss + bytes / 2 > alive_rss)
        fail_msg("RSS %zu KiB, %zu KiB while the thread held its spans", rss >> 10, alive_rss >> 10);
}

/* All threads' caches together hold at most largecache_total bytes. Eight threads park
 * close to their own budget each, one thread at a time (so parallel admissions cannot
 * blur the bound), and stay alive while it is checked; the stats agree with the count,
 * and once the threads are gone nothing is parked. */
enum { TOTAL_THREADS = 8 };
static pthread_mutex_t park_turn = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t parked_all, checked;
static void *park_own_budget(void *arg) {
    (void)arg;
    pthread_mutex_lock(&park_turn);
    const size_t sizes[] = {100 << 13, 20 << 13}; /* 960 KiB of the 1 MiB budget */
    for (unsigned i = 0; i < ARRAY_LEN(sizes); i++) {
        char *p = vmalloc(sizes[i]); /* a miss: makes the page count wanted */
        assert_non_null(p);
        p[0] = 1;
        free(p); /* parked, if the budgets allow */
    }
    pthread_mutex_unlock(&park_turn);
    pthread_barrier_wait(&parked_all);
    pthread_barrier_wait(&checked);
    return NULL;
}

static void test_total_budget_bounds_all_threads(void **state) {
    (void)state;
    assert_true((uint64_t)gm_opt.largecache_total < TOTAL_THREADS * (uint64_t)gm_opt.largecache);
    assert_int_equal(mcache_large_parked_total(), 0); /* setup emptied every cache */
    gm_memstats a = stats();
    pthread_barrier_init(&parked_all, NULL, TOTAL_THREADS + 1);
    pthread_barrier_init(&checked, NULL, TOTAL_THREADS + 1);
    pthread_t t[TOTAL_THREADS];
    for (unsigned i = 0; i < TOTAL_THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, park_own_budget, NULL), 0);
    pthread_barrier_wait(&parked_all);
    uint64_t parked = mcache_large_parked_total();
    gm_memstats b = stats();
    pthread_barrier_wait(&checked);
    for (unsigned i = 0; i < TOTAL_THREADS; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&parked_all);
    pthread_barrier_destroy(&checked);
    if (parked > (uint64_t)gm_opt.largecache_total)
        fail_msg("%llu bytes parked by all threads, total budget %lld", (unsigned long long)parked,
                 (long long)gm_opt.largecache_total);
    /* The budget is used, not refused outright: all but the last thread's worth is parked. */
    uint64_t one_thread = (120 + 2 * guard_pages()) << 13;
    if (parked + one_thread <= (uint64_t)gm_opt.largecache_total)
        fail_msg("only %llu bytes parked of %lld", (unsigned long long)parked, (long long)gm_opt.largecache_total);
    assert_true(b.heap_inuse >= a.heap_inuse + parked); /* parked spans are heap_inuse */
    assert_int_equal(mcache_large_parked_total(), 0); /* the threads' exits drained them */
}

/* gm_free_os_memory takes cached spans out of every thread's cache and releases them. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int phase;
static void *cache_and_wait(void *arg) {
    size_t n = (size_t)(uintptr_t)arg;
    char *p = vmalloc(n);
    memset(p, 0x5a, n);
    free(p);
    pthread_mutex_lock(&mu);
    phase = 1;
    pthread_cond_broadcast(&cv);
    while (phase != 2) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return NULL;
}
static pthread_t start_caching_thread(size_t n) {
    pthread_t t;
    phase = 0;
    assert_int_equal(pthread_create(&t, NULL, cache_and_wait, (void *)(uintptr_t)n), 0);
    pthread_mutex_lock(&mu);
    while (phase != 1) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return t;
}
static void stop_caching_thread(pthread_t t) {
    pthread_mutex_lock(&mu);
    phase = 2;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(t, NULL);
}

static void test_free_os_memory_takes_cached_spans(void **state) {
    (void)state;
    const size_t own = top_size(), other = 960 << 10;
    pthread_t t = start_caching_thread(other); /* parked in another, live thread's cache */
    char *p = vmalloc(own);
    memset(p, 0x5a, own);
    free(p); /* parked in ours */
    gm_memstats a = stats();
    size_t rss0 = rss_bytes();
    gm_free_os_memory();
    gm_memstats b = stats();
    size_t rss1 = rss_bytes();
    assert_true(a.heap_inuse - b.heap_inuse >= own + other);
    assert_true(b.heap_released - a.heap_released >= own + other);
    assert_int_equal(b.heap_alloc, a.heap_alloc);
    assert_int_equal(b.frees, a.frees);
    if (gm_opt.madvdontneed && rss0 - rss1 < (own + other) / 10 * 9)
        fail_msg("RSS fell by %zu KiB only", (rss0 - rss1) >> 10);
    /* the pages come back zeroed through the heap, not stale through a cache */
    unsigned char *z = calloc(1, own);
    for (size_t k = 0; k < own; k += 4096) assert_int_equal(z[k], 0);
    free(z);
    stop_caching_thread(t);
}

/* An idle thread's cache is emptied by the scavenger's aging pass within a few seconds. */
static void test_idle_cache_aged_out(void **state) {
    (void)state;
    if (!gm_opt.scavenger) skip();
    /* The background thread starts once the heap has grown past two arenas. */
    void *big = vmalloc((size_t)200 << 20);
    free(big);
    free(vmalloc(64));
    free(vmalloc(40 << 20));
    gm_free_os_memory();
    gm_memstats a = stats();
    const size_t n = top_size();
    pthread_t t = start_caching_thread(n);
    gm_memstats b = stats();
    assert_true(b.heap_inuse >= a.heap_inuse + n);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double waited = 0;
    gm_memstats c = b;
    while (waited < 6.0) {
        usleep(100 * 1000);
        c = stats();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        waited = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
        if (c.heap_inuse + n <= b.heap_inuse) break;
    }
    if (c.heap_inuse + n > b.heap_inuse) fail_msg("idle thread kept its cached span for %.1f s", waited);
    print_message("# idle cached span returned after %.2f s\n", waited);
    stop_caching_thread(t);
}

/* fork: the child inherits a span parked by a thread that does not exist there; its
 * gm_free_os_memory still takes it back, and its own thread's cache keeps working. */
static void test_fork_child_takes_dead_threads_spans(void **state) {
    (void)state;
    const size_t n = 640 << 10;
    pthread_t t = start_caching_thread(n);
    void *mine = vmalloc(300000);
    free(mine);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(20);
        void *again = vmalloc(300000); /* this thread's parked span, inherited */
        if (again != mine) _exit(2);
        free(again);
        gm_memstats a, b;
        gm_read_memstats(&a);
        gm_free_os_memory();
        gm_read_memstats(&b);
        if (a.heap_inuse - b.heap_inuse < n + 300000) _exit(3);
        if (b.heap_sys != b.heap_idle + b.heap_inuse) _exit(4);
        if (mcache_large_parked_total() != 0) _exit(5); /* the process-wide count agrees */
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("fork child failed: status %#x", st);
    stop_caching_thread(t);
}

int main(void) {
    gm_ensure_init(); /* options parsed: top_size() reads gm_opt.secure */
    kSizes[ARRAY_LEN(kSizes) - 1] = top_size();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_same_size_reuse, setup),
        cmocka_unit_test_setup(test_reuse_takes_no_heap_lock, setup),
        cmocka_unit_test_setup(test_stats_exact_with_cached_spans, setup),
        cmocka_unit_test_setup(test_budget_bounds_cached_bytes, setup),
        cmocka_unit_test_setup(test_budget_evicts_larger, setup),
        cmocka_unit_test_setup(test_thread_exit_returns_spans, setup),
        cmocka_unit_test_setup(test_total_budget_bounds_all_threads, setup),
        cmocka_unit_test_setup(test_free_os_memory_takes_cached_spans, setup),
        cmocka_unit_test_setup(test_fork_child_takes_dead_threads_spans, setup),
        cmocka_unit_test_setup(test_idle_cache_aged_out, setup),
    };
    return cmocka_run_group_tests_name("largecache", tests, NULL, NULL);
}
