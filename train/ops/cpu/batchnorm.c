/* ops_cpu_norm.c: batch norm, PReLU, row L2 normalization and row gather/scatter on the CPU
 * backend. Per-channel reductions are accumulated in double; channels (or rows) are split
 * statically across the thread pool.
 */
#include <math.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "ft_common.h"
#include "cpu.h"

typedef struct chan_ctx {
    int n, c, hw;
    float eps, momentum;
    const float *x, *gamma, *beta, *rmean_c, *rvar_c, *dy, *smean_c, *sinv_c, *alpha;
    float *y, *rmean, *rvar, *smean, *sinv, *dx, *dgamma, *dbeta, *dalpha;
} chan_ctx;

#define PLANE(p, ni, ci) ((p) + ((size_t)(ni)*cx->c + (ci)) * cx->hw)

/* Plane kernels. Sums are kept in LANES independent double accumulators (combined in a fixed
 * order, so results stay deterministic) and the blocked loops have a fixed trip count and
 * restrict pointers, so the compiler vectorizes them without runtime checks. The affine map
 * and the PReLU selects use SSE2 intrinsics where available. */
#define LANES 8

static double lanes_total(const double *acc) {
    double s = 0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s;
}

/* sum of x */
static double plane_sum(const float *restrict x, int n) {
    double acc[LANES] = {0};
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += (double)x[j + l];
    for (; j < n; j++) acc[0] += x[j];
    return lanes_total(acc);
}

/* sum of (x - mean)^2 */
static double plane_sqdev(const float *restrict x, int n, double mean) {
    double acc[LANES] = {0};
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) {
            double t = x[j + l] - mean;
            acc[l] += t * t;
        }
    for (; j < n; j++) acc[0] += (x[j] - mean) * (x[j] - mean);
    return lanes_total(acc);
}

/* *sdy += sum of dy, *sdyx += sum of dy * (x - mean) */
static void plane_dy_sums(const float *restrict x, const float *restrict dy, int n, double mean,
                          double *sdy, double *sdyx) {
    double a[LANES] = {0}, b[LANES] = {0};
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) {
            a[l] += dy[j + l];
            b[l] += dy[j + l] * (x[j + l] - mean);
        }
    for (; j < n; j++) {
        a[0] += dy[j];
        b[0] += dy[j] * (x[j] - mean);
    }
    *sdy += lanes_total(a);
    *sdyx += lanes_total(b);
}

/* y = x * a + b */
static void plane_affine(const float *x, float *y, int n, float a, float b) {
    int j = 0;
#if defined(__SSE2__)
    __m128 va = _mm_set1_ps(a), vb = _mm_set1_ps(b);
    for (; j + 8 <= n; j += 8) {
        __m128 t0 = _mm_loadu_ps(x + j), t1 = _mm_loadu_ps(x + j + 4);
        _mm_storeu_ps(y + j, _mm_add_ps(_mm_mul_ps(t0, va), vb));
        _mm_storeu_ps(y + j + 4, _mm_add_ps(_mm_mul_ps(t1, va), vb));
    }
#endif
    for (; j < n; j++) y[j] = x[j] * a + b;
}

/* dx = g * dy - k1 * x - k0; dx is dy itself or does not overlap it (bn_bwd_dx). */
static void plane_bn_dx_to(const float *restrict x, const float *restrict dy, float *restrict dx,
                           int n, float g, float k1, float k0) {
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) dx[j + l] = g * dy[j + l] - k1 * x[j + l] - k0;
    for (; j < n; j++) dx[j] = g * dy[j] - k1 * x[j] - k0;
}
static void plane_bn_dx_inplace(const float *restrict x, float *restrict d, int n, float g,
                                float k1, float k0) {
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) d[j + l] = g * d[j + l] - k1 * x[j + l] - k0;
    for (; j < n; j++) d[j] = g * d[j] - k1 * x[j] - k0;
}
static void bn_bwd_dx(const float *x, const float *dy, float *dx, int n, float g, float k1,
                      float k0) {
    if (dx == dy)
        plane_bn_dx_inplace(x, dx, n, g, k1, k0);
    else
        plane_bn_dx_to(x, dy, dx, n, g, k1, k0);
}

