/* mcache.c: the per-thread cache (Go's mcache, one per thread instead of per P): a span
 * per class to carve from, per class a list of objects this thread freed, and a few freed
 * large spans by page count. Only the owning thread fills a cache, so nothing here needs a
 * lock; the atomics are where a cache is born, dies, is summed for stats, or has its large
 * spans taken by another thread (a stealer). Threads without a usable cache
 * (while theirs is being built, or after their exit destructor ran) share one fallback
 * cache behind a lock, so malloc and free keep working in any thread state. */
#include "internal.h"

#include <pthread.h>

mcache mcache_new_marker, mcache_fallback_marker; /* empty lists, zero caps */
__thread mcache *gm_tls_mcache __attribute__((tls_model("initial-exec"))) = &mcache_new_marker;

static mcache gm_fallback_cache;
static gm_lock_t gm_fallback_lock = GM_LOCK_INIT;
static bool gm_fallback_ready;

/* Every live cache, for stats; plus the counters of caches whose threads exited. */
static gm_lock_t gm_mcache_list_lock = GM_LOCK_INIT;
static mcache *gm_all_mcaches;
static uint64_t gm_retired_nmalloc[GM_NUM_CLASSES], gm_retired_nfree[GM_NUM_CLASSES];
static uint64_t gm_retired_large_alloc, gm_retired_large_free;
/* Bytes parked in all threads' large caches together, against GOMALLOC=largecache_total:
 * a program's thread count should not multiply the memory its caches pin (mstress-8t
 * peak RSS, median of 11: 72.8 MiB, 70.0 with a 4 MiB total, 65.6 with no cache; CPU
 * time unchanged). Updated where a span enters or leaves a slot, an atomic add on one
 * shared line per large park or take; the admission test and the add are not one step,
 * so parallel parks may pass it by a span each. A fork child recounts it. */
static _Atomic uint64_t large_parked_total;

static void large_parked_sub(uint64_t bytes) {
    if (bytes) atomic_fetch_sub_explicit(&large_parked_total, bytes, memory_order_relaxed);
}

uint64_t mcache_large_parked_total(void) { return atomic_load_explicit(&large_parked_total, memory_order_relaxed); }

extern pthread_key_t gm_mcache_key;
void (*gm_stats_between_passes_hook)(void);

/* How many freed objects a thread may keep per class before flushing half: up to 128 KiB
 * of objects, at least 4 and at most 1024. Enough that a burst of 1000 frees followed by
 * 1000 mallocs never touches mcentral (bench: batch1000), small enough that thousands of
 * threads don't hoard memory; a thread's exit returns all of it. */
static uint32_t list_max(unsigned cl) {
    uint32_t n = (uint32_t)((128u << 10) / gm_class_to_size[cl]);
    return n < 4 ? 4 : n > 1024 ? 1024 : n;
}
/* A class's limit moves between list_min and list_max (tcmalloc's slow start, in spirit):
 * it grows by one refill batch each time a malloc finds the list empty, so a thread that
 * reuses what it frees keeps as much as it needs, and halves after LIST_OVERFLOWS flushes
 * with no refill between them, so a thread that only frees a class (a consumer of another
 * thread's objects) soon keeps two batches, not 128 KiB. bench/prodcons, 8 producers and
 * 8 consumers: peak RSS 29.6 -> 12.1 MiB, and faster (fewer objects go cold in lists). */
static uint32_t list_step(unsigned cl) {
    uint32_t half = list_max(cl) / 2;
    return half < 32 ? half : 32;
}
static uint32_t list_min(unsigned cl) { return 2 * list_step(cl); }
#define LIST_OVERFLOWS 3

/* Moves class cl's limit by d objects (either sign); cap moves with it, so the length
 * nfree - nmalloc + limit - cap is unchanged. */
static void list_resize(mcache *c, unsigned cl, int32_t d) {
    c->limit[cl] = (uint32_t)((int32_t)c->limit[cl] + d);
    c->list[cl].cap += d;
}

