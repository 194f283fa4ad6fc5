/* ops.h: the compute interface of the facetrain trainer (a vtable, one per backend).
 *
 * Model code (iresnet.c, pfc.c, optim.c) does every computation and every memory operation
 * through an ft_ops: it allocates device memory with o->alloc, moves data with o->upload /
 * o->download, and calls the kernels below on device pointers. It never dereferences a device
 * pointer; it only does pointer arithmetic on them (sub-tensors of one allocation). The CPU
 * backend (ops_cpu*.c, im2col + OpenBLAS sgemm + a small thread pool) is the reference; a CUDA
 * backend (cuDNN/cuBLAS) fills the same table without changes to model code.
 *
 * Conventions for every op:
 * - First argument is the table itself; return 0 or a negative status (FT_E*, -errno).
 * - Tensors are float32, contiguous, NCHW (activations) or row-major (matrices).
 *   Integer index/label arrays are int32 on the device.
 * - "+=" outputs (parameter gradients) accumulate, PyTorch style: zero them between steps.
 * - Unless said otherwise an output must not alias an input. Elementwise ops (prelu_bwd,
 *   add, axpy, scale, bn_bwd's dx vs dy, l2norm_bwd's dx vs dy) allow in-place use.
 * - Ops are ordered on one stream: a later op sees the results of earlier ones. download and
 *   the ops returning host values synchronize.
 */
#ifndef FT_OPS_H
#define FT_OPS_H

#include <stddef.h>
#include <stdint.h>

/* ---- tensors exposed to the trainer (checkpoints, optimizer) ---- */

enum { FT_DT_F32 = 0, FT_DT_I64 = 1 };

/* Description of one named tensor (a state_dict entry, an optimizer buffer ...). */
typedef struct ft_tensor_info {
    const char *name; /* e.g. "layer1.0.bn1.running_mean"; valid while the owner lives */
    int dtype;        /* FT_DT_F32 or FT_DT_I64 (num_batches_tracked) */
    int ndim;         /* 0 (scalar) .. 4 */
    int64_t shape[4]; /* PyTorch shape */
    size_t numel;     /* product of shape (1 for a scalar) */
} ft_tensor_info;

/* A trainable tensor as the optimizer sees it: value and gradient, both on the device. */
typedef struct ft_param {
    const char *name; /* state_dict name */
    float *w;         /* device, numel floats */
    float *g;         /* device, numel floats; accumulated by backward ("+=") */
    size_t numel;
    int ndim; /* PyTorch shape of w, as in ft_tensor_info */
    int64_t shape[4];
    int trainable; /* 0 for frozen tensors (features.weight): no update, no weight decay */
} ft_param;

/* ---- convolution geometry ---- */

/* 2-D convolution without bias, square kernel, symmetric zero padding, groups = 1. */
typedef struct ft_conv_desc {
    int n, c, h, w; /* input [n, c, h, w] */
    int k, r;       /* output channels, kernel r x r; weight [k, c, r, r] */
    int stride, pad;
    int oh, ow; /* output [n, k, oh, ow]; set by ft_conv_desc_init */
} ft_conv_desc;

/* Fill d and its output size; FT_EARG when the geometry is empty or invalid. */
int ft_conv_desc_init(ft_conv_desc *d, int n, int c, int h, int w, int k, int r, int stride,
                      int pad);

/* ---- margin softmax parameters (see pfc.h for the semantics) ---- */

enum {
    FT_MARGIN_ARCFACE = 1, /* m1 == 1, m3 == 0: target cos(acos(x) + m2) */
    FT_MARGIN_COSFACE = 2  /* m3 > 0: target x - m3 */
};
enum {
    /* arcface_torch: the margin is applied under torch.no_grad(), so d(logit)/d(cos) = s for
     * every entry (ArcFace); CosFace's derivative is s as well. Default. */
    FT_MARGIN_GRAD_UPSTREAM = 0,
    /* the true derivative of s*cos(acos(x)+m2) at the target (for finite-difference checks) */
    FT_MARGIN_GRAD_EXACT = 1
};
typedef struct ft_margin {
    int kind;         /* FT_MARGIN_ARCFACE or FT_MARGIN_COSFACE */
    int grad_mode;    /* FT_MARGIN_GRAD_* */
    float s, m2, m3;  /* scale, additive angular margin, additive cosine margin */
    float filter_thr; /* interclass filtering threshold, 0 = off */
} ft_margin;

/* ---- the table ---- */

