/* preload_symbols.c: built WITHOUT gomalloc and run under LD_PRELOAD=libgomalloc.so. Every
 * allocation name must resolve (dlsym(RTLD_DEFAULT)) into libgomalloc.so, and blocks must
 * cross families: allocate with one name, free with another, through the preloaded library. */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <unistd.h>

#include "gm_test.h"

static const char *const names[] = {
    "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign", "aligned_alloc",
    "memalign", "valloc", "pvalloc", "malloc_usable_size", "cfree", "free_sized",
    "free_aligned_sized", "malloc_trim", "mallopt", "mallinfo2", "malloc_stats", "__libc_malloc",
    "__libc_free", "__libc_calloc", "__libc_realloc", "__libc_memalign", "__libc_valloc",
    "__libc_pvalloc", "__posix_memalign", "gm_malloc", "gm_calloc", "gm_realloc",
    "gm_reallocarray", "gm_free", "gm_free_sized", "gm_free_aligned_sized", "gm_aligned_alloc",
    "gm_posix_memalign", "gm_memalign", "gm_valloc", "gm_pvalloc", "gm_usable_size",
    "gm_read_memstats", "gm_print_stats", "gm_free_os_memory", "gm_owns", "gm_is_redirected",
};

static void *sym(const char *name) {
    void *s = dlsym(RTLD_DEFAULT, name);
    if (s == NULL) fail_msg("dlsym(RTLD_DEFAULT, \"%s\") = NULL", name);
    return s;
}

static void test_symbols_in_gomalloc(void **state) {
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        Dl_info di;
        void *s = sym(names[i]);
        if (dladdr(s, &di) == 0 || di.dli_fname == NULL || strstr(di.dli_fname, "libgomalloc") == NULL)
            fail_msg("%s resolves into %s, not libgomalloc.so", names[i],
                     di.dli_fname ? di.dli_fname : "(unknown)");
    }
}

static void test_redirected(void **state) {
    (void)state;
    int (*is_redirected)(void) = (int (*)(void))(uintptr_t)sym("gm_is_redirected");
    int (*owns)(const void *) = (int (*)(const void *))(uintptr_t)sym("gm_owns");
    assert_int_equal(is_redirected(), 1);
    void *p = malloc(100); /* this program's own PLT call */
    assert_non_null(p);
    assert_int_equal(owns(p), 1);
    free(p);
    char *s = strdup("glibc's strdup calls the interposed malloc");
    assert_non_null(s);
    assert_int_equal(owns(s), 1);
    free(s);
}

typedef void *(*alloc1_t)(size_t);
typedef void *(*alloc2_t)(size_t, size_t);
typedef void (*free_t)(void *);

static void test_cross_family(void **state) {
    (void)state;
    alloc1_t libc_malloc = (alloc1_t)(uintptr_t)sym("__libc_malloc");
    alloc2_t libc_calloc = (alloc2_t)(uintptr_t)sym("__libc_calloc");
    alloc2_t libc_memalign = (alloc2_t)(uintptr_t)sym("__libc_memalign");
    alloc1_t libc_valloc = (alloc1_t)(uintptr_t)sym("__libc_valloc");
    alloc1_t libc_pvalloc = (alloc1_t)(uintptr_t)sym("__libc_pvalloc");
    void *(*libc_realloc)(void *, size_t) = (void *(*)(void *, size_t))(uintptr_t)sym("__libc_realloc");
    int (*posix_ma)(void **, size_t, size_t) = (int (*)(void **, size_t, size_t))(uintptr_t)sym("__posix_memalign");
    free_t libc_free = (free_t)(uintptr_t)sym("__libc_free");
    free_t cfree_fn = (free_t)(uintptr_t)sym("cfree");
    void (*free_sized_fn)(void *, size_t) = (void (*)(void *, size_t))(uintptr_t)sym("free_sized");
    void (*free_aligned_sized_fn)(void *, size_t, size_t) =
        (void (*)(void *, size_t, size_t))(uintptr_t)sym("free_aligned_sized");
    int (*owns)(const void *) = (int (*)(const void *))(uintptr_t)sym("gm_owns");
    size_t sizes[] = {24, 3000, 300000};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        void *p[10];
        p[0] = libc_malloc(n);
        p[1] = libc_calloc(n, 1);
        p[2] = libc_memalign(64, n);
        p[3] = libc_valloc(n);
        p[4] = libc_pvalloc(n);
        p[5] = libc_realloc(NULL, n);
        assert_int_equal(posix_ma(&p[6], 256, n), 0);
        p[7] = memalign(128, n);
        p[8] = malloc(n);
        p[9] = aligned_alloc(32, n);
        for (int k = 0; k < 10; k++) {
            if (p[k] == NULL) fail_msg("allocation %d of %zu B failed", k, n);
            if (!owns(p[k])) fail_msg("allocation %d (%p) is not gomalloc's", k, p[k]);
            memset(p[k], 0x44, n);
        }
        free(p[0]);
        libc_free(p[1]);
        cfree_fn(p[2]);
        free_sized_fn(p[3], n);
        free_aligned_sized_fn(p[4], (size_t)sysconf(_SC_PAGESIZE), n);
        libc_free(p[5]);
        free(p[6]);
        cfree_fn(p[7]);
        libc_free(p[8]);
        free_aligned_sized_fn(p[9], 32, n);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_symbols_in_gomalloc),
        cmocka_unit_test(test_redirected),
        cmocka_unit_test(test_cross_family),
    };
    return cmocka_run_group_tests_name("preload-symbols", tests, NULL, NULL);
}
