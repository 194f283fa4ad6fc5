/* cpu.h: internals shared by the CPU backend's files (ops/cpu/). Not public.
 *
 * One file per op family; each fills its slots of the table through cpu_install_<stem>.
 * Threading: a fixed pool with static work splits, so results do not depend on scheduling;
 * OpenBLAS runs single-threaded inside each worker.
 *
 * Precision: 16-bit activations are converted to fp32 on load and rounded once on store; the
 * arithmetic is the fp32 path's. Kernels work on fp32 spans: cpu_ld gives a span of a tensor
 * as fp32 (the tensor itself when it is fp32, else converted into a per-thread scratch
 * buffer), cpu_out gives where to write fp32 results and cpu_put stores them.
 */
#ifndef FT_OPS_CPU_H
#define FT_OPS_CPU_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "kmath.h"
#include "ops.h"

/* the CPU backend itself (backend.c), also the engine of cpu-strict (strict.c) */
int ft_ops_cpu_create_(int threads, int inference, ft_ops **out);

/* ---- thread pool (pool.c) ---- */

/* A fixed pool of nthreads workers (the caller is worker 0). cpu_run calls
 * fn(ctx, tid, nthreads) once on every worker and returns when all are done. */
typedef void (*cpu_task_fn)(void *ctx, int tid, int nthreads);

typedef struct cpu_pool {
    int n;
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    cpu_task_fn fn; /* written before gen is published, read after it is seen */
    void *ctx;
    _Atomic uint64_t gen;
    _Atomic int pending;
    _Atomic int quit;
    int omp; /* 1: calls run on an OpenMP team of n (the one oneDNN uses), no own threads */
} cpu_pool;

/* A pool of n; with omp set (oneDNN builds), cpu_run opens an OpenMP parallel region instead
 * of waking own workers, so the convolutions and every other op share one set of threads
 * (two spinning teams on the same cores slow each other down). */
int cpu_pool_init(cpu_pool *p, int n, int omp);
void cpu_pool_destroy(cpu_pool *p);

/* Per-thread scratch: CPU_SCRATCH_SLOTS growable fp32 buffers per worker, reserved by the
 * calling thread before cpu_run (so tasks never allocate) and kept for later calls. */
enum { CPU_SCRATCH_SLOTS = 4 };
typedef struct cpu_scratch {
    float *buf[CPU_SCRATCH_SLOTS];
    size_t cap[CPU_SCRATCH_SLOTS]; /* floats */
} cpu_scratch;

typedef struct cpu_backend {
    ft_ops ops;
    cpu_pool pool;
    cpu_scratch *scratch; /* [pool.n] */
    /* shared fp32 buffers for whole-operand conversions (gemm, fc, conv weights) */
    float *shared[3];
    size_t shared_cap[3];
    struct cpu_dnnl *dnnl; /* oneDNN convolutions (conv_onednn.c); NULL: im2col only */
    /* the largest conv_ws_bytes reply: a call may pass that workspace for a smaller batch
     * than the one it planned with (ops.h), so no path may need more */
    size_t conv_ws_max;
} cpu_backend;

static inline cpu_backend *cpu_of(ft_ops *o) {
    return (cpu_backend *)o->impl;
}
static inline cpu_pool *cpu_pool_of(ft_ops *o) {
    return &cpu_of(o)->pool;
}
void cpu_run(ft_ops *o, cpu_task_fn fn, void *ctx);
/* Run on one thread when the work is small (fewer than ~32k elements). */
void cpu_run_sized(ft_ops *o, size_t work, cpu_task_fn fn, void *ctx);

/* The per-channel ops on activations [n, c, hw] of dtype dt (batch norm, PReLU): check the
 * dtype and the shape, reserve `slots` plane buffers (hw floats) per worker for 16-bit
 * storage, and run fn over the pool. */
int cpu_run_planes(ft_ops *o, ft_dtype dt, int n, int c, int hw, int slots, cpu_task_fn fn,
                   void *ctx);

/* Reserve `slots` scratch buffers of `floats` floats on every worker (0 or -ENOMEM). */
int cpu_scratch_reserve(ft_ops *o, int slots, size_t floats);
static inline float *cpu_scratch_get(ft_ops *o, int tid, int slot) {
    return cpu_of(o)->scratch[tid].buf[slot];
}
/* A shared buffer (index 0, 1 or 2) of at least `floats` floats, or NULL. */
float *cpu_shared(ft_ops *o, int idx, size_t floats);

/* Static split of [0, total) into nthreads contiguous ranges. */
static inline void cpu_range(size_t total, int tid, int nthreads, size_t *b, size_t *e) {
    *b = total * (size_t)tid / (size_t)nthreads;
    *e = total * (size_t)(tid + 1) / (size_t)nthreads;
}

