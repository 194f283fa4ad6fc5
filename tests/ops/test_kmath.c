/* test_kmath.c: the per-element math of kmath.h against the CPU backend that runs it.
 *
 * kmath.h holds the expressions every backend applies per element; the CPU backend calls them
 * in its scalar loops and has SIMD loops (and run-time picked conversion kernels) that must
 * give the same bits. Checked here, exactly unless noted:
 *   - fp16: all 65536 halves to fp32, and fp32 -> fp16 for 2^22 random bit patterns plus the
 *     edges (inf, NaN, 65504/65520, the smallest subnormals, ties): the dispatched kernel
 *     (F16C where the CPU has it), the portable kernel and kmath's scalar function agree;
 *   - bf16 the same (AVX-512 BF16 / AVX2 / portable), denormal inputs in every lane included;
 *   - ft_km_hash64 is common/'s ft_hash64 (the dropout mask of every backend);
 *   - ft_km_pixel_norm is common/'s ft_pixel_norm_table (the network input);
 *   - the ops prelu_fwd/bwd, sgd_update, dropout_fwd against kmath per element (bit-exact);
 *     bn_fwd_eval and l2norm_fwd against kmath's coefficient functions (relative 1e-6: the
 *     backend sums in a different order than this test);
 *   - Partial FC's sampling keys (pfc_sample): over 4000 seeds every positive is kept and each
 *     negative is drawn as often as uniform sampling without replacement draws it (each
 *     class's count within 6 standard deviations, the sum of their z^2 within 6 of its own).
 * Prints which conversion kernels this CPU uses.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h" /* the CPU backend's conversion kernels */
#include "ft_common.h"
#include "ft_dataset.h"
#include "kmath.h"
#include "ops.h"

static int failures;

static void verdict(const char *what, long bad) {
    printf("  %-64s %s", what, bad ? "FAIL" : "ok");
    if (bad) printf(" (%ld mismatches)", bad);
    printf("\n");
    if (bad) failures++;
}

static int same_bits(float a, float b) {
    return memcmp(&a, &b, 4) == 0;
}

