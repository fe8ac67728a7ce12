/* gomalloc: a C11 malloc built on the architecture of Go's runtime allocator.
 * This is the one public header. Linking -lgomalloc (or LD_PRELOAD=libgomalloc.so) also
 * replaces malloc, free and the rest of glibc's allocation API; the gm_* names below are
 * always available, whether or not the override is in effect. */
#ifndef GOMALLOC_H
#define GOMALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GOMALLOC_VERSION_MAJOR 0
#define GOMALLOC_VERSION_MINOR 1
#define GOMALLOC_VERSION_PATCH 0

#if defined(GM_BUILDING)
#define GM_API __attribute__((visibility("default")))
#else
#define GM_API
#endif

#if defined(__GNUC__)
#define GM_ATTR_MALLOC __attribute__((malloc))
#define GM_ATTR_ALLOC_SIZE(n) __attribute__((alloc_size(n)))
#define GM_ATTR_ALLOC_SIZE2(n, m) __attribute__((alloc_size(n, m)))
#else
#define GM_ATTR_MALLOC
#define GM_ATTR_ALLOC_SIZE(n)
#define GM_ATTR_ALLOC_SIZE2(n, m)
#endif

/* ---- the malloc family, with glibc's semantics (see docs/api.md) ---- */
GM_API void *gm_malloc(size_t size) GM_ATTR_MALLOC GM_ATTR_ALLOC_SIZE(1);
GM_API void *gm_calloc(size_t count, size_t size) GM_ATTR_MALLOC GM_ATTR_ALLOC_SIZE2(1, 2);
GM_API void *gm_realloc(void *ptr, size_t size) GM_ATTR_ALLOC_SIZE(2);
GM_API void *gm_reallocarray(void *ptr, size_t count, size_t size) GM_ATTR_ALLOC_SIZE2(2, 3);
GM_API void gm_free(void *ptr);
GM_API void gm_free_sized(void *ptr, size_t size);
GM_API void gm_free_aligned_sized(void *ptr, size_t alignment, size_t size);
GM_API void *gm_aligned_alloc(size_t alignment, size_t size) GM_ATTR_MALLOC GM_ATTR_ALLOC_SIZE(2);
GM_API int gm_posix_memalign(void **out, size_t alignment, size_t size);
GM_API void *gm_memalign(size_t alignment, size_t size) GM_ATTR_MALLOC GM_ATTR_ALLOC_SIZE(2);
GM_API void *gm_valloc(size_t size) GM_ATTR_MALLOC GM_ATTR_ALLOC_SIZE(1);
GM_API void *gm_pvalloc(size_t size) GM_ATTR_MALLOC;
/* Bytes usable at ptr: >= the size asked for, stable while the block lives; 0 for NULL
 * and for pointers gomalloc does not own. */
GM_API size_t gm_usable_size(const void *ptr);

/* ---- statistics, mirroring Go's runtime.MemStats (field meanings are Go's, except
 * heap_inuse_released, which Go lacks: free pages inside spans given back, docs/stats.md) ---- */
#define GM_NUM_SIZE_CLASSES 66 /* 65 small size classes + entry 0, which stands for large objects */

typedef struct gm_memstats {
    uint64_t alloc, total_alloc, sys, mallocs, frees;
    uint64_t heap_alloc, heap_sys, heap_idle, heap_inuse, heap_released, heap_inuse_released, heap_objects;
    uint64_t mspan_inuse, mspan_sys, mcache_inuse, mcache_sys, other_sys;
    struct {
        uint32_t size;
        uint64_t mallocs, frees;
    } by_size[GM_NUM_SIZE_CLASSES];
} gm_memstats;

/* Fills *m with a snapshot of the heap. */
GM_API void gm_read_memstats(gm_memstats *m);
/* Writes a human-readable report to fd without allocating. */
GM_API void gm_print_stats(int fd);
/* Returns every free page to the OS now (Go's debug.FreeOSMemory). */
GM_API void gm_free_os_memory(void);
/* Sets a soft limit on the memory gomalloc keeps committed (Go's debug.SetMemoryLimit,
 * GOMEMLIMIT): the scavenger returns idle memory to stay under 95% of it. Allocations are
 * never refused because of it. INT64_MAX means no limit (the default, unless
 * GOMALLOC=memlimit=... is set); a negative value only reads the limit. Returns the
 * previous limit. */
GM_API int64_t gm_set_memory_limit(int64_t bytes);

/* ---- heap profiling (docs/profiling.md) ---- */
/* Sets the sampling rate, as Go's runtime.MemProfileRate: about one allocation per rate
 * bytes is sampled with its stack (1 = every allocation, 0 = off). Threads switch at their
 * next sample or slow-path allocation. Returns the previous rate. Default 524288, or
 * GOMALLOC=memprofilerate=N. */
GM_API int64_t gm_set_memprofile_rate(int64_t rate);
/* Writes the heap profile (pprof's legacy text format, read by google-pprof and go tool
 * pprof) to path, replacing it atomically; "%p" in path becomes the pid and "%n" the
 * number of this dump. NULL means GOMALLOC's memprofile path, else gomalloc.%p.%n.heap.
 * Returns 0, or -1 with errno set. Does not allocate. */
GM_API int gm_write_heap_profile(const char *path);

/* ---- introspection ---- */
/* 1 when ptr lies in gomalloc's heap (live or not), else 0. Never dereferences ptr. */
GM_API int gm_owns(const void *ptr);
/* 1 when this process's malloc is gomalloc's (linked or preloaded), else 0. */
GM_API int gm_is_redirected(void);

#ifdef __cplusplus
}
#endif
#endif /* GOMALLOC_H */
