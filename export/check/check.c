/* check.c: onnx_helper.py's ArcFaceORT.check rules, in its order (see check.h, formats.md 5.3). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "engine.h"
#include "ft_common.h"
#include "ft_npy.h"
#include "onnx/onnx.pb-c.h"

#define RUNS  50
#define NTH   5 /* costs[5]: the 6th fastest */
#define BATCH 32
#define MIB   1048576.0

typedef struct track {
    const char *prefix;
    double size_mb;
    int feat;
    double ms;
} track;
static const track tracks[] = {{"ms1m", 1024, 512, 10},
                               {"glint", 1024, 1024, 20},
                               {"cfat", 1024, 512, 15},
                               {"unconstrained", 1024, 1024, 30}};

typedef struct ck {
    FILE *out;
    const char *failed;
} ck;

static int fail(ck *c, const char *rule, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(c->out, fmt, ap);
    va_end(ap);
    fputc('\n', c->out);
    c->failed = rule;
    return 1;
}

static void line(ck *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(c->out, fmt, ap);
    va_end(ap);
    fputc('\n', c->out);
}

/* "a\nb\n..." -> exactly n numbers (ints when ints) one per line; blank trailing lines ok */
static int read_numbers(const char *path, int n, int ints, double *v, char *why, size_t cap) {
    char *data;
    size_t len;
    int rc = ft_read_file(path, &data, &len);
    if (rc) {
        snprintf(why, cap, "%s", ft_strerror(rc));
        return -1;
    }
    int k = 0;
    char *save = NULL;
    for (char *tok = strtok_r(data, "\n", &save); tok; tok = strtok_r(NULL, "\n", &save)) {
        size_t l = strlen(tok);
        while (l && (tok[l - 1] == '\r' || tok[l - 1] == ' ' || tok[l - 1] == '\t')) tok[--l] = 0;
        while (*tok == ' ' || *tok == '\t') tok++;
        if (!*tok) continue;
        if (k == n) {
            snprintf(why, cap, "more than %d lines", n);
            free(data);
            return -1;
        }
        int64_t iv;
        if (ints ? ft_parse_i64(tok, -1000000, 1000000, &iv) == 0 && (v[k] = (double)iv, 1)
                 : ft_parse_double(tok, -1e9, 1e9, &v[k]) == 0) {
            k++;
            continue;
        }
        snprintf(why, cap, "line %d '%.40s' is not %s", k + 1, tok,
                 ints ? "an integer" : "a number");
        free(data);
        return -1;
    }
    free(data);
    if (k != n) {
        snprintf(why, cap, "%d lines, %d needed", k, n);
        return -1;
    }
    return 0;
}

/* the graph input as onnxruntime lists it: the first input that is not an initializer */
static const Onnx__ValueInfoProto *graph_input(const Onnx__GraphProto *g) {
    for (size_t i = 0; i < g->n_input; i++) {
        int init = 0;
        for (size_t j = 0; j < g->n_initializer && !init; j++)
            init = g->input[i]->name && g->initializer[j]->name &&
                   strcmp(g->input[i]->name, g->initializer[j]->name) == 0;
        if (!init) return g->input[i];
    }
    return NULL;
}

static size_t dtype_itemsize(int dt) {
    switch (dt) {
    case 1:
    case 6:
    case 12:
        return 4; /* float, int32, uint32 */
    case 7:
    case 11:
    case 13:
    case 14:
        return 8; /* int64, double, uint64, complex64 */
    case 15:
        return 16; /* complex128 */
    case 4:
    case 5:
    case 10:
    case 16:
        return 2; /* uint16, int16, float16, bfloat16 */
    case 2:
    case 3:
    case 9:
        return 1; /* uint8, int8, bool */
    default:
        return 0; /* string, undefined, 8-bit floats */
    }
}

static const char *dtype_name(int dt) {
    static const char *n[] = {"undefined",  "float32", "uint8",  "int8",   "uint16",
                              "int16",      "int32",   "int64",  "string", "bool",
                              "float16",    "float64", "uint32", "uint64", "complex64",
                              "complex128", "bfloat16"};
    return dt >= 0 && dt <= 16 ? n[dt] : "unknown";
}