typedef struct ft_ops ft_ops;
struct ft_ops {
    const char *name;           /* "cpu", "cuda" */
    void *impl;                 /* backend state */
    void (*destroy)(ft_ops *o); /* frees the table itself; NULL-safe via ft_ops_free */

    /* memory; alloc returns memory aligned to 64 bytes, contents undefined */
    int (*alloc)(ft_ops *o, size_t bytes, void **dev);
    void (*free)(ft_ops *o, void *dev); /* NULL is a no-op */
    int (*upload)(ft_ops *o, void *dev_dst, const void *host_src, size_t bytes);
    int (*download)(ft_ops *o, void *host_dst, const void *dev_src, size_t bytes);
    int (*copy)(ft_ops *o, void *dev_dst, const void *dev_src, size_t bytes);
    int (*zero)(ft_ops *o, void *dev, size_t bytes);
    int (*sync)(ft_ops *o);

    /* convolution. ws is device scratch of conv_ws_bytes(d) bytes (may be NULL if 0). */
    size_t (*conv_ws_bytes)(ft_ops *o, const ft_conv_desc *d);
    /* y[n,k,oh,ow] = conv(x[n,c,h,w], w[k,c,r,r]) */
    int (*conv_fwd)(ft_ops *o, const ft_conv_desc *d, const float *x, const float *w, float *y,
                    void *ws);
    /* dx[n,c,h,w] = conv_transpose(dy, w) (overwrites dx) */
    int (*conv_bwd_data)(ft_ops *o, const ft_conv_desc *d, const float *dy, const float *w,
                         float *dx, void *ws);
    /* dw[k,c,r,r] += correlation of x and dy over the batch */
    int (*conv_bwd_filter)(ft_ops *o, const ft_conv_desc *d, const float *x, const float *dy,
                           float *dw, void *ws);

    /* batch norm over x[n, c, hw] (BatchNorm2d; BatchNorm1d is hw = 1).
     * Train: batch mean/biased var normalize; running stats updated with momentum and the
     * unbiased var (PyTorch): run = (1-momentum)*run + momentum*stat. save_mean and
     * save_invstd [c] keep mean and 1/sqrt(var+eps) for bn_bwd. */
    int (*bn_fwd_train)(ft_ops *o, int n, int c, int hw, float eps, float momentum, const float *x,
                        const float *gamma, const float *beta, float *y, float *run_mean,
                        float *run_var, float *save_mean, float *save_invstd);
    /* Eval: y = (x - run_mean) / sqrt(run_var + eps) * gamma + beta */
    int (*bn_fwd_eval)(ft_ops *o, int n, int c, int hw, float eps, const float *x,
                       const float *gamma, const float *beta, const float *run_mean,
                       const float *run_var, float *y);
    /* Train-mode backward. dx overwritten (may alias dy); dgamma, dbeta "+=" (either NULL to
     * skip, e.g. frozen features.weight). */
    int (*bn_bwd)(ft_ops *o, int n, int c, int hw, const float *x, const float *dy,
                  const float *gamma, const float *save_mean, const float *save_invstd, float *dx,
                  float *dgamma, float *dbeta);

    /* PReLU with one slope per channel: y = x > 0 ? x : alpha[c] * x on x[n, c, hw] */
    int (*prelu_fwd)(ft_ops *o, int n, int c, int hw, const float *x, const float *alpha, float *y);
    /* dx overwritten (may alias dy); dalpha[c] += sum over x <= 0 of x * dy */
    int (*prelu_bwd)(ft_ops *o, int n, int c, int hw, const float *x, const float *alpha,
                     const float *dy, float *dx, float *dalpha);

    /* elementwise on count floats */
    int (*add)(ft_ops *o, size_t count, const float *a, const float *b, float *y); /* y=a+b */
    int (*axpy)(ft_ops *o, size_t count, float alpha, const float *x, float *y);   /* y+=a*x */
    int (*scale)(ft_ops *o, size_t count, float alpha, float *x);                  /* x*=a */
    /* *host_out = sum of x^2, accumulated in double (synchronizes) */
    int (*sumsq)(ft_ops *o, size_t count, const float *x, double *host_out);