static void bn_train_task(void *v, int tid, int nt) {
    chan_ctx *cx = v;
    size_t lo, hi;
    double m_count = (double)cx->n * cx->hw;
    cpu_range((size_t)cx->c, tid, nt, &lo, &hi);
    for (size_t ch = lo; ch < hi; ch++) {
        double s = 0, q = 0;
        for (int i = 0; i < cx->n; i++) s += plane_sum(PLANE(cx->x, i, ch), cx->hw);
        double mean = s / m_count;
        for (int i = 0; i < cx->n; i++) q += plane_sqdev(PLANE(cx->x, i, ch), cx->hw, mean);
        double var = q / m_count, invstd = 1.0 / sqrt(var + cx->eps);
        double unbiased = m_count > 1 ? q / (m_count - 1) : var;
        cx->smean[ch] = (float)mean;
        cx->sinv[ch] = (float)invstd;
        cx->rmean[ch] = (1.0f - cx->momentum) * cx->rmean[ch] + cx->momentum * (float)mean;
        cx->rvar[ch] = (1.0f - cx->momentum) * cx->rvar[ch] + cx->momentum * (float)unbiased;
        float a = (float)(cx->gamma[ch] * invstd), b = (float)(cx->beta[ch] - mean * a);
        for (int i = 0; i < cx->n; i++)
            plane_affine(PLANE(cx->x, i, ch), PLANE(cx->y, i, ch), cx->hw, a, b);
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
        for (int i = 0; i < cx->n; i++)
            plane_affine(PLANE(cx->x, i, ch), PLANE(cx->y, i, ch), cx->hw, a, b);
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
        for (int i = 0; i < cx->n; i++)
            plane_dy_sums(PLANE(cx->x, i, ch), PLANE(cx->dy, i, ch), cx->hw, mean, &sdy, &sdyx);
        if (cx->dgamma) cx->dgamma[ch] += (float)(sdyx * invstd);
        if (cx->dbeta) cx->dbeta[ch] += (float)sdy;
        double g = cx->gamma[ch] * invstd;
        float k1 = (float)(g * invstd * invstd * sdyx / m_count);
        float k0 = (float)(g * (sdy / m_count - mean * invstd * invstd * sdyx / m_count));
        float gf = (float)g;
        /* dx = g*(dy - sdy/M - (x-mean)*invstd^2*sdyx/M) = g*dy - k1*x - k0 */
        for (int i = 0; i < cx->n; i++)
            bn_bwd_dx(PLANE(cx->x, i, ch), PLANE(cx->dy, i, ch), PLANE(cx->dx, i, ch), cx->hw, gf,
                      k1, k0);
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

/* The PReLU selects are written with SSE2 intrinsics: the compiler keeps them as branches,
 * which mispredict on activations of random sign. Each vector is loaded before it is stored,
 * so y == x (dx == dy) in place is fine. */
#if defined(__SSE2__)
/* y = x > 0 ? x : a * x */
static void plane_prelu(const float *x, float *y, int n, float a) {
    __m128 va = _mm_set1_ps(a), zero = _mm_setzero_ps();
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        __m128 t = _mm_loadu_ps(x + j), pos = _mm_cmpgt_ps(t, zero);
        __m128 r = _mm_or_ps(_mm_and_ps(pos, t), _mm_andnot_ps(pos, _mm_mul_ps(va, t)));
        _mm_storeu_ps(y + j, r);
    }
    for (; j < n; j++) y[j] = x[j] > 0.0f ? x[j] : a * x[j];
}

/* sum over the 4 lanes of t, g where !(t > 0) of (double)t * g */
static __m128d neg_dot2(__m128 t, __m128 g, __m128d acc) {
    __m128d zero = _mm_setzero_pd();
    __m128d tl = _mm_cvtps_pd(t), gl = _mm_cvtps_pd(g);
    __m128d th = _mm_cvtps_pd(_mm_movehl_ps(t, t)), gh = _mm_cvtps_pd(_mm_movehl_ps(g, g));
    acc = _mm_add_pd(acc, _mm_and_pd(_mm_cmpngt_pd(tl, zero), _mm_mul_pd(tl, gl)));
    return _mm_add_pd(acc, _mm_and_pd(_mm_cmpngt_pd(th, zero), _mm_mul_pd(th, gh)));
}

/* dx = x > 0 ? dy : a * dy; returns the sum of x * dy over x <= 0 */
static double plane_prelu_bwd(const float *x, const float *dy, float *dx, int n, float a) {
    __m128 va = _mm_set1_ps(a), zero = _mm_setzero_ps();
    __m128d acc = _mm_setzero_pd();
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        __m128 t = _mm_loadu_ps(x + j), g = _mm_loadu_ps(dy + j), pos = _mm_cmpgt_ps(t, zero);
        acc = neg_dot2(t, g, acc);
        _mm_storeu_ps(dx + j, _mm_or_ps(_mm_and_ps(pos, g), _mm_andnot_ps(pos, _mm_mul_ps(va, g))));
    }
    double part[2];
    _mm_storeu_pd(part, acc);
    double s = part[0] + part[1];
    for (; j < n; j++) {
        float g = dy[j];
        if (x[j] > 0.0f) {
            dx[j] = g;
        } else {
            s += (double)x[j] * g;
            dx[j] = a * g;
        }
    }
    return s;
}
#else
static void plane_prelu(const float *x, float *y, int n, float a) {
    for (int j = 0; j < n; j++) y[j] = x[j] > 0.0f ? x[j] : a * x[j];
}
static double plane_prelu_bwd(const float *x, const float *dy, float *dx, int n, float a) {
    double s = 0;
    for (int j = 0; j < n; j++) {
        float g = dy[j];
        if (x[j] > 0.0f) {
            dx[j] = g;
        } else {
            s += (double)x[j] * g;
            dx[j] = a * g;
        }
    }
    return s;
}
#endif

