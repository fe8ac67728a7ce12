/* test_faults.c: every caller of the OS primitives survives their failure. Linked with a
 * copy of the allocator built with GM_FAULT_INJECTION=1 (tests/meson.build): os_fault_set()
 * makes the n-th arena reservation, metadata mmap or madvise fail, and each case checks
 * NULL + ENOMEM (or "nothing released") and that the heap works once the faults stop. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gm_test.h"

#include "internal.h"

#define FOREVER 0

static void *vp; /* keeps results observable */

static uint64_t heap_sys(void) {
    gm_memstats m;
    gm_read_memstats(&m);
    return m.heap_sys;
}
static uint64_t heap_released(void) {
    gm_memstats m;
    gm_read_memstats(&m);
    return m.heap_released;
}
/* A size the current heap cannot hold: the next allocation of it must grow the heap. */
static size_t too_big(void) { return (size_t)heap_sys() + 256 * GM_MIB; }

static size_t vm_size_kib(void) {
    char buf[4096];
    FILE *f = fopen("/proc/self/status", "r");
    size_t kib = 0;
    while (f != NULL && fgets(buf, sizeof buf, f) != NULL)
        if (sscanf(buf, "VmSize: %zu kB", &kib) == 1) break;
    if (f != NULL) fclose(f);
    return kib;
}

#define assert_enomem(expr)                                                                  \
    do {                                                                                     \
        errno = 0;                                                                           \
        vp = (expr);                                                                         \
        if (vp != NULL || errno != ENOMEM)                                                   \
            fail_msg("%s: got %p errno %d, expected NULL + ENOMEM", #expr, vp, errno);       \
    } while (0)

static int disarm(void **state) {
    (void)state;
    os_fault_set(0, 0, 0);
    return 0;
}

/* Arena reservation fails: every allocation entry point reports NULL + ENOMEM, realloc
 * keeps the old block, and the same calls succeed once the fault is gone. */
static void test_arena_reserve_fails(void **state) {
    (void)state;
    char *old = malloc(1000);
    assert_non_null(old);
    pat_fill(old, 1000, 11);
    size_t big = too_big();
    os_fault_set(OS_FAULT_RESERVE, 1, FOREVER);
    assert_enomem(malloc(big));
    assert_enomem(calloc(1, big));
    assert_enomem(aligned_alloc(2 * GM_MIB, big));
    assert_enomem(memalign(4 * GM_MIB, big));
    assert_enomem(realloc(old, big));
    assert_pattern(old, 1000, 11);
    void *q = &vp;
    errno = 0;
    assert_int_equal(posix_memalign(&q, 4096, big), ENOMEM);
    assert_ptr_equal(q, &vp); /* *out untouched on failure */
    assert_int_equal(errno, 0);
    assert_true(os_fault_fired() >= 6);

    os_fault_set(0, 0, 0);
    char *p = malloc(big);
    assert_non_null(p);
    p[0] = 1;
    p[big - 1] = 2;
    free(p);
    old = realloc(old, 3 * GM_MIB);
    assert_non_null(old);
    assert_pattern(old, 1000, 11);
    free(old);
}

/* The heap cannot grow: large allocations use up the free pages, then fail; pages freed
 * after the failure serve the next allocation without any new reservation. */
#define MAXBLOCKS 65536
static void *blocks[MAXBLOCKS];

static void test_exhaust_without_growth(void **state) {
    (void)state;
    os_fault_set(OS_FAULT_RESERVE, 1, FOREVER);
    size_t n = 0;
    for (;;) {
        assert_true(n < MAXBLOCKS);
        errno = 0;
        blocks[n] = malloc(GM_MIB);
        if (blocks[n] == NULL) break;
        memset(blocks[n], (int)(n & 0xff), 64);
        n++;
    }
    assert_int_equal(errno, ENOMEM);
    assert_true(os_fault_fired() >= 1);
    uint64_t sys = heap_sys();
    /* Free every other block; the same number of allocations must now succeed. */
    for (size_t i = 0; i < n; i += 2) {
        free(blocks[i]);
        blocks[i] = NULL;
    }
    for (size_t i = 0; i < n; i += 2) {
        blocks[i] = malloc(GM_MIB);
        if (blocks[i] == NULL) fail_msg("malloc after freeing %zu of %zu blocks failed at %zu", (n + 1) / 2, n, i);
        memset(blocks[i], (int)(i & 0xff), 64);
    }
    assert_int_equal(heap_sys(), sys); /* no growth: the fault is still on */
    os_fault_set(0, 0, 0);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < 64; j++)
            if (((unsigned char *)blocks[i])[j] != (i & 0xff)) fail_msg("block %zu corrupted", i);
        free(blocks[i]);
    }
    void *p = malloc(4 * GM_MIB);
    assert_non_null(p);
    free(p);
}

