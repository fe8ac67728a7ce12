/* test_fork.c: fork while other threads hold allocator locks (glibc tst-malloc-fork-deadlock).
 * Every child must be able to malloc/free, use blocks inherited from the parent and start
 * threads of its own; a child that hangs past the watchdog is killed and fails the test. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gm_test.h"

#include "gomalloc.h"

#define HAMMERS 4
#define FORKS 200
#define CHILD_TIMEOUT_MS 10000

static atomic_int stop_hammer;
static atomic_long hammer_errors;

/* Hammers spend most of their time inside the allocator's shared locks: large blocks take
 * the heap lock on malloc and free, and blocks swapped through a shared array are freed by
 * another thread (mcentral). A fork that does not quiesce them leaves a lock held forever. */
#define SHARED 64
static _Atomic(void *) shared_slots[SHARED];

static size_t hammer_size(uint64_t *rng) {
    unsigned r = (unsigned)(rng_next(rng) % 100);
    if (r < 45) return 1 + rng_next(rng) % 2048;
    if (r < 55) return 1 + rng_next(rng) % 32768;
    return 32769 + rng_next(rng) % (512 * GM_KIB);
}

static void *hammer(void *arg) {
    uint64_t rng = 77 + (uintptr_t)arg;
    void *slots[64] = {0};
    while (!atomic_load_explicit(&stop_hammer, memory_order_relaxed)) {
        size_t i = rng_next(&rng) % 64;
        if (slots[i]) {
            if (pat_check(slots[i], 16, (uint32_t)i) != (size_t)-1) atomic_fetch_add(&hammer_errors, 1);
            free(slots[i]);
        }
        slots[i] = malloc(hammer_size(&rng));
        if (slots[i] == NULL) {
            atomic_fetch_add(&hammer_errors, 1);
            continue;
        }
        pat_fill(slots[i], 16, (uint32_t)i);
        /* hand a block to whichever thread next swaps this slot */
        void *mine = malloc(1 + rng_next(&rng) % 4096);
        if (mine == NULL) {
            atomic_fetch_add(&hammer_errors, 1);
            continue;
        }
        free(atomic_exchange(&shared_slots[rng_next(&rng) % SHARED], mine));
    }
    for (size_t i = 0; i < 64; i++) free(slots[i]);
    return NULL;
}

static pthread_t hammers[HAMMERS];
static void start_hammers(void) {
    atomic_store(&stop_hammer, 0);
    atomic_store(&hammer_errors, 0);
    for (uintptr_t i = 0; i < HAMMERS; i++) assert_int_equal(pthread_create(&hammers[i], NULL, hammer, (void *)i), 0);
}
static void stop_hammers(void) {
    atomic_store(&stop_hammer, 1);
    for (int i = 0; i < HAMMERS; i++) pthread_join(hammers[i], NULL);
    for (int i = 0; i < SHARED; i++) free(atomic_exchange(&shared_slots[i], NULL));
    assert_int_equal(atomic_load(&hammer_errors), 0);
}

/* The child's work: 1000 blocks of mixed sizes, filled, verified, freed. Returns an exit code. */
static int child_work(unsigned seed) {
    void *b[1000];
    uint64_t rng = seed * 2654435761u + 1;
    for (int i = 0; i < 1000; i++) {
        size_t n = i % 100 == 0 ? (size_t)(50000 + i * 100) : 1 + rng_next(&rng) % 3000;
        b[i] = malloc(n);
        if (b[i] == NULL) return 2;
        pat_fill(b[i], n < 64 ? n : 64, (uint32_t)i);
    }
    for (int i = 0; i < 1000; i++) {
        if (pat_check(b[i], 1, (uint32_t)i) != (size_t)-1) return 3;
        free(b[i]);
    }
    return 0;
}

/* Before a hung child is killed: where it is, so a rare hang leaves more than its pid.
 * /proc/PID/stat's state (R: spinning, S: asleep) and CPU times, wchan, the kernel stack
 * (root only), and /proc/PID/syscall three times (the syscall and its arguments, then the
 * stack pointer and user PC where the kernel shows them). */
static void describe_hung(pid_t pid) {
    static const char *files[] = {"stat", "wchan", "stack", "syscall", "syscall", "syscall"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, files[i]);
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f) fclose(f);
        buf[n] = '\0';
        fprintf(stderr, "hung child %d %s: %s\n", (int)pid, files[i], n ? buf : "(unreadable)");
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
}

