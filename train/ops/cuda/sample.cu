/* sample.cu: Partial FC's class sampling on the device (ops.h pfc_sample), so that a step
 * never waits for the host to draw its classes. The keys are kmath.h's ft_km_sample_key, as
 * on the CPU (cpu/sample.c); the count-th smallest is found by radix select (eight passes of
 * 8 bits from the top: a histogram of the keys that share the digits found so far, then one
 * thread picks the digit holding the wanted rank), and the rows with a key up to it are
 * written in ascending order by an ordered compaction (per-block counts, their exclusive scan
 * by one thread, a block scan of the flags). Keys are distinct, so exactly count rows are
 * kept, the CPU's rows. No host synchronization: count comes from the caller.
 *
 * Scratch (ft_ops_pfc_sample_scratch(n)): keys [n] u64 | state | histogram [256] u32 |
 * per-block counts [n / CUDA_RED + 1] u32.
 */
#include "cuda.h"

typedef struct sample_state {
    uint64_t prefix; /* the digits of the threshold found so far */
    uint32_t rank;   /* the threshold's rank among the keys that share them */
} sample_state;

#define SAMPLE_BINS 256

static __global__ void k_sample_keys(size_t n, const uint64_t *seed, uint64_t *key) {
    GRID_LOOP(i, n) key[i] = ft_km_sample_key(*seed, (uint32_t)i, 0);
}
/* several rows may name one class: they all write the same key */
static __global__ void k_sample_pos(int batch, const int32_t *label, const uint64_t *seed,
                                    uint64_t *key) {
    GRID_LOOP(r, (size_t)batch) {
        int32_t l = label[r];
        if (l >= 0) key[l] = ft_km_sample_key(*seed, (uint32_t)l, 1);
    }
}
static __global__ void k_sample_init(sample_state *st, uint32_t rank, uint32_t *hist) {
    st->prefix = 0, st->rank = rank;
    for (int b = 0; b < SAMPLE_BINS; b++) hist[b] = 0;
}
/* histogram of digit (key >> shift) & 255 over the keys whose higher digits are st->prefix's */
static __global__ void k_sample_hist(size_t n, const uint64_t *key, const sample_state *st,
                                     int shift, uint32_t *hist) {
    __shared__ uint32_t sh[SAMPLE_BINS];
    for (int b = threadIdx.x; b < SAMPLE_BINS; b += blockDim.x) sh[b] = 0;
    __syncthreads();
    uint64_t want = shift == 56 ? 0 : st->prefix >> (shift + 8);
    GRID_LOOP(i, n) {
        uint64_t k = key[i];
        if (shift == 56 || k >> (shift + 8) == want) atomicAdd(&sh[(k >> shift) & 255], 1u);
    }
    __syncthreads();
    for (int b = threadIdx.x; b < SAMPLE_BINS; b += blockDim.x)
        if (sh[b]) atomicAdd(&hist[b], sh[b]);
}
/* one thread: the digit whose bin holds st->rank; the histogram is cleared for the next pass */
static __global__ void k_sample_pick(sample_state *st, int shift, uint32_t *hist) {
    uint32_t cum = 0, rank = st->rank;
    int b = 0;
    for (; b < SAMPLE_BINS - 1 && rank >= cum + hist[b]; b++) cum += hist[b];
    st->prefix |= (uint64_t)b << shift;
    st->rank = rank - cum;
    for (int i = 0; i < SAMPLE_BINS; i++) hist[i] = 0;
}
/* block b (CUDA_RED threads): how many of keys [b * CUDA_RED, +CUDA_RED) are <= the threshold */
static __global__ void k_sample_count(size_t n, const uint64_t *key, const sample_state *st,
                                      uint32_t *counts) {
    __shared__ double sh[CUDA_RED];
    size_t i = (size_t)blockIdx.x * CUDA_RED + threadIdx.x;
    double s = cuda_block_sum(i < n && key[i] <= st->prefix ? 1.0 : 0.0, sh);
    if (threadIdx.x == 0) counts[blockIdx.x] = (uint32_t)s;
}
static __global__ void k_sample_scan(unsigned blocks, uint32_t *counts) {
    uint32_t run = 0;
    for (unsigned b = 0; b < blocks; b++) {
        uint32_t c = counts[b];
        counts[b] = run, run += c;
    }
}
/* block b writes its kept rows at counts[b] on, in order (an inclusive scan of the flags) */
static __global__ void k_sample_write(size_t n, const uint64_t *key, const sample_state *st,
                                      const uint32_t *counts, int32_t *index) {
    __shared__ uint32_t sh[2][CUDA_RED];
    int t = threadIdx.x, cur = 0;
    size_t i = (size_t)blockIdx.x * CUDA_RED + t;
    uint32_t flag = i < n && key[i] <= st->prefix;
    sh[0][t] = flag;
    __syncthreads();
    for (int d = 1; d < CUDA_RED; d <<= 1) {
        sh[cur ^ 1][t] = sh[cur][t] + (t >= d ? sh[cur][t - d] : 0);
        cur ^= 1;
        __syncthreads();
    }
    if (flag) index[counts[blockIdx.x] + sh[cur][t] - 1] = (int32_t)i;
}
/* label_out may be label: row r reads only its own entry */
static __global__ void k_sample_remap(int batch, const int32_t *label, const int32_t *index,
                                      int count, int32_t *label_out) {
    GRID_LOOP(r, (size_t)batch) {
        int32_t l = label[r];
        label_out[r] = l < 0 ? -1 : ft_km_find_sorted(index, count, l);
    }
}

