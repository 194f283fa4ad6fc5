/* ex_tool: test helper of the export tests (tests/export/test_export.py).
 *
 *   ex_tool mkckpt DIR --depth D [--width W] [--blocks a,b,c,d] [--emb E] [--seed S]
 *                  [--scale X]
 *       a backbone.safetensors as ft-train writes it (tensors in state_dict order, metadata
 *       architecture / global_step / schema / dtype), with random weights that exercise
 *       every part of the export: conv ~ N(0, X^2 / fan_in), BN gamma U(0.5, 1.5), beta and
 *       running_mean N(0, 0.1^2), running_var U(0.5, 1.5), PReLU U(0.05, 0.45), fc ~ N(0,
 *       1 / fan_in), features gamma U(0.5, 1.5) (ft-train keeps it at 1; the export must
 *       take what the file holds). Written with ft_ckpt_write, so atomically.
 *   ex_tool embed DIR IN.f32 OUT.f32 [--threads T]
 *       ft-train's eval forward (ft_iresnet on the CPU backend, running statistics) of the
 *       checkpoint in DIR, its architecture read as ft-export reads it, on IN (raw
 *       little-endian float32 [n][3][112][112]) -> OUT (raw float32 [n][emb]).
 * Exit 0 done, 1 error (one line), 2 usage.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "ft_common.h"
#include "graph.h"
#include "iresnet.h"
#include "sources.h"

#define PROG "ex_tool"

static const char *USAGE =
    "usage: ex_tool mkckpt DIR --depth D [--width W] [--blocks a,b,c,d] [--emb E] [--seed S]\n"
    "                      [--scale X]\n"
    "       ex_tool embed DIR IN.f32 OUT.f32 [--threads T]\n"
    "Random IResNet checkpoints as ft-train writes them, and ft-train's eval forward of one.\n";

static int die(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return 1;
}

static int ends(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* the random values of one tensor (see the file comment) */
static void fill(ft_rng *r, const ft_tensor_info *t, float *h, double scale) {
    int conv = t->ndim == 4, fc = t->ndim == 2;
    double fan = conv ? (double)(t->shape[1] * t->shape[2] * t->shape[3])
                 : fc ? (double)t->shape[1]
                      : 1.0;
    for (size_t k = 0; k < t->numel; k++) {
        double u = ft_rng_uniform(r), v;
        if (conv)
            v = scale * ft_rng_normal(r) / sqrt(fan);
        else if (fc)
            v = ft_rng_normal(r) / sqrt(fan);
        else if (strstr(t->name, "prelu"))
            v = 0.05 + 0.4 * u;
        else if (ends(t->name, ".running_var") || ends(t->name, ".weight"))
            v = 0.5 + u;
        else /* bias, running_mean */
            v = 0.1 * ft_rng_normal(r);
        h[k] = (float)v;
    }
}

static int build(ft_ops **o, ft_iresnet **m, const ft_iresnet_config *cfg, int threads) {
    ft_ops_options opts;
    ft_ops_options_init(&opts);
    opts.threads = threads;
    char err[512];
    int rc = ft_ops_create("cpu", &opts, o, err, sizeof err);
    if (rc) return die("%s%s", err, "");
    if ((rc = ft_iresnet_create(*o, cfg, m)))
        return die("cannot build the model: %s%s", ft_strerror(rc), "");
    return 0;
}

