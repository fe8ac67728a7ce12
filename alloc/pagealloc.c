/* pagealloc.c: which 8 KiB pages of the heap are in use and which were released to the
 * OS: Go's pallocBits + scavenged bitmaps in chunks of 512 pages (4 MiB), each with a
 * (start, max, end) free-run summary. Allocation is address-ordered first fit, as in Go,
 * so low addresses are reused first and the scavenger can work from the top.
 * Free pages that still carry a guard marker (secure mode) count as taken in the summaries,
 * so spans are carved around them; see "guard pages left in the heap" below.
 * Everything here runs under the heap lock; nothing here maps memory except metadata.
 * Simplification against Go: summaries are one level (per chunk) scanned linearly from a
 * search hint, instead of Go's 5-level radix tree; docs/design.md says when that matters. */
#include "internal.h"

#define CHUNK_WORDS (GM_CHUNK_PAGES / 64)
#define CHUNK_BYTES ((uintptr_t)GM_CHUNK_PAGES << GM_PAGE_SHIFT)

struct palloc_chunk {
    uint64_t alloc[CHUNK_WORDS]; /* 1 = page in use */
    uint64_t scav[CHUNK_WORDS];  /* 1 = page released to the OS (reads back as zero) */
    uint64_t guard[CHUNK_WORDS]; /* 1 = free page that still has a guard marker (secure) */
    uint16_t start, max, end;    /* runs of free unmarked pages: at the start, longest, at the end */
    uint16_t nfree;              /* free pages, marked or not; kept by summary_after_alloc/_free */
    uint16_t nguard;             /* bits set in guard */
    bool fits_ok;                /* fits is current; cleared by every change to the taken view */
    uint64_t fits[3];            /* bit L-1: a free marker ends a run of L pages (L <= FIT_MAX) */
};

static struct {
    heap_arena **arenas; /* sorted by base address */
    size_t narenas, cap;
    size_t hint;         /* global chunk index below which every chunk is full */
    size_t scav_cursor;  /* chunks at or above this index hold nothing left to release */
    size_t released_pages;
    size_t reused_pages; /* released pages handed out again (they read back as zero) */
    size_t guard_pages;  /* free pages with a guard marker left in place (secure mode) */
    size_t meta_bytes;
} pa;

size_t pagealloc_chunks_bytes(void) { return GM_CHUNKS_PER_ARENA * sizeof(palloc_chunk); }
size_t pagealloc_released_bytes(void) { return pa.released_pages << GM_PAGE_SHIFT; }
size_t pagealloc_meta_bytes(void) { return pa.meta_bytes; }
size_t pagealloc_reused_bytes(void) { return pa.reused_pages << GM_PAGE_SHIFT; }

/* ---- bit helpers over a chunk's 512-bit maps ---- */

/* First index >= i whose bit equals `want`, or GM_CHUNK_PAGES. */
static unsigned next_bit(const uint64_t *bits, unsigned i, bool want) {
    while (i < GM_CHUNK_PAGES) {
        uint64_t w = bits[i / 64];
        if (!want) w = ~w;
        w &= ~(uint64_t)0 << (i % 64);
        if (w) return (i & ~63u) + (unsigned)__builtin_ctzll(w);
        i = (i & ~63u) + 64;
    }
    return GM_CHUNK_PAGES;
}

static void set_bits(uint64_t *bits, unsigned i, unsigned n, bool on) {
    while (n > 0) {
        unsigned off = i % 64, k = 64 - off < n ? 64 - off : n;
        uint64_t m = (k == 64 ? ~(uint64_t)0 : (((uint64_t)1 << k) - 1)) << off;
        if (on) bits[i / 64] |= m;
        else bits[i / 64] &= ~m;
        i += k;
        n -= k;
    }
}

