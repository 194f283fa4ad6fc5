/* cuda.h: the CUDA backend's private header: the backend state, one CHECK macro family for
 * CUDA / cuBLAS / cuDNN, launch helpers and the storage-dtype load/store every kernel uses.
 *
 * Kernels are the simplest correct decomposition of kmath.h's expressions (one thread per
 * element, one block per row or channel for reductions, sums in double like the CPU); they
 * are compiled with --fmad=false so that a*b+c is rounded as the C code rounds it. Layout:
 * by default fp16/bf16 activations are NHWC (the layout of cuDNN's tensor-core convolutions)
 * and fp32 activations NCHW (ft_ops_options.layout forces either everywhere); every kernel
 * that needs an element's channel asks cuda_nhwc(b, dt). act_import / act_export, fc's input
 * and the conv weights are reordered on the device.
 *
 * Errors: a failing CUDA/cuBLAS/cuDNN call prints one line "ft_ops cuda: <file>:<line>
 * <call>: <error>" to stderr and the op returns FT_EDEVICE.
 */
#ifndef FT_OPS_CUDA_H
#define FT_OPS_CUDA_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stdint.h>
#include <stdio.h>

/* the C headers, with C linkage (kmath.h is static inline only) */
extern "C" {
#include "ft_common.h"
#include "ops.h"
}
#include "kmath.h"

#define CUDA_THREADS    256
#define CUDA_RED        512 /* threads of a reducing block (a power of two) */
#define CUDA_MAX_BLOCKS 65535
#define CUDA_BLAS_WS    ((size_t)32 << 20) /* cuBLAS's recommended workspace on Hopper */

typedef struct cuda_conv_entry {
    ft_conv_desc d;
    ft_dtype dt;
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv[3]; /* forward, backward data, backward filter */
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t ws_fwd, ws_bwd_data, ws_bwd_filter;
    size_t ws_dw16; /* cuDNN's dw (16-bit, or KRSC) before it is added to the fp32 KCRS dw */
    size_t ws_wt;   /* NHWC: the filter reordered to KRSC for forward and backward data */
    int nhwc;       /* x, y and the filter are NHWC (KRSC) */
} cuda_conv_entry;

typedef struct cuda_backend {
    ft_ops ops;
    int device;
    int nhwc16, nhwc32; /* activations of fp16/bf16, of fp32 are NHWC (else NCHW) */
    cudaStream_t stream;
    cudaStream_t copy;  /* upload_ahead's copies */
    cudaEvent_t copied; /* recorded on copy after each, waited for by stream */
    cublasHandle_t blas;
    cudnnHandle_t dnn;
    /* scratch owned by the backend (fp32 copies around fc, partial sums); grown only when a
     * larger size is asked for, so the steady state allocates nothing */
    void *scratch[3];
    size_t scratch_bytes[3];
    double *red;      /* device: partial sums of sumsq */
    double *chan;     /* device, CUDA_CHAN_DOUBLES: NHWC channel reductions (cuda_chan_plan) */
    double *red_host; /* pinned: the total, read after a stream sync */
    /* one entry per distinct conv shape seen (held by pointer: callers keep them across calls);
     * grown on demand, so a long eval over many batch sizes never runs out */
    cuda_conv_entry **conv;
    int nconv, conv_cap;
    size_t ws_limit;      /* largest conv workspace an algorithm may ask for */
    size_t ws_planned;    /* largest workspace conv_ws_bytes has reported */
    void *blas_ws;        /* cuBLAS's workspace (cublasSetWorkspace): fixed, so that a captured
                             GEMM never makes the library allocate */
    int capturing;        /* between graph_begin and graph_end */
    uint64_t scratch_gen; /* bumped whenever a scratch buffer is replaced: a recording made
                             before refers to freed memory (graph_launch: FT_ESTALE) */
} cuda_backend;

static inline cuda_backend *cuda_of(ft_ops *o) {
    return (cuda_backend *)o->impl;
}

int cuda_fail_(const char *file, int line, const char *call, const char *what);
#define CU_CHECK(call)                                                                             \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return cuda_fail_(__FILE__, __LINE__, #call, cudaGetErrorString(e_));                  \
    } while (0)
#define CUBLAS_CHECK(call)                                                                         \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                           \
            return cuda_fail_(__FILE__, __LINE__, #call, cublasGetStatusString(s_));               \
    } while (0)
