/* verify.c: verification on .bin targets; see verify.h. */
#include "verify.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "ft_common.h"
#include "ft_dataset.h"
#include "ft_verbin.h"

struct ft_verify_target {
    char name[64];
    char path[1024];
    ft_verbin bin;
    int h, w;
    tjhandle tj;
};

/* ------------------------------------------------------------------ protocol */

static int64_t fold_start(int64_t p, int k) {
    int64_t base = p / FT_VERIFY_FOLDS, extra = p % FT_VERIFY_FOLDS;
    return base * k + (k < extra ? k : extra);
}

/* best[k]: the threshold chosen on the other folds for fold k (may be NULL) */
static int kfold(const double *dist, const uint8_t *issame, int64_t n_pairs,
                 double fold_acc[FT_VERIFY_FOLDS], double *best_t, double *mean, double *std) {
    if (n_pairs < FT_VERIFY_FOLDS) return FT_EARG;
    /* correct[k][t]: pairs of fold k classified right at threshold t */
    int64_t(*correct)[FT_VERIFY_THRESHOLDS] = calloc(FT_VERIFY_FOLDS, sizeof *correct);
    if (!correct) return -ENOMEM;
    for (int k = 0; k < FT_VERIFY_FOLDS; k++) {
        for (int64_t i = fold_start(n_pairs, k); i < fold_start(n_pairs, k + 1); i++) {
            for (int t = 0; t < FT_VERIFY_THRESHOLDS; t++) {
                int pred = dist[i] < (double)t * 0.01;
                correct[k][t] += pred == (issame[i] != 0);
            }
        }
    }
    for (int k = 0; k < FT_VERIFY_FOLDS; k++) {
        int64_t n_test = fold_start(n_pairs, k + 1) - fold_start(n_pairs, k);
        int64_t n_train = n_pairs - n_test;
        int best = 0;
        double best_acc = -1.0;
        for (int t = 0; t < FT_VERIFY_THRESHOLDS; t++) {
            int64_t c = 0;
            for (int j = 0; j < FT_VERIFY_FOLDS; j++)
                if (j != k) c += correct[j][t];
            double acc = (double)c / (double)n_train;
            if (acc > best_acc) best_acc = acc, best = t;
        }
        fold_acc[k] = (double)correct[k][best] / (double)n_test;
        if (best_t) best_t[k] = (double)best * 0.01;
    }
    free(correct);
    double m = 0, v = 0;
    for (int k = 0; k < FT_VERIFY_FOLDS; k++) m += fold_acc[k];
    m /= FT_VERIFY_FOLDS;
    for (int k = 0; k < FT_VERIFY_FOLDS; k++) v += (fold_acc[k] - m) * (fold_acc[k] - m);
    *mean = m;
    *std = sqrt(v / FT_VERIFY_FOLDS);
    return 0;
}

int ft_verify_kfold(const double *dist, const uint8_t *issame, int64_t n_pairs,
                    double fold_acc[FT_VERIFY_FOLDS], double *mean, double *std) {
    return kfold(dist, issame, n_pairs, fold_acc, NULL, mean, std);
}

int ft_verify_protocol(const float *orig, const float *flip, int64_t n_pairs, int dim,
                       const uint8_t *issame, ft_verify_result *r) {
    if (n_pairs < FT_VERIFY_FOLDS || dim < 1) return FT_EARG;
    int64_t n = 2 * n_pairs;
    double xsum = 0;
    for (int pass = 0; pass < 2; pass++) {
        const float *e = pass ? flip : orig;
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int d = 0; d < dim; d++) s += (double)e[i * dim + d] * e[i * dim + d];
            xsum += sqrt(s);
        }
    }
    r->xnorm = xsum / (double)(2 * n);
    double *fused = malloc((size_t)dim * 2 * sizeof *fused);
    double *dist = malloc((size_t)n_pairs * sizeof *dist);
    if (!fused || !dist) {
        free(fused), free(dist);
        return -ENOMEM;
    }
    for (int64_t p = 0; p < n_pairs; p++) {
        for (int j = 0; j < 2; j++) {
            int64_t i = 2 * p + j;
            double *f = fused + (size_t)j * dim, s = 0;
            for (int d = 0; d < dim; d++) {
                f[d] = (double)orig[i * dim + d] + (double)flip[i * dim + d];
                s += f[d] * f[d];
            }
            double norm = sqrt(s);
            if (norm == 0.0) norm = 1.0; /* sklearn's normalize leaves zero rows as zeros */
            for (int d = 0; d < dim; d++) f[d] /= norm;
        }
        double s = 0;
        for (int d = 0; d < dim; d++) {
            double df = fused[d] - fused[dim + d];
            s += df * df;
        }
        dist[p] = s;
    }
    int rc = kfold(dist, issame, n_pairs, r->fold_acc, r->threshold, &r->acc, &r->std);
    free(fused);
    free(dist);
    return rc;
}

/* ------------------------------------------------------------------ .bin targets */

