/* image.c: model inputs from image files (engine.h): JPEG decoding with libjpeg-turbo,
 * OpenCV-style bilinear resizing, and the normalized NCHW blob. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "engine.h"
#include "ft_common.h"

#define MAX_SIDE 16384

int ft_image_read_rgb(const char *path, uint8_t **rgb, int *w, int *h, char *err, size_t errcap) {
    *rgb = NULL;
    char *data = NULL;
    size_t len = 0;
    int rc = ft_read_file(path, &data, &len);
    if (rc) {
        snprintf(err, errcap, "%s: %s", path, ft_strerror(rc));
        return rc;
    }
    if (len < 3 || (uint8_t)data[0] != 0xFF || (uint8_t)data[1] != 0xD8) {
        snprintf(err, errcap, "%s: not a JPEG file (only JPEG is read)", path);
        free(data);
        return FT_EDECODE;
    }
    tjhandle tj = tjInitDecompress();
    int iw = 0, ih = 0, sub = 0, cs = 0;
    rc = FT_EDECODE;
    if (!tj) {
        snprintf(err, errcap, "%s: cannot start the JPEG decoder", path);
    } else if (tjDecompressHeader3(tj, (unsigned char *)data, (unsigned long)len, &iw, &ih, &sub,
                                   &cs)) {
        snprintf(err, errcap, "%s: bad JPEG header: %s", path, tjGetErrorStr2(tj));
    } else if (iw < 1 || ih < 1 || iw > MAX_SIDE || ih > MAX_SIDE) {
        snprintf(err, errcap, "%s: JPEG of %dx%d pixels (at most %d a side)", path, iw, ih,
                 MAX_SIDE);
    } else if (!(*rgb = malloc((size_t)iw * ih * 3))) {
        snprintf(err, errcap, "%s: out of memory", path);
        rc = -ENOMEM;
    } else if (tjDecompress2(tj, (unsigned char *)data, (unsigned long)len, *rgb, iw, iw * 3, ih,
                             TJPF_RGB, TJFLAG_ACCURATEDCT) &&
               tjGetErrorCode(tj) == TJERR_FATAL) {
        snprintf(err, errcap, "%s: JPEG does not decode: %s", path, tjGetErrorStr2(tj));
    } else {
        *w = iw, *h = ih;
        rc = 0;
    }
    if (rc) free(*rgb), *rgb = NULL;
    if (tj) tjDestroy(tj);
    free(data);
    return rc;
}

/* cv2.resize INTER_LINEAR: half-pixel centres, clamped at the border (float weights; OpenCV's
 * fixed-point weights differ by at most one level) */
void ft_image_resize(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh) {
    double fx = (double)sw / dw, fy = (double)sh / dh;
    for (int y = 0; y < dh; y++) {
        double sy = (y + 0.5) * fy - 0.5;
        if (sy < 0) sy = 0;
        int y0 = (int)sy, y1 = y0 + 1 < sh ? y0 + 1 : sh - 1;
        double wy = sy - y0;
        if (y0 >= sh - 1) y0 = y1 = sh - 1, wy = 0;
        for (int x = 0; x < dw; x++) {
            double sx = (x + 0.5) * fx - 0.5;
            if (sx < 0) sx = 0;
            int x0 = (int)sx, x1 = x0 + 1 < sw ? x0 + 1 : sw - 1;
            double wx = sx - x0;
            if (x0 >= sw - 1) x0 = x1 = sw - 1, wx = 0;
            for (int c = 0; c < 3; c++) {
                double a = src[((size_t)y0 * sw + x0) * 3 + c],
                       b = src[((size_t)y0 * sw + x1) * 3 + c];
                double p = src[((size_t)y1 * sw + x0) * 3 + c],
                       q = src[((size_t)y1 * sw + x1) * 3 + c];
                double v = (1 - wy) * ((1 - wx) * a + wx * b) + wy * ((1 - wx) * p + wx * q);
                int iv = (int)(v + 0.5);
                dst[((size_t)y * dw + x) * 3 + c] = (uint8_t)(iv < 0 ? 0 : iv > 255 ? 255 : iv);
            }
        }
    }
}

void ft_image_blob(const uint8_t *rgb, int hw, float mean, float std, int flip, float *out) {
    size_t plane = (size_t)hw * hw;
    float inv = 1.0f / std;
    for (int y = 0; y < hw; y++)
        for (int x = 0; x < hw; x++) {
            const uint8_t *p = rgb + ((size_t)y * hw + (flip ? hw - 1 - x : x)) * 3;
            for (int c = 0; c < 3; c++)
                out[c * plane + (size_t)y * hw + x] = ((float)p[c] - mean) * inv;
        }
}
