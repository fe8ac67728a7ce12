/* test_secure.c: secure mode's detections. Built twice (tests/meson.build): against the
 * default library, run with GOMALLOC=secure=2 (secure.c's slow-path lists), and against a
 * copy built with GM_SECURE_BUILD (what -Dsecure=true builds), run at its default level 1
 * (the fast paths' encoded lists) and with secure=2. Each misuse runs in a child whose
 * stderr is a pipe; the parent checks the exact message and SIGABRT (or SIGSEGV for the
 * guard page). A write after free must be caught by the very next malloc of its class,
 * before anything is handed out. Also: double frees are still caught, and fresh objects do
 * not come out in address order. */
#include <malloc.h>
#include "gm_test.h"
#include "internal.h"

static void *volatile victim;
static char expect[128];

static void expect_abort(void (*fn)(void), const char *what) {
    char err[4096];
    int sig = gm_run_child(fn, err, sizeof err);
    snprintf(expect, sizeof expect, "gomalloc: %s %p\n", what, victim);
    if (sig != SIGABRT) fail_msg("expected SIGABRT, got signal %d; stderr: %s", sig, err);
    if (strstr(err, expect) == NULL) fail_msg("expected '%s' on stderr, got: %s", expect, err);
}

/* victim is allocated in the parent before the fork, so the child, which inherits the
 * heap, misuses a block it really owns. Freed last, victim is the head of its class's list,
 * so the next malloc of the class pops it and must stop there: a child that gets past that
 * malloc exits normally, and the test fails. */
static void overwrite_link(void) {
    void **p = victim;
    free(p);
    p[0] = (void *)0x4141414141414141ull; /* use after free: the list link */
    (void)malloc(48);
}

static void *volatile other;

/* A plain pointer to another live object of the class: what an attacker who knows one
 * heap address (but not the key) would write to get two owners for one block. */
static void overwrite_link_plain(void) {
    void **p = victim;
    free(p);
    p[0] = other;
    (void)malloc(48);
}

static void overwrite_mark(void) {
    void **p = victim;
    free(p);
    p[1] = (void *)0x4242424242424242ull;
    (void)malloc(48);
}

static void overwrite_body(void) {
    char *p = victim;
    free(p);
    p[40] = 'x'; /* past both list words: only the fill check (secure=2) sees it */
    (void)malloc(48);
}

static void double_free(void) {
    free(victim);
    for (int i = 0; i < 100; i++) free(malloc(48)); /* the first free is buried */
    free(victim);
}

static void test_link_overwrite(void **state) {
    (void)state;
    victim = malloc(48);
    expect_abort(overwrite_link, "heap corruption detected: free list link overwritten in");
}

static void test_link_overwrite_plain(void **state) {
    (void)state;
    other = malloc(48);
    victim = malloc(48);
    expect_abort(overwrite_link_plain, "heap corruption detected: free list link overwritten in");
    free(other);
}

#if GM_SECURE_BUILD
/* Forged links that decode correctly (written with the key, as by an attacker who leaked
 * it) must still name a slot of the victim's class: the fast path's slot check. */
static void *volatile forged;

static void overwrite_link_forged(void) {
    void **p = victim;
    free(p);
    p[0] = freelist_encode(p, forged);
    (void)malloc(48);
}

/* Only at level 1 (main): level 2 keeps secure.c's own lists. */
static void test_link_forged(void **state) {
    (void)state;
    static char not_heap[64] __attribute__((aligned(16)));
    char *same = malloc(48), *big = malloc(4000);
    void *targets[] = {
        not_heap,  /* foreign memory */
        same + 16, /* inside a slot of the right class, not its start */
        big,       /* a slot of another class */
    };
    for (size_t i = 0; i < sizeof targets / sizeof *targets; i++) {
        forged = targets[i];
        victim = malloc(48);
        expect_abort(overwrite_link_forged, "heap corruption detected: free list link overwritten in");
        free(victim);
    }
    free(same);
    free(big);
}
#endif

static void test_mark_overwrite(void **state) {
    (void)state;
    victim = malloc(48);
    expect_abort(overwrite_mark, "heap corruption detected: write after free in");
}

/* Only at level 2 (main), which fills freed objects. */
static void test_body_overwrite(void **state) {
    (void)state;
    victim = malloc(48);
    expect_abort(overwrite_body, "heap corruption detected: write after free in");
}

static void test_double_free(void **state) {
    (void)state;
    victim = malloc(48);
    expect_abort(double_free, "free(): double free");
}

static void overflow_large(void) {
    char *p = victim;
    size_t n = malloc_usable_size(p);
    p[n - 1] = 1;
    p[n] = 1; /* the guard page */
}

static void test_guard_page(void **state) {
    (void)state;
    victim = malloc(100000);
    char err[256];
    int sig = gm_run_child(overflow_large, err, sizeof err);
    if (sig != SIGSEGV) fail_msg("a write past a large object must fault (signal %d)", sig);
}

/* Guarded spans in the thread's large cache (issue 7). A freed guarded object is parked
 * with its guard page still in place and handed out again without an mprotect, so what
 * the guard promises must hold for a cached span as for a fresh one. */
