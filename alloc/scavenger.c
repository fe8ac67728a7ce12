/* scavenger.c: gives idle heap memory back to the OS (Go's mgcscavenge.go). Owns the goals
 * (recent peak of resident heap_inuse + 10%, and 95% of the memory limit; and, beyond Go,
 * how many free slots' bytes spans may keep resident), the release step (claim a run under
 * the heap lock, madvise it without the lock, give it back as released), the background
 * thread paced to Go's 1%-of-all-CPUs budget, the eager release on heap growth, and
 * scavtrace. Never creates its thread from free(): glibc frees under its own locks
 * (the nptl stack cache), and pthread_create takes them. docs/scavenger.md has the design. */
#include "internal.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define RUN_PAGES 256               /* up to 2 MiB per madvise: see docs/scavenger.md */
#define RETAIN_EXTRA_PERCENT 10     /* Go's retainExtraPercent */
#define LIMIT_GOAL_PERCENT 95       /* Go's memory-limit goal: 95% of the limit */
#define PEAK_BUCKET_MS 50
#define PEAK_BUCKETS 5              /* the peak window: 250 ms */
#define MIN_WORK_NS 1000000ull      /* Go's minScavWorkTime: 1 ms per burst */
#define MAX_BURST_NS 10000000ull    /* one burst at most 10 ms of CPU */
#define TOKEN_CAP_NS 50000000ull    /* at most 50 ms of CPU banked */
#define IDLE_POLL_MS 1000
#define LARGE_IDLE_NS 1000000000ull /* a thread's cached large spans live 1..2 s unused */
#define SPARSE_MIN_BYTES (4u << 20) /* resident span bytes beyond the live ones always allowed */
#define SPARSE_SHARE 8              /* ... or 1/8 of resident heap_inuse, if more */
#define SPARSE_QUIET_NS 500000000ull /* ... and only after 500 ms with no span handed to a thread */

/* ---- state ---- */

enum { PARK_NONE, PARK_ANY, PARK_LIMIT }; /* PARK_ANY: frees wake it; PARK_LIMIT: only a lower limit */

static atomic_int scav_state;        /* 0 none, 1 starting, 2 running */
static atomic_int scav_parked;       /* futex word: PARK_* while the thread waits */
static atomic_int scav_exiting;      /* set at process exit: start nothing new */
static _Atomic int64_t scav_limit = INT64_MAX;
static atomic_uint_fast64_t released_bg, released_eager; /* bytes since the last trace line */
static atomic_uint_fast64_t released_total;

/* Peak of heap_inuse per 100 ms bucket, newest at peak_at; under the heap lock. */
static struct {
    uint64_t max[PEAK_BUCKETS];
    uint64_t bucket[PEAK_BUCKETS];
} peak;

/* Run being released without the heap lock (so a fork child can give it back). */
static struct {
    uintptr_t base;
    size_t npages;
} inflight;

static uint64_t now_ns(clockid_t clk) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* heap_inuse without the pages of it that went back (mcentral_release_sparse); the two
 * are read apart, so clamped. */
static uint64_t resident(uint64_t inuse, uint64_t gone) { return inuse > gone ? inuse - gone : 0; }

/* pre: heap lock held. Records resident heap_inuse in the current 50 ms bucket. */
void scavenger_note_inuse(uint64_t inuse) {
    inuse = resident(inuse, mcentral_released_bytes());
    uint64_t b = now_ns(CLOCK_MONOTONIC_COARSE) / (PEAK_BUCKET_MS * 1000000ull);
    unsigned i = (unsigned)(b % PEAK_BUCKETS);
    if (peak.bucket[i] != b) {
        peak.bucket[i] = b;
        peak.max[i] = 0;
    }
    if (inuse > peak.max[i]) peak.max[i] = inuse;
}

/* pre: heap lock held. The most heap_inuse seen in the last 250 ms (and now). */
static uint64_t recent_peak(uint64_t inuse) {
    uint64_t b = now_ns(CLOCK_MONOTONIC_COARSE) / (PEAK_BUCKET_MS * 1000000ull);
    uint64_t p = inuse;
    for (unsigned i = 0; i < PEAK_BUCKETS; i++)
        if (b - peak.bucket[i] < PEAK_BUCKETS && peak.max[i] > p) p = peak.max[i];
    return p;
}

static uint64_t resident_inuse(const mheap_stats *h) { return resident(h->heap_inuse, h->heap_inuse_released); }

