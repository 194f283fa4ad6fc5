/* backend.cu: the CUDA backend's table: device choice, creation (stream, cuBLAS, cuDNN),
 * destruction, the capability query and the error line. Each op family fills its own slots
 * (cuda_install_<stem>, one file each, the CPU twin's stems). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda.h"

int cuda_fail_(const char *file, int line, const char *call, const char *what) {
    const char *base = strrchr(file, '/');
    fprintf(stderr, "ft_ops cuda: %s:%d %s: %s\n", base ? base + 1 : file, line, call, what);
    return FT_EDEVICE;
}

void *cuda_scratch(ft_ops *o, int s, size_t bytes) {
    cuda_backend *b = cuda_of(o);
    if (bytes <= b->scratch_bytes[s]) return b->scratch[s];
    /* grow (the first steps only): the old buffer may still be read by queued work */
    if (b->scratch[s]) {
        cudaError_t e = cudaStreamSynchronize(b->stream);
        if (e != cudaSuccess) {
            cuda_fail_(__FILE__, __LINE__, "cudaStreamSynchronize", cudaGetErrorString(e));
            return NULL;
        }
        cudaFree(b->scratch[s]);
        b->scratch[s] = NULL, b->scratch_bytes[s] = 0;
    }
    size_t sz = (bytes + 255) / 256 * 256;
    b->scratch_gen++;
    cudaError_t e = cudaMalloc(&b->scratch[s], sz);
    if (e != cudaSuccess) {
        b->scratch[s] = NULL;
        cuda_fail_(__FILE__, __LINE__, "cudaMalloc(scratch)", cudaGetErrorString(e));
        return NULL;
    }
    b->scratch_bytes[s] = sz;
    return b->scratch[s];
}

static void cuda_destroy(ft_ops *o) {
    cuda_backend *b = cuda_of(o);
    if (b->stream) cudaStreamSynchronize(b->stream);
    if (b->copy) cudaStreamSynchronize(b->copy);
    cuda_conv_release(b);
    for (int i = 0; i < 3; i++) cudaFree(b->scratch[i]);
    cudaFree(b->red);
    cudaFree(b->chan);
    cudaFree(b->blas_ws);
    cudaFreeHost(b->red_host);
    if (b->dnn) cudnnDestroy(b->dnn);
    if (b->blas) cublasDestroy(b->blas);
    if (b->copied) cudaEventDestroy(b->copied);
    if (b->copy) cudaStreamDestroy(b->copy);
    if (b->stream) cudaStreamDestroy(b->stream);
    free(b);
}

/* ---- graphs: stream capture of the backend's stream (ops.h graph_begin) ----
 * Thread-local mode: a synchronizing or allocating call of this thread inside the recording
 * invalidates it (graph_end then fails), calls of other threads (the loader's) are not
 * affected. The copy stream's upload_ahead stays outside: its wait is queued before a launch. */
typedef struct cuda_graph {
    cudaGraphExec_t exec;
    uint64_t gen; /* scratch_gen when recorded */
} cuda_graph;

static int cuda_graph_begin(ft_ops *o) {
    cuda_backend *b = cuda_of(o);
    if (b->capturing) return FT_EARG;
    CU_CHECK(cudaStreamBeginCapture(b->stream, cudaStreamCaptureModeThreadLocal));
    b->capturing = 1;
    return 0;
}
static int cuda_graph_end(ft_ops *o, void **graph) {
    cuda_backend *b = cuda_of(o);
    if (!graph) return FT_EARG;
    *graph = NULL;
    if (!b->capturing) return FT_EARG;
    b->capturing = 0;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(b->stream, &g);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* the stream has left capture mode and is usable again */
        return cuda_fail_(__FILE__, __LINE__, "cudaStreamEndCapture", cudaGetErrorString(e));
    }
    cuda_graph *x = (cuda_graph *)calloc(1, sizeof *x);
    if (!x) {
        cudaGraphDestroy(g);
        return -ENOMEM;
    }
    x->gen = b->scratch_gen;
    e = cudaGraphInstantiate(&x->exec, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        free(x);
        (void)cudaGetLastError();
        return cuda_fail_(__FILE__, __LINE__, "cudaGraphInstantiate", cudaGetErrorString(e));
    }
    *graph = (void *)x;
    return 0;
}
static int cuda_graph_check(ft_ops *o, void *graph) {
    cuda_graph *x = (cuda_graph *)graph;
    if (!x) return FT_EARG;
    return x->gen != cuda_of(o)->scratch_gen ? FT_ESTALE : 0;
}
static int cuda_graph_launch(ft_ops *o, void *graph) {
    cuda_backend *b = cuda_of(o);
    cuda_graph *x = (cuda_graph *)graph;
    if (!x || b->capturing) return FT_EARG;
    int rc = cuda_graph_check(o, graph);
    if (rc) return rc;
    CU_CHECK(cudaGraphLaunch(x->exec, b->stream));
    return 0;
}
static void cuda_graph_free(ft_ops *o, void *graph) {
    (void)o;
    cuda_graph *x = (cuda_graph *)graph;
    if (!x) return;
    cudaGraphExecDestroy(x->exec);
    free(x);
}

