/* cublas.cpp: the CUDA emulator's cuBLAS stand-in: handles (create, destroy, stream, math mode,
 * pointer mode, status strings), cublasGemmEx and cublasSgemm, with the prototypes of the
 * toolkit's cublas_api.h (the _v2 symbols its macros name: cublasCreate is cublasCreate_v2).
 *
 * Arguments are checked as cuBLAS documents, and then some: a NULL or destroyed handle gives
 * CUBLAS_STATUS_NOT_INITIALIZED; m, n, k < 0, an operation other than N/T/C, a leading
 * dimension below its minimum (lda >= max(1, transa == N ? m : k), ldb >= max(1, transb == N ?
 * k : n), ldc >= max(1, m)) or a NULL alpha/beta give CUBLAS_STATUS_INVALID_VALUE; a type
 * combination cuBLAS has no kernel for, or an unknown algo, gives CUBLAS_STATUS_NOT_SUPPORTED.
 * m == 0 or n == 0 returns before the operands are looked at. Every operand that the call
 * reads or writes must be device memory covering the exact extent the call touches
 * ((cols - 1) * ld + rows elements of its stored shape) and be aligned to its element size;
 * where real cuBLAS would read out of bounds the emulator prints a diagnostic and returns
 * CUBLAS_STATUS_INVALID_VALUE.
 *
 * The product runs on the handle's stream (emu::enqueue) with every argument captured by
 * value: alpha and beta (host pointer mode only) are read at call time. Each dot product is
 * accumulated in double (products of fp32/fp16/bf16 inputs are exact in double) and rounded
 * once to C's type (fp16/bf16 by way of fp32, as cuBLAS's fp32-compute kernels store them);
 * beta == 0 never reads C, alpha == 0 or k == 0 never reads A or B. The fast compute types
 * (TF32, 16F, 16BF down-conversion) are accepted and computed in full precision.
 */
#include <cublas_v2.h>

#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <mutex>
#include <new>
#include <set>
#include <thread>
#include <vector>

#include "emu.h"

struct cublasContext {
    cudaStream_t stream;
    cublasMath_t math;
    cublasPointerMode_t pointer_mode;
    void *workspace; /* cublasSetWorkspace's (NULL: the library's default pool) */
    size_t workspace_bytes;
};

