/* test_sizeclasses.c: recomputes gomalloc's size-class table from Go's mksizeclasses rules
 * (starting at 16 B, step 16, no 8/24 B classes) and checks every table in sizeclasses.c
 * against it: sizes, pages, objects, division magic, both lookup tables, sizeclass_of. */
#include "gm_test.h"

#include "internal.h"

#define PAGE 8192u
#define MAX_SMALL 32768u

typedef struct {
    uint32_t size, npages;
} cls_t;

static cls_t ref[128];
static unsigned nref; /* including the dummy class 0 */

static int is_pow2(uint32_t x) { return x != 0 && (x & (x - 1)) == 0; }

/* Go's makeClasses (runtime/_mkmalloc/mksizeclasses.go), starting at 16 with step 16. */
static void make_classes(void) {
    nref = 1;
    ref[0].size = 0;
    ref[0].npages = 0;
    uint32_t align = 16;
    for (uint32_t size = 16; size <= MAX_SMALL; size += align) {
        if (is_pow2(size)) {
            if (size >= 2048)
                align = 256;
            else if (size >= 128)
                align = size / 8;
            else if (size >= 32)
                align = 16;
        }
        uint32_t allocsize = PAGE;
        while (allocsize % size > allocsize / 8) allocsize += PAGE;
        uint32_t npages = allocsize / PAGE;
        if (nref > 1 && npages == ref[nref - 1].npages &&
            allocsize / size == allocsize / ref[nref - 1].size) {
            ref[nref - 1].size = size;
            continue;
        }
        assert_true(nref < ARRAY_LEN(ref));
        ref[nref].size = size;
        ref[nref].npages = npages;
        nref++;
    }
    for (unsigned i = 1; i < nref; i++) {
        uint32_t psize = ref[i].npages * PAGE;
        uint32_t grown = (psize / (psize / ref[i].size)) & ~(uint32_t)127;
        if (grown > ref[i].size) ref[i].size = grown;
    }
}

static int setup(void **state) {
    (void)state;
    make_classes();
    return 0;
}

static void test_class_count(void **state) {
    (void)state;
    assert_int_equal(GM_NUM_CLASSES, 66);
    assert_int_equal(GM_NUM_SIZE_CLASSES, 66);
    assert_int_equal(nref, GM_NUM_CLASSES);
    assert_int_equal(gm_class_to_size[0], 0);
    assert_int_equal(gm_class_to_size[GM_NUM_CLASSES - 1], 32768);
    assert_int_equal(GM_MAX_SMALL_SIZE, 32768);
}

static void test_sizes_match_recomputed(void **state) {
    (void)state;
    for (unsigned c = 1; c < GM_NUM_CLASSES; c++) {
        uint32_t size = gm_class_to_size[c];
        if (size != ref[c].size) fail_msg("class %u: size %u, Go's rules give %u", c, size, ref[c].size);
        if (gm_class_to_npages[c] != ref[c].npages)
            fail_msg("class %u (%u B): npages %u, expected %u", c, size, gm_class_to_npages[c], ref[c].npages);
        uint32_t nelems = ref[c].npages * PAGE / ref[c].size;
        if (gm_class_to_nelems[c] != nelems)
            fail_msg("class %u (%u B): nelems %u, expected %u", c, size, gm_class_to_nelems[c], nelems);
        assert_true(nelems <= GM_MAX_NELEMS);
        assert_true(nelems >= 1);
    }
}

static void test_sizes_shape(void **state) {
    (void)state;
    for (unsigned c = 1; c < GM_NUM_CLASSES; c++) {
        uint32_t size = gm_class_to_size[c];
        if (size % 16 != 0) fail_msg("class %u: size %u is not a multiple of 16", c, size);
        if (size <= gm_class_to_size[c - 1]) fail_msg("class %u: sizes not strictly increasing", c);
        assert_true(gm_class_to_npages[c] >= 1 && gm_class_to_npages[c] <= 10);
    }
    assert_int_equal(gm_class_to_size[1], 16);
}

/* Go's own table (go-allocator.md 1.2): ours must be exactly Go's rows minus 8 B and 24 B. */
static const uint16_t go_sizes[68] = {
    0, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
    288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280,
    1408, 1536, 1792, 2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528,
    6784, 6912, 8192, 9472, 9728, 10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072,
    20480, 21760, 24576, 27264, 28672, 32768};
static const uint8_t go_npages[68] = {
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 2, 1, 2, 1, 2, 1, 3, 2, 3, 1, 3, 2, 3, 4, 5, 6, 1, 7, 6, 5, 4,
    3, 5, 7, 2, 9, 7, 5, 8, 3, 10, 7, 4};
