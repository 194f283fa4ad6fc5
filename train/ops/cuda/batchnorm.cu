/* batchnorm.cu: batch norm (train, eval, backward) on x[n, c, hw] (NCHW or NHWC), any dtype.
 * Train and backward reduce per channel in double (as the CPU), take the coefficients from
 * kmath.h (ft_km_bn_coef, ft_km_bn_bwd_coef), then run the per-element pass. NCHW: one block
 * per channel (a channel's plane is contiguous). NHWC: the tiled reduction of cuda.h
 * (cuda_chan_plan: partial sums per chunk of rows, added in chunk order), a kernel per
 * channel for the coefficients, one thread per element for the pass; the one-block kernels
 * where the plan does not fit b->chan. Eval is one thread per element. */
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

/* ---- NHWC: b->chan holds the partials ([nsums][chunks][stride]), then per-channel values */

/* partials of sum x (mean NULL) or of sum (x - mean)^2 */
static __global__ void k_bn_nhwc_sum(cuda_chan_plan p, size_t m, int c, ft_dtype dt, const void *x,
                                     const double *mean, double *part) {
    __shared__ double sh[CUDA_RED];
    CHAN_BLOCK_SETUP(p, c, m);
    double s = 0;
    if (ch < c) {
        double mu = mean ? mean[ch] : 0.0;
        CHAN_ROWS(r) {
            double t = cuda_ld(dt, x, r * c + ch) - mu;
            s += mean ? t * t : t;
        }
    }
    cuda_chan_store(s, sh, part, p, c);
}
static __global__ void k_bn_nhwc_mean(cuda_chan_plan p, size_t m, int c, const double *part,
                                      double *mean) {
    GRID_LOOP(ch, (size_t)c) mean[ch] = cuda_chan_total(part, p, (int)ch) / (double)m;
}
static __global__ void k_bn_nhwc_coef(cuda_chan_plan p, size_t m, int c, float eps, float momentum,
                                      const double *part, const double *mean, const float *gamma,
                                      const float *beta, float *rmean, float *rvar, float *smean,
                                      float *sinv, double *coef) {
    GRID_LOOP(ch, (size_t)c) {
        double mc = (double)m, q = cuda_chan_total(part, p, (int)ch);
        double var = q / mc, invstd;
        double unbiased = mc > 1 ? q / (mc - 1) : var;
        float a, b;
        ft_km_bn_coef(mean[ch], var, eps, gamma[ch], beta[ch], &a, &b, &invstd);
        smean[ch] = (float)mean[ch];
        sinv[ch] = (float)invstd;
        rmean[ch] = ft_km_bn_running(rmean[ch], momentum, (float)mean[ch]);
        rvar[ch] = ft_km_bn_running(rvar[ch], momentum, (float)unbiased);
        coef[ch] = a, coef[c + ch] = b;
    }
}
static __global__ void k_bn_nhwc_apply(size_t total, int c, ft_dtype dt, const void *x,
                                       const double *coef, void *y) {
    GRID_LOOP(i, total) {
        int ch = (int)(i % c);
        cuda_st(dt, y, i, ft_km_bn_affine(cuda_ld(dt, x, i), (float)coef[ch], (float)coef[c + ch]));
    }
}
/* partials of sum dy and of sum dy * (x - mean) */
static __global__ void k_bn_nhwc_bwd_sum(cuda_chan_plan p, size_t m, int c, ft_dtype dt,
                                         const void *x, const void *dy, const float *smean,
                                         double *part) {
    __shared__ double sh[CUDA_RED];
    CHAN_BLOCK_SETUP(p, c, m);
    double a = 0, b = 0;
    if (ch < c) {
        double mean = smean[ch];
        CHAN_ROWS(r) {
            size_t i = r * c + ch;
            double g = cuda_ld(dt, dy, i);
            a += g;
            b += g * (cuda_ld(dt, x, i) - mean);
        }
    }
    cuda_chan_store(a, sh, part, p, c);
    cuda_chan_store(b, sh, part + (size_t)p.chunks * p.stride, p, c);
}
static __global__ void k_bn_nhwc_bwd_coef(cuda_chan_plan p, size_t m, int c, const double *part,
                                          const float *gamma, const float *smean, const float *sinv,
                                          float *dgamma, float *dbeta, double *coef) {
    GRID_LOOP(ch, (size_t)c) {
        double sdy = cuda_chan_total(part, p, (int)ch);
        double sdyx = cuda_chan_total(part + (size_t)p.chunks * p.stride, p, (int)ch);
        double mean = smean[ch], invstd = sinv[ch];
        if (dgamma) dgamma[ch] += (float)(sdyx * invstd);
        if (dbeta) dbeta[ch] += (float)sdy;
        float g, k1, k0;
        ft_km_bn_bwd_coef(gamma[ch], mean, invstd, sdy, sdyx, (double)m, &g, &k1, &k0);
        coef[ch] = g, coef[c + ch] = k1, coef[2 * (size_t)c + ch] = k0;
    }
}
static __global__ void k_bn_nhwc_bwd_apply(size_t total, int c, ft_dtype dt, const void *x,
                                           const void *dy, const double *coef, void *dx) {
    /* dx may alias dy: each element is read and written by the same thread */
    GRID_LOOP(i, total) {
        int ch = (int)(i % c);
        cuda_st(dt, dx, i,
                ft_km_bn_dx(cuda_ld(dt, x, i), cuda_ld(dt, dy, i), (float)coef[ch],
                            (float)coef[c + ch], (float)coef[2 * (size_t)c + ch]));
    }
}