static unsigned count_bits(const uint64_t *bits, unsigned i, unsigned n) {
    unsigned c = 0;
    while (n > 0) {
        unsigned off = i % 64, k = 64 - off < n ? 64 - off : n;
        uint64_t m = (k == 64 ? ~(uint64_t)0 : (((uint64_t)1 << k) - 1)) << off;
        c += (unsigned)__builtin_popcountll(bits[i / 64] & m);
        i += k;
        n -= k;
    }
    return c;
}

/* x with only the bits that start a run of at least n set bits (n >= 1). x & (x >> s)
 * marks where a run of (length + s) starts when s <= length, so doubling steps get there
 * in log n rounds, and most words stop early with x == 0. */
static uint64_t run_starts(uint64_t x, unsigned n) {
    unsigned have = 1; /* x marks the starts of runs of at least `have` set bits */
    while (x != 0 && have < n) {
        unsigned s = have <= n - have ? have : n - have;
        x &= x >> s;
        have += s;
    }
    return x;
}

/* The longest run of set bits in x if it is longer than floor; otherwise some value
 * <= floor. */
static unsigned longest_ones_over(uint64_t x, unsigned floor) {
    x = run_starts(x, floor + 1);
    if (x == 0) return 0;
    unsigned have = floor + 1;
    while (x != 0) {
        x &= x >> 1;
        have++;
    }
    return have - 1;
}

/* What the summaries count as taken in word w of c: pages in use, and free pages that
 * carry a guard marker (secure mode only, so a default heap reads alloc alone). */
static inline uint64_t taken_word(const palloc_chunk *c, unsigned w) {
    return c->nguard != 0 ? c->alloc[w] | c->guard[w] : c->alloc[w];
}

/* taken_word for the whole chunk, for the scans that read every word (unless over_marks,
 * which sees markers as free). Outside secure mode this is the alloc map itself; else the
 * union is built in *tmp once per scan. */
static inline const uint64_t *taken_bits(const palloc_chunk *c, bool over_marks, uint64_t tmp[CHUNK_WORDS]) {
    if (c->nguard == 0 || over_marks) return c->alloc;
    for (unsigned w = 0; w < CHUNK_WORDS; w++) tmp[w] = taken_word(c, w);
    return tmp;
}

/* c's free-run summary (start, max, end) over taken_bits, one word at a time: a run
 * crossing words is carried in `cur`, and a word's inner runs are measured only when they
 * could beat the longest so far. (It used to walk run by run with popcounts: 8% of
 * bench/churn's instructions, in a libgcc popcount call for want of -mpopcnt.) */
static void summary_of(const palloc_chunk *c, bool over_marks, unsigned *pstart, unsigned *pmax,
                       unsigned *pend) {
    unsigned start = GM_CHUNK_PAGES, max = 0, cur = 0;
    bool used = false;
    uint64_t tmp[CHUNK_WORDS];
    const uint64_t *taken = taken_bits(c, over_marks, tmp);
    for (unsigned w = 0; w < CHUNK_WORDS; w++) {
        uint64_t a = taken[w];
        if (a == 0) {
            cur += 64;
            continue;
        }
        unsigned lo = (unsigned)__builtin_ctzll(a); /* free pages below the first used */
        if (!used) {
            start = cur + lo;
            used = true;
        }
        if (cur + lo > max) max = cur + lo;
        unsigned inner = longest_ones_over(~a, max);
        if (inner > max) max = inner;
        cur = (unsigned)__builtin_clzll(a); /* free pages above the last used */
    }
    if (cur > max) max = cur;
    *pstart = start;
    *pmax = max;
    *pend = cur;
}

/* Recomputes c's stored summary. nfree is kept by summary_after_alloc and
 * summary_after_free, which know how many pages flip. */
static void summarize(palloc_chunk *c) {
    unsigned start, max, end;
    c->fits_ok = false;
    summary_of(c, false, &start, &max, &end);
    c->start = (uint16_t)start;
    c->max = (uint16_t)max;
    c->end = (uint16_t)end;
}

/* ---- chunk addressing ---- */

static size_t nchunks(void) { return pa.narenas * GM_CHUNKS_PER_ARENA; }

