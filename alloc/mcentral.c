/* mcentral.c: one central free list per size class (Go's mcentral): spans that are not
 * held by any mcache, on a partial list (some slot free), a full list, or a sparse list
 * (partial, with free pages given back to the OS). A spinlock per class guards the lists
 * and the alloc_bits of the spans on them. Work arrives in batches (a span at a time, half
 * a thread's list at a time), so a lock is taken once per batch, never per object. Never
 * holds its lock while calling into mheap or the OS. Also owns the release of free pages
 * inside spans (mcentral_release_sparse), which Go does not have. */
#include "internal.h"

#include <unistd.h>

typedef struct mcentral {
    gm_lock_t lock;
    mspan *partial;
    mspan *full;
    mspan *sparse;
    uint64_t handed; /* spans handed to threads; read without the lock (mcentral_activity) */
} GM_ALIGNED(GM_CACHE_LINE) mcentral;

static mcentral gm_central[GM_NUM_CLASSES];

static mspan **list_head(mcentral *c, uint8_t list) {
    return list == MSPAN_LIST_FULL ? &c->full : list == MSPAN_LIST_SPARSE ? &c->sparse : &c->partial;
}

static atomic_uint_fast64_t released_bytes; /* sum of popcount(released) pages, in bytes */
static bool sparse_ok;                      /* the kernel's page is GM_OS_PAGE_SIZE */

/* The span leaves the lists for a cache or the heap: its released pages stop counting
 * (a cache will fault them back in; the heap learns of them in mheap_free_span_locked). */
static void forget_released(mspan *s) {
    if (s->released != 0)
        atomic_fetch_sub_explicit(&released_bytes, (uint64_t)__builtin_popcountll(s->released) << GM_OS_PAGE_SHIFT,
                                  memory_order_relaxed);
}

static void list_push(mcentral *c, mspan *s, uint8_t list) {
    mspan **head = list_head(c, list);
    s->prev = NULL;
    s->next = *head;
    if (*head) (*head)->prev = s;
    *head = s;
    s->list = list;
}

static void list_remove(mcentral *c, mspan *s) {
    if (s->list == MSPAN_LIST_NONE) return;
    mspan **head = list_head(c, s->list);
    if (s->prev) s->prev->next = s->next;
    else *head = s->next;
    if (s->next) s->next->prev = s->prev;
    s->next = s->prev = NULL;
    s->list = MSPAN_LIST_NONE;
}

void mcentral_init(void) {
    for (unsigned i = 0; i < GM_NUM_CLASSES; i++) gm_lock_reset(&gm_central[i].lock);
    sparse_ok = sysconf(_SC_PAGESIZE) == (long)GM_OS_PAGE_SIZE;
}

/* A span whose pages are all resident first: a sparse one would fault its released pages
 * back in, and left alone it may yet empty and go back to the heap whole. */
mspan *mcentral_cache_span(unsigned sizeclass) {
    mcentral *c = &gm_central[sizeclass];
    gm_lock(&c->lock);
    __atomic_store_n(&c->handed, c->handed + 1, __ATOMIC_RELAXED);
    mspan *s = c->partial != NULL ? c->partial : c->sparse;
    if (s != NULL) {
        list_remove(c, s);
        forget_released(s);
        s->released = 0;
        mspan_cache(s);
        gm_unlock(&c->lock);
        return s;
    }
    gm_unlock(&c->lock);
    s = mheap_alloc_span(gm_class_to_npages[sizeclass], sizeclass, 1);
    if (s != NULL) mspan_cache(s);
    return s;
}

/* Puts an uncached span whose alloc_count changed on the right list.
 * post: returns true when the span is empty and was taken off every list; the caller
 * gives it back to the heap after dropping the lock. */
static bool place(mcentral *c, mspan *s) {
    if (s->alloc_count == 0) {
        list_remove(c, s);
        forget_released(s);
        return true;
    }
    /* A sparse span that gained a free slot goes back to partial: it has something new
     * for mcentral_release_sparse to look at. */
    uint8_t want = s->alloc_count == s->nelems ? MSPAN_LIST_FULL : MSPAN_LIST_PARTIAL;
    if (s->list != want) {
        list_remove(c, s);
        list_push(c, s, want);
    }
    return false;
}

/* Frees the objects that waited on s->deferred while s was held, then places s.
 * Returns place()'s answer. pre: c's lock held, s no longer incache. */
static bool land_deferred(mcentral *c, mspan *s) {
    for (void **o = s->deferred; o != NULL;) {
        void **next = o[0];
        if (!mspan_free_slot(s, o)) gm_fatal("free(): double free", o);
        o = next;
    }
    s->deferred = NULL;
    return place(c, s);
}

