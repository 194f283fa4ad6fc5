/* test_ops_grad.c: every backward of the ops (and the IResNet / Partial FC built on them)
 * against central finite differences.
 *
 * Loss: L = sum(r * y) with fixed random r (or the softmax cross-entropy), accumulated in
 * double; the analytic gradient comes from the op's backward with dy = r. Differences are
 * taken in fp32 at step eps on a sample of entries, with the actual rounded step as the
 * denominator. Metric per tensor: max |analytic - numeric| / max |numeric| over the sample.
 * Tolerance 1e-2 for single ops (eps 1e-3: the fp32 rounding of L, ~1e-7|L|/eps, dominates;
 * measured errors are 1e-6..1e-3). The whole small network is checked per tensor along 3
 * random sign directions (L(x+hv)-L(x-hv))/2h vs g.v, h = 1e-3, tolerance 2e-2 relative to
 * max(|numeric|, 0.1): biases that a later BN cancels have zero gradient, and their numeric
 * value is the differences' fp32 noise alone, which moves with the convolution kernels'
 * summation order: worst tensors 7.1e-3 with oneDNN's AVX2 kernels, 8.5e-3 with im2col,
 * 1.08e-2 with its AVX-512 ones on a Xeon with AVX-512 BF16 (layer1.1.bn3.bias: analytic
 * 1.6e-7, numeric -1.1e-3). A larger h does not help: at 2e-3 fc.weight's truncation error
 * is 1.3e-2. Its PReLU slopes are
 * set to 1 so that the function is smooth (kinks make single differences meaningless). A
 * wrong formula gives errors of order 1.
 *
 * Every array lives on the host and is mirrored on the backend (up/down around each op), so the
 * same differences run on any backend.
 *
 * Usage: test_ops_grad [--backend cpu|cuda] [threads]   (exit 0 pass, 1 fail, 77 no device)
 */
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "iresnet.h"
#include "ops.h"
#include "pfc.h"
#include "tc_util.h"

static ft_ops *O;
static int failures;

typedef double (*loss_fn)(void *ctx);

/* compare ana (n floats, gradient of f wrt x) with central differences on up to 24 entries */
static void check_floor(const char *what, loss_fn f, void *ctx, float *x, size_t n,
                        const float *ana, float eps, double tol, double floor) {
    enum { K = 24 };
    float num[K] = {0}, an[K] = {0};
    ft_rng r;
    ft_rng_seed(&r, 7, n);
    size_t k = n < K ? n : K;
    for (size_t j = 0; j < k; j++) {
        size_t i = n <= K ? j : (size_t)ft_rng_below(&r, n);
        float save = x[i];
        float hi = save + eps * (fabsf(save) > 1 ? fabsf(save) : 1);
        float lo = save - (hi - save);
        x[i] = hi;
        double lp = f(ctx);
        x[i] = lo;
        double lm = f(ctx);
        x[i] = save;
        num[j] = (float)((lp - lm) / ((double)hi - lo));
        an[j] = ana[i];
    }
    double e = tc_nmax(an, num, k, floor);
    int ok = e <= tol;
    printf("%-44s max err %.2e (tol %.0e) %s\n", what, e, tol, ok ? "ok" : "FAIL");
    if (!ok) {
        for (size_t j = 0; j < k && j < 5; j++)
            printf("    analytic %+.6e numeric %+.6e\n", an[j], num[j]);
        failures++;
    }
}

static void check(const char *what, loss_fn f, void *ctx, float *x, size_t n, const float *ana,
                  float eps, double tol) {
    check_floor(what, f, ctx, x, n, ana, eps, tol, 1e-4);
}

/* directional check for whole tensors: L(x + h v) - L(x - h v) / 2h vs g . v for random sign
 * vectors v; much less sensitive to fp32 rounding of L than single entries */
