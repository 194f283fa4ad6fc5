/* graph.c: IResNet checkpoint -> ONNX ModelProto through protobuf-c (see graph.h).
 *
 * Every message, string and converted buffer of one build comes from a pool freed at the
 * end; fp32 initializers that need no change point into the safetensors buffer. The model is
 * serialized straight into the temporary file by protobuf-c (no second copy in memory).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h" // defines: ft_ckpt_schema
#include "ft_common.h"  // defines: status codes, FT_VERSION_STRING, file helpers
#include "graph.h"
#include "kmath.h" // defines: ft_km_f32_to_f16
#include "onnx/onnx.pb-c.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "raw_data is written from host floats: a little-endian host is assumed"
#endif

#define IMG 112

/* ---------------------------------------------------------------- architecture */

int ft_graph_arch_parse(const char *s, int *depth, ft_iresnet_config *cfg) {
    int d, w, b[4], e, n = -1;
    if (sscanf(s, "network r%d, width %d, blocks (%d, %d, %d, %d), emb %d%n", &d, &w, &b[0], &b[1],
               &b[2], &b[3], &e, &n) != 7 ||
        n < 0 || s[n] != '\0')
        return FT_EFORMAT;
    if (ft_iresnet_config_init(cfg, d)) return FT_EARG;
    if (w < 1 || w > 4096 || e < 1 || e > 65536) return FT_EARG;
    for (int i = 0; i < 4; i++) {
        if (b[i] < 1 || b[i] > 1000) return FT_EARG;
        cfg->blocks[i] = b[i];
    }
    cfg->width = w, cfg->emb = e;
    *depth = d;
    return 0;
}

int ft_graph_arch_format(char *out, size_t cap, int depth, const ft_iresnet_config *cfg) {
    int n = snprintf(out, cap, "network r%d, width %d, blocks (%d, %d, %d, %d), emb %d", depth,
                     cfg->width, cfg->blocks[0], cfg->blocks[1], cfg->blocks[2], cfg->blocks[3],
                     cfg->emb);
    return n < 0 || (size_t)n >= cap ? FT_ERANGE : 0;
}

/* ---------------------------------------------------------------- checkpoint */

int ft_graph_ckpt_open(ft_graph_ckpt *c, const char *dir, char *err, size_t errcap) {
    memset(c, 0, sizeof *c);
    c->global_step = -1;
    if (!ft_is_dir(dir)) {
        int missing = access(dir, F_OK) != 0;
        snprintf(err, errcap, "%s: %s", dir,
                 missing ? "no such checkpoint folder"
                         : "not a folder (give the checkpoint folder)");
        return missing ? -ENOENT : FT_EARG;
    }
    if (ft_path_join(c->path, sizeof c->path, dir, FT_CKPT_BACKBONE)) {
        snprintf(err, errcap, "%s: path too long", dir);
        return FT_ERANGE;
    }
    int rc = ft_st_read(c->path, &c->st, err, errcap);
    if (rc) return rc;
    int schema;
    if ((rc = ft_ckpt_schema(&c->st, c->path, &schema, err, errcap))) goto fail;
    const char *a = ft_st_meta(&c->st, "architecture");
    if (!a) {
        snprintf(err, errcap,
                 "%s: no architecture recorded (__metadata__ 'architecture'); ft-train writes "
                 "it with every checkpoint",
                 c->path);
        rc = FT_EFORMAT;
        goto fail;
    }
    snprintf(c->arch, sizeof c->arch, "%s", a);
    if ((rc = ft_graph_arch_parse(a, &c->depth, &c->cfg))) {
        snprintf(err, errcap,
                 "%s: unknown architecture '%s' (facetrain exports IResNet r18 r34 r50 r100 r200 "
                 "as ft-train records them)",
                 c->path, a);
        goto fail;
    }
    const char *gs = ft_st_meta(&c->st, "global_step");
    if (gs && ft_parse_i64(gs, 0, INT64_MAX, &c->global_step)) {
        snprintf(err, errcap, "%s: metadata 'global_step' is '%s', not a step", c->path, gs);
        rc = FT_EFORMAT;
        goto fail;
    }
    const char *dt = ft_st_meta(&c->st, "dtype");
    snprintf(c->train_dtype, sizeof c->train_dtype, "%s", dt ? dt : "");
    return 0;
fail:
    ft_st_free(&c->st);
    return rc;
}

