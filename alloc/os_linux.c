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

#if GM_FAULT_INJECTION
/* ---- fault injection (meson -Dfault_injection=true; compiled out otherwise) ----
 * One armed rule at a time: calls of the armed kinds are numbered from 1 after arming,
 * and calls first..last fail. Armed either by os_fault_set() (tests) or, at the first
 * call of any hooked function, from GOMALLOC_FAULT=kind:N[:COUNT] in environ (COUNT
 * calls fail from the N-th on; default 1, 0 = every call from the N-th). kind is mmap
 * (arena reservations and metadata), reserve, meta or madvise. */
static atomic_uint fault_mask;        /* OS_FAULT_* bits of the kinds being counted */
static atomic_uint_fast64_t fault_calls, fault_fired;
static atomic_uint_fast64_t fault_first, fault_last;
static atomic_int fault_env_done;

void os_fault_set(unsigned kinds, uint64_t nth, uint64_t count) {
    atomic_store(&fault_env_done, 1); /* an explicit setting overrides the environment */
    atomic_store(&fault_mask, 0);
    atomic_store(&fault_first, nth);
    atomic_store(&fault_last, count == 0 || nth + count < nth ? UINT64_MAX : nth + count - 1);
    atomic_store(&fault_calls, 0);
    atomic_store(&fault_fired, 0);
    atomic_store(&fault_mask, nth == 0 ? 0u : kinds);
}

uint64_t os_fault_fired(void) { return atomic_load(&fault_fired); }

static bool fault_prefix(const char **s, const char *word) {
    size_t n = strlen(word);
    if (strncmp(*s, word, n) != 0 || (*s)[n] != ':') return false;
    *s += n + 1;
    return true;
}

static uint64_t fault_number(const char **s) {
    uint64_t v = 0;
    while (**s >= '0' && **s <= '9') v = v * 10 + (uint64_t)(*(*s)++ - '0');
    return v;
}

/* Parses GOMALLOC_FAULT from environ (no getenv, no allocation); a bad value is ignored. */
static void fault_read_env(void) {
    extern char **environ;
    if (atomic_exchange(&fault_env_done, 1)) return;
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, "GOMALLOC_FAULT=", 15) != 0) continue;
        const char *s = *e + 15;
        unsigned kinds = fault_prefix(&s, "mmap") ? OS_FAULT_MMAP
                         : fault_prefix(&s, "reserve") ? OS_FAULT_RESERVE
                         : fault_prefix(&s, "meta") ? OS_FAULT_META
                         : fault_prefix(&s, "madvise") ? OS_FAULT_MADVISE
                         : fault_prefix(&s, "remap") ? OS_FAULT_REMAP : 0;
        uint64_t nth = fault_number(&s), count = 1;
        if (*s == ':') {
            s++;
            count = fault_number(&s);
        }
        if (kinds != 0 && *s == '\0') os_fault_set(kinds, nth, count);
        return;
    }
}

/* True when this call of kind must fail. */
static bool fault_hit(unsigned kind) {
    if (!atomic_load_explicit(&fault_env_done, memory_order_relaxed)) fault_read_env();
    if (!(atomic_load_explicit(&fault_mask, memory_order_relaxed) & kind)) return false;
    uint64_t n = atomic_fetch_add(&fault_calls, 1) + 1;
    if (n < atomic_load(&fault_first) || n > atomic_load(&fault_last)) return false;
    atomic_fetch_add(&fault_fired, 1);
    return true;
}
#define FAULT(kind) gm_unlikely(fault_hit(kind))
#else
#define FAULT(kind) false
#endif

static void *os_mmap(void *hint, size_t size) {
    void *p = mmap(hint, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void *os_reserve(size_t size, size_t align, uintptr_t hint) {
    if (FAULT(OS_FAULT_RESERVE)) return NULL;
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

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4 /* Linux 5.7 */
#endif

/* MREMAP_DONTUNMAP keeps src mapped (private anonymous memory then reads back as zero),
 * so the arena stays whole and no mmap can fail afterwards. What was mapped at dst is
 * replaced, its pages freed. */
bool os_move_pages(void *dst, void *src, size_t size) {
    static atomic_bool unsupported; /* EINVAL: a kernel before 5.7; stop asking */
    if (FAULT(OS_FAULT_REMAP) || atomic_load_explicit(&unsupported, memory_order_relaxed)) return false;
    int saved = errno;
    void *r = mremap(src, size, size, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst);
    if (r == MAP_FAILED && errno == EINVAL) atomic_store_explicit(&unsupported, true, memory_order_relaxed);
    errno = saved;
    return r == dst;
}

bool os_release(void *p, size_t size, bool dontneed) {
    if (FAULT(OS_FAULT_MADVISE)) return false;
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
    if (FAULT(OS_FAULT_META)) return NULL;
    int saved = errno;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    errno = saved;
    return p == MAP_FAILED ? NULL : p;
}

bool os_write_all(int fd, const char *buf, size_t len) {
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
    return len == 0;
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

/* Linux 6.13's guard regions; Debian 12's headers predate them. */
#define GM_MADV_GUARD_INSTALL 102
#define GM_MADV_GUARD_REMOVE 103

/* Makes [p, p+size) inaccessible (guard pages, secure mode) or accessible again.
 * madvise(MADV_GUARD_INSTALL) where the kernel has it: it marks the page table entries and
 * leaves the mapping whole, where mprotect splits the arena's VMA and rejoins it on every
 * guard and unguard, with the mmap lock held for writing and a TLB shootdown each time
 * (bench/mstress secure build, 2 threads: 2.05x -> 1.7x the default build, helper's
 * prototype). The first call picks the method for the process; a guard is always removed
 * the way it was set, since a guard marker survives mprotect and a PROT_NONE page
 * survives MADV_GUARD_REMOVE. A removed guard page reads back as zero. */
static _Atomic int use_guard_regions = -1; /* -1 unknown, 0 mprotect, 1 madvise */

bool os_protect(void *p, size_t size, bool accessible) {
    int saved = errno, rc;
    int mode = atomic_load_explicit(&use_guard_regions, memory_order_relaxed);
    if (mode != 0) {
        rc = madvise(p, size, accessible ? GM_MADV_GUARD_REMOVE : GM_MADV_GUARD_INSTALL);
        if (mode < 0) {
            /* Only an install can probe: nothing is guarded before the first one. */
            mode = (rc == 0 || errno != EINVAL) ? 1 : 0;
            atomic_store_explicit(&use_guard_regions, mode, memory_order_relaxed);
        }
        if (mode == 1) {
            errno = saved;
            return rc == 0;
        }
    }
    rc = mprotect(p, size, accessible ? PROT_READ | PROT_WRITE : PROT_NONE);
    errno = saved;
    return rc == 0;
}

/* Guard regions cost nothing while they sit on free memory: no VMA, no RSS, and they
 * survive MADV_DONTNEED, MADV_FREE and fork, so the heap may leave them in place. A
 * PROT_NONE page splits the mapping, so mprotect guards are lifted when their span dies. */
bool os_guards_persist(void) { return atomic_load_explicit(&use_guard_regions, memory_order_relaxed) == 1; }
