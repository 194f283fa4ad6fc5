/* engine.c: open a model (ONNX file, checkpoint folder, folder with one .onnx), plan it on an
 * ft_ops backend and run it (see engine.h).
 *
 * Plan: every step's weights are uploaded once. Activations live in a few equal-sized device
 * buffers (the largest per-sample value times max_batch): walking the steps in order, a step's
 * output takes a free buffer and a value's buffer is released after its last reader, so an
 * r50 needs four or five buffers whatever its depth. A conv with a bias writes a scratch buffer
 * that the bias step (an affine with gamma 1) reads. One conv workspace of the largest size
 * any conv needs at any batch up to max_batch is shared by all convs.
 *
 * Graphs (opts.graphs, a backend with them): the device part of a run (act_import, the steps,
 * act_export) is recorded for a batch size at its second run (the first does the one-time
 * work: algorithm choice, weight layouts) and replayed after; the upload before and the
 * download after stay outside. The recording reads and writes the same buffers every time. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine.h"
#include "ft_common.h"
#include "ir.h"
#include "ops.h"

typedef struct dstep {
    float *w, *b;                     /* conv / fc weights (device) */
    float *gamma, *beta, *mean, *var; /* affine (device) */
    float *alpha;
    float *one, *zero;            /* conv bias as an affine: gamma 1, mean 0, var 1 */
    int buf_out, buf_in, buf_in2; /* buffer indexes */
    int buf_tmp;                  /* conv with bias: the conv's raw output */
} dstep;

struct ft_engine {
    ft_ops *o;
    ir_graph g;
    dstep *d;
    void **buf;
    int nbuf;
    size_t buf_floats; /* per buffer */
    void *ws;
    size_t ws_bytes;
    float *stage_in, *stage_out; /* device fp32 NCHW input [max_batch][3][hw][hw], output */
    int max_batch, dim, in_buf, out_buf;
    char source[PATH_MAX];
    char kind[16];
    int graphs;           /* opts.graphs and the backend has them */
    ft_graph_slot *slots; /* [max_batch + 1]: the recording of each batch size */
};

static int fmt_err(char *err, size_t cap, int rc, const char *fmt, const char *a, const char *b) {
    snprintf(err, cap, fmt, a, b);
    return rc;
}

/* ---- finding the model ---- */

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

int ft_engine_find_onnx(const char *dir, char *out, size_t cap, int *count, int last) {
    DIR *d = opendir(dir);
    if (!d) return -errno;
    struct dirent *e;
    char best[NAME_MAX + 1] = "";
    int n = 0;
    while ((e = readdir(d))) {
        if (!has_suffix(e->d_name, ".onnx")) continue;
        char p[PATH_MAX];
        struct stat st;
        if (ft_path_join(p, sizeof p, dir, e->d_name) || stat(p, &st) || !S_ISREG(st.st_mode))
            continue;
        n++;
        if (!*best || (last ? strcmp(e->d_name, best) > 0 : strcmp(e->d_name, best) < 0))
            snprintf(best, sizeof best, "%s", e->d_name);
    }
    closedir(d);
    *count = n;
    if (!n) return FT_EFORMAT;
    return ft_path_join(out, cap, dir, best);
}

