/* test_badinput.c: what gomalloc does with invalid frees. Each case runs in a forked child
 * with stderr on a pipe: interior pointers and double frees must abort with one exact line;
 * foreign pointers (stack, static, mmap, glibc's heap) warn once, rate-limited, and go on. */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gm_test.h"

#include "gomalloc.h"

#define CHILD_TIMEOUT_MS 10000

static int info_fd = -1; /* child -> parent: the pointer the message must name */
static void report_ptr(const void *p) {
    uintptr_t v = (uintptr_t)p;
    if (write(info_fd, &v, sizeof v) != (ssize_t)sizeof v) _exit(90);
}

typedef struct {
    int status;
    char err[8192];
    size_t errlen;
    uintptr_t ptr[4];
    int nptr;
} child_result;

static void run_child(void (*fn)(void), child_result *r) {
    int errp[2], infop[2];
    assert_int_equal(pipe(errp), 0);
    assert_int_equal(pipe(infop), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        signal(SIGABRT, SIG_DFL);
        close(errp[0]);
        close(infop[0]);
        dup2(errp[1], 2);
        close(errp[1]);
        info_fd = infop[1];
        fn();
        _exit(0);
    }
    close(errp[1]);
    close(infop[1]);
    memset(r, 0, sizeof *r);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct pollfd pfd = {errp[0], POLLIN, 0};
        int pr = poll(&pfd, 1, 100);
        if (pr > 0) {
            ssize_t n = read(errp[0], r->err + r->errlen, sizeof r->err - 1 - r->errlen);
            if (n <= 0) break;
            r->errlen += (size_t)n;
            if (r->errlen == sizeof r->err - 1) break;
        }
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 > CHILD_TIMEOUT_MS) {
            kill(pid, SIGKILL);
            waitpid(pid, &r->status, 0);
            fail_msg("child hung; stderr so far: %.*s", (int)r->errlen, r->err);
        }
    }
    r->err[r->errlen] = '\0';
    ssize_t n = read(infop[0], r->ptr, sizeof r->ptr);
    r->nptr = n > 0 ? (int)(n / (ssize_t)sizeof(uintptr_t)) : 0;
    close(errp[0]);
    close(infop[0]);
    assert_int_equal(waitpid(pid, &r->status, 0), pid);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* The child must die of SIGABRT after writing exactly "gomalloc: <what> <ptr>\n". */
static void expect_abort(void (*fn)(void), const char *what) {
    child_result r;
    run_child(fn, &r);
    assert_int_equal(r.nptr, 1);
    char want[256];
    snprintf(want, sizeof want, "gomalloc: %s %p\n", what, (void *)r.ptr[0]);
    if (!WIFSIGNALED(r.status) || WTERMSIG(r.status) != SIGABRT)
        fail_msg("expected SIGABRT and \"%.*s\"; child %s %d, stderr: \"%s\"", (int)strlen(want) - 1, want,
                 WIFSIGNALED(r.status) ? "got signal" : "exited with", WIFSIGNALED(r.status) ? WTERMSIG(r.status) : WEXITSTATUS(r.status),
                 r.err);
    if (strcmp(r.err, want) != 0)
        fail_msg("stderr is \"%s\", expected exactly \"%.*s\\n\"", r.err, (int)strlen(want) - 1, want);
}

/* The child must exit 0 and print one warning naming the pointer. */
static void expect_warning(void (*fn)(void)) {
    child_result r;
    run_child(fn, &r);
    assert_int_equal(r.nptr, 1);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)
        fail_msg("foreign free killed the process (status %#x); stderr: \"%s\"", r.status, r.err);
    char ptr[64];
    snprintf(ptr, sizeof ptr, "%p", (void *)r.ptr[0]);
    if (count_lines(r.err) != 1 || strncmp(r.err, "gomalloc:", 9) != 0 || strstr(r.err, ptr) == NULL)
        fail_msg("expected one \"gomalloc: ... %s\" warning line, stderr: \"%s\"", ptr, r.err);
}

static volatile size_t vsize = 64;
static void *vmalloc(size_t n) { vsize = n; return malloc(vsize); }

