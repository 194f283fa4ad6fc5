/* test_emu.cpp: the CUDA emulator reports the mistakes it exists to catch, and computes what
 * the libraries document. Compiled like the backend's sources (the prelude first), run with
 * FT_CUDA_EMU=1 (ctest cudaemu_self).
 *
 * Runtime: a block reduction with __syncthreads; a barrier not reached by the whole block
 * aborts (checked in a child process); invalid launch configurations and copies that overrun
 * an allocation or go the wrong way fail; a pinned download read before its stream was waited
 * for still holds the old bytes, and the new ones after the wait; the copy stream and an
 * event order work across streams; new device memory reads as NaN; cudaMalloc beyond
 * FT_CUDA_EMU_MEM fails. Graphs: a captured kernel runs only when launched, each launch runs
 * it again, a pinned upload in a graph reads its source at each launch, and a synchronization,
 * an allocation, a pageable copy or a wait for an outside event during a capture invalidates
 * it with CUDA's errors; a stream forked from a capture by an event joins it and its work is
 * replayed in order, a fork never joined back fails the capture. cuBLAS: GemmEx against a loop,
 * beta = 0 ignores a NaN C, a short lda is refused. cuDNN: cross-correlation against a loop, true
 * convolution flips the filter, a short workspace is refused. NCCL: 3 processes all-reduce; a rank
 * that exits is reported by ncclCommGetAsyncError on the others; an all-reduce recorded in a graph
 * on a forked stream runs with every rank at each launch; a nonblocking communicator's init and
 * first collective are in progress until polled, and a rank that cannot be reached keeps every init
 * there.
 */
#include <cublas_v2.h>
#include <cudnn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#if defined(FT_CUDA_EMU_NCCL)
#include <nccl.h>
#endif

extern "C" {
#include "ft_common.h"
}

static int failures;
static void check(bool ok, const char *what) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
}

#define RED 256
static __global__ void k_sum(int n, const float *x, double *out) {
    __shared__ double sh[RED];
    double s = 0;
    for (int i = (int)threadIdx.x; i < n; i += RED) s += x[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int k = RED / 2; k > 0; k >>= 1) {
        if ((int)threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) *out = sh[0];
}
static __global__ void k_bad_barrier(float *x) {
    if (threadIdx.x < 7) return; /* the others wait forever on a GPU */
    __syncthreads();
    x[0] = 1;
}
static __global__ void k_fill(size_t n, float v, float *x) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = v;
}

