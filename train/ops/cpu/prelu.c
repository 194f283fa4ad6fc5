/* prelu.c: PReLU (one slope per channel) on the CPU backend, any storage dtype; channels split
 * across the thread pool. The per-element expressions are kmath.h's.
 */
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "ft_common.h"
#include "cpu.h"

typedef struct prelu_ctx {
    ft_ops *o;
    ft_dtype dt;
    int n, c, hw;
    const void *x, *dy;
    void *y, *dx;
    const float *alpha;
    float *dalpha;
} prelu_ctx;

#define PLANE(ni, ci) (((size_t)(ni)*cx->c + (ci)) * cx->hw)
#define SCR(s)        (cx->dt == FT_F32 ? NULL : cpu_scratch_get(cx->o, tid, (s)))

/* The PReLU selects are written with SSE2 intrinsics: the compiler keeps them as branches,
 * which mispredict on activations of random sign. Each vector is loaded before it is stored,
 * so y == x (dx == dy) in place is fine. */
#if defined(__SSE2__)
/* y = x > 0 ? x : a * x */
static void plane_prelu(const float *x, float *y, int n, float a) {
    __m128 va = _mm_set1_ps(a), zero = _mm_setzero_ps();
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        __m128 t = _mm_loadu_ps(x + j), pos = _mm_cmpgt_ps(t, zero);
        __m128 r = _mm_or_ps(_mm_and_ps(pos, t), _mm_andnot_ps(pos, _mm_mul_ps(va, t)));
        _mm_storeu_ps(y + j, r);
    }
    for (; j < n; j++) y[j] = ft_km_prelu(x[j], a);
}

/* sum over the 4 lanes of t, g where !(t > 0) of (double)t * g */
static __m128d neg_dot2(__m128 t, __m128 g, __m128d acc) {
    __m128d zero = _mm_setzero_pd();
    __m128d tl = _mm_cvtps_pd(t), gl = _mm_cvtps_pd(g);
    __m128d th = _mm_cvtps_pd(_mm_movehl_ps(t, t)), gh = _mm_cvtps_pd(_mm_movehl_ps(g, g));
    acc = _mm_add_pd(acc, _mm_and_pd(_mm_cmpngt_pd(tl, zero), _mm_mul_pd(tl, gl)));
    return _mm_add_pd(acc, _mm_and_pd(_mm_cmpngt_pd(th, zero), _mm_mul_pd(th, gh)));
}

/* dx = x > 0 ? dy : a * dy; returns the sum of x * dy over x <= 0 */
static double plane_prelu_bwd(const float *x, const float *dy, float *dx, int n, float a) {
    __m128 va = _mm_set1_ps(a), zero = _mm_setzero_ps();
    __m128d acc = _mm_setzero_pd();
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        __m128 t = _mm_loadu_ps(x + j), g = _mm_loadu_ps(dy + j), pos = _mm_cmpgt_ps(t, zero);
        acc = neg_dot2(t, g, acc);
        _mm_storeu_ps(dx + j, _mm_or_ps(_mm_and_ps(pos, g), _mm_andnot_ps(pos, _mm_mul_ps(va, g))));
    }
    double part[2];
    _mm_storeu_pd(part, acc);
    double s = part[0] + part[1];
    for (; j < n; j++) {
        s += ft_km_prelu_dalpha(x[j], dy[j]);
        dx[j] = ft_km_prelu_dx(x[j], a, dy[j]);
    }
    return s;
}
#else
static void plane_prelu(const float *x, float *y, int n, float a) {
    for (int j = 0; j < n; j++) y[j] = ft_km_prelu(x[j], a);
}
static double plane_prelu_bwd(const float *x, const float *dy, float *dx, int n, float a) {
    double s = 0;
    for (int j = 0; j < n; j++) {
        s += ft_km_prelu_dalpha(x[j], dy[j]);
        dx[j] = ft_km_prelu_dx(x[j], a, dy[j]);
    }
    return s;
}
#endif

static void prelu_fwd_task(void *v, int tid, int nt) {
    prelu_ctx *cx = v;
    size_t lo, hi;
    cpu_range((size_t)cx->c, tid, nt, &lo, &hi);
    for (size_t ch = lo; ch < hi; ch++) {
        float a = cx->alpha[ch];
        for (int i = 0; i < cx->n; i++) {
            const float *x = cpu_ld(cx->dt, cx->x, PLANE(i, ch), (size_t)cx->hw, SCR(0));
            float *y = cpu_out(cx->dt, cx->y, PLANE(i, ch), SCR(1));
            plane_prelu(x, y, cx->hw, a);
            cpu_put(cx->dt, cx->y, PLANE(i, ch), (size_t)cx->hw, y);
        }
    }
}

static void prelu_bwd_task(void *v, int tid, int nt) {
    prelu_ctx *cx = v;
    size_t lo, hi;
    cpu_range((size_t)cx->c, tid, nt, &lo, &hi);
    for (size_t ch = lo; ch < hi; ch++) {
        float a = cx->alpha[ch];
        double da = 0;
        for (int i = 0; i < cx->n; i++) {
            const float *x = cpu_ld(cx->dt, cx->x, PLANE(i, ch), (size_t)cx->hw, SCR(0));
            const float *dy = cpu_ld(cx->dt, cx->dy, PLANE(i, ch), (size_t)cx->hw, SCR(1));
            float *dx = cpu_out(cx->dt, cx->dx, PLANE(i, ch), SCR(2));
            da += plane_prelu_bwd(x, dy, dx, cx->hw, a);
            cpu_put(cx->dt, cx->dx, PLANE(i, ch), (size_t)cx->hw, dx);
        }
        if (cx->dalpha) cx->dalpha[ch] += (float)da;
    }
}

static int cpu_prelu_fwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, const void *x,
                         const float *alpha, void *y) {
    prelu_ctx cx = {.o = o, .dt = dt, .n = n, .c = c, .hw = hw, .x = x, .alpha = alpha, .y = y};
    return cpu_run_planes(o, dt, n, c, hw, 2, prelu_fwd_task, &cx);
}

static int cpu_prelu_bwd(ft_ops *o, ft_dtype dt, int n, int c, int hw, const void *x,
                         const float *alpha, const void *dy, void *dx, float *dalpha) {
    prelu_ctx cx = {.o = o,
                    .dt = dt,
                    .n = n,
                    .c = c,
                    .hw = hw,
                    .x = x,
                    .alpha = alpha,
                    .dy = dy,
                    .dx = dx,
                    .dalpha = dalpha};
    return cpu_run_planes(o, dt, n, c, hw, 3, prelu_bwd_task, &cx);
}

void cpu_install_prelu(ft_ops *o) {
    o->prelu_fwd = cpu_prelu_fwd;
    o->prelu_bwd = cpu_prelu_bwd;
}
