/* conv.cu: convolutions with cuDNN (forward, backward data, backward filter) in the
 * activations' layout (NHWC for 16-bit by default, the tensor-core kernels' layout; NCHW),
 * fp32 accumulation (PSEUDO_HALF / PSEUDO_BFLOAT16 configurations).
 *
 * Algorithms are chosen once per shape from cuDNN's heuristics (cudnnGet*Algorithm_v7, no
 * timing runs, so the choice is reproducible) and cached with the shape's descriptors: the
 * first deterministic algorithm that succeeds within the workspace bound (a non-deterministic
 * one, with a note, where cuDNN offers no deterministic one), with FMA math for
 * fp32 (no TF32: fp32 must agree with the CPU to 1e-5) and tensor-op math for fp16/bf16.
 * The workspace of a shape is max(forward, backward data, 16-bit dw + backward filter): for
 * 16-bit activations cuDNN writes dw in the activation dtype, which is then added to the fp32
 * gradient, as autocast's weight gradient is. A shape conv_ws_bytes never saw (a smaller eval
 * batch) gets algorithms within the largest workspace conv_ws_bytes has reported, which is
 * what the model allocated.
 *
 * NHWC: the filter is NHWC too (KRSC, what cuDNN's NHWC kernels read), while the ops interface
 * keeps w and dw [k, c, r, r]: forward and backward data reorder w into the front of the
 * workspace first (a copy, exact), and backward filter writes its KRSC dw there and adds it to
 * dw in KCRS order.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cuda.h"

static cudnnDataType_t dnn_type(ft_dtype dt) {
    return dt == FT_F16 ? CUDNN_DATA_HALF : dt == FT_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

#define WS_ALIGN(x) (((x) + 255) / 256 * 256)

static size_t entry_ws(const cuda_conv_entry *e) {
    size_t wt = WS_ALIGN(e->ws_wt);
    size_t f = wt + e->ws_fwd, bd = wt + e->ws_bwd_data;
    size_t bf = WS_ALIGN(e->ws_dw16) + e->ws_bwd_filter;
    size_t m = f > bd ? f : bd;
    return m > bf ? m : bf;
}

static int same(const ft_conv_desc *a, const ft_conv_desc *b) {
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w && a->k == b->k &&
           a->r == b->r && a->stride == b->stride && a->pad == b->pad;
}

void cuda_conv_release(cuda_backend *b) {
    for (int i = 0; i < b->nconv; i++) {
        cuda_conv_entry *e = b->conv[i];
        if (e->x) cudnnDestroyTensorDescriptor(e->x);
        if (e->y) cudnnDestroyTensorDescriptor(e->y);
        if (e->w) cudnnDestroyFilterDescriptor(e->w);
        for (int j = 0; j < 3; j++)
            if (e->conv[j]) cudnnDestroyConvolutionDescriptor(e->conv[j]);
        free(e);
    }
    free(b->conv);
    b->conv = NULL;
    b->nconv = b->conv_cap = 0;
}

/* pick from a heuristic list: the first that succeeds, is deterministic and fits the limit;
 * a first pass wants math type `want` (tensor ops for 16-bit). fp32 takes FMA or default
 * entries and its descriptor is pinned to FMA math below (default math may use TF32). Where
 * no deterministic algorithm fits (cuDNN may offer none for some shape, e.g. 3 input channels
 * in NHWC), the same two passes over the non-deterministic ones, with a note naming the
 * shape: training goes on, that layer's results may vary in the last bits between runs. */
