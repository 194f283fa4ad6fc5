/* ft-eval: score a face-embedding model as arcface_torch's evaluation scripts do.
 *
 *   ft-eval bin MODEL DATA_DIR [--targets lfw,cfp_fp,agedb_30] [--batch N] [--threads T]
 *               [--save-features DIR] [--folds]
 *       the .bin verification protocol of formats.md 3.3 (train/verify), printing the lines
 *       of arcface_torch's CallBackVerification
 *   ft-eval ijb MODEL IJB_DIR --target IJBC|IJBB [--result-dir DIR] [--load-features FILE]
 *               [--batch N] [--threads T]
 *       IJB-C / IJB-B 1:1 verification as onnx_ijbc.py (formats.md 4, export/eval/eval.h)
 *
 * MODEL: an ft-train checkpoint folder (backbone.safetensors) or its backbone.safetensors.
 * Exit: 0 ok, 1 error (one line "ft-eval: file: reason"), 2 usage, 130 stopped by a signal.
 * See docs/eval.md.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "eval.h"      // defines: ft_ijb_*, ft_roc_tar
#include "ft_common.h" // defines: status codes, parsing, progress, stop flag
#include "ft_npy.h"    // defines: ft_npy_write_f32, ft_npy_read_f32
#include "verify.h"    // defines: ft_verify_load, ft_verify_run
#ifdef FT_EVAL_ENGINE
#include "engine.h" // defines: ft_engine_* (ONNX or checkpoint, cpu | cuda)
#else
#include "checkpoint.h" // defines: ft_ckpt_load_source, safetensors reader
#include "iresnet.h"    // defines: ft_iresnet_* (the checkpoint model)
#include "sources.h"    // defines: ft_ckpt_src_backbone
#endif

#define PROG "ft-eval"

static void usage(FILE *f) {
    fprintf(f,
            "usage: " PROG " bin MODEL DATA_DIR [options]\n"
            "       " PROG " ijb MODEL IJB_DIR --target IJBC|IJBB [options]\n"
            "Score a face-embedding model. MODEL: an ft-train checkpoint folder (or its\n"
            "backbone.safetensors).\n"
            "bin: verification on DATA_DIR/<name>.bin pair files (10-fold accuracy with flip\n"
            "     fusion, XNorm), printed as arcface_torch's training callback prints it.\n"
            "  --targets A,B,...     .bin names (default lfw,cfp_fp,agedb_30; missing default\n"
            "                        files are skipped, named ones must exist)\n"
            "  --save-features DIR   write DIR/<name>_orig.npy and <name>_flip.npy (raw\n"
            "                        embeddings of the images and of their mirror images)\n"
            "  --folds               also print each fold's threshold and accuracy\n"
            "ijb: IJB-C/IJB-B 1:1 verification (IJB_DIR/meta, IJB_DIR/loose_crop), TAR at FAR\n"
            "     1e-6..1e-1 as onnx_ijbc.py's table.\n"
            "  --target IJBC|IJBB    which meta files (meta/ijbc_* or meta/ijbb_*)\n"
            "  --result-dir DIR      outputs (default .): <target>.npy scores,\n"
            "                        <target>_feats.npy image features, <target>_templates.npy\n"
            "                        and <target>_template_ids.txt\n"
            "  --load-features FILE  score saved image features (<target>_feats.npy) instead of\n"
            "                        running the model\n"
            "common:\n"
            "  --batch N             images per model call (default 64)\n"
            "  --threads T           CPU threads for the model and the decoding (default: all)\n"
            "  --device cpu|cuda     where the model runs (default cpu)\n"
            "  -V, --version         print the version\n"
            "  -h, --help            this text\n");
}

static int bad_usage(const char *fmt, const char *arg) {
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see " PROG " --help)\n");
    return 2;
}

/* ------------------------------------------------------------------ the model */