void mcentral_uncache_span(mspan *s) {
    mcentral *c = &gm_central[s->sizeclass];
    gm_lock(&c->lock);
    mspan_uncache(s);
    bool empty = land_deferred(c, s);
    gm_unlock(&c->lock);
    if (empty) mheap_free_span(s);
}

/* Starts the loads of o's span struct: its head, and the bitmap word of o's slot (found
 * from the span map entry alone: the struct's base is not in yet). */
static void prefetch_span(const void *o) {
    const spanmap_entry *e = span_entry((uintptr_t)o);
    uint64_t ref = __atomic_load_n(&e->ref, __ATOMIC_RELAXED); /* the profiler rewrites it */
    const mspan *s = __atomic_load_n(&e->span, __ATOMIC_RELAXED);
    size_t idx = (size_t)((spanref_offset((uintptr_t)o, ref) * gm_class_slot[spanref_sizeclass(ref)].divmagic) >> 32);
    __builtin_prefetch(s, 1);
    __builtin_prefetch(&s->alloc_bits[idx / 64], 1);
}

/* How many objects ahead mcentral_free_list starts loading span structs. The fast paths
 * never read span structs (SPANREF), so this walk is where they miss, one dependent miss
 * per object unless started early (bench/frag, ab.py: 0.97 of the time with no lookahead,
 * in two series of 9). */
#define PREFETCH_AHEAD 4

void mcentral_free_list(unsigned sizeclass, void *list) {
    mcentral *c = &gm_central[sizeclass];
    mspan *empties = NULL;
    /* ahead runs PREFETCH_AHEAD objects in front of o, over links not yet rewritten. */
    void **ahead = list;
    for (int i = 0; i < PREFETCH_AHEAD && ahead != NULL; i++, ahead = ahead[0]) prefetch_span(ahead);
    gm_lock(&c->lock);
    for (void **o = list; o != NULL;) {
        void **next = o[0];
        if (ahead != NULL) {
            prefetch_span(ahead);
            ahead = ahead[0];
        }
        mspan *s = span_of((uintptr_t)o);
        if (s->incache) {
            /* The owning mcache carves this span without a lock: park the object until
             * the span comes back (mcentral_uncache_span). */
            o[0] = s->deferred;
            s->deferred = o;
        } else {
            if (!mspan_free_slot(s, o)) gm_fatal("free(): double free", o);
            if (place(c, s)) {
                s->next = empties;
                empties = s;
            }
        }
        o = next;
    }
    gm_unlock(&c->lock);
    if (empties != NULL) {
        gm_lock(&gm_heap_lock);
        while (empties != NULL) {
            mspan *next = empties->next;
            mheap_free_span_locked(empties);
            empties = next;
        }
        gm_unlock(&gm_heap_lock);
        scavenger_kick();
    }
}

/* ---- giving back the free pages inside spans ----
 * A span that lost most of its objects keeps its pages as long as one object lives, and
 * only its own class can use the free slots: a program whose object sizes move on (one
 * phase of small objects, the next of larger ones) holds the old spans' pages forever.
 * Go accepts that; here whole free OS pages inside spans on the lists go back to the OS
 * when the scavenger's goal asks (scavenger.c). alloc_bits stay the truth (a released
 * page reads back as zero; nothing is stored in a free slot of an uncached span), and the
 * cache that takes the span again faults the pages back in as it carves them. */

#define SPARSE_BATCH 32 /* spans claimed per lock hold */
#define SPARSE_LOOK 256 /* spans looked at per lock hold: bounds how long the class waits */

/* Claimed spans, being released without the class lock. A claimed span looks cached
 * (incache, on no list): frees into it wait on its deferred list, and no thread can take
 * it. Written under the claimed class's lock, so a fork child finds it consistent. */
static struct {
    mspan *span;
    uint64_t pages;
} inflight[SPARSE_BATCH];
static unsigned ninflight;
static atomic_flag sparse_busy = ATOMIC_FLAG_INIT; /* one releaser at a time */
static unsigned class_cursor;                      /* where the last call stopped; under sparse_busy */

/* Hands claimed spans back: what was released counts, deferred frees land, and a span
 * with none goes on the sparse list (looked at). Empty spans are chained on *empties for
 * the heap. pre: c's lock held. */
static void unclaim(mcentral *c, const uint64_t *ok, mspan **empties) {
    for (unsigned i = 0; i < ninflight; i++) {
        mspan *s = inflight[i].span;
        s->released |= ok[i];
        atomic_fetch_add_explicit(&released_bytes, (uint64_t)__builtin_popcountll(ok[i]) << GM_OS_PAGE_SHIFT,
                                  memory_order_relaxed);
        s->incache = 0;
        if (s->deferred == NULL) {
            list_push(c, s, MSPAN_LIST_SPARSE);
            continue;
        }
        if (land_deferred(c, s)) {
            s->next = *empties;
            *empties = s;
        }
    }
    ninflight = 0;
}