#define PICK(perf, count, limit, want, fp32, out_algo, out_ws, out_math, d, dt, what)              \
    do {                                                                                           \
        int found_ = 0;                                                                            \
        for (int pass_ = 0; pass_ < 4 && !found_; pass_++)                                         \
            for (int i_ = 0; i_ < (count) && !found_; i_++) {                                      \
                cudnnMathType_t mt_ = (perf)[i_].mathType;                                         \
                if ((perf)[i_].status != CUDNN_STATUS_SUCCESS) continue;                           \
                if (pass_ < 2 && (perf)[i_].determinism != CUDNN_DETERMINISTIC) continue;          \
                if ((perf)[i_].memory > (limit)) continue;                                         \
                if (pass_ % 2 == 0 && mt_ != (want)) continue;                                     \
                if ((fp32) && mt_ != CUDNN_FMA_MATH && mt_ != CUDNN_DEFAULT_MATH) continue;        \
                (out_algo) = (perf)[i_].algo, (out_ws) = (perf)[i_].memory;                        \
                (out_math) = (fp32) ? CUDNN_FMA_MATH : mt_, found_ = 1 + (pass_ >= 2);             \
            }                                                                                      \
        if (!found_)                                                                               \
            return cuda_fail_(__FILE__, __LINE__, "cudnnGet*Algorithm_v7",                         \
                              "no algorithm fits the workspace");                                  \
        if (found_ == 2) nondet_note((d), (dt), (what), (int)(out_algo));                          \
    } while (0)

static void nondet_note(const ft_conv_desc *d, ft_dtype dt, const char *what, int algo) {
    fprintf(stderr,
            "ft_ops cuda: note: conv n %d c %d %dx%d k %d %dx%d stride %d (%s) %s: no "
            "deterministic cuDNN algorithm fits; non-deterministic algorithm %d is used (this "
            "layer's results may differ in the last bits from run to run)\n",
            d->n, d->c, d->h, d->w, d->k, d->r, d->r, d->stride, ft_dtype_name(dt), what, algo);
}

static int entry_setup(cuda_backend *b, cuda_conv_entry *e, const ft_conv_desc *d, ft_dtype dt,
                       size_t limit) {
    memset(e, 0, sizeof *e);
    e->d = *d, e->dt = dt;
    cudnnDataType_t t = dnn_type(dt);
    int fp32 = dt == FT_F32;
    e->nhwc = cuda_nhwc(b, dt);
    cudnnTensorFormat_t fmt = e->nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    cudnnMathType_t want = fp32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->x));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->y));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&e->w));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->x, fmt, t, d->n, d->c, d->h, d->w));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->y, fmt, t, d->n, d->k, d->oh, d->ow));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(e->w, t, fmt, d->k, d->c, d->r, d->r));
    for (int j = 0; j < 3; j++) {
        CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&e->conv[j]));
        CUDNN_CHECK(cudnnSetConvolution2dDescriptor(e->conv[j], d->pad, d->pad, d->stride,
                                                    d->stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                    CUDNN_DATA_FLOAT));
        CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv[j], want));
    }
    int on, oc, ohh, oww;
    CUDNN_CHECK(
        cudnnGetConvolution2dForwardOutputDim(e->conv[0], e->x, e->w, &on, &oc, &ohh, &oww));
    if (on != d->n || oc != d->k || ohh != d->oh || oww != d->ow)
        return cuda_fail_(__FILE__, __LINE__, "cudnnGetConvolution2dForwardOutputDim",
                          "output shape differs from ft_conv_desc_init's");
    size_t wbytes = (size_t)d->k * d->c * d->r * d->r * ft_dtype_size(dt);
    /* dw goes through the workspace when cuDNN's differs from the fp32 KCRS gradient */
    e->ws_dw16 = fp32 && !e->nhwc ? 0 : wbytes;
    e->ws_wt = e->nhwc ? wbytes : 0;
    size_t lim_f = limit > WS_ALIGN(e->ws_wt) ? limit - WS_ALIGN(e->ws_wt) : 0, lim_d = lim_f;
    size_t lim_w = limit > WS_ALIGN(e->ws_dw16) ? limit - WS_ALIGN(e->ws_dw16) : 0;
    cudnnMathType_t math;
    int n;
    {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(
            b->dnn, e->x, e->w, e->conv[0], e->y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
        PICK(perf, n, lim_f, want, fp32, e->fwd, e->ws_fwd, math, d, dt, "forward");
        CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv[0], math));
        /* the math type may differ from the heuristic entry's (fp32 pinned to FMA): the
         * workspace of the algorithm as the descriptor now stands, if larger */
        size_t ws = 0;
        CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(b->dnn, e->x, e->w, e->conv[0], e->y,
                                                            e->fwd, &ws));
        if (ws > e->ws_fwd) e->ws_fwd = ws;
    }
    {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
            b->dnn, e->w, e->y, e->conv[1], e->x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf));
        PICK(perf, n, lim_d, want, fp32, e->bwd_data, e->ws_bwd_data, math, d, dt, "backward data");
        CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv[1], math));
        size_t ws = 0;
        CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(b->dnn, e->w, e->y, e->conv[1],
                                                                 e->x, e->bwd_data, &ws));
        if (ws > e->ws_bwd_data) e->ws_bwd_data = ws;
    }
    {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
            b->dnn, e->x, e->y, e->conv[2], e->w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n,
            perf));
        PICK(perf, n, lim_w, want, fp32, e->bwd_filter, e->ws_bwd_filter, math, d, dt,
             "backward filter");
        CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv[2], math));
        size_t ws = 0;
        CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(b->dnn, e->x, e->y, e->conv[2],
                                                                   e->w, e->bwd_filter, &ws));
        if (ws > e->ws_bwd_filter) e->ws_bwd_filter = ws;
    }
    return 0;
}

