/* conv.c: 2-D convolution on the CPU backend: im2col + single-threaded sgemm, images split
 * statically across the thread pool.
 *
 * Small feature maps give skinny per-image GEMMs in which packing the weights (and, for the
 * weight gradient, reading and writing dw) costs a sizeable share of the time, so each thread
 * processes its images in blocks of conv_block(d) images: their columns sit side by side in
 * one im2col buffer [c*r*r, nb*oh*ow], and one GEMM covers the block. The outputs
 * (forward) or output gradients (backward) of a block are staged in a [k, nb*oh*ow] buffer.
 *
 * Workspace layout (conv_ws_bytes): per thread an im2col buffer and a staging buffer, then one
 * private weight-gradient buffer [k, c*r*r] per thread except thread 0, which accumulates
 * straight into dw. The private sums are added in thread order, and the blocks depend only on
 * the thread count, so results are deterministic for a given thread count.
 *
 * 16-bit storage: im2col converts while it gathers, outputs and output gradients always pass
 * through the staging buffer (converted there), the data gradient is accumulated in a per-thread
 * fp32 image and rounded once, and the weight copy (dtype dt) is converted to fp32 once per
 * call into the shared tail of the workspace. The GEMMs are the fp32 path's.
 */
#include <stdio.h>
#include <string.h>

#include "ft_common.h"
#include "cpu.h"

/* GEMM width (output pixels) a block of images aims for. 256 blocks the 7x7 maps (several
 * images per GEMM) and leaves 14x14 and larger maps per image; blocking 14x14 maps as well
 * measured no faster. */
enum { CONV_BLOCK_COLS = 256 };

static size_t round16(size_t n) {
    return (n + 15) / 16 * 16;
}
static size_t out_px(const ft_conv_desc *d) {
    return (size_t)d->oh * d->ow;
}
/* images per block: enough to reach CONV_BLOCK_COLS columns, at most one thread's share */
static int conv_block(const ft_conv_desc *d, int nthreads) {
    size_t nb = CONV_BLOCK_COLS / out_px(d), share = ((size_t)d->n + nthreads - 1) / nthreads;
    if (nb > share) nb = share;
    return nb < 1 ? 1 : (int)nb;
}
static size_t col_floats(const ft_conv_desc *d, int nthreads) {
    return round16((size_t)d->c * d->r * d->r * out_px(d) * conv_block(d, nthreads));
}
static size_t stage_floats(const ft_conv_desc *d, int nthreads, ft_dtype dt) {
    int nb = conv_block(d, nthreads);
    return nb > 1 || dt != FT_F32 ? round16((size_t)d->k * out_px(d) * nb) : 0;
}
static size_t img_floats(const ft_conv_desc *d, ft_dtype dt) {
    return dt == FT_F32 ? 0 : round16((size_t)d->c * d->h * d->w);
}
static size_t per_thread(const ft_conv_desc *d, int nthreads, ft_dtype dt) {
    return col_floats(d, nthreads) + stage_floats(d, nthreads, dt) + img_floats(d, dt);
}
static size_t wgt_floats(const ft_conv_desc *d) {
    return round16((size_t)d->k * d->c * d->r * d->r);
}
static int is_pointwise(const ft_conv_desc *d) {
    return d->r == 1 && d->stride == 1 && d->pad == 0;
}

/* [per thread: col | stage | img] x t, [private dw] x (t-1), [fp32 weight] (16-bit only) */
static size_t cpu_conv_ws_bytes_im2col(ft_ops *o, const ft_conv_desc *d, ft_dtype dt);
static size_t cpu_conv_ws_bytes(ft_ops *o, const ft_conv_desc *d, ft_dtype dt) {
    size_t b = 0;
#ifdef FT_HAVE_ONEDNN
    if (!cpu_float_dt(dt) || !cpu_dnnl_conv_ws(o, d, dt, &b))
#endif
        b = cpu_conv_ws_bytes_im2col(o, d, dt);
    if (b > cpu_of(o)->conv_ws_max) cpu_of(o)->conv_ws_max = b;
    return b;
}

