/* ops.h: the compute interface of the facetrain trainer (a vtable, one per backend).
 *
 * Model code (model/iresnet.c, pfc.c, optim.c) does every computation and every memory
 * operation through an ft_ops: it allocates device memory with o->alloc, moves data with
 * o->upload / o->download, and calls the kernels below on device pointers. It never
 * dereferences a device pointer; it only does pointer arithmetic on them (sub-tensors of one
 * allocation). The CPU backend (cpu/: im2col + OpenBLAS sgemm under a thread pool) is the
 * reference; a CUDA backend (cuda/, the same file stems) fills the same table. A backend is
 * chosen in one place, ft_ops_create.
 *
 * Conventions for every op:
 * - First argument is the table itself; return 0 or a negative status (FT_E*, -errno).
 * - Precision (tensor.h): ops on activations take a storage dtype `dt` (FT_F32, FT_F16 or
 *   FT_BF16) that applies to every activation and activation-gradient operand (void *);
 *   parameters, parameter gradients, statistics and everything typed float * are fp32.
 *   Backends load a 16-bit operand to fp32, compute as the fp32 path does (fp32 accumulate)
 *   and round each stored result once (to nearest even). supports(o, op, dt) tells whether a
 *   backend implements an op for a dtype; FT_ENOTSUP otherwise.
 * - Layout: activations are described by (n, c, hw) or a conv descriptor, never by a memory
 *   layout: a backend may keep them NCHW (the CPU does) or NHWC (the CUDA backend's 16-bit
 *   activations, for the tensor cores; ft_ops_options.layout). Host data crosses that
 *   boundary only through act_import / act_export (NCHW fp32 on both sides) and the fused
 *   flatten + fc, whose weight is [out, c*h*w] in PyTorch's NCHW flatten order. Elementwise ops
 *   (add, copy, cast) keep the memory order, whatever it is (a layout may differ by dtype:
 *   act_export + act_import move an activation between those); the conv weight copy w is
 *   [k, c, r, r] in every layout (a backend reorders it itself). Matrices
 *   (fc inputs after flatten, embeddings, logits, class centres) are row-major.
 *   Integer index/label arrays are int32 on the device.
 * - "+=" outputs (parameter gradients) accumulate, PyTorch style: zero them between steps.
 * - Unless said otherwise an output must not alias an input. Elementwise ops (prelu_bwd,
 *   add, axpy, scale, cast with equal dtypes, bn_bwd's dx vs dy, l2norm_bwd's dx vs dy,
 *   dropout) allow in-place use.
 * - Ops are ordered on one stream: a later op sees the results of earlier ones. download and
 *   the ops returning host values synchronize.
 */
#ifndef FT_OPS_H
#define FT_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h" // defines: ft_dtype, ft_tensor_info, ft_param

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

/* ---- margin softmax parameters (see model/pfc.h for the semantics) ---- */

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

/* Every slot of ft_ops, in order. The capability query and the backend-ops test enumerate
 * this list (tests/ops/test_backend_ops.c checks it against the struct). */
