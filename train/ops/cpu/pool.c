/* pool.c: the CPU backend's thread pool, its per-thread scratch buffers and the shared
 * conversion buffers (see cpu.h). */
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef FT_HAVE_ONEDNN
#include <omp.h>
#endif

#include "cpu.h"
#include "ft_common.h"

/* ---- thread pool ---- */

/* A pool call publishes fn/ctx, then bumps gen; a worker that sees the new gen runs fn and
 * counts pending down. Both sides spin for up to CPU_SPIN_NS on the atomics before sleeping
 * on the condition variables: a batch-1 forward makes ~180 short pool calls, and a worker
 * that went to sleep between two of them costs a wake-up (a time slice on a busy machine) per
 * call. The mutex still guards every sleep, so no wake-up is lost: a thread that sleeps
 * checks its condition under the mutex, and the side that changes it signals under it. */
enum { CPU_SPIN_NS = 200000 };

typedef struct worker_arg {
    cpu_pool *p;
    int tid;
} worker_arg;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* the i-th wait of a spin: a pause for the first ones, then a yield, so a spinning thread
 * gives its core to a runnable thread (the one it waits for, on a busy machine) */
static inline void cpu_relax(unsigned i) {
    if (i >= 64) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* spin until *gen differs from seen or quit is set; 1 when it did within the budget */
static int spin_gen(cpu_pool *p, uint64_t seen) {
    uint64_t t0 = 0;
    for (unsigned i = 0;; i++) {
        if (atomic_load_explicit(&p->gen, memory_order_acquire) != seen ||
            atomic_load_explicit(&p->quit, memory_order_acquire))
            return 1;
        cpu_relax(i);
        if ((i & 15) == 15) {
            uint64_t t = now_ns();
            if (!t0)
                t0 = t;
            else if (t - t0 > CPU_SPIN_NS)
                return 0;
        }
    }
}

static void *pool_worker(void *arg) {
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    cpu_pool *p = wa.p;
    uint64_t seen = 0;
    for (;;) {
        if (!spin_gen(p, seen)) {
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit))
                pthread_cond_wait(&p->start, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load_explicit(&p->quit, memory_order_acquire)) break;
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        cpu_task_fn fn = p->fn;
        void *ctx = p->ctx;
        fn(ctx, wa.tid, p->n);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu); /* the caller may be about to sleep: signal under mu */
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

int cpu_pool_init(cpu_pool *p, int n, int omp) {
    memset(p, 0, sizeof *p);
    p->n = n;
    p->omp = omp;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n == 1 || omp) return 0;
    p->th = calloc((size_t)n, sizeof *p->th);
    if (!p->th) return -ENOMEM;
    for (int i = 1; i < n; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) {
            p->n = i;
            return -ENOMEM;
        }
        *wa = (worker_arg){p, i};
        int rc = pthread_create(&p->th[i], NULL, pool_worker, wa);
        if (rc) {
            free(wa);
            p->n = i; /* only i-1 workers exist */
            return -rc;
        }
    }
    return 0;
}

void cpu_pool_destroy(cpu_pool *p) {
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n && p->th; i++) pthread_join(p->th[i], NULL);
    free(p->th);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
}

void cpu_run(ft_ops *o, cpu_task_fn fn, void *ctx) {
    cpu_pool *p = cpu_pool_of(o);
    if (p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
#ifdef FT_HAVE_ONEDNN
    if (p->omp) {
        int n = p->n;
        /* every tid in [0, n) runs exactly once even when the runtime grants fewer threads,
         * so the splits (and the results) stay those of n */
#pragma omp parallel num_threads(n)
        {
            int got = omp_get_num_threads();
            for (int tid = omp_get_thread_num(); tid < n; tid += got) fn(ctx, tid, n);
        }
        return;
    }
#endif
    /* no worker reads fn/ctx now: the previous call ended with pending at 0 */
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    uint64_t t0 = 0;
    for (unsigned i = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++) {
        cpu_relax(i);
        if ((i & 15) == 15) {
            uint64_t t = now_ns();
            if (!t0) {
                t0 = t;
            } else if (t - t0 > CPU_SPIN_NS) {
                pthread_mutex_lock(&p->mu);
                while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->mu);
                pthread_mutex_unlock(&p->mu);
                break;
            }
        }
    }
}

void cpu_run_sized(ft_ops *o, size_t work, cpu_task_fn fn, void *ctx) {
    if (work < 32768)
        fn(ctx, 0, 1);
    else
        cpu_run(o, fn, ctx);
}

int cpu_scratch_reserve(ft_ops *o, int slots, size_t floats) {
    cpu_backend *b = cpu_of(o);
    size_t want = (floats + 15) / 16 * 16;
    for (int t = 0; t < b->pool.n; t++)
        for (int s = 0; s < slots && s < CPU_SCRATCH_SLOTS; s++) {
            cpu_scratch *sc = &b->scratch[t];
            if (sc->cap[s] >= want) continue;
            float *p = aligned_alloc(64, want * sizeof(float));
            if (!p) return -ENOMEM;
            free(sc->buf[s]);
            sc->buf[s] = p, sc->cap[s] = want;
        }
    return 0;
}

float *cpu_shared(ft_ops *o, int idx, size_t floats) {
    cpu_backend *b = cpu_of(o);
    size_t want = (floats + 15) / 16 * 16;
    if (b->shared_cap[idx] < want) {
        float *p = aligned_alloc(64, (want ? want : 16) * sizeof(float));
        if (!p) return NULL;
        free(b->shared[idx]);
        b->shared[idx] = p, b->shared_cap[idx] = want;
    }
    return b->shared[idx];
}

int cpu_run_planes(ft_ops *o, ft_dtype dt, int n, int c, int hw, int slots, cpu_task_fn fn,
                   void *ctx) {
    if (!cpu_float_dt(dt)) return FT_ENOTSUP;
    if (n < 1 || c < 1 || hw < 1) return FT_EARG;
    int rc = dt == FT_F32 ? 0 : cpu_scratch_reserve(o, slots, (size_t)hw);
    if (rc) return rc;
    cpu_run_sized(o, (size_t)n * c * hw, fn, ctx);
    return 0;
}