/* Span structs come from 64 KiB metadata chunks: when a new chunk cannot be mapped, small
 * allocations that need a new span fail, and frees keep working. */
static void test_span_struct_meta_fails(void **state) {
    (void)state;
    os_fault_set(OS_FAULT_META, 1, FOREVER);
    size_t n = 0;
    for (;;) {
        assert_true(n < MAXBLOCKS);
        errno = 0;
        blocks[n] = malloc(GM_MAX_SMALL_SIZE); /* one object per span */
        if (blocks[n] == NULL) break;
        pat_fill(blocks[n], 64, (uint32_t)n);
        n++;
    }
    assert_int_equal(errno, ENOMEM);
    assert_true(os_fault_fired() >= 1);
    free(blocks[0]);
    blocks[0] = malloc(GM_MAX_SMALL_SIZE); /* the freed slot serves it */
    assert_non_null(blocks[0]);
    pat_fill(blocks[0], 64, 0);
    assert_enomem(calloc(2, GM_MAX_SMALL_SIZE / 2));
    os_fault_set(0, 0, 0);
    for (size_t i = 0; i < n; i++) {
        assert_pattern(blocks[i], 64, (uint32_t)i);
        free(blocks[i]);
    }
    char *z = calloc(2, GM_MAX_SMALL_SIZE / 2);
    assert_non_null(z);
    for (size_t i = 0; i < GM_MAX_SMALL_SIZE; i++)
        if (z[i] != 0) fail_msg("calloc byte %zu not zero", i);
    free(z);
}

/* A new arena's metadata cannot be mapped: the reservation is given back (no 64 MiB leak)
 * and the allocation fails; the next attempt succeeds. */
static void test_arena_meta_fails(void **state) {
    (void)state;
    free(malloc(64 * GM_KIB)); /* a span struct in the pool: the next meta call is the arena's */
    gm_free_os_memory(); /* out of the thread's large cache, so the failure is not retried */
    size_t big = too_big();
    size_t vm0 = vm_size_kib();
    os_fault_set(OS_FAULT_META, 1, 1);
    assert_enomem(malloc(big));
    assert_int_equal(os_fault_fired(), 1);
    size_t vm1 = vm_size_kib();
    if (vm1 > vm0 + 64 * 1024) fail_msg("VmSize grew from %zu to %zu KiB: reservation leaked", vm0, vm1);
    char *p = malloc(big); /* only the first call was armed */
    assert_non_null(p);
    p[big - 1] = 1;
    free(p);
}

/* madvise fails: explicit release reports nothing released, the claimed pages go back to
 * the heap and are reused without growth; release works again afterwards. */
static void test_madvise_fails(void **state) {
    (void)state;
    gm_free_os_memory();
    char *p = malloc(8 * GM_MIB);
    assert_non_null(p);
    memset(p, 1, 8 * GM_MIB);
    free(p);
    uint64_t r0 = heap_released(), sys = heap_sys();
    os_fault_set(OS_FAULT_MADVISE, 1, FOREVER);
    gm_free_os_memory();
    assert_int_equal(heap_released(), r0);
    assert_int_equal(malloc_trim(0), 0);
    assert_true(os_fault_fired() >= 2);
    assert_int_equal(heap_released(), r0);
    p = malloc(8 * GM_MIB);
    assert_non_null(p);
    pat_fill(p, 8 * GM_MIB, 5);
    assert_int_equal(heap_sys(), sys);
    assert_pattern(p, 8 * GM_MIB, 5);
    free(p);
    os_fault_set(0, 0, 0);
    assert_int_equal(malloc_trim(0), 1);
    assert_true(heap_released() > r0);
}

/* A big realloc that cannot grow in place moves the block's pages (mremap); when the
 * kernel refuses, it copies instead, and the block arrives whole either way (guarded or
 * not: secure mode moves guarded blocks too). */
