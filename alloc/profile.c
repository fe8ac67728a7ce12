/* profile.c: heap profiling the way Go does it (MemProfileRate): each thread's mcache counts
 * down bytes to the next sample, a sampled allocation records its stack in a (stack, size)
 * bucket and a side table maps the sampled pointer to the bucket so its free is counted,
 * and profiles are written in the legacy text format google-pprof and go tool pprof read.
 * Memory comes straight from the OS (other_sys), and only once something is sampled. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PROF_MAX_DEPTH 64
#define PROF_CHUNK ((size_t)256 << 10) /* bucket storage comes in chunks this big */

typedef struct prof_bucket {
    struct prof_bucket *next; /* hash chain */
    uint64_t hash;
    uint64_t size;            /* slot bytes of each object in the bucket */
    uint64_t allocs, frees;   /* sampled objects */
    uint32_t depth;
    uintptr_t stack[];        /* return addresses, innermost first */
} prof_bucket;

typedef struct prof_entry {
    uintptr_t ptr; /* 0 = empty slot */
    prof_bucket *bucket;
} prof_entry;

/* Everything below the lock is guarded by it. The lock is a leaf: nothing else is taken
 * while it is held (os_alloc_meta and os_unmap are plain syscalls). */
static struct {
    gm_lock_t lock;
    prof_bucket **table; /* bucket hash heads, table_cap a power of two */
    size_t table_cap, nbuckets;
    char *chunk, *chunk_end;
    prof_entry *live;    /* open addressing, linear probing, live_cap a power of two */
    size_t live_cap, nlive;
    int64_t rate_used;   /* the last nonzero rate a sample was drawn at (for the header) */
    uint64_t dropped;    /* samples lost to a failed mapping */
} prof = {.lock = GM_LOCK_INIT};

atomic_uint profile_rate_epoch;
static atomic_uint_fast64_t prof_sys;
static atomic_uint prof_dumps; /* profiles written so far: the %n in a path */
static __thread bool prof_busy __attribute__((tls_model("initial-exec")));

uint64_t profile_sys_bytes(void) { return atomic_load_explicit(&prof_sys, memory_order_relaxed); }

static void *prof_map(size_t size) {
    void *p = os_alloc_meta(size);
    if (p != NULL) atomic_fetch_add_explicit(&prof_sys, size, memory_order_relaxed);
    return p;
}

static void prof_unmap(void *p, size_t size) {
    os_unmap(p, size);
    atomic_fetch_sub_explicit(&prof_sys, size, memory_order_relaxed);
}

/* ---- the countdown ---- */

/* Natural log of u in (0, 1], without libm: u = m * 2^e with m in [1, 2), and
 * ln m = 2 atanh((m-1)/(m+1)) by its series (|s| < 1/3, so six terms give ~1e-7). */
static double ln_unit(double u) {
    uint64_t bits;
    memcpy(&bits, &u, sizeof bits);
    int e = (int)((bits >> 52) & 0x7ff) - 1023;
    bits = (bits & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1023) << 52);
    double m;
    memcpy(&m, &bits, sizeof m);
    double s = (m - 1) / (m + 1), s2 = s * s;
    double series = s * (2 + s2 * (2.0 / 3 + s2 * (2.0 / 5 + s2 * (2.0 / 7 + s2 * (2.0 / 9 + s2 * (2.0 / 11))))));
    return e * 0.69314718055994530942 + series;
}

/* Go's nextSample: an exponential gap with mean = rate makes every byte equally likely to
 * be sampled, so an object of s bytes is sampled with probability 1 - exp(-s/rate),
 * which is what pprof divides by. pre: rate >= 2. */
static double gap_bytes(mcache *c, int64_t rate) {
    uint64_t r = gm_rng_next(&c->rng);
    double u = (double)((r >> 11) + 1) * 0x1.0p-53; /* (0, 1] */
    return -ln_unit(u) * (double)rate;
}

#define GAP_NEVER (UINT64_C(1) << 62) /* rate 0: more objects than any thread allocates */

uint64_t profile_class_gap(mcache *c, unsigned cl) {
    int64_t rate = __atomic_load_n(&gm_opt.memprofilerate, __ATOMIC_RELAXED);
    if (rate <= 0) return GAP_NEVER;
    if (rate == 1) return 0;
    /* A byte countdown of g samples the allocation that takes it below zero: with objects
     * of s bytes, the (floor(g/s) + 1)-th. Class 0 (large objects) counts bytes. */
    double gap = gap_bytes(c, rate) / (cl == 0 ? 1.0 : (double)gm_class_to_size[cl]);
    return gap >= 0x1.0p62 ? GAP_NEVER : (uint64_t)gap;
}

