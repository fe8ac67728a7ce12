/* os_linux.c: the only file that talks to the kernel about memory (mmap, munmap, madvise)
 * or randomness (getrandom). Every function saves and restores errno, because it runs
 * inside malloc and free, whose success paths must not change errno. Never allocates. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif

static void *os_mmap(void *hint, size_t size) {
    void *p = mmap(hint, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void *os_reserve(size_t size, size_t align, uintptr_t hint) {
    int saved = errno;
    void *p = NULL;
    if (hint != 0) {
        p = os_mmap((void *)hint, size);
        if (p != NULL && ((uintptr_t)p & (align - 1)) != 0) {
            munmap(p, size);
            p = NULL;
        }
    }
    if (p == NULL) {
        /* Over-reserve by align and trim both ends, so the result is aligned. */
        size_t want = size + align;
        if (want < size) goto out;
        uint8_t *raw = os_mmap(NULL, want);
        if (raw == NULL) goto out;
        uintptr_t start = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
        size_t head = start - (uintptr_t)raw;
        size_t tail = want - head - size;
        if (head) munmap(raw, head);
        if (tail) munmap((void *)(start + size), tail);
        p = (void *)start;
    }
out:
    errno = saved;
    return p;
}

void os_unmap(void *p, size_t size) {
    int saved = errno;
    munmap(p, size);
    errno = saved;
}

bool os_release(void *p, size_t size, bool dontneed) {
    int saved = errno;
    int rc = -1;
#ifdef MADV_FREE
    if (!dontneed) rc = madvise(p, size, MADV_FREE);
#endif
    if (rc != 0) rc = madvise(p, size, MADV_DONTNEED); /* kernels before 4.5 lack MADV_FREE */
    errno = saved;
    return rc == 0;
}

void os_nohugepage(void *p, size_t size) {
    int saved = errno;
#ifdef MADV_NOHUGEPAGE
    madvise(p, size, MADV_NOHUGEPAGE);
#endif
    errno = saved;
}

void *os_alloc_meta(size_t size) {
    int saved = errno;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    errno = saved;
    return p == MAP_FAILED ? NULL : p;
}

void os_write_all(int fd, const char *buf, size_t len) {
    int saved = errno;
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        buf += n;
        len -= (size_t)n;
    }
    errno = saved;
}

/* Fills buf with random bytes; falls back to a clock/address mix when getrandom is
 * unavailable (old kernels, seccomp), which is good enough for a free-object marker. */
void os_random(void *buf, size_t len) {
    int saved = errno;
    uint8_t *b = buf;
    size_t got = 0;
#ifdef SYS_getrandom
    while (got < len) {
        long n = syscall(SYS_getrandom, b + got, len - got, 1 /* GRND_NONBLOCK */);
        if (n <= 0) break;
        got += (size_t)n;
    }
#endif
    if (got < len) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&ts ^
                     ((uint64_t)getpid() << 32);
        for (; got < len; got++) {
            x ^= x >> 33;
            x *= 0xff51afd7ed558ccdull;
            x ^= x >> 29;
            b[got] = (uint8_t)x;
        }
    }
    errno = saved;
}

/* RAM + swap in bytes (0 if unknown). Under Linux's default overcommit heuristic a single
 * mapping larger than this fails; gomalloc's arenas are MAP_NORESERVE, which skips that
 * check, so the heap applies the same bound itself (see mheap.c). */
size_t os_physical_memory(void) {
    int saved = errno;
    struct sysinfo si;
    size_t total = 0;
    if (sysinfo(&si) == 0) total = ((size_t)si.totalram + (size_t)si.totalswap) * si.mem_unit;
    errno = saved;
    return total;
}

/* A close-on-exec duplicate of fd numbered 200 or above, or -1. */
int os_dup_high(int fd) {
    int saved = errno;
    int r = fcntl(fd, F_DUPFD_CLOEXEC, 200);
    errno = saved;
    return r;
}