static int mkckpt(int argc, char **argv) {
    const char *dir = argv[0];
    int64_t depth = 0, width = 0, emb = 0, seed = 1;
    double scale = 1.0;
    int blocks[4] = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = !v;
        if (!bad && !strcmp(a, "--depth"))
            bad = ft_parse_i64(v, 1, 1000, &depth);
        else if (!bad && !strcmp(a, "--width"))
            bad = ft_parse_i64(v, 1, 4096, &width);
        else if (!bad && !strcmp(a, "--emb"))
            bad = ft_parse_i64(v, 1, 65536, &emb);
        else if (!bad && !strcmp(a, "--seed"))
            bad = ft_parse_i64(v, 0, INT64_MAX, &seed);
        else if (!bad && !strcmp(a, "--scale"))
            bad = ft_parse_double(v, 0.0, 100.0, &scale);
        else if (!bad && !strcmp(a, "--blocks"))
            bad = sscanf(v, "%d,%d,%d,%d", &blocks[0], &blocks[1], &blocks[2], &blocks[3]) != 4;
        else
            bad = 1;
        if (bad) return die("bad argument '%s %s'", a, v ? v : "");
        i++;
    }
    ft_iresnet_config cfg;
    if (ft_iresnet_config_init(&cfg, (int)depth))
        return die("--depth %s%s: not an IResNet", argv[0], "");
    if (width) cfg.width = (int)width;
    if (emb) cfg.emb = (int)emb;
    if (blocks[0])
        for (int i = 0; i < 4; i++) cfg.blocks[i] = blocks[i];
    cfg.max_batch = 1;
    ft_ops *o = NULL;
    ft_iresnet *m = NULL;
    int rc = build(&o, &m, &cfg, 1);
    ft_rng r;
    ft_rng_seed(&r, (uint64_t)seed, 11);
    for (int i = 0; !rc && i < ft_iresnet_tensor_count(m); i++) {
        ft_tensor_info t;
        ft_iresnet_tensor_info(m, i, &t);
        if (t.dtype != FT_F32) continue;
        float *h = malloc(t.numel * sizeof *h);
        if (!h) rc = die("out of memory%s%s", "", "");
        if (!rc) fill(&r, &t, h, scale);
        if (!rc && ft_iresnet_tensor_set(m, i, h)) rc = die("cannot set %s%s", t.name, "");
        free(h);
    }
    char arch[192], err[1024];
    if (!rc && ft_graph_arch_format(arch, sizeof arch, (int)depth, &cfg))
        rc = die("architecture string too long%s%s", "", "");
    if (!rc && (rc = ft_mkdir_p(dir))) rc = die("%s: %s", dir, ft_strerror(rc));
    ft_ckpt_part p;
    ft_ckpt_part_init(&p, FT_CKPT_BACKBONE);
    ft_ckpt_source src = ft_ckpt_src_backbone(m);
    char schema[16];
    snprintf(schema, sizeof schema, "%d", FT_CKPT_SCHEMA);
    if (!rc &&
        (ft_ckpt_part_add_source(&p, &src) || ft_ckpt_part_add_meta(&p, "format", "pt") ||
         ft_ckpt_part_add_meta(&p, "global_step", "7") ||
         ft_ckpt_part_add_meta(&p, "schema", schema) || ft_ckpt_part_add_meta(&p, "dtype", "f32") ||
         ft_ckpt_part_add_meta(&p, "architecture", arch)))
        rc = die("cannot collect the tensors%s%s", "", "");
    if (!rc && ft_ckpt_write(dir, &p, 1, err, sizeof err)) rc = die("%s%s", err, "");
    ft_ckpt_part_free(&p);
    ft_iresnet_free(m);
    ft_ops_free(o);
    return rc;
}

static int embed(int argc, char **argv) {
    const char *dir = argv[0], *in = argv[1], *out = argv[2];
    int64_t threads = 1;
    if (argc == 5 && !strcmp(argv[3], "--threads")) {
        if (ft_parse_i64(argv[4], 0, 256, &threads))
            return die("bad --threads '%s'%s", argv[4], "");
    } else if (argc != 3) {
        fputs(USAGE, stderr);
        return 2;
    }
    char err[2048];
    ft_graph_ckpt ck;
    if (ft_graph_ckpt_open(&ck, dir, err, sizeof err)) return die("%s%s", err, "");
    float *x = NULL, *y = NULL;
    size_t img = (size_t)3 * 112 * 112;
    char *raw = NULL;
    size_t len = 0;
    int rc = ft_read_file(in, &raw, &len) ? die("%s: cannot read%s", in, "") : 0;
    if (!rc && (len == 0 || len % (img * sizeof(float))))
        rc = die("%s: not a whole number of 3x112x112 float32 images%s", in, "");
    int64_t rows = (int64_t)(len / (img * sizeof(float)));
    x = (float *)raw;
    ft_iresnet_config cfg = ck.cfg;
    cfg.max_batch = (int)rows;
    ft_ops *o = NULL;
    ft_iresnet *m = NULL;
    if (!rc) rc = build(&o, &m, &cfg, (int)threads);
    ft_ckpt_source src = ft_ckpt_src_backbone(m);
    if (!rc && ft_ckpt_load_source(&ck.st, ck.path, &src, 1, ck.arch, err, sizeof err))
        rc = die("%s%s", err, "");
    const float *emb = NULL;
    float *dev = m ? ft_iresnet_input(m) : NULL;
    if (!rc && (o->upload(o, dev, x, (size_t)rows * img * sizeof(float)) ||
                ft_iresnet_forward(m, dev, (int)rows, 0, &emb)))
        rc = die("forward failed%s%s", "", "");
    if (!rc && !(y = malloc((size_t)rows * cfg.emb * sizeof *y)))
        rc = die("out of memory%s%s", "", "");
    if (!rc && o->download(o, y, emb, (size_t)rows * cfg.emb * sizeof(float)))
        rc = die("download failed%s%s", "", "");
    FILE *f = rc ? NULL : fopen(out, "wb");
    size_t ny = (size_t)rows * cfg.emb;
    if (!rc && (!f || fwrite(y, sizeof *y, ny, f) != ny)) rc = die("%s: cannot write%s", out, "");
    if (f && fclose(f) && !rc) rc = die("%s: cannot write%s", out, "");
    free(x);
    free(y);
    ft_iresnet_free(m);
    ft_ops_free(o);
    ft_graph_ckpt_close(&ck);
    return rc;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, PROG, USAGE)) return 0;
    if (argc >= 3 && !strcmp(argv[1], "mkckpt")) return mkckpt(argc - 2, argv + 2);
    if (argc >= 5 && !strcmp(argv[1], "embed")) return embed(argc - 2, argv + 2);
    fputs(USAGE, stderr);
    return 2;
}
