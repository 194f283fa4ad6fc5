/* dropout.cu: inverted dropout, any storage dtype. Element i (NCHW index) is kept iff
 * ft_km_dropout_keep(seed, i, p): the same mask as the CPU backend for the same seed. */
#include "cuda.h"

static __global__ void k_drop_fwd(size_t n, ft_dtype dt, float p, float inv, uint64_t seed,
                                  const void *x, void *y, uint8_t *mask) {
    GRID_LOOP(i, n) {
        int keep = ft_km_dropout_keep(seed, i, p);
        mask[i] = (uint8_t)keep;
        cuda_st(dt, y, i, keep ? cuda_ld(dt, x, i) * inv : 0.0f);
    }
}
static __global__ void k_drop_bwd(size_t n, ft_dtype dt, float inv, const uint8_t *mask,
                                  const void *dy, void *dx) {
    GRID_LOOP(i, n) cuda_st(dt, dx, i, mask[i] ? cuda_ld(dt, dy, i) * inv : 0.0f);
}

static int check(ft_dtype dt, float p) {
    if (!cuda_float_dt(dt)) return FT_ENOTSUP;
    if (!(p >= 0.0f && p < 1.0f)) return FT_EARG;
    return 0;
}
static int cuda_dropout_fwd(ft_ops *o, ft_dtype dt, size_t count, float p, uint64_t seed,
                            const void *x, void *y, uint8_t *mask) {
    int rc = check(dt, p);
    if (rc) return rc;
    if (p == 0.0f) return o->copy(o, y, x, count * ft_dtype_size(dt));
    if (!count) return 0;
    float inv = 1.0f / (1.0f - p);
    CUDA_LAUNCH(k_drop_fwd, cuda_blocks(count), CUDA_THREADS, cuda_of(o)->stream)
    (count, dt, p, inv, seed, x, y, mask);
    CU_LAUNCHED();
    return 0;
}
static int cuda_dropout_bwd(ft_ops *o, ft_dtype dt, size_t count, float p, const uint8_t *mask,
                            const void *dy, void *dx) {
    int rc = check(dt, p);
    if (rc) return rc;
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