/* the im2col path's workspace fits what the caller holds (see cpu_backend.conv_ws_max) */
static int im2col_fits(ft_ops *o, const ft_conv_desc *d, ft_dtype dt) {
    size_t need = cpu_conv_ws_bytes_im2col(o, d, dt);
    if (need <= cpu_of(o)->conv_ws_max) return 0;
    fprintf(stderr,
            "conv n %d, c %d, %dx%d, k %d: needs %zu bytes of workspace, more than any "
            "conv_ws_bytes reply (%zu)\n",
            d->n, d->c, d->h, d->w, d->k, need, cpu_of(o)->conv_ws_max);
    return FT_EARG;
}
static size_t cpu_conv_ws_bytes_im2col(ft_ops *o, const ft_conv_desc *d, ft_dtype dt) {
    int t = cpu_pool_of(o)->n;
    size_t w32 = dt == FT_F32 ? 0 : wgt_floats(d);
    return ((size_t)t * per_thread(d, t, dt) + (size_t)(t - 1) * wgt_floats(d) + w32) *
           sizeof(float);
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

/* col[(c*r+ki)*r+kj, 0..oh*ow) (rows ld floats apart) = the input pixels under each tap of
 * image x0 (element offset of the image in x, of dtype dt) */
static void im2col(const ft_conv_desc *d, ft_dtype dt, const void *xv, size_t x0, float *col,
                   size_t ld) {
    int r = d->r, s = d->stride, oh = d->oh, ow = d->ow;
    for (int c = 0; c < d->c; c++)
        for (int ki = 0; ki < r; ki++)
            for (int kj = 0; kj < r; kj++) {
                float *dst = col + ((size_t)(c * r + ki) * r + kj) * ld;
                int lo, hi;
                ox_range(d, kj, &lo, &hi);
                for (int oy = 0; oy < oh; oy++) {
                    float *row = dst + (size_t)oy * ow;
                    int iy = oy * s - d->pad + ki;
                    if (iy < 0 || iy >= d->h || lo >= hi) {
                        memset(row, 0, (size_t)ow * sizeof(float));
                        continue;
                    }
                    /* element index of tap (ox = 0) in this row; ox >= lo keeps it >= 0 */
                    ptrdiff_t src = (ptrdiff_t)(x0 + ((size_t)c * d->h + iy) * d->w) - d->pad + kj;
                    for (int ox = 0; ox < lo; ox++) row[ox] = 0.0f;
                    if (s == 1 && dt == FT_F32)
                        memcpy(row + lo, (const float *)xv + src + lo,
                               (size_t)(hi - lo) * sizeof(float));
                    else if (s == 1)
                        cpu_cvt_to_f32(dt, cpu_at(dt, xv, (size_t)(src + lo)), row + lo,
                                       (size_t)(hi - lo));
                    else
                        for (int ox = lo; ox < hi; ox++)
                            row[ox] = cpu_ld1(dt, xv, (size_t)(src + (ptrdiff_t)ox * s));
                    for (int ox = hi; ox < ow; ox++) row[ox] = 0.0f;
                }
            }
}

/* dst[0..n) += src[0..n): blocked with a fixed trip count so that it vectorizes */
static void add_span(float *restrict dst, const float *restrict src, int n) {
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) dst[j + l] += src[j + l];
    for (; j < n; j++) dst[j] += src[j];
}

/* dx (zeroed by the caller) += col2im(col), col rows ld floats apart */
static void col2im(const ft_conv_desc *d, const float *col, size_t ld, float *dx) {
    int r = d->r, s = d->stride, oh = d->oh, ow = d->ow;
    for (int c = 0; c < d->c; c++)
        for (int ki = 0; ki < r; ki++)
            for (int kj = 0; kj < r; kj++) {
                const float *src = col + ((size_t)(c * r + ki) * r + kj) * ld;
                int lo, hi;
                ox_range(d, kj, &lo, &hi);
                for (int oy = 0; oy < oh; oy++) {
                    int iy = oy * s - d->pad + ki;
                    if (iy < 0 || iy >= d->h) continue;
                    const float *row = src + (size_t)oy * ow;
                    float *dst = dx + ((size_t)c * d->h + iy) * d->w - d->pad + kj;
                    if (s == 1)
                        add_span(dst + lo, row + lo, hi - lo);
                    else
                        for (int ox = lo; ox < hi; ox++) dst[ox * s] += row[ox];
                }
            }
}

typedef struct conv_ctx {
    const ft_conv_desc *d;
    ft_dtype dt;
    const void *x, *dy;
    void *y, *dx;
    const float *w; /* fp32 weight */
    float *dw;
    float *ws;
    int nthreads;
} conv_ctx;

static float *thread_col(const conv_ctx *c, int tid) {
    return c->ws + (size_t)tid * per_thread(c->d, c->nthreads, c->dt);
}
static float *thread_stage(const conv_ctx *c, int tid) {
    return thread_col(c, tid) + col_floats(c->d, c->nthreads);
}
static float *thread_img(const conv_ctx *c, int tid) {
    return thread_stage(c, tid) + stage_floats(c->d, c->nthreads, c->dt);
}
static float *thread_dw(const conv_ctx *c, int tid) {
    if (tid == 0) return c->dw;
    return c->ws + (size_t)c->nthreads * per_thread(c->d, c->nthreads, c->dt) +
           (size_t)(tid - 1) * wgt_floats(c->d);
}

