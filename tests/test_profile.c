/* test_profile.c: heap profiling (alloc/profile.c) through the static library: the
 * countdown samples at the rate asked for, every sampled object's free is counted whatever
 * thread frees it, spans go back to the free fast path when their samples close, nothing
 * is mapped while profiling is off, and written profiles are well-formed, also from a fork
 * child. The suite runs with GOMALLOC=memprofilerate=0, so each case sets its own rate.
 * pprof reading the profiles back is tests/profile_pprof.py. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gm_test.h"
#include "gomalloc.h"
#include "internal.h"

typedef struct totals {
    uint64_t io, ib, ao, ab;
} totals;

static totals read_totals(void) {
    totals t;
    profile_totals(&t.io, &t.ib, &t.ao, &t.ab);
    return t;
}

static size_t slot_of(size_t n) { return gm_class_to_size[sizeclass_of(n)]; }

/* Runs first: the process started with profiling off, so nothing may be mapped for it. */
static void test_rate0_maps_nothing(void **state) {
    (void)state;
    void *v[4096];
    for (int round = 0; round < 16; round++) {
        for (int i = 0; i < 4096; i++) v[i] = malloc(16 + (size_t)(i * 37 % 4000));
        for (int i = 0; i < 4096; i++) free(v[i]);
    }
    void *big = malloc(8 << 20);
    free(big);
    totals t = read_totals();
    assert_int_equal(t.ao, 0);
    assert_int_equal(profile_sys_bytes(), 0);
}

static void test_rate1_samples_every_allocation(void **state) {
    (void)state;
    enum { N = 1000 };
    static void *v[N];
    assert_int_equal(gm_set_memprofile_rate(1), 0);
    totals before = read_totals();
    for (int i = 0; i < N; i++) v[i] = malloc(100);
    totals mid = read_totals();
    gm_set_memprofile_rate(0);
    /* At least N: the allocator may allocate for itself on the way (a thread start). */
    assert_true(mid.ao - before.ao >= N);
    assert_true(mid.ab - before.ab >= (uint64_t)N * slot_of(100));
    for (int i = 0; i < N; i++) free(v[i]);
    totals after = read_totals();
    assert_int_equal(mid.io - after.io, N); /* each free closed exactly its own sample */
    assert_int_equal(mid.ib - after.ib, (uint64_t)N * slot_of(100));
    assert_int_equal(after.ao, mid.ao);
    assert_true(profile_sys_bytes() > 0);
}

/* A sampled object sends its whole span to the slow free path; closing the sample (the
 * free) gives the span back to the fast path. */
static void test_span_marked_while_sampled(void **state) {
    (void)state;
    gm_set_memprofile_rate(1);
    char *a = malloc(48);
    gm_set_memprofile_rate(0);
    mspan *s = span_of((uintptr_t)a);
    assert_non_null(s);
    assert_int_equal(spanref_freeclass(span_ref((uintptr_t)a)), 0);
    assert_int_equal(spanref_sizeclass(span_ref((uintptr_t)a)), s->sizeclass);
    assert_true(s->nsampled >= 1);
    char *b = malloc(48); /* unsampled, very likely the same span */
    mspan *sb = span_of((uintptr_t)b);
    free(b);             /* a slow free of an unsampled object: no change to the profile */
    assert_int_equal(spanref_freeclass(span_ref((uintptr_t)a)), 0);
    uint16_t before = s->nsampled;
    free(a);
    assert_int_equal(s->nsampled, before - 1);
    if (s->nsampled == 0) assert_int_equal(span_ref((uintptr_t)a), SPANREF(s->base, s->sizeclass, s->sizeclass));
    (void)sb;
    /* Large objects carry their own mark. */
    gm_set_memprofile_rate(1);
    void *big = malloc(100000);
    gm_set_memprofile_rate(0);
    assert_int_equal(span_of((uintptr_t)big)->nsampled, 1);
    totals t0 = read_totals();
    free(big);
    totals t1 = read_totals();
    assert_int_equal(t0.io - t1.io, 1);
    assert_int_equal(t0.ib - t1.ib, 13 * 8192); /* 100000 B -> 13 pages */
}