static void check_dir(const char *what, loss_fn f, void *ctx, float *x, size_t n, const float *ana,
                      float h, double tol, double floor) {
    float *save = malloc(n * sizeof(float)), *v = malloc(n * sizeof(float));
    if (!save || !v) abort();
    memcpy(save, x, n * sizeof(float));
    ft_rng r;
    ft_rng_seed(&r, 11, n);
    double worst = 0, an = 0, nu = 0;
    for (int d = 0; d < 3; d++) {
        double gv = 0;
        for (size_t i = 0; i < n; i++) {
            v[i] = ft_rng_uniform(&r) < 0.5 ? -h : h;
            gv += (double)ana[i] * v[i] / h;
        }
        for (size_t i = 0; i < n; i++) x[i] = save[i] + v[i];
        double lp = f(ctx);
        for (size_t i = 0; i < n; i++) x[i] = save[i] - v[i];
        double lm = f(ctx);
        memcpy(x, save, n * sizeof(float));
        double num = (lp - lm) / (2 * h);
        double e = fabs(gv - num) / fmax(fabs(num), floor);
        if (e >= worst) worst = e, an = gv, nu = num;
    }
    int ok = worst <= tol;
    printf("%-44s max err %.2e (tol %.0e) %s\n", what, worst, tol, ok ? "ok" : "FAIL");
    if (!ok) printf("    analytic %+.6e numeric %+.6e\n", an, nu), failures++;
    free(save), free(v);
}

/* Host arrays and their device mirrors: the tests compute on the host copies (differences,
 * expected values); up() uploads every live array before an op runs on the backend and down()
 * brings every array back after it, so the same test runs on any backend (--backend). */
enum { MAXBUF = 64 };
static struct mirror {
    void *h, *d;
    size_t bytes;
} mir[MAXBUF];

static void *mirror_new(size_t bytes) {
    for (int i = 0; i < MAXBUF; i++) {
        if (mir[i].h) continue;
        mir[i].h = malloc(bytes + 64);
        if (!mir[i].h || O->alloc(O, bytes + 64, &mir[i].d)) abort();
        mir[i].bytes = bytes;
        return mir[i].h;
    }
    abort();
}
static void *D(const void *h) {
    for (int i = 0; i < MAXBUF; i++)
        if (mir[i].h == h) return mir[i].d;
    abort();
}
static void up(void) {
    for (int i = 0; i < MAXBUF; i++)
        if (mir[i].h && O->upload(O, mir[i].d, mir[i].h, mir[i].bytes)) abort();
}
static void down(void) {
    for (int i = 0; i < MAXBUF; i++)
        if (mir[i].h && O->download(O, mir[i].h, mir[i].d, mir[i].bytes)) abort();
}
static void rel(void *h) {
    for (int i = 0; i < MAXBUF; i++)
        if (mir[i].h == h && h) {
            O->free(O, mir[i].d);
            free(mir[i].h);
            mir[i] = (struct mirror){NULL, NULL, 0};
        }
}