/* A thread's first refill of a class carves RAMP_FIRST_BYTES of objects, and each later one
 * twice the bytes of the one before, until the batch reaches list_step. Carving writes the
 * list link into every object it takes, so a full first batch (32 objects of up to 1 KiB)
 * made a thread that mallocs one object of a class own up to three pages of it at once:
 * bench/thread_rss 200 8 (one live object in each of 8 classes per thread) cost 65.4 KiB
 * of RSS per thread (glibc 14.2, tcmalloc 16.9); 46.3 with this ramp and the cold part
 * (internal.h). Secure mode keeps whole batches, the unit its shuffle draws from. */
#define RAMP_FIRST_BYTES 1024u

unsigned mcache_list_underflow(mcache *c, unsigned cl) {
    c->list_overflows[cl] = 0;
    uint32_t max = list_max(cl), step = list_step(cl);
    if (c->limit[cl] < max) list_resize(c, cl, (int32_t)(max - c->limit[cl] < step ? max - c->limit[cl] : step));
    if (gm_unlikely(c->list_ramp[cl] != UINT8_MAX) && !gm_opt.secure) {
        uint32_t n = (RAMP_FIRST_BYTES << c->list_ramp[cl]) / gm_class_to_size[cl];
        if (n < step) {
            c->list_ramp[cl]++;
            return n > 0 ? n : 1;
        }
        c->list_ramp[cl] = UINT8_MAX; /* ramped: full batches from now on */
    }
    return step;
}

uint32_t mcache_list_overflow(mcache *c, unsigned cl) {
    if (++c->list_overflows[cl] >= LIST_OVERFLOWS) {
        c->list_overflows[cl] = 0;
        uint32_t min = list_min(cl), half = c->limit[cl] / 2;
        if (c->limit[cl] > min) list_resize(c, cl, -(int32_t)(c->limit[cl] - (half > min ? half : min)));
    }
    return c->limit[cl] / 2; /* >= 2: limits are >= 4 */
}

/* pre: c is all zero (mheap's pool and static storage give it so): clearing it here would
 * fault in the cold part, which most threads never use. */
void mcache_init_struct(mcache *c) {
    for (unsigned cl = 1; cl < GM_NUM_CLASSES; cl++) c->list[cl].cap = c->limit[cl] = list_min(cl);
    /* Class 0's list only counts large-cache hits and parks; it must never have room, since
     * the free fast path files a span holding a heap-profile sample under class 0 so that
     * its frees reach the slow path (SPANREF's free class). */
    c->list[0].cap = INT64_MIN / 4;
    c->rng = gm_cookie ^ (uint64_t)(uintptr_t)c ^ 0x9E3779B97F4A7C15ull;
    profile_reset_countdown(c);
    if (gm_opt.secure) secure_init_cache(c);
}

/* Turns the thread list starting at head into the plain NULL-terminated list that
 * mcentral_free_list takes. Nothing to do in a default build, whose links are plain; a
 * secure build decodes (and so checks) every link on the way. */
static void *plain_list(void *head, unsigned cl) {
#if GM_SECURE_BUILD
    for (void **o = head; o != NULL;) {
        void **next = freelist_next(o, cl);
        o[0] = next;
        o = next;
    }
#else
    (void)cl;
#endif
    return head;
}

/* Objects on the class's list right now (exact: see gm_freelist). */
static uint32_t list_len(const mcache *c, unsigned cl) {
    return (uint32_t)(freelist_len_minus_cap(&c->list[cl]) + c->limit[cl]);
}

static void list_add(mcache *c) {
    gm_lock(&gm_mcache_list_lock);
    c->all_prev = NULL;
    c->all_next = gm_all_mcaches;
    if (gm_all_mcaches) gm_all_mcaches->all_prev = c;
    gm_all_mcaches = c;
    gm_unlock(&gm_mcache_list_lock);
}