/* Go's "max waste" column in hundredths of a percent, for Go classes 5 (48 B) .. 67. */
static const uint16_t go_max_waste[68] = {
    0, 0, 0, 0, 0, 3152, 2344, 1907, 1595, 1356, 1172, 1182, 973, 959, 925, 812, 815, 662,
    586, 1216, 1180, 988, 951, 1071, 837, 682, 605, 1233, 1548, 1393, 1394, 1552, 1240,
    1241, 1555, 1400, 1400, 1557, 1245, 1246, 1559, 1247, 622, 883, 1560, 1665, 1092,
    1248, 623, 436, 337, 1561, 1428, 364, 499, 624, 1145, 999, 535, 1249, 1111, 357, 687,
    625, 1145, 1000, 491, 1250};

static double max_waste(unsigned c) {
    uint32_t size = gm_class_to_size[c], prev = gm_class_to_size[c - 1];
    uint32_t span = gm_class_to_npages[c] * PAGE;
    uint32_t objs = span / size, tail = span % size;
    return (double)((uint64_t)(size - prev - 1) * objs + tail) / span;
}

static void test_matches_go_table(void **state) {
    (void)state;
    unsigned c = 1;
    for (unsigned g = 1; g < 68; g++) {
        if (go_sizes[g] == 8 || go_sizes[g] == 24) continue;
        assert_true(c < GM_NUM_CLASSES);
        if (gm_class_to_size[c] != go_sizes[g] || gm_class_to_npages[c] != go_npages[g])
            fail_msg("class %u (%u B, %u pages) != Go class %u (%u B, %u pages)", c,
                     gm_class_to_size[c], gm_class_to_npages[c], g, go_sizes[g], go_npages[g]);
        /* From 48 B on, the previous class is the same as Go's, so the waste must be too. */
        if (go_sizes[g] >= 48) {
            double w = max_waste(c) * 10000.0;
            if (w < go_max_waste[g] - 1.0 || w > go_max_waste[g] + 1.0)
                fail_msg("class %u (%u B): max waste %.2f%%, Go says %.2f%%", c, go_sizes[g],
                         w / 100.0, go_max_waste[g] / 100.0);
        }
        c++;
    }
    assert_int_equal(c, GM_NUM_CLASSES);
}

static void test_waste_bounds(void **state) {
    (void)state;
    for (unsigned c = 1; c < GM_NUM_CLASSES; c++) {
        uint32_t size = gm_class_to_size[c];
        uint32_t span = gm_class_to_npages[c] * PAGE;
        if (span % size > span / 8)
            fail_msg("class %u (%u B): tail waste %u > 12.5%% of %u", c, size, span % size, span);
        double w = max_waste(c);
        if (size <= 32) {
            /* 16 and 32 sit at the minimum 16 B spacing: their rounding waste is what
             * 16-byte alignment forces, and no table could do better. */
            assert_int_equal(size - gm_class_to_size[c - 1], 16);
        } else if (size < 128) {
            if (w > 0.316) fail_msg("class %u (%u B): max waste %.2f%% > 31.6%%", c, size, w * 100);
        } else {
            if (w > 0.266) fail_msg("class %u (%u B): max waste %.2f%% > 26.6%%", c, size, w * 100);
        }
    }
}

static void test_divmagic(void **state) {
    (void)state;
    for (unsigned c = 1; c < GM_NUM_CLASSES; c++) {
        uint32_t size = gm_class_to_size[c];
        uint32_t want = (uint32_t)(UINT32_MAX / size + 1);
        if (gm_class_slot[c].divmagic != want)
            fail_msg("class %u (%u B): divmagic %u, expected %u", c, size, gm_class_slot[c].divmagic, want);
        uint64_t magic = gm_class_slot[c].divmagic;
        uint32_t span = gm_class_to_npages[c] * PAGE;
        for (uint64_t off = 0; off <= span; off++) {
            if (((off * magic) >> 32) != off / size)
                fail_msg("class %u (%u B): (%llu * magic) >> 32 != %llu / size", c, size,
                         (unsigned long long)off, (unsigned long long)off);
        }
    }
}

/* The free fast path's slot-start test (one multiply, internal.h mspan_is_slot) must agree
 * with real division at every byte offset of every class's span, tail waste included. */