int ft_verify_load(ft_verify_target **out, const char *path, const char *name, int h, int w,
                   char *err, size_t errcap) {
    *out = NULL;
    ft_verify_target *t = calloc(1, sizeof *t);
    if (!t) return -ENOMEM;
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->path, sizeof t->path, "%s", path);
    t->h = h, t->w = w;
    int rc = ft_verbin_read(path, &t->bin, err, errcap);
    if (rc) {
        free(t);
        return rc;
    }
    if (t->bin.n_pairs < FT_VERIFY_FOLDS) {
        snprintf(err, errcap, "%s: %llu pairs; 10-fold verification needs at least 10", path,
                 (unsigned long long)t->bin.n_pairs);
        ft_verify_free(t);
        return FT_EFORMAT;
    }
    t->tj = tjInitDecompress();
    if (!t->tj) {
        snprintf(err, errcap, "%s: cannot start the JPEG decoder", path);
        ft_verify_free(t);
        return -ENOMEM;
    }
    /* check every header now, so a bad file fails at start and not at step 2000 */
    for (uint64_t i = 0; i < 2 * t->bin.n_pairs; i++) {
        int iw, ih, sub, cs;
        if (tjDecompressHeader3(t->tj, t->bin.img[i], (unsigned long)t->bin.img_len[i], &iw, &ih,
                                &sub, &cs) != 0) {
            snprintf(err, errcap, "%s: image %llu: not a JPEG (%s)", path, (unsigned long long)i,
                     tjGetErrorStr2(t->tj));
            ft_verify_free(t);
            return FT_EDECODE;
        }
        if (iw != w || ih != h) {
            snprintf(err, errcap, "%s: image %llu is %dx%d, expected %dx%d", path,
                     (unsigned long long)i, iw, ih, w, h);
            ft_verify_free(t);
            return FT_EFORMAT;
        }
    }
    *out = t;
    return 0;
}

const char *ft_verify_name(const ft_verify_target *t) {
    return t->name;
}
int64_t ft_verify_pairs(const ft_verify_target *t) {
    return (int64_t)t->bin.n_pairs;
}

/* Decode image i into orig and mirrored CHW float planes. */
static int decode_one(ft_verify_target *t, uint64_t i, uint8_t *rgb, float *orig, float *flip,
                      char *err, size_t errcap) {
    int w = t->w, h = t->h;
    if (tjDecompress2(t->tj, t->bin.img[i], (unsigned long)t->bin.img_len[i], rgb, w, w * 3, h,
                      TJPF_RGB, 0) != 0) {
        snprintf(err, errcap, "%s: image %llu: %s", t->path, (unsigned long long)i,
                 tjGetErrorStr2(t->tj));
        return FT_EDECODE;
    }
    size_t plane = (size_t)h * w;
    float lut[256]; /* the loader's normalization, bit for bit */
    ft_pixel_norm_table(lut);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float v = lut[rgb[((size_t)y * w + x) * 3 + c]];
                orig[c * plane + (size_t)y * w + x] = v;
                flip[c * plane + (size_t)y * w + (w - 1 - x)] = v;
            }
    return 0;
}

int ft_verify_run(ft_verify_target *t, ft_embed_fn embed, void *ctx, int dim, int batch,
                  ft_verify_result *r, char *err, size_t errcap) {
    if (batch < 1) batch = 1;
    uint64_t n = 2 * t->bin.n_pairs;
    size_t img = (size_t)3 * t->h * t->w;
    float *xo = malloc((size_t)batch * img * sizeof(float));
    float *xf = malloc((size_t)batch * img * sizeof(float));
    float *eo = malloc((size_t)n * dim * sizeof(float));
    float *ef = malloc((size_t)n * dim * sizeof(float));
    uint8_t *rgb = malloc(img);
    int rc = 0;
    if (!xo || !xf || !eo || !ef || !rgb) {
        rc = -ENOMEM;
        snprintf(err, errcap, "%s: out of memory", t->path);
        goto done;
    }
    for (uint64_t s = 0; s < n && !rc; s += (uint64_t)batch) {
        int m = (int)(n - s < (uint64_t)batch ? n - s : (uint64_t)batch);
        if (ft_stop_requested()) { /* a signal: give up within one chunk */
            rc = FT_ESTOP;
            snprintf(err, errcap, "%s: stopped by a signal", t->path);
            break;
        }
        for (int k = 0; k < m && !rc; k++)
            rc = decode_one(t, s + (uint64_t)k, rgb, xo + k * img, xf + k * img, err, errcap);
        if (rc) break;
        if ((rc = embed(ctx, xo, m, eo + s * (uint64_t)dim)) ||
            (rc = embed(ctx, xf, m, ef + s * (uint64_t)dim)))
            snprintf(err, errcap, "%s: model forward failed: %s", t->path, ft_strerror(rc));
    }
    if (!rc) {
        rc = ft_verify_protocol(eo, ef, (int64_t)t->bin.n_pairs, dim, t->bin.issame, r);
        if (rc) snprintf(err, errcap, "%s: %s", t->path, ft_strerror(rc));
    }
done:
    free(xo), free(xf), free(eo), free(ef), free(rgb);
    return rc;
}

void ft_verify_free(ft_verify_target *t) {
    if (!t) return;
    if (t->tj) tjDestroy(t->tj);
    ft_verbin_free(&t->bin);
    free(t);
}