/* Waits for pid with a watchdog; returns the raw wait status, or fails the test on a hang. */
static int wait_child(pid_t pid) {
    int status = 0;
    for (int ms = 0; ms < CHILD_TIMEOUT_MS; ms++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0 && errno != EINTR) fail_msg("waitpid: %s", strerror(errno));
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    describe_hung(pid);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    fail_msg("child %d hung for %d ms after fork (allocator deadlock?)", (int)pid, CHILD_TIMEOUT_MS);
    return -1;
}

static void expect_clean_exit(int status, int iter) {
    if (WIFSIGNALED(status)) fail_msg("fork %d: child killed by signal %d", iter, WTERMSIG(status));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("fork %d: child exit status %d (2 = malloc failed, 3 = corruption, 4 = inherited block bad)",
                 iter, WEXITSTATUS(status));
}

static void test_fork_under_load(void **state) {
    (void)state;
    start_hammers();
    for (int i = 0; i < FORKS; i++) {
        void *inherited = malloc(1000);
        assert_non_null(inherited);
        pat_fill(inherited, 1000, 5);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int rc = child_work((unsigned)i);
            if (rc == 0 && pat_check(inherited, 1000, 5) != (size_t)-1) rc = 4;
            free(inherited);
            _exit(rc);
        }
        free(inherited);
        expect_clean_exit(wait_child(pid), i);
    }
    stop_hammers();
}

/* fork from a thread that is not the main one, while the main thread and the hammers allocate */
static atomic_int thread_fork_status;
static void *forking_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 50; i++) {
        pid_t pid = fork();
        if (pid == 0) _exit(child_work((unsigned)i + 1000));
        if (pid < 0) { atomic_store(&thread_fork_status, -1); return NULL; }
        int status = 0;
        int ms = 0;
        while (waitpid(pid, &status, WNOHANG) == 0 && ms++ < CHILD_TIMEOUT_MS) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        if (ms >= CHILD_TIMEOUT_MS) {
            describe_hung(pid);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            atomic_store(&thread_fork_status, 1000 + i);
            return NULL;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            atomic_store(&thread_fork_status, status ? status : -2);
            return NULL;
        }
    }
    return NULL;
}

static void test_fork_from_thread(void **state) {
    (void)state;
    start_hammers();
    atomic_store(&thread_fork_status, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, forking_thread, NULL), 0);
    for (int i = 0; i < 20000; i++) free(malloc(1 + (size_t)i % 5000));
    pthread_join(t, NULL);
    stop_hammers();
    int st = atomic_load(&thread_fork_status);
    if (st >= 1000) fail_msg("child of fork #%d from a non-main thread hung", st - 1000);
    if (st != 0) fail_msg("child of fork from a non-main thread failed: wait status %#x", st);
}

/* after fork, the child starts its own threads that allocate, and frees parent blocks */
static void *child_thread(void *arg) {
    return (void *)(intptr_t)child_work((unsigned)(uintptr_t)arg);
}

static void test_fork_child_threads(void **state) {
    (void)state;
    start_hammers();
    for (int i = 0; i < 30; i++) {
        void *inherited[16];
        for (int k = 0; k < 16; k++) {
            inherited[k] = malloc(100 + (size_t)k * 3000);
            assert_non_null(inherited[k]);
            pat_fill(inherited[k], 100, (uint32_t)k);
        }
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            pthread_t t[4];
            int rc = 0;
            for (uintptr_t k = 0; k < 4; k++)
                if (pthread_create(&t[k], NULL, child_thread, (void *)(k + 10)) != 0) _exit(5);
            for (int k = 0; k < 16; k++) {
                if (pat_check(inherited[k], 100, (uint32_t)k) != (size_t)-1) rc = 4;
                free(inherited[k]);
            }
            for (int k = 0; k < 4; k++) {
                void *r;
                pthread_join(t[k], &r);
                if (r != NULL) rc = (int)(intptr_t)r;
            }
            if (rc == 0) rc = child_work(7);
            _exit(rc);
        }
        for (int k = 0; k < 16; k++) free(inherited[k]);
        expect_clean_exit(wait_child(pid), i);
    }
    stop_hammers();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_under_load),
        cmocka_unit_test(test_fork_from_thread),
        cmocka_unit_test(test_fork_child_threads),
    };
    return cmocka_run_group_tests_name("fork", tests, NULL, NULL);
}
