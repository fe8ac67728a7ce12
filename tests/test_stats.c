/* test_stats.c: gm_read_memstats against Go's MemStats rules. Every invariant in every
 * snapshot while other threads allocate and free across threads; exact deltas at quiet
 * points, including objects whose threads exited; by_size for a known pattern; mallinfo2
 * and gm_print_stats from the same numbers. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "gm_test.h"
#include "internal.h"

#include <malloc.h>

static void check_invariants(const gm_memstats *m) {
    if (m->heap_sys != m->heap_idle + m->heap_inuse)
        fail_msg("heap_sys %llu != idle %llu + inuse %llu", (unsigned long long)m->heap_sys,
                 (unsigned long long)m->heap_idle, (unsigned long long)m->heap_inuse);
    if (m->heap_released > m->heap_idle) fail_msg("heap_released > heap_idle");
    if (m->alloc != m->heap_alloc) fail_msg("alloc != heap_alloc");
    if (m->frees > m->mallocs)
        fail_msg("frees %llu > mallocs %llu", (unsigned long long)m->frees, (unsigned long long)m->mallocs);
    if (m->heap_objects != m->mallocs - m->frees) fail_msg("heap_objects != mallocs - frees");
    if (m->heap_inuse < m->heap_alloc)
        fail_msg("heap_inuse %llu < heap_alloc %llu", (unsigned long long)m->heap_inuse,
                 (unsigned long long)m->heap_alloc);
    if (m->sys != m->heap_sys + m->mspan_sys + m->mcache_sys + m->other_sys) fail_msg("sys != sum of *_sys");
    if (m->mspan_sys < m->mspan_inuse || m->mcache_sys < m->mcache_inuse) fail_msg("*_sys < *_inuse");
    if (m->total_alloc < m->heap_alloc) fail_msg("total_alloc < heap_alloc");
    uint64_t mallocs = 0, frees = 0;
    for (unsigned i = 0; i < GM_NUM_SIZE_CLASSES; i++) {
        if (m->by_size[i].frees > m->by_size[i].mallocs) fail_msg("by_size[%u]: frees > mallocs", i);
        if (i > 1 && m->by_size[i].size <= m->by_size[i - 1].size) fail_msg("by_size not ascending at %u", i);
        mallocs += m->by_size[i].mallocs;
        frees += m->by_size[i].frees;
    }
    if (mallocs != m->mallocs || frees != m->frees) fail_msg("by_size does not sum to mallocs/frees");
}

/* ---- invariants under load ---- */

#define NHAMMER 4
#define SLOTS 2048
static _Atomic(void *) shared_slots[SLOTS];
static atomic_bool stop;

static void *hammer(void *arg) {
    uint64_t rng = (uintptr_t)arg * 7919 + 1;
    void *mine[64] = {0};
    while (!atomic_load(&stop)) {
        uint64_t r = rng_next(&rng);
        size_t n = (r & 7) == 0 ? 40000 + r % 200000 : 1 + (r >> 8) % 2048; /* some large; never the probe class */
        void *p = malloc(n);
        if (p == NULL) fail_msg("malloc(%zu) failed", n);
        memset(p, 0xab, n < 64 ? n : 64);
        if ((r >> 20) & 1) { /* hand it to whoever takes the slot next: a cross-thread free */
            void *old = atomic_exchange(&shared_slots[(r >> 24) % SLOTS], p);
            free(old);
        } else {
            unsigned k = (r >> 30) % 64;
            free(mine[k]);
            mine[k] = p;
        }
    }
    for (unsigned k = 0; k < 64; k++) free(mine[k]);
    return NULL;
}

/* A probe class nobody else uses, passed back and forth under a strict handshake: one
 * thread allocates, the other frees, and the next malloc waits for that free. Every
 * object is freed within moments of its malloc, so a reader that counts the threads in
 * the wrong order (or fails to clamp what its order lets through) shows a free without its
 * malloc (frees > mallocs). */
#define PROBE_SIZE 27000
static _Atomic(void *) probe_slot;
static atomic_int probe_turn; /* 0: allocator's turn, 1: freer's turn */
static void *probe_alloc(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        if (atomic_load(&probe_turn) != 0) continue;
        atomic_store(&probe_slot, malloc(PROBE_SIZE));
        atomic_store(&probe_turn, 1);
    }
    return NULL;
}
static void *probe_free(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        if (atomic_load(&probe_turn) != 1) continue;
        free(atomic_exchange(&probe_slot, NULL));
        atomic_store(&probe_turn, 0);
    }
    return NULL;
}