static void list_retire(mcache *c) {
    gm_lock(&gm_mcache_list_lock);
    if (c->all_prev) c->all_prev->all_next = c->all_next;
    else gm_all_mcaches = c->all_next;
    if (c->all_next) c->all_next->all_prev = c->all_prev;
    for (unsigned cl = 0; cl < GM_NUM_CLASSES; cl++) {
        gm_retired_nmalloc[cl] += c->list[cl].nmalloc;
        gm_retired_nfree[cl] += c->list[cl].nfree;
    }
    gm_retired_large_alloc += c->large_alloc_bytes;
    gm_retired_large_free += c->large_free_bytes;
    gm_unlock(&gm_mcache_list_lock);
}

unsigned mcache_carve(mcache *c, unsigned cl, void **out, unsigned max) {
    for (;;) {
        mspan *s = c->alloc[cl];
        if (s != NULL) {
            unsigned n = 0;
            while (n < max) {
                void *o = mspan_next_free(s);
                if (o == NULL) break;
                out[n++] = o;
            }
            if (n > 0) return n;
            c->alloc[cl] = NULL;
            mcentral_uncache_span(s);
        }
        s = mcentral_cache_span(cl);
        if (s == NULL) return 0;
        c->alloc[cl] = s;
    }
}

void *mcache_refill(mcache *c, unsigned cl) {
    gm_freelist *fl = &c->list[cl];
    /* Move a batch from the span to the list so the next mallocs hit the inline path.
     * The batch enters the list without a free, so cap shrinks by its size; the object
     * returned will count as a malloc without a pop, so cap shrinks by one more. */
    unsigned batch = mcache_list_underflow(c, cl);
    void **got[32];
    unsigned n = mcache_carve(c, cl, (void **)got, batch);
    if (n == 0) return NULL;
    /* Only a -Dsecure=true build gets here in secure mode (a default build runs it on
     * secure.c's lists), so this is where its fresh objects are shuffled. */
    if (gm_opt.secure) secure_shuffle(c, (void **)got, n);
    for (unsigned i = 1; i < n; i++) {
        got[i][0] = freelist_encode(got[i], fl->head);
        got[i][1] = (void *)(uintptr_t)gm_free_mark(got[i]);
        fl->head = got[i];
    }
    fl->cap -= n; /* the caller counts the malloc (count_small in malloc.c) */
    got[0][1] = NULL;
    return got[0];
}

/* Called when a free finds the list full: returns the most recently freed half to mcentral
 * in one batch and keeps the older half. Both walks (this one to the cut, mcentral's over
 * the batch) chase links through the objects, and only the newest are still in cache:
 * flushing the older half instead missed on nearly every link once 16 threads shared 2
 * cores (prodcons: mcentral_free_list 18% and mcache_flush 13% of cycles, nearly all on
 * the link load; flushing the newest half took prodcons 2/8/16 threads from 2.0/2.3/2.3 s
 * to 1.5/1.3/1.5 s, churn and the micro benchmarks unchanged). */
void mcache_flush(mcache *c, unsigned cl) {
    gm_freelist *fl = &c->list[cl];
    uint32_t keep = mcache_list_overflow(c, cl);
    uint32_t len = list_len(c, cl);
    if (len <= keep) return;
    /* One walk: each link given away is decoded (and, in a secure build, checked) once
     * and stored back plain for mcentral_free_list. Decoding it again in plain_list cost
     * a secure build ~40 instructions per flushed object (prodcons ~5% of CPU). */
    void **give = fl->head, **cut = give;
    for (uint32_t i = 1; i < len - keep; i++) {
        void **next = freelist_next(cut, cl);
#if GM_SECURE_BUILD
        cut[0] = next;
#endif
        cut = next;
    }
    fl->head = freelist_next(cut, cl);
    cut[0] = NULL;
    fl->cap += len - keep;
    mcentral_free_list(cl, give);
}

/* Takes every span out of one cache's slots onto *chain (linked through next, unused by a
 * large span). Returns their bytes. pre: c is the caller's own cache, or the list lock is
 * held. */
