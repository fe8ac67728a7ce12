/* mspan.c: one span's slot bookkeeping: Go's freeindex + inverted 64-bit allocCache + ctz
 * scheme for allocation, and alloc_bits for frees. Pure functions of the span: callers
 * own the locking (the caching thread for incache spans, the mcentral lock otherwise). */
#include "internal.h"

/* nelems 0 and magic 0 make mspan_is_slot fail on it; the fast paths see class 0 in the
 * entries of its pages (SPANREF) and never accept them either. */
_Alignas(32) mspan mspan_dead = {.state = MSPAN_DEAD, .sizeclass = 0, .nelems = 0};

void mspan_init_small(mspan *s, unsigned sizeclass) {
    s->sizeclass = (uint8_t)sizeclass;
    __atomic_store_n(&s->nsampled, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->sampled_one, 0, __ATOMIC_RELAXED);
    s->elemsize = gm_class_to_size[sizeclass];
    s->divmagic = gm_class_slot[sizeclass].divmagic;
    s->nelems = gm_class_to_nelems[sizeclass];
    s->limit = s->base + (uintptr_t)s->nelems * s->elemsize;
    s->freeindex = 0;
    s->alloc_count = 0;
    s->alloc_cache = 0;
    s->incache = 0;
    s->list = MSPAN_LIST_NONE;
    s->deferred = NULL;
    s->guard = 0;
    s->released = 0;
    memset(s->alloc_bits, 0, sizeof s->alloc_bits);
}

void mspan_init_large(mspan *s, size_t npages) {
    s->sizeclass = 0;
    __atomic_store_n(&s->nsampled, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->sampled_one, 0, __ATOMIC_RELAXED);
    s->elemsize = 0; /* npages * 8 KiB may exceed 32 bits; use npages */
    s->divmagic = 0; /* makes mspan_is_slot false: large frees take the slow path */
    s->nelems = 1;
    s->limit = s->base + (npages << GM_PAGE_SHIFT);
    s->freeindex = 1;
    s->alloc_count = 1;
    s->alloc_cache = 0;
    s->incache = 0;
    s->list = MSPAN_LIST_NONE;
    s->deferred = NULL;
    s->guard = 0;
    s->released = 0;
}

/* Loads alloc_bits starting at slot `from` (a multiple of 64), inverted so ctz finds the
 * first free slot (Go's refillAllocCache). Bits past nelems read as allocated. */
static void refill_alloc_cache(mspan *s, unsigned from) {
    uint64_t w = ~s->alloc_bits[from / 64];
    unsigned left = s->nelems - from;
    if (left < 64) w &= ((uint64_t)1 << left) - 1;
    s->alloc_cache = w;
}

void mspan_cache(mspan *s) {
    s->incache = 1;
    s->freeindex = 0;
    refill_alloc_cache(s, 0);
}

void *mspan_next_free(mspan *s) {
    void *p = mspan_next_free_fast(s);
    if (p != NULL) return p;
    for (;;) {
        unsigned fi = s->freeindex;
        if (fi >= s->nelems) return NULL;
        uint64_t cache = s->alloc_cache;
        if (cache == 0) {
            /* Window exhausted: move to the next 64-slot word. */
            unsigned next = (fi + 63) & ~63u;
            if (next == fi) next = fi + 64;
            if (next >= s->nelems) {
                s->freeindex = s->nelems;
                return NULL;
            }
            s->freeindex = (uint16_t)next;
            refill_alloc_cache(s, next);
            continue;
        }
        unsigned bit = (unsigned)__builtin_ctzll(cache);
        unsigned result = fi + bit;
        if (result >= s->nelems) {
            s->freeindex = s->nelems;
            s->alloc_cache = 0;
            return NULL;
        }
        unsigned nfi = result + 1;
        if ((nfi & 63) == 0) {
            s->freeindex = (uint16_t)nfi;
            if (nfi < s->nelems) refill_alloc_cache(s, nfi);
            else s->alloc_cache = 0;
        } else {
            s->alloc_cache = cache >> (bit + 1);
            s->freeindex = (uint16_t)nfi;
        }
        return (void *)(s->base + (uintptr_t)result * s->elemsize);
    }
}

void mspan_uncache(mspan *s) {
    unsigned fi = s->freeindex;
    unsigned full_words = fi / 64;
    for (unsigned i = 0; i < full_words; i++) s->alloc_bits[i] = ~(uint64_t)0;
    if (fi & 63) s->alloc_bits[full_words] |= ((uint64_t)1 << (fi & 63)) - 1;
    unsigned words = (s->nelems + 63) / 64;
    unsigned n = 0;
    for (unsigned i = 0; i < words; i++) n += (unsigned)__builtin_popcountll(s->alloc_bits[i]);
    s->alloc_count = (uint16_t)n;
    s->incache = 0;
    s->alloc_cache = 0;
}

bool mspan_free_slot(mspan *s, void *obj) {
    size_t idx = mspan_obj_index(s, (uintptr_t)obj);
    uint64_t m = (uint64_t)1 << (idx & 63);
    if ((s->alloc_bits[idx / 64] & m) == 0) return false;
    s->alloc_bits[idx / 64] &= ~m;
    s->alloc_count--;
    return true;
}

/* Marks the pages each allocated slot covers (a slot across a page boundary keeps both);
 * what is left is free. Stops early once every page is taken, which dense spans reach
 * within their first few words. */
uint64_t mspan_free_os_pages(const mspan *s) {
    unsigned n = s->npages << (GM_PAGE_SHIFT - GM_OS_PAGE_SHIFT);
    if (n > 64) return 0; /* no small class has spans this long (test_sizeclasses) */
    uint64_t all = n == 64 ? ~(uint64_t)0 : ((uint64_t)1 << n) - 1, busy = 0;
    unsigned words = (s->nelems + 63u) / 64u;
    for (unsigned w = 0; w < words && busy != all; w++)
        for (uint64_t b = s->alloc_bits[w]; b != 0; b &= b - 1) {
            size_t start = ((size_t)w * 64 + (unsigned)__builtin_ctzll(b)) * s->elemsize;
            unsigned p0 = (unsigned)(start >> GM_OS_PAGE_SHIFT);
            unsigned p1 = (unsigned)((start + s->elemsize - 1) >> GM_OS_PAGE_SHIFT);
            busy |= (p1 - p0 >= 63 ? ~(uint64_t)0 : ((uint64_t)2 << (p1 - p0)) - 1) << p0;
        }
    return all & ~busy;
}
