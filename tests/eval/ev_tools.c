/* ev_tools: helpers for the ft-eval tests.
 *   ev_tools ckpt DIR DEPTH WIDTH B1 B2 B3 B4 EMB SEED [overflow]
 *       DIR/backbone.safetensors of a freshly initialized IResNet (seeded), with the
 *       architecture metadata ft-train records: a model for ft-eval without training one;
 *       "overflow" sets fc.weight to +-4e37 (finite weights, embeddings that overflow to
 *       inf/NaN: the case ft-eval must refuse)
 *   ev_tools roc SCORES.npy LABELS.npy
 *       ft_roc_tar on float32 scores and 0/1 labels (N x 1): one line per FAR,
 *       "far fpr tar" (%.17g)
 * Exit 0, or 1 with one line on stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "eval.h"
#include "ft_common.h"
#include "ft_npy.h"
#include "iresnet.h"
#include "sources.h"

static const char *usage = "usage: ev_tools ckpt DIR DEPTH WIDTH B1 B2 B3 B4 EMB SEED [overflow]\n"
                           "       ev_tools roc SCORES.npy LABELS.npy\n";

static int overflow_fc(ft_iresnet *net) {
    int i = ft_iresnet_tensor_find(net, "fc.weight");
    ft_tensor_info ti;
    if (i < 0 || ft_iresnet_tensor_info(net, i, &ti)) return FT_EARG;
    size_t n = 1;
    for (int d = 0; d < ti.ndim; d++) n *= (size_t)ti.shape[d];
    float *w = malloc(n * sizeof *w);
    if (!w) return FT_EARG;
    int rc = ft_iresnet_tensor_get(net, i, w);
    for (size_t k = 0; k < n; k++) w[k] = copysignf(4e37f, w[k]); /* sums overflow */
    if (!rc) rc = ft_iresnet_tensor_set(net, i, w);
    free(w);
    return rc;
}

static int make_ckpt(char **a, int overflow) {
    int64_t v[8];
    for (int i = 0; i < 8; i++)
        if (ft_parse_i64(a[1 + i], 0, 1 << 30, &v[i])) {
            fprintf(stderr, "ev_tools: bad number '%s'\n", a[1 + i]);
            return 1;
        }
    ft_iresnet_config cfg;
    if (ft_iresnet_config_init(&cfg, (int)v[0])) {
        fprintf(stderr, "ev_tools: depth %lld is not an IResNet depth\n", (long long)v[0]);
        return 1;
    }
    cfg.width = (int)v[1];
    for (int i = 0; i < 4; i++) cfg.blocks[i] = (int)v[2 + i];
    cfg.emb = (int)v[6], cfg.seed = (uint64_t)v[7], cfg.max_batch = 2;
    char err[1024], arch[256];
    ft_ops *ops = NULL;
    ft_iresnet *net = NULL;
    int rc = ft_ops_create("cpu", NULL, &ops, err, sizeof err);
    if (!rc) rc = ft_iresnet_create(ops, &cfg, &net);
    if (rc) {
        fprintf(stderr, "ev_tools: cannot build the model: %s\n", ft_strerror(rc));
        ft_ops_free(ops);
        return 1;
    }
    if (overflow && (rc = overflow_fc(net))) {
        fprintf(stderr, "ev_tools: cannot scale fc.weight: %s\n", ft_strerror(rc));
        ft_iresnet_free(net), ft_ops_free(ops);
        return 1;
    }
    snprintf(arch, sizeof arch, "network r%d, width %d, blocks (%d, %d, %d, %d), emb %d", (int)v[0],
             cfg.width, cfg.blocks[0], cfg.blocks[1], cfg.blocks[2], cfg.blocks[3], cfg.emb);
    ft_ckpt_part p;
    ft_ckpt_part_init(&p, FT_CKPT_BACKBONE);
    ft_ckpt_source src = ft_ckpt_src_backbone(net);
    rc = ft_ckpt_part_add_source(&p, &src);
    if (!rc) rc = ft_ckpt_part_add_meta(&p, "architecture", arch);
    if (!rc) rc = ft_ckpt_part_add_meta(&p, "global_step", "0");
    if (!rc) rc = ft_mkdir_p(a[0]);
    if (!rc)
        rc = ft_ckpt_write(a[0], &p, 1, err, sizeof err);
    else
        snprintf(err, sizeof err, "%s", ft_strerror(rc));
    if (rc) fprintf(stderr, "ev_tools: %s\n", err);
    ft_ckpt_part_free(&p);
    ft_iresnet_free(net);
    ft_ops_free(ops);
    return rc ? 1 : 0;
}

static int roc(char **a) {
    float *s = NULL, *l = NULL;
    int64_t n, c, n2, c2;
    char err[1024];
    if (ft_npy_read_f32(a[0], &s, &n, &c, err, sizeof err) ||
        ft_npy_read_f32(a[1], &l, &n2, &c2, err, sizeof err)) {
        fprintf(stderr, "ev_tools: %s\n", err);
        free(s);
        return 1;
    }
    double *sd = malloc((size_t)n * sizeof *sd);
    uint8_t *lab = malloc((size_t)n);
    int rc = 1;
    if (c == 1 && c2 == 1 && n == n2 && sd && lab) {
        for (int64_t i = 0; i < n; i++) sd[i] = s[i], lab[i] = l[i] != 0;
        ft_roc_point pts[FT_IJB_NFAR];
        int r = ft_roc_tar(sd, lab, n, ft_ijb_fars, FT_IJB_NFAR, pts, NULL);
        if (r) {
            fprintf(stderr, "ev_tools: %s\n", ft_strerror(r));
        } else {
            for (int f = 0; f < FT_IJB_NFAR; f++)
                printf("%.17g %.17g %.17g\n", pts[f].far, pts[f].fpr, pts[f].tar);
            rc = 0;
        }
    } else {
        fprintf(stderr, "ev_tools: scores and labels must be N x 1 of the same N\n");
    }
    free(s), free(l), free(sd), free(lab);
    return rc;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "ev_tools", usage)) return 0;
    if ((argc == 11 || (argc == 12 && !strcmp(argv[11], "overflow"))) && !strcmp(argv[1], "ckpt"))
        return make_ckpt(argv + 2, argc == 12);
    if (argc == 4 && !strcmp(argv[1], "roc")) return roc(argv + 2);
    fputs(usage, stderr);
    return 2;
}
