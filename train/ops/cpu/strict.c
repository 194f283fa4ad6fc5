/* strict.c: "cpu-strict", the CPU backend behind device-separated memory: the checks a GPU run
 * would make, on a machine without a GPU.
 *
 * Its alloc hands out addresses in a window the host cannot touch (PROT_NONE); the same pages
 * are mapped a second time, readable and writable, and every op translates its device-pointer
 * arguments into that second view before calling the CPU backend's op. So model, run, ckpt and
 * verify code that dereferences device memory instead of going through upload/download (or
 * that passes a host pointer where a device pointer belongs) crashes here, as it would fail on
 * the CUDA backend: ft-train device=cpu-strict and the op tests run in CI.
 *
 * Memory: one sparse memfd of FT_STRICT_SPAN bytes, mapped twice; allocation is a bump pointer
 * (64-byte aligned, the size in a header in front), free punches the allocation's whole pages
 * out of the file. The window is never reused, so a use after free reads zeros rather than
 * another tensor. A device pointer outside the window is refused with FT_EARG.
 *
 * FT_STRICT_MEM (bytes, with an optional K/M/G suffix) gives the emulated device that much
 * memory: allocations past it fail with -ENOMEM and mem_info reports it, so the out-of-memory
 * paths a GPU run meets can be tested here.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cpu.h"
#include "ft_common.h"

#define FT_STRICT_SPAN ((size_t)64 << 30) /* 64 GiB of address space, sparse */
#define HDR            64                 /* each allocation's size sits in front of it */

typedef struct strict_backend {
    ft_ops ops;
    ft_ops *in; /* the CPU backend doing the work */
    int fd;
    char *dev;  /* PROT_NONE view: what callers get */
    char *host; /* the same pages, read/write: what the CPU ops use */
    size_t next;
    size_t limit, used; /* FT_STRICT_MEM (0: the window), bytes allocated and not freed */
    pthread_mutex_t mu;
} strict_backend;

static strict_backend *sb(const ft_ops *o) {
    return (strict_backend *)o->impl;
}

/* device pointer -> the CPU backend's view; NULL stays NULL, a pointer outside the window
 * becomes NULL too and the op refuses it */
static void *tr(const ft_ops *o, const void *p, int *bad) {
    strict_backend *b = sb(o);
    if (!p) return NULL;
    const char *c = p;
    if (c < b->dev || c >= b->dev + FT_STRICT_SPAN) {
        fprintf(stderr, "ft_ops cpu-strict: %p is not device memory of this backend\n", p);
        *bad = 1;
        return NULL;
    }
    return b->host + (c - b->dev);
}
#define T(p) tr(o, (p), &bad)
#define IN   (sb(o)->in)

static void s_destroy(ft_ops *o) {
    strict_backend *b = sb(o);
    ft_ops_free(b->in);
    if (b->dev && b->dev != MAP_FAILED) munmap(b->dev, FT_STRICT_SPAN);
    if (b->host && b->host != MAP_FAILED) munmap(b->host, FT_STRICT_SPAN);
    if (b->fd >= 0) close(b->fd);
    pthread_mutex_destroy(&b->mu);
    free(b);
}
static int s_supports(const ft_ops *o, int op, ft_dtype dt) {
    return IN->supports(IN, op, dt);
}

