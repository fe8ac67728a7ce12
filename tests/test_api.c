/* test_api.c: the glibc malloc contract (reliability.md 1.2, 5.1 items 1-18) through the
 * overridden names: zero sizes, overflow and errno rules, realloc copy/in-place rules,
 * usable size, default alignment, exported aliases, mallinfo2. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdint.h>
#include <unistd.h>

#include "gm_test.h"

#include "gomalloc.h"
#include "internal.h"

/* Not declared by glibc 2.36's headers; gomalloc defines them all. */
extern void cfree(void *p);
extern void free_sized(void *p, size_t size);
extern void free_aligned_sized(void *p, size_t alignment, size_t size);
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
extern int __posix_memalign(void **, size_t, size_t);

/* Sizes go through a volatile so the compiler can neither fold the call nor warn. */
static volatile size_t vsize;
static size_t V(size_t n) { vsize = n; return vsize; }

static size_t pagesz(void) { return (size_t)sysconf(_SC_PAGESIZE); }
static uint64_t heap_objects(void) {
    gm_memstats m;
    gm_read_memstats(&m);
    return m.heap_objects;
}

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static void test_malloc_zero_unique(void **state) {
    (void)state;
    enum { N = 1000 };
    static void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = malloc(V(0));
        assert_non_null(p[i]);
        size_t u = malloc_usable_size(p[i]);
        assert_int_equal(u, malloc_usable_size(p[i]));
        memset(p[i], 0xab, u);
    }
    void *s[N];
    memcpy(s, p, sizeof s);
    qsort(s, N, sizeof s[0], cmp_ptr);
    for (int i = 1; i < N; i++)
        if (s[i] == s[i - 1]) fail_msg("malloc(0) returned %p twice", s[i]);
    for (int i = 0; i < N; i++) free(p[i]);
}

static void test_free_null(void **state) {
    (void)state;
    uint64_t before = heap_objects();
    errno = 77;
    free(NULL);
    cfree(NULL);
    free_sized(NULL, 0);
    free_aligned_sized(NULL, 64, 0);
    assert_int_equal(errno, 77);
    assert_int_equal(heap_objects(), before);
    void *p = malloc(V(10));
    assert_non_null(p);
    free(p);
}

static void test_free_preserves_errno(void **state) {
    (void)state;
    static void *blocks[GM_NUM_CLASSES][64];
    for (unsigned c = 1; c < GM_NUM_CLASSES; c++)
        for (int i = 0; i < 64; i++) assert_non_null(blocks[c][i] = malloc(V(gm_class_to_size[c])));
    size_t large[] = {32769, 1 * GM_MIB, 64 * GM_MIB};
    for (unsigned c = 1; c < GM_NUM_CLASSES; c++)
        for (int i = 0; i < 64; i++) {
            errno = 1234;
            free(blocks[c][i]);
            if (errno != 1234) fail_msg("free of a %u B block changed errno to %d", gm_class_to_size[c], errno);
        }
    for (size_t i = 0; i < ARRAY_LEN(large); i++) {
        void *p = malloc(V(large[i]));
        assert_non_null(p);
        memset(p, 1, 4096);
        errno = 1234;
        free(p);
        if (errno != 1234) fail_msg("free of a %zu B block changed errno to %d", large[i], errno);
    }
    /* enough frees of one class to force the cache to flush to mcentral */
    static void *many[20000];
    for (int i = 0; i < 20000; i++) assert_non_null(many[i] = malloc(V(48)));
    errno = 1234;
    for (int i = 0; i < 20000; i++) free(many[i]);
    assert_int_equal(errno, 1234);
}

static void test_malloc_too_large(void **state) {
    (void)state;
    for (unsigned c = 1; c < GM_NUM_CLASSES; c++) free(malloc(V(gm_class_to_size[c])));
    size_t sizes[] = {(size_t)PTRDIFF_MAX + 1, SIZE_MAX, SIZE_MAX - 4095, SIZE_MAX - pagesz(),
                      SIZE_MAX - 16, (size_t)PTRDIFF_MAX};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        errno = 0;
        void *p = malloc(V(sizes[i]));
        if (p != NULL) fail_msg("malloc(%#zx) returned %p", sizes[i], p);
        if (errno != ENOMEM) fail_msg("malloc(%#zx): errno %d, expected ENOMEM", sizes[i], errno);
    }
}