static int cuda_pfc_sample(ft_ops *o, int64_t n, const uint64_t *seed, int batch,
                           const int32_t *label, int count, int32_t *index, int32_t *label_out,
                           void *scratch) {
    if (n < 1 || n > INT32_MAX || batch < 0 || count < 0 || count > n || !scratch || !seed ||
        (batch && (!label || !label_out)) || (count && !index))
        return FT_EARG;
    cudaStream_t s = cuda_of(o)->stream;
    size_t N = (size_t)n;
    unsigned blocks = (unsigned)((N + CUDA_RED - 1) / CUDA_RED);
    uint64_t *key = (uint64_t *)scratch;
    sample_state *st = (sample_state *)(key + N);
    uint32_t *hist = (uint32_t *)(st + 1), *counts = hist + SAMPLE_BINS;
    CUDA_LAUNCH(k_sample_keys, cuda_blocks(N), CUDA_THREADS, s)(N, seed, key);
    CU_LAUNCHED();
    if (batch) {
        CUDA_LAUNCH(k_sample_pos, cuda_blocks((size_t)batch), CUDA_THREADS, s)
        (batch, label, seed, key);
        CU_LAUNCHED();
    }
    if (count) {
        CUDA_LAUNCH(k_sample_init, 1, 1, s)(st, (uint32_t)(count - 1), hist);
        CU_LAUNCHED();
        for (int shift = 56; shift >= 0; shift -= 8) {
            CUDA_LAUNCH(k_sample_hist, cuda_blocks(N), CUDA_THREADS, s)(N, key, st, shift, hist);
            CU_LAUNCHED();
            CUDA_LAUNCH(k_sample_pick, 1, 1, s)(st, shift, hist);
            CU_LAUNCHED();
        }
        CUDA_LAUNCH(k_sample_count, blocks, CUDA_RED, s)(N, key, st, counts);
        CU_LAUNCHED();
        CUDA_LAUNCH(k_sample_scan, 1, 1, s)(blocks, counts);
        CU_LAUNCHED();
        CUDA_LAUNCH(k_sample_write, blocks, CUDA_RED, s)(N, key, st, counts, index);
        CU_LAUNCHED();
    }
    if (batch) {
        CUDA_LAUNCH(k_sample_remap, cuda_blocks((size_t)batch), CUDA_THREADS, s)
        (batch, label, index, count, label_out);
        CU_LAUNCHED();
    }
    return 0;
}

void cuda_install_sample(ft_ops *o) {
    o->pfc_sample = cuda_pfc_sample;
}
