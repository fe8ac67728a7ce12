/* test_scavenger.c: memory goes back to the OS. RSS falls under a deadline after a big free
 * with no further allocator calls; gm_free_os_memory and malloc_trim release at once; a
 * released page comes back zeroed for calloc; fork while the scavenger works; the memory
 * limit holds committed memory down; scavtrace prints Go's line. Also run with
 * GOMALLOC=madvdontneed=0 (MADV_FREE: RSS may stay, so heap_released is checked instead). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
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
        cmocka_unit_test(test_fork_while_scavenging),
        cmocka_unit_test(test_memory_limit),
        cmocka_unit_test(test_scavtrace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
