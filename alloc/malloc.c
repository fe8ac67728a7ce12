/* malloc.c: the gm_* entry points with glibc's semantics, and the slow paths behind the
 * inline fast paths in internal.h: small objects through the thread's mcache, large
 * objects (> 32 KiB) as their own span, aligned allocation, realloc, and the checks that
 * turn bad pointers into one clear line (abort for corruption, a warning for foreign
 * pointers). Failures return NULL with errno ENOMEM and leave the heap untouched. */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- errors ---- */

void gm_fatal(const char *what, const void *ptr) {
    gm_buf b;
    gm_buf_init(&b, STDERR_FILENO);
    gm_buf_puts(&b, "gomalloc: ");
    gm_buf_puts(&b, what);
    gm_buf_puts(&b, " ");
    gm_buf_putx(&b, (uint64_t)(uintptr_t)ptr);
    gm_buf_puts(&b, "\n");
    gm_buf_flush(&b);
    abort();
}

static atomic_uint_fast64_t gm_foreign_count;

uint64_t gm_foreign_frees(void) { return atomic_load_explicit(&gm_foreign_count, memory_order_relaxed); }

void gm_warn_foreign(const char *what, const void *ptr) {
    uint64_t n = atomic_fetch_add_explicit(&gm_foreign_count, 1, memory_order_relaxed);
    if ((int64_t)n >= gm_opt.foreign_warnings) return;
    gm_buf b;
    gm_buf_init(&b, STDERR_FILENO);
    gm_buf_puts(&b, "gomalloc: ");
    gm_buf_puts(&b, what);
    gm_buf_puts(&b, ": ignoring pointer ");
    gm_buf_putx(&b, (uint64_t)(uintptr_t)ptr);
    gm_buf_puts(&b, " not allocated by gomalloc");
    if ((int64_t)n + 1 == gm_opt.foreign_warnings) gm_buf_puts(&b, " (further warnings suppressed)");
    gm_buf_puts(&b, "\n");
    gm_buf_flush(&b);
}

/* Checks that ptr, whose span map entry names s, is a live object's start.
 * post: the span (p is a valid small slot or a large object's base), NULL for a foreign
 * pointer (after a warning); never returns for a pointer into gomalloc memory that is not
 * a live object. `fn` names the call for the warning, the other two are the fatal
 * messages, e.g. "free(): invalid pointer". */
static mspan *check_live_span(const void *ptr, mspan *s, const char *fn, const char *fn_invalid, const char *fn_double) {
    uintptr_t p = (uintptr_t)ptr;
    if (s == NULL) {
        if (arena_of(p) == NULL) {
            gm_warn_foreign(fn, ptr);
            return NULL;
        }
        gm_fatal(fn_invalid, ptr); /* a page of ours that was never handed out */
    }
    if (s->state != MSPAN_INUSE) gm_fatal(fn_double, ptr);
    if (s->sizeclass == 0) {
        if (p != s->base) gm_fatal(fn_invalid, ptr);
        return s;
    }
    if (!mspan_is_slot(s, p)) gm_fatal(fn_invalid, ptr);
    if ((uint64_t)(uintptr_t)((void *const *)ptr)[1] == gm_free_mark(ptr)) gm_fatal(fn_double, ptr);
    return s;
}

/* check_live_span with the span looked up here. */
static mspan *check_live(const void *ptr, const char *fn, const char *fn_invalid, const char *fn_double) {
    return check_live_span(ptr, span_of((uintptr_t)ptr), fn, fn_invalid, fn_double);
}

#define FREE_INVALID "free(): invalid pointer"
#define FREE_DOUBLE "free(): double free"

/* ---- small and large allocation ---- */

GM_INLINE mcache *get_cache(bool *locked) {
    mcache *c = gm_tls_mcache;
    if (gm_likely(c != &mcache_new_marker && c != &mcache_fallback_marker)) {
        *locked = false;
        return c;
    }
    return mcache_get_slow(locked);
}

/* A rate change (profile_rate_epoch) starts every countdown of the cache over. */
GM_INLINE void sample_epoch_check(mcache *c) {
    if (gm_unlikely(c->sample_epoch != atomic_load_explicit(&profile_rate_epoch, memory_order_relaxed)))
        profile_reset_countdown(c);
}

/* The large objects' byte countdown for an allocation of slot bytes. Returns true when
 * this allocation is to be sampled, and draws the next gap. */
static bool sample_due_large(mcache *c, size_t slot) {
    sample_epoch_check(c);
    int64_t left = c->next_sample - (int64_t)slot;
    if (gm_likely(left >= 0)) {
        c->next_sample = left;
        return false;
    }
    c->next_sample = (int64_t)profile_class_gap(c, 0);
    return true;
}

