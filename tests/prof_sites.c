/* prof_sites.c: a program whose allocation sites are known, for the heap-profile tests
 * (tests/profile_pprof.py). Runs under LD_PRELOAD=libgomalloc.so with GOMALLOC setting the
 * rate and the profile path; the script reads the profile back with google-pprof and go
 * tool pprof and compares each function's figures with the truth printed here.
 *
 *   prof_sites sites      keep_blocks keeps 96 MiB in 4 KiB blocks; churn_blocks moves
 *                         512 MiB through malloc+free in 1 KiB blocks; handed_blocks
 *                         allocates 64 MiB in 8 KiB blocks that another thread frees
 *   prof_sites fork PATH  also forks; the child allocates and exits through exit()
 *   prof_sites signal N   raises SIGUSR2 N times, waiting each time for the profile file
 *                         named by argv[3] (with %n = 0..N-1) to appear */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KEEP_BYTES (96u << 20)
#define KEEP_BLOCK 4096u
#define CHURN_BYTES (512u << 20)
#define CHURN_BLOCK 1024u
/* 64 MiB: 1024 expected samples at rate 64 KiB, so the 15% tolerance is ~5 standard
 * errors; with 16 MiB (256 samples, 2.4 standard errors) one secure suite run read +15.1%. */
#define HANDED_BYTES (64u << 20)
#define HANDED_BLOCK 8192u

static volatile uintptr_t sink; /* keeps the compiler from dropping the allocations */

__attribute__((noinline)) static void **keep_blocks(void) {
    size_t n = KEEP_BYTES / KEEP_BLOCK;
    void **v = calloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        v[i] = malloc(KEEP_BLOCK);
        memset(v[i], 1, 64);
    }
    return v;
}

__attribute__((noinline)) static void churn_blocks(void) {
    for (size_t i = 0; i < CHURN_BYTES / CHURN_BLOCK; i++) {
        char *p = malloc(CHURN_BLOCK);
        p[0] = (char)i;
        sink += (uintptr_t)p[0];
        free(p);
    }
}

__attribute__((noinline)) static void **handed_blocks(void) {
    size_t n = HANDED_BYTES / HANDED_BLOCK;
    void **v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = malloc(HANDED_BLOCK);
    return v;
}

static void *free_all(void *arg) {
    void **v = arg;
    for (size_t i = 0; i < HANDED_BYTES / HANDED_BLOCK; i++) free(v[i]);
    free(v);
    return NULL;
}

static void run_sites(void) {
    void **kept = keep_blocks();
    churn_blocks();
    void **handed = handed_blocks();
    pthread_t t;
    if (pthread_create(&t, NULL, free_all, handed) != 0 || pthread_join(t, NULL) != 0) {
        perror("pthread");
        exit(2);
    }
    sink += (uintptr_t)kept;
    printf("truth keep_blocks inuse_bytes=%u inuse_objects=%u alloc_bytes=%u alloc_objects=%u\n",
           KEEP_BYTES, KEEP_BYTES / KEEP_BLOCK, KEEP_BYTES, KEEP_BYTES / KEEP_BLOCK);
    printf("truth churn_blocks inuse_bytes=0 inuse_objects=0 alloc_bytes=%u alloc_objects=%u\n",
           CHURN_BYTES, CHURN_BYTES / CHURN_BLOCK);
    printf("truth handed_blocks inuse_bytes=0 inuse_objects=0 alloc_bytes=%u alloc_objects=%u\n",
           HANDED_BYTES, HANDED_BYTES / HANDED_BLOCK);
}

static int wait_for(const char *path) {
    struct stat st;
    for (int i = 0; i < 500; i++) { /* 5 s */
        if (stat(path, &st) == 0) return 0;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "sites";
    if (strcmp(mode, "sites") == 0) {
        run_sites();
    } else if (strcmp(mode, "fork") == 0) {
        run_sites();
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            void **more = keep_blocks(); /* the child's own allocations */
            sink += (uintptr_t)more;
            exit(0); /* runs the exit-time profile writer */
        }
        int status;
        waitpid(pid, &status, 0);
        printf("child %d status %d\n", (int)pid, status);
    } else if (strcmp(mode, "signal") == 0 && argc > 3) {
        run_sites();
        int n = atoi(argv[2]);
        for (int i = 0; i < n; i++) {
            char path[4096];
            const char *pct = strstr(argv[3], "%n");
            if (pct == NULL) return 2;
            snprintf(path, sizeof path, "%.*s%d%s", (int)(pct - argv[3]), argv[3], i, pct + 2);
            raise(SIGUSR2);
            if (wait_for(path) != 0) {
                printf("no profile at %s\n", path);
                return 1;
            }
            printf("signal profile %s\n", path);
        }
    } else {
        fprintf(stderr, "usage: prof_sites [sites|fork|signal N PATTERN]\n");
        return 2;
    }
    return 0;
}