static int cuda_supports(const ft_ops *o, int op, ft_dtype dt) {
    if (op < 0 || op >= FT_OP_COUNT) return 0;
    if (dt == FT_F32) return 1;
    return (dt == FT_F16 || dt == FT_BF16) && ft_op_takes_dtype(op);
}

/* device -1: when only one GPU is visible (Slurm's --gpus-per-task, or a launcher that set
 * CUDA_VISIBLE_DEVICES per rank), that one whatever the local rank; else the local rank's
 * (local_rank, or LOCAL_RANK when it is -1; one GPU per local rank), else 0.
 * CUDA_VISIBLE_DEVICES is applied by the driver before we count. */
static int pick_device(int device, int local_rank, int count, int *out, char *err, size_t errcap) {
    if (device < 0) {
        const char *lr = getenv("LOCAL_RANK");
        int64_t v = local_rank;
        if (local_rank < 0) {
            v = 0;
            if (lr && *lr && ft_parse_i64(lr, 0, 1 << 20, &v) != 0) {
                snprintf(err, errcap, "LOCAL_RANK='%s' is not a device number", lr);
                return FT_EARG;
            }
        }
        /* one visible GPU (a launcher bound each rank to its own): that one */
        device = count == 1 ? 0 : (int)v;
        if (device >= count) {
            /* GPUs are there, too few for the node's ranks: an error, never the CPU */
            snprintf(err, errcap,
                     "device=cuda: local rank %d needs CUDA device %d, but %d are visible "
                     "(CUDA_VISIBLE_DEVICES=%s): start at most %d ranks on this node, or give "
                     "each rank its own GPU",
                     device, device, count,
                     getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "unset",
                     count);
            return FT_EARG;
        }
    }
    if (device >= count) {
        snprintf(
            err, errcap,
            "device=cuda: CUDA device %d requested but %d %s visible (CUDA_VISIBLE_DEVICES=%s)",
            device, count, count == 1 ? "is" : "are",
            getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "unset");
        return FT_EARG;
    }
    *out = device;
    return 0;
}

extern "C" int ft_ops_cuda_create_(int device, int local_rank, int layout, ft_ops **out, char *err,
                                   size_t errcap);
