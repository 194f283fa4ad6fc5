/* test_backend_ops.c: every op of the ops table, forward and backward, on every compiled
 * backend and storage dtype, against the CPU backend's fp32 path (ggml's test-backend-ops).
 *
 *   test_backend_ops [--backend NAME] [--dtype f32|f16|bf16] [--op NAME] [--seed S] [-v]
 *
 * For each case: inputs are fresh random data (never zeros) made on the host; activation
 * inputs are first rounded to the dtype under test, so the reference sees the very values the
 * backend sees. The reference runs the op on the CPU backend in fp32; the backend under test
 * runs it in the dtype with every output poisoned (NaN) beforehand ("+=" outputs start from
 * random values instead). Outputs are compared by normalized MSE, sum (a - r)^2 / sum r^2,
 * with these bounds (outputs of 16-bit storage are rounded once, relative error <= 2^-11
 * resp. 2^-8; the bounds leave room for a different accumulation order on a GPU):
 *   f32  1e-10  (||gpu - cpu|| / ||cpu|| <= 1e-5; the CPU against itself gives 0)
 *   f16  1e-6   (||.|| ratio 1e-3)
 *   bf16 1e-4   (||.|| ratio 1e-2)
 * Exact comparisons where an op must be bit-exact on every backend: casts against kmath.h's
 * scalar conversions, memory ops, unscale_check's scaling and its inf/NaN flag. Dropout masks
 * are compared as 0/1 outputs: one differing element exceeds every bound.
 *
 * Coverage: every slot of FT_OPS_SLOTS must have a case (the table below) and the list must
 * match the struct (its size), so a new slot without a case fails here.
 * Exit: 0 pass, 1 fail, 77 when the requested backend is compiled but has no device.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "kmath.h"
#include "ops.h"

static int verbose, failures, checks, ref_im2col;
static int layout = FT_LAYOUT_AUTO; /* asked of the backends under test (--layout) */
static uint64_t seed = 1;

/* ---- host helpers ---- */

static float *hmk(size_t n, ft_rng *r, float lo, float hi) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) abort();
    for (size_t i = 0; i < n; i++) p[i] = (float)(lo + (hi - lo) * ft_rng_uniform(r));
    return p;
}

static float round_dt(ft_dtype dt, float x) {
    if (dt == FT_F16) return ft_km_f16_to_f32(ft_km_f32_to_f16(x));
    if (dt == FT_BF16) return ft_km_bf16_to_f32(ft_km_f32_to_bf16(x));
    return x;
}
static void hround(ft_dtype dt, float *h, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] = round_dt(dt, h[i]);
}

static double nmse(const float *a, const float *r, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - r[i];
        num += d * d;
        den += (double)r[i] * r[i];
    }
    if (num != num) return INFINITY; /* NaN anywhere (a poisoned output left unwritten) */
    return den > 0 ? num / den : num;
}

static double tol_of(ft_dtype dt) {
    return dt == FT_F32 ? 1e-10 : dt == FT_F16 ? 1e-6 : 1e-4;
}

static void verdict(const char *what, int ok, const char *detail) {
    checks++;
    if (!ok) failures++;
    if (!ok || verbose) printf("  %-52s %s %s\n", what, ok ? "ok" : "FAIL", detail);
}

/* ---- device environment: one backend and the dtype of activation operands ---- */

typedef struct env {
    ft_ops *o;
    ft_dtype dt;
    void *bufs[64];
    int nb, err;
} env;

static void *dalloc(env *e, size_t bytes) {
    void *d = NULL;
    if (e->nb == 64 || e->o->alloc(e->o, bytes ? bytes : 1, &d)) {
        e->err = 1;
        return NULL;
    }
    e->bufs[e->nb++] = d;
    return d;
}

/* host fp32 -> the bits of dtype dt */
static void *pack(ft_dtype dt, const float *h, size_t n) {
    size_t es = ft_dtype_size(dt);
    void *p = malloc(n * es + 1);
    if (!p) abort();
    for (size_t i = 0; i < n; i++) {
        if (dt == FT_F32)
            ((float *)p)[i] = h[i];
        else if (dt == FT_F16)
            ((uint16_t *)p)[i] = ft_km_f32_to_f16(h[i]);
        else
            ((uint16_t *)p)[i] = ft_km_f32_to_bf16(h[i]);
    }
    return p;
}
static void unpack(ft_dtype dt, const void *p, size_t n, float *h) {
    for (size_t i = 0; i < n; i++) {
        if (dt == FT_F32)
            h[i] = ((const float *)p)[i];
        else if (dt == FT_F16)
            h[i] = ft_km_f16_to_f32(((const uint16_t *)p)[i]);
        else
            h[i] = ft_km_bf16_to_f32(((const uint16_t *)p)[i]);
    }
}

/* a device tensor of dtype dt holding h */
static void *din(env *e, ft_dtype dt, const float *h, size_t n) {
    void *d = dalloc(e, n * ft_dtype_size(dt));
    if (!d) return NULL;
    void *p = pack(dt, h, n);
    if (e->o->upload(e->o, d, p, n * ft_dtype_size(dt))) e->err = 1;
    free(p);
    return d;
}
static void *dbytes(env *e, const void *h, size_t bytes) {
    void *d = dalloc(e, bytes);
    if (d && e->o->upload(e->o, d, h, bytes)) e->err = 1;
    return d;
}
/* a device tensor poisoned with NaN (0xff bytes are NaN in f32, f16 and bf16) */
static void *dpoison(env *e, ft_dtype dt, size_t n) {
    size_t bytes = n * ft_dtype_size(dt);
    void *d = dalloc(e, bytes);
    unsigned char *p = malloc(bytes + 1);
    if (!p) abort();
    memset(p, 0xff, bytes);
    if (d && e->o->upload(e->o, d, p, bytes)) e->err = 1;
    free(p);
    return d;
}
static void dget(env *e, ft_dtype dt, const void *d, size_t n, float *h) {
    size_t bytes = n * ft_dtype_size(dt);
    void *p = malloc(bytes + 1);
    if (!p) abort();
    if (!d || e->o->download(e->o, p, d, bytes)) e->err = 1;
    unpack(dt, p, n, h);
    free(p);
}
/* activations go through the layout boundary: the backend keeps them NCHW or NHWC */
static void *dact(env *e, const float *h, int n, int c, int hw) {
    size_t cnt = (size_t)n * c * hw;
    float *f = din(e, FT_F32, h, cnt);
    void *d = dalloc(e, cnt * ft_dtype_size(e->dt));
    if (!f || !d || e->o->act_import(e->o, e->dt, n, c, hw, f, d)) e->err = 1;
    return d;
}
static void dget_act(env *e, const void *d, int n, int c, int hw, float *h) {
    size_t cnt = (size_t)n * c * hw;
    float *f = dalloc(e, cnt * sizeof(float));
    if (!d || !f || e->o->act_export(e->o, e->dt, n, c, hw, d, f)) e->err = 1;
    dget(e, FT_F32, f, cnt, h);
}

static void env_release(env *e) {
    for (int i = 0; i < e->nb; i++) e->o->free(e->o, e->bufs[i]);
    e->nb = 0;
}

/* ---- cases: a case fills its outputs (host fp32) from its inputs on env e ---- */

#define MAXOUT 6
typedef struct outs {
    int n;
    const char *name[MAXOUT];
    size_t len[MAXOUT];
    float *v[MAXOUT];
} outs;

static float *out_slot(outs *r, const char *name, size_t len) {
    int i = r->n++;
    r->name[i] = name, r->len[i] = len;
    r->v[i] = calloc(len ? len : 1, sizeof(float));
    if (!r->v[i]) abort();
    return r->v[i];
}
static void outs_free(outs *r) {
    for (int i = 0; i < r->n; i++) free(r->v[i]);
    r->n = 0;
}

/* run body on the reference (CPU fp32) and on the backend under test, compare the outputs */
typedef int (*body_fn)(env *e, const void *arg, outs *r);

static ft_ops *REF;

static void compare(const char *what, ft_ops *b, ft_dtype dt, body_fn body, const void *arg,
                    double tol_scale) {
    env er = {REF, FT_F32, {0}, 0, 0}, eb = {b, dt, {0}, 0, 0};
    outs ro = {0}, bo = {0};
    int rc1 = body(&er, arg, &ro), rc2 = body(&eb, arg, &bo);
    char detail[256];
    if (rc1 || rc2 || er.err || eb.err) {
        snprintf(detail, sizeof detail, "(status %s / %s%s)", ft_strerror(rc1), ft_strerror(rc2),
                 er.err || eb.err ? ", device error" : "");
        verdict(what, 0, detail);
    } else {
        for (int i = 0; i < ro.n; i++) {
            char w[160];
            double e = nmse(bo.v[i], ro.v[i], ro.len[i]), tol = tol_of(dt) * tol_scale;
            snprintf(w, sizeof w, "%s %s [%s]", what, ro.name[i], ft_dtype_name(dt));
            snprintf(detail, sizeof detail, "nmse %.2e (tol %.0e)", e, tol);
            verdict(w, e <= tol, detail);
        }
    }
    env_release(&er), env_release(&eb);
    outs_free(&ro), outs_free(&bo);
}

/* ---- memory: alloc, free, upload, download, copy, zero, sync ---- */

static void test_memory(ft_ops *b) {
    env e = {b, FT_F32, {0}, 0, 0};
    enum { N = 4099 };
    unsigned char h[N], g[N];
    ft_rng r;
    ft_rng_seed(&r, seed, 1);
    for (int i = 0; i < N; i++) h[i] = (unsigned char)ft_rng_below(&r, 256);
    unsigned char *d1 = dbytes(&e, h, N), *d2 = dalloc(&e, N);
    int ok = !e.err && ((uintptr_t)d1 % 64) == 0 && ((uintptr_t)d2 % 64) == 0;
    ok = ok && !b->copy(b, d2, d1, N) && !b->zero(b, d2 + 100, 1000) && !b->sync(b);
    ok = ok && !b->download(b, g, d2, N);
    for (int i = 0; ok && i < N; i++) ok = g[i] == (i >= 100 && i < 1100 ? 0 : h[i]);
    b->free(b, NULL); /* NULL is a no-op */
    size_t fr = 0, tot = 0;
    ok = ok && !b->mem_info(b, &fr, &tot) && tot > 0 && fr <= tot;
    verdict("memory: alloc (64-aligned) upload copy zero sync download free mem_info", ok, "");
    env_release(&e);
}

/* ---- host_alloc / host_free: pinned batches upload like any host memory; input_u8 is
 * exact: every value is ft_km_pixel_norm of its pixel, in NCHW order ---- */