#define FT_OPS_SLOTS(X)                                                                            \
    X(destroy)                                                                                     \
    X(supports)                                                                                    \
    X(alloc)                                                                                       \
    X(free)                                                                                        \
    X(upload)                                                                                      \
    X(download)                                                                                    \
    X(copy)                                                                                        \
    X(zero)                                                                                        \
    X(sync)                                                                                        \
    X(mem_info)                                                                                    \
    X(host_alloc)                                                                                  \
    X(host_free)                                                                                   \
    X(upload_ahead)                                                                                \
    X(cast)                                                                                        \
    X(act_import)                                                                                  \
    X(act_export)                                                                                  \
    X(input_u8)                                                                                    \
    X(conv_ws_bytes)                                                                               \
    X(conv_fwd)                                                                                    \
    X(conv_bwd_data)                                                                               \
    X(conv_bwd_filter)                                                                             \
    X(bn_fwd_train)                                                                                \
    X(bn_fwd_eval)                                                                                 \
    X(bn_bwd)                                                                                      \
    X(prelu_fwd)                                                                                   \
    X(prelu_bwd)                                                                                   \
    X(add)                                                                                         \
    X(axpy)                                                                                        \
    X(scale)                                                                                       \
    X(sumsq)                                                                                       \
    X(sumsq_acc)                                                                                   \
    X(unscale_check)                                                                               \
    X(gemm)                                                                                        \
    X(fc_fwd)                                                                                      \
    X(fc_bwd)                                                                                      \
    X(dropout_fwd)                                                                                 \
    X(dropout_bwd)                                                                                 \
    X(l2norm_fwd)                                                                                  \
    X(l2norm_bwd)                                                                                  \
    X(gather_rows)                                                                                 \
    X(scatter_add_rows)                                                                            \
    X(pfc_sample)                                                                                  \
    X(margin_fwd)                                                                                  \
    X(margin_bwd)                                                                                  \
    X(row_max)                                                                                     \
    X(row_exp_sum)                                                                                 \
    X(softmax_xent_bwd)                                                                            \
    X(sgd_update)                                                                                  \
    X(sgd_update_rows)                                                                             \
    X(tlist_make)                                                                                  \
    X(tlist_free)                                                                                  \
    X(multi_zero)                                                                                  \
    X(multi_scale)                                                                                 \
    X(multi_sumsq_acc)                                                                             \
    X(multi_unscale_check)                                                                         \
    X(multi_sgd)                                                                                   \
    X(graph_begin)                                                                                 \
    X(graph_end)                                                                                   \
    X(graph_launch)                                                                                \
    X(graph_check)                                                                                 \
    X(graph_free)

#define FT_OP_ENUM_(name) FT_OP_##name,
typedef enum ft_op_id { FT_OPS_SLOTS(FT_OP_ENUM_) FT_OP_COUNT } ft_op_id;
#undef FT_OP_ENUM_

const char *ft_op_name(int op); /* "conv_fwd"; NULL outside [0, FT_OP_COUNT) */
/* 1 for the slots whose operands include activations of a storage dtype (the ones a backend
 * may support in F16/BF16 besides F32) */
int ft_op_takes_dtype(int op);

/* ---- tensor lists, for the multi-tensor ops ----
 * The optimizer touches every parameter tensor several times a step (zero, unscale, norm,
 * clip, update): a few hundred tensors in an IResNet-100, each a kernel launch on a GPU. A
 * tensor list is made once (a model's pointers are stable), and each multi-tensor op then
 * covers the whole list in one launch on the CUDA backend (PyTorch's foreach /
 * multi_tensor_apply). Every element gets exactly the single-tensor op's expression, so a
 * multi op equals its per-tensor loop bit for bit, except multi_sumsq_acc's summation order. */
typedef struct ft_tentry {
    float *w, *g, *m; /* weights, gradients, momentum (device, fp32); an op reads only those
                         it names, the others may be NULL */
    size_t numel;
} ft_tentry;
typedef struct ft_tlist {
    int n;        /* tensors */
    size_t total; /* their elements */
    ft_tentry *e; /* host copy of the entries */
    void *impl;   /* the backend's form of the list (CUDA: a device table), or NULL */
} ft_tlist;

typedef struct ft_ops ft_ops;
struct ft_ops {
    const char *name; /* "cpu", "cuda" */
    void *impl;       /* backend state */
    /* the function slots, in FT_OPS_SLOTS order */

    void (*destroy)(ft_ops *o); /* frees the table itself; NULL-safe via ft_ops_free */
    /* 1 when the backend implements op (FT_OP_*) for activations of dtype dt (ops without a
     * dtype argument: dt is FT_F32) */
    int (*supports)(const ft_ops *o, int op, ft_dtype dt);