static void runtime_checks() {
    const int n = 10000;
    std::vector<float> h(n);
    double want = 0;
    for (int i = 0; i < n; i++) h[i] = (float)(i % 17) * 0.5f, want += h[i];
    float *d = nullptr;
    double *r = nullptr;
    cudaStream_t s, c;
    check(cudaMalloc((void **)&d, n * sizeof(float)) == cudaSuccess, "cudaMalloc");
    std::vector<float> fresh(4);
    cudaMemcpy(fresh.data(), d, sizeof(float) * 4, cudaMemcpyDeviceToHost);
    check(isnan(fresh[0]) && isnan(fresh[3]), "new device memory reads as NaN");
    cudaMalloc((void **)&r, sizeof(double));
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    cudaStreamCreateWithFlags(&c, cudaStreamNonBlocking);
    cudaMemcpyAsync(d, h.data(), n * sizeof(float), cudaMemcpyHostToDevice, s);
    CUDA_LAUNCH(k_sum, 1, RED, s)(n, d, r);
    double got = 0;
    cudaMemcpyAsync(&got, r, sizeof got, cudaMemcpyDeviceToHost, s); /* pageable: waits */
    check(got == want && cudaGetLastError() == cudaSuccess, "block reduction with barriers");

    CUDA_LAUNCH(k_fill, 1, 2048, s)((size_t)n, 1.0f, d);
    check(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads per block refused");
    CUDA_LAUNCH(k_fill, 0, 32, s)((size_t)n, 1.0f, d);
    check(cudaGetLastError() == cudaErrorInvalidConfiguration, "an empty grid refused");
    check(cudaMemcpyAsync(d + n - 1, h.data(), 8, cudaMemcpyHostToDevice, s) ==
              cudaErrorInvalidValue,
          "a copy past the end of an allocation refused");
    check(cudaMemcpyAsync(h.data(), d, 8, cudaMemcpyHostToDevice, s) == cudaErrorInvalidValue,
          "a copy whose pointers contradict its direction refused");
    cudaGetLastError();

    /* pinned memory: the download lands when the stream runs */
    float *pin = nullptr;
    cudaMallocHost((void **)&pin, n * sizeof(float));
    for (int i = 0; i < n; i++) pin[i] = -1;
    CUDA_LAUNCH(k_fill, 8, 128, s)((size_t)n, 3.0f, d);
    cudaMemcpyAsync(pin, d, n * sizeof(float), cudaMemcpyDeviceToHost, s);
    check(pin[0] == -1 && pin[n - 1] == -1, "a pinned download read before the wait: old bytes");
    cudaStreamSynchronize(s);
    check(pin[0] == 3 && pin[n - 1] == 3, "... and the new ones after cudaStreamSynchronize");

    /* an upload on another stream, joined by an event: seen by work queued after the wait */
    cudaEvent_t ev;
    cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    for (int i = 0; i < n; i++) pin[i] = 2;
    cudaMemcpyAsync(d, pin, n * sizeof(float), cudaMemcpyHostToDevice, c);
    cudaEventRecord(ev, c);
    cudaStreamWaitEvent(s, ev, 0);
    CUDA_LAUNCH(k_sum, 1, RED, s)(n, d, r);
    cudaMemcpyAsync(&got, r, sizeof got, cudaMemcpyDeviceToHost, s);
    check(got == 2.0 * n, "an event orders a copy stream before the compute stream");
    check(cudaStreamQuery(c) == cudaSuccess, "the copy stream is idle afterwards");

    /* a barrier skipped by part of the block aborts (a hang on a GPU) */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        CUDA_LAUNCH(k_bad_barrier, 1, 32, s)(d);
        cudaStreamSynchronize(s);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    check(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
          "a barrier not reached by every thread aborts");

    void *big = nullptr;
    check(cudaMalloc(&big, (size_t)1 << 40) == cudaErrorMemoryAllocation,
          "cudaMalloc beyond the device's memory fails");
    cudaGetLastError();
    cudaEventDestroy(ev);
    cudaFreeHost(pin);
    cudaFree(d);
    cudaFree(r);
    cudaStreamDestroy(s);
    cudaStreamDestroy(c);
}

static __global__ void k_add(size_t n, const float *src, float *x) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] += src[i];
}

