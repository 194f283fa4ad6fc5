/* batchnorm.c: batch norm (train, eval, backward) on the CPU backend, any storage dtype.
 * Per-channel reductions are accumulated in double; channels are split statically across the
 * thread pool. The per-channel coefficients and the per-element expressions are kmath.h's.
 */
#include <math.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "ft_common.h"
#include "cpu.h"

typedef struct chan_ctx {
    ft_ops *o;
    ft_dtype dt;
    int n, c, hw;
    float eps, momentum;
    const void *x, *dy;
    void *y, *dx;
    const float *gamma, *beta, *rmean_c, *rvar_c, *smean_c, *sinv_c;
    float *rmean, *rvar, *smean, *sinv, *dgamma, *dbeta;
} chan_ctx;

/* element offset of plane (image ni, channel ci) */
#define PLANE(ni, ci) (((size_t)(ni)*cx->c + (ci)) * cx->hw)
/* a plane as fp32 (scratch slot s when the dtype is 16-bit) */
#define LD(p, ni, ci, s) cpu_ld(cx->dt, (p), PLANE(ni, ci), cx->hw, SCR(s))
#define SCR(s)           (cx->dt == FT_F32 ? NULL : cpu_scratch_get(cx->o, tid, (s)))

/* Plane kernels. Sums are kept in CPU_LANES independent double accumulators (combined in a fixed
 * order, so results stay deterministic) and the blocked loops have a fixed trip count and
 * restrict pointers, so the compiler vectorizes them without runtime checks. The affine map
 * and the PReLU selects use SSE2 intrinsics where available. */

/* sum of x */
static double plane_sum(const float *restrict x, int n) {
    double acc[CPU_LANES] = {0};
    int j = 0;
    for (; j + CPU_LANES <= n; j += CPU_LANES)
        for (int l = 0; l < CPU_LANES; l++) acc[l] += (double)x[j + l];
    for (; j < n; j++) acc[0] += x[j];
    return cpu_lanes_total(acc);
}

/* sum of (x - mean)^2 */
static double plane_sqdev(const float *restrict x, int n, double mean) {
    double acc[CPU_LANES] = {0};
    int j = 0;
    for (; j + CPU_LANES <= n; j += CPU_LANES)
        for (int l = 0; l < CPU_LANES; l++) {
            double t = x[j + l] - mean;
            acc[l] += t * t;
        }
    for (; j < n; j++) acc[0] += (x[j] - mean) * (x[j] - mean);
    return cpu_lanes_total(acc);
}

/* *sdy += sum of dy, *sdyx += sum of dy * (x - mean) */
static void plane_dy_sums(const float *restrict x, const float *restrict dy, int n, double mean,
                          double *sdy, double *sdyx) {
    double a[CPU_LANES] = {0}, b[CPU_LANES] = {0};
    int j = 0;
    for (; j + CPU_LANES <= n; j += CPU_LANES)
        for (int l = 0; l < CPU_LANES; l++) {
            a[l] += dy[j + l];
            b[l] += dy[j + l] * (x[j + l] - mean);
        }
    for (; j < n; j++) {
        a[0] += dy[j];
        b[0] += dy[j] * (x[j] - mean);
    }
    *sdy += cpu_lanes_total(a);
    *sdyx += cpu_lanes_total(b);
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
    for (; j < n; j++) y[j] = ft_km_bn_affine(x[j], a, b);
}

/* dx = g * dy - k1 * x - k0; dx is dy itself or does not overlap it (bn_bwd_dx). */
static void plane_bn_dx_to(const float *restrict x, const float *restrict dy, float *restrict dx,
                           int n, float g, float k1, float k0) {
    int j = 0;
    for (; j + CPU_LANES <= n; j += CPU_LANES)
        for (int l = 0; l < CPU_LANES; l++) dx[j + l] = g * dy[j + l] - k1 * x[j + l] - k0;
    for (; j < n; j++) dx[j] = ft_km_bn_dx(x[j], dy[j], g, k1, k0);
}
static void plane_bn_dx_inplace(const float *restrict x, float *restrict d, int n, float g,
                                float k1, float k0) {
    int j = 0;
    for (; j + CPU_LANES <= n; j += CPU_LANES)
        for (int l = 0; l < CPU_LANES; l++) d[j + l] = g * d[j + l] - k1 * x[j + l] - k0;
    for (; j < n; j++) d[j] = ft_km_bn_dx(x[j], d[j], g, k1, k0);
}
static void bn_bwd_dx(const float *x, const float *dy, float *dx, int n, float g, float k1,
                      float k0) {
    if (dx == dy)
        plane_bn_dx_inplace(x, dx, n, g, k1, k0);
    else
        plane_bn_dx_to(x, dy, dx, n, g, k1, k0);
}

/* y = x * a + b over every image's plane of channel ch */
static void affine_planes(const chan_ctx *cx, int tid, size_t ch, float a, float b) {
    for (int i = 0; i < cx->n; i++) {
        const float *x = LD(cx->x, i, ch, 0);
        float *y = cpu_out(cx->dt, cx->y, PLANE(i, ch), SCR(1));
        plane_affine(x, y, cx->hw, a, b);
        cpu_put(cx->dt, cx->y, PLANE(i, ch), (size_t)cx->hw, y);
    }
}