static float *mk(size_t n, ft_rng *r, float lo, float hi) {
    float *p = mirror_new(n * sizeof(float));
    if (r)
        tc_fill(p, n, r, lo, hi);
    else
        memset(p, 0, n * sizeof(float));
    return p;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ---- convolution ---- */

typedef struct conv_t {
    ft_conv_desc d;
    float *x, *w, *y, *r;
    void *ws;
} conv_t;

static double conv_loss(void *v) {
    conv_t *c = v;
    up();
    O->conv_fwd(O, &c->d, FT_F32, D(c->x), D(c->w), D(c->y), c->ws);
    down();
    return dot(c->y, c->r, (size_t)c->d.n * c->d.k * c->d.oh * c->d.ow);
}

static void test_conv(int n, int ch, int h, int w, int k, int r, int s, int p) {
    conv_t c;
    ft_rng g;
    ft_rng_seed(&g, 1, (uint64_t)(h * 100 + r * 10 + s));
    if (ft_conv_desc_init(&c.d, n, ch, h, w, k, r, s, p)) abort();
    size_t nx = (size_t)n * ch * h * w, nw = (size_t)k * ch * r * r;
    size_t ny = (size_t)n * k * c.d.oh * c.d.ow;
    c.x = mk(nx, &g, -1, 1), c.w = mk(nw, &g, -1, 1), c.y = mk(ny, NULL, 0, 0);
    c.r = mk(ny, &g, -1, 1);
    if (O->alloc(O, O->conv_ws_bytes(O, &c.d, FT_F32) + 64, &c.ws)) abort();
    float *dx = mk(nx, NULL, 0, 0), *dw = mk(nw, NULL, 0, 0);
    up();
    O->conv_bwd_data(O, &c.d, FT_F32, D(c.r), D(c.w), D(dx), c.ws);
    O->conv_bwd_filter(O, &c.d, FT_F32, D(c.x), D(c.r), D(dw), c.ws);
    down();
    char what[96];
    snprintf(what, sizeof what, "conv n%d c%d %dx%d k%d r%d s%d p%d dx", n, ch, h, w, k, r, s, p);
    check(what, conv_loss, &c, c.x, nx, dx, 1e-3f, 1e-2);
    snprintf(what, sizeof what, "conv n%d c%d %dx%d k%d r%d s%d p%d dw", n, ch, h, w, k, r, s, p);
    check(what, conv_loss, &c, c.w, nw, dw, 1e-3f, 1e-2);
    /* dw accumulates: a second call doubles it */
    float *dw2 = mk(nw, NULL, 0, 0);
    for (size_t i = 0; i < nw; i++) dw2[i] = 2 * dw[i];
    up();
    O->conv_bwd_filter(O, &c.d, FT_F32, D(c.x), D(c.r), D(dw), c.ws);
    down();
    double e = tc_nmax(dw, dw2, nw, 1e-6);
    if (e > 1e-5) printf("conv dw does not accumulate (err %.2e) FAIL\n", e), failures++;
    rel(dw2), rel(dx), rel(dw), rel(c.x), rel(c.w), rel(c.y), rel(c.r);
    O->free(O, c.ws);
}

/* ---- batch norm (2d and 1d) ---- */

typedef struct bn_t {
    int n, c, hw;
    float *x, *g, *b, *y, *r, *rm, *rv, *sm, *si;
} bn_t;

static double bn_loss(void *v) {
    bn_t *t = v;
    up();
    O->bn_fwd_train(O, FT_F32, t->n, t->c, t->hw, 1e-5f, 0.1f, D(t->x), D(t->g), D(t->b), D(t->y),
                    D(t->rm), D(t->rv), D(t->sm), D(t->si));
    down();
    return dot(t->y, t->r, (size_t)t->n * t->c * t->hw);
}

static void test_bn(int n, int c, int hw) {
    ft_rng g;
    ft_rng_seed(&g, 2, (uint64_t)hw);
    size_t nx = (size_t)n * c * hw;
    bn_t t = {.n = n, .c = c, .hw = hw};
    t.x = mk(nx, &g, -2, 3), t.g = mk(c, &g, 0.5, 1.5), t.b = mk(c, &g, -1, 1);
    t.y = mk(nx, NULL, 0, 0), t.r = mk(nx, &g, -1, 1);
    t.rm = mk(c, NULL, 0, 0), t.rv = mk(c, NULL, 0, 0), t.sm = mk(c, NULL, 0, 0);
    t.si = mk(c, NULL, 0, 0);
    bn_loss(&t);
    float *dx = mk(nx, NULL, 0, 0), *dg = mk(c, NULL, 0, 0), *db = mk(c, NULL, 0, 0);
    up();
    O->bn_bwd(O, FT_F32, n, c, hw, D(t.x), D(t.r), D(t.g), D(t.sm), D(t.si), D(dx), D(dg), D(db));
    down();
    char what[96];
    const char *kind = hw == 1 ? "bn1d" : "bn2d";
    snprintf(what, sizeof what, "%s n%d c%d hw%d dx", kind, n, c, hw);
    check(what, bn_loss, &t, t.x, nx, dx, 1e-3f, 1e-2);
    snprintf(what, sizeof what, "%s n%d c%d hw%d dgamma", kind, n, c, hw);
    check(what, bn_loss, &t, t.g, (size_t)c, dg, 1e-3f, 1e-2);
    snprintf(what, sizeof what, "%s n%d c%d hw%d dbeta", kind, n, c, hw);
    check(what, bn_loss, &t, t.b, (size_t)c, db, 1e-3f, 1e-2);
    /* running stats after one call from (0, 1): 0.1*mean, 0.9 + 0.1*unbiased var */
    memset(t.rm, 0, c * sizeof(float));
    for (int i = 0; i < c; i++) t.rv[i] = 1;
    bn_loss(&t);
    double worst = 0;
    for (int ch = 0; ch < c; ch++) {
        double s = 0, q = 0, m = (double)n * hw;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < hw; j++) s += t.x[((size_t)i * c + ch) * hw + j];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < hw; j++) {
                double d = t.x[((size_t)i * c + ch) * hw + j] - s / m;
                q += d * d;
            }
        double em = 0.1 * s / m, ev = 0.9 + 0.1 * q / (m - 1);
        worst = fmax(worst, fmax(fabs(t.rm[ch] - em), fabs(t.rv[ch] - ev) / ev));
    }
    printf("%-44s max err %.2e (tol 1e-5) %s\n", "  running stats", worst,
           worst <= 1e-5 ? "ok" : "FAIL");
    failures += worst > 1e-5;
    rel(dx), rel(dg), rel(db), rel(t.x), rel(t.g), rel(t.b), rel(t.y), rel(t.r);
    rel(t.rm), rel(t.rv), rel(t.sm), rel(t.si);
}

