/* test_align.c: the aligned family. glibc's error codes and rounding rules for
 * posix_memalign, aligned_alloc, memalign, valloc and pvalloc; then a sweep over every
 * size-class edge (-1/+0/+1) and large sizes up to 4 MiB times every alignment 2^0..2^22:
 * address % alignment, usable >= size, no overlap, frees through all three free calls. */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdint.h>
#include <unistd.h>

#include "gm_test.h"

#include "gomalloc.h"
#include "internal.h"

extern void free_sized(void *p, size_t size);
extern void free_aligned_sized(void *p, size_t alignment, size_t size);

static volatile size_t vsize;
static size_t V(size_t n) { vsize = n; return vsize; }

static size_t pagesz(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static void test_posix_memalign(void **state) {
    (void)state;
    void *const sentinel = (void *)(uintptr_t)0x1234;
    size_t bad[] = {0, 1, 2, 3, 4, 12, 24, 40, 96, sizeof(void *) / 2, ((size_t)1 << 20) + 8};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        void *p = sentinel;
        int r = posix_memalign(&p, V(bad[i]), 100);
        if (r != EINVAL) fail_msg("posix_memalign(align %zu) returned %d, expected EINVAL", bad[i], r);
        assert_ptr_equal(p, sentinel);
    }
    void *p = sentinel;
    assert_int_equal(posix_memalign(&p, V(8), 0), 0);
    assert_true(p != sentinel);
    free(p);
    size_t huge[][2] = {{4096, SIZE_MAX}, {4096, (size_t)PTRDIFF_MAX + 1}, {GM_MIB, SIZE_MAX - 4095},
                        {(size_t)1 << 62, 1}};
    for (size_t i = 0; i < ARRAY_LEN(huge); i++) {
        p = sentinel;
        errno = 0;
        int r = posix_memalign(&p, V(huge[i][0]), huge[i][1]);
        if (r != ENOMEM) fail_msg("posix_memalign(%#zx, %#zx) returned %d, expected ENOMEM", huge[i][0], huge[i][1], r);
        assert_ptr_equal(p, sentinel);
    }
    for (size_t a = 8; a <= 16 * GM_MIB; a <<= 1) {
        assert_int_equal(posix_memalign(&p, V(a), 100), 0);
        assert_int_equal((uintptr_t)p % a, 0);
        free(p);
    }
}

static void test_aligned_alloc(void **state) {
    (void)state;
    size_t bad[] = {0, 3, 24, 48, 100, 4095, ((size_t)1 << 20) + 1};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        errno = 0;
        void *p = aligned_alloc(V(bad[i]), 128);
        if (p != NULL) fail_msg("aligned_alloc(%zu, 128) returned %p", bad[i], p);
        if (errno != EINVAL) fail_msg("aligned_alloc(%zu, 128): errno %d, expected EINVAL", bad[i], errno);
    }
    void *p = aligned_alloc(V(64), 100);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    assert_true(malloc_usable_size(p) >= 100);
    free(p);
    errno = 0;
    assert_null(aligned_alloc(64, V(SIZE_MAX)));
    assert_int_equal(errno, ENOMEM);
    for (unsigned k = 0; k <= 26; k++) {
        size_t a = (size_t)1 << k;
        size_t ns[] = {1, a > 1 ? a - 1 : 1, a, a + 1, 100, 3 * a + 5};
        for (size_t j = 0; j < ARRAY_LEN(ns); j++) {
            unsigned char *q = aligned_alloc(V(a), ns[j]);
            if (q == NULL) fail_msg("aligned_alloc(%zu, %zu) failed", a, ns[j]);
            if ((uintptr_t)q % a) fail_msg("aligned_alloc(%zu, %zu) = %p misaligned", a, ns[j], (void *)q);
            assert_true(malloc_usable_size(q) >= ns[j]);
            q[0] = 1;
            q[ns[j] - 1] = 2;
            free(q);
        }
    }
}

static void test_memalign(void **state) {
    (void)state;
    size_t cases[][2] = {{3, 4}, {24, 32}, {48, 64}, {1000, 1024}, {5000, 8192}, {100000, 131072}};
    size_t sizes[] = {1, 40, 100, 5000, 40000};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        for (size_t j = 0; j < ARRAY_LEN(sizes); j++) {
            /* several live blocks, so a slot that is only aligned by luck shows up */
            void *p[8];
            for (int k = 0; k < 8; k++) {
                p[k] = memalign(V(cases[i][0]), sizes[j]);
                if (p[k] == NULL) fail_msg("memalign(%zu, %zu) failed", cases[i][0], sizes[j]);
                if ((uintptr_t)p[k] % cases[i][1])
                    fail_msg("memalign(%zu, %zu) = %p, not %zu-aligned", cases[i][0], sizes[j], p[k], cases[i][1]);
                memset(p[k], 3, sizes[j]);
            }
            for (int k = 0; k < 8; k++) free(p[k]);
        }
    void *p = memalign(V(0), 10);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
    free(p);
    errno = 0;
    assert_null(memalign(V(SIZE_MAX / 2 + 2), 1));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(memalign(V(SIZE_MAX), 1));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(memalign(V(SIZE_MAX / 2 + 1), 1));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(memalign(4096, V(SIZE_MAX)));
    assert_int_equal(errno, ENOMEM);
}

