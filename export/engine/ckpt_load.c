/* ckpt_load.c: an ft-train checkpoint folder (backbone.safetensors) -> the engine's graph.
 *
 * The architecture is read from the tensors themselves (conv1.weight gives the width, the
 * layer<i>.<j> prefixes the blocks per stage, fc.weight the embedding size) and checked against
 * the "architecture" entry ft-train records in the file's metadata ("network r50, width 64,
 * blocks (3, 4, 14, 3), emb 512") when there is one. Every tensor the model needs must be
 * there as F32 with its PyTorch shape, and the file must hold no other (num_batches_tracked
 * aside): a checkpoint of something else is refused naming the first tensor that differs.
 * The graph is the eval-mode IResNet of train/model/iresnet.h, batch norm on running stats. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "ft_common.h"
#include "ir.h"
#include "safetensors.h"

#define CK_IMG 112

typedef struct ck {
    const char *path;
    const ft_st_file *f;
    ir_graph *g;
    char *err;
    size_t errcap;
    unsigned char *used; /* per tensor of f */
} ck;

static int ck_fail(ck *c, int rc, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errcap, "%s: %s", c->path, msg);
    return rc;
}

/* tensor name (printf-style) as F32 of exactly the shape dims[0..nd); a copy in *out */
static int take(ck *c, float **out, int nd, const int64_t *dims, const char *fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const ft_st_tensor *t = ft_st_find(c->f, name);
    if (!t)
        return ck_fail(c, FT_EFORMAT, "tensor '%s' is missing (not an IResNet backbone?)", name);
    int ok = t->dtype == FT_ST_F32 && t->ndim == nd;
    for (int i = 0; ok && i < nd; i++) ok = t->shape[i] == dims[i];
    if (!ok) {
        char want[96] = "", have[96] = "";
        size_t a = 0, b = 0;
        for (int i = 0; i < nd; i++)
            a += (size_t)snprintf(want + a, sizeof want - a, "%s%lld", i ? ", " : "",
                                  (long long)dims[i]);
        for (int i = 0; i < t->ndim && b < sizeof have; i++)
            b += (size_t)snprintf(have + b, sizeof have - b, "%s%lld", i ? ", " : "",
                                  (long long)t->shape[i]);
        return ck_fail(c, FT_EFORMAT, "tensor '%s' is %s [%s], the architecture needs F32 [%s]",
                       name, ft_st_dtype_name(t->dtype), have, want);
    }
    size_t n = ft_st_numel(t);
    float *v = ir_alloc(n);
    if (!v) return ck_fail(c, -ENOMEM, "out of memory");
    memcpy(v, t->data, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            double bad = v[i];
            free(v);
            return ck_fail(c, FT_ENONFINITE, "tensor '%s' holds %g at %zu", name, bad, i);
        }
    c->used[t - c->f->t] = 1;
    *out = v;
    return 0;
}

static ir_step *ck_step(ck *c, int kind, const char *name) {
    ir_step *s = ir_add_step(c->g);
    if (s) {
        s->kind = kind;
        snprintf(s->name, sizeof s->name, "%s", name);
    }
    return s;
}

static int new_val(ck *c, ir_shape s, int *id) {
    s.base = -1;
    if ((*id = ir_add_value(c->g, s)) < 0) return ck_fail(c, -ENOMEM, "out of memory");
    return 0;
}

/* BatchNorm "<p>" over value in (channels ch) -> *out */
static int bn(ck *c, const char *p, int in, int *out) {
    ir_shape s = c->g->v[in];
    int64_t d = s.c;
    ir_step *st = ck_step(c, IR_AFFINE, p);
    if (!st) return ck_fail(c, -ENOMEM, "out of memory");
    st->in = in, st->eps = 1e-5f;
    int rc = take(c, &st->gamma, 1, &d, "%s.weight", p);
    if (!rc) rc = take(c, &st->beta, 1, &d, "%s.bias", p);
    if (!rc) rc = take(c, &st->mean, 1, &d, "%s.running_mean", p);
    if (!rc) rc = take(c, &st->var, 1, &d, "%s.running_var", p);
    for (int i = 0; !rc && i < s.c; i++)
        if (!(st->var[i] >= 0.0f))
            rc = ck_fail(c, FT_ERANGE, "tensor '%s.running_var' is negative at %d", p, i);
    char nbt[128];
    snprintf(nbt, sizeof nbt, "%s.num_batches_tracked", p);
    const ft_st_tensor *t = ft_st_find(c->f, nbt);
    if (t) c->used[t - c->f->t] = 1;
    if (!rc) rc = new_val(c, s, &st->out);
    *out = st->out;
    return rc;
}

