/* fuzz_ops.c: libFuzzer harness over the gm_* API. The input is an op stream (malloc,
 * calloc, realloc, free, aligned_alloc, posix_memalign, memalign, usable_size) with sizes
 * biased to size-class edges, checked against a shadow model of every live block. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define NSLOTS 64
#define LIVE_BUDGET ((size_t)96 << 20) /* bytes live at once, so RSS stays bounded */

typedef struct {
    unsigned char *p;
    size_t size;  /* requested bytes: the model's contents */
    size_t align; /* requested alignment, 0 = none */
    uint32_t id;  /* pattern seed */
} slot;

static slot slots[NSLOTS];
static size_t live_bytes;
static uint32_t next_id;

#define FAIL(...)                         \
    do {                                  \
        fprintf(stderr, "fuzz_ops: ");    \
        fprintf(stderr, __VA_ARGS__);     \
        fputc('\n', stderr);              \
        abort();                          \
    } while (0)

/* The model's contents: byte i of block id is byte i % 8 of word(id, i / 8). Positional,
 * so a realloc'ed prefix keeps matching; a shifted or foreign copy does not. The loops
 * are kept out of libFuzzer's coverage (NOCOV): they would dominate its time and add no
 * signal. */
#define NOCOV __attribute__((no_sanitize("coverage"), noinline))
static inline uint64_t word(uint32_t id, size_t w) {
    uint64_t x = ((uint64_t)w + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)id * 0xBF58476D1CE4E5B9ull;
    return x ^ (x >> 31);
}
static inline unsigned char pat(uint32_t id, size_t i) { return (unsigned char)(word(id, i >> 3) >> ((i & 7) * 8)); }

NOCOV static void fill(unsigned char *p, size_t from, size_t to, uint32_t id) {
    size_t i = from;
    for (; i < to && (i & 7) != 0; i++) p[i] = pat(id, i);
    for (; i + 8 <= to; i += 8) {
        uint64_t x = word(id, i >> 3);
        memcpy(p + i, &x, 8);
    }
    for (; i < to; i++) p[i] = pat(id, i);
}
NOCOV static size_t mismatch(const unsigned char *p, size_t n, uint32_t id) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        if (x != word(id, i >> 3)) break;
    }
    for (; i < n; i++)
        if (p[i] != pat(id, i)) return i;
    return SIZE_MAX;
}
NOCOV static size_t nonzero(const unsigned char *p, size_t n) {
    size_t i = 0;
    for (uint64_t x; i + 8 <= n; i += 8) {
        memcpy(&x, p + i, 8);
        if (x != 0) break;
    }
    for (; i < n; i++)
        if (p[i] != 0) return i;
    return SIZE_MAX;
}
static void verify(const slot *s, size_t n, const char *when) {
    size_t i = mismatch(s->p, n, s->id);
    if (i != SIZE_MAX)
        FAIL("%s: block %p (size %zu, id %u) byte %zu is %#x, expected %#x", when, (void *)s->p, s->size,
             s->id, i, s->p[i], pat(s->id, i));
}

/* ---- input decoding ---- */
typedef struct {
    const uint8_t *d;
    size_t n;
} input;
static uint8_t byte(input *in) {
    if (in->n == 0) return 0;
    in->n--;
    return *in->d++;
}
static uint16_t u16(input *in) { return (uint16_t)(byte(in) | byte(in) << 8); }

/* Sizes: class edges (size-1, size, size+1), small random, page multiples +-1 for large
 * objects, the small/large boundary, and occasionally several MiB. */
static size_t pick_size(input *in) {
    uint8_t mode = byte(in);
    switch (mode & 7) {
    case 0: case 1: case 2: {
        unsigned cl = 1 + byte(in) % (GM_NUM_CLASSES - 1);
        return (size_t)gm_class_to_size[cl] + (size_t)((int)(mode >> 3) % 3 - 1);
    }
    case 3: return u16(in) % 4097;
    case 4: return ((size_t)(byte(in) + 1) << GM_PAGE_SHIFT) + (size_t)((int)(mode >> 3) % 3 - 1);
    case 5: return GM_MAX_SMALL_SIZE + (size_t)((int)(mode >> 3) % 5 - 2);
    case 6: return (size_t)u16(in) << 4;
    default: return (mode >> 3) == 31 ? ((size_t)(byte(in) % 16 + 1) << 20) + u16(in) : byte(in);
    }
}
static size_t pick_align(input *in) { return (size_t)1 << (byte(in) % 22); } /* 1 .. 2 MiB */

/* ---- model ---- */
static void check_new(slot *s, const char *what) {
    uintptr_t a = (uintptr_t)s->p;
    if (a % 16 != 0 && s->size >= 16) FAIL("%s(%zu) = %p: not 16-byte aligned", what, s->size, (void *)s->p);
    if (s->align > 1 && a % s->align != 0) FAIL("%s(%zu, %zu) = %p: misaligned", what, s->align, s->size, (void *)s->p);
    size_t us = gm_usable_size(s->p);
    if (us < s->size) FAIL("%s(%zu) = %p: usable size %zu", what, s->size, (void *)s->p, us);
    if (!gm_owns(s->p)) FAIL("%s: gm_owns(%p) is false", what, (void *)s->p);
    for (int i = 0; i < NSLOTS; i++) /* no two live blocks may overlap */
        if (&slots[i] != s && slots[i].p != NULL && slots[i].p < s->p + (s->size ? s->size : 1) &&
            s->p < slots[i].p + (slots[i].size ? slots[i].size : 1))
            FAIL("%s: %p+%zu overlaps live %p+%zu", what, (void *)s->p, s->size, (void *)slots[i].p, slots[i].size);
}