/* A span of several pages: a sample marks every page's span map entry, each keeping the
 * span's base, and closing it restores them, so frees through any page take the slow
 * path meanwhile. 1408 B is a class of 2-page spans. */
static void test_multipage_span_marked(void **state) {
    (void)state;
    gm_set_memprofile_rate(1);
    char *a = malloc(1408);
    gm_set_memprofile_rate(0);
    mspan *s = span_of((uintptr_t)a);
    assert_non_null(s);
    assert_int_equal(s->npages, 2);
    for (uint32_t i = 0; i < s->npages; i++)
        assert_int_equal(span_ref(s->base + i * 8192), SPANREF(s->base, s->sizeclass, 0));
    uint16_t before = s->nsampled;
    free(a);
    assert_int_equal(s->nsampled, before - 1);
    if (s->nsampled == 0)
        for (uint32_t i = 0; i < s->npages; i++)
            assert_int_equal(span_ref(s->base + i * 8192), SPANREF(s->base, s->sizeclass, s->sizeclass));
}

enum { HANDED = 500 };
static void *handed[HANDED];
static void *free_handed(void *arg) {
    (void)arg;
    for (int i = 0; i < HANDED; i++) free(handed[i]);
    return NULL;
}

static void test_cross_thread_free_updates_profile(void **state) {
    (void)state;
    gm_set_memprofile_rate(1);
    totals before = read_totals();
    for (int i = 0; i < HANDED; i++) handed[i] = malloc(i % 2 ? 200 : 40000);
    gm_set_memprofile_rate(0);
    totals mid = read_totals();
    assert_true(mid.io - before.io >= HANDED);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, free_handed, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    totals after = read_totals();
    assert_int_equal(mid.io - after.io, HANDED);
    assert_int_equal(mid.ib - after.ib, (HANDED / 2) * (uint64_t)slot_of(200) + (HANDED / 2) * 5 * 8192);
}

/* The countdown samples an object of s bytes with probability 1 - exp(-s/rate). */
static void check_sampling(size_t size, int n, int64_t rate) {
    size_t slot = size <= 32768 ? slot_of(size) : (size + 8191) / 8192 * 8192;
    gm_set_memprofile_rate(rate);
    totals before = read_totals();
    for (int i = 0; i < n; i++) free(malloc(size));
    totals after = read_totals();
    gm_set_memprofile_rate(0);
    double expect = n * (1 - exp(-(double)slot / (double)rate));
    double got = (double)(after.ao - before.ao);
    print_message("# size %zu rate %lld: %.0f samples, expected %.0f\n", size, (long long)rate, got, expect);
    /* Each allocation is sampled independently, so the count is binomial with variance
     * <= expect: 5 standard deviations fail a correct sampler once in ~10^6 runs. */
    assert_true(fabs(got - expect) < 5 * sqrt(expect));
}

static void test_sampling_rate(void **state) {
    (void)state;
    check_sampling(512, 200000, 65536);  /* ~1556 expected */
    check_sampling(16, 2000000, 65536);  /* ~488 */
    check_sampling(65536, 4000, 65536);  /* ~2528 */
    check_sampling(1000, 300000, 524288); /* the default rate: ~586 */
}

/* Parses a profile: header totals equal the sum of the records, records have stacks, and
 * the mappings follow. Returns the number of records. */
static int check_profile_file(const char *path) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[8192];
    unsigned long long h[4], r[4], sum[4] = {0};
    long rate;
    assert_non_null(fgets(line, sizeof line, f));
    assert_int_equal(sscanf(line, "heap profile: %llu: %llu [%llu: %llu] @ heap_v2/%ld", &h[0], &h[1], &h[2], &h[3], &rate), 5);
    assert_true(rate >= 1);
    int records = 0, maps = 0;
    bool in_maps = false;
    while (fgets(line, sizeof line, f)) {
        if (in_maps) {
            maps += strstr(line, " r-xp ") != NULL;
            continue;
        }
        if (strcmp(line, "MAPPED_LIBRARIES:\n") == 0) {
            in_maps = true;
            continue;
        }
        if (line[0] == '\n') continue;
        int used = 0;
        assert_int_equal(sscanf(line, "%llu: %llu [%llu: %llu] @%n", &r[0], &r[1], &r[2], &r[3], &used), 4);
        assert_non_null(strstr(line + used, " 0x"));
        assert_true(r[0] <= r[2] && r[1] <= r[3]);
        for (int i = 0; i < 4; i++) sum[i] += r[i];
        records++;
    }
    fclose(f);
    for (int i = 0; i < 4; i++) assert_int_equal(sum[i], h[i]);
    assert_true(in_maps);
    assert_true(maps >= 1);
    return records;
}

