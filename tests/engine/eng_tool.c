/* eng_tool: the engine tests' helper.
 *   eng_tool make DIR DEPTH WIDTH EMB SEED
 *       an ft-train-style checkpoint folder: backbone.safetensors of an IResNet-DEPTH at WIDTH
 *       written by the checkpoint writer ft-train uses, with its "architecture" metadata; the
 *       weights are the trainer's initialization from SEED, then batch-norm statistics, affine
 *       parameters, PReLU slopes and biases drawn away from their defaults (a trained-looking
 *       net: no two tensors equal, running stats not 0/1), conv weights scaled to keep
 *       activations O(1) through the depth.
 *   eng_tool ref DIR IN.npy OUT.npy
 *       ft-train's eval forward (train/model ft_iresnet_forward, train = 0) of DIR's backbone
 *   eng_tool run MODEL IN.npy OUT.npy [BATCH [THREADS [DEVICE]]]
 *       the engine on MODEL, in chunks of BATCH (default 32), on backend DEVICE (cpu)
 *   eng_tool bench MODEL BATCH RUNS [THREADS]
 *       RUNS timed forwards of BATCH copies of one input; prints "sorted ms: a b c ..."
 * IN.npy: float32 [n, 3*112*112] (NCHW per row), OUT.npy: float32 [n, dim]. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "engine.h"
#include "ft_common.h"
#include "ft_npy.h"
#include "iresnet.h"
#include "sources.h"

#define IMG (3 * 112 * 112)

static int die(const char *msg) {
    fprintf(stderr, "eng_tool: %s\n", msg);
    return 1;
}

static int cmp_f(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int make(int argc, char **argv) {
    if (argc != 7) return die("make DIR DEPTH WIDTH EMB SEED");
    ft_iresnet_config mc;
    if (ft_iresnet_config_init(&mc, atoi(argv[3]))) return die("bad depth");
    mc.width = atoi(argv[4]), mc.emb = atoi(argv[5]), mc.seed = strtoull(argv[6], NULL, 10);
    mc.max_batch = 2;
    ft_ops *o;
    ft_iresnet *m;
    char err[1024];
    if (ft_ops_create("cpu", NULL, &o, err, sizeof err)) return die(err);
    if (ft_iresnet_create(o, &mc, &m)) return die("cannot build the model");
    ft_rng r;
    ft_rng_seed(&r, mc.seed, 77);
    int n = ft_iresnet_tensor_count(m);
    for (int i = 0; i < n; i++) {
        ft_tensor_info ti;
        ft_iresnet_tensor_info(m, i, &ti);
        if (ti.dtype != FT_F32) continue;
        float *v = malloc(ti.numel * sizeof(float));
        ft_iresnet_tensor_get(m, i, v);
        const char *nm = ti.name;
        size_t L = strlen(nm);
#define ENDS(s) (L >= strlen(s) && strcmp(nm + L - strlen(s), s) == 0)
        int frozen = strcmp(nm, "features.weight") == 0;
        for (size_t j = 0; j < ti.numel; j++) {
            double u = ft_rng_uniform(&r);
            if (ti.ndim == 4) { /* conv: N(0, 0.1) init scaled to N(0, 1/fan_in) */
                double fan = (double)ti.shape[1] * ti.shape[2] * ti.shape[3];
                v[j] = (float)(v[j] / 0.1 * sqrt(1.0 / fan));
            } else if (ENDS("running_mean")) {
                v[j] = (float)(0.2 * u - 0.1);
            } else if (ENDS("running_var")) {
                v[j] = (float)(0.5 + u);
            } else if (ENDS("bias")) {
                v[j] = (float)(0.2 * u - 0.1);
            } else if (ENDS("prelu.weight") || strcmp(nm, "prelu.weight") == 0) {
                v[j] = (float)(0.1 + 0.3 * u);
            } else if (ENDS(".weight") && ti.ndim == 1 && !frozen) {
                v[j] = (float)(0.8 + 0.4 * u);
            }
        }
#undef ENDS
        ft_iresnet_tensor_set(m, i, v);
        free(v);
    }
    ft_ckpt_part p;
    ft_ckpt_part_init(&p, FT_CKPT_BACKBONE);
    ft_ckpt_source s = ft_ckpt_src_backbone(m);
    char arch[160];
    snprintf(arch, sizeof arch, "network r%s, width %d, blocks (%d, %d, %d, %d), emb %d", argv[3],
             mc.width, mc.blocks[0], mc.blocks[1], mc.blocks[2], mc.blocks[3], mc.emb);
    int rc = ft_ckpt_part_add_source(&p, &s);
    if (!rc) rc = ft_ckpt_part_add_meta(&p, "format", "pt");
    if (!rc) rc = ft_ckpt_part_add_meta(&p, "architecture", arch);
    if (!rc) rc = ft_ckpt_part_add_meta(&p, "global_step", "0");
    if (!rc && ft_mkdir_p(argv[2])) rc = FT_EARG;
    if (!rc) rc = ft_ckpt_write(argv[2], &p, 1, err, sizeof err);
    ft_ckpt_part_free(&p);
    ft_iresnet_free(m);
    ft_ops_free(o);
    return rc ? die(err) : 0;
}