#define CUDNN_CHECK(call)                                                                          \
    do {                                                                                           \
        cudnnStatus_t s_ = (call);                                                                 \
        if (s_ != CUDNN_STATUS_SUCCESS)                                                            \
            return cuda_fail_(__FILE__, __LINE__, #call, cudnnGetErrorString(s_));                 \
    } while (0)
/* a launch: CUDA_LAUNCH(kernel, grid, block, stream)(args...). Under nvcc the <<< >>> launch;
 * the CPU emulator of the tests (tests/cudaemu, -DFT_CUDA_EMU=ON) defines it first. */
#ifndef CUDA_LAUNCH
#define CUDA_LAUNCH(kernel, grid, block, stream) kernel<<<(grid), (block), 0, (stream)>>>
#endif
/* after a kernel launch */
#define CU_LAUNCHED() CU_CHECK(cudaGetLastError())

/* grid for a grid-stride loop over n elements */
static inline unsigned cuda_blocks(size_t n) {
    size_t b = (n + CUDA_THREADS - 1) / CUDA_THREADS;
    if (b < 1) b = 1;
    return (unsigned)(b > CUDA_MAX_BLOCKS ? CUDA_MAX_BLOCKS : b);
}

/* a grid-stride loop of i over [0, n) */
#define GRID_LOOP(i, n)                                                                            \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                        \
         i += (size_t)gridDim.x * blockDim.x)

/* backend scratch slot s of at least bytes (device); NULL on failure (message printed) */
void *cuda_scratch(ft_ops *o, int s, size_t bytes);

/* 1 when activations of dtype dt are NHWC on this backend */
static inline int cuda_nhwc(const cuda_backend *b, ft_dtype dt) {
    return dt == FT_F32 ? b->nhwc32 : b->nhwc16;
}

/* memory index of element (img, ch, p) of an activation [n, c, hw] */
static __host__ __device__ __forceinline__ size_t cuda_act_at(int nhwc, size_t img, int c, int hw,
                                                              int ch, size_t p) {
    return nhwc ? (img * hw + p) * c + ch : (img * c + ch) * hw + p;
}

static inline int cuda_float_dt(ft_dtype dt) {
    return dt == FT_F32 || dt == FT_F16 || dt == FT_BF16;
}

/* element i of a storage-dtype array as fp32, and the store that rounds once (kmath.h's
 * conversions, bit-identical to the CPU backend's) */
