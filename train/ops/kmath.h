/* kmath.h: the per-element math of the ops, in one place for every backend.
 *
 * Each function is the exact expression an op applies to one element or one row statistic;
 * the CPU backend (ops/cpu/, C11) and the CUDA backend (ops/cuda/, nvcc) both call these, so
 * the tests that run on the CPU test the very expressions the GPU runs. A backend adds only
 * the parallel decomposition (and, on the CPU, SIMD loops that compute the same expressions
 * in the same order; tests/ops/test_kmath.c checks them against these).
 *
 * Nothing here allocates, branches on a backend or touches memory beyond its arguments.
 */
#ifndef FT_KMATH_H
#define FT_KMATH_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define FT_KM static inline __host__ __device__
#else
#define FT_KM static inline
#endif

/* ---- bit casts ---- */

FT_KM uint32_t ft_km_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
FT_KM float ft_km_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- storage conversions (round to nearest even) ---- */

/* fp32 -> IEEE binary16 bits: RNE, subnormals kept, overflow (|x| >= 65520) to inf, NaN
 * stays NaN (quiet, high payload bits kept), as F16C's vcvtps2ph and torch's .half(). */
FT_KM uint16_t ft_km_f32_to_f16(float f) {
    uint32_t x = ft_km_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* inf, or rounds to it */
    if (ax < 0x38800000u) {
        /* result is subnormal or zero: let the FPU round at 2^-24 spacing */
        float a = ft_km_bits_f32(ax) + 0.5f;
        return (uint16_t)(sign | (ft_km_f32_bits(a) - 0x3f000000u));
    }
    uint32_t odd = (ax >> 13) & 1u;
    ax += 0xc8000fffu + odd; /* rebias the exponent (127 -> 15) and round */
    return (uint16_t)(sign | (ax >> 13));
}

FT_KM float ft_km_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        float v = (float)m * 5.9604644775390625e-08f; /* m * 2^-24, exact */
        return ft_km_bits_f32(ft_km_f32_bits(v) | sign);
    }
    if (e == 31) return ft_km_bits_f32(sign | 0x7f800000u | (m << 13));
    return ft_km_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