static palloc_chunk *chunk_at(size_t ci, uintptr_t *base) {
    heap_arena *ha = pa.arenas[ci / GM_CHUNKS_PER_ARENA];
    size_t j = ci % GM_CHUNKS_PER_ARENA;
    if (base) *base = ha->base + j * CHUNK_BYTES;
    return &ha->chunks[j];
}

static palloc_chunk *chunk_of(uintptr_t addr, unsigned *page) {
    heap_arena *ha = arena_of(addr);
    size_t j = (addr - ha->base) / CHUNK_BYTES;
    *page = (unsigned)((addr >> GM_PAGE_SHIFT) & (GM_CHUNK_PAGES - 1));
    return &ha->chunks[j];
}

static size_t chunk_index_of(uintptr_t addr) {
    heap_arena *ha = arena_of(addr);
    size_t lo = 0, hi = pa.narenas;
    while (lo < hi) { /* binary search: arenas are sorted */
        size_t mid = (lo + hi) / 2;
        if (pa.arenas[mid]->base < ha->base) lo = mid + 1;
        else hi = mid;
    }
    return lo * GM_CHUNKS_PER_ARENA + (addr - ha->base) / CHUNK_BYTES;
}

/* Walks [base, base + npages) one chunk piece at a time: each call yields the chunk, the
 * first page in it and how many pages of the range it holds; false when done. */
typedef struct piece_iter {
    uintptr_t base;
    size_t left;
} piece_iter;

static bool next_piece(piece_iter *it, palloc_chunk **c, unsigned *pg, unsigned *k) {
    if (it->left == 0) return false;
    *c = chunk_of(it->base, pg);
    *k = GM_CHUNK_PAGES - *pg < it->left ? GM_CHUNK_PAGES - *pg : (unsigned)it->left;
    it->base += (uintptr_t)*k << GM_PAGE_SHIFT;
    it->left -= *k;
    return true;
}

bool pagealloc_add_arena(heap_arena *ha) {
    if (pa.narenas == pa.cap) {
        size_t ncap = pa.cap ? pa.cap * 2 : 64;
        heap_arena **n = os_alloc_meta(ncap * sizeof *n);
        if (n == NULL) return false;
        if (pa.narenas) memcpy(n, pa.arenas, pa.narenas * sizeof *n);
        /* The old array is leaked on purpose: it is tiny and metadata is never unmapped. */
        pa.meta_bytes += ncap * sizeof *n;
        pa.arenas = n;
        pa.cap = ncap;
    }
    size_t i = pa.narenas;
    while (i > 0 && pa.arenas[i - 1]->base > ha->base) {
        pa.arenas[i] = pa.arenas[i - 1];
        i--;
    }
    pa.arenas[i] = ha;
    pa.narenas++;
    /* New memory has never been touched: every page counts as released, as in Go. */
    for (size_t j = 0; j < GM_CHUNKS_PER_ARENA; j++) {
        palloc_chunk *c = &ha->chunks[j];
        memset(c->alloc, 0, sizeof c->alloc);
        memset(c->scav, 0xff, sizeof c->scav);
        memset(c->guard, 0, sizeof c->guard);
        c->nguard = 0;
        c->nfree = GM_CHUNK_PAGES;
        summarize(c);
    }
    pa.released_pages += GM_PAGES_PER_ARENA;
    if (i * GM_CHUNKS_PER_ARENA <= pa.hint) pa.hint = i * GM_CHUNKS_PER_ARENA;
    else if (pa.hint >= nchunks() - GM_CHUNKS_PER_ARENA) pa.hint = i * GM_CHUNKS_PER_ARENA;
    return true;
}

/* One past the highest taken page below i, or 0 when there is none. */
static unsigned taken_below(const palloc_chunk *c, unsigned i) {
    while (i > 0) {
        unsigned w = (i - 1) / 64, b = (i - 1) % 64;
        uint64_t m = taken_word(c, w) & (b == 63 ? ~(uint64_t)0 : (((uint64_t)1 << (b + 1)) - 1));
        if (m) return w * 64 + 64 - (unsigned)__builtin_clzll(m);
        i = w * 64;
    }
    return 0;
}