static void test_write_profile(void **state) {
    (void)state;
    gm_set_memprofile_rate(4096);
    void *keep[256];
    for (int i = 0; i < 256; i++) keep[i] = malloc(2048);
    gm_set_memprofile_rate(0);
    char path[128], want[128];
    snprintf(want, sizeof want, "/tmp/gm-test-profile-%d.heap", (int)getpid());
    assert_int_equal(gm_write_heap_profile("/tmp/gm-test-profile-%p.heap"), 0);
    assert_true(check_profile_file(want) >= 1);
    snprintf(path, sizeof path, "%s.tmp.%d", want, (int)getpid());
    assert_int_equal(access(path, F_OK), -1); /* the temporary was renamed */
    unlink(want);
    /* A path longer than any internal buffer but a gm_buf's (here ~700 bytes). */
    char dir[1024], longp[1100];
    int k = snprintf(dir, sizeof dir, "/tmp/gm-test-long-%d", (int)getpid());
    assert_int_equal(mkdir(dir, 0700), 0);
    for (int i = 0; i < 3; i++) {
        k += snprintf(dir + k, sizeof dir - (size_t)k, "/%0200d", i);
        assert_int_equal(mkdir(dir, 0700), 0);
    }
    snprintf(longp, sizeof longp, "%s/p.heap", dir);
    assert_int_equal(gm_write_heap_profile(longp), 0);
    assert_true(check_profile_file(longp) >= 1);
    unlink(longp);
    for (int i = 0; i < 4; i++) {
        rmdir(dir);
        *strrchr(dir, '/') = '\0';
    }
    /* A directory that does not exist: -1 and errno, nothing else. */
    errno = 0;
    assert_int_equal(gm_write_heap_profile("/nonexistent-dir/x.heap"), -1);
    assert_int_equal(errno, ENOENT);
    for (int i = 0; i < 256; i++) free(keep[i]);
    /* The profile's memory is part of other_sys, and the sum still holds. */
    gm_memstats m;
    gm_read_memstats(&m);
    assert_true(m.other_sys >= profile_sys_bytes());
    assert_int_equal(m.sys, m.heap_sys + m.mspan_sys + m.mcache_sys + m.other_sys);
}

/* A fork child (here while another thread keeps sampling) writes a complete profile of
 * its own, and the parent's stays intact. */
static atomic_bool churn_stop;
static void *churn(void *arg) {
    (void)arg;
    while (!atomic_load(&churn_stop)) free(malloc(700));
    return NULL;
}

static void test_fork_child_profile(void **state) {
    (void)state;
    gm_set_memprofile_rate(512);
    pthread_t t;
    atomic_store(&churn_stop, false);
    assert_int_equal(pthread_create(&t, NULL, churn, NULL), 0);
    char child_path[128], parent_path[128];
    for (int round = 0; round < 20; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            for (int i = 0; i < 1000; i++) free(malloc(300));
            _exit(gm_write_heap_profile("/tmp/gm-test-fork-%p.heap") == 0 ? 0 : 1);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        snprintf(child_path, sizeof child_path, "/tmp/gm-test-fork-%d.heap", (int)pid);
        assert_true(check_profile_file(child_path) >= 1);
        unlink(child_path);
    }
    /* The parent writes while the churn thread still samples: the header must still be
     * the sum of the records (one lock hold for both). */
    snprintf(parent_path, sizeof parent_path, "/tmp/gm-test-fork-%d.heap", (int)getpid());
    for (int round = 0; round < 50; round++) {
        assert_int_equal(gm_write_heap_profile(parent_path), 0);
        assert_true(check_profile_file(parent_path) >= 1);
    }
    atomic_store(&churn_stop, true);
    pthread_join(t, NULL);
    gm_set_memprofile_rate(0);
    unlink(parent_path);
}

