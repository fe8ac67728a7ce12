/* test_pagealloc.c: the page allocator's per-chunk summaries (free pages, free runs at the
 * start and end, longest free run, guard markers left on free pages, and the run lengths
 * that end on a marker) stay equal to a page-by-page recount while spans of every length
 * come and go, including runs that cross words and chunks, a chunk filled completely and
 * one emptied completely; and the span map entries name their spans and carry their bases
 * and classes (SPANREF, what the fast paths read). Run again with secure=1, where freed
 * guard pages stay in the heap: every page handed out is written, so a guard the heap
 * failed to lift faults. */
#include "gm_test.h"
#include "internal.h"

static void verify(const char *when) {
    gm_lock(&gm_heap_lock);
    long bad = pagealloc_verify();
    gm_unlock(&gm_heap_lock);
    if (bad >= 0) fail_msg("chunk %ld's summary disagrees with its bitmap (%s)", bad, when);
    gm_lock(&gm_heap_lock);
    bad = mheap_verify_span_map();
    gm_unlock(&gm_heap_lock);
    if (bad >= 0) fail_msg("page %ld's span map entry disagrees with its span (%s)", bad, when);
}

#define SLOTS 600
static void *slot[SLOTS];
#define SMALL 30000
static void *small[SMALL]; /* 3 KiB objects: one- and few-page spans that come and go */

/* Writes the first and last byte of every page of [p, p+n). */
static void touch(void *p, size_t n) {
    volatile char *c = p;
    for (size_t i = 0; i < n; i += GM_PAGE_SIZE) c[i] = 1;
    c[n - 1] = 1;
}

static size_t rnd(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (size_t)*s;
}

/* Large objects own whole spans: page counts 5..600 (up to ~1.2 chunks), freed in random
 * order so the bitmaps fragment, among small-object spans of one to a few pages. */
static void test_random_spans(void **state) {
    (void)state;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (int step = 0; step < 20000; step++) {
        size_t i = rnd(&seed) % SLOTS;
        if (slot[i] != NULL) {
            free(slot[i]);
            slot[i] = NULL;
        } else {
            size_t pages = 5 + rnd(&seed) % (rnd(&seed) % 8 == 0 ? 596 : 60);
            slot[i] = malloc(pages * GM_PAGE_SIZE - 100);
            assert_non_null(slot[i]);
            touch(slot[i], pages * GM_PAGE_SIZE - 100);
        }
        for (int r = 0; r < 8; r++) {
            size_t j = rnd(&seed) % SMALL;
            if (small[j] != NULL) {
                free(small[j]);
                small[j] = NULL;
            } else {
                assert_non_null(small[j] = malloc(3000));
                touch(small[j], 3000);
            }
        }
        /* Often enough that a stale summary or fits is seen before a rescan repairs it. */
        if (step % 7 == 0) verify("random frees and mallocs");
    }
    verify("after the random phase");
    for (size_t j = 0; j < SMALL; j++) {
        free(small[j]);
        small[j] = NULL;
    }
    gm_free_os_memory(); /* thread lists back to spans, empty spans back to the pages */
    verify("small objects freed");
    for (size_t i = 0; i < SLOTS; i++) {
        free(slot[i]);
        slot[i] = NULL;
        if (i % 50 == 0) verify("emptying");
    }
    verify("all freed");
}

/* Exactly one chunk's worth of pages, then every other 64-page block freed (word-aligned
 * runs), then the rest: full words, empty words and alternating ones. */
static void test_word_patterns(void **state) {
    (void)state;
    void *blk[64];
    for (int i = 0; i < 64; i++) assert_non_null(blk[i] = malloc(8 * GM_PAGE_SIZE));
    verify("64 spans of 8 pages");
    for (int i = 0; i < 64; i += 2) free(blk[i]);
    verify("every other span freed");
    for (int i = 1; i < 64; i += 2) free(blk[i]);
    verify("all freed");
    void *big = malloc(GM_CHUNK_PAGES * GM_PAGE_SIZE);
    assert_non_null(big);
    verify("one chunk-sized span");
    free(big);
    verify("chunk-sized span freed");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_spans),
        cmocka_unit_test(test_word_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