static void graph_checks() {
    const size_t n = 1000;
    float *d = nullptr, *src = nullptr, *pin = nullptr, back[4];
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    cudaMalloc((void **)&d, n * sizeof(float));
    cudaMalloc((void **)&src, n * sizeof(float));
    cudaHostAlloc((void **)&pin, n * sizeof(float), cudaHostAllocDefault);
    for (size_t i = 0; i < n; i++) pin[i] = 1;
    cudaMemset(d, 0, n * sizeof(float));
    /* recorded: a pinned upload into src, then d += src */
    cudaGraph_t g = nullptr;
    cudaGraphExec_t x = nullptr;
    check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess,
          "graphs: cudaStreamBeginCapture");
    cudaStreamCaptureStatus cs;
    check(cudaStreamIsCapturing(s, &cs) == cudaSuccess && cs == cudaStreamCaptureStatusActive,
          "graphs: the stream says it is capturing");
    cudaMemcpyAsync(src, pin, n * sizeof(float), cudaMemcpyHostToDevice, s);
    CUDA_LAUNCH(k_add, 4, 128, s)(n, src, d);
    check(cudaStreamEndCapture(s, &g) == cudaSuccess && g, "graphs: cudaStreamEndCapture");
    check(cudaGraphInstantiate(&x, g, 0) == cudaSuccess && x, "graphs: cudaGraphInstantiate");
    cudaMemcpy(back, d, sizeof back, cudaMemcpyDeviceToHost);
    check(back[0] == 0 && back[3] == 0, "graphs: a captured kernel has not run");
    cudaGraphLaunch(x, s);
    for (size_t i = 0; i < n; i++) pin[i] = 2; /* stale on a GPU: the launch's copy may have run */
    cudaStreamSynchronize(s);
    cudaGraphLaunch(x, s); /* reads pin (2) when it runs */
    cudaStreamSynchronize(s);
    cudaMemcpy(back, d, sizeof back, cudaMemcpyDeviceToHost);
    /* the first launch's copy ran when the stream was waited for, after pin became 2 */
    check(back[0] == 4 && back[3] == 4, "graphs: each launch runs the recording, reading the "
                                        "pinned source when it runs");
    cudaGraphExecDestroy(x);
    cudaGraphDestroy(g);
    /* what cannot be captured invalidates the capture */
    struct {
        const char *what;
        cudaError_t want;
    } bad[] = {{"cudaStreamSynchronize", cudaErrorStreamCaptureUnsupported},
               {"cudaMalloc", cudaErrorStreamCaptureUnsupported},
               {"a pageable download", cudaErrorStreamCaptureUnsupported},
               {"a wait for an event recorded outside", cudaErrorStreamCaptureIsolation}};
    cudaEvent_t ev;
    cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    cudaEventRecord(ev, s);
    for (int k = 0; k < 4; k++) {
        cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
        CUDA_LAUNCH(k_add, 4, 128, s)(n, src, d);
        fflush(stdout);
        int saved = dup(2), null = open("/dev/null", O_WRONLY); /* the emulator's own line */
        dup2(null, 2);
        cudaError_t e = cudaSuccess;
        void *m = nullptr;
        if (k == 0) e = cudaStreamSynchronize(s);
        if (k == 1) e = cudaMalloc(&m, 64);
        if (k == 2) e = cudaMemcpyAsync(back, d, sizeof back, cudaMemcpyDeviceToHost, s);
        if (k == 3) e = cudaStreamWaitEvent(s, ev, 0);
        cudaError_t end = cudaStreamEndCapture(s, &g);
        dup2(saved, 2), close(saved), close(null);
        cudaGetLastError();
        char what[160];
        snprintf(what, sizeof what, "graphs: %s in a capture fails (%s) and invalidates it",
                 bad[k].what, cudaGetErrorName(e));
        check(e == bad[k].want && end == cudaErrorStreamCaptureInvalidated && !g, what);
    }
    /* and the stream works afterwards */
    CUDA_LAUNCH(k_add, 4, 128, s)(n, src, d);
    cudaMemcpy(back, d, sizeof back, cudaMemcpyDeviceToHost);
    check(back[0] == 6, "graphs: the stream works after an invalidated capture");
    /* fork and join: a stream that waits for an event recorded in the capture joins it, and
     * its work is part of the recording once the capturing stream has waited for it */
    cudaStream_t t;
    cudaStreamCreateWithFlags(&t, cudaStreamNonBlocking);
    float *d2 = nullptr;
    cudaMalloc((void **)&d2, n * sizeof(float));
    cudaMemset(d2, 0, n * sizeof(float));
    cudaEvent_t fork_ev, join_ev;
    cudaEventCreateWithFlags(&fork_ev, cudaEventDisableTiming);
    cudaEventCreateWithFlags(&join_ev, cudaEventDisableTiming);
    cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    CUDA_LAUNCH(k_add, 4, 128, s)(n, src, d);
    cudaEventRecord(fork_ev, s);
    cudaError_t fe = cudaStreamWaitEvent(t, fork_ev, 0);
    cudaStreamIsCapturing(t, &cs);
    check(fe == cudaSuccess && cs == cudaStreamCaptureStatusActive,
          "graphs: a stream waiting for an event of the capture joins it");
    CUDA_LAUNCH(k_add, 4, 128, t)(n, d, d2); /* d2 += d after the first kernel */
    cudaEventRecord(join_ev, t);
    cudaStreamWaitEvent(s, join_ev, 0);
    check(cudaStreamEndCapture(s, &g) == cudaSuccess && g,
          "graphs: a joined fork ends the capture");
    cudaGraphInstantiate(&x, g, 0);
    cudaStreamIsCapturing(t, &cs);
    check(cs == cudaStreamCaptureStatusNone, "graphs: the forked stream leaves the capture");
    cudaMemcpy(back, d2, sizeof back, cudaMemcpyDeviceToHost);
    check(back[0] == 0, "graphs: the forked stream's kernel has not run at capture");
    cudaGraphLaunch(x, s);
    cudaGraphLaunch(x, s);
    cudaStreamSynchronize(s);
    float b1[4], b2[4];
    cudaMemcpy(b1, d, sizeof b1, cudaMemcpyDeviceToHost);
    cudaMemcpy(b2, d2, sizeof b2, cudaMemcpyDeviceToHost);
    /* d: 6 -> 8 -> 10 (src is 2); d2: 0 + 8 + 10 */
    check(b1[0] == 10 && b2[0] == 18 && b2[3] == 18,
          "graphs: each launch runs the forked work after the work it waited for");
    cudaGraphExecDestroy(x);
    cudaGraphDestroy(g);
    /* a fork that is never joined back fails the capture */
    cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    cudaEventRecord(fork_ev, s);
    cudaStreamWaitEvent(t, fork_ev, 0);
    CUDA_LAUNCH(k_add, 4, 128, t)(n, src, d2);
    fflush(stdout);
    {
        int saved = dup(2), null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        cudaError_t end = cudaStreamEndCapture(s, &g);
        /* and the event of the ended capture cannot be waited for */
        cudaError_t late = cudaStreamWaitEvent(s, fork_ev, 0);
        dup2(saved, 2), close(saved), close(null);
        cudaGetLastError();
        check(end == cudaErrorStreamCaptureUnjoined && !g,
              "graphs: a fork without a join fails with cudaErrorStreamCaptureUnjoined");
        check(late == cudaErrorStreamCaptureIsolation,
              "graphs: an event recorded in an ended capture cannot be waited for");
    }
    CUDA_LAUNCH(k_add, 4, 128, t)(n, src, d2);
    cudaMemcpy(b2, d2, sizeof b2, cudaMemcpyDeviceToHost);
    check(b2[0] == 20, "graphs: the forked stream works after the failed capture");
    cudaEventDestroy(fork_ev);
    cudaEventDestroy(join_ev);
    cudaFree(d2);
    cudaStreamDestroy(t);
    cudaEventDestroy(ev);
    cudaFreeHost(pin);
    cudaFree(d);
    cudaFree(src);
    cudaStreamDestroy(s);
}

