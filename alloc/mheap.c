/* mheap.c: the page heap. Owns the 64 MiB arenas (reserved lazily, MAP_NORESERVE, growing
 * upward from a fixed hint like Go's arena hints), the arena map that turns any pointer
 * into its span in O(1), span allocation and release for mcentral and large objects, and
 * the fixed-size pools for span and mcache structs (Go's fixalloc). One lock, the heap
 * lock, guards all of it; it is a leaf: nothing here takes another allocator lock. */
#include "internal.h"

gm_lock_t gm_heap_lock = GM_LOCK_INIT;
heap_arena *gm_arena_map[GM_ARENA_L2_ENTRIES];

/* Far from the executable (0x55..), brk, the mmap area (0x7f..) and Go's own heap hints
 * (0xc0_0000_0000), so a cgo program can run both allocators side by side. */
#define GM_ARENA_HINT ((uintptr_t)0x200000000000ull)
#define GM_POOL_CHUNK ((size_t)64 << 10)
#define GM_OS_PAGE ((size_t)4096) /* the smallest; a larger page only wastes less */
_Static_assert(MCACHE_COLD <= GM_OS_PAGE, "mcache: the hot part must fit one page");
_Static_assert(GM_POOL_CHUNK % ((sizeof(mcache) + GM_OS_PAGE - 1) & ~(GM_OS_PAGE - 1)) == 0,
               "mcache: chunks hold whole caches");

/* A free list of fixed-size structs carved from 64 KiB metadata chunks. Structs come out
 * zeroed: fresh chunk memory is (anonymous mmap), so only a reused struct is cleared, its
 * first `hot` bytes in full and the rest word by word where not already zero, so pages of
 * it that were never written are never faulted in (the mcache's cold part). */
typedef struct fixalloc {
    void *free;
    char *chunk;
    size_t left;
    size_t size, hot;
    uint64_t inuse, sys;
} fixalloc;

static struct {
    uintptr_t next_hint;
    size_t max_grow; /* no single growth beyond RAM + swap (glibc's mmap would refuse it) */
    fixalloc spans, mcaches;
    uint64_t heap_sys, heap_inuse, other_sys, arenas;
    uint64_t large_nmalloc, large_nfree, large_alloc_bytes, large_free_bytes;
} h;

static void *fixalloc_alloc(fixalloc *f) {
    void *p = f->free;
    if (p != NULL) {
        f->free = *(void **)p;
        memset(p, 0, f->hot);
        for (uint64_t *w = (uint64_t *)((char *)p + f->hot), *end = (uint64_t *)((char *)p + f->size); w < end; w++)
            if (*w != 0) *w = 0;
    } else {
        if (f->left < f->size) {
            f->chunk = os_alloc_meta(GM_POOL_CHUNK);
            if (f->chunk == NULL) return NULL;
            f->left = GM_POOL_CHUNK;
            f->sys += GM_POOL_CHUNK;
        }
        p = f->chunk; /* never handed out: still zero */
        f->chunk += f->size;
        f->left -= f->size;
    }
    f->inuse += f->size;
    return p;
}

static void fixalloc_free(fixalloc *f, void *p) {
    *(void **)p = f->free;
    f->free = p;
    f->inuse -= f->size;
}

bool mheap_init(void) {
    h.next_hint = GM_ARENA_HINT;
    h.max_grow = os_physical_memory();
    if (h.max_grow == 0 || h.max_grow > GM_MAX_REQUEST) h.max_grow = GM_MAX_REQUEST;
    /* 32-byte steps from a page-aligned chunk: each span's first 32 bytes (the fields the
     * slow paths read for every object) sit in one cache line. */
    h.spans.size = h.spans.hot = (sizeof(mspan) + 31) & ~(size_t)31;
    /* Whole OS pages per cache, so each starts page-aligned in its chunk and its hot part
     * (one page) is all a thread that only mallocs small objects ever touches: 4 KiB of
     * RSS per thread instead of the whole 6.4 KiB struct spread over two pages. */
    h.mcaches.size = (sizeof(mcache) + GM_OS_PAGE - 1) & ~(size_t)(GM_OS_PAGE - 1);
    h.mcaches.hot = MCACHE_COLD;
    return true;
}

/* Reserves enough 64 MiB arenas for npages, contiguously, and hands them to the page
 * allocator. pre: heap lock held. */
