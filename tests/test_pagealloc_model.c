/* test_pagealloc_model.c: pagealloc.c on its own, against a shadow model. A random mix of
 * the heap's calls (first-fit allocations, some aligned; guarded spans placed on old guard
 * markers; frees that leave a marker; in-place shrinks and grows of large spans; scavenger
 * claims given back, with a search while a claim is held) runs over one arena, and after
 * every step the page maps must equal the shadow's, pagealloc_verify must find every
 * chunk's summary and guard fits equal to a recount, and pagealloc_alloc_on_guard must
 * return exactly what a brute-force best fit over the shadow finds. test_pagealloc checks
 * the same module through malloc; this one sees each step, so a summary or fits left stale
 * by one call is caught before a later rescan hides it. Built without the library: it
 * compiles pagealloc.c in and supplies the two things it takes from the rest. */
#include "gm_test.h"
#include "internal.h"

#include "../alloc/pagealloc.c"

heap_arena *gm_arena_map[GM_ARENA_L2_ENTRIES];
void *os_alloc_meta(size_t size) { return calloc(1, size); }

#define NP GM_PAGES_PER_ARENA
#define MAX_SPANS 4000
static const uintptr_t kBase = (uintptr_t)0x200000000000;
static unsigned char used[NP], marked[NP]; /* the shadow */
typedef struct {
    size_t pg, n;
    bool guard;
} model_span;
static model_span spans[MAX_SPANS];
static int nspans;
static uint64_t seed;
static long step;

static uint64_t rnd(void) { return rng_next(&seed); }
static size_t page_index(uintptr_t a) { return (a - kBase) >> GM_PAGE_SHIFT; }
static uintptr_t page_addr(size_t pg) { return kBase + ((uintptr_t)pg << GM_PAGE_SHIFT); }

static void check(const char *op) {
    long bad = pagealloc_verify();
    if (bad >= 0) fail_msg("step %ld, after %s: chunk %ld disagrees with a recount", step, op, bad);
    for (size_t i = 0; i < NP; i++) {
        palloc_chunk *c = chunk_at(i / GM_CHUNK_PAGES, NULL);
        unsigned p = i % GM_CHUNK_PAGES;
        if ((c->alloc[p / 64] >> (p % 64) & 1) != used[i] || (c->guard[p / 64] >> (p % 64) & 1) != marked[i])
            fail_msg("step %ld, after %s: page %zu differs from the model", step, op, i);
    }
}

/* What mheap does with pages it was just given: forget their markers. */
static void take(uintptr_t base, size_t n) {
    guard_set g;
    pagealloc_take_guards(base, n, &g);
    for (size_t i = page_index(base), end = i + n; i < end; i++) {
        if (used[i]) fail_msg("step %ld: page %zu handed out twice", step, i);
        used[i] = 1;
        marked[i] = 0;
    }
}

/* Brute force: the shortest run of npages..2*npages+1 pages (free unmarked pages, then a
 * free marker, within one chunk) at the lowest address; its first page, or -1. */
static long reference_on_guard(size_t npages) {
    long best = -1;
    size_t best_run = 2 * npages + 2;
    for (size_t g = 0; g < NP; g++) {
        if (!marked[g] || used[g]) continue;
        size_t lo = g - g % GM_CHUNK_PAGES, j = g;
        while (j > lo && !used[j - 1] && !marked[j - 1]) j--;
        size_t run = g + 1 - j;
        if (run >= npages && run < best_run) {
            best_run = run;
            best = (long)(g + 1 - npages);
        }
    }
    return best;
}

/* A guarded span placed on an old marker, checked against the reference while the search
 * may see every marker (past GUARD_FIT_TRIES it may skip changed chunks). */
static uintptr_t on_guard(size_t n) {
    size_t scav;
    long want = pa.guard_pages <= GUARD_FIT_TRIES ? reference_on_guard(n) : -2;
    uintptr_t base = pagealloc_alloc_on_guard(n, &scav);
    long got = base ? (long)page_index(base) : -1;
    if (want != -2 && got != want)
        fail_msg("step %ld: a guarded span of %zu pages went to page %ld, best fit is %ld", step, n, got, want);
    return base;
}