/* The first taken page at or above i, or GM_CHUNK_PAGES. */
static unsigned taken_from(const palloc_chunk *c, unsigned i) {
    while (i < GM_CHUNK_PAGES) {
        uint64_t m = taken_word(c, i / 64) & (~(uint64_t)0 << (i % 64));
        if (m) return (i & ~63u) + (unsigned)__builtin_ctzll(m);
        i = (i & ~63u) + 64;
    }
    return GM_CHUNK_PAGES;
}

/* The summary after pages [pg, pg+k) of c became taken (allocated, claimed or marked),
 * without a rescan unless the run they came from may have been the longest: the free run
 * was within [lo, hi), and only the runs at the chunk's ends can change otherwise. Pages
 * in the range that were taken already (markers under a span placed over them) only make
 * [lo, hi) longer than the runs it covers, so the test stays safe. pre: bits already set. */
static void summary_taken(palloc_chunk *c, unsigned pg, unsigned k) {
    c->fits_ok = false;
    unsigned lo = taken_below(c, pg), hi = taken_from(c, pg + k);
    if (hi - lo >= c->max) {
        summarize(c);
        return;
    }
    if (lo == 0) c->start = (uint16_t)pg;
    if (hi == GM_CHUNK_PAGES) c->end = (uint16_t)(GM_CHUNK_PAGES - pg - k);
}

/* The summary (and nfree) after pages [pg, pg+k) of c were taken. pre: bits already set. */
static void summary_after_alloc(palloc_chunk *c, unsigned pg, unsigned k) {
    c->nfree = (uint16_t)(c->nfree - k);
    summary_taken(c, pg, k);
}

/* The summary (and nfree) after pages [pg, pg+k) of c were given back: they join their neighbours'
 * free runs into [lo, hi), which may be the new longest, or reach either end of the
 * chunk. A marker left inside the range (a run the scavenger claimed and gives back)
 * splits it: rescan. pre: the bits are already clear. */
static void summary_after_free(palloc_chunk *c, unsigned pg, unsigned k) {
    c->nfree = (uint16_t)(c->nfree + k);
    c->fits_ok = false;
    if (c->nguard != 0 && count_bits(c->guard, pg, k) != 0) {
        summarize(c);
        return;
    }
    unsigned lo = taken_below(c, pg), hi = taken_from(c, pg + k);
    if (hi - lo > c->max) c->max = (uint16_t)(hi - lo);
    if (lo == 0) c->start = (uint16_t)hi;
    if (hi == GM_CHUNK_PAGES) c->end = (uint16_t)(GM_CHUNK_PAGES - lo);
}

/* First free run of npages in chunk c (address order), or GM_CHUNK_PAGES; a run may hold
 * guard markers only when over_marks. Word by word: a run reaching into a word from below
 * is carried in `run`; runs inside a word are found by run_starts, which only matters for
 * npages <= 63. */
static unsigned chunk_find(const palloc_chunk *c, size_t npages, bool over_marks) {
    unsigned run = 0, run_start = 0;
    uint64_t tmp[CHUNK_WORDS];
    const uint64_t *taken = taken_bits(c, over_marks, tmp);
    for (unsigned w = 0; w < CHUNK_WORDS; w++) {
        uint64_t a = taken[w];
        if (a == 0) {
            if (run == 0) run_start = w * 64;
            run += 64;
            if (run >= npages) return run_start;
            continue;
        }
        unsigned lo = (unsigned)__builtin_ctzll(a);
        if (run + lo >= npages) return run > 0 ? run_start : w * 64;
        if (npages < 64) {
            uint64_t x = run_starts(~a, (unsigned)npages);
            if (x != 0) return w * 64 + (unsigned)__builtin_ctzll(x);
        }
        run = (unsigned)__builtin_clzll(a);
        run_start = w * 64 + 64 - run;
    }
    return GM_CHUNK_PAGES;
}