static int s_alloc(ft_ops *o, size_t bytes, void **dev) {
    strict_backend *b = sb(o);
    if (bytes > FT_STRICT_SPAN) return -ENOMEM;
    size_t sz = HDR + (bytes + 63) / 64 * 64;
    pthread_mutex_lock(&b->mu);
    int rc = 0;
    size_t at = b->next;
    if (sz > FT_STRICT_SPAN - at || (b->limit && sz > b->limit - b->used))
        rc = -ENOMEM;
    else
        b->next += sz, b->used += sz;
    pthread_mutex_unlock(&b->mu);
    if (rc) return rc;
    memcpy(b->host + at, &sz, sizeof sz);
    *dev = b->dev + at + HDR;
    return 0;
}
static void s_free(ft_ops *o, void *dev) {
    int bad = 0;
    char *h = T(dev);
    if (!h) return;
    strict_backend *b = sb(o);
    size_t sz, at = (size_t)(h - b->host) - HDR;
    memcpy(&sz, b->host + at, sizeof sz);
    pthread_mutex_lock(&b->mu);
    b->used -= sz;
    pthread_mutex_unlock(&b->mu);
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t lo = (at + pg - 1) / pg * pg, hi = (at + sz) / pg * pg;
    if (hi > lo)
        fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)lo, (off_t)(hi - lo));
}
static int s_upload(ft_ops *o, void *dst, const void *src, size_t bytes) {
    int bad = 0;
    void *d = T(dst);
    if (bad) return FT_EARG;
    if (bytes) memcpy(d, src, bytes);
    return 0;
}
static int s_download(ft_ops *o, void *dst, const void *src, size_t bytes) {
    int bad = 0;
    const void *s = T(src);
    if (bad) return FT_EARG;
    if (bytes) memcpy(dst, s, bytes);
    return 0;
}
static int s_copy(ft_ops *o, void *dst, const void *src, size_t bytes) {
    int bad = 0;
    void *d = T(dst), *s = T(src);
    if (bad) return FT_EARG;
    return IN->copy(IN, d, s, bytes);
}
static int s_zero(ft_ops *o, void *dev, size_t bytes) {
    int bad = 0;
    void *d = T(dev);
    if (bad) return FT_EARG;
    return IN->zero(IN, d, bytes);
}
static int s_sync(ft_ops *o) {
    return IN->sync(IN);
}
static int s_mem_info(ft_ops *o, size_t *free_bytes, size_t *total_bytes) {
    strict_backend *b = sb(o);
    if (!b->limit) return IN->mem_info(IN, free_bytes, total_bytes);
    pthread_mutex_lock(&b->mu);
    *free_bytes = b->limit - b->used, *total_bytes = b->limit;
    pthread_mutex_unlock(&b->mu);
    return 0;
}
/* host memory stays host memory: the CPU backend's */
static int s_host_alloc(ft_ops *o, size_t bytes, void **host) {
    return IN->host_alloc(IN, bytes, host);
}
static void s_host_free(ft_ops *o, void *host) {
    IN->host_free(IN, host);
}
static int s_input_u8(ft_ops *o, int n, int h, int w, const uint8_t *x, float *dst) {
    int bad = 0;
    const uint8_t *tx = T(x);
    float *td = T(dst);
    if (bad) return FT_EARG;
    return IN->input_u8(IN, n, h, w, tx, td);
}
static int s_cast(ft_ops *o, size_t count, ft_dtype sdt, const void *src, ft_dtype ddt, void *dst) {
    int bad = 0;
    const void *s = T(src);
    void *d = T(dst);
    if (bad) return FT_EARG;
    return IN->cast(IN, count, sdt, s, ddt, d);
}
static int s_act_import(ft_ops *o, ft_dtype dt, int n, int c, int hw, const float *src, void *dst) {
    int bad = 0;
    const float *s = T(src);
    void *d = T(dst);
    if (bad) return FT_EARG;
    return IN->act_import(IN, dt, n, c, hw, s, d);
}
static int s_act_export(ft_ops *o, ft_dtype dt, int n, int c, int hw, const void *src, float *dst) {
    int bad = 0;
    const void *s = T(src);
    float *d = T(dst);
    if (bad) return FT_EARG;
    return IN->act_export(IN, dt, n, c, hw, s, d);
}
static size_t s_conv_ws_bytes(ft_ops *o, const ft_conv_desc *d, ft_dtype dt) {
    return IN->conv_ws_bytes(IN, d, dt);
}
static int s_conv_fwd(ft_ops *o, const ft_conv_desc *d, ft_dtype dt, const void *x, const void *w,
                      void *y, void *ws) {
    int bad = 0;
    const void *tx = T(x), *tw = T(w);
    void *ty = T(y), *tws = T(ws);
    if (bad) return FT_EARG;
    return IN->conv_fwd(IN, d, dt, tx, tw, ty, tws);
}
static int s_conv_bwd_data(ft_ops *o, const ft_conv_desc *d, ft_dtype dt, const void *dy,
                           const void *w, void *dx, void *ws) {
    int bad = 0;
    const void *tdy = T(dy), *tw = T(w);
    void *tdx = T(dx), *tws = T(ws);
    if (bad) return FT_EARG;
    return IN->conv_bwd_data(IN, d, dt, tdy, tw, tdx, tws);
}
static int s_conv_bwd_filter(ft_ops *o, const ft_conv_desc *d, ft_dtype dt, const void *x,
                             const void *dy, float *dw, void *ws) {
    int bad = 0;
    const void *tx = T(x), *tdy = T(dy);
    float *tdw = T(dw);
    void *tws = T(ws);
    if (bad) return FT_EARG;
    return IN->conv_bwd_filter(IN, d, dt, tx, tdy, tdw, tws);
}
static int s_bn_fwd_train(ft_ops *o, ft_dtype dt, int n, int c, int hw, float eps, float momentum,
                          const void *x, const float *gamma, const float *beta, void *y,
                          float *rmean, float *rvar, float *smean, float *sinv) {
    int bad = 0;
    const void *tx = T(x);
    const float *tg = T(gamma), *tb = T(beta);
    void *ty = T(y);
    float *trm = T(rmean), *trv = T(rvar), *tsm = T(smean), *tsi = T(sinv);
    if (bad) return FT_EARG;
    return IN->bn_fwd_train(IN, dt, n, c, hw, eps, momentum, tx, tg, tb, ty, trm, trv, tsm, tsi);
}
static int s_bn_fwd_eval(ft_ops *o, ft_dtype dt, int n, int c, int hw, float eps, const void *x,
                         const float *gamma, const float *beta, const float *rmean,
                         const float *rvar, void *y) {
    int bad = 0;
    const void *tx = T(x);
    const float *tg = T(gamma), *tb = T(beta), *trm = T(rmean), *trv = T(rvar);
    void *ty = T(y);
    if (bad) return FT_EARG;
    return IN->bn_fwd_eval(IN, dt, n, c, hw, eps, tx, tg, tb, trm, trv, ty);
}
static int s_bn_bwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, const void *x, const void *dy,
                    const float *gamma, const float *smean, const float *sinv, void *dx,
                    float *dgamma, float *dbeta) {
    int bad = 0;
    const void *tx = T(x), *tdy = T(dy);
    const float *tg = T(gamma), *tsm = T(smean), *tsi = T(sinv);
    void *tdx = T(dx);
    float *tdg = T(dgamma), *tdb = T(dbeta);
    if (bad) return FT_EARG;
    return IN->bn_bwd(IN, dt, n, c, hw, tx, tdy, tg, tsm, tsi, tdx, tdg, tdb);
}
static int s_prelu_fwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, const void *x,
                       const float *alpha, void *y) {
    int bad = 0;
    const void *tx = T(x);
    const float *ta = T(alpha);
    void *ty = T(y);
    if (bad) return FT_EARG;
    return IN->prelu_fwd(IN, dt, n, c, hw, tx, ta, ty);
}
static int s_prelu_bwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, const void *x,
                       const float *alpha, const void *dy, void *dx, float *dalpha) {
    int bad = 0;
    const void *tx = T(x), *tdy = T(dy);
    const float *ta = T(alpha);
    void *tdx = T(dx);
    float *tda = T(dalpha);
    if (bad) return FT_EARG;
    return IN->prelu_bwd(IN, dt, n, c, hw, tx, ta, tdy, tdx, tda);
}
static int s_add(ft_ops *o, ft_dtype dt, size_t count, const void *a, const void *b, void *y) {
    int bad = 0;
    const void *ta = T(a), *tb = T(b);
    void *ty = T(y);
    if (bad) return FT_EARG;
    return IN->add(IN, dt, count, ta, tb, ty);
}
static int s_axpy(ft_ops *o, size_t count, float alpha, const float *x, float *y) {
    int bad = 0;
    const float *tx = T(x);
    float *ty = T(y);
    if (bad) return FT_EARG;
    return IN->axpy(IN, count, alpha, tx, ty);
}
static int s_scale(ft_ops *o, size_t count, float alpha, float *x) {
    int bad = 0;
    float *tx = T(x);
    if (bad) return FT_EARG;
    return IN->scale(IN, count, alpha, tx);
}
static int s_sumsq(ft_ops *o, size_t count, const float *x, double *host_out) {
    int bad = 0;
    const float *tx = T(x);
    if (bad) return FT_EARG;
    return IN->sumsq(IN, count, tx, host_out);
}
static int s_sumsq_acc(ft_ops *o, size_t count, const float *x, double *acc) {
    int bad = 0;
    const float *tx = T(x);
    double *ta = T(acc);
    if (bad) return FT_EARG;
    return IN->sumsq_acc(IN, count, tx, ta);
}
static int s_unscale_check(ft_ops *o, size_t count, float inv_scale, float *g, float *found) {
    int bad = 0;
    float *tg = T(g), *tf = T(found);
    if (bad) return FT_EARG;
    return IN->unscale_check(IN, count, inv_scale, tg, tf);
}
static int s_gemm(ft_ops *o, ft_dtype dt, int ta, int tb, int m, int n, int k, float alpha,
                  const void *a, int lda, const void *b, int ldb, float beta, void *c, int ldc) {
    int bad = 0;
    const void *tA = T(a), *tB = T(b);
    void *tC = T(c);
    if (bad) return FT_EARG;
    return IN->gemm(IN, dt, ta, tb, m, n, k, alpha, tA, lda, tB, ldb, beta, tC, ldc);
}
static int s_fc_fwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, int out, const void *x,
                    const float *w, const float *bias, float *y) {
    int bad = 0;
    const void *tx = T(x);
    const float *tw = T(w), *tb = T(bias);
    float *ty = T(y);
    if (bad) return FT_EARG;
    return IN->fc_fwd(IN, dt, n, c, hw, out, tx, tw, tb, ty);
}
static int s_fc_bwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, int out, const void *x,
                    const float *w, const float *dy, void *dx, float *dw, float *dbias) {
    int bad = 0;
    const void *tx = T(x);
    const float *tw = T(w), *tdy = T(dy);
    void *tdx = T(dx);
    float *tdw = T(dw), *tdb = T(dbias);
    if (bad) return FT_EARG;
    return IN->fc_bwd(IN, dt, n, c, hw, out, tx, tw, tdy, tdx, tdw, tdb);
}
static int s_dropout_fwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, float p,
                         const uint64_t *seed, const void *x, void *y, uint8_t *mask) {
    int bad = 0;
    const uint64_t *tsd = T(seed);
    const void *tx = T(x);
    void *ty = T(y);
    uint8_t *tm = T(mask);
    if (bad) return FT_EARG;
    return IN->dropout_fwd(IN, dt, n, c, hw, p, tsd, tx, ty, tm);
}
static int s_dropout_bwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, float p, const uint8_t *mask,
                         const void *dy, void *dx) {
    int bad = 0;
    const uint8_t *tm = T(mask);
    const void *tdy = T(dy);
    void *tdx = T(dx);
    if (bad) return FT_EARG;
    return IN->dropout_bwd(IN, dt, n, c, hw, p, tm, tdy, tdx);
}
static int s_l2norm_fwd(ft_ops *o, int rows, int dim, const float *x, float *y, float *norms) {
    int bad = 0;
    const float *tx = T(x);
    float *ty = T(y), *tn = T(norms);
    if (bad) return FT_EARG;
    return IN->l2norm_fwd(IN, rows, dim, tx, ty, tn);
}
static int s_l2norm_bwd(ft_ops *o, int rows, int dim, const float *y, const float *norms,
                        const float *dy, float *dx) {
    int bad = 0;
    const float *ty = T(y), *tn = T(norms), *tdy = T(dy);
    float *tdx = T(dx);
    if (bad) return FT_EARG;
    return IN->l2norm_bwd(IN, rows, dim, ty, tn, tdy, tdx);
}
static int s_gather_rows(ft_ops *o, int rows, int dim, const float *src, const int32_t *idx,
                         float *dst) {
    int bad = 0;
    const float *ts = T(src);
    const int32_t *ti = T(idx);
    float *td = T(dst);
    if (bad) return FT_EARG;
    return IN->gather_rows(IN, rows, dim, ts, ti, td);
}
static int s_scatter_add_rows(ft_ops *o, int rows, int dim, const float *src, const int32_t *idx,
                              float *dst) {
    int bad = 0;
    const float *ts = T(src);
    const int32_t *ti = T(idx);
    float *td = T(dst);
    if (bad) return FT_EARG;
    return IN->scatter_add_rows(IN, rows, dim, ts, ti, td);
}
static int s_pfc_sample(ft_ops *o, int64_t n, const uint64_t *seed, int batch, const int32_t *label,
                        int count, int32_t *index, int32_t *label_out, void *scratch) {
    int bad = 0;
    const uint64_t *tsd = T(seed);
    const int32_t *tl = T(label);
    int32_t *ti = T(index), *to = T(label_out);
    void *ts = T(scratch);
    if (bad) return FT_EARG;
    return IN->pfc_sample(IN, n, tsd, batch, tl, count, ti, to, ts);
}
static int s_margin_fwd(ft_ops *o, int rows, int cols, const ft_margin *mg, const int32_t *label,
                        const float *cosv, float *logits) {
    int bad = 0;
    const int32_t *tl = T(label);
    const float *tc = T(cosv);
    float *tg = T(logits);
    if (bad) return FT_EARG;
    return IN->margin_fwd(IN, rows, cols, mg, tl, tc, tg);
}
static int s_margin_bwd(ft_ops *o, int rows, int cols, const ft_margin *mg, const int32_t *label,
                        const float *cosv, const float *dlogits, float *dcos) {
    int bad = 0;
    const int32_t *tl = T(label);
    const float *tc = T(cosv), *tdl = T(dlogits);
    float *tdc = T(dcos);
    if (bad) return FT_EARG;
    return IN->margin_bwd(IN, rows, cols, mg, tl, tc, tdl, tdc);
}
static int s_row_max(ft_ops *o, int rows, int cols, const float *x, float *mx) {
    int bad = 0;
    const float *tx = T(x);
    float *tm = T(mx);
    if (bad) return FT_EARG;
    return IN->row_max(IN, rows, cols, tx, tm);
}
static int s_row_exp_sum(ft_ops *o, int rows, int cols, float *x, const float *mx, float *sum) {
    int bad = 0;
    float *tx = T(x), *ts = T(sum);
    const float *tm = T(mx);
    if (bad) return FT_EARG;
    return IN->row_exp_sum(IN, rows, cols, tx, tm, ts);
}
static int s_softmax_xent_bwd(ft_ops *o, int rows, int cols, float *e, const float *sum,
                              const int32_t *label, float grad_scale, float *ptarget) {
    int bad = 0;
    float *te = T(e), *tp = T(ptarget);
    const float *ts = T(sum);
    const int32_t *tl = T(label);
    if (bad) return FT_EARG;
    return IN->softmax_xent_bwd(IN, rows, cols, te, ts, tl, grad_scale, tp);
}
static int s_sgd_update(ft_ops *o, size_t count, float lr, float momentum, float wd, float *w,
                        const float *g, float *buf) {
    int bad = 0;
    float *tw = T(w), *tb = T(buf);
    const float *tg = T(g);
    if (bad) return FT_EARG;
    return IN->sgd_update(IN, count, lr, momentum, wd, tw, tg, tb);
}
static int s_sgd_update_rows(ft_ops *o, int rows, int dim, const int32_t *idx, float lr,
                             float momentum, float wd, float *w, const float *g, float *buf) {
    int bad = 0;
    const int32_t *ti = T(idx);
    float *tw = T(w), *tb = T(buf);
    const float *tg = T(g);
    if (bad) return FT_EARG;
    return IN->sgd_update_rows(IN, rows, dim, ti, lr, momentum, wd, tw, tg, tb);
}