static void run_model(uint64_t s, long steps) {
    seed = s;
    for (step = 0; step < steps; step++) {
        unsigned op = (unsigned)(rnd() % 100);
        size_t scav;
        if (op < 40 && nspans < MAX_SPANS) { /* allocate */
            size_t n = rnd() % 4 ? 1 + rnd() % 70 : 1 + rnd() % 600;
            bool guard = rnd() % 2;
            uintptr_t base = guard && n <= MARK_AVOID_MAX_PAGES ? on_guard(n) : 0;
            if (base == 0) base = pagealloc_alloc(n, rnd() % 8 == 0 ? 4 : 1, &scav);
            if (base == 0) continue; /* the arena is full enough */
            take(base, n);
            spans[nspans++] = (model_span){page_index(base), n, guard};
            check("an allocation");
        } else if (op < 75 && nspans) { /* free; a guarded span leaves its marker */
            int i = (int)(rnd() % (uint64_t)nspans);
            model_span sp = spans[i];
            spans[i] = spans[--nspans];
            pagealloc_free(page_addr(sp.pg), sp.n);
            memset(&used[sp.pg], 0, sp.n);
            check("a free");
            if (sp.guard) {
                pagealloc_set_guard(page_addr(sp.pg + sp.n - 1));
                marked[sp.pg + sp.n - 1] = 1;
                check("a new marker");
            }
        } else if (op < 82 && nspans) { /* shrink in place (its guard dropped first) */
            model_span *sp = &spans[rnd() % (uint64_t)nspans];
            if (sp->n < 2) continue;
            size_t keep = 1 + rnd() % (sp->n - 1);
            pagealloc_free(page_addr(sp->pg + keep), sp->n - keep);
            memset(&used[sp->pg + keep], 0, sp->n - keep);
            sp->n = keep;
            sp->guard = false;
            check("a shrink");
        } else if (op < 90 && nspans) { /* grow in place, over markers if need be */
            model_span *sp = &spans[rnd() % (uint64_t)nspans];
            size_t add = 1 + rnd() % 40;
            if (sp->pg + sp->n + add > NP) continue;
            uintptr_t end = page_addr(sp->pg + sp->n);
            if (!pagealloc_alloc_at(end, add, &scav)) continue;
            take(end, add);
            sp->n += add;
            sp->guard = false;
            check("a grow");
        } else { /* the scavenger claims a run, a span is placed meanwhile, the run comes back */
            size_t np;
            uintptr_t b = pagealloc_scavenge_candidate(1 + rnd() % 300, &np);
            if (b == 0) {
                pagealloc_scavenge_reset();
                continue;
            }
            pagealloc_claim(b, np);
            for (size_t j = page_index(b); j < page_index(b) + np; j++) {
                if (used[j]) fail_msg("step %ld: the scavenger claimed page %zu in use", step, j);
                used[j] = 1;
            }
            check("a claim");
            if (pa.guard_pages != 0 && nspans < MAX_SPANS) {
                size_t n = 1 + rnd() % MARK_AVOID_MAX_PAGES;
                uintptr_t base = on_guard(n);
                if (base != 0) {
                    take(base, n);
                    spans[nspans++] = (model_span){page_index(base), n, true};
                    check("a guarded span during a claim");
                }
            }
            pagealloc_unclaim(b, np, rnd() % 2);
            memset(&used[page_index(b)], 0, np);
            check("an unclaim");
        }
    }
}

static int setup_arena(void **state) {
    (void)state;
    heap_arena *ha = calloc(1, sizeof *ha);
    assert_non_null(ha);
    ha->base = kBase;
    ha->chunks = calloc(GM_CHUNKS_PER_ARENA, sizeof(palloc_chunk));
    assert_non_null(ha->chunks);
    gm_arena_map[ha->base >> GM_ARENA_SHIFT] = ha;
    assert_true(pagealloc_add_arena(ha));
    check("adding the arena");
    return 0;
}

static void test_random_steps(void **state) {
    (void)state;
    run_model(0x9e3779b97f4a7c15ull, 30000);
    run_model(88172645463325252ull, 30000); /* the same heap, another mix */
    assert_true(pa.guard_pages > 0);         /* markers were in play */
}

/* A 64-page guarded span takes a 129-page run (2n+1 pages, the longest a search accepts)
 * when that is the only run ending on a marker. Runs first, on the empty arena, and
 * leaves it empty again. */
static void test_longest_accepted_run(void **state) {
    (void)state;
    size_t scav;
    assert_true(pagealloc_alloc_at(kBase, GM_CHUNK_PAGES, &scav)); /* the first chunk */
    pagealloc_free(kBase, 129);
    pagealloc_set_guard(page_addr(128));
    uintptr_t got = pagealloc_alloc_on_guard(64, &scav);
    assert_true(got == page_addr(129 - 64));
    guard_set g;
    pagealloc_take_guards(got, 64, &g);
    assert_true(g.last && g.n == 0); /* the span ends on the old marker */
    pagealloc_free(got, 64);
    pagealloc_free(page_addr(129), GM_CHUNK_PAGES - 129);
    check("the 129-page run");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_longest_accepted_run),
        cmocka_unit_test(test_random_steps),
    };
    return cmocka_run_group_tests_name("pagealloc_model", tests, setup_arena, NULL);
}
