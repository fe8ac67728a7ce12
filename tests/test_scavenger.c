/* test_scavenger.c: memory goes back to the OS. RSS falls under a deadline after a big free
 * with no further allocator calls; gm_free_os_memory and malloc_trim release at once; a
 * released page comes back zeroed for calloc; free pages inside spans that keep an object
 * go back too, their slots work again afterwards, and a span that dies hands them to the
 * page heap as released; fork while the scavenger works; the
 * memory limit holds committed memory down; scavtrace prints Go's line. Also run with
 * GOMALLOC=madvdontneed=0 (MADV_FREE: RSS may stay, so heap_released is checked instead). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gm_test.h"
#include "internal.h"

#include <malloc.h>

static uint64_t released(void) {
    gm_memstats m;
    gm_read_memstats(&m);
    return m.heap_released;
}

static uint64_t retained(void) {
    gm_memstats m;
    gm_read_memstats(&m);
    return m.heap_sys - m.heap_released;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Allocates `total` bytes in sizes 16 B..256 KiB (log-distributed), touching every page. */
#define MAXBLOCKS (1 << 20)
static void *blocks[MAXBLOCKS];
static size_t nblocks;
static void alloc_mixed(size_t total, uint64_t seed) {
    size_t got = 0;
    nblocks = 0;
    while (got < total && nblocks < MAXBLOCKS) {
        uint64_t r = rng_next(&seed);
        size_t n = (size_t)16 << (r % 15); /* 16 B .. 256 KiB */
        n += (r >> 8) % n;
        if (n > (256 << 10)) n = 256 << 10;
        char *p = malloc(n);
        if (p == NULL) fail_msg("malloc(%zu) failed", n);
        for (size_t i = 0; i < n; i += 4096) p[i] = 1;
        p[n - 1] = 1;
        blocks[nblocks++] = p;
        got += n;
    }
}
static void free_all(void) {
    for (size_t i = 0; i < nblocks; i++) free(blocks[i]);
    nblocks = 0;
}

/* The whole point of issue 3: after a big free and no more allocator calls, RSS falls on
 * its own. MADV_FREE mode cannot lower RSS without memory pressure: there the pages must
 * at least be counted as released. */
static void test_rss_falls_after_big_free(void **state) {
    (void)state;
    size_t base = rss_bytes();
    uint64_t rel0 = released();
    alloc_mixed((size_t)256 << 20, 42);
    size_t peak = rss_bytes();
    assert_true(peak > base + ((size_t)200 << 20));
    free_all();
    double t0 = now_s(), deadline = t0 + 4.0;
    size_t rss = rss_bytes();
    while (now_s() < deadline) {
        rss = rss_bytes();
        if (gm_opt.madvdontneed ? rss < base + ((size_t)48 << 20) : released() > rel0 + ((size_t)200 << 20)) break;
        usleep(50 * 1000); /* no allocator call while waiting */
    }
    if (gm_opt.madvdontneed && rss >= base + ((size_t)48 << 20))
        fail_msg("RSS %zu MiB after 4 s (baseline %zu MiB, peak %zu MiB)", rss >> 20, base >> 20, peak >> 20);
    if (!gm_opt.madvdontneed && released() <= rel0 + ((size_t)200 << 20)) fail_msg("scavenger released too little");
    print_message("# RSS %zu -> %zu -> %zu MiB, %.2f s after the free\n", base >> 20, peak >> 20, rss >> 20,
                  now_s() - t0);
}

static void test_free_os_memory_releases_now(void **state) {
    (void)state;
    gm_set_memory_limit(INT64_MAX);
    static void *big[32];
    for (int i = 0; i < 32; i++) {
        big[i] = malloc(2 << 20);
        memset(big[i], 0x5a, 2 << 20);
    }
    size_t before = rss_bytes();
    uint64_t rel0 = released();
    for (int i = 0; i < 32; i++) free(big[i]);
    gm_free_os_memory();
    uint64_t rel1 = released();
    assert_true(rel1 >= rel0 + ((uint64_t)60 << 20));
    if (gm_opt.madvdontneed) assert_true(rss_bytes() + ((size_t)56 << 20) < before);
    gm_memstats m;
    gm_read_memstats(&m);
    assert_true(m.heap_released <= m.heap_idle);
}

static void test_malloc_trim(void **state) {
    (void)state;
    void *p = malloc(16 << 20);
    memset(p, 1, 16 << 20);
    free(p);
    assert_int_equal(malloc_trim(0), 1);
    assert_int_equal(malloc_trim(0), 0); /* nothing left to give back */
}