static void test_calloc_overflow(void **state) {
    (void)state;
    size_t cases[][2] = {{SIZE_MAX, 2}, {2, SIZE_MAX}, {SIZE_MAX, SIZE_MAX},
                         {(size_t)LONG_MAX + 1, 2}, {(size_t)1 << 32, (size_t)1 << 32},
                         {(size_t)PTRDIFF_MAX, 1}};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        errno = 0;
        void *p = calloc(V(cases[i][0]), cases[i][1]);
        if (p != NULL) fail_msg("calloc(%#zx, %#zx) returned %p", cases[i][0], cases[i][1], p);
        assert_int_equal(errno, ENOMEM);
    }
    void *a = calloc(V(0), 1), *b = calloc(V(1), 0), *c = calloc(V(0), 0);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(a != b && b != c && a != c);
    free(a);
    free(b);
    free(c);
}

static void check_calloc_reuse(size_t size, size_t count) {
    void **v = malloc(count * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < count; i++) {
        assert_non_null(v[i] = malloc(V(size)));
        memset(v[i], 0xA5, malloc_usable_size(v[i]));
    }
    for (size_t i = 0; i < count; i++) free(v[i]);
    for (size_t i = 0; i < count; i++) {
        unsigned char *p = calloc(V(1), size);
        assert_non_null(p);
        for (size_t j = 0; j < size; j++)
            if (p[j] != 0) fail_msg("calloc(%zu) block %p: byte %zu is %#x, not 0", size, (void *)p, j, p[j]);
        v[i] = p;
    }
    for (size_t i = 0; i < count; i++) free(v[i]);
    free(v);
}

static void test_calloc_zero_after_reuse(void **state) {
    (void)state;
    for (unsigned c = 1; c < GM_NUM_CLASSES; c++) {
        size_t size = gm_class_to_size[c];
        size_t count = 4 * GM_MIB / size;
        if (count > 10000) count = 10000;
        check_calloc_reuse(size, count);
        check_calloc_reuse(size - 15, 64); /* a request that rounds up into the class */
    }
    size_t large[] = {64 * GM_KIB, 64 * GM_KIB + 1, 100000, 256 * GM_KIB, GM_MIB + 4097, 4 * GM_MIB};
    for (size_t i = 0; i < ARRAY_LEN(large); i++) check_calloc_reuse(large[i], 8);
}

static void test_realloc_null(void **state) {
    (void)state;
    void *p = realloc(NULL, V(100));
    assert_non_null(p);
    assert_true(malloc_usable_size(p) >= 100);
    pat_fill(p, 100, 1);
    void *q = realloc(NULL, V(0));
    assert_non_null(q);
    void *r = realloc(NULL, V(GM_MIB));
    assert_non_null(r);
    memset(r, 0, GM_MIB);
    assert_pattern(p, 100, 1);
    free(p);
    free(q);
    free(r);
}

static void test_realloc_zero_frees(void **state) {
    (void)state;
    size_t sizes[] = {1, 100, 4000, 32768, 40000, 2 * GM_MIB};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        void *p = malloc(V(sizes[i]));
        assert_non_null(p);
        uint64_t before = heap_objects();
        errno = 4321;
        void *q = realloc(p, V(0));
        if (q != NULL) fail_msg("realloc(p of %zu B, 0) returned %p, not NULL", sizes[i], q);
        assert_int_equal(errno, 4321);
        uint64_t after = heap_objects();
        if (after + 1 != before)
            fail_msg("realloc(p of %zu B, 0): heap_objects %llu -> %llu, block not freed", sizes[i],
                     (unsigned long long)before, (unsigned long long)after);
    }
}

