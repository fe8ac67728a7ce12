/* test_mcache.c: how much a thread's free lists keep (mcache.c). A class's limit grows while
 * the thread's mallocs find its list empty and shrinks after repeated flushes with no refill
 * between them, so a thread that only frees another thread's objects keeps two batches
 * while one that reuses its frees keeps up to the full limit; the list never passes it.
 * The same limits bound secure.c's lists (run again with GOMALLOC=secure=1).
 * Also: the per-class sampling points count mallocs exactly as MemStats does, and a
 * thread's first free of another thread's object does not become its next malloc. */
#include <pthread.h>

#include "gm_test.h"
#include "internal.h"

#define OBJ 64
#define N 20000

static unsigned cls(void) { return sizeclass_of(OBJ); }
static uint32_t max_limit(void) { return 1024; }  /* 128 KiB / 64 B = 2048, capped at 1024 */
static uint32_t min_limit(void) { return 64; }    /* two refill batches of 32 */

/* The class's list length: the thread list, or secure.c's own under GOMALLOC=secure=1
 * (meson runs this suite both ways: the limits are shared). */
static uint32_t list_len_of(const mcache *c, unsigned cl) {
    /* secure_init_cache shuts the thread lists (cap INT64_MIN/4) when secure.c's lists are
     * in use. Asked at run time: this file is not compiled with the library's
     * GM_SECURE_BUILD, so secure_slow_lists() would answer for the wrong build. */
    if (c->list[cl].cap < INT64_MIN / 8) return c->secure_len[cl];
    return (uint32_t)(freelist_len_minus_cap(&c->list[cl]) + c->limit[cl]);
}

static void *objs[N];

typedef struct { uint32_t limit, len, max_len; } seen;

/* Runs fn on a fresh thread (a fresh mcache) and returns what it saw. */
static seen run_in_thread(void *(*fn)(void *)) {
    seen s = {0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fn, &s), 0);
    pthread_join(t, NULL);
    return s;
}

static void fill_objs(void) {
    for (int i = 0; i < N; i++) assert_non_null(objs[i] = malloc(OBJ));
}

/* Frees every object in objs (allocated by another thread) and reports its list. */
static void *consumer(void *arg) {
    seen *s = arg;
    s->max_len = 0;
    for (int i = 0; i < N; i++) {
        free(objs[i]);
        uint32_t len = list_len_of(gm_tls_mcache, cls());
        if (len > s->max_len) s->max_len = len;
    }
    s->limit = gm_tls_mcache->limit[cls()];
    s->len = list_len_of(gm_tls_mcache, cls());
    return NULL;
}

static void test_free_only_thread_keeps_little(void **state) {
    (void)state;
    fill_objs();
    seen s = run_in_thread(consumer);
    /* It never mallocs this class, so its limit stays at the floor and the list under it. */
    assert_int_equal(s.limit, min_limit());
    assert_true(s.max_len <= min_limit());
    assert_true(s.len <= min_limit());
}

/* Bursts of 1000 frees then 1000 mallocs on one thread: the limit climbs to where a burst
 * fits, and then the bursts stop reaching mcentral (the list never overflows). */
static void *reuser(void *arg) {
    seen *s = arg;
    static __thread void *burst[1000];
    uint64_t flushes_late = 0;
    for (int round = 0; round < 60; round++) {
        for (int i = 0; i < 1000; i++) burst[i] = malloc(OBJ);
        uint8_t before = gm_tls_mcache->list_overflows[cls()];
        uint32_t limit_before = gm_tls_mcache->limit[cls()];
        for (int i = 0; i < 1000; i++) free(burst[i]);
        /* A flush in a late round would show as a new overflow count or a smaller limit. */
        if (round >= 50 && (gm_tls_mcache->list_overflows[cls()] != before ||
                            gm_tls_mcache->limit[cls()] < limit_before))
            flushes_late++;
    }
    s->limit = gm_tls_mcache->limit[cls()];
    s->len = list_len_of(gm_tls_mcache, cls());
    s->max_len = (uint32_t)flushes_late;
    return NULL;
}

static void test_reusing_thread_grows(void **state) {
    (void)state;
    seen s = run_in_thread(reuser);
    assert_true(s.limit >= 1000);
    assert_true(s.limit <= max_limit());
    assert_true(s.len >= 1000 && s.len <= s.limit);
    assert_int_equal(s.max_len, 0); /* no flush in the last 10 rounds */
}

/* A thread that grew its limit by reusing objects, then only frees other threads' objects:
 * after a few flushes with no refill the limit is back at the floor. */
static void *turncoat(void *arg) {
    seen *s = arg;
    static __thread void *burst[1000];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 1000; i++) burst[i] = malloc(OBJ);
        for (int i = 0; i < 1000; i++) free(burst[i]);
    }
    s->max_len = gm_tls_mcache->limit[cls()]; /* the grown limit */
    for (int i = 0; i < N; i++) free(objs[i]);
    s->limit = gm_tls_mcache->limit[cls()];
    s->len = list_len_of(gm_tls_mcache, cls());
    return NULL;
}