extern "C" int ft_ops_cuda_create_(int device, int local_rank, int layout, ft_ops **out, char *err,
                                   size_t errcap) {
    char dummy[8];
    if (!err || !errcap) err = dummy, errcap = sizeof dummy;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    int drv = 0, rt = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    if (drv == 0) {
        snprintf(err, errcap,
                 "device=cuda but no CUDA device is visible (no NVIDIA driver is loaded)");
        return FT_ENODEV;
    }
    if (e == cudaErrorInsufficientDriver) {
        snprintf(err, errcap,
                 "device=cuda: the NVIDIA driver is too old (it supports CUDA %d.%d, this build "
                 "needs %d.%d)",
                 drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
        return FT_ENODEV;
    }
    if (e == cudaErrorNoDevice || (e == cudaSuccess && count == 0)) {
        snprintf(err, errcap, "device=cuda but no CUDA device is visible");
        return FT_ENODEV;
    }
    if (e != cudaSuccess) {
        snprintf(err, errcap, "device=cuda but no CUDA device is usable (cudaGetDeviceCount: %s)",
                 cudaGetErrorString(e));
        return FT_ENODEV;
    }
    int dev;
    int rc = pick_device(device, local_rank, count, &dev, err, errcap);
    if (rc) return rc;
    /* the build's kernels are sm_80 and sm_90 (+ their PTX), bf16 needs sm_80: an older GPU
     * would fail at the first launch with "no kernel image is available" */
    int ccmaj = 0, ccmin = 0;
    e = cudaDeviceGetAttribute(&ccmaj, cudaDevAttrComputeCapabilityMajor, dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&ccmin, cudaDevAttrComputeCapabilityMinor, dev);
    if (e != cudaSuccess) {
        snprintf(err, errcap, "device=cuda: CUDA device %d: cudaDeviceGetAttribute: %s", dev,
                 cudaGetErrorString(e));
        return FT_ENODEV;
    }
    if (ccmaj < 8) {
        snprintf(err, errcap,
                 "device=cuda: CUDA device %d has compute capability %d.%d; facetrain's CUDA "
                 "backend needs 8.0 or newer (A100, H100/H200 and later)",
                 dev, ccmaj, ccmin);
        return FT_ENOTSUP;
    }
    cuda_backend *b = (cuda_backend *)calloc(1, sizeof *b);
    if (!b) return -ENOMEM;
    ft_ops *o = &b->ops;
    o->impl = b;
    o->name = "cuda";
    o->destroy = cuda_destroy;
    o->supports = cuda_supports;
    b->device = dev;
    /* auto: 16-bit activations NHWC (cuDNN's tensor-core kernels want it), fp32 NCHW */
    b->nhwc16 = layout != FT_LAYOUT_NCHW;
    b->nhwc32 = layout == FT_LAYOUT_NHWC;
    b->ws_limit = (size_t)1 << 30;
    const char *what = NULL;
    cudaError_t ce = cudaSetDevice(dev);
    if (ce != cudaSuccess) what = "cudaSetDevice";
    if (!what && (ce = cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking)) != cudaSuccess)
        what = "cudaStreamCreate";
    if (!what && (ce = cudaStreamCreateWithFlags(&b->copy, cudaStreamNonBlocking)) != cudaSuccess)
        what = "cudaStreamCreate(copy)";
    if (!what && (ce = cudaEventCreateWithFlags(&b->copied, cudaEventDisableTiming)) != cudaSuccess)
        what = "cudaEventCreate";
    if (!what &&
        (ce = cudaMalloc((void **)&b->red, CUDA_MAX_BLOCKS * sizeof(double))) != cudaSuccess)
        what = "cudaMalloc";
    if (!what && (ce = cudaMallocHost((void **)&b->red_host, sizeof(double))) != cudaSuccess)
        what = "cudaMallocHost";
    if (!what &&
        (ce = cudaMalloc((void **)&b->chan, CUDA_CHAN_DOUBLES * sizeof(double))) != cudaSuccess)
        what = "cudaMalloc(channel reductions)";
    if (!what && (ce = cudaMalloc(&b->blas_ws, CUDA_BLAS_WS)) != cudaSuccess)
        what = "cudaMalloc(cuBLAS workspace)";
    if (what) {
        snprintf(err, errcap, "device=cuda: device %d: %s: %s", dev, what, cudaGetErrorString(ce));
        cuda_destroy(o);
        return FT_EDEVICE;
    }
    cublasStatus_t bs = cublasCreate(&b->blas);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(b->blas, b->stream);
    /* after the stream (setting it resets the workspace to the library's pool) */
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetWorkspace(b->blas, b->blas_ws, CUDA_BLAS_WS);
    /* fp32 GEMMs stay fp32 (no TF32): the fp32 path must agree with the CPU to 1e-5 */
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetMathMode(b->blas, CUBLAS_DEFAULT_MATH);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, errcap, "device=cuda: cuBLAS: %s", cublasGetStatusString(bs));
        cuda_destroy(o);
        return FT_EDEVICE;
    }
    cudnnStatus_t ds = cudnnCreate(&b->dnn);
    if (ds == CUDNN_STATUS_SUCCESS) ds = cudnnSetStream(b->dnn, b->stream);
    if (ds != CUDNN_STATUS_SUCCESS) {
        snprintf(err, errcap, "device=cuda: cuDNN: %s (cuDNN %zu)", cudnnGetErrorString(ds),
                 cudnnGetVersion());
        cuda_destroy(o);
        return FT_EDEVICE;
    }
    cuda_install_memory(o);
    cuda_install_cast(o);
    cuda_install_elementwise(o);
    cuda_install_gemm(o);
    cuda_install_dropout(o);
    cuda_install_sgd(o);
    cuda_install_conv(o);
    cuda_install_batchnorm(o);
    cuda_install_prelu(o);
    cuda_install_rows(o);
    cuda_install_sample(o);
    cuda_install_margin(o);
    cuda_install_multi(o);
    o->graph_begin = cuda_graph_begin;
    o->graph_end = cuda_graph_end;
    o->graph_launch = cuda_graph_launch;
    o->graph_check = cuda_graph_check;
    o->graph_free = cuda_graph_free;
    *out = o;
    return 0;
}

/* "<host> pci <bus id>" of the backend's GPU (ranks compare them: one GPU per rank) */
extern "C" int ft_ops_cuda_device_id(const ft_ops *o, char *buf, size_t cap);
extern "C" int ft_ops_cuda_device_id(const ft_ops *o, char *buf, size_t cap) {
    if (!o || o->destroy != cuda_destroy || cap < 32) return FT_EARG;
    int dev = ((const cuda_backend *)o->impl)->device;
    char host[256] = "", bus[32] = "";
    gethostname(host, sizeof host - 1);
    cudaError_t e = cudaDeviceGetPCIBusId(bus, (int)sizeof bus, dev);
    if (e != cudaSuccess) snprintf(bus, sizeof bus, "device %d", dev);
    snprintf(buf, cap, "%s pci %s", host, bus);
    return 0;
}

/* the backend's stream, for transports that enqueue on it (comm/nccl.cu); NULL for a table
 * that is not this backend's */
extern "C" void *ft_ops_cuda_stream(const ft_ops *o);
extern "C" void *ft_ops_cuda_stream(const ft_ops *o) {
    if (!o || o->destroy != cuda_destroy) return NULL;
    return (void *)((const cuda_backend *)o->impl)->stream;
}