static int ref(int argc, char **argv) {
    if (argc != 5) return die("ref DIR IN.npy OUT.npy");
    char path[PATH_MAX], err[1024];
    ft_st_file f = {0};
    snprintf(path, sizeof path, "%s/%s", argv[2], FT_CKPT_BACKBONE);
    if (ft_st_read(path, &f, err, sizeof err)) return die(err);
    const char *a = ft_st_meta(&f, "architecture");
    int depth, w, b[4], e;
    if (!a || sscanf(a, "network r%d, width %d, blocks (%d, %d, %d, %d), emb %d", &depth, &w, &b[0],
                     &b[1], &b[2], &b[3], &e) != 7)
        return die("no architecture metadata");
    float *x;
    int64_t n, cols;
    if (ft_npy_read_f32(argv[3], &x, &n, &cols, err, sizeof err)) return die(err);
    if (cols != IMG) return die("input rows must be 3*112*112");
    ft_iresnet_config mc;
    ft_iresnet_config_init(&mc, depth);
    mc.width = w, mc.emb = e, mc.max_batch = (int)n;
    memcpy(mc.blocks, b, sizeof b);
    ft_ops *o;
    ft_iresnet *m;
    if (ft_ops_create("cpu", NULL, &o, err, sizeof err)) return die(err);
    if (ft_iresnet_create(o, &mc, &m)) return die("cannot build the model");
    ft_ckpt_source s = ft_ckpt_src_backbone(m);
    if (ft_ckpt_load_source(&f, path, &s, 1, "", err, sizeof err)) return die(err);
    float *in = ft_iresnet_input(m), *out = malloc((size_t)n * e * sizeof(float));
    const float *emb;
    if (o->upload(o, in, x, (size_t)n * IMG * sizeof(float)) ||
        ft_iresnet_forward(m, in, (int)n, 0, &emb) ||
        o->download(o, out, emb, (size_t)n * e * sizeof(float)))
        return die("forward failed");
    if (ft_npy_write_f32(argv[4], out, n, e, err, sizeof err)) return die(err);
    free(out), free(x);
    ft_iresnet_free(m);
    ft_ops_free(o);
    ft_st_free(&f);
    return 0;
}

static int run(int argc, char **argv) {
    if (argc < 5) return die("run MODEL IN.npy OUT.npy [BATCH [THREADS [DEVICE [GRAPHS]]]]");
    ft_engine_opts eo = {argc > 7 ? argv[7] : "cpu", argc > 6 ? atoi(argv[6]) : 0,
                         argc > 5 ? atoi(argv[5]) : 32, argc > 8 ? atoi(argv[8]) : 0};
    ft_engine *e;
    char err[1024];
    int rc = ft_engine_open(&e, argv[2], &eo, err, sizeof err);
    if (rc) {
        fprintf(stderr, "%s\n", err);
        return rc == FT_ENODEV ? 77 : 2; /* 77: the backend is built, no device is visible */
    }
    float *x;
    int64_t n, cols;
    int hw = ft_engine_input_hw(e), dim = ft_engine_dim(e), mb = ft_engine_max_batch(e);
    if (ft_npy_read_f32(argv[3], &x, &n, &cols, err, sizeof err)) return die(err);
    if (cols != 3 * hw * hw) return die("input rows do not match the model's input size");
    float *out = malloc((size_t)n * dim * sizeof(float));
    for (int64_t i = 0; i < n; i += mb) {
        int m = (int)(n - i < mb ? n - i : mb);
        if (ft_engine_run(e, x + i * cols, m, out + i * dim, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 2;
        }
    }
    int64_t replays;
    int recorded;
    ft_engine_graph_stats(e, &replays, &recorded);
    printf("%s %s dim %d steps %d normalizes %d graph replays %lld recorded %d\n",
           ft_engine_kind(e), ft_engine_source(e), dim, ft_engine_steps(e), ft_engine_normalizes(e),
           (long long)replays, recorded);
    if (ft_npy_write_f32(argv[4], out, n, dim, err, sizeof err)) return die(err);
    free(x), free(out);
    ft_engine_free(e);
    return 0;
}

static int bench(int argc, char **argv) {
    if (argc < 5) return die("bench MODEL BATCH RUNS [THREADS]");
    int b = atoi(argv[3]), runs = atoi(argv[4]);
    ft_engine_opts eo = {"cpu", argc > 5 ? atoi(argv[5]) : 0, b, 0};
    ft_engine *e;
    char err[1024];
    if (ft_engine_open(&e, argv[2], &eo, err, sizeof err) || runs < 1) return die(err);
    int hw = ft_engine_input_hw(e), dim = ft_engine_dim(e);
    size_t img = (size_t)3 * hw * hw;
    float *x = malloc((size_t)b * img * sizeof(float)), *out = malloc((size_t)b * dim * 4);
    ft_rng r;
    ft_rng_seed(&r, 1, 2);
    for (size_t i = 0; i < (size_t)b * img; i++) x[i] = (float)(2 * ft_rng_uniform(&r) - 1);
    double *t = malloc((size_t)runs * sizeof(double));
    if (ft_engine_run(e, x, b, out, err, sizeof err)) return die(err); /* warm-up */
    for (int i = 0; i < runs; i++) {
        double t0 = ft_now();
        if (ft_engine_run(e, x, b, out, err, sizeof err)) return die(err);
        t[i] = (ft_now() - t0) * 1e3;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_f);
    printf("sorted ms:");
    for (int i = 0; i < runs; i++) printf(" %.3f", t[i]);
    printf("\n");
    free(x), free(out), free(t);
    ft_engine_free(e);
    return 0;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "eng_tool",
                            "usage: eng_tool make|ref|run|bench ... (see tests/engine/eng_tool.c)"))
        return 0;
    if (argc < 2) return die("make|ref|run|bench ...");
    if (strcmp(argv[1], "make") == 0) return make(argc, argv);
    if (strcmp(argv[1], "ref") == 0) return ref(argc, argv);
    if (strcmp(argv[1], "run") == 0) return run(argc, argv);
    if (strcmp(argv[1], "bench") == 0) return bench(argc, argv);
    return die("unknown command");
}