static void prelu_fwd_task(void *v, int tid, int nt) {
    chan_ctx *cx = v;
    size_t lo, hi;
    cpu_range((size_t)cx->c, tid, nt, &lo, &hi);
    for (size_t ch = lo; ch < hi; ch++) {
        float a = cx->alpha[ch];
        for (int i = 0; i < cx->n; i++) {
            const float *x = PLANE(cx->x, i, ch);
            float *y = PLANE(cx->y, i, ch);
            plane_prelu(x, y, cx->hw, a);
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
            da += plane_prelu_bwd(x, dy, dx, cx->hw, a);
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

/* sum of (double)a * b in LANES accumulators */
static double row_dot(const float *restrict a, const float *restrict b, int n) {
    double acc[LANES] = {0};
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += (double)a[j + l] * b[j + l];
    for (; j < n; j++) acc[0] += (double)a[j] * b[j];
    return lanes_total(acc);
}

/* out = (a - b * d) / nrm, or a / nrm when b is NULL; out may be a itself */
static void row_axpy_div(const float *a, const float *b, float d, float nrm, float *out, int n) {
    int j = 0;
#if defined(__SSE2__)
    __m128 vd = _mm_set1_ps(d), vn = _mm_set1_ps(nrm);
    for (; j + 4 <= n; j += 4) {
        __m128 t = _mm_loadu_ps(a + j);
        if (b) t = _mm_sub_ps(t, _mm_mul_ps(_mm_loadu_ps(b + j), vd));
        _mm_storeu_ps(out + j, _mm_div_ps(t, vn));
    }
#endif
    for (; j < n; j++) out[j] = (b ? a[j] - b[j] * d : a[j]) / nrm;
}

static void l2_fwd_task(void *v, int tid, int nt) {
    row_ctx *r = v;
    size_t lo, hi;
    cpu_range((size_t)r->rows, tid, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        const float *x = r->x + i * r->dim;
        float *y = r->out + i * r->dim;
        float nrm = (float)sqrt(row_dot(x, x, r->dim));
        if (nrm < 1e-12f) nrm = 1e-12f;
        r->norms[i] = nrm;
        row_axpy_div(x, NULL, 0.0f, nrm, y, r->dim);
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
        double dot = row_dot(y, dy, r->dim);
        /* a clamped norm (|x| < 1e-12) passes no gradient through the norm */
        float d = nrm > 1e-12f ? (float)dot : 0.0f;
        row_axpy_div(dy, y, d, nrm, dx, r->dim);
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