static size_t large_take_all(mcache *c, mspan **chain) {
    size_t bytes = 0;
    /* Never parked a span (every put counts in large_ops first): the slots are all empty,
     * and reading them would fault in the cache's cold page for nothing. A put racing with
     * a stealer's check is one the stealer would have missed anyway. */
    if (__atomic_load_n(&c->large_ops, __ATOMIC_RELAXED) == 0) return 0;
    for (unsigned i = 0; i <= GM_LARGE_CACHE_MAX_PAGES - GM_LARGE_CACHE_MIN_PAGES; i++) {
        for (unsigned w = 0; w < GM_LARGE_CACHE_WAYS; w++) {
            if (atomic_load_explicit(&c->large[i][w], memory_order_relaxed) == NULL) continue;
            mspan *s = atomic_exchange_explicit(&c->large[i][w], NULL, memory_order_acquire);
            if (s == NULL) continue;
            bytes += (size_t)s->npages << GM_PAGE_SHIFT;
            s->next = *chain;
            *chain = s;
        }
    }
    large_parked_sub(bytes);
    return bytes;
}

/* Frees taken spans to the heap in one lock hold. mprotect guard pages (secure mode on
 * kernels without guard regions) are lifted first, outside the lock: each is a syscall,
 * and a TLB shootdown once there are threads. pre: no allocator lock held. */
static void large_free_chain(mspan *chain) {
    if (chain == NULL) return;
    for (mspan *s = chain; s != NULL; s = s->next) mheap_drop_guard(s);
    gm_lock(&gm_heap_lock);
    while (chain != NULL) {
        mspan *s = chain;
        chain = s->next; /* before the free hands the struct back to its pool */
        mheap_free_span_locked(s);
    }
    gm_unlock(&gm_heap_lock);
}

/* Empties the caller's own cache into the heap. */
static void large_drain_own(mcache *c) {
    mspan *chain = NULL;
    c->large_bytes -= large_take_all(c, &chain);
    large_free_chain(chain);
}

static void large_note_op(mcache *c) { __atomic_store_n(&c->large_ops, c->large_ops + 1, __ATOMIC_RELAXED); }

/* Admission: a freed span is parked only if a malloc of its page count missed since the
 * thread's last LARGE_MISSES_BEFORE_DRAIN misses in a row (its bit in large_want), and such
 * a run of misses hands the parked spans back. Parking every free was measured: on
 * bench/large (random 64 KiB..32 MiB) 7 hits in 1512 mallocs, and the parked spans pinned
 * holes first fit could not merge: one more arena, 15% more page faults, +25% time;
 * bench/realloc: no hit at all. A thread that repeats sizes hits from the second round. */
#define LARGE_MISSES_BEFORE_DRAIN 8

/* pre: c is the caller's own cache. Called on a miss, before the heap is asked. */
static void large_miss(mcache *c, size_t npages) {
    if (++c->large_misses >= LARGE_MISSES_BEFORE_DRAIN) {
        c->large_misses = 0;
        memset(c->large_want, 0, sizeof c->large_want);
        if (c->large_bytes != 0) large_drain_own(c);
    }
    if (npages >= GM_LARGE_CACHE_MIN_PAGES && npages <= GM_LARGE_CACHE_MAX_PAGES) {
        size_t b = npages - GM_LARGE_CACHE_MIN_PAGES;
        c->large_want[b / 64] |= (uint64_t)1 << (b % 64);
    }
}

mspan *mcache_alloc_large(mcache *c, size_t npages) {
    if (gm_unlikely(atomic_load_explicit(&gm_stats_readers, memory_order_relaxed) != 0)) return NULL;
    if (npages < GM_LARGE_CACHE_MIN_PAGES || npages > GM_LARGE_CACHE_MAX_PAGES) {
        large_miss(c, npages);
        return NULL;
    }
    _Atomic(mspan *) *way = c->large[npages - GM_LARGE_CACHE_MIN_PAGES];
    for (unsigned w = 0; w < GM_LARGE_CACHE_WAYS; w++) {
        /* A plain look first: an empty way costs no locked instruction. */
        if (atomic_load_explicit(&way[w], memory_order_relaxed) == NULL) continue;
        mspan *s = atomic_exchange_explicit(&way[w], NULL, memory_order_acquire);
        if (s == NULL) continue; /* a stealer was first */
        uint64_t bytes = (uint64_t)npages << GM_PAGE_SHIFT;
        s->state = MSPAN_INUSE;
        c->large_bytes -= bytes;
        large_parked_sub(bytes);
        __atomic_store_n(&c->large_alloc_bytes, c->large_alloc_bytes + bytes, __ATOMIC_RELAXED);
        gm_count_malloc(&c->list[0]);
        large_note_op(c);
        c->large_misses = 0;
        return s;
    }
    large_miss(c, npages);
    return NULL;
}