/* What the scavenger should still release, in bytes (0 = nothing). Retained memory (heap
 * backed by RAM: heap_sys - heap_released - heap_inuse_released) may exceed the recent
 * peak of resident heap_inuse by 10%; committed memory (retained + metadata) must stay
 * under 95% of the memory limit. *force says the limit is what asks, which also overrides
 * the peak window. pre: heap lock held. */
static size_t overage_locked(bool *force) {
    mheap_stats h;
    mheap_read_stats_locked(&h);
    uint64_t retained = h.heap_sys - h.heap_released - h.heap_inuse_released;
    uint64_t goal = recent_peak(resident_inuse(&h)) / 100 * (100 + RETAIN_EXTRA_PERCENT);
    goal = (goal + (64 << 10) - 1) & ~(uint64_t)((64 << 10) - 1);
    size_t over = retained > goal ? retained - goal : 0;
    *force = false;
    int64_t limit = atomic_load_explicit(&scav_limit, memory_order_relaxed);
    if (limit != INT64_MAX) {
        uint64_t committed = retained + h.mspan_sys + h.mcache_sys + mheap_meta_bytes_locked();
        uint64_t lgoal = (uint64_t)limit / 100 * LIMIT_GOAL_PERCENT;
        if (committed > lgoal && committed - lgoal > over) {
            over = committed - lgoal;
            *force = true;
        }
    }
    return over;
}

/* The second goal, which Go does not have: spans may hold SPARSE_MIN_BYTES or an eighth of
 * resident heap_inuse more than the live bytes (heap_alloc) resident; past that, whole free
 * OS pages inside spans on mcentral's lists go back (mcentral_release_sparse). A span keeps
 * every page while one object lives in it, so without this a program whose object sizes
 * shift keeps the peak of every size it ever used (bench/frag). The difference also counts
 * thread lists, carved-out spans and slots that share a page with a live object, none of
 * which can go: the release looks at each span once per change, so asking for them costs a
 * walk over the spans that changed, not a loop. Only a heap where no thread took a span
 * from mcentral for 500 ms qualifies: in a busy one the pages fault back in as soon as the
 * spans are used again (bench/frag: the thread spent its budget on them during the run,
 * and the idle pages went back later), and a program in a steady state takes spans from
 * the lists without allocating new ones. The live bytes are summed over every thread's
 * counters, as gm_read_memstats does, so this is asked only on the background thread's
 * polls (it alone calls it: the statics are its own). */
static size_t sparse_overage(void) {
    static uint64_t seen_activity, seen_ns;
    uint64_t now = now_ns(CLOCK_MONOTONIC_COARSE), a = mcentral_activity();
    if (a != seen_activity) {
        seen_activity = a;
        seen_ns = now;
        return 0;
    }
    if (now - seen_ns < SPARSE_QUIET_NS) return 0;
    gm_memstats m;
    gm_read_memstats(&m);
    uint64_t res = resident(m.heap_inuse, m.heap_inuse_released);
    uint64_t allow = res / SPARSE_SHARE;
    if (allow < SPARSE_MIN_BYTES) allow = SPARSE_MIN_BYTES;
    return res > m.heap_alloc + allow ? (size_t)(res - m.heap_alloc - allow) : 0;
}

/* overage_locked under the heap lock, with the heap's numbers at the same moment. */
static size_t overage(bool *force, mheap_stats *h) {
    gm_lock(&gm_heap_lock);
    size_t over = overage_locked(force);
    mheap_read_stats_locked(h);
    gm_unlock(&gm_heap_lock);
    return over;
}

/* ---- releasing ---- */

/* Releases up to max_bytes of free pages, highest addresses first, one run per heap-lock
 * hold; the madvise itself runs without the lock (Go's scavengeOne). Returns bytes. */
static size_t release(size_t max_bytes) {
    size_t done = 0;
    while (done < max_bytes) {
        size_t want = (max_bytes - done + GM_PAGE_SIZE - 1) >> GM_PAGE_SHIFT;
        if (want > RUN_PAGES) want = RUN_PAGES;
        gm_lock(&gm_heap_lock);
        size_t npages = 0;
        uintptr_t base = pagealloc_scavenge_candidate(want, &npages);
        if (base == 0) {
            gm_unlock(&gm_heap_lock);
            break;
        }
        pagealloc_claim(base, npages);
        inflight.base = base;
        inflight.npages = npages;
        gm_unlock(&gm_heap_lock);
        bool ok = os_release((void *)base, npages << GM_PAGE_SHIFT, gm_opt.madvdontneed != 0);
        gm_lock(&gm_heap_lock);
        pagealloc_unclaim(base, npages, ok);
        inflight.npages = 0;
        gm_unlock(&gm_heap_lock);
        if (!ok) break; /* madvise refused (seccomp, odd kernel): stop rather than spin */
        done += npages << GM_PAGE_SHIFT;
    }
    atomic_fetch_add_explicit(&released_total, done, memory_order_relaxed);
    return done;
}

