/* margin.c: margin softmax pieces on the CPU backend (see ops.h and model/pfc.h for the
 * semantics): margin forward/backward, row max, exp + row sum, softmax cross-entropy gradient,
 * all fp32. Rows (samples) are split across the thread pool; the per-entry expressions are
 * kmath.h's.
 */
#include <math.h>

#include "ft_common.h"
#include "cpu.h"

typedef struct sm_ctx {
    int rows, cols;
    const ft_margin *mg;
    const int32_t *label;
    const float *in, *aux;
    float *out, *vec;
    float scale;
} sm_ctx;

static void margin_fwd_task(void *v, int tid, int nt) {
    sm_ctx *c = v;
    const ft_margin *mg = c->mg;
    size_t lo, hi;
    cpu_range((size_t)c->rows, tid, nt, &lo, &hi);
    for (size_t r = lo; r < hi; r++) {
        const float *x = c->in + r * c->cols;
        float *y = c->out + r * c->cols;
        int t = c->label[r];
        for (int j = 0; j < c->cols; j++)
            y[j] =
                ft_km_margin_logit(mg->kind, mg->s, mg->m2, mg->m3, mg->filter_thr, x[j], j == t);
    }
}

static void margin_bwd_task(void *v, int tid, int nt) {
    sm_ctx *c = v;
    const ft_margin *mg = c->mg;
    int exact = mg->grad_mode == FT_MARGIN_GRAD_EXACT;
    size_t lo, hi;
    cpu_range((size_t)c->rows, tid, nt, &lo, &hi);
    for (size_t r = lo; r < hi; r++) {
        const float *x = c->aux + r * c->cols, *dl = c->in + r * c->cols;
        float *dc = c->out + r * c->cols;
        int t = c->label[r];
        for (int j = 0; j < c->cols; j++)
            dc[j] = ft_km_margin_dcos(mg->kind, exact, mg->s, mg->m2, mg->filter_thr, x[j], dl[j],
                                      j == t);
    }
}

static void row_max_task(void *v, int tid, int nt) {
    sm_ctx *c = v;
    size_t lo, hi;
    cpu_range((size_t)c->rows, tid, nt, &lo, &hi);
    for (size_t r = lo; r < hi; r++) {
        const float *x = c->in + r * c->cols;
        float m = -INFINITY;
        for (int j = 0; j < c->cols; j++) m = x[j] > m ? x[j] : m;
        c->vec[r] = m;
    }
}

static void exp_sum_task(void *v, int tid, int nt) {
    sm_ctx *c = v;
    size_t lo, hi;
    cpu_range((size_t)c->rows, tid, nt, &lo, &hi);
    for (size_t r = lo; r < hi; r++) {
        float *x = c->out + r * c->cols;
        float m = c->aux[r];
        double s = 0;
        for (int j = 0; j < c->cols; j++) {
            x[j] = expf(x[j] - m);
            s += x[j];
        }
        c->vec[r] = (float)s;
    }
}

static void xent_task(void *v, int tid, int nt) {
    sm_ctx *c = v;
    size_t lo, hi;
    cpu_range((size_t)c->rows, tid, nt, &lo, &hi);
    for (size_t r = lo; r < hi; r++) {
        float *e = c->out + r * c->cols;
        float sum = c->aux[r];
        int t = c->label[r];
        c->vec[r] = t >= 0 ? ft_km_xent_prob(e[t], sum) : 0.0f;
        for (int j = 0; j < c->cols; j++)
            e[j] = ft_km_xent_grad(ft_km_xent_prob(e[j], sum), j == t, c->scale);
    }
}

static int check_margin(const ft_margin *mg) {
    if (mg->kind != FT_MARGIN_ARCFACE && mg->kind != FT_MARGIN_COSFACE) return FT_EARG;
    return 0;
}

static int cpu_margin_fwd(ft_ops *o, int rows, int cols, const ft_margin *mg, const int32_t *label,
                          const float *cosv, float *logits) {
    if (check_margin(mg)) return FT_EARG;
    sm_ctx c = {.rows = rows, .cols = cols, .mg = mg, .label = label, .in = cosv, .out = logits};
    cpu_run_sized(o, (size_t)rows * cols, margin_fwd_task, &c);
    return 0;
}

static int cpu_margin_bwd(ft_ops *o, int rows, int cols, const ft_margin *mg, const int32_t *label,
                          const float *cosv, const float *dlogits, float *dcos) {
    if (check_margin(mg)) return FT_EARG;
    sm_ctx c = {.rows = rows,
                .cols = cols,
                .mg = mg,
                .label = label,
                .in = dlogits,
                .aux = cosv,
                .out = dcos};
    cpu_run_sized(o, (size_t)rows * cols, margin_bwd_task, &c);
    return 0;
}

static int cpu_row_max(ft_ops *o, int rows, int cols, const float *x, float *mx) {
    sm_ctx c = {.rows = rows, .cols = cols, .in = x, .vec = mx};
    cpu_run_sized(o, (size_t)rows * cols, row_max_task, &c);
    return 0;
}

static int cpu_row_exp_sum(ft_ops *o, int rows, int cols, float *x, const float *mx, float *sum) {
    sm_ctx c = {.rows = rows, .cols = cols, .out = x, .aux = mx, .vec = sum};
    cpu_run_sized(o, (size_t)rows * cols, exp_sum_task, &c);
    return 0;
}

static int cpu_softmax_xent_bwd(ft_ops *o, int rows, int cols, float *e, const float *sum,
                                const int32_t *label, float grad_scale, float *ptarget) {
    sm_ctx c = {.rows = rows,
                .cols = cols,
                .out = e,
                .aux = sum,
                .label = label,
                .scale = grad_scale,
                .vec = ptarget};
    cpu_run_sized(o, (size_t)rows * cols, xent_task, &c);
    return 0;
}

void cpu_install_margin(ft_ops *o) {
    o->margin_fwd = cpu_margin_fwd;
    o->margin_bwd = cpu_margin_bwd;
    o->row_max = cpu_row_max;
    o->row_exp_sum = cpu_row_exp_sum;
    o->softmax_xent_bwd = cpu_softmax_xent_bwd;
}