static void test_slot_check_exact(void **state) {
    (void)state;
    static mspan s;
    for (unsigned c = 1; c < GM_NUM_CLASSES; c++) {
        memset(&s, 0, sizeof s);
        s.base = (uintptr_t)1 << 40; /* never dereferenced */
        mspan_init_small(&s, c);
        uint32_t size = gm_class_to_size[c];
        uint64_t span = (uint64_t)gm_class_to_npages[c] * PAGE;
        uint64_t used = (uint64_t)gm_class_to_nelems[c] * size;
        /* The span map entry of any page of the span, as the fast paths see it (SPANREF). */
        uint64_t ref = SPANREF(s.base, c, c);
        assert_int_equal(spanref_sizeclass(ref), c);
        assert_int_equal(spanref_freeclass(ref), c);
        assert_int_equal(spanref_freeclass8(ref), 8 * c);
        if (gm_class_slot[c].slotbytes != used)
            fail_msg("class %u (%u B): slotbytes %u, expected %llu", c, size, gm_class_slot[c].slotbytes,
                     (unsigned long long)used);
        for (uint64_t off = 0; off <= span; off++) {
            bool want = off % size == 0 && off < used;
            if (mspan_is_slot(&s, s.base + off) != want)
                fail_msg("class %u (%u B): mspan_is_slot(base+%llu) = %d, expected %d", c, size,
                         (unsigned long long)off, !want, want);
            /* The span map entry's form of the same test (free fast path, secure pop check). */
            if (spanref_offset(s.base + off, ref) != off)
                fail_msg("class %u: spanref_offset(base+%llu) = %llu", c, (unsigned long long)off,
                         (unsigned long long)spanref_offset(s.base + off, ref));
            if (class_is_slot(c, off) != want || class8_is_slot(8 * c, off) != want)
                fail_msg("class %u (%u B): class_is_slot(%llu) = %d, expected %d", c, size,
                         (unsigned long long)off, !want, want);
        }
    }
    /* Class 0 (the span map entries of large, dead and unused pages) never passes. */
    assert_int_equal(gm_class_slot[0].slotbytes, 0);
    for (uint64_t off = 0; off <= 2 * PAGE; off += 16) assert_false(class_is_slot(0, off) || class8_is_slot(0, off));
    /* Large spans and the dead-span sentinel never pass (their magic is 0). */
    memset(&s, 0, sizeof s);
    s.base = (uintptr_t)1 << 40;
    mspan_init_large(&s, 4);
    assert_false(mspan_is_slot(&s, s.base));
    assert_false(mspan_is_slot(&mspan_dead, 0));
}

static unsigned first_class_ge(size_t n) {
    for (unsigned c = 1; c < GM_NUM_CLASSES; c++)
        if (gm_class_to_size[c] >= n) return c;
    return 0;
}

static void test_lookup_tables(void **state) {
    (void)state;
    assert_int_equal(ARRAY_LEN(gm_size_to_class8_16), 65);
    assert_int_equal(ARRAY_LEN(gm_size_to_class8_128), 249);
    for (unsigned i = 0; i < 65; i++)
        if (gm_size_to_class8_16[i] != 8 * first_class_ge(16 * i))
            fail_msg("size_to_class8_16[%u] = %u, expected 8 * %u", i, gm_size_to_class8_16[i], first_class_ge(16 * i));
    for (unsigned i = 0; i < 249; i++)
        if (gm_size_to_class8_128[i] != 8 * first_class_ge(1024 + 128 * i))
            fail_msg("size_to_class8_128[%u] = %u, expected 8 * %u", i, gm_size_to_class8_128[i],
                     first_class_ge(1024 + 128 * i));
}

static void test_sizeclass_of(void **state) {
    (void)state;
    assert_int_equal(sizeclass_of(0), 1);
    for (size_t n = 0; n <= GM_MAX_SMALL_SIZE; n++) {
        unsigned want = first_class_ge(n);
        unsigned got = sizeclass_of(n);
        if (got != want) fail_msg("sizeclass_of(%zu) = %u (%u B), expected %u (%u B)", n, got,
                                  gm_class_to_size[got], want, gm_class_to_size[want]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_class_count),
        cmocka_unit_test(test_sizes_match_recomputed),
        cmocka_unit_test(test_sizes_shape),
        cmocka_unit_test(test_matches_go_table),
        cmocka_unit_test(test_waste_bounds),
        cmocka_unit_test(test_divmagic),
        cmocka_unit_test(test_slot_check_exact),
        cmocka_unit_test(test_lookup_tables),
        cmocka_unit_test(test_sizeclass_of),
    };
    return cmocka_run_group_tests_name("sizeclasses", tests, setup, NULL);
}
