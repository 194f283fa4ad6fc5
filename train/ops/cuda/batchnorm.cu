/* batchnorm.cu: batch norm (train, eval, backward) on x[n, c, hw] (NCHW or NHWC), any dtype.
 * Train and backward are one block per channel: the reductions in double (as the CPU), the
 * coefficients from kmath.h (ft_km_bn_coef, ft_km_bn_bwd_coef), then the per-element pass.
 * Eval is one thread per element. */
#include "cuda.h"

/* memory index of the k-th element (k < n*hw, image-major) of channel ch */
static __device__ __forceinline__ size_t chan_index(int nhwc, size_t k, int c, int hw, int ch) {
    return nhwc ? k * c + ch : ((k / hw) * c + ch) * (size_t)hw + k % hw;
}

static __global__ void k_bn_train(int nhwc, int n, int c, int hw, ft_dtype dt, float eps,
                                  float momentum, const void *x, const float *gamma,
                                  const float *beta, void *y, float *rmean, float *rvar,
                                  float *smean, float *sinv) {
    __shared__ double sh[CUDA_RED];
    __shared__ float coef[2];
    int ch = blockIdx.x;
    size_t m = (size_t)n * hw;
    double mc = (double)m;
    double s = 0;
    for (size_t k = threadIdx.x; k < m; k += CUDA_RED)
        s += cuda_ld(dt, x, chan_index(nhwc, k, c, hw, ch));
    double mean = cuda_block_sum(s, sh) / mc;
    double q = 0;
    for (size_t k = threadIdx.x; k < m; k += CUDA_RED) {
        double t = cuda_ld(dt, x, chan_index(nhwc, k, c, hw, ch)) - mean;
        q += t * t;
    }
    q = cuda_block_sum(q, sh);
    if (threadIdx.x == 0) {
        double var = q / mc, invstd;
        double unbiased = mc > 1 ? q / (mc - 1) : var;
        float a, b;
        ft_km_bn_coef(mean, var, eps, gamma[ch], beta[ch], &a, &b, &invstd);
        smean[ch] = (float)mean;
        sinv[ch] = (float)invstd;
        rmean[ch] = ft_km_bn_running(rmean[ch], momentum, (float)mean);
        rvar[ch] = ft_km_bn_running(rvar[ch], momentum, (float)unbiased);
        coef[0] = a, coef[1] = b;
    }
    __syncthreads();
    float a = coef[0], b = coef[1];
    for (size_t k = threadIdx.x; k < m; k += CUDA_RED) {
        size_t i = chan_index(nhwc, k, c, hw, ch);
        cuda_st(dt, y, i, ft_km_bn_affine(cuda_ld(dt, x, i), a, b));
    }
}

static __global__ void k_bn_eval(int nhwc, size_t total, int c, int hw, ft_dtype dt, float eps,
                                 const void *x, const float *gamma, const float *beta,
                                 const float *rmean, const float *rvar, void *y) {
    GRID_LOOP(i, total) {
        int ch = (int)(nhwc ? i % c : i / hw % c);
        double invstd;
        float a, b;
        ft_km_bn_coef(rmean[ch], rvar[ch], eps, gamma[ch], beta[ch], &a, &b, &invstd);
        cuda_st(dt, y, i, ft_km_bn_affine(cuda_ld(dt, x, i), a, b));
    }
}

static __global__ void k_bn_bwd(int nhwc, int n, int c, int hw, ft_dtype dt, const void *x,
                                const void *dy, const float *gamma, const float *smean,
                                const float *sinv, void *dx, float *dgamma, float *dbeta) {
    __shared__ double sh[CUDA_RED];
    __shared__ float coef[3];
    int ch = blockIdx.x;
    size_t m = (size_t)n * hw;
    double mean = smean[ch], invstd = sinv[ch];
    double a = 0, b = 0;
    for (size_t k = threadIdx.x; k < m; k += CUDA_RED) {
        size_t i = chan_index(nhwc, k, c, hw, ch);
        double g = cuda_ld(dt, dy, i);
        a += g;
        b += g * (cuda_ld(dt, x, i) - mean);
    }
    double sdy = cuda_block_sum(a, sh), sdyx = cuda_block_sum(b, sh);
    if (threadIdx.x == 0) {
        if (dgamma) dgamma[ch] += (float)(sdyx * invstd);
        if (dbeta) dbeta[ch] += (float)sdy;
        float g, k1, k0;
        ft_km_bn_bwd_coef(gamma[ch], mean, invstd, sdy, sdyx, (double)m, &g, &k1, &k0);
        coef[0] = g, coef[1] = k1, coef[2] = k0;
    }
    __syncthreads();
    float g = coef[0], k1 = coef[1], k0 = coef[2];
    /* dx may alias dy: each element is read and written by the same thread, after the sums */
    for (size_t k = threadIdx.x; k < m; k += CUDA_RED) {
        size_t i = chan_index(nhwc, k, c, hw, ch);
        cuda_st(dt, dx, i, ft_km_bn_dx(cuda_ld(dt, x, i), cuda_ld(dt, dy, i), g, k1, k0));
    }
}

static int cuda_bn_fwd_train(ft_ops *o, ft_dtype dt, int n, int c, int hw, float eps,
                             float momentum, const void *x, const float *gamma, const float *beta,
                             void *y, float *rmean, float *rvar, float *smean, float *sinv) {
    if (!cuda_float_dt(dt)) return FT_ENOTSUP;
    if (n < 1 || c < 1 || hw < 1 || (size_t)n * hw < 2) return FT_EARG;
    CUDA_LAUNCH(k_bn_train, c, CUDA_RED, cuda_of(o)->stream)
    (cuda_nhwc(cuda_of(o), dt), n, c, hw, dt, eps, momentum, x, gamma, beta, y, rmean, rvar, smean,
     sinv);
    CU_LAUNCHED();
    return 0;
}
static int cuda_bn_fwd_eval(ft_ops *o, ft_dtype dt, int n, int c, int hw, float eps, const void *x,
                            const float *gamma, const float *beta, const float *rmean,
                            const float *rvar, void *y) {
    if (!cuda_float_dt(dt)) return FT_ENOTSUP;
    if (n < 1 || c < 1 || hw < 1) return FT_EARG;
    size_t total = (size_t)n * c * hw;
    CUDA_LAUNCH(k_bn_eval, cuda_blocks(total), CUDA_THREADS, cuda_of(o)->stream)
    (cuda_nhwc(cuda_of(o), dt), total, c, hw, dt, eps, x, gamma, beta, rmean, rvar, y);
    CU_LAUNCHED();
    return 0;
}
static int cuda_bn_bwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, const void *x, const void *dy,
                       const float *gamma, const float *smean, const float *sinv, void *dx,
                       float *dgamma, float *dbeta) {
    if (!cuda_float_dt(dt)) return FT_ENOTSUP;
    if (n < 1 || c < 1 || hw < 1) return FT_EARG;
    CUDA_LAUNCH(k_bn_bwd, c, CUDA_RED, cuda_of(o)->stream)
    (cuda_nhwc(cuda_of(o), dt), n, c, hw, dt, x, dy, gamma, smean, sinv, dx, dgamma, dbeta);
    CU_LAUNCHED();
    return 0;
}

void cuda_install_batchnorm(ft_ops *o) {
    o->bn_fwd_train = cuda_bn_fwd_train;
    o->bn_fwd_eval = cuda_bn_fwd_eval;
    o->bn_bwd = cuda_bn_bwd;
}
