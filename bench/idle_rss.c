/* idle_rss.c: the scavenger's test case (issue 3). Allocates 1 GiB in sizes 16 B..256 KiB
 * (log-distributed, every page touched), frees all of it, then sleeps 2 s making no
 * allocator call, sampling RSS from /proc/self/statm. Prints RSS at the peak, right after
 * the free and after the idle time, and the process's CPU time (getrusage), so the same
 * binary can be compared across allocators (LD_PRELOAD) and with GOMALLOC=scavenger=0.
 * Usage: idle_rss [MiB] [idle_ms] */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static size_t rss_kib(void) {
    char buf[128] = {0};
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0 || read(fd, buf, sizeof buf - 1) <= 0) return 0;
    close(fd);
    unsigned long size, resident;
    if (sscanf(buf, "%lu %lu", &size, &resident) != 2) return 0;
    return resident * (size_t)(sysconf(_SC_PAGESIZE) / 1024);
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    size_t total = (size_t)(argc > 1 ? atol(argv[1]) : 1024) << 20;
    long idle_ms = argc > 2 ? atol(argv[2]) : 2000;
    size_t cap = total / 16 + 16, n = 0, got = 0;
    void **blocks = malloc(cap * sizeof *blocks);
    uint64_t x = 88172645463325252ull, sum = 0;
    double t0 = now_s();
    while (got < total && n < cap) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t sz = (size_t)16 << (x % 15); /* 16 B .. 256 KiB */
        sz += (x >> 8) % sz;
        if (sz > (256 << 10)) sz = 256 << 10;
        unsigned char *p = malloc(sz);
        if (p == NULL) return 1;
        for (size_t i = 0; i < sz; i += 4096) p[i] = (unsigned char)i;
        p[sz - 1] = 1;
        sum += p[sz - 1];
        blocks[n++] = p;
        got += sz;
    }
    size_t peak = rss_kib();
    for (size_t i = 0; i < n; i++) free(blocks[i]);
    free(blocks);
    size_t after_free = rss_kib();
    double t_free = now_s();
    /* Idle: no allocator calls from here on. */
    size_t at_half = 0;
    while (now_s() - t_free < idle_ms / 1000.0) {
        usleep(100 * 1000);
        if (at_half == 0 && now_s() - t_free >= idle_ms / 2000.0) at_half = rss_kib();
    }
    size_t idle = rss_kib();
    printf("allocated_mib=%zu blocks=%zu checksum=%llu peak_rss_mib=%zu after_free_mib=%zu half_idle_mib=%zu "
           "idle_rss_mib=%zu cpu_s=%.3f wall_s=%.3f\n",
           got >> 20, n, (unsigned long long)sum, peak >> 10, after_free >> 10, at_half >> 10, idle >> 10,
           cpu_s(), now_s() - t0);
    return 0;
}