/* The model behind one function pointer: run() embeds 1..max_batch inputs. With the inference
 * engine built (export/engine, FT_EVAL_ENGINE) MODEL may be anything ft_engine_open takes (an
 * .onnx, a folder with one, a checkpoint folder); without it, an ft-train checkpoint runs on
 * train/'s IResNet. */
typedef struct eval_model {
    void *impl;
    int (*run)(void *impl, const float *x, int n, float *out);
    void (*close)(void *impl);
    int dim, max_batch;
    char path[1100];
    /* --save-features of bin: the embeddings of each call, originals and mirrors alternating
     * (train/verify embeds a chunk's originals, then its mirrors) */
    float *cap[2];
    int64_t cap_rows, cap_pos[2];
    int cap_call;
    char err[1536];
} eval_model;

#ifdef FT_EVAL_ENGINE
static int engine_run(void *impl, const float *x, int n, float *out) {
    char err[1024];
    int rc = ft_engine_run(impl, x, n, out, err, sizeof err);
    if (rc) fprintf(stderr, PROG ": %s\n", err);
    return rc;
}
static void engine_close(void *impl) {
    ft_engine_free(impl);
}
static int engine_open(eval_model *em, const char *path, const char *device, int threads,
                       int max_batch, char *err, size_t errcap) {
    ft_engine_opts eo = {.device = device, .threads = threads, .max_batch = max_batch};
    ft_engine *e = NULL;
    int rc = ft_engine_open(&e, path, &eo, err, errcap);
    if (rc) return rc;
    if (ft_engine_input_hw(e) != FT_ALIGN_SIZE) {
        snprintf(err, errcap, "%s: the model takes %dx%d inputs; ft-eval feeds 112x112 crops", path,
                 ft_engine_input_hw(e), ft_engine_input_hw(e));
        ft_engine_free(e);
        return FT_EFORMAT;
    }
    em->impl = e, em->run = engine_run, em->close = engine_close;
    em->dim = ft_engine_dim(e), em->max_batch = ft_engine_max_batch(e);
    return 0;
}
#else
/* an ft-train checkpoint: backbone.safetensors and its recorded architecture */
typedef struct ckpt_model {
    ft_ops *ops;
    ft_iresnet *net;
    int dim;
} ckpt_model;

static int ckpt_run(void *impl, const float *x, int n, float *out) {
    ckpt_model *c = impl;
    size_t img = (size_t)3 * FT_ALIGN_SIZE * FT_ALIGN_SIZE;
    float *in = ft_iresnet_input(c->net);
    const float *emb = NULL;
    int rc = c->ops->upload(c->ops, in, x, (size_t)n * img * sizeof(float));
    if (!rc) rc = ft_iresnet_forward(c->net, in, n, 0, &emb);
    if (!rc) rc = c->ops->download(c->ops, out, emb, (size_t)n * c->dim * sizeof(float));
    return rc;
}

static void ckpt_close(void *impl) {
    ckpt_model *c = impl;
    if (!c) return;
    ft_iresnet_free(c->net);
    ft_ops_free(c->ops);
    free(c);
}