static void test_valloc_pvalloc(void **state) {
    (void)state;
    size_t ps = pagesz();
    size_t ns[] = {1, 100, ps - 1, ps, ps + 1, 10000, GM_MIB + 1};
    for (size_t i = 0; i < ARRAY_LEN(ns); i++) {
        void *v = valloc(V(ns[i]));
        assert_non_null(v);
        assert_int_equal((uintptr_t)v % ps, 0);
        assert_true(malloc_usable_size(v) >= ns[i]);
        memset(v, 1, ns[i]);
        void *pv = pvalloc(V(ns[i]));
        assert_non_null(pv);
        assert_int_equal((uintptr_t)pv % ps, 0);
        size_t round = (ns[i] + ps - 1) / ps * ps;
        if (malloc_usable_size(pv) < round)
            fail_msg("pvalloc(%zu): usable %zu < %zu", ns[i], malloc_usable_size(pv), round);
        memset(pv, 2, round);
        free(v);
        free(pv);
    }
    void *z = pvalloc(V(0));
    assert_non_null(z);
    assert_int_equal((uintptr_t)z % ps, 0);
    free(z);
    size_t bad[] = {SIZE_MAX, SIZE_MAX - ps + 2};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        errno = 0;
        assert_null(pvalloc(V(bad[i])));
        assert_int_equal(errno, ENOMEM);
    }
    errno = 0;
    assert_null(valloc(V(SIZE_MAX)));
    assert_int_equal(errno, ENOMEM);
}

enum { API_MEMALIGN, API_POSIX, API_ALIGNED, NUM_API };
static const char *const api_name[NUM_API] = {"memalign", "posix_memalign", "aligned_alloc"};
#define MAX_ALIGN_SHIFT 22

typedef struct {
    unsigned char *p;
    size_t size, align;
    uint32_t seed;
} blk_t;

static void *alloc_with(int api, size_t align, size_t size) {
    switch (api) {
    case API_MEMALIGN:
        return memalign(V(align), size);
    case API_POSIX: {
        void *p = NULL;
        size_t a = align < sizeof(void *) ? sizeof(void *) : align;
        int r = posix_memalign(&p, V(a), size);
        if (r != 0) fail_msg("posix_memalign(%zu, %zu) returned %d", a, size, r);
        return p;
    }
    default:
        return aligned_alloc(V(align), size);
    }
}

/* Whole block for small sizes; both ends and one word per 4 KiB page for larger ones. */
static void fill(blk_t *b) {
    if (b->size <= 64 * GM_KIB) {
        pat_fill(b->p, b->size, b->seed);
        return;
    }
    pat_fill(b->p, 4096, b->seed);
    pat_fill(b->p + b->size - 4096, 4096, b->seed ^ 0x5555);
    for (size_t off = 4096; off + 8 <= b->size - 4096; off += 4096) memcpy(b->p + off, &b->seed, 4);
}

static void verify(const blk_t *b, int api) {
    size_t bad;
    if (b->size <= 64 * GM_KIB) {
        bad = pat_check(b->p, b->size, b->seed);
    } else {
        bad = pat_check(b->p, 4096, b->seed);
        if (bad == (size_t)-1) {
            bad = pat_check(b->p + b->size - 4096, 4096, b->seed ^ 0x5555);
            if (bad != (size_t)-1) bad += b->size - 4096;
        }
        for (size_t off = 4096; bad == (size_t)-1 && off + 8 <= b->size - 4096; off += 4096)
            if (memcmp(b->p + off, &b->seed, 4) != 0) bad = off;
    }
    if (bad != (size_t)-1)
        fail_msg("%s(%zu, %zu) = %p: byte %zu overwritten by another block", api_name[api], b->align,
                 b->size, (void *)b->p, bad);
}

static size_t edge_sizes(size_t *out) {
    size_t n = 0;
    for (unsigned c = 1; c < GM_NUM_CLASSES; c++) {
        size_t s = gm_class_to_size[c];
        out[n++] = s - 1;
        out[n++] = s;
        out[n++] = s + 1;
    }
    size_t large[] = {40000, 65535, 65536, 65537, 100000, 262143, 262145, GM_MIB - 1, GM_MIB + 1,
                      2 * GM_MIB + 12345, 4 * GM_MIB - 1, 4 * GM_MIB};
    for (size_t i = 0; i < ARRAY_LEN(large); i++) out[n++] = large[i];
    return n;
}