/* gm_free_os_memory and malloc_trim: first every thread's cached large spans go back to
 * the heap (they are heap_inuse, invisible to the page search), then all free pages out. */
size_t scavenger_release_all(void) {
    mcache_steal_large(false);
    gm_lock(&gm_heap_lock);
    pagealloc_scavenge_reset();
    gm_unlock(&gm_heap_lock);
    size_t n = release(SIZE_MAX);
    n += mcentral_release_sparse(SIZE_MAX);
    atomic_fetch_add_explicit(&released_eager, n, memory_order_relaxed);
    return n;
}

/* ---- scavtrace ---- */

static void trace(bool forced) {
    static atomic_uint_fast64_t last_ns;
    uint64_t now = now_ns(CLOCK_MONOTONIC);
    uint64_t last = atomic_load(&last_ns);
    if (!forced && now - last < 1000000000ull) return; /* at most once a second */
    if (!atomic_compare_exchange_strong(&last_ns, &last, now)) return;
    uint64_t bg = atomic_exchange(&released_bg, 0), eager = atomic_exchange(&released_eager, 0);
    if (bg == 0 && eager == 0 && !forced) return;
    gm_lock(&gm_heap_lock);
    mheap_stats h;
    mheap_read_stats_locked(&h);
    gm_unlock(&gm_heap_lock);
    uint64_t retained = h.heap_sys - h.heap_released - h.heap_inuse_released;
    gm_buf b;
    gm_buf_init(&b, STDERR_FILENO);
    gm_buf_puts(&b, "gomalloc: scav ");
    gm_buf_putu(&b, bg >> 10);
    gm_buf_puts(&b, " KiB work (bg), ");
    gm_buf_putu(&b, eager >> 10);
    gm_buf_puts(&b, " KiB work (eager), ");
    gm_buf_putu(&b, (h.heap_released + h.heap_inuse_released) >> 10);
    gm_buf_puts(&b, " KiB now, ");
    gm_buf_putu(&b, retained ? resident_inuse(&h) * 100 / retained : 100);
    gm_buf_puts(&b, forced ? "% util (forced)\n" : "% util\n");
    gm_buf_flush(&b);
}

/* ---- the background thread ---- */

static long futex(atomic_int *addr, int op, int val, const struct timespec *timeout) {
    return syscall(SYS_futex, addr, op, val, timeout, NULL, 0);
}

/* Sleeps ns, or less if woken (park = PARK_ANY or PARK_LIMIT; PARK_NONE cannot be). Returns
 * true if a wake cut the sleep short. */
static bool sleep_ns(uint64_t ns, int park) {
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull)};
    if (park == PARK_NONE) {
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        return false;
    }
    atomic_store(&scav_parked, park);
    long rc = futex(&scav_parked, FUTEX_WAIT_PRIVATE, park, &ts);
    bool woken = rc == 0 || errno == EAGAIN; /* EAGAIN: woken before the wait began */
    atomic_store(&scav_parked, PARK_NONE);
    return woken;
}

/* One paced burst of mcentral_release_sparse, up to want bytes. Returns whether anything
 * went back. */
static bool sparse_burst(double *tokens, size_t want) {
    if (want == 0) return false;
    double budget = *tokens < MAX_BURST_NS ? *tokens : MAX_BURST_NS;
    uint64_t t0 = now_ns(CLOCK_THREAD_CPUTIME_ID), worked = 0;
    size_t done = 0, chunk = RUN_PAGES << GM_PAGE_SHIFT;
    while (done < want && (double)worked < budget) {
        size_t n = mcentral_release_sparse(want - done < chunk ? want - done : chunk);
        if (n == 0) break;
        done += n;
        worked = now_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
    }
    *tokens -= (double)(worked < 50000 ? 50000 : worked);
    atomic_fetch_add_explicit(&released_bg, done, memory_order_relaxed);
    if (done > 0 && gm_opt.scavtrace) trace(false);
    return done > 0;
}

/* Pacing: the thread may use `fraction` of one core on average: 1% of every CPU, Go's
 * scavengePercent (2% of one core on a 2-core machine). Like Go it works in bursts of at
 * least 1 ms of its own measured CPU time and sleeps in between; unlike Go's controller,
 * the budget it did not need while idle is banked (a token bucket, at most 50 ms), so a
 * big free is returned within seconds while the average over any run stays at the
 * fraction. Measured CPU time is charged, so slow madvise calls lengthen the sleep. */