/* Counts a small-class malloc made on a slow path, as the fast path would (see
 * mcache.sample_at). Returns true when the profiler samples it; then, or on the class's
 * first malloc since its countdown was reset, draws the next sampling point. */
static bool count_small(mcache *c, unsigned cl) {
    sample_epoch_check(c);
    uint64_t n = c->list[cl].nmalloc + 1;
    __atomic_store_n(&c->list[cl].nmalloc, n, __ATOMIC_RELAXED);
    if (gm_likely(n <= c->sample_at[cl])) return false;
    if (!c->sample_drawn[cl]) {
        /* A fresh countdown starts before this malloc, which is sampled only if its gap
         * is 0 objects (always at rate 1). */
        c->sample_drawn[cl] = 1;
        c->sample_at[cl] = n - 1 + profile_class_gap(c, cl);
        if (n <= c->sample_at[cl]) return false;
    }
    c->sample_at[cl] = n + profile_class_gap(c, cl);
    return true;
}

/* pre: initialized, cl a small class. post: an object with its free mark cleared. */
static void *alloc_small(unsigned cl) {
    bool locked;
    mcache *c = get_cache(&locked);
    gm_freelist *fl = &c->list[cl];
    void **p = fl->head;
    if (gm_unlikely(secure_slow_lists())) {
        p = secure_alloc(c, cl);
    } else if (p != NULL) {
        fl->head = freelist_next(p, cl);
        p[1] = NULL;
    } else {
        p = mcache_refill(c, cl);
        /* Out of memory: spans parked in threads' large caches are free memory too. */
        if (gm_unlikely(p == NULL) && mcache_steal_large(false) > 0) p = mcache_refill(c, cl);
    }
    bool sample = p != NULL && count_small(c, cl);
    if (locked) mcache_unlock_fallback();
    if (gm_unlikely(sample)) profile_alloc(p, gm_class_to_size[cl]);
    return p;
}

/* The thread's large cache, or NULL for a thread on the shared fallback cache (which
 * keeps no large spans: nobody would reuse them soon). */
static mcache *large_cache(void) {
    bool locked;
    mcache *c = get_cache(&locked);
    if (gm_unlikely(locked)) {
        mcache_unlock_fallback();
        return NULL;
    }
    return c;
}

/* Large objects try the thread's large cache first: a same-size free then malloc takes no
 * lock (issue 5: 86 ns through the heap lock). In secure mode a large object is followed
 * by a guard page (os_protect: a guard region, or PROT_NONE on older kernels), so a linear
 * overflow faults at once (if setting it fails, e.g. at the VMA limit, it goes without).
 * Its span has npages + 1 pages and the cache keeps the guard in place, keyed by that
 * whole page count, so a hit costs no os_protect call (a pair through the heap costs two:
 * mstress-2t, secure build / default, 7.3 -> 4.4 in CPU with mprotect). */
static void *alloc_large(size_t size, size_t align_pages, bool zero) {
    size_t npages = (size + GM_PAGE_SIZE - 1) >> GM_PAGE_SHIFT;
    size_t guard = gm_opt.secure != 0;
    mspan *s = NULL;
    mcache *c = large_cache();
    if (c != NULL) {
        if (align_pages == 1) s = mcache_alloc_large(c, npages + guard);
        if (s == NULL) s = mcache_alloc_large_heap(c, npages + guard, align_pages);
    } else {
        s = mheap_alloc_span(npages + guard, 0, align_pages);
    }
    if (gm_unlikely(s == NULL)) {
        /* Out of memory: give every cached large span back to the heap, and try again. */
        if (mcache_steal_large(false) == 0) return NULL;
        s = mheap_alloc_span(npages + guard, 0, align_pages);
        if (s == NULL) return NULL;
    }
    /* A fresh span, or a cached one whose guard could not be set last time. */
    if (guard && !s->guard) s->guard = os_protect((void *)(s->base + (npages << GM_PAGE_SHIFT)), GM_PAGE_SIZE, false);
    if (zero && s->needzero) memset((void *)s->base, 0, size);
    bool locked = false;
    mcache *pc = c != NULL ? c : get_cache(&locked); /* the profiler's countdown */
    bool sample = sample_due_large(pc, npages << GM_PAGE_SHIFT);
    if (locked) mcache_unlock_fallback();
    if (gm_unlikely(sample)) profile_alloc((void *)s->base, npages << GM_PAGE_SHIFT);
    return (void *)s->base;
}

