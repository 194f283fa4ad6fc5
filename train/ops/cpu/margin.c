/* ops_cpu_softmax.c: margin softmax pieces on the CPU backend (see ops.h and pfc.h for the
 * semantics): margin forward/backward, row max, exp + row sum, softmax cross-entropy gradient.
 * Rows (samples) are split across the thread pool.
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

static float clampf1(float x) {
    return x < -1.0f ? -1.0f : (x > 1.0f ? 1.0f : x);
}

/* filtered by interclass filtering: multiplied by 0 (value and gradient) */
static int filtered(const ft_margin *mg, float x, int is_target) {
    return mg->filter_thr > 0.0f && x > mg->filter_thr && !is_target;
}

static void margin_fwd_task(void *v, int tid, int nt) {
    sm_ctx *c = v;
    const ft_margin *mg = c->mg;
    size_t lo, hi;
    cpu_range((size_t)c->rows, tid, nt, &lo, &hi);
    for (size_t r = lo; r < hi; r++) {
        const float *x = c->in + r * c->cols;
        float *y = c->out + r * c->cols;
        int t = c->label[r];
        for (int j = 0; j < c->cols; j++) {
            float xv = clampf1(x[j]);
            if (filtered(mg, xv, j == t)) xv = 0.0f;
            y[j] = mg->s * xv;
        }
        if (t >= 0) {
            float xv = clampf1(x[t]);
            float m = mg->kind == FT_MARGIN_ARCFACE ? cosf(acosf(xv) + mg->m2) : xv - mg->m3;
            y[t] = mg->s * m;
        }
    }
}

static void margin_bwd_task(void *v, int tid, int nt) {
    sm_ctx *c = v;
    const ft_margin *mg = c->mg;
    size_t lo, hi;
    cpu_range((size_t)c->rows, tid, nt, &lo, &hi);
    for (size_t r = lo; r < hi; r++) {
        const float *x = c->aux + r * c->cols, *dl = c->in + r * c->cols;
        float *dc = c->out + r * c->cols;
        int t = c->label[r];
        for (int j = 0; j < c->cols; j++) {
            float raw = x[j];
            int pass = raw >= -1.0f && raw <= 1.0f && !filtered(mg, clampf1(raw), j == t);
            dc[j] = pass ? dl[j] * mg->s : 0.0f;
        }
        if (t >= 0 && mg->kind == FT_MARGIN_ARCFACE && mg->grad_mode == FT_MARGIN_GRAD_EXACT) {
            double xv = clampf1(x[t]), sn = sqrt(fmax(1.0 - xv * xv, 1e-12));
            dc[t] *= (float)(cos(mg->m2) + sin(mg->m2) * xv / sn);
        }
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
        for (int j = 0; j < c->cols; j++) e[j] = e[j] / sum;
        c->vec[r] = t >= 0 ? e[t] : 0.0f;
        if (t >= 0) e[t] -= 1.0f;
        for (int j = 0; j < c->cols; j++) e[j] *= c->scale;
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

void cpu_install_softmax(ft_ops *o) {
    o->margin_fwd = cpu_margin_fwd;
    o->margin_bwd = cpu_margin_bwd;
    o->row_max = cpu_row_max;
    o->row_exp_sum = cpu_row_exp_sum;
    o->softmax_xent_bwd = cpu_softmax_xent_bwd;
}