static void test_input(ft_ops *b) {
    env e = {b, FT_F32, {0}, 0, 0};
    enum { N = 3, H = 5, W = 7, C = 3 };
    size_t cnt = (size_t)N * H * W * C;
    uint8_t *pin = NULL;
    int ok = !b->host_alloc(b, cnt, (void **)&pin) && pin && ((uintptr_t)pin % 64) == 0;
    ft_rng r;
    ft_rng_seed(&r, seed, 3);
    for (size_t i = 0; ok && i < cnt; i++) pin[i] = (uint8_t)ft_rng_below(&r, 256);
    if (ok) pin[0] = 0, pin[1] = 255, pin[2] = 128;
    uint8_t *dx = ok ? dalloc(&e, cnt) : NULL;
    float *dst = dpoison(&e, FT_F32, cnt), got[N * H * W * C];
    ok = ok && dx && !b->upload(b, dx, pin, cnt);
    ok = ok && !b->input_u8(b, N, H, W, dx, dst);
    dget(&e, FT_F32, dst, cnt, got);
    ok = ok && !e.err;
    for (int i = 0; ok && i < N; i++)
        for (int c = 0; ok && c < C; c++)
            for (int p = 0; ok && p < H * W; p++) {
                float want = ft_km_pixel_norm(pin[((size_t)i * H * W + p) * C + c]);
                float g = got[((size_t)i * C + c) * H * W + p];
                ok = memcmp(&want, &g, sizeof g) == 0;
                if (!ok)
                    printf("    input_u8 image %d channel %d pixel %d: %a, want %a\n", i, c, p, g,
                           want);
            }
    /* upload_ahead: a second batch copied beside a queued op, seen by the op queued after it */
    uint8_t *dx2 = ok ? dalloc(&e, cnt) : NULL, *pin2 = NULL;
    int ok2 = ok && dx2 && !b->host_alloc(b, cnt, (void **)&pin2);
    for (size_t i = 0; ok2 && i < cnt; i++) pin2[i] = (uint8_t)(pin[i] ^ 0x5a);
    float *dst2 = dpoison(&e, FT_F32, cnt), *dst3 = dpoison(&e, FT_F32, cnt), got2[N * H * W * C];
    ok2 = ok2 && !b->input_u8(b, N, H, W, dx, dst2) && !b->upload_ahead(b, dx2, pin2, cnt) &&
          !b->input_u8(b, N, H, W, dx2, dst3);
    dget(&e, FT_F32, dst3, cnt, got2);
    dget(&e, FT_F32, dst2, cnt, got);
    ok2 = ok2 && !e.err;
    for (size_t i = 0; ok2 && i < cnt; i++) {
        size_t img = i / ((size_t)H * W * C), p = i / C % ((size_t)H * W), c = i % C;
        size_t at = (img * C + c) * H * W + p;
        float want = ft_km_pixel_norm(pin2[i]), want1 = ft_km_pixel_norm(pin[i]);
        ok2 = memcmp(&want, &got2[at], sizeof want) == 0 && memcmp(&want1, &got[at], 4) == 0;
    }
    b->host_free(b, pin);
    b->host_free(b, pin2);
    b->host_free(b, NULL); /* NULL is a no-op */
    verdict("host_alloc upload host_free, input_u8 (exact, NCHW)", ok, "");
    verdict("upload_ahead: seen by the ops queued after it, earlier ops intact", ok2, "");
    env_release(&e);
}

/* ---- supports: fp32 everywhere; a dtype a backend refuses returns FT_ENOTSUP ---- */

static void test_supports(ft_ops *b) {
    int ok = 1;
    for (int op = 0; op < FT_OP_COUNT; op++) ok &= ft_ops_supports(b, op, FT_F32);
    ok &= !ft_ops_supports(b, -1, FT_F32) && !ft_ops_supports(b, FT_OP_COUNT, FT_F32);
    verdict("supports: every op in fp32, nothing outside the table", ok, "");
}

/* ---- the layout: act_import leaves the backend's memory order (NCHW, or NHWC where asked for
 * and, by default, for the CUDA backend's 16-bit activations); act_export reads it back ---- */

static void test_layout(ft_ops *b, ft_dtype dt) {
    env e = {b, dt, {0}, 0, 0};
    enum { N = 3, C = 5, HW = 7, T = N * C * HW };
    float h[T], back[T], raw[T];
    for (int i = 0; i < T; i++) h[i] = (float)(i - 40); /* exact in every dtype */
    int nhwc = layout == FT_LAYOUT_NHWC ||
               (layout == FT_LAYOUT_AUTO && !strcmp(b->name, "cuda") && dt != FT_F32);
    void *act = dact(&e, h, N, C, HW);
    dget(&e, dt, act, T, raw);
    dget_act(&e, act, N, C, HW, back);
    int ok = !e.err;
    for (int i = 0; ok && i < N; i++)
        for (int c = 0; ok && c < C; c++)
            for (int p = 0; ok && p < HW; p++) {
                size_t at = nhwc ? ((size_t)i * HW + p) * C + c : ((size_t)i * C + c) * HW + p;
                float want = h[((size_t)i * C + c) * HW + p];
                ok = raw[at] == want && back[((size_t)i * C + c) * HW + p] == want;
            }
    char w[96];
    snprintf(w, sizeof w, "act_import leaves %s, act_export reads it [%s]", nhwc ? "NHWC" : "NCHW",
             ft_dtype_name(dt));
    verdict(w, ok, "");
    env_release(&e);
}

/* ---- cast, act_import, act_export: exact against kmath's conversions ---- */

static void test_cast(ft_ops *b, ft_dtype dt) {
    env e = {b, dt, {0}, 0, 0};
    enum { N = 3001 };
    float h[N], back[N];
    ft_rng r;
    ft_rng_seed(&r, seed, 2);
    for (int i = 0; i < N; i++) {
        double m = ft_rng_uniform(&r) * 2 - 1, ex = ft_rng_below(&r, 60) - 30.0;
        h[i] = (float)(m * pow(2.0, ex));
    }
    h[0] = INFINITY, h[1] = -INFINITY, h[2] = NAN, h[3] = 70000.0f, h[4] = 1e-40f, h[5] = -0.0f;
    float *src = din(&e, FT_F32, h, N);
    void *mid = dpoison(&e, dt, N);
    float *dst = dpoison(&e, FT_F32, N);
    int rc = b->cast(b, N, FT_F32, src, dt, mid);
    if (!rc) rc = b->cast(b, N, dt, mid, FT_F32, dst);
    dget(&e, FT_F32, dst, N, back);
    int ok = !rc && !e.err;
    for (int i = 0; ok && i < N; i++) {
        float want = round_dt(dt, h[i]);
        ok = (isnan(want) && isnan(back[i])) || memcmp(&want, &back[i], 4) == 0;
        if (!ok) printf("    cast %s: %a -> %a, want %a\n", ft_dtype_name(dt), h[i], back[i], want);
    }
    char w[96];
    snprintf(w, sizeof w, "cast f32 -> %s -> f32 exact (inf, NaN, overflow, denormal)",
             ft_dtype_name(dt));
    verdict(w, ok, "");
    /* the layout boundary: export(import(x)) == round(x), NCHW on both sides */
    void *act = dpoison(&e, dt, N - 1);
    float *exp = dpoison(&e, FT_F32, N - 1);
    rc = b->act_import(b, dt, 3, 20, 50, src + 1, act);
    if (!rc) rc = b->act_export(b, dt, 3, 20, 50, act, exp);
    dget(&e, FT_F32, exp, N - 1, back);
    ok = !rc && !e.err;
    for (int i = 0; ok && i < N - 1; i++) {
        float want = round_dt(dt, h[i + 1]);
        ok = (isnan(want) && isnan(back[i])) || memcmp(&want, &back[i], 4) == 0;
    }
    snprintf(w, sizeof w, "act_import / act_export round trip [%s]", ft_dtype_name(dt));
    verdict(w, ok, "");
    env_release(&e);
}

/* ---- convolution ---- */

typedef struct conv_arg {
    ft_conv_desc d;
    float *x, *w, *dy, *dw0;
} conv_arg;

static size_t conv_nx(const ft_conv_desc *d) {
    return (size_t)d->n * d->c * d->h * d->w;
}
static size_t conv_ny(const ft_conv_desc *d) {
    return (size_t)d->n * d->k * d->oh * d->ow;
}
static size_t conv_nw(const ft_conv_desc *d) {
    return (size_t)d->k * d->c * d->r * d->r;
}

static void *conv_ws(env *e, const ft_conv_desc *d) {
    size_t b = e->o->conv_ws_bytes(e->o, d, e->dt);
    return b ? dalloc(e, b) : NULL;
}

static int body_conv_fwd(env *e, const void *v, outs *r) {
    const conv_arg *a = v;
    const ft_conv_desc *d = &a->d;
    void *x = dact(e, a->x, d->n, d->c, d->h * d->w), *w = din(e, e->dt, a->w, conv_nw(d));
    void *y = dpoison(e, e->dt, conv_ny(d)), *ws = conv_ws(e, d);
    int rc = e->o->conv_fwd(e->o, d, e->dt, x, w, y, ws);
    dget_act(e, y, d->n, d->k, d->oh * d->ow, out_slot(r, "y", conv_ny(d)));
    return rc;
}
static int body_conv_bwd_data(env *e, const void *v, outs *r) {
    const conv_arg *a = v;
    const ft_conv_desc *d = &a->d;
    void *dy = dact(e, a->dy, d->n, d->k, d->oh * d->ow), *w = din(e, e->dt, a->w, conv_nw(d));
    void *dx = dpoison(e, e->dt, conv_nx(d)), *ws = conv_ws(e, d);
    int rc = e->o->conv_bwd_data(e->o, d, e->dt, dy, w, dx, ws);
    dget_act(e, dx, d->n, d->c, d->h * d->w, out_slot(r, "dx", conv_nx(d)));
    return rc;
}
static int body_conv_bwd_filter(env *e, const void *v, outs *r) {
    const conv_arg *a = v;
    const ft_conv_desc *d = &a->d;
    void *x = dact(e, a->x, d->n, d->c, d->h * d->w),
         *dy = dact(e, a->dy, d->n, d->k, d->oh * d->ow);
    float *dw = din(e, FT_F32, a->dw0, conv_nw(&a->d)); /* "+=" from random values */
    void *ws = conv_ws(e, &a->d);
    int rc = e->o->conv_bwd_filter(e->o, &a->d, e->dt, x, dy, dw, ws);
    dget(e, FT_F32, dw, conv_nw(&a->d), out_slot(r, "dw", conv_nw(&a->d)));
    return rc;
}

static void test_conv(ft_ops *b, ft_dtype dt, int n, int c, int h, int k, int rr, int s, int p) {
    conv_arg a;
    if (ft_conv_desc_init(&a.d, n, c, h, h, k, rr, s, p)) abort();
    ft_rng g;
    ft_rng_seed(&g, seed, 100 + (uint64_t)(n * 7 + c * 5 + h * 3 + rr + s));
    a.x = hmk(conv_nx(&a.d), &g, -1, 1), a.w = hmk(conv_nw(&a.d), &g, -0.5f, 0.5f);
    a.dy = hmk(conv_ny(&a.d), &g, -1, 1), a.dw0 = hmk(conv_nw(&a.d), &g, -1, 1);
    hround(dt, a.x, conv_nx(&a.d)), hround(dt, a.w, conv_nw(&a.d)), hround(dt, a.dy, conv_ny(&a.d));
    char w[96];
    snprintf(w, sizeof w, "conv n%d c%d %dx%d k%d r%d s%d p%d", n, c, h, h, k, rr, s, p);
    char w2[128];
    snprintf(w2, sizeof w2, "%s fwd", w), compare(w2, b, dt, body_conv_fwd, &a, 1);
    snprintf(w2, sizeof w2, "%s bwd_data", w), compare(w2, b, dt, body_conv_bwd_data, &a, 1);
    snprintf(w2, sizeof w2, "%s bwd_filter", w), compare(w2, b, dt, body_conv_bwd_filter, &a, 1);
    free(a.x), free(a.w), free(a.dy), free(a.dw0);
}

/* ---- batch norm ---- */

typedef struct bn_arg {
    int n, c, hw;
    float *x, *dy, *gamma, *beta, *rm, *rv, *sm, *si, *dg0, *db0;
} bn_arg;