/* A released page is reused by calloc without a memset and must read as zero; under
 * MADV_FREE it may keep old bytes, and calloc must clear it. */
static void test_calloc_after_release(void **state) {
    (void)state;
    for (int round = 0; round < 4; round++) {
        size_t n = (size_t)(1 + round) << 20;
        unsigned char *p = malloc(n);
        memset(p, 0xff, n);
        free(p);
        gm_free_os_memory();
        unsigned char *q = calloc(1, n);
        assert_non_null(q);
        for (size_t i = 0; i < n; i += 64)
            if (q[i] != 0) fail_msg("calloc(%zu) byte %zu = %#x after release", n, i, q[i]);
        free(q);
    }
}

/* ---- free pages inside spans (mcentral_release_sparse) ----
 * 1 KiB objects, 8 to a one-page span: keeping slot 0 of each span keeps its first 4 KiB
 * page, and the second holds only free slots. The objects are made and freed by a thread
 * that exits, so every free slot is back on mcentral's lists, none in a thread cache. */
#define SP_SIZE 1024
#define SP_OBJS (8 * 2048) /* 16 MiB of spans */
static char *sp_objs[SP_OBJS];
static size_t sp_nsurv;

static bool sp_survivor(const char *p) { return ((uintptr_t)p & (GM_PAGE_SIZE - 1)) == 0; }

static void *sp_thread(void *arg) {
    size_t n = (size_t)(uintptr_t)arg;
    sp_nsurv = 0;
    for (size_t i = 0; i < n; i++) {
        sp_objs[i] = malloc(SP_SIZE);
        if (sp_objs[i] == NULL) fail_msg("malloc failed");
        pat_fill(sp_objs[i], SP_SIZE, (uint32_t)i);
    }
    for (size_t i = 0; i < n; i++) {
        if (sp_survivor(sp_objs[i])) sp_nsurv++;
        else free(sp_objs[i]);
    }
    return NULL;
}

static void sp_make(size_t n) {
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sp_thread, (void *)(uintptr_t)n), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
}

static void test_sparse_spans_release(void **state) {
    (void)state;
    gm_memstats m0, m1, m2;
    sp_make(SP_OBJS);
    assert_true(sp_nsurv >= SP_OBJS / 8 * 9 / 10); /* fresh spans: nearly every slot 0 is ours */
    gm_read_memstats(&m0);
    gm_free_os_memory();
    gm_read_memstats(&m1);
    uint64_t gained = m1.heap_inuse_released - m0.heap_inuse_released;
    print_message("# %zu spans kept by one object; %llu KiB of their free pages released\n", sp_nsurv,
                  (unsigned long long)(gained >> 10));
    assert_true(gained >= (uint64_t)sp_nsurv * 4096 * 9 / 10);
    assert_true(m1.heap_inuse_released <= m1.heap_inuse);
    size_t gone = 0;
    for (size_t i = 0; i < SP_OBJS; i++) {
        if (!sp_survivor(sp_objs[i])) continue;
        assert_pattern(sp_objs[i], SP_SIZE, (uint32_t)i); /* its own page stays */
        unsigned char vec[2];
        assert_int_equal(mincore(sp_objs[i], GM_PAGE_SIZE, vec), 0);
        if (!(vec[0] & 1)) fail_msg("the page of a live object was released");
        gone += !(vec[1] & 1);
    }
    /* MADV_FREE leaves the pages mapped until the kernel wants them. */
    if (gm_opt.madvdontneed) assert_true(gone >= sp_nsurv * 9 / 10);
    /* The free slots work again: calloc hands them out zeroed, and they hold what is
     * written. The spans leave the count as threads take them. */
    static char *again[SP_OBJS];
    for (size_t i = 0; i < SP_OBJS; i++) {
        again[i] = calloc(1, SP_SIZE);
        assert_non_null(again[i]);
        for (size_t j = 0; j < SP_SIZE; j += 8)
            if (again[i][j] != 0) fail_msg("calloc byte %zu = %#x in a reused sparse span", j, again[i][j]);
        pat_fill(again[i], SP_SIZE, (uint32_t)(i + SP_OBJS));
    }
    gm_read_memstats(&m2);
    assert_true(m2.heap_inuse_released < m1.heap_inuse_released);
    for (size_t i = 0; i < SP_OBJS; i++) {
        assert_pattern(again[i], SP_SIZE, (uint32_t)(i + SP_OBJS));
        free(again[i]);
    }
    for (size_t i = 0; i < SP_OBJS; i++)
        if (sp_survivor(sp_objs[i])) {
            assert_pattern(sp_objs[i], SP_SIZE, (uint32_t)i);
            free(sp_objs[i]);
        }
    gm_free_os_memory();
    gm_read_memstats(&m2);
    assert_true(m2.heap_released <= m2.heap_idle);
    assert_true(m2.heap_inuse_released <= m2.heap_inuse);
}

