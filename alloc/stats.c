/* stats.c: gm_read_memstats (Go's runtime.MemStats for this heap), the text and JSON
 * reports, and the glibc introspection calls built on them. Per-thread counters are summed
 * by the reader; heap-wide numbers come from mheap under its lock. Never allocates, so a
 * report can be printed from anywhere, including at exit. The field list is one X-macro:
 * the struct in gomalloc.h, the text report and the JSON report all follow it. */
#include "internal.h"

#include <fcntl.h>
#include <unistd.h>

/* X(field, unit, description) in gm_memstats order. */
#define GM_MEMSTATS_FIELDS(X)                                                         \
    X(alloc, "B", "bytes of live objects (= heap_alloc)")                             \
    X(total_alloc, "B", "cumulative bytes allocated")                                 \
    X(sys, "B", "bytes obtained from the OS for everything")                          \
    X(mallocs, "", "cumulative objects allocated")                                    \
    X(frees, "", "cumulative objects freed")                                          \
    X(heap_alloc, "B", "bytes of live objects, by size-class slot")                   \
    X(heap_sys, "B", "heap address space obtained from the OS")                       \
    X(heap_idle, "B", "heap bytes in spans with no objects")                          \
    X(heap_inuse, "B", "heap bytes in spans with objects")                            \
    X(heap_released, "B", "idle heap bytes returned to the OS")                       \
    X(heap_inuse_released, "B", "free pages inside spans with objects returned to the OS") \
    X(heap_objects, "", "live objects")                                               \
    X(mspan_inuse, "B", "bytes of span structs in use")                               \
    X(mspan_sys, "B", "bytes obtained for span structs")                              \
    X(mcache_inuse, "B", "bytes of thread caches in use")                             \
    X(mcache_sys, "B", "bytes obtained for thread caches")                            \
    X(other_sys, "B", "other metadata: arena maps, page bitmaps, heap profile")

atomic_int gm_stats_readers;

void gm_read_memstats(gm_memstats *m) {
    memset(m, 0, sizeof *m);
    if (atomic_load_explicit(&gm_init_state, memory_order_acquire) == 0) {
        for (unsigned cl = 0; cl < GM_NUM_CLASSES; cl++) m->by_size[cl].size = gm_class_to_size[cl];
        return;
    }
    /* No stop-the-world and nothing on the fast paths: holding the heap lock keeps every
     * span alive and in heap_inuse while the per-thread counters are summed, and the sum
     * reads mallocs before frees, so each object counted as live was live in a counted span
     * (heap_inuse >= heap_alloc); frees are clamped to mallocs per class (see
     * mcache_sum_counters). Threads on their fast paths are not held up; only span
     * allocation and release wait. */
    uint64_t nmalloc[GM_NUM_CLASSES], nfree[GM_NUM_CLASSES], cached_alloc, cached_free;
    mheap_stats h;
    /* Large-cache operations run without the heap lock: hold them off too (see
     * gm_stats_readers). A thread already past its check does at most one. */
    atomic_fetch_add(&gm_stats_readers, 1);
    gm_lock(&gm_heap_lock);
    mcache_sum_counters(nmalloc, nfree, &cached_alloc, &cached_free);
    mheap_read_stats_locked(&h);
    gm_unlock(&gm_heap_lock);
    atomic_fetch_sub(&gm_stats_readers, 1);
    /* A free seen without its malloc: the object came and went during the read. */
    for (unsigned cl = 1; cl < GM_NUM_CLASSES; cl++)
        if (nfree[cl] > nmalloc[cl]) nfree[cl] = nmalloc[cl];
    uint64_t lm = h.large_nmalloc + nmalloc[0], lb = h.large_alloc_bytes + cached_alloc;
    if (h.large_nfree + nfree[0] > lm) nfree[0] = lm > h.large_nfree ? lm - h.large_nfree : 0;
    if (h.large_free_bytes + cached_free > lb) cached_free = lb > h.large_free_bytes ? lb - h.large_free_bytes : 0;
    /* Large objects: those that went through the heap (mheap's counters) plus those
     * handed out from and freed into thread caches (class 0 of the per-thread counters).
     * A cached span stays in heap_inuse, like a small object on a thread's list. */
    uint64_t total_alloc = h.large_alloc_bytes + cached_alloc, total_free = h.large_free_bytes + cached_free;
    m->mallocs = h.large_nmalloc + nmalloc[0];
    m->frees = h.large_nfree + nfree[0];
    m->by_size[0].size = 0;
    m->by_size[0].mallocs = m->mallocs;
    m->by_size[0].frees = m->frees;
    for (unsigned cl = 1; cl < GM_NUM_CLASSES; cl++) {
        uint64_t sz = gm_class_to_size[cl];
        m->by_size[cl].size = (uint32_t)sz;
        m->by_size[cl].mallocs = nmalloc[cl];
        m->by_size[cl].frees = nfree[cl];
        m->mallocs += nmalloc[cl];
        m->frees += nfree[cl];
        total_alloc += nmalloc[cl] * sz;
        total_free += nfree[cl] * sz;
    }
    m->total_alloc = total_alloc;
    m->heap_alloc = m->alloc = total_alloc - total_free;
    m->heap_objects = m->mallocs - m->frees;
    m->heap_sys = h.heap_sys;
    m->heap_inuse = h.heap_inuse;
    m->heap_idle = h.heap_sys - h.heap_inuse;
    m->heap_released = h.heap_released;
    m->heap_inuse_released = h.heap_inuse_released;
    m->mspan_inuse = h.mspan_inuse;
    m->mspan_sys = h.mspan_sys;
    m->mcache_inuse = h.mcache_inuse;
    m->mcache_sys = h.mcache_sys;
    m->other_sys = h.other_sys;
    m->sys = m->heap_sys + m->mspan_sys + m->mcache_sys + m->other_sys;
}