static void blas_checks() {
    cublasHandle_t h;
    check(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
    const int m = 5, n = 4, k = 3;
    float A[m * k], B[k * n], C[m * n], want[m * n];
    for (int i = 0; i < m * k; i++) A[i] = (float)(i % 7) - 3;
    for (int i = 0; i < k * n; i++) B[i] = (float)(i % 5) - 2;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int l = 0; l < k; l++) s += (double)A[l * m + i] * B[j * k + l];
            want[j * m + i] = (float)s;
        }
    float *dA, *dB, *dC;
    cudaMalloc((void **)&dA, sizeof A), cudaMalloc((void **)&dB, sizeof B);
    cudaMalloc((void **)&dC, sizeof C); /* NaN: beta = 0 must not read it */
    cudaMemcpy(dA, A, sizeof A, cudaMemcpyHostToDevice);
    cudaMemcpy(dB, B, sizeof B, cudaMemcpyHostToDevice);
    float one = 1, zero = 0;
    cublasStatus_t bs =
        cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, dA, CUDA_R_32F, m, dB, CUDA_R_32F,
                     k, &zero, dC, CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    cudaMemcpy(C, dC, sizeof C, cudaMemcpyDeviceToHost);
    check(bs == CUBLAS_STATUS_SUCCESS && memcmp(C, want, sizeof C) == 0,
          "cublasGemmEx = the loop, beta 0 ignores a NaN C");
    bs = cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, dA, CUDA_R_32F, m - 1, dB,
                      CUDA_R_32F, k, &zero, dC, CUDA_R_32F, m, CUBLAS_COMPUTE_32F,
                      CUBLAS_GEMM_DEFAULT);
    check(bs == CUBLAS_STATUS_INVALID_VALUE, "lda < m refused");
    cublasDestroy(h);
    cudaFree(dA), cudaFree(dB), cudaFree(dC);
}