/* ---- PReLU ---- */

typedef struct pr_t {
    int n, c, hw;
    float *x, *a, *y, *r;
} pr_t;

static double prelu_loss(void *v) {
    pr_t *t = v;
    up();
    O->prelu_fwd(O, FT_F32, t->n, t->c, t->hw, D(t->x), D(t->a), D(t->y));
    down();
    return dot(t->y, t->r, (size_t)t->n * t->c * t->hw);
}

static void test_prelu(void) {
    ft_rng g;
    ft_rng_seed(&g, 3, 0);
    pr_t t = {.n = 3, .c = 4, .hw = 10};
    size_t nx = 120;
    t.x = mk(nx, NULL, 0, 0), t.a = mk(4, &g, 0.1, 0.4), t.y = mk(nx, NULL, 0, 0);
    t.r = mk(nx, &g, -1, 1);
    tc_fill_gap(t.x, nx, &g, 0.05f);
    float *dx = mk(nx, NULL, 0, 0), *da = mk(4, NULL, 0, 0);
    up();
    O->prelu_bwd(O, FT_F32, 3, 4, 10, D(t.x), D(t.a), D(t.r), D(dx), D(da));
    down();
    check("prelu dx", prelu_loss, &t, t.x, nx, dx, 1e-3f, 1e-2);
    check("prelu dalpha", prelu_loss, &t, t.a, 4, da, 1e-3f, 1e-2);
    rel(dx), rel(da), rel(t.x), rel(t.a), rel(t.y), rel(t.r);
}

/* ---- linear ---- */

typedef struct lin_t {
    int m, in, out;
    float *x, *w, *b, *y, *r;
} lin_t;

static double lin_loss(void *v) {
    lin_t *t = v;
    up();
    O->fc_fwd(O, FT_F32, t->m, t->in, 1, t->out, D(t->x), D(t->w), D(t->b), D(t->y));
    down();
    return dot(t->y, t->r, (size_t)t->m * t->out);
}

static void test_linear(int m, int in, int out) {
    ft_rng g;
    ft_rng_seed(&g, 4, (uint64_t)in);
    lin_t t = {.m = m, .in = in, .out = out};
    t.x = mk((size_t)m * in, &g, -1, 1), t.w = mk((size_t)out * in, &g, -1, 1);
    t.b = mk(out, &g, -1, 1), t.y = mk((size_t)m * out, NULL, 0, 0);
    t.r = mk((size_t)m * out, &g, -1, 1);
    float *dx = mk((size_t)m * in, NULL, 0, 0), *dw = mk((size_t)out * in, NULL, 0, 0);
    float *db = mk(out, NULL, 0, 0);
    up();
    O->fc_bwd(O, FT_F32, m, in, 1, out, D(t.x), D(t.w), D(t.r), D(dx), D(dw), D(db));
    down();
    char what[64];
    snprintf(what, sizeof what, "linear %dx%d->%d dx", m, in, out);
    check(what, lin_loss, &t, t.x, (size_t)m * in, dx, 1e-3f, 1e-2);
    snprintf(what, sizeof what, "linear %dx%d->%d dw", m, in, out);
    check(what, lin_loss, &t, t.w, (size_t)out * in, dw, 1e-3f, 1e-2);
    snprintf(what, sizeof what, "linear %dx%d->%d dbias", m, in, out);
    check(what, lin_loss, &t, t.b, (size_t)out, db, 1e-3f, 1e-2);
    rel(dx), rel(dw), rel(db), rel(t.x), rel(t.w), rel(t.b), rel(t.y), rel(t.r);
}

/* ---- L2 normalize ---- */

typedef struct l2_t {
    int rows, dim;
    float *x, *y, *nrm, *r;
} l2_t;

static double l2_loss(void *v) {
    l2_t *t = v;
    up();
    O->l2norm_fwd(O, t->rows, t->dim, D(t->x), D(t->y), D(t->nrm));
    down();
    return dot(t->y, t->r, (size_t)t->rows * t->dim);
}