static int starts(const char *s, const char *p) {
    return s && strncmp(s, p, strlen(p)) == 0;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A fixed pattern in place of the helper's bundled photo: smooth gradients and a disc. */
static void synthetic_image(uint8_t *rgb, int w, int h) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double dx = x - w / 2.0, dy = y - h / 2.0;
            int in = dx * dx + dy * dy < (w * w) / 9.0;
            uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(in ? 200 - y / 2 : (x * 255) / w);
            p[1] = (uint8_t)(in ? 150 + x / 4 : (y * 255) / h);
            p[2] = (uint8_t)(in ? 120 : 64);
        }
}

/* onnxruntime's batch-1 latency through python3 (ms), or a note why not */
static const char ort_script[] =
    "import sys, time\n"
    "try:\n"
    "    import numpy as np, onnxruntime as ort\n"
    "except ImportError as e:\n"
    "    print('noort %s' % e); sys.exit(0)\n"
    "so = ort.SessionOptions()\n"
    "t = int(sys.argv[5])\n"
    "if t > 0: so.intra_op_num_threads = t\n"
    "so.log_severity_level = 3\n"
    "s = ort.InferenceSession(sys.argv[1], so, providers=['CPUExecutionProvider'])\n"
    "x = np.load(sys.argv[2]).reshape(1, 3, int(sys.argv[3]), int(sys.argv[4]))\n"
    "n = s.get_inputs()[0].name\n"
    "c = []\n"
    "for _ in range(50):\n"
    "    t0 = time.time(); s.run(None, {n: x}); c.append(time.time() - t0)\n"
    "c.sort(); print('ms %.6f' % (c[5] * 1000))\n";