    /* memory; alloc returns memory aligned to 64 bytes, contents undefined */
    int (*alloc)(ft_ops *o, size_t bytes, void **dev);
    void (*free)(ft_ops *o, void *dev); /* NULL is a no-op */
    int (*upload)(ft_ops *o, void *dev_dst, const void *host_src, size_t bytes);
    int (*download)(ft_ops *o, void *host_dst, const void *dev_src, size_t bytes);
    int (*copy)(ft_ops *o, void *dev_dst, const void *dev_src, size_t bytes);
    int (*zero)(ft_ops *o, void *dev, size_t bytes);
    int (*sync)(ft_ops *o);
    /* the memory a model can take: *free_bytes and *total_bytes of the device (CPU: the host's
     * MemAvailable and MemTotal); used to say what fits when an allocation fails */
    int (*mem_info)(ft_ops *o, size_t *free_bytes, size_t *total_bytes);
    /* page-locked host memory for what is uploaded every step (the loader's batches): CUDA's
     * cudaHostAlloc, so that the copy is DMA and runs behind the host; the CPU's is ordinary
     * aligned memory. An upload from it may complete asynchronously: its contents must stay
     * unchanged until the next synchronizing op (download, sync, sumsq). */
    int (*host_alloc)(ft_ops *o, size_t bytes, void **host);
    void (*host_free)(ft_ops *o, void *host); /* NULL is a no-op */
    /* upload on a copy stream of the backend's own: ops queued after it see the data, ops
     * queued before it may still be running while it copies (CUDA: the copy runs beside the
     * previous step's tail). The caller makes sure nothing queued before it still uses
     * dev_dst (a synchronizing op since its last use); host_src as for upload. Backends
     * without a second stream: upload. */
    int (*upload_ahead)(ft_ops *o, void *dev_dst, const void *host_src, size_t bytes);

    /* dst = src converted element by element (count elements; F32, F16, BF16 either way;
     * equal dtypes copy) */
    int (*cast)(ft_ops *o, size_t count, ft_dtype src_dt, const void *src, ft_dtype dst_dt,
                void *dst);
    /* the layout boundary: activation [n, c, hw] of dtype dt from / to fp32 NCHW */
    int (*act_import)(ft_ops *o, ft_dtype dt, int n, int c, int hw, const float *src_nchw,
                      void *dst);
    int (*act_export)(ft_ops *o, ft_dtype dt, int n, int c, int hw, const void *src,
                      float *dst_nchw);

    /* the network input from uploaded loader pixels: x uint8 [n][h][w][3] RGB (device), dst
     * fp32 NCHW [n][3][h][w] (device), each value ft_km_pixel_norm (the CPU loader's table) */
    int (*input_u8)(ft_ops *o, int n, int h, int w, const uint8_t *x, float *dst);

    /* convolution: x, y, dy, dx and the weight copy w are of dtype dt; dw is fp32.
     * ws is device scratch of conv_ws_bytes(d, dt) bytes (may be NULL if 0). */
    size_t (*conv_ws_bytes)(ft_ops *o, const ft_conv_desc *d, ft_dtype dt);
    /* y[n,k,oh,ow] = conv(x[n,c,h,w], w[k,c,r,r]) */
    int (*conv_fwd)(ft_ops *o, const ft_conv_desc *d, ft_dtype dt, const void *x, const void *w,
                    void *y, void *ws);
    /* dx[n,c,h,w] = conv_transpose(dy, w) (overwrites dx) */
    int (*conv_bwd_data)(ft_ops *o, const ft_conv_desc *d, ft_dtype dt, const void *dy,
                         const void *w, void *dx, void *ws);
    /* dw[k,c,r,r] += correlation of x and dy over the batch (fp32) */
    int (*conv_bwd_filter)(ft_ops *o, const ft_conv_desc *d, ft_dtype dt, const void *x,
                           const void *dy, float *dw, void *ws);