static int load_graph(ft_engine *e, const char *path, char *err, size_t errcap) {
    char p[PATH_MAX];
    if (ft_is_dir(path)) {
        char ck[PATH_MAX];
        struct stat st;
        if (!ft_path_join(ck, sizeof ck, path, "backbone.safetensors") && stat(ck, &st) == 0) {
            snprintf(e->source, sizeof e->source, "%s", ck);
            snprintf(e->kind, sizeof e->kind, "checkpoint");
            return ir_load_ckpt(&e->g, path, err, errcap);
        }
        int n = 0, rc = ft_engine_find_onnx(path, p, sizeof p, &n, 1);
        if (rc == FT_EFORMAT)
            return fmt_err(err, errcap, rc,
                           "%s: no backbone.safetensors and no .onnx file in this folder%s", path,
                           "");
        if (rc) return fmt_err(err, errcap, rc, "%s: %s", path, ft_strerror(rc));
        if (n != 1)
            return fmt_err(err, errcap, FT_EFORMAT,
                           "%s: %s .onnx files in this folder; name the one to load", path,
                           "several");
        path = p;
    }
    snprintf(e->source, sizeof e->source, "%s", path);
    snprintf(e->kind, sizeof e->kind, "onnx");
    char *data = NULL;
    size_t len = 0;
    uint64_t size = 0;
    int rc = ft_file_size(path, &size);
    if (!rc && size > ((uint64_t)4 << 30))
        return fmt_err(err, errcap, FT_ERANGE, "%s: %s larger than 4 GiB", path, "file is");
    if (!rc) rc = ft_read_file(path, &data, &len);
    if (rc) return fmt_err(err, errcap, rc, "%s: %s", path, ft_strerror(rc));
    rc = ir_load_onnx(&e->g, path, data, len, err, errcap);
    free(data);
    return rc;
}

/* ---- planning ---- */

static size_t per_sample(const ir_shape *s) {
    return (size_t)s->c * s->h * s->w;
}

static int upload(ft_engine *e, float **dst, const float *src, size_t n) {
    int rc = e->o->alloc(e->o, n * sizeof(float), (void **)dst);
    if (!rc) rc = e->o->upload(e->o, *dst, src, n * sizeof(float));
    return rc;
}

static int upload_weights(ft_engine *e) {
    for (int i = 0; i < e->g.n; i++) {
        const ir_step *s = &e->g.s[i];
        dstep *d = &e->d[i];
        const ir_shape *in = &e->g.v[s->in];
        int rc = 0;
        size_t c = (size_t)in->c;
        switch (s->kind) {
        case IR_CONV:
            rc = upload(e, &d->w, s->w, (size_t)s->k * in->c * s->r * s->r);
            if (!rc && s->b) {
                float *one = ir_alloc((size_t)s->k), *zero = ir_alloc((size_t)s->k);
                if (!one || !zero) rc = -ENOMEM;
                for (int j = 0; !rc && j < s->k; j++) one[j] = 1.0f;
                if (!rc) rc = upload(e, &d->b, s->b, (size_t)s->k);
                if (!rc) rc = upload(e, &d->one, one, (size_t)s->k);
                if (!rc) rc = upload(e, &d->zero, zero, (size_t)s->k);
                free(one), free(zero);
            }
            break;
        case IR_AFFINE:
            rc = upload(e, &d->gamma, s->gamma, c);
            if (!rc) rc = upload(e, &d->beta, s->beta, c);
            if (!rc) rc = upload(e, &d->mean, s->mean, c);
            if (!rc) rc = upload(e, &d->var, s->var, c);
            break;
        case IR_PRELU:
            rc = upload(e, &d->alpha, s->alpha, c);
            break;
        case IR_FC:
            rc = upload(e, &d->w, s->w, (size_t)s->k * in->c);
            if (!rc && s->b) rc = upload(e, &d->b, s->b, (size_t)s->k);
            break;
        default:
            break;
        }
        if (rc) return rc;
    }
    return 0;
}

