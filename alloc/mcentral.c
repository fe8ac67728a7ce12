/* mcentral.c: one central free list per size class (Go's mcentral): spans that are not
 * held by any mcache, on a partial list (some slot free) or a full list. A spinlock per
 * class guards the lists and the alloc_bits of the spans on them. Work arrives in
 * batches (a span at a time, half a thread's list at a time), so a lock is taken once per
 * batch, never per object. Never holds its lock while calling into mheap. */
#include "internal.h"

typedef struct mcentral {
    gm_lock_t lock;
    mspan *partial;
    mspan *full;
} GM_ALIGNED(GM_CACHE_LINE) mcentral;

static mcentral gm_central[GM_NUM_CLASSES];

static mspan **list_head(mcentral *c, uint8_t list) { return list == MSPAN_LIST_FULL ? &c->full : &c->partial; }

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
}

mspan *mcentral_cache_span(unsigned sizeclass) {
    mcentral *c = &gm_central[sizeclass];
    gm_lock(&c->lock);
    mspan *s = c->partial;
    if (s != NULL) {
        list_remove(c, s);
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
        return true;
    }
    uint8_t want = s->alloc_count == s->nelems ? MSPAN_LIST_FULL : MSPAN_LIST_PARTIAL;
    if (s->list != want) {
        list_remove(c, s);
        list_push(c, s, want);
    }
    return false;
}

void mcentral_uncache_span(mspan *s) {
    mcentral *c = &gm_central[s->sizeclass];
    gm_lock(&c->lock);
    mspan_uncache(s);
    for (void **o = s->deferred; o != NULL;) {
        void **next = o[0];
        if (!mspan_free_slot(s, o)) gm_fatal("free(): double free", o);
        o = next;
    }
    s->deferred = NULL;
    bool empty = place(c, s);
    gm_unlock(&c->lock);
    if (empty) mheap_free_span(s);
}

/* Starts the loads of o's span struct: its head, and the bitmap word of o's slot (found
 * from the span map entry alone: the struct's base is not in yet). */
static void prefetch_span(const void *o) {
    uint64_t ref = span_ref((uintptr_t)o);
    const mspan *s = spanref_span(ref);
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

void mcentral_lock_all(void) {
    for (unsigned i = 0; i < GM_NUM_CLASSES; i++) gm_lock(&gm_central[i].lock);
}

void mcentral_unlock_all(void) {
    for (unsigned i = GM_NUM_CLASSES; i-- > 0;) gm_unlock(&gm_central[i].lock);
}

void mcentral_reset_locks(void) {
    for (unsigned i = 0; i < GM_NUM_CLASSES; i++) gm_lock_reset(&gm_central[i].lock);
}