/* the cached entry of (d, dt), set up on first use */
static int entry_get(ft_ops *o, const ft_conv_desc *d, ft_dtype dt, int planning,
                     cuda_conv_entry **out) {
    cuda_backend *b = cuda_of(o);
    for (int i = 0; i < b->nconv; i++)
        if (b->conv[i]->dt == dt && same(&b->conv[i]->d, d)) {
            *out = b->conv[i];
            return 0;
        }
    if (b->nconv == b->conv_cap) {
        int cap = b->conv_cap ? 2 * b->conv_cap : 64;
        cuda_conv_entry **grown = (cuda_conv_entry **)realloc(b->conv, (size_t)cap * sizeof *grown);
        if (!grown) return -ENOMEM;
        b->conv = grown, b->conv_cap = cap;
    }
    cuda_conv_entry *e = (cuda_conv_entry *)calloc(1, sizeof *e);
    if (!e) return -ENOMEM;
    size_t limit = planning || !b->ws_planned ? b->ws_limit : b->ws_planned;
    b->conv[b->nconv++] = e;
    int rc = entry_setup(b, e, d, dt, limit);
    if (rc) return rc; /* the partial entry stays counted so that release frees it */
    if (planning) {
        size_t ws = entry_ws(e);
        if (ws > b->ws_planned) b->ws_planned = ws;
    }
    *out = e;
    return 0;
}

static size_t cuda_conv_ws_bytes(ft_ops *o, const ft_conv_desc *d, ft_dtype dt) {
    cuda_conv_entry *e;
    if (!cuda_float_dt(dt) || entry_get(o, d, dt, 1, &e)) return 0;
    return entry_ws(e);
}

static const float ONE = 1.0f, ZERO = 0.0f;

/* KCRS -> KRSC, one thread per destination element (a copy: exact in every dtype) */
static __global__ void k_w_krsc(size_t total, int c, int rs, ft_dtype dt, const void *w, void *wt) {
    GRID_LOOP(i, total) {
        size_t k = i / ((size_t)rs * c), q = i / c % rs, ch = i % c;
        cuda_st(dt, wt, i, cuda_ld(dt, w, (k * c + ch) * rs + q));
    }
}

/* the filter cuDNN reads for entry e: w itself (NCHW), or w reordered to KRSC at the front of
 * ws (NHWC); *alg_ws is the algorithm's workspace after it */
static int weights_for(ft_ops *o, const cuda_conv_entry *e, const void *w, const void **wf,
                       void **alg_ws) {
    *wf = w;
    if (!e->nhwc) return 0;
    const ft_conv_desc *d = &e->d;
    size_t total = (size_t)d->k * d->c * d->r * d->r;
    CUDA_LAUNCH(k_w_krsc, cuda_blocks(total), CUDA_THREADS, cuda_of(o)->stream)
    (total, d->c, d->r * d->r, e->dt, w, *alg_ws);
    CU_LAUNCHED();
    *wf = *alg_ws;
    *alg_ws = (char *)*alg_ws + WS_ALIGN(e->ws_wt);
    return 0;
}

