/* cast.c: fp32 <-> fp16 / bf16 conversions of the CPU backend, the cast op and the layout
 * boundary (act_import / act_export; the CPU keeps activations NCHW, so both are casts).
 *
 * The conversion kernels are chosen at run time from what the CPU has (never at build time):
 *   fp16: F16C (vcvtps2ph / vcvtph2ps, 8 lanes) else the portable expressions of kmath.h;
 *   bf16: AVX-512 BF16 (vcvtneps2bf16, 16 lanes; its denormal flush is undone lane by lane, so
 *         results equal the portable RNE exactly) else AVX2 integer RNE else portable.
 * Every path gives the bits kmath.h's scalar functions give (tests/ops/test_kmath.c).
 */
#include <pthread.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "ft_common.h"
#include "cpu.h"

/* ---- portable ---- */

static void to_f32_f16_c(const uint16_t *s, float *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = ft_km_f16_to_f32(s[i]);
}
static void from_f32_f16_c(const float *s, uint16_t *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = ft_km_f32_to_f16(s[i]);
}
static void to_f32_bf16_c(const uint16_t *s, float *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = ft_km_bf16_to_f32(s[i]);
}
static void from_f32_bf16_c(const float *s, uint16_t *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = ft_km_f32_to_bf16(s[i]);
}

#if defined(__x86_64__)
/* ---- F16C ---- */

__attribute__((target("avx2,f16c"))) static void to_f32_f16_x(const uint16_t *s, float *d,
                                                              size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    to_f32_f16_c(s + i, d + i, n - i);
}
__attribute__((target("avx2,f16c"))) static void from_f32_f16_x(const float *s, uint16_t *d,
                                                                size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
    from_f32_f16_c(s + i, d + i, n - i);
}

/* ---- bf16: AVX2 integers ---- */

__attribute__((target("avx2"))) static void to_f32_bf16_x(const uint16_t *s, float *d, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + i)));
        _mm256_storeu_si256((__m256i *)(d + i), _mm256_slli_epi32(h, 16));
    }
    to_f32_bf16_c(s + i, d + i, n - i);
}

/* 8 lanes of RNE: x + 0x7fff + ((x >> 16) & 1), NaN -> (x >> 16) | 0x40 */
__attribute__((target("avx2"))) static __m256i bf16_rne8(__m256i x) {
    __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    __m256i r = _mm256_add_epi32(
        x, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(x, 16), one)));
    r = _mm256_srli_epi32(r, 16);
    __m256i ax = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
    __m256i nan = _mm256_cmpgt_epi32(ax, _mm256_set1_epi32(0x7f800000));
    __m256i q = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
    return _mm256_blendv_epi8(r, q, nan);
}
__attribute__((target("avx2"))) static void from_f32_bf16_x(const float *s, uint16_t *d, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i r = bf16_rne8(_mm256_loadu_si256((const __m256i *)(s + i)));
        /* pack 8 x 32-bit (values < 2^16) to 8 x 16-bit */
        __m128i lo = _mm256_castsi256_si128(r), hi = _mm256_extracti128_si256(r, 1);
        _mm_storeu_si128((__m128i *)(d + i), _mm_packus_epi32(lo, hi));
    }
    from_f32_bf16_c(s + i, d + i, n - i);
}

/* ---- bf16: AVX-512 BF16 ---- */

__attribute__((target("avx512f,avx512bw,avx512bf16"))) static void
from_f32_bf16_z(const float *s, uint16_t *d, size_t n) {
    size_t i = 0;
    const __m512i expm = _mm512_set1_epi32(0x7f800000), absm = _mm512_set1_epi32(0x7fffffff);
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(s + i);
        __m256bh b = _mm512_cvtneps_pbh(v);
        __m256i r;
        memcpy(&r, &b, sizeof r);
        /* vcvtneps2bf16 flushes denormal inputs to zero: redo those lanes in integers */
        __m512i x = _mm512_castps_si512(v);
        __mmask16 den = _mm512_testn_epi32_mask(x, expm) & _mm512_test_epi32_mask(x, absm);
        if (den) {
            uint16_t tmp[16];
            memcpy(tmp, &r, sizeof tmp);
            for (int l = 0; l < 16; l++)
                if (den >> l & 1) tmp[l] = ft_km_f32_to_bf16(s[i + (size_t)l]);
            memcpy(&r, tmp, sizeof tmp);
        }
        _mm256_storeu_si256((__m256i *)(d + i), r);
    }
    from_f32_bf16_x(s + i, d + i, n - i);
}
#endif

/* ---- dispatch ---- */

typedef void (*to_fn)(const uint16_t *, float *, size_t);
typedef void (*from_fn)(const float *, uint16_t *, size_t);
static struct {
    int portable;
    to_fn f16_to, bf16_to;
    from_fn f16_from, bf16_from;
    const char *f16_name, *bf16_name;
} K;