static void test_remap_fails(void **state) {
    (void)state;
    for (int armed = 0; armed < 2; armed++) {
        char *p = malloc(4 * GM_MIB), *after = malloc(4 * GM_MIB);
        assert_non_null(p);
        assert_non_null(after);
        pat_fill(p, 4 * GM_MIB, 40 + (uint32_t)armed);
        if (armed) os_fault_set(OS_FAULT_REMAP, 1, FOREVER);
        char *q = realloc(p, 12 * GM_MIB);
        assert_non_null(q);
        assert_pattern(q, 4 * GM_MIB, 40 + (uint32_t)armed);
        pat_fill(q, 12 * GM_MIB, 50);
        assert_pattern(q, 12 * GM_MIB, 50);
        /* armed: the move was tried (and failed) unless the block grew in place */
        if (armed && q != p) assert_true(os_fault_fired() >= 1);
        os_fault_set(0, 0, 0);
        free(q);
        free(after);
    }
}

/* Thread caches are metadata too: threads whose cache cannot be built use the shared
 * fallback cache; every malloc succeeds or says ENOMEM, and threads work afterwards. */
#define NTHREADS 48
static pthread_barrier_t barrier;
static void *cache_thread(void *arg) {
    (void)arg;
    errno = 0;
    char *p = malloc(64);
    intptr_t rc = p != NULL ? 1 : errno == ENOMEM ? 2 : 3;
    if (p != NULL) memset(p, 7, 64);
    pthread_barrier_wait(&barrier);
    if (p != NULL)
        for (int i = 0; i < 64; i++)
            if (p[i] != 7) rc = 4;
    free(p);
    return (void *)rc;
}
static int run_threads(void) {
    pthread_t t[NTHREADS];
    int ok = 0;
    assert_int_equal(pthread_barrier_init(&barrier, NULL, NTHREADS), 0);
    for (int i = 0; i < NTHREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, cache_thread, NULL), 0);
    for (int i = 0; i < NTHREADS; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        if ((intptr_t)rc > 2) fail_msg("thread %d: result %ld (3: NULL without ENOMEM, 4: corrupted)", i, (long)(intptr_t)rc);
        ok += (intptr_t)rc == 1;
    }
    pthread_barrier_destroy(&barrier);
    return ok;
}
static void test_thread_cache_meta_fails(void **state) {
    (void)state;
    os_fault_set(OS_FAULT_META, 1, FOREVER);
    run_threads();
    assert_true(os_fault_fired() >= 1);
    os_fault_set(0, 0, 0);
    assert_int_equal(run_threads(), NTHREADS);
}

/* ---- GOMALLOC_FAULT from the environment: the test re-executes itself ---- */

static int env_child(const char *mode) {
    if (strcmp(mode, "reserve") == 0) { /* reserve:1:0: no arena can ever be reserved */
        errno = 0;
        void *p = malloc(100);
        return p == NULL && errno == ENOMEM && os_fault_fired() >= 1 ? 0 : 1;
    }
    if (strcmp(mode, "madvise") == 0) { /* madvise:1:0: nothing can be released */
        free(malloc(4 * GM_MIB));
        return malloc_trim(0) == 0 && os_fault_fired() >= 1 && malloc(GM_MIB) != NULL ? 0 : 1;
    }
    if (strcmp(mode, "bogus") == 0) /* an unparsable value arms nothing */
    {
        free(malloc(4 * GM_MIB));
        return malloc_trim(0) == 1 && os_fault_fired() == 0 ? 0 : 1;
    }
    return 2;
}

static void run_env_child(const char *mode, const char *value) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("GOMALLOC_FAULT", value, 1);
        execl("/proc/self/exe", "test_faults", "--env-child", mode, (char *)NULL);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("GOMALLOC_FAULT=%s child: status %#x", value, status);
}

static void test_env_variable(void **state) {
    (void)state;
    run_env_child("reserve", "reserve:1:0");
    run_env_child("madvise", "madvise:1:0");
    run_env_child("bogus", "brk:1");
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--env-child") == 0) return env_child(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_arena_reserve_fails, disarm),
        cmocka_unit_test_teardown(test_exhaust_without_growth, disarm),
        cmocka_unit_test_teardown(test_span_struct_meta_fails, disarm),
        cmocka_unit_test_teardown(test_arena_meta_fails, disarm),
        cmocka_unit_test_teardown(test_madvise_fails, disarm),
        cmocka_unit_test_teardown(test_remap_fails, disarm),
        cmocka_unit_test_teardown(test_thread_cache_meta_fails, disarm),
        cmocka_unit_test(test_env_variable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