    /* batch norm over x[n, c, hw] of dtype dt (BatchNorm2d; BatchNorm1d is hw = 1).
     * Train: batch mean/biased var normalize; running stats updated with momentum and the
     * unbiased var (PyTorch): run = (1-momentum)*run + momentum*stat. save_mean and
     * save_invstd [c] keep mean and 1/sqrt(var+eps) for bn_bwd. */
    int (*bn_fwd_train)(ft_ops *o, ft_dtype dt, int n, int c, int hw, float eps, float momentum,
                        const void *x, const float *gamma, const float *beta, void *y,
                        float *run_mean, float *run_var, float *save_mean, float *save_invstd);
    /* Eval: y = (x - run_mean) / sqrt(run_var + eps) * gamma + beta */
    int (*bn_fwd_eval)(ft_ops *o, ft_dtype dt, int n, int c, int hw, float eps, const void *x,
                       const float *gamma, const float *beta, const float *run_mean,
                       const float *run_var, void *y);
    /* Train-mode backward. dx overwritten (may alias dy); dgamma, dbeta "+=" (either NULL to
     * skip, e.g. frozen features.weight). */
    int (*bn_bwd)(ft_ops *o, ft_dtype dt, int n, int c, int hw, const void *x, const void *dy,
                  const float *gamma, const float *save_mean, const float *save_invstd, void *dx,
                  float *dgamma, float *dbeta);

    /* PReLU with one slope per channel: y = x > 0 ? x : alpha[c] * x on x[n, c, hw] */
    int (*prelu_fwd)(ft_ops *o, ft_dtype dt, int n, int c, int hw, const void *x,
                     const float *alpha, void *y);
    /* dx overwritten (may alias dy); dalpha[c] += sum over x <= 0 of x * dy */
    int (*prelu_bwd)(ft_ops *o, ft_dtype dt, int n, int c, int hw, const void *x,
                     const float *alpha, const void *dy, void *dx, float *dalpha);

    /* y = a + b on count elements of dtype dt (residual connections) */
    int (*add)(ft_ops *o, ft_dtype dt, size_t count, const void *a, const void *b, void *y);
    /* fp32 vectors (gradients, parameters) */
    int (*axpy)(ft_ops *o, size_t count, float alpha, const float *x, float *y); /* y+=a*x */
    int (*scale)(ft_ops *o, size_t count, float alpha, float *x);                /* x*=a */
    /* *host_out = sum of x^2, accumulated in double (synchronizes) */
    int (*sumsq)(ft_ops *o, size_t count, const float *x, double *host_out);
    /* *acc (device double) += sum of x^2 in double, without synchronizing: a norm over many
     * tensors costs one download (gradient clipping) */
    int (*sumsq_acc)(ft_ops *o, size_t count, const float *x, double *acc);
    /* Loss-scaler unscale (torch GradScaler.unscale_): g *= inv_scale; *found (device float,
     * not reset) becomes 1 when any element of g is inf or NaN. */
    int (*unscale_check)(ft_ops *o, size_t count, float inv_scale, float *g, float *found);

    /* C[m,n] = alpha * op(A) op(B) + beta * C, row-major, A, B and C of dtype dt with fp32
     * accumulation; op(A) is [m,k], op(B) is [k,n]; lda/ldb/ldc are row strides of the stored
     * matrices (before transposition). */
    int (*gemm)(ft_ops *o, ft_dtype dt, int trans_a, int trans_b, int m, int n, int k, float alpha,
                const void *a, int lda, const void *b, int ldb, float beta, void *c, int ldc);
    /* flatten + Linear in fp32 (arcface_torch runs fc on x.float()): x activation [n, c, hw]
     * of dtype dt; w [out, c*hw] fp32 in NCHW flatten order; y[n, out] = flat(x) w^T + bias
     * (fp32; bias may be NULL). */
    int (*fc_fwd)(ft_ops *o, ft_dtype dt, int n, int c, int hw, int out, const void *x,
                  const float *w, const float *bias, float *y);
    /* dx (dtype dt, overwritten; may be NULL) = unflatten(dy w), dw += dy^T flat(x),
     * dbias += column sums of dy (NULL to skip) */
    int (*fc_bwd)(ft_ops *o, ft_dtype dt, int n, int c, int hw, int out, const void *x,
                  const float *w, const float *dy, void *dx, float *dw, float *dbias);