static void pick(void) {
    K.f16_to = to_f32_f16_c, K.f16_from = from_f32_f16_c, K.f16_name = "portable";
    K.bf16_to = to_f32_bf16_c, K.bf16_from = from_f32_bf16_c, K.bf16_name = "portable";
#if defined(__x86_64__)
    if (!K.portable) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c"))
            K.f16_to = to_f32_f16_x, K.f16_from = from_f32_f16_x, K.f16_name = "f16c";
        if (__builtin_cpu_supports("avx2"))
            K.bf16_to = to_f32_bf16_x, K.bf16_from = from_f32_bf16_x, K.bf16_name = "avx2";
        if (__builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw"))
            K.bf16_from = from_f32_bf16_z, K.bf16_name = "avx512bf16";
    }
#endif
}

static pthread_once_t k_once = PTHREAD_ONCE_INIT;
static void ensure(void) {
    pthread_once(&k_once, pick);
}

/* Called between ops (the pool idle), so the workers see the new table after their next
 * wake-up, which synchronizes through the pool's mutex. */
int cpu_cvt_force_portable(int on) {
    ensure();
    int old = K.portable;
    K.portable = on != 0;
    pick();
    return old;
}

const char *cpu_cvt_kernels(ft_dtype dt) {
    ensure();
    return dt == FT_F16 ? K.f16_name : dt == FT_BF16 ? K.bf16_name : "none";
}

void cpu_cvt_to_f32(ft_dtype dt, const void *src, float *dst, size_t n) {
    ensure();
    if (dt == FT_F32)
        memmove(dst, src, n * sizeof(float));
    else
        (dt == FT_F16 ? K.f16_to : K.bf16_to)(src, dst, n);
}

void cpu_cvt_from_f32(ft_dtype dt, const float *src, void *dst, size_t n) {
    ensure();
    if (dt == FT_F32)
        memmove(dst, src, n * sizeof(float));
    else
        (dt == FT_F16 ? K.f16_from : K.bf16_from)(src, dst, n);
}

/* ---- the ops ---- */

enum { CAST_CHUNK = 4096 };

typedef struct cast_ctx {
    size_t count;
    ft_dtype sdt, ddt;
    const void *src;
    void *dst;
    ft_ops *o;
} cast_ctx;

static void cast_task(void *v, int tid, int nt) {
    cast_ctx *c = v;
    size_t lo, hi;
    cpu_range(c->count, tid, nt, &lo, &hi);
    float *buf = cpu_scratch_get(c->o, tid, 0);
    for (size_t i = lo; i < hi; i += CAST_CHUNK) {
        size_t n = hi - i < CAST_CHUNK ? hi - i : CAST_CHUNK;
        if (c->sdt == c->ddt) {
            memmove(cpu_at_mut(c->ddt, c->dst, i), cpu_at(c->sdt, c->src, i),
                    n * cpu_esize(c->sdt));
            continue;
        }
        const float *f = cpu_ld(c->sdt, c->src, i, n, buf);
        if (c->ddt == FT_F32)
            memcpy((float *)c->dst + i, f, n * sizeof(float));
        else
            cpu_cvt_from_f32(c->ddt, f, cpu_at_mut(c->ddt, c->dst, i), n);
    }
}

static int cpu_cast(ft_ops *o, size_t count, ft_dtype sdt, const void *src, ft_dtype ddt,
                    void *dst) {
    if (!cpu_float_dt(sdt) || !cpu_float_dt(ddt)) return FT_ENOTSUP;
    int rc = cpu_scratch_reserve(o, 1, CAST_CHUNK);
    if (rc) return rc;
    cast_ctx c = {count, sdt, ddt, src, dst, o};
    cpu_run_sized(o, count, cast_task, &c);
    return 0;
}

static int cpu_act_import(ft_ops *o, ft_dtype dt, int n, int c, int hw, const float *src,
                          void *dst) {
    if (n < 0 || c < 0 || hw < 0) return FT_EARG;
    return cpu_cast(o, (size_t)n * c * hw, FT_F32, src, dt, dst);
}

static int cpu_act_export(ft_ops *o, ft_dtype dt, int n, int c, int hw, const void *src,
                          float *dst) {
    if (n < 0 || c < 0 || hw < 0) return FT_EARG;
    return cpu_cast(o, (size_t)n * c * hw, dt, src, FT_F32, dst);
}

typedef struct in_ctx {
    int n, hw;
    const uint8_t *x;
    float *dst;
} in_ctx;
static void input_task(void *v, int tid, int nt) {
    in_ctx *c = v;
    size_t lo, hi;
    cpu_range((size_t)c->n, tid, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        const uint8_t *x = c->x + i * (size_t)c->hw * 3;
        float *d = c->dst + i * (size_t)c->hw * 3;
        for (int p = 0; p < c->hw; p++)
            for (int ch = 0; ch < 3; ch++)
                d[(size_t)ch * c->hw + p] = ft_km_pixel_norm(x[(size_t)p * 3 + ch]);
    }
}
static int cpu_input_u8(ft_ops *o, int n, int h, int w, const uint8_t *x, float *dst) {
    if (n < 0 || h < 1 || w < 1) return FT_EARG;
    in_ctx c = {n, h * w, x, dst};
    cpu_run_sized(o, (size_t)n * h * w * 3, input_task, &c);
    return 0;
}

void cpu_install_cast(ft_ops *o) {
    o->input_u8 = cpu_input_u8;
    o->cast = cpu_cast;
    o->act_import = cpu_act_import;
    o->act_export = cpu_act_export;
}
