/* multi.cu: the multi-tensor ops (ops.h, ft_tlist) in one launch per list: the optimizer's
 * zero / unscale + inf check / sum of squares / clip scale / SGD over every parameter tensor
 * of a model, instead of one launch per tensor. The CPU form is the per-tensor loop of ops.c
 * (ft_ops_fill_multi); each element gets the same kmath.h expression as the single-tensor
 * kernels (k_sgd, k_unscale, k_scale), so results are equal bit for bit; only the sum of
 * squares adds in another order.
 *
 * Decomposition: tlist_make cuts every tensor into chunks of CHUNK elements and uploads the
 * entries and a chunk table once; a kernel's block b takes chunks b, b + gridDim.x, ... and its
 * threads stride through a chunk. */
#include <errno.h>
#include <stdlib.h>

#include "cuda.h"

#define CHUNK 8192

typedef struct dev_entry {
    float *w, *g, *m;
    size_t numel;
} dev_entry;
typedef struct dev_chunk {
    int t;      /* entry */
    size_t off; /* first element of the chunk in the entry */
} dev_chunk;
typedef struct dev_list {
    dev_entry *e; /* device */
    dev_chunk *c; /* device */
    int nchunks;
} dev_list;

/* the elements i of chunk c's tensor, e the entry: for (...) body */
#define CHUNK_LOOP(E, I, body)                                                                     \
    for (int c_ = blockIdx.x; c_ < nchunks; c_ += gridDim.x) {                                     \
        const dev_entry E = ent[chunks[c_].t];                                                     \
        size_t end_ = chunks[c_].off + CHUNK < E.numel ? chunks[c_].off + CHUNK : E.numel;         \
        for (size_t I = chunks[c_].off + threadIdx.x; I < end_; I += blockDim.x) body              \
    }

static __global__ void k_mzero(const dev_entry *ent, const dev_chunk *chunks, int nchunks) {
    CHUNK_LOOP(e, i, { e.g[i] = 0.0f; })
}
static __global__ void k_mscale(const dev_entry *ent, const dev_chunk *chunks, int nchunks,
                                float alpha) {
    CHUNK_LOOP(e, i, { e.g[i] *= alpha; })
}
static __global__ void k_munscale(const dev_entry *ent, const dev_chunk *chunks, int nchunks,
                                  float inv, float *found) {
    int bad = 0;
    CHUNK_LOOP(e, i, {
        bad |= ft_km_nonfinite(e.g[i]);
        e.g[i] *= inv;
    })
    if (bad) *found = 1.0f; /* every writer stores the same value */
}
static __global__ void k_msgd(const dev_entry *ent, const dev_chunk *chunks, int nchunks, float lr,
                              float mom, float wd) {
    CHUNK_LOOP(e, i, { ft_km_sgd(&e.w[i], e.g[i], &e.m[i], lr, mom, wd); })
}
/* block b's partial sum of squares (blockDim.x == CUDA_RED) */
static __global__ void k_msumsq_part(const dev_entry *ent, const dev_chunk *chunks, int nchunks,
                                     double *part) {
    __shared__ double sh[CUDA_RED];
    double s = 0;
    CHUNK_LOOP(e, i, { s += (double)e.g[i] * e.g[i]; })
    s = cuda_block_sum(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}
static int list_fail(ft_tlist *t, dev_list *d, const char *call, cudaError_t e) {
    if (d) cudaFree(d->e), cudaFree(d->c), free(d);
    ft_tlist_host_free(t);
    return cuda_fail_(__FILE__, __LINE__, call, cudaGetErrorString(e));
}

static int cuda_tlist_make(ft_ops *o, int n, const ft_tentry *e, ft_tlist **out) {
    if (n < 0) return FT_EARG;
    ft_tlist *t;
    int rc = ft_tlist_host_make(n, e, &t);
    if (rc) return rc;
    size_t nch = 0;
    for (int i = 0; i < n; i++) nch += (e[i].numel + CHUNK - 1) / CHUNK;
    if (nch > (size_t)1 << 30) {
        ft_tlist_host_free(t);
        return FT_EARG;
    }
    dev_list *d = (dev_list *)calloc(1, sizeof *d);
    dev_entry *he = (dev_entry *)malloc((size_t)(n ? n : 1) * sizeof *he);
    dev_chunk *hc = (dev_chunk *)malloc((nch ? nch : 1) * sizeof *hc);
    if (!d || !he || !hc) {
        free(d), free(he), free(hc);
        ft_tlist_host_free(t);
        return -ENOMEM;
    }
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        he[i] = (dev_entry){e[i].w, e[i].g, e[i].m, e[i].numel};
        for (size_t off = 0; off < e[i].numel; off += CHUNK) hc[k++] = (dev_chunk){i, off};
    }
    d->nchunks = (int)nch;
    cudaStream_t s = cuda_of(o)->stream;
    cudaError_t ce = cudaMalloc((void **)&d->e, (size_t)(n ? n : 1) * sizeof *he);
    const char *call = "cudaMalloc";
    if (ce == cudaSuccess) ce = cudaMalloc((void **)&d->c, (nch ? nch : 1) * sizeof *hc);
    if (ce == cudaSuccess)
        call = "cudaMemcpyAsync",
        ce = cudaMemcpyAsync(d->e, he, (size_t)n * sizeof *he, cudaMemcpyHostToDevice, s);
    if (ce == cudaSuccess)
        ce = cudaMemcpyAsync(d->c, hc, nch * sizeof *hc, cudaMemcpyHostToDevice, s);
    /* the host tables are pageable and freed below: wait for the copies once, at make */
    if (ce == cudaSuccess) call = "cudaStreamSynchronize", ce = cudaStreamSynchronize(s);
    free(he), free(hc);
    if (ce != cudaSuccess) return list_fail(t, d, call, ce);
    t->impl = d;
    *out = t;
    return 0;
}