static void test_realloc_failure_keeps_block(void **state) {
    (void)state;
    size_t sizes[] = {100, 5000, GM_MIB};
    size_t bad[] = {SIZE_MAX, (size_t)PTRDIFF_MAX + 1, SIZE_MAX - 4095};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        void *p = malloc(V(sizes[i]));
        assert_non_null(p);
        size_t u = malloc_usable_size(p);
        pat_fill(p, u, 7);
        for (size_t j = 0; j < ARRAY_LEN(bad); j++) {
            errno = 0;
            void *q = realloc(p, V(bad[j]));
            if (q != NULL) fail_msg("realloc(p, %#zx) returned %p", bad[j], q);
            assert_int_equal(errno, ENOMEM);
            assert_int_equal(malloc_usable_size(p), u);
            assert_pattern(p, u, 7);
        }
        p = realloc(p, V(sizes[i] * 2)); /* still usable */
        assert_non_null(p);
        assert_pattern(p, u, 7);
        free(p);
    }
}

static size_t realloc_steps(size_t *out, size_t max) {
    size_t n = 0;
    for (unsigned c = 1; c < GM_NUM_CLASSES; c++) {
        size_t s = gm_class_to_size[c];
        out[n++] = s - 1;
        out[n++] = s;
        out[n++] = s + 1;
    }
    for (unsigned k = 16; k <= 26; k++) {
        size_t s = (size_t)1 << k;
        size_t e[] = {s - 8193, s - 1, s, s + 1, s + 8193};
        for (size_t j = 0; j < ARRAY_LEN(e); j++)
            if (e[j] > out[n - 1] && e[j] <= 64 * GM_MIB) out[n++] = e[j];
    }
    assert_true(n <= max);
    return n;
}

static void test_realloc_contents(void **state) {
    (void)state;
    size_t steps[512];
    size_t n = realloc_steps(steps, ARRAY_LEN(steps));
    assert_int_equal(steps[n - 1], 64 * GM_MIB);
    unsigned char *p = malloc(V(1));
    assert_non_null(p);
    uint32_t seed = 100;
    size_t usable = malloc_usable_size(p);
    pat_fill(p, usable, seed);
    /* up 1 B -> 64 MiB, then back down to 1 B */
    for (size_t k = 0; k < 2 * n; k++) {
        size_t want = k < n ? steps[k] : steps[2 * n - 1 - k];
        if (k == 2 * n - 1) want = 1;
        unsigned char *q = realloc(p, V(want));
        if (q == NULL) fail_msg("realloc to %zu failed", want);
        size_t keep = usable < want ? usable : want;
        size_t bad = pat_check(q, keep, seed);
        if (bad != (size_t)-1)
            fail_msg("realloc %zu -> %zu B (old usable %zu): byte %zu not preserved", usable, want,
                     usable, bad);
        usable = malloc_usable_size(q);
        if (usable < want) fail_msg("realloc to %zu: usable %zu", want, usable);
        p = q;
        pat_fill(p, usable, ++seed);
    }
    free(p);
}

static void test_realloc_in_place(void **state) {
    (void)state;
    for (unsigned c = 1; c < GM_NUM_CLASSES; c++) {
        size_t s = gm_class_to_size[c], prev = gm_class_to_size[c - 1];
        void *p = malloc(V(s));
        assert_non_null(p);
        size_t u = malloc_usable_size(p);
        pat_fill(p, u, c);
        size_t tries[] = {u, s, prev + 1, (prev + 1 + s) / 2};
        for (size_t i = 0; i < ARRAY_LEN(tries); i++) {
            void *q = realloc(p, V(tries[i]));
            if (q != p) fail_msg("realloc(%zu B block, %zu) moved %p -> %p", s, tries[i], p, q);
            assert_pattern(p, tries[i], c);
        }
        free(p);
    }
    size_t large[] = {40000, GM_MIB, 8 * GM_MIB + 100};
    for (size_t i = 0; i < ARRAY_LEN(large); i++) {
        void *p = malloc(V(large[i]));
        assert_non_null(p);
        size_t u = malloc_usable_size(p);
        void *q = realloc(p, V(u));
        if (q != p) fail_msg("realloc(%zu B block, its usable %zu) moved", large[i], u);
        q = realloc(p, V(large[i]));
        if (q != p) fail_msg("realloc(%zu B block, same size) moved", large[i]);
        free(q);
    }
}