/* Requests up to this many pages (512 KiB) are carved around guard markers while the heap
 * has room: see "guard pages left in the heap". */
#define MARK_AVOID_MAX_PAGES 64

/* Address-ordered first fit over the chunk summaries; runs may cross chunk and arena
 * boundaries when the memory is contiguous. over_marks: runs may cover guard markers, and
 * a chunk holding any has its summary recomputed without them. Returns the run's base or 0. */
static uintptr_t find(size_t npages, bool over_marks) {
    size_t n = nchunks();
    while (pa.hint < n && chunk_at(pa.hint, NULL)->nfree == 0) pa.hint++;
    size_t run = 0;
    uintptr_t run_start = 0, prev_end = 0;
    for (size_t ci = pa.hint; ci < n; ci++) {
        uintptr_t base;
        palloc_chunk *c = chunk_at(ci, &base);
        if (base != prev_end) run = 0;
        prev_end = base + CHUNK_BYTES;
        unsigned start = c->start, max = c->max, end = c->end;
        if (over_marks && c->nguard != 0) summary_of(c, true, &start, &max, &end);
        if (run > 0 && run + start >= npages) return run_start;
        if (max >= npages) return base + ((uintptr_t)chunk_find(c, npages, over_marks) << GM_PAGE_SHIFT);
        if (max == GM_CHUNK_PAGES) {
            if (run == 0) run_start = base;
            run += GM_CHUNK_PAGES;
            if (run >= npages) return run_start;
        } else {
            run = end;
            run_start = base + ((uintptr_t)(GM_CHUNK_PAGES - end) << GM_PAGE_SHIFT);
        }
    }
    return 0;
}

/* Marks [base, base+npages) in use; returns how many of those pages were released. */
static size_t alloc_range(uintptr_t base, size_t npages) {
    size_t scav = 0;
    palloc_chunk *c;
    unsigned pg, k;
    for (piece_iter it = {base, npages}; next_piece(&it, &c, &pg, &k);) {
        scav += count_bits(c->scav, pg, k);
        set_bits(c->alloc, pg, k, true);
        set_bits(c->scav, pg, k, false);
        summary_after_alloc(c, pg, k);
    }
    pa.released_pages -= scav;
    pa.reused_pages += scav;
    return scav;
}

uintptr_t pagealloc_alloc(size_t npages, size_t align_pages, size_t *scav_pages) {
    if (align_pages < 1) align_pages = 1;
    /* Small requests go around guard markers if they can; any request goes over them (the
     * caller lifts them) before the heap grows. */
    size_t want = npages + align_pages - 1;
    uintptr_t base = 0;
    if (want <= MARK_AVOID_MAX_PAGES || pa.guard_pages == 0) base = find(want, false);
    if (base == 0 && pa.guard_pages != 0) base = find(want, true);
    if (base == 0) return 0;
    uintptr_t align = (uintptr_t)align_pages << GM_PAGE_SHIFT;
    base = (base + align - 1) & ~(align - 1);
    *scav_pages = alloc_range(base, npages);
    return base;
}

bool pagealloc_alloc_at(uintptr_t base, size_t npages, size_t *scav_pages) {
    /* Check every page is in the heap and free before claiming any. */
    for (size_t i = 0; i < npages; i += GM_CHUNK_PAGES)
        if (arena_of(base + (i << GM_PAGE_SHIFT)) == NULL) return false;
    if (arena_of(base + ((npages - 1) << GM_PAGE_SHIFT)) == NULL) return false;
    palloc_chunk *c;
    unsigned pg, k;
    for (piece_iter it = {base, npages}; next_piece(&it, &c, &pg, &k);)
        if (count_bits(c->alloc, pg, k) != 0) return false;
    *scav_pages = alloc_range(base, npages);
    return true;
}