/* ---- conversions (cast.c), dispatched at run time on F16C / AVX-512 BF16 ---- */

void cpu_cvt_to_f32(ft_dtype dt, const void *src, float *dst, size_t n);
void cpu_cvt_from_f32(ft_dtype dt, const float *src, void *dst, size_t n);
/* which conversion kernels this CPU uses: "f16c" / "avx512bf16" / "portable" */
const char *cpu_cvt_kernels(ft_dtype dt);
/* force the portable conversions (tests compare the paths); returns the previous setting */
int cpu_cvt_force_portable(int on);

static inline size_t cpu_esize(ft_dtype dt) {
    return dt == FT_F32 ? 4 : 2;
}
static inline const void *cpu_at(ft_dtype dt, const void *p, size_t i) {
    return (const char *)p + i * cpu_esize(dt);
}
static inline void *cpu_at_mut(ft_dtype dt, void *p, size_t i) {
    return (char *)p + i * cpu_esize(dt);
}
/* n elements of p from element i as fp32: p itself (fp32) or converted into buf */
static inline const float *cpu_ld(ft_dtype dt, const void *p, size_t i, size_t n, float *buf) {
    if (dt == FT_F32) return (const float *)p + i;
    cpu_cvt_to_f32(dt, cpu_at(dt, p, i), buf, n);
    return buf;
}
/* where to compute n fp32 results destined for element i of p: p itself (fp32) or buf */
static inline float *cpu_out(ft_dtype dt, void *p, size_t i, float *buf) {
    return dt == FT_F32 ? (float *)p + i : buf;
}
/* store what cpu_out handed out */
static inline void cpu_put(ft_dtype dt, void *p, size_t i, size_t n, const float *buf) {
    if (dt != FT_F32) cpu_cvt_from_f32(dt, buf, cpu_at_mut(dt, p, i), n);
}
/* one element as fp32 */
static inline float cpu_ld1(ft_dtype dt, const void *p, size_t i) {
    if (dt == FT_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return dt == FT_F16 ? ft_km_f16_to_f32(h) : ft_km_bf16_to_f32(h);
}
static inline int cpu_float_dt(ft_dtype dt) {
    return dt == FT_F32 || dt == FT_F16 || dt == FT_BF16;
}

/* ---- shared pieces ---- */

/* Reductions keep CPU_LANES double accumulators, combined in a fixed order (deterministic). */
#define CPU_LANES 8
static inline double cpu_lanes_total(const double *acc) {
    double s = 0;
    for (int l = 0; l < CPU_LANES; l++) s += acc[l];
    return s;
}

/* Single-threaded sgemm, row-major (the pool does the threading). */
void cpu_sgemm1(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                const float *b, int ldb, float beta, float *c, int ldc);
/* once per process: a note when OpenBLAS runs its generic kernels on a CPU it does not know
 * (backend.c; called by the first GEMM) */
void cpu_openblas_note(void);
/* fp32 gemm split across the pool (gemm.c) */
int cpu_gemm_f32(ft_ops *o, int ta, int tb, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc);
int cpu_copy(ft_ops *o, void *dst, const void *src, size_t bytes); /* memory.c */

/* ---- oneDNN convolutions (conv_onednn.c, when FT_HAVE_ONEDNN) ---- */

/* Open at backend creation, before the pool, for a pool of nthreads (FT_CPU_CONV=im2col
 * leaves b->dnnl NULL); 0 or an error. */
int cpu_dnnl_open(cpu_backend *b, int nthreads, int inference);
void cpu_dnnl_close(cpu_backend *b);
/* 1 and *bytes when oneDNN runs d for dt (building its plan), 0 when conv.c's path does */
int cpu_dnnl_conv_ws(ft_ops *o, const ft_conv_desc *d, ft_dtype dt, size_t *bytes);
/* pass 0 forward (x, w -> y), 1 data gradient (dy, w -> dx), 2 weight gradient (x, dy ->
 * dw +=); FT_ENOTSUP when oneDNN declines d or needs more workspace than conv_ws_max */
int cpu_dnnl_conv(ft_ops *o, int pass, const ft_conv_desc *d, ft_dtype dt, const void *in0,
                  const void *in1, void *out, void *ws);

/* Installers: each file fills its slots of the table. */
void cpu_install_memory(ft_ops *o);
void cpu_install_cast(ft_ops *o);
void cpu_install_elementwise(ft_ops *o);
void cpu_install_gemm(ft_ops *o);
void cpu_install_dropout(ft_ops *o);
void cpu_install_sgd(ft_ops *o);
void cpu_install_conv(ft_ops *o);
void cpu_install_batchnorm(ft_ops *o);
void cpu_install_prelu(ft_ops *o);
void cpu_install_sample(ft_ops *o);
void cpu_install_rows(ft_ops *o);
void cpu_install_margin(ft_ops *o);

#endif
