/* prelu.cu: PReLU with one slope per channel on x[n, c, hw] (NCHW or NHWC), any dtype. The
 * backward writes dx per element and sums dalpha in double: NCHW one block per channel, NHWC
 * the tiled reduction of cuda.h (cuda_chan_plan) and a kernel adding the partials. */
#include "cuda.h"

static __global__ void k_prelu_fwd(int nhwc, size_t total, int c, int hw, ft_dtype dt,
                                   const void *x, const float *alpha, void *y) {
    GRID_LOOP(i, total) {
        int ch = (int)(nhwc ? i % c : i / hw % c);
        cuda_st(dt, y, i, ft_km_prelu(cuda_ld(dt, x, i), alpha[ch]));
    }
}
static __global__ void k_prelu_bwd(int nhwc, int n, int c, int hw, ft_dtype dt, const void *x,
                                   const float *alpha, const void *dy, void *dx, float *dalpha) {
    __shared__ double sh[CUDA_RED];
    int ch = blockIdx.x;
    float a = alpha[ch];
    size_t m = (size_t)n * hw;
    double s = 0;
    for (size_t k = threadIdx.x; k < m; k += CUDA_RED) {
        size_t i = nhwc ? k * c + ch : ((k / hw) * c + ch) * (size_t)hw + k % hw;
        float xv = cuda_ld(dt, x, i), g = cuda_ld(dt, dy, i);
        s += ft_km_prelu_dalpha(xv, g);
        cuda_st(dt, dx, i, ft_km_prelu_dx(xv, a, g));
    }
    s = cuda_block_sum(s, sh);
    if (threadIdx.x == 0 && dalpha) dalpha[ch] += (float)s;
}

static __global__ void k_prelu_nhwc_bwd(cuda_chan_plan p, size_t m, int c, ft_dtype dt,
                                        const void *x, const float *alpha, const void *dy, void *dx,
                                        double *part) {
    __shared__ double sh[CUDA_RED];
    CHAN_BLOCK_SETUP(p, c, m);
    double s = 0;
    if (ch < c) {
        float a = alpha[ch];
        /* dx may alias dy: each element is read and written by the same thread */
        CHAN_ROWS(r) {
            size_t i = r * c + ch;
            float xv = cuda_ld(dt, x, i), g = cuda_ld(dt, dy, i);
            s += ft_km_prelu_dalpha(xv, g);
            cuda_st(dt, dx, i, ft_km_prelu_dx(xv, a, g));
        }
    }
    cuda_chan_store(s, sh, part, p, c);
}
static __global__ void k_prelu_nhwc_dalpha(cuda_chan_plan p, int c, const double *part,
                                           float *dalpha) {
    GRID_LOOP(ch, (size_t)c) dalpha[ch] += (float)cuda_chan_total(part, p, (int)ch);
}

static int cuda_prelu_fwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, const void *x,
                          const float *alpha, void *y) {
    if (!cuda_float_dt(dt)) return FT_ENOTSUP;
    if (n < 0 || c < 1 || hw < 1) return FT_EARG;
    size_t total = (size_t)n * c * hw;
    if (!total) return 0;
    CUDA_LAUNCH(k_prelu_fwd, cuda_blocks(total), CUDA_THREADS, cuda_of(o)->stream)
    (cuda_nhwc(cuda_of(o), dt), total, c, hw, dt, x, alpha, y);
    CU_LAUNCHED();
    return 0;
}
static int cuda_prelu_bwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, const void *x,
                          const float *alpha, const void *dy, void *dx, float *dalpha) {
    if (!cuda_float_dt(dt)) return FT_ENOTSUP;
    if (n < 1 || c < 1 || hw < 1) return FT_EARG;
    cuda_backend *b = cuda_of(o);
    size_t m = (size_t)n * hw;
    cuda_chan_plan p;
    if (cuda_nhwc(b, dt) && cuda_chan_plan_make(m, c, 1, 0, &p)) {
        CUDA_LAUNCH(k_prelu_nhwc_bwd, (unsigned)(p.tiles * p.chunks), CUDA_RED, b->stream)
        (p, m, c, dt, x, alpha, dy, dx, b->chan);
        if (dalpha)
            CUDA_LAUNCH(k_prelu_nhwc_dalpha, cuda_blocks((size_t)c), CUDA_THREADS, b->stream)
        (p, c, b->chan, dalpha);
        CU_LAUNCHED();
        return 0;
    }
    CUDA_LAUNCH(k_prelu_bwd, c, CUDA_RED, cuda_of(o)->stream)
    (cuda_nhwc(cuda_of(o), dt), n, c, hw, dt, x, alpha, dy, dx, dalpha);
    CU_LAUNCHED();
    return 0;
}

void cuda_install_prelu(ft_ops *o) {
    o->prelu_fwd = cuda_prelu_fwd;
    o->prelu_bwd = cuda_prelu_bwd;
}