enum { LARGE_N = 100000, LARGE_PAGES = (LARGE_N + GM_PAGE_SIZE - 1) / GM_PAGE_SIZE };

/* A block of LARGE_N bytes that came from the large cache: the first malloc misses (which
 * makes its page count wanted), its free parks the span, the second malloc takes it back. */
static char *cached_large(void) {
    char *p = malloc(LARGE_N);
    assert_non_null(p);
    free(p);
    assert_int_equal(span_of((uintptr_t)p)->state, MSPAN_CACHED);
    char *q = malloc(LARGE_N);
    assert_ptr_equal(q, p);
    return q;
}

static void test_cached_guard_faults(void **state) {
    (void)state;
    char *p = cached_large();
    /* usable size: the object's pages, not the guard page after them */
    assert_int_equal(malloc_usable_size(p), (size_t)LARGE_PAGES * GM_PAGE_SIZE);
    memset(p, 0x5a, malloc_usable_size(p)); /* every usable byte is writable */
    victim = p;
    char err[256];
    int sig = gm_run_child(overflow_large, err, sizeof err);
    if (sig != SIGSEGV) fail_msg("a write past a large object from the cache must fault (signal %d)", sig);
    free(p);
}

/* The second free finds the span parked (MSPAN_CACHED), not back in the heap. */
static void double_free_cached(void) {
    free(victim);
    if (span_of((uintptr_t)victim)->state != MSPAN_CACHED) _exit(3); /* not the case under test */
    free(victim);
}

static void test_cached_double_free(void **state) {
    (void)state;
    victim = cached_large();
    expect_abort(double_free_cached, "free(): double free");
    free(victim);
}

/* A guard page outlives its span in the heap (where guards are guard regions, which cost
 * nothing on free memory). Spans are carved around such a page while the heap has other
 * room; a guarded span that fits just below it ends there and keeps it as its own guard;
 * and when nothing else is left, spans go over it and lift it. In a child: K guarded
 * objects are freed to the heap; smaller large objects are allocated (some land on an
 * old guard: the run before it fits); then 8 KiB objects (one page each) are written in
 * full, first a few, none of which may cover an old guard, then until every old guard
 * page is inside some span, which is read: a guard left in place faults. Then one write
 * past a large object placed on an old guard must fault too. */
enum { REUSE_K = 48 };
static bool inside_new_span(uintptr_t page) {
    mspan *s = span_of(page);
    if (s == NULL || s->state != MSPAN_INUSE) return false;
    /* the guard of a new large object is not inside it */
    return !(s->sizeclass == 0 && s->guard && page == s->base + ((uintptr_t)(s->npages - 1) << GM_PAGE_SHIFT));
}

static void reuse_guarded_pages(void) {
    static char *old[REUSE_K], *big[REUSE_K];
    static uintptr_t guard[REUSE_K];
    for (int k = 0; k < REUSE_K; k++) {
        size_t pages = 6 + (size_t)(k * 7) % 33;
        old[k] = malloc(pages * GM_PAGE_SIZE);
        if (old[k] == NULL) _exit(5);
        guard[k] = (uintptr_t)old[k] + pages * GM_PAGE_SIZE;
    }
    for (int k = 0; k < REUSE_K; k++) free(old[k]);
    gm_free_os_memory(); /* parked spans go to the heap too */
    int kept = 0, lifted = 0, early = 0;
    char *on_guard = NULL;
    for (int k = 0; k < REUSE_K / 2; k++) {
        size_t pages = 4 + (size_t)(k * 7) % 33;
        big[k] = malloc(pages * GM_PAGE_SIZE);
        if (big[k] == NULL) _exit(5);
        memset(big[k], 0x44, malloc_usable_size(big[k]));
        for (int j = 0; j < REUSE_K; j++)
            if ((uintptr_t)big[k] + malloc_usable_size(big[k]) == guard[j]) {
                kept++;
                on_guard = big[k];
            }
    }
    gm_memstats m;
    gm_read_memstats(&m);
    const uint64_t sys0 = m.heap_sys;
    size_t covered = 0;
    for (size_t i = 0; covered < REUSE_K && i < (sys0 + 2 * GM_ARENA_SIZE) / GM_PAGE_SIZE; i++) {
        char *p = malloc(GM_PAGE_SIZE);
        if (p == NULL) _exit(5);
        memset(p, 0x55, GM_PAGE_SIZE);
        covered = 0;
        for (int j = 0; j < REUSE_K; j++) { /* in a span: inside it or as its guard */
            mspan *s = span_of(guard[j]);
            covered += s == NULL || s->state == MSPAN_INUSE;
        }
        if (i == 256) early = (int)covered;
    }
    for (int j = 0; j < REUSE_K; j++) {
        if (!inside_new_span(guard[j])) continue;
        const volatile char *pg = (const volatile char *)guard[j];
        for (size_t i = 0; i < GM_PAGE_SIZE; i += 64) (void)pg[i];
        lifted++;
    }
    gm_read_memstats(&m);
    fprintf(stderr, "reached kept=%d lifted=%d early=%d covered=%zu grew=%d\n", kept, lifted, early, covered,
            m.heap_sys > sys0);
    fflush(stderr);
    if (on_guard == NULL) _exit(0);
    victim = on_guard;
    overflow_large();
}