/* The staging block [k, nb*px] holds images i0 .. i0+nb-1 of a [n, k, px] tensor t (dtype
 * dt) side by side, as fp32. */
static void stage_gather(const ft_conv_desc *d, ft_dtype dt, const void *t, size_t i0, size_t nb,
                         float *stage) {
    size_t px = out_px(d), ld = px * nb;
    for (size_t b = 0; b < nb; b++)
        for (int ch = 0; ch < d->k; ch++)
            cpu_cvt_to_f32(dt, cpu_at(dt, t, ((i0 + b) * d->k + ch) * px), stage + ch * ld + b * px,
                           px);
}
static void stage_scatter(const ft_conv_desc *d, ft_dtype dt, const float *stage, size_t i0,
                          size_t nb, void *t) {
    size_t px = out_px(d), ld = px * nb;
    for (size_t b = 0; b < nb; b++)
        for (int ch = 0; ch < d->k; ch++)
            cpu_cvt_from_f32(dt, stage + ch * ld + b * px,
                             cpu_at_mut(dt, t, ((i0 + b) * d->k + ch) * px), px);
}

/* number of images in the block that starts at image i of a thread's range [.., hi) */
static size_t block_len(const conv_ctx *c, size_t i, size_t hi) {
    size_t bs = (size_t)conv_block(c->d, c->nthreads);
    return hi - i < bs ? hi - i : bs;
}

static void fwd_task(void *v, int tid, int nt) {
    conv_ctx *c = v;
    const ft_conv_desc *d = c->d;
    size_t lo, hi, nb, in_sz = (size_t)d->c * d->h * d->w, px = out_px(d);
    int kk = d->c * d->r * d->r;
    float *col = thread_col(c, tid), *stage = thread_stage(c, tid);
    int f32 = c->dt == FT_F32;
    cpu_range((size_t)d->n, tid, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i += nb) {
        nb = block_len(c, i, hi);
        size_t ld = px * nb;
        const float *b = f32 ? (const float *)c->x + i * in_sz : NULL;
        if (nb > 1 || !is_pointwise(d) || !f32) {
            for (size_t j = 0; j < nb; j++)
                im2col(d, c->dt, c->x, (i + j) * in_sz, col + j * px, ld);
            b = col;
        }
        int staged = nb > 1 || !f32;
        float *out = staged ? stage : (float *)c->y + i * d->k * px;
        cpu_sgemm1(0, 0, d->k, (int)ld, kk, 1.0f, c->w, kk, b, (int)ld, 0.0f, out, (int)ld);
        if (staged) stage_scatter(d, c->dt, stage, i, nb, c->y);
    }
}

static void bwd_data_task(void *v, int tid, int nt) {
    conv_ctx *c = v;
    const ft_conv_desc *d = c->d;
    size_t lo, hi, nb, in_sz = (size_t)d->c * d->h * d->w, px = out_px(d);
    int kk = d->c * d->r * d->r;
    float *stage = thread_stage(c, tid), *img = thread_img(c, tid);
    int f32 = c->dt == FT_F32;
    cpu_range((size_t)d->n, tid, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i += nb) {
        nb = block_len(c, i, hi);
        size_t ld = px * nb;
        const float *g = f32 ? (const float *)c->dy + i * d->k * px : NULL;
        if (nb > 1 || !f32) {
            stage_gather(d, c->dt, c->dy, i, nb, stage);
            g = stage;
        }
        int direct = nb == 1 && is_pointwise(d) && f32;
        float *col = direct ? (float *)c->dx + i * in_sz : thread_col(c, tid);
        cpu_sgemm1(1, 0, kk, (int)ld, d->k, 1.0f, c->w, kk, g, (int)ld, 0.0f, col, (int)ld);
        if (direct) continue;
        for (size_t j = 0; j < nb; j++) {
            float *dxi = f32 ? (float *)c->dx + (i + j) * in_sz : img;
            memset(dxi, 0, in_sz * sizeof(float));
            col2im(d, col + j * px, ld, dxi);
            if (!f32)
                cpu_cvt_from_f32(c->dt, img, cpu_at_mut(c->dt, c->dx, (i + j) * in_sz), in_sz);
        }
    }
}