    /* C[m,n] = alpha * op(A) op(B) + beta * C, row-major; op(A) is [m,k], op(B) is [k,n];
     * lda/ldb/ldc are row strides of the stored matrices (before transposition). */
    int (*gemm)(ft_ops *o, int trans_a, int trans_b, int m, int n, int k, float alpha,
                const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
    /* y[m, out] = x[m, in] w[out, in]^T + bias[out] (bias may be NULL) */
    int (*linear_fwd)(ft_ops *o, int m, int in, int out, const float *x, const float *w,
                      const float *bias, float *y);
    /* dx[m,in] = dy w (overwritten; dx may be NULL), dw += dy^T x, dbias += column sums of dy
     * (NULL to skip) */
    int (*linear_bwd)(ft_ops *o, int m, int in, int out, const float *x, const float *w,
                      const float *dy, float *dx, float *dw, float *dbias);

    /* inverted dropout: keep with prob 1-p, scale kept by 1/(1-p). mask: count bytes of device
     * memory. The keep decision for element i is a pure function of (seed, i) so that every
     * backend draws the same mask. p == 0 copies x to y (and mask is not touched). */
    int (*dropout_fwd)(ft_ops *o, size_t count, float p, uint64_t seed, const float *x, float *y,
                       uint8_t *mask);
    int (*dropout_bwd)(ft_ops *o, size_t count, float p, const uint8_t *mask, const float *dy,
                       float *dx);

    /* row L2 normalization as torch.nn.functional.normalize(eps=1e-12):
     * y[r,:] = x[r,:] / max(|x[r,:]|, 1e-12); norms[r] keeps the denominator. */
    int (*l2norm_fwd)(ft_ops *o, int rows, int dim, const float *x, float *y, float *norms);
    /* dx overwritten (may alias dy) from y, norms and dy */
    int (*l2norm_bwd)(ft_ops *o, int rows, int dim, const float *y, const float *norms,
                      const float *dy, float *dx);
    /* dst[i,:] = src[idx[i],:] for i < rows */
    int (*gather_rows)(ft_ops *o, int rows, int dim, const float *src, const int32_t *idx,
                       float *dst);
    /* dst[idx[i],:] += src[i,:] (idx distinct) */
    int (*scatter_add_rows)(ft_ops *o, int rows, int dim, const float *src, const int32_t *idx,
                            float *dst);

    /* margin softmax pieces (pfc.c strings them together with cross-rank reduce hooks).
     * label[r] is the column of row r's class in this shard, or -1 if not here.
     * margin_fwd: logits[r,c] = s * margin(clamp(cosv[r,c], -1, 1)) (see ft_margin). */
    int (*margin_fwd)(ft_ops *o, int rows, int cols, const ft_margin *mg, const int32_t *label,
                      const float *cosv, float *logits);
    /* dcos[r,c] = d loss / d cosv given dlogits (overwritten; may alias dlogits) */
    int (*margin_bwd)(ft_ops *o, int rows, int cols, const ft_margin *mg, const int32_t *label,
                      const float *cosv, const float *dlogits, float *dcos);
    /* mx[r] = max over c of x[r,c] */
    int (*row_max)(ft_ops *o, int rows, int cols, const float *x, float *mx);
    /* x[r,c] = exp(x[r,c] - mx[r]) in place; sum[r] = row sum of the result */
    int (*row_exp_sum)(ft_ops *o, int rows, int cols, float *x, const float *mx, float *sum);
    /* from e = exp'd logits and the (global) row sums: p = e / sum;
     * ptarget[r] = p[r, label[r]] (0 when label[r] == -1);
     * e[r,c] = grad_scale * (p[r,c] - [c == label[r]])   (the softmax-CE logit gradient) */
    int (*softmax_xent_bwd)(ft_ops *o, int rows, int cols, float *e, const float *sum,
                            const int32_t *label, float grad_scale, float *ptarget);

    /* SGD, PyTorch semantics (dampening 0, no nesterov):
     * g' = g + wd*w; buf = momentum*buf + g'; w -= lr*buf. buf starts at zero, which equals
     * PyTorch's first-step buf = g'. */
    int (*sgd_update)(ft_ops *o, size_t count, float lr, float momentum, float wd, float *w,
                      const float *g, float *buf);
    /* the same on rows idx[0..rows) of [*, dim] matrices only */
    int (*sgd_update_rows)(ft_ops *o, int rows, int dim, const int32_t *idx, float lr,
                           float momentum, float wd, float *w, const float *g, float *buf);
};

/* The CPU backend. threads: worker count for its thread pool (>= 1; 0 = number of online
 * CPUs). OpenBLAS is used single-threaded under the pool. */
int ft_ops_cpu_create(int threads, ft_ops **out);
int ft_ops_cpu_threads(const ft_ops *o); /* 0 if o is not the CPU backend */
void ft_ops_free(ft_ops *o);             /* NULL-safe */

#endif