mspan *mcache_alloc_large_heap(mcache *c, size_t npages, size_t align_pages) {
    if (c->large_bytes == 0) return mheap_alloc_span(npages, 0, align_pages);
    mspan *s = mheap_alloc_span_nogrow(npages, 0, align_pages);
    if (s != NULL) return s;
    large_drain_own(c);
    return mheap_alloc_span(npages, 0, align_pages);
}

/* Over budget: makes room for a span of npages by handing parked spans of more pages back
 * to the heap, largest first. A miss costs about the same whatever the size (the heap lock;
 * in secure mode two mprotect calls), so a byte budget serves more hits as small spans:
 * mstress-2t (1% of blocks 32..256 KiB) hit 46% -> 57% of its large mallocs, and secure
 * mode's mprotect calls fell by a quarter. Returns true when the npages span now fits.
 * pre: c is the caller's own cache, no allocator lock held. */
static bool large_evict_larger(mcache *c, size_t npages, uint64_t bytes, uint64_t budget) {
    mspan *chain = NULL;
    for (size_t n = GM_LARGE_CACHE_MAX_PAGES; n > npages && c->large_bytes + bytes > budget; n--) {
        _Atomic(mspan *) *way = c->large[n - GM_LARGE_CACHE_MIN_PAGES];
        for (unsigned w = 0; w < GM_LARGE_CACHE_WAYS && c->large_bytes + bytes > budget; w++) {
            if (atomic_load_explicit(&way[w], memory_order_relaxed) == NULL) continue;
            mspan *s = atomic_exchange_explicit(&way[w], NULL, memory_order_acquire);
            if (s == NULL) continue; /* a stealer was first */
            c->large_bytes -= (uint64_t)n << GM_PAGE_SHIFT;
            large_parked_sub((uint64_t)n << GM_PAGE_SHIFT);
            s->next = chain;
            chain = s;
        }
    }
    large_free_chain(chain);
    return c->large_bytes + bytes <= budget;
}

bool mcache_free_large(mcache *c, mspan *s) {
    size_t npages = s->npages;
    if (npages < GM_LARGE_CACHE_MIN_PAGES || npages > GM_LARGE_CACHE_MAX_PAGES) return false;
    size_t b = npages - GM_LARGE_CACHE_MIN_PAGES;
    if (!(c->large_want[b / 64] >> (b % 64) & 1)) return false; /* no recent demand */
    if (gm_unlikely(atomic_load_explicit(&gm_stats_readers, memory_order_relaxed) != 0)) return false;
    /* Only the owner fills a way and a stealer only empties one, so an empty way seen here
     * stays empty until the store: no exchange needed. Found before any eviction, which
     * would be for nothing with the ways full. */
    _Atomic(mspan *) *way = c->large[b];
    unsigned w = 0;
    while (w < GM_LARGE_CACHE_WAYS && atomic_load_explicit(&way[w], memory_order_relaxed) != NULL) w++;
    if (w == GM_LARGE_CACHE_WAYS) return false;
    uint64_t bytes = (uint64_t)npages << GM_PAGE_SHIFT, budget = (uint64_t)gm_opt.largecache;
    /* The process-wide budget first, so a refusal never follows a wasted eviction. */
    if (atomic_load_explicit(&large_parked_total, memory_order_relaxed) + bytes > (uint64_t)gm_opt.largecache_total)
        return false; /* the heap takes it */
    if (c->large_bytes + bytes > budget) {
        /* Only now look at what stealers took: the common case reads no shared word. */
        c->large_bytes -= atomic_exchange_explicit(&c->large_stolen, 0, memory_order_relaxed);
        if (c->large_bytes + bytes > budget && !large_evict_larger(c, npages, bytes, budget)) return false;
    }
    atomic_fetch_add_explicit(&large_parked_total, bytes, memory_order_relaxed);
    s->state = MSPAN_CACHED; /* check_live reports a second free as a double free */
    s->needzero = 1;
    c->large_bytes += bytes;
    /* Counted here, once: a stealer's heap free skips CACHED spans. Bytes before the count,
     * so a reader that sees the count (acquire) sees the bytes too. */
    __atomic_store_n(&c->large_free_bytes, c->large_free_bytes + bytes, __ATOMIC_RELEASE);
    gm_count_free(&c->list[0]);
    large_note_op(c);
    atomic_store_explicit(&way[w], s, memory_order_release);
    return true;
}