/* A block of 1 MiB or more that cannot grow in place moves its pages to the new span
 * (mremap) instead of copying them: the contents arrive, and resident memory does not
 * grow by a second copy. Free memory is released first, so a copy would have to fault in
 * fresh pages. Secure mode's guarded blocks move the same way (their guard page stays
 * behind), so the check holds with guards too. */
static void test_realloc_moves_pages(void **state) {
    (void)state;
    const size_t n = 4 * GM_MIB;
    char *p = NULL, *held[16];
    int nheld = 0;
    while (p == NULL && nheld < 16) { /* a block with a live span right after it */
        char *a = malloc(V(n)), *b = malloc(V(n));
        assert_non_null(a);
        assert_non_null(b);
        mspan *s = span_of((uintptr_t)a);
        if ((uintptr_t)b == s->base + ((uintptr_t)s->npages << GM_PAGE_SHIFT)) p = a;
        else held[nheld++] = a;
        held[nheld++] = b;
    }
    if (p == NULL) fail_msg("no two 4 MiB blocks came out back to back");
    pat_fill(p, n, 77);
    gm_free_os_memory();
    size_t r0 = rss_bytes();
    char *q = realloc(p, V(2 * n));
    size_t r1 = rss_bytes();
    assert_non_null(q);
    if (q == p) fail_msg("a block with a live span after it grew in place");
    assert_pattern(q, n, 77);
    if (r1 > r0 + n / 2)
        fail_msg("realloc of a 4 MiB block added %zu KiB of RSS: copied, not moved", (r1 - r0) >> 10);
    pat_fill(q, 2 * n, 78); /* every page of the new block is writable */
    assert_pattern(q, 2 * n, 78);
    free(q);
    for (int i = 0; i < nheld; i++) free(held[i]);
}

static void test_reallocarray(void **state) {
    (void)state;
    void *p = malloc(V(64));
    assert_non_null(p);
    pat_fill(p, 64, 9);
    errno = 0;
    assert_null(reallocarray(p, V(SIZE_MAX), 2));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(reallocarray(p, V((size_t)1 << 33), (size_t)1 << 33));
    assert_int_equal(errno, ENOMEM);
    assert_pattern(p, 64, 9);
    p = reallocarray(p, V(100), 16);
    assert_non_null(p);
    assert_pattern(p, 64, 9);
    errno = 0;
    assert_null(reallocarray(p, V(0), 16)); /* the realloc(p, 0) rule: frees p */
    errno = 0;
    void *q = reallocarray(NULL, V(0), 16);
    assert_non_null(q);
    assert_int_equal(errno, 0);
    free(q);
}

static void check_usable(size_t n) {
    unsigned char *p = malloc(V(n));
    if (p == NULL) fail_msg("malloc(%zu) failed", n);
    size_t u = malloc_usable_size(p);
    if (u < n) fail_msg("malloc_usable_size(malloc(%zu)) = %zu", n, u);
    memset(p, 0x5a, u);
    void *other = malloc(V(n)); /* a neighbour must not change p's usable size */
    assert_non_null(other);
    memset(other, 0xa5, malloc_usable_size(other));
    if (malloc_usable_size(p) != u) fail_msg("usable size of a %zu B block changed", n);
    if (p[u - 1] != 0x5a || p[0] != 0x5a) fail_msg("usable bytes of a %zu B block overwritten", n);
    free(other);
    free(p);
}

static void test_usable_size(void **state) {
    (void)state;
    assert_int_equal(malloc_usable_size(NULL), 0);
    for (size_t n = 1; n <= 40000; n++) check_usable(n);
    for (size_t s = 32768; s <= 256 * GM_MIB; s <<= 1) {
        check_usable(s - 1);
        check_usable(s + 1);
        check_usable(s + s / 2);
    }
}

