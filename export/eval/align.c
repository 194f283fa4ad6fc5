/* align.c: the similarity estimate and OpenCV's bilinear warpAffine; see align.h. */
#include "align.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "ft_common.h"

const float ft_align_template[5][2] = {
    {38.2946f, 51.6963f}, {73.5318f, 51.5014f}, {56.0252f, 71.7366f},
    {41.5493f, 92.3655f}, {70.7299f, 92.2041f},
};

int ft_align_similarity(const double *src, const double *dst, int n, double M[2][3]) {
    if (n < 2) return FT_EARG;
    double ms[2] = {0, 0}, md[2] = {0, 0};
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 2; k++) {
            if (!isfinite(src[2 * i + k]) || !isfinite(dst[2 * i + k])) return FT_ERANGE;
            ms[k] += src[2 * i + k], md[k] += dst[2 * i + k];
        }
    for (int k = 0; k < 2; k++) ms[k] /= n, md[k] /= n;
    /* A = D^T S / n and the population variance of S, summed over x and y */
    double a = 0, b = 0, c = 0, d = 0, var = 0;
    for (int i = 0; i < n; i++) {
        double sx = src[2 * i] - ms[0], sy = src[2 * i + 1] - ms[1];
        double dx = dst[2 * i] - md[0], dy = dst[2 * i + 1] - md[1];
        a += dx * sx, b += dx * sy, c += dy * sx, d += dy * sy;
        var += sx * sx + sy * sy;
    }
    a /= n, b /= n, c /= n, d /= n, var /= n;
    if (!(var > 0) || !isfinite(var)) return FT_ERANGE; /* all source points at one place */
    double p = (a + d) / var, q = (c - b) / var;        /* c*R = [[p, -q], [q, p]] */
    M[0][0] = p, M[0][1] = -q, M[1][0] = q, M[1][1] = p;
    M[0][2] = md[0] - (p * ms[0] - q * ms[1]);
    M[1][2] = md[1] - (q * ms[0] + p * ms[1]);
    for (int r = 0; r < 2; r++)
        for (int k = 0; k < 3; k++)
            if (!isfinite(M[r][k])) return FT_ERANGE;
    return 0;
}

int ft_align_estimate(const float lmk[5][2], double M[2][3]) {
    double s[10], t[10];
    for (int i = 0; i < 5; i++)
        for (int k = 0; k < 2; k++) {
            s[2 * i + k] = (double)lmk[i][k];
            t[2 * i + k] = (double)ft_align_template[i][k];
        }
    return ft_align_similarity(s, t, 5, M);
}

/* ------------------------------------------------------------------ warp */

/* OpenCV's fixed point for warpAffine: positions in 1/2^AB_BITS pixel, rounded to
 * 1/INTER_TAB_SIZE; bilinear weights scaled to 2^COEF_BITS. */
enum { AB_BITS = 10, INTER_BITS = 5, INTER_TAB = 1 << INTER_BITS, COEF_BITS = 15 };

/* saturate_cast<int>(double): round half to even, clamped */
static int64_t sat_round(double v) {
    if (!(v > (double)INT_MIN)) return INT_MIN; /* NaN as well, though M is checked finite */
    if (v >= (double)INT_MAX) return INT_MAX;
    return (int64_t)lrint(v);
}
/* v >> s on a negative v as OpenCV's int shifts do it (floor), without relying on C's
 * implementation-defined signed shift */
static int64_t asr(int64_t v, int s) {
    return v >= 0 ? v >> s : -((-v - 1) >> s) - 1;
}
static int64_t sat_short(int64_t v) {
    return v < SHRT_MIN ? SHRT_MIN : v > SHRT_MAX ? SHRT_MAX : v;
}