static void test_l2(void) {
    ft_rng g;
    ft_rng_seed(&g, 5, 0);
    l2_t t = {.rows = 4, .dim = 9};
    size_t n = 36;
    t.x = mk(n, &g, -1, 1), t.y = mk(n, NULL, 0, 0), t.nrm = mk(4, NULL, 0, 0);
    t.r = mk(n, &g, -1, 1);
    l2_loss(&t);
    float *dx = mk(n, NULL, 0, 0);
    up();
    O->l2norm_bwd(O, 4, 9, D(t.y), D(t.nrm), D(t.r), D(dx));
    down();
    check("l2norm dx", l2_loss, &t, t.x, n, dx, 1e-3f, 1e-2);
    rel(dx), rel(t.x), rel(t.y), rel(t.nrm), rel(t.r);
}

/* ---- margin softmax cross-entropy on given cosines ---- */

typedef struct mg_t {
    int rows, cols;
    ft_margin mg;
    int32_t *label;
    float *cosv, *logits, *mx, *sum, *pt;
} mg_t;

static double mg_loss(void *v) {
    mg_t *t = v;
    up();
    O->margin_fwd(O, t->rows, t->cols, &t->mg, D(t->label), D(t->cosv), D(t->logits));
    O->row_max(O, t->rows, t->cols, D(t->logits), D(t->mx));
    O->row_exp_sum(O, t->rows, t->cols, D(t->logits), D(t->mx), D(t->sum));
    O->softmax_xent_bwd(O, t->rows, t->cols, D(t->logits), D(t->sum), D(t->label), 1.0f / t->rows,
                        D(t->pt));
    down();
    double l = 0;
    for (int i = 0; i < t->rows; i++) l -= log(fmax(t->pt[i], 1e-30));
    return l / t->rows;
}

static void test_margin(int kind, int grad_mode, float thr, const char *what) {
    ft_rng g;
    ft_rng_seed(&g, 6, (uint64_t)kind * 10 + (uint64_t)(thr * 10));
    mg_t t = {.rows = 5, .cols = 11};
    size_t n = 55;
    t.mg = (ft_margin){kind, grad_mode, 8.0f, 0.5f, 0.35f, thr};
    t.label = mirror_new(5 * sizeof(int32_t));
    for (int i = 0; i < 5; i++) t.label[i] = (int32_t)ft_rng_below(&g, 11);
    t.cosv = mk(n, &g, -0.9f, 0.9f), t.logits = mk(n, NULL, 0, 0);
    for (size_t i = 0; i < n && thr > 0; i++) /* keep away from the filter threshold */
        if (fabsf(t.cosv[i] - thr) < 0.01f) t.cosv[i] = thr + 0.02f;
    t.mx = mk(5, NULL, 0, 0), t.sum = mk(5, NULL, 0, 0), t.pt = mk(5, NULL, 0, 0);
    float *dc = mk(n, NULL, 0, 0);
    mg_loss(&t);
    up();
    O->margin_bwd(O, 5, 11, &t.mg, D(t.label), D(t.cosv), D(t.logits), D(dc));
    down();
    if (grad_mode == FT_MARGIN_GRAD_EXACT || kind == FT_MARGIN_COSFACE) {
        check(what, mg_loss, &t, t.cosv, n, dc, 1e-3f, 1e-2);
    } else { /* upstream: dcos = s * dlogits, i.e. the CosFace-like straight-through */
        float *want = mk(n, NULL, 0, 0);
        mg_loss(&t);
        for (size_t i = 0; i < n; i++) want[i] = t.logits[i] * t.mg.s;
        double e = tc_nmax(dc, want, n, 1e-6);
        printf("%-44s max err %.2e (tol 1e-6) %s\n", what, e, e <= 1e-6 ? "ok" : "FAIL");
        failures += e > 1e-6;
        rel(want);
    }
    rel(dc), rel(t.label), rel(t.cosv), rel(t.logits), rel(t.mx), rel(t.sum), rel(t.pt);
}

/* ---- Partial FC (sampled) end to end: emb and W gradients ---- */

typedef struct pfc_t {
    ft_pfc *p;
    float *emb, *w, *demb;
    int32_t *labels;
    int batch;
} pfc_t;