/* ---- abort cases ---- */
static void c_interior16(void) {
    char *p = vmalloc(64);
    report_ptr(p + 16);
    free(p + 16);
}
static void c_interior1(void) {
    char *p = vmalloc(64);
    report_ptr(p + 1);
    free(p + 1);
}
static void c_double_immediate(void) {
    void *p = vmalloc(32);
    report_ptr(p);
    free(p);
    free(p);
}
static void c_double_delayed(void) {
    static void *others[1000];
    void *p = vmalloc(32);
    for (int i = 0; i < 1000; i++) others[i] = vmalloc(32);
    report_ptr(p);
    free(p);
    for (int i = 0; i < 1000; i++) free(others[i]);
    free(p);
}
static void c_double_interleaved(void) {
    void *a = vmalloc(48), *b = vmalloc(48);
    report_ptr(a);
    free(a);
    free(b);
    free(a);
}
static void *free_arg(void *p) {
    free(p);
    return NULL;
}
static void c_double_cross_thread(void) {
    void *p = vmalloc(80);
    report_ptr(p);
    pthread_t a, b;
    pthread_create(&a, NULL, free_arg, p);
    pthread_join(a, NULL);
    pthread_create(&b, NULL, free_arg, p);
    pthread_join(b, NULL);
}
static void c_double_large(void) {
    void *p = vmalloc(GM_MIB);
    memset(p, 1, GM_MIB);
    report_ptr(p);
    free(p);
    free(p);
}
static void c_interior_large(void) {
    char *p = vmalloc(GM_MIB);
    report_ptr(p + 4096);
    free(p + 4096);
}
static void c_interior_large16(void) {
    char *p = vmalloc(GM_MIB);
    report_ptr(p + 16);
    free(p + 16);
}
/* Large spans freed into the thread's large cache (issue 5) stay mapped and allocated in
 * the heap: the span must still read as freed, in the same thread and in another. */
static void c_double_large_cached(void) {
    void *p = vmalloc(100000);
    memset(p, 1, 100000);
    report_ptr(p);
    free(p);
    free(p);
}
static void c_double_large_cached_after_others(void) {
    void *p = vmalloc(40000), *q = vmalloc(300000);
    report_ptr(p);
    free(p);
    free(q);
    free(vmalloc(300000)); /* a cache hit in between */
    free(p);
}
static void c_double_large_cached_cross_thread(void) {
    void *p = vmalloc(200000);
    report_ptr(p);
    pthread_t a, b;
    pthread_create(&a, NULL, free_arg, p);
    pthread_join(a, NULL); /* parked in a's cache, which a's exit returned to the heap */
    pthread_create(&b, NULL, free_arg, p);
    pthread_join(b, NULL);
}
static void c_double_large_cached_cross_live_thread(void) {
    void *p = vmalloc(200000);
    report_ptr(p);
    free(p); /* parked in this thread's cache */
    pthread_t b;
    pthread_create(&b, NULL, free_arg, p);
    pthread_join(b, NULL);
}
static void c_realloc_large_cached(void) {
    void *p = vmalloc(100000);
    report_ptr(p);
    free(p);
    void *q = realloc(p, 200000);
    (void)q;
}
static void c_realloc_interior(void) {
    char *p = vmalloc(64);
    report_ptr(p + 16);
    void *q = realloc(p + 16, 100);
    (void)q;
}

static void test_free_interior_16(void **s) { (void)s; expect_abort(c_interior16, "free(): invalid pointer"); }
static void test_free_interior_1(void **s) { (void)s; expect_abort(c_interior1, "free(): invalid pointer"); }
static void test_double_free_immediate(void **s) { (void)s; expect_abort(c_double_immediate, "free(): double free"); }
static void test_double_free_delayed(void **s) { (void)s; expect_abort(c_double_delayed, "free(): double free"); }
static void test_double_free_interleaved(void **s) { (void)s; expect_abort(c_double_interleaved, "free(): double free"); }
static void test_double_free_cross_thread(void **s) { (void)s; expect_abort(c_double_cross_thread, "free(): double free"); }
static void test_double_free_large(void **s) { (void)s; expect_abort(c_double_large, "free(): double free"); }
static void test_free_interior_large(void **s) { (void)s; expect_abort(c_interior_large, "free(): invalid pointer"); }
static void test_free_interior_large_16(void **s) { (void)s; expect_abort(c_interior_large16, "free(): invalid pointer"); }
static void test_double_free_large_cached(void **s) { (void)s; expect_abort(c_double_large_cached, "free(): double free"); }
static void test_double_free_large_cached_after_others(void **s) { (void)s; expect_abort(c_double_large_cached_after_others, "free(): double free"); }
static void test_double_free_large_cached_cross_thread(void **s) { (void)s; expect_abort(c_double_large_cached_cross_thread, "free(): double free"); }
static void test_double_free_large_cached_cross_live_thread(void **s) { (void)s; expect_abort(c_double_large_cached_cross_live_thread, "free(): double free"); }
static void test_realloc_large_cached(void **s) { (void)s; expect_abort(c_realloc_large_cached, "realloc(): double free"); }
static void test_realloc_interior(void **s) { (void)s; expect_abort(c_realloc_interior, "realloc(): invalid pointer"); }