size_t mcache_steal_large(bool idle_only) {
    size_t total = 0;
    mspan *chain = NULL;
    /* The list lock alone while spans are taken (a taken span is the stealer's), the heap
     * lock alone while they are freed: the two are never nested here. */
    gm_lock(&gm_mcache_list_lock);
    for (mcache *c = gm_all_mcaches; c != NULL; c = c->all_next) {
        uint64_t ops = __atomic_load_n(&c->large_ops, __ATOMIC_RELAXED);
        bool busy = ops != c->large_seen;
        c->large_seen = ops;
        if (idle_only && busy) continue; /* used since the last pass: keep its spans */
        size_t bytes = large_take_all(c, &chain);
        if (bytes) atomic_fetch_add_explicit(&c->large_stolen, bytes, memory_order_relaxed);
        total += bytes;
    }
    gm_unlock(&gm_mcache_list_lock);
    large_free_chain(chain);
    if (total) scavenger_kick();
    return total;
}

void mcache_release_all(mcache *c) {
    if (secure_slow_lists()) secure_release_all(c);
    large_drain_own(c);
    for (unsigned cl = 1; cl < GM_NUM_CLASSES; cl++) {
        gm_freelist *fl = &c->list[cl];
        if (fl->head != NULL) {
            void *list = plain_list(fl->head, cl);
            fl->cap += list_len(c, cl);
            fl->head = NULL;
            mcentral_free_list(cl, list);
        }
        if (c->alloc[cl] != NULL) {
            mspan *s = c->alloc[cl];
            c->alloc[cl] = NULL;
            mcentral_uncache_span(s);
        }
    }
}

static mcache *fallback_acquire(bool *locked) {
    gm_lock(&gm_fallback_lock);
    if (!gm_fallback_ready) {
        mcache_init_struct(&gm_fallback_cache);
        list_add(&gm_fallback_cache);
        gm_fallback_ready = true;
    }
    *locked = true;
    return &gm_fallback_cache;
}

void mcache_unlock_fallback(void) { gm_unlock(&gm_fallback_lock); }

mcache *mcache_get_slow(bool *locked) {
    *locked = false;
    mcache *c = gm_tls_mcache;
    if (c == &mcache_fallback_marker) return fallback_acquire(locked);
    if (c != &mcache_new_marker) return c;
    /* First call on this thread. While the cache is built, any re-entry (from
     * pthread_setspecific, which may calloc) goes to the fallback cache. */
    gm_tls_mcache = &mcache_fallback_marker;
    c = mheap_alloc_mcache_struct();
    if (c == NULL) return fallback_acquire(locked);
    mcache_init_struct(c);
    list_add(c);
    pthread_setspecific(gm_mcache_key, c);
    gm_tls_mcache = c;
    return c;
}

/* pthread key destructor: returns everything the thread cached. Later calls on this
 * thread (other destructors, glibc's TLS teardown) use the fallback cache. */
