/* internal.h: gomalloc's table of contents. Every function one file offers another is
 * declared here under the banner of the file that owns it, next to the few always-inline
 * helpers the fast paths need. Module-private types and helpers stay in their .c file.
 * Names follow Go's runtime (mspan, mcache, mcentral, mheap, pageAlloc) so a reader can map
 * the code to Go's sources; docs/design.md draws the map. */
#ifndef GM_INTERNAL_H
#define GM_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gomalloc.h"

/* Everything declared below is internal to the library. The build already makes every
 * definition hidden (gnu_symbol_visibility); saying so on the declarations too lets the
 * compiler reach globals such as gm_cookie and gm_list_key with one PC-relative load
 * instead of a GOT load plus the access (one instruction on the free fast path). */
#pragma GCC visibility push(hidden)

/* ---- compiler helpers ---- */
#define gm_likely(x) __builtin_expect(!!(x), 1)
#define gm_unlikely(x) __builtin_expect(!!(x), 0)
#define GM_INLINE static inline __attribute__((always_inline))
#define GM_NOINLINE __attribute__((noinline))
#define GM_COLD __attribute__((cold, noinline))
#define GM_NORETURN __attribute__((noreturn))
#define GM_CACHE_LINE 64
#define GM_ALIGNED(n) __attribute__((aligned(n)))

/* ---- geometry (Go's numbers: 8 KiB pages, 64 MiB arenas, 512-page chunks) ---- */
#define GM_PAGE_SHIFT 13
#define GM_PAGE_SIZE ((size_t)1 << GM_PAGE_SHIFT)
/* The unit in which free slots' memory goes back to the OS (mcentral_release_sparse);
 * mcentral_init turns that off when the kernel's page is not this size. */
#define GM_OS_PAGE_SHIFT 12
#define GM_OS_PAGE_SIZE ((size_t)1 << GM_OS_PAGE_SHIFT)
#define GM_MAX_SMALL_SIZE 32768
#define GM_NUM_CLASSES GM_NUM_SIZE_CLASSES /* class 0 = large object */
#define GM_MAX_NELEMS 512                  /* 16-byte class: 8192 / 16 */
#define GM_ARENA_SHIFT 26
#define GM_ARENA_SIZE ((size_t)1 << GM_ARENA_SHIFT)
#define GM_PAGES_PER_ARENA (GM_ARENA_SIZE >> GM_PAGE_SHIFT) /* 8192 */
#define GM_ADDR_BITS 47 /* x86-64/aarch64 user space without 5-level hints */
#define GM_ARENA_L2_ENTRIES ((size_t)1 << (GM_ADDR_BITS - GM_ARENA_SHIFT)) /* 2 Mi */
#define GM_CHUNK_PAGES 512
#define GM_CHUNKS_PER_ARENA (GM_PAGES_PER_ARENA / GM_CHUNK_PAGES) /* 16 */
/* Largest request we try to serve: glibc refuses anything over PTRDIFF_MAX; we also leave
 * room for page and alignment round-up so size arithmetic never overflows. */
#define GM_MAX_REQUEST ((size_t)1 << 46)

/* ---- spinlock: test-and-test-and-set, yields the CPU when contended (2-core machines
 * oversubscribe easily, and a spinning waiter must not starve the holder). ---- */
typedef struct gm_lock {
    atomic_int v;
} gm_lock_t;
#define GM_LOCK_INIT {0}
void gm_lock_slow(gm_lock_t *l);
GM_INLINE void gm_lock(gm_lock_t *l) {
    if (gm_likely(atomic_exchange_explicit(&l->v, 1, memory_order_acquire) == 0)) return;
    gm_lock_slow(l);
}
GM_INLINE void gm_unlock(gm_lock_t *l) { atomic_store_explicit(&l->v, 0, memory_order_release); }
/* Used only by the fork child, where the thread that held a lock no longer exists. */
GM_INLINE void gm_lock_reset(gm_lock_t *l) { atomic_store_explicit(&l->v, 0, memory_order_relaxed); }

