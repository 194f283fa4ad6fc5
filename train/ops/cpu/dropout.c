/* dropout.c: inverted dropout on the CPU backend, any storage dtype. Element i (NCHW index) is
 * kept iff ft_km_dropout_keep(seed, i, p), so every backend draws the same mask. */
#include "ft_common.h"
#include "cpu.h"

enum { DROP_CHUNK = 2048 };

typedef struct drop_ctx {
    ft_ops *o;
    ft_dtype dt;
    size_t count;
    float p, inv;
    uint64_t seed;
    const void *x;
    void *y;
    uint8_t *mask;
    const uint8_t *cmask;
} drop_ctx;

static void drop_fwd_task(void *v, int tid, int nt) {
    drop_ctx *c = v;
    size_t lo, hi;
    cpu_range(c->count, tid, nt, &lo, &hi);
    float *bx = c->dt == FT_F32 ? NULL : cpu_scratch_get(c->o, tid, 0);
    float *by = c->dt == FT_F32 ? NULL : cpu_scratch_get(c->o, tid, 1);
    for (size_t i = lo; i < hi; i += DROP_CHUNK) {
        size_t n = hi - i < DROP_CHUNK ? hi - i : DROP_CHUNK;
        const float *x = cpu_ld(c->dt, c->x, i, n, bx);
        float *y = cpu_out(c->dt, c->y, i, by);
        for (size_t j = 0; j < n; j++) {
            int keep = ft_km_dropout_keep(c->seed, i + j, c->p);
            c->mask[i + j] = (uint8_t)keep;
            y[j] = keep ? x[j] * c->inv : 0.0f;
        }
        cpu_put(c->dt, c->y, i, n, y);
    }
}
static void drop_bwd_task(void *v, int tid, int nt) {
    drop_ctx *c = v;
    size_t lo, hi;
    cpu_range(c->count, tid, nt, &lo, &hi);
    float *bx = c->dt == FT_F32 ? NULL : cpu_scratch_get(c->o, tid, 0);
    float *by = c->dt == FT_F32 ? NULL : cpu_scratch_get(c->o, tid, 1);
    for (size_t i = lo; i < hi; i += DROP_CHUNK) {
        size_t n = hi - i < DROP_CHUNK ? hi - i : DROP_CHUNK;
        const float *dy = cpu_ld(c->dt, c->x, i, n, bx);
        float *dx = cpu_out(c->dt, c->y, i, by);
        for (size_t j = 0; j < n; j++) dx[j] = c->cmask[i + j] ? dy[j] * c->inv : 0.0f;
        cpu_put(c->dt, c->y, i, n, dx);
    }
}

static int drop_run(ft_ops *o, drop_ctx *c, cpu_task_fn fn) {
    if (!cpu_float_dt(c->dt)) return FT_ENOTSUP;
    if (!(c->p >= 0.0f && c->p < 1.0f)) return FT_EARG;
    if (c->p == 0.0f) return cpu_copy(o, c->y, c->x, c->count * cpu_esize(c->dt));
    int rc = c->dt == FT_F32 ? 0 : cpu_scratch_reserve(o, 2, DROP_CHUNK);
    if (rc) return rc;
    c->inv = 1.0f / (1.0f - c->p);
    cpu_run_sized(o, c->count, fn, c);
    return 0;
}

static int cpu_dropout_fwd(ft_ops *o, ft_dtype dt, int n, int ch, int hw, float p,
                           const uint64_t *seed, const void *x, void *y, uint8_t *mask) {
    if (n < 0 || ch < 0 || hw < 0 || !seed) return FT_EARG;
    size_t count = (size_t)n * ch * hw; /* NCHW: the memory index is the NCHW index */
    drop_ctx c = {
        .o = o, .dt = dt, .count = count, .p = p, .seed = *seed, .x = x, .y = y, .mask = mask};
    return drop_run(o, &c, drop_fwd_task);
}
static int cpu_dropout_bwd(ft_ops *o, ft_dtype dt, int n, int ch, int hw, float p,
                           const uint8_t *mask, const void *dy, void *dx) {
    if (n < 0 || ch < 0 || hw < 0) return FT_EARG;
    size_t count = (size_t)n * ch * hw;
    drop_ctx c = {.o = o, .dt = dt, .count = count, .p = p, .x = dy, .y = dx, .cmask = mask};
    return drop_run(o, &c, drop_bwd_task);
}

void cpu_install_dropout(ft_ops *o) {
    o->dropout_fwd = cpu_dropout_fwd;
    o->dropout_bwd = cpu_dropout_bwd;
}