/* both directions of one 16-bit dtype, with the current kernel choice */
static long check_dtype(ft_dtype dt, const float *f, size_t n) {
    long bad = 0;
    uint16_t *h = malloc(n * 2), *all = malloc(65536 * 2);
    float *fa = malloc(65536 * 4);
    cpu_cvt_from_f32(dt, f, h, n);
    for (size_t i = 0; i < n; i++) {
        uint16_t want = dt == FT_F16 ? ft_km_f32_to_f16(f[i]) : ft_km_f32_to_bf16(f[i]);
        if (h[i] != want && bad++ < 5)
            printf("    %s(%a = 0x%08x) = 0x%04x, kmath 0x%04x\n", ft_dtype_name(dt), f[i],
                   ft_km_f32_bits(f[i]), h[i], want);
    }
    for (int i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    cpu_cvt_to_f32(dt, all, fa, 65536);
    for (int i = 0; i < 65536; i++) {
        float want = dt == FT_F16 ? ft_km_f16_to_f32((uint16_t)i) : ft_km_bf16_to_f32((uint16_t)i);
        if (!same_bits(fa[i], want) && !(isnan(fa[i]) && isnan(want)) && bad++ < 5)
            printf("    0x%04x -> %a, kmath %a\n", i, fa[i], want);
    }
    free(h), free(all), free(fa);
    return bad;
}

static void test_conversions(void) {
    size_t n = (size_t)1 << 22;
    float *f = malloc((n + 64) * sizeof(float));
    uint64_t s = 12345;
    for (size_t i = 0; i < n; i++) f[i] = ft_km_bits_f32((uint32_t)(ft_splitmix64(&s) >> 32));
    /* edges, some in every lane position of a 16-lane block */
    const float edge[] = {0.0f,           -0.0f,     INFINITY,   -INFINITY,      NAN,
                          65504.0f,       65519.99f, 65520.0f,   -65520.0f,      1e-45f,
                          1e-40f,         -1e-40f,   5.96e-8f,   2.98e-8f,       2.9802322e-08f,
                          6.1035156e-05f, 6.1e-05f,  1.0009766f, 1.00048828125f, 3.0e38f};
    size_t ne = sizeof edge / sizeof edge[0];
    for (size_t i = 0; i < 64; i++) f[n + i] = edge[i % ne];
    for (size_t i = 0; i < 64; i += 3) f[i] = ft_km_bits_f32(0x00000001u + (uint32_t)i * 977u);
    n += 64;
    for (int portable = 0; portable < 2; portable++) {
        cpu_cvt_force_portable(portable);
        char w[128];
        snprintf(w, sizeof w, "fp16 <-> fp32, %s kernels", cpu_cvt_kernels(FT_F16));
        verdict(w, check_dtype(FT_F16, f, n));
        snprintf(w, sizeof w, "bf16 <-> fp32, %s kernels", cpu_cvt_kernels(FT_BF16));
        verdict(w, check_dtype(FT_BF16, f, n));
    }
    cpu_cvt_force_portable(0);
    /* kmath against the definition: round to nearest even through double */
    long bad = 0;
    for (size_t i = 0; i < n; i += 7) {
        float x = f[i];
        if (!isfinite(x) || fabsf(x) >= 65520.0f) continue;
        float r = ft_km_f16_to_f32(ft_km_f32_to_f16(x));
        /* the two fp16 neighbours of x and the tie rule */
        double ax = fabs((double)x),
               e = ax < 6.103515625e-05 ? 5.9604644775390625e-08 : ldexp(1.0, ilogb(ax) - 10);
        double lo = floor(ax / e) * e, hi = lo + e, pick = ax - lo < hi - ax ? lo : hi;
        if (ax - lo == hi - ax) pick = fmod(lo / e, 2.0) == 0 ? lo : hi;
        if (fabs((double)r) != pick && bad++ < 5)
            printf("    f16 RNE of %a: %a, want %a\n", x, r, pick);
    }
    verdict("kmath fp16 rounding is round-to-nearest-even (vs a double reference)", bad);
    free(f);
}

static void test_hash(void) {
    long bad = 0;
    uint64_t s = 99;
    for (int i = 0; i < 100000; i++) {
        uint64_t a = ft_splitmix64(&s), b = ft_splitmix64(&s), c = ft_splitmix64(&s);
        bad += ft_km_hash64(a, b, c) != ft_hash64(a, b, c);
    }
    verdict("ft_km_hash64 == ft_hash64 (one dropout mask for every backend)", bad);
}

static void test_pixel_norm(void) {
    float lut[256];
    ft_pixel_norm_table(lut);
    long bad = 0;
    for (int v = 0; v < 256; v++) {
        float k = ft_km_pixel_norm((uint8_t)v);
        bad += memcmp(&k, &lut[v], sizeof k) != 0;
    }
    verdict("ft_km_pixel_norm == ft_pixel_norm_table (one network input for every backend)", bad);
}

static void test_ops(void) {
    ft_ops *o = NULL;
    ft_ops_options opts = {.threads = 2, .device = -1};
    char err[256];
    if (ft_ops_create("cpu", &opts, &o, err, sizeof err)) {
        printf("%s\n", err);
        failures++;
        return;
    }
    enum { N = 3, C = 5, HW = 301, T = N * C * HW };
    float *x = malloc(T * 4), *dy = malloc(T * 4), *y = malloc(T * 4), *dx = malloc(T * 4);
    float alpha[C], da[C] = {0}, gamma[C], beta[C], rm[C], rv[C];
    ft_rng r;
    ft_rng_seed(&r, 5, 0);
    for (int i = 0; i < T; i++) x[i] = (float)(ft_rng_uniform(&r) * 4 - 2);
    for (int i = 0; i < T; i++) dy[i] = (float)(ft_rng_uniform(&r) * 2 - 1);
    for (int c = 0; c < C; c++) {
        alpha[c] = (float)(0.1 + 0.3 * ft_rng_uniform(&r)),
        gamma[c] = (float)(0.5 + ft_rng_uniform(&r));
        beta[c] = (float)(ft_rng_uniform(&r) - 0.5), rm[c] = (float)(ft_rng_uniform(&r) - 0.5);
        rv[c] = (float)(0.5 + ft_rng_uniform(&r));
    }
    long bad = 0;
    o->prelu_fwd(o, FT_F32, N, C, HW, x, alpha, y);
    for (int i = 0; i < T; i++) bad += !same_bits(y[i], ft_km_prelu(x[i], alpha[i / HW % C]));
    verdict("prelu_fwd (SSE2 selects) == ft_km_prelu", bad);
    bad = 0;
    o->prelu_bwd(o, FT_F32, N, C, HW, x, alpha, dy, dx, da);
    for (int i = 0; i < T; i++)
        bad += !same_bits(dx[i], ft_km_prelu_dx(x[i], alpha[i / HW % C], dy[i]));
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < HW; j++)
                s += ft_km_prelu_dalpha(x[(i * C + c) * HW + j], dy[(i * C + c) * HW + j]);
        bad += fabs(da[c] - s) > 1e-6 * (fabs(s) + 1);
    }
    verdict("prelu_bwd == ft_km_prelu_dx, dalpha == sum of ft_km_prelu_dalpha", bad);
    bad = 0;
    o->bn_fwd_eval(o, FT_F32, N, C, HW, 1e-5f, x, gamma, beta, rm, rv, y);
    for (int i = 0; i < T; i++) {
        int c = i / HW % C;
        float a, b;
        double is;
        ft_km_bn_coef(rm[c], rv[c], 1e-5f, gamma[c], beta[c], &a, &b, &is);
        bad += !same_bits(y[i], ft_km_bn_affine(x[i], a, b));
    }
    verdict("bn_fwd_eval == ft_km_bn_affine(ft_km_bn_coef) (SSE2 affine)", bad);
    /* SGD, bit-exact through the SSE2 loop and its scalar tail */
    float *w = malloc(T * 4), *buf = malloc(T * 4), *w2 = malloc(T * 4), *b2 = malloc(T * 4);
    for (int i = 0; i < T; i++) w[i] = w2[i] = x[i], buf[i] = b2[i] = dy[i] * 0.5f;
    o->sgd_update(o, T, 0.1f, 0.9f, 5e-4f, w, dy, buf);
    bad = 0;
    for (int i = 0; i < T; i++) {
        ft_km_sgd(&w2[i], dy[i], &b2[i], 0.1f, 0.9f, 5e-4f);
        bad += !same_bits(w[i], w2[i]) || !same_bits(buf[i], b2[i]);
    }
    verdict("sgd_update == ft_km_sgd", bad);
    /* dropout mask and values */
    uint8_t *mask = malloc(T);
    const uint64_t dseed = 4242; /* the CPU backend's device memory is the host's */
    o->dropout_fwd(o, FT_F32, 1, T, 1, 0.3f, &dseed, x, y, mask);
    bad = 0;
    for (int i = 0; i < T; i++) {
        int keep = ft_km_dropout_keep(4242, (uint64_t)i, 0.3f);
        bad += mask[i] != keep || !same_bits(y[i], keep ? x[i] * (1.0f / 0.7f) : 0.0f);
    }
    verdict("dropout_fwd == ft_km_dropout_keep", bad);
    /* L2 norm rows */
    enum { R = 7, D = 37 };
    float nr[R];
    o->l2norm_fwd(o, R, D, x, y, nr);
    bad = 0;
    for (int i = 0; i < R; i++) {
        double ss = 0;
        for (int j = 0; j < D; j++) ss += (double)x[i * D + j] * x[i * D + j];
        float want = ft_km_l2_denom(ss);
        bad += fabsf(nr[i] - want) > 1e-6f * want;
        for (int j = 0; j < D; j++) bad += fabsf(y[i * D + j] - x[i * D + j] / nr[i]) > 1e-7f;
    }
    verdict("l2norm_fwd == ft_km_l2_denom (relative 1e-6)", bad);
    free(x), free(dy), free(y), free(dx), free(w), free(buf), free(w2), free(b2), free(mask);
    ft_ops_free(o);
}