static void dnn_checks() {
    cudnnHandle_t h;
    check(cudnnCreate(&h) == CUDNN_STATUS_SUCCESS, "cudnnCreate");
    /* x [1,1,3,3], w [1,1,2,2] (asymmetric), no pad: y [1,1,2,2] */
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w[4] = {1, 10, 100, 1000}, y[4];
    float *dx, *dw, *dy;
    cudaMalloc((void **)&dx, sizeof x), cudaMalloc((void **)&dw, sizeof w);
    cudaMalloc((void **)&dy, sizeof y);
    cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice);
    cudaMemcpy(dw, w, sizeof w, cudaMemcpyHostToDevice);
    cudnnTensorDescriptor_t tx, ty;
    cudnnFilterDescriptor_t fw;
    cudnnConvolutionDescriptor_t cv;
    cudnnCreateTensorDescriptor(&tx), cudnnCreateTensorDescriptor(&ty);
    cudnnCreateFilterDescriptor(&fw), cudnnCreateConvolutionDescriptor(&cv);
    cudnnSetTensor4dDescriptor(tx, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 3, 3);
    cudnnSetTensor4dDescriptor(ty, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 2, 2);
    cudnnSetFilter4dDescriptor(fw, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 1, 1, 2, 2);
    float one = 1, zero = 0;
    for (int mode = 0; mode < 2; mode++) {
        cudnnSetConvolution2dDescriptor(cv, 0, 0, 1, 1, 1, 1,
                                        mode ? CUDNN_CONVOLUTION : CUDNN_CROSS_CORRELATION,
                                        CUDNN_DATA_FLOAT);
        cudnnStatus_t ds = cudnnConvolutionForward(h, &one, tx, dx, fw, dw, cv,
                                                   CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                                   nullptr, 0, &zero, ty, dy);
        cudaMemcpy(y, dy, sizeof y, cudaMemcpyDeviceToHost);
        /* y[0]: cross-correlation 1*1 + 2*10 + 4*100 + 5*1000; convolution the flipped filter */
        float want = mode ? 1000 * 1 + 100 * 2 + 10 * 4 + 1 * 5 : 1 + 20 + 400 + 5000;
        check(ds == CUDNN_STATUS_SUCCESS && y[0] == want,
              mode ? "cuDNN convolution flips the filter" : "cuDNN cross-correlation");
    }
    size_t need = 0;
    cudnnGetConvolutionForwardWorkspaceSize(h, tx, fw, cv, ty, CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
                                            &need);
    if (need) {
        cudnnStatus_t ds =
            cudnnConvolutionForward(h, &one, tx, dx, fw, dw, cv, CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
                                    nullptr, 0, &zero, ty, dy);
        check(ds == CUDNN_STATUS_BAD_PARAM, "a workspace smaller than the algorithm needs refused");
    }
    cudnnDestroyTensorDescriptor(tx), cudnnDestroyTensorDescriptor(ty);
    cudnnDestroyFilterDescriptor(fw), cudnnDestroyConvolutionDescriptor(cv);
    cudnnDestroy(h);
    cudaFree(dx), cudaFree(dw), cudaFree(dy);
}

#if defined(FT_CUDA_EMU_NCCL)
static int nccl_rank(int rank, int world, ncclUniqueId id) {
    cudaStream_t s;
    cudaStreamCreate(&s);
    ncclComm_t c;
    if (ncclCommInitRank(&c, world, id, rank) != ncclSuccess) return 10;
    float *d;
    cudaMalloc((void **)&d, 1000 * sizeof(float));
    std::vector<float> h(1000, (float)(rank + 1));
    cudaMemcpy(d, h.data(), 1000 * sizeof(float), cudaMemcpyHostToDevice);
    ncclAllReduce(d, d, 1000, ncclFloat32, ncclSum, c, s);
    cudaMemcpyAsync(h.data(), d, 1000 * sizeof(float), cudaMemcpyDeviceToHost, s);
    if (h[0] != 6 || h[999] != 6) return 11;
    if (rank == 2) _exit(0); /* gone without a word */
    ncclAllReduce(d, d, 10, ncclFloat32, ncclSum, c, s);
    for (int i = 0; i < 20000; i++) {
        if (cudaStreamQuery(s) == cudaSuccess) return 12; /* completed without rank 2 */
        ncclResult_t ae = ncclSuccess;
        ncclCommGetAsyncError(c, &ae);
        if (ae == ncclRemoteError) {
            ncclCommAbort(c);
            return cudaStreamQuery(s) == cudaSuccess ? 0 : 13;
        }
        usleep(500);
    }
    return 14;
}