static int ort_latency_with(const char *py, const char *model, const float *blob, int h, int w,
                            int threads, double *ms, char *note, size_t cap) {
    char dir[] = "/tmp/ft-check.XXXXXX", npy[64], err[512], th[16], hs[16], ws[16];
    if (!mkdtemp(dir)) {
        snprintf(note, cap, "cannot make a temporary folder: %s", strerror(errno));
        return -1;
    }
    snprintf(npy, sizeof npy, "%s/blob.npy", dir);
    int rc = -1;
    if (ft_npy_write_f32(npy, blob, 1, (int64_t)3 * h * w, err, sizeof err)) {
        snprintf(note, cap, "%s", err);
        goto out;
    }
    snprintf(th, sizeof th, "%d", threads), snprintf(hs, sizeof hs, "%d", h);
    snprintf(ws, sizeof ws, "%d", w);
    int fd[2];
    if (pipe(fd)) {
        snprintf(note, cap, "pipe: %s", strerror(errno));
        goto out;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]), close(fd[1]);
        execlp(py, py, "-c", ort_script, model, npy, hs, ws, th, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char buf[4096] = "";
    size_t got = 0;
    ssize_t r;
    while (pid > 0 && got < sizeof buf - 1 &&
           (r = read(fd[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)r;
    buf[got] = 0;
    close(fd[0]);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0) {
        snprintf(note, cap, "cannot run %s: %s", py, strerror(errno));
    } else if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
        snprintf(note, cap, "%s not found", py);
    } else if (starts(buf, "noort")) {
        buf[strcspn(buf, "\n")] = 0;
        snprintf(note, cap, "onnxruntime is not importable by %s (%.200s)", py, buf + 6);
    } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || sscanf(buf, "ms %lf", ms) != 1) {
        snprintf(note, cap, "onnxruntime failed on the model (exit %d)",
                 WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    } else {
        rc = 0;
    }
out:
    unlink(npy);
    rmdir(dir);
    return rc;
}

/* $FT_PYTHON, else python3 from PATH and then /usr/bin/python3 (a PATH python of a virtual
 * environment often lacks onnxruntime while the system one has it) */
static int ort_latency(const char *model, const float *blob, int h, int w, int threads, double *ms,
                       char *note, size_t cap) {
    const char *env = getenv("FT_PYTHON");
    if (env && *env) return ort_latency_with(env, model, blob, h, w, threads, ms, note, cap);
    if (ort_latency_with("python3", model, blob, h, w, threads, ms, note, cap) == 0) return 0;
    char first[300], second[300];
    snprintf(first, sizeof first, "%.280s", note);
    if (ort_latency_with("/usr/bin/python3", model, blob, h, w, threads, ms, second,
                         sizeof second) == 0)
        return 0;
    snprintf(note, cap, "%.280s; %.280s", first, second);
    return -1;
}

static int checks(const ft_check_opts *o, ck *c, char *model, Onnx__ModelProto **mp,
                  ft_engine **ep) {
    /* 1. the track's limits */
    const char *tn = o->track && *o->track ? o->track : "cfat";
    const track *t = NULL;
    for (size_t i = 0; i < sizeof tracks / sizeof tracks[0] && !t; i++)
        if (starts(tn, tracks[i].prefix)) t = &tracks[i];
    if (!t)
        return fail(c, "track", "track '%s' not found (ms1m, glint, cfat, unconstrained) FAIL", tn);
    int cfat = strcmp(t->prefix, "cfat") == 0;
    line(c, "track %s: size <= %.0f MiB, feature dim <= %d, latency <= %.0f ms", t->prefix,
         t->size_mb, t->feat, t->ms);

    /* 2. the folder, its last .onnx, the model loads */
    if (!ft_is_dir(o->model_dir))
        return fail(c, "model dir", "model dir %s: not a directory FAIL", o->model_dir);
    int count = 0, rc = ft_engine_find_onnx(o->model_dir, model, PATH_MAX, &count, 1);
    if (rc == FT_EFORMAT)
        return fail(c, "no onnx", "onnx files 0 >= 1 FAIL (no .onnx in %s)", o->model_dir);
    if (rc) return fail(c, "model dir", "model dir %s: %s FAIL", o->model_dir, ft_strerror(rc));
    char *data = NULL;
    size_t len = 0;
    uint64_t fsize = 0;
    if ((rc = ft_file_size(model, &fsize)) || (rc = ft_read_file(model, &data, &len)))
        return fail(c, "load onnx failed", "load %s: %s FAIL", model, ft_strerror(rc));
    *mp = onnx__model_proto__unpack(NULL, len, (const uint8_t *)data);
    free(data);
    if (!*mp || !(*mp)->graph)
        return fail(c, "load onnx failed",
                    "load %s: not an ONNX model (protobuf does not parse) FAIL", model);
    char err[1024];
    ft_engine_opts eo = {o->device, o->threads, BATCH, o->graphs};
    if (ft_engine_open(ep, model, &eo, err, sizeof err))
        return fail(c, "load onnx failed", "load FAIL: %s", err);
    line(c, "model %s (last of %d .onnx) loads ok", model, count);
    const Onnx__GraphProto *g = (*mp)->graph;

    /* 3. input rank 4, symbolic batch */
    const Onnx__ValueInfoProto *in = graph_input(g);
    const Onnx__TensorShapeProto *sh =
        in && in->type && in->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE &&
                in->type->tensor_type
            ? in->type->tensor_type->shape
            : NULL;
    size_t rank = sh ? sh->n_dim : 0;
    if (rank != 4) return fail(c, "input rank", "input rank %zu == 4 FAIL", rank);
    line(c, "input rank 4 == 4 ok");
    const Onnx__TensorShapeProto__Dimension *d0 = sh->dim[0];
    if (d0->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM)
        line(c, "input batch dim '%s' symbolic ok", d0->dim_param);
    else
        line(c,
             "input batch dim %lld fixed: rewritten to dim_param 'None' (the helper's "
             "zzzzrefined.onnx, here in memory) ok",
             (long long)d0->dim_value);
    int ih = ft_engine_input_hw(*ep), iw = ih;

    /* 4. one output, at least 8 nodes */
    if (g->n_output != 1) return fail(c, "outputs", "outputs %zu == 1 FAIL", g->n_output);
    line(c, "outputs 1 == 1 ok");
    if (g->n_node < 8) return fail(c, "too small onnx graph", "nodes %zu >= 8 FAIL", g->n_node);
    line(c, "nodes %zu >= 8 ok", g->n_node);

    /* 5. input size (crop.txt on cfat) */
    int want_w = 112, want_h = 112, crop[4] = {0}, has_crop = 0;
    char p[PATH_MAX], why[160];
    struct stat st;
    if (cfat && !ft_path_join(p, sizeof p, o->model_dir, "crop.txt") && stat(p, &st) == 0) {
        double v[6];
        if (read_numbers(p, 6, 1, v, why, sizeof why))
            return fail(c, "crop.txt",
                        "crop.txt %s: %s (needs 6 integer lines: x1 y1 x2 y2 W H) FAIL", p, why);
        for (int i = 0; i < 4; i++) crop[i] = (int)v[i];
        want_w = (int)v[4], want_h = (int)v[5], has_crop = 1;
        if (crop[0] < 0 || crop[1] < 0 || crop[2] <= crop[0] || crop[3] <= crop[1])
            return fail(c, "crop.txt", "crop.txt %s: crop (%d, %d, %d, %d) is empty FAIL", p,
                        crop[0], crop[1], crop[2], crop[3]);
    }
    if (want_w != iw || want_h != ih)
        return fail(
            c, "input size",
            "input size %dx%d == %dx%d%s FAIL (input-size is inconsistent with onnx model input)",
            iw, ih, want_w, want_h, has_crop ? " (crop.txt)" : "");
    line(c, "input size %dx%d == %dx%d%s ok", iw, ih, want_w, want_h,
         has_crop ? " (crop.txt)" : "");

    /* 6. file size */
    double mb = (double)fsize / MIB;
    if (mb > t->size_mb) return fail(c, "size", "size %.1f MiB <= %.0f FAIL", mb, t->size_mb);
    line(c, "size %.1f MiB <= %.0f ok", mb, t->size_mb);

    /* 7. input mean and std */
    double mean = 127.5, stdv = 127.5;
    const char *how = "arcface_torch default";
    if (cfat && !ft_path_join(p, sizeof p, o->model_dir, "pixel_norm.txt") && stat(p, &st) == 0) {
        double v[2];
        if (read_numbers(p, 2, 0, v, why, sizeof why))
            return fail(c, "pixel_norm.txt",
                        "pixel_norm.txt %s: %s (needs 2 lines: mean, std) FAIL", p, why);
        if (!(v[1] != 0)) return fail(c, "pixel_norm.txt", "pixel_norm.txt %s: std 0 FAIL", p);
        mean = v[0], stdv = v[1], how = "pixel_norm.txt";
    } else {
        int sub = 0, mul = 0;
        for (size_t i = 0; i < g->n_node && i < 8; i++) {
            const char *nm = g->node[i]->name;
            if (starts(nm, "Sub") || starts(nm, "_minus")) sub = 1;
            if (starts(nm, "Mul") || starts(nm, "_mul") || starts(nm, "Div")) mul = 1;
        }
        if (sub && mul) mean = 0.0, stdv = 1.0, how = "the graph normalizes (Sub/Mul nodes first)";
    }
    line(c, "input mean %g std %g (%s)", mean, stdv, how);

    /* 8. weights of 4 bytes or more */
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *tp = g->initializer[i];
        int dt = tp->has_data_type ? tp->data_type : 0;
        if (dtype_itemsize(dt) < 4)
            return fail(c, "invalid weight type", "weights: '%s' is %s (%zu bytes < 4) FAIL",
                        tp->name ? tp->name : "", dtype_name(dt), dtype_itemsize(dt));
    }
    line(c, "weights %zu initializers, all >= 4 bytes ok", g->n_initializer);

    /* 9. latency of batch 1, then a batch of 32 */
    uint8_t *rgb = NULL;
    int w = 0, h = 0;
    if (o->image) {
        if (ft_image_read_rgb(o->image, &rgb, &w, &h, err, sizeof err))
            return fail(c, "image", "image FAIL: %s", err);
    } else {
        w = h = 112;
        if (!(rgb = malloc((size_t)w * h * 3))) return -ENOMEM;
        synthetic_image(rgb, w, h);
    }
    if (has_crop) {
        if (crop[2] > w || crop[3] > h) {
            free(rgb);
            return fail(c, "crop.txt",
                        "crop.txt: crop (%d, %d, %d, %d) outside the %dx%d image FAIL", crop[0],
                        crop[1], crop[2], crop[3], w, h);
        }
        int cw = crop[2] - crop[0], chh = crop[3] - crop[1];
        uint8_t *cr = malloc((size_t)cw * chh * 3);
        if (!cr) return free(rgb), -ENOMEM;
        for (int y = 0; y < chh; y++)
            memcpy(cr + (size_t)y * cw * 3, rgb + ((size_t)(y + crop[1]) * w + crop[0]) * 3,
                   (size_t)cw * 3);
        free(rgb);
        rgb = cr, w = cw, h = chh;
    }
    uint8_t *rs = malloc((size_t)iw * ih * 3);
    float *blob = malloc((size_t)BATCH * 3 * iw * ih * sizeof(float));
    float *emb = malloc((size_t)BATCH * ft_engine_dim(*ep) * sizeof(float));
    double cost[RUNS];
    if (!rs || !blob || !emb) {
        free(rgb), free(rs), free(blob), free(emb);
        return -ENOMEM;
    }
    if (w != iw || h != ih)
        ft_image_resize(rgb, w, h, rs, iw, ih);
    else
        memcpy(rs, rgb, (size_t)iw * ih * 3);
    free(rgb);
    ft_image_blob(rs, ih, (float)mean, (float)stdv, 0, blob);
    free(rs);
    size_t img = (size_t)3 * iw * ih;
    int bad = 0;
    for (int i = 0; i < RUNS && !bad; i++) {
        double t0 = ft_now();
        bad = ft_engine_run(*ep, blob, 1, emb, err, sizeof err);
        cost[i] = (ft_now() - t0) * 1e3;
    }
    if (bad) {
        free(blob), free(emb);
        return fail(c, "batch run", "run batch 1 FAIL: %s", err);
    }
    qsort(cost, RUNS, sizeof cost[0], cmp_d);
    double ms = cost[NTH], ort_ms = -1;
    int64_t replays;
    int recorded;
    ft_engine_graph_stats(*ep, &replays, &recorded);
    line(c, "latency engine %.2f ms (6th fastest of %d batch-1 runs, %s%s)", ms, RUNS,
         o->device && *o->device ? o->device : "cpu",
         replays     ? ", replayed from a CUDA graph"
         : o->graphs ? ", no graphs on this backend"
                     : "");
    if (o->ort) {
        char note[600];
        if (ort_latency(model, blob, ih, iw, o->threads, &ort_ms, note, sizeof note) == 0)
            line(c, "latency onnxruntime %.2f ms (6th fastest of %d batch-1 runs, CPU)", ort_ms,
                 RUNS);
        else
            line(c, "latency onnxruntime: not measured: %s", note), ort_ms = -1;
    }
    for (int i = 1; i < BATCH; i++) memcpy(blob + i * img, blob, img * sizeof(float));
    bad = ft_engine_run(*ep, blob, BATCH, emb, err, sizeof err);
    free(blob);
    if (bad) {
        free(emb);
        return fail(c, "batch run", "run batch %d FAIL: %s", BATCH, err);
    }
    int dim = ft_engine_dim(*ep);
    double sum = 0;
    for (size_t i = 0; i < (size_t)BATCH * dim; i++) sum += emb[i];
    free(emb);
    if (!isfinite(sum))
        return fail(c, "batch result output contains NaN",
                    "batch %d output sum %g finite FAIL (batch result output contains NaN!)", BATCH,
                    sum);
    line(c, "batch %d output sum %.6g finite ok", BATCH, sum);

    /* 10. the feature: 2-D, dim within the track */
    if (dim > t->feat) return fail(c, "feature dim", "feature dim %d <= %d FAIL", dim, t->feat);
    line(c, "feature [N, %d] dim %d <= %d ok", dim, dim, t->feat);

    /* 11. latency within the track */
    double held = ort_ms >= 0 ? ort_ms : ms;
    const char *who = ort_ms >= 0 ? "onnxruntime" : "engine";
    double lim = o->max_latency_ms > 0 ? o->max_latency_ms : t->ms;
    const char *src = o->max_latency_ms > 0 ? " (--max-latency)" : "";
    if (held > lim)
        return fail(c, "latency", "latency %.2f ms (%s) <= %.0f%s FAIL", held, who, lim, src);
    line(c, "latency %.2f ms (%s) <= %.0f%s ok", held, who, lim, src);
    line(c,
         "check stat:, model-size-mb: %.4f, feat-dim: %d, time-cost-ms: %.4f, input-mean: %g, "
         "input-std: %g",
         mb, dim, held, mean, stdv);
    return 0;
}

int ft_check_run(const ft_check_opts *o, FILE *out) {
    ck c = {out, NULL};
    char *model = calloc(1, PATH_MAX);
    if (!model) return -ENOMEM;
    Onnx__ModelProto *m = NULL;
    ft_engine *e = NULL;
    int rc = checks(o, &c, model, &m, &e);
    if (m) onnx__model_proto__free_unpacked(m, NULL);
    ft_engine_free(e);
    free(model);
    if (rc < 0) return rc;
    if (c.failed) {
        fprintf(out, "FAIL: %s\n", c.failed);
        return 1;
    }
    fprintf(out, "PASS\n");
    return 0;
}
