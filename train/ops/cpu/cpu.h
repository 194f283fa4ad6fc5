/* cpu.h: internals shared by the CPU backend's files (ops/cpu/). Not public. */
#ifndef FT_OPS_CPU_H
#define FT_OPS_CPU_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "ops.h"

/* A fixed pool of nthreads workers (the caller is worker 0). cpu_run calls
 * fn(ctx, tid, nthreads) once on every worker and returns when all are done. */
typedef void (*cpu_task_fn)(void *ctx, int tid, int nthreads);

typedef struct cpu_pool {
    int n;
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    cpu_task_fn fn;
    void *ctx;
    uint64_t gen;
    int pending;
    int quit;
} cpu_pool;

typedef struct cpu_backend {
    ft_ops ops;
    cpu_pool pool;
} cpu_backend;

static inline cpu_pool *cpu_pool_of(ft_ops *o) {
    return &((cpu_backend *)o->impl)->pool;
}
void cpu_run(ft_ops *o, cpu_task_fn fn, void *ctx);
/* Run on one thread when the work is small (fewer than ~32k elements). */
void cpu_run_sized(ft_ops *o, size_t work, cpu_task_fn fn, void *ctx);

/* Static split of [0, total) into nthreads contiguous ranges. */
static inline void cpu_range(size_t total, int tid, int nthreads, size_t *b, size_t *e) {
    *b = total * (size_t)tid / (size_t)nthreads;
    *e = total * (size_t)(tid + 1) / (size_t)nthreads;
}

/* Single-threaded sgemm, row-major (the pool does the threading). */
void cpu_sgemm1(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                const float *b, int ldb, float beta, float *c, int ldc);

/* Installers: each file fills its slots of the table. */
void cpu_install_conv(ft_ops *o);
void cpu_install_norm(ft_ops *o);
void cpu_install_softmax(ft_ops *o);

#endif