static void test_sample_uniform(void) {
    enum { N = 100, COUNT = 23, T = 4000 };
    int32_t lab[4] = {3, 50, 97, 50}, idx[COUNT], out[4];
    long freq[N] = {0}, bad = 0;
    ft_ops *o = NULL;
    char err[128];
    uint64_t scr[2 * N + 512];
    if (ft_ops_create("cpu", NULL, &o, err, sizeof err) ||
        ft_ops_pfc_sample_scratch(N) > sizeof scr) {
        verdict("pfc_sample: a CPU backend", 1);
        return;
    }
    for (int t = 0; t < T; t++) {
        const uint64_t s = ft_hash64(7, (uint64_t)t, 1);
        if (o->pfc_sample(o, N, &s, 4, lab, COUNT, idx, out, scr)) {
            bad++;
            break;
        }
        for (int i = 0; i < COUNT; i++) freq[idx[i]]++;
        bad += out[0] < 0 || idx[out[0]] != 3 || idx[out[1]] != 50 || idx[out[3]] != 50;
    }
    verdict("pfc_sample: every positive kept, labels remapped to it (4000 seeds)", bad);
    /* the 20 negatives of each draw among the 97 other classes: p = 20/97 each */
    double p = (double)(COUNT - 3) / (N - 3), mean = T * p, sd = sqrt(T * p * (1 - p)), chi = 0;
    long off = 0;
    for (int i = 0; i < N; i++) {
        if (i == 3 || i == 50 || i == 97) {
            off += freq[i] != T;
            continue;
        }
        double z = (freq[i] - mean) / sd;
        off += fabs(z) > 6;
        chi += z * z;
    }
    /* sum of 97 squared z: mean 97 (E z^2 = 1 each), sd about sqrt(2 * 97) */
    off += fabs(chi - 97) > 6 * sqrt(2 * 97.0);
    printf("  pfc_sample over %d seeds: sum of z^2 %.1f over 97 classes (expected 97)\n", T, chi);
    verdict("pfc_sample: negatives uniform without replacement", off);
    ft_ops_free(o);
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "test_kmath",
                            "usage: test_kmath\n"
                            "kmath.h's per-element math against the CPU backend's kernels.\n"))
        return 0;
    printf("conversion kernels on this CPU: fp16 %s, bf16 %s\n", cpu_cvt_kernels(FT_F16),
           cpu_cvt_kernels(FT_BF16));
    test_conversions();
    test_hash();
    test_pixel_norm();
    test_ops();
    test_sample_uniform();
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
