/* rows.c: row operations on fp32 matrices on the CPU backend: L2 normalization (forward and
 * backward) and the gather / scatter-add of Partial FC's sampled class centres. Rows are split
 * statically across the thread pool; the per-element expressions are kmath.h's.
 */
#include <math.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "ft_common.h"
#include "cpu.h"

typedef struct row_ctx {
    int rows, dim;
    const float *x, *y, *dy, *norms_c, *src;
    float *out, *norms, *dst;
    const int32_t *idx;
} row_ctx;

/* sum of (double)a * b in CPU_LANES accumulators */
static double row_dot(const float *restrict a, const float *restrict b, int n) {
    double acc[CPU_LANES] = {0};
    int j = 0;
    for (; j + CPU_LANES <= n; j += CPU_LANES)
        for (int l = 0; l < CPU_LANES; l++) acc[l] += (double)a[j + l] * b[j + l];
    for (; j < n; j++) acc[0] += (double)a[j] * b[j];
    return cpu_lanes_total(acc);
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
    for (; j < n; j++) out[j] = b ? ft_km_l2_dx(a[j], b[j], d, nrm) : a[j] / nrm;
}

static void l2_fwd_task(void *v, int tid, int nt) {
    row_ctx *r = v;
    size_t lo, hi;
    cpu_range((size_t)r->rows, tid, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        const float *x = r->x + i * r->dim;
        float *y = r->out + i * r->dim;
        float nrm = ft_km_l2_denom(row_dot(x, x, r->dim));
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
        float d = ft_km_l2_dot_term(nrm, dot);
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

void cpu_install_rows(ft_ops *o) {
    o->l2norm_fwd = cpu_l2norm_fwd;
    o->l2norm_bwd = cpu_l2norm_bwd;
    o->gather_rows = cpu_gather_rows;
    o->scatter_add_rows = cpu_scatter_add_rows;
}
