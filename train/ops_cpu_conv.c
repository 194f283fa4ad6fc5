/* ops_cpu_conv.c: 2-D convolution on the CPU backend: im2col + single-threaded sgemm per image,
 * images split statically across the thread pool.
 *
 * Workspace layout (conv_ws_bytes): one im2col buffer [c*r*r, oh*ow] per thread, then one
 * private weight-gradient buffer [k, c*r*r] per thread except thread 0, which accumulates
 * straight into dw. The private sums are added in thread order, so results are deterministic
 * for a given thread count.
 */
#include <string.h>

#include "ft_common.h"
#include "ops_cpu_impl.h"

static size_t round16(size_t n) {
    return (n + 15) / 16 * 16;
}
static size_t col_floats(const ft_conv_desc *d) {
    return round16((size_t)d->c * d->r * d->r * d->oh * d->ow);
}
static size_t wgt_floats(const ft_conv_desc *d) {
    return round16((size_t)d->k * d->c * d->r * d->r);
}
static int is_pointwise(const ft_conv_desc *d) {
    return d->r == 1 && d->stride == 1 && d->pad == 0;
}

static size_t cpu_conv_ws_bytes(ft_ops *o, const ft_conv_desc *d) {
    size_t t = (size_t)cpu_pool_of(o)->n;
    return (t * col_floats(d) + (t - 1) * wgt_floats(d)) * sizeof(float);
}

/* valid output columns [*lo, *hi) for kernel column kj: 0 <= ox*s - p + kj < w */
static void ox_range(const ft_conv_desc *d, int kj, int *lo, int *hi) {
    int s = d->stride, off = d->pad - kj;
    int a = off > 0 ? (off + s - 1) / s : 0;
    int last = d->w - 1 + off; /* ox*s <= last */
    int b = last < 0 ? 0 : last / s + 1;
    if (b > d->ow) b = d->ow;
    if (a > b) a = b;
    *lo = a, *hi = b;
}

