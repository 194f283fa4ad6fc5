/* verify: face verification on .bin pair files during training (formats.md 3.3), as
 * arcface_torch's CallBackVerification / eval/verification.py do it.
 *
 * For each of the 2P images: decode the JPEG to RGB (TurboJPEG), make CHW float
 * ((x/255) - 0.5) / 0.5 and its horizontal mirror, embed both with the caller's model in eval
 * mode (the embed callback), then
 *   XNorm   = mean L2 norm over all 4P raw embeddings (originals, then flips)
 *   e_i     = L2-normalize(emb(original_i) + emb(flip_i))       (in double, zero rows stay 0)
 *   dist_p  = |e_2p - e_2p+1|^2
 *   10-fold CV over pairs, contiguous folds, the first P mod 10 one larger; thresholds
 *   k * 0.01, k < 400; "same" iff dist < t; per fold the first threshold with the best
 *   accuracy on the other 9 folds is scored on the fold
 *   Accuracy-Flip = mean and population std of the 10 fold accuracies.
 */
#ifndef FT_VERIFY_H
#define FT_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#define FT_VERIFY_FOLDS      10
#define FT_VERIFY_THRESHOLDS 400

/* Embed n images x[n][3][h][w] (normalized) into out[n][dim]. 0 or < 0. */
typedef int (*ft_embed_fn)(void *ctx, const float *x, int n, float *out);

typedef struct ft_verify_result {
    double xnorm;
    double acc, std; /* Accuracy-Flip */
    double fold_acc[FT_VERIFY_FOLDS];
    double threshold[FT_VERIFY_FOLDS]; /* the threshold fold k was scored with (k * 0.01) */
} ft_verify_result;

/* The protocol on raw embeddings: orig, flip [2P][dim] float32 as the model produced them;
 * issame [P]. FT_EARG when P < 10. */
int ft_verify_protocol(const float *orig, const float *flip, int64_t n_pairs, int dim,
                       const uint8_t *issame, ft_verify_result *r);
/* 10-fold CV on distances (exposed for tests). */
int ft_verify_kfold(const double *dist, const uint8_t *issame, int64_t n_pairs,
                    double fold_acc[FT_VERIFY_FOLDS], double *mean, double *std);

typedef struct ft_verify_target ft_verify_target;

/* Load <path> (a .bin file; name is its stem for log lines); images must be h x w.
 * Errors: "path: reason". */
int ft_verify_load(ft_verify_target **out, const char *path, const char *name, int h, int w,
                   char *err, size_t errcap);
const char *ft_verify_name(const ft_verify_target *t);
int64_t ft_verify_pairs(const ft_verify_target *t);
/* Run the protocol with the model behind embed; batch images per call (both copies of an
 * image batch are embedded in separate calls, originals first). Between chunks it checks
 * ft_stop_requested() and returns FT_ESTOP when a signal asked to stop. */
int ft_verify_run(ft_verify_target *t, ft_embed_fn embed, void *ctx, int dim, int batch,
                  ft_verify_result *r, char *err, size_t errcap);
void ft_verify_free(ft_verify_target *t); /* NULL ok */

#endif