/* A span that dies with released pages hands them to the page heap as released, so
 * heap_released stays true without a second madvise. 3 KiB objects, 8 to a 3-page span:
 * slot 0 keeps the span's first OS page; its second and third 8 KiB pages go back whole. */
#define SD_SIZE 3072
#define SD_OBJS (8 * 256)
static char *sd_objs[SD_OBJS];
static size_t sd_nsurv;
static bool sd_survivor(const char *p) { return span_of((uintptr_t)p)->base == (uintptr_t)p; }

static void *sd_make(void *arg) {
    (void)arg;
    sd_nsurv = 0;
    for (size_t i = 0; i < SD_OBJS; i++) {
        sd_objs[i] = malloc(SD_SIZE);
        if (sd_objs[i] == NULL) fail_msg("malloc failed");
        memset(sd_objs[i], 0x5a, SD_SIZE);
    }
    for (size_t i = 0; i < SD_OBJS; i++) {
        if (sd_survivor(sd_objs[i])) sd_nsurv++;
        else free(sd_objs[i]);
    }
    return NULL;
}

static void *sd_free_survivors(void *arg) {
    (void)arg;
    for (size_t i = 0; i < SD_OBJS; i++)
        if (sd_survivor(sd_objs[i])) free(sd_objs[i]);
    return NULL; /* thread exit hands them to mcentral, and the spans die */
}

static void test_sparse_span_death(void **state) {
    (void)state;
    assert_int_equal(gm_class_to_npages[sizeclass_of(SD_SIZE)], 3);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sd_make, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(sd_nsurv >= SD_OBJS / 8 * 9 / 10);
    gm_memstats m0, m1, m2;
    gm_read_memstats(&m0);
    gm_free_os_memory();
    gm_read_memstats(&m1);
    /* 5 of each span's 6 OS pages go. */
    assert_true(m1.heap_inuse_released - m0.heap_inuse_released >= (uint64_t)sd_nsurv * 5 * 4096 * 9 / 10);
    assert_int_equal(pthread_create(&t, NULL, sd_free_survivors, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    gm_read_memstats(&m2);
    print_message("# %zu spans died with %llu KiB released inside; heap_released +%llu KiB\n", sd_nsurv,
                  (unsigned long long)((m1.heap_inuse_released - m2.heap_inuse_released) >> 10),
                  (unsigned long long)((m2.heap_released - m1.heap_released) >> 10));
    assert_true(m1.heap_inuse_released - m2.heap_inuse_released >= (uint64_t)sd_nsurv * 5 * 4096 * 9 / 10);
    /* Two whole 8 KiB pages per span (the background thread may only add to this). */
    assert_true(m2.heap_released - m1.heap_released >= (uint64_t)sd_nsurv * 2 * GM_PAGE_SIZE * 9 / 10);
    assert_true(m2.heap_released <= m2.heap_idle);
}

/* A second free of an object whose page went back: its free mark went with the page, so
 * the free is taken, and caught when the thread's list reaches the span. */
static void *sp_free_again(void *arg) {
    free(arg);
    return NULL; /* thread exit hands the list to mcentral */
}
static void sp_double_free_child(void) {
    sp_make(64);
    gm_free_os_memory();
    for (size_t i = 0; i < 64; i++)
        if (sp_survivor(sp_objs[i])) {
            pthread_t t;
            pthread_create(&t, NULL, sp_free_again, sp_objs[i] + 4096); /* slot 4: freed, released */
            pthread_join(t, NULL);
            break;
        }
}
static void test_sparse_double_free(void **state) {
    (void)state;
    char err[512];
    int sig = gm_run_child(sp_double_free_child, err, sizeof err);
    if (sig != SIGABRT || strstr(err, "gomalloc: free(): double free 0x") == NULL)
        fail_msg("expected SIGABRT and a double free report; signal %d, stderr: \"%s\"", sig, err);
}

static void *hammer(void *arg) {
    atomic_bool *stop = arg;
    while (!atomic_load(stop)) {
        void *p = malloc(1 << 20);
        memset(p, 3, 1 << 20);
        free(p);
        usleep(1000);
    }
    return NULL;
}

static void test_fork_while_scavenging(void **state) {
    (void)state;
    static atomic_bool stop;
    atomic_store(&stop, false);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hammer, &stop), 0);
    for (int round = 0; round < 30; round++) {
        alloc_mixed((size_t)16 << 20, (uint64_t)round + 7);
        free_all(); /* leaves the scavenger something to do while we fork */
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            alarm(20);
            alloc_mixed((size_t)8 << 20, 99); /* also re-creates the scavenger in the child */
            free_all();
            gm_free_os_memory();
            _exit(0);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_msg("child %d: status %#x", round, status);
    }
    atomic_store(&stop, true);
    pthread_join(t, NULL);
}