static int ckpt_open(eval_model *em, const char *path, const char *device, int threads,
                     int max_batch, char *err, size_t errcap) {
    char file[1100];
    if (ft_is_dir(path))
        snprintf(file, sizeof file, "%s/" FT_CKPT_BACKBONE, path);
    else
        snprintf(file, sizeof file, "%s", path);
    ft_st_file f;
    int rc = ft_st_read(file, &f, err, errcap);
    if (rc) return rc;
    const char *arch = ft_st_meta(&f, "architecture");
    int depth, b[4];
    ft_iresnet_config cfg;
    if (!arch ||
        sscanf(arch, "network r%d, width %*d, blocks (%d, %d, %d, %d), emb %*d", &depth, &b[0],
               &b[1], &b[2], &b[3]) != 5 ||
        ft_iresnet_config_init(&cfg, depth) != 0 ||
        sscanf(arch, "network r%*d, width %d, blocks (%*d, %*d, %*d, %*d), emb %d", &cfg.width,
               &cfg.emb) != 2) {
        snprintf(err, errcap, "%s: no architecture recorded (metadata 'architecture' %s%s%s)", file,
                 arch ? "'" : "", arch ? arch : "missing", arch ? "' not understood" : "");
        ft_st_free(&f);
        return FT_EFORMAT;
    }
    for (int i = 0; i < 4; i++) cfg.blocks[i] = b[i];
    cfg.max_batch = max_batch;
    ckpt_model *c = calloc(1, sizeof *c);
    ft_ops_options opts;
    ft_ops_options_init(&opts);
    opts.threads = threads;
    opts.inference = 1; /* the checkpoint is loaded before the first forward */
    if (!c) {
        rc = -ENOMEM;
        snprintf(err, errcap, "%s: out of memory", file);
    } else if (!(rc = ft_ops_create(device, &opts, &c->ops, err, errcap)) &&
               (rc = ft_iresnet_create(c->ops, &cfg, &c->net))) {
        snprintf(err, errcap, "%s: cannot build the model (%s): %s", file, arch, ft_strerror(rc));
    }
    ft_ckpt_source src = ft_ckpt_src_backbone(c ? c->net : NULL);
    if (!rc) rc = ft_ckpt_load_source(&f, file, &src, 1, arch, err, errcap);
    ft_st_free(&f);
    if (rc) {
        ckpt_close(c);
        return rc;
    }
    c->dim = cfg.emb;
    em->impl = c, em->run = ckpt_run, em->close = ckpt_close;
    em->dim = cfg.emb, em->max_batch = max_batch;
    return 0;
}
#endif

static int model_open(eval_model *em, const char *path, const char *device, int threads,
                      int max_batch, char *err, size_t errcap) {
    memset(em, 0, sizeof *em);
    snprintf(em->path, sizeof em->path, "%s", path);
#ifdef FT_EVAL_ENGINE
    return engine_open(em, path, device, threads, max_batch, err, errcap);
#else
    return ckpt_open(em, path, device, threads, max_batch, err, errcap);
#endif
}

static void model_free(eval_model *em) {
    if (em->close) em->close(em->impl);
    free(em->cap[0]), free(em->cap[1]);
    memset(em, 0, sizeof *em);
}

/* ft_eval_embed_fn: any n, in chunks of max_batch */
static int model_embed(void *ctx, const float *x, int n, float *out, char *err, size_t errcap) {
    eval_model *em = ctx;
    size_t img = (size_t)3 * FT_ALIGN_SIZE * FT_ALIGN_SIZE;
    for (int s = 0; s < n; s += em->max_batch) {
        int m = n - s < em->max_batch ? n - s : em->max_batch;
        int rc = em->run(em->impl, x + (size_t)s * img, m, out + (size_t)s * em->dim);
        if (rc) {
            snprintf(err, errcap, "%s: model forward failed: %s", em->path, ft_strerror(rc));
            return rc;
        }
    }
    return 0;
}

/* ft_embed_fn of train/verify, capturing the embeddings for --save-features */
static int verify_embed(void *ctx, const float *x, int n, float *out) {
    eval_model *em = ctx;
    int rc = model_embed(ctx, x, n, out, em->err, sizeof em->err);
    if (rc) return rc;
    for (size_t i = 0; i < (size_t)n * em->dim; i++)
        if (!isfinite(out[i])) { /* the protocol would count it as "different" silently */
            snprintf(em->err, sizeof em->err, "%s: the model's embedding is not finite", em->path);
            return FT_ENONFINITE;
        }
    if (!em->cap[0]) return 0;
    int which = em->cap_call++ & 1;
    if (em->cap_pos[which] + n > em->cap_rows) return FT_ERANGE;
    memcpy(em->cap[which] + (size_t)em->cap_pos[which] * em->dim, out,
           (size_t)n * em->dim * sizeof(float));
    em->cap_pos[which] += n;
    return 0;
}