void profile_reset_countdown(mcache *c) {
    c->sample_epoch = atomic_load_explicit(&profile_rate_epoch, memory_order_relaxed);
    /* Each small class draws at its next malloc, which this sends to the slow path. */
    for (unsigned cl = 1; cl < GM_NUM_CLASSES; cl++) {
        c->sample_drawn[cl] = 0;
        c->sample_at[cl] = c->list[cl].nmalloc;
    }
    c->next_sample = (int64_t)profile_class_gap(c, 0);
}

int64_t gm_set_memprofile_rate(int64_t rate) {
    if (!gm_ensure_init()) return -1;
    int64_t old = __atomic_exchange_n(&gm_opt.memprofilerate, rate < 0 ? 0 : rate, __ATOMIC_RELAXED);
    /* Every thread redraws its countdown at its next slow-path allocation. */
    atomic_fetch_add_explicit(&profile_rate_epoch, 1, memory_order_relaxed);
    mcache *c = gm_tls_mcache;
    if (c != &mcache_new_marker && c != &mcache_fallback_marker) profile_reset_countdown(c);
    return old;
}

/* ---- buckets and the side table (under prof.lock) ---- */

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v;
    h *= 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}

static bool table_grow(void) {
    size_t ncap = prof.table_cap ? prof.table_cap * 2 : 512; /* one page of heads */
    prof_bucket **nt = prof_map(ncap * sizeof *nt);
    if (nt == NULL) return false;
    for (size_t i = 0; i < prof.table_cap; i++) {
        for (prof_bucket *b = prof.table[i], *next; b != NULL; b = next) {
            next = b->next;
            size_t j = b->hash & (ncap - 1);
            b->next = nt[j];
            nt[j] = b;
        }
    }
    if (prof.table) prof_unmap(prof.table, prof.table_cap * sizeof *prof.table);
    prof.table = nt;
    prof.table_cap = ncap;
    return true;
}

static prof_bucket *bucket_get(const uintptr_t *pcs, unsigned depth, uint64_t size) {
    uint64_t h = mix(size, depth);
    for (unsigned i = 0; i < depth; i++) h = mix(h, pcs[i]);
    if (prof.table != NULL) {
        for (prof_bucket *b = prof.table[h & (prof.table_cap - 1)]; b != NULL; b = b->next)
            if (b->hash == h && b->size == size && b->depth == depth &&
                memcmp(b->stack, pcs, depth * sizeof *pcs) == 0)
                return b;
    }
    if (prof.nbuckets >= prof.table_cap && !table_grow()) return NULL;
    size_t need = sizeof(prof_bucket) + depth * sizeof *pcs;
    if ((size_t)(prof.chunk_end - prof.chunk) < need) {
        char *c = prof_map(PROF_CHUNK);
        if (c == NULL) return NULL;
        prof.chunk = c;
        prof.chunk_end = c + PROF_CHUNK;
    }
    prof_bucket *b = (prof_bucket *)prof.chunk;
    prof.chunk += need;
    b->hash = h;
    b->size = size;
    b->depth = depth;
    memcpy(b->stack, pcs, depth * sizeof *pcs);
    size_t j = h & (prof.table_cap - 1);
    b->next = prof.table[j];
    prof.table[j] = b;
    prof.nbuckets++;
    return b;
}

static size_t live_home(uintptr_t p, size_t cap) { return (size_t)(((uint64_t)p * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1); }

static bool live_insert(uintptr_t p, prof_bucket *b);

static bool live_grow(void) {
    size_t ncap = prof.live_cap ? prof.live_cap * 2 : 256; /* one page; doubles as samples live */
    prof_entry *old = prof.live;
    size_t ocap = prof.live_cap;
    prof_entry *n = prof_map(ncap * sizeof *n);
    if (n == NULL) return false;
    prof.live = n;
    prof.live_cap = ncap;
    prof.nlive = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].ptr != 0) live_insert(old[i].ptr, old[i].bucket);
    if (old) prof_unmap(old, ocap * sizeof *old);
    return true;
}