/* an all-reduce recorded in a graph (on a forked stream, as the gradient buckets are):
 * each launch runs it again, with every rank */
static int nccl_graph_rank(int rank, ncclUniqueId id) {
    cudaStream_t s, side;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking);
    ncclComm_t c;
    if (ncclCommInitRank(&c, 2, id, rank) != ncclSuccess) return 40;
    float *d, h[8];
    cudaMalloc((void **)&d, sizeof h);
    for (int i = 0; i < 8; i++) h[i] = (float)(rank + 1);
    cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice);
    cudaEvent_t f, j;
    cudaEventCreateWithFlags(&f, cudaEventDisableTiming);
    cudaEventCreateWithFlags(&j, cudaEventDisableTiming);
    cudaGraph_t g = nullptr;
    cudaGraphExec_t x = nullptr;
    cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    cudaEventRecord(f, s);
    cudaStreamWaitEvent(side, f, 0);
    if (ncclAllReduce(d, d, 8, ncclFloat32, ncclSum, c, side) != ncclSuccess) return 41;
    cudaEventRecord(j, side);
    cudaStreamWaitEvent(s, j, 0);
    if (cudaStreamEndCapture(s, &g) != cudaSuccess || !g) return 42;
    cudaGraphInstantiate(&x, g, 0);
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    if (h[0] != (float)(rank + 1)) return 43; /* recorded, not run */
    for (int launch = 1; launch <= 2; launch++) {
        cudaGraphLaunch(x, s);
        cudaStreamSynchronize(s);
        cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
        if (h[0] != (launch == 1 ? 3.0f : 6.0f) || h[7] != h[0]) return 43 + launch;
    }
    cudaGraphExecDestroy(x);
    cudaGraphDestroy(g);
    return ncclCommDestroy(c) == ncclSuccess ? 0 : 46;
}

/* poll a nonblocking comm's state until it leaves ncclInProgress (at most ~2 s) */
static ncclResult_t nb_settle(ncclComm_t c) {
    ncclResult_t st = ncclInProgress;
    for (int i = 0; i < 2000 && st == ncclInProgress; i++) {
        if (ncclCommGetAsyncError(c, &st) != ncclSuccess) return ncclInternalError;
        if (st == ncclInProgress) usleep(1000);
    }
    return st;
}

/* a nonblocking communicator of 2 processes; rank 1 with unreachable never joins */
static int nccl_nb_rank(int rank, ncclUniqueId id, bool unreachable) {
    if (unreachable) setenv("FT_CUDA_EMU_NCCL_UNREACHABLE", "1", 1);
    cudaStream_t s;
    cudaStreamCreate(&s);
    ncclComm_t c = nullptr;
    ncclConfig_t bad = NCCL_CONFIG_INITIALIZER;
    bad.magic = 0;
    if (ncclCommInitRankConfig(&c, 2, id, rank, &bad) != ncclInvalidArgument) return 20;
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    if (ncclCommInitRankConfig(&c, 2, id, rank, &cfg) != ncclInProgress || !c) return 21;
    float *d;
    cudaMalloc((void **)&d, 64 * sizeof(float));
    if (ncclAllReduce(d, d, 64, ncclFloat32, ncclSum, c, s) != ncclInvalidUsage) return 22;
    if (unreachable || rank == 0) {
        /* nobody can complete the init: it stays in progress; abort ends it */
        usleep(300000);
        ncclResult_t st = ncclSuccess;
        ncclCommGetAsyncError(c, &st);
        if (st != ncclInProgress) return 23;
        return ncclCommAbort(c) == ncclSuccess ? 0 : 24;
    }
    return 25; /* not reached: rank 1 is the unreachable one */
}

/* one nonblocking rank: the first collective is in progress until polled, and only then on
 * its stream */
