/* pack_image.c: JPEG checks and the --resize path of ft-pack (see pack.h). Resizing is
 * separable: each output sample is a weighted sum of input samples along one axis, with box
 * (area) weights when shrinking and tent (bilinear) weights when growing. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "pack.h"

int pack_image_init(pack_image *pi) {
    memset(pi, 0, sizeof *pi);
    pi->dec = tjInitDecompress();
    pi->enc = tjInitCompress();
    return pi->dec && pi->enc ? 0 : -ENOMEM;
}

void pack_image_free(pack_image *pi) {
    if (pi->dec) tjDestroy(pi->dec);
    if (pi->enc) tjDestroy(pi->enc);
    free(pi->src), free(pi->dst), free(pi->tmp);
    if (pi->jpg) tjFree(pi->jpg);
    memset(pi, 0, sizeof *pi);
}

int pack_jpeg_info(pack_image *pi, const uint8_t *data, size_t len, int *w, int *h) {
    int sub = 0, cs = 0;
    if (len < 4 || data[0] != 0xFF || data[1] != 0xD8 || len > 0xFFFFFFFFul) return FT_EDECODE;
    if (tjDecompressHeader3(pi->dec, data, (unsigned long)len, w, h, &sub, &cs) != 0)
        return FT_EDECODE;
    return *w > 0 && *h > 0 ? 0 : FT_EDECODE;
}

/* Weights for one axis: output i takes taps[i*k .. i*k+k) at input positions first[i]+t. */
typedef struct axis {
    int k;
    int *first;
    float *w;
} axis;

static void axis_free(axis *a) {
    free(a->first), free(a->w);
}

static int axis_make(axis *a, int in, int out) {
    double s = (double)in / out;
    a->k = s > 1 ? (int)ceil(s) + 1 : 2;
    a->first = calloc((size_t)out, sizeof *a->first);
    a->w = calloc((size_t)out * (size_t)a->k, sizeof *a->w);
    if (!a->first || !a->w) return -ENOMEM;
    for (int i = 0; i < out; i++) {
        float *w = a->w + (size_t)i * a->k;
        if (s > 1) { /* area: overlap of [i*s, (i+1)*s) with each input pixel */
            double x0 = i * s, x1 = (i + 1) * s;
            int f = (int)floor(x0);
            a->first[i] = f;
            for (int t = 0; t < a->k; t++) {
                double lo = fmax(x0, f + t), hi = fmin(x1, f + t + 1);
                w[t] = (float)(hi > lo && f + t < in ? (hi - lo) / s : 0);
            }
        } else { /* bilinear with pixel centres aligned */
            double x = (i + 0.5) * s - 0.5;
            if (x < 0) x = 0;
            if (x > in - 1) x = in - 1;
            int f = (int)floor(x);
            if (f > in - 2) f = in > 1 ? in - 2 : 0;
            a->first[i] = f;
            w[0] = (float)(1 - (x - f));
            w[1] = in > 1 ? (float)(x - f) : 0;
        }
    }
    return 0;
}

/* Resize RGB src (sw x sh) to dst (dw x dh) through the float buffer tmp (dw x sh x 3). */
static void resample(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh, float *tmp,
                     const axis *ax, const axis *ay) {
    for (int y = 0; y < sh; y++)
        for (int x = 0; x < dw; x++)
            for (int c = 0; c < 3; c++) {
                float acc = 0;
                for (int t = 0; t < ax->k; t++) {
                    int sx = ax->first[x] + t;
                    float w = ax->w[(size_t)x * ax->k + t];
                    if (w != 0) acc += w * src[((size_t)y * sw + sx) * 3 + c];
                }
                tmp[((size_t)y * dw + x) * 3 + c] = acc;
            }
    for (int y = 0; y < dh; y++)
        for (int x = 0; x < dw; x++)
            for (int c = 0; c < 3; c++) {
                float acc = 0;
                for (int t = 0; t < ay->k; t++) {
                    int sy = ay->first[y] + t;
                    float w = ay->w[(size_t)y * ay->k + t];
                    if (w != 0) acc += w * tmp[((size_t)sy * dw + x) * 3 + c];
                }
                dst[((size_t)y * dw + x) * 3 + c] = (uint8_t)(acc < 0     ? 0
                                                              : acc > 255 ? 255
                                                                          : acc + 0.5f);
            }
}

static int reserve(void **p, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    void *n = realloc(*p, need);
    if (!n) return -ENOMEM;
    *p = n, *cap = need;
    return 0;
}

int pack_resize(pack_image *pi, const uint8_t *data, size_t len, int w, int h, int quality) {
    int sw = 0, sh = 0;
    int rc = pack_jpeg_info(pi, data, len, &sw, &sh);
    if (rc) return rc;
    size_t src_need = (size_t)sw * sh * 3, tmp_need = (size_t)w * sh * 3 * sizeof(float);
    if (reserve((void **)&pi->src, &pi->src_cap, src_need) ||
        reserve((void **)&pi->tmp, &pi->tmp_cap, tmp_need))
        return -ENOMEM;
    free(pi->dst);
    if (!(pi->dst = malloc((size_t)w * h * 3))) return -ENOMEM;
    if (tjDecompress2(pi->dec, data, (unsigned long)len, pi->src, sw, 0, sh, TJPF_RGB,
                      TJFLAG_ACCURATEDCT) != 0)
        return FT_EDECODE;
    axis ax = {0}, ay = {0};
    rc = axis_make(&ax, sw, w);
    if (!rc) rc = axis_make(&ay, sh, h);
    if (!rc) resample(pi->src, sw, sh, pi->dst, w, h, pi->tmp, &ax, &ay);
    axis_free(&ax), axis_free(&ay);
    if (rc) return rc;
    if (pi->jpg) tjFree(pi->jpg);
    pi->jpg = NULL, pi->jpg_len = 0;
    if (tjCompress2(pi->enc, pi->dst, w, 0, h, TJPF_RGB, &pi->jpg, &pi->jpg_len, TJSAMP_420,
                    quality, TJFLAG_ACCURATEDCT) != 0)
        return FT_EDECODE;
    return 0;
}