    /* inverted dropout on the activation x[n, c, hw] of dtype dt: keep with prob 1-p, scale
     * kept by 1/(1-p). mask: n*c*hw bytes of device memory in the backend's layout (only
     * dropout_bwd reads it). The keep decision for an element is a pure function of (seed, i)
     * with i its NCHW index, so that every backend and layout draws the same mask. seed is
     * device memory holding the seed (one uint64_t, read when the op runs: a value that
     * changes every step reaches a captured graph this way, see graph_begin).
     * p == 0 copies x to y (and mask is not touched). */
    int (*dropout_fwd)(ft_ops *o, ft_dtype dt, int n, int c, int hw, float p, const uint64_t *seed,
                       const void *x, void *y, uint8_t *mask);
    int (*dropout_bwd)(ft_ops *o, ft_dtype dt, int n, int c, int hw, float p, const uint8_t *mask,
                       const void *dy, void *dx);

    /* row L2 normalization (fp32) as torch.nn.functional.normalize(eps=1e-12):
     * y[r,:] = x[r,:] / max(|x[r,:]|, 1e-12); norms[r] keeps the denominator. */
    int (*l2norm_fwd)(ft_ops *o, int rows, int dim, const float *x, float *y, float *norms);
    /* dx overwritten (may alias dy) from y, norms and dy */
    int (*l2norm_bwd)(ft_ops *o, int rows, int dim, const float *y, const float *norms,
                      const float *dy, float *dx);
    /* dst[i,:] = src[idx[i],:] for i < rows (fp32) */
    int (*gather_rows)(ft_ops *o, int rows, int dim, const float *src, const int32_t *idx,
                       float *dst);
    /* dst[idx[i],:] += src[i,:] (idx distinct) */
    int (*scatter_add_rows)(ft_ops *o, int rows, int dim, const float *src, const int32_t *idx,
                            float *dst);

    /* Partial FC's class sampling over a shard of n local classes (pfc.h; kmath.h's
     * ft_km_sample_key): with positive(i) = some label[r] == i, index[0..count) = the rows of
     * the count smallest keys ft_km_sample_key(seed, i, positive(i)), ascending, and
     * label_out[r] = the position of label[r] in index (-1 stays -1). label[r] is in [-1, n);
     * count is at least the number of distinct positives (the caller counts them) and at most
     * n; scratch is ft_ops_pfc_sample_scratch(n) bytes of device memory. Every backend draws
     * the same index. seed: device memory holding the seed, as dropout_fwd's. */
    int (*pfc_sample)(ft_ops *o, int64_t n, const uint64_t *seed, int batch, const int32_t *label,
                      int count, int32_t *index, int32_t *label_out, void *scratch);

    /* margin softmax pieces, fp32 (pfc.c strings them together with cross-rank reductions).
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

    /* SGD, PyTorch semantics (dampening 0, no nesterov), fp32:
     * g' = g + wd*w; buf = momentum*buf + g'; w -= lr*buf. buf starts at zero, which equals
     * PyTorch's first-step buf = g'. */
    int (*sgd_update)(ft_ops *o, size_t count, float lr, float momentum, float wd, float *w,
                      const float *g, float *buf);
    /* the same on rows idx[0..rows) of [*, dim] matrices only */
    int (*sgd_update_rows)(ft_ops *o, int rows, int dim, const int32_t *idx, float lr,
                           float momentum, float wd, float *w, const float *g, float *buf);

    /* tensor lists (see ft_tlist): make copies e[0..n) (n >= 0); free is NULL-safe */
    int (*tlist_make)(ft_ops *o, int n, const ft_tentry *e, ft_tlist **out);
    void (*tlist_free)(ft_ops *o, ft_tlist *t);
    /* over every entry of t, as the single-tensor op of the same name on each: */
    int (*multi_zero)(ft_ops *o, const ft_tlist *t);                   /* g = 0 */
    int (*multi_scale)(ft_ops *o, const ft_tlist *t, float alpha);     /* g *= alpha */
    int (*multi_sumsq_acc)(ft_ops *o, const ft_tlist *t, double *acc); /* acc += sum g^2 */
    int (*multi_unscale_check)(ft_ops *o, const ft_tlist *t, float inv_scale, float *found);
    int (*multi_sgd)(ft_ops *o, const ft_tlist *t, float lr, float momentum, float wd); /* w,g,m */

