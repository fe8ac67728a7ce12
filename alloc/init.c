/* init.c: process start-up and the process-wide events around it. Init is lazy: the first
 * call into any entry point runs it, whatever the thread, even before constructors (ld.so
 * and other preloaded libraries may call malloc first). It uses only raw syscalls and
 * pthread calls that do not allocate before the heap works. Also owns fork: the prepare
 * handler takes every allocator lock in one fixed order so the child inherits a heap
 * no other thread was in the middle of changing. */
#include "internal.h"

#include <pthread.h>
#include <sched.h>

atomic_int gm_init_state;
uint64_t gm_cookie;
pthread_key_t gm_mcache_key;
static gm_lock_t gm_init_lock = GM_LOCK_INIT;

/* Lock order, everywhere: fallback cache -> mcentral[0..65] -> heap -> mcache list; the
 * profile and traceback locks are leaves (nothing is taken under either). */
static void gm_prefork(void) {
    mcache_lock_fallback();
    mcentral_lock_all();
    gm_lock(&gm_heap_lock);
    mcache_lock_list();
    profile_lock();
    traceback_lock();
}

static void gm_postfork_parent(void) {
    traceback_unlock();
    profile_unlock();
    mcache_unlock_list();
    gm_unlock(&gm_heap_lock);
    mcentral_unlock_all();
    mcache_unlock_fallback();
}

static void gm_postfork_child(void) {
    traceback_fork_child();
    profile_fork_child();
    mcache_fork_child();
    gm_lock_reset(&gm_heap_lock);
    mcentral_reset_locks();
    mcentral_fork_child();
    scavenger_fork_child();
}

bool gm_init_slow(void) {
    gm_lock(&gm_init_lock);
    bool ok = true;
    if (atomic_load_explicit(&gm_init_state, memory_order_acquire) == 0) {
        options_init();
        stats_init();
        scavenger_init();
        os_random(&gm_cookie, sizeof gm_cookie);
        gm_cookie |= 1; /* never 0, so a zeroed word is never a free mark */
        secure_init_keys();
        mcentral_init();
        if (!mheap_init() || pthread_key_create(&gm_mcache_key, mcache_thread_exit) != 0) {
            ok = false;
        } else {
            /* The heap works from here on: pthread_atfork may allocate, and any such
             * call (or another thread's) goes through the normal paths. */
            atomic_store_explicit(&gm_init_state, 1, memory_order_release);
            pthread_atfork(gm_prefork, gm_postfork_parent, gm_postfork_child);
            atomic_store_explicit(&gm_init_state, 2, memory_order_release);
        }
    }
    gm_unlock(&gm_init_lock);
    return ok;
}

void gm_lock_slow(gm_lock_t *l) {
    for (unsigned spins = 0;; spins++) {
        if (atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
            atomic_exchange_explicit(&l->v, 1, memory_order_acquire) == 0)
            return;
        if (spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            __asm__ volatile("yield");
#endif
        } else {
            sched_yield();
        }
    }
}

/* Also initialize at load time if no allocation did it first, so GOMALLOC settings (a
 * report at exit, help) apply to programs that never call malloc. Init maps no heap
 * memory; the first arena is reserved by the first allocation. */
__attribute__((constructor)) static void gm_init_at_load(void) { gm_ensure_init(); }