static void sweep(size_t from, size_t to) {
    static size_t sizes[256];
    static blk_t live[(MAX_ALIGN_SHIFT + 1) * NUM_API];
    size_t nsizes = edge_sizes(sizes);
    uint32_t seed = 1;
    unsigned freed_with = 0;
    for (size_t si = 0; si < nsizes; si++) {
        size_t size = sizes[si];
        if (size < from || size > to) continue;
        size_t nlive = 0;
        for (unsigned k = 0; k <= MAX_ALIGN_SHIFT; k++) {
            size_t align = (size_t)1 << k;
            for (int api = 0; api < NUM_API; api++) {
                blk_t *b = &live[nlive++];
                b->p = alloc_with(api, align, size);
                b->size = size;
                b->align = align;
                b->seed = seed++;
                if (b->p == NULL) fail_msg("%s(%zu, %zu) returned NULL", api_name[api], align, size);
                if ((uintptr_t)b->p % align)
                    fail_msg("%s(%zu, %zu) = %p is misaligned", api_name[api], align, size, (void *)b->p);
                if ((uintptr_t)b->p % 16)
                    fail_msg("%s(%zu, %zu) = %p is not 16-aligned", api_name[api], align, size, (void *)b->p);
                size_t u = malloc_usable_size(b->p);
                if (u < size) fail_msg("%s(%zu, %zu): usable %zu", api_name[api], align, size, u);
                fill(b);
            }
        }
        for (size_t i = 0; i < nlive; i++) verify(&live[i], (int)(i % NUM_API));
        for (size_t i = 0; i < nlive; i++) {
            blk_t *b = &live[i];
            switch (freed_with++ % 3) {
            case 0: free(b->p); break;
            case 1: free_sized(b->p, b->size); break;
            default: free_aligned_sized(b->p, b->align, b->size); break;
            }
        }
    }
}

static void test_align_small_classes(void **state) {
    (void)state;
    sweep(1, 4096);
}

static void test_align_medium_classes(void **state) {
    (void)state;
    sweep(4097, GM_MAX_SMALL_SIZE + 1);
}

static void test_align_large(void **state) {
    (void)state;
    sweep(GM_MAX_SMALL_SIZE + 2, 4 * GM_MIB);
}

/* Freed aligned blocks must be reusable: the heap does not grow without bound. */
static void test_align_reuse_bounded(void **state) {
    (void)state;
    gm_memstats before, after;
    for (int i = 0; i < 2000; i++) free(memalign(V(4096), 5000)); /* warm */
    gm_read_memstats(&before);
    for (int i = 0; i < 200000; i++) {
        void *p = memalign(V((size_t)64 << (i % 10)), 100 + (size_t)(i % 7) * 1000);
        assert_non_null(p);
        free(p);
    }
    gm_read_memstats(&after);
    if (after.heap_sys > before.heap_sys + 64 * GM_MIB)
        fail_msg("heap_sys grew from %llu to %llu over alloc/free cycles",
                 (unsigned long long)before.heap_sys, (unsigned long long)after.heap_sys);
}

static void test_align_64mib(void **state) {
    (void)state;
    size_t a = 64 * GM_MIB;
    unsigned char *p = memalign(V(a), 100);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % a, 0);
    memset(p, 1, 100);
    void *q = NULL;
    assert_int_equal(posix_memalign(&q, V(a), 64 * GM_MIB + 1), 0);
    assert_non_null(q);
    assert_int_equal((uintptr_t)q % a, 0);
    assert_true(malloc_usable_size(q) >= 64 * GM_MIB + 1);
    ((unsigned char *)q)[64 * GM_MIB] = 7;
    unsigned char *r = aligned_alloc(V(2 * a), GM_MIB);
    assert_non_null(r);
    assert_int_equal((uintptr_t)r % (2 * a), 0);
    memset(r, 2, GM_MIB);
    assert_int_equal(p[99], 1);
    free(p);
    free_aligned_sized(q, a, 64 * GM_MIB + 1);
    free_sized(r, GM_MIB);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_posix_memalign),
        cmocka_unit_test(test_aligned_alloc),
        cmocka_unit_test(test_memalign),
        cmocka_unit_test(test_valloc_pvalloc),
        cmocka_unit_test(test_align_small_classes),
        cmocka_unit_test(test_align_medium_classes),
        cmocka_unit_test(test_align_large),
        cmocka_unit_test(test_align_reuse_bounded),
        cmocka_unit_test(test_align_64mib),
    };
    return cmocka_run_group_tests_name("align", tests, NULL, NULL);
}