static int body_bn_train(env *e, const void *v, outs *r) {
    const bn_arg *a = v;
    size_t nx = (size_t)a->n * a->c * a->hw, c = (size_t)a->c;
    void *x = dact(e, a->x, a->n, a->c, a->hw), *y = dpoison(e, e->dt, nx);
    float *g = din(e, FT_F32, a->gamma, c), *bt = din(e, FT_F32, a->beta, c);
    float *rm = din(e, FT_F32, a->rm, c), *rv = din(e, FT_F32, a->rv, c);
    float *sm = dpoison(e, FT_F32, c), *si = dpoison(e, FT_F32, c);
    int rc = e->o->bn_fwd_train(e->o, e->dt, a->n, a->c, a->hw, 1e-5f, 0.1f, x, g, bt, y, rm, rv,
                                sm, si);
    dget_act(e, y, a->n, a->c, a->hw, out_slot(r, "y", nx));
    dget(e, FT_F32, rm, c, out_slot(r, "running_mean", c));
    dget(e, FT_F32, rv, c, out_slot(r, "running_var", c));
    dget(e, FT_F32, sm, c, out_slot(r, "save_mean", c));
    dget(e, FT_F32, si, c, out_slot(r, "save_invstd", c));
    return rc;
}
static int body_bn_eval(env *e, const void *v, outs *r) {
    const bn_arg *a = v;
    size_t nx = (size_t)a->n * a->c * a->hw, c = (size_t)a->c;
    void *x = dact(e, a->x, a->n, a->c, a->hw), *y = dpoison(e, e->dt, nx);
    float *g = din(e, FT_F32, a->gamma, c), *bt = din(e, FT_F32, a->beta, c);
    float *rm = din(e, FT_F32, a->rm, c), *rv = din(e, FT_F32, a->rv, c);
    int rc = e->o->bn_fwd_eval(e->o, e->dt, a->n, a->c, a->hw, 1e-5f, x, g, bt, rm, rv, y);
    dget_act(e, y, a->n, a->c, a->hw, out_slot(r, "y", nx));
    return rc;
}
static int body_bn_bwd(env *e, const void *v, outs *r) {
    const bn_arg *a = v;
    size_t nx = (size_t)a->n * a->c * a->hw, c = (size_t)a->c;
    void *x = dact(e, a->x, a->n, a->c, a->hw), *dy = dact(e, a->dy, a->n, a->c, a->hw);
    void *dx = dpoison(e, e->dt, nx);
    float *g = din(e, FT_F32, a->gamma, c), *sm = din(e, FT_F32, a->sm, c);
    float *si = din(e, FT_F32, a->si, c);
    float *dg = din(e, FT_F32, a->dg0, c), *db = din(e, FT_F32, a->db0, c);
    int rc = e->o->bn_bwd(e->o, e->dt, a->n, a->c, a->hw, x, dy, g, sm, si, dx, dg, db);
    dget_act(e, dx, a->n, a->c, a->hw, out_slot(r, "dx", nx));
    dget(e, FT_F32, dg, c, out_slot(r, "dgamma", c));
    dget(e, FT_F32, db, c, out_slot(r, "dbeta", c));
    return rc;
}

static void test_bn(ft_ops *b, ft_dtype dt, int n, int c, int hw) {
    bn_arg a = {.n = n, .c = c, .hw = hw};
    size_t nx = (size_t)n * c * hw;
    ft_rng g;
    ft_rng_seed(&g, seed, 200 + (uint64_t)hw);
    a.x = hmk(nx, &g, -2, 3), a.dy = hmk(nx, &g, -1, 1);
    a.gamma = hmk(c, &g, 0.5f, 1.5f), a.beta = hmk(c, &g, -0.5f, 0.5f);
    a.rm = hmk(c, &g, -0.2f, 0.2f), a.rv = hmk(c, &g, 0.5f, 2.0f);
    a.dg0 = hmk(c, &g, -1, 1), a.db0 = hmk(c, &g, -1, 1);
    hround(dt, a.x, nx), hround(dt, a.dy, nx);
    /* save_mean / save_invstd as a train forward of these x leaves them (fp64 here) */
    a.sm = malloc(c * sizeof(float)), a.si = malloc(c * sizeof(float));
    for (int ch = 0; ch < c; ch++) {
        double s = 0, q = 0, m = (double)n * hw;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < hw; j++) s += a.x[((size_t)i * c + ch) * hw + j];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < hw; j++) {
                double t = a.x[((size_t)i * c + ch) * hw + j] - s / m;
                q += t * t;
            }
        a.sm[ch] = (float)(s / m), a.si[ch] = (float)(1.0 / sqrt(q / m + 1e-5));
    }
    char w[96];
    snprintf(w, sizeof w, "bn n%d c%d hw%d fwd_train", n, c, hw);
    compare(w, b, dt, body_bn_train, &a, 1);
    snprintf(w, sizeof w, "bn n%d c%d hw%d fwd_eval", n, c, hw);
    compare(w, b, dt, body_bn_eval, &a, 1);
    snprintf(w, sizeof w, "bn n%d c%d hw%d bwd", n, c, hw);
    compare(w, b, dt, body_bn_bwd, &a, 1);
    free(a.x), free(a.dy), free(a.gamma), free(a.beta), free(a.rm), free(a.rv), free(a.sm);
    free(a.si), free(a.dg0), free(a.db0);
}

/* ---- PReLU, add, dropout ---- */

typedef struct ew_arg {
    int n, c, hw;
    float *x, *x2, *alpha, *dy, *da0;
    float p;
    uint64_t seed;
} ew_arg;

static size_t ew_n(const ew_arg *a) {
    return (size_t)a->n * a->c * a->hw;
}

static int body_prelu_fwd(env *e, const void *v, outs *r) {
    const ew_arg *a = v;
    void *x = dact(e, a->x, a->n, a->c, a->hw), *y = dpoison(e, e->dt, ew_n(a));
    float *al = din(e, FT_F32, a->alpha, (size_t)a->c);
    int rc = e->o->prelu_fwd(e->o, e->dt, a->n, a->c, a->hw, x, al, y);
    dget_act(e, y, a->n, a->c, a->hw, out_slot(r, "y", ew_n(a)));
    return rc;
}
static int body_prelu_bwd(env *e, const void *v, outs *r) {
    const ew_arg *a = v;
    void *x = dact(e, a->x, a->n, a->c, a->hw), *dy = dact(e, a->dy, a->n, a->c, a->hw);
    void *dx = dpoison(e, e->dt, ew_n(a));
    float *al = din(e, FT_F32, a->alpha, (size_t)a->c), *da = din(e, FT_F32, a->da0, (size_t)a->c);
    int rc = e->o->prelu_bwd(e->o, e->dt, a->n, a->c, a->hw, x, al, dy, dx, da);
    dget_act(e, dx, a->n, a->c, a->hw, out_slot(r, "dx", ew_n(a)));
    dget(e, FT_F32, da, (size_t)a->c, out_slot(r, "dalpha", (size_t)a->c));
    return rc;
}
static int body_add(env *e, const void *v, outs *r) {
    const ew_arg *a = v;
    void *x = din(e, e->dt, a->x, ew_n(a)), *x2 = din(e, e->dt, a->x2, ew_n(a));
    void *y = dpoison(e, e->dt, ew_n(a));
    int rc = e->o->add(e->o, e->dt, ew_n(a), x, x2, y);
    /* in place as the residual connections use it */
    if (!rc) rc = e->o->add(e->o, e->dt, ew_n(a), y, x2, y);
    dget(e, e->dt, y, ew_n(a), out_slot(r, "y", ew_n(a)));
    return rc;
}
static int body_dropout(env *e, const void *v, outs *r) {
    const ew_arg *a = v;
    size_t n = ew_n(a);
    void *x = dact(e, a->x, a->n, a->c, a->hw), *y = dpoison(e, e->dt, n);
    void *dx = dpoison(e, e->dt, n), *dy = dact(e, a->dy, a->n, a->c, a->hw);
    uint8_t *mask = dalloc(e, n);
    const uint64_t *ds = dbytes(e, &a->seed, sizeof a->seed);
    int rc = e->o->dropout_fwd(e->o, e->dt, a->n, a->c, a->hw, a->p, ds, x, y, mask);
    if (!rc) rc = e->o->dropout_bwd(e->o, e->dt, a->n, a->c, a->hw, a->p, mask, dy, dx);
    dget_act(e, y, a->n, a->c, a->hw, out_slot(r, "y", n));
    dget_act(e, dx, a->n, a->c, a->hw, out_slot(r, "dx", n));
    /* the mask in NCHW order, whatever the backend's layout: the backward of all-ones */
    float *ones = malloc(n * sizeof(float)), *mo = out_slot(r, "mask", n);
    if (!ones) abort();
    for (size_t i = 0; i < n; i++) ones[i] = 1.0f;
    void *d1 = dact(e, ones, a->n, a->c, a->hw), *dm = dpoison(e, e->dt, n);
    if (!rc) rc = e->o->dropout_bwd(e->o, e->dt, a->n, a->c, a->hw, a->p, mask, d1, dm);
    dget_act(e, dm, a->n, a->c, a->hw, mo);
    for (size_t i = 0; i < n; i++) mo[i] = mo[i] != 0.0f;
    free(ones);
    return rc;
}

static void test_elementwise(ft_ops *b, ft_dtype dt) {
    ew_arg a = {.n = 4, .c = 6, .hw = 37, .p = 0.3f, .seed = 77};
    size_t n = ew_n(&a);
    ft_rng g;
    ft_rng_seed(&g, seed, 300);
    a.x = hmk(n, &g, -2, 2), a.x2 = hmk(n, &g, -2, 2), a.dy = hmk(n, &g, -1, 1);
    a.alpha = hmk((size_t)a.c, &g, 0.1f, 0.4f), a.da0 = hmk((size_t)a.c, &g, -1, 1);
    hround(dt, a.x, n), hround(dt, a.x2, n), hround(dt, a.dy, n);
    compare("prelu_fwd n4 c6 hw37", b, dt, body_prelu_fwd, &a, 1);
    compare("prelu_bwd n4 c6 hw37", b, dt, body_prelu_bwd, &a, 1);
    compare("add (and in place)", b, dt, body_add, &a, 1);
    compare("dropout_fwd + dropout_bwd p 0.3", b, dt, body_dropout, &a, 1);
    free(a.x), free(a.x2), free(a.dy), free(a.alpha), free(a.da0);
    /* 40 channels: two tiles of the CUDA backend's NHWC reduction, the second partial; 2500
     * rows: three chunks, the last partial */
    ew_arg w = {.n = 4, .c = 40, .hw = 625, .p = 0.3f, .seed = 78};
    n = ew_n(&w);
    w.x = hmk(n, &g, -2, 2), w.dy = hmk(n, &g, -1, 1);
    w.alpha = hmk((size_t)w.c, &g, 0.1f, 0.4f), w.da0 = hmk((size_t)w.c, &g, -1, 1);
    hround(dt, w.x, n), hround(dt, w.dy, n);
    compare("prelu_bwd n4 c40 hw625", b, dt, body_prelu_bwd, &w, 1);
    free(w.x), free(w.dy), free(w.alpha), free(w.da0);
}

/* ---- fp32 vector ops: axpy, scale, sumsq, sumsq_acc, unscale_check ---- */

typedef struct vec_arg {
    size_t n;
    float *x, *y;
} vec_arg;

static int body_vec(env *e, const void *v, outs *r) {
    const vec_arg *a = v;
    float *x = din(e, FT_F32, a->x, a->n), *y = din(e, FT_F32, a->y, a->n);
    double ss = 0;
    int rc = e->o->axpy(e->o, a->n, 0.75f, x, y);
    if (!rc) rc = e->o->scale(e->o, a->n, -1.5f, y);
    if (!rc) rc = e->o->sumsq(e->o, a->n, y, &ss);
    /* sumsq_acc: a device double, accumulated over two tensors, one download */
    double acc0 = 0.25, acc = 0;
    double *dacc = dbytes(e, &acc0, sizeof acc0);
    if (!rc) rc = e->o->sumsq_acc(e->o, a->n, y, dacc);
    if (!rc) rc = e->o->sumsq_acc(e->o, a->n / 3, x, dacc);
    if (!rc && (!dacc || e->o->download(e->o, &acc, dacc, sizeof acc))) e->err = 1;
    dget(e, FT_F32, y, a->n, out_slot(r, "axpy+scale", a->n));
    out_slot(r, "sumsq", 1)[0] = (float)ss;
    out_slot(r, "sumsq_acc", 1)[0] = (float)acc;
    return rc;
}