static void drop(slot *s) {
    if (s->p == NULL) return;
    verify(s, s->size, "before free");
    gm_free(s->p);
    live_bytes -= s->size;
    s->p = NULL;
}

static void place(slot *s, void *p, size_t size, size_t align, const char *what) {
    if (p == NULL) {
        if (errno != ENOMEM) FAIL("%s(%zu) returned NULL with errno %d", what, size, errno);
        return;
    }
    s->p = p;
    s->size = size;
    s->align = align;
    s->id = ++next_id;
    live_bytes += size;
    check_new(s, what);
    fill(s->p, 0, size, s->id);
}

static void op(input *in) {
    uint8_t o = byte(in);
    slot *s = &slots[byte(in) % NSLOTS];
    size_t size = pick_size(in);
    if (live_bytes + size > LIVE_BUDGET) size &= 0xfff;
    errno = 0;
    switch (o % 9) {
    case 0: drop(s); place(s, gm_malloc(size), size, 0, "malloc"); break;
    case 1: { /* calloc: n * m, zeroed */
        drop(s);
        size_t m = 1 + byte(in) % 64, n = size / m;
        unsigned char *p = gm_calloc(n, m);
        size_t z = p != NULL ? nonzero(p, n * m) : SIZE_MAX;
        if (z != SIZE_MAX) FAIL("calloc(%zu, %zu) = %p: byte %zu is %#x", n, m, (void *)p, z, p[z]);
        place(s, p, n * m, 0, "calloc");
        break;
    }
    case 2: { /* realloc keeps min(old, new) bytes */
        if (s->p == NULL) {
            place(s, gm_realloc(NULL, size), size, 0, "realloc(NULL)");
            break;
        }
        verify(s, s->size, "before realloc");
        if (size == 0) { /* frees, returns NULL */
            if (gm_realloc(s->p, 0) != NULL) FAIL("realloc(p, 0) returned non-NULL");
            live_bytes -= s->size;
            s->p = NULL;
            break;
        }
        unsigned char *q = gm_realloc(s->p, size);
        if (q == NULL) {
            if (errno != ENOMEM) FAIL("realloc(%zu) NULL with errno %d", size, errno);
            verify(s, s->size, "after failed realloc");
            break;
        }
        size_t keep = s->size < size ? s->size : size;
        live_bytes = live_bytes - s->size + size;
        s->p = q;
        s->align = 0;
        size_t old = s->size;
        s->size = size;
        check_new(s, "realloc");
        verify(s, keep, "after realloc");
        if (size > old) fill(q, old, size, s->id);
        break;
    }
    case 3: drop(s); break;
    case 4: { /* aligned_alloc: any power of two, any size (C17) */
        drop(s);
        size_t a = pick_align(in);
        place(s, gm_aligned_alloc(a, size), size, a, "aligned_alloc");
        break;
    }
    case 5: { /* posix_memalign: EINVAL below sizeof(void *), out untouched on failure */
        drop(s);
        size_t a = pick_align(in);
        void *p = &slots[0];
        int rc = gm_posix_memalign(&p, a, size);
        if (a < sizeof(void *)) {
            if (rc != EINVAL || p != &slots[0]) FAIL("posix_memalign(%zu) gave %d", a, rc);
            break;
        }
        if (rc != 0) {
            if (rc != ENOMEM || p != &slots[0]) FAIL("posix_memalign(%zu, %zu) gave %d", a, size, rc);
            break;
        }
        errno = 0;
        place(s, p, size, a, "posix_memalign");
        break;
    }
    case 6: { /* memalign rounds a non-power-of-two alignment up */
        drop(s);
        size_t a = 1 + byte(in) * 33u;
        size_t pow = 1;
        while (pow < a) pow <<= 1;
        place(s, gm_memalign(a, size), size, pow, "memalign");
        break;
    }
    case 7: /* usable_size: stable, and the slack up to it is writable */
        if (s->p != NULL) {
            size_t us = gm_usable_size(s->p);
            if (us < s->size) FAIL("usable size of %p shrank to %zu < %zu", (void *)s->p, us, s->size);
            if (us - s->size <= 4096) memset(s->p + s->size, 0xa5, us - s->size);
        }
        break;
    default: { /* a burst of one size, freed in reverse: fills and drains a free list */
        size_t n = 1 + byte(in) % 128, sz = size & 0x3fff;
        void *b[128];
        for (size_t i = 0; i < n; i++) {
            b[i] = gm_malloc(sz);
            if (b[i] == NULL) FAIL("burst malloc(%zu) failed", sz);
            memset(b[i], (int)i, sz < 32 ? sz : 32);
        }
        for (size_t i = n; i-- > 0;) {
            for (size_t j = 0; j < (sz < 32 ? sz : 32); j++)
                if (((unsigned char *)b[i])[j] != (unsigned char)i) FAIL("burst block %zu corrupted", i);
            gm_free(b[i]);
        }
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    input in = {data, size};
    while (in.n > 0) op(&in);
    for (int i = 0; i < NSLOTS; i++) drop(&slots[i]); /* each input starts from an empty model */
    if (live_bytes != 0) FAIL("model leaked %zu bytes", live_bytes);
    return 0;
}
