/* sgd.c: SGD with momentum and weight decay (torch.optim.SGD) on the CPU backend, over whole
 * tensors or over the sampled rows of the Partial FC centres. The per-element update is
 * ft_km_sgd (kmath.h); the SSE2 loop computes the same expression in the same order (no
 * contraction), so the result is bit-identical whichever path handles an element.
 */
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "cpu.h"

typedef struct sgd_ctx {
    size_t count;
    int rows, dim;
    const int32_t *idx;
    float lr, mom, wd;
    float *w, *buf;
    const float *g;
} sgd_ctx;

static inline void sgd_span(const sgd_ctx *c, size_t lo, size_t hi) {
    size_t i = lo;
#if defined(__SSE2__)
    __m128 lr = _mm_set1_ps(c->lr), mom = _mm_set1_ps(c->mom), wd = _mm_set1_ps(c->wd);
    for (; i + 4 <= hi; i += 4) {
        __m128 w = _mm_loadu_ps(c->w + i);
        __m128 d = _mm_add_ps(_mm_loadu_ps(c->g + i), _mm_mul_ps(wd, w));
        __m128 b = _mm_add_ps(_mm_mul_ps(mom, _mm_loadu_ps(c->buf + i)), d);
        _mm_storeu_ps(c->buf + i, b);
        _mm_storeu_ps(c->w + i, _mm_sub_ps(w, _mm_mul_ps(lr, b)));
    }
#endif
    for (; i < hi; i++) ft_km_sgd(&c->w[i], c->g[i], &c->buf[i], c->lr, c->mom, c->wd);
}
static void sgd_task(void *v, int tid, int nt) {
    sgd_ctx *c = v;
    size_t lo, hi;
    cpu_range(c->count, tid, nt, &lo, &hi);
    sgd_span(c, lo, hi);
}
static void sgd_rows_task(void *v, int tid, int nt) {
    sgd_ctx *c = v;
    size_t lo, hi;
    cpu_range((size_t)c->rows, tid, nt, &lo, &hi);
    for (size_t r = lo; r < hi; r++) {
        size_t base = (size_t)c->idx[r] * c->dim;
        sgd_span(c, base, base + (size_t)c->dim);
    }
}
static int cpu_sgd_update(ft_ops *o, size_t count, float lr, float mom, float wd, float *w,
                          const float *g, float *buf) {
    sgd_ctx c = {.count = count, .lr = lr, .mom = mom, .wd = wd, .w = w, .buf = buf, .g = g};
    cpu_run_sized(o, count, sgd_task, &c);
    return 0;
}
static int cpu_sgd_update_rows(ft_ops *o, int rows, int dim, const int32_t *idx, float lr,
                               float mom, float wd, float *w, const float *g, float *buf) {
    sgd_ctx c = {.rows = rows,
                 .dim = dim,
                 .idx = idx,
                 .lr = lr,
                 .mom = mom,
                 .wd = wd,
                 .w = w,
                 .buf = buf,
                 .g = g};
    cpu_run_sized(o, (size_t)rows * dim, sgd_rows_task, &c);
    return 0;
}

void cpu_install_sgd(ft_ops *o) {
    o->sgd_update = cpu_sgd_update;
    o->sgd_update_rows = cpu_sgd_update_rows;
}