/* the inf/NaN flag is exact: clean gradients leave it 0, one inf (or NaN) sets it */
static void test_unscale(ft_ops *b) {
    env e = {b, FT_F32, {0}, 0, 0};
    enum { N = 70001 };
    float *h = malloc(N * sizeof(float)), *got = malloc(N * sizeof(float));
    ft_rng g;
    ft_rng_seed(&g, seed, 400);
    for (int i = 0; i < N; i++) h[i] = (float)(ft_rng_uniform(&g) * 2e4 - 1e4);
    float zero = 0, flag = -1;
    float *d = din(&e, FT_F32, h, N), *found = dbytes(&e, &zero, sizeof zero);
    int rc = b->unscale_check(b, N, 1.0f / 65536, d, found);
    if (!rc) rc = b->download(b, &flag, found, sizeof flag);
    dget(&e, FT_F32, d, N, got);
    int ok = !rc && !e.err && flag == 0.0f;
    for (int i = 0; ok && i < N; i++) ok = got[i] == h[i] * (1.0f / 65536);
    verdict("unscale_check: finite gradients scaled exactly, flag stays 0", ok, "");
    for (int k = 0; k < 2; k++) {
        h[N / 3 + k * 17] = k ? NAN : INFINITY;
        d = din(&e, FT_F32, h, N);
        float one = 0;
        found = dbytes(&e, &one, sizeof one);
        rc = b->unscale_check(b, N, 0.5f, d, found);
        if (!rc) rc = b->download(b, &flag, found, sizeof flag);
        verdict(k ? "unscale_check: a NaN sets the flag" : "unscale_check: an inf sets the flag",
                !rc && !e.err && flag != 0.0f, "");
    }
    free(h), free(got);
    env_release(&e);
}

/* ---- GEMM and the fused flatten + fc ---- */

typedef struct gemm_arg {
    int ta, tb, m, n, k, lda, ldb, ldc;
    float alpha, beta;
    float *a, *b, *c;
} gemm_arg;

static int body_gemm(env *e, const void *v, outs *r) {
    const gemm_arg *g = v;
    size_t na = (size_t)(g->ta ? g->k : g->m) * g->lda, nb = (size_t)(g->tb ? g->n : g->k) * g->ldb;
    size_t nc = (size_t)g->m * g->ldc;
    void *a = din(e, e->dt, g->a, na), *bb = din(e, e->dt, g->b, nb), *c = din(e, e->dt, g->c, nc);
    int rc = e->o->gemm(e->o, e->dt, g->ta, g->tb, g->m, g->n, g->k, g->alpha, a, g->lda, bb,
                        g->ldb, g->beta, c, g->ldc);
    dget(e, e->dt, c, nc, out_slot(r, "c", nc));
    return rc;
}

static void test_gemm(ft_ops *b, ft_dtype dt) {
    for (int t = 0; t < 4; t++) {
        gemm_arg g = {.ta = t & 1,
                      .tb = t >> 1,
                      .m = 13,
                      .n = 21,
                      .k = 37,
                      .alpha = 1.0f,
                      .beta = t == 3 ? 0.5f : 0.0f};
        g.lda = (g.ta ? g.m : g.k) + 3, g.ldb = (g.tb ? g.k : g.n) + 2, g.ldc = g.n + 1;
        ft_rng r;
        ft_rng_seed(&r, seed, 500 + (uint64_t)t);
        size_t na = (size_t)(g.ta ? g.k : g.m) * g.lda, nb = (size_t)(g.tb ? g.n : g.k) * g.ldb;
        size_t nc = (size_t)g.m * g.ldc;
        g.a = hmk(na, &r, -1, 1), g.b = hmk(nb, &r, -1, 1), g.c = hmk(nc, &r, -1, 1);
        hround(dt, g.a, na), hround(dt, g.b, nb), hround(dt, g.c, nc);
        char w[96];
        snprintf(w, sizeof w, "gemm trans_a %d trans_b %d beta %.1f (strided)", g.ta, g.tb,
                 (double)g.beta);
        compare(w, b, dt, body_gemm, &g, 1);
        free(g.a), free(g.b), free(g.c);
    }
}

typedef struct fc_arg {
    int n, c, hw, out;
    float *x, *w, *bias, *dy, *dw0, *db0;
} fc_arg;

static int body_fc(env *e, const void *v, outs *r) {
    const fc_arg *a = v;
    size_t nx = (size_t)a->n * a->c * a->hw, nw = (size_t)a->out * a->c * a->hw;
    size_t ny = (size_t)a->n * a->out;
    void *x = dact(e, a->x, a->n, a->c, a->hw), *dx = dpoison(e, e->dt, nx);
    float *w = din(e, FT_F32, a->w, nw), *bias = din(e, FT_F32, a->bias, (size_t)a->out);
    float *y = dpoison(e, FT_F32, ny), *dy = din(e, FT_F32, a->dy, ny);
    float *dw = din(e, FT_F32, a->dw0, nw), *db = din(e, FT_F32, a->db0, (size_t)a->out);
    int rc = e->o->fc_fwd(e->o, e->dt, a->n, a->c, a->hw, a->out, x, w, bias, y);
    if (!rc) rc = e->o->fc_bwd(e->o, e->dt, a->n, a->c, a->hw, a->out, x, w, dy, dx, dw, db);
    dget(e, FT_F32, y, ny, out_slot(r, "y", ny));
    dget_act(e, dx, a->n, a->c, a->hw, out_slot(r, "dx", nx));
    dget(e, FT_F32, dw, nw, out_slot(r, "dw", nw));
    dget(e, FT_F32, db, (size_t)a->out, out_slot(r, "dbias", (size_t)a->out));
    return rc;
}

static void test_fc(ft_ops *b, ft_dtype dt) {
    fc_arg a = {.n = 5, .c = 8, .hw = 49, .out = 16};
    size_t nx = (size_t)a.n * a.c * a.hw, nw = (size_t)a.out * a.c * a.hw, ny = (size_t)a.n * a.out;
    ft_rng g;
    ft_rng_seed(&g, seed, 600);
    a.x = hmk(nx, &g, -1, 1), a.w = hmk(nw, &g, -0.1f, 0.1f),
    a.bias = hmk((size_t)a.out, &g, -1, 1);
    a.dy = hmk(ny, &g, -1, 1), a.dw0 = hmk(nw, &g, -1, 1), a.db0 = hmk((size_t)a.out, &g, -1, 1);
    hround(dt, a.x, nx);
    compare("fc_fwd + fc_bwd (flatten of [5, 8, 7x7] -> 16)", b, dt, body_fc, &a, 1);
    free(a.x), free(a.w), free(a.bias), free(a.dy), free(a.dw0), free(a.db0);
}

/* ---- rows: L2 norm, gather, scatter-add; the margin softmax; SGD (fp32 only) ---- */

typedef struct row_arg {
    int rows, dim, cols, src_rows;
    float *x, *dy, *src, *w, *g, *buf;
    int32_t *idx, *label;
    ft_margin mg;
} row_arg;

static int body_rows(env *e, const void *v, outs *r) {
    const row_arg *a = v;
    size_t n = (size_t)a->rows * a->dim, ns = (size_t)a->src_rows * a->dim;
    float *x = din(e, FT_F32, a->x, n), *y = dpoison(e, FT_F32, n),
          *nr = dpoison(e, FT_F32, (size_t)a->rows);
    float *dy = din(e, FT_F32, a->dy, n), *dx = dpoison(e, FT_F32, n);
    float *src = din(e, FT_F32, a->src, ns), *gat = dpoison(e, FT_F32, n);
    float *acc = din(e, FT_F32, a->src, ns);
    int32_t *idx = dbytes(e, a->idx, (size_t)a->rows * sizeof(int32_t));
    int rc = e->o->l2norm_fwd(e->o, a->rows, a->dim, x, y, nr);
    if (!rc) rc = e->o->l2norm_bwd(e->o, a->rows, a->dim, y, nr, dy, dx);
    if (!rc) rc = e->o->gather_rows(e->o, a->rows, a->dim, src, idx, gat);
    if (!rc) rc = e->o->scatter_add_rows(e->o, a->rows, a->dim, x, idx, acc);
    dget(e, FT_F32, y, n, out_slot(r, "l2norm y", n));
    dget(e, FT_F32, nr, (size_t)a->rows, out_slot(r, "l2norm norms", (size_t)a->rows));
    dget(e, FT_F32, dx, n, out_slot(r, "l2norm dx", n));
    dget(e, FT_F32, gat, n, out_slot(r, "gather", n));
    dget(e, FT_F32, acc, ns, out_slot(r, "scatter_add", ns));
    return rc;
}

static int body_margin(env *e, const void *v, outs *r) {
    const row_arg *a = v;
    size_t n = (size_t)a->rows * a->cols, R = (size_t)a->rows;
    float *cosv = din(e, FT_F32, a->x, n), *lg = dpoison(e, FT_F32, n);
    float *mx = dpoison(e, FT_F32, R), *sum = dpoison(e, FT_F32, R), *pt = dpoison(e, FT_F32, R);
    float *dl = din(e, FT_F32, a->dy, n), *dc = dpoison(e, FT_F32, n);
    int32_t *lab = dbytes(e, a->label, R * sizeof(int32_t));
    int rc = e->o->margin_fwd(e->o, a->rows, a->cols, &a->mg, lab, cosv, lg);
    dget(e, FT_F32, lg, n, out_slot(r, "margin_fwd logits", n));
    if (!rc) rc = e->o->row_max(e->o, a->rows, a->cols, lg, mx);
    if (!rc) rc = e->o->row_exp_sum(e->o, a->rows, a->cols, lg, mx, sum);
    dget(e, FT_F32, mx, R, out_slot(r, "row_max", R));
    dget(e, FT_F32, sum, R, out_slot(r, "row_exp_sum sum", R));
    if (!rc) rc = e->o->softmax_xent_bwd(e->o, a->rows, a->cols, lg, sum, lab, 0.25f, pt);
    dget(e, FT_F32, lg, n, out_slot(r, "softmax_xent_bwd dlogits", n));
    dget(e, FT_F32, pt, R, out_slot(r, "softmax_xent_bwd p_target", R));
    if (!rc) rc = e->o->margin_bwd(e->o, a->rows, a->cols, &a->mg, lab, cosv, dl, dc);
    dget(e, FT_F32, dc, n, out_slot(r, "margin_bwd dcos", n));
    return rc;
}

static int body_sgd(env *e, const void *v, outs *r) {
    const row_arg *a = v;
    size_t n = (size_t)a->src_rows * a->dim;
    float *w = din(e, FT_F32, a->w, n), *g = din(e, FT_F32, a->g, n),
          *bf = din(e, FT_F32, a->buf, n);
    float *w2 = din(e, FT_F32, a->w, n), *b2 = din(e, FT_F32, a->buf, n);
    int32_t *idx = dbytes(e, a->idx, (size_t)a->rows * sizeof(int32_t));
    int rc = e->o->sgd_update(e->o, n, 0.1f, 0.9f, 5e-4f, w, g, bf);
    if (!rc) rc = e->o->sgd_update_rows(e->o, a->rows, a->dim, idx, 0.1f, 0.9f, 5e-4f, w2, g, b2);
    dget(e, FT_F32, w, n, out_slot(r, "sgd_update w", n));
    dget(e, FT_F32, bf, n, out_slot(r, "sgd_update momentum", n));
    dget(e, FT_F32, w2, n, out_slot(r, "sgd_update_rows w", n));
    dget(e, FT_F32, b2, n, out_slot(r, "sgd_update_rows momentum", n));
    return rc;
}