static void test_limit_shrinks(void **state) {
    (void)state;
    fill_objs();
    seen s = run_in_thread(turncoat);
    assert_true(s.max_len >= 1000);
    assert_int_equal(s.limit, min_limit());
    assert_true(s.len <= min_limit());
}

/* A thread that mallocs a class now and then but mostly frees it: the limit stays between
 * the bounds and the list never holds more than the limit. */
static void *mixed(void *arg) {
    seen *s = arg;
    s->max_len = 0;
    void *keep[8] = {0};
    for (int i = 0; i < N; i++) {
        free(objs[i]);
        if (i % 97 == 0) {
            free(keep[i % 8]);
            keep[i % 8] = malloc(OBJ);
        }
        uint32_t len = list_len_of(gm_tls_mcache, cls());
        if (len > gm_tls_mcache->limit[cls()]) s->max_len = UINT32_MAX;
    }
    for (int k = 0; k < 8; k++) free(keep[k]);
    s->limit = gm_tls_mcache->limit[cls()];
    return NULL;
}

static void test_limit_bounds(void **state) {
    (void)state;
    fill_objs();
    seen s = run_in_thread(mixed);
    assert_int_not_equal(s.max_len, UINT32_MAX);
    assert_true(s.limit >= min_limit() && s.limit <= max_limit());
}

/* The sampling point rides on the malloc counter: with profiling off, N mallocs of one
 * class move list[cl].nmalloc and MemStats' by_size by exactly N, and sample_at stays out
 * of reach. */
static void test_counter_is_the_countdown(void **state) {
    (void)state;
    int64_t old = gm_set_memprofile_rate(0);
    void *p = malloc(OBJ); /* a slow-path malloc draws the class's point at rate 0 */
    free(p);
    gm_memstats a, b;
    gm_read_memstats(&a);
    uint64_t n0 = gm_tls_mcache->list[cls()].nmalloc;
    for (int i = 0; i < N; i++) objs[i] = malloc(OBJ);
    for (int i = 0; i < N; i++) free(objs[i]);
    gm_read_memstats(&b);
    assert_int_equal(gm_tls_mcache->list[cls()].nmalloc - n0, N);
    assert_int_equal(b.by_size[cls()].mallocs - a.by_size[cls()].mallocs, N);
    assert_true(gm_tls_mcache->sample_at[cls()] > gm_tls_mcache->list[cls()].nmalloc + ((uint64_t)1 << 60));
    gm_set_memprofile_rate(old);
}

/* Hoard's cache-scratch: objects allocated back to back by one thread, one handed to a
 * new thread that frees it first. Reused by that thread, it would keep sharing a cache
 * line with the objects next to it; it must go back to its span (counted as a free of the
 * thread's list), and later mallocs of the class must not return it. */
#define HANDED 8
static void *handed[HANDED];

static void *take_handed(void *arg) {
    seen *s = arg;
    gm_memstats a, b;
    gm_read_memstats(&a);
    free(handed[0]);
    gm_read_memstats(&b);
    s->len = (uint32_t)(b.by_size[sizeclass_of(16)].frees - a.by_size[sizeclass_of(16)].frees);
    s->max_len = 0; /* how many of 200 mallocs returned the handed object */
    void *p[200];
    for (int i = 0; i < 200; i++) {
        p[i] = malloc(16);
        if (p[i] == handed[0]) s->max_len++;
    }
    for (int i = 0; i < 200; i++) free(p[i]);
    return NULL;
}

static void test_handed_object_not_reused(void **state) {
    (void)state;
    for (int i = 0; i < HANDED; i++) assert_non_null(handed[i] = malloc(16));
    seen s = run_in_thread(take_handed);
    assert_int_equal(s.len, 1);     /* counted once, by MemStats */
    assert_int_equal(s.max_len, 0); /* never the thread's own malloc */
    for (int i = 1; i < HANDED; i++) free(handed[i]);
}

/* ... and a second free of it is still a double free. */
static void *free_handed_twice(void *arg) {
    (void)arg;
    free(handed[0]);
    free(handed[0]);
    return NULL;
}

static void free_handed_twice_in_thread(void) {
    pthread_t t;
    pthread_create(&t, NULL, free_handed_twice, NULL);
    pthread_join(t, NULL);
}

static void test_handed_object_double_free(void **state) {
    (void)state;
    for (int i = 0; i < HANDED; i++) assert_non_null(handed[i] = malloc(16));
    char err[512];
    int sig = gm_run_child(free_handed_twice_in_thread, err, sizeof err);
    if (sig != SIGABRT) fail_msg("a second free of a handed object must abort (signal %d, stderr: %s)", sig, err);
    char want[64];
    snprintf(want, sizeof want, "gomalloc: free(): double free %p", handed[0]);
    if (strstr(err, want) == NULL) fail_msg("expected '%s', got: %s", want, err);
    for (int i = 0; i < HANDED; i++) free(handed[i]);
}