namespace {

/* live handles (a destroyed or made-up handle is reported, not dereferenced); never freed,
 * so that no global constructor or destructor runs */
std::mutex g_mu;
std::set<const cublasContext *> &live_handles() {
    static std::set<const cublasContext *> *s = new std::set<const cublasContext *>;
    return *s;
}

bool live(const cublasContext *h, const char *api) {
    if (!h) {
        emu::diag(api, "handle is NULL");
        return false;
    }
    std::lock_guard<std::mutex> lock(g_mu);
    if (!live_handles().count(h)) {
        emu::diag(api, "handle %p is not a live cuBLAS handle", (const void *)h);
        return false;
    }
    return true;
}

size_t type_size(cudaDataType t) {
    switch (t) {
    case CUDA_R_32F:
        return 4;
    case CUDA_R_16F:
    case CUDA_R_16BF:
        return 2;
    default:
        return 0;
    }
}

const char *type_name(cudaDataType t) {
    switch (t) {
    case CUDA_R_32F:
        return "CUDA_R_32F";
    case CUDA_R_16F:
        return "CUDA_R_16F";
    case CUDA_R_16BF:
        return "CUDA_R_16BF";
    default:
        return "an unsupported type";
    }
}

inline emu::elem elem_of(cudaDataType t) {
    return t == CUDA_R_16F ? emu::F16 : t == CUDA_R_16BF ? emu::BF16 : emu::F32;
}
inline double load(cudaDataType t, const void *p, size_t i) {
    return emu::load(elem_of(t), p, i);
}
inline void store(cudaDataType t, void *p, size_t i, double v) {
    emu::store(elem_of(t), p, i, v);
}

struct GemmJob {
    int m, n, k;
    bool ta, tb; /* op(A) = A^T, op(B) = B^T */
    cudaDataType at, bt, ct;
    const void *a, *b;
    void *c;
    int lda, ldb, ldc;
    double alpha, beta;
};

/* C = beta C (beta 0: C is not read) */
void scale_c(const GemmJob &g) {
    for (int j = 0; j < g.n; j++)
        for (int i = 0; i < g.m; i++) {
            size_t e = (size_t)j * g.ldc + i;
            store(g.ct, g.c, e, g.beta == 0.0 ? 0.0 : g.beta * load(g.ct, g.c, e));
        }
}

constexpr int MB = 64;  /* rows of C per block (the contiguous inner loop) */
constexpr int NB = 256; /* columns of C per block */
constexpr int LB = 128; /* k-slice kept in cache while the block's columns pass over it */

/* C = alpha op(A) op(B) + beta C, column-major. op(B) is converted once to float columns
 * (bf[j * k + l]; every fp32/fp16/bf16 value is a float); each block of MB rows of op(A) is
 * converted to double as [l][MB], and the block's accumulators for NB columns at a time
 * are updated by axpys over those rows in ascending l, so that every element of C is one
 * double sum of exact products in a fixed order, whatever the number of threads. */
void run_gemm(const GemmJob &g) {
    if (g.alpha == 0.0 || g.k == 0) {
        scale_c(g);
        return;
    }
    const int m = g.m, n = g.n, k = g.k;
    std::vector<float> bf;
    try {
        bf.resize((size_t)n * k);
    } catch (...) {
        emu::diag("cublasGemmEx", "out of host memory for a %d x %d operand", k, n);
        return;
    }
    for (int j = 0; j < n; j++)
        for (int l = 0; l < k; l++)
            bf[(size_t)j * k + l] = (float)(g.tb ? load(g.bt, g.b, (size_t)l * g.ldb + j)
                                                 : load(g.bt, g.b, (size_t)j * g.ldb + l));
    const int nblocks = (m + MB - 1) / MB;
    const float *bp = bf.data();
    emu::parallel_for(nblocks, (double)m * n * k, [&g, bp, m, n, k](int64_t b0, int64_t b1) {
        std::vector<double> ab, acc;
        try {
            ab.resize((size_t)k * MB);
            acc.resize((size_t)NB * MB);
        } catch (...) {
            emu::diag("cublasGemmEx", "out of host memory for a block of %d x %d", MB, k);
            return;
        }
        for (int64_t blk = b0; blk < b1; blk++) {
            const int i0 = (int)blk * MB, rows = std::min(MB, m - i0);
            for (int l = 0; l < k; l++)
                for (int i = 0; i < MB; i++)
                    ab[(size_t)l * MB + i] = i >= rows ? 0.0
                                             : g.ta ? load(g.at, g.a, (size_t)(i0 + i) * g.lda + l)
                                                    : load(g.at, g.a, (size_t)l * g.lda + i0 + i);
            for (int j0 = 0; j0 < n; j0 += NB) {
                const int j1 = std::min(n, j0 + NB);
                std::fill(acc.begin(), acc.end(), 0.0);
                for (int l0 = 0; l0 < k; l0 += LB) {
                    const int l1 = std::min(k, l0 + LB);
                    for (int j = j0; j < j1; j++) {
                        double cj[MB];
                        memcpy(cj, acc.data() + (size_t)(j - j0) * MB, sizeof cj);
                        const float *bj = bp + (size_t)j * k;
                        for (int l = l0; l < l1; l++) {
                            const double s = bj[l];
                            const double *__restrict al = ab.data() + (size_t)l * MB;
                            for (int i = 0; i < MB; i++) cj[i] += s * al[i];
                        }
                        memcpy(acc.data() + (size_t)(j - j0) * MB, cj, sizeof cj);
                    }
                }
                for (int j = j0; j < j1; j++)
                    for (int i = 0; i < rows; i++) {
                        size_t e = (size_t)j * g.ldc + i0 + i;
                        double v = g.alpha * acc[(size_t)(j - j0) * MB + i];
                        if (g.beta != 0.0) v += g.beta * load(g.ct, g.c, e);
                        store(g.ct, g.c, e, v);
                    }
            }
        }
    });
}

bool op_ok(cublasOperation_t op) {
    return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
}

bool algo_ok(cublasGemmAlgo_t a) {
    int v = (int)a;
    return v == CUBLAS_GEMM_DEFAULT || (v >= CUBLAS_GEMM_ALGO0 && v <= CUBLAS_GEMM_ALGO23) ||
           v == CUBLAS_GEMM_DEFAULT_TENSOR_OP ||
           (v >= CUBLAS_GEMM_ALGO0_TENSOR_OP && v <= CUBLAS_GEMM_ALGO15_TENSOR_OP) ||
           v == CUBLAS_GEMM_AUTOTUNE;
}

bool compute_32f(cublasComputeType_t c) {
    return c == CUBLAS_COMPUTE_32F || c == CUBLAS_COMPUTE_32F_PEDANTIC ||
           c == CUBLAS_COMPUTE_32F_FAST_16F || c == CUBLAS_COMPUTE_32F_FAST_16BF ||
           c == CUBLAS_COMPUTE_32F_FAST_TF32;
}

/* an operand of stored shape rows x cols (both > 0), leading dimension ld */
bool operand_ok(const void *p, cudaDataType t, int rows, int cols, int ld, const char *api,
                const char *what) {
    size_t es = type_size(t);
    size_t extent = ((size_t)(cols - 1) * (size_t)ld + (size_t)rows) * es;
    if (!emu::check_device(p, extent, api, what)) return false;
    if ((uintptr_t)p % es) {
        emu::diag(api, "%s = %p is not aligned to its %zu-byte elements", what, p, es);
        return false;
    }
    return true;
}

cublasStatus_t gemm(const char *api, cublasHandle_t handle, cublasOperation_t transa,
                    cublasOperation_t transb, int m, int n, int k, const float *alpha,
                    const void *A, cudaDataType Atype, int lda, const void *B, cudaDataType Btype,
                    int ldb, const float *beta, void *C, cudaDataType Ctype, int ldc,
                    cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    if (!live(handle, api)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!op_ok(transa) || !op_ok(transb)) {
        emu::diag(api, "transa %d / transb %d is not CUBLAS_OP_N, _T or _C", (int)transa,
                  (int)transb);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (m < 0 || n < 0 || k < 0) {
        emu::diag(api, "m %d, n %d, k %d: negative size", m, n, k);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
    const int arows = ta ? k : m, acols = ta ? m : k;
    const int brows = tb ? n : k, bcols = tb ? k : n;
    if (lda < std::max(1, arows) || ldb < std::max(1, brows) || ldc < std::max(1, m)) {
        emu::diag(api, "lda %d (needs >= %d), ldb %d (needs >= %d), ldc %d (needs >= %d)", lda,
                  std::max(1, arows), ldb, std::max(1, brows), ldc, std::max(1, m));
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!alpha || !beta) {
        emu::diag(api, "alpha or beta is NULL");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    const bool same16 = Atype == Btype && (Atype == CUDA_R_16F || Atype == CUDA_R_16BF) &&
                        (Ctype == Atype || Ctype == CUDA_R_32F);
    const bool all32 = Atype == CUDA_R_32F && Btype == CUDA_R_32F && Ctype == CUDA_R_32F;
    if (!compute_32f(computeType) || !(same16 || all32)) {
        emu::diag(api,
                  "A %s, B %s, C %s with compute type %d: no such kernel (supported: fp32 "
                  "compute with A/B/C all 32F, 16F or 16BF, or 16F/16BF A/B and 32F C)",
                  type_name(Atype), type_name(Btype), type_name(Ctype), (int)computeType);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (!algo_ok(algo)) {
        emu::diag(api, "algo %d is not a cublasGemmAlgo_t", (int)algo);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (handle->pointer_mode != CUBLAS_POINTER_MODE_HOST) { /* SetPointerMode refuses it */
        emu::diag(api, "device pointer mode is not emulated");
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    GemmJob g;
    g.m = m, g.n = n, g.k = k, g.ta = ta, g.tb = tb;
    g.at = Atype, g.bt = Btype, g.ct = Ctype;
    g.a = A, g.b = B, g.c = C;
    g.lda = lda, g.ldb = ldb, g.ldc = ldc;
    g.alpha = *alpha, g.beta = *beta;
    const bool reads_ab = k > 0 && g.alpha != 0.0;
    if (reads_ab && (!operand_ok(A, Atype, arows, acols, lda, api, "A") ||
                     !operand_ok(B, Btype, brows, bcols, ldb, api, "B")))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!operand_ok(C, Ctype, m, n, ldc, api, "C")) return CUBLAS_STATUS_INVALID_VALUE;
    try {
        emu::enqueue(handle->stream, api, [g] { run_gemm(g); });
    } catch (...) {
        emu::diag(api, "could not queue the product");
        return CUBLAS_STATUS_ALLOC_FAILED;
    }
    return CUBLAS_STATUS_SUCCESS;
}

} // namespace

extern "C" {

cublasStatus_t CUBLASWINAPI cublasCreate_v2(cublasHandle_t *handle) {
    if (!handle) {
        emu::diag("cublasCreate", "handle is NULL");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    *handle = NULL;
    if (!emu::device_visible()) {
        emu::diag("cublasCreate", "no device (FT_CUDA_EMU=1 is not set)");
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    cublasContext *h = new (std::nothrow) cublasContext;
    if (!h) return CUBLAS_STATUS_ALLOC_FAILED;
    h->stream = NULL;
    h->math = CUBLAS_DEFAULT_MATH;
    h->pointer_mode = CUBLAS_POINTER_MODE_HOST;
    h->workspace = nullptr, h->workspace_bytes = 0;
    try {
        std::lock_guard<std::mutex> lock(g_mu);
        live_handles().insert(h);
    } catch (...) {
        delete h;
        return CUBLAS_STATUS_ALLOC_FAILED;
    }
    *handle = h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasDestroy_v2(cublasHandle_t handle) {
    if (!live(handle, "cublasDestroy")) return CUBLAS_STATUS_NOT_INITIALIZED;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        live_handles().erase(handle);
    }
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId) {
    if (!live(handle, "cublasSetStream")) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = streamId;
    /* as documented: setting the stream resets the workspace to the default pool */
    handle->workspace = nullptr, handle->workspace_bytes = 0;
    return CUBLAS_STATUS_SUCCESS;
}

/* a user-owned workspace: device memory of the given size, 256-byte aligned (cuBLAS's
 * documented requirement) */
cublasStatus_t CUBLASWINAPI cublasSetWorkspace_v2(cublasHandle_t handle, void *workspace,
                                                  size_t bytes) {
    if (!live(handle, "cublasSetWorkspace")) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (bytes && (!emu::check_device(workspace, bytes, "cublasSetWorkspace", "workspace") ||
                  (uintptr_t)workspace % 256)) {
        if ((uintptr_t)workspace % 256)
            emu::diag("cublasSetWorkspace", "workspace %p is not 256-byte aligned", workspace);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    handle->workspace = bytes ? workspace : nullptr, handle->workspace_bytes = bytes;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasGetStream_v2(cublasHandle_t handle, cudaStream_t *streamId) {
    if (!live(handle, "cublasGetStream")) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!streamId) return CUBLAS_STATUS_INVALID_VALUE;
    *streamId = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasGetPointerMode_v2(cublasHandle_t handle,
                                                    cublasPointerMode_t *mode) {
    if (!live(handle, "cublasGetPointerMode")) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
    *mode = handle->pointer_mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasSetPointerMode_v2(cublasHandle_t handle,
                                                    cublasPointerMode_t mode) {
    if (!live(handle, "cublasSetPointerMode")) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode == CUBLAS_POINTER_MODE_HOST) {
        handle->pointer_mode = mode;
        return CUBLAS_STATUS_SUCCESS;
    }
    if (mode == CUBLAS_POINTER_MODE_DEVICE) {
        emu::diag("cublasSetPointerMode", "CUBLAS_POINTER_MODE_DEVICE is not emulated");
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    emu::diag("cublasSetPointerMode", "mode %d is not a cublasPointerMode_t", (int)mode);
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t CUBLASWINAPI cublasGetMathMode(cublasHandle_t handle, cublasMath_t *mode) {
    if (!live(handle, "cublasGetMathMode")) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
    *mode = handle->math;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    if (!live(handle, "cublasSetMathMode")) return CUBLAS_STATUS_NOT_INITIALIZED;
    int base = (int)mode & ~(int)CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION;
    if (base != CUBLAS_DEFAULT_MATH && base != CUBLAS_TENSOR_OP_MATH &&
        base != CUBLAS_PEDANTIC_MATH && base != CUBLAS_TF32_TENSOR_OP_MATH &&
        base != CUBLAS_FP32_EMULATED_BF16X9_MATH && base != CUBLAS_FP64_EMULATED_FIXEDPOINT_MATH) {
        emu::diag("cublasSetMathMode", "mode %d is not a cublasMath_t", (int)mode);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    handle->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}

const char *CUBLASWINAPI cublasGetStatusName(cublasStatus_t status) {
    switch (status) {
    case CUBLAS_STATUS_SUCCESS:
        return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
        return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
        return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
        return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
        return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
        return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
        return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
        return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
        return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
        return "CUBLAS_STATUS_LICENSE_ERROR";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

const char *CUBLASWINAPI cublasGetStatusString(cublasStatus_t status) {
    switch (status) {
    case CUBLAS_STATUS_SUCCESS:
        return "the operation completed successfully";
    case CUBLAS_STATUS_NOT_INITIALIZED:
        return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED:
        return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE:
        return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH:
        return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR:
        return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED:
        return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR:
        return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED:
        return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR:
        return "the functionality requested requires some license and an error was detected "
               "when trying to check the current licensing";
    }
    return "unknown error";
}

cublasStatus_t CUBLASWINAPI cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const void *alpha, const void *A, cudaDataType Atype,
                                         int lda, const void *B, cudaDataType Btype, int ldb,
                                         const void *beta, void *C, cudaDataType Ctype, int ldc,
                                         cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    /* fp32 compute: alpha and beta are floats */
    return gemm("cublasGemmEx", handle, transa, transb, m, n, k, (const float *)alpha, A, Atype,
                lda, B, Btype, ldb, (const float *)beta, C, Ctype, ldc, computeType, algo);
}

cublasStatus_t CUBLASWINAPI cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                                           cublasOperation_t transb, int m, int n, int k,
                                           const float *alpha, const float *A, int lda,
                                           const float *B, int ldb, const float *beta, float *C,
                                           int ldc) {
    return gemm("cublasSgemm", handle, transa, transb, m, n, k, alpha, A, CUDA_R_32F, lda, B,
                CUDA_R_32F, ldb, beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

} /* extern "C" */
