/* cudnn.cpp: the CUDA emulator's cuDNN stand-in: handles, tensor / filter / convolution
 * descriptors and the legacy convolution API (forward, backward data, backward filter, the
 * _v7 algorithm heuristics and workspace queries) with the prototypes of cuDNN 9's headers.
 *
 * Descriptors: 4-D tensors of FLOAT, HALF or BFLOAT16 (and, as descriptors only, the other
 * fixed-size types) in NCHW, NHWC or any positive strides (cudnnSetTensor4dDescriptorEx,
 * cudnnSetTensorNdDescriptor with 4 dimensions); filters in NCHW (KCRS) or NHWC (KRSC);
 * convolutions with pads, strides, dilations, CUDNN_CROSS_CORRELATION or CUDNN_CONVOLUTION
 * (the filter flipped in both spatial axes), compute type, math type and group count.
 *
 * Checks, as cuDNN documents them: a NULL, destroyed or never-set handle or descriptor, a
 * size <= 0, x's C != the filter's C, y's dimensions != the forward output's, data types of
 * x / w / y that differ, a NULL alpha, beta or tensor, an unknown algorithm, a workspace
 * smaller than the algorithm needs or NULL with a size > 0: CUDNN_STATUS_BAD_PARAM.
 * Configurations the emulator has no kernel for (data FLOAT with compute FLOAT, HALF with
 * FLOAT or HALF, BFLOAT16 with FLOAT are the ones it has; group count 1 only):
 * CUDNN_STATUS_NOT_SUPPORTED. Beyond cuDNN, where a GPU would silently misbehave: every
 * tensor and the workspace must be device memory covering the extent its descriptor (or
 * size) gives and be aligned to its element size, the output must not overlap an input and
 * the workspace must overlap none of them (CUDNN_STATUS_BAD_PARAM with a diagnostic); the
 * part of the workspace an algorithm uses is filled with 0xff bytes before and after the
 * call, as a GPU's scratch holds garbage.
 *
 * Arithmetic: alpha and beta are host floats read at call time; result = alpha * conv +
 * beta * old (beta == 0: the output is not read), each output a sum in double of exact
 * products (no float accumulation anywhere) in an order fixed by the shape alone, not by the
 * number of threads (backward filter: eight partial sums per 64-position tile, combined in a
 * fixed order), rounded once to the output type (fp16/bf16 by way of fp32). TRUE_HALF,
 * tensor-op and default math compute the same way (no TF32 or fp16 accumulation is
 * emulated). Every algorithm runs the same loops:
 * operands are converted to float NCHW, then tiles of 64 output positions are unrolled
 * im2col-style into double rows (the contiguous inner loop); the work runs on the handle's
 * stream (emu::enqueue) with the descriptors' contents captured by value.
 */
#include <cudnn.h>

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "emu.h"

struct cudnnContext {
    cudaStream_t stream;
};

struct cudnnTensorStruct {
    bool set;
    cudnnDataType_t dt;
    cudnnTensorFormat_t fmt;
    int dim[4];    /* n, c, h, w */
    int stride[4]; /* in elements */
};

struct cudnnFilterStruct {
    bool set;
    cudnnDataType_t dt;
    cudnnTensorFormat_t fmt; /* NCHW: KCRS, NHWC: KRSC */
    int k, c, r, s;
};

struct cudnnConvolutionStruct {
    bool set;
    int pad_h, pad_w, u, v, dil_h, dil_w;
    cudnnConvolutionMode_t mode;
    cudnnDataType_t compute;
    cudnnMathType_t math;
    int groups;
};

namespace {

/* ---- live objects: a destroyed or made-up pointer is reported, not dereferenced ---- */

enum Kind { K_HANDLE, K_TENSOR, K_FILTER, K_CONV };
const char *const KIND_NAME[] = {"cuDNN handle", "tensor descriptor", "filter descriptor",
                                 "convolution descriptor"};

std::mutex g_mu;
std::map<const void *, Kind> &registry() { /* never freed: no global constructor/destructor */
    static std::map<const void *, Kind> *m = new std::map<const void *, Kind>;
    return *m;
}

bool live(const void *p, Kind kind, const char *api, const char *what) {
    if (!p) {
        emu::diag(api, "%s is NULL", what);
        return false;
    }
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = registry().find(p);
    if (it == registry().end() || it->second != kind) {
        emu::diag(api, "%s = %p is not a live %s", what, p, KIND_NAME[kind]);
        return false;
    }
    return true;
}

template <class T> cudnnStatus_t create(T **out, Kind kind, const char *api) {
    if (!out) {
        emu::diag(api, "output pointer is NULL");
        return CUDNN_STATUS_BAD_PARAM;
    }
    *out = NULL;
    T *p = new (std::nothrow) T();
    if (!p) return CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    try {
        std::lock_guard<std::mutex> lock(g_mu);
        registry()[p] = kind;
    } catch (...) {
        delete p;
        return CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    }
    *out = p;
    return CUDNN_STATUS_SUCCESS;
}

template <class T> cudnnStatus_t destroy(T *p, Kind kind, const char *api) {
    if (!p) return CUDNN_STATUS_SUCCESS; /* as cuDNN: destroying NULL is a no-op */
    if (!live(p, kind, api, "descriptor")) return CUDNN_STATUS_BAD_PARAM;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        registry().erase(p);
    }
    delete p;
    return CUDNN_STATUS_SUCCESS;
}

/* ---- types ---- */

size_t type_size(cudnnDataType_t t) {
    switch (t) {
    case CUDNN_DATA_FLOAT:
    case CUDNN_DATA_INT32:
    case CUDNN_DATA_UINT32:
        return 4;
    case CUDNN_DATA_DOUBLE:
    case CUDNN_DATA_INT64:
        return 8;
    case CUDNN_DATA_HALF:
    case CUDNN_DATA_BFLOAT16:
        return 2;
    case CUDNN_DATA_INT8:
    case CUDNN_DATA_UINT8:
    case CUDNN_DATA_BOOLEAN:
    case CUDNN_DATA_FP8_E4M3:
    case CUDNN_DATA_FP8_E5M2:
    case CUDNN_DATA_FP8_E8M0:
        return 1;
    default:
        return 0;
    }
}

bool type_enum(int t) {
    return t >= CUDNN_DATA_FLOAT && t <= CUDNN_DATA_COMPLEX_FP64;
}

const char *type_name(cudnnDataType_t t) {
    switch (t) {
    case CUDNN_DATA_FLOAT:
        return "FLOAT";
    case CUDNN_DATA_DOUBLE:
        return "DOUBLE";
    case CUDNN_DATA_HALF:
        return "HALF";
    case CUDNN_DATA_BFLOAT16:
        return "BFLOAT16";
    default:
        return "a type without a kernel";
    }
}

inline emu::elem elem_of(cudnnDataType_t t) {
    return t == CUDNN_DATA_HALF ? emu::F16 : t == CUDNN_DATA_BFLOAT16 ? emu::BF16 : emu::F32;
}
inline float load(cudnnDataType_t t, const void *p, int64_t i) {
    return emu::load(elem_of(t), p, (size_t)i);
}
inline void store(cudnnDataType_t t, void *p, int64_t i, double v) {
    emu::store(elem_of(t), p, (size_t)i, v);
}

/* ---- the problem, by value ---- */

struct Tens { /* a 4-D tensor: dims and element strides */
    cudnnDataType_t dt;
    int n, c, h, w;
    int64_t sn, sc, sh, sw;
    int64_t extent() const { /* elements from the first to one past the last */
        return 1 + (n - 1) * sn + (c - 1) * sc + (h - 1) * sh + (w - 1) * sw;
    }
    int64_t at(int i, int j, int y, int x) const {
        return i * sn + j * sc + y * sh + x * sw;
    }
};

struct Filt {
    cudnnDataType_t dt;
    int k, c, r, s;
    int64_t sk, sc, sr, ss;
    int64_t count() const {
        return (int64_t)k * c * r * s;
    }
};

struct Problem {
    Tens x, y;
    Filt w;
    int ph, pw, u, v, dh, dw;
    bool flip;   /* CUDNN_CONVOLUTION: the filter is applied flipped */
    int oh, ow;  /* == y.h, y.w */
    int64_t j;   /* c * r * s: one im2col row per filter tap */
    double macs; /* n * k * oh * ow * c * r * s */
    size_t es;   /* element size of x, w, y */
};

Tens tens_of(const cudnnTensorStruct *t) {
    Tens r;
    r.dt = t->dt;
    r.n = t->dim[0], r.c = t->dim[1], r.h = t->dim[2], r.w = t->dim[3];
    r.sn = t->stride[0], r.sc = t->stride[1], r.sh = t->stride[2], r.sw = t->stride[3];
    return r;
}

Filt filt_of(const cudnnFilterStruct *f) {
    Filt r;
    r.dt = f->dt;
    r.k = f->k, r.c = f->c, r.r = f->r, r.s = f->s;
    if (f->fmt == CUDNN_TENSOR_NHWC) /* KRSC */
        r.sc = 1, r.ss = f->c, r.sr = (int64_t)f->s * f->c, r.sk = (int64_t)f->r * f->s * f->c;
    else /* KCRS */
        r.ss = 1, r.sr = f->s, r.sc = (int64_t)f->r * f->s, r.sk = (int64_t)f->c * f->r * f->s;
    return r;
}