static double pfc_loss_w(void *v) {
    pfc_t *t = v;
    float loss;
    ft_pfc_tensor_set(t->p, 0, t->w);
    up();
    ft_pfc_forward_backward(t->p, D(t->emb), NULL, &loss);
    return loss;
}

static void test_pfc(float rate, float m2, float m3) {
    ft_pfc_config c;
    ft_pfc_config_init(&c, 23);
    c.emb = 6, c.max_batch = 4, c.sample_rate = rate, c.s = 8.0f, c.m2 = m2, c.m3 = m3;
    c.margin_grad = FT_MARGIN_GRAD_EXACT;
    pfc_t t = {0};
    if (ft_pfc_create(O, &c, &t.p)) abort();
    ft_rng g;
    ft_rng_seed(&g, 8, 0);
    int32_t labels[4] = {3, 17, 3, 9};
    t.emb = mk(24, &g, -1, 1), t.demb = mk(24, NULL, 0, 0), t.w = mk(23 * 6, NULL, 0, 0);
    ft_pfc_tensor_get(t.p, 0, t.w);
    for (int i = 0; i < 23 * 6; i++) t.w[i] *= 50; /* N(0, 0.5): cosines spread out */
    ft_pfc_tensor_set(t.p, 0, t.w);
    if (ft_pfc_prepare(t.p, labels, 4, 1)) abort();
    float loss, *gw = mk(23 * 6, NULL, 0, 0);
    up();
    ft_pfc_forward_backward(t.p, D(t.emb), D(t.demb), &loss);
    down();
    ft_pfc_grad_get(t.p, gw);
    char what[80];
    snprintf(what, sizeof what, "pfc rate %.1f %s demb", rate, m3 > 0 ? "cosface" : "arcface");
    check(what, pfc_loss_w, &t, t.emb, 24, t.demb, 1e-3f, 1e-2);
    snprintf(what, sizeof what, "pfc rate %.1f %s dW", rate, m3 > 0 ? "cosface" : "arcface");
    check(what, pfc_loss_w, &t, t.w, 23 * 6, gw, 1e-3f, 1e-2);
    /* rows that were not sampled get no gradient */
    const int32_t *idx;
    int cnt, bad = 0;
    ft_pfc_index(t.p, &idx, &cnt);
    for (int r = 0; r < 23 && idx; r++) {
        int in = 0;
        for (int j = 0; j < cnt; j++) in |= idx[j] == r;
        for (int k = 0; k < 6 && !in; k++) bad += gw[r * 6 + k] != 0.0f;
    }
    if (bad) printf("pfc: %d gradient entries on unsampled rows FAIL\n", bad), failures++;
    rel(gw), rel(t.emb), rel(t.demb), rel(t.w);
    ft_pfc_free(t.p);
}

/* ---- a small IResNet (two blocks in layer1: with and without downsample) ---- */

typedef struct net_t {
    ft_iresnet *m;
    float *x, *r, *e; /* input, direction of the loss, embeddings (mirrored) */
    int batch, emb;
    int ti;   /* the tensor being perturbed */
    float *w; /* its host copy */
} net_t;

static double net_loss(void *v) {
    net_t *t = v;
    const float *e;
    if (t->w && ft_iresnet_tensor_set(t->m, t->ti, t->w)) abort();
    up();
    if (ft_iresnet_forward(t->m, D(t->x), t->batch, 1, &e)) abort();
    if (O->download(O, t->e, e, (size_t)t->batch * t->emb * sizeof(float))) abort();
    return dot(t->e, t->r, (size_t)t->batch * t->emb);
}

