/* gemm.c: matrix products on the CPU backend: the fp32 GEMM split across the pool (the larger
 * output dimension), the storage-dtype GEMM (operands converted to fp32, result rounded once)
 * and the fused flatten + fc layer (fp32, as arcface_torch runs fc on x.float()).
 */
#include <cblas.h>
#include <errno.h>

#include "ft_common.h"
#include "cpu.h"

/* ---- GEMM: split the larger output dimension across the pool ---- */

void cpu_sgemm1(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { /* C = beta C */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] *= beta;
        return;
    }
    cpu_openblas_note();
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

int cpu_gemm_f32(ft_ops *o, int ta, int tb, int m, int n, int k, float alpha, const float *a,
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

static int linear_fwd(ft_ops *o, int m, int in, int out, const float *x, const float *w,
                      const float *bias, float *y) {
    int rc = cpu_gemm_f32(o, 0, 1, m, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
    if (rc || !bias) return rc;
    bias_ctx c = {.m = m, .out = out, .bias = bias, .y = y};
    cpu_run_sized(o, (size_t)m * out, bias_add_task, &c);
    return 0;
}

static int linear_bwd(ft_ops *o, int m, int in, int out, const float *x, const float *w,
                      const float *dy, float *dx, float *dw, float *dbias) {
    int rc = 0;
    if (dx) rc = cpu_gemm_f32(o, 0, 0, m, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
    if (!rc && dw) rc = cpu_gemm_f32(o, 1, 0, out, in, m, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (rc || !dbias) return rc;
    bias_ctx c = {.m = m, .out = out, .dy = dy, .dbias = dbias};
    cpu_run_sized(o, (size_t)m * out, bias_grad_task, &c);
    return 0;
}

/* ---- storage dtypes ---- */

/* rows x cols elements of a row-major matrix with row stride ld, from element 0 */
static size_t span(int rows, int cols, int ld) {
    return rows > 0 && cols > 0 ? (size_t)(rows - 1) * ld + (size_t)cols : 0;
}

static int cpu_gemm(ft_ops *o, ft_dtype dt, int ta, int tb, int m, int n, int k, float alpha,
                    const void *a, int lda, const void *b, int ldb, float beta, void *c, int ldc) {
    if (m < 0 || n < 0 || k < 0) return FT_EARG;
    if (dt == FT_F32) return cpu_gemm_f32(o, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (!cpu_float_dt(dt)) return FT_ENOTSUP;
    size_t na = ta ? span(k, m, lda) : span(m, k, lda), nb = tb ? span(n, k, ldb) : span(k, n, ldb);
    size_t nc = span(m, n, ldc);
    float *fa = cpu_shared(o, 0, na), *fb = cpu_shared(o, 1, nb), *fc = cpu_shared(o, 2, nc);
    if (!fa || !fb || !fc) return -ENOMEM;
    int rc = o->cast(o, na, dt, a, FT_F32, fa);
    if (!rc) rc = o->cast(o, nb, dt, b, FT_F32, fb);
    /* C is loaded also when beta is 0: the columns between n and ldc must come back as they
     * were (a dt -> f32 -> dt round trip is exact), and sgemm ignores C's values then */
    if (!rc) rc = o->cast(o, nc, dt, c, FT_F32, fc);
    if (!rc) rc = cpu_gemm_f32(o, ta, tb, m, n, k, alpha, fa, lda, fb, ldb, beta, fc, ldc);
    if (!rc) rc = o->cast(o, nc, FT_F32, fc, dt, c);
    return rc;
}

static int cpu_fc_fwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, int out, const void *x,
                      const float *w, const float *bias, float *y) {
    if (n < 1 || c < 1 || hw < 1 || out < 1) return FT_EARG;
    int in = c * hw;
    if (dt == FT_F32) return linear_fwd(o, n, in, out, x, w, bias, y);
    float *fx = cpu_shared(o, 0, (size_t)n * in);
    if (!fx) return -ENOMEM;
    int rc = o->cast(o, (size_t)n * in, dt, x, FT_F32, fx);
    return rc ? rc : linear_fwd(o, n, in, out, fx, w, bias, y);
}

static int cpu_fc_bwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, int out, const void *x,
                      const float *w, const float *dy, void *dx, float *dw, float *dbias) {
    if (n < 1 || c < 1 || hw < 1 || out < 1) return FT_EARG;
    int in = c * hw;
    if (dt == FT_F32) return linear_bwd(o, n, in, out, x, w, dy, dx, dw, dbias);
    size_t cnt = (size_t)n * in;
    float *fx = cpu_shared(o, 0, cnt), *fdx = dx ? cpu_shared(o, 1, cnt) : NULL;
    if (!fx || (dx && !fdx)) return -ENOMEM;
    int rc = o->cast(o, cnt, dt, x, FT_F32, fx);
    if (!rc) rc = linear_bwd(o, n, in, out, fx, w, dy, fdx, dw, dbias);
    if (!rc && dx) rc = o->cast(o, cnt, FT_F32, fdx, dt, dx);
    return rc;
}

void cpu_install_gemm(ft_ops *o) {
    o->gemm = cpu_gemm;
    o->fc_fwd = cpu_fc_fwd;
    o->fc_bwd = cpu_fc_bwd;
}
