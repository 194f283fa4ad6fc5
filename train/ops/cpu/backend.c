/* ops_cpu.c: the CPU backend of ft_ops: thread pool, memory, elementwise ops, GEMM/linear,
 * dropout, SGD. Convolution is in ops_cpu_conv.c, normalization layers in ops_cpu_norm.c and the
 * margin softmax in ops_cpu_softmax.c.
 *
 * Threading: a fixed pool (ops_cpu_impl.h) with static work splits, so results do not depend
 * on scheduling; OpenBLAS runs single-threaded inside each worker.
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "ft_common.h"
#include "cpu.h"

int ft_conv_desc_init(ft_conv_desc *d, int n, int c, int h, int w, int k, int r, int stride,
                      int pad) {
    if (n < 1 || c < 1 || h < 1 || w < 1 || k < 1 || r < 1 || stride < 1 || pad < 0) return FT_EARG;
    int oh = (h + 2 * pad - r) / stride + 1, ow = (w + 2 * pad - r) / stride + 1;
    if (h + 2 * pad < r || w + 2 * pad < r || oh < 1 || ow < 1) return FT_EARG;
    *d = (ft_conv_desc){n, c, h, w, k, r, stride, pad, oh, ow};
    return 0;
}

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

static int pool_init(cpu_pool *p, int n) {
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

static void pool_destroy(cpu_pool *p) {
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

/* ---- memory ---- */

static int cpu_alloc(ft_ops *o, size_t bytes, void **dev) {
    size_t sz = (bytes + 63) / 64 * 64;
    if (sz == 0) sz = 64;
    void *p = aligned_alloc(64, sz);
    if (!p) return -ENOMEM;
    *dev = p;
    return 0;
}
static void cpu_free(ft_ops *o, void *dev) {
    free(dev);
}
static int cpu_upload(ft_ops *o, void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
    return 0;
}
static int cpu_copy(ft_ops *o, void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) memmove(dst, src, bytes);
    return 0;
}
static int cpu_zero(ft_ops *o, void *dev, size_t bytes) {
    if (bytes) memset(dev, 0, bytes);
    return 0;
}
static int cpu_sync(ft_ops *o) {
    return 0;
}

/* ---- elementwise ---- */

typedef struct ew_ctx {
    size_t count;
    float alpha;
    const float *a, *b;
    float *y;
    double part[64];
} ew_ctx;

static void add_task(void *c, int tid, int nt) {
    ew_ctx *e = c;
    size_t b, en;
    cpu_range(e->count, tid, nt, &b, &en);
    for (size_t i = b; i < en; i++) e->y[i] = e->a[i] + e->b[i];
}
static int cpu_add(ft_ops *o, size_t count, const float *a, const float *b, float *y) {
    ew_ctx e = {.count = count, .a = a, .b = b, .y = y};
    cpu_run_sized(o, count, add_task, &e);
    return 0;
}
static void axpy_task(void *c, int tid, int nt) {
    ew_ctx *e = c;
    size_t b, en;
    cpu_range(e->count, tid, nt, &b, &en);
    for (size_t i = b; i < en; i++) e->y[i] += e->alpha * e->a[i];
}
static int cpu_axpy(ft_ops *o, size_t count, float alpha, const float *x, float *y) {
    ew_ctx e = {.count = count, .alpha = alpha, .a = x, .y = y};
    cpu_run_sized(o, count, axpy_task, &e);
    return 0;
}
static void scale_task(void *c, int tid, int nt) {
    ew_ctx *e = c;
    size_t b, en;
    cpu_range(e->count, tid, nt, &b, &en);
    for (size_t i = b; i < en; i++) e->y[i] *= e->alpha;
}
static int cpu_scale(ft_ops *o, size_t count, float alpha, float *x) {
    ew_ctx e = {.count = count, .alpha = alpha, .y = x};
    cpu_run_sized(o, count, scale_task, &e);
    return 0;
}
static void sumsq_task(void *c, int tid, int nt) {
    ew_ctx *e = c;
    size_t b, en;
    cpu_range(e->count, tid, nt, &b, &en);
    double s = 0;
    for (size_t i = b; i < en; i++) s += (double)e->a[i] * e->a[i];
    e->part[tid] = s;
}
static int cpu_sumsq(ft_ops *o, size_t count, const float *x, double *out) {
    ew_ctx e = {.count = count, .a = x};
    int nt = cpu_pool_of(o)->n;
    if (count < 32768 || nt > 64) {
        nt = 1;
        sumsq_task(&e, 0, 1);
    } else {
        cpu_run(o, sumsq_task, &e);
    }
    double s = 0;
    for (int t = 0; t < nt; t++) s += e.part[t];
    *out = s;
    return 0;
}