/* buffers: liveness over storage values (ir_shape.base) */
static int assign_buffers(ft_engine *e) {
    ir_graph *g = &e->g;
    int *last = malloc((size_t)g->nv * sizeof(int)), *owner = malloc((size_t)g->nv * sizeof(int));
    int nfree = 0, *freel = malloc((size_t)(g->n * 2 + 4) * sizeof(int));
    if (!last || !owner || !freel) {
        free(last), free(owner), free(freel);
        return -ENOMEM;
    }
    for (int v = 0; v < g->nv; v++) last[v] = -1, owner[v] = -1;
    for (int i = 0; i < g->n; i++) {
        last[g->v[g->s[i].in].base] = i;
        if (g->s[i].kind == IR_ADD) last[g->v[g->s[i].in2].base] = i;
    }
    last[g->v[g->output].base] = g->n; /* lives to the end */
    e->nbuf = 0;
#define TAKE(dst)                                                                                  \
    do {                                                                                           \
        (dst) = nfree ? freel[--nfree] : e->nbuf++;                                                \
    } while (0)
    TAKE(owner[0]);
    e->in_buf = owner[0];
    for (int i = 0; i < g->n; i++) {
        ir_step *s = &g->s[i];
        dstep *d = &e->d[i];
        d->buf_in = owner[g->v[s->in].base];
        d->buf_in2 = s->kind == IR_ADD ? owner[g->v[s->in2].base] : -1;
        d->buf_tmp = -1;
        if (s->kind == IR_CONV && s->b) TAKE(d->buf_tmp);
        TAKE(owner[g->v[s->out].base]);
        d->buf_out = owner[g->v[s->out].base];
        if (d->buf_tmp >= 0) freel[nfree++] = d->buf_tmp;
        int ins[2] = {g->v[s->in].base, s->kind == IR_ADD ? g->v[s->in2].base : -1};
        for (int k = 0; k < 2; k++)
            if (ins[k] >= 0 && last[ins[k]] == i && !(k == 1 && ins[1] == ins[0]))
                freel[nfree++] = owner[ins[k]];
    }
#undef TAKE
    e->out_buf = owner[g->v[g->output].base];
    free(last), free(owner), free(freel);
    return 0;
}

static int plan(ft_engine *e) {
    ir_graph *g = &e->g;
    size_t mx = 0;
    for (int v = 0; v < g->nv; v++)
        if (per_sample(&g->v[v]) > mx) mx = per_sample(&g->v[v]);
    e->buf_floats = mx * (size_t)e->max_batch;
    int rc = assign_buffers(e);
    if (rc) return rc;
    if (!(e->buf = calloc((size_t)e->nbuf, sizeof(void *)))) return -ENOMEM;
    for (int i = 0; i < e->nbuf && !rc; i++)
        rc = e->o->alloc(e->o, e->buf_floats * sizeof(float), &e->buf[i]);
    for (int i = 0; i < g->n && !rc; i++) {
        const ir_step *s = &g->s[i];
        if (s->kind != IR_CONV) continue;
        const ir_shape *in = &g->v[s->in];
        for (int n = 1; n <= e->max_batch && !rc; n++) {
            ft_conv_desc cd;
            rc = ft_conv_desc_init(&cd, n, in->c, in->h, in->w, s->k, s->r, s->stride, s->pad);
            size_t b = rc ? 0 : e->o->conv_ws_bytes(e->o, &cd, FT_F32);
            if (b > e->ws_bytes) e->ws_bytes = b;
        }
    }
    if (!rc && e->ws_bytes) rc = e->o->alloc(e->o, e->ws_bytes, &e->ws);
    size_t in_floats = (size_t)e->max_batch * 3 * g->hw * g->hw;
    if (!rc) rc = e->o->alloc(e->o, in_floats * sizeof(float), (void **)&e->stage_in);
    if (!rc)
        rc = e->o->alloc(e->o, (size_t)e->max_batch * g->v[g->output].c * sizeof(float),
                         (void **)&e->stage_out);
    if (!rc) rc = upload_weights(e);
    return rc;
}