int ft_ops_cpu_strict_create_(int threads, int inference, ft_ops **out, char *err, size_t errcap);
int ft_ops_cpu_strict_create_(int threads, int inference, ft_ops **out, char *err, size_t errcap) {
    strict_backend *b = calloc(1, sizeof *b);
    if (!b) return -ENOMEM;
    b->fd = -1;
    pthread_mutex_init(&b->mu, NULL);
    ft_ops *o = &b->ops;
    o->impl = b;
    int rc = ft_ops_cpu_create_(threads, inference, &b->in);
    const char *what = rc ? "the CPU backend" : NULL;
    if (!rc && (b->fd = memfd_create("ft-cpu-strict", MFD_CLOEXEC)) < 0) what = "memfd_create";
    if (!what && ftruncate(b->fd, (off_t)FT_STRICT_SPAN) != 0) what = "ftruncate";
    if (!what && (b->dev = mmap(NULL, FT_STRICT_SPAN, PROT_NONE, MAP_SHARED | MAP_NORESERVE, b->fd,
                                0)) == MAP_FAILED)
        what = "mmap";
    if (!what && (b->host = mmap(NULL, FT_STRICT_SPAN, PROT_READ | PROT_WRITE,
                                 MAP_SHARED | MAP_NORESERVE, b->fd, 0)) == MAP_FAILED)
        what = "mmap";
    const char *lim = getenv("FT_STRICT_MEM");
    if (!what && lim && *lim) {
        char *end;
        double v = strtod(lim, &end);
        double mul = *end == 'K'   ? 1024.0
                     : *end == 'M' ? 1048576.0
                     : *end == 'G' ? 1073741824.0
                                   : 1.0;
        if (mul != 1.0) end++;
        if (end == lim || *end || !(v > 0) || v * mul > (double)FT_STRICT_SPAN) {
            if (errcap)
                snprintf(err, errcap,
                         "FT_STRICT_MEM='%s' is not a size up to 64G (bytes, K, M or G)", lim);
            s_destroy(o);
            return FT_EARG;
        }
        b->limit = (size_t)(v * mul);
    }
    if (what) {
        int e = rc ? rc : -errno;
        if (errcap)
            snprintf(err, errcap, "cannot start the cpu-strict backend: %s: %s", what,
                     ft_strerror(e));
        s_destroy(o);
        return e;
    }
    o->name = "cpu-strict";
    o->destroy = s_destroy;
    o->supports = s_supports;
    o->alloc = s_alloc;
    o->free = s_free;
    o->upload = s_upload;
    o->download = s_download;
    o->copy = s_copy;
    o->zero = s_zero;
    o->sync = s_sync;
    o->mem_info = s_mem_info;
    o->host_alloc = s_host_alloc;
    o->host_free = s_host_free;
    o->input_u8 = s_input_u8;
    o->cast = s_cast;
    o->act_import = s_act_import;
    o->act_export = s_act_export;
    o->conv_ws_bytes = s_conv_ws_bytes;
    o->conv_fwd = s_conv_fwd;
    o->conv_bwd_data = s_conv_bwd_data;
    o->conv_bwd_filter = s_conv_bwd_filter;
    o->bn_fwd_train = s_bn_fwd_train;
    o->bn_fwd_eval = s_bn_fwd_eval;
    o->bn_bwd = s_bn_bwd;
    o->prelu_fwd = s_prelu_fwd;
    o->prelu_bwd = s_prelu_bwd;
    o->add = s_add;
    o->axpy = s_axpy;
    o->scale = s_scale;
    o->sumsq = s_sumsq;
    o->sumsq_acc = s_sumsq_acc;
    o->unscale_check = s_unscale_check;
    o->gemm = s_gemm;
    o->fc_fwd = s_fc_fwd;
    o->fc_bwd = s_fc_bwd;
    o->dropout_fwd = s_dropout_fwd;
    o->dropout_bwd = s_dropout_bwd;
    o->l2norm_fwd = s_l2norm_fwd;
    o->l2norm_bwd = s_l2norm_bwd;
    o->gather_rows = s_gather_rows;
    o->scatter_add_rows = s_scatter_add_rows;
    o->pfc_sample = s_pfc_sample;
    o->margin_fwd = s_margin_fwd;
    o->margin_bwd = s_margin_bwd;
    o->row_max = s_row_max;
    o->row_exp_sum = s_row_exp_sum;
    o->softmax_xent_bwd = s_softmax_xent_bwd;
    o->sgd_update = s_sgd_update;
    o->sgd_update_rows = s_sgd_update_rows;
    *out = o;
    return 0;
}
