/* memory.cu: the CUDA backend's memory slots. Device memory from cudaMalloc (256-byte
 * aligned); every copy is queued on the backend's stream, download waits for it, except
 * upload_ahead's, which run on the copy stream and are joined by an event. */
#include <errno.h>

#include "cuda.h"

static int cuda_alloc(ft_ops *o, size_t bytes, void **dev) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 64);
    if (e == cudaErrorMemoryAllocation) {
        size_t free_b = 0, total = 0;
        cudaMemGetInfo(&free_b, &total);
        fprintf(stderr, "ft_ops cuda: cannot allocate %.1f MiB: %.1f MiB of %.1f MiB free\n",
                (double)bytes / 1048576.0, (double)free_b / 1048576.0, (double)total / 1048576.0);
        cudaGetLastError(); /* clear the sticky-free error state */
        return -ENOMEM;
    }
    CU_CHECK(e);
    *dev = p;
    return 0;
}
static void cuda_free(ft_ops *o, void *dev) {
    if (!dev) return;
    cudaStreamSynchronize(cuda_of(o)->stream); /* queued work may still read it */
    cudaStreamSynchronize(cuda_of(o)->copy);   /* or a copy write it */
    cudaFree(dev);
}
static int cuda_upload(ft_ops *o, void *dst, const void *src, size_t bytes) {
    if (!bytes) return 0;
    /* pageable host memory: the copy is staged before cudaMemcpyAsync returns, so the caller
     * may reuse src at once; pinned memory (the loader's batches) overlaps with compute */
    CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cuda_of(o)->stream));
    return 0;
}
static int cuda_upload_ahead(ft_ops *o, void *dst, const void *src, size_t bytes) {
    if (!bytes) return 0;
    cuda_backend *b = cuda_of(o);
    CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, b->copy));
    CU_CHECK(cudaEventRecord(b->copied, b->copy));
    /* what is queued on stream from now on waits for the copy; what is queued already does
     * not, and runs beside it */
    CU_CHECK(cudaStreamWaitEvent(b->stream, b->copied, 0));
    return 0;
}
static int cuda_download(ft_ops *o, void *dst, const void *src, size_t bytes) {
    if (!bytes) return 0;
    cudaStream_t s = cuda_of(o)->stream;
    CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
    CU_CHECK(cudaStreamSynchronize(s));
    return 0;
}
static int cuda_copy(ft_ops *o, void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return 0;
    CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_of(o)->stream));
    return 0;
}
static int cuda_zero(ft_ops *o, void *dev, size_t bytes) {
    if (!bytes) return 0;
    CU_CHECK(cudaMemsetAsync(dev, 0, bytes, cuda_of(o)->stream));
    return 0;
}
static int cuda_sync(ft_ops *o) {
    CU_CHECK(cudaStreamSynchronize(cuda_of(o)->stream));
    return 0;
}

static int cuda_mem_info(ft_ops *o, size_t *free_bytes, size_t *total_bytes) {
    CU_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
    return 0;
}
static int cuda_host_alloc(ft_ops *o, size_t bytes, void **host) {
    void *p = NULL;
    cudaError_t e = cudaHostAlloc(&p, bytes ? bytes : 64, cudaHostAllocDefault);
    if (e == cudaErrorMemoryAllocation) {
        fprintf(stderr, "ft_ops cuda: cannot pin %.1f MiB of host memory\n",
                (double)bytes / 1048576.0);
        cudaGetLastError();
        return -ENOMEM;
    }
    CU_CHECK(e);
    *host = p;
    return 0;
}
static void cuda_host_free(ft_ops *o, void *host) {
    if (!host) return;
    cudaStreamSynchronize(cuda_of(o)->stream); /* a queued upload may still read it */
    cudaStreamSynchronize(cuda_of(o)->copy);
    cudaFreeHost(host);
}

void cuda_install_memory(ft_ops *o) {
    o->mem_info = cuda_mem_info;
    o->host_alloc = cuda_host_alloc;
    o->host_free = cuda_host_free;
    o->alloc = cuda_alloc;
    o->free = cuda_free;
    o->upload = cuda_upload;
    o->upload_ahead = cuda_upload_ahead;
    o->download = cuda_download;
    o->copy = cuda_copy;
    o->zero = cuda_zero;
    o->sync = cuda_sync;
}