/* A program whose live bytes stay under the limit has its committed heap held under it.
 * After a big free, the peak window alone would keep the memory for 500 ms; only the
 * limit can bring retained memory down within the 400 ms allowed here. */
static void test_memory_limit(void **state) {
    (void)state;
    const int64_t limit = (int64_t)64 << 20;
    for (int round = 0; round < 3; round++) {
        alloc_mixed((size_t)128 << 20, (uint64_t)round * 31 + 1);
        assert_int_equal(gm_set_memory_limit(limit), INT64_MAX);
        assert_int_equal(gm_set_memory_limit(-1), limit);
        size_t kept = 0; /* keep every 16th block: ~8 MiB live */
        for (size_t i = 0; i < nblocks; i++) {
            if (i % 16 == 0) blocks[kept++] = blocks[i];
            else free(blocks[i]);
        }
        nblocks = kept;
        double t0 = now_s();
        uint64_t r = retained();
        while (r > (uint64_t)limit && now_s() < t0 + 0.4) {
            usleep(10 * 1000);
            r = retained();
        }
        if (r > (uint64_t)limit) {
            gm_memstats m;
            gm_read_memstats(&m);
            fail_msg("round %d: %llu MiB retained 400 ms after the free, limit %lld MiB (in use %llu MiB, "
                     "free but not released %llu MiB)",
                     round, (unsigned long long)(r >> 20), (long long)(limit >> 20),
                     (unsigned long long)(m.heap_inuse >> 20),
                     (unsigned long long)((m.heap_idle - m.heap_released) >> 20));
        }
        print_message("# memory limit %lld MiB: retained %llu MiB after %.0f ms\n", (long long)(limit >> 20),
                      (unsigned long long)(r >> 20), (now_s() - t0) * 1e3);
        free_all();
        assert_int_equal(gm_set_memory_limit(INT64_MAX), limit);
        usleep(600 * 1000); /* let the peak window forget this round */
    }
}

/* GOMALLOC=scavtrace=1 prints Go's line while the scavenger works (checked in a child,
 * whose stderr is a pipe; the child also needs a fresh scavenger thread). */
static void test_scavtrace(void **state) {
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        gm_opt.scavtrace = 1;
        alloc_mixed((size_t)128 << 20, 5);
        free_all();
        sleep(3);
        _exit(0);
    }
    close(fds[1]);
    static char buf[1 << 16];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)n;
    buf[len] = 0;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    unsigned long bg, eager, now, util;
    const char *line = strstr(buf, "gomalloc: scav ");
    if (line == NULL) fail_msg("no scavtrace line in: %s", buf);
    if (sscanf(line, "gomalloc: scav %lu KiB work (bg), %lu KiB work (eager), %lu KiB now, %lu%% util", &bg,
               &eager, &now, &util) != 4)
        fail_msg("malformed scavtrace line: %s", line);
    assert_true(bg + eager > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rss_falls_after_big_free),
        cmocka_unit_test(test_free_os_memory_releases_now),
        cmocka_unit_test(test_malloc_trim),
        cmocka_unit_test(test_calloc_after_release),
        cmocka_unit_test(test_sparse_spans_release),
        cmocka_unit_test(test_sparse_double_free),
        cmocka_unit_test(test_sparse_span_death),
        cmocka_unit_test(test_fork_while_scavenging),
        cmocka_unit_test(test_memory_limit),
        cmocka_unit_test(test_scavtrace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