void pagealloc_free(uintptr_t base, size_t npages) {
    size_t ci = chunk_index_of(base);
    if (ci < pa.hint) pa.hint = ci;
    size_t last = chunk_index_of(base + ((npages - 1) << GM_PAGE_SHIFT));
    if (last >= pa.scav_cursor) pa.scav_cursor = last + 1;
    palloc_chunk *c;
    unsigned pg, k;
    for (piece_iter it = {base, npages}; next_piece(&it, &c, &pg, &k);) {
        set_bits(c->alloc, pg, k, false);
        summary_after_free(c, pg, k);
    }
}

/* ---- guard pages left in the heap (secure mode, guard regions) ----
 * A freed guarded span keeps its guard marker: lifting it is a syscall, and setting one
 * on a page that was touched zaps it, a TLB shootdown on every CPU the program runs on
 * (bench/mstress secure: a quarter of all cycles). A marked page costs no memory, only
 * address space, so the summaries count it as taken and spans are carved around it; a
 * guarded span that fits just below one ends there and needs no new marker
 * (pagealloc_alloc_on_guard). Only a request that fits nowhere else is placed over
 * markers, which its caller lifts, before the heap grows. Lifting whatever span landed
 * on a marker instead cost one lift per reuse plus a page fault on the zapped page:
 * half of mstress's madvise calls, and a quarter more page faults. */

/* pre: the page is free and carries a guard marker. */
void pagealloc_set_guard(uintptr_t page) {
    unsigned pg;
    palloc_chunk *c = chunk_of(page, &pg);
    set_bits(c->guard, pg, 1, true);
    c->nguard++;
    pa.guard_pages++;
    summary_taken(c, pg, 1);
}

/* Forgets the guard markers on [base, base+npages), pages just allocated, and says where
 * they were: g->last for the last page; the others in g->page[] (g->n of them, counted
 * past the array's end too). The caller lifts or keeps them. The summaries stay as they
 * are: the pages were counted as taken already, and now they are in use. So do the fits:
 * a marker under a page in use was never in them. */
void pagealloc_take_guards(uintptr_t base, size_t npages, guard_set *g) {
    g->n = 0;
    g->last = false;
    if (pa.guard_pages == 0) return;
    palloc_chunk *c;
    unsigned pg, k;
    for (piece_iter it = {base, npages}; next_piece(&it, &c, &pg, &k);) {
        if (c->nguard == 0) continue;
        uintptr_t piece = it.base - ((uintptr_t)k << GM_PAGE_SHIFT);
        for (unsigned i = next_bit(c->guard, pg, true); i < pg + k; i = next_bit(c->guard, i + 1, true)) {
            set_bits(c->guard, i, 1, false);
            c->nguard--;
            pa.guard_pages--;
            uintptr_t page = piece + ((uintptr_t)(i - pg) << GM_PAGE_SHIFT);
            if (it.left == 0 && i == pg + k - 1) g->last = true;
            else if (g->n++ < GUARD_SET_MAX) g->page[g->n - 1] = page;
        }
    }
}

void pagealloc_set_released(uintptr_t base, size_t npages) {
    palloc_chunk *c;
    unsigned pg, k;
    for (piece_iter it = {base, npages}; next_piece(&it, &c, &pg, &k);) {
        pa.released_pages += k - count_bits(c->scav, pg, k);
        set_bits(c->scav, pg, k, true);
    }
}

#define GUARD_FIT_TRIES 512 /* markers re-measured per search before the rest is skipped */
#define FIT_MAX (2 * MARK_AVOID_MAX_PAGES + 1) /* the longest run a search may accept */

/* The length of the run (free unmarked pages, then the marker) that ends on marker g. */
static unsigned run_to_marker(const palloc_chunk *c, unsigned g) { return g + 1 - taken_below(c, g); }

/* Records in c->fits which run lengths end on a free marker (markers the scavenger has
 * claimed do not count: their pages look allocated). One pass over the markers. */
