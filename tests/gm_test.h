/* gm_test.h: helpers shared by the cmocka suites: cmocka includes in the order it needs,
 * a small deterministic PRNG, byte patterns that make overlap and corruption visible, and
 * a child-process runner for cases that must crash.
 * Header-only; every helper is static so each test binary stays self-contained. */
#ifndef GM_TEST_H
#define GM_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define GM_KIB ((size_t)1 << 10)
#define GM_MIB ((size_t)1 << 20)
#define GM_GIB ((size_t)1 << 30)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* xorshift64*: deterministic, thread-local state passed explicitly. */
static inline uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* The fill pattern: 64-bit word w of a block filled with seed is pat_word(w, seed), stored
 * little-endian. It depends on both, so a copy from another block, a stale fill or a
 * shifted copy all mismatch. Word-at-a-time, so multi-MiB blocks are cheap to check. */
static inline uint64_t pat_word(size_t w, uint32_t seed) {
    uint64_t x = ((uint64_t)w + 1) * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)seed << 17 | seed);
    return x ^ (x >> 29);
}
static inline unsigned char pat_byte(size_t i, uint32_t seed) {
    return (unsigned char)(pat_word(i >> 3, seed) >> ((i & 7) * 8));
}
static inline void pat_fill(void *p, size_t n, uint32_t seed) {
    unsigned char *b = p;
    size_t w = 0;
    for (; (w + 1) * 8 <= n; w++) {
        uint64_t x = pat_word(w, seed);
        memcpy(b + w * 8, &x, 8);
    }
    for (size_t i = w * 8; i < n; i++) b[i] = pat_byte(i, seed);
}
/* Returns the index of the first wrong byte, or (size_t)-1 when all n bytes match. */
static inline size_t pat_check(const void *p, size_t n, uint32_t seed) {
    const unsigned char *b = p;
    size_t w = 0;
    for (; (w + 1) * 8 <= n; w++) {
        uint64_t x;
        memcpy(&x, b + w * 8, 8);
        if (x != pat_word(w, seed)) break;
    }
    for (size_t i = w * 8; i < n; i++)
        if (b[i] != pat_byte(i, seed)) return i;
    return (size_t)-1;
}
#define assert_pattern(p, n, seed)                                                        \
    do {                                                                                  \
        size_t bad_ = pat_check((p), (n), (seed));                                        \
        if (bad_ != (size_t)-1)                                                           \
            fail_msg("pattern mismatch at byte %zu of %zu (block %p)", bad_, (size_t)(n), \
                     (void *)(p));                                                        \
    } while (0)

/* Resident set size of this process in bytes (from /proc/self/statm); asserts on failure. */
static inline size_t rss_bytes(void) {
    char buf[128] = {0};
    int fd = open("/proc/self/statm", O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    assert_true(n > 0);
    unsigned long size, resident;
    assert_int_equal(sscanf(buf, "%lu %lu", &size, &resident), 2);
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* Reads fd to its end (or cap - 1 bytes) into buf, NUL-terminated, and closes it. */
static inline void gm_read_all(int fd, char *buf, size_t cap) {
    size_t len = 0;
    ssize_t n;
    while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0) len += (size_t)n;
    buf[len] = 0;
    close(fd);
}

/* Runs fn in a child process whose stderr is a pipe; returns the signal that ended it (0
 * if it returned or exited) and what it wrote to stderr, NUL-terminated, in err. The
 * child dies of the signals cmocka would catch, and exits 0 after fn returns. */
static inline int gm_run_child(void (*fn)(void), char *err, size_t cap) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(stdout); /* the child must not repeat the parent's buffered TAP lines */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        signal(SIGABRT, SIG_DFL);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        fn();
        _exit(0);
    }
    close(fds[1]);
    gm_read_all(fds[0], err, cap);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

#endif /* GM_TEST_H */
