/* sample.c: Partial FC's class sampling on the CPU backend (ops.h pfc_sample): every class's
 * key from kmath.h, the count-th smallest by quickselect on a copy, then one ascending pass
 * that keeps the keys up to it. The CUDA twin (cuda/sample.cu) finds the same threshold by
 * radix select; the keys are distinct, so both keep the same rows.
 */
#include <string.h>

#include "cpu.h"
#include "ft_common.h"

/* the k-th smallest (0-based) of a[0..n), distinct values; a is reordered */
static uint64_t kth_smallest(uint64_t *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint64_t x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi];
        uint64_t p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int64_t i = lo, j = hi;
        while (i <= j) { /* Hoare: [lo, j] <= p <= [i, hi] */
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i <= j) {
                uint64_t t = a[i];
                a[i++] = a[j], a[j--] = t;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return a[k]; /* between the halves: the pivot itself */
    }
    return a[k];
}

static int cpu_pfc_sample(ft_ops *o, int64_t n, const uint64_t *seedp, int batch,
                          const int32_t *label, int count, int32_t *index, int32_t *label_out,
                          void *scratch) {
    (void)o;
    if (n < 1 || n > INT32_MAX || batch < 0 || count < 0 || count > n || !scratch || !seedp ||
        (batch && (!label || !label_out)) || (count && !index))
        return FT_EARG;
    uint64_t seed = *seedp;
    uint64_t *key = scratch, *sel = key + n;
    for (int64_t i = 0; i < n; i++) key[i] = ft_km_sample_key(seed, (uint32_t)i, 0);
    int64_t npos = 0;
    for (int r = 0; r < batch; r++) {
        int32_t l = label[r];
        if (l < -1 || l >= n) return FT_EARG;
        if (l < 0) continue;
        uint64_t pk = ft_km_sample_key(seed, (uint32_t)l, 1);
        if (key[l] != pk) key[l] = pk, npos++; /* a repeated positive counts once */
    }
    if (npos > count) return FT_EARG; /* every positive must be in the index */
    if (count) {
        memcpy(sel, key, (size_t)n * sizeof *sel);
        uint64_t thr = kth_smallest(sel, n, count - 1);
        int c = 0;
        for (int64_t i = 0; i < n; i++)
            if (key[i] <= thr) index[c++] = (int32_t)i;
    }
    /* label_out may be label: row r reads only its own entry */
    for (int r = 0; r < batch; r++)
        label_out[r] = label[r] < 0 ? -1 : ft_km_find_sorted(index, count, label[r]);
    return 0;
}

void cpu_install_sample(ft_ops *o) {
    o->pfc_sample = cpu_pfc_sample;
}