/* Lets the probe threads run between the reader's two passes (see internal.h). */
static void widen_window(void) { usleep(200); }

static void test_invariants_under_load(void **state) {
    (void)state;
    gm_stats_between_passes_hook = widen_window;
    pthread_t t[NHAMMER], pa, pf;
    unsigned probe = sizeclass_of(PROBE_SIZE);
    atomic_store(&stop, false);
    for (uintptr_t i = 0; i < NHAMMER; i++) assert_int_equal(pthread_create(&t[i], NULL, hammer, (void *)(i + 1)), 0);
    assert_int_equal(pthread_create(&pa, NULL, probe_alloc, NULL), 0);
    assert_int_equal(pthread_create(&pf, NULL, probe_free, NULL), 0);
    gm_memstats m;
    uint64_t last_mallocs = 0, last_total = 0;
    for (int i = 0; i < 2000; i++) {
        gm_read_memstats(&m);
        check_invariants(&m);
        uint64_t pm = m.by_size[probe].mallocs, pfr = m.by_size[probe].frees;
        /* Whatever the reader's order, a class must never show a free without its malloc
         * (the reader clamps what its order lets through). */
        if (pfr > pm)
            fail_msg("probe class: %llu mallocs, %llu frees: a free was counted without its malloc",
                     (unsigned long long)pm, (unsigned long long)pfr);
        /* cumulative counters never go backwards */
        if (m.mallocs < last_mallocs || m.total_alloc < last_total) fail_msg("cumulative counter went backwards");
        last_mallocs = m.mallocs;
        last_total = m.total_alloc;
        if (i % 64 == 0) usleep(100);
    }
    gm_stats_between_passes_hook = NULL;
    atomic_store(&stop, true);
    for (unsigned i = 0; i < NHAMMER; i++) pthread_join(t[i], NULL);
    pthread_join(pa, NULL);
    pthread_join(pf, NULL);
    free(atomic_exchange(&probe_slot, NULL));
    atomic_store(&probe_turn, 0);
    for (unsigned i = 0; i < SLOTS; i++) free(atomic_exchange(&shared_slots[i], NULL));
    gm_read_memstats(&m);
    check_invariants(&m);
}

/* ---- exact deltas at quiet points ---- */

#define N 1000

static void test_exact_deltas_single_thread(void **state) {
    (void)state;
    static void *p[N];
    unsigned cl = sizeclass_of(100);
    uint64_t sz = gm_class_to_size[cl];
    gm_memstats a, b, c;
    gm_read_memstats(&a);
    for (int i = 0; i < N; i++) p[i] = malloc(100);
    gm_read_memstats(&b);
    assert_int_equal(b.mallocs - a.mallocs, N);
    assert_int_equal(b.frees - a.frees, 0);
    assert_int_equal(b.heap_alloc - a.heap_alloc, N * sz);
    assert_int_equal(b.total_alloc - a.total_alloc, N * sz);
    assert_int_equal(b.heap_objects - a.heap_objects, N);
    assert_int_equal(b.by_size[cl].mallocs - a.by_size[cl].mallocs, N);
    assert_int_equal(b.by_size[cl].size, sz);
    for (int i = 0; i < N; i++) free(p[i]);
    gm_read_memstats(&c);
    assert_int_equal(c.frees - b.frees, N);
    assert_int_equal(c.heap_alloc, a.heap_alloc);
    assert_int_equal(c.heap_objects, a.heap_objects);
    assert_int_equal(c.total_alloc, b.total_alloc);
    check_invariants(&c);
}

static void test_large_objects_counted(void **state) {
    (void)state;
    gm_memstats a, b, c;
    gm_read_memstats(&a);
    void *p = malloc(100000); /* 13 pages, plus a guard page in secure mode */
    gm_read_memstats(&b);
    assert_int_equal(b.by_size[0].mallocs - a.by_size[0].mallocs, 1);
    assert_int_equal(b.heap_alloc - a.heap_alloc, (13 + (gm_opt.secure ? 1 : 0)) * 8192);
    assert_true(b.heap_inuse - a.heap_inuse >= 13 * 8192);
    free(p);
    gm_read_memstats(&c);
    assert_int_equal(c.heap_alloc, a.heap_alloc);
    assert_int_equal(c.by_size[0].frees - a.by_size[0].frees, 1);
}

static void *alloc_and_exit(void *arg) {
    void **out = arg;
    for (int i = 0; i < N; i++) out[i] = malloc(48);
    return NULL;
}