void ft_graph_ckpt_close(ft_graph_ckpt *c) {
    ft_st_free(&c->st);
    memset(&c->st, 0, sizeof c->st);
}

void ft_graph_opts_init(ft_graph_opts *o) {
    o->opset = FT_GRAPH_OPSET_DEFAULT;
    o->fold_bn = 0;
    o->fp16 = 0;
}

/* ---------------------------------------------------------------- builder */

typedef struct gb {
    const ft_graph_ckpt *ck;
    const ft_graph_opts *o;
    void **pool;
    size_t npool, cappool;
    Onnx__NodeProto **node;
    size_t nnode, capnode;
    Onnx__TensorProto **init;
    size_t ninit, capinit;
    unsigned char *used; /* per tensor of the checkpoint */
    int64_t params;
    int rc;
    char *err;
    size_t errcap;
} gb;

static int fail(gb *g, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(gb *g, int rc, const char *fmt, ...) {
    if (g->rc) return g->rc; /* keep the first reason */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, g->errcap, fmt, ap);
    va_end(ap);
    g->rc = rc;
    return rc;
}

static void *grow(gb *g, void *arr, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return arr;
    size_t nc = *cap ? *cap * 2 : 64;
    void *p = realloc(arr, nc * elem);
    if (!p) {
        fail(g, -ENOMEM, "out of memory");
        return NULL;
    }
    *cap = nc;
    return p;
}

/* zeroed memory owned by the pool; NULL (g->rc set) when out of memory */
static void *gb_alloc(gb *g, size_t bytes) {
    if (g->rc) return NULL;
    void **np = grow(g, g->pool, &g->cappool, g->npool, sizeof *g->pool);
    if (!np) return NULL;
    g->pool = np;
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        fail(g, -ENOMEM, "out of memory");
        return NULL;
    }
    g->pool[g->npool++] = p;
    return p;
}