static __device__ __forceinline__ float cuda_ld(ft_dtype dt, const void *p, size_t i) {
    if (dt == FT_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return dt == FT_F16 ? ft_km_f16_to_f32(h) : ft_km_bf16_to_f32(h);
}
static __device__ __forceinline__ void cuda_st(ft_dtype dt, void *p, size_t i, float v) {
    if (dt == FT_F32)
        ((float *)p)[i] = v;
    else
        ((uint16_t *)p)[i] = dt == FT_F16 ? ft_km_f32_to_f16(v) : ft_km_f32_to_bf16(v);
}

/* block-wide sum of one double per thread (blockDim.x == CUDA_RED); every thread gets it */
static __device__ __forceinline__ double cuda_block_sum(double v, double *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = CUDA_RED / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

/* Per-channel reductions over NHWC activations (batch norm, PReLU's dalpha): the data is
 * m = n * hw rows of c channels. One block of CUDA_RED threads takes a tile of CHAN_TX
 * consecutive channels (the 32 lanes of a warp read 32 neighbours: coalesced) and CHAN_TY rows
 * at a time, over one chunk of the rows (at least CHAN_MIN_ROWS, so that small activations
 * take few blocks); each block writes one partial sum per channel of its
 * tile, and a second kernel adds a channel's partials in chunk order. The plan depends on m
 * and c only, so the sums are the same bits every run. (One block per channel, as NCHW has,
 * would read stride-c elements, one per 32-byte sector, and keep c blocks busy.) */
#define CHAN_TX           32
#define CHAN_TY           (CUDA_RED / CHAN_TX)
#define CHAN_BLOCKS       528       /* blocks a reduction aims at: 4 per SM of an H100/H200 */
#define CHAN_MIN_ROWS     1024      /* rows a chunk takes at least: 64 per thread */
#define CUDA_CHAN_DOUBLES (1 << 16) /* b->chan: partials, then per-channel values */
typedef struct cuda_chan_plan {
    int tiles, chunks; /* grid: tiles * chunks blocks */
    size_t rows;       /* rows per chunk */
    int stride;        /* doubles between two chunks' partials (tiles * CHAN_TX) */
} cuda_chan_plan;
/* the plan of a reduction of nsums sums over m rows of c channels that also keeps nchan
 * values per channel in b->chan after the partials; 0 when b->chan is too small (the caller
 * takes its one-block-per-channel kernel) */
static inline int cuda_chan_plan_make(size_t m, int c, int nsums, int nchan, cuda_chan_plan *p) {
    p->tiles = (c + CHAN_TX - 1) / CHAN_TX;
    p->stride = p->tiles * CHAN_TX;
    size_t most = (m + CHAN_MIN_ROWS - 1) / CHAN_MIN_ROWS, ch = CHAN_BLOCKS / (size_t)p->tiles;
    if (ch < 1) ch = 1;
    if (ch > most) ch = most;
    if (ch < 1) ch = 1;
    p->chunks = (int)ch;
    p->rows = (m + ch - 1) / ch;
    return (size_t)nsums * ch * p->stride + (size_t)nchan * c <= CUDA_CHAN_DOUBLES;
}
/* the block's tile and chunk, its lane's channel and first row (CHAN_TY rows in flight) */
#define CHAN_BLOCK_SETUP(p, c, m)                                                                  \
    int tile_ = (int)(blockIdx.x % (unsigned)(p).tiles), chunk_ = (int)(blockIdx.x / (p).tiles);   \
    int tx_ = (int)(threadIdx.x % CHAN_TX), ty_ = (int)(threadIdx.x / CHAN_TX);                    \
    int ch = tile_ * CHAN_TX + tx_;                                                                \
    size_t r0_ = (size_t)chunk_ * (p).rows, r1_ = r0_ + (p).rows < (m) ? r0_ + (p).rows : (m)
/* the block's rows of channel ch: the memory index i of row r is r * c + ch */
#define CHAN_ROWS(r) for (size_t r = r0_ + ty_; r < r1_; r += CHAN_TY)
/* sum v over the block's rows per channel (sh: CUDA_RED doubles), into part[chunk][ch] */
static __device__ __forceinline__ void cuda_chan_store(double v, double *sh, double *part,
                                                       const cuda_chan_plan p, int c) {
    int tx = (int)(threadIdx.x % CHAN_TX), ty = (int)(threadIdx.x / CHAN_TX);
    sh[threadIdx.x] = v;
    __syncthreads();
    if (ty == 0) {
        double s = 0;
        for (int k = 0; k < CHAN_TY; k++) s += sh[k * CHAN_TX + tx];
        int ch = (int)(blockIdx.x % (unsigned)p.tiles) * CHAN_TX + tx;
        if (ch < c) part[(size_t)(blockIdx.x / p.tiles) * p.stride + ch] = s;
    }
    __syncthreads();
}
/* channel ch's total of the partials at part, in chunk order */
static __device__ __forceinline__ double cuda_chan_total(const double *part, const cuda_chan_plan p,
                                                         int ch) {
    double s = 0;
    for (int k = 0; k < p.chunks; k++) s += part[(size_t)k * p.stride + ch];
    return s;
}

/* installers, one per op family (the CPU twin's stems) */
void cuda_install_memory(ft_ops *o);
void cuda_install_cast(ft_ops *o);
void cuda_install_elementwise(ft_ops *o);
void cuda_install_gemm(ft_ops *o);
void cuda_install_dropout(ft_ops *o);
void cuda_install_sgd(ft_ops *o);
void cuda_install_conv(ft_ops *o);
void cuda_install_batchnorm(ft_ops *o);
void cuda_install_prelu(ft_ops *o);
void cuda_install_rows(ft_ops *o);
void cuda_install_sample(ft_ops *o);
void cuda_install_margin(ft_ops *o);
void cuda_install_multi(ft_ops *o);
void cuda_conv_release(cuda_backend *b); /* conv.cu: the descriptor cache */
/* elementwise.cu: *acc (device) += the sum of b->red[0..parts), in a fixed order */
int cuda_acc_parts(ft_ops *o, int parts, double *acc);
/* cast.cu: the cast op for other files (fc's fp32 copies, bwd_filter's 16-bit dw) */
int cuda_cast_run(ft_ops *o, size_t count, ft_dtype sdt, const void *src, ft_dtype ddt, void *dst);
/* cast.cu: an activation [n, c, hw] from dtype sdt in layout snhwc to ddt in layout dnhwc
 * (a cast when the layouts agree, else a reordering copy that converts each element once) */
int cuda_relayout_run(ft_ops *o, int n, int c, int hw, ft_dtype sdt, int snhwc, const void *src,
                      ft_dtype ddt, int dnhwc, void *dst);

#endif