static void *scavenger_main(void *arg) {
    (void)arg;
    prctl(PR_SET_NAME, "gomalloc-scav", 0, 0, 0);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double fraction = 0.01 * (double)(ncpu > 0 ? ncpu : 1);
    if (fraction > 0.5) fraction = 0.5;
    double tokens = 0; /* ns of CPU the thread may still use */
    uint64_t last = now_ns(CLOCK_MONOTONIC), last_age = last;
    bool kicked = false; /* the last park was cut short by a free */
    for (;;) {
        uint64_t now = now_ns(CLOCK_MONOTONIC);
        tokens += (double)(now - last) * fraction;
        if (tokens > TOKEN_CAP_NS) tokens = TOKEN_CAP_NS;
        last = now;
        /* Aging: a thread that made no large malloc or free for a pass loses its cached
         * spans to the heap, where this loop can release them like any free page. */
        if (now - last_age >= LARGE_IDLE_NS) {
            last_age = now;
            mcache_steal_large(true);
        }
        bool force;
        mheap_stats h;
        size_t over = overage(&force, &h);
        /* Free pages inside spans only once the idle goal is met: they cost a syscall per
         * few pages where idle runs take one per 2 MiB, and both draw on one budget. When
         * none can go, the thread waits as if idle: sleeping a second instead, as after a
         * fruitless burst, doubled test_scavenger's time to RSS after a big free. */
        if (over == 0 && tokens >= MIN_WORK_NS && sparse_burst(&tokens, sparse_overage())) continue;
        if (over == 0) {
            /* Nothing to do now. If memory above heap_inuse is only held by the peak
             * window, look again when the window has moved; else wait to be woken. */
            bool waiting_on_window = h.heap_sys - h.heap_released - h.heap_inuse_released >
                                     resident_inuse(&h) / 100 * (100 + RETAIN_EXTRA_PERCENT) + (64 << 10);
            /* Polls ignore frees, and so does the first sleep after a free's wake found
             * nothing to do: else a program freeing spans all the time pays a wake-up per
             * free (mstress secure: 27 k futex wakes in 1.7 s). At most 20 wakes a second. */
            if (waiting_on_window || kicked) {
                sleep_ns((uint64_t)PEAK_BUCKET_MS * 1000000ull, PARK_LIMIT);
                kicked = false;
            } else {
                kicked = sleep_ns((uint64_t)IDLE_POLL_MS * 1000000ull, PARK_ANY);
            }
            continue;
        }
        /* Over the memory limit the pacing does not apply: the user asked for that
         * bound, and Go's allocating goroutines release the overage inline unpaced too.
         * A forced pass is bounded by what was freed: done == 0 parks the thread. */
        if (tokens < MIN_WORK_NS && !force) {
            sleep_ns((uint64_t)((MIN_WORK_NS - tokens) / fraction), PARK_NONE);
            continue;
        }
        if (force) {
            mcache_steal_large(false); /* over the memory limit: no thread keeps spans */
            gm_lock(&gm_heap_lock);
            pagealloc_scavenge_reset();
            gm_unlock(&gm_heap_lock);
        }
        double budget = tokens < MAX_BURST_NS && !force ? tokens : MAX_BURST_NS;
        uint64_t t0 = now_ns(CLOCK_THREAD_CPUTIME_ID), worked = 0;
        size_t done = 0;
        while (done < over && (double)worked < budget) {
            size_t chunk = RUN_PAGES << GM_PAGE_SHIFT;
            size_t n = release(over - done < chunk ? over - done : chunk);
            if (n == 0) break;
            done += n;
            worked = now_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
        }
        if (worked < 50000) worked = 50000; /* charge at least the checks */
        if (!force) tokens -= (double)worked;
        atomic_fetch_add_explicit(&released_bg, done, memory_order_relaxed);
        if (gm_opt.scavtrace) trace(false);
        if (done == 0) kicked = sleep_ns((uint64_t)IDLE_POLL_MS * 1000000ull, PARK_ANY);
    }
    return NULL;
}

/* Starts the thread once. Called only from allocation slow paths with no allocator lock
 * held (pthread_create allocates). All signals are blocked in it, so process-directed
 * signals always go to the program's own threads; it is detached and small, and never
 * keeps the process alive. */
static void start_thread(void) {
    int expect = 0;
    if (!atomic_compare_exchange_strong(&scav_state, &expect, 1)) return;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 << 10);
    pthread_t t;
    int saved = errno;
    int rc = pthread_create(&t, &attr, scavenger_main, NULL);
    errno = saved;
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    atomic_store(&scav_state, rc == 0 ? 2 : 0);
}

