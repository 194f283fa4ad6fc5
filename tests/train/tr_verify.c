/* tr_verify: test driver for train/verify.
 *   tr_verify protocol FILE   FILE: int64 P, int32 dim, uint8 issame[P], float32 orig[2P][dim],
 *                             float32 flip[2P][dim]; prints the result
 *   tr_verify bin FILE.bin    embeds with a fixed feature (per-channel means over a 4x4 grid
 *                             of the normalized input, 48 values) and prints the result; also
 *                             checks that each flipped copy mirrors its original
 * Output: "xnorm X", "acc A", "std S", "fold K ACC" with %.17g; errors "ERROR: msg" (exit 2).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "verify.h"

static void print_result(const ft_verify_result *r) {
    printf("xnorm %.17g\nacc %.17g\nstd %.17g\n", r->xnorm, r->acc, r->std);
    for (int k = 0; k < FT_VERIFY_FOLDS; k++) printf("fold %d %.17g\n", k, r->fold_acc[k]);
}

static int protocol(const char *path) {
    char *buf = NULL;
    size_t len = 0;
    if (ft_read_file(path, &buf, &len) || len < 12) return printf("ERROR: read\n"), 2;
    int64_t p;
    int32_t dim;
    memcpy(&p, buf, 8);
    memcpy(&dim, buf + 8, 4);
    size_t need = 12 + (size_t)p + 2 * 2 * (size_t)p * dim * sizeof(float);
    if (len != need) return printf("ERROR: size %zu want %zu\n", len, need), 2;
    const uint8_t *issame = (const uint8_t *)buf + 12;
    float *orig = malloc((size_t)2 * p * dim * sizeof(float));
    float *flip = malloc((size_t)2 * p * dim * sizeof(float));
    memcpy(orig, buf + 12 + p, (size_t)2 * p * dim * sizeof(float));
    memcpy(flip, buf + 12 + p + (size_t)2 * p * dim * sizeof(float),
           (size_t)2 * p * dim * sizeof(float));
    ft_verify_result r;
    int rc = ft_verify_protocol(orig, flip, p, dim, issame, &r);
    if (rc)
        printf("ERROR: %s\n", ft_strerror(rc));
    else
        print_result(&r);
    free(orig), free(flip), free(buf);
    return rc ? 2 : 0;
}

typedef struct grid_ctx {
    float *last; /* the previous batch (originals), to check the mirror */
    int last_n, calls, mirror_bad;
} grid_ctx;

static int grid_embed(void *vctx, const float *x, int n, float *out) {
    grid_ctx *g = vctx;
    const int h = 112, w = 112, cell = 28;
    size_t img = (size_t)3 * h * w;
    if (g->calls % 2 == 1) { /* flipped batch: mirror of the previous one */
        for (int i = 0; i < n && i < g->last_n; i++)
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < h; y++)
                    for (int xx = 0; xx < w; xx++)
                        if (x[i * img + (size_t)c * h * w + (size_t)y * w + xx] !=
                            g->last[i * img + (size_t)c * h * w + (size_t)y * w + (w - 1 - xx)])
                            g->mirror_bad = 1;
    } else {
        free(g->last);
        g->last = malloc((size_t)n * img * sizeof(float));
        memcpy(g->last, x, (size_t)n * img * sizeof(float));
        g->last_n = n;
    }
    g->calls++;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 3; c++)
            for (int gy = 0; gy < 4; gy++)
                for (int gx = 0; gx < 4; gx++) {
                    double s = 0;
                    for (int y = gy * cell; y < (gy + 1) * cell; y++)
                        for (int xx = gx * cell; xx < (gx + 1) * cell; xx++)
                            s += x[i * img + (size_t)c * h * w + (size_t)y * w + xx];
                    out[(size_t)i * 48 + c * 16 + gy * 4 + gx] = (float)(s / (cell * cell));
                }
    return 0;
}

static int bin(const char *path) {
    ft_verify_target *t;
    char err[1024];
    if (ft_verify_load(&t, path, "lfw", 112, 112, err, sizeof err)) {
        printf("ERROR: %s\n", err);
        return 2;
    }
    grid_ctx g = {0};
    ft_verify_result r;
    int rc = ft_verify_run(t, grid_embed, &g, 48, 7, &r, err, sizeof err);
    if (rc)
        printf("ERROR: %s\n", err);
    else
        print_result(&r);
    if (g.mirror_bad) printf("ERROR: flipped copy is not the mirror of the original\n");
    free(g.last);
    ft_verify_free(t);
    return rc || g.mirror_bad ? 2 : 0;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "tr_verify",
                            "usage: tr_verify protocol FILE | bin FILE.bin\n"))
        return 0;
    if (argc == 3 && !strcmp(argv[1], "protocol")) return protocol(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "bin")) return bin(argv[2]);
    fprintf(stderr, "usage: tr_verify protocol FILE | bin FILE.bin\n");
    return 1;
}