/* ---- GEMM: split the larger output dimension across the pool ---- */

void cpu_sgemm1(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { /* C = beta C */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] *= beta;
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

typedef struct gemm_ctx {
    int ta, tb, m, n, k, lda, ldb, ldc;
    float alpha, beta;
    const float *a, *b;
    float *c;
    int split_rows;
} gemm_ctx;

static void gemm_task(void *v, int tid, int nt) {
    gemm_ctx *g = v;
    size_t lo, hi;
    if (g->split_rows) {
        cpu_range((size_t)g->m, tid, nt, &lo, &hi);
        if (hi <= lo) return;
        const float *a = g->ta ? g->a + lo : g->a + lo * (size_t)g->lda;
        cpu_sgemm1(g->ta, g->tb, (int)(hi - lo), g->n, g->k, g->alpha, a, g->lda, g->b, g->ldb,
                   g->beta, g->c + lo * (size_t)g->ldc, g->ldc);
    } else {
        /* keep column blocks a multiple of 16 floats */
        size_t blocks = ((size_t)g->n + 15) / 16;
        cpu_range(blocks, tid, nt, &lo, &hi);
        lo *= 16, hi *= 16;
        if (hi > (size_t)g->n) hi = (size_t)g->n;
        if (hi <= lo) return;
        const float *b = g->tb ? g->b + lo * (size_t)g->ldb : g->b + lo;
        cpu_sgemm1(g->ta, g->tb, g->m, (int)(hi - lo), g->k, g->alpha, g->a, g->lda, b, g->ldb,
                   g->beta, g->c + lo, g->ldc);
    }
}

static int cpu_gemm(ft_ops *o, int ta, int tb, int m, int n, int k, float alpha, const float *a,
                    int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    if (m < 0 || n < 0 || k < 0) return FT_EARG;
    gemm_ctx g = {ta, tb, m, n, k, lda, ldb, ldc, alpha, beta, a, b, c, m >= n};
    cpu_run_sized(o, (size_t)m * n * (k ? k : 1) / 8, gemm_task, &g);
    return 0;
}

typedef struct bias_ctx {
    int m, out;
    const float *bias, *dy;
    float *y, *dbias;
} bias_ctx;

static void bias_add_task(void *v, int tid, int nt) {
    bias_ctx *c = v;
    size_t lo, hi;
    cpu_range((size_t)c->m, tid, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++)
        for (int j = 0; j < c->out; j++) c->y[i * c->out + j] += c->bias[j];
}
static void bias_grad_task(void *v, int tid, int nt) {
    bias_ctx *c = v;
    size_t lo, hi;
    cpu_range((size_t)c->out, tid, nt, &lo, &hi);
    for (size_t j = lo; j < hi; j++) {
        double s = 0;
        for (int i = 0; i < c->m; i++) s += c->dy[(size_t)i * c->out + j];
        c->dbias[j] += (float)s;
    }
}

static int cpu_linear_fwd(ft_ops *o, int m, int in, int out, const float *x, const float *w,
                          const float *bias, float *y) {
    int rc = cpu_gemm(o, 0, 1, m, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
    if (rc || !bias) return rc;
    bias_ctx c = {.m = m, .out = out, .bias = bias, .y = y};
    cpu_run_sized(o, (size_t)m * out, bias_add_task, &c);
    return 0;
}

static int cpu_linear_bwd(ft_ops *o, int m, int in, int out, const float *x, const float *w,
                          const float *dy, float *dx, float *dw, float *dbias) {
    int rc = 0;
    if (dx) rc = cpu_gemm(o, 0, 0, m, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
    if (!rc && dw) rc = cpu_gemm(o, 1, 0, out, in, m, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (rc || !dbias) return rc;
    bias_ctx c = {.m = m, .out = out, .dy = dy, .dbias = dbias};
    cpu_run_sized(o, (size_t)m * out, bias_grad_task, &c);
    return 0;
}

/* ---- dropout: element i kept iff hash(seed, i) >= p * 2^64 ---- */

typedef struct drop_ctx {
    size_t count;
    float p, inv;
    uint64_t seed;
    const float *x;
    float *y;
    uint8_t *mask;
    const uint8_t *cmask;
} drop_ctx;

static void drop_fwd_task(void *v, int tid, int nt) {
    drop_ctx *c = v;
    size_t lo, hi;
    cpu_range(c->count, tid, nt, &lo, &hi);
    double thr = (double)c->p * 18446744073709551616.0;
    for (size_t i = lo; i < hi; i++) {
        int keep = (double)ft_hash64(c->seed, i, 0x64726f70) >= thr;
        c->mask[i] = (uint8_t)keep;
        c->y[i] = keep ? c->x[i] * c->inv : 0.0f;
    }
}
static void drop_bwd_task(void *v, int tid, int nt) {
    drop_ctx *c = v;
    size_t lo, hi;
    cpu_range(c->count, tid, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++) c->y[i] = c->cmask[i] ? c->x[i] * c->inv : 0.0f;
}
static int cpu_dropout_fwd(ft_ops *o, size_t count, float p, uint64_t seed, const float *x,
                           float *y, uint8_t *mask) {
    if (!(p >= 0.0f && p < 1.0f)) return FT_EARG;
    if (p == 0.0f) return cpu_copy(o, y, x, count * sizeof(float));
    drop_ctx c = {count, p, 1.0f / (1.0f - p), seed, x, y, mask, NULL};
    cpu_run_sized(o, count, drop_fwd_task, &c);
    return 0;
}
static int cpu_dropout_bwd(ft_ops *o, size_t count, float p, const uint8_t *mask, const float *dy,
                           float *dx) {
    if (!(p >= 0.0f && p < 1.0f)) return FT_EARG;
    if (p == 0.0f) return cpu_copy(o, dx, dy, count * sizeof(float));
    drop_ctx c = {count, p, 1.0f / (1.0f - p), 0, dy, dx, NULL, mask};
    cpu_run_sized(o, count, drop_bwd_task, &c);
    return 0;
}

/* ---- SGD ---- */

typedef struct sgd_ctx {
    size_t count;
    int rows, dim;
    const int32_t *idx;
    float lr, mom, wd;
    float *w, *buf;
    const float *g;
} sgd_ctx;

/* The vector loop does the scalar loop's operations in the same order (no contraction), so
 * the update is bit-identical whichever path handles an element. */
static inline void sgd_span(const sgd_ctx *c, size_t lo, size_t hi) {
    size_t i = lo;
#if defined(__SSE2__)
    __m128 lr = _mm_set1_ps(c->lr), mom = _mm_set1_ps(c->mom), wd = _mm_set1_ps(c->wd);
    for (; i + 4 <= hi; i += 4) {
        __m128 w = _mm_loadu_ps(c->w + i);
        __m128 d = _mm_add_ps(_mm_loadu_ps(c->g + i), _mm_mul_ps(wd, w));
        __m128 b = _mm_add_ps(_mm_mul_ps(mom, _mm_loadu_ps(c->buf + i)), d);
        _mm_storeu_ps(c->buf + i, b);
        _mm_storeu_ps(c->w + i, _mm_sub_ps(w, _mm_mul_ps(lr, b)));
    }
#endif
    for (; i < hi; i++) {
        float d = c->g[i] + c->wd * c->w[i];
        float b = c->mom * c->buf[i] + d;
        c->buf[i] = b;
        c->w[i] -= c->lr * b;
    }
}
static void sgd_task(void *v, int tid, int nt) {
    sgd_ctx *c = v;
    size_t lo, hi;
    cpu_range(c->count, tid, nt, &lo, &hi);
    sgd_span(c, lo, hi);
}
static void sgd_rows_task(void *v, int tid, int nt) {
    sgd_ctx *c = v;
    size_t lo, hi;
    cpu_range((size_t)c->rows, tid, nt, &lo, &hi);
    for (size_t r = lo; r < hi; r++) {
        size_t base = (size_t)c->idx[r] * c->dim;
        sgd_span(c, base, base + (size_t)c->dim);
    }
}
static int cpu_sgd_update(ft_ops *o, size_t count, float lr, float mom, float wd, float *w,
                          const float *g, float *buf) {
    sgd_ctx c = {.count = count, .lr = lr, .mom = mom, .wd = wd, .w = w, .buf = buf, .g = g};
    cpu_run_sized(o, count, sgd_task, &c);
    return 0;
}
static int cpu_sgd_update_rows(ft_ops *o, int rows, int dim, const int32_t *idx, float lr,
                               float mom, float wd, float *w, const float *g, float *buf) {
    sgd_ctx c = {.rows = rows,
                 .dim = dim,
                 .idx = idx,
                 .lr = lr,
                 .mom = mom,
                 .wd = wd,
                 .w = w,
                 .buf = buf,
                 .g = g};
    cpu_run_sized(o, (size_t)rows * dim, sgd_rows_task, &c);
    return 0;
}

/* ---- table ---- */

static void cpu_destroy(ft_ops *o) {
    cpu_backend *b = o->impl;
    pool_destroy(&b->pool);
    free(b);
}

int ft_ops_cpu_create(int threads, ft_ops **out) {
    if (threads < 0 || threads > 1024) return FT_EARG;
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    cpu_backend *b = calloc(1, sizeof *b);
    if (!b) return -ENOMEM;
    int rc = pool_init(&b->pool, threads);
    if (rc) {
        pool_destroy(&b->pool);
        free(b);
        return rc;
    }
    openblas_set_num_threads(1);
    ft_ops *o = &b->ops;
    o->name = "cpu";
    o->impl = b;
    o->destroy = cpu_destroy;
    o->alloc = cpu_alloc;
    o->free = cpu_free;
    o->upload = cpu_upload;
    o->download = cpu_upload; /* host memory both ways */
    o->copy = cpu_copy;
    o->zero = cpu_zero;
    o->sync = cpu_sync;
    o->add = cpu_add;
    o->axpy = cpu_axpy;
    o->scale = cpu_scale;
    o->sumsq = cpu_sumsq;
    o->gemm = cpu_gemm;
    o->linear_fwd = cpu_linear_fwd;
    o->linear_bwd = cpu_linear_bwd;
    o->dropout_fwd = cpu_dropout_fwd;
    o->dropout_bwd = cpu_dropout_bwd;
    o->sgd_update = cpu_sgd_update;
    o->sgd_update_rows = cpu_sgd_update_rows;
    cpu_install_conv(o);
    cpu_install_norm(o);
    cpu_install_softmax(o);
    *out = o;
    return 0;
}

int ft_ops_cpu_threads(const ft_ops *o) {
    if (!o || o->destroy != cpu_destroy) return 0;
    return ((const cpu_backend *)o->impl)->pool.n;
}

void ft_ops_free(ft_ops *o) {
    if (o && o->destroy) o->destroy(o);
}