    /* graphs (CUDA graphs; NULL on a backend without them: run the ops directly). Between
     * graph_begin and graph_end the ops are recorded, not run; graph_launch runs the recording
     * as one unit on the backend's stream, in order with the ops around it, as often as asked.
     * Every argument is fixed at recording: pointers, sizes and scalars (what changes between
     * launches travels in device memory, as dropout_fwd's and pfc_sample's seeds). Recorded
     * ops must not synchronize or allocate (download, sync, sumsq, alloc, free, host_alloc,
     * a growing scratch): graph_end then fails with FT_EDEVICE, the recording is dropped and
     * the backend is usable again. Run each recorded op once outside a recording first, so
     * that its one-time work (algorithm choice, scratch) is done. graph_launch fails with
     * FT_ESTALE, running nothing, when memory of the backend's own that the recording uses has
     * been replaced since (a scratch grown by a larger op): record again. */
    int (*graph_begin)(ft_ops *o);
    int (*graph_end)(ft_ops *o, void **graph); /* *graph: a handle for graph_launch */
    int (*graph_launch)(ft_ops *o, void *graph);
    /* 0 when graph_launch would run the recording, FT_ESTALE when it would refuse it, FT_EARG
     * for NULL; runs nothing (ranks that must agree on replaying ask first) */
    int (*graph_check)(ft_ops *o, void *graph);
    void (*graph_free)(ft_ops *o, void *graph); /* NULL is a no-op */
};

/* ---- graph slots: record once, replay after (the callers of graph_begin..graph_free) ----
 *
 * A slot holds the recording of one piece of device work for one shape (a caller's key: rows,
 * sampled classes, loss scale, batch size...). ft_graph_run runs the work through it: the first
 * run of a shape runs the work directly (its one-time work happens then); a run of the same
 * shape as the slot's previous run records the work and launches the recording; later runs of
 * the recorded shape replay it. A run of another shape drops the recording. A replay refused
 * with FT_ESTALE (scratch memory replaced since) drops it too and runs the work directly; the
 * next run of that shape records afresh. On a backend without graphs the work always runs
 * directly. */
typedef int (*ft_graph_work)(void *ctx);
enum { FT_GRAPH_KEY_MAX = 4 }; /* words of a shape key */
typedef struct ft_graph_slot {
    void *g;                         /* the recording, NULL: none */
    uint64_t key[FT_GRAPH_KEY_MAX];  /* its shape */
    uint64_t prev[FT_GRAPH_KEY_MAX]; /* the previous run's shape */
    int nkey;                        /* words in prev (0: no previous run) */
    int64_t recorded;                /* recordings made */
    int64_t replayed;                /* runs that were replays of an earlier recording */
} ft_graph_slot;

enum {
    FT_GRAPH_DIRECT = 0, /* the work ran directly */
    FT_GRAPH_RECORDED =
        1, /* the work was recorded (its host side ran) and the recording launched */
    FT_GRAPH_REPLAYED = 2, /* an earlier recording was launched: the work's host side did not
                              run, and the caller brings it up to date */
    FT_GRAPH_FAILED = 3    /* on an error: graph_begin, graph_end or graph_launch failed (not
                              the work; a failing work leaves DIRECT or RECORDED) */
};

/* Run work(ctx) through slot s (zeroed before its first use) for a run of the shape
 * key[0 .. nkey), 1 <= nkey <= FT_GRAPH_KEY_MAX and the same on every run of s (else
 * FT_EARG); *how (may be NULL) says how
 * (FT_GRAPH_*). Returns 0, the work's error, or the graph call's error. After a failed
 * recording the slot holds none and the backend runs ops directly again. */
int ft_graph_run(ft_ops *o, ft_graph_slot *s, const uint64_t *key, int nkey, ft_graph_work work,
                 void *ctx, int *how);
/* Drop the slot's recording (NULL-safe on o's side: a zeroed slot is fine); counters kept. */
void ft_graph_slot_drop(ft_ops *o, ft_graph_slot *s);

/* ---- the backend factory ---- */

