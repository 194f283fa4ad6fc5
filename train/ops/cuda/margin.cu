/* margin.cu: the margin softmax pieces over a class shard, fp32: margin forward/backward and
 * the softmax cross-entropy gradient one thread per entry, row max and exp + row sum one block
 * per row (sums in double). The per-entry expressions are kmath.h's. */
#include "cuda.h"

static __global__ void k_margin_fwd(size_t n, int cols, int kind, float s, float m2, float m3,
                                    float thr, const int32_t *label, const float *cosv,
                                    float *logits) {
    GRID_LOOP(i, n) {
        int t = label[i / cols], j = (int)(i % cols);
        logits[i] = ft_km_margin_logit(kind, s, m2, m3, thr, cosv[i], j == t);
    }
}
static __global__ void k_margin_bwd(size_t n, int cols, int kind, int exact, float s, float m2,
                                    float thr, const int32_t *label, const float *cosv,
                                    const float *dl, float *dc) {
    GRID_LOOP(i, n) {
        int t = label[i / cols], j = (int)(i % cols);
        dc[i] = ft_km_margin_dcos(kind, exact, s, m2, thr, cosv[i], dl[i], j == t);
    }
}
static __global__ void k_row_max(int cols, const float *x, float *mx) {
    __shared__ float sh[CUDA_RED];
    size_t r = blockIdx.x;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < cols; j += CUDA_RED) {
        float v = x[r * cols + j];
        m = v > m ? v : m;
    }
    sh[threadIdx.x] = m;
    __syncthreads();
    for (int s = CUDA_RED / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) {
            float v = sh[threadIdx.x + s];
            sh[threadIdx.x] = v > sh[threadIdx.x] ? v : sh[threadIdx.x];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) mx[r] = sh[0];
}
static __global__ void k_row_exp_sum(int cols, float *x, const float *mx, float *sum) {
    __shared__ double sh[CUDA_RED];
    size_t r = blockIdx.x;
    float m = mx[r];
    double s = 0;
    for (int j = threadIdx.x; j < cols; j += CUDA_RED) {
        float e = expf(x[r * cols + j] - m);
        x[r * cols + j] = e;
        s += e;
    }
    s = cuda_block_sum(s, sh);
    if (threadIdx.x == 0) sum[r] = (float)s;
}
static __global__ void k_xent(size_t n, int cols, float *e, const float *sum, const int32_t *label,
                              float scale, float *ptarget) {
    GRID_LOOP(i, n) {
        size_t r = i / cols;
        int t = label[r], j = (int)(i % cols);
        float p = ft_km_xent_prob(e[i], sum[r]);
        if (j == t) ptarget[r] = p;
        if (t < 0 && j == 0) ptarget[r] = 0.0f;
        e[i] = ft_km_xent_grad(p, j == t, scale);
    }
}

static int check(int rows, int cols, const ft_margin *mg) {
    if (rows < 0 || cols < 1) return FT_EARG;
    if (mg && mg->kind != FT_MARGIN_ARCFACE && mg->kind != FT_MARGIN_COSFACE) return FT_EARG;
    return 0;
}
static int cuda_margin_fwd(ft_ops *o, int rows, int cols, const ft_margin *mg, const int32_t *label,
                           const float *cosv, float *logits) {
    int rc = check(rows, cols, mg);
    size_t n = (size_t)rows * cols;
    if (rc || !n) return rc;
    CUDA_LAUNCH(k_margin_fwd, cuda_blocks(n), CUDA_THREADS, cuda_of(o)->stream)
    (n, cols, mg->kind, mg->s, mg->m2, mg->m3, mg->filter_thr, label, cosv, logits);
    CU_LAUNCHED();
    return 0;
}
static int cuda_margin_bwd(ft_ops *o, int rows, int cols, const ft_margin *mg, const int32_t *label,
                           const float *cosv, const float *dlogits, float *dcos) {
    int rc = check(rows, cols, mg);
    size_t n = (size_t)rows * cols;
    if (rc || !n) return rc;
    CUDA_LAUNCH(k_margin_bwd, cuda_blocks(n), CUDA_THREADS, cuda_of(o)->stream)
    (n, cols, mg->kind, mg->grad_mode == FT_MARGIN_GRAD_EXACT, mg->s, mg->m2, mg->filter_thr, label,
     cosv, dlogits, dcos);
    CU_LAUNCHED();
    return 0;
}
static int cuda_row_max(ft_ops *o, int rows, int cols, const float *x, float *mx) {
    int rc = check(rows, cols, NULL);
    if (rc || !rows) return rc;
    CUDA_LAUNCH(k_row_max, rows, CUDA_RED, cuda_of(o)->stream)(cols, x, mx);
    CU_LAUNCHED();
    return 0;
}
static int cuda_row_exp_sum(ft_ops *o, int rows, int cols, float *x, const float *mx, float *sum) {
    int rc = check(rows, cols, NULL);
    if (rc || !rows) return rc;
    CUDA_LAUNCH(k_row_exp_sum, rows, CUDA_RED, cuda_of(o)->stream)(cols, x, mx, sum);
    CU_LAUNCHED();
    return 0;
}
static int cuda_softmax_xent_bwd(ft_ops *o, int rows, int cols, float *e, const float *sum,
                                 const int32_t *label, float grad_scale, float *ptarget) {
    int rc = check(rows, cols, NULL);
    size_t n = (size_t)rows * cols;
    if (rc || !n) return rc;
    CUDA_LAUNCH(k_xent, cuda_blocks(n), CUDA_THREADS, cuda_of(o)->stream)
    (n, cols, e, sum, label, grad_scale, ptarget);
    CU_LAUNCHED();
    return 0;
}

void cuda_install_margin(ft_ops *o) {
    o->margin_fwd = cuda_margin_fwd;
    o->margin_bwd = cuda_margin_bwd;
    o->row_max = cuda_row_max;
    o->row_exp_sum = cuda_row_exp_sum;
    o->softmax_xent_bwd = cuda_softmax_xent_bwd;
}