static void test_exited_thread_counted(void **state) {
    (void)state;
    static void *p[N];
    gm_memstats a, b, c;
    /* warm glibc's thread-stack cache so its own per-thread allocations are steady */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, alloc_and_exit, p), 0);
    pthread_join(t, NULL);
    for (int i = 0; i < N; i++) free(p[i]);

    gm_read_memstats(&a);
    assert_int_equal(pthread_create(&t, NULL, alloc_and_exit, p), 0);
    pthread_join(t, NULL);
    gm_read_memstats(&b);
    unsigned cl = sizeclass_of(48);
    assert_int_equal(b.by_size[cl].mallocs - a.by_size[cl].mallocs, N);
    assert_int_equal(b.heap_objects - a.heap_objects, N);
    assert_int_equal(b.heap_alloc - a.heap_alloc, N * 48);
    for (int i = 0; i < N; i++) free(p[i]); /* freed by another thread than the one that allocated */
    gm_read_memstats(&c);
    assert_int_equal(c.heap_objects, a.heap_objects);
    assert_int_equal(c.heap_alloc, a.heap_alloc);
}

static void test_by_size_pattern(void **state) {
    (void)state;
    static const size_t sizes[] = {1, 16, 17, 100, 1000, 1025, 5000, 32768};
    static void *p[ARRAY_LEN(sizes)][10];
    gm_memstats a, b;
    gm_read_memstats(&a);
    for (unsigned i = 0; i < ARRAY_LEN(sizes); i++)
        for (int k = 0; k < 10; k++) p[i][k] = malloc(sizes[i]);
    gm_read_memstats(&b);
    uint64_t want[GM_NUM_SIZE_CLASSES] = {0};
    for (unsigned i = 0; i < ARRAY_LEN(sizes); i++) want[sizeclass_of(sizes[i])] += 10;
    for (unsigned cl = 0; cl < GM_NUM_SIZE_CLASSES; cl++)
        if (b.by_size[cl].mallocs - a.by_size[cl].mallocs != want[cl])
            fail_msg("by_size[%u] (%u B): +%llu mallocs, expected +%llu", cl, b.by_size[cl].size,
                     (unsigned long long)(b.by_size[cl].mallocs - a.by_size[cl].mallocs),
                     (unsigned long long)want[cl]);
    for (unsigned i = 0; i < ARRAY_LEN(sizes); i++)
        for (int k = 0; k < 10; k++) free(p[i][k]);
}

static void test_mallinfo2_matches(void **state) {
    (void)state;
    gm_memstats m;
    gm_read_memstats(&m);
    struct mallinfo2 mi = mallinfo2();
    assert_int_equal(mi.arena, m.heap_sys);
    assert_int_equal(mi.uordblks, m.heap_alloc);
    assert_int_equal(mi.fordblks, m.heap_idle + m.heap_inuse - m.heap_alloc);
    assert_int_equal(mi.keepcost, m.heap_released);
}

/* gm_print_stats writes the report (it must not allocate: checked by mallocs not moving). */
static void test_print_stats(void **state) {
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    gm_memstats a, b;
    gm_read_memstats(&a);
    gm_print_stats(fds[1]);
    gm_read_memstats(&b);
    close(fds[1]);
    assert_int_equal(b.mallocs, a.mallocs);
    static char buf[1 << 16];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)n;
    close(fds[0]);
    buf[len] = 0;
    static const char *fields[] = {"alloc", "total_alloc", "sys", "mallocs", "frees", "heap_alloc",
                                   "heap_sys", "heap_idle", "heap_inuse", "heap_released",
                                   "heap_objects", "mspan_inuse", "mspan_sys", "mcache_inuse",
                                   "mcache_sys", "other_sys", "peak_rss", "class   size"};
    for (unsigned i = 0; i < ARRAY_LEN(fields); i++) {
        char want[64];
        snprintf(want, sizeof want, "gomalloc:   %s ", fields[i]);
        if (strstr(buf, want) == NULL) fail_msg("report has no line for %s:\n%s", fields[i], buf);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_deltas_single_thread),
        cmocka_unit_test(test_large_objects_counted),
        cmocka_unit_test(test_exited_thread_counted),
        cmocka_unit_test(test_by_size_pattern),
        cmocka_unit_test(test_mallinfo2_matches),
        cmocka_unit_test(test_print_stats),
        cmocka_unit_test(test_invariants_under_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