/* Peak resident set size in bytes, from /proc/self/status (VmHWM), or 0. */
static uint64_t peak_rss(void) {
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    const char *p = strstr(buf, "VmHWM:");
    if (p == NULL) return 0;
    p += 6;
    while (*p == ' ' || *p == '\t') p++;
    uint64_t kb = 0;
    while (*p >= '0' && *p <= '9') kb = kb * 10 + (uint64_t)(*p++ - '0');
    return kb << 10;
}

static void print_text(gm_buf *b, const gm_memstats *m) {
    gm_buf_puts(b, "gomalloc: heap report (Go MemStats fields)\n");
#define X(field, unit, desc)                      \
    gm_buf_puts(b, "gomalloc:   ");               \
    gm_buf_puts(b, #field);                       \
    _Static_assert(sizeof #field <= 20, "a field name wider than the report's column"); \
    gm_buf_putn(b, "                    ", 20 - strlen(#field)); \
    gm_buf_putu_w(b, m->field, 14);               \
    gm_buf_puts(b, unit[0] ? " B  " : "    ");    \
    gm_buf_puts(b, desc);                         \
    gm_buf_puts(b, "\n");
    GM_MEMSTATS_FIELDS(X)
#undef X
    gm_buf_puts(b, "gomalloc:   peak_rss            ");
    gm_buf_putu_w(b, peak_rss(), 14);
    gm_buf_puts(b, " B  peak resident set (VmHWM)\n");
    gm_buf_puts(b, "gomalloc:   class   size    live objs       mallocs         frees    live bytes\n");
    for (unsigned cl = 0; cl < GM_NUM_CLASSES; cl++) {
        uint64_t ma = m->by_size[cl].mallocs, fr = m->by_size[cl].frees;
        if (ma == 0) continue;
        gm_buf_puts(b, "gomalloc:   ");
        gm_buf_putu_w(b, cl, 5);
        if (cl == 0) gm_buf_puts(b, "  large");
        else gm_buf_putu_w(b, m->by_size[cl].size, 7);
        gm_buf_putu_w(b, ma - fr, 13);
        gm_buf_putu_w(b, ma, 14);
        gm_buf_putu_w(b, fr, 14);
        if (cl != 0) gm_buf_putu_w(b, (ma - fr) * m->by_size[cl].size, 14);
        else gm_buf_puts(b, "             -");
        gm_buf_puts(b, "\n");
    }
}

static void print_json(gm_buf *b, const gm_memstats *m) {
    gm_buf_puts(b, "{\"gomalloc\":{");
#define X(field, unit, desc)       \
    gm_buf_puts(b, "\"" #field "\":"); \
    gm_buf_putu(b, m->field);      \
    gm_buf_puts(b, ",");
    GM_MEMSTATS_FIELDS(X)
#undef X
    gm_buf_puts(b, "\"peak_rss\":");
    gm_buf_putu(b, peak_rss());
    gm_buf_puts(b, ",\"by_size\":[");
    for (unsigned cl = 0; cl < GM_NUM_CLASSES; cl++) {
        gm_buf_puts(b, cl ? ",{\"size\":" : "{\"size\":");
        gm_buf_putu(b, m->by_size[cl].size);
        gm_buf_puts(b, ",\"mallocs\":");
        gm_buf_putu(b, m->by_size[cl].mallocs);
        gm_buf_puts(b, ",\"frees\":");
        gm_buf_putu(b, m->by_size[cl].frees);
        gm_buf_puts(b, "}");
    }
    gm_buf_puts(b, "]}}\n");
}

void gm_print_stats(int fd) {
    gm_memstats m;
    gm_read_memstats(&m);
    gm_buf b;
    gm_buf_init(&b, fd);
    print_text(&b, &m);
    gm_buf_flush(&b);
}

/* Runs at exit (and at dlclose). Only prints: the heap stays intact for destructors that
 * run after it and still free memory. */
static int gm_report_fd = STDERR_FILENO;

/* Programs such as coreutils close stderr before exit handlers run; when a report is
 * wanted, keep a private duplicate of fd 2 (close-on-exec, numbered high to stay out of
 * the program's way). Called once at init. */
void stats_init(void) {
    if (gm_opt.stats == GM_STATS_OFF) return;
    int fd = os_dup_high(STDERR_FILENO);
    if (fd >= 0) gm_report_fd = fd;
}

__attribute__((destructor)) static void stats_at_exit(void) {
    if (atomic_load_explicit(&gm_init_state, memory_order_acquire) == 0 || gm_opt.stats == GM_STATS_OFF) return;
    gm_memstats m;
    gm_read_memstats(&m);
    gm_buf b;
    gm_buf_init(&b, gm_report_fd);
    if (gm_opt.stats == GM_STATS_JSON) print_json(&b, &m);
    else print_text(&b, &m);
    gm_buf_flush(&b);
}