static int cuda_bn_fwd_train(ft_ops *o, ft_dtype dt, int n, int c, int hw, float eps,
                             float momentum, const void *x, const float *gamma, const float *beta,
                             void *y, float *rmean, float *rvar, float *smean, float *sinv) {
    if (!cuda_float_dt(dt)) return FT_ENOTSUP;
    if (n < 1 || c < 1 || hw < 1 || (size_t)n * hw < 2) return FT_EARG;
    cuda_backend *b = cuda_of(o);
    size_t m = (size_t)n * hw;
    cuda_chan_plan p;
    if (cuda_nhwc(b, dt) && cuda_chan_plan_make(m, c, 1, 3, &p)) {
        double *part = b->chan, *mean = part + (size_t)p.chunks * p.stride, *coef = mean + c;
        unsigned blocks = (unsigned)(p.tiles * p.chunks);
        CUDA_LAUNCH(k_bn_nhwc_sum, blocks, CUDA_RED, b->stream)
        (p, m, c, dt, x, (const double *)NULL, part);
        CUDA_LAUNCH(k_bn_nhwc_mean, cuda_blocks((size_t)c), CUDA_THREADS, b->stream)
        (p, m, c, part, mean);
        CUDA_LAUNCH(k_bn_nhwc_sum, blocks, CUDA_RED, b->stream)(p, m, c, dt, x, mean, part);
        CUDA_LAUNCH(k_bn_nhwc_coef, cuda_blocks((size_t)c), CUDA_THREADS, b->stream)
        (p, m, c, eps, momentum, part, mean, gamma, beta, rmean, rvar, smean, sinv, coef);
        CUDA_LAUNCH(k_bn_nhwc_apply, cuda_blocks(m * c), CUDA_THREADS, b->stream)
        (m * c, c, dt, x, coef, y);
        CU_LAUNCHED();
        return 0;
    }
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
    cuda_backend *b = cuda_of(o);
    size_t m = (size_t)n * hw;
    cuda_chan_plan p;
    if (cuda_nhwc(b, dt) && cuda_chan_plan_make(m, c, 2, 3, &p)) {
        double *part = b->chan, *coef = part + 2 * (size_t)p.chunks * p.stride;
        CUDA_LAUNCH(k_bn_nhwc_bwd_sum, (unsigned)(p.tiles * p.chunks), CUDA_RED, b->stream)
        (p, m, c, dt, x, dy, smean, part);
        CUDA_LAUNCH(k_bn_nhwc_bwd_coef, cuda_blocks((size_t)c), CUDA_THREADS, b->stream)
        (p, m, c, part, gamma, smean, sinv, dgamma, dbeta, coef);
        CUDA_LAUNCH(k_bn_nhwc_bwd_apply, cuda_blocks(m * c), CUDA_THREADS, b->stream)
        (m * c, c, dt, x, dy, coef, dx);
        CU_LAUNCHED();
        return 0;
    }
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
