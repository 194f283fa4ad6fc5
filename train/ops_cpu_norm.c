/* ops_cpu_norm.c: batch norm, PReLU, row L2 normalization and row gather/scatter on the CPU
 * backend. Per-channel reductions are accumulated in double; channels (or rows) are split
 * statically across the thread pool.
 */
#include <math.h>
#include <string.h>

#include "ft_common.h"
#include "ops_cpu_impl.h"

typedef struct chan_ctx {
    int n, c, hw;
    float eps, momentum;
    const float *x, *gamma, *beta, *rmean_c, *rvar_c, *dy, *smean_c, *sinv_c, *alpha;
    float *y, *rmean, *rvar, *smean, *sinv, *dx, *dgamma, *dbeta, *dalpha;
} chan_ctx;

#define PLANE(p, ni, ci) ((p) + ((size_t)(ni)*cx->c + (ci)) * cx->hw)

static void bn_train_task(void *v, int tid, int nt) {
    chan_ctx *cx = v;
    size_t lo, hi;
    double m_count = (double)cx->n * cx->hw;
    cpu_range((size_t)cx->c, tid, nt, &lo, &hi);
    for (size_t ch = lo; ch < hi; ch++) {
        double s = 0, q = 0;
        for (int i = 0; i < cx->n; i++) {
            const float *x = PLANE(cx->x, i, ch);
            for (int j = 0; j < cx->hw; j++) s += x[j];
        }
        double mean = s / m_count;
        for (int i = 0; i < cx->n; i++) {
            const float *x = PLANE(cx->x, i, ch);
            for (int j = 0; j < cx->hw; j++) q += (x[j] - mean) * (x[j] - mean);
        }
        double var = q / m_count, invstd = 1.0 / sqrt(var + cx->eps);
        double unbiased = m_count > 1 ? q / (m_count - 1) : var;
        cx->smean[ch] = (float)mean;
        cx->sinv[ch] = (float)invstd;
        cx->rmean[ch] = (1.0f - cx->momentum) * cx->rmean[ch] + cx->momentum * (float)mean;
        cx->rvar[ch] = (1.0f - cx->momentum) * cx->rvar[ch] + cx->momentum * (float)unbiased;
        float a = (float)(cx->gamma[ch] * invstd), b = (float)(cx->beta[ch] - mean * a);
        for (int i = 0; i < cx->n; i++) {
            const float *x = PLANE(cx->x, i, ch);
            float *y = PLANE(cx->y, i, ch);
            for (int j = 0; j < cx->hw; j++) y[j] = x[j] * a + b;
        }
    }
}

static void bn_eval_task(void *v, int tid, int nt) {
    chan_ctx *cx = v;
    size_t lo, hi;
    cpu_range((size_t)cx->c, tid, nt, &lo, &hi);
    for (size_t ch = lo; ch < hi; ch++) {
        double invstd = 1.0 / sqrt((double)cx->rvar_c[ch] + cx->eps);
        float a = (float)(cx->gamma[ch] * invstd);
        float b = (float)(cx->beta[ch] - (double)cx->rmean_c[ch] * a);
        for (int i = 0; i < cx->n; i++) {
            const float *x = PLANE(cx->x, i, ch);
            float *y = PLANE(cx->y, i, ch);
            for (int j = 0; j < cx->hw; j++) y[j] = x[j] * a + b;
        }
    }
}

static void bn_bwd_task(void *v, int tid, int nt) {
    chan_ctx *cx = v;
    size_t lo, hi;
    double m_count = (double)cx->n * cx->hw;
    cpu_range((size_t)cx->c, tid, nt, &lo, &hi);
    for (size_t ch = lo; ch < hi; ch++) {
        double mean = cx->smean_c[ch], invstd = cx->sinv_c[ch];
        double sdy = 0, sdyx = 0;
        for (int i = 0; i < cx->n; i++) {
            const float *x = PLANE(cx->x, i, ch), *dy = PLANE(cx->dy, i, ch);
            for (int j = 0; j < cx->hw; j++) {
                sdy += dy[j];
                sdyx += dy[j] * (x[j] - mean);
            }
        }
        if (cx->dgamma) cx->dgamma[ch] += (float)(sdyx * invstd);
        if (cx->dbeta) cx->dbeta[ch] += (float)sdy;
        double g = cx->gamma[ch] * invstd;
        float k1 = (float)(g * invstd * invstd * sdyx / m_count);
        float k0 = (float)(g * (sdy / m_count - mean * invstd * invstd * sdyx / m_count));
        float gf = (float)g;
        /* dx = g*(dy - sdy/M - (x-mean)*invstd^2*sdyx/M) = g*dy - k1*x - k0 */
        for (int i = 0; i < cx->n; i++) {
            const float *x = PLANE(cx->x, i, ch), *dy = PLANE(cx->dy, i, ch);
            float *dx = PLANE(cx->dx, i, ch);
            for (int j = 0; j < cx->hw; j++) dx[j] = gf * dy[j] - k1 * x[j] - k0;
        }
    }
}