/* Releases the free OS pages of class cl's partial spans, up to about want bytes. */
static size_t release_class(unsigned cl, size_t want) {
    mcentral *c = &gm_central[cl];
    size_t done = 0;
    bool more = true;
    while (more && done < want) {
        size_t claimed = 0;
        gm_lock(&c->lock);
        unsigned looked = 0;
        mspan *s;
        while ((s = c->partial) != NULL && ninflight < SPARSE_BATCH && looked++ < SPARSE_LOOK &&
               done + claimed < want) {
            uint64_t pages = mspan_free_os_pages(s) & ~s->released;
            list_remove(c, s);
            if (pages == 0) {
                list_push(c, s, MSPAN_LIST_SPARSE);
                continue;
            }
            s->incache = 1;
            inflight[ninflight].span = s;
            inflight[ninflight++].pages = pages;
            claimed += (size_t)__builtin_popcountll(pages) << GM_OS_PAGE_SHIFT;
        }
        more = c->partial != NULL;
        gm_unlock(&c->lock);
        uint64_t ok[SPARSE_BATCH];
        bool failed = false;
        for (unsigned i = 0; i < ninflight; i++) {
            ok[i] = 0;
            uint64_t pages = inflight[i].pages;
            while (pages != 0 && !failed) {
                unsigned first = (unsigned)__builtin_ctzll(pages);
                uint64_t from = pages >> first;
                unsigned len = ~from == 0 ? 64 - first : (unsigned)__builtin_ctzll(~from);
                uint64_t run = (len == 64 ? ~(uint64_t)0 : ((uint64_t)1 << len) - 1) << first;
                pages &= ~run;
                if (os_release((void *)(inflight[i].span->base + ((uintptr_t)first << GM_OS_PAGE_SHIFT)),
                               (size_t)len << GM_OS_PAGE_SHIFT, gm_opt.madvdontneed != 0)) {
                    ok[i] |= run;
                    done += (size_t)len << GM_OS_PAGE_SHIFT;
                } else {
                    failed = true; /* madvise refused: stop rather than spin */
                }
            }
        }
        mspan *empties = NULL;
        gm_lock(&c->lock);
        unclaim(c, ok, &empties);
        gm_unlock(&c->lock);
        while (empties != NULL) {
            mspan *next = empties->next;
            mheap_free_span(empties);
            empties = next;
        }
        if (failed) return done;
    }
    return done;
}

size_t mcentral_release_sparse(size_t want) {
    if (!sparse_ok || want == 0 || atomic_flag_test_and_set_explicit(&sparse_busy, memory_order_acquire)) return 0;
    size_t done = 0;
    const unsigned start = class_cursor;
    for (unsigned i = 0; i < GM_NUM_CLASSES - 1 && done < want; i++) {
        unsigned cl = 1 + (start + i) % (GM_NUM_CLASSES - 1);
        done += release_class(cl, want - done);
        class_cursor = done < want ? cl : cl - 1; /* the next call starts after cl, or at it if cut short */
    }
    atomic_flag_clear_explicit(&sparse_busy, memory_order_release);
    return done;
}

uint64_t mcentral_activity(void) {
    uint64_t sum = 0;
    for (unsigned cl = 1; cl < GM_NUM_CLASSES; cl++) sum += __atomic_load_n(&gm_central[cl].handed, __ATOMIC_RELAXED);
    return sum;
}

uint64_t mcentral_released_bytes(void) { return atomic_load_explicit(&released_bytes, memory_order_relaxed); }

/* The fork child: a release cut off by the fork leaves its spans claimed; they go back
 * unreleased (the pages may or may not be gone; either way they read as free slots). */
void mcentral_fork_child(void) {
    atomic_flag_clear(&sparse_busy);
    if (ninflight == 0) return;
    mcentral *c = &gm_central[inflight[0].span->sizeclass];
    uint64_t none[SPARSE_BATCH] = {0};
    mspan *empties = NULL;
    unclaim(c, none, &empties);
    while (empties != NULL) {
        mspan *next = empties->next;
        mheap_free_span(empties);
        empties = next;
    }
}

void mcentral_lock_all(void) {
    for (unsigned i = 0; i < GM_NUM_CLASSES; i++) gm_lock(&gm_central[i].lock);
}

void mcentral_unlock_all(void) {
    for (unsigned i = GM_NUM_CLASSES; i-- > 0;) gm_unlock(&gm_central[i].lock);
}

void mcentral_reset_locks(void) {
    for (unsigned i = 0; i < GM_NUM_CLASSES; i++) gm_lock_reset(&gm_central[i].lock);
}