static bool live_insert(uintptr_t p, prof_bucket *b) {
    if ((prof.nlive + 1) * 2 > prof.live_cap && !live_grow()) return false;
    size_t mask = prof.live_cap - 1;
    size_t i = live_home(p, prof.live_cap);
    while (prof.live[i].ptr != 0) i = (i + 1) & mask;
    prof.live[i].ptr = p;
    prof.live[i].bucket = b;
    prof.nlive++;
    return true;
}

/* Removes p and returns its bucket, or NULL. Deletion shifts later entries of the probe
 * run back, so lookups never need tombstones. */
static prof_bucket *live_remove(uintptr_t p) {
    if (prof.live_cap == 0) return NULL;
    size_t mask = prof.live_cap - 1;
    size_t i = live_home(p, prof.live_cap);
    while (prof.live[i].ptr != p) {
        if (prof.live[i].ptr == 0) return NULL;
        i = (i + 1) & mask;
    }
    prof_bucket *b = prof.live[i].bucket;
    prof.nlive--;
    for (size_t j = i;;) {
        prof.live[i].ptr = 0;
        for (;;) {
            j = (j + 1) & mask;
            if (prof.live[j].ptr == 0) return b;
            size_t k = live_home(prof.live[j].ptr, prof.live_cap);
            /* Entry j may move to the hole at i unless its home lies cyclically in (i, j]. */
            bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
            if (!stays) break;
        }
        prof.live[i] = prof.live[j];
        i = j;
    }
}

void profile_alloc(void *p, size_t slot) {
    if (prof_busy) return; /* an allocation made by the unwinder itself */
    prof_busy = true;
    uintptr_t pcs[PROF_MAX_DEPTH];
    unsigned depth = (unsigned)traceback_capture(pcs, PROF_MAX_DEPTH, TRACEBACK_AUTO);
    mspan *s = span_of((uintptr_t)p);
    gm_lock(&prof.lock);
    prof_bucket *b = bucket_get(pcs, depth, slot);
    if (b != NULL && live_insert((uintptr_t)p, b)) {
        b->allocs++;
        int64_t rate = __atomic_load_n(&gm_opt.memprofilerate, __ATOMIC_RELAXED);
        if (rate > 0) prof.rate_used = rate;
        /* Until this sample is closed, frees in the span take the slow path. The object
         * is not yet handed out, so no free of it can race with this store. */
        uint16_t n = __atomic_load_n(&s->nsampled, __ATOMIC_RELAXED);
        __atomic_store_n(&s->sampled_one, n == 0 ? (uintptr_t)p : 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->nsampled, (uint16_t)(n + 1), __ATOMIC_RELAXED);
        mheap_set_freeclass(s, 0);
    } else {
        prof.dropped++;
    }
    gm_unlock(&prof.lock);
    prof_busy = false;
}

void profile_free(mspan *s, void *p) {
    /* A span usually holds one sample: the other objects' frees, which its free class 0
     * sends here too, leave without the global lock and the table lookup (86 -> 191
     * instructions per malloc+free pair when spans of the working set held samples).
     * A sample of p was recorded before p was handed out, so a free of p sees it. */
    uintptr_t one = __atomic_load_n(&s->sampled_one, __ATOMIC_RELAXED);
    if (one != 0 && one != (uintptr_t)p && __atomic_load_n(&s->nsampled, __ATOMIC_RELAXED) == 1) return;
    gm_lock(&prof.lock);
    prof_bucket *b = live_remove((uintptr_t)p);
    if (b != NULL) {
        b->frees++;
        uint16_t n = (uint16_t)(__atomic_load_n(&s->nsampled, __ATOMIC_RELAXED) - 1);
        __atomic_store_n(&s->sampled_one, 0, __ATOMIC_RELAXED); /* the one left, if any, is not known */
        __atomic_store_n(&s->nsampled, n, __ATOMIC_RELAXED);
        if (n == 0) mheap_set_freeclass(s, s->sizeclass);
    }
    gm_unlock(&prof.lock);
}

/* Sums every bucket. pre: prof.lock held. */
static void totals_locked(uint64_t *io, uint64_t *ib, uint64_t *ao, uint64_t *ab) {
    *io = *ib = *ao = *ab = 0;
    for (size_t i = 0; i < prof.table_cap; i++)
        for (const prof_bucket *b = prof.table[i]; b != NULL; b = b->next) {
            *io += b->allocs - b->frees;
            *ib += (b->allocs - b->frees) * b->size;
            *ao += b->allocs;
            *ab += b->allocs * b->size;
        }
}