/* ---- traceback: the CFI reader against libgcc's unwinder, on the same stacks ---- */

static int tb_mismatches, tb_compared, tb_cfi_failed;

/* Captures with both methods from one frame and compares everything from this function's
 * caller outwards: the innermost one or two addresses differ (the two calls sit at
 * different places here, and libgcc's capture may be a tail call). */
static __attribute__((noinline)) void compare_here(void) {
    uintptr_t a[64], b[64];
    int na = traceback_capture(a, 64, TRACEBACK_LIBGCC);
    int nb = traceback_capture(b, 64, TRACEBACK_CFI);
    __asm__ volatile("" ::: "memory");
    if (nb < 0) {
        tb_cfi_failed++;
        return;
    }
    tb_compared++;
    int m = (na < nb ? na : nb) - 2; /* the frames from the caller of compare_here outwards */
    if (m < 3 || (na - nb) * (na - nb) > 1 || memcmp(a + na - m, b + nb - m, (size_t)m * sizeof a[0]) != 0) {
        if (tb_mismatches++ < 3) {
            print_message("# traceback mismatch: libgcc %d frames, cfi %d\n", na, nb);
            for (int i = 0; i < (na > nb ? na : nb) && i < 12; i++)
                print_message("#   %2d %#lx %#lx\n", i, i < na ? (unsigned long)a[i] : 0ul, i < nb ? (unsigned long)b[i] : 0ul);
        }
    }
}

/* Frames of different shapes: plain recursion, a variable-length array (rbp-based CFA),
 * and libc's qsort calling back into us. */
static volatile int tb_sink;
static __attribute__((noinline)) void tb_recurse(int depth, int vla);
static int tb_cmp(const void *x, const void *y) {
    compare_here();
    return *(const int *)x - *(const int *)y;
}
static __attribute__((noinline)) void tb_recurse(int depth, int vla) {
    if (depth == 0) {
        compare_here();
        int v[3] = {3, 1, 2};
        qsort(v, 3, sizeof v[0], tb_cmp);
        return;
    }
    if (vla) {
        char buf[16 + depth * 8]; /* a frame whose size is only known at run time */
        memset(buf, depth, sizeof buf);
        tb_recurse(depth - 1, (depth & 1) != 0);
        tb_sink += buf[depth];
    } else {
        tb_recurse(depth - 1, (depth % 3) == 0);
        tb_sink += depth;
    }
}

static void *tb_thread(void *arg) {
    (void)arg;
    for (int d = 0; d < 30; d += 3) tb_recurse(d, d & 1);
    return NULL;
}

/* In a signal handler the stack runs through the kernel's signal frame, which the CFI
 * reader leaves to libgcc: the profiler's capture must still work there. */
static int tb_auto_in_handler;
static void tb_handler(int sig) {
    (void)sig;
    uintptr_t pcs[64];
    tb_auto_in_handler = traceback_capture(pcs, 64, TRACEBACK_AUTO);
    tb_recurse(4, 1);
}

static void test_traceback_matches_libgcc(void **state) {
    (void)state;
    for (int d = 0; d < 50; d++) tb_recurse(d, d & 1);
    signal(SIGUSR1, tb_handler);
    raise(SIGUSR1);
    signal(SIGUSR1, SIG_DFL);
    assert_true(tb_auto_in_handler > 3);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, tb_thread, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    print_message("# traceback: %d stacks compared, %d mismatches, %d left to libgcc\n", tb_compared, tb_mismatches,
                  tb_cfi_failed);
#if defined(__x86_64__)
    assert_true(tb_compared >= 100); /* the CFI reader really ran */
#endif
    assert_int_equal(tb_mismatches, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate0_maps_nothing),
        cmocka_unit_test(test_rate1_samples_every_allocation),
        cmocka_unit_test(test_span_marked_while_sampled),
        cmocka_unit_test(test_multipage_span_marked),
        cmocka_unit_test(test_cross_thread_free_updates_profile),
        cmocka_unit_test(test_sampling_rate),
        cmocka_unit_test(test_write_profile),
        cmocka_unit_test(test_fork_child_profile),
        cmocka_unit_test(test_traceback_matches_libgcc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
