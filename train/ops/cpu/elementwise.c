/* elementwise.c: residual add on activations (any storage dtype), and the fp32 vector ops on
 * gradients: axpy, scale, sum of squares, and the loss scaler's unscale + inf/NaN check. */
#include "ft_common.h"
#include "cpu.h"

enum { EW_CHUNK = 2048 };

typedef struct ew_ctx {
    ft_ops *o;
    ft_dtype dt;
    size_t count;
    float alpha;
    const void *a, *b;
    void *y;
    double part[64];
    int found[64];
} ew_ctx;

static void add_task(void *c, int tid, int nt) {
    ew_ctx *e = c;
    size_t lo, hi;
    cpu_range(e->count, tid, nt, &lo, &hi);
    float *ba = e->dt == FT_F32 ? NULL : cpu_scratch_get(e->o, tid, 0);
    float *bb = e->dt == FT_F32 ? NULL : cpu_scratch_get(e->o, tid, 1);
    float *by = e->dt == FT_F32 ? NULL : cpu_scratch_get(e->o, tid, 2);
    for (size_t i = lo; i < hi; i += EW_CHUNK) {
        size_t n = hi - i < EW_CHUNK ? hi - i : EW_CHUNK;
        const float *a = cpu_ld(e->dt, e->a, i, n, ba), *b = cpu_ld(e->dt, e->b, i, n, bb);
        float *y = cpu_out(e->dt, e->y, i, by);
        for (size_t j = 0; j < n; j++) y[j] = a[j] + b[j];
        cpu_put(e->dt, e->y, i, n, y);
    }
}
static int cpu_add(ft_ops *o, ft_dtype dt, size_t count, const void *a, const void *b, void *y) {
    if (!cpu_float_dt(dt)) return FT_ENOTSUP;
    int rc = dt == FT_F32 ? 0 : cpu_scratch_reserve(o, 3, EW_CHUNK);
    if (rc) return rc;
    ew_ctx e = {.o = o, .dt = dt, .count = count, .a = a, .b = b, .y = y};
    cpu_run_sized(o, count, add_task, &e);
    return 0;
}

static void axpy_task(void *c, int tid, int nt) {
    ew_ctx *e = c;
    size_t b, en;
    const float *x = e->a;
    float *y = e->y;
    cpu_range(e->count, tid, nt, &b, &en);
    for (size_t i = b; i < en; i++) y[i] += e->alpha * x[i];
}
static int cpu_axpy(ft_ops *o, size_t count, float alpha, const float *x, float *y) {
    ew_ctx e = {.count = count, .alpha = alpha, .a = x, .y = y};
    cpu_run_sized(o, count, axpy_task, &e);
    return 0;
}
static void scale_task(void *c, int tid, int nt) {
    ew_ctx *e = c;
    size_t b, en;
    float *y = e->y;
    cpu_range(e->count, tid, nt, &b, &en);
    for (size_t i = b; i < en; i++) y[i] *= e->alpha;
}
static int cpu_scale(ft_ops *o, size_t count, float alpha, float *x) {
    ew_ctx e = {.count = count, .alpha = alpha, .y = x};
    cpu_run_sized(o, count, scale_task, &e);
    return 0;
}
static void sumsq_task(void *c, int tid, int nt) {
    ew_ctx *e = c;
    size_t b, en;
    const float *x = e->a;
    cpu_range(e->count, tid, nt, &b, &en);
    double s = 0;
    for (size_t i = b; i < en; i++) s += (double)x[i] * x[i];
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

static int cpu_sumsq_acc(ft_ops *o, size_t count, const float *x, double *acc) {
    double s;
    int rc = cpu_sumsq(o, count, x, &s);
    if (!rc) *acc += s;
    return rc;
}

static void unscale_task(void *c, int tid, int nt) {
    ew_ctx *e = c;
    size_t b, en;
    float *g = e->y;
    int bad = 0;
    cpu_range(e->count, tid, nt, &b, &en);
    for (size_t i = b; i < en; i++) {
        bad |= ft_km_nonfinite(g[i]);
        g[i] *= e->alpha;
    }
    e->found[tid] = bad;
}
static int cpu_unscale_check(ft_ops *o, size_t count, float inv_scale, float *g, float *found) {
    ew_ctx e = {.count = count, .alpha = inv_scale, .y = g};
    int nt = cpu_pool_of(o)->n;
    if (count < 32768 || nt > 64) {
        nt = 1;
        unscale_task(&e, 0, 1);
    } else {
        cpu_run(o, unscale_task, &e);
    }
    for (int t = 0; t < nt; t++)
        if (e.found[t]) *found = 1.0f;
    return 0;
}

void cpu_install_elementwise(ft_ops *o) {
    o->add = cpu_add;
    o->axpy = cpu_axpy;
    o->scale = cpu_scale;
    o->sumsq = cpu_sumsq;
    o->sumsq_acc = cpu_sumsq_acc;
    o->unscale_check = cpu_unscale_check;
}