/* ------------------------------------------------------------------ options */

typedef struct eval_opts {
    const char *model, *data;
    const char *targets, *save_features, *target, *result_dir, *load_features;
    const char *device;
    int batch, threads, folds;
} eval_opts;

static int parse_opts(int argc, char **argv, eval_opts *o, int ijb) {
    enum { O_TARGETS = 1, O_SAVE, O_FOLDS, O_TARGET, O_RESULT, O_LOAD, O_BATCH, O_THREADS, O_DEV };
    static const struct option bin_opts[] = {
        {"targets", required_argument, 0, O_TARGETS},    /* .bin names */
        {"save-features", required_argument, 0, O_SAVE}, /* raw embeddings to DIR */
        {"folds", no_argument, 0, O_FOLDS},              /* per-fold lines */
        {"batch", required_argument, 0, O_BATCH},        /* images per model call */
        {"threads", required_argument, 0, O_THREADS},    /* CPU threads */
        {"device", required_argument, 0, O_DEV},         /* cpu | cuda */
        {0, 0, 0, 0}};
    static const struct option ijb_opts[] = {
        {"target", required_argument, 0, O_TARGET},      /* IJBC | IJBB */
        {"result-dir", required_argument, 0, O_RESULT},  /* outputs */
        {"load-features", required_argument, 0, O_LOAD}, /* saved image features */
        {"batch", required_argument, 0, O_BATCH},        /* images per model call */
        {"threads", required_argument, 0, O_THREADS},    /* CPU threads */
        {"device", required_argument, 0, O_DEV},         /* cpu | cuda */
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->batch = 64, o->result_dir = ".", o->device = "cpu";
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", ijb ? ijb_opts : bin_opts, NULL)) != -1) {
        uint64_t v;
        switch (c) {
        case O_TARGETS:
            o->targets = optarg;
            break;
        case O_SAVE:
            o->save_features = optarg;
            break;
        case O_FOLDS:
            o->folds = 1;
            break;
        case O_TARGET:
            o->target = optarg;
            break;
        case O_RESULT:
            o->result_dir = optarg;
            break;
        case O_LOAD:
            o->load_features = optarg;
            break;
        case O_DEV:
            o->device = optarg;
            break;
        case O_BATCH:
            if (ft_parse_u64(optarg, 1, 4096, &v))
                return bad_usage("--batch: '%s' is not 1..4096", optarg);
            o->batch = (int)v;
            break;
        case O_THREADS:
            if (ft_parse_u64(optarg, 1, 1024, &v))
                return bad_usage("--threads: '%s' is not 1..1024", optarg);
            o->threads = (int)v;
            break;
        default:
            return bad_usage("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 2) return bad_usage("%s expects MODEL and a data folder", argv[0]);
    o->model = argv[optind], o->data = argv[optind + 1];
    if (ijb && !o->target) return bad_usage("%s needs --target IJBC or IJBB", argv[0]);
    if (ijb && strcasecmp(o->target, "IJBC") && strcasecmp(o->target, "IJBB"))
        return bad_usage("--target '%s': expected IJBC or IJBB", o->target);
    return 0;
}

/* ------------------------------------------------------------------ bin */

static int save_bin_features(const eval_opts *o, eval_model *em, const char *name) {
    char path[1100], err[2048];
    const char *kind[2] = {"orig", "flip"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s_%s.npy", o->save_features, name, kind[k]);
        int rc = ft_npy_write_f32(path, em->cap[k], em->cap_rows, em->dim, err, sizeof err);
        if (rc) {
            fprintf(stderr, PROG ": %s\n", err);
            return 1;
        }
    }
    return 0;
}

static int run_bin(const eval_opts *o) {
    static const char *defaults = "lfw,cfp_fp,agedb_30";
    char list[1024], err[4096];
    snprintf(list, sizeof list, "%s", o->targets ? o->targets : defaults);
    if (o->save_features && ft_mkdir_p(o->save_features) != 0) {
        fprintf(stderr, PROG ": %s: cannot create the folder: %s\n", o->save_features,
                strerror(errno));
        return 1;
    }
    eval_model em;
    int rc = model_open(&em, o->model, o->device, o->threads, o->batch, err, sizeof err);
    if (rc) {
        fprintf(stderr, PROG ": %s\n", err);
        return 1;
    }
    int done = 0, status = 0;
    char skipped[256] = "";
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name && !status;
         name = strtok_r(NULL, ",", &save)) {
        char path[1100];
        snprintf(path, sizeof path, "%s/%s.bin", o->data, name);
        if (!o->targets && access(path, F_OK) != 0) { /* arcface_torch skips them silently */
            snprintf(skipped + strlen(skipped), sizeof skipped - strlen(skipped), "%s%s.bin",
                     skipped[0] ? ", " : "", name);
            continue;
        }
        ft_verify_target *t = NULL;
        if ((rc = ft_verify_load(&t, path, name, FT_ALIGN_SIZE, FT_ALIGN_SIZE, err, sizeof err))) {
            fprintf(stderr, PROG ": %s\n", err);
            status = 1;
            break;
        }
        int64_t rows = 2 * ft_verify_pairs(t);
        if (o->save_features) {
            free(em.cap[0]), free(em.cap[1]);
            em.cap[0] = malloc((size_t)rows * em.dim * sizeof(float));
            em.cap[1] = malloc((size_t)rows * em.dim * sizeof(float));
            em.cap_rows = rows, em.cap_pos[0] = em.cap_pos[1] = 0, em.cap_call = 0;
            if (!em.cap[0] || !em.cap[1]) {
                fprintf(stderr, PROG ": %s: out of memory\n", path);
                ft_verify_free(t);
                status = 1;
                break;
            }
        }
        ft_verify_result r;
        rc = ft_verify_run(t, verify_embed, &em, em.dim, o->batch, &r, err, sizeof err);
        if (rc) {
            if (rc != FT_ESTOP && em.err[0]) snprintf(err, sizeof err, "%s", em.err);
            fprintf(stderr, PROG ": %s\n", err);
            status = rc == FT_ESTOP ? 130 : 1;
        } else {
            printf("[%s][0]XNorm: %f\n", name, r.xnorm);
            printf("[%s][0]Accuracy-Flip: %1.5f+-%1.5f\n", name, r.acc, r.std);
            printf("[%s][0]Accuracy-Highest: %1.5f\n", name, r.acc > 0 ? r.acc : 0.0);
            if (o->folds)
                for (int k = 0; k < FT_VERIFY_FOLDS; k++)
                    printf("[%s][0]Fold %d: threshold %.2f, accuracy %1.5f\n", name, k,
                           r.threshold[k], r.fold_acc[k]);
            fflush(stdout);
            if (o->save_features) status = save_bin_features(o, &em, name);
            done++;
        }
        ft_verify_free(t);
    }
    model_free(&em);
    if (!status && !done) {
        fprintf(stderr, PROG ": %s: none of lfw.bin, cfp_fp.bin, agedb_30.bin found\n", o->data);
        status = 1;
    } else if (!status && skipped[0]) {
        fprintf(stderr, PROG ": note: %s not in %s, skipped\n", skipped, o->data);
    }
    return status;
}

/* ------------------------------------------------------------------ ijb */

/* PrettyTable's centring: the odd space goes right for odd-length text, else left */
static void centre(const char *s, int width) {
    int len = (int)strlen(s), ex = width - len, l = ex / 2, r = ex / 2;
    if (ex % 2) {
        if (len % 2)
            r++;
        else
            l++;
    }
    printf(" %*s%s%*s ", l, "", s, r, "");
}

static void print_table(const char *method, const ft_roc_point *pts) {
    static const char *heads[1 + FT_IJB_NFAR] = {"Methods", "1e-06", "1e-05", "0.0001",
                                                 "0.001",   "0.01",  "0.1"};
    char cells[1 + FT_IJB_NFAR][1100];
    int width[1 + FT_IJB_NFAR];
    snprintf(cells[0], sizeof cells[0], "%s", method);
    for (int i = 0; i < FT_IJB_NFAR; i++)
        snprintf(cells[1 + i], sizeof cells[1 + i], "%.2f", pts[i].tar * 100);
    for (int i = 0; i < 1 + FT_IJB_NFAR; i++) {
        int a = (int)strlen(heads[i]), b = (int)strlen(cells[i]);
        width[i] = a > b ? a : b;
    }
    for (int row = 0; row < 5; row++) {
        int rule = row == 0 || row == 2 || row == 4;
        putchar(rule ? '+' : '|');
        for (int i = 0; i < 1 + FT_IJB_NFAR; i++) {
            if (rule) {
                for (int k = 0; k < width[i] + 2; k++) putchar('-');
            } else {
                centre(row == 1 ? heads[i] : cells[i], width[i]);
            }
            putchar(rule ? '+' : '|');
        }
        putchar('\n');
    }
}

static int write_ids(const char *path, const ft_ijb_meta *m, char *err, size_t errcap) {
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return snprintf(err, errcap, "%s: cannot write: %s", tmp, strerror(errno)), -1;
    for (int64_t t = 0; t < m->n_templates; t++) fprintf(f, "%lld\n", (long long)m->templates[t]);
    int ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errcap, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int save_f64(const char *path, const double *v, int64_t rows, int64_t cols, char *err,
                    size_t errcap) {
    float *f = malloc((size_t)rows * cols * sizeof *f);
    if (!f) return snprintf(err, errcap, "%s: out of memory", path), -ENOMEM;
    for (int64_t i = 0; i < rows * cols; i++) f[i] = (float)v[i];
    int rc = ft_npy_write_f32(path, f, rows, cols, err, errcap);
    free(f);
    return rc;
}

static int ijb_features(const eval_opts *o, const ft_ijb_meta *m, float **feats, int *dim,
                        char *err, size_t errcap) {
    if (o->load_features) {
        int64_t rows, cols;
        int rc = ft_npy_read_f32(o->load_features, feats, &rows, &cols, err, errcap);
        if (rc) return rc;
        if (rows != m->n_img || cols < 1 || cols > 65536) {
            snprintf(err, errcap, "%s: %lld x %lld features, but the meta files list %lld images",
                     o->load_features, (long long)rows, (long long)cols, (long long)m->n_img);
            return FT_EFORMAT;
        }
        *dim = (int)cols;
        return 0;
    }
    eval_model em;
    int rc = model_open(&em, o->model, o->device, o->threads, o->batch, err, errcap);
    if (rc) return rc;
    *dim = em.dim;
    *feats = malloc((size_t)m->n_img * em.dim * sizeof(float));
    if (!*feats) {
        model_free(&em);
        snprintf(err, errcap, "%s: out of memory for %lld features", m->root, (long long)m->n_img);
        return -ENOMEM;
    }
    ft_progress prog;
    ft_progress_init(&prog, "ijb features", (uint64_t)m->n_img);
    ft_ijb_feat_opts fo = {.batch = o->batch, .threads = o->threads, .progress = &prog};
    double t0 = ft_now();
    rc = ft_ijb_features(m, model_embed, &em, em.dim, &fo, *feats, err, errcap);
    double dt = ft_now() - t0;
    if (rc)
        ft_progress_clear(&prog);
    else
        ft_progress_done(&prog);
    model_free(&em);
    if (!rc)
        printf("features of %lld images in %.1f s, %.1f images/s\n", (long long)m->n_img, dt,
               (double)m->n_img / (dt > 0 ? dt : 1e-9));
    return rc;
}

static int run_ijb(const eval_opts *o) {
    char err[4096], path[1100];
    ft_ijb_meta m;
    int rc = ft_ijb_meta_load(&m, o->data, o->target, err, sizeof err), status = 1;
    if (rc) {
        fprintf(stderr, PROG ": %s\n", err);
        return 1;
    }
    char tname[8];
    snprintf(tname, sizeof tname, "%s", m.tag[3] == 'c' ? "IJBC" : "IJBB");
    printf("%s: %lld images, %lld templates, %lld pairs (%lld genuine)\n", o->data,
           (long long)m.n_img, (long long)m.n_templates, (long long)m.n_pairs,
           (long long)m.n_genuine);
    fflush(stdout); /* a reader of a pipe sees it before the long part starts */
    float *feats = NULL;
    double *tf = NULL, *score = NULL;
    int dim = 0;
    if (ft_mkdir_p(o->result_dir) != 0) {
        snprintf(err, sizeof err, "%s: cannot create the folder: %s", o->result_dir,
                 strerror(errno));
        goto done;
    }
    if ((rc = ijb_features(o, &m, &feats, &dim, err, sizeof err))) goto done;
    if (!o->load_features) {
        snprintf(path, sizeof path, "%s/%s_feats.npy", o->result_dir, tname);
        if ((rc = ft_npy_write_f32(path, feats, m.n_img, dim, err, sizeof err))) goto done;
    }
    tf = malloc((size_t)m.n_templates * dim * sizeof *tf);
    score = malloc((size_t)m.n_pairs * sizeof *score);
    if (!tf || !score || ft_ijb_templates(&m, feats, dim, tf)) {
        snprintf(err, sizeof err, "%s: out of memory", o->data);
        goto done;
    }
    ft_ijb_scores(&m, tf, dim, score);
    snprintf(path, sizeof path, "%s/%s_templates.npy", o->result_dir, tname);
    if (save_f64(path, tf, m.n_templates, dim, err, sizeof err)) goto done;
    snprintf(path, sizeof path, "%s/%s_template_ids.txt", o->result_dir, tname);
    if (write_ids(path, &m, err, sizeof err)) goto done;
    snprintf(path, sizeof path, "%s/%s.npy", o->result_dir, tname);
    if (save_f64(path, score, m.n_pairs, 1, err, sizeof err)) goto done;
    ft_roc_point pts[FT_IJB_NFAR];
    int64_t bad = -1;
    ft_ijb_meta_path(&m, "template_pair_label", path, sizeof path);
    if ((rc = ft_roc_tar(score, m.label, m.n_pairs, ft_ijb_fars, FT_IJB_NFAR, pts, &bad))) {
        snprintf(err, sizeof err,
                 "%s: line %lld: the score is not finite (a template feature "
                 "holds NaN or inf)",
                 path, (long long)bad + 1);
        goto done;
    }
    char method[1100], base[1024];
    snprintf(base, sizeof base, "%s", o->model);
    size_t bl = strlen(base);
    while (bl > 1 && base[bl - 1] == '/') base[--bl] = 0;
    const char *slash = strrchr(base, '/');
    snprintf(method, sizeof method, "%s-%s", slash ? slash + 1 : base, tname);
    print_table(method, pts);
    status = 0;
done:
    if (status) fprintf(stderr, PROG ": %s\n", err);
    if (rc == FT_ESTOP) status = 130;
    free(feats), free(tf), free(score);
    ft_ijb_meta_free(&m);
    return status;
}

int main(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version"))) {
        printf(PROG " (%s)\n", FT_VERSION_STRING);
        return 0;
    }
    if (argc < 2 || (strcmp(argv[1], "bin") && strcmp(argv[1], "ijb"))) {
        usage(stderr);
        return 2;
    }
    int ijb = !strcmp(argv[1], "ijb");
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
    eval_opts o;
    int rc = parse_opts(argc - 1, argv + 1, &o, ijb);
    if (rc) return rc;
    ft_stop_install();
    return ijb ? run_ijb(&o) : run_bin(&o);
}