static void im2col(const ft_conv_desc *d, const float *x, float *col) {
    int r = d->r, s = d->stride, oh = d->oh, ow = d->ow;
    for (int c = 0; c < d->c; c++)
        for (int ki = 0; ki < r; ki++)
            for (int kj = 0; kj < r; kj++) {
                float *dst = col + ((size_t)(c * r + ki) * r + kj) * oh * ow;
                int lo, hi;
                ox_range(d, kj, &lo, &hi);
                for (int oy = 0; oy < oh; oy++) {
                    float *row = dst + (size_t)oy * ow;
                    int iy = oy * s - d->pad + ki;
                    if (iy < 0 || iy >= d->h || lo >= hi) {
                        memset(row, 0, (size_t)ow * sizeof(float));
                        continue;
                    }
                    const float *src = x + ((size_t)c * d->h + iy) * d->w - d->pad + kj;
                    for (int ox = 0; ox < lo; ox++) row[ox] = 0.0f;
                    if (s == 1)
                        memcpy(row + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
                    else
                        for (int ox = lo; ox < hi; ox++) row[ox] = src[ox * s];
                    for (int ox = hi; ox < ow; ox++) row[ox] = 0.0f;
                }
            }
}

/* dx (zeroed by the caller) += col2im(col) */
static void col2im(const ft_conv_desc *d, const float *col, float *dx) {
    int r = d->r, s = d->stride, oh = d->oh, ow = d->ow;
    for (int c = 0; c < d->c; c++)
        for (int ki = 0; ki < r; ki++)
            for (int kj = 0; kj < r; kj++) {
                const float *src = col + ((size_t)(c * r + ki) * r + kj) * oh * ow;
                int lo, hi;
                ox_range(d, kj, &lo, &hi);
                for (int oy = 0; oy < oh; oy++) {
                    int iy = oy * s - d->pad + ki;
                    if (iy < 0 || iy >= d->h) continue;
                    const float *row = src + (size_t)oy * ow;
                    float *dst = dx + ((size_t)c * d->h + iy) * d->w - d->pad + kj;
                    if (s == 1)
                        for (int ox = lo; ox < hi; ox++) dst[ox] += row[ox];
                    else
                        for (int ox = lo; ox < hi; ox++) dst[ox * s] += row[ox];
                }
            }
}

typedef struct conv_ctx {
    const ft_conv_desc *d;
    const float *x, *w, *dy;
    float *y, *dx, *dw;
    float *ws;
    int nthreads;
} conv_ctx;

static float *thread_col(const conv_ctx *c, int tid) {
    return c->ws + (size_t)tid * col_floats(c->d);
}
static float *thread_dw(const conv_ctx *c, int tid) {
    if (tid == 0) return c->dw;
    return c->ws + (size_t)c->nthreads * col_floats(c->d) + (size_t)(tid - 1) * wgt_floats(c->d);
}

static void fwd_task(void *v, int tid, int nt) {
    conv_ctx *c = v;
    const ft_conv_desc *d = c->d;
    size_t lo, hi, in_sz = (size_t)d->c * d->h * d->w, out_sz = (size_t)d->oh * d->ow;
    int kk = d->c * d->r * d->r;
    cpu_range((size_t)d->n, tid, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        const float *col = c->x + i * in_sz;
        if (!is_pointwise(d)) {
            im2col(d, col, thread_col(c, tid));
            col = thread_col(c, tid);
        }
        cpu_sgemm1(0, 0, d->k, (int)out_sz, kk, 1.0f, c->w, kk, col, (int)out_sz, 0.0f,
                   c->y + i * d->k * out_sz, (int)out_sz);
    }
}

static void bwd_data_task(void *v, int tid, int nt) {
    conv_ctx *c = v;
    const ft_conv_desc *d = c->d;
    size_t lo, hi, in_sz = (size_t)d->c * d->h * d->w, out_sz = (size_t)d->oh * d->ow;
    int kk = d->c * d->r * d->r;
    cpu_range((size_t)d->n, tid, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        float *dxi = c->dx + i * in_sz;
        float *col = is_pointwise(d) ? dxi : thread_col(c, tid);
        cpu_sgemm1(1, 0, kk, (int)out_sz, d->k, 1.0f, c->w, kk, c->dy + i * d->k * out_sz,
                   (int)out_sz, 0.0f, col, (int)out_sz);
        if (!is_pointwise(d)) {
            memset(dxi, 0, in_sz * sizeof(float));
            col2im(d, col, dxi);
        }
    }
}

static void bwd_filter_task(void *v, int tid, int nt) {
    conv_ctx *c = v;
    const ft_conv_desc *d = c->d;
    size_t lo, hi, in_sz = (size_t)d->c * d->h * d->w, out_sz = (size_t)d->oh * d->ow;
    int kk = d->c * d->r * d->r;
    cpu_range((size_t)d->n, tid, nt, &lo, &hi);
    float *dw = thread_dw(c, tid);
    if (tid > 0 && lo >= hi) memset(dw, 0, (size_t)d->k * kk * sizeof(float));
    for (size_t i = lo; i < hi; i++) {
        const float *col = c->x + i * in_sz;
        if (!is_pointwise(d)) {
            im2col(d, col, thread_col(c, tid));
            col = thread_col(c, tid);
        }
        float beta = (tid > 0 && i == lo) ? 0.0f : 1.0f;
        cpu_sgemm1(0, 1, d->k, kk, (int)out_sz, 1.0f, c->dy + i * d->k * out_sz, (int)out_sz, col,
                   (int)out_sz, beta, dw, kk);
    }
}

static void reduce_dw_task(void *v, int tid, int nt) {
    conv_ctx *c = v;
    size_t lo, hi, total = (size_t)c->d->k * c->d->c * c->d->r * c->d->r;
    cpu_range(total, tid, nt, &lo, &hi);
    for (int t = 1; t < c->nthreads; t++) {
        const float *p = thread_dw(c, t);
        for (size_t i = lo; i < hi; i++) c->dw[i] += p[i];
    }
}

static int cpu_conv_fwd(ft_ops *o, const ft_conv_desc *d, const float *x, const float *w, float *y,
                        void *ws) {
    conv_ctx c = {.d = d, .x = x, .w = w, .y = y, .ws = ws, .nthreads = cpu_pool_of(o)->n};
    cpu_run(o, fwd_task, &c);
    return 0;
}

static int cpu_conv_bwd_data(ft_ops *o, const ft_conv_desc *d, const float *dy, const float *w,
                             float *dx, void *ws) {
    conv_ctx c = {.d = d, .dy = dy, .w = w, .dx = dx, .ws = ws, .nthreads = cpu_pool_of(o)->n};
    cpu_run(o, bwd_data_task, &c);
    return 0;
}

static int cpu_conv_bwd_filter(ft_ops *o, const ft_conv_desc *d, const float *x, const float *dy,
                               float *dw, void *ws) {
    conv_ctx c = {.d = d, .x = x, .dy = dy, .dw = dw, .ws = ws, .nthreads = cpu_pool_of(o)->n};
    cpu_run(o, bwd_filter_task, &c);
    if (c.nthreads > 1) cpu_run(o, reduce_dw_task, &c);
    return 0;
}

void cpu_install_conv(ft_ops *o) {
    o->conv_ws_bytes = cpu_conv_ws_bytes;
    o->conv_fwd = cpu_conv_fwd;
    o->conv_bwd_data = cpu_conv_bwd_data;
    o->conv_bwd_filter = cpu_conv_bwd_filter;
}