static void test_net(void) {
    ft_iresnet_config c;
    ft_iresnet_config_init(&c, 18);
    c.blocks[0] = 2, c.blocks[1] = c.blocks[2] = c.blocks[3] = 1;
    c.width = 2, c.emb = 6, c.max_batch = 3, c.seed = 5;
    net_t t = {0};
    size_t planned = 0;
    if (ft_iresnet_plan_bytes(O, &c, &planned) || ft_iresnet_create(O, &c, &t.m)) abort();
    size_t made = ft_iresnet_bytes(t.m, NULL, NULL, NULL);
    printf("plan_bytes %zu == the created model's %zu: %s\n", planned, made,
           planned == made ? "ok" : "FAIL");
    if (planned != made) failures++;
    t.batch = 3, t.emb = 6;
    ft_rng g;
    ft_rng_seed(&g, 9, 0);
    t.x = mk((size_t)3 * 3 * 112 * 112, &g, -1, 1);
    t.r = mk(18, &g, -1, 1), t.e = mk(18, NULL, 0, 0);
    /* PReLU slopes 1 (identity): no kinks, so differences see a smooth function (the PReLU
     * op itself, kinks included, is checked above) */
    for (int i = 0; i < ft_iresnet_tensor_count(t.m); i++) {
        ft_tensor_info ti;
        ft_iresnet_tensor_info(t.m, i, &ti);
        if (!strstr(ti.name, "prelu")) continue;
        float ones[64];
        for (int k = 0; k < 64; k++) ones[k] = 1.0f;
        ft_iresnet_tensor_set(t.m, i, ones);
    }
    net_loss(&t);
    ft_iresnet_zero_grad(t.m);
    up();
    ft_iresnet_backward(t.m, D(t.r));
    int np = ft_iresnet_param_count(t.m);
    for (int i = 0; i < np; i++) {
        ft_param p;
        ft_iresnet_param(t.m, i, &p);
        if (!p.trainable) continue;
        /* host copies of the weight (perturbed by check_dir through net_loss) and gradient */
        t.ti = ft_iresnet_tensor_find(t.m, p.name);
        float *w = malloc(p.numel * sizeof(float)), *gr = malloc(p.numel * sizeof(float));
        if (!w || !gr || ft_iresnet_tensor_get(t.m, t.ti, w) || ft_iresnet_grad_get(t.m, t.ti, gr))
            abort();
        t.w = w;
        char what[96];
        snprintf(what, sizeof what, "net %s", p.name);
        check_dir(what, net_loss, &t, w, p.numel, gr, 1e-3f, 2e-2, 1e-1);
        ft_iresnet_tensor_set(t.m, t.ti, w); /* check_dir restored the values */
        t.w = NULL;
        free(w), free(gr);
    }
    rel(t.r), rel(t.x), rel(t.e);
    ft_iresnet_free(t.m);
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "test_ops_grad",
                            "usage: test_ops_grad [--backend cpu|cuda] [THREADS]\n"
                            "Every op's backward against finite differences.\n"))
        return 0;
    const char *backend = "cpu";
    int threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc)
            backend = argv[++i];
        else if (argv[i][0] >= '1' && argv[i][0] <= '9')
            threads = atoi(argv[i]);
        else
            return fprintf(stderr, "usage: test_ops_grad [--backend NAME] [threads]\n"), 2;
    }
    ft_ops_options opts = {.threads = threads, .device = -1};
    char err[256];
    int rc = ft_ops_create(backend, &opts, &O, err, sizeof err);
    if (rc) return fprintf(stderr, "test_ops_grad: %s\n", err), rc == FT_ENODEV ? 77 : 1;
    printf("backend %s\n", O->name);
    test_conv(2, 3, 7, 6, 4, 3, 1, 1);
    test_conv(3, 2, 8, 7, 3, 3, 2, 1);
    test_conv(2, 3, 9, 9, 2, 3, 2, 0);
    test_conv(2, 4, 6, 6, 3, 1, 2, 0);
    test_conv(2, 4, 5, 4, 3, 1, 1, 0);
    test_bn(3, 4, 10);
    test_bn(5, 7, 1);
    test_prelu();
    test_linear(3, 17, 5);
    test_l2();
    test_margin(FT_MARGIN_ARCFACE, FT_MARGIN_GRAD_EXACT, 0, "margin arcface (exact grad) dcos");
    test_margin(FT_MARGIN_COSFACE, FT_MARGIN_GRAD_UPSTREAM, 0, "margin cosface dcos");
    test_margin(FT_MARGIN_ARCFACE, FT_MARGIN_GRAD_EXACT, 0.3f, "margin arcface + filter 0.3 dcos");
    test_margin(FT_MARGIN_COSFACE, FT_MARGIN_GRAD_UPSTREAM, 0.3f,
                "margin cosface + filter 0.3 dcos");
    test_margin(FT_MARGIN_ARCFACE, FT_MARGIN_GRAD_UPSTREAM, 0,
                "margin arcface upstream grad = s*dlogit");
    test_pfc(1.0f, 0.5f, 0.0f);
    test_pfc(0.5f, 0.5f, 0.0f);
    test_pfc(0.5f, 0.0f, 0.35f);
    test_net();
    ft_ops_free(O);
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
