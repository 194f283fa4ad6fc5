/* cast.cu: dtype conversions (kmath.h's, bit-identical to the CPU backend) and the layout
 * boundary: act_import / act_export convert between the callers' fp32 NCHW and the backend's
 * activations (NHWC for 16-bit by default: a reordering copy, one thread per element). */
#include "cuda.h"

static __global__ void k_cast(size_t n, ft_dtype sdt, const void *src, ft_dtype ddt, void *dst) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        cuda_st(ddt, dst, i, cuda_ld(sdt, src, i));
}

int cuda_cast_run(ft_ops *o, size_t count, ft_dtype sdt, const void *src, ft_dtype ddt, void *dst) {
    if (!cuda_float_dt(sdt) || !cuda_float_dt(ddt)) return FT_ENOTSUP;
    if (!count) return 0;
    if (sdt == ddt) {
        if (src == dst) return 0;
        CU_CHECK(cudaMemcpyAsync(dst, src, count * ft_dtype_size(sdt), cudaMemcpyDeviceToDevice,
                                 cuda_of(o)->stream));
        return 0;
    }
    CUDA_LAUNCH(k_cast, cuda_blocks(count), CUDA_THREADS, cuda_of(o)->stream)
    (count, sdt, src, ddt, dst);
    CU_LAUNCHED();
    return 0;
}

/* one thread per destination element: its (image, channel, pixel), read from the source's
 * place of it */
static __global__ void k_relayout(size_t total, int c, int hw, ft_dtype sdt, int snhwc,
                                  const void *src, ft_dtype ddt, int dnhwc, void *dst) {
    GRID_LOOP(i, total) {
        size_t img, p;
        int ch;
        if (dnhwc)
            ch = (int)(i % c), p = i / c % hw, img = i / ((size_t)c * hw);
        else
            p = i % hw, ch = (int)(i / hw % c), img = i / ((size_t)c * hw);
        cuda_st(ddt, dst, i, cuda_ld(sdt, src, cuda_act_at(snhwc, img, c, hw, ch, p)));
    }
}

int cuda_relayout_run(ft_ops *o, int n, int c, int hw, ft_dtype sdt, int snhwc, const void *src,
                      ft_dtype ddt, int dnhwc, void *dst) {
    if (n < 0 || c < 0 || hw < 0) return FT_EARG;
    size_t total = (size_t)n * c * hw;
    /* the same memory order: NCHW == NHWC when c or hw is 1 */
    if (snhwc == dnhwc || c == 1 || hw == 1) return cuda_cast_run(o, total, sdt, src, ddt, dst);
    if (!cuda_float_dt(sdt) || !cuda_float_dt(ddt)) return FT_ENOTSUP;
    if (!total) return 0;
    CUDA_LAUNCH(k_relayout, cuda_blocks(total), CUDA_THREADS, cuda_of(o)->stream)
    (total, c, hw, sdt, snhwc, src, ddt, dnhwc, dst);
    CU_LAUNCHED();
    return 0;
}

static int cuda_cast(ft_ops *o, size_t count, ft_dtype sdt, const void *src, ft_dtype ddt,
                     void *dst) {
    return cuda_cast_run(o, count, sdt, src, ddt, dst);
}
static int cuda_act_import(ft_ops *o, ft_dtype dt, int n, int c, int hw, const float *src,
                           void *dst) {
    int nhwc = cuda_nhwc(cuda_of(o), dt);
    return cuda_relayout_run(o, n, c, hw, FT_F32, 0, src, dt, nhwc, dst);
}
static int cuda_act_export(ft_ops *o, ft_dtype dt, int n, int c, int hw, const void *src,
                           float *dst) {
    int nhwc = cuda_nhwc(cuda_of(o), dt);
    return cuda_relayout_run(o, n, c, hw, dt, nhwc, src, FT_F32, 0, dst);
}

/* one thread per output element: (image, channel, pixel) from the HWC source */
static __global__ void k_input_u8(size_t total, int hw, const uint8_t *x, float *dst) {
    GRID_LOOP(i, total) {
        size_t img = i / ((size_t)3 * hw), rem = i % ((size_t)3 * hw);
        int ch = (int)(rem / hw), p = (int)(rem % hw);
        dst[i] = ft_km_pixel_norm(x[(img * hw + p) * 3 + ch]);
    }
}
static int cuda_input_u8(ft_ops *o, int n, int h, int w, const uint8_t *x, float *dst) {
    if (n < 0 || h < 1 || w < 1) return FT_EARG;
    size_t total = (size_t)n * 3 * h * w;
    if (!total) return 0;
    CUDA_LAUNCH(k_input_u8, cuda_blocks(total), CUDA_THREADS, cuda_of(o)->stream)
    (total, h * w, x, dst);
    CU_LAUNCHED();
    return 0;
}

void cuda_install_cast(ft_ops *o) {
    o->input_u8 = cuda_input_u8;
    o->cast = cuda_cast;
    o->act_import = cuda_act_import;
    o->act_export = cuda_act_export;
}