int ft_engine_open(ft_engine **out, const char *path, const ft_engine_opts *opts, char *err,
                   size_t errcap) {
    *out = NULL;
    ft_engine_opts def = {0};
    if (!opts) opts = &def;
    ft_engine *e = calloc(1, sizeof *e);
    if (!e) return fmt_err(err, errcap, -ENOMEM, "%s: %s", path, "out of memory");
    e->max_batch = opts->max_batch > 0 ? opts->max_batch : 32;
    if (e->max_batch > 4096) {
        free(e);
        return fmt_err(err, errcap, FT_EARG, "%s: %s", path, "max_batch above 4096");
    }
    int rc = load_graph(e, path, err, errcap);
    if (rc) {
        ft_engine_free(e);
        return rc;
    }
    e->dim = e->g.v[e->g.output].c;
    ft_ops_options oo;
    ft_ops_options_init(&oo);
    oo.threads = opts->threads;
    oo.inference = 1; /* weights are loaded once, before the first forward */
    char oerr[256];
    const char *dev = opts->device && *opts->device ? opts->device : "cpu";
    if ((rc = ft_ops_create(dev, &oo, &e->o, oerr, sizeof oerr))) {
        snprintf(err, errcap, "%s: device '%s': %s", e->source, dev, oerr);
        ft_engine_free(e);
        return rc;
    }
    if (!(e->d = calloc((size_t)(e->g.n ? e->g.n : 1), sizeof(dstep)))) rc = -ENOMEM;
    e->graphs = opts->graphs && e->o->graph_begin;
    if (!rc && e->graphs && !(e->slots = calloc((size_t)e->max_batch + 1, sizeof *e->slots)))
        rc = -ENOMEM;
    if (!rc) rc = plan(e);
    if (rc) {
        snprintf(err, errcap, "%s: cannot plan the model on '%s' (batch %d): %s", e->source, dev,
                 e->max_batch, ft_strerror(rc));
        ft_engine_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

/* ---- running ---- */

static int run_step(ft_engine *e, int i, int n) {
    ft_ops *o = e->o;
    const ir_step *s = &e->g.s[i];
    const dstep *d = &e->d[i];
    const ir_shape *in = &e->g.v[s->in];
    void *x = e->buf[d->buf_in], *y = e->buf[d->buf_out];
    int c = in->c, hw = in->h * in->w;
    switch (s->kind) {
    case IR_CONV: {
        ft_conv_desc cd;
        int rc = ft_conv_desc_init(&cd, n, in->c, in->h, in->w, s->k, s->r, s->stride, s->pad);
        if (rc) return rc;
        void *cy = d->buf_tmp >= 0 ? e->buf[d->buf_tmp] : y;
        if ((rc = o->conv_fwd(o, &cd, FT_F32, x, d->w, cy, e->ws))) return rc;
        if (d->buf_tmp < 0) return 0;
        return o->bn_fwd_eval(o, FT_F32, n, s->k, cd.oh * cd.ow, 0.0f, cy, d->one, d->b, d->zero,
                              d->one, y);
    }
    case IR_AFFINE:
        return o->bn_fwd_eval(o, FT_F32, n, c, in->flat ? 1 : hw, s->eps, x, d->gamma, d->beta,
                              d->mean, d->var, y);
    case IR_PRELU:
        return o->prelu_fwd(o, FT_F32, n, c, in->flat ? 1 : hw, x, d->alpha, y);
    case IR_ADD:
        return o->add(o, FT_F32, (size_t)n * per_sample(in), x, e->buf[d->buf_in2], y);
    case IR_FC:
        return o->fc_fwd(o, FT_F32, n, in->src_c, in->src_hw, s->k, x, d->w, d->b, (float *)y);
    default:
        return FT_EARG;
    }
}

/* the device part of a run: the staged input into the activation layout, every step, the
 * output back into the staging buffer (no wait for the device) */
static int device_run(ft_engine *e, int n, char *err, size_t errcap) {
    int hw = e->g.hw,
        rc = e->o->act_import(e->o, FT_F32, n, 3, hw * hw, e->stage_in, e->buf[e->in_buf]);
    for (int i = 0; i < e->g.n && !rc; i++)
        if ((rc = run_step(e, i, n))) {
            const ir_step *s = &e->g.s[i];
            if (s->node >= 0)
                snprintf(err, errcap, "%s: node %d '%s': %s", e->source, s->node, s->name,
                         ft_strerror(rc));
            else
                snprintf(err, errcap, "%s: %s: %s", e->source, s->name, ft_strerror(rc));
            return rc;
        }
    if (!rc) rc = e->o->act_export(e->o, FT_F32, n, e->dim, 1, e->buf[e->out_buf], e->stage_out);
    if (rc) snprintf(err, errcap, "%s: %s", e->source, ft_strerror(rc));
    return rc;
}

struct run_ctx {
    ft_engine *e;
    int n;
    char *err;
    size_t errcap;
};
static int device_run_cb(void *ctx) {
    struct run_ctx *c = ctx;
    return device_run(c->e, c->n, c->err, c->errcap);
}

int ft_engine_run(ft_engine *e, const float *x, int n, float *out, char *err, size_t errcap) {
    if (n < 1 || n > e->max_batch) {
        snprintf(err, errcap, "%s: batch %d outside 1..%d", e->source, n, e->max_batch);
        return FT_EARG;
    }
    if (e->g.fixed_batch > 0 && n != e->g.fixed_batch) {
        snprintf(err, errcap, "%s: %s reshapes to a fixed batch of %d; cannot run a batch of %d",
                 e->source, e->g.fixed_batch_at, e->g.fixed_batch, n);
        return FT_ENOTSUP;
    }
    /* host -> device staging (fp32 NCHW) -> the backend's activation layout, and back */
    int hw = e->g.hw;
    ft_ops *o = e->o;
    int rc = o->upload(o, e->stage_in, x, (size_t)n * 3 * hw * hw * sizeof(float)),
        how = FT_GRAPH_DIRECT;
    if (!rc && e->graphs) {
        /* each batch size its own slot: recorded at its second run, replayed after */
        struct run_ctx c = {e, n, err, errcap};
        uint64_t key = (uint64_t)n;
        rc = ft_graph_run(o, &e->slots[n], &key, 1, device_run_cb, &c, &how);
        if (rc && how == FT_GRAPH_FAILED)
            snprintf(err, errcap, "%s: batch %d: its CUDA graph: %s", e->source, n,
                     ft_strerror(rc));
        if (rc) return rc; /* else device_run wrote err */
    } else if (!rc) {
        if ((rc = device_run(e, n, err, errcap))) return rc;
    }
    if (!rc) rc = o->download(o, out, e->stage_out, (size_t)n * e->dim * sizeof(float));
    if (rc) snprintf(err, errcap, "%s: %s", e->source, ft_strerror(rc));
    return rc;
}

void ft_engine_graph_stats(const ft_engine *e, int64_t *replays, int *recorded) {
    /* the runs done by a launch: the one after each recording, and the replays */
    int64_t launches = 0, made = 0;
    for (int n = 0; e->slots && n <= e->max_batch; n++)
        launches += e->slots[n].recorded + e->slots[n].replayed, made += e->slots[n].recorded;
    *replays = launches, *recorded = (int)made;
}

/* ---- queries ---- */

int ft_engine_dim(const ft_engine *e) {
    return e->dim;
}
int ft_engine_input_hw(const ft_engine *e) {
    return e->g.hw;
}
int ft_engine_max_batch(const ft_engine *e) {
    return e->max_batch;
}
int ft_engine_normalizes(const ft_engine *e) {
    return e->g.normalizes;
}
const char *ft_engine_source(const ft_engine *e) {
    return e->source;
}
const char *ft_engine_kind(const ft_engine *e) {
    return e->kind;
}
int ft_engine_steps(const ft_engine *e) {
    return e->g.n;
}

void ft_engine_free(ft_engine *e) {
    if (!e) return;
    if (e->o) {
        for (int i = 0; e->d && i < e->g.n; i++) {
            dstep *d = &e->d[i];
            float *p[] = {d->w,   d->b,     d->gamma, d->beta, d->mean,
                          d->var, d->alpha, d->one,   d->zero};
            for (size_t k = 0; k < sizeof p / sizeof p[0]; k++) e->o->free(e->o, p[k]);
        }
        for (int i = 0; e->buf && i < e->nbuf; i++) e->o->free(e->o, e->buf[i]);
        e->o->free(e->o, e->ws);
        e->o->free(e->o, e->stage_in);
        e->o->free(e->o, e->stage_out);
        for (int n = 0; e->slots && n <= e->max_batch; n++) ft_graph_slot_drop(e->o, &e->slots[n]);
        ft_ops_free(e->o);
    }
    free(e->slots);
    free(e->buf);
    free(e->d);
    ir_free(&e->g);
    free(e);
}
