/* rows.cu: row operations on fp32 matrices: L2 normalization forward/backward (one block per
 * row, sums in double, kmath.h's expressions) and the gather / scatter-add of Partial FC's
 * sampled class centres (one thread per element; scatter indices are distinct). */
#include "cuda.h"

static __global__ void k_l2_fwd(int dim, const float *x, float *y, float *norms) {
    __shared__ double sh[CUDA_RED];
    size_t r = blockIdx.x;
    const float *xr = x + r * dim;
    double s = 0;
    for (int j = threadIdx.x; j < dim; j += CUDA_RED) s += (double)xr[j] * xr[j];
    float nrm = ft_km_l2_denom(cuda_block_sum(s, sh));
    if (threadIdx.x == 0) norms[r] = nrm;
    for (int j = threadIdx.x; j < dim; j += CUDA_RED) y[r * dim + j] = xr[j] / nrm;
}
static __global__ void k_l2_bwd(int dim, const float *y, const float *norms, const float *dy,
                                float *dx) {
    __shared__ double sh[CUDA_RED];
    size_t r = blockIdx.x;
    const float *yr = y + r * dim, *dyr = dy + r * dim;
    double s = 0;
    for (int j = threadIdx.x; j < dim; j += CUDA_RED) s += (double)yr[j] * dyr[j];
    float nrm = norms[r];
    float d = ft_km_l2_dot_term(nrm, cuda_block_sum(s, sh));
    /* dx may alias dy: the dot is complete (block_sum synchronizes) before any write */
    for (int j = threadIdx.x; j < dim; j += CUDA_RED)
        dx[r * dim + j] = ft_km_l2_dx(dyr[j], yr[j], d, nrm);
}
static __global__ void k_gather(size_t n, int dim, const float *src, const int32_t *idx,
                                float *dst) {
    GRID_LOOP(i, n) dst[i] = src[(size_t)idx[i / dim] * dim + i % dim];
}
static __global__ void k_scatter_add(size_t n, int dim, const float *src, const int32_t *idx,
                                     float *dst) {
    GRID_LOOP(i, n) dst[(size_t)idx[i / dim] * dim + i % dim] += src[i];
}

static int cuda_l2norm_fwd(ft_ops *o, int rows, int dim, const float *x, float *y, float *norms) {
    if (rows < 0 || dim < 1) return FT_EARG;
    if (!rows) return 0;
    CUDA_LAUNCH(k_l2_fwd, rows, CUDA_RED, cuda_of(o)->stream)(dim, x, y, norms);
    CU_LAUNCHED();
    return 0;
}
static int cuda_l2norm_bwd(ft_ops *o, int rows, int dim, const float *y, const float *norms,
                           const float *dy, float *dx) {
    if (rows < 0 || dim < 1) return FT_EARG;
    if (!rows) return 0;
    CUDA_LAUNCH(k_l2_bwd, rows, CUDA_RED, cuda_of(o)->stream)(dim, y, norms, dy, dx);
    CU_LAUNCHED();
    return 0;
}
static int cuda_gather_rows(ft_ops *o, int rows, int dim, const float *src, const int32_t *idx,
                            float *dst) {
    if (rows < 0 || dim < 1) return FT_EARG;
    size_t n = (size_t)rows * dim;
    if (!n) return 0;
    CUDA_LAUNCH(k_gather, cuda_blocks(n), CUDA_THREADS, cuda_of(o)->stream)(n, dim, src, idx, dst);
    CU_LAUNCHED();
    return 0;
}
static int cuda_scatter_add_rows(ft_ops *o, int rows, int dim, const float *src, const int32_t *idx,
                                 float *dst) {
    if (rows < 0 || dim < 1) return FT_EARG;
    size_t n = (size_t)rows * dim;
    if (!n) return 0;
    CUDA_LAUNCH(k_scatter_add, cuda_blocks(n), CUDA_THREADS, cuda_of(o)->stream)
    (n, dim, src, idx, dst);
    CU_LAUNCHED();
    return 0;
}

void cuda_install_rows(ft_ops *o) {
    o->l2norm_fwd = cuda_l2norm_fwd;
    o->l2norm_bwd = cuda_l2norm_bwd;
    o->gather_rows = cuda_gather_rows;
    o->scatter_add_rows = cuda_scatter_add_rows;
}
