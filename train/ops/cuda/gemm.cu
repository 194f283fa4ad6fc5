/* gemm.cu: matrix products with cuBLAS: the storage-dtype GEMM (cublasGemmEx, fp16/bf16
 * operands, fp32 accumulation, result rounded once; fp32 stays fp32: no TF32) and the fused
 * flatten + fc layer in fp32 (arcface_torch runs fc on x.float()), its input made fp32 NCHW
 * (PyTorch's flatten order) in backend scratch when the activations are 16-bit or NHWC. Row-major C
 * = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the operands swap places in the cuBLAS call.
 */
#include "cuda.h"

static cudaDataType_t blas_type(ft_dtype dt) {
    return dt == FT_F16 ? CUDA_R_16F : dt == FT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

static __global__ void k_scale_mat(int m, int n, int ldc, ft_dtype dt, float beta, void *c) {
    GRID_LOOP(i, (size_t)m * n) {
        size_t e = (i / n) * (size_t)ldc + i % n;
        cuda_st(dt, c, e, cuda_ld(dt, c, e) * beta);
    }
}

/* row-major C[m,n] = alpha op(A) op(B) + beta C */
static int row_gemm(ft_ops *o, ft_dtype dt, int ta, int tb, int m, int n, int k, float alpha,
                    const void *a, int lda, const void *b, int ldb, float beta, void *c, int ldc) {
    if (m < 0 || n < 0 || k < 0) return FT_EARG;
    if (!cuda_float_dt(dt)) return FT_ENOTSUP;
    if (!m || !n) return 0;
    cuda_backend *cb = cuda_of(o);
    if (!k) { /* C = beta C, as the CPU backend */
        CUDA_LAUNCH(k_scale_mat, cuda_blocks((size_t)m * n), CUDA_THREADS, cb->stream)
        (m, n, ldc, dt, beta, c);
        CU_LAUNCHED();
        return 0;
    }
    cudaDataType_t t = blas_type(dt);
    CUBLAS_CHECK(cublasGemmEx(cb->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                              ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, t, ldb, a, t, lda,
                              &beta, c, t, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

static int cuda_gemm(ft_ops *o, ft_dtype dt, int ta, int tb, int m, int n, int k, float alpha,
                     const void *a, int lda, const void *b, int ldb, float beta, void *c, int ldc) {
    return row_gemm(o, dt, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static __global__ void k_bias_add(size_t total, int out, const float *bias, float *y) {
    GRID_LOOP(i, total) y[i] += bias[i % out];
}
/* dbias[j] += sum over rows of dy[., j] (double) */
static __global__ void k_bias_grad(int m, int out, const float *dy, float *dbias) {
    GRID_LOOP(j, (size_t)out) {
        double s = 0;
        for (int i = 0; i < m; i++) s += dy[(size_t)i * out + j];
        dbias[j] += (float)s;
    }
}

static int cuda_fc_fwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, int out, const void *x,
                       const float *w, const float *bias, float *y) {
    if (n < 1 || c < 1 || hw < 1 || out < 1) return FT_EARG;
    if (!cuda_float_dt(dt)) return FT_ENOTSUP;
    int in = c * hw, nhwc = cuda_nhwc(cuda_of(o), dt);
    const float *fx = (const float *)x;
    if (dt != FT_F32 || nhwc) {
        float *s = (float *)cuda_scratch(o, 0, (size_t)n * in * sizeof(float));
        if (!s) return FT_EDEVICE;
        int rc = cuda_relayout_run(o, n, c, hw, dt, nhwc, x, FT_F32, 0, s);
        if (rc) return rc;
        fx = s;
    }
    int rc = row_gemm(o, FT_F32, 0, 1, n, out, in, 1.0f, fx, in, w, in, 0.0f, y, out);
    if (rc || !bias) return rc;
    size_t total = (size_t)n * out;
    CUDA_LAUNCH(k_bias_add, cuda_blocks(total), CUDA_THREADS, cuda_of(o)->stream)
    (total, out, bias, y);
    CU_LAUNCHED();
    return 0;
}

static int cuda_fc_bwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, int out, const void *x,
                       const float *w, const float *dy, void *dx, float *dw, float *dbias) {
    if (n < 1 || c < 1 || hw < 1 || out < 1) return FT_EARG;
    if (!cuda_float_dt(dt)) return FT_ENOTSUP;
    int in = c * hw, nhwc = cuda_nhwc(cuda_of(o), dt);
    size_t cnt = (size_t)n * in;
    const float *fx = (const float *)x;
    float *fdx = (float *)dx;
    if (dt != FT_F32 || nhwc) {
        float *s0 = (float *)cuda_scratch(o, 0, cnt * sizeof(float));
        float *s1 = dx ? (float *)cuda_scratch(o, 1, cnt * sizeof(float)) : NULL;
        if (!s0 || (dx && !s1)) return FT_EDEVICE;
        int rc = cuda_relayout_run(o, n, c, hw, dt, nhwc, x, FT_F32, 0, s0);
        if (rc) return rc;
        fx = s0, fdx = s1;
    }
    int rc = 0;
    if (dx) rc = row_gemm(o, FT_F32, 0, 0, n, in, out, 1.0f, dy, out, w, in, 0.0f, fdx, in);
    if (!rc && dw) rc = row_gemm(o, FT_F32, 1, 0, out, in, n, 1.0f, dy, out, fx, in, 1.0f, dw, in);
    if (!rc && dbias) {
        CUDA_LAUNCH(k_bias_grad, cuda_blocks((size_t)out), CUDA_THREADS, cuda_of(o)->stream)
        (n, out, dy, dbias);
        CU_LAUNCHED();
    }
    if (!rc && dx && fdx != dx) rc = cuda_relayout_run(o, n, c, hw, FT_F32, 0, fdx, dt, nhwc, dx);
    return rc;
}

void cuda_install_gemm(ft_ops *o) {
    o->gemm = cuda_gemm;
    o->fc_fwd = cuda_fc_fwd;
    o->fc_bwd = cuda_fc_bwd;
}
