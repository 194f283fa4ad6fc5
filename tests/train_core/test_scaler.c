/* test_scaler.c: fp16 dynamic loss scaling with torch.cuda.amp.GradScaler semantics.
 *
 * 1. The scaler alone (scaler.h), as arcface_torch configures it (GradScaler(growth_interval=
 *    100)): starts at 2^16; an inf/NaN step is skipped, halves the scale and restarts the
 *    growth count; 100 finite steps in a row double it (99 do not); a doubling that would
 *    overflow fp32 keeps the scale; a disabled scaler (fp32, bf16) has scale 1 and never skips.
 * 2. In a training step of a small fp16 IResNet + Partial FC + SGD on the CPU backend: after a
 *    finite step (so the momentum is not zero), an inf injected into one gradient makes
 *    ft_sgd_unscale report it; the step is skipped as ft-train skips it, and every parameter
 *    and momentum buffer is bit-identical to before (the BN running statistics move with the
 *    forward, as in PyTorch); a NaN does the same; a clean step with the halved scale then
 *    moves the weights again.
 * 3. unscale multiplies by exactly 1/scale: gradients of a scaled step, unscaled, equal the
 *    gradients of the same step at scale 1 within fp16 rounding (the loss scale is a power of
 *    two; the backbone's activation gradients are rounded at different magnitudes).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iresnet.h"
#include "optim.h"
#include "pfc.h"
#include "scaler.h"
#include "tc_util.h"

static int failures;

static void verdict(const char *what, int ok) {
    printf("  %-66s %s\n", what, ok ? "ok" : "FAIL");
    failures += !ok;
}

static void test_scaler_alone(void) {
    ft_scaler s;
    ft_scaler_init(&s, 1, 65536.0f, 100);
    verdict("starts at 2^16", ft_scaler_scale(&s) == 65536.0f);
    int skip = ft_scaler_update(&s, 1);
    verdict("inf: skip, scale 32768, 1 skipped", skip && s.scale == 32768.0f && s.skipped == 1);
    int any = 0;
    for (int i = 0; i < 99; i++) any |= ft_scaler_update(&s, 0);
    verdict("99 finite steps: no skip, scale unchanged", !any && s.scale == 32768.0f);
    ft_scaler_update(&s, 0);
    verdict("the 100th finite step doubles it", s.scale == 65536.0f && s.growth_tracker == 0);
    for (int i = 0; i < 50; i++) ft_scaler_update(&s, 0);
    ft_scaler_update(&s, 1);
    for (int i = 0; i < 99; i++) ft_scaler_update(&s, 0);
    verdict("an inf restarts the growth count", s.scale == 32768.0f);
    ft_scaler_update(&s, 1), ft_scaler_update(&s, 1);
    verdict("consecutive skips are counted", s.consecutive == 2 && s.skipped == 4);
    ft_scaler_update(&s, 0);
    verdict("a finite step ends the run of skips", s.consecutive == 0);
    ft_scaler_init(&s, 1, 3.0e38f, 1);
    ft_scaler_update(&s, 0);
    verdict("growth that would overflow fp32 keeps the scale", s.scale == 3.0e38f);
    ft_scaler_init(&s, 0, 65536.0f, 100);
    verdict("disabled: scale 1, never skips",
            ft_scaler_scale(&s) == 1.0f && !ft_scaler_update(&s, 1));
}

/* ---- a training step ---- */

typedef struct tr {
    ft_ops *o;
    ft_iresnet *m;
    ft_pfc *p;
    ft_sgd *s;
    float *demb, *x;
    int32_t lab[6];
} tr;

enum { B = 6, E = 16, NC = 30 };