/* ---- hooks from the heap ---- */

/* From allocation slow paths (mheap_alloc_span), no lock held. grown = bytes the heap
 * just grew by (0 if it did not). Releases eagerly when the growth pushed retained memory
 * over the goal (Go: the heap grew because free fragments were too small, so give them
 * back) or committed memory over the limit, and starts the thread once the heap has
 * something to give back or has grown past its first arenas. Free pages inside spans go
 * back eagerly only over the limit: doing it for growth (so that a program moving on to
 * new sizes would not add to its RSS) made bench/frag 1.4x slower, its pages faulting
 * back in, for 3% of its peak RSS (a first measurement, one series of 7). */
void scavenger_after_alloc(size_t grown) {
    /* The common case costs a few relaxed loads: no growth, no limit, thread running. A
     * thread not started yet is looked for at one span allocation in 256: evaluating the
     * goal takes the heap lock, and a small heap churning spans (larson) paid 4.5% for it. */
    static atomic_uint unstarted_tick;
    bool limited = atomic_load_explicit(&scav_limit, memory_order_relaxed) != INT64_MAX;
    if (grown == 0 && !limited) {
        if (!gm_opt.scavenger || atomic_load_explicit(&scav_state, memory_order_relaxed) != 0) return;
        if ((atomic_fetch_add_explicit(&unstarted_tick, 1, memory_order_relaxed) & 255) != 0) return;
    }
    bool force;
    mheap_stats h;
    size_t over = overage(&force, &h), done = 0;
    if (over > 0 && (force || grown > 0)) {
        size_t want = force ? over : (over < grown ? over : grown);
        if (force) {
            mcache_steal_large(false);
            gm_lock(&gm_heap_lock);
            pagealloc_scavenge_reset();
            gm_unlock(&gm_heap_lock);
        }
        done = release(want);
        /* Over the limit with no idle pages left: free pages inside spans next. */
        if (force && done < want) done += mcentral_release_sparse(want - done);
    }
    if (done > 0) {
        atomic_fetch_add_explicit(&released_eager, done, memory_order_relaxed);
        if (gm_opt.scavtrace) trace(false);
    }
    if (gm_opt.scavenger && atomic_load_explicit(&scav_state, memory_order_relaxed) == 0 &&
        !atomic_load_explicit(&scav_exiting, memory_order_relaxed) &&
        (over > 0 || h.heap_sys > 2 * GM_ARENA_SIZE))
        start_thread();
}

/* From free paths after pages went back to the heap, no lock held: wakes a thread parked
 * with nothing to do (one futex syscall, only then). Never creates it. */
void scavenger_kick(void) {
    int park = PARK_ANY;
    if (atomic_load_explicit(&scav_parked, memory_order_relaxed) == PARK_ANY &&
        atomic_compare_exchange_strong_explicit(&scav_parked, &park, PARK_NONE, memory_order_relaxed,
                                                memory_order_relaxed))
        futex(&scav_parked, FUTEX_WAKE_PRIVATE, 1, NULL);
}

/* The fork child has no scavenger thread: the next allocation slow path makes one. A
 * run the parent was releasing stays claimed in the child's copy; hand it back. */
void scavenger_fork_child(void) {
    atomic_store(&scav_state, 0);
    atomic_store(&scav_parked, PARK_NONE);
    if (inflight.npages) {
        pagealloc_unclaim(inflight.base, inflight.npages, false);
        inflight.npages = 0;
    }
}

__attribute__((destructor)) static void scavenger_at_exit(void) { atomic_store(&scav_exiting, 1); }

/* ---- public API ---- */

int64_t gm_set_memory_limit(int64_t bytes) {
    if (bytes < 0) return atomic_load(&scav_limit);
    int64_t old = atomic_exchange(&scav_limit, bytes);
    if (bytes < old && atomic_exchange(&scav_parked, PARK_NONE) != PARK_NONE)
        futex(&scav_parked, FUTEX_WAKE_PRIVATE, 1, NULL);
    return old;
}

void scavenger_init(void) {
    if (gm_opt.memlimit > 0) atomic_store(&scav_limit, gm_opt.memlimit);
}

void gm_free_os_memory(void) {
    if (atomic_load_explicit(&gm_init_state, memory_order_acquire) == 0) return;
    scavenger_release_all();
    if (gm_opt.scavtrace) trace(true);
}

uint64_t scavenger_released_total(void) { return atomic_load_explicit(&released_total, memory_order_relaxed); }