static bool mheap_grow(size_t npages) {
    size_t bytes = ((npages << GM_PAGE_SHIFT) + GM_ARENA_SIZE - 1) & ~(GM_ARENA_SIZE - 1);
    if (bytes == 0 || bytes > h.max_grow + GM_ARENA_SIZE) return false;
    uint8_t *base = os_reserve(bytes, GM_ARENA_SIZE, h.next_hint);
    if (base == NULL) return false;
    /* THP policy (docs/scavenger.md): spans are released in small runs, and khugepaged
     * would refill a sparse 2 MiB range to a whole huge page, so arenas opt out unless
     * GOMALLOC=thp=1. */
    if (!gm_opt.thp) os_nohugepage(base, bytes);
    size_t narenas = bytes / GM_ARENA_SIZE;
    size_t meta = sizeof(heap_arena) + pagealloc_chunks_bytes();
    for (size_t i = 0; i < narenas; i++) {
        heap_arena *ha = os_alloc_meta(meta);
        if (ha == NULL) {
            /* Arenas already registered stay; give back the rest of the reservation. */
            os_unmap(base + i * GM_ARENA_SIZE, bytes - i * GM_ARENA_SIZE);
            return false;
        }
        ha->base = (uintptr_t)base + i * GM_ARENA_SIZE;
        ha->chunks = (palloc_chunk *)(ha + 1);
        if (!pagealloc_add_arena(ha)) {
            os_unmap(base + i * GM_ARENA_SIZE, bytes - i * GM_ARENA_SIZE);
            return false;
        }
        atomic_store_explicit((_Atomic(heap_arena *) *)&gm_arena_map[ha->base >> GM_ARENA_SHIFT], ha,
                              memory_order_release);
        h.other_sys += meta;
        h.heap_sys += GM_ARENA_SIZE;
        h.arenas++;
    }
    h.next_hint = (uintptr_t)base + bytes;
    return true;
}

/* Points the span map at s for its pages: every entry names s, and a small span's entries
 * carry its base and classes (SPANREF, the same for each of its pages); a large or dead
 * span's ref is 0, which sends its frees to the slow path. The struct first: a reader
 * that sees the new ref and goes to the slow path finds the struct that goes with it. */
static void map_pages(uintptr_t base, size_t npages, mspan *s, unsigned freeclass) {
    unsigned sc = s->sizeclass;
    uint64_t ref = sc ? SPANREF(s->base, sc, freeclass) : 0;
    for (size_t i = 0; i < npages; i++) {
        uintptr_t p = base + (i << GM_PAGE_SHIFT);
        spanmap_entry *e = &arena_of(p)->spans[(p >> GM_PAGE_SHIFT) & (GM_PAGES_PER_ARENA - 1)];
        __atomic_store_n(&e->span, s, __ATOMIC_RELAXED);
        __atomic_store_n(&e->ref, ref, __ATOMIC_RELEASE);
    }
}

/* A new span has no sample yet: its free class is its size class. */
static void set_span_map(uintptr_t base, size_t npages, mspan *s) { map_pages(base, npages, s, s->sizeclass); }

void mheap_set_freeclass(mspan *s, unsigned freeclass) {
    if (s->sizeclass != 0) map_pages(s->base, s->npages, s, freeclass); /* large: slow path anyway */
}

long mheap_verify_span_map(void) {
    long n = 0;
    for (size_t a = 0; a < GM_ARENA_L2_ENTRIES; a++) {
        const heap_arena *ha = gm_arena_map[a];
        if (ha == NULL) continue;
        for (size_t pg = 0; pg < GM_PAGES_PER_ARENA; pg++, n++) {
            const mspan *s = __atomic_load_n(&ha->spans[pg].span, __ATOMIC_RELAXED);
            uint64_t want = 0;
            if (s != NULL && s->state == MSPAN_INUSE && s->sizeclass != 0) {
                uintptr_t page = ha->base + (pg << GM_PAGE_SHIFT);
                if (page < s->base || page >= s->base + ((uintptr_t)s->npages << GM_PAGE_SHIFT)) return n;
                want = SPANREF(s->base, s->sizeclass, s->nsampled ? 0 : s->sizeclass);
            }
            if (__atomic_load_n(&ha->spans[pg].ref, __ATOMIC_RELAXED) != want) return n;
        }
    }
    return -1;
}

/* Lifts guard markers freed spans left on [base, base+npages), pages the caller now holds
 * (pagealloc_take_guards), except on the last page when keep_last: returns whether that
 * one stays. A page at a time while there are few (one call over a 32 MiB span walks
 * every page table entry: bench/large, secure, 10% of cycles), else the whole range
 * (lifting a page without a marker is a no-op). It can fail only if the kernel lost the
 * feature the markers were set with, and the pages would fault. pre: no lock held. */