bool out_dims(const cudnnConvolutionStruct *cd, const cudnnTensorStruct *x,
              const cudnnFilterStruct *w, int *oh, int *ow) {
    int64_t eh = (int64_t)(w->r - 1) * cd->dil_h + 1, ew = (int64_t)(w->s - 1) * cd->dil_w + 1;
    int64_t ih = (int64_t)x->dim[2] + 2 * (int64_t)cd->pad_h,
            iw = x->dim[3] + 2 * (int64_t)cd->pad_w;
    if (eh > ih || ew > iw) return false;
    *oh = (int)(1 + (ih - eh) / cd->u);
    *ow = (int)(1 + (iw - ew) / cd->v);
    return true;
}

bool supported_types(cudnnDataType_t dt, cudnnDataType_t compute) {
    if (dt == CUDNN_DATA_FLOAT || dt == CUDNN_DATA_BFLOAT16) return compute == CUDNN_DATA_FLOAT;
    if (dt == CUDNN_DATA_HALF) /* PSEUDO_HALF or TRUE_HALF (computed as PSEUDO_HALF) */
        return compute == CUDNN_DATA_FLOAT || compute == CUDNN_DATA_HALF;
    return false;
}

/* x, w, conv, y of one convolution (y: dy for the backward passes, x: dx for backward data):
 * CUDNN_STATUS_BAD_PARAM or _NOT_SUPPORTED with a diagnostic, or success and *p filled */
cudnnStatus_t make_problem(const char *api, cudnnHandle_t h, const cudnnTensorStruct *x,
                           const char *xname, const cudnnFilterStruct *w,
                           const cudnnConvolutionStruct *cd, const cudnnTensorStruct *y,
                           const char *yname, Problem *p) {
    if (!live(h, K_HANDLE, api, "handle") || !live(x, K_TENSOR, api, xname) ||
        !live(w, K_FILTER, api, "filter descriptor") ||
        !live(cd, K_CONV, api, "convolution descriptor") || !live(y, K_TENSOR, api, yname))
        return CUDNN_STATUS_BAD_PARAM;
    if (!x->set || !w->set || !cd->set || !y->set) {
        emu::diag(api, "a descriptor was created but never set");
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (x->dt != w->dt || x->dt != y->dt) {
        emu::diag(api, "data types differ: %s %d, filter %d, %s %d", xname, (int)x->dt, (int)w->dt,
                  yname, (int)y->dt);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if ((int64_t)x->dim[1] != (int64_t)w->c * cd->groups) {
        emu::diag(api, "%s has %d channels, the filter %d (group count %d)", xname, x->dim[1], w->c,
                  cd->groups);
        return CUDNN_STATUS_BAD_PARAM;
    }
    int oh, ow;
    if (!out_dims(cd, x, w, &oh, &ow)) {
        emu::diag(api, "the %dx%d filter (dilation %d, %d) is larger than the padded %dx%d input",
                  w->r, w->s, cd->dil_h, cd->dil_w, x->dim[2], x->dim[3]);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (y->dim[0] != x->dim[0] || y->dim[1] != w->k || y->dim[2] != oh || y->dim[3] != ow) {
        emu::diag(api, "%s is %dx%dx%dx%d, the convolution's output is %dx%dx%dx%d", yname,
                  y->dim[0], y->dim[1], y->dim[2], y->dim[3], x->dim[0], w->k, oh, ow);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (cd->groups != 1) {
        emu::diag(api, "group count %d: only 1 is emulated", cd->groups);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    if (!supported_types(x->dt, cd->compute)) {
        emu::diag(api,
                  "data %s with compute type %s: no such configuration (FLOAT/FLOAT, "
                  "HALF/FLOAT, HALF/HALF, BFLOAT16/FLOAT)",
                  type_name(x->dt), type_name(cd->compute));
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    p->x = tens_of(x), p->y = tens_of(y), p->w = filt_of(w);
    p->ph = cd->pad_h, p->pw = cd->pad_w, p->u = cd->u, p->v = cd->v;
    p->dh = cd->dil_h, p->dw = cd->dil_w;
    p->flip = cd->mode == CUDNN_CONVOLUTION;
    p->oh = oh, p->ow = ow;
    p->j = (int64_t)w->c * w->r * w->s;
    p->macs = (double)x->dim[0] * w->k * oh * ow * (double)p->j;
    p->es = type_size(x->dt);
    return CUDNN_STATUS_SUCCESS;
}

/* ---- algorithms: one set of loops, different workspace needs and heuristics ---- */

enum Op { FWD, BWD_DATA, BWD_FILTER };
const char *const OP_API[] = {"cudnnConvolutionForward", "cudnnConvolutionBackwardData",
                              "cudnnConvolutionBackwardFilter"};

struct AlgoInfo {
    int algo;
    bool deterministic;
    bool implemented;
    bool needs_ws;
    float speed; /* relative time: the heuristics list the fastest first */
};

/* real cuDNN: every forward algorithm is deterministic, backward data / filter ALGO_0 and
 * backward filter ALGO_3 are not, backward filter WINOGRAD is not implemented */
const AlgoInfo FWD_ALGOS[] = {
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, true, true, false, 1.0f},
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, true, true, true, 0.6f},
    {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, true, true, true, 0.9f},
    {CUDNN_CONVOLUTION_FWD_ALGO_DIRECT, true, true, true, 1.5f},
    {CUDNN_CONVOLUTION_FWD_ALGO_FFT, true, true, true, 0.8f},
    {CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING, true, true, true, 0.7f},
    {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD, true, true, true, 0.5f},
    {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, true, true, true, 0.55f},
};
const AlgoInfo BWD_DATA_ALGOS[] = {
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, false, true, false, 0.4f},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, true, true, false, 1.0f},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT, true, true, true, 0.8f},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING, true, true, true, 0.7f},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD, true, true, true, 0.6f},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED, true, true, true, 0.65f},
};
const AlgoInfo BWD_FILTER_ALGOS[] = {
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, false, true, false, 0.4f},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true, true, false, 1.0f},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, true, true, true, 0.8f},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, false, true, true, 0.5f},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD, true, false, false, 2.0f},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED, true, true, true, 0.7f},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING, true, true, true, 0.75f},
};
static_assert(sizeof FWD_ALGOS / sizeof *FWD_ALGOS == CUDNN_CONVOLUTION_FWD_ALGO_COUNT, "");
static_assert(sizeof BWD_DATA_ALGOS / sizeof *BWD_DATA_ALGOS ==
                  CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
              "");
static_assert(sizeof BWD_FILTER_ALGOS / sizeof *BWD_FILTER_ALGOS ==
                  CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
              "");

const AlgoInfo *algos(Op op, int *count) {
    switch (op) {
    case FWD:
        *count = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
        return FWD_ALGOS;
    case BWD_DATA:
        *count = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
        return BWD_DATA_ALGOS;
    default:
        *count = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
        return BWD_FILTER_ALGOS;
    }
}

/* the workspace algorithm a needs: 0 where needs_ws is false, else a multiple of 256 that
 * grows with the batch, the filter taps and the output plane, and differs per algorithm */
size_t ws_need(const Problem &p, const AlgoInfo &a) {
    if (!a.needs_ws) return 0;
    size_t plane = (size_t)std::min(p.oh * (int64_t)p.ow, (int64_t)1024);
    size_t bytes = (size_t)a.algo * p.es * ((size_t)p.x.n * p.w.k + (size_t)p.j * plane);
    return (bytes + 255) / 256 * 256;
}

/* the entry of algorithm `algo` of op, or NULL (diagnostic printed) */
const AlgoInfo *find_algo(Op op, int algo, const char *api) {
    int count;
    const AlgoInfo *t = algos(op, &count);
    if (algo < 0 || algo >= count) {
        emu::diag(api, "algorithm %d is not one of the %d of this operation", algo, count);
        return NULL;
    }
    return &t[algo];
}

