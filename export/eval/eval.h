/* eval: IJB-C / IJB-B 1:1 verification as insightface's onnx_ijbc.py computes it (formats.md
 * 4, the "N1 D1 F1" mode), the library under ft-eval ijb. The alignment it uses is align.h.
 *
 *   ft_ijb_meta_load   <root>/meta/<t>_name_5pts_score.txt, <t>_face_tid_mid.txt and
 *                      <t>_template_pair_label.txt (t = ijbc | ijbb), strictly: every line with
 *                      its field count, numbers whole and finite, row i of the two image files
 *                      naming the same image, labels 0/1, every pair's templates present.
 *                      Errors name the file and the line.
 *   ft_ijb_features    for each image: <root>/loose_crop/<name> decoded (TurboJPEG, RGB),
 *                      aligned to 112x112, embedded with its mirror image; the row is
 *                      emb(orig) + emb(flip) (float32, not normalized). Decoding and alignment
 *                      run on worker threads, one batch ahead of the model.
 *   ft_ijb_templates   rows times the detector score, media means (a single image as it is),
 *                      template sums, L2-normalized (zero rows stay zero); templates in
 *                      ascending id. Sums are taken in double.
 *   ft_ijb_scores      the cosine of the two templates of each pair, in file order.
 *   ft_roc_tar         sklearn.metrics.roc_curve(label, score) with drop_intermediate, then
 *                      for each FAR the vertex nearest to it (first of the reversed curve on a
 *                      tie) and its TPR, as the helper's table: no interpolation.
 *
 * Functions return 0 or a negative status (ft_common.h) with "path: line N: reason" in err.
 */
#ifndef FT_EVAL_H
#define FT_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "align.h"
#include "ft_common.h"

#define FT_IJB_NFAR 6
extern const double ft_ijb_fars[FT_IJB_NFAR]; /* 1e-6, 1e-5, ..., 1e-1 */

typedef struct ft_ijb_meta {
    char tag[8];         /* "ijbc" or "ijbb" */
    char root[1024];     /* the IJB folder */
    int64_t n_img;       /* images (rows of the 5pts and tid_mid files) */
    char **names;        /* [n_img] image file names inside loose_crop/ */
    float (*lmk)[5][2];  /* [n_img] landmarks, float32 as the reference parses them */
    float *faceness;     /* [n_img] detector scores */
    int64_t *line;       /* [n_img] its line in the 5pts file (1-based) */
    int64_t *tid, *mid;  /* [n_img] template and media ids */
    int64_t n_templates; /* distinct template ids */
    int64_t *templates;  /* [n_templates] ascending */
    int64_t n_pairs;     /* lines of the pair file */
    int32_t *p1, *p2;    /* [n_pairs] indices into templates */
    uint8_t *label;      /* [n_pairs] 1 genuine, 0 impostor */
    int64_t n_genuine;   /* pairs labelled 1 */
    char *blob;          /* storage of the names */
} ft_ijb_meta;

/* target: "IJBC" or "IJBB" (any case). */
int ft_ijb_meta_load(ft_ijb_meta *m, const char *root, const char *target, char *err,
                     size_t errcap);
void ft_ijb_meta_free(ft_ijb_meta *m); /* zeroed or NULL ok */
/* "<root>/meta/<tag>_<what>.txt" for messages */
void ft_ijb_meta_path(const ft_ijb_meta *m, const char *what, char *out, size_t cap);

/* The model: x[n][3][112][112] normalized as training does -> out[n][dim]; 0 or < 0 with a
 * reason in err. */
typedef int (*ft_eval_embed_fn)(void *ctx, const float *x, int n, float *out, char *err,
                                size_t errcap);

typedef struct ft_ijb_feat_opts {
    int batch;   /* images per model call (each with its mirror: 2*batch inputs); 0 = 64 */
    int threads; /* decode/align threads; 0 = online CPUs */
    ft_progress *progress; /* optional: advanced per image */
} ft_ijb_feat_opts;

/* feats[n_img][dim] = emb(aligned) + emb(mirrored). Checks ft_stop_requested between batches
 * (FT_ESTOP). A non-finite embedding is an error naming the image. */
int ft_ijb_features(const ft_ijb_meta *m, ft_eval_embed_fn embed, void *ctx, int dim,
                    const ft_ijb_feat_opts *o, float *feats, char *err, size_t errcap);

/* tfeats[n_templates][dim] (caller-allocated) from feats[n_img][dim]. */
int ft_ijb_templates(const ft_ijb_meta *m, const float *feats, int dim, double *tfeats);
/* score[n_pairs] */
void ft_ijb_scores(const ft_ijb_meta *m, const double *tfeats, int dim, double *score);

typedef struct ft_roc_point {
    double far; /* the target FAR */
    double fpr; /* the FPR of the chosen vertex */
    double tar; /* its TPR (0..1) */
} ft_roc_point;

/* ROC of score[n] (label 1 = genuine) and the TAR at each of the nfar FARs. FT_EARG when
 * there are no genuine or no impostor pairs, FT_ENONFINITE for a NaN/inf score (*bad = its
 * index when bad is not NULL). */
int ft_roc_tar(const double *score, const uint8_t *label, int64_t n, const double *fars, int nfar,
               ft_roc_point *out, int64_t *bad);

#endif