static void test_rows(ft_ops *b) {
    row_arg a = {.rows = 9, .dim = 33, .cols = 29, .src_rows = 20};
    ft_rng g;
    ft_rng_seed(&g, seed, 700);
    size_t n = (size_t)a.rows * (a.dim > a.cols ? a.dim : a.cols), ns = (size_t)a.src_rows * a.dim;
    a.x = hmk(n, &g, -1.2f, 1.2f), a.dy = hmk(n, &g, -1, 1), a.src = hmk(ns, &g, -1, 1);
    a.w = hmk(ns, &g, -1, 1), a.g = hmk(ns, &g, -1, 1), a.buf = hmk(ns, &g, -1, 1);
    int32_t idx[9] = {19, 0, 7, 3, 12, 5, 8, 16, 1}, lab[9] = {3, -1, 0, 28, 10, 11, -1, 5, 27};
    a.idx = idx, a.label = lab;
    compare("l2norm_fwd/bwd, gather_rows, scatter_add_rows", b, FT_F32, body_rows, &a, 1);
    const struct {
        int kind, grad;
        float thr;
        const char *name;
    } mk[] = {{FT_MARGIN_ARCFACE, FT_MARGIN_GRAD_UPSTREAM, 0, "arcface"},
              {FT_MARGIN_ARCFACE, FT_MARGIN_GRAD_EXACT, 0.3f, "arcface exact + filter 0.3"},
              {FT_MARGIN_COSFACE, FT_MARGIN_GRAD_UPSTREAM, 0.3f, "cosface + filter 0.3"}};
    for (size_t i = 0; i < sizeof mk / sizeof mk[0]; i++) {
        a.mg = (ft_margin){mk[i].kind,
                           mk[i].grad,
                           64.0f,
                           mk[i].kind == FT_MARGIN_ARCFACE ? 0.5f : 0,
                           mk[i].kind == FT_MARGIN_COSFACE ? 0.4f : 0,
                           mk[i].thr};
        char w[128];
        snprintf(w, sizeof w, "margin_fwd/bwd, row_max, row_exp_sum, softmax_xent_bwd (%s)",
                 mk[i].name);
        compare(w, b, FT_F32, body_margin, &a, 1);
    }
    int32_t rows[9] = {0, 2, 3, 5, 8, 11, 12, 17, 19};
    a.idx = rows;
    compare("sgd_update, sgd_update_rows", b, FT_F32, body_sgd, &a, 1);
    free(a.x), free(a.dy), free(a.src), free(a.w), free(a.g), free(a.buf);
}

/* ---- tensor lists: the multi-tensor ops (the optimizer's passes in one launch each) ---- */

enum { MT = 7 };
static const size_t mt_len[MT] = {1, 63, 8192, 8193, 20001, 3, 30011}; /* chunk edges, odd ends */

typedef struct multi_arg {
    float *w[MT], *g[MT], *m[MT];
    size_t total;
    int per_tensor; /* 1: the single-tensor ops in a loop, the multi ops' definition */
} multi_arg;

/* unscale + inf check, sum of squares, clip scale, SGD, then zero: what ft_sgd runs per step */
static int body_multi(env *e, const void *v, outs *r) {
    const multi_arg *a = v;
    ft_ops *o = e->o;
    ft_tentry te[MT];
    for (int i = 0; i < MT; i++)
        te[i] = (ft_tentry){din(e, FT_F32, a->w[i], mt_len[i]), din(e, FT_F32, a->g[i], mt_len[i]),
                            din(e, FT_F32, a->m[i], mt_len[i]), mt_len[i]};
    float zero = 0, found = -1;
    double acc0 = 0.5, acc = 0;
    float *dfound = dbytes(e, &zero, sizeof zero);
    double *dacc = dbytes(e, &acc0, sizeof acc0);
    if (e->err) return 0;
    ft_tlist *t = NULL;
    int rc = o->tlist_make(o, MT, te, &t);
    if (!rc && (t->n != MT || t->total != a->total)) rc = FT_EARG;
    const float inv = 1.0f / 1024, lr = 0.1f, mom = 0.9f, wd = 5e-4f, coef = 0.37f;
    if (!rc && a->per_tensor) {
        for (int i = 0; i < MT && !rc; i++)
            rc = o->unscale_check(o, mt_len[i], inv, te[i].g, dfound);
        for (int i = 0; i < MT && !rc; i++) rc = o->sumsq_acc(o, mt_len[i], te[i].g, dacc);
        for (int i = 0; i < MT && !rc; i++) rc = o->scale(o, mt_len[i], coef, te[i].g);
        for (int i = 0; i < MT && !rc; i++)
            rc = o->sgd_update(o, mt_len[i], lr, mom, wd, te[i].w, te[i].g, te[i].m);
    } else if (!rc) {
        rc = o->multi_unscale_check(o, t, inv, dfound);
        if (!rc) rc = o->multi_sumsq_acc(o, t, dacc);
        if (!rc) rc = o->multi_scale(o, t, coef);
        if (!rc) rc = o->multi_sgd(o, t, lr, mom, wd);
    }
    float *ow = out_slot(r, "w", a->total), *om = out_slot(r, "momentum", a->total),
          *og = out_slot(r, "g", a->total), *oz = out_slot(r, "g after zero", a->total);
    size_t off = 0;
    for (int i = 0; i < MT && !rc; off += mt_len[i], i++) {
        dget(e, FT_F32, te[i].w, mt_len[i], ow + off);
        dget(e, FT_F32, te[i].m, mt_len[i], om + off);
        dget(e, FT_F32, te[i].g, mt_len[i], og + off);
    }
    if (!rc && a->per_tensor)
        for (int i = 0; i < MT && !rc; i++) rc = o->zero(o, te[i].g, mt_len[i] * sizeof(float));
    else if (!rc)
        rc = o->multi_zero(o, t);
    off = 0;
    for (int i = 0; i < MT && !rc; off += mt_len[i], i++)
        dget(e, FT_F32, te[i].g, mt_len[i], oz + off);
    if (!rc) rc = o->download(o, &found, dfound, sizeof found);
    if (!rc) rc = o->download(o, &acc, dacc, sizeof acc);
    float *of = out_slot(r, "found, sum of squares", 2);
    of[0] = found, of[1] = (float)acc;
    o->tlist_free(o, t);
    return rc;
}

/* both paths on one backend: equal bit for bit, the sum of squares to 1e-12 (order) */
static void multi_vs_loop(ft_ops *b, multi_arg *a, const char *what, float want_found) {
    env e1 = {b, FT_F32, {0}, 0, 0}, e2 = {b, FT_F32, {0}, 0, 0};
    outs r1 = {0}, r2 = {0};
    a->per_tensor = 0;
    int rc1 = body_multi(&e1, a, &r1);
    a->per_tensor = 1;
    int rc2 = body_multi(&e2, a, &r2);
    a->per_tensor = 0;
    int ok = !rc1 && !rc2 && !e1.err && !e2.err && r1.n == 5 && r2.n == 5;
    size_t diff = 0;
    for (int k = 0; ok && k < 4; k++)
        diff += memcmp(r1.v[k], r2.v[k], a->total * sizeof(float)) != 0;
    for (size_t i = 0; ok && i < a->total; i++) diff += r1.v[3][i] != 0.0f;
    double s1 = ok ? r1.v[4][1] : 0, s2 = ok ? r2.v[4][1] : 0;
    ok = ok && !diff && r1.v[4][0] == want_found && r2.v[4][0] == want_found &&
         (want_found != 0.0f || fabs(s1 - s2) <= 1e-12 * fabs(s2));
    char d[160];
    snprintf(d, sizeof d, "(status %s / %s, %zu outputs differ, found %g / %g, sumsq %.9g / %.9g)",
             ft_strerror(rc1), ft_strerror(rc2), diff, ok || r1.n == 5 ? r1.v[4][0] : -1,
             ok || r2.n == 5 ? r2.v[4][0] : -1, s1, s2);
    verdict(what, ok, d);
    env_release(&e1), env_release(&e2);
    outs_free(&r1), outs_free(&r2);
}

static void test_multi(ft_ops *b) {
    multi_arg a = {.total = 0};
    ft_rng g;
    ft_rng_seed(&g, seed, 900);
    for (int i = 0; i < MT; i++) {
        a.w[i] = hmk(mt_len[i], &g, -1, 1), a.g[i] = hmk(mt_len[i], &g, -300, 300);
        a.m[i] = hmk(mt_len[i], &g, -0.5f, 0.5f), a.total += mt_len[i];
    }
    compare("multi_unscale_check, multi_sumsq_acc, multi_scale, multi_sgd, multi_zero", b, FT_F32,
            body_multi, &a, 1);
    multi_vs_loop(b, &a, "multi ops equal their per-tensor loops", 0.0f);
    /* an inf in the middle of a chunk of one tensor, a NaN at the very end of the last */
    a.g[4][10001] = INFINITY, a.g[MT - 1][mt_len[MT - 1] - 1] = NAN;
    multi_vs_loop(b, &a, "multi_unscale_check: an inf and a NaN set the flag", 1.0f);
    /* an empty list is valid and touches nothing */
    ft_tlist *t = NULL;
    env e = {b, FT_F32, {0}, 0, 0};
    double acc = 0, *dacc = dbytes(&e, &acc, sizeof acc);
    int rc = b->tlist_make(b, 0, NULL, &t);
    if (!rc) rc = b->multi_zero(b, t);
    if (!rc) rc = b->multi_sgd(b, t, 0.1f, 0.9f, 0.0f);
    if (!rc) rc = b->multi_sumsq_acc(b, t, dacc);
    acc = -1;
    if (!rc) rc = b->download(b, &acc, dacc, sizeof acc);
    verdict("tensor list of no tensors", !rc && !e.err && t && t->n == 0 && acc == 0.0, "");
    b->tlist_free(b, t);
    b->tlist_free(b, NULL);
    env_release(&e);
    for (int i = 0; i < MT; i++) free(a.w[i]), free(a.g[i]), free(a.m[i]);
}

/* ---- pfc_sample: the same index and remapped labels on every backend (exact), and the
 * reference's against an independent selection: every class's key sorted whole ---- */

typedef struct sample_case {
    const char *what;
    int64_t n;
    int batch, count;
    int32_t *label;
} sample_case;