static bool lift_guards(uintptr_t base, size_t npages, const guard_set *g, bool keep_last) {
    bool ok = true;
    size_t n = npages - (g->last && keep_last);
    if (g->n > GUARD_SET_MAX) {
        ok = os_protect((void *)base, n << GM_PAGE_SHIFT, true);
    } else {
        for (unsigned i = 0; i < g->n; i++) ok &= os_protect((void *)g->page[i], GM_PAGE_SIZE, true);
        if (g->last && !keep_last)
            ok &= os_protect((void *)(base + ((npages - 1) << GM_PAGE_SHIFT)), GM_PAGE_SIZE, true);
    }
    if (!ok) gm_fatal("cannot lift the guard pages of a reused span at", (void *)base);
    return g->last && keep_last;
}

static mspan *alloc_span(size_t npages, unsigned sizeclass, size_t align_pages, bool may_grow) {
    /* Secure mode: a large span's last page is its guard (malloc.c alloc_large). */
    bool wants_guard = sizeclass == 0 && gm_opt.secure;
    gm_lock(&gm_heap_lock);
    size_t grown = 0;
    mspan *s = fixalloc_alloc(&h.spans);
    if (s == NULL) goto fail;
    size_t scav = 0;
    uintptr_t base = 0;
    if (wants_guard && align_pages <= 1) base = pagealloc_alloc_on_guard(npages, &scav);
    if (base == 0) base = pagealloc_alloc(npages, align_pages, &scav);
    if (base == 0) {
        if (!may_grow) goto fail_span;
        uint64_t before = h.heap_sys;
        if (!mheap_grow(npages + align_pages)) goto fail_span;
        grown = h.heap_sys - before;
        base = pagealloc_alloc(npages, align_pages, &scav);
        if (base == 0) goto fail_span;
    }
    s->base = base;
    s->npages = (uint32_t)npages;
    /* Released pages read back as zero, unless they were released with MADV_FREE. */
    s->needzero = scav != npages || !gm_opt.madvdontneed;
    if (sizeclass != 0) {
        mspan_init_small(s, sizeclass);
    } else {
        mspan_init_large(s, npages);
        h.large_nmalloc++;
        h.large_alloc_bytes += npages << GM_PAGE_SHIFT;
    }
    s->state = MSPAN_INUSE;
    set_span_map(base, npages, s);
    h.heap_inuse += npages << GM_PAGE_SHIFT;
    scavenger_note_inuse(h.heap_inuse);
    guard_set g;
    pagealloc_take_guards(base, npages, &g);
    gm_unlock(&gm_heap_lock);
    if (gm_unlikely(g.n != 0 || g.last)) s->guard = lift_guards(base, npages, &g, wants_guard);
    scavenger_after_alloc(grown);
    return s;
fail_span:
    fixalloc_free(&h.spans, s);
fail:
    gm_unlock(&gm_heap_lock);
    return NULL;
}

mspan *mheap_alloc_span(size_t npages, unsigned sizeclass, size_t align_pages) {
    return alloc_span(npages, sizeclass, align_pages, true);
}

mspan *mheap_alloc_span_nogrow(size_t npages, unsigned sizeclass, size_t align_pages) {
    return alloc_span(npages, sizeclass, align_pages, false);
}

void mheap_free_span_locked(mspan *s) {
    size_t npages = s->npages;
    /* A CACHED span's free was counted when its thread parked it (mcache_free_large). */
    if (s->sizeclass == 0 && s->state == MSPAN_INUSE) {
        h.large_nfree++;
        h.large_free_bytes += npages << GM_PAGE_SHIFT;
    }
    /* Pages of a dead span point at mspan_dead, so a later free through them is reported
     * as a double free rather than as a wild pointer. */
    set_span_map(s->base, npages, &mspan_dead);
    pagealloc_free(s->base, npages);
    /* Pages whose every OS page went back while the span sat on mcentral's lists
     * (mcentral_release_sparse) are free and released now, like the scavenger's. */
    if (s->released != 0) {
        const unsigned per = 1u << (GM_PAGE_SHIFT - GM_OS_PAGE_SHIFT);
        const uint64_t whole = ((uint64_t)1 << per) - 1;
        for (size_t i = 0; i < npages && i * per < 64; i++)
            if ((s->released >> (i * per) & whole) == whole) pagealloc_set_released(s->base + (i << GM_PAGE_SHIFT), 1);
    }
    /* Its guard stays (mheap_drop_guard): the next span over it lifts or keeps it. */
    if (s->guard) pagealloc_set_guard(s->base + ((uintptr_t)(npages - 1) << GM_PAGE_SHIFT));
    h.heap_inuse -= npages << GM_PAGE_SHIFT;
    s->state = MSPAN_DEAD;
    fixalloc_free(&h.spans, s);
}