/* fp32 -> bfloat16 bits: RNE, subnormals kept, NaN quieted (torch's .bfloat16()). */
FT_KM uint16_t ft_km_f32_to_bf16(float f) {
    uint32_t x = ft_km_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

FT_KM float ft_km_bf16_to_f32(uint16_t h) {
    return ft_km_bits_f32((uint32_t)h << 16);
}

/* ---- network input: a uint8 pixel to its float value, ((x/255) - 0.5) / 0.5 as
 * arcface_torch's transforms (ToTensor, Normalize(0.5, 0.5)); common's ft_pixel_norm_table
 * is the same expression (test_kmath checks they agree) ---- */

FT_KM float ft_km_pixel_norm(uint8_t v) {
    return ((float)v / 255.0f - 0.5f) / 0.5f;
}

/* ---- elementwise ---- */

FT_KM int ft_km_nonfinite(float x) {
    return !(fabsf(x) <= FLT_MAX); /* inf or NaN */
}

FT_KM float ft_km_prelu(float x, float a) {
    return x > 0.0f ? x : a * x;
}
FT_KM float ft_km_prelu_dx(float x, float a, float dy) {
    return x > 0.0f ? dy : a * dy;
}
/* the term x contributes to d alpha (summed in double) */
FT_KM double ft_km_prelu_dalpha(float x, float dy) {
    return x > 0.0f ? 0.0 : (double)x * dy;
}

/* ---- batch norm: y = x * a + b per channel ---- */

/* train: mean and biased variance of the batch (double); eval: the running statistics */
FT_KM void ft_km_bn_coef(double mean, double var, float eps, float gamma, float beta, float *a,
                         float *b, double *invstd) {
    double is = 1.0 / sqrt(var + eps);
    *invstd = is;
    *a = (float)(gamma * is);
    *b = (float)(beta - mean * *a);
}
FT_KM float ft_km_bn_affine(float x, float a, float b) {
    return x * a + b;
}
/* running = (1 - momentum) * running + momentum * stat */
FT_KM float ft_km_bn_running(float run, float momentum, float stat) {
    return (1.0f - momentum) * run + momentum * stat;
}
/* backward: from sdy = sum dy and sdyx = sum dy (x - mean) over the m elements of a channel,
 * dx = g * dy - k1 * x - k0 with g = gamma * invstd */
FT_KM void ft_km_bn_bwd_coef(float gamma, double mean, double invstd, double sdy, double sdyx,
                             double m, float *g, float *k1, float *k0) {
    double gd = gamma * invstd;
    *k1 = (float)(gd * invstd * invstd * sdyx / m);
    *k0 = (float)(gd * (sdy / m - mean * invstd * invstd * sdyx / m));
    *g = (float)gd;
}
FT_KM float ft_km_bn_dx(float x, float dy, float g, float k1, float k0) {
    return g * dy - k1 * x - k0;
}

/* ---- L2 normalization (F.normalize, eps 1e-12) ---- */

FT_KM float ft_km_l2_denom(double sumsq) {
    float nrm = (float)sqrt(sumsq);
    return nrm < 1e-12f ? 1e-12f : nrm;
}
/* dx = (dy - y * d) / nrm with d = <y, dy>; a clamped norm passes no gradient through it */
FT_KM float ft_km_l2_dot_term(float nrm, double dot) {
    return nrm > 1e-12f ? (float)dot : 0.0f;
}
FT_KM float ft_km_l2_dx(float dy, float y, float d, float nrm) {
    return (dy - y * d) / nrm;
}

/* ---- dropout: element i kept iff hash(seed, i) >= p * 2^64 ---- */

FT_KM uint64_t ft_km_splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* the same mix as ft_hash64 (common/ft_common.c); test_kmath checks they agree */
FT_KM uint64_t ft_km_hash64(uint64_t a, uint64_t b, uint64_t c) {
    uint64_t s = a, h = ft_km_splitmix64(&s);
    s = h ^ b;
    h = ft_km_splitmix64(&s);
    s = h ^ c;
    return ft_km_splitmix64(&s);
}
#define FT_KM_DROPOUT_KEY 0x64726f70ull /* "drop" */
FT_KM int ft_km_dropout_keep(uint64_t seed, uint64_t i, float p) {
    return (double)ft_km_hash64(seed, i, FT_KM_DROPOUT_KEY) >= (double)p * 18446744073709551616.0;
}

/* ---- Partial FC class sampling (ops.h pfc_sample) ----
 * Local class i of a shard gets a 64-bit key, distinct for every i: a positive's key is i
 * (high word 0), a negative's high word is a hash of (seed, i) in [1, 2^31], its low word i.
 * The index of a step is the rows of the `count` smallest keys, ascending: every positive,
 * then count - #positives negatives drawn uniformly without replacement. */
#define FT_KM_SAMPLE_KEY 0x73616d706c65ull /* "sample" */
FT_KM uint64_t ft_km_sample_key(uint64_t seed, uint32_t i, int positive) {
    if (positive) return i;
    uint64_t hi = (ft_km_hash64(seed, i, FT_KM_SAMPLE_KEY) >> 33) + 1;
    return hi << 32 | i;
}
/* position of v in the ascending a[0..n), or -1 */
FT_KM int ft_km_find_sorted(const int32_t *a, int n, int32_t v) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (a[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && a[lo] == v ? lo : -1;
}

/* ---- SGD (torch.optim.SGD, dampening 0, no nesterov), in this order, no contraction ---- */

FT_KM void ft_km_sgd(float *w, float g, float *buf, float lr, float mom, float wd) {
    float d = g + wd * *w;
    float b = mom * *buf + d;
    *buf = b;
    *w -= lr * b;
}

/* ---- margin softmax ---- */

FT_KM float ft_km_clamp1(float x) {
    return x < -1.0f ? -1.0f : (x > 1.0f ? 1.0f : x);
}
/* interclass filtering: an entry above the threshold is multiplied by 0 (value and gradient),
 * except the target */
FT_KM int ft_km_filtered(float thr, float x, int is_target) {
    return thr > 0.0f && x > thr && !is_target;
}
/* logit of one entry; kind 1 ArcFace cos(acos(x) + m2), 2 CosFace x - m3 on the target */
FT_KM float ft_km_margin_logit(int kind, float s, float m2, float m3, float thr, float cosv,
                               int is_target) {
    float x = ft_km_clamp1(cosv);
    if (is_target) return s * (kind == 1 ? cosf(acosf(x) + m2) : x - m3);
    if (ft_km_filtered(thr, x, 0)) x = 0.0f;
    return s * x;
}
/* d loss / d cos of one entry given d loss / d logit; exact: the true ArcFace derivative at
 * the target instead of upstream's straight-through s */
FT_KM float ft_km_margin_dcos(int kind, int exact, float s, float m2, float thr, float cosv,
                              float dlogit, int is_target) {
    int pass = cosv >= -1.0f && cosv <= 1.0f && !ft_km_filtered(thr, ft_km_clamp1(cosv), is_target);
    float d = pass ? dlogit * s : 0.0f;
    if (is_target && kind == 1 && exact) {
        double x = ft_km_clamp1(cosv), sn = sqrt(fmax(1.0 - x * x, 1e-12));
        d *= (float)(cos(m2) + sin(m2) * x / sn);
    }
    return d;
}
/* softmax-CE gradient of one logit: e is exp(logit - max), sum the global row sum */
FT_KM float ft_km_xent_prob(float e, float sum) {
    return e / sum;
}
FT_KM float ft_km_xent_grad(float p, int is_target, float scale) {
    return (is_target ? p - 1.0f : p) * scale;
}

#endif