void profile_totals(uint64_t *inuse_objs, uint64_t *inuse_bytes, uint64_t *alloc_objs, uint64_t *alloc_bytes) {
    gm_lock(&prof.lock);
    totals_locked(inuse_objs, inuse_bytes, alloc_objs, alloc_bytes);
    gm_unlock(&prof.lock);
}

void profile_lock(void) { gm_lock(&prof.lock); }
void profile_unlock(void) { gm_unlock(&prof.lock); }

/* ---- writing profiles ---- */

static void put_counts(gm_buf *b, uint64_t io, uint64_t ib, uint64_t ao, uint64_t ab) {
    gm_buf_putu(b, io);
    gm_buf_puts(b, ": ");
    gm_buf_putu(b, ib);
    gm_buf_puts(b, " [");
    gm_buf_putu(b, ao);
    gm_buf_puts(b, ": ");
    gm_buf_putu(b, ab);
    gm_buf_puts(b, "]");
}

/* Copies the executable mappings of /proc/self/maps (all pprof looks at), without the
 * " (deleted)" that follows a replaced file: google-pprof's patterns are anchored at the
 * end of the line and would leave such frames unsymbolized. */
static void copy_exec_maps(gm_buf *b) {
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char in[4096], line[PATH_MAX + 256];
    size_t len = 0;
    bool overlong = false;
    for (;;) {
        ssize_t n = read(fd, in, sizeof in);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++) {
            if (in[i] != '\n') {
                if (len < sizeof line) line[len++] = in[i];
                else overlong = true;
                continue;
            }
            static const char deleted[] = " (deleted)";
            size_t dl = sizeof deleted - 1;
            if (len > dl && memcmp(line + len - dl, deleted, dl) == 0) len -= dl;
            /* "start-end perms ...": keep lines whose permissions say executable. */
            const char *sp = memchr(line, ' ', len);
            if (!overlong && sp != NULL && (size_t)(sp - line) + 4 < len && sp[3] == 'x') {
                gm_buf_putn(b, line, len);
                gm_buf_puts(b, "\n");
            }
            len = 0;
            overlong = false;
        }
    }
    close(fd);
}

/* The legacy heap profile: a header with the totals and the rate, one line per bucket
 * (in-use objects: bytes [allocated objects: bytes] @ return addresses, caller of malloc
 * first), then the executable mappings so pprof can symbolize addresses in PIE programs
 * and shared libraries. Counts are samples; both pprofs scale them by
 * 1 / (1 - exp(-size/rate)) for "heap_v2/rate". Go's runtime writes "heap/2*rate"
 * instead, which google-pprof reads as a different (linear) sampling scheme and on which
 * it divides by zero for records with nothing in use; docs/profiling.md has the details. */
static void write_profile(gm_buf *b) {
    uint64_t io, ib, ao, ab;
    gm_lock(&prof.lock); /* one hold for header and records, so the header is their sum */
    totals_locked(&io, &ib, &ao, &ab);
    int64_t now = __atomic_load_n(&gm_opt.memprofilerate, __ATOMIC_RELAXED);
    int64_t rate = prof.rate_used > 0 ? prof.rate_used : now > 0 ? now : 524288;
    gm_buf_puts(b, "heap profile: ");
    put_counts(b, io, ib, ao, ab);
    gm_buf_puts(b, " @ heap_v2/");
    gm_buf_putu(b, (uint64_t)rate);
    gm_buf_puts(b, "\n");
    for (size_t i = 0; i < prof.table_cap; i++)
        for (const prof_bucket *k = prof.table[i]; k != NULL; k = k->next) {
            uint64_t live = k->allocs - k->frees;
            put_counts(b, live, live * k->size, k->allocs, k->allocs * k->size);
            gm_buf_puts(b, " @");
            for (unsigned d = 0; d < k->depth; d++) {
                gm_buf_puts(b, " ");
                gm_buf_putx(b, k->stack[d]); /* "0x..." */
            }
            gm_buf_puts(b, "\n");
        }
    gm_unlock(&prof.lock);
    gm_buf_puts(b, "\nMAPPED_LIBRARIES:\n");
    copy_exec_maps(b);
    gm_buf_flush(b);
}

/* Expands %p (pid), %n (this process's dump number) and %% in a path. False if too long. */
/* Writes v in decimal at the end of num[24]; returns where it starts (NUL-terminated). */
static const char *dec(char num[24], uint64_t v) {
    char *e = num + 24;
    *--e = '\0';
    do *--e = (char)('0' + v % 10); while ((v /= 10) != 0);
    return e;
}