static char *gb_str(gb *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *gb_str(gb *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : gb_alloc(g, (size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void gb_free(gb *g) {
    for (size_t i = 0; i < g->npool; i++) free(g->pool[i]);
    free(g->pool);
    free(g->node);
    free(g->init);
    free(g->used);
}

/* ---- checkpoint tensors ---- */

static void shape_str(char *out, size_t cap, int ndim, const int64_t *shape) {
    size_t k = 0;
    k += (size_t)snprintf(out + k, cap - k, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(out + k, cap - k, "]");
}

/* Tensor `name` as float32 of exactly that shape, finite (and >= 0 for running_var), marked
 * used; aligned for float access (a copy in the pool when the file's bytes are not). */
static const float *want(gb *g, const char *name, int ndim, const int64_t *shape) {
    if (g->rc) return NULL;
    const ft_st_file *f = &g->ck->st;
    const ft_st_tensor *t = ft_st_find(f, name);
    char want_s[96], have_s[96];
    shape_str(want_s, sizeof want_s, ndim, shape);
    if (!t) {
        fail(g, FT_EFORMAT, "%s: tensor '%s' %s is missing (architecture %s)", g->ck->path, name,
             want_s, g->ck->arch);
        return NULL;
    }
    int same = t->dtype == FT_ST_F32 && t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        shape_str(have_s, sizeof have_s, t->ndim, t->shape);
        fail(g, FT_EFORMAT, "%s: tensor '%s' is %s %s, architecture %s needs F32 %s", g->ck->path,
             name, ft_st_dtype_name(t->dtype), have_s, g->ck->arch, want_s);
        return NULL;
    }
    g->used[t - f->t] = 1;
    size_t n = ft_st_numel(t);
    const float *p = t->data;
    if ((uintptr_t)p % _Alignof(float)) {
        float *c = gb_alloc(g, n * sizeof(float));
        if (!c) return NULL;
        memcpy(c, t->data, n * sizeof(float));
        p = c;
    }
    int is_var = strstr(name, "running_var") != NULL;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(p[i])) {
            fail(g, FT_ENONFINITE,
                 "%s: tensor '%s' holds %s (element %zu): the checkpoint is damaged or was "
                 "saved from a diverged run",
                 g->ck->path, name, isnan(p[i]) ? "nan" : "inf", i);
            return NULL;
        }
        if (is_var && p[i] < 0) {
            fail(g, FT_ERANGE, "%s: tensor '%s' holds a negative variance %g (element %zu)",
                 g->ck->path, name, (double)p[i], i);
            return NULL;
        }
    }
    return p;
}

/* Every tensor of the file was used, or is a BN counter. */
static int check_all_used(gb *g) {
    const ft_st_file *f = &g->ck->st;
    for (int i = 0; i < f->n && !g->rc; i++) {
        const ft_st_tensor *t = &f->t[i];
        size_t len = strlen(t->name), k = strlen(".num_batches_tracked");
        int counter = len > k && !strcmp(t->name + len - k, ".num_batches_tracked") &&
                      t->dtype == FT_ST_I64 && t->ndim == 0;
        if (!g->used[i] && !counter)
            fail(g, FT_EFORMAT, "%s: tensor '%s' is not part of architecture %s", g->ck->path,
                 t->name, g->ck->arch);
    }
    return g->rc;
}

/* ---- messages ---- */

static int fp16_of(gb *g, const char *name, const float *x, size_t n, uint16_t *h) {
    for (size_t i = 0; i < n; i++) {
        h[i] = ft_km_f32_to_f16(x[i]);
        if ((h[i] & 0x7c00u) == 0x7c00u)
            return fail(g, FT_ERANGE,
                        "%s: tensor '%s' element %zu = %g does not fit float16 (|x| <= 65504): "
                        "export it without --fp16",
                        g->ck->path, name, i, (double)x[i]);
    }
    return 0;
}

/* An initializer of the graph's float type from fp32 host data (kept by pointer in fp32: the
 * data must outlive the build). Returns its name. */
static const char *initializer(gb *g, const char *name, int ndim, const int64_t *dims,
                               const float *data) {
    if (g->rc) return NULL;
    Onnx__TensorProto *t = gb_alloc(g, sizeof *t);
    int64_t *d = gb_alloc(g, (size_t)(ndim ? ndim : 1) * sizeof *d);
    char *nm = gb_str(g, "%s", name);
    Onnx__TensorProto **ni = grow(g, g->init, &g->capinit, g->ninit, sizeof *g->init);
    if (!t || !d || !nm || !ni) return NULL;
    g->init = ni;
    onnx__tensor_proto__init(t);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) d[i] = dims[i], n *= (size_t)dims[i];
    t->n_dims = (size_t)ndim, t->dims = d;
    t->has_data_type = 1;
    t->name = nm;
    t->has_raw_data = 1;
    if (g->o->fp16) {
        uint16_t *h = gb_alloc(g, n * sizeof *h);
        if (!h || fp16_of(g, name, data, n, h)) return NULL;
        t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16;
        t->raw_data.data = (uint8_t *)h, t->raw_data.len = n * sizeof *h;
    } else {
        t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
        t->raw_data.data = (uint8_t *)data, t->raw_data.len = n * sizeof(float);
    }
    g->init[g->ninit++] = t;
    g->params += (int64_t)n;
    return nm;
}

/* A node "<scope>/<op>" with one output "<scope>/<op>_output_0" (or out when given). */
static Onnx__NodeProto *node(gb *g, const char *op, const char *scope, const char *out, int nin,
                             const char *const *in) {
    if (g->rc) return NULL;
    Onnx__NodeProto *n = gb_alloc(g, sizeof *n);
    char **ins = gb_alloc(g, (size_t)nin * sizeof *ins);
    char **outs = gb_alloc(g, sizeof *outs);
    Onnx__NodeProto **nn = grow(g, g->node, &g->capnode, g->nnode, sizeof *g->node);
    if (!n || !ins || !outs || !nn) return NULL;
    g->node = nn;
    onnx__node_proto__init(n);
    for (int i = 0; i < nin; i++)
        if (!in[i] || !(ins[i] = gb_str(g, "%s", in[i]))) return NULL;
    n->n_input = (size_t)nin, n->input = ins;
    n->name = gb_str(g, "%s/%s", scope, op);
    n->op_type = gb_str(g, "%s", op);
    outs[0] = out ? gb_str(g, "%s", out) : gb_str(g, "%s/%s_output_0", scope, op);
    if (!n->name || !n->op_type || !outs[0]) return NULL;
    n->n_output = 1, n->output = outs;
    g->node[g->nnode++] = n;
    return n;
}

static Onnx__AttributeProto *attr(gb *g, Onnx__NodeProto *n, const char *name) {
    if (!n) return NULL;
    Onnx__AttributeProto *a = gb_alloc(g, sizeof *a);
    Onnx__AttributeProto **list =
        gb_alloc(g, (n->n_attribute + 1) * sizeof *list); /* a handful per node */
    if (!a || !list) return NULL;
    onnx__attribute_proto__init(a);
    if (!(a->name = gb_str(g, "%s", name))) return NULL;
    for (size_t i = 0; i < n->n_attribute; i++) list[i] = n->attribute[i];
    list[n->n_attribute++] = a;
    n->attribute = list;
    a->has_type = 1;
    return a;
}
static void attr_int(gb *g, Onnx__NodeProto *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = attr(g, n, name);
    if (!a) return;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1, a->i = v;
}
static void attr_float(gb *g, Onnx__NodeProto *n, const char *name, float v) {
    Onnx__AttributeProto *a = attr(g, n, name);
    if (!a) return;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1, a->f = v;
}
static void attr_ints(gb *g, Onnx__NodeProto *n, const char *name, int k, int64_t v) {
    Onnx__AttributeProto *a = attr(g, n, name);
    int64_t *vals = a ? gb_alloc(g, (size_t)k * sizeof *vals) : NULL;
    if (!vals) return;
    for (int i = 0; i < k; i++) vals[i] = v;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = (size_t)k, a->ints = vals;
}

static const char *out0(const Onnx__NodeProto *n) {
    return n ? n->output[0] : NULL;
}

/* ---- layers ---- */

static const char *bn(gb *g, const char *x, const char *prefix, const char *scope, int c) {
    int64_t sh[1] = {c};
    const char *leaf[4] = {"weight", "bias", "running_mean", "running_var"};
    const char *in[5] = {x};
    for (int i = 0; i < 4; i++) {
        char name[160];
        snprintf(name, sizeof name, "%s.%s", prefix, leaf[i]);
        in[1 + i] = initializer(g, name, 1, sh, want(g, name, 1, sh));
    }
    Onnx__NodeProto *n = node(g, "BatchNormalization", scope, NULL, 5, in);
    attr_float(g, n, "epsilon", g->ck->cfg.bn_eps);
    attr_float(g, n, "momentum", 1.0f - g->ck->cfg.bn_momentum);
    return out0(n);
}

/* conv <prefix> (no bias in the checkpoint), then its BN <bn_prefix>: a BatchNormalization
 * node, or folded into the conv with fold_bn */
static const char *conv_bn(gb *g, const char *x, const char *prefix, const char *scope,
                           const char *bn_prefix, const char *bn_scope, int cin, int cout, int k,
                           int stride, int pad) {
    char name[160], bname[160];
    int64_t sh[4] = {cout, cin, k, k}, csh[1] = {cout};
    snprintf(name, sizeof name, "%s.weight", prefix);
    const float *w = want(g, name, 4, sh);
    const char *in[3] = {x, NULL, NULL};
    int nin = 2;
    if (!g->o->fold_bn) {
        in[1] = initializer(g, name, 4, sh, w);
    } else {
        const float *p[4];
        const char *leaf[4] = {"weight", "bias", "running_mean", "running_var"};
        for (int i = 0; i < 4; i++) {
            snprintf(bname, sizeof bname, "%s.%s", bn_prefix, leaf[i]);
            p[i] = want(g, bname, 1, csh);
        }
        size_t per = (size_t)cin * k * k;
        float *fw = gb_alloc(g, (size_t)cout * per * sizeof *fw);
        float *fb = gb_alloc(g, (size_t)cout * sizeof *fb);
        if (!fw || !fb || g->rc) return NULL;
        for (int o = 0; o < cout; o++) {
            double s = (double)p[0][o] / sqrt((double)p[3][o] + (double)g->ck->cfg.bn_eps);
            for (size_t j = 0; j < per; j++) fw[o * per + j] = (float)((double)w[o * per + j] * s);
            fb[o] = (float)((double)p[1][o] - (double)p[2][o] * s);
        }
        snprintf(name, sizeof name, "%s.weight_folded", prefix);
        in[1] = initializer(g, name, 4, sh, fw);
        snprintf(name, sizeof name, "%s.bias_folded", prefix);
        in[2] = initializer(g, name, 1, csh, fb);
        nin = 3;
    }
    Onnx__NodeProto *n = node(g, "Conv", scope, NULL, nin, in);
    attr_ints(g, n, "dilations", 2, 1);
    attr_int(g, n, "group", 1);
    attr_ints(g, n, "kernel_shape", 2, k);
    attr_ints(g, n, "pads", 4, pad);
    attr_ints(g, n, "strides", 2, stride);
    if (g->o->fold_bn) return out0(n);
    return bn(g, out0(n), bn_prefix, bn_scope, cout);
}

static const char *prelu(gb *g, const char *x, const char *prefix, const char *scope, int c) {
    char name[160];
    snprintf(name, sizeof name, "%s.weight", prefix);
    int64_t sh[1] = {c}, sh3[3] = {c, 1, 1};
    const char *in[2] = {x, initializer(g, name, 3, sh3, want(g, name, 1, sh))};
    return out0(node(g, "PRelu", scope, NULL, 2, in));
}

/* IBasicBlock layer<s>.<j>: cin -> cout, stride 2 and a downsample in the first of a stage */
static const char *block(gb *g, const char *x, int s, int j, int cin, int cout) {
    char p[64], sc[96], q[96], qs[128], b[96], bs[128];
    snprintf(p, sizeof p, "layer%d.%d", s + 1, j);
    snprintf(sc, sizeof sc, "/layer%d/%s", s + 1, p);
    int stride = j == 0 ? 2 : 1;
#define SUB(dst, dsts, name)                                                                       \
    snprintf(dst, sizeof dst, "%s." name, p), snprintf(dsts, sizeof dsts, "%s/" name, sc)
    SUB(q, qs, "bn1");
    const char *y = bn(g, x, q, qs, cin);
    SUB(q, qs, "conv1");
    SUB(b, bs, "bn2");
    y = conv_bn(g, y, q, qs, b, bs, cin, cout, 3, 1, 1);
    SUB(q, qs, "prelu");
    y = prelu(g, y, q, qs, cout);
    SUB(q, qs, "conv2");
    SUB(b, bs, "bn3");
    y = conv_bn(g, y, q, qs, b, bs, cout, cout, 3, stride, 1);
    const char *sc_in = x;
    if (j == 0) {
        snprintf(q, sizeof q, "%s.downsample.0", p);
        snprintf(qs, sizeof qs, "%s/downsample/downsample.0", sc);
        snprintf(b, sizeof b, "%s.downsample.1", p);
        snprintf(bs, sizeof bs, "%s/downsample/downsample.1", sc);
        sc_in = conv_bn(g, x, q, qs, b, bs, cin, cout, 1, 2, 0);
    }
#undef SUB
    const char *in[2] = {y, sc_in};
    return out0(node(g, "Add", sc, NULL, 2, in));
}

static Onnx__ValueInfoProto *value_info(gb *g, const char *name, int elem, int ndim,
                                        const int64_t *dims) {
    Onnx__ValueInfoProto *v = gb_alloc(g, sizeof *v);
    Onnx__TypeProto *tp = gb_alloc(g, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = gb_alloc(g, sizeof *tt);
    Onnx__TensorShapeProto *sh = gb_alloc(g, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dd = gb_alloc(g, (size_t)ndim * sizeof *dd);
    if (!v || !tp || !tt || !sh || !dd) return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i < ndim; i++) {
        Onnx__TensorShapeProto__Dimension *d = gb_alloc(g, sizeof *d);
        if (!d) return NULL;
        onnx__tensor_shape_proto__dimension__init(d);
        if (dims[i] < 0) { /* the symbolic batch */
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = gb_str(g, "None");
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        dd[i] = d;
    }
    sh->n_dim = (size_t)ndim, sh->dim = dd;
    tt->has_elem_type = 1, tt->elem_type = elem, tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, tp->tensor_type = tt;
    v->name = gb_str(g, "%s", name), v->type = tp;
    return v->name ? v : NULL;
}

static const char *cast(gb *g, const char *x, const char *scope, const char *out, int to) {
    const char *in[1] = {x};
    Onnx__NodeProto *n = node(g, "Cast", scope, out, 1, in);
    attr_int(g, n, "to", to);
    return out0(n);
}

#define OUT_NAME "embedding"

/* The nodes and initializers of the whole network; the graph's output value is OUT_NAME. */
static void build_nodes(gb *g) {
    const ft_iresnet_config *c = &g->ck->cfg;
    int w = c->width;
    const char *x = "data";
    if (g->o->fp16) x = cast(g, x, "/data", NULL, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16);
    x = conv_bn(g, x, "conv1", "/conv1", "bn1", "/bn1", 3, w, 3, 1, 1);
    x = prelu(g, x, "prelu", "/prelu", w);
    int cin = w;
    for (int s = 0; s < 4; s++)
        for (int j = 0; j < c->blocks[s]; j++) {
            x = block(g, x, s, j, j == 0 ? cin : w << s, w << s);
            cin = w << s;
        }
    x = bn(g, x, "bn2", "/bn2", 8 * w);
    const char *fin[1] = {x};
    Onnx__NodeProto *fl = node(g, "Flatten", "", NULL, 1, fin);
    attr_int(g, fl, "axis", 1);
    int64_t fsh[2] = {c->emb, (int64_t)8 * w * 49}, bsh[1] = {c->emb};
    const char *gin[3] = {out0(fl)}; /* one by one: the initializers' order is fixed */
    gin[1] = initializer(g, "fc.weight", 2, fsh, want(g, "fc.weight", 2, fsh));
    gin[2] = initializer(g, "fc.bias", 1, bsh, want(g, "fc.bias", 1, bsh));
    Onnx__NodeProto *gm = node(g, "Gemm", "/fc", NULL, 3, gin);
    attr_float(g, gm, "alpha", 1.0f);
    attr_float(g, gm, "beta", 1.0f);
    attr_int(g, gm, "transB", 1);
    x = bn(g, out0(gm), "features", "/features", c->emb);
    if (g->rc) return;
    Onnx__NodeProto *last = g->node[g->nnode - 1];
    if (g->o->fp16)
        cast(g, x, "/features", OUT_NAME, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    else
        last->output[0] = gb_str(g, OUT_NAME); /* NULL: g->rc is set */
}

/* The opset -> the IR version of the onnx release that introduced it. */
static int64_t ir_version_of(int opset) {
    static const int64_t ir[] = {4, 5, 6, 7, 7, 7, 8, 8, 8}; /* opsets 9..17 */
    return ir[opset - FT_GRAPH_OPSET_MIN];
}

static Onnx__StringStringEntryProto *meta(gb *g, const char *k, const char *v) {
    Onnx__StringStringEntryProto *e = gb_alloc(g, sizeof *e);
    if (!e) return NULL;
    onnx__string_string_entry_proto__init(e);
    e->key = gb_str(g, "%s", k), e->value = gb_str(g, "%s", v);
    return e->key && e->value ? e : NULL;
}

/* ---- writing ---- */

typedef struct file_buf {
    ProtobufCBuffer base;
    FILE *f;
    int failed;
} file_buf;

static void file_append(ProtobufCBuffer *b, size_t len, const uint8_t *data) {
    file_buf *fb = (file_buf *)b;
    if (!fb->failed && ft_stop_requested()) fb->failed = EINTR; /* a signal: give up */
    if (!fb->failed && len && fwrite(data, 1, len, fb->f) != len) fb->failed = errno ? errno : EIO;
}

static int write_model(gb *g, const Onnx__ModelProto *m, const char *path, uint64_t *bytes) {
    size_t size = onnx__model_proto__get_packed_size(m);
    if (size > (size_t)INT32_MAX)
        return fail(g, FT_ERANGE,
                    "%s: the model would be %.1f MiB, over protobuf's 2 GiB limit for one file",
                    path, (double)size / 1048576.0);
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return fail(g, FT_ERANGE, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return fail(g, -errno, "%s: cannot create: %s", path, strerror(errno));
    file_buf fb = {{file_append}, f, 0};
    errno = 0;
    size_t n = onnx__model_proto__pack_to_buffer(m, &fb.base);
    int e = fb.failed;
    if (!e && fflush(f)) e = errno ? errno : EIO;
    if (!e && fsync(fileno(f))) e = errno;
    if (fclose(f) && !e) e = errno ? errno : EIO;
    if (!e && n != size) e = EIO;
    if (!e && rename(tmp, path)) e = errno;
    if (e) {
        unlink(tmp);
        if (e == EINTR && ft_stop_requested())
            return fail(g, FT_ESTOP, "%s: stopped by a signal; nothing written", path);
        return fail(g, -e, "%s: cannot write: %s", path, strerror(e));
    }
    /* the directory entry too */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = '\0';
    ft_fsync_path(slash ? dir : ".");
    *bytes = size;
    return 0;
}

int ft_graph_write(const ft_graph_ckpt *c, const ft_graph_opts *o, const char *path,
                   ft_graph_info *info, char *err, size_t errcap) {
    if (o->opset < FT_GRAPH_OPSET_MIN || o->opset > FT_GRAPH_OPSET_MAX) {
        snprintf(err, errcap, "opset %d is not supported (%d..%d)", o->opset, FT_GRAPH_OPSET_MIN,
                 FT_GRAPH_OPSET_MAX);
        return FT_EARG;
    }
    gb g = {.ck = c, .o = o, .err = err, .errcap = errcap};
    g.used = calloc((size_t)(c->st.n ? c->st.n : 1), 1);
    if (!g.used) {
        snprintf(err, errcap, "out of memory");
        return -ENOMEM;
    }
    build_nodes(&g);
    if (!g.rc) check_all_used(&g);
    int elem = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    int64_t in_dims[4] = {-1, 3, IMG, IMG}, out_dims[2] = {-1, c->cfg.emb};
    Onnx__ValueInfoProto *vin = g.rc ? NULL : value_info(&g, "data", elem, 4, in_dims);
    Onnx__ValueInfoProto *vout = g.rc ? NULL : value_info(&g, OUT_NAME, elem, 2, out_dims);
    Onnx__GraphProto *gr = gb_alloc(&g, sizeof *gr);
    Onnx__ModelProto *m = gb_alloc(&g, sizeof *m);
    Onnx__OperatorSetIdProto *os = gb_alloc(&g, sizeof *os);
    Onnx__ValueInfoProto **ins = gb_alloc(&g, sizeof *ins), **outs = gb_alloc(&g, sizeof *outs);
    Onnx__OperatorSetIdProto **oss = gb_alloc(&g, sizeof *oss);
    Onnx__StringStringEntryProto **md = gb_alloc(&g, 5 * sizeof *md);
    if (!g.rc && vin && vout && gr && m && os && ins && outs && oss && md) {
        onnx__graph_proto__init(gr);
        gr->n_node = g.nnode, gr->node = g.node;
        gr->name = gb_str(&g, "facetrain_iresnet%d", c->depth);
        gr->n_initializer = g.ninit, gr->initializer = g.init;
        ins[0] = vin, outs[0] = vout;
        gr->n_input = 1, gr->input = ins;
        gr->n_output = 1, gr->output = outs;
        onnx__operator_set_id_proto__init(os);
        os->has_version = 1, os->version = o->opset;
        oss[0] = os;
        onnx__model_proto__init(m);
        m->has_ir_version = 1, m->ir_version = ir_version_of(o->opset);
        m->producer_name = gb_str(&g, "facetrain");
        m->producer_version = gb_str(&g, "%s", FT_VERSION_STRING + strlen("facetrain "));
        m->graph = gr;
        m->n_opset_import = 1, m->opset_import = oss;
        char step[32];
        snprintf(step, sizeof step, "%lld", (long long)c->global_step);
        md[0] = meta(&g, "facetrain.architecture", c->arch);
        md[1] = meta(&g, "facetrain.global_step", step);
        md[2] = meta(&g, "facetrain.train_dtype", c->train_dtype);
        md[3] = meta(&g, "facetrain.precision", o->fp16 ? "fp16" : "fp32");
        md[4] = meta(&g, "facetrain.fold_bn", o->fold_bn ? "1" : "0");
        m->n_metadata_props = 5, m->metadata_props = md;
        uint64_t bytes = 0;
        if (!g.rc) write_model(&g, m, path, &bytes);
        if (!g.rc && info) {
            info->nodes = (int)g.nnode, info->initializers = (int)g.ninit;
            info->params = g.params, info->bytes = bytes;
        }
    }
    int rc = g.rc;
    gb_free(&g);
    return rc;
}

int ft_graph_export(const char *dir, const char *out, const ft_graph_opts *o, ft_graph_info *info,
                    char *err, size_t errcap) {
    char path[4096];
    if (!out) {
        if (ft_path_join(path, sizeof path, dir, FT_GRAPH_ONNX_NAME)) {
            snprintf(err, errcap, "%s: path too long", dir);
            return FT_ERANGE;
        }
        out = path;
    }
    ft_graph_ckpt c;
    int rc = ft_graph_ckpt_open(&c, dir, err, errcap);
    if (rc) return rc;
    rc = ft_graph_write(&c, o, out, info, err, errcap);
    ft_graph_ckpt_close(&c);
    return rc;
}
