/* test_oom.c: real out-of-memory under setrlimit(RLIMIT_AS). Each case runs in a forked
 * child limited to its current VM size + 256 MiB: allocation must end in NULL + ENOMEM,
 * never a crash or abort, and the heap must keep working (frees, reuse, realloc intact). */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gm_test.h"

#define HEADROOM (256 * GM_MIB)
#define MAXPTRS ((size_t)1 << 20)

/* ---- child side: no cmocka (its longjmp must not cross the fork); a failed check
 * prints one line and exits 1 ---- */

static void **ptrs; /* mmap'ed before the limit, so it costs the heap nothing */

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            char msg_[256];                                                \
            int n_ = snprintf(msg_, sizeof msg_, __VA_ARGS__);             \
            if (write(2, msg_, (size_t)n_) < 0 || write(2, "\n", 1) < 0) { \
            }                                                              \
            _exit(1);                                                      \
        }                                                                  \
    } while (0)

static size_t vm_size(void) {
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    char *v = strstr(buf, "VmSize:");
    return v != NULL ? (size_t)strtoull(v + 7, NULL, 10) * 1024 : 0;
}

static void limit_memory(void) {
    ptrs = mmap(NULL, MAXPTRS * sizeof *ptrs, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(ptrs != MAP_FAILED, "mmap of the pointer table failed");
    size_t vm = vm_size();
    CHECK(vm > 0, "cannot read VmSize");
    struct rlimit rl = {vm + HEADROOM, vm + HEADROOM};
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit: %d", errno);
}

/* Allocates size-byte blocks until NULL; each gets its index in its first word. */
static size_t fill_until_null(size_t size) {
    size_t n = 0;
    for (;;) {
        CHECK(n < MAXPTRS, "no NULL after %zu allocations of %zu bytes", n, size);
        errno = 0;
        void *p = malloc(size);
        if (p == NULL) {
            CHECK(errno == ENOMEM, "malloc(%zu) returned NULL with errno %d", size, errno);
            return n;
        }
        *(size_t *)p = n;
        ((char *)p)[size - 1] = (char)n;
        ptrs[n++] = p;
    }
}

static void check_and_free(size_t n, size_t size) {
    for (size_t i = 0; i < n; i++) {
        if (ptrs[i] == NULL) continue;
        CHECK(*(size_t *)ptrs[i] == i && ((char *)ptrs[i])[size - 1] == (char)i, "block %zu corrupted", i);
        free(ptrs[i]);
        ptrs[i] = NULL;
    }
}

/* Exhaust, free half, allocate the same number again: every one must succeed. */
static void exhaust_and_recover(size_t size) {
    size_t n = fill_until_null(size);
    CHECK(n * size >= HEADROOM / 4, "only %zu bytes in %zu-byte blocks before NULL", n * size, size);
    for (size_t i = 0; i < n; i += 2) {
        free(ptrs[i]);
        ptrs[i] = NULL;
    }
    for (size_t i = 0; i < n; i += 2) {
        void *p = malloc(size);
        CHECK(p != NULL, "malloc(%zu) #%zu failed after freeing half of %zu blocks (errno %d)", size, i / 2, n, errno);
        *(size_t *)p = i;
        ((char *)p)[size - 1] = (char)i;
        ptrs[i] = p;
    }
    check_and_free(n, size);
}

static void child_small(void) {
    limit_memory();
    exhaust_and_recover(4096);
    exhaust_and_recover(1000);
}

static void child_large(void) {
    limit_memory();
    exhaust_and_recover(GM_MIB);
    exhaust_and_recover(200 * GM_KIB);
}

/* Single allocations around the limit: over it fails cleanly, the largest that fits is
 * usable to its last byte, and its pages are reused after a free. */
static void child_near_limit(void) {
    limit_memory();
    errno = 0;
    CHECK(malloc(2 * HEADROOM) == NULL && errno == ENOMEM, "malloc(2 * headroom) did not fail with ENOMEM");
    errno = 0;
    CHECK(malloc(SIZE_MAX / 2) == NULL && errno == ENOMEM, "malloc(SIZE_MAX / 2) did not fail with ENOMEM");
    size_t size = HEADROOM;
    char *p = NULL;
    for (; size >= 16 * GM_MIB; size -= 8 * GM_MIB) {
        errno = 0;
        p = malloc(size);
        if (p != NULL) break;
        CHECK(errno == ENOMEM, "malloc(%zu) NULL with errno %d", size, errno);
    }
    CHECK(p != NULL && size >= 64 * GM_MIB, "largest allocation under the limit is only %zu bytes", size);
    memset(p, 0x5a, size);
    free(p);
    p = malloc(size);
    CHECK(p != NULL, "malloc(%zu) failed after freeing a block of that size", size);
    CHECK(p[size - 1] == 0x5a || p[size - 1] == 0, "reused block has odd contents");
    free(p);
}

static volatile size_t huge_count = SIZE_MAX / 16;

static void child_calloc(void) {
    limit_memory();
    errno = 0;
    CHECK(calloc(1, 2 * HEADROOM) == NULL && errno == ENOMEM, "calloc over the limit did not fail with ENOMEM");
    errno = 0;
    CHECK(calloc(huge_count, 32) == NULL && errno == ENOMEM, "overflowing calloc did not fail with ENOMEM");
    size_t n = 0, size = 64 * GM_KIB;
    for (;; n++) {
        CHECK(n < MAXPTRS, "calloc never failed");
        errno = 0;
        unsigned char *p = calloc(1, size);
        if (p == NULL) {
            CHECK(errno == ENOMEM, "calloc NULL with errno %d", errno);
            break;
        }
        for (size_t i = 0; i < size; i += 512) CHECK(p[i] == 0 && p[i + 511] == 0, "calloc block %zu not zeroed", n);
        memset(p, 0xee, size);
        ptrs[n] = p;
    }
    CHECK(n * size >= HEADROOM / 4, "only %zu calloc bytes", n * size);
    for (size_t i = 0; i < n; i += 2) free(ptrs[i]);
    for (size_t i = 0; i < n; i += 2) { /* reused pages were dirty: calloc must clear them */
        unsigned char *p = calloc(size / 16, 16);
        CHECK(p != NULL, "calloc after free failed");
        for (size_t j = 0; j < size; j += 512) CHECK(p[j] == 0 && p[j + 511] == 0, "reused calloc block not zeroed");
        ptrs[i] = p;
    }
    for (size_t i = 0; i < n; i++) free(ptrs[i]);
}

/* A failed realloc returns NULL + ENOMEM and leaves the old block intact and freeable. */
static void child_realloc(void) {
    limit_memory();
    char *small = malloc(100), *large = malloc(GM_MIB);
    CHECK(small != NULL && large != NULL, "setup allocations failed");
    pat_fill(small, 100, 1);
    pat_fill(large, GM_MIB, 2);
    errno = 0;
    CHECK(realloc(large, 4 * HEADROOM) == NULL && errno == ENOMEM, "realloc over the limit did not fail with ENOMEM");
    CHECK(pat_check(large, GM_MIB, 2) == (size_t)-1, "failed realloc changed the old block");
    size_t n = fill_until_null(32 * GM_KIB); /* now nothing new fits */
    errno = 0;
    CHECK(realloc(small, 8 * GM_MIB) == NULL && errno == ENOMEM, "realloc of a small block under OOM did not fail");
    CHECK(pat_check(small, 100, 1) == (size_t)-1, "failed realloc changed the small block");
    check_and_free(n, 32 * GM_KIB);
    small = realloc(small, 8 * GM_MIB);
    CHECK(small != NULL && pat_check(small, 100, 1) == (size_t)-1, "realloc after recovery lost the contents");
    free(small);
    free(large);
}

static void child_aligned(void) {
    limit_memory();
    void *q = &q;
    CHECK(posix_memalign(&q, 4096, 2 * HEADROOM) == ENOMEM && q == &q, "posix_memalign over the limit");
    errno = 0;
    CHECK(aligned_alloc(GM_MIB, 2 * HEADROOM) == NULL && errno == ENOMEM, "aligned_alloc over the limit");
    errno = 0;
    CHECK(memalign(64 * GM_MIB, HEADROOM) == NULL && errno == ENOMEM, "memalign over the limit");
    size_t n = 0;
    for (;; n++) {
        CHECK(n < MAXPTRS, "posix_memalign never failed");
        void *p = NULL;
        int rc = posix_memalign(&p, 64 * GM_KIB, 100 * GM_KIB);
        if (rc != 0) {
            CHECK(rc == ENOMEM, "posix_memalign returned %d", rc);
            break;
        }
        CHECK(((uintptr_t)p & (64 * GM_KIB - 1)) == 0, "misaligned %p", p);
        ptrs[n] = p;
    }
    CHECK(n > 100, "only %zu aligned blocks", n);
    free(ptrs[--n]);
    void *p = NULL;
    CHECK(posix_memalign(&p, 64 * GM_KIB, 100 * GM_KIB) == 0, "posix_memalign after a free failed");
    ptrs[n++] = p;
    for (size_t i = 0; i < n; i++) free(ptrs[i]);
}

/* ---- parent side ---- */

static void run_in_child(void (*fn)(void)) {
    int errp[2];
    assert_int_equal(pipe(errp), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        dup2(errp[1], 2);
        close(errp[0]);
        close(errp[1]);
        alarm(60);
        fn();
        _exit(0);
    }
    close(errp[1]);
    char err[2048];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof err - 1 && (n = read(errp[0], err + len, sizeof err - 1 - len)) > 0) len += (size_t)n;
    err[len] = '\0';
    close(errp[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) fail_msg("child killed by signal %d; stderr: %s", WTERMSIG(status), err);
    if (WEXITSTATUS(status) != 0) fail_msg("child failed: %s", err);
}

static void test_small_until_null(void **s) { (void)s; run_in_child(child_small); }
static void test_large_until_null(void **s) { (void)s; run_in_child(child_large); }
static void test_near_limit(void **s) { (void)s; run_in_child(child_near_limit); }
static void test_calloc_oom(void **s) { (void)s; run_in_child(child_calloc); }
static void test_realloc_oom(void **s) { (void)s; run_in_child(child_realloc); }
static void test_aligned(void **s) { (void)s; run_in_child(child_aligned); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_until_null), cmocka_unit_test(test_large_until_null),
        cmocka_unit_test(test_near_limit),       cmocka_unit_test(test_calloc_oom),
        cmocka_unit_test(test_realloc_oom),          cmocka_unit_test(test_aligned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