static int conv(ck *c, const char *name, int in, int k, int r, int stride, int pad, int *out) {
    ir_shape s = c->g->v[in];
    ir_step *st = ck_step(c, IR_CONV, name);
    if (!st) return ck_fail(c, -ENOMEM, "out of memory");
    st->in = in, st->k = k, st->r = r, st->stride = stride, st->pad = pad;
    int64_t d[4] = {k, s.c, r, r};
    int rc = take(c, &st->w, 4, d, "%s.weight", name);
    int oh = (s.h + 2 * pad - r) / stride + 1, ow = (s.w + 2 * pad - r) / stride + 1;
    ir_shape o = {k, oh, ow, 0, k, oh * ow, -1};
    if (!rc) rc = new_val(c, o, &st->out);
    *out = st->out;
    return rc;
}

static int prelu(ck *c, const char *name, int in, int *out) {
    ir_shape s = c->g->v[in];
    int64_t d = s.c;
    ir_step *st = ck_step(c, IR_PRELU, name);
    if (!st) return ck_fail(c, -ENOMEM, "out of memory");
    st->in = in;
    int rc = take(c, &st->alpha, 1, &d, "%s.weight", name);
    if (!rc) rc = new_val(c, s, &st->out);
    *out = st->out;
    return rc;
}

static int block(ck *c, const char *p, int x, int cout, int stride, int *out) {
    char n[96];
    int v, sc, rc;
#define NM(suffix) (snprintf(n, sizeof n, "%s.%s", p, suffix), n)
    if ((rc = bn(c, NM("bn1"), x, &v)) || (rc = conv(c, NM("conv1"), v, cout, 3, 1, 1, &v)) ||
        (rc = bn(c, NM("bn2"), v, &v)) || (rc = prelu(c, NM("prelu"), v, &v)) ||
        (rc = conv(c, NM("conv2"), v, cout, 3, stride, 1, &v)) || (rc = bn(c, NM("bn3"), v, &v)))
        return rc;
    sc = x;
    if (stride != 1 || c->g->v[x].c != cout) {
        if ((rc = conv(c, NM("downsample.0"), x, cout, 1, stride, 0, &sc)) ||
            (rc = bn(c, NM("downsample.1"), sc, &sc)))
            return rc;
    }
#undef NM
    ir_step *st = ck_step(c, IR_ADD, p);
    if (!st) return ck_fail(c, -ENOMEM, "out of memory");
    st->in = v, st->in2 = sc;
    if ((rc = new_val(c, c->g->v[v], &st->out))) return rc;
    *out = st->out;
    return 0;
}

/* the recorded architecture, when present, must agree with the tensors */
static int check_arch(ck *c, int width, const int *blocks, int emb) {
    const char *a = ft_st_meta(c->f, "architecture");
    if (!a) return 0;
    const char *p = strstr(a, "width ");
    int w, b[4], e;
    if (!p || sscanf(p, "width %d, blocks (%d, %d, %d, %d), emb %d", &w, &b[0], &b[1], &b[2], &b[3],
                     &e) != 6)
        return ck_fail(c, FT_EFORMAT, "metadata 'architecture' = '%s' does not parse", a);
    if (w != width || e != emb || memcmp(b, blocks, sizeof b) != 0)
        return ck_fail(c, FT_EFORMAT,
                       "metadata 'architecture' = '%s' but the tensors are width %d, blocks "
                       "(%d, %d, %d, %d), emb %d",
                       a, width, blocks[0], blocks[1], blocks[2], blocks[3], emb);
    return 0;
}

