/* secure.c: GOMALLOC=secure=1 (and =2), in the spirit of mimalloc's secure build. Free-list
 * links are encoded with a per-process random key and checked when a list is consumed, so a
 * write after free is caught instead of handing out an attacker's address; fresh objects
 * are handed out in random order; (with =2) freed memory is filled with a pattern that is
 * checked on reuse. Guard pages after large objects live in malloc.c.
 * Two implementations (docs/security.md). In a default build everything here runs on
 * slow paths with lists of its own (secure_alloc, secure_free): the fast paths always miss
 * when secure mode is on (secure_init_cache), so the default mode pays nothing for it. In a
 * -Dsecure=true build (GM_SECURE_BUILD) the fast paths encode and check the thread lists
 * themselves (freelist_encode, freelist_next in internal.h) and this file only supplies
 * their keys, the shuffle and the abort; secure=2 still runs on the lists here. */
#include "internal.h"

uint64_t gm_secure_key;
uint64_t gm_list_key[2];

#define FILL_BYTE 0xdf

void secure_init_keys(void) {
    os_random(&gm_secure_key, sizeof gm_secure_key);
    os_random(gm_list_key, sizeof gm_list_key);
    gm_list_key[1] |= 1; /* odd: the mask then takes every value as the address varies */
}

/* With secure_slow_lists(), makes both fast paths miss on this cache: the fast malloc
 * list stays empty, and the free fast path's bound (nfree - nmalloc < cap) can never
 * hold. */
void secure_init_cache(mcache *c) {
    if (secure_slow_lists())
        for (unsigned cl = 0; cl < GM_NUM_CLASSES; cl++) c->list[cl].cap = INT64_MIN / 4;
}

/* A link is the next pointer (47 bits) with a 16-bit tag keyed on the link's own address
 * and the pointer, all XORed with the process key: a write after free that changes the
 * link fails the tag check with probability 1 - 2^-16, and the key keeps the stored value
 * from revealing heap addresses. */
#define LINK_BITS 47
#define LINK_MASK (((uint64_t)1 << LINK_BITS) - 1)
static uint64_t link_tag(const void *obj, uint64_t next) {
    return ((((uint64_t)(uintptr_t)obj ^ next) * (gm_secure_key | 1)) >> 48) & 0xffff;
}
static void *encode(const void *obj, const void *next) {
    uint64_t n = (uint64_t)(uintptr_t)next;
    return (void *)(uintptr_t)((n | link_tag(obj, n) << 48) ^ gm_secure_key);
}

GM_COLD GM_NORETURN static void corrupted(const char *what, const void *obj) {
    gm_fatal(what, obj);
}

/* Decodes obj's link and checks its tag. */
static void *next_of(const void *obj, unsigned cl) {
    (void)cl;
    uint64_t w = (uint64_t)(uintptr_t)((void *const *)obj)[0] ^ gm_secure_key;
    uint64_t n = w & LINK_MASK;
    if ((w >> 48) != link_tag(obj, n) || (n & 15) != 0 || ((w >> LINK_BITS) & 1) != 0)
        corrupted("heap corruption detected: free list link overwritten in", obj);
    return (void *)(uintptr_t)n;
}

static void push(mcache *c, unsigned cl, void *obj) {
    void **o = obj;
    size_t size = gm_class_to_size[cl];
    if (gm_opt.secure >= 2 && size > 16) memset(o + 2, FILL_BYTE, size - 16);
    o[0] = encode(o, c->secure_head[cl]);
    o[1] = (void *)(uintptr_t)gm_free_mark(o);
    c->secure_head[cl] = o;
    c->secure_len[cl]++;
}

/* pre: the list is not empty. post: the checked object, its mark cleared. */
static void *pop(mcache *c, unsigned cl) {
    void **o = c->secure_head[cl];
    if ((uint64_t)(uintptr_t)o[1] != gm_free_mark(o)) corrupted("heap corruption detected: write after free in", o);
    if (gm_opt.secure >= 2) {
        size_t size = gm_class_to_size[cl];
        const unsigned char *b = (const unsigned char *)(o + 2);
        for (size_t i = 0; i + 16 < size; i++)
            if (b[i] != FILL_BYTE) corrupted("heap corruption detected: write after free in", o);
    }
    c->secure_head[cl] = next_of(o, cl);
    c->secure_len[cl]--;
    o[1] = NULL;
    return o;
}

/* j in [0, i) is the high half of (32 random bits * i): a multiply where % took a 64-bit
 * divide per object (secure prodcons-2t: the shuffle was 2.5% of samples). Its bias,
 * under i / 2^32, is far below anything the order needs. */
void secure_shuffle(mcache *c, void **objs, unsigned n) {
    for (unsigned i = n; i > 1; i--) {
        unsigned j = (unsigned)(((gm_rng_next(&c->rng) >> 32) * i) >> 32);
        void *t = objs[i - 1];
        objs[i - 1] = objs[j];
        objs[j] = t;
    }
}

/* Only reached on a bad pop, and then (unless it is the end of the list) fatal: the
 * caller's fast path holds no lock and has changed nothing yet. */
void secure_check_pop(void *obj, void *next) {
    if ((uint64_t)(uintptr_t)((void **)obj)[1] != gm_free_mark(obj))
        corrupted("heap corruption detected: write after free in", obj);
    if (next != NULL) corrupted("heap corruption detected: free list link overwritten in", obj);
}

void *secure_pop_last(gm_freelist *fl, void *obj, void *next) {
    secure_check_pop(obj, next);
    fl->head = NULL;
    gm_count_malloc(fl);
    ((void **)obj)[1] = NULL;
    return obj;
}

/* Carves a batch from the span into the list in random order (a shuffled batch, so the
 * address of the next object is not predictable from the last one). */
static bool refill(mcache *c, unsigned cl) {
    void *got[32];
    unsigned n = mcache_carve(c, cl, got, mcache_list_underflow(c, cl));
    if (n == 0) return false;
    secure_shuffle(c, got, n);
    for (unsigned i = 0; i < n; i++) push(c, cl, got[i]); /* carving counts as neither */
    return true;
}

void *secure_alloc(mcache *c, unsigned cl) {
    if (c->secure_head[cl] == NULL && !refill(c, cl)) return NULL;
    return pop(c, cl); /* counted by the caller (count_small in malloc.c) */
}

/* Returns the older objects of a list, from `keep` on, to mcentral as a plain list. */
static void flush(mcache *c, unsigned cl, uint32_t keep) {
    void **o = c->secure_head[cl], **last_kept = NULL;
    for (uint32_t i = 0; i < keep && o != NULL; i++) {
        last_kept = o;
        o = next_of(o, cl);
    }
    void *plain = NULL;
    uint32_t given = 0;
    while (o != NULL) {
        void **next = next_of(o, cl);
        o[0] = plain;
        plain = o;
        given++;
        o = next;
    }
    if (last_kept != NULL) last_kept[0] = encode(last_kept, NULL);
    else c->secure_head[cl] = NULL;
    c->secure_len[cl] -= given;
    if (plain != NULL) mcentral_free_list(cl, plain);
}

void secure_free(mcache *c, unsigned cl, void *obj) {
    if (c->secure_len[cl] >= c->limit[cl]) flush(c, cl, mcache_list_overflow(c, cl));
    push(c, cl, obj);
    gm_count_free(&c->list[cl]);
}

void secure_release_all(mcache *c) {
    for (unsigned cl = 1; cl < GM_NUM_CLASSES; cl++)
        if (c->secure_head[cl] != NULL) flush(c, cl, 0);
}
