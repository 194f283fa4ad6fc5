/* elementwise.cu: residual add on activations (any storage dtype) and the fp32 vector ops on
 * gradients: axpy, scale, sum of squares (double, two passes, one host sync), the loss
 * scaler's unscale + inf/NaN check (no host sync: the flag stays on the device). */
#include "cuda.h"

static __global__ void k_add(size_t n, ft_dtype dt, const void *a, const void *b, void *y) {
    GRID_LOOP(i, n) cuda_st(dt, y, i, cuda_ld(dt, a, i) + cuda_ld(dt, b, i));
}
static __global__ void k_axpy(size_t n, float alpha, const float *x, float *y) {
    GRID_LOOP(i, n) y[i] += alpha * x[i];
}
static __global__ void k_scale(size_t n, float alpha, float *x) {
    GRID_LOOP(i, n) x[i] *= alpha;
}
/* partial sums: block b sums its grid-stride share in double */
static __global__ void k_sumsq_part(size_t n, const float *x, double *part) {
    __shared__ double sh[CUDA_RED];
    double s = 0;
    for (size_t i = blockIdx.x * (size_t)CUDA_RED + threadIdx.x; i < n;
         i += (size_t)gridDim.x * CUDA_RED)
        s += (double)x[i] * x[i];
    s = cuda_block_sum(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}
static __global__ void k_sum_parts(int nparts, double *part) {
    __shared__ double sh[CUDA_RED];
    double s = 0;
    for (int i = threadIdx.x; i < nparts; i += CUDA_RED) s += part[i];
    s = cuda_block_sum(s, sh);
    if (threadIdx.x == 0) part[0] = s;
}
/* acc[0] += the parts' sum (one block, fixed order) */
static __global__ void k_acc_parts(int nparts, const double *part, double *acc) {
    __shared__ double sh[CUDA_RED];
    double s = 0;
    for (int i = threadIdx.x; i < nparts; i += CUDA_RED) s += part[i];
    s = cuda_block_sum(s, sh);
    if (threadIdx.x == 0) acc[0] += s;
}
static __global__ void k_unscale(size_t n, float inv, float *g, float *found) {
    int bad = 0;
    GRID_LOOP(i, n) {
        bad |= ft_km_nonfinite(g[i]);
        g[i] *= inv;
    }
    if (bad) *found = 1.0f; /* every writer stores the same value */
}

static int cuda_add(ft_ops *o, ft_dtype dt, size_t count, const void *a, const void *b, void *y) {
    if (!cuda_float_dt(dt)) return FT_ENOTSUP;
    if (!count) return 0;
    CUDA_LAUNCH(k_add, cuda_blocks(count), CUDA_THREADS, cuda_of(o)->stream)(count, dt, a, b, y);
    CU_LAUNCHED();
    return 0;
}
static int cuda_axpy(ft_ops *o, size_t count, float alpha, const float *x, float *y) {
    if (!count) return 0;
    CUDA_LAUNCH(k_axpy, cuda_blocks(count), CUDA_THREADS, cuda_of(o)->stream)(count, alpha, x, y);
    CU_LAUNCHED();
    return 0;
}
static int cuda_scale(ft_ops *o, size_t count, float alpha, float *x) {
    if (!count) return 0;
    CUDA_LAUNCH(k_scale, cuda_blocks(count), CUDA_THREADS, cuda_of(o)->stream)(count, alpha, x);
    CU_LAUNCHED();
    return 0;
}
static int cuda_sumsq(ft_ops *o, size_t count, const float *x, double *host_out) {
    cuda_backend *b = cuda_of(o);
    size_t nb = (count + CUDA_RED - 1) / CUDA_RED;
    int parts = (int)(nb < 1 ? 1 : nb > 1024 ? 1024 : nb);
    CUDA_LAUNCH(k_sumsq_part, parts, CUDA_RED, b->stream)(count, x, b->red);
    CU_LAUNCHED();
    CUDA_LAUNCH(k_sum_parts, 1, CUDA_RED, b->stream)(parts, b->red);
    CU_LAUNCHED();
    CU_CHECK(
        cudaMemcpyAsync(b->red_host, b->red, sizeof(double), cudaMemcpyDeviceToHost, b->stream));
    CU_CHECK(cudaStreamSynchronize(b->stream));
    *host_out = *b->red_host;
    return 0;
}
static int cuda_sumsq_acc(ft_ops *o, size_t count, const float *x, double *acc) {
    cuda_backend *b = cuda_of(o);
    size_t nb = (count + CUDA_RED - 1) / CUDA_RED;
    int parts = (int)(nb < 1 ? 1 : nb > 1024 ? 1024 : nb);
    /* the partial sums live in scratch of this call's stream order: b->red is reused by the
     * next call only after this one's k_acc_parts has read it (same stream) */
    CUDA_LAUNCH(k_sumsq_part, parts, CUDA_RED, b->stream)(count, x, b->red);
    CU_LAUNCHED();
    return cuda_acc_parts(o, parts, acc);
}
int cuda_acc_parts(ft_ops *o, int parts, double *acc) {
    cuda_backend *b = cuda_of(o);
    CUDA_LAUNCH(k_acc_parts, 1, CUDA_RED, b->stream)(parts, b->red, acc);
    CU_LAUNCHED();
    return 0;
}
static int cuda_unscale_check(ft_ops *o, size_t count, float inv_scale, float *g, float *found) {
    if (!count) return 0;
    CUDA_LAUNCH(k_unscale, cuda_blocks(count), CUDA_THREADS, cuda_of(o)->stream)
    (count, inv_scale, g, found);
    CU_LAUNCHED();
    return 0;
}

void cuda_install_elementwise(ft_ops *o) {
    o->add = cuda_add;
    o->axpy = cuda_axpy;
    o->scale = cuda_scale;
    o->sumsq = cuda_sumsq;
    o->sumsq_acc = cuda_sumsq_acc;
    o->unscale_check = cuda_unscale_check;
}