/* may_cache is false for the block a growing realloc moves away from: that size is not
 * asked for again soon, and parked, its pages would stop the neighbour growing in place
 * (bench/realloc: more moves, +5-8% time, more faults). A parked span keeps its guard
 * page; so does one that goes to the heap, where guard regions are used (mheap_drop_guard). */
static void free_large(mspan *s, bool may_cache, bool pages_moved) {
    if (gm_unlikely(__atomic_load_n(&s->nsampled, __ATOMIC_RELAXED) != 0)) profile_free(s, (void *)s->base);
    if (may_cache && s->npages >= GM_LARGE_CACHE_MIN_PAGES && s->npages <= GM_LARGE_CACHE_MAX_PAGES) {
        mcache *c = large_cache();
        if (c != NULL && mcache_free_large(c, s)) return;
    }
    if (pages_moved) mheap_free_span_moved(s);
    else mheap_free_span(s);
}

/* Out of line, so gm_realloc's in-place path keeps its code (inlined, free_large cost the
 * realloc_inplace micro benchmark ~0.5 ns). */
static GM_NOINLINE void free_large_moved(mspan *s) { free_large(s, false, false); }

/* Usable bytes of a live large object: its pages, less a guard page. */
static size_t large_usable(const mspan *s) { return (size_t)(s->npages - s->guard) << GM_PAGE_SHIFT; }

/* Grows a guarded object (secure mode) in place to npages usable pages by moving its
 * guard: the pages after the guard join the span, the old guard page opens, the new last
 * page closes. Two os_protect calls and no copy, where moving costs a new span's guard, a
 * copy or a page move, and the old span's unguard (bench/realloc, secure build / default:
 * 1.93 -> 1.01).
 * If the new guard cannot be set (VMA limit) the object goes without, as a fresh one
 * would. False, with nothing changed, when the pages after it are taken.
 * pre: s->guard, npages > s->npages - 1. */
static bool grow_guarded(mspan *s, size_t npages) {
    size_t old = s->npages;
    if (!mheap_resize_large(s, npages + 1)) return false;
    if (!os_protect((void *)(s->base + ((old - 1) << GM_PAGE_SHIFT)), GM_PAGE_SIZE, true)) {
        mheap_resize_large(s, old); /* shrinking always succeeds */
        return false;
    }
    s->guard = os_protect((void *)(s->base + (npages << GM_PAGE_SHIFT)), GM_PAGE_SIZE, false);
    return true;
}

/* Growing a big object that cannot grow in place moves its pages into the new span
 * (os_move_pages, mremap) instead of copying them: no second resident copy and no memcpy,
 * as glibc grows its mmapped chunks. Each move splits the arena's mapping (about two
 * more VMAs), so only objects of 1 MiB and more move, and at most REMAP_BUDGET times per
 * process: past it, or when the kernel refuses, realloc copies as before. */
#define REMAP_MIN ((size_t)1 << 20)
#define REMAP_BUDGET 4096
static atomic_uint remap_count;

/* The tail of gm_realloc for a large object of old usable bytes, at least REMAP_MIN, growing
 * to size > old. A guarded one moves the same way: only its usable pages move, its guard
 * page stays behind as the freed span's marker, and the new span has a guard of its own
 * (secure build, bench/realloc: 1.35x the default build when these copied). NULL with
 * errno ENOMEM when no new span is had. */
