/* override.c: the only file that defines malloc, free and the rest of glibc's allocation
 * API, plus glibc's internal __libc_* names. Leaving any of them out would let glibc's
 * heap and ours mix (one allocates, the other frees), so the set is glibc's whole surface.
 * malloc and free inline the fast paths from internal.h; the rest forward to gm_*. */
#include "internal.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

#define GM_EXPORT __attribute__((visibility("default")))

/* Names glibc's headers do not declare (or declare only for newer standards). */
void cfree(void *ptr);
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);
void *__libc_malloc(size_t size);
void __libc_free(void *ptr);
void *__libc_calloc(size_t count, size_t size);
void *__libc_realloc(void *ptr, size_t size);
void *__libc_memalign(size_t alignment, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);
int __posix_memalign(void **out, size_t alignment, size_t size);

GM_EXPORT void *malloc(size_t size) { return gm_malloc_inline(size); }
GM_EXPORT void free(void *ptr) { gm_free_inline(ptr); }
GM_EXPORT void cfree(void *ptr) { gm_free_inline(ptr); }
GM_EXPORT void *calloc(size_t count, size_t size) { return gm_calloc(count, size); }
GM_EXPORT void *realloc(void *ptr, size_t size) { return gm_realloc(ptr, size); }
GM_EXPORT void *reallocarray(void *ptr, size_t count, size_t size) { return gm_reallocarray(ptr, count, size); }
GM_EXPORT int posix_memalign(void **out, size_t alignment, size_t size) { return gm_posix_memalign(out, alignment, size); }
GM_EXPORT void *aligned_alloc(size_t alignment, size_t size) { return gm_aligned_alloc(alignment, size); }
GM_EXPORT void *memalign(size_t alignment, size_t size) { return gm_memalign(alignment, size); }
GM_EXPORT void *valloc(size_t size) { return gm_valloc(size); }
GM_EXPORT void *pvalloc(size_t size) { return gm_pvalloc(size); }
GM_EXPORT size_t malloc_usable_size(void *ptr) { return gm_usable_size_impl(ptr); }
GM_EXPORT void free_sized(void *ptr, size_t size) { gm_free_sized(ptr, size); }
GM_EXPORT void free_aligned_sized(void *ptr, size_t alignment, size_t size) {
    gm_free_aligned_sized(ptr, alignment, size);
}

/* glibc's internal strong names, used by code that wants "the real malloc" without dlsym. */
GM_EXPORT void *__libc_malloc(size_t size) { return gm_malloc_inline(size); }
GM_EXPORT void __libc_free(void *ptr) { gm_free_inline(ptr); }
GM_EXPORT void *__libc_calloc(size_t count, size_t size) { return gm_calloc(count, size); }
GM_EXPORT void *__libc_realloc(void *ptr, size_t size) { return gm_realloc(ptr, size); }
GM_EXPORT void *__libc_memalign(size_t alignment, size_t size) { return gm_memalign(alignment, size); }
GM_EXPORT void *__libc_valloc(size_t size) { return gm_valloc(size); }
GM_EXPORT void *__libc_pvalloc(size_t size) { return gm_pvalloc(size); }
GM_EXPORT int __posix_memalign(void **out, size_t alignment, size_t size) {
    return gm_posix_memalign(out, alignment, size);
}

/* ---- introspection, answered from gomalloc's own numbers ---- */

/* Returns 1 when some memory went back to the OS. The pad argument is ignored: nothing
 * of ours sits at a heap top the way glibc's brk heap does. */
GM_EXPORT int malloc_trim(size_t pad) {
    (void)pad;
    if (atomic_load_explicit(&gm_init_state, memory_order_acquire) == 0) return 0;
    return scavenger_release_all() > 0;
}

/* No glibc tunable applies to this allocator: report "not done" (0) as glibc does for an
 * unknown parameter, without touching errno. */
GM_EXPORT int mallopt(int param, int value) {
    (void)param;
    (void)value;
    return 0;
}

/* arena = heap_sys, uordblks = heap_alloc, fordblks = heap_sys - heap_alloc (idle spans
 * plus free slots in used spans), keepcost = heap_released, hblkhd = 0 (large objects
 * live in the heap), ordblks = live objects. */
GM_EXPORT struct mallinfo2 mallinfo2(void) {
    gm_memstats m;
    gm_read_memstats(&m);
    struct mallinfo2 mi;
    memset(&mi, 0, sizeof mi);
    mi.arena = m.heap_sys;
    mi.ordblks = m.heap_objects;
    mi.uordblks = m.heap_alloc;
    mi.fordblks = m.heap_sys - m.heap_alloc;
    mi.keepcost = m.heap_released;
    return mi;
}

/* The deprecated int version: same numbers, truncated as glibc's own wrap around. */
GM_EXPORT struct mallinfo mallinfo(void) {
    struct mallinfo2 m2 = mallinfo2();
    struct mallinfo mi;
    memset(&mi, 0, sizeof mi);
    mi.arena = (int)m2.arena;
    mi.ordblks = (int)m2.ordblks;
    mi.uordblks = (int)m2.uordblks;
    mi.fordblks = (int)m2.fordblks;
    mi.keepcost = (int)m2.keepcost;
    return mi;
}

GM_EXPORT void malloc_stats(void) { gm_print_stats(STDERR_FILENO); }