static int tr_create(tr *t, int dtype) {
    memset(t, 0, sizeof *t);
    ft_iresnet_config mc;
    ft_iresnet_config_init(&mc, 18);
    mc.blocks[0] = mc.blocks[1] = mc.blocks[2] = mc.blocks[3] = 1;
    mc.width = 4, mc.emb = E, mc.max_batch = B, mc.seed = 3, mc.dtype = dtype;
    ft_pfc_config pc;
    ft_pfc_config_init(&pc, NC);
    pc.emb = E, pc.max_batch = B, pc.dtype = dtype;
    ft_sgd_config sc = {0.9f, 5e-4f};
    void *d;
    if (!(t->o = tc_cpu(2)) || ft_iresnet_create(t->o, &mc, &t->m) ||
        ft_pfc_create(t->o, &pc, &t->p) || ft_sgd_create(t->o, &sc, &t->s) ||
        t->o->alloc(t->o, B * E * sizeof(float), &d))
        return 1;
    t->demb = d;
    for (int i = 0; i < ft_iresnet_param_count(t->m); i++) {
        ft_param pr;
        ft_iresnet_param(t->m, i, &pr);
        if (ft_sgd_add_param(t->s, &pr, FT_SGD_GROUP_BACKBONE) < 0) return 1;
    }
    ft_param pp;
    ft_pfc_param(t->p, &pp);
    if (ft_sgd_add_param(t->s, &pp, FT_SGD_GROUP_HEAD) < 0) return 1;
    size_t nx = (size_t)B * 3 * 112 * 112;
    t->x = malloc(nx * sizeof(float));
    ft_rng g;
    ft_rng_seed(&g, 4, 0);
    tc_fill(t->x, nx, &g, -1, 1);
    for (int i = 0; i < B; i++) t->lab[i] = (int32_t)ft_rng_below(&g, NC);
    return t->o->upload(t->o, ft_iresnet_input(t->m), t->x, nx * sizeof(float));
}

static void tr_free(tr *t) {
    if (t->o) t->o->free(t->o, t->demb);
    ft_sgd_free(t->s), ft_pfc_free(t->p), ft_iresnet_free(t->m), ft_ops_free(t->o);
    free(t->x);
}

/* forward + backward at loss scale `scale` (gradients accumulate into zeroed buffers) */
static int tr_backward(tr *t, float scale, uint64_t step) {
    const float *emb;
    float loss;
    int rc = ft_sgd_zero_grad(t->s);
    if (!rc) rc = ft_iresnet_forward(t->m, ft_iresnet_input(t->m), B, 1, &emb);
    if (!rc) rc = ft_pfc_prepare(t->p, t->lab, B, step);
    if (!rc) rc = ft_pfc_set_loss_scale(t->p, scale);
    if (!rc) rc = ft_pfc_forward_backward(t->p, emb, t->demb, &loss);
    if (!rc) rc = ft_iresnet_backward(t->m, t->demb);
    return rc;
}

/* ft-train's optimizer step with a scaler: unscale + check, clip, step unless skipped */
static int tr_opt_step(tr *t, ft_scaler *sc, int *skipped) {
    int inf = 0;
    double norm;
    int rc = ft_sgd_unscale(t->s, 1.0f / ft_scaler_scale(sc), &inf);
    *skipped = ft_scaler_update(sc, inf);
    if (!rc) rc = ft_sgd_clip_grad_norm(t->s, FT_SGD_GROUP_BACKBONE, 5.0, &norm);
    if (!rc && !*skipped) rc = ft_sgd_step(t->s, 0.1f);
    return rc;
}

/* every parameter (backbone and PFC) and momentum buffer, concatenated on the host (the BN
 * running statistics are left out: the forward updates them whether the step is taken or not,
 * in PyTorch as here) */
static float *snapshot(tr *t, size_t *n) {
    size_t total = 0;
    for (int i = 0; i < ft_iresnet_param_count(t->m); i++) {
        ft_param pr;
        ft_iresnet_param(t->m, i, &pr);
        total += pr.numel;
    }
    for (int i = 0; i < ft_sgd_state_count(t->s); i++) {
        ft_tensor_info ti;
        ft_sgd_state_info(t->s, i, &ti);
        total += ti.numel;
    }
    ft_param pp;
    ft_pfc_param(t->p, &pp);
    total += pp.numel;
    float *h = malloc(total * sizeof(float)), *c = h;
    for (int i = 0; i < ft_iresnet_param_count(t->m); i++) {
        ft_param pr;
        ft_iresnet_param(t->m, i, &pr);
        t->o->download(t->o, c, pr.w, pr.numel * sizeof(float)), c += pr.numel;
    }
    for (int i = 0; i < ft_sgd_state_count(t->s); i++) {
        ft_tensor_info ti;
        ft_sgd_state_info(t->s, i, &ti);
        ft_sgd_state_get(t->s, i, c), c += ti.numel;
    }
    ft_pfc_tensor_get(t->p, 0, c);
    *n = total;
    return h;
}

