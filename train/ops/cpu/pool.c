/* pool.c: the CPU backend's thread pool, its per-thread scratch buffers and the shared
 * conversion buffers (see cpu.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "ft_common.h"

/* ---- thread pool ---- */

typedef struct worker_arg {
    cpu_pool *p;
    int tid;
} worker_arg;

static void *pool_worker(void *arg) {
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    cpu_pool *p = wa.p;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->start, &p->mu);
        if (p->quit) break;
        seen = p->gen;
        cpu_task_fn fn = p->fn;
        void *ctx = p->ctx;
        pthread_mutex_unlock(&p->mu);
        fn(ctx, wa.tid, p->n);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int cpu_pool_init(cpu_pool *p, int n) {
    memset(p, 0, sizeof *p);
    p->n = n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n == 1) return 0;
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
    p->quit = 1;
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
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->pending = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
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