int ft_align_warp(const uint8_t *src, int w, int h, int src_stride, int ch, const double M[2][3],
                  uint8_t *dst, int ow, int oh, int dst_stride) {
    if (w < 1 || h < 1 || ow < 1 || oh < 1 || ch < 1 || ch > 4 || src_stride < w * ch ||
        dst_stride < ow * ch)
        return FT_EARG;
    double m[6] = {M[0][0], M[0][1], M[0][2], M[1][0], M[1][1], M[1][2]};
    for (int i = 0; i < 6; i++)
        if (!isfinite(m[i])) return FT_ERANGE;
    /* invert as cv::warpAffine does without WARP_INVERSE_MAP */
    double D = m[0] * m[4] - m[1] * m[3];
    if (D == 0) return FT_ERANGE;
    D = 1. / D;
    double a11 = m[4] * D, a22 = m[0] * D;
    m[0] = a11, m[1] *= -D, m[3] *= -D, m[4] = a22;
    double b1 = -m[0] * m[2] - m[1] * m[5], b2 = -m[3] * m[2] - m[4] * m[5];
    m[2] = b1, m[5] = b2;
    for (int i = 0; i < 6; i++)
        if (!isfinite(m[i])) return FT_ERANGE;

    const double ab_scale = (double)(1 << AB_BITS);
    const int64_t round_delta = (1 << AB_BITS) / INTER_TAB / 2;
    for (int y = 0; y < oh; y++) {
        int64_t X0 = sat_round((m[1] * y + m[2]) * ab_scale) + round_delta;
        int64_t Y0 = sat_round((m[4] * y + m[5]) * ab_scale) + round_delta;
        uint8_t *out = dst + (size_t)y * dst_stride;
        for (int x = 0; x < ow; x++) {
            int64_t X = asr(X0 + sat_round(m[0] * x * ab_scale), AB_BITS - INTER_BITS);
            int64_t Y = asr(Y0 + sat_round(m[3] * x * ab_scale), AB_BITS - INTER_BITS);
            int64_t sx = sat_short(asr(X, INTER_BITS)), sy = sat_short(asr(Y, INTER_BITS));
            int fx = (int)(X - asr(X, INTER_BITS) * INTER_TAB);
            int fy = (int)(Y - asr(Y, INTER_BITS) * INTER_TAB);
            /* weights (1 - fx/32)(1 - fy/32) ... scaled to 2^15: exact products of 1/32 steps */
            int w00 = (INTER_TAB - fx) * (INTER_TAB - fy) * 32, w01 = fx * (INTER_TAB - fy) * 32;
            int w10 = (INTER_TAB - fx) * fy * 32, w11 = fx * fy * 32;
            int in_x0 = sx >= 0 && sx < w, in_x1 = sx + 1 >= 0 && sx + 1 < w;
            int in_y0 = sy >= 0 && sy < h, in_y1 = sy + 1 >= 0 && sy + 1 < h;
            const uint8_t *r0 = in_y0 ? src + (size_t)sy * src_stride : NULL;
            const uint8_t *r1 = in_y1 ? src + (size_t)(sy + 1) * src_stride : NULL;
            for (int k = 0; k < ch; k++) {
                /* outside pixels are the border value 0 */
                int v00 = r0 && in_x0 ? r0[sx * ch + k] : 0;
                int v01 = r0 && in_x1 ? r0[(sx + 1) * ch + k] : 0;
                int v10 = r1 && in_x0 ? r1[sx * ch + k] : 0;
                int v11 = r1 && in_x1 ? r1[(sx + 1) * ch + k] : 0;
                int v = (v00 * w00 + v01 * w01 + v10 * w10 + v11 * w11 + (1 << (COEF_BITS - 1))) >>
                        COEF_BITS;
                out[x * ch + k] = (uint8_t)(v > 255 ? 255 : v);
            }
        }
    }
    return 0;
}

int ft_align_face(const uint8_t *rgb, int w, int h, const float lmk[5][2],
                  uint8_t out[FT_ALIGN_SIZE * FT_ALIGN_SIZE * 3], double M[2][3]) {
    double m[2][3];
    int rc = ft_align_estimate(lmk, m);
    if (rc) return rc;
    if (M)
        for (int r = 0; r < 2; r++)
            for (int k = 0; k < 3; k++) M[r][k] = m[r][k];
    return ft_align_warp(rgb, w, h, w * 3, 3, m, out, FT_ALIGN_SIZE, FT_ALIGN_SIZE,
                         FT_ALIGN_SIZE * 3);
}