int ir_load_ckpt(ir_graph *g, const char *dir, char *err, size_t errcap) {
    char path[PATH_MAX];
    if (ft_path_join(path, sizeof path, dir, FT_CKPT_BACKBONE)) {
        snprintf(err, errcap, "%s: path too long", dir);
        return FT_ERANGE;
    }
    ft_st_file f = {0};
    char serr[FT_ST_ERRCAP];
    int rc = ft_st_read(path, &f, serr, sizeof serr);
    if (rc) {
        snprintf(err, errcap, "%s", serr);
        return rc;
    }
    ck c = {path, &f, g, err, errcap, calloc((size_t)f.n + 1, 1)};
    if (!c.used) {
        ft_st_free(&f);
        snprintf(err, errcap, "%s: out of memory", path);
        return -ENOMEM;
    }
    const ft_st_tensor *c1 = ft_st_find(&f, "conv1.weight"), *fc = ft_st_find(&f, "fc.weight");
    int width = 0, blocks[4] = {0}, emb = 0;
    if (!c1 || c1->ndim != 4 || c1->shape[0] < 1 || c1->shape[0] > 4096 || c1->shape[1] != 3) {
        rc = ck_fail(&c, FT_EFORMAT,
                     "tensor 'conv1.weight' is missing or not [W, 3, 3, 3] "
                     "(not an IResNet backbone?)");
        goto out;
    }
    width = (int)c1->shape[0];
    if (!fc || fc->ndim != 2 || fc->shape[0] < 1 || fc->shape[0] > IR_MAX_CHANNELS) {
        rc = ck_fail(&c, FT_EFORMAT, "tensor 'fc.weight' is missing or not [emb, 8W*49]");
        goto out;
    }
    emb = (int)fc->shape[0];
    for (int i = 0; i < 4; i++) {
        char n[64];
        for (;;) {
            snprintf(n, sizeof n, "layer%d.%d.bn1.weight", i + 1, blocks[i]);
            if (!ft_st_find(&f, n) || blocks[i] >= 1024) break;
            blocks[i]++;
        }
        if (!blocks[i]) {
            rc = ck_fail(&c, FT_EFORMAT, "no block in layer%d (tensor 'layer%d.0.bn1.weight')",
                         i + 1, i + 1);
            goto out;
        }
    }
    if ((rc = check_arch(&c, width, blocks, emb))) goto out;
    g->hw = CK_IMG;
    ir_shape in = {3, CK_IMG, CK_IMG, 0, 3, CK_IMG * CK_IMG, -1};
    int v;
    if ((rc = new_val(&c, in, &v))) goto out;
    if ((rc = conv(&c, "conv1", v, width, 3, 1, 1, &v)) || (rc = bn(&c, "bn1", v, &v)) ||
        (rc = prelu(&c, "prelu", v, &v)))
        goto out;
    for (int i = 0; i < 4 && !rc; i++)
        for (int j = 0; j < blocks[i] && !rc; j++) {
            char p[32];
            snprintf(p, sizeof p, "layer%d.%d", i + 1, j);
            rc = block(&c, p, v, width << i, j == 0 ? 2 : 1, &v);
        }
    if (rc || (rc = bn(&c, "bn2", v, &v))) goto out;
    ir_shape m = g->v[v];
    ir_shape fl = {m.c * m.h * m.w, 1, 1, 1, m.c, m.h * m.w, g->v[v].base};
    if ((v = ir_add_value(g, fl)) < 0) {
        rc = ck_fail(&c, -ENOMEM, "out of memory");
        goto out;
    }
    ir_step *st = ck_step(&c, IR_FC, "fc");
    if (!st) {
        rc = ck_fail(&c, -ENOMEM, "out of memory");
        goto out;
    }
    st->in = v, st->k = emb;
    int64_t wd[2] = {emb, fl.c}, bd = emb;
    if ((rc = take(&c, &st->w, 2, wd, "fc.weight")) || (rc = take(&c, &st->b, 1, &bd, "fc.bias")))
        goto out;
    ir_shape e = {emb, 1, 1, 1, emb, 1, -1};
    if ((rc = new_val(&c, e, &st->out)) || (rc = bn(&c, "features", st->out, &v))) goto out;
    g->output = v;
    for (int i = 0; i < f.n; i++)
        if (!c.used[i]) {
            rc = ck_fail(&c, FT_EFORMAT,
                         "tensor '%s' is not part of the IResNet (width %d, blocks (%d, %d, %d, "
                         "%d), emb %d) its other tensors describe",
                         f.t[i].name, width, blocks[0], blocks[1], blocks[2], blocks[3], emb);
            break;
        }
out:
    free(c.used);
    ft_st_free(&f);
    return rc;
}