static void test_step_skip(void) {
    tr t;
    if (tr_create(&t, FT_F16)) {
        verdict("setup", 0);
        tr_free(&t);
        return;
    }
    ft_scaler sc;
    ft_scaler_init(&sc, 1, 1024.0f, 100);
    int skipped = 1;
    int rc = tr_backward(&t, ft_scaler_scale(&sc), 0);
    if (!rc) rc = tr_opt_step(&t, &sc, &skipped);
    verdict("a finite fp16 step at scale 1024 is taken", !rc && !skipped && sc.scale == 1024.0f);
    for (int k = 0; k < 2; k++) {
        size_t n0, n1;
        float *before = snapshot(&t, &n0);
        rc = tr_backward(&t, ft_scaler_scale(&sc), 1);
        /* inject: one element of one backbone gradient (k = 0 inf, 1 NaN) */
        ft_param pr;
        ft_iresnet_param(t.m, 5 + k, &pr);
        float bad = k ? NAN : INFINITY;
        if (!rc) rc = t.o->upload(t.o, pr.g + pr.numel / 2, &bad, sizeof bad);
        float scale_before = sc.scale;
        if (!rc) rc = tr_opt_step(&t, &sc, &skipped);
        float *after = snapshot(&t, &n1);
        char w[120];
        snprintf(w, sizeof w, "%s in %s: skipped, scale halved", k ? "NaN" : "inf", pr.name);
        verdict(w, !rc && skipped && sc.scale == scale_before / 2);
        verdict("  every parameter and momentum buffer bit-identical to before",
                n0 == n1 && memcmp(before, after, n0 * sizeof(float)) == 0);
        free(before), free(after);
    }
    size_t n0, n1;
    float *before = snapshot(&t, &n0);
    rc = tr_backward(&t, ft_scaler_scale(&sc), 2);
    if (!rc) rc = tr_opt_step(&t, &sc, &skipped);
    float *after = snapshot(&t, &n1);
    verdict("a clean step at the halved scale moves the weights again",
            !rc && !skipped && memcmp(before, after, n0 * sizeof(float)) != 0);
    free(before), free(after);
    tr_free(&t);
}

/* unscaled gradients of a step at scale 512 vs the same step at scale 1 (fp16 storage) */
static void test_unscale_exact(void) {
    tr t;
    if (tr_create(&t, FT_F16)) {
        verdict("setup", 0);
        tr_free(&t);
        return;
    }
    ft_param pp;
    ft_pfc_param(t.p, &pp);
    size_t n = pp.numel;
    float *g1 = malloc(n * sizeof(float)), *g2 = malloc(n * sizeof(float));
    int inf = 0;
    int rc = tr_backward(&t, 1.0f, 0);
    if (!rc) rc = ft_pfc_grad_get(t.p, g1);
    if (!rc) rc = tr_backward(&t, 512.0f, 0);
    if (!rc) rc = ft_sgd_unscale(t.s, 1.0f / 512.0f, &inf);
    if (!rc) rc = ft_pfc_grad_get(t.p, g2);
    double e = tc_nmax(g2, g1, n, 1e-12);
    char w[120];
    snprintf(w, sizeof w, "PFC gradient at scale 512, unscaled, vs scale 1: err %.1e (tol 1e-2)",
             e);
    verdict(w, !rc && !inf && e <= 1e-2);
    free(g1), free(g2);
    tr_free(&t);
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "test_scaler",
                            "usage: test_scaler\n"
                            "fp16 loss scaling with GradScaler semantics, alone and in a step.\n"))
        return 0;
    test_scaler_alone();
    test_step_skip();
    test_unscale_exact();
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