static void cuda_tlist_free(ft_ops *o, ft_tlist *t) {
    (void)o;
    if (!t) return;
    dev_list *d = (dev_list *)t->impl;
    if (d) cudaFree(d->e), cudaFree(d->c), free(d);
    ft_tlist_host_free(t);
}

static inline unsigned list_blocks(const dev_list *d, int cap) {
    return (unsigned)(d->nchunks < cap ? d->nchunks : cap);
}

static int cuda_multi_zero(ft_ops *o, const ft_tlist *t) {
    const dev_list *d = (const dev_list *)t->impl;
    if (!d->nchunks) return 0;
    CUDA_LAUNCH(k_mzero, list_blocks(d, CUDA_MAX_BLOCKS), CUDA_THREADS, cuda_of(o)->stream)
    (d->e, d->c, d->nchunks);
    CU_LAUNCHED();
    return 0;
}
static int cuda_multi_scale(ft_ops *o, const ft_tlist *t, float alpha) {
    const dev_list *d = (const dev_list *)t->impl;
    if (!d->nchunks) return 0;
    CUDA_LAUNCH(k_mscale, list_blocks(d, CUDA_MAX_BLOCKS), CUDA_THREADS, cuda_of(o)->stream)
    (d->e, d->c, d->nchunks, alpha);
    CU_LAUNCHED();
    return 0;
}
static int cuda_multi_unscale_check(ft_ops *o, const ft_tlist *t, float inv_scale, float *found) {
    const dev_list *d = (const dev_list *)t->impl;
    if (!d->nchunks) return 0;
    CUDA_LAUNCH(k_munscale, list_blocks(d, CUDA_MAX_BLOCKS), CUDA_THREADS, cuda_of(o)->stream)
    (d->e, d->c, d->nchunks, inv_scale, found);
    CU_LAUNCHED();
    return 0;
}
static int cuda_multi_sgd(ft_ops *o, const ft_tlist *t, float lr, float mom, float wd) {
    const dev_list *d = (const dev_list *)t->impl;
    if (!d->nchunks) return 0;
    CUDA_LAUNCH(k_msgd, list_blocks(d, CUDA_MAX_BLOCKS), CUDA_THREADS, cuda_of(o)->stream)
    (d->e, d->c, d->nchunks, lr, mom, wd);
    CU_LAUNCHED();
    return 0;
}
static int cuda_multi_sumsq_acc(ft_ops *o, const ft_tlist *t, double *acc) {
    cuda_backend *b = cuda_of(o);
    const dev_list *d = (const dev_list *)t->impl;
    if (!d->nchunks) return 0;
    /* at most 1024 parts in b->red (it holds CUDA_MAX_BLOCKS), read by k_macc_parts before
     * any later op on the stream reuses it */
    unsigned parts = list_blocks(d, 1024);
    CUDA_LAUNCH(k_msumsq_part, parts, CUDA_RED, b->stream)(d->e, d->c, d->nchunks, b->red);
    CU_LAUNCHED();
    return cuda_acc_parts(o, (int)parts, acc);
}

void cuda_install_multi(ft_ops *o) {
    o->tlist_make = cuda_tlist_make;
    o->tlist_free = cuda_tlist_free;
    o->multi_zero = cuda_multi_zero;
    o->multi_scale = cuda_multi_scale;
    o->multi_sumsq_acc = cuda_multi_sumsq_acc;
    o->multi_unscale_check = cuda_multi_unscale_check;
    o->multi_sgd = cuda_multi_sgd;
}