static void test_guard_pages_reused(void **state) {
    (void)state;
    char err[512];
    int sig = gm_run_child(reuse_guarded_pages, err, sizeof err);
    int kept = -1, lifted = -1, early = -1, grew = -1;
    size_t covered = 0;
    const char *r = strstr(err, "reached ");
    if (r == NULL ||
        sscanf(r, "reached kept=%d lifted=%d early=%d covered=%zu grew=%d", &kept, &lifted, &early, &covered, &grew) != 5)
        fail_msg("a reused page faulted or the child failed (signal %d); stderr: %s", sig, err);
    if (lifted == 0) fail_msg("no old guard page was reused by a span: the case is not exercised");
    if (covered != REUSE_K) fail_msg("only %zu of %d old guard pages were reached", covered, REUSE_K);
    /* Guards stay in the heap only as guard regions; mprotect guards die with their span. */
    if (os_guards_persist()) {
        if (kept == 0) fail_msg("no large object was placed on an old guard page");
        if (early != kept)
            fail_msg("the first 256 one-page spans covered %d old guard pages while the heap had room", early - kept);
        if (grew) fail_msg("the heap grew before the old guard pages were used");
    }
    if (kept > 0 && sig != SIGSEGV)
        fail_msg("a write past a large object placed on an old guard must fault (signal %d)", sig);
}

/* realloc grows a guarded object in place by moving its guard page: the old guard page
 * becomes part of the object, the page after the new end faults. First fit puts a block
 * this big after every span in use (no earlier case leaves a hole of 40 MiB), so the
 * pages after it are free. */
static void test_realloc_moves_guard(void **state) {
    (void)state;
    const size_t n = (size_t)40 << 20, grown = n + 3 * GM_PAGE_SIZE + 100;
    char *p = malloc(n);
    assert_non_null(p);
    assert_int_equal(malloc_usable_size(p), n);
    pat_fill(p + n - 4096, 4096, 7);
    char *q = realloc(p, grown);
    assert_non_null(q);
    if (q != p) fail_msg("a guarded object with free pages after it moved instead of growing in place");
    size_t usable = malloc_usable_size(q);
    assert_int_equal(usable, n + 4 * GM_PAGE_SIZE);
    assert_int_equal(pat_check(q + n - 4096, 4096, 7), (size_t)-1);
    memset(q + n - GM_PAGE_SIZE, 0x33, usable - (n - GM_PAGE_SIZE)); /* the old guard page too */
    victim = q;
    char err[256];
    int sig = gm_run_child(overflow_large, err, sizeof err);
    if (sig != SIGSEGV) fail_msg("a write past a grown large object must fault (signal %d)", sig);
    free(q);
}

/* Fresh objects come out of a span in random order, not ascending. */
static void test_random_order(void **state) {
    (void)state;
    enum { N = 24 };
    void *p[N];
    for (int i = 0; i < N; i++) p[i] = malloc(2000); /* a class with few objects per span */
    int ascending = 0, descending = 0;
    for (int i = 1; i < N; i++) {
        if (p[i] > p[i - 1]) ascending++;
        else descending++;
    }
    if (ascending == N - 1 || descending == N - 1) fail_msg("objects came out in address order");
    for (int i = 0; i < N; i++) free(p[i]);
}

/* Normal use still works, with contents kept, across many frees and reuses. */
static void test_contents_survive(void **state) {
    (void)state;
    enum { N = 5000 };
    static unsigned char *p[N];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            size_t n = 16 + (size_t)(i % 50) * 40;
            p[i] = malloc(n);
            memset(p[i], (unsigned char)i, n);
        }
        for (int i = 0; i < N; i += 2) free(p[i]);
        for (int i = 1; i < N; i += 2) {
            size_t n = 16 + (size_t)(i % 50) * 40;
            for (size_t k = 0; k < n; k++)
                if (p[i][k] != (unsigned char)i) fail_msg("block %d byte %zu changed", i, k);
            free(p[i]);
        }
    }
}

int main(void) {
    if (gm_opt.secure == 0) {
        fprintf(stderr, "test_secure must run with GOMALLOC=secure=1 or 2, or on a secure build\n");
        return 1;
    }
    /* Cases that do not apply at this level are left out of the list: cmocka reports a
     * skip as "not ok # SKIP", which meson counts as a failure. */
    struct CMUnitTest tests[20];
    size_t n = 0;
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_link_overwrite);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_link_overwrite_plain);
#if GM_SECURE_BUILD
    if (gm_opt.secure == 1) tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_link_forged);
#endif
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_mark_overwrite);
    if (gm_opt.secure >= 2) tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_body_overwrite);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_double_free);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_guard_page);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_cached_guard_faults);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_cached_double_free);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_guard_pages_reused);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_realloc_moves_guard);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_random_order);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_contents_survive);
    return _cmocka_run_group_tests("tests", tests, n, NULL, NULL);
}
