/* sgd.cu: SGD with momentum and weight decay (torch.optim.SGD), over a whole tensor or over
 * the sampled rows of the Partial FC centres; the update is ft_km_sgd (kmath.h), compiled
 * without contraction, so it is bit-identical to the CPU backend. */
#include "cuda.h"

static __global__ void k_sgd(size_t n, float lr, float mom, float wd, float *w, const float *g,
                             float *buf) {
    GRID_LOOP(i, n) ft_km_sgd(&w[i], g[i], &buf[i], lr, mom, wd);
}
static __global__ void k_sgd_rows(size_t n, int dim, const int32_t *idx, float lr, float mom,
                                  float wd, float *w, const float *g, float *buf) {
    GRID_LOOP(i, n) {
        size_t e = (size_t)idx[i / dim] * dim + i % dim;
        ft_km_sgd(&w[e], g[e], &buf[e], lr, mom, wd);
    }
}

static int cuda_sgd_update(ft_ops *o, size_t count, float lr, float mom, float wd, float *w,
                           const float *g, float *buf) {
    if (!count) return 0;
    CUDA_LAUNCH(k_sgd, cuda_blocks(count), CUDA_THREADS, cuda_of(o)->stream)
    (count, lr, mom, wd, w, g, buf);
    CU_LAUNCHED();
    return 0;
}
static int cuda_sgd_update_rows(ft_ops *o, int rows, int dim, const int32_t *idx, float lr,
                                float mom, float wd, float *w, const float *g, float *buf) {
    if (rows < 0 || dim < 1) return FT_EARG;
    size_t n = (size_t)rows * dim;
    if (!n) return 0;
    CUDA_LAUNCH(k_sgd_rows, cuda_blocks(n), CUDA_THREADS, cuda_of(o)->stream)
    (n, dim, idx, lr, mom, wd, w, g, buf);
    CU_LAUNCHED();
    return 0;
}

void cuda_install_sgd(ft_ops *o) {
    o->sgd_update = cuda_sgd_update;
    o->sgd_update_rows = cuda_sgd_update_rows;
}