static void measure_fits(palloc_chunk *c) {
    memset(c->fits, 0, sizeof c->fits);
    for (unsigned g = next_bit(c->guard, 0, true); g < GM_CHUNK_PAGES; g = next_bit(c->guard, g + 1, true)) {
        if (c->alloc[g / 64] >> (g % 64) & 1) continue;
        unsigned run = run_to_marker(c, g);
        if (run <= FIT_MAX) c->fits[(run - 1) / 64] |= (uint64_t)1 << ((run - 1) % 64);
    }
    c->fits_ok = true;
}

/* The shortest recorded run of at least n pages in c, or 0. */
static unsigned shortest_fit(const palloc_chunk *c, unsigned n) {
    for (unsigned w = (n - 1) / 64; w < sizeof c->fits / sizeof c->fits[0]; w++) {
        uint64_t m = c->fits[w];
        if (w == (n - 1) / 64) m &= ~(uint64_t)0 << ((n - 1) % 64);
        if (m) return w * 64 + (unsigned)__builtin_ctzll(m) + 1;
    }
    return 0;
}

/* A run of npages that ends on a free page carrying a guard marker: a guarded span placed
 * there needs no new guard. Best fit (the lowest address among the shortest runs), and
 * only a run at most about twice npages, for spans up to MARK_AVOID_MAX_PAGES: requests
 * above that go over markers, and cutting the end off a run they could use pushes them
 * to fresh memory (bench/large, secure: +40% page faults and +35% time with no bounds,
 * +20% with runs up to 33 pages longer), while for a span of a few pages the install's
 * shootdown is most of its cost (bench/mstress). Each chunk keeps the run lengths that
 * end on its markers (fits), measured again only after the chunk changed, so a search
 * reads most chunks in O(1) and holds the heap lock for less (bench/mstress-16t secure:
 * walking every marker cost 6% of cycles, plus the waiting of other threads). Chunks
 * are re-measured whole until GUARD_FIT_TRIES markers have been (64 found too few at 8
 * threads, twice the installs); changed chunks past that are skipped. Marks the run in
 * use like pagealloc_alloc; 0 if none. */
uintptr_t pagealloc_alloc_on_guard(size_t npages, size_t *scav_pages) {
    if (pa.guard_pages == 0 || npages > MARK_AVOID_MAX_PAGES) return 0;
    unsigned measured = 0, best_run = 2 * (unsigned)npages + 2;
    palloc_chunk *best = NULL;
    uintptr_t best_base = 0;
    for (size_t ci = pa.hint, n = nchunks(); ci < n; ci++) {
        uintptr_t base;
        palloc_chunk *c = chunk_at(ci, &base);
        if (c->nguard == 0 || c->max + 1u < npages) continue; /* max leaves markers out */
        if (!c->fits_ok) {
            if (measured >= GUARD_FIT_TRIES) continue;
            measured += c->nguard;
            measure_fits(c);
        }
        unsigned run = shortest_fit(c, (unsigned)npages);
        if (run == 0 || run >= best_run) continue;
        best_run = run;
        best = c;
        best_base = base;
        if (run == npages) break;
    }
    if (best == NULL) return 0;
    for (unsigned g = next_bit(best->guard, 0, true); g < GM_CHUNK_PAGES; g = next_bit(best->guard, g + 1, true)) {
        if (best->alloc[g / 64] >> (g % 64) & 1 || run_to_marker(best, g) != best_run) continue;
        uintptr_t at = best_base + ((uintptr_t)(g + 1 - npages) << GM_PAGE_SHIFT);
        *scav_pages = alloc_range(at, npages);
        return at;
    }
    return 0; /* fits out of date: cannot happen (pagealloc_verify checks them) */
}

/* Highest run of free, unreleased pages, at most max_pages long, within one chunk (Go's
 * findScavengeCandidate: address-ordered first fit reuses low addresses first, so the top
 * of the heap is the memory least likely to be wanted again soon). Returns its base, or 0
 * when nothing below the cursor is left to release. */
