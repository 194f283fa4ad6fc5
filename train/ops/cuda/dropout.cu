/* dropout.cu: inverted dropout on an activation [n, c, hw], any storage dtype and layout. The
 * element at NCHW index j is kept iff ft_km_dropout_keep(seed, j, p): the same mask as the
 * CPU backend for the same seed; mask[] is stored in the activation's own memory order. */
#include "cuda.h"

static __global__ void k_drop_fwd(size_t total, int nhwc, int c, int hw, ft_dtype dt, float p,
                                  float inv, const uint64_t *seedp, const void *x, void *y,
                                  uint8_t *mask) {
    uint64_t seed = *seedp;
    GRID_LOOP(i, total) {
        size_t j = i; /* the NCHW index of the element at i */
        if (nhwc) {
            size_t img = i / ((size_t)c * hw), p_ = i / c % hw;
            j = (img * c + i % c) * hw + p_;
        }
        int keep = ft_km_dropout_keep(seed, j, p);
        mask[i] = (uint8_t)keep;
        cuda_st(dt, y, i, keep ? cuda_ld(dt, x, i) * inv : 0.0f);
    }
}
static __global__ void k_drop_bwd(size_t n, ft_dtype dt, float inv, const uint8_t *mask,
                                  const void *dy, void *dx) {
    GRID_LOOP(i, n) cuda_st(dt, dx, i, mask[i] ? cuda_ld(dt, dy, i) * inv : 0.0f);
}

static int check(ft_dtype dt, int n, int c, int hw, float p) {
    if (!cuda_float_dt(dt)) return FT_ENOTSUP;
    if (n < 0 || c < 0 || hw < 0 || !(p >= 0.0f && p < 1.0f)) return FT_EARG;
    return 0;
}
static int cuda_dropout_fwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, float p,
                            const uint64_t *seed, const void *x, void *y, uint8_t *mask) {
    int rc = check(dt, n, c, hw, p);
    if (rc) return rc;
    if (!seed) return FT_EARG;
    size_t count = (size_t)n * c * hw;
    if (p == 0.0f) return o->copy(o, y, x, count * ft_dtype_size(dt));
    if (!count) return 0;
    float inv = 1.0f / (1.0f - p);
    int nhwc = cuda_nhwc(cuda_of(o), dt);
    CUDA_LAUNCH(k_drop_fwd, cuda_blocks(count), CUDA_THREADS, cuda_of(o)->stream)
    (count, nhwc, c, hw, dt, p, inv, seed, x, y, mask);
    CU_LAUNCHED();
    return 0;
}
static int cuda_dropout_bwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, float p,
                            const uint8_t *mask, const void *dy, void *dx) {
    int rc = check(dt, n, c, hw, p);
    if (rc) return rc;
    size_t count = (size_t)n * c * hw;
    if (p == 0.0f) return o->copy(o, dx, dy, count * ft_dtype_size(dt));
    if (!count) return 0;
    float inv = 1.0f / (1.0f - p);
    CUDA_LAUNCH(k_drop_bwd, cuda_blocks(count), CUDA_THREADS, cuda_of(o)->stream)
    (count, dt, inv, mask, dy, dx);
    CU_LAUNCHED();
    return 0;
}

void cuda_install_dropout(ft_ops *o) {
    o->dropout_fwd = cuda_dropout_fwd;
    o->dropout_bwd = cuda_dropout_bwd;
}