static void test_default_alignment(void **state) {
    (void)state;
    static void *p[4097];
    for (size_t n = 1; n <= 4096; n++) {
        p[n] = malloc(V(n));
        assert_non_null(p[n]);
        if ((uintptr_t)p[n] % 16) fail_msg("malloc(%zu) = %p is not 16-byte aligned", n, p[n]);
    }
    for (size_t n = 1; n <= 4096; n++) free(p[n]);
    for (size_t s = 4096; s <= GM_GIB; s <<= 1) {
        size_t ns[] = {s - 1, s + 1, s + s / 3};
        for (size_t i = 0; i < ARRAY_LEN(ns); i++) {
            unsigned char *q = malloc(V(ns[i]));
            if (q == NULL) fail_msg("malloc(%zu) failed", ns[i]);
            if ((uintptr_t)q % 16) fail_msg("malloc(%zu) = %p is not 16-byte aligned", ns[i], (void *)q);
            q[0] = 1;
            q[ns[i] - 1] = 1;
            free(q);
        }
    }
}

typedef void (*fn_t)(void);
#define SYM(name) {#name, (fn_t)(uintptr_t)name}
static const struct {
    const char *name;
    fn_t addr;
} exported[] = {
    SYM(malloc), SYM(free), SYM(calloc), SYM(realloc), SYM(reallocarray), SYM(posix_memalign),
    SYM(aligned_alloc), SYM(memalign), SYM(valloc), SYM(pvalloc), SYM(malloc_usable_size),
    SYM(cfree), SYM(free_sized), SYM(free_aligned_sized), SYM(malloc_trim), SYM(mallopt),
    SYM(mallinfo2), SYM(malloc_stats), SYM(__libc_malloc), SYM(__libc_free), SYM(__libc_calloc),
    SYM(__libc_realloc), SYM(__libc_memalign), SYM(__libc_valloc), SYM(__libc_pvalloc),
    SYM(__posix_memalign), SYM(gm_malloc), SYM(gm_calloc), SYM(gm_realloc), SYM(gm_reallocarray),
    SYM(gm_free), SYM(gm_free_sized), SYM(gm_free_aligned_sized), SYM(gm_aligned_alloc),
    SYM(gm_posix_memalign), SYM(gm_memalign), SYM(gm_valloc), SYM(gm_pvalloc), SYM(gm_usable_size),
    SYM(gm_read_memstats), SYM(gm_print_stats), SYM(gm_free_os_memory), SYM(gm_owns),
    SYM(gm_is_redirected),
};

/* The test binary is linked with -rdynamic, so every name must resolve to the copy linked
 * into this executable, not to glibc's. (The preload suite checks the shared library.) */
static void test_symbols_resolve(void **state) {
    (void)state;
    Dl_info self;
    assert_true(dladdr((void *)(uintptr_t)test_symbols_resolve, &self) != 0);
    for (size_t i = 0; i < ARRAY_LEN(exported); i++) {
        void *s = dlsym(RTLD_DEFAULT, exported[i].name);
        if (s == NULL) fail_msg("dlsym(RTLD_DEFAULT, \"%s\") = NULL", exported[i].name);
        Dl_info di;
        if (dladdr(s, &di) == 0 || strcmp(di.dli_fname, self.dli_fname) != 0)
            fail_msg("%s resolves into %s, not gomalloc", exported[i].name, di.dli_fname ? di.dli_fname : "?");
        if (s != (void *)(uintptr_t)exported[i].addr)
            fail_msg("dlsym(\"%s\") = %p but the linked symbol is %p", exported[i].name, s,
                     (void *)(uintptr_t)exported[i].addr);
    }
}