static bool expand_path(const char *in, char *out, size_t cap, unsigned seq) {
    size_t o = 0;
    for (const char *s = in; *s; s++) {
        char num[24];
        const char *put = num;
        size_t n;
        if (s[0] == '%' && (s[1] == 'p' || s[1] == 'n')) {
            put = dec(num, s[1] == 'p' ? (uint64_t)getpid() : seq);
            n = strlen(put);
            s++;
        } else {
            if (s[0] == '%' && s[1] == '%') s++;
            num[0] = *s;
            n = 1;
        }
        if (o + n + 1 > cap) return false;
        memcpy(out + o, put, n);
        o += n;
    }
    out[o] = '\0';
    return true;
}

int gm_write_heap_profile(const char *path) {
    if (!gm_ensure_init()) {
        errno = ENOMEM;
        return -1;
    }
    if (path == NULL || path[0] == '\0') path = gm_opt.memprofile ? (const char *)(intptr_t)gm_opt.memprofile : "gomalloc.%p.%n.heap";
    unsigned seq = atomic_fetch_add_explicit(&prof_dumps, 1, memory_order_relaxed);
    char final[4096], tmp[4096 + 32], num[24];
    if (!expand_path(path, final, sizeof final, seq)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    /* Written beside the target and renamed over it, so a reader (or a forked child that
     * writes the same path) never sees half a profile. */
    size_t len = strlen(final);
    memcpy(tmp, final, len);
    memcpy(tmp + len, ".tmp.", 5);
    strcpy(tmp + len + 5, dec(num, (uint64_t)getpid())); /* <= 20 digits: fits the 32 spare */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    gm_buf b;
    gm_buf_init(&b, fd);
    write_profile(&b);
    int err = b.failed ? EIO : 0;
    if (close(fd) != 0 && err == 0) err = errno;
    if (err == 0 && rename(tmp, final) != 0) err = errno;
    if (err != 0) {
        unlink(tmp);
        errno = err;
        return -1;
    }
    return 0;
}

static void warn_write(const char *why) {
    gm_buf b;
    gm_buf_init(&b, STDERR_FILENO);
    gm_buf_puts(&b, "gomalloc: could not write heap profile (");
    gm_buf_puts(&b, why);
    gm_buf_puts(&b, "): errno ");
    gm_buf_puti(&b, errno);
    gm_buf_puts(&b, "\n");
    gm_buf_flush(&b);
}

/* ---- memprofile_signal: a thread that writes a profile each time the signal arrives
 * (writing from the handler itself would not be async-signal-safe) ---- */

static atomic_int sig_count; /* futex word: signals received */
static bool writer_started;

static void on_profile_signal(int sig) {
    (void)sig;
    int saved = errno;
    atomic_fetch_add_explicit(&sig_count, 1, memory_order_release);
    syscall(SYS_futex, &sig_count, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    errno = saved;
}

static void *profile_writer(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* the program's signals go to its own threads */
    int seen = 0;
    for (;;) {
        int now = atomic_load_explicit(&sig_count, memory_order_acquire);
        if (now == seen) {
            syscall(SYS_futex, &sig_count, FUTEX_WAIT_PRIVATE, now, NULL, NULL, 0);
            continue;
        }
        seen = now;
        if (gm_write_heap_profile(NULL) != 0) warn_write("on signal");
    }
    return NULL;
}

/* At load, after libc is up (pthread_create is safe here, not inside an arbitrary malloc
 * call): start the signal writer when memprofile_signal asks for one. */
__attribute__((constructor)) static void profile_at_load(void) {
    if (!gm_ensure_init() || gm_opt.memprofile_signal <= 0 || writer_started) return;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 << 10);
    if (pthread_create(&t, &attr, profile_writer, NULL) == 0) {
        writer_started = true;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_profile_signal;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        sigaction((int)gm_opt.memprofile_signal, &sa, NULL);
    }
    pthread_attr_destroy(&attr);
}

__attribute__((destructor)) static void profile_at_exit(void) {
    if (atomic_load_explicit(&gm_init_state, memory_order_acquire) == 0 || gm_opt.memprofile == 0) return;
    if (gm_write_heap_profile(NULL) != 0) warn_write("at exit");
}

/* The child of fork has no writer thread; a signal there is counted and ignored. */
void profile_fork_child(void) {
    gm_lock_reset(&prof.lock);
    prof_busy = false;
    writer_started = false;
}