/* xorshift64: the per-thread generator behind sampling gaps and secure mode's shuffles. */
GM_INLINE uint64_t gm_rng_next(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* ==== sizeclasses.c ==== */
extern const uint16_t gm_class_to_size[GM_NUM_CLASSES];
extern const uint8_t gm_class_to_npages[GM_NUM_CLASSES];
extern const uint16_t gm_class_to_nelems[GM_NUM_CLASSES];
typedef struct {
    uint32_t divmagic;  /* ceil(2^32 / size) */
    uint32_t slotbytes; /* nelems * size */
} gm_class_slot_t;
extern const gm_class_slot_t gm_class_slot[GM_NUM_CLASSES];
/* Size -> class times 8: the malloc fast path uses it as a byte offset into sample_at and,
 * times 4, into mcache.list, with no shift of its own. */
extern const uint16_t gm_size_to_class8_16[GM_MAX_NELEMS / 8 + 1];         /* 1024/16 + 1 = 65 */
extern const uint16_t gm_size_to_class8_128[(GM_MAX_SMALL_SIZE - 1024) / 128 + 1]; /* 249 */

/* pre: size <= GM_MAX_SMALL_SIZE. post: the smallest class whose size is >= size (size 0
 * maps to the 16-byte class). Two table loads, no loop. */
GM_INLINE unsigned sizeclass_of(size_t size) {
    if (size <= 1024) return gm_size_to_class8_16[(size + 15) >> 4] >> 3;
    return gm_size_to_class8_128[(size - 1024 + 127) >> 7] >> 3;
}

/* ==== os_linux.c: the only file that calls mmap, munmap, madvise and getrandom. Every
 * function preserves errno, so the allocator's success paths never disturb it. ==== */
/* Reserves and maps size bytes aligned to align (a power of two >= the OS page), trying
 * hint first. Memory is zero, readable and writable, not charged until touched. */
void *os_reserve(size_t size, size_t align, uintptr_t hint);
void os_unmap(void *p, size_t size);
/* Returns the pages to the OS: MADV_DONTNEED (they read back as zero) or, when dontneed is
 * false, MADV_FREE (the kernel takes them under pressure; contents undefined until then). */
bool os_release(void *p, size_t size, bool dontneed);
/* Asks the kernel never to back [p, p+size) with transparent huge pages. */
void os_nohugepage(void *p, size_t size);
/* Metadata memory (span structs, arena maps): zeroed, never released. */
void *os_alloc_meta(size_t size);
bool os_write_all(int fd, const char *buf, size_t len); /* false when a write failed */
void os_random(void *buf, size_t len);
size_t os_physical_memory(void);
bool os_protect(void *p, size_t size, bool accessible);
bool os_guards_persist(void); /* guards may stay on free pages (guard regions) */
/* Moves the pages of [src, src+size) to dst (mremap), leaving src mapped and reading as
 * zero; false, with nothing changed, when the kernel refuses (old kernel, VMA limit). */
bool os_move_pages(void *dst, void *src, size_t size);
int os_dup_high(int fd);
/* Fault injection (built with -Dfault_injection=true, i.e. GM_FAULT_INJECTION=1): calls
 * of the given kinds are counted from 1 after this call, and calls nth..nth+count-1 fail
 * (count 0 = every call from nth on; nth 0 disarms). A failed reserve/meta returns NULL,
 * a failed release or move returns false. GOMALLOC_FAULT=kind:N[:COUNT] arms the same at first
 * use. os_fault_fired() counts the failures injected since arming. */
enum { OS_FAULT_RESERVE = 1, OS_FAULT_META = 2, OS_FAULT_MMAP = 3, OS_FAULT_MADVISE = 4, OS_FAULT_REMAP = 8 };
#if GM_FAULT_INJECTION
void os_fault_set(unsigned kinds, uint64_t nth, uint64_t count);
uint64_t os_fault_fired(void);
#endif

/* ==== print.c: formatting without stdio or malloc ==== */
typedef struct gm_buf {
    int fd;
    bool failed; /* some flush could not write everything (disk full, closed fd) */
    size_t len;
    char data[512];
} gm_buf;
void gm_buf_init(gm_buf *b, int fd);
void gm_buf_flush(gm_buf *b);
void gm_buf_putn(gm_buf *b, const char *s, size_t n);
void gm_buf_puts(gm_buf *b, const char *s);
void gm_buf_putu(gm_buf *b, uint64_t v);
void gm_buf_puti(gm_buf *b, int64_t v);
void gm_buf_putx(gm_buf *b, uint64_t v);
void gm_buf_putu_w(gm_buf *b, uint64_t v, int width);

/* ==== options.c (options.def is the single table) ==== */
/* meson -Dsecure=true defines GM_SECURE_BUILD=1: the inline fast paths keep their thread
 * lists encoded and checked (secure.c, docs/security.md), and secure=1 is the default. */
#ifndef GM_SECURE_BUILD
#define GM_SECURE_BUILD 0
#endif
#ifndef GM_SECURE_DEFAULT
#define GM_SECURE_DEFAULT GM_SECURE_BUILD
#endif
enum gm_stats_mode { GM_STATS_OFF = 0, GM_STATS_TEXT = 1, GM_STATS_JSON = 2 };
typedef struct gm_options {
#define GM_OPTION(name, type, def, desc) int64_t name;
#include "options.def"
#undef GM_OPTION
} gm_options_t;
extern gm_options_t gm_opt;
/* Parses GOMALLOC from the environment (read from environ directly: no getenv, no
 * allocation). Unknown keys and bad values get one warning line each. */
void options_init(void);
/* Applies one GOMALLOC value ("key=value,key=value"); later keys win. */
void options_parse(const char *s);
void options_print(int fd);

/* ==== mspan.c ==== */
/* MSPAN_CACHED: a freed large span parked in a thread's large cache (mcache.c). Its pages
 * stay allocated and in the span map, so anything but INUSE reads as "already freed". */
enum { MSPAN_DEAD = 0, MSPAN_INUSE = 1, MSPAN_CACHED = 2 };
/* MSPAN_LIST_SPARSE: partial spans mcentral_release_sparse has looked at since their last
 * free (their free pages, if any, went back to the OS); a free moves a span back to the
 * partial list, and mcentral hands out sparse spans only when no partial one is left. */
enum { MSPAN_LIST_NONE = 0, MSPAN_LIST_PARTIAL = 1, MSPAN_LIST_FULL = 2, MSPAN_LIST_SPARSE = 3 };

/* A run of pages holding objects of one class (or one large object, class 0).
 * Allocation state follows Go: slots below freeindex are allocated; above it, a slot is
 * allocated iff its alloc_bits bit is set. While an mcache holds the span (incache), only
 * that mcache's thread touches freeindex/alloc_cache; other threads' frees into it wait
 * on the deferred list until the span is handed back to mcentral. */
typedef struct mspan {
    /* The fields read for every object the slow paths take (mcentral_free_list, check_live)
     * come first, in 32 bytes: the pool (mheap.c) places structs 32-byte aligned, so those
     * bytes are always in one cache line. (A pooled free struct keeps its free link in
     * base.) The fast paths read the span map entry only (SPANREF). */
    uintptr_t base;            /* first byte, page aligned */
    uintptr_t limit;           /* end of the last slot */
    uint32_t divmagic;         /* (off * divmagic) >> 32 == off / elemsize for off <= span bytes */
    uint8_t sizeclass;
    uint8_t state;
    uint8_t list;
    uint16_t nelems;
    uint16_t freeindex;
    uint16_t alloc_count;      /* valid while not incache */
    uint8_t incache;
    uint8_t needzero;          /* some page was written before: calloc must clear */
    struct mspan *next, *prev; /* mcentral partial/full list */
    uint32_t npages;
    uint32_t elemsize;
    uint8_t guard;             /* large object with a guard page after it (secure, os_protect) */
    uint16_t nsampled;         /* live sampled objects in the span; under the profile lock */
    uintptr_t sampled_one;     /* that object while nsampled == 1 and it is known, else 0 */
    uint64_t alloc_cache;      /* inverted alloc_bits window starting at freeindex */
    void *deferred;            /* frees that arrived while incache (under mcentral lock) */
    uint64_t released;         /* OS pages (bit i: the i-th 4 KiB) given back while uncached */
    uint64_t alloc_bits[GM_MAX_NELEMS / 64];
} mspan;
_Static_assert(offsetof(mspan, next) == 32, "the slow paths' fields must fit in 32 bytes (mheap.c's pool)");

/* Static span standing for "these pages were freed": the span map points here after a
 * span dies, so a second free is reported as a double free, not a wild pointer. 32-byte
 * aligned, like every pooled span struct. */
extern mspan mspan_dead;

void mspan_init_small(mspan *s, unsigned sizeclass);
void mspan_init_large(mspan *s, size_t npages);
/* Go's nextFreeIndex: refills alloc_cache as needed. Returns a slot address or NULL when
 * the span is full. pre: s->incache. */
void *mspan_next_free(mspan *s);
/* Folds freeindex back into alloc_bits (Go never needs this: its sweeper rebuilds them).
 * pre: incache, mcentral lock held. post: alloc_count = popcount(alloc_bits). */
void mspan_uncache(mspan *s);
void mspan_cache(mspan *s);
/* Clears obj's bit. Returns false when it was already clear (a double free). */
bool mspan_free_slot(mspan *s, void *obj);
/* The span's OS pages (bit i = its i-th GM_OS_PAGE_SIZE bytes) that no allocated slot
 * touches. pre: not incache, mcentral lock held (alloc_bits are the whole truth). */
uint64_t mspan_free_os_pages(const mspan *s);

GM_INLINE size_t mspan_obj_index(const mspan *s, uintptr_t p) {
    return (size_t)(((uint64_t)(p - s->base) * s->divmagic) >> 32);
}
/* True when p is the start of one of the span's slots. With magic = ceil(2^32 / size),
 * off * magic = idx * 2^32 + idx * e + rem * magic (e = magic * size - 2^32 <= size), so
 * the low 32 bits are below magic exactly when rem == 0, as long as nelems * size and
 * size stay small against magic (true for every class: tests/test_sizeclasses.c checks
 * all offsets). One multiply, no division; large spans and mspan_dead have magic 0, so
 * they never pass. */
GM_INLINE bool mspan_is_slot(const mspan *s, uintptr_t p) {
    uint64_t prod = (uint64_t)(p - s->base) * s->divmagic;
    return (uint32_t)prod < s->divmagic && p < s->limit;
}
/* mspan_is_slot for the fast paths, from p's offset in its span and the span's class
 * alone (the span map entry gives both, SPANREF), so they never read the span struct.
 * Class 0 has magic 0 and never passes. */
GM_INLINE bool class_is_slot(size_t cl, uint64_t off) {
    /* The bound first: tested second, the multiply's result and magic needed a register
     * more, and the free fast path saved and restored one (2 instructions). */
    return off < gm_class_slot[cl].slotbytes && (uint32_t)(off * gm_class_slot[cl].divmagic) < gm_class_slot[cl].divmagic;
}
/* The same, from the class times 8 (spanref_freeclass8): the free fast path indexes the
 * table with it as a byte offset, which saves the shift. */
GM_INLINE bool class8_is_slot(size_t cl8, uint64_t off) {
    const gm_class_slot_t *cs = (const gm_class_slot_t *)((const char *)gm_class_slot + cl8);
    return off < cs->slotbytes && (uint32_t)(off * cs->divmagic) < cs->divmagic;
}
/* Fast inline variant of the allocCache step: ~8 instructions, no loop. */
GM_INLINE void *mspan_next_free_fast(mspan *s) {
    uint64_t cache = s->alloc_cache;
    if (cache == 0) return NULL;
    unsigned bit = (unsigned)__builtin_ctzll(cache);
    unsigned result = s->freeindex + bit;
    if (result >= s->nelems) return NULL;
    unsigned next = result + 1;
    if ((next & 63) == 0 && next != s->nelems) return NULL; /* cache needs a refill */
    s->alloc_cache = (bit == 63) ? 0 : cache >> (bit + 1);
    s->freeindex = (uint16_t)next;
    return (void *)(s->base + (uintptr_t)result * s->elemsize);
}

/* ==== mheap.c: arenas, the span map, span allocation, large objects ==== */
typedef struct palloc_chunk palloc_chunk;
/* A span map entry (Go's heapArena.spans, with tcmalloc's page -> size class cache folded
 * in), one per page. The span struct's address is for the slow paths; ref holds what the
 * fast paths need of a small span, so a free and the secure pop check read the entry and
 * the class tables, never the span struct (a cache line per span, where entries are 4
 * pages to a line). Both in one 16-byte entry: mcentral_free_list reads both for every
 * object it takes back, in one line. */
typedef struct spanmap_entry {
    uint64_t ref; /* SPANREF of a small span's pages; 0 for a large or dead span */
    mspan *span;  /* NULL = never used */
} spanmap_entry;
typedef struct heap_arena {
    spanmap_entry spans[GM_PAGES_PER_ARENA];
    uintptr_t base;
    struct palloc_chunk *chunks;        /* GM_CHUNKS_PER_ARENA page bitmaps (pagealloc.c) */
} heap_arena;

/* Arena map over the 47-bit user address space (Go's arenas[1][...] L2 map): 16 MiB of
 * zero-initialized .bss, so only the pages covering the heap's arenas are ever touched,
 * and the fast path needs neither a NULL check nor a pointer load to reach it. */
extern heap_arena *gm_arena_map[GM_ARENA_L2_ENTRIES];

GM_INLINE heap_arena *arena_of(uintptr_t p) {
    uintptr_t idx = p >> GM_ARENA_SHIFT;
    if (gm_unlikely(idx >= GM_ARENA_L2_ENTRIES)) return NULL;
    return gm_arena_map[idx];
}
/* A small span's ref: bits 13-46 are the span's base (page aligned, below 2^47), bits 0-12
 * are zero, so the low 32 bits of p - ref are p's offset in its span: one subtract, and
 * the same value for every page of the span. Bits 47-53: the size class. Bits 57-63: the
 * class free files the page's objects under: the size class, or 0 while some object of
 * the span is sampled by the heap profiler, which sends every free in the span to the
 * slow path (class 0's list has no room) where the sample is closed, so unsampled frees
 * pay nothing for profiling. Bits 54-56 are zero, so ref >> 54 is the free class times 8:
 * a byte offset into gm_class_slot and, times 4, into mcache.list, with no shift of its
 * own. Written under the heap lock (mheap.c) or, for the free class, the profile lock;
 * read racily (relaxed) by the fast paths. */
#define SPANREF(base, sizeclass, freeclass) \
    ((uint64_t)(base) | (uint64_t)(sizeclass) << 47 | (uint64_t)(freeclass) << 57)
_Static_assert(GM_NUM_CLASSES <= 128, "a class must fit SPANREF's 7 bits");
_Static_assert(GM_ADDR_BITS <= 47 && GM_PAGE_SHIFT >= 13, "a span's base must fit SPANREF's bits 13-46");
/* p's entry, or NULL for foreign pointers and addresses beyond GM_ADDR_BITS. */
GM_INLINE const spanmap_entry *span_entry(uintptr_t p) {
    heap_arena *ha = arena_of(p);
    if (ha == NULL) return NULL;
    return &ha->spans[(p >> GM_PAGE_SHIFT) & (GM_PAGES_PER_ARENA - 1)];
}
/* p's SPANREF; 0 for NULL, foreign pointers, large and dead spans. */
GM_INLINE uint64_t span_ref(uintptr_t p) {
    uintptr_t idx = p >> GM_ARENA_SHIFT;
    if (gm_unlikely(idx >= GM_ARENA_L2_ENTRIES)) return 0;
    heap_arena *ha = gm_arena_map[idx];
    if (ha == NULL) return 0;
    return __atomic_load_n(&ha->spans[(p >> GM_PAGE_SHIFT) & (GM_PAGES_PER_ARENA - 1)].ref, __ATOMIC_RELAXED);
}
GM_INLINE unsigned spanref_sizeclass(uint64_t ref) { return (unsigned)(ref >> 47) & 0x7f; }
GM_INLINE size_t spanref_freeclass(uint64_t ref) { return (size_t)(ref >> 57); }
/* The free class times 8 (see SPANREF). */
GM_INLINE size_t spanref_freeclass8(uint64_t ref) { return (size_t)(ref >> 54); }
/* p's offset in its small span, given its page's ref. */
GM_INLINE uint64_t spanref_offset(uintptr_t p, uint64_t ref) { return (uint32_t)(p - (uintptr_t)ref); }
/* O(1) pointer -> span (Go's spanOf): NULL for foreign pointers and never-used pages. */
GM_INLINE mspan *span_of(uintptr_t p) {
    const spanmap_entry *e = span_entry(p);
    if (e == NULL) return NULL;
    return __atomic_load_n(&e->span, __ATOMIC_RELAXED);
}

extern gm_lock_t gm_heap_lock;
bool mheap_init(void);
/* Allocates a span of npages for sizeclass (0 = large), aligned to align_pages pages.
 * Returns NULL when the OS refuses memory. Takes the heap lock. */
mspan *mheap_alloc_span(size_t npages, unsigned sizeclass, size_t align_pages);
/* The same, but NULL rather than growing the heap: a caller holding free spans of its own
 * (a thread's large cache) gives them back and retries before the heap grows. */
mspan *mheap_alloc_span_nogrow(size_t npages, unsigned sizeclass, size_t align_pages);
/* pre: s is INUSE, or CACHED (its free was already counted by the caching thread, so it
 * is not counted again). post: the pages are free and map to mspan_dead. */
void mheap_free_span(mspan *s);
/* Sets the free class in the span map entries of s's pages (SPANREF): 0 sends every free
 * in the span to the slow path. Nothing for a large span, whose entries have no class.
 * pre: s is live, profile lock held. */
void mheap_set_freeclass(mspan *s, unsigned freeclass);
/* Tests: -1 when every span map entry carries what its span says (a live small span's
 * classes and the page's index; the address alone for any other span), else the first
 * wrong page (counted over the arenas in address order). pre: heap lock, no thread
 * sampling or freeing meanwhile. */
long mheap_verify_span_map(void);
/* pre: mheap_drop_guard(s) was called. */
void mheap_free_span_locked(mspan *s);
/* mheap_free_span for an unguarded span whose pages were moved away (os_move_pages):
 * they go back as released. */
void mheap_free_span_moved(mspan *s);
/* Before a guarded span's pages go back to the heap, no lock held: where guards are
 * guard regions (os_guards_persist) the guard stays and the heap remembers it; an
 * mprotect guard is lifted here. mheap_free_span calls it itself. */
void mheap_drop_guard(mspan *s);
/* Grows or shrinks a large span in place; false when the pages after it are taken. */
bool mheap_resize_large(mspan *s, size_t npages);
/* Struct pools for mcache (Go's fixalloc); under the heap lock. */
void *mheap_alloc_mcache_struct(void);
void mheap_free_mcache_struct(void *p);
/* Heap-wide numbers for stats, read under the heap lock. */
typedef struct mheap_stats {
    uint64_t heap_sys, heap_inuse, heap_released, heap_inuse_released;
    uint64_t mspan_inuse, mspan_sys, mcache_inuse, mcache_sys, other_sys;
    uint64_t arenas;
    uint64_t large_nmalloc, large_nfree, large_alloc_bytes, large_free_bytes;
} mheap_stats;
void mheap_read_stats_locked(mheap_stats *out); /* pre: heap lock held */
uint64_t mheap_meta_bytes_locked(void); /* arena metadata actually mapped */

/* ==== pagealloc.c: per-page bitmaps (Go's pallocBits + scavenged) in 512-page chunks ==== */
/* All under the heap lock. */
size_t pagealloc_chunks_bytes(void);
bool pagealloc_add_arena(heap_arena *ha);
/* First-fit run of npages whose start is a multiple of align_pages. Returns the base or 0.
 * *scav_pages gets how many of the pages were released to the OS (and so are zero). */
uintptr_t pagealloc_alloc(size_t npages, size_t align_pages, size_t *scav_pages);
/* Claims exactly [base, base+npages) if every page is free. */
bool pagealloc_alloc_at(uintptr_t base, size_t npages, size_t *scav_pages);
void pagealloc_free(uintptr_t base, size_t npages);
size_t pagealloc_released_bytes(void);
size_t pagealloc_reused_bytes(void);
uintptr_t pagealloc_scavenge_candidate(size_t max_pages, size_t *npages);
void pagealloc_scavenge_reset(void); /* look at every chunk again (forced release) */
void pagealloc_claim(uintptr_t base, size_t npages);
void pagealloc_unclaim(uintptr_t base, size_t npages, bool released);
size_t pagealloc_meta_bytes(void);
long pagealloc_verify(void); /* tests: -1, or the first chunk whose numbers are wrong */
/* Guard markers found on a range being allocated (secure mode). */
#define GUARD_SET_MAX 16
typedef struct guard_set {
    bool last;                     /* on the range's last page */
    unsigned n;                    /* on other pages: may exceed GUARD_SET_MAX */
    uintptr_t page[GUARD_SET_MAX]; /* the first of those */
} guard_set;
void pagealloc_set_guard(uintptr_t page);
/* pre: [base, base+npages) free, its memory already gone (moved away, or released while
 * its span lived: mheap_free_span_locked): marks it released. */
void pagealloc_set_released(uintptr_t base, size_t npages);
void pagealloc_take_guards(uintptr_t base, size_t npages, guard_set *g);
uintptr_t pagealloc_alloc_on_guard(size_t npages, size_t *scav_pages);

/* ==== scavenger.c: returns idle memory to the OS (Go's mgcscavenge.go) ==== */
void scavenger_init(void);                 /* pre: options parsed */
void scavenger_note_inuse(uint64_t inuse); /* pre: heap lock held */
void scavenger_after_alloc(size_t grown);  /* allocation slow paths, no lock held */
void scavenger_kick(void);                 /* free paths, no lock held */
void scavenger_fork_child(void);
size_t scavenger_release_all(void);        /* returns bytes released */
uint64_t scavenger_released_total(void);

/* ==== mcentral.c: one per size class, spinlock-protected span lists ==== */
void mcentral_init(void);
/* Hands out a span with at least one free slot, marked incache. NULL on OOM. */
mspan *mcentral_cache_span(unsigned sizeclass);
/* Takes back a span an mcache is done with (full, or thread exit). */
void mcentral_uncache_span(mspan *s);
/* Returns a NULL-terminated list of objects (linked through their first word) to their
 * spans in one lock hold; empty spans go back to the heap after the lock is dropped. */
void mcentral_free_list(unsigned sizeclass, void *list);
/* Gives free OS pages inside spans on the partial lists back to the OS, about want bytes
 * (less if there are not that many), and moves the spans looked at to the sparse list.
 * Takes class locks and madvises without them; returns 0 at once if another call is
 * running. Returns bytes released. */
size_t mcentral_release_sparse(size_t want);
uint64_t mcentral_released_bytes(void); /* pages of spans on the lists that are released now */
uint64_t mcentral_activity(void);       /* spans handed to threads so far: changes while any class is busy */
void mcentral_fork_child(void);         /* after mcentral_reset_locks */
void mcentral_lock_all(void);
void mcentral_unlock_all(void);
void mcentral_reset_locks(void);

/* ==== mcache.c: per-thread cache ==== */
/* The large-span cache's reach: 32 KiB + 1 B (5 pages) to 1 MiB, two spans per page count;
 * how many bytes a thread may hold is GOMALLOC=largecache (default 1 MiB), and all threads
 * together GOMALLOC=largecache_total (default 4 MiB). */
#define GM_LARGE_CACHE_MIN_PAGES 5
#define GM_LARGE_CACHE_MAX_PAGES 128
#define GM_LARGE_CACHE_WAYS 2
/* One size class of a thread's cache: 32 bytes, so malloc and free each touch one line.
 * The two counters are the thread's MemStats counters (objects it handed out and took back)
 * and also size the list: its length is always nfree - nmalloc + (limit - cap), where cap
 * moves only on slow paths (a refill adds to the list without a free; a flush takes from
 * it without a malloc). nmalloc is the heap profiler's countdown as well (malloc leaves
 * for the slow path once it would pass mcache.sample_at[cl]). So free tests
 * `nfree - nmalloc < cap` with plain loads, and each operation does one read-modify-write,
 * of its own counter, which the list bound and the profiler need anyway: statistics add
 * nothing to either fast path (issue 4, docs/stats.md). */
typedef struct gm_freelist {
    void *head;       /* objects freed by this thread, linked through their first word */
    int64_t cap;      /* free may push while nfree - nmalloc < cap; 0 in the markers */
    uint64_t nmalloc; /* cumulative objects handed out in this class */
    uint64_t nfree;   /* cumulative objects freed into this list */
} gm_freelist;
_Static_assert(sizeof(gm_freelist) % 8 == 0, "the free fast path scales the class times 8 to reach its list");

/* The owner's counter updates: it is the only writer, so a plain read plus an atomic store
 * (a single `mov` on x86-64 and aarch64) is enough for gm_read_memstats's reader, which
 * loads them with acquire. nfree is released: a reader that sees a free also sees what
 * the owner did before it. Small classes count slow-path mallocs through count_small
 * (malloc.c), which also runs the profiler's countdown; gm_count_malloc is for class 0
 * (large-cache hits). */
GM_INLINE void gm_count_malloc(gm_freelist *fl) { __atomic_store_n(&fl->nmalloc, fl->nmalloc + 1, __ATOMIC_RELAXED); }
GM_INLINE void gm_count_free(gm_freelist *fl) { __atomic_store_n(&fl->nfree, fl->nfree + 1, __ATOMIC_RELEASE); }

GM_INLINE int64_t freelist_len_minus_cap(const gm_freelist *fl) {
    return (int64_t)(fl->nfree - fl->nmalloc) - fl->cap;
}

/* Per-thread cache. Only its thread writes it (stealers only empty large-cache slots).
 * gm_read_memstats reads the counters from another thread: each only grows and is one
 * aligned word, and the reader's order (all mallocs, then all frees, under the heap lock;
 * mcache_sum_counters) is what makes the sum consistent. */
typedef struct mcache {
    gm_freelist list[GM_NUM_CLASSES]; /* class 0: counters only, large-cache hits and parks */
    /* Heap profiling (Go's mcache.nextSample), one countdown per small class: the malloc
     * fast path may hand out object number list[cl].nmalloc + 1 while that is at most
     * sample_at[cl]; the next one leaves for the slow path, which samples it and draws the
     * next gap. The gap is exponential in bytes (mean = rate) and rounded down to whole
     * objects of the class, which samples exactly the allocations a byte countdown would:
     * the one that crosses the gap. Per class rather than per thread, so the fast path
     * compares a counter it increments anyway and loads no slot size; by the exponential's
     * lack of memory each object is still sampled with probability 1 - exp(-size/rate),
     * independently. After list[], so list[cl] stays at c + 32*cl. */
    uint64_t sample_at[GM_NUM_CLASSES];
    int64_t next_sample;   /* large objects: bytes before the next sampled one */
    uint32_t sample_epoch; /* profile_rate_epoch when the countdowns were drawn */
    uint8_t sample_drawn[GM_NUM_CLASSES]; /* 0: sample_at[cl] not drawn yet (no sample due) */
    mspan *alloc[GM_NUM_CLASSES];     /* span being carved, per class */
    uint32_t limit[GM_NUM_CLASSES];   /* most objects a class's list may hold now */
    uint8_t list_overflows[GM_NUM_CLASSES]; /* flushes since the class's last refill */
    uint8_t list_ramp[GM_NUM_CLASSES];      /* refills so far while the batch still ramps up */
    struct mcache *all_next, *all_prev;
    uint64_t rng; /* shuffles fresh objects in secure mode (any level) */
    /* The large-span cache's counters; its slots are in the cold part below. */
    uint64_t large_bytes;              /* owner: bytes it put minus bytes it took back */
    _Atomic uint64_t large_stolen;     /* bytes stealers took; the owner folds them in */
    uint64_t large_ops;                /* owner's puts + takes, read by the idle check */
    uint64_t large_seen;               /* large_ops at the last idle check (list lock) */
    uint32_t large_misses;             /* owner: large mallocs since the last cache hit */
    uint64_t large_want[2];            /* owner: page counts that missed lately (admission) */
    uint64_t large_alloc_bytes;        /* MemStats: bytes handed out from the cache */
    uint64_t large_free_bytes;         /* MemStats: bytes freed into the cache */
    /* ---- cold part: from MCACHE_COLD on, touched only by threads that use it, so a thread
     * that never parks a large span or runs secure.c's lists keeps these pages untouched
     * (never faulted in). The pool hands out each cache page-aligned with its hot part in
     * one page (mheap.c), and clears this part on reuse only where it is not zero. ---- */
    /* Large-span cache: freed large spans of GM_LARGE_CACHE_MIN..MAX_PAGES pages, by exact
     * page count, for this thread's next large malloc of that size (no heap lock). A slot is
     * filled only by the owner (plain release store into an empty slot) and emptied by an
     * atomic exchange, by the owner or by a stealer (mcache_steal_large), so every span has
     * exactly one owner and no lock is needed. Its bytes stay in heap_inuse. */
    _Atomic(mspan *) large[GM_LARGE_CACHE_MAX_PAGES - GM_LARGE_CACHE_MIN_PAGES + 1][GM_LARGE_CACHE_WAYS];
    /* secure.c's own lists (secure_slow_lists()), where the fast paths never look. */
    void *secure_head[GM_NUM_CLASSES];
    uint32_t secure_len[GM_NUM_CLASSES];
} mcache;
#define MCACHE_COLD offsetof(mcache, large)

/* The per-thread pointer: the allocator's only TLS (initial-exec). It never holds NULL, so
 * the fast paths need no test for it: it starts at &mcache_new_marker (the thread has not
 * called us yet), becomes the thread's own cache, and is &mcache_fallback_marker while
 * the cache is being built or after the thread's exit destructor ran (calls then use the
 * shared, locked fallback cache). Both markers are empty caches with zero list limits, so
 * every fast path misses on them and lands in the slow path, which tells them apart. */
extern __thread mcache *gm_tls_mcache __attribute__((tls_model("initial-exec")));
extern mcache mcache_new_marker, mcache_fallback_marker;

void mcache_init_struct(mcache *c);
/* Slow malloc for small classes: carve from the cached span, or swap it for a new one. */
void *mcache_refill(mcache *c, unsigned sizeclass);
/* Takes up to max objects (at least one unless out of memory) from the class's span,
 * swapping a full span for another; counts them as taken. Returns how many. */
unsigned mcache_carve(mcache *c, unsigned sizeclass, void **out, unsigned max);
/* A class's list limit (mcache.c: grows on underflow, halves after repeated overflows),
 * shared by the thread lists and secure.c's. A malloc found the list empty: grows the
 * limit, returns the refill batch (<= 32). A free found it full: maybe shrinks the limit,
 * returns how many objects to keep. */
unsigned mcache_list_underflow(mcache *c, unsigned sizeclass);
uint32_t mcache_list_overflow(mcache *c, unsigned sizeclass);
/* Moves the newer (still cached) half of the class's free list back to mcentral. */
void mcache_flush(mcache *c, unsigned sizeclass);
/* Empties every list and hands every span back (thread exit). */
void mcache_release_all(mcache *c);
/* Returns the calling thread's cache, building it on first use; never NULL. When the
 * thread has no usable cache it returns the fallback cache with *locked set, and the
 * caller must call mcache_unlock_fallback() when done. */
mcache *mcache_get_slow(bool *locked);
void mcache_lock_fallback(void);
void mcache_unlock_fallback(void);
void mcache_thread_exit(void *arg);
/* A span of exactly npages from the thread's large cache, INUSE and counted as a malloc,
 * or NULL. No lock; one atomic exchange, and on a hit one subtract from the process-wide
 * total; a run of misses returns the cached spans to the heap first (heap lock).
 * pre: c is the caller's own (unlocked) cache; any npages. */
mspan *mcache_alloc_large(mcache *c, size_t npages);
/* On a miss: a span from the heap, where the thread's own cached spans go back before the
 * heap may grow (parked spans must not be why it grows). NULL when out of memory. */
mspan *mcache_alloc_large_heap(mcache *c, size_t npages, size_t align_pages);
/* Parks a live large span being freed in the thread's large cache, counted as a free;
 * false (nothing done) when it does not fit: size out of range, no recent malloc miss of
 * that page count (admission), ways full, or over the process's or the thread's byte
 * budget. No lock; a read of the process-wide total and, when parked, an atomic add to
 * it (one shared line, per large free). A guarded span (secure mode) is parked guard and
 * all: the page counts are whole spans, guard included. pre: as mcache_alloc_large, the
 * span passed check_live. */
bool mcache_free_large(mcache *c, mspan *s);
/* Takes cached large spans from every thread's cache (all of them, or with idle_only only
 * from caches that did no large operation since the previous idle pass) and frees them to
 * the heap: for gm_free_os_memory, the memory limit and the scavenger's aging. Returns the
 * bytes freed. pre: no allocator lock held (takes the list lock, drops it, then takes the
 * heap lock). */
size_t mcache_steal_large(bool idle_only);
/* Bytes parked in every thread's large cache (GOMALLOC=largecache_total bounds it). */
uint64_t mcache_large_parked_total(void);
void mcache_lock_list(void);
void mcache_unlock_list(void);
void mcache_fork_child(void);
/* Sums counters over live caches plus those retired by exited threads: every thread's
 * mallocs first, then every thread's frees, so no object freed during the read is counted
 * live (a class's frees may then exceed its mallocs by objects allocated and freed during
 * the read: the caller clamps). pre: the heap lock is held (see gm_read_memstats). */
void mcache_sum_counters(uint64_t nmalloc[GM_NUM_CLASSES], uint64_t nfree[GM_NUM_CLASSES],
                         uint64_t *large_alloc_bytes, uint64_t *large_free_bytes);
/* Test hook: called between the two passes when set (tests/test_stats.c widens the window
 * a torn read would need, so the test can catch a wrong order). NULL in real use. */
extern void (*gm_stats_between_passes_hook)(void);

/* ==== secure.c: GOMALLOC=secure=1/2 (docs/security.md) ==== */
/* Two ways to run it. A default build does every secure level on secure.c's own lists
 * (secure_alloc/secure_free) and makes both fast paths miss. A -Dsecure=true build
 * (GM_SECURE_BUILD) does level 1 in the fast paths themselves: the thread lists hold
 * encoded links that every pop decodes and validates (freelist_next in the malloc.c
 * section below); only level 2, which must touch every freed byte, still takes
 * secure.c's lists. True when this process runs on secure.c's lists. */
GM_INLINE bool secure_slow_lists(void) { return gm_opt.secure > GM_SECURE_BUILD; }
extern uint64_t gm_secure_key;  /* secure.c's own list tags */
extern uint64_t gm_list_key[2]; /* the thread lists' link mask; [1] odd */
/* pre: options parsed. Draws both keys from the OS. */
void secure_init_keys(void);
/* pre: gm_opt.secure != 0, c->rng seeded (mcache_init_struct). When
 * secure_slow_lists(), makes both fast paths miss on c. */
void secure_init_cache(mcache *c);
/* Fisher-Yates on the cache's generator: fresh objects leave a span in random order. */
void secure_shuffle(mcache *c, void **objs, unsigned n);
/* The fast path's one unlikely branch when a pop fails its check (GM_SECURE_BUILD): a
 * broken free mark or a link that is not a slot of the class aborts with "heap corruption
 * detected: ..."; a NULL link with an intact mark is the end of the list and returns. */
GM_COLD void secure_check_pop(void *obj, void *next);
/* The same for the malloc fast path, which reaches it by a tail call so its common case
 * saves no registers: checks as above, then pops obj as the last object of fl (the list
 * ends once per refill) and returns it. */
GM_COLD void *secure_pop_last(gm_freelist *fl, void *obj, void *next);
void *secure_alloc(mcache *c, unsigned sizeclass);
void secure_free(mcache *c, unsigned sizeclass, void *obj);
void secure_release_all(mcache *c);

/* ==== traceback.c: call stacks for the heap profiler ==== */
enum { TRACEBACK_AUTO = 0, TRACEBACK_LIBGCC = 1, TRACEBACK_CFI = 2 };
/* Fills pcs with up to max return addresses, innermost first, and returns how many. AUTO
 * starts at the first frame outside gomalloc (when it is a shared library), reads CFI
 * itself where it can and asks libgcc otherwise. The other two (tests) start at
 * traceback_capture's caller and use one unwinder only (CFI returns -1 where it cannot
 * model a frame, or off x86-64). Takes a leaf lock; allocates nothing. */
int traceback_capture(uintptr_t *pcs, unsigned max, int method);
void traceback_lock(void);
void traceback_unlock(void);
void traceback_fork_child(void);

/* ==== profile.c: heap profiling (Go's MemProfileRate, docs/profiling.md) ==== */
extern atomic_uint profile_rate_epoch; /* bumped when the rate changes */
/* Starts a cache's countdowns over at the current rate and records the epoch: draws the
 * large objects' byte gap (2^62 when profiling is off, 0 at rate 1) and makes every
 * small class draw its own at its next malloc (sample_drawn). */
void profile_reset_countdown(mcache *c);
/* The next sampling gap: exponential bytes (mean = rate), for a small class divided by
 * its slot size and rounded down to whole objects, for class 0 (large) in bytes; 0 at
 * rate 1, 2^62 when profiling is off. */
uint64_t profile_class_gap(mcache *c, unsigned cl);
/* Records a sampled allocation of slot bytes at p: stack, bucket, side-table entry, and
 * marks p's span so its frees take the slow path. pre: no allocator lock held (it unwinds
 * the stack, which may take the dynamic loader's lock). */
void profile_alloc(void *p, size_t slot);
/* Closes the sample of p if it has one. pre: s->nsampled != 0, p a live object of s. */
void profile_free(mspan *s, void *p);
uint64_t profile_sys_bytes(void); /* bytes mapped for profiling (part of other_sys) */
void profile_lock(void);
void profile_unlock(void);
void profile_fork_child(void);
/* Sampled totals over all buckets (tests): in-use and allocated objects and bytes. */
void profile_totals(uint64_t *inuse_objs, uint64_t *inuse_bytes, uint64_t *alloc_objs, uint64_t *alloc_bytes);

/* ==== stats.c ==== */
void stats_init(void); /* pre: options parsed */
/* Non-zero while gm_read_memstats sums: thread large caches then stay out of the way (their
 * mallocs and frees take the heap, whose lock the reader holds), since a free+malloc cycle
 * through a cache between the reader's two passes would count each malloc and no free. */
extern atomic_int gm_stats_readers;

/* ==== init.c: process init, fork handlers ==== */
/* 0 = not started, 1 = heap usable (init in progress), 2 = done. */
extern atomic_int gm_init_state;
extern uint64_t gm_cookie; /* random per process: marks freed objects */
/* Makes the heap usable; returns false if the OS refused the first mappings. */
bool gm_init_slow(void);
GM_INLINE bool gm_ensure_init(void) {
    if (gm_likely(atomic_load_explicit(&gm_init_state, memory_order_acquire) != 0)) return true;
    return gm_init_slow();
}

/* ==== malloc.c: entry points and their slow paths ==== */
GM_NORETURN void gm_fatal(const char *what, const void *ptr);
void gm_warn_foreign(const char *what, const void *ptr);
uint64_t gm_foreign_frees(void); /* foreign pointers seen by free/realloc so far */
void *gm_malloc_slow(size_t size, bool zero);
void gm_free_slow(void *p);
size_t gm_usable_size_impl(const void *p);

/* Freed-object marker kept in the second word of every free small object: binds the
 * per-process cookie to the address, so copied bytes never look like a free object. */
GM_INLINE uint64_t gm_free_mark(const void *p) { return gm_cookie ^ (uint64_t)(uintptr_t)p; }

/* Thread-list links. A default build stores the next pointer as is and these helpers
 * compile to nothing. A -Dsecure=true build stores next XOR a keyed hash of the link's own
 * address (the encoded free lists of mimalloc's secure build): a freed object's first word
 * reveals no heap address, the same pointer is stored differently in every object, and a
 * value written after free (a plain pointer, or a link copied from another object) decodes
 * to garbage. A pop then checks what it decoded, so garbage is never handed out. */
GM_INLINE void *freelist_encode(const void *obj, const void *next) {
#if GM_SECURE_BUILD
    uintptr_t mask = ((uintptr_t)obj ^ gm_list_key[0]) * gm_list_key[1];
    return (void *)((uintptr_t)next ^ mask);
#else
    (void)obj;
    return (void *)next;
#endif
}
/* XOR with the same mask: decoding is encoding. */
GM_INLINE void *freelist_decode(const void *obj, const void *stored) { return freelist_encode(obj, stored); }

/* GM_SECURE_BUILD's pop check. post: true iff obj still has its free mark (word 1 was not
 * written after free) and next is the start of a slot of a span of class cl, so a
 * corrupted link can at worst name another object of the same class, never foreign memory,
 * a misaligned address or a slot of another size. A NULL next fails too: the end of the
 * list comes once per refill, and the slow path tells it from corruption, so the common
 * case pays no test for it. Reads next's span map entry, never its span struct: the
 * entry is the one next's own free will read. */
GM_INLINE bool freelist_pop_ok(const void *obj, const void *next, size_t cl8) {
    uintptr_t n = (uintptr_t)next;
    /* The mark first: tested after the entry, it cost a register save and 3 instructions. */
    if ((uint64_t)(uintptr_t)((void *const *)obj)[1] != gm_free_mark(obj)) return false;
    /* No arena (NULL included) fails here rather than as ref 0: the join cost 3 moves. */
    const spanmap_entry *e = span_entry(n);
    if (gm_unlikely(e == NULL)) return false;
    uint64_t ref = __atomic_load_n(&e->ref, __ATOMIC_RELAXED);
    return (size_t)spanref_sizeclass(ref) * 8 == cl8 && class8_is_slot(cl8, spanref_offset(n, ref));
}

/* The link of obj, an object on a class-cl thread list, for the slow paths that walk a
 * list. Checked in a secure build (see freelist_pop_ok); aborts instead of returning a
 * corrupted link. */
GM_INLINE void *freelist_next(void *obj, unsigned cl) {
    void *next = freelist_decode(obj, ((void **)obj)[0]);
#if GM_SECURE_BUILD
    if (gm_unlikely(!freelist_pop_ok(obj, next, (size_t)cl * 8))) secure_check_pop(obj, next);
#else
    (void)cl;
#endif
    return next;
}

/* The malloc fast path, shared by gm_malloc and malloc (override.c): one table lookup,
 * one TLS load, the class's malloc count against its sampling point, pop its list. 22
 * instructions to its ret (objdump); a sampled allocation leaves through the slow path. A
 * -Dsecure=true build adds the decode and check of freelist_next. A malloc+free pair:
 * 81 instructions, secure 122 (bench/compare.sh --callgrind, 2026-12-02, session 11). */
GM_INLINE void *gm_malloc_inline(size_t size) {
    mcache *c = gm_tls_mcache;
    size_t cl8; /* the class times 8, a byte offset (gm_size_to_class8_16) */
    /* Sizes up to 1 KiB first: one compare on the commonest path, not two. */
    if (gm_likely(size <= 1024)) cl8 = gm_size_to_class8_16[(size + 15) >> 4];
    else if (gm_likely(size <= GM_MAX_SMALL_SIZE)) cl8 = gm_size_to_class8_128[(size - 1024 + 127) >> 7];
    else return gm_malloc_slow(size, false);
    gm_freelist *fl = (gm_freelist *)((char *)c->list + cl8 * (sizeof(gm_freelist) / 8));
    void **p = (void **)fl->head;
    uint64_t n = fl->nmalloc + 1;
    if (gm_likely(p != NULL && n <= *(const uint64_t *)((const char *)c->sample_at + cl8))) {
        void *next = freelist_decode(p, p[0]);
#if GM_SECURE_BUILD
        if (gm_unlikely(!freelist_pop_ok(p, next, cl8))) return secure_pop_last(fl, p, next);
        /* The next pop's chain is longer here (its link, then its successor's span map
         * entry): start the first load now. ab.py secure before/after, 7 runs: churn
         * 0.97, prodcons-2t 0.89, mstress-2t 0.92; a default build gained nothing. */
        __builtin_prefetch(next);
#endif
        fl->head = next;
        __atomic_store_n(&fl->nmalloc, n, __ATOMIC_RELAXED); /* stats and profiler */
        p[1] = NULL; /* clear the free mark */
        return p;
    }
    return gm_malloc_slow(size, false);
}

/* The free fast path: span map entry through the arena map, a slot-boundary check, the
 * double-free mark check, push onto this thread's list. Anything unusual goes to
 * gm_free_slow: foreign pointers (no entry), interior pointers (not a slot start), double
 * frees (mark present), a full list (no cap left), spans holding a profiled object
 * (free class 0), and large objects and dead spans (ref 0: class 0 too).
 * 44 instructions to its ret (objdump; 48 while the entry held the page's index and the
 * list was found by a shift); a -Dsecure=true build adds the link's encoding, ~4 more. */
GM_INLINE void gm_free_inline(void *ptr) {
    uintptr_t p = (uintptr_t)ptr;
    mcache *c = gm_tls_mcache;
    /* Foreign pointers and NULL (arena 0 is never mapped) leave before the entry is read:
     * joined with the rest as "ref 0", they cost the common path 3 instructions. */
    const spanmap_entry *e = span_entry(p);
    if (gm_likely(e != NULL)) {
        uint64_t ref = __atomic_load_n(&e->ref, __ATOMIC_RELAXED);
        size_t fc8 = spanref_freeclass8(ref);
        gm_freelist *fl = (gm_freelist *)((char *)c->list + fc8 * (sizeof(gm_freelist) / 8));
        void **o = (void **)ptr;
        uint64_t nf = fl->nfree; /* loaded once: the stores to o below might alias it */
        if (gm_likely(class8_is_slot(fc8, spanref_offset(p, ref)) && (int64_t)(nf - fl->nmalloc) < fl->cap &&
                      (uint64_t)(uintptr_t)o[1] != gm_free_mark(ptr))) {
            o[0] = freelist_encode(o, fl->head);
            o[1] = (void *)(uintptr_t)gm_free_mark(ptr);
            fl->head = o;
            __atomic_store_n(&fl->nfree, nf + 1, __ATOMIC_RELEASE); /* gm_count_free */
            return;
        }
    } else if (ptr == NULL) {
        return;
    }
    gm_free_slow(ptr);
}

#pragma GCC visibility pop

#endif /* GM_INTERNAL_H */