static int cpu_bn_fwd_train(ft_ops *o, int n, int c, int hw, float eps, float momentum,
                            const float *x, const float *gamma, const float *beta, float *y,
                            float *rmean, float *rvar, float *smean, float *sinv) {
    if (n < 1 || c < 1 || hw < 1 || (size_t)n * hw < 2) return FT_EARG;
    chan_ctx cx = {.n = n,
                   .c = c,
                   .hw = hw,
                   .eps = eps,
                   .momentum = momentum,
                   .x = x,
                   .gamma = gamma,
                   .beta = beta,
                   .y = y,
                   .rmean = rmean,
                   .rvar = rvar,
                   .smean = smean,
                   .sinv = sinv};
    cpu_run_sized(o, (size_t)n * c * hw, bn_train_task, &cx);
    return 0;
}

static int cpu_bn_fwd_eval(ft_ops *o, int n, int c, int hw, float eps, const float *x,
                           const float *gamma, const float *beta, const float *rmean,
                           const float *rvar, float *y) {
    chan_ctx cx = {.n = n,
                   .c = c,
                   .hw = hw,
                   .eps = eps,
                   .x = x,
                   .gamma = gamma,
                   .beta = beta,
                   .rmean_c = rmean,
                   .rvar_c = rvar,
                   .y = y};
    cpu_run_sized(o, (size_t)n * c * hw, bn_eval_task, &cx);
    return 0;
}

static int cpu_bn_bwd(ft_ops *o, int n, int c, int hw, const float *x, const float *dy,
                      const float *gamma, const float *smean, const float *sinv, float *dx,
                      float *dgamma, float *dbeta) {
    chan_ctx cx = {.n = n,
                   .c = c,
                   .hw = hw,
                   .x = x,
                   .dy = dy,
                   .gamma = gamma,
                   .smean_c = smean,
                   .sinv_c = sinv,
                   .dx = dx,
                   .dgamma = dgamma,
                   .dbeta = dbeta};
    cpu_run_sized(o, (size_t)n * c * hw, bn_bwd_task, &cx);
    return 0;
}

/* ---- PReLU ---- */

static void prelu_fwd_task(void *v, int tid, int nt) {
    chan_ctx *cx = v;
    size_t lo, hi;
    cpu_range((size_t)cx->c, tid, nt, &lo, &hi);
    for (size_t ch = lo; ch < hi; ch++) {
        float a = cx->alpha[ch];
        for (int i = 0; i < cx->n; i++) {
            const float *x = PLANE(cx->x, i, ch);
            float *y = PLANE(cx->y, i, ch);
            for (int j = 0; j < cx->hw; j++) y[j] = x[j] > 0.0f ? x[j] : a * x[j];
        }
    }
}

static void prelu_bwd_task(void *v, int tid, int nt) {
    chan_ctx *cx = v;
    size_t lo, hi;
    cpu_range((size_t)cx->c, tid, nt, &lo, &hi);
    for (size_t ch = lo; ch < hi; ch++) {
        float a = cx->alpha[ch];
        double da = 0;
        for (int i = 0; i < cx->n; i++) {
            const float *x = PLANE(cx->x, i, ch), *dy = PLANE(cx->dy, i, ch);
            float *dx = PLANE(cx->dx, i, ch);
            for (int j = 0; j < cx->hw; j++) {
                float g = dy[j];
                if (x[j] > 0.0f) {
                    dx[j] = g;
                } else {
                    da += (double)x[j] * g;
                    dx[j] = a * g;
                }
            }
        }
        if (cx->dalpha) cx->dalpha[ch] += (float)da;
    }
}

static int cpu_prelu_fwd(ft_ops *o, int n, int c, int hw, const float *x, const float *alpha,
                         float *y) {
    chan_ctx cx = {.n = n, .c = c, .hw = hw, .x = x, .alpha = alpha, .y = y};
    cpu_run_sized(o, (size_t)n * c * hw, prelu_fwd_task, &cx);
    return 0;
}