typedef struct ft_ops_options {
    int threads;    /* CPU: worker threads (0 = online CPUs); the OpenBLAS calls run under them */
    int device;     /* CUDA: device ordinal; -1: the one visible GPU when only one is (a launcher
                       bound each rank to its own), else the local rank's, else 0 */
    int local_rank; /* CUDA, device -1: this process's rank on its node (-1: LOCAL_RANK) */
    /* 1: forward passes only, and no weight changes after its first use in conv_fwd
     * (inference engines): the backend may pick inference kernels and keep the weights in its
     * own layout from the first call on; conv_bwd_* may then fail with FT_EARG. */
    int inference;
    /* where activations live in memory (FT_LAYOUT_*): auto is the backend's choice (CPU: NCHW;
     * CUDA: NHWC for fp16/bf16, the layout of cuDNN's tensor-core kernels, NCHW for fp32) */
    int layout;
} ft_ops_options;

enum {
    FT_LAYOUT_AUTO = 0,
    FT_LAYOUT_NCHW = 1, /* every dtype NCHW */
    FT_LAYOUT_NHWC = 2  /* every dtype NHWC (CUDA only) */
};
/* "auto", "nchw", "nhwc" -> FT_LAYOUT_*, or -1 */
int ft_layout_parse(const char *s);
const char *ft_layout_name(int layout);

/* threads 0, device -1, local_rank -1, inference 0, layout auto */
void ft_ops_options_init(ft_ops_options *opts);

/* Create backend `name` ("cpu", "cuda", or "auto": cuda when it is built and a device is
 * visible, else cpu; o->name tells which). "cpu-strict" is the CPU backend behind memory the
 * host cannot touch (cpu/strict.c): it makes code that dereferences device memory crash on a
 * machine without a GPU, as it would misbehave on one. FT_ENOTSUP with a reason in err for a
 * backend that is not compiled into this build; FT_ENODEV when it is compiled but no device is
 * present (tests turn that into exit 77). opts may be NULL for the defaults. */
int ft_ops_create(const char *name, const ft_ops_options *opts, ft_ops **out, char *err,
                  size_t errcap);
void ft_ops_free(ft_ops *o); /* NULL-safe */
/* The slots a backend may leave NULL, filled by the factory: upload_ahead as upload, the
 * multi-tensor slots as loops over the single-tensor ones; and the host part of a list, which
 * a backend's own tlist_make extends. */
void ft_ops_fill_defaults(ft_ops *o);
int ft_tlist_host_make(int n, const ft_tentry *e, ft_tlist **out);
void ft_tlist_host_free(ft_tlist *t);
/* The backends compiled into this build, space-separated ("cpu" or "cpu cuda"). */
const char *ft_ops_backends(void);
/* CPU backend: its worker count; 0 for another backend */
int ft_ops_cpu_threads(const ft_ops *o);
/* The device a backend runs on, as ranks compare them ("<host> pci <bus id>" for a GPU; ""
 * for the CPU backends, which share their host freely). 0, or FT_EARG when cap < 32. */
int ft_ops_device_id(const ft_ops *o, char *buf, size_t cap);
/* 1 when o implements op for dt (o->supports, or 0 when the slot is NULL) */
int ft_ops_supports(const ft_ops *o, int op, ft_dtype dt);

/* Bytes of the scratch pfc_sample needs for a shard of n classes on every backend. */
size_t ft_ops_pfc_sample_scratch(int64_t n);

/* ---- the arena planner ----
 * A model plans its device memory in passes over its architecture: a measuring pass with
 * base 0 (pointers are meaningless) that sums the bytes, then, after one o->alloc, an
 * assigning pass with the real base. Every take is 64-byte aligned. Bytes are counted per
 * dtype so that a plan reports how much of it is fp32 and how much 16-bit storage. */
typedef struct ft_arena {
    uintptr_t base;
    size_t off;
    size_t bytes[FT_NDTYPES]; /* bytes taken per dtype, padding included */
} ft_arena;

void ft_arena_init(ft_arena *a, uintptr_t base);
void *ft_arena_take(ft_arena *a, ft_dtype dt, size_t numel);
/* "12.3 MiB f32 + 4.5 MiB f16" of the non-empty dtypes */
void ft_arena_describe(const ft_arena *a, char *out, size_t cap);

#endif