static void test_family_interop(void **state) {
    (void)state;
    uint64_t before = heap_objects();
    for (int round = 0; round < 3; round++) {
        size_t n = round == 0 ? 40 : round == 1 ? 3000 : 200000;
        void *p[16];
        int k = 0;
        p[k++] = __libc_malloc(V(n));
        p[k++] = __libc_calloc(V(1), n);
        p[k++] = __libc_realloc(NULL, V(n));
        p[k++] = __libc_memalign(V(64), n);
        p[k++] = __libc_valloc(V(n));
        p[k++] = __libc_pvalloc(V(n));
        assert_int_equal(__posix_memalign(&p[k++], V(128), n), 0);
        p[k++] = memalign(V(256), n);
        p[k++] = malloc(V(n));
        p[k++] = gm_malloc(V(n));
        p[k++] = aligned_alloc(V(512), n);
        p[k++] = calloc(V(n), 1);
        for (int i = 0; i < k; i++) {
            if (p[i] == NULL) fail_msg("allocation %d of %zu B failed", i, n);
            if (!gm_owns(p[i])) fail_msg("allocation %d (%p) is not in gomalloc's heap", i, p[i]);
            assert_true(malloc_usable_size(p[i]) >= n);
            assert_int_equal(gm_usable_size(p[i]), malloc_usable_size(p[i]));
            memset(p[i], 0x33, n);
        }
        assert_int_equal(heap_objects(), before + (uint64_t)k);
        free(p[0]);
        cfree(p[1]);
        __libc_free(p[2]);
        free_sized(p[3], n);
        free(p[4]);
        free_aligned_sized(p[5], (size_t)sysconf(_SC_PAGESIZE), n);
        free(p[6]);
        cfree(p[7]);
        free_sized(p[8], n);
        free(p[9]);
        free_aligned_sized(p[10], 512, n);
        gm_free(p[11]);
        assert_int_equal(heap_objects(), before);
    }
    void *q = malloc(V(16));
    assert_non_null(q);
    q = __libc_realloc(q, V(5000));
    assert_non_null(q);
    gm_free(q);
    assert_int_equal(heap_objects(), before);
}

static void test_mallinfo2(void **state) {
    (void)state;
    size_t sizes[] = {1024, 100000, 4 * GM_MIB};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        struct mallinfo2 a = mallinfo2();
        void *p = malloc(V(sizes[i]));
        assert_non_null(p);
        memset(p, 1, sizes[i]);
        struct mallinfo2 b = mallinfo2();
        if (b.uordblks < a.uordblks + sizes[i])
            fail_msg("malloc(%zu): uordblks %zu -> %zu", sizes[i], a.uordblks, b.uordblks);
        free(p);
        struct mallinfo2 c = mallinfo2();
        if (c.uordblks > b.uordblks - sizes[i])
            fail_msg("free(%zu B): uordblks %zu -> %zu", sizes[i], b.uordblks, c.uordblks);
        if (i == 0 && c.fordblks <= b.fordblks)
            fail_msg("free(%zu B): fordblks %zu -> %zu did not grow", sizes[i], b.fordblks, c.fordblks);
    }
}

static void test_mallopt_unknown(void **state) {
    (void)state;
    int params[] = {12345, -12345, 999};
    for (size_t i = 0; i < ARRAY_LEN(params); i++) {
        errno = 55;
        assert_int_equal(mallopt(params[i], 1), 0);
        assert_int_equal(errno, 55);
    }
}

static void test_is_redirected(void **state) {
    (void)state;
    assert_int_equal(gm_is_redirected(), 1);
    void *p = malloc(V(10));
    assert_true(gm_owns(p));
    free(p);
    int local;
    assert_false(gm_owns(&local));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malloc_zero_unique),
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_free_preserves_errno),
        cmocka_unit_test(test_malloc_too_large),
        cmocka_unit_test(test_calloc_overflow),
        cmocka_unit_test(test_calloc_zero_after_reuse),
        cmocka_unit_test(test_realloc_null),
        cmocka_unit_test(test_realloc_zero_frees),
        cmocka_unit_test(test_realloc_failure_keeps_block),
        cmocka_unit_test(test_realloc_contents),
        cmocka_unit_test(test_realloc_in_place),
        cmocka_unit_test(test_realloc_moves_pages),
        cmocka_unit_test(test_reallocarray),
        cmocka_unit_test(test_usable_size),
        cmocka_unit_test(test_default_alignment),
        cmocka_unit_test(test_symbols_resolve),
        cmocka_unit_test(test_family_interop),
        cmocka_unit_test(test_mallinfo2),
        cmocka_unit_test(test_mallopt_unknown),
        cmocka_unit_test(test_is_redirected),
    };
    return cmocka_run_group_tests_name("api", tests, NULL, NULL);
}