static GM_NOINLINE void *realloc_move_large(mspan *s, void *ptr, size_t size, size_t old) {
    void *q = alloc_large(size, 1, false);
    if (q == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    if (atomic_fetch_add_explicit(&remap_count, 1, memory_order_relaxed) < REMAP_BUDGET &&
        os_move_pages(q, ptr, old)) {
        free_large(s, false, true);
    } else {
        memcpy(q, ptr, old);
        free_large_moved(s);
    }
    return q;
}

GM_NOINLINE void *gm_malloc_slow(size_t size, bool zero) {
    if (gm_unlikely(!gm_ensure_init())) goto oom;
    void *p;
    if (size <= GM_MAX_SMALL_SIZE) {
        p = alloc_small(sizeclass_of(size));
        if (p != NULL && zero) memset(p, 0, size);
    } else {
        if (size > GM_MAX_REQUEST) goto oom;
        p = alloc_large(size, 1, zero);
    }
    if (p != NULL) return p;
oom:
    errno = ENOMEM;
    return NULL;
}

/* ---- free ---- */

static void free_small(mspan *s, void *ptr) {
    unsigned cl = s->sizeclass;
    if (gm_unlikely(__atomic_load_n(&s->nsampled, __ATOMIC_RELAXED) != 0)) profile_free(s, ptr);
    bool locked;
    mcache *c = get_cache(&locked);
    gm_freelist *fl = &c->list[cl];
    bool slow_lists = secure_slow_lists();
    void **o = ptr;
    if (fl->nfree == 0 && c->alloc[cl] == NULL) {
        /* The thread's first free of the class, before it carved any: the object is
         * another thread's (a handed-over argument; Hoard's cache-scratch). Pushed, it
         * would be the thread's next malloc of the class, again and again, sharing a cache
         * line with the other thread's objects for as long as it runs (cache-scratch-8t:
         * 2.2x jemalloc). It goes back to its span instead, counted as a free of this
         * list. One object per class and thread at most: after it, frees push. */
        gm_count_free(fl);
        if (!slow_lists) fl->cap++; /* the list's length (nfree - nmalloc - cap) stays */
        o[0] = NULL;
        o[1] = (void *)(uintptr_t)gm_free_mark(ptr);
        mcentral_free_list(cl, o);
    } else if (gm_unlikely(slow_lists)) {
        secure_free(c, cl, ptr);
    } else {
        if (freelist_len_minus_cap(fl) >= 0) mcache_flush(c, cl);
        o[0] = freelist_encode(o, fl->head);
        o[1] = (void *)(uintptr_t)gm_free_mark(ptr);
        fl->head = o;
        gm_count_free(fl);
    }
    if (locked) mcache_unlock_fallback();
}

GM_NOINLINE void gm_free_slow(void *ptr) {
    mspan *s = check_live(ptr, "free()", FREE_INVALID, FREE_DOUBLE);
    if (s == NULL) return;
    if (s->sizeclass == 0) free_large(s, true, false);
    else free_small(s, ptr);
}

/* ---- public entry points ---- */

void *gm_malloc(size_t size) { return gm_malloc_inline(size); }

void gm_free(void *ptr) { gm_free_inline(ptr); }

void gm_free_sized(void *ptr, size_t size) {
    (void)size; /* a hint only: glibc does not check it, and neither do we by default */
    gm_free_inline(ptr);
}

void gm_free_aligned_sized(void *ptr, size_t alignment, size_t size) {
    (void)alignment;
    (void)size;
    gm_free_inline(ptr);
}

void *gm_calloc(size_t count, size_t size) {
    size_t total;
    if (gm_unlikely(__builtin_mul_overflow(count, size, &total))) {
        errno = ENOMEM;
        return NULL;
    }
    if (total > GM_MAX_SMALL_SIZE) return gm_malloc_slow(total, true);
    void *p = gm_malloc_inline(total);
    if (p != NULL) memset(p, 0, total);
    return p;
}

size_t gm_usable_size_impl(const void *ptr) {
    if (ptr == NULL) return 0;
    mspan *s = span_of((uintptr_t)ptr);
    if (s == NULL || s->state != MSPAN_INUSE) return 0;
    if (s->sizeclass == 0) return (uintptr_t)ptr == s->base ? large_usable(s) : 0;
    return mspan_is_slot(s, (uintptr_t)ptr) ? s->elemsize : 0;
}

size_t gm_usable_size(const void *ptr) { return gm_usable_size_impl(ptr); }

int gm_owns(const void *ptr) { return arena_of((uintptr_t)ptr) != NULL; }

void *gm_realloc(void *ptr, size_t size) {
    if (ptr == NULL) return gm_malloc_inline(size);
    if (size == 0) { /* glibc: free and return NULL, errno untouched */
        gm_free_inline(ptr);
        return NULL;
    }
    uintptr_t p = (uintptr_t)ptr;
    uint64_t ref = span_ref(p);
    size_t cl = spanref_sizeclass(ref), old;
    mspan *s = NULL;
    if (cl != 0 && class_is_slot(cl, spanref_offset(p, ref)) &&
        (uint64_t)(uintptr_t)((void *const *)ptr)[1] != gm_free_mark(ptr)) {
        /* A live small object, found as check_live would but from the span map entry
         * alone, like free: bench_micro realloc_inplace/64 ran 6.8 ns through check_live
         * and 6.2-6.4 ns this way (a large object's, through check_live_span, 6.4 ->
         * 7.2 ns). Too large a size gets its ENOMEM from the malloc below. */
        old = gm_class_to_size[cl];
        if (size <= old) return ptr; /* glibc keeps the pointer when the block still fits */
        goto move;
    }
    s = check_live_span(ptr, span_of(p), "realloc()", "realloc(): invalid pointer", "realloc(): double free");
    if (s == NULL) {
        errno = EINVAL;
        return NULL;
    }
    if (size > GM_MAX_REQUEST) {
        errno = ENOMEM;
        return NULL;
    }
    if (s->sizeclass == 0) {
        old = large_usable(s);
        size_t npages = (size + GM_PAGE_SIZE - 1) >> GM_PAGE_SHIFT;
        if (s->guard) {
            if (size <= old) return ptr; /* a guarded object keeps its pages when it shrinks */
            if (grow_guarded(s, npages)) return ptr;
            if (old >= REMAP_MIN) return realloc_move_large(s, ptr, size, old);
        } else {
            /* Large objects shrink and grow in place when the neighbouring pages allow. */
            if (npages == s->npages) return ptr;
            if (npages < s->npages || size > GM_MAX_SMALL_SIZE) {
                if (mheap_resize_large(s, npages)) return ptr;
            }
            if (size <= old) return ptr;
            if (old >= REMAP_MIN) return realloc_move_large(s, ptr, size, old);
        }
    } else {
        old = s->elemsize;
        if (size <= old) return ptr; /* glibc keeps the pointer when the block still fits */
    }
move:;
    void *q = gm_malloc_inline(size);
    if (q == NULL) return NULL;
    memcpy(q, ptr, old < size ? old : size);
    if (gm_unlikely(s != NULL && s->sizeclass == 0)) free_large_moved(s);
    else gm_free_inline(ptr);
    return q;
}

void *gm_reallocarray(void *ptr, size_t count, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return gm_realloc(ptr, total);
}

/* Aligned allocation. Every span starts on an 8 KiB page, so a small class whose size is
 * a multiple of the alignment gives aligned slots; anything else becomes a large span
 * placed at the alignment. pre: alignment is a power of two. */
static void *alloc_aligned(size_t alignment, size_t size) {
    if (alignment <= 16) return gm_malloc_inline(size);
    if (size > GM_MAX_REQUEST || alignment > GM_MAX_REQUEST) goto oom;
    if (!gm_ensure_init()) goto oom;
    if (alignment <= GM_PAGE_SIZE && size <= GM_MAX_SMALL_SIZE) {
        for (unsigned cl = sizeclass_of(size); cl < GM_NUM_CLASSES; cl++) {
            if (gm_class_to_size[cl] % alignment == 0) {
                void *p = alloc_small(cl);
                if (p == NULL) goto oom;
                return p;
            }
        }
    }
    size_t align_pages = alignment > GM_PAGE_SIZE ? alignment >> GM_PAGE_SHIFT : 1;
    void *p = alloc_large(size == 0 ? 1 : size, align_pages, false);
    if (p != NULL) return p;
oom:
    errno = ENOMEM;
    return NULL;
}

static bool is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

void *gm_aligned_alloc(size_t alignment, size_t size) {
    /* C17 / glibc >= 2.38: any size; a bad alignment is EINVAL. */
    if (!is_pow2(alignment)) {
        errno = EINVAL;
        return NULL;
    }
    return alloc_aligned(alignment, size);
}

int gm_posix_memalign(void **out, size_t alignment, size_t size) {
    if (alignment % sizeof(void *) != 0 || !is_pow2(alignment / sizeof(void *))) return EINVAL;
    int saved = errno;
    void *p = alloc_aligned(alignment, size);
    if (p == NULL) {
        errno = saved; /* posix_memalign reports through its return value */
        return ENOMEM;
    }
    *out = p;
    return 0;
}

void *gm_memalign(size_t alignment, size_t size) {
    /* glibc: a non-power-of-two alignment is rounded up; a huge one is EINVAL. */
    if (alignment > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (!is_pow2(alignment)) {
        size_t a = 1;
        while (a < alignment) a <<= 1;
        alignment = a;
    }
    return alloc_aligned(alignment, size);
}

void *gm_valloc(size_t size) { return gm_memalign((size_t)getpagesize(), size); }

void *gm_pvalloc(size_t size) {
    size_t page = (size_t)getpagesize();
    size_t rounded;
    if (__builtin_add_overflow(size, page - 1, &rounded)) {
        errno = ENOMEM;
        return NULL;
    }
    rounded &= ~(page - 1);
    return gm_memalign(page, rounded == 0 ? page : rounded);
}

int gm_is_redirected(void) {
    /* strdup lives in libc and calls malloc through the global symbol table: if that
     * lands here, gomalloc is the process's malloc. (If not, the copy is leaked: it came
     * from a different allocator and this library cannot know how to free it.) */
    static int cached = -1;
    if (cached >= 0) return cached;
    char *(*volatile dup)(const char *) = strdup;
    char *s = dup("g");
    if (s == NULL) return 0;
    cached = gm_owns(s);
    if (cached) gm_free(s);
    return cached;
}
