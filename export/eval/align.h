/* align: 5-point face alignment to the arcface 112x112 template (formats.md 4.2), as
 * insightface's onnx_ijbc.py / eval_ijbc.py do it with scikit-image and OpenCV, in C.
 *
 *   ft_align_estimate   landmarks [5][2] (left eye, right eye, nose tip, left and right mouth
 *                       corners, pixel coordinates of the source image) -> M [2][3] mapping
 *                       source coordinates to aligned coordinates: the least-squares
 *                       similarity of skimage's SimilarityTransform.estimate (Umeyama with
 *                       scale, float64). For two dimensions Umeyama's rotation-and-scale is
 *                       c*R = [[a+d, b-c], [c-b, a+d]] / var(src) with A = D^T S / n = [[a, b],
 *                       [c, d]] whatever the rank of A (the SVD cases of formats.md 4.2 all
 *                       reduce to it), so no SVD is needed. Landmarks all at one point (skimage
 *                       returns NaN there) or non-finite are refused.
 *   ft_align_warp       cv2.warpAffine(img, M, (ow, oh)) with INTER_LINEAR and BORDER_CONSTANT,
 *                       borderValue 0, on interleaved uint8 pixels: M is inverted as OpenCV
 *                       inverts it, source positions are computed in its fixed point
 *                       (1/1024 pixel, rounded to 1/32) and the bilinear weights are its
 *                       15-bit ones, so the result is OpenCV's bit for bit (tests/eval checks
 *                       it against cv2 4.6).
 *   ft_align_face       both: an RGB image and its landmarks -> the 112x112 RGB crop.
 *
 * Functions return 0 or FT_ERANGE / FT_EARG (ft_common.h); nothing here prints or exits.
 */
#ifndef FT_ALIGN_H
#define FT_ALIGN_H

#include <stdint.h>

#define FT_ALIGN_SIZE 112

/* The arcface template for 112x112 crops (the 96x112 one shifted by +8 in x), float32 as the
 * reference scripts hold it. */
extern const float ft_align_template[5][2];

/* Least-squares similarity mapping src[n][2] onto dst[n][2] (n >= 2), into M[2][3]:
 * x' = M[0][0] x + M[0][1] y + M[0][2], y' = M[1][0] x + M[1][1] y + M[1][2].
 * FT_ERANGE when the src points coincide or a coordinate is not finite. */
int ft_align_similarity(const double *src, const double *dst, int n, double M[2][3]);

/* Landmarks -> the transform to ft_align_template (float32 inputs widened to double, as
 * numpy does for the template). */
int ft_align_estimate(const float lmk[5][2], double M[2][3]);

/* dst[oh][ow][ch] = src[h][w][ch] warped by M (source -> destination coordinates), as
 * cv2.warpAffine with bilinear interpolation and a black constant border. Strides in bytes;
 * 1 <= ch <= 4. FT_EARG for bad sizes, FT_ERANGE when M is not invertible or not finite. */
int ft_align_warp(const uint8_t *src, int w, int h, int src_stride, int ch, const double M[2][3],
                  uint8_t *dst, int ow, int oh, int dst_stride);

/* rgb[h][w][3] and its landmarks -> out[112][112][3]; M (may be NULL) receives the transform. */
int ft_align_face(const uint8_t *rgb, int w, int h, const float lmk[5][2],
                  uint8_t out[FT_ALIGN_SIZE * FT_ALIGN_SIZE * 3], double M[2][3]);

#endif