static int nccl_nb_single(ncclUniqueId id) {
    cudaStream_t s;
    cudaStreamCreate(&s);
    ncclComm_t c = nullptr;
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    if (ncclCommInitRankConfig(&c, 1, id, 0, &cfg) != ncclInProgress) return 30;
    if (nb_settle(c) != ncclSuccess) return 31;
    float *d, h[4] = {1, 2, 3, 4}, o[4] = {0};
    cudaMalloc((void **)&d, 4 * sizeof(float));
    cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice);
    if (ncclAllReduce(d, d, 4, ncclFloat32, ncclMax, c, s) != ncclInProgress) return 32;
    if (cudaStreamQuery(s) != cudaSuccess) return 33; /* not on the stream yet */
    if (ncclBroadcast(d, d, 4, ncclFloat32, 0, c, s) != ncclInvalidUsage) return 34;
    if (nb_settle(c) != ncclSuccess) return 35;
    if (ncclAllReduce(d, d, 4, ncclFloat32, ncclSum, c, s) != ncclSuccess) return 36;
    cudaMemcpy(o, d, sizeof o, cudaMemcpyDeviceToHost);
    if (o[0] != 1 || o[3] != 4) return 37;
    if (ncclCommFinalize(c) != ncclInProgress || nb_settle(c) != ncclSuccess) return 38;
    return ncclCommDestroy(c) == ncclSuccess ? 0 : 39;
}

/* run fn(r) in n child processes (stderr to /dev/null), their exit codes into rc[r] (100: killed
 * by a signal); 1 when all exited 0, else the codes are printed */
template <class F> static int run_ranks(int n, F fn, int *rc) {
    fflush(stdout);
    std::vector<pid_t> kids((size_t)n);
    for (int r = 0; r < n; r++)
        if ((kids[(size_t)r] = fork()) == 0) {
            freopen("/dev/null", "w", stderr);
            _exit(fn(r));
        }
    int ok = 1;
    for (int r = 0; r < n; r++) {
        int st = 0;
        waitpid(kids[(size_t)r], &st, 0);
        rc[r] = WIFEXITED(st) ? WEXITSTATUS(st) : 100;
        ok &= rc[r] == 0;
    }
    if (!ok) {
        printf("    exits");
        for (int r = 0; r < n; r++) printf(" %d", rc[r]);
        printf("\n");
    }
    return ok;
}

static void nccl_checks() {
    {
        ncclUniqueId nid;
        check(ncclGetUniqueId(&nid) == ncclSuccess, "ncclGetUniqueId (nonblocking)");
        int rc1;
        check(run_ranks(
                  1, [&nid](int) { return nccl_nb_single(nid); }, &rc1),
              "NCCL nonblocking: init and the first collective in progress until polled");
        check(ncclGetUniqueId(&nid) == ncclSuccess, "ncclGetUniqueId (unreachable rank)");
        int rc2[2];
        check(run_ranks(
                  2, [&nid](int r) { return nccl_nb_rank(r, nid, r == 1); }, rc2),
              "NCCL nonblocking: a rank that cannot be reached keeps every init in progress");
        char seg[NCCL_UNIQUE_ID_BYTES];
        memcpy(seg, nid.internal, sizeof seg);
        shm_unlink(seg); /* nobody completed the init, so nobody unlinked it */
    }
    {
        ncclUniqueId gid;
        check(ncclGetUniqueId(&gid) == ncclSuccess, "ncclGetUniqueId (graphs)");
        int rc2[2];
        check(run_ranks(
                  2, [&gid](int r) { return nccl_graph_rank(r, gid); }, rc2),
              "NCCL: an all-reduce recorded in a graph runs with every rank at each launch");
    }
    ncclUniqueId id;
    check(ncclGetUniqueId(&id) == ncclSuccess, "ncclGetUniqueId");
    int rc[3];
    check(run_ranks(
              3, [&id](int r) { return nccl_rank(r, 3, id); }, rc),
          "NCCL: 3 processes all-reduce; a rank that exits is reported, abort frees the stream");
}
#endif

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "test_emu",
                            "usage: test_emu   (with FT_CUDA_EMU=1; exit 0 pass, 1 fail)\n"
                            "The CUDA emulator's own checks: it reports each mistake it exists "
                            "to catch and computes what\nthe libraries document.\n"))
        return 0;
    runtime_checks();
    graph_checks();
    blas_checks();
    dnn_checks();
#if defined(FT_CUDA_EMU_NCCL)
    nccl_checks();
#endif
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
