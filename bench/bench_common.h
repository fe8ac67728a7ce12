/* bench_common.h: helpers shared by the C workload programs: a monotonic clock, a fixed-seed
 * RNG, log-distributed sizes, tagging blocks so corruption and lost frees change the checksum,
 * and naming whichever malloc is in effect (so compare.sh can tell a preload took hold). */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <dlfcn.h>
#include <stdint.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: a bijective mixer; also the tag of a block from its (thread, sequence) id. */
static inline uint64_t bench_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

typedef struct { uint64_t s; } bench_rng;

static inline void bench_rng_seed(bench_rng *r, uint64_t seed) { r->s = bench_mix64(seed) | 1; }

/* xorshift64*: fast and good enough for picking slots and sizes. */
static inline uint64_t bench_rand(bench_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* A size that is log-uniform over [2^lo, 2^hi): pick the octave, then a size inside it. */
static inline size_t bench_log_size(bench_rng *r, unsigned lo, unsigned hi)
{
    uint64_t x = bench_rand(r);
    unsigned e = lo + (unsigned)((x >> 48) % (hi - lo));
    size_t base = (size_t)1 << e;
    return base + (size_t)(x & (base - 1));
}

/* Block layout (size >= 16): word 0 = tag, word 1 = size ^ tag, last 8 bytes = ~tag when
 * size >= 24, and one byte in the middle. Every block's tag is added to the checksum exactly
 * once, when it is freed, so the sum is deterministic however threads interleave, and a block
 * handed out twice or overwritten shows up as an error and a changed sum. */
static inline void bench_fill(void *p, size_t n, uint64_t tag)
{
    unsigned char *b = (unsigned char *)p;
    uint64_t w1 = (uint64_t)n ^ tag, tail = ~tag;
    memcpy(b, &tag, 8);
    memcpy(b + 8, &w1, 8);
    if (n >= 24) memcpy(b + n - 8, &tail, 8);
    if (n > 32) b[n / 2] = (unsigned char)tag;
}

/* Returns 0 and stores the tag when the block is intact, else 1. max_n bounds the size read
 * back, so a corrupted header cannot send the check out of bounds. */
static inline int bench_check(const void *p, size_t max_n, uint64_t *tag_out)
{
    const unsigned char *b = (const unsigned char *)p;
    uint64_t tag, w1, tail;
    memcpy(&tag, b, 8);
    memcpy(&w1, b + 8, 8);
    size_t n = (size_t)(w1 ^ tag);
    *tag_out = tag;
    if (n < 16 || n > max_n) return 1;
    if (n >= 24) {
        memcpy(&tail, b + n - 8, 8);
        if (tail != ~tag) return 1;
    }
    if (n > 32 && b[n / 2] != (unsigned char)tag) return 1;
    return 0;
}

/* Which malloc this process ended up with, found by symbols each allocator exports. */
static inline const char *bench_malloc_name(void)
{
    int (*redirected)(void) = NULL;
    void *sym = dlsym(RTLD_DEFAULT, "gm_is_redirected");
    if (sym) {
        memcpy(&redirected, &sym, sizeof sym);
        return redirected() ? "gomalloc" : "glibc(gomalloc-not-redirected)";
    }
    if (dlsym(RTLD_DEFAULT, "mallctl")) return "jemalloc";
    if (dlsym(RTLD_DEFAULT, "mi_malloc")) return "mimalloc";
    if (dlsym(RTLD_DEFAULT, "tc_malloc")) return "tcmalloc";
    return "glibc";
}

static inline unsigned long bench_arg(int argc, char **argv, int i, unsigned long dflt)
{
    return argc > i ? strtoul(argv[i], NULL, 0) : dflt;
}

/* Resident set size now, in KiB, from /proc/self/statm (0 if unreadable). */
static inline unsigned long bench_rss_kib(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    fclose(f);
    return resident * (unsigned long)(sysconf(_SC_PAGESIZE) / 1024);
}

#endif /* BENCH_COMMON_H */