static void bwd_filter_task(void *v, int tid, int nt) {
    conv_ctx *c = v;
    const ft_conv_desc *d = c->d;
    size_t lo, hi, nb, in_sz = (size_t)d->c * d->h * d->w, px = out_px(d);
    int kk = d->c * d->r * d->r;
    float *col = thread_col(c, tid), *stage = thread_stage(c, tid);
    cpu_range((size_t)d->n, tid, nt, &lo, &hi);
    float *dw = thread_dw(c, tid);
    if (tid > 0 && lo >= hi) memset(dw, 0, (size_t)d->k * kk * sizeof(float));
    for (size_t i = lo; i < hi; i += nb) {
        nb = block_len(c, i, hi);
        size_t ld = px * nb;
        int f32 = c->dt == FT_F32;
        const float *b = f32 ? (const float *)c->x + i * in_sz : NULL;
        const float *g = f32 ? (const float *)c->dy + i * d->k * px : NULL;
        if (nb > 1 || !is_pointwise(d) || !f32) {
            for (size_t j = 0; j < nb; j++)
                im2col(d, c->dt, c->x, (i + j) * in_sz, col + j * px, ld);
            b = col;
        }
        if (nb > 1 || !f32) {
            stage_gather(d, c->dt, c->dy, i, nb, stage);
            g = stage;
        }
        float beta = (tid > 0 && i == lo) ? 0.0f : 1.0f;
        cpu_sgemm1(0, 1, d->k, kk, (int)ld, 1.0f, g, (int)ld, b, (int)ld, beta, dw, kk);
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
/* the fp32 weight: w itself, or its conversion into the workspace's tail */
static const float *weight_f32(ft_ops *o, const ft_conv_desc *d, ft_dtype dt, const void *w,
                               void *ws, int *rc) {
    *rc = 0;
    if (dt == FT_F32) return w;
    float *w32 = (float *)((char *)ws + cpu_conv_ws_bytes_im2col(o, d, dt)) - wgt_floats(d);
    *rc = o->cast(o, (size_t)d->k * d->c * d->r * d->r, dt, w, FT_F32, w32);
    return w32;
}

/* Fewer images than threads (batch-1 inference): each image in turn across the whole pool,
 * split by output rows: a thread gathers the im2col columns of its rows only into its own
 * column buffer and multiplies them by the whole weight, so one pool call per image and no
 * barrier inside it (a barrier per conv costs a time slice on a busy machine). */
typedef struct one_ctx {
    const conv_ctx *c;
    size_t img;
} one_ctx;

/* More output channels than output pixels (the 14x14 and 7x7 maps of an IResNet): split by
 * output channel instead. sgemm packs both operands on every call, and in the row split each
 * thread packs the whole weight, the larger operand here; in the channel split each thread
 * packs its share of the weight and builds the whole (smaller) im2col matrix itself. */
static int split_channels(const ft_conv_desc *d, int nt) {
    return nt > 1 && (size_t)d->k > out_px(d);
}

static void fwd_chans_task(void *v, int tid, int nt) {
    const one_ctx *u = v;
    const conv_ctx *c = u->c;
    const ft_conv_desc *d = c->d;
    size_t k0, k1, px = out_px(d), in_sz = (size_t)d->c * d->h * d->w;
    cpu_range((size_t)d->k, tid, nt, &k0, &k1);
    if (k0 >= k1) return;
    int kk = d->c * d->r * d->r;
    const float *b = (const float *)c->x + u->img * in_sz;
    if (!is_pointwise(d)) {
        float *col = thread_col(c, tid);
        im2col(d, c->dt, c->x, u->img * in_sz, col, px);
        b = col;
    }
    float *y = (float *)c->y + (u->img * d->k + k0) * px;
    cpu_sgemm1(0, 0, (int)(k1 - k0), (int)px, kk, 1.0f, c->w + k0 * kk, kk, b, (int)px, 0.0f, y,
               (int)px);
}

static void fwd_rows_task(void *v, int tid, int nt) {
    const one_ctx *u = v;
    const conv_ctx *c = u->c;
    const ft_conv_desc *d = c->d;
    size_t y0, y1, px = out_px(d), in_sz = (size_t)d->c * d->h * d->w;
    cpu_range((size_t)d->oh, tid, nt, &y0, &y1);
    if (y0 >= y1) return;
    int kk = d->c * d->r * d->r, cols = (int)((y1 - y0) * d->ow);
    const float *x = (const float *)c->x + u->img * in_sz;
    float *y = (float *)c->y + u->img * d->k * px + y0 * d->ow;
    if (is_pointwise(d)) {
        cpu_sgemm1(0, 0, d->k, cols, kk, 1.0f, c->w, kk, x + y0 * d->ow, (int)px, 0.0f, y, (int)px);
        return;
    }
    /* the rows y0..y1 of the output as a map of their own: the input rows they read */
    ft_conv_desc part = *d;
    part.oh = (int)(y1 - y0);
    int iy0 = (int)y0 * d->stride - d->pad; /* first input row under the part (may be < 0) */
    float *col = thread_col(c, tid);
    for (int ch = 0; ch < d->c; ch++)
        for (int ki = 0; ki < d->r; ki++)
            for (int kj = 0; kj < d->r; kj++) {
                float *dst = col + ((size_t)(ch * d->r + ki) * d->r + kj) * cols;
                int lo, hi;
                ox_range(d, kj, &lo, &hi);
                for (int oy = 0; oy < part.oh; oy++) {
                    float *row = dst + (size_t)oy * d->ow;
                    int iy = iy0 + oy * d->stride + ki;
                    if (iy < 0 || iy >= d->h || lo >= hi) {
                        memset(row, 0, (size_t)d->ow * sizeof(float));
                        continue;
                    }
                    const float *src = x + ((size_t)ch * d->h + iy) * d->w - d->pad + kj;
                    for (int ox = 0; ox < lo; ox++) row[ox] = 0.0f;
                    if (d->stride == 1)
                        memcpy(row + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
                    else
                        for (int ox = lo; ox < hi; ox++) row[ox] = src[(ptrdiff_t)ox * d->stride];
                    for (int ox = hi; ox < d->ow; ox++) row[ox] = 0.0f;
                }
            }
    cpu_sgemm1(0, 0, d->k, cols, kk, 1.0f, c->w, kk, col, cols, 0.0f, y, (int)px);
}

static int fwd_images_split(ft_ops *o, const conv_ctx *c) {
    for (size_t i = 0; i < (size_t)c->d->n; i++) {
        one_ctx u = {c, i};
        cpu_run(o, split_channels(c->d, c->nthreads) ? fwd_chans_task : fwd_rows_task, &u);
    }
    return 0;
}

/* The part every pass shares: the dtype check, oneDNN when it takes the shape, else the
 * im2col path's workspace check. 1 (and *rc) when that settled the call, 0 when the im2col
 * path runs. pass and the operands as cpu_dnnl_conv. */
static int conv_settled(ft_ops *o, int pass, const ft_conv_desc *d, ft_dtype dt, const void *in0,
                        const void *in1, void *out, void *ws, int *rc) {
    if (!cpu_float_dt(dt)) return *rc = FT_ENOTSUP, 1;
#ifdef FT_HAVE_ONEDNN
    if ((*rc = cpu_dnnl_conv(o, pass, d, dt, in0, in1, out, ws)) != FT_ENOTSUP) return 1;
#else
    (void)pass, (void)in0, (void)in1, (void)out, (void)ws;
#endif
    return (*rc = im2col_fits(o, d, dt)) != 0;
}

static int cpu_conv_fwd(ft_ops *o, const ft_conv_desc *d, ft_dtype dt, const void *x, const void *w,
                        void *y, void *ws) {
    int rc;
    if (conv_settled(o, 0, d, dt, x, w, y, ws, &rc)) return rc;
    const float *w32 = weight_f32(o, d, dt, w, ws, &rc);
    if (rc) return rc;
    conv_ctx c = {
        .d = d, .dt = dt, .x = x, .w = w32, .y = y, .ws = ws, .nthreads = cpu_pool_of(o)->n};
    if (dt == FT_F32 && d->n < c.nthreads) return fwd_images_split(o, &c);
    cpu_run(o, fwd_task, &c);
    return 0;
}

static int cpu_conv_bwd_data(ft_ops *o, const ft_conv_desc *d, ft_dtype dt, const void *dy,
                             const void *w, void *dx, void *ws) {
    int rc;
    if (conv_settled(o, 1, d, dt, dy, w, dx, ws, &rc)) return rc;
    const float *w32 = weight_f32(o, d, dt, w, ws, &rc);
    if (rc) return rc;
    conv_ctx c = {
        .d = d, .dt = dt, .dy = dy, .w = w32, .dx = dx, .ws = ws, .nthreads = cpu_pool_of(o)->n};
    cpu_run(o, bwd_data_task, &c);
    return 0;
}

static int cpu_conv_bwd_filter(ft_ops *o, const ft_conv_desc *d, ft_dtype dt, const void *x,
                               const void *dy, float *dw, void *ws) {
    int rc;
    if (conv_settled(o, 2, d, dt, x, dy, dw, ws, &rc)) return rc;
    conv_ctx c = {
        .d = d, .dt = dt, .x = x, .dy = dy, .dw = dw, .ws = ws, .nthreads = cpu_pool_of(o)->n};
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