void mcache_thread_exit(void *arg) {
    mcache *c = arg;
    gm_tls_mcache = &mcache_fallback_marker;
    if (c == NULL || c == &gm_fallback_cache || c == &mcache_fallback_marker || c == &mcache_new_marker) return;
    mcache_release_all(c);
    list_retire(c);
    mheap_free_mcache_struct(c);
}

void mcache_sum_counters(uint64_t nmalloc[GM_NUM_CLASSES], uint64_t nfree[GM_NUM_CLASSES],
                         uint64_t *large_alloc_bytes, uint64_t *large_free_bytes) {
    gm_lock(&gm_mcache_list_lock);
    for (unsigned cl = 0; cl < GM_NUM_CLASSES; cl++) {
        nmalloc[cl] = gm_retired_nmalloc[cl];
        nfree[cl] = gm_retired_nfree[cl];
    }
    *large_alloc_bytes = gm_retired_large_alloc;
    *large_free_bytes = gm_retired_large_free;
    /* Mallocs before frees. An object counted live was allocated before the first pass
     * read its thread and not freed when the second pass read the freeing thread, so it
     * was live at the moment between the passes: heap_alloc never exceeds what was live,
     * however many times threads free and reuse objects meanwhile. (Frees first, as this
     * once was, counted an object freed and reallocated during the read once per cycle,
     * and heap_alloc could pass heap_inuse.) The price: a free whose malloc came after the
     * first pass may be seen; stats.c clamps each class's frees to its mallocs. */
    for (mcache *c = gm_all_mcaches; c != NULL; c = c->all_next) {
        for (unsigned cl = 0; cl < GM_NUM_CLASSES; cl++) nmalloc[cl] += __atomic_load_n(&c->list[cl].nmalloc, __ATOMIC_ACQUIRE);
        *large_alloc_bytes += __atomic_load_n(&c->large_alloc_bytes, __ATOMIC_ACQUIRE);
    }
    if (gm_stats_between_passes_hook != NULL) gm_stats_between_passes_hook();
    for (mcache *c = gm_all_mcaches; c != NULL; c = c->all_next) {
        for (unsigned cl = 0; cl < GM_NUM_CLASSES; cl++) nfree[cl] += __atomic_load_n(&c->list[cl].nfree, __ATOMIC_ACQUIRE);
        *large_free_bytes += __atomic_load_n(&c->large_free_bytes, __ATOMIC_ACQUIRE);
    }
    gm_unlock(&gm_mcache_list_lock);
}

void mcache_lock_fallback(void) { gm_lock(&gm_fallback_lock); }
void mcache_lock_list(void) { gm_lock(&gm_mcache_list_lock); }
void mcache_unlock_list(void) { gm_unlock(&gm_mcache_list_lock); }

/* In the fork child only the forking thread exists. Other threads' caches keep their
 * objects (leaked, as in jemalloc: their lists may have been mid-update at fork time)
 * and stay on the list so the counters remain right. */
void mcache_fork_child(void) {
    gm_lock_reset(&gm_mcache_list_lock);
    gm_lock_reset(&gm_fallback_lock);
    /* A thread cut off by the fork between a slot change and its add or subtract left the
     * total off by that span for good; the child is single-threaded, so recount. */
    uint64_t total = 0;
    for (mcache *c = gm_all_mcaches; c != NULL; c = c->all_next) {
        if (__atomic_load_n(&c->large_ops, __ATOMIC_RELAXED) == 0) continue; /* never parked */
        for (unsigned i = 0; i <= GM_LARGE_CACHE_MAX_PAGES - GM_LARGE_CACHE_MIN_PAGES; i++)
            for (unsigned w = 0; w < GM_LARGE_CACHE_WAYS; w++) {
                mspan *s = atomic_load_explicit(&c->large[i][w], memory_order_relaxed);
                if (s != NULL) total += (uint64_t)s->npages << GM_PAGE_SHIFT;
            }
    }
    atomic_store_explicit(&large_parked_total, total, memory_order_relaxed);
}