static void bn_train_task(void *v, int tid, int nt) {
    chan_ctx *cx = v;
    size_t lo, hi;
    double m_count = (double)cx->n * cx->hw;
    cpu_range((size_t)cx->c, tid, nt, &lo, &hi);
    for (size_t ch = lo; ch < hi; ch++) {
        double s = 0, q = 0;
        for (int i = 0; i < cx->n; i++) s += plane_sum(LD(cx->x, i, ch, 0), cx->hw);
        double mean = s / m_count;
        for (int i = 0; i < cx->n; i++) q += plane_sqdev(LD(cx->x, i, ch, 0), cx->hw, mean);
        double var = q / m_count, invstd;
        double unbiased = m_count > 1 ? q / (m_count - 1) : var;
        float a, b;
        ft_km_bn_coef(mean, var, cx->eps, cx->gamma[ch], cx->beta[ch], &a, &b, &invstd);
        cx->smean[ch] = (float)mean;
        cx->sinv[ch] = (float)invstd;
        cx->rmean[ch] = ft_km_bn_running(cx->rmean[ch], cx->momentum, (float)mean);
        cx->rvar[ch] = ft_km_bn_running(cx->rvar[ch], cx->momentum, (float)unbiased);
        affine_planes(cx, tid, ch, a, b);
    }
}

static void bn_eval_task(void *v, int tid, int nt) {
    chan_ctx *cx = v;
    size_t lo, hi;
    cpu_range((size_t)cx->c, tid, nt, &lo, &hi);
    for (size_t ch = lo; ch < hi; ch++) {
        double invstd;
        float a, b;
        ft_km_bn_coef(cx->rmean_c[ch], cx->rvar_c[ch], cx->eps, cx->gamma[ch], cx->beta[ch], &a, &b,
                      &invstd);
        affine_planes(cx, tid, ch, a, b);
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
            plane_dy_sums(LD(cx->x, i, ch, 0), LD(cx->dy, i, ch, 1), cx->hw, mean, &sdy, &sdyx);
        if (cx->dgamma) cx->dgamma[ch] += (float)(sdyx * invstd);
        if (cx->dbeta) cx->dbeta[ch] += (float)sdy;
        float gf, k1, k0;
        ft_km_bn_bwd_coef(cx->gamma[ch], mean, invstd, sdy, sdyx, m_count, &gf, &k1, &k0);
        /* dx = g*(dy - sdy/M - (x-mean)*invstd^2*sdyx/M) = g*dy - k1*x - k0 */
        for (int i = 0; i < cx->n; i++) {
            const float *x = LD(cx->x, i, ch, 0), *dy = LD(cx->dy, i, ch, 1);
            float *dx = cpu_out(cx->dt, cx->dx, PLANE(i, ch), SCR(2));
            bn_bwd_dx(x, dy, dx, cx->hw, gf, k1, k0);
            cpu_put(cx->dt, cx->dx, PLANE(i, ch), (size_t)cx->hw, dx);
        }
    }
}

static int cpu_bn_fwd_train(ft_ops *o, ft_dtype dt, int n, int c, int hw, float eps, float momentum,
                            const void *x, const float *gamma, const float *beta, void *y,
                            float *rmean, float *rvar, float *smean, float *sinv) {
    if (n < 1 || c < 1 || hw < 1 || (size_t)n * hw < 2) return FT_EARG;
    chan_ctx cx = {.o = o,
                   .dt = dt,
                   .n = n,
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
    return cpu_run_planes(o, dt, n, c, hw, 3, bn_train_task, &cx);
}

static int cpu_bn_fwd_eval(ft_ops *o, ft_dtype dt, int n, int c, int hw, float eps, const void *x,
                           const float *gamma, const float *beta, const float *rmean,
                           const float *rvar, void *y) {
    chan_ctx cx = {.o = o,
                   .dt = dt,
                   .n = n,
                   .c = c,
                   .hw = hw,
                   .eps = eps,
                   .x = x,
                   .gamma = gamma,
                   .beta = beta,
                   .rmean_c = rmean,
                   .rvar_c = rvar,
                   .y = y};
    return cpu_run_planes(o, dt, n, c, hw, 3, bn_eval_task, &cx);
}

static int cpu_bn_bwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, const void *x, const void *dy,
                      const float *gamma, const float *smean, const float *sinv, void *dx,
                      float *dgamma, float *dbeta) {
    chan_ctx cx = {.o = o,
                   .dt = dt,
                   .n = n,
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
    return cpu_run_planes(o, dt, n, c, hw, 3, bn_bwd_task, &cx);
}

void cpu_install_batchnorm(ft_ops *o) {
    o->bn_fwd_train = cpu_bn_fwd_train;
    o->bn_fwd_eval = cpu_bn_fwd_eval;
    o->bn_bwd = cpu_bn_bwd;
}