static int cpu_prelu_bwd(ft_ops *o, int n, int c, int hw, const float *x, const float *alpha,
                         const float *dy, float *dx, float *dalpha) {
    chan_ctx cx = {
        .n = n, .c = c, .hw = hw, .x = x, .alpha = alpha, .dy = dy, .dx = dx, .dalpha = dalpha};
    cpu_run_sized(o, (size_t)n * c * hw, prelu_bwd_task, &cx);
    return 0;
}

/* ---- rows: L2 normalization, gather, scatter-add ---- */

typedef struct row_ctx {
    int rows, dim;
    const float *x, *y, *dy, *norms_c, *src;
    float *out, *norms, *dst;
    const int32_t *idx;
} row_ctx;

static void l2_fwd_task(void *v, int tid, int nt) {
    row_ctx *r = v;
    size_t lo, hi;
    cpu_range((size_t)r->rows, tid, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        const float *x = r->x + i * r->dim;
        float *y = r->out + i * r->dim;
        double s = 0;
        for (int j = 0; j < r->dim; j++) s += (double)x[j] * x[j];
        float nrm = (float)sqrt(s);
        if (nrm < 1e-12f) nrm = 1e-12f;
        r->norms[i] = nrm;
        for (int j = 0; j < r->dim; j++) y[j] = x[j] / nrm;
    }
}

static void l2_bwd_task(void *v, int tid, int nt) {
    row_ctx *r = v;
    size_t lo, hi;
    cpu_range((size_t)r->rows, tid, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        const float *y = r->y + i * r->dim, *dy = r->dy + i * r->dim;
        float *dx = r->out + i * r->dim;
        float nrm = r->norms_c[i];
        double dot = 0;
        for (int j = 0; j < r->dim; j++) dot += (double)y[j] * dy[j];
        /* a clamped norm (|x| < 1e-12) passes no gradient through the norm */
        float d = nrm > 1e-12f ? (float)dot : 0.0f;
        for (int j = 0; j < r->dim; j++) dx[j] = (dy[j] - y[j] * d) / nrm;
    }
}

static void gather_task(void *v, int tid, int nt) {
    row_ctx *r = v;
    size_t lo, hi;
    cpu_range((size_t)r->rows, tid, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++)
        memcpy(r->dst + i * r->dim, r->src + (size_t)r->idx[i] * r->dim,
               (size_t)r->dim * sizeof(float));
}

static void scatter_task(void *v, int tid, int nt) {
    row_ctx *r = v;
    size_t lo, hi;
    cpu_range((size_t)r->rows, tid, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        float *d = r->dst + (size_t)r->idx[i] * r->dim;
        const float *s = r->src + i * r->dim;
        for (int j = 0; j < r->dim; j++) d[j] += s[j];
    }
}

static int cpu_l2norm_fwd(ft_ops *o, int rows, int dim, const float *x, float *y, float *norms) {
    row_ctx r = {.rows = rows, .dim = dim, .x = x, .out = y, .norms = norms};
    cpu_run_sized(o, (size_t)rows * dim, l2_fwd_task, &r);
    return 0;
}
static int cpu_l2norm_bwd(ft_ops *o, int rows, int dim, const float *y, const float *norms,
                          const float *dy, float *dx) {
    row_ctx r = {.rows = rows, .dim = dim, .y = y, .norms_c = norms, .dy = dy, .out = dx};
    cpu_run_sized(o, (size_t)rows * dim, l2_bwd_task, &r);
    return 0;
}
static int cpu_gather_rows(ft_ops *o, int rows, int dim, const float *src, const int32_t *idx,
                           float *dst) {
    row_ctx r = {.rows = rows, .dim = dim, .src = src, .idx = idx, .dst = dst};
    cpu_run_sized(o, (size_t)rows * dim, gather_task, &r);
    return 0;
}
static int cpu_scatter_add_rows(ft_ops *o, int rows, int dim, const float *src, const int32_t *idx,
                                float *dst) {
    row_ctx r = {.rows = rows, .dim = dim, .src = src, .idx = idx, .dst = dst};
    cpu_run_sized(o, (size_t)rows * dim, scatter_task, &r);
    return 0;
}

void cpu_install_norm(ft_ops *o) {
    o->bn_fwd_train = cpu_bn_fwd_train;
    o->bn_fwd_eval = cpu_bn_fwd_eval;
    o->bn_bwd = cpu_bn_bwd;
    o->prelu_fwd = cpu_prelu_fwd;
    o->prelu_bwd = cpu_prelu_bwd;
    o->l2norm_fwd = cpu_l2norm_fwd;
    o->l2norm_bwd = cpu_l2norm_bwd;
    o->gather_rows = cpu_gather_rows;
    o->scatter_add_rows = cpu_scatter_add_rows;
}