/* A thread's first refills of a class carve growing batches (mcache_list_underflow): 1 KiB
 * of objects, then twice as many each time, up to the full batch of 32. Carving writes into
 * every object it takes, so a thread that mallocs once in a class now owns one page of it,
 * not three. Secure mode keeps whole batches, which its shuffle draws from. A batch also
 * stops at the end of its span, so each may come out smaller than the ramp, never larger. */
#define RAMP_OBJ 128
#define RAMP_ROUNDS 5
static void *ramper(void *arg) {
    uint32_t *batch = arg;
    static __thread void *held[RAMP_ROUNDS * 32];
    unsigned cl = sizeclass_of(RAMP_OBJ), n = 0;
    for (int r = 0; r < RAMP_ROUNDS; r++) {
        /* The list is empty (a fresh thread, or drained below), so this malloc refills:
         * the batch is what it returned plus what it left on the list. */
        held[n++] = malloc(RAMP_OBJ);
        uint32_t left = list_len_of(gm_tls_mcache, cl);
        batch[r] = left + 1;
        for (uint32_t i = 0; i < left; i++) held[n++] = malloc(RAMP_OBJ); /* drain, keep */
        if (list_len_of(gm_tls_mcache, cl) != 0) batch[r] = 0; /* not drained: fails below */
    }
    for (unsigned i = 0; i < n; i++) free(held[i]);
    return NULL;
}

static void test_first_batches_ramp(void **state) {
    (void)state;
    uint32_t batch[RAMP_ROUNDS];
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, ramper, batch), 0);
    pthread_join(t, NULL);
    static const uint32_t ramp[RAMP_ROUNDS] = {8, 16, 32, 32, 32}; /* 1, 2, 4 KiB, then full */
    uint32_t most = 0;
    for (int r = 0; r < RAMP_ROUNDS; r++) {
        uint32_t bound = gm_opt.secure ? 32 : ramp[r];
        if (batch[r] < 1 || batch[r] > bound) fail_msg("refill %d carved %u objects, want 1..%u", r, batch[r], bound);
        if (batch[r] > most) most = batch[r];
    }
    assert_int_equal(most, 32); /* and the ramp reaches full batches */
}

/* The cache struct (mheap.c's pool, the hot/cold split in internal.h): page-aligned with
 * its hot part in the first page, so a thread that never uses the cold part never faults
 * it in; and a reused struct comes back all zero, cold part included, although the pool
 * clears that part only where it finds a nonzero word. */
typedef struct { mcache *first, *second; uintptr_t misaligned; unsigned dirty; } reuse_seen;

static void *junk_cold(void *arg) {
    reuse_seen *r = arg;
    free(malloc(24)); /* the thread's own cache exists from here on */
    r->first = gm_tls_mcache;
    /* secure_len is unused outside secure.c's lists, so the exit path leaves it alone. */
    if (!gm_opt.secure) r->first->secure_len[7] = 12345;
    return NULL;
}
static void *check_fresh(void *arg) {
    reuse_seen *r = arg;
    free(malloc(24));
    mcache *c = gm_tls_mcache;
    r->second = c;
    r->misaligned = (uintptr_t)c % 4096;
    /* The whole cold part: every large slot, and secure.c's lists but for the class of
     * the malloc above, where secure=1 keeps the rest of its batch. */
    for (unsigned i = 0; i <= GM_LARGE_CACHE_MAX_PAGES - GM_LARGE_CACHE_MIN_PAGES; i++)
        for (unsigned w = 0; w < GM_LARGE_CACHE_WAYS; w++)
            if (atomic_load(&c->large[i][w]) != NULL) r->dirty++;
    for (unsigned cl = 0; cl < GM_NUM_CLASSES; cl++)
        if (cl != sizeclass_of(24) && (c->secure_head[cl] != NULL || c->secure_len[cl] != 0)) r->dirty++;
    return NULL;
}

static void test_cache_struct_reused_clean(void **state) {
    (void)state; /* that the hot part fits one page is a _Static_assert in mheap.c */
    reuse_seen r = {0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, junk_cold, &r), 0);
    pthread_join(t, NULL);
    assert_int_equal(pthread_create(&t, NULL, check_fresh, &r), 0);
    pthread_join(t, NULL);
    assert_ptr_equal(r.second, r.first); /* the pool is LIFO: the second thread got the first one's struct */
    assert_int_equal(r.misaligned, 0);
    assert_int_equal(r.dirty, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_only_thread_keeps_little),
        cmocka_unit_test(test_reusing_thread_grows),
        cmocka_unit_test(test_limit_shrinks),
        cmocka_unit_test(test_limit_bounds),
        cmocka_unit_test(test_counter_is_the_countdown),
        cmocka_unit_test(test_handed_object_not_reused),
        cmocka_unit_test(test_handed_object_double_free),
        cmocka_unit_test(test_first_batches_ramp),
        cmocka_unit_test(test_cache_struct_reused_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