void mheap_drop_guard(mspan *s) {
    if (s->guard && !os_guards_persist()) {
        os_protect((void *)(s->base + ((size_t)(s->npages - 1) << GM_PAGE_SHIFT)), GM_PAGE_SIZE, true);
        s->guard = 0;
    }
}

/* pages_gone: the span's memory was moved away (os_move_pages), so its pages go back as
 * released. */
static void free_span(mspan *s, bool pages_gone) {
    uintptr_t base = s->base;
    size_t npages = s->npages;
    mheap_drop_guard(s);
    gm_lock(&gm_heap_lock);
    mheap_free_span_locked(s);
    if (pages_gone) pagealloc_set_released(base, npages);
    gm_unlock(&gm_heap_lock);
    scavenger_kick();
}

void mheap_free_span(mspan *s) { free_span(s, false); }

void mheap_free_span_moved(mspan *s) { free_span(s, true); }

bool mheap_resize_large(mspan *s, size_t npages) {
    bool ok = true;
    guard_set g = {.n = 0, .last = false};
    gm_lock(&gm_heap_lock);
    size_t old = s->npages;
    if (npages < old) {
        uintptr_t tail = s->base + (npages << GM_PAGE_SHIFT);
        set_span_map(tail, old - npages, &mspan_dead);
        pagealloc_free(tail, old - npages);
        h.heap_inuse -= (old - npages) << GM_PAGE_SHIFT;
        h.large_free_bytes += (old - npages) << GM_PAGE_SHIFT;
    } else if (npages > old) {
        size_t scav;
        uintptr_t end = s->base + (old << GM_PAGE_SHIFT);
        ok = pagealloc_alloc_at(end, npages - old, &scav);
        if (ok) pagealloc_take_guards(end, npages - old, &g);
        if (ok) {
            set_span_map(end, npages - old, s);
            h.heap_inuse += (npages - old) << GM_PAGE_SHIFT;
            h.large_alloc_bytes += (npages - old) << GM_PAGE_SHIFT;
        }
    }
    if (ok) {
        s->npages = (uint32_t)npages;
        s->limit = s->base + (npages << GM_PAGE_SHIFT);
    }
    if (ok && npages > old) scavenger_note_inuse(h.heap_inuse);
    gm_unlock(&gm_heap_lock);
    if (npages < old) scavenger_kick();
    /* Growing over old guards (secure mode): the new pages are the caller's alone. */
    if (g.n != 0 || g.last) lift_guards(s->base + (old << GM_PAGE_SHIFT), npages - old, &g, false);
    return ok;
}

void *mheap_alloc_mcache_struct(void) {
    gm_lock(&gm_heap_lock);
    void *p = fixalloc_alloc(&h.mcaches);
    gm_unlock(&gm_heap_lock);
    return p;
}

void mheap_free_mcache_struct(void *p) {
    gm_lock(&gm_heap_lock);
    fixalloc_free(&h.mcaches, p);
    gm_unlock(&gm_heap_lock);
}

void mheap_read_stats_locked(mheap_stats *out) {
    out->heap_sys = h.heap_sys;
    out->heap_inuse = h.heap_inuse;
    out->heap_released = pagealloc_released_bytes();
    out->heap_inuse_released = mcentral_released_bytes();
    out->mspan_inuse = h.spans.inuse;
    out->mspan_sys = h.spans.sys;
    out->mcache_inuse = h.mcaches.inuse;
    out->mcache_sys = h.mcaches.sys;
    /* other_sys: arena metadata, the page allocator's arena index, the heap profile, and the arena map
     * itself (a .bss array the loader maps for us; virtual size, like heap_sys). */
    out->other_sys = h.other_sys + pagealloc_meta_bytes() + sizeof gm_arena_map + profile_sys_bytes();
    out->arenas = h.arenas;
    out->large_nmalloc = h.large_nmalloc;
    out->large_nfree = h.large_nfree;
    out->large_alloc_bytes = h.large_alloc_bytes;
    out->large_free_bytes = h.large_free_bytes;
}

uint64_t mheap_meta_bytes_locked(void) { return h.other_sys + pagealloc_meta_bytes() + profile_sys_bytes(); }