static int cuda_conv_fwd(ft_ops *o, const ft_conv_desc *d, ft_dtype dt, const void *x,
                         const void *w, void *y, void *ws) {
    if (!cuda_float_dt(dt)) return FT_ENOTSUP;
    cuda_conv_entry *e;
    int rc = entry_get(o, d, dt, 0, &e);
    if (rc) return rc;
    void *alg_ws = ws;
    if ((rc = weights_for(o, e, w, &w, &alg_ws))) return rc;
    CUDNN_CHECK(cudnnConvolutionForward(cuda_of(o)->dnn, &ONE, e->x, x, e->w, w, e->conv[0], e->fwd,
                                        alg_ws, e->ws_fwd, &ZERO, e->y, y));
    return 0;
}

static int cuda_conv_bwd_data(ft_ops *o, const ft_conv_desc *d, ft_dtype dt, const void *dy,
                              const void *w, void *dx, void *ws) {
    if (!cuda_float_dt(dt)) return FT_ENOTSUP;
    cuda_conv_entry *e;
    int rc = entry_get(o, d, dt, 0, &e);
    if (rc) return rc;
    void *alg_ws = ws;
    if ((rc = weights_for(o, e, w, &w, &alg_ws))) return rc;
    CUDNN_CHECK(cudnnConvolutionBackwardData(cuda_of(o)->dnn, &ONE, e->w, w, e->y, dy, e->conv[1],
                                             e->bwd_data, alg_ws, e->ws_bwd_data, &ZERO, e->x, dx));
    return 0;
}

/* dw (fp32 KCRS) += src (cuDNN's dw: dtype dt, KRSC when krsc), one thread per dw element */
static __global__ void k_add_dw16(size_t n, int krsc, int c, int rs, ft_dtype dt, const void *src,
                                  float *dw) {
    GRID_LOOP(i, n) {
        size_t at = i;
        if (krsc) {
            size_t k = i / ((size_t)c * rs), ch = i / rs % c, q = i % rs;
            at = (k * rs + q) * c + ch;
        }
        dw[i] += cuda_ld(dt, src, at);
    }
}

static int cuda_conv_bwd_filter(ft_ops *o, const ft_conv_desc *d, ft_dtype dt, const void *x,
                                const void *dy, float *dw, void *ws) {
    if (!cuda_float_dt(dt)) return FT_ENOTSUP;
    cuda_conv_entry *e;
    int rc = entry_get(o, d, dt, 0, &e);
    if (rc) return rc;
    cuda_backend *b = cuda_of(o);
    if (!e->ws_dw16) { /* fp32 NCHW: dw += directly (beta 1) */
        CUDNN_CHECK(cudnnConvolutionBackwardFilter(b->dnn, &ONE, e->x, x, e->y, dy, e->conv[2],
                                                   e->bwd_filter, ws, e->ws_bwd_filter, &ONE, e->w,
                                                   dw));
        return 0;
    }
    /* 16-bit or NHWC: cuDNN's dw at the start of ws, the algorithm's workspace after it */
    char *w16 = (char *)ws;
    void *alg_ws = e->ws_bwd_filter ? w16 + WS_ALIGN(e->ws_dw16) : NULL;
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(b->dnn, &ONE, e->x, x, e->y, dy, e->conv[2],
                                               e->bwd_filter, alg_ws, e->ws_bwd_filter, &ZERO, e->w,
                                               w16));
    size_t n = (size_t)d->k * d->c * d->r * d->r;
    CUDA_LAUNCH(k_add_dw16, cuda_blocks(n), CUDA_THREADS, b->stream)
    (n, e->nhwc, d->c, d->r * d->r, dt, w16, dw);
    CU_LAUNCHED();
    return 0;
}

void cuda_install_conv(ft_ops *o) {
    o->conv_ws_bytes = cuda_conv_ws_bytes;
    o->conv_fwd = cuda_conv_fwd;
    o->conv_bwd_data = cuda_conv_bwd_data;
    o->conv_bwd_filter = cuda_conv_bwd_filter;
}