/* ---- foreign pointers: warn, keep going ---- */
static char static_area[16 * 1024] __attribute__((aligned(16)));

static void after_foreign(void) {
    /* the allocator must still work after the warning */
    void *p = vmalloc(100);
    if (p == NULL) _exit(10);
    memset(p, 1, 100);
    free(p);
}
static void c_foreign_stack(void) {
    char buf[64] __attribute__((aligned(16)));
    memset(buf, 0, sizeof buf);
    report_ptr(buf);
    free(buf);
    after_foreign();
}
static void c_foreign_static(void) {
    report_ptr(static_area + 32);
    free(static_area + 32);
    after_foreign();
}
static void c_foreign_mmap(void) {
    void *m = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) _exit(11);
    report_ptr(m);
    free(m);
    after_foreign();
}
static void c_foreign_glibc(void) {
    void *(*glibc_malloc)(size_t) = (void *(*)(size_t))(uintptr_t)dlsym(RTLD_NEXT, "malloc");
    if (glibc_malloc == NULL || glibc_malloc == malloc) _exit(12);
    void *p = glibc_malloc(100);
    if (p == NULL || gm_owns(p)) _exit(13);
    report_ptr(p);
    free(p);
    after_foreign();
}
static void c_foreign_many(void) {
    report_ptr(static_area);
    for (int i = 0; i < 1000; i++) free(static_area + 16 * i);
    after_foreign();
}

static void test_foreign_stack(void **s) { (void)s; expect_warning(c_foreign_stack); }
static void test_foreign_static(void **s) { (void)s; expect_warning(c_foreign_static); }
static void test_foreign_mmap(void **s) { (void)s; expect_warning(c_foreign_mmap); }
static void test_foreign_glibc(void **s) { (void)s; expect_warning(c_foreign_glibc); }

static void test_foreign_rate_limited(void **s) {
    (void)s;
    child_result r;
    run_child(c_foreign_many, &r);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)
        fail_msg("1000 foreign frees killed the process (status %#x)", r.status);
    int lines = count_lines(r.err);
    char ptr[64];
    snprintf(ptr, sizeof ptr, "%p", (void *)r.ptr[0]);
    if (lines < 1 || strstr(r.err, ptr) == NULL) fail_msg("no warning naming %s; stderr: \"%.200s\"", ptr, r.err);
    if (lines > 100) fail_msg("1000 foreign frees printed %d lines: warnings are not rate-limited", lines);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_interior_16),
        cmocka_unit_test(test_free_interior_1),
        cmocka_unit_test(test_double_free_immediate),
        cmocka_unit_test(test_double_free_delayed),
        cmocka_unit_test(test_double_free_interleaved),
        cmocka_unit_test(test_double_free_cross_thread),
        cmocka_unit_test(test_double_free_large),
        cmocka_unit_test(test_free_interior_large),
        cmocka_unit_test(test_free_interior_large_16),
        cmocka_unit_test(test_double_free_large_cached),
        cmocka_unit_test(test_double_free_large_cached_after_others),
        cmocka_unit_test(test_double_free_large_cached_cross_thread),
        cmocka_unit_test(test_double_free_large_cached_cross_live_thread),
        cmocka_unit_test(test_realloc_large_cached),
        cmocka_unit_test(test_realloc_interior),
        cmocka_unit_test(test_foreign_stack),
        cmocka_unit_test(test_foreign_static),
        cmocka_unit_test(test_foreign_mmap),
        cmocka_unit_test(test_foreign_glibc),
        cmocka_unit_test(test_foreign_rate_limited),
    };
    return cmocka_run_group_tests_name("badinput", tests, NULL, NULL);
}