template <class Perf, class Algo>
cudnnStatus_t heuristics(Op op, const char *api, cudnnStatus_t st, const Problem &p, int requested,
                         int *returned, Perf *perf) {
    if (st == CUDNN_STATUS_BAD_PARAM) return st;
    if (requested <= 0 || !returned || !perf) {
        emu::diag(api, "requestedAlgoCount %d, returnedAlgoCount %p, perfResults %p", requested,
                  (void *)returned, (void *)perf);
        return CUDNN_STATUS_BAD_PARAM;
    }
    int count;
    const AlgoInfo *table = algos(op, &count);
    std::vector<const AlgoInfo *> order;
    for (int i = 0; i < count; i++) order.push_back(&table[i]);
    std::stable_sort(order.begin(), order.end(), [](const AlgoInfo *a, const AlgoInfo *b) {
        return a->implemented != b->implemented ? a->implemented : a->speed < b->speed;
    });
    /* 16-bit data: every algorithm with tensor-op math, then every one with default math;
     * fp32: every algorithm with default math, then every one with FMA math. The first
     * group alone (ALGO_COUNT entries) names every algorithm, the unimplemented last. */
    const bool fp32 = st != CUDNN_STATUS_SUCCESS || p.x.dt == CUDNN_DATA_FLOAT;
    struct Entry {
        const AlgoInfo *a;
        cudnnMathType_t math;
    };
    std::vector<Entry> list;
    const cudnnMathType_t first = fp32 ? CUDNN_DEFAULT_MATH : CUDNN_TENSOR_OP_MATH;
    const cudnnMathType_t second = fp32 ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
    for (const AlgoInfo *a : order) list.push_back({a, first});
    for (const AlgoInfo *a : order)
        if (a->implemented) list.push_back({a, second});
    int n = std::min(requested, (int)list.size());
    /* FT_CUDA_EMU_CUDNN_NONDET_C=C: for inputs of fewer than C channels every algorithm is
     * reported non-deterministic (a shape for which cuDNN may offer no deterministic one) */
    const char *nd = getenv("FT_CUDA_EMU_CUDNN_NONDET_C");
    const bool nondet = nd && *nd && p.x.c < atoi(nd);
    for (int i = 0; i < n; i++) {
        const AlgoInfo &a = *list[i].a;
        Perf e;
        memset(&e, 0, sizeof e);
        e.algo = (Algo)a.algo;
        bool ok = st == CUDNN_STATUS_SUCCESS && a.implemented;
        e.status = ok ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
        e.time = ok ? (float)(a.speed * (0.001 + p.macs * 1e-9)) : -1.0f;
        e.memory = ok ? ws_need(p, a) : 0;
        e.determinism = a.deterministic && !nondet ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC;
        e.mathType = list[i].math;
        perf[i] = e;
    }
    *returned = n;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t ws_size(Op op, const char *api, cudnnStatus_t st, const Problem &p, int algo,
                      size_t *size) {
    if (st != CUDNN_STATUS_SUCCESS) return st;
    if (!size) {
        emu::diag(api, "sizeInBytes is NULL");
        return CUDNN_STATUS_BAD_PARAM;
    }
    const AlgoInfo *a = find_algo(op, algo, api);
    if (!a) return CUDNN_STATUS_BAD_PARAM;
    if (!a->implemented) {
        emu::diag(api, "algorithm %d is not implemented (as in cuDNN)", algo);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    *size = ws_need(p, *a);
    return CUDNN_STATUS_SUCCESS;
}

/* ---- the loops ---- */

constexpr int TP = 64; /* output positions per tile: the contiguous inner loop */

/* t as packed NCHW floats */
void to_nchw(const Tens &t, const void *src, float *dst) {
    for (int i = 0; i < t.n; i++)
        for (int c = 0; c < t.c; c++)
            for (int y = 0; y < t.h; y++) {
                float *row = dst + (((int64_t)i * t.c + c) * t.h + y) * t.w;
                for (int x = 0; x < t.w; x++) row[x] = load(t.dt, src, t.at(i, c, y, x));
            }
}

/* the filter as applied (flipped for CUDNN_CONVOLUTION), doubles [k][c][r][s] */
void filter_rows(const Problem &p, const void *w, double *dst) {
    const Filt &f = p.w;
    for (int k = 0; k < f.k; k++)
        for (int c = 0; c < f.c; c++)
            for (int r = 0; r < f.r; r++)
                for (int s = 0; s < f.s; s++) {
                    int rr = p.flip ? f.r - 1 - r : r, ss = p.flip ? f.s - 1 - s : s;
                    dst[((int64_t)(k * f.c + c) * f.r + r) * f.s + s] =
                        load(f.dt, w, k * f.sk + c * f.sc + rr * f.sr + ss * f.ss);
                }
}

/* output positions p0 .. p0 + TP of one image: their (oh, ow), -1 past the end */
struct Tile {
    int oy[TP], ox[TP];
    int valid;
    Tile(const Problem &p, int64_t p0) {
        int64_t total = (int64_t)p.oh * p.ow;
        valid = (int)std::min<int64_t>(TP, total - p0);
        for (int t = 0; t < TP; t++) {
            oy[t] = t < valid ? (int)((p0 + t) / p.ow) : -1;
            ox[t] = t < valid ? (int)((p0 + t) % p.ow) : -1;
        }
    }
};

/* col[j][t] = the input under filter tap j = (c, r, s) at tile position t (0 outside the
 * image and past the tile's end); img: one image of packed NCHW x */
void im2col(const Problem &p, const Tile &tl, const float *img, double *col) {
    const int H = p.x.h, W = p.x.w;
    int64_t j = 0;
    for (int c = 0; c < p.w.c; c++)
        for (int r = 0; r < p.w.r; r++)
            for (int s = 0; s < p.w.s; s++, j++) {
                double *row = col + j * TP;
                const float *plane = img + (int64_t)c * H * W;
                for (int t = 0; t < TP; t++) {
                    int iy = tl.oy[t] * p.u - p.ph + r * p.dh;
                    int ix = tl.ox[t] * p.v - p.pw + s * p.dw;
                    bool in = t < tl.valid && iy >= 0 && iy < H && ix >= 0 && ix < W;
                    row[t] = in ? plane[(int64_t)iy * W + ix] : 0.0;
                }
            }
}

/* the adjoint of im2col: acc (one image, packed NCHW doubles) += col */
void col2im(const Problem &p, const Tile &tl, const double *col, double *acc) {
    const int H = p.x.h, W = p.x.w;
    int64_t j = 0;
    for (int c = 0; c < p.w.c; c++)
        for (int r = 0; r < p.w.r; r++)
            for (int s = 0; s < p.w.s; s++, j++) {
                const double *row = col + j * TP;
                double *plane = acc + (int64_t)c * H * W;
                for (int t = 0; t < tl.valid; t++) {
                    int iy = tl.oy[t] * p.u - p.ph + r * p.dh;
                    int ix = tl.ox[t] * p.v - p.pw + s * p.dw;
                    if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                        plane[(int64_t)iy * W + ix] += row[t];
                }
            }
}

/* out = alpha * v + beta * out (beta 0: out is not read) */
inline void put(cudnnDataType_t dt, void *out, int64_t off, double v, double alpha, double beta) {
    double r = alpha * v;
    if (beta != 0.0) r += beta * (double)load(dt, out, off);
    store(dt, out, off, r);
}

struct Call {
    Op op;
    Problem p;
    const void *in0, *in1; /* fwd: x, w; bwd data: w, dy; bwd filter: x, dy */
    void *out;             /* y, dx, dw */
    void *ws;
    size_t ws_bytes; /* what the algorithm uses (poisoned before and after) */
    double alpha, beta;
};

const char *const OOM = "out of host memory; the output is left as it was";

/* y = conv(x, w): per (image, tile), y[k][t] = sum_j w[k][j] col[j][t] */
void run_fwd(const Call &cl, const float *xf, const double *wd) {
    const Problem &p = cl.p;
    const int64_t tiles = ((int64_t)p.oh * p.ow + TP - 1) / TP, J = p.j;
    const int64_t img = (int64_t)p.x.c * p.x.h * p.x.w;
    emu::parallel_for(p.x.n * tiles, p.macs,
                      [&cl, &p, xf, wd, tiles, J, img](int64_t b, int64_t e) {
                          std::vector<double> col;
                          try {
                              col.resize((size_t)J * TP);
                          } catch (...) {
                              emu::diag(OP_API[cl.op], "%s", OOM);
                              return;
                          }
                          for (int64_t u = b; u < e; u++) {
                              const int n = (int)(u / tiles);
                              const int64_t p0 = (u % tiles) * TP;
                              Tile tl(p, p0);
                              im2col(p, tl, xf + n * img, col.data());
                              for (int k = 0; k < p.w.k; k++) {
                                  double acc[TP] = {0};
                                  const double *wk = wd + k * J;
                                  for (int64_t j = 0; j < J; j++) {
                                      const double s = wk[j];
                                      const double *__restrict row = col.data() + j * TP;
                                      for (int t = 0; t < TP; t++) acc[t] += s * row[t];
                                  }
                                  for (int t = 0; t < tl.valid; t++)
                                      put(p.y.dt, cl.out, p.y.at(n, k, tl.oy[t], tl.ox[t]), acc[t],
                                          cl.alpha, cl.beta);
                              }
                          }
                      });
}

/* dx = conv^T(dy, w): per image, per tile, col[j][t] = sum_k w[k][j] dy[k][t], then col2im */
void run_bwd_data(const Call &cl, const float *dyf, const double *wt) {
    const Problem &p = cl.p;
    const int64_t P = (int64_t)p.oh * p.ow, tiles = (P + TP - 1) / TP, J = p.j;
    const int K = p.w.k;
    const int64_t img = (int64_t)p.x.c * p.x.h * p.x.w;
    emu::parallel_for(p.x.n, p.macs, [&cl, &p, dyf, wt, P, tiles, J, K, img](int64_t b, int64_t e) {
        std::vector<double> col, dyt, acc;
        try {
            col.resize((size_t)J * TP);
            dyt.resize((size_t)K * TP);
            acc.resize((size_t)img);
        } catch (...) {
            emu::diag(OP_API[cl.op], "%s", OOM);
            return;
        }
        for (int64_t n = b; n < e; n++) {
            std::fill(acc.begin(), acc.end(), 0.0);
            for (int64_t ti = 0; ti < tiles; ti++) {
                Tile tl(p, ti * TP);
                for (int k = 0; k < K; k++) {
                    const float *src = dyf + (n * K + k) * P + ti * TP;
                    for (int t = 0; t < TP; t++) dyt[k * TP + t] = t < tl.valid ? src[t] : 0.0;
                }
                for (int64_t j = 0; j < J; j++) {
                    double acc_j[TP] = {0};
                    const double *wj = wt + j * K;
                    for (int k = 0; k < K; k++) {
                        const double s = wj[k];
                        const double *__restrict dk = dyt.data() + k * TP;
                        for (int t = 0; t < TP; t++) acc_j[t] += s * dk[t];
                    }
                    memcpy(col.data() + j * TP, acc_j, sizeof acc_j);
                }
                col2im(p, tl, col.data(), acc.data());
            }
            const Tens &x = p.x;
            for (int c = 0; c < x.c; c++)
                for (int y = 0; y < x.h; y++)
                    for (int xx = 0; xx < x.w; xx++)
                        put(x.dt, cl.out, x.at((int)n, c, y, xx),
                            acc[((int64_t)c * x.h + y) * x.w + xx], cl.alpha, cl.beta);
        }
    });
}

/* dw[k][j] = sum over images and tiles of dy[k][t] col[j][t]: threads own rows k */
void run_bwd_filter(const Call &cl, const float *xf, const float *dyf) {
    const Problem &p = cl.p;
    const int64_t P = (int64_t)p.oh * p.ow, tiles = (P + TP - 1) / TP, J = p.j;
    const int K = p.w.k;
    const int64_t img = (int64_t)p.x.c * p.x.h * p.x.w;
    emu::parallel_for(K, p.macs, [&cl, &p, xf, dyf, P, tiles, J, K, img](int64_t k0, int64_t k1) {
        std::vector<double> col, dyt, acc;
        try {
            col.resize((size_t)J * TP);
            dyt.resize((size_t)(k1 - k0) * TP);
            acc.assign((size_t)(k1 - k0) * J, 0.0);
        } catch (...) {
            emu::diag(OP_API[cl.op], "%s", OOM);
            return;
        }
        for (int n = 0; n < p.x.n; n++)
            for (int64_t ti = 0; ti < tiles; ti++) {
                Tile tl(p, ti * TP);
                im2col(p, tl, xf + n * img, col.data());
                for (int64_t k = k0; k < k1; k++) {
                    const float *src = dyf + (n * K + k) * P + ti * TP;
                    double *d = dyt.data() + (k - k0) * TP;
                    for (int t = 0; t < TP; t++) d[t] = t < tl.valid ? src[t] : 0.0;
                }
                for (int64_t k = k0; k < k1; k++) {
                    const double *__restrict dk = dyt.data() + (k - k0) * TP;
                    double *ak = acc.data() + (k - k0) * J;
                    for (int64_t j = 0; j < J; j++) {
                        const double *__restrict cj = col.data() + j * TP;
                        double s[8] = {0}; /* eight partial sums, added in a fixed order */
                        for (int t = 0; t < TP; t += 8)
                            for (int l = 0; l < 8; l++) s[l] += dk[t + l] * cj[t + l];
                        ak[j] += ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
                    }
                }
            }
        const Filt &f = p.w;
        for (int64_t k = k0; k < k1; k++)
            for (int c = 0; c < f.c; c++)
                for (int r = 0; r < f.r; r++)
                    for (int s = 0; s < f.s; s++) {
                        int rr = p.flip ? f.r - 1 - r : r, ss = p.flip ? f.s - 1 - s : s;
                        put(f.dt, cl.out, k * f.sk + c * f.sc + rr * f.sr + ss * f.ss,
                            acc[(size_t)((k - k0) * J + ((int64_t)c * f.r + r) * f.s + s)],
                            cl.alpha, cl.beta);
                    }
    });
}

void run(const Call &cl) {
    if (cl.ws_bytes) memset(cl.ws, 0xff, cl.ws_bytes);
    const Problem &p = cl.p;
    const char *api = OP_API[cl.op];
    try {
        if (cl.op == FWD) {
            std::vector<float> xf((size_t)p.x.n * p.x.c * p.x.h * p.x.w);
            std::vector<double> wd((size_t)p.w.count());
            to_nchw(p.x, cl.in0, xf.data());
            filter_rows(p, cl.in1, wd.data());
            run_fwd(cl, xf.data(), wd.data());
        } else if (cl.op == BWD_DATA) {
            std::vector<double> wd((size_t)p.w.count()), wt((size_t)p.w.count());
            std::vector<float> dyf((size_t)p.y.n * p.y.c * p.y.h * p.y.w);
            filter_rows(p, cl.in0, wd.data());
            for (int k = 0; k < p.w.k; k++) /* [j][k]: the taps' weights per output channel */
                for (int64_t j = 0; j < p.j; j++) wt[j * p.w.k + k] = wd[k * p.j + j];
            to_nchw(p.y, cl.in1, dyf.data());
            run_bwd_data(cl, dyf.data(), wt.data());
        } else {
            std::vector<float> xf((size_t)p.x.n * p.x.c * p.x.h * p.x.w);
            std::vector<float> dyf((size_t)p.y.n * p.y.c * p.y.h * p.y.w);
            to_nchw(p.x, cl.in0, xf.data());
            to_nchw(p.y, cl.in1, dyf.data());
            run_bwd_filter(cl, xf.data(), dyf.data());
        }
    } catch (...) {
        emu::diag(api, "%s", OOM);
    }
    if (cl.ws_bytes) memset(cl.ws, 0xff, cl.ws_bytes);
}

/* ---- the three calls' argument checks ---- */

struct Span {
    const char *what;
    const void *p;
    size_t bytes;
};

bool overlap(const Span &a, const Span &b) {
    if (!a.bytes || !b.bytes) return false;
    uintptr_t a0 = (uintptr_t)a.p, b0 = (uintptr_t)b.p;
    return a0 < b0 + b.bytes && b0 < a0 + a.bytes;
}

bool span_ok(const char *api, const Span &s, size_t es) {
    if (!s.p) {
        emu::diag(api, "%s is NULL", s.what);
        return false;
    }
    if (!emu::check_device(s.p, s.bytes, api, s.what)) return false;
    if ((uintptr_t)s.p % es) {
        emu::diag(api, "%s = %p is not aligned to its %zu-byte elements", s.what, s.p, es);
        return false;
    }
    return true;
}

cudnnStatus_t launch(Op op, cudnnHandle_t handle, const Problem &p, const void *alpha,
                     const void *in0, const char *name0, size_t bytes0, const void *in1,
                     const char *name1, size_t bytes1, int algo, void *workSpace,
                     size_t workSpaceSizeInBytes, const void *beta, void *out, const char *name_out,
                     size_t bytes_out) {
    const char *api = OP_API[op];
    if (!alpha || !beta) {
        emu::diag(api, "alpha or beta is NULL");
        return CUDNN_STATUS_BAD_PARAM;
    }
    const AlgoInfo *a = find_algo(op, algo, api);
    if (!a) return CUDNN_STATUS_BAD_PARAM;
    if (!a->implemented) {
        emu::diag(api, "algorithm %d is not implemented (as in cuDNN)", algo);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    const size_t need = ws_need(p, *a);
    if (workSpaceSizeInBytes < need) {
        emu::diag(api, "algorithm %d needs a %zu-byte workspace, %zu given", algo, need,
                  workSpaceSizeInBytes);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (!workSpace && workSpaceSizeInBytes) {
        emu::diag(api, "workSpace is NULL with workSpaceSizeInBytes %zu", workSpaceSizeInBytes);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (workSpaceSizeInBytes &&
        !emu::check_device(workSpace, workSpaceSizeInBytes, api, "workspace"))
        return CUDNN_STATUS_BAD_PARAM;
    const Span s0 = {name0, in0, bytes0}, s1 = {name1, in1, bytes1},
               so = {name_out, out, bytes_out};
    const Span sw = {"workspace", workSpace, need};
    if (!span_ok(api, s0, p.es) || !span_ok(api, s1, p.es) || !span_ok(api, so, p.es))
        return CUDNN_STATUS_BAD_PARAM;
    const Span *pairs[][2] = {{&so, &s0}, {&so, &s1}, {&sw, &s0}, {&sw, &s1}, {&sw, &so}};
    for (auto &pr : pairs)
        if (overlap(*pr[0], *pr[1])) {
            emu::diag(api, "%s [%p, +%zu) overlaps %s [%p, +%zu)", pr[0]->what, pr[0]->p,
                      pr[0]->bytes, pr[1]->what, pr[1]->p, pr[1]->bytes);
            return CUDNN_STATUS_BAD_PARAM;
        }
    Call cl;
    cl.op = op, cl.p = p;
    cl.in0 = in0, cl.in1 = in1, cl.out = out;
    cl.ws = workSpace, cl.ws_bytes = need;
    cl.alpha = *(const float *)alpha, cl.beta = *(const float *)beta;
    try {
        emu::enqueue(handle->stream, api, [cl] { run(cl); });
    } catch (...) {
        emu::diag(api, "could not queue the convolution");
        return CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    }
    return CUDNN_STATUS_SUCCESS;
}

size_t tensor_bytes(const Problem &p, const Tens &t) {
    return (size_t)t.extent() * p.es;
}

size_t filter_bytes(const Problem &p) {
    return (size_t)p.w.count() * p.es;
}

/* ---- descriptor setters ---- */

cudnnStatus_t set_tensor(const char *api, cudnnTensorDescriptor_t d, cudnnTensorFormat_t fmt,
                         cudnnDataType_t dt, const int dim[4], const int *stride) {
    if (!live(d, K_TENSOR, api, "tensorDesc")) return CUDNN_STATUS_BAD_PARAM;
    if (!type_enum(dt)) {
        emu::diag(api, "data type %d is not a cudnnDataType_t", (int)dt);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (!type_size(dt)) {
        emu::diag(api, "data type %d is not emulated", (int)dt);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    if (!stride && fmt != CUDNN_TENSOR_NCHW && fmt != CUDNN_TENSOR_NHWC) {
        emu::diag(api, "format %d: only NCHW and NHWC are emulated", (int)fmt);
        return fmt == CUDNN_TENSOR_NCHW_VECT_C ? CUDNN_STATUS_NOT_SUPPORTED
                                               : CUDNN_STATUS_BAD_PARAM;
    }
    int64_t total = 1;
    for (int i = 0; i < 4; i++) {
        if (dim[i] <= 0 || (stride && stride[i] <= 0)) {
            emu::diag(api, "dimension %d is %d, stride %d: both must be > 0", i, dim[i],
                      stride ? stride[i] : 1);
            return CUDNN_STATUS_BAD_PARAM;
        }
        total *= dim[i];
    }
    if (total > INT_MAX) {
        emu::diag(api, "%lld elements: more than cuDNN's 2^31 - 1", (long long)total);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    const int c = dim[1], h = dim[2], w = dim[3];
    int st[4];
    if (stride)
        memcpy(st, stride, sizeof st);
    else if (fmt == CUDNN_TENSOR_NHWC)
        st[0] = h * w * c, st[1] = 1, st[2] = w * c, st[3] = c;
    else
        st[0] = c * h * w, st[1] = h * w, st[2] = w, st[3] = 1;
    if (stride) /* the format a stride set matches (NCHW when it matches neither) */
        fmt = st[1] == 1 && st[3] == c && st[2] == w * c && st[0] == h * w * c && c > 1
                  ? CUDNN_TENSOR_NHWC
                  : CUDNN_TENSOR_NCHW;
    d->set = true, d->dt = dt, d->fmt = fmt;
    memcpy(d->dim, dim, sizeof d->dim);
    memcpy(d->stride, st, sizeof d->stride);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t set_filter(const char *api, cudnnFilterDescriptor_t d, cudnnDataType_t dt,
                         cudnnTensorFormat_t fmt, const int dim[4]) {
    if (!live(d, K_FILTER, api, "filterDesc")) return CUDNN_STATUS_BAD_PARAM;
    if (!type_enum(dt)) {
        emu::diag(api, "data type %d is not a cudnnDataType_t", (int)dt);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (!type_size(dt)) {
        emu::diag(api, "data type %d is not emulated", (int)dt);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    if (fmt != CUDNN_TENSOR_NCHW && fmt != CUDNN_TENSOR_NHWC) {
        emu::diag(api, "format %d: only NCHW (KCRS) and NHWC (KRSC) are emulated", (int)fmt);
        return fmt == CUDNN_TENSOR_NCHW_VECT_C ? CUDNN_STATUS_NOT_SUPPORTED
                                               : CUDNN_STATUS_BAD_PARAM;
    }
    int64_t total = 1;
    for (int i = 0; i < 4; i++) {
        if (dim[i] <= 0) {
            emu::diag(api, "dimension %d is %d: must be > 0", i, dim[i]);
            return CUDNN_STATUS_BAD_PARAM;
        }
        total *= dim[i];
    }
    if (total > INT_MAX) {
        emu::diag(api, "%lld elements: more than cuDNN's 2^31 - 1", (long long)total);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    d->set = true, d->dt = dt, d->fmt = fmt;
    d->k = dim[0], d->c = dim[1], d->r = dim[2], d->s = dim[3];
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t set_conv(const char *api, cudnnConvolutionDescriptor_t d, const int pad[2],
                       const int stride[2], const int dil[2], cudnnConvolutionMode_t mode,
                       cudnnDataType_t compute) {
    if (!live(d, K_CONV, api, "convDesc")) return CUDNN_STATUS_BAD_PARAM;
    for (int i = 0; i < 2; i++)
        if (pad[i] < 0 || stride[i] <= 0 || dil[i] <= 0) {
            emu::diag(api, "pad %d, stride %d, dilation %d: pads must be >= 0, the others > 0",
                      pad[i], stride[i], dil[i]);
            return CUDNN_STATUS_BAD_PARAM;
        }
    if (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION) {
        emu::diag(api, "mode %d is not a cudnnConvolutionMode_t", (int)mode);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (!type_enum(compute)) {
        emu::diag(api, "compute type %d is not a cudnnDataType_t", (int)compute);
        return CUDNN_STATUS_BAD_PARAM;
    }
    d->set = true;
    d->pad_h = pad[0], d->pad_w = pad[1], d->u = stride[0], d->v = stride[1];
    d->dil_h = dil[0], d->dil_w = dil[1];
    d->mode = mode, d->compute = compute;
    return CUDNN_STATUS_SUCCESS;
}

bool conv_ready(const char *api, const cudnnConvolutionStruct *d) {
    if (!live(d, K_CONV, api, "convDesc")) return false;
    if (!d->set) emu::diag(api, "the convolution descriptor was never set");
    return d->set;
}

} // namespace

extern "C" {

/* ---- library and handle ---- */

size_t CUDNNWINAPI cudnnGetVersion(void) {
    return CUDNN_VERSION;
}

size_t CUDNNWINAPI cudnnGetCudartVersion(void) {
    return CUDART_VERSION;
}

const char *CUDNNWINAPI cudnnGetErrorString(cudnnStatus_t status) {
    switch ((int)status) {
#define NAME(s)                                                                                    \
    case s:                                                                                        \
        return #s;
        NAME(CUDNN_STATUS_SUCCESS)
        NAME(CUDNN_STATUS_NOT_INITIALIZED)
        NAME(CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH)
        NAME(CUDNN_STATUS_SERIALIZATION_VERSION_MISMATCH)
        NAME(CUDNN_STATUS_DEPRECATED)
        NAME(CUDNN_STATUS_LICENSE_ERROR)
        NAME(CUDNN_STATUS_RUNTIME_IN_PROGRESS)
        NAME(CUDNN_STATUS_RUNTIME_FP_OVERFLOW)
        NAME(CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED)
        NAME(CUDNN_STATUS_BAD_PARAM)
        NAME(CUDNN_STATUS_BAD_PARAM_NULL_POINTER)
        NAME(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER)
        NAME(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED)
        NAME(CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND)
        NAME(CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT)
        NAME(CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH)
        NAME(CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH)
        NAME(CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES)
        NAME(CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE)
        NAME(CUDNN_STATUS_BAD_PARAM_CUDA_GRAPH_MISMATCH)
        NAME(CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE)
        NAME(CUDNN_STATUS_NOT_SUPPORTED)
        NAME(CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN)
        NAME(CUDNN_STATUS_NOT_SUPPORTED_SHAPE)
        NAME(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE)
        NAME(CUDNN_STATUS_NOT_SUPPORTED_LAYOUT)
        NAME(CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER)
        NAME(CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDART)
        NAME(CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH)
        NAME(CUDNN_STATUS_NOT_SUPPORTED_RUNTIME_PREREQUISITE_MISSING)
        NAME(CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE)
        NAME(CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT)
        NAME(CUDNN_STATUS_NOT_SUPPORTED_PADDING)
        NAME(CUDNN_STATUS_NOT_SUPPORTED_BAD_LAUNCH_PARAM)
        NAME(CUDNN_STATUS_NOT_SUPPORTED_CUDA_GRAPH_NATIVE_API)
        NAME(CUDNN_STATUS_NOT_SUPPORTED_INVALID_DYNAMIC_SHAPE)
        NAME(CUDNN_STATUS_INTERNAL_ERROR)
        NAME(CUDNN_STATUS_INTERNAL_ERROR_COMPILATION_FAILED)
        NAME(CUDNN_STATUS_INTERNAL_ERROR_UNEXPECTED_VALUE)
        NAME(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED)
        NAME(CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
        NAME(CUDNN_STATUS_INTERNAL_ERROR_BAD_LAUNCH_PARAM)
        NAME(CUDNN_STATUS_INTERNAL_ERROR_TEXTURE_CREATION_FAILED)
        NAME(CUDNN_STATUS_EXECUTION_FAILED)
        NAME(CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER)
        NAME(CUDNN_STATUS_EXECUTION_FAILED_CUBLAS)
        NAME(CUDNN_STATUS_EXECUTION_FAILED_CUDART)
        NAME(CUDNN_STATUS_EXECUTION_FAILED_CURAND)
#undef NAME
    case 2001:
        return "CUDNN_STATUS_INVALID_VALUE";
    }
    return "CUDNN_UNKNOWN_STATUS_FOUND";
}

cudnnStatus_t CUDNNWINAPI cudnnCreate(cudnnHandle_t *handle) {
    if (handle) *handle = NULL;
    if (handle && !emu::device_visible()) {
        emu::diag("cudnnCreate", "no device (FT_CUDA_EMU=1 is not set)");
        return CUDNN_STATUS_NOT_INITIALIZED;
    }
    return create(handle, K_HANDLE, "cudnnCreate");
}

cudnnStatus_t CUDNNWINAPI cudnnDestroy(cudnnHandle_t handle) {
    if (!handle) {
        emu::diag("cudnnDestroy", "handle is NULL");
        return CUDNN_STATUS_BAD_PARAM;
    }
    return destroy(handle, K_HANDLE, "cudnnDestroy");
}

cudnnStatus_t CUDNNWINAPI cudnnSetStream(cudnnHandle_t handle, cudaStream_t streamId) {
    if (!live(handle, K_HANDLE, "cudnnSetStream", "handle")) return CUDNN_STATUS_BAD_PARAM;
    handle->stream = streamId;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetStream(cudnnHandle_t handle, cudaStream_t *streamId) {
    if (!live(handle, K_HANDLE, "cudnnGetStream", "handle") || !streamId)
        return CUDNN_STATUS_BAD_PARAM;
    *streamId = handle->stream;
    return CUDNN_STATUS_SUCCESS;
}

/* ---- tensor descriptors ---- */

cudnnStatus_t CUDNNWINAPI cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *tensorDesc) {
    return create(tensorDesc, K_TENSOR, "cudnnCreateTensorDescriptor");
}

cudnnStatus_t CUDNNWINAPI cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t tensorDesc) {
    return destroy(tensorDesc, K_TENSOR, "cudnnDestroyTensorDescriptor");
}

cudnnStatus_t CUDNNWINAPI cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t tensorDesc,
                                                     cudnnTensorFormat_t format,
                                                     cudnnDataType_t dataType, int n, int c, int h,
                                                     int w) {
    const int dim[4] = {n, c, h, w};
    return set_tensor("cudnnSetTensor4dDescriptor", tensorDesc, format, dataType, dim, NULL);
}

cudnnStatus_t CUDNNWINAPI cudnnSetTensor4dDescriptorEx(cudnnTensorDescriptor_t tensorDesc,
                                                       cudnnDataType_t dataType, int n, int c,
                                                       int h, int w, int nStride, int cStride,
                                                       int hStride, int wStride) {
    const int dim[4] = {n, c, h, w}, st[4] = {nStride, cStride, hStride, wStride};
    return set_tensor("cudnnSetTensor4dDescriptorEx", tensorDesc, CUDNN_TENSOR_NCHW, dataType, dim,
                      st);
}

cudnnStatus_t CUDNNWINAPI cudnnGetTensor4dDescriptor(const cudnnTensorDescriptor_t tensorDesc,
                                                     cudnnDataType_t *dataType, int *n, int *c,
                                                     int *h, int *w, int *nStride, int *cStride,
                                                     int *hStride, int *wStride) {
    const char *api = "cudnnGetTensor4dDescriptor";
    if (!live(tensorDesc, K_TENSOR, api, "tensorDesc")) return CUDNN_STATUS_BAD_PARAM;
    if (!tensorDesc->set || !dataType || !n || !c || !h || !w || !nStride || !cStride || !hStride ||
        !wStride) {
        emu::diag(api, "descriptor never set or an output pointer is NULL");
        return CUDNN_STATUS_BAD_PARAM;
    }
    const cudnnTensorStruct *d = tensorDesc;
    *dataType = d->dt;
    *n = d->dim[0], *c = d->dim[1], *h = d->dim[2], *w = d->dim[3];
    *nStride = d->stride[0], *cStride = d->stride[1], *hStride = d->stride[2];
    *wStride = d->stride[3];
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnSetTensorNdDescriptor(cudnnTensorDescriptor_t tensorDesc,
                                                     cudnnDataType_t dataType, int nbDims,
                                                     const int dimA[], const int strideA[]) {
    const char *api = "cudnnSetTensorNdDescriptor";
    if (!dimA || !strideA) {
        emu::diag(api, "dimA or strideA is NULL");
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (nbDims != 4) {
        emu::diag(api, "nbDims %d: only 4 dimensions are emulated", nbDims);
        return nbDims < 3 || nbDims > CUDNN_DIM_MAX ? CUDNN_STATUS_BAD_PARAM
                                                    : CUDNN_STATUS_NOT_SUPPORTED;
    }
    return set_tensor(api, tensorDesc, CUDNN_TENSOR_NCHW, dataType, dimA, strideA);
}

cudnnStatus_t CUDNNWINAPI cudnnSetTensorNdDescriptorEx(cudnnTensorDescriptor_t tensorDesc,
                                                       cudnnTensorFormat_t format,
                                                       cudnnDataType_t dataType, int nbDims,
                                                       const int dimA[]) {
    const char *api = "cudnnSetTensorNdDescriptorEx";
    if (!dimA) {
        emu::diag(api, "dimA is NULL");
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (nbDims != 4) {
        emu::diag(api, "nbDims %d: only 4 dimensions are emulated", nbDims);
        return nbDims < 3 || nbDims > CUDNN_DIM_MAX ? CUDNN_STATUS_BAD_PARAM
                                                    : CUDNN_STATUS_NOT_SUPPORTED;
    }
    return set_tensor(api, tensorDesc, format, dataType, dimA, NULL);
}

cudnnStatus_t CUDNNWINAPI cudnnGetTensorNdDescriptor(const cudnnTensorDescriptor_t tensorDesc,
                                                     int nbDimsRequested, cudnnDataType_t *dataType,
                                                     int *nbDims, int dimA[], int strideA[]) {
    const char *api = "cudnnGetTensorNdDescriptor";
    if (!live(tensorDesc, K_TENSOR, api, "tensorDesc")) return CUDNN_STATUS_BAD_PARAM;
    if (!tensorDesc->set || nbDimsRequested < 0 || !dataType || !nbDims ||
        (nbDimsRequested > 0 && (!dimA || !strideA))) {
        emu::diag(api, "descriptor never set, nbDimsRequested %d < 0 or an output is NULL",
                  nbDimsRequested);
        return CUDNN_STATUS_BAD_PARAM;
    }
    *dataType = tensorDesc->dt;
    *nbDims = 4;
    for (int i = 0; i < std::min(nbDimsRequested, 4); i++)
        dimA[i] = tensorDesc->dim[i], strideA[i] = tensorDesc->stride[i];
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetTensorSizeInBytes(const cudnnTensorDescriptor_t tensorDesc,
                                                    size_t *size) {
    const char *api = "cudnnGetTensorSizeInBytes";
    if (!live(tensorDesc, K_TENSOR, api, "tensorDesc")) return CUDNN_STATUS_BAD_PARAM;
    if (!tensorDesc->set || !size) {
        emu::diag(api, "descriptor never set or size is NULL");
        return CUDNN_STATUS_BAD_PARAM;
    }
    *size = (size_t)tens_of(tensorDesc).extent() * type_size(tensorDesc->dt);
    return CUDNN_STATUS_SUCCESS;
}

/* ---- filter descriptors ---- */

cudnnStatus_t CUDNNWINAPI cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *filterDesc) {
    return create(filterDesc, K_FILTER, "cudnnCreateFilterDescriptor");
}

cudnnStatus_t CUDNNWINAPI cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t filterDesc) {
    return destroy(filterDesc, K_FILTER, "cudnnDestroyFilterDescriptor");
}

cudnnStatus_t CUDNNWINAPI cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t filterDesc,
                                                     cudnnDataType_t dataType,
                                                     cudnnTensorFormat_t format, int k, int c,
                                                     int h, int w) {
    const int dim[4] = {k, c, h, w};
    return set_filter("cudnnSetFilter4dDescriptor", filterDesc, dataType, format, dim);
}

cudnnStatus_t CUDNNWINAPI cudnnGetFilter4dDescriptor(const cudnnFilterDescriptor_t filterDesc,
                                                     cudnnDataType_t *dataType,
                                                     cudnnTensorFormat_t *format, int *k, int *c,
                                                     int *h, int *w) {
    const char *api = "cudnnGetFilter4dDescriptor";
    if (!live(filterDesc, K_FILTER, api, "filterDesc")) return CUDNN_STATUS_BAD_PARAM;
    if (!filterDesc->set || !dataType || !format || !k || !c || !h || !w) {
        emu::diag(api, "descriptor never set or an output pointer is NULL");
        return CUDNN_STATUS_BAD_PARAM;
    }
    *dataType = filterDesc->dt, *format = filterDesc->fmt;
    *k = filterDesc->k, *c = filterDesc->c, *h = filterDesc->r, *w = filterDesc->s;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnSetFilterNdDescriptor(cudnnFilterDescriptor_t filterDesc,
                                                     cudnnDataType_t dataType,
                                                     cudnnTensorFormat_t format, int nbDims,
                                                     const int filterDimA[]) {
    const char *api = "cudnnSetFilterNdDescriptor";
    if (!filterDimA) {
        emu::diag(api, "filterDimA is NULL");
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (nbDims != 4) {
        emu::diag(api, "nbDims %d: only 4 dimensions are emulated", nbDims);
        return nbDims < 3 || nbDims > CUDNN_DIM_MAX ? CUDNN_STATUS_BAD_PARAM
                                                    : CUDNN_STATUS_NOT_SUPPORTED;
    }
    return set_filter(api, filterDesc, dataType, format, filterDimA);
}

cudnnStatus_t CUDNNWINAPI cudnnGetFilterNdDescriptor(const cudnnFilterDescriptor_t filterDesc,
                                                     int nbDimsRequested, cudnnDataType_t *dataType,
                                                     cudnnTensorFormat_t *format, int *nbDims,
                                                     int filterDimA[]) {
    const char *api = "cudnnGetFilterNdDescriptor";
    if (!live(filterDesc, K_FILTER, api, "filterDesc")) return CUDNN_STATUS_BAD_PARAM;
    if (!filterDesc->set || nbDimsRequested < 0 || !dataType || !format || !nbDims ||
        (nbDimsRequested > 0 && !filterDimA)) {
        emu::diag(api, "descriptor never set, nbDimsRequested %d < 0 or an output is NULL",
                  nbDimsRequested);
        return CUDNN_STATUS_BAD_PARAM;
    }
    const int dim[4] = {filterDesc->k, filterDesc->c, filterDesc->r, filterDesc->s};
    *dataType = filterDesc->dt, *format = filterDesc->fmt, *nbDims = 4;
    for (int i = 0; i < std::min(nbDimsRequested, 4); i++) filterDimA[i] = dim[i];
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetFilterSizeInBytes(const cudnnFilterDescriptor_t filterDesc,
                                                    size_t *size) {
    const char *api = "cudnnGetFilterSizeInBytes";
    if (!live(filterDesc, K_FILTER, api, "filterDesc")) return CUDNN_STATUS_BAD_PARAM;
    if (!filterDesc->set || !size) {
        emu::diag(api, "descriptor never set or size is NULL");
        return CUDNN_STATUS_BAD_PARAM;
    }
    *size = (size_t)filt_of(filterDesc).count() * type_size(filterDesc->dt);
    return CUDNN_STATUS_SUCCESS;
}

/* ---- convolution descriptors ---- */

cudnnStatus_t CUDNNWINAPI cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *convDesc) {
    cudnnStatus_t st = create(convDesc, K_CONV, "cudnnCreateConvolutionDescriptor");
    if (st == CUDNN_STATUS_SUCCESS) {
        (*convDesc)->math = CUDNN_DEFAULT_MATH;
        (*convDesc)->groups = 1;
        (*convDesc)->mode = CUDNN_CROSS_CORRELATION;
        (*convDesc)->compute = CUDNN_DATA_FLOAT;
    }
    return st;
}

cudnnStatus_t CUDNNWINAPI cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t convDesc) {
    return destroy(convDesc, K_CONV, "cudnnDestroyConvolutionDescriptor");
}

cudnnStatus_t CUDNNWINAPI cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t convDesc,
                                                      cudnnMathType_t mathType) {
    const char *api = "cudnnSetConvolutionMathType";
    if (!live(convDesc, K_CONV, api, "convDesc")) return CUDNN_STATUS_BAD_PARAM;
    if (mathType != CUDNN_DEFAULT_MATH && mathType != CUDNN_TENSOR_OP_MATH &&
        mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION && mathType != CUDNN_FMA_MATH) {
        emu::diag(api, "math type %d is not a cudnnMathType_t", (int)mathType);
        return CUDNN_STATUS_BAD_PARAM;
    }
    convDesc->math = mathType;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionMathType(cudnnConvolutionDescriptor_t convDesc,
                                                      cudnnMathType_t *mathType) {
    if (!live(convDesc, K_CONV, "cudnnGetConvolutionMathType", "convDesc") || !mathType)
        return CUDNN_STATUS_BAD_PARAM;
    *mathType = convDesc->math;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t convDesc,
                                                        int groupCount) {
    const char *api = "cudnnSetConvolutionGroupCount";
    if (!live(convDesc, K_CONV, api, "convDesc")) return CUDNN_STATUS_BAD_PARAM;
    if (groupCount < 1) {
        emu::diag(api, "group count %d < 1", groupCount);
        return CUDNN_STATUS_BAD_PARAM;
    }
    convDesc->groups = groupCount; /* != 1 is refused where a convolution uses it */
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionGroupCount(cudnnConvolutionDescriptor_t convDesc,
                                                        int *groupCount) {
    if (!live(convDesc, K_CONV, "cudnnGetConvolutionGroupCount", "convDesc") || !groupCount)
        return CUDNN_STATUS_BAD_PARAM;
    *groupCount = convDesc->groups;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t convDesc,
                                                          int pad_h, int pad_w, int u, int v,
                                                          int dilation_h, int dilation_w,
                                                          cudnnConvolutionMode_t mode,
                                                          cudnnDataType_t computeType) {
    const int pad[2] = {pad_h, pad_w}, stride[2] = {u, v}, dil[2] = {dilation_h, dilation_w};
    return set_conv("cudnnSetConvolution2dDescriptor", convDesc, pad, stride, dil, mode,
                    computeType);
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolution2dDescriptor(
    const cudnnConvolutionDescriptor_t convDesc, int *pad_h, int *pad_w, int *u, int *v,
    int *dilation_h, int *dilation_w, cudnnConvolutionMode_t *mode, cudnnDataType_t *computeType) {
    const char *api = "cudnnGetConvolution2dDescriptor";
    if (!conv_ready(api, convDesc)) return CUDNN_STATUS_BAD_PARAM;
    if (!pad_h || !pad_w || !u || !v || !dilation_h || !dilation_w || !mode || !computeType) {
        emu::diag(api, "an output pointer is NULL");
        return CUDNN_STATUS_BAD_PARAM;
    }
    *pad_h = convDesc->pad_h, *pad_w = convDesc->pad_w, *u = convDesc->u, *v = convDesc->v;
    *dilation_h = convDesc->dil_h, *dilation_w = convDesc->dil_w;
    *mode = convDesc->mode, *computeType = convDesc->compute;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnSetConvolutionNdDescriptor(cudnnConvolutionDescriptor_t convDesc,
                                                          int arrayLength, const int padA[],
                                                          const int filterStrideA[],
                                                          const int dilationA[],
                                                          cudnnConvolutionMode_t mode,
                                                          cudnnDataType_t computeType) {
    const char *api = "cudnnSetConvolutionNdDescriptor";
    if (!padA || !filterStrideA || !dilationA) {
        emu::diag(api, "padA, filterStrideA or dilationA is NULL");
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (arrayLength != 2) {
        emu::diag(api, "arrayLength %d: only 2-D convolutions are emulated", arrayLength);
        return arrayLength < 1 || arrayLength > CUDNN_DIM_MAX - 2 ? CUDNN_STATUS_BAD_PARAM
                                                                  : CUDNN_STATUS_NOT_SUPPORTED;
    }
    return set_conv(api, convDesc, padA, filterStrideA, dilationA, mode, computeType);
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionNdDescriptor(
    const cudnnConvolutionDescriptor_t convDesc, int arrayLengthRequested, int *arrayLength,
    int padA[], int strideA[], int dilationA[], cudnnConvolutionMode_t *mode,
    cudnnDataType_t *computeType) {
    const char *api = "cudnnGetConvolutionNdDescriptor";
    if (!conv_ready(api, convDesc)) return CUDNN_STATUS_BAD_PARAM;
    if (arrayLengthRequested < 0 || !arrayLength || !mode || !computeType ||
        (arrayLengthRequested > 0 && (!padA || !strideA || !dilationA))) {
        emu::diag(api, "arrayLengthRequested %d < 0 or an output pointer is NULL",
                  arrayLengthRequested);
        return CUDNN_STATUS_BAD_PARAM;
    }
    const int pad[2] = {convDesc->pad_h, convDesc->pad_w}, st[2] = {convDesc->u, convDesc->v};
    const int dil[2] = {convDesc->dil_h, convDesc->dil_w};
    for (int i = 0; i < std::min(arrayLengthRequested, 2); i++)
        padA[i] = pad[i], strideA[i] = st[i], dilationA[i] = dil[i];
    *arrayLength = 2, *mode = convDesc->mode, *computeType = convDesc->compute;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolution2dForwardOutputDim(
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t inputTensorDesc,
    const cudnnFilterDescriptor_t filterDesc, int *n, int *c, int *h, int *w) {
    const char *api = "cudnnGetConvolution2dForwardOutputDim";
    if (!conv_ready(api, convDesc) || !live(inputTensorDesc, K_TENSOR, api, "inputTensorDesc") ||
        !live(filterDesc, K_FILTER, api, "filterDesc"))
        return CUDNN_STATUS_BAD_PARAM;
    if (!inputTensorDesc->set || !filterDesc->set || !n || !c || !h || !w) {
        emu::diag(api, "a descriptor was never set or an output pointer is NULL");
        return CUDNN_STATUS_BAD_PARAM;
    }
    if ((int64_t)inputTensorDesc->dim[1] != (int64_t)filterDesc->c * convDesc->groups) {
        emu::diag(api, "the input has %d channels, the filter %d (group count %d)",
                  inputTensorDesc->dim[1], filterDesc->c, convDesc->groups);
        return CUDNN_STATUS_BAD_PARAM;
    }
    int oh, ow;
    if (!out_dims(convDesc, inputTensorDesc, filterDesc, &oh, &ow)) {
        emu::diag(api, "the filter is larger than the padded input");
        return CUDNN_STATUS_BAD_PARAM;
    }
    *n = inputTensorDesc->dim[0], *c = filterDesc->k, *h = oh, *w = ow;
    return CUDNN_STATUS_SUCCESS;
}

/* ---- algorithm heuristics and workspace sizes ---- */

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionForwardAlgorithmMaxCount(cudnnHandle_t handle,
                                                                      int *count) {
    if (!live(handle, K_HANDLE, "cudnnGetConvolutionForwardAlgorithmMaxCount", "handle") || !count)
        return CUDNN_STATUS_BAD_PARAM;
    *count = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t handle,
                                                                           int *count) {
    if (!live(handle, K_HANDLE, "cudnnGetConvolutionBackwardDataAlgorithmMaxCount", "handle") ||
        !count)
        return CUDNN_STATUS_BAD_PARAM;
    *count = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnnHandle_t handle,
                                                                             int *count) {
    if (!live(handle, K_HANDLE, "cudnnGetConvolutionBackwardFilterAlgorithmMaxCount", "handle") ||
        !count)
        return CUDNN_STATUS_BAD_PARAM;
    *count = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionForwardAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
    const cudnnFilterDescriptor_t filterDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t destDesc, const int requestedAlgoCount, int *returnedAlgoCount,
    cudnnConvolutionFwdAlgoPerf_t *perfResults) {
    const char *api = "cudnnGetConvolutionForwardAlgorithm_v7";
    Problem p = {};
    cudnnStatus_t st =
        make_problem(api, handle, srcDesc, "xDesc", filterDesc, convDesc, destDesc, "yDesc", &p);
    return heuristics<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
        FWD, api, st, p, requestedAlgoCount, returnedAlgoCount, perfResults);
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t filterDesc,
    const cudnnTensorDescriptor_t diffDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t gradDesc, const int requestedAlgoCount, int *returnedAlgoCount,
    cudnnConvolutionBwdDataAlgoPerf_t *perfResults) {
    const char *api = "cudnnGetConvolutionBackwardDataAlgorithm_v7";
    Problem p = {};
    cudnnStatus_t st =
        make_problem(api, handle, gradDesc, "dxDesc", filterDesc, convDesc, diffDesc, "dyDesc", &p);
    return heuristics<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
        BWD_DATA, api, st, p, requestedAlgoCount, returnedAlgoCount, perfResults);
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
    const cudnnTensorDescriptor_t diffDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnFilterDescriptor_t gradDesc, const int requestedAlgoCount, int *returnedAlgoCount,
    cudnnConvolutionBwdFilterAlgoPerf_t *perfResults) {
    const char *api = "cudnnGetConvolutionBackwardFilterAlgorithm_v7";
    Problem p = {};
    cudnnStatus_t st =
        make_problem(api, handle, srcDesc, "xDesc", gradDesc, convDesc, diffDesc, "dyDesc", &p);
    return heuristics<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
        BWD_FILTER, api, st, p, requestedAlgoCount, returnedAlgoCount, perfResults);
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionForwardWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const cudnnFilterDescriptor_t wDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t yDesc,
    cudnnConvolutionFwdAlgo_t algo, size_t *sizeInBytes) {
    const char *api = "cudnnGetConvolutionForwardWorkspaceSize";
    Problem p = {};
    cudnnStatus_t st =
        make_problem(api, handle, xDesc, "xDesc", wDesc, convDesc, yDesc, "yDesc", &p);
    return ws_size(FWD, api, st, p, (int)algo, sizeInBytes);
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc, const cudnnTensorDescriptor_t dyDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t dxDesc,
    cudnnConvolutionBwdDataAlgo_t algo, size_t *sizeInBytes) {
    const char *api = "cudnnGetConvolutionBackwardDataWorkspaceSize";
    Problem p = {};
    cudnnStatus_t st =
        make_problem(api, handle, dxDesc, "dxDesc", wDesc, convDesc, dyDesc, "dyDesc", &p);
    return ws_size(BWD_DATA, api, st, p, (int)algo, sizeInBytes);
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const cudnnTensorDescriptor_t dyDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnFilterDescriptor_t gradDesc,
    cudnnConvolutionBwdFilterAlgo_t algo, size_t *sizeInBytes) {
    const char *api = "cudnnGetConvolutionBackwardFilterWorkspaceSize";
    Problem p = {};
    cudnnStatus_t st =
        make_problem(api, handle, xDesc, "xDesc", gradDesc, convDesc, dyDesc, "dyDesc", &p);
    return ws_size(BWD_FILTER, api, st, p, (int)algo, sizeInBytes);
}

/* ---- the convolutions ---- */

cudnnStatus_t CUDNNWINAPI cudnnConvolutionForward(
    cudnnHandle_t handle, const void *alpha, const cudnnTensorDescriptor_t xDesc, const void *x,
    const cudnnFilterDescriptor_t wDesc, const void *w, const cudnnConvolutionDescriptor_t convDesc,
    cudnnConvolutionFwdAlgo_t algo, void *workSpace, size_t workSpaceSizeInBytes, const void *beta,
    const cudnnTensorDescriptor_t yDesc, void *y) {
    const char *api = OP_API[FWD];
    Problem p = {};
    cudnnStatus_t st =
        make_problem(api, handle, xDesc, "xDesc", wDesc, convDesc, yDesc, "yDesc", &p);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    return launch(FWD, handle, p, alpha, x, "x", tensor_bytes(p, p.x), w, "w", filter_bytes(p),
                  (int)algo, workSpace, workSpaceSizeInBytes, beta, y, "y", tensor_bytes(p, p.y));
}

cudnnStatus_t CUDNNWINAPI cudnnConvolutionBackwardData(
    cudnnHandle_t handle, const void *alpha, const cudnnFilterDescriptor_t wDesc, const void *w,
    const cudnnTensorDescriptor_t dyDesc, const void *dy,
    const cudnnConvolutionDescriptor_t convDesc, cudnnConvolutionBwdDataAlgo_t algo,
    void *workSpace, size_t workSpaceSizeInBytes, const void *beta,
    const cudnnTensorDescriptor_t dxDesc, void *dx) {
    const char *api = OP_API[BWD_DATA];
    Problem p = {};
    cudnnStatus_t st =
        make_problem(api, handle, dxDesc, "dxDesc", wDesc, convDesc, dyDesc, "dyDesc", &p);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    return launch(BWD_DATA, handle, p, alpha, w, "w", filter_bytes(p), dy, "dy",
                  tensor_bytes(p, p.y), (int)algo, workSpace, workSpaceSizeInBytes, beta, dx, "dx",
                  tensor_bytes(p, p.x));
}

cudnnStatus_t CUDNNWINAPI cudnnConvolutionBackwardFilter(
    cudnnHandle_t handle, const void *alpha, const cudnnTensorDescriptor_t xDesc, const void *x,
    const cudnnTensorDescriptor_t dyDesc, const void *dy,
    const cudnnConvolutionDescriptor_t convDesc, cudnnConvolutionBwdFilterAlgo_t algo,
    void *workSpace, size_t workSpaceSizeInBytes, const void *beta,
    const cudnnFilterDescriptor_t dwDesc, void *dw) {
    const char *api = OP_API[BWD_FILTER];
    Problem p = {};
    cudnnStatus_t st =
        make_problem(api, handle, xDesc, "xDesc", dwDesc, convDesc, dyDesc, "dyDesc", &p);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    return launch(BWD_FILTER, handle, p, alpha, x, "x", tensor_bytes(p, p.x), dy, "dy",
                  tensor_bytes(p, p.y), (int)algo, workSpace, workSpaceSizeInBytes, beta, dw, "dw",
                  filter_bytes(p));
}

} /* extern "C" */