/* run pfc_sample on o; in_place: label_out is the label buffer itself (as pfc.c calls it) */
static int run_sample(ft_ops *o, const sample_case *c, uint64_t s, int in_place, int32_t *index,
                      int32_t *lab_out) {
    env e = {o, FT_F32, {0}, 0, 0};
    size_t lb = (size_t)c->batch * sizeof(int32_t);
    int32_t *dl = dbytes(&e, c->label, lb), *dout = in_place ? dl : dpoison(&e, FT_I32, lb / 4);
    int32_t *di = dpoison(&e, FT_I32, (size_t)c->count);
    void *scr = dpoison(&e, FT_U8, ft_ops_pfc_sample_scratch(c->n));
    const uint64_t *ds = dbytes(&e, &s, sizeof s);
    int rc = e.err ? FT_EARG : o->pfc_sample(o, c->n, ds, c->batch, dl, c->count, di, dout, scr);
    if (!rc && c->count) rc = o->download(o, index, di, (size_t)c->count * sizeof(int32_t));
    if (!rc && c->batch) rc = o->download(o, lab_out, dout, lb);
    env_release(&e);
    return rc ? rc : e.err ? FT_EARG : 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* the oracle: all n keys sorted, the first count rows ascending; labels found in them */
static int sample_oracle(const sample_case *c, uint64_t s, const int32_t *index,
                         const int32_t *lab_out) {
    uint64_t *k = malloc((size_t)c->n * sizeof *k);
    int32_t *want = malloc(((size_t)c->count + 1) * sizeof *want);
    uint8_t *pos = calloc((size_t)c->n, 1);
    if (!k || !want || !pos) abort();
    for (int r = 0; r < c->batch; r++)
        if (c->label[r] >= 0) pos[c->label[r]] = 1;
    for (int64_t i = 0; i < c->n; i++) k[i] = ft_km_sample_key(s, (uint32_t)i, pos[i]);
    qsort(k, (size_t)c->n, sizeof *k, cmp_u64);
    for (int i = 0; i < c->count; i++) want[i] = (int32_t)(k[i] & 0xffffffffu);
    qsort(want, (size_t)c->count, sizeof *want, cmp_i32);
    int ok = memcmp(want, index, (size_t)c->count * sizeof *want) == 0;
    for (int r = 0; ok && r < c->batch; r++) {
        int32_t l = c->label[r], at = lab_out[r];
        ok = l < 0 ? at == -1 : at >= 0 && at < c->count && index[at] == l;
    }
    free(k), free(want), free(pos);
    return ok;
}

static void test_sample(ft_ops *b) {
    ft_rng g;
    ft_rng_seed(&g, seed, 900);
    int32_t l37[12] = {3, 3, -1, 0, 36, 10, 10, -1, 5, 5, 22, 36}, l1[2] = {0, -1},
            none[3] = {-1, -1, -1}, big[96];
    for (int r = 0; r < 96; r++) /* 5003 classes, a quarter of the rows from other shards */
        big[r] = r % 4 == 3 ? -1 : (int32_t)ft_rng_below(&g, 5003);
    big[5] = big[17] = 4999;   /* a repeated positive */
    big[6] = 0, big[7] = 5002; /* the first and the last class */
    sample_case cs[] = {
        {"37 classes, 6 positives, 15 kept", 37, 12, 15, l37},
        {"37 classes, only the 6 positives", 37, 12, 6, l37},
        {"37 classes, every one kept", 37, 12, 37, l37},
        {"5003 classes (10 blocks), 1500 kept", 5003, 96, 1500, big},
        {"5003 classes, 4096 kept", 5003, 96, 4096, big},
        {"one class", 1, 2, 1, l1},
        {"no positive, none kept", 10, 3, 0, none},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        const sample_case *c = &cs[i];
        uint64_t s = ft_hash64(seed, 31 + i, 0);
        size_t ni = (size_t)c->count + 1, nb = (size_t)c->batch;
        int32_t *ri = malloc(ni * 4), *bi = malloc(ni * 4), *rl = malloc(nb * 4),
                *bl = malloc(nb * 4);
        if (!ri || !bi || !rl || !bl) abort();
        int rc1 = run_sample(REF, c, s, 0, ri, rl), rc2 = run_sample(b, c, s, 1, bi, bl);
        int ok = !rc1 && !rc2 && sample_oracle(c, s, ri, rl) &&
                 !memcmp(ri, bi, (size_t)c->count * 4) && !memcmp(rl, bl, nb * 4);
        char w[128], d[64];
        snprintf(w, sizeof w, "pfc_sample: %s", c->what);
        snprintf(d, sizeof d, "(status %s / %s)", ft_strerror(rc1), ft_strerror(rc2));
        verdict(w, ok, d);
        free(ri), free(bi), free(rl), free(bl);
    }
    /* a different seed draws other negatives, the same positives */
    sample_case c = cs[3];
    int32_t a[1500], a2[1500], la[96];
    int ok = !run_sample(b, &c, 1, 0, a, la) && !run_sample(b, &c, 2, 0, a2, la) &&
             memcmp(a, a2, sizeof a) != 0;
    verdict("pfc_sample: another seed, another index", ok, "");
}

/* ---- graphs: a recording runs only when launched, each launch runs all of it with the
 * arguments of the recording and the device memory of the moment (a seed uploaded between
 * launches), in order with the ops around it; a synchronizing op spoils the recording and
 * leaves the backend usable. A backend without graphs has none of the four slots. ---- */

enum { GN = 3001 };
/* one launch's worth of work: y = (y + 2 x) * 0.5, then dropout of y into z with the seed in
 * device memory */
static int graph_body(ft_ops *o, const float *x, float *y, float *z, uint8_t *mask,
                      const uint64_t *dseed) {
    int rc = o->axpy(o, GN, 2.0f, x, y);
    if (!rc) rc = o->scale(o, GN, 0.5f, y);
    if (!rc) rc = o->dropout_fwd(o, FT_F32, 1, GN, 1, 0.25f, dseed, y, z, mask);
    return rc;
}

static void test_graph(ft_ops *b) {
    int none =
        !b->graph_begin && !b->graph_end && !b->graph_launch && !b->graph_check && !b->graph_free;
    int some =
        !b->graph_begin || !b->graph_end || !b->graph_launch || !b->graph_check || !b->graph_free;
    if (some) {
        verdict("graphs: none on this backend (all five slots NULL)", none, "");
        return;
    }
    ft_rng g;
    ft_rng_seed(&g, seed, 1300);
    float *x = hmk(GN, &g, -1, 1), *y0 = hmk(GN, &g, -1, 1);
    float *want_y = malloc(GN * sizeof(float)), *want_z = malloc(GN * sizeof(float));
    float *got_y = malloc(GN * sizeof(float)), *got_z = malloc(GN * sizeof(float));
    if (!want_y || !want_z || !got_y || !got_z) abort();
    const uint64_t seeds[3] = {11, 12, 13};
    /* the reference: the body run directly, once per launch, each with its seed */
    env er = {REF, FT_F32, {0}, 0, 0}, eb = {b, FT_F32, {0}, 0, 0};
    float *rx = dbytes(&er, x, GN * sizeof(float)), *ry = dbytes(&er, y0, GN * sizeof(float));
    float *rz = dpoison(&er, FT_F32, GN);
    uint8_t *rm = dalloc(&er, GN);
    uint64_t *rs = dalloc(&er, sizeof(uint64_t));
    int rc = er.err;
    for (int l = 1; l < 3 && !rc; l++) {
        rc = REF->upload(REF, rs, &seeds[l], sizeof seeds[l]);
        if (!rc) rc = graph_body(REF, rx, ry, rz, rm, rs);
    }
    if (!rc) rc = REF->download(REF, want_y, ry, GN * sizeof(float));
    if (!rc) rc = REF->download(REF, want_z, rz, GN * sizeof(float));
    /* the backend: recorded with seed 11 in memory, launched with 12 and then 13 */
    float *bx = dbytes(&eb, x, GN * sizeof(float)), *by = dbytes(&eb, y0, GN * sizeof(float));
    float *bz = dpoison(&eb, FT_F32, GN);
    uint8_t *bm = dalloc(&eb, GN);
    uint64_t *bs = dbytes(&eb, &seeds[0], sizeof seeds[0]);
    void *gr = NULL;
    int rb = eb.err || rc;
    if (!rb) rb = b->graph_begin(b);
    if (!rb) rb = graph_body(b, bx, by, bz, bm, bs);
    if (!rb) rb = b->graph_end(b, &gr);
    /* recorded, not run: y is still y0 */
    if (!rb) rb = b->download(b, got_y, by, GN * sizeof(float));
    int idle = !rb && memcmp(got_y, y0, GN * sizeof(float)) == 0;
    verdict("graphs: a recording does not run the recorded ops", idle, "");
    for (int l = 1; l < 3 && !rb; l++) {
        rb = b->upload(b, bs, &seeds[l], sizeof seeds[l]);
        if (!rb) rb = b->graph_launch(b, gr);
    }
    if (!rb) rb = b->download(b, got_y, by, GN * sizeof(float));
    if (!rb) rb = b->download(b, got_z, bz, GN * sizeof(float));
    char d[96];
    snprintf(d, sizeof d, "(status %s / %s, nmse y %.1e z %.1e)", ft_strerror(rc), ft_strerror(rb),
             rb ? 1.0 : nmse(got_y, want_y, GN), rb ? 1.0 : nmse(got_z, want_z, GN));
    verdict("graphs: two launches = the recorded ops run twice, each with the seed of its moment",
            !rc && !rb && nmse(got_y, want_y, GN) <= tol_of(FT_F32) &&
                nmse(got_z, want_z, GN) <= tol_of(FT_F32),
            d);
    b->graph_free(b, gr);
    /* a download inside a recording: graph_end refuses, and the backend works afterwards */
    void *bad = NULL;
    float one = 0;
    int rbeg = b->graph_begin(b);
    (void)b->download(b, &one, bx, sizeof one); /* fails inside a recording */
    int rend = b->graph_end(b, &bad);
    int after = b->scale(b, GN, 2.0f, by) || b->download(b, got_y, by, GN * sizeof(float));
    int ok = !rbeg && rend != 0 && !bad && !after;
    for (int i = 0; ok && i < GN; i++) ok = got_y[i] == want_y[i] * 2.0f;
    snprintf(d, sizeof d, "(graph_end: %s)", ft_strerror(rend));
    verdict("graphs: a download inside a recording spoils it, the backend goes on", ok, d);
    verdict("graphs: launching or checking nothing is refused, freeing nothing is a no-op",
            b->graph_launch(b, NULL) == FT_EARG && b->graph_check(b, NULL) == FT_EARG &&
                (b->graph_free(b, NULL), 1),
            "");
    /* a recording whose backend memory was replaced since (fc_fwd in f16 stages its input in a
     * scratch of the backend's; a larger batch grows it) is refused, a new one runs */
    {
        enum { C = 8, HW = 4, OUT = 5, NB = 6 };
        float *hx = hmk((size_t)NB * C * HW, &g, -1, 1), *hw = hmk((size_t)OUT * C * HW, &g, -1, 1);
        env ef = {b, FT_F16, {0}, 0, 0};
        void *fx = dact(&ef, hx, NB, C, HW);
        float *fw = dbytes(&ef, hw, (size_t)OUT * C * HW * sizeof(float));
        float *fy = dpoison(&ef, FT_F32, (size_t)NB * OUT);
        void *g1 = NULL, *g2 = NULL;
        int r0 = ef.err || b->fc_fwd(b, FT_F16, 2, C, HW, OUT, fx, fw, NULL, fy); /* direct */
        if (!r0) r0 = b->graph_begin(b);
        if (!r0) r0 = b->fc_fwd(b, FT_F16, 2, C, HW, OUT, fx, fw, NULL, fy);
        if (!r0) r0 = b->graph_end(b, &g1);
        int fresh = r0 ? r0 : b->graph_check(b, g1);
        int before = r0 ? r0 : b->graph_launch(b, g1);
        int grow = b->fc_fwd(b, FT_F16, NB, C, HW, OUT, fx, fw, NULL, fy);
        int checked = b->graph_check(b, g1), stale = b->graph_launch(b, g1);
        int again = b->graph_begin(b);
        if (!again) again = b->fc_fwd(b, FT_F16, 2, C, HW, OUT, fx, fw, NULL, fy);
        if (!again) again = b->graph_end(b, &g2);
        if (!again) again = b->graph_launch(b, g2);
        if (!again) again = b->sync(b);
        snprintf(d, sizeof d, "(%s, %s, %s, %s, %s, %s)", ft_strerror(fresh), ft_strerror(before),
                 ft_strerror(grow), ft_strerror(checked), ft_strerror(stale), ft_strerror(again));
        verdict("graphs: a recording is refused (FT_ESTALE) after its scratch was replaced, and "
                "graph_check says so first",
                !fresh && !before && !grow && checked == FT_ESTALE && stale == FT_ESTALE && !again,
                d);
        b->graph_free(b, g1);
        b->graph_free(b, g2);
        env_release(&ef);
        free(hx), free(hw);
    }
    env_release(&er);
    env_release(&eb);
    free(x), free(y0), free(want_y), free(want_z), free(got_y), free(got_z);
}

/* ---- graph slots (ft_graph_run, ops.c): record at a shape's second run, replay after ---- */

typedef struct slot_work {
    ft_ops *o;
    const float *x;
    float *y;
    int calls;    /* host-side runs of the work */
    int download; /* 1: the work downloads (forbidden in a recording) */
    /* 1: an f16 fc_fwd of 2 rows too (a scratch of the backend's a larger batch replaces) */
    int fc;
    void *fx;
    float *fw, *fy;
} slot_work;

enum { SLOT_C = 8, SLOT_HW = 4, SLOT_OUT = 5, SLOT_NB = 256 }; /* NB: beyond what other cases ran */

static int slot_body(void *ctx) {
    slot_work *w = ctx;
    w->calls++;
    int rc = w->o->axpy(w->o, GN, 1.0f, w->x, w->y); /* y += x: counts the device runs */
    if (!rc && w->fc)
        rc = w->o->fc_fwd(w->o, FT_F16, 2, SLOT_C, SLOT_HW, SLOT_OUT, w->fx, w->fw, NULL, w->fy);
    if (!rc && w->download) {
        float one;
        rc = w->o->download(w->o, &one, w->x, sizeof one);
    }
    return rc;
}

static void test_graph_slot(ft_ops *b) {
    int graphs = b->graph_begin != NULL;
    ft_rng g;
    ft_rng_seed(&g, seed, 1400);
    float *ones = malloc(GN * sizeof(float)), *zeros = calloc(GN, sizeof(float));
    float *got = malloc(GN * sizeof(float));
    float *hx = hmk((size_t)SLOT_NB * SLOT_C * SLOT_HW, &g, -1, 1);
    float *hw = hmk((size_t)SLOT_OUT * SLOT_C * SLOT_HW, &g, -1, 1);
    if (!ones || !zeros || !got) abort();
    for (int i = 0; i < GN; i++) ones[i] = 1.0f;
    env e = {b, FT_F32, {0}, 0, 0}, ef = {b, FT_F16, {0}, 0, 0};
    slot_work w = {.o = b,
                   .x = dbytes(&e, ones, GN * sizeof(float)),
                   .y = dbytes(&e, zeros, GN * sizeof(float))};
    w.fx = dact(&ef, hx, SLOT_NB, SLOT_C, SLOT_HW);
    w.fw = dbytes(&ef, hw, (size_t)SLOT_OUT * SLOT_C * SLOT_HW * sizeof(float));
    w.fy = dpoison(&ef, FT_F32, (size_t)SLOT_NB * SLOT_OUT);
    int rc = e.err || ef.err;
    /* shapes 1 1 1 1 2 2 2 1: direct, recorded, replayed twice; a new shape drops the recording
     * and goes the same way; back to 1: direct (not the previous run's shape) */
    const uint64_t keys[8] = {1, 1, 1, 1, 2, 2, 2, 1};
    const int want_how[8] = {0, 1, 2, 2, 0, 1, 2, 0}, want_calls[8] = {1, 2, 2, 2, 3, 4, 4, 5};
    ft_graph_slot s = {0};
    char seq[64] = "", d[160];
    int ok = !rc;
    for (int i = 0; i < 8 && !rc; i++) {
        int how = -1;
        rc = ft_graph_run(b, &s, &keys[i], 1, slot_body, &w, &how);
        int wh = graphs ? want_how[i] : FT_GRAPH_DIRECT, wc = graphs ? want_calls[i] : i + 1;
        ok &= !rc && how == wh && w.calls == wc;
        snprintf(seq + strlen(seq), sizeof seq - strlen(seq), "%s%d/%d", i ? " " : "", how,
                 w.calls);
    }
    if (!rc) rc = b->download(b, got, w.y, GN * sizeof(float));
    for (int i = 0; ok && !rc && i < GN; i++) ok = got[i] == 8.0f;
    ok &= !rc && s.recorded == (graphs ? 2 : 0) && s.replayed == (graphs ? 3 : 0);
    snprintf(d, sizeof d, "(how/host calls: %s; %lld recorded, %lld replayed; %s)", seq,
             (long long)s.recorded, (long long)s.replayed, ft_strerror(rc));
    verdict(graphs ? "graph slot: direct, recorded at the second run of a shape, replayed after; "
                     "every run's device work done once"
                   : "graph slot: without graphs every run is direct",
            ok, d);
    uint64_t k3[3] = {1, 2, 3};
    int bad1 = ft_graph_run(b, &s, k3, 3, slot_body, &w, NULL); /* nkey changes */
    int bad2 = ft_graph_run(b, &s, k3, 0, slot_body, &w, NULL); /* nkey 0 */
    ft_graph_slot s5 = {0};
    int bad3 = ft_graph_run(b, &s5, k3, FT_GRAPH_KEY_MAX + 1, slot_body, &w, NULL);
    verdict("graph slot: a key of 0 or too many words, or of another length than before, is "
            "refused",
            bad1 == FT_EARG && bad2 == FT_EARG && bad3 == FT_EARG, "");
    ft_graph_slot_drop(b, &s);
    if (graphs && !rc) {
        /* stale: after a larger fc_fwd replaced the scratch, the replay is refused and the run
         * goes direct; the next run of the shape records afresh, the one after replays */
        ft_graph_slot t = {0};
        uint64_t k = 7;
        int hows[5] = {-1, -1, -1, -1, -1}, r5 = 0;
        w.fc = 1;
        for (int i = 0; i < 5 && !r5; i++) {
            if (i == 3) /* grows the f16 staging scratch */
                r5 = b->fc_fwd(b, FT_F16, SLOT_NB, SLOT_C, SLOT_HW, SLOT_OUT, w.fx, w.fw, NULL,
                               w.fy);
            if (!r5) r5 = ft_graph_run(b, &t, &k, 1, slot_body, &w, &hows[i]);
            if (i == 2 && !r5)
                r5 = b->fc_fwd(b, FT_F16, SLOT_NB, SLOT_C, SLOT_HW, SLOT_OUT, w.fx, w.fw, NULL,
                               w.fy);
        }
        snprintf(d, sizeof d, "(how %d %d %d %d %d, %lld recorded; %s)", hows[0], hows[1], hows[2],
                 hows[3], hows[4], (long long)t.recorded, ft_strerror(r5));
        verdict("graph slot: a stale recording runs the work directly, and the next run "
                "records afresh",
                !r5 && hows[0] == 0 && hows[1] == 1 && hows[2] == 2 && hows[3] == 0 &&
                    hows[4] == 1 && t.recorded == 2,
                d);
        ft_graph_slot_drop(b, &t);
        /* a work that cannot be recorded: its error, how RECORDED, no recording kept, and the
         * backend runs directly afterwards */
        ft_graph_slot u = {0};
        w.fc = 0;
        int h1 = -1, h2 = -1;
        int ra = ft_graph_run(b, &u, &k, 1, slot_body, &w, &h1);
        w.download = 1;
        int rb = ft_graph_run(b, &u, &k, 1, slot_body, &w, &h2);
        w.download = 0;
        int after = b->scale(b, GN, 0.0f, w.y) || b->download(b, got, w.y, GN * sizeof(float));
        snprintf(d, sizeof d, "(%s how %d, then %s how %d; after: %d)", ft_strerror(ra), h1,
                 ft_strerror(rb), h2, after);
        verdict("graph slot: a failed recording returns the error, keeps nothing, the backend "
                "goes on",
                !ra && h1 == 0 && rb != 0 && h2 == FT_GRAPH_RECORDED && !u.g && u.recorded == 0 &&
                    !after && got[0] == 0.0f,
                d);
        ft_graph_slot_drop(b, &u);
    }
    env_release(&e);
    env_release(&ef);
    free(ones), free(zeros), free(got), free(hx), free(hw);
}

/* ---- the CPU backend's own refusals ---- */

static void test_cpu_errors(void) {
    ft_ops_options opts;
    ft_ops_options_init(&opts);
    opts.threads = 2;
    char err[256];
    ft_ops *o = NULL;
    /* the CPU keeps activations NCHW: layout nhwc is refused, nchw is its own */
    opts.layout = FT_LAYOUT_NHWC;
    int rc = ft_ops_create("cpu", &opts, &o, err, sizeof err);
    verdict("layout nhwc: the CPU backend refuses it, saying why",
            rc == FT_ENOTSUP && !o && strstr(err, "NCHW") != NULL, err);
    opts.layout = FT_LAYOUT_NCHW;
    rc = ft_ops_create("cpu", &opts, &o, err, sizeof err);
    verdict("layout nchw: the CPU backend starts", rc == 0 && o, err);
    ft_ops_free(o), o = NULL;
    opts.layout = FT_LAYOUT_AUTO;
    /* FT_CPU_CONV names the convolution path: anything but onednn / im2col is refused */
    const char *saved = getenv("FT_CPU_CONV");
    char keep[64];
    snprintf(keep, sizeof keep, "%s", saved ? saved : "");
    setenv("FT_CPU_CONV", "winograd", 1);
    rc = ft_ops_create("cpu", &opts, &o, err, sizeof err);
    verdict("FT_CPU_CONV=winograd: the CPU backend refuses to start, saying why",
            rc == FT_EARG && !o && strstr(err, "FT_CPU_CONV='winograd'"), err);
    ft_ops_free(o), o = NULL;
    /* the im2col path: a conv whose workspace no conv_ws_bytes reply covered is refused, not
     * run over the end of the caller's buffer */
    setenv("FT_CPU_CONV", "im2col", 1);
    rc = ft_ops_create("cpu", &opts, &o, err, sizeof err);
    if (saved)
        setenv("FT_CPU_CONV", keep, 1);
    else
        unsetenv("FT_CPU_CONV");
    ft_conv_desc small, big;
    int ok = !rc && !ft_conv_desc_init(&small, 1, 3, 8, 8, 4, 3, 1, 1) &&
             !ft_conv_desc_init(&big, 2, 16, 32, 32, 16, 3, 1, 1);
    env e = {o, FT_F32, {0}, 0, 0};
    if (ok) {
        size_t ws_small = o->conv_ws_bytes(o, &small, FT_F32);
        float *x = dpoison(&e, FT_F32, conv_nx(&big)), *w = dpoison(&e, FT_F32, conv_nw(&big)),
              *y = dpoison(&e, FT_F32, conv_ny(&big));
        void *ws = dalloc(&e, ws_small);
        ok = !e.err && o->conv_fwd(o, &big, FT_F32, x, w, y, ws) == FT_EARG &&
             o->conv_bwd_data(o, &big, FT_F32, y, w, x, ws) == FT_EARG;
    }
    verdict("im2col: a conv larger than every conv_ws_bytes reply is refused", ok, "");
    /* pfc_sample: fewer kept rows than distinct positives, or a label outside the shard */
    int32_t lab[4] = {1, 2, 2, 7}, bad[2] = {3, 10}, idx[8], out[4];
    void *scr = dalloc(&e, ft_ops_pfc_sample_scratch(10));
    int32_t *dl = dbytes(&e, lab, sizeof lab), *db = dbytes(&e, bad, sizeof bad);
    int32_t *di = dalloc(&e, sizeof idx), *dout = dalloc(&e, sizeof out);
    const uint64_t one = 1, *ds = dbytes(&e, &one, sizeof one);
    ok = !e.err && o->pfc_sample(o, 10, ds, 4, dl, 2, di, dout, scr) == FT_EARG &&
         o->pfc_sample(o, 10, ds, 4, dl, 3, di, dout, scr) == 0 &&
         o->pfc_sample(o, 10, ds, 2, db, 4, di, dout, scr) == FT_EARG &&
         o->pfc_sample(o, 10, ds, 4, dl, 11, di, dout, scr) == FT_EARG &&
         o->pfc_sample(o, 10, NULL, 4, dl, 3, di, dout, scr) == FT_EARG;
    verdict("pfc_sample: refuses count < positives, a label >= n, count > n, no seed", ok, "");
    env_release(&e);
    ft_ops_free(o);
}

/* ---- coverage: every slot has a case ---- */

static const int covered[] = {
    FT_OP_destroy, /* every backend is created and destroyed by the harness */
    FT_OP_supports,
    FT_OP_alloc,
    FT_OP_free,
    FT_OP_upload,
    FT_OP_download,
    FT_OP_copy,
    FT_OP_zero,
    FT_OP_sync,
    FT_OP_mem_info,
    FT_OP_host_alloc,
    FT_OP_host_free,
    FT_OP_upload_ahead,
    FT_OP_cast,
    FT_OP_act_import,
    FT_OP_act_export,
    FT_OP_input_u8,
    FT_OP_conv_ws_bytes,
    FT_OP_conv_fwd,
    FT_OP_conv_bwd_data,
    FT_OP_conv_bwd_filter,
    FT_OP_bn_fwd_train,
    FT_OP_bn_fwd_eval,
    FT_OP_bn_bwd,
    FT_OP_prelu_fwd,
    FT_OP_prelu_bwd,
    FT_OP_add,
    FT_OP_axpy,
    FT_OP_scale,
    FT_OP_sumsq,
    FT_OP_sumsq_acc,
    FT_OP_unscale_check,
    FT_OP_gemm,
    FT_OP_fc_fwd,
    FT_OP_fc_bwd,
    FT_OP_dropout_fwd,
    FT_OP_dropout_bwd,
    FT_OP_l2norm_fwd,
    FT_OP_l2norm_bwd,
    FT_OP_gather_rows,
    FT_OP_scatter_add_rows,
    FT_OP_pfc_sample,
    FT_OP_margin_fwd,
    FT_OP_margin_bwd,
    FT_OP_row_max,
    FT_OP_row_exp_sum,
    FT_OP_softmax_xent_bwd,
    FT_OP_sgd_update,
    FT_OP_sgd_update_rows,
    FT_OP_tlist_make,
    FT_OP_tlist_free,
    FT_OP_multi_zero,
    FT_OP_multi_scale,
    FT_OP_multi_sumsq_acc,
    FT_OP_multi_unscale_check,
    FT_OP_multi_sgd,
    FT_OP_graph_begin, /* test_graph: a backend has all five or none */
    FT_OP_graph_end,
    FT_OP_graph_launch,
    FT_OP_graph_check,
    FT_OP_graph_free};

static int check_coverage(void) {
    int ok = 1;
    /* the slot list must describe the struct: one function pointer per entry after impl */
    size_t slots = (sizeof(ft_ops) - offsetof(ft_ops, destroy)) / sizeof(void (*)(void));
    if (slots != FT_OP_COUNT) {
        printf("  FT_OPS_SLOTS lists %d slots, struct ft_ops has %zu\n", FT_OP_COUNT, slots);
        ok = 0;
    }
    for (int op = 0; op < FT_OP_COUNT; op++) {
        int found = 0;
        for (size_t i = 0; i < sizeof covered / sizeof covered[0]; i++) found |= covered[i] == op;
        if (!found) printf("  slot %s has no case in test_backend_ops\n", ft_op_name(op)), ok = 0;
    }
    verdict("coverage: every slot of the table has a case", ok, "");
    return ok;
}

/* ---- driver ---- */

#define USAGE                                                                                      \
    "usage: test_backend_ops [--backend NAME] [--dtype f32|f16|bf16] [--op NAME] [--seed S] "      \
    "[--layout auto|nchw|nhwc] [--ref-im2col] [-v]\n"                                              \
    "Every op of the ops table on every compiled backend and dtype against the CPU's fp32.\n"      \
    "--layout: where the backends under test keep activations (the reference: NCHW).\n"            \
    "--ref-im2col: the reference's convolutions take the im2col path (FT_CPU_CONV=im2col), so\n"   \
    "the backends' oneDNN convolutions are checked against an independent implementation.\n"

static int want_op(const char *filter, const char *group) {
    return !filter || strstr(group, filter) != NULL;
}

static void run_backend(ft_ops *b, int dt_filter, const char *opf) {
    printf("backend %s\n", b->name);
    if (want_op(opf, "memory")) test_memory(b);
    if (want_op(opf, "supports")) test_supports(b);
    if (want_op(opf, "host_alloc host_free input_u8")) test_input(b);
    if (want_op(opf, "unscale_check")) test_unscale(b);
    if (want_op(opf, "rows margin sgd")) test_rows(b);
    if (want_op(opf, "tlist multi")) test_multi(b);
    if (want_op(opf, "pfc_sample")) test_sample(b);
    if (want_op(opf, "graph_begin graph_end graph_launch graph_check graph_free")) test_graph(b);
    if (want_op(opf, "graph_begin graph_end graph_launch graph_check graph_free slot"))
        test_graph_slot(b);
    if (want_op(opf, "axpy scale sumsq sumsq_acc")) {
        vec_arg a = {.n = 100003};
        ft_rng g;
        ft_rng_seed(&g, seed, 800);
        a.x = hmk(a.n, &g, -1, 1), a.y = hmk(a.n, &g, -1, 1);
        compare("axpy, scale, sumsq, sumsq_acc", b, FT_F32, body_vec, &a, 1);
        free(a.x), free(a.y);
    }
    for (int dt = FT_F32; dt <= FT_BF16; dt++) {
        if (dt_filter >= 0 && dt != dt_filter) continue;
        if (!ft_ops_supports(b, FT_OP_conv_fwd, (ft_dtype)dt)) {
            printf("  %s: not supported by %s, skipped\n", ft_dtype_name((ft_dtype)dt), b->name);
            continue;
        }
        if (want_op(opf, "cast act_import act_export") && dt != FT_F32) test_cast(b, (ft_dtype)dt);
        if (want_op(opf, "act_import act_export")) test_layout(b, (ft_dtype)dt);
        if (want_op(opf, "conv")) {
            test_conv(b, (ft_dtype)dt, 2, 3, 9, 4, 3, 1, 1);  /* conv1-like 3x3 s1 p1 */
            test_conv(b, (ft_dtype)dt, 3, 4, 10, 5, 3, 2, 1); /* block conv2 3x3 s2 p1 */
            test_conv(b, (ft_dtype)dt, 3, 4, 10, 6, 1, 2, 0); /* downsample 1x1 s2 */
            test_conv(b, (ft_dtype)dt, 2, 5, 6, 3, 1, 1, 0);  /* pointwise (direct path) */
            test_conv(b, (ft_dtype)dt, 12, 8, 7, 8, 3, 1, 1); /* 7x7 maps: image blocks */
            /* channel counts of 16 and more: oneDNN's blocked kernels (nChw16c) */
            test_conv(b, (ft_dtype)dt, 2, 32, 14, 64, 3, 2, 1);
            test_conv(b, (ft_dtype)dt, 3, 17, 11, 33, 3, 2, 1); /* odd: partial blocks */
            test_conv(b, (ft_dtype)dt, 2, 16, 9, 32, 1, 2, 0);  /* 1x1 s2, odd map */
            test_conv(b, (ft_dtype)dt, 2, 32, 10, 48, 1, 2, 0); /* 1x1 s2, last row unread */
            test_conv(b, (ft_dtype)dt, 4, 64, 7, 64, 3, 1, 1);
            /* one image on two threads (batch-1 inference): split by output rows */
            test_conv(b, (ft_dtype)dt, 1, 3, 9, 4, 3, 1, 1);
            test_conv(b, (ft_dtype)dt, 1, 4, 10, 5, 3, 2, 1);
            test_conv(b, (ft_dtype)dt, 1, 4, 10, 6, 1, 2, 0);
            test_conv(b, (ft_dtype)dt, 1, 5, 6, 3, 1, 1, 0);
            test_conv(b, (ft_dtype)dt, 1, 8, 7, 8, 3, 2, 1); /* 4 output rows */
            /* one image, more output channels than pixels: split by output channel */
            test_conv(b, (ft_dtype)dt, 1, 6, 4, 21, 3, 1, 1); /* 16 px, 21 channels */
            test_conv(b, (ft_dtype)dt, 1, 5, 6, 11, 3, 2, 1); /* 9 px, stride 2 */
            test_conv(b, (ft_dtype)dt, 1, 6, 3, 13, 1, 1, 0); /* pointwise, 9 px */
            test_conv(b, (ft_dtype)dt, 1, 4, 6, 10, 1, 2, 0); /* downsample 1x1 s2, 9 px */
            test_conv(b, (ft_dtype)dt, 1, 64, 14, 128, 3, 2, 1);
        }
        if (want_op(opf, "bn")) {
            test_bn(b, (ft_dtype)dt, 3, 5, 49);
            test_bn(b, (ft_dtype)dt, 6, 7, 1); /* BatchNorm1d */
            /* CUDA NHWC: two channel tiles, the second partial; three chunks of rows, the
             * last partial (cuda_chan_plan: 1024 rows a chunk at least) */
            test_bn(b, (ft_dtype)dt, 4, 40, 625);
        }
        if (want_op(opf, "prelu add dropout")) test_elementwise(b, (ft_dtype)dt);
        if (want_op(opf, "gemm")) test_gemm(b, (ft_dtype)dt);
        if (want_op(opf, "fc")) test_fc(b, (ft_dtype)dt);
    }
}

int main(int argc, char **argv) {
    const char *backend = NULL, *opf = NULL;
    int dt_filter = -1;
    if (ft_cli_help_version(argc, argv, "test_backend_ops", USAGE)) return 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ref-im2col")) {
            ref_im2col = 1;
        } else if (!strcmp(argv[i], "-v")) {
            verbose = 1;
        } else if (i + 1 < argc && !strcmp(argv[i], "--backend")) {
            backend = argv[++i];
        } else if (i + 1 < argc && !strcmp(argv[i], "--op")) {
            opf = argv[++i];
        } else if (i + 1 < argc && !strcmp(argv[i], "--layout")) {
            if ((layout = ft_layout_parse(argv[++i])) < 0)
                return fprintf(stderr, "bad --layout (auto, nchw, nhwc)\n"), 2;
        } else if (i + 1 < argc && !strcmp(argv[i], "--seed")) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (i + 1 < argc && !strcmp(argv[i], "--dtype")) {
            if ((dt_filter = ft_dtype_parse(argv[++i])) < 0)
                return fprintf(stderr, "bad --dtype\n"), 2;
        } else {
            fprintf(stderr, "test_backend_ops: unknown argument '%s'\n" USAGE, argv[i]);
            return 2;
        }
    }
    char err[512];
    ft_ops_options opts;
    ft_ops_options_init(&opts);
    /* the reference runs on one thread: its conv is then the plain per-image path, against
     * which the backends' threaded splits (images across threads, one image split by output
     * rows when there are fewer images than threads) are checked */
    opts.threads = 1;
    if (ref_im2col) setenv("FT_CPU_CONV", "im2col", 1);
    if (ft_ops_create("cpu", &opts, &REF, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
    if (ref_im2col) unsetenv("FT_CPU_CONV");
    opts.threads = 2;
    opts.layout = layout; /* the backends under test only: the reference is NCHW */
    check_coverage();
    if (!backend || !strcmp(backend, "cpu")) test_cpu_errors();
    /* the backends under test: the one asked for, else every compiled one */
    char list[64];
    snprintf(list, sizeof list, "%s", backend ? backend : ft_ops_backends());
    int tested = 0, nodev = 0;
    for (char *save = NULL, *name = strtok_r(list, " ", &save); name;
         name = strtok_r(NULL, " ", &save)) {
        ft_ops *b = NULL;
        int rc = ft_ops_create(name, &opts, &b, err, sizeof err);
        if (rc == FT_ENODEV) {
            printf("backend %s: %s: skipped\n", name, err);
            nodev++;
            continue;
        }
        if (rc) {
            printf("backend %s: %s\n", name, err);
            failures++;
            continue;
        }
        run_backend(b, dt_filter, opf);
        ft_ops_free(b);
        tested++;
    }
    ft_ops_free(REF);
    printf("%d passed, %d failed\n", checks - failures, failures);
    if (failures) return 1;
    return tested == 0 && nodev ? 77 : 0;
}