uintptr_t pagealloc_scavenge_candidate(size_t max_pages, size_t *npages) {
    if (pa.scav_cursor > nchunks()) pa.scav_cursor = nchunks();
    while (pa.scav_cursor > 0) {
        uintptr_t base;
        palloc_chunk *c = chunk_at(pa.scav_cursor - 1, &base);
        if (c->nfree != 0) {
            uint64_t busy[CHUNK_WORDS]; /* 1 = in use or already released */
            for (unsigned w = 0; w < CHUNK_WORDS; w++) busy[w] = c->alloc[w] | c->scav[w];
            for (int w = CHUNK_WORDS - 1; w >= 0; w--) {
                if (busy[w] == ~(uint64_t)0) continue;
                unsigned top = (unsigned)w * 64 + 63 - (unsigned)__builtin_clzll(~busy[w]);
                unsigned start = top;
                while (start > 0 && top - start + 1 < max_pages &&
                       !(busy[(start - 1) / 64] >> ((start - 1) % 64) & 1))
                    start--;
                *npages = top - start + 1;
                return base + ((uintptr_t)start << GM_PAGE_SHIFT);
            }
        }
        pa.scav_cursor--;
    }
    return 0;
}

void pagealloc_scavenge_reset(void) { pa.scav_cursor = nchunks(); }

/* The scavenger's claim on a run while it releases it without the heap lock: the pages
 * look allocated, so no span can be carved from them meanwhile. */
void pagealloc_claim(uintptr_t base, size_t npages) {
    palloc_chunk *c;
    unsigned pg, k;
    for (piece_iter it = {base, npages}; next_piece(&it, &c, &pg, &k);) {
        set_bits(c->alloc, pg, k, true);
        summary_after_alloc(c, pg, k);
    }
}

/* Ends a claim: the pages are free again, and released when `released` says madvise
 * succeeded. */
void pagealloc_unclaim(uintptr_t base, size_t npages, bool released) {
    palloc_chunk *c;
    unsigned pg, k;
    for (piece_iter it = {base, npages}; next_piece(&it, &c, &pg, &k);) {
        set_bits(c->alloc, pg, k, false);
        if (released) set_bits(c->scav, pg, k, true);
        summary_after_free(c, pg, k);
    }
    if (released) pa.released_pages += npages;
    size_t ci = chunk_index_of(base);
    if (ci < pa.hint) pa.hint = ci;
}

/* For tests: recomputes every chunk's numbers the slow, obvious way (page by page) and
 * compares. Returns the index of the first chunk that disagrees, nchunks() when only the
 * heap-wide guard count does, or -1. pre: heap lock. */
long pagealloc_verify(void) {
    size_t guards = 0;
    for (size_t ci = 0; ci < nchunks(); ci++) {
        palloc_chunk *c = chunk_at(ci, NULL);
        unsigned nfree = 0, start = 0, end = 0, max = 0, run = 0;
        bool used = false;
        for (unsigned pg = 0; pg < GM_CHUNK_PAGES; pg++) {
            bool in_use = c->alloc[pg / 64] >> (pg % 64) & 1, marked = c->guard[pg / 64] >> (pg % 64) & 1;
            if (!in_use) nfree++;
            if (in_use || marked) { /* markers are taken, as far as the runs go */
                used = true;
                run = 0;
                end = 0;
            } else {
                run++;
                end++;
                if (!used) start++;
                if (run > max) max = run;
            }
        }
        if (c->nfree != nfree || c->start != start || c->end != end || c->max != max) return (long)ci;
        if (count_bits(c->guard, 0, GM_CHUNK_PAGES) != c->nguard) return (long)ci;
        if (c->fits_ok) {
            uint64_t was[sizeof c->fits / sizeof c->fits[0]];
            memcpy(was, c->fits, sizeof was);
            measure_fits(c);
            if (memcmp(was, c->fits, sizeof was) != 0) return (long)ci;
        }
        guards += c->nguard;
    }
    return guards == pa.guard_pages ? -1 : (long)nchunks();
}
