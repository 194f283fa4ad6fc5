/* onnx_load.c: an ONNX ModelProto (protobuf-c) -> the engine's graph (ir.h).
 *
 * The file is never trusted: every count, dim and byte length is bounded and checked against
 * the data it describes, every node input must name a value defined before it (the graph must
 * be in topological order), and every error names the file and the node:
 *   "m.onnx: node 17 '/layer1/layer1.0/conv1/Conv' (Conv): weight has 64 input channels, its
 *    input has 32".
 * Constants (initializers, Constant nodes, Cast of a constant) stay on the host and become
 * step weights; only activations get values. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "ir.h"
#include "onnx/onnx.pb-c.h"

/* ONNX TensorProto.DataType values used here */
enum { DT_FLOAT = 1, DT_INT32 = 6, DT_INT64 = 7, DT_FLOAT16 = 10, DT_DOUBLE = 11 };
#define MAX_DIMS  8
#define MAX_NUMEL ((int64_t)1 << 31)

typedef struct cst {
    int ndim;
    int64_t dims[MAX_DIMS];
    int64_t numel;
    float *f;   /* values as fp32 (float types) */
    int64_t *i; /* values as int64 (integer types) */
} cst;

typedef struct sym {
    const char *name;
    int is_const;
    int id; /* value id (activation) or constant index */
} sym;

typedef struct ld {
    const char *path;
    char *err;
    size_t errcap;
    ir_graph *g;
    sym *syms;
    size_t nsym, symcap;
    cst *c;
    size_t nc, ccap;
    /* the node being read, for messages */
    int node;
    const Onnx__NodeProto *np;
} ld;

static int fail(ld *l, int rc, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (l->np)
        snprintf(l->err, l->errcap, "%s: node %d '%s' (%s): %s", l->path, l->node,
                 l->np->name ? l->np->name : "", l->np->op_type ? l->np->op_type : "", msg);
    else
        snprintf(l->err, l->errcap, "%s: %s", l->path, msg);
    return rc;
}

static const sym *find(const ld *l, const char *name) {
    for (size_t i = l->nsym; i-- > 0;)
        if (strcmp(l->syms[i].name, name) == 0) return &l->syms[i];
    return NULL;
}

static int define(ld *l, const char *name, int is_const, int id) {
    if (!name || !*name) return fail(l, FT_EFORMAT, "an output has an empty name");
    if (find(l, name)) return fail(l, FT_EFORMAT, "value '%s' is defined twice", name);
    if (l->nsym == l->symcap) {
        size_t cap = l->symcap ? 2 * l->symcap : 256;
        sym *s = realloc(l->syms, cap * sizeof *s);
        if (!s) return fail(l, -ENOMEM, "out of memory");
        l->syms = s, l->symcap = cap;
    }
    l->syms[l->nsym++] = (sym){name, is_const, id};
    return 0;
}

static int new_const(ld *l, cst **out) {
    if (l->nc == l->ccap) {
        size_t cap = l->ccap ? 2 * l->ccap : 256;
        cst *c = realloc(l->c, cap * sizeof *c);
        if (!c) return fail(l, -ENOMEM, "out of memory");
        l->c = c, l->ccap = cap;
    }
    *out = memset(&l->c[l->nc++], 0, sizeof(cst));
    return 0;
}

static int64_t dims_numel(const int64_t *dims, size_t n) {
    int64_t p = 1;
    for (size_t i = 0; i < n; i++) {
        if (dims[i] < 0 || dims[i] > MAX_NUMEL) return -1;
        p *= dims[i];
        if (p > MAX_NUMEL) return -1;
    }
    return p;
}

static float half_to_float(uint16_t h) {
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, u;
    if (e == 0) {
        if (m == 0) {
            u = s;
        } else { /* subnormal */
            e = 113;
            while (!(m & 1024)) m <<= 1, e--;
            u = s | e << 23 | (m & 1023) << 13;
        }
    } else if (e == 31) {
        u = s | 0x7f800000u | m << 13;
    } else {
        u = s | (e + 112) << 23 | m << 13;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A TensorProto -> a constant, values checked against dims. what: "initializer 'x'". */
static int read_tensor(ld *l, const Onnx__TensorProto *t, const char *what, cst *c) {
    if (t->n_external_data || (t->has_data_location && t->data_location != 0))
        return fail(l, FT_ENOTSUP, "%s: external data is not supported", what);
    if (t->n_dims > MAX_DIMS) return fail(l, FT_EFORMAT, "%s: %zu dims", what, t->n_dims);
    int64_t n = dims_numel(t->dims, t->n_dims);
    if (n < 0) return fail(l, FT_ERANGE, "%s: dims out of range", what);
    c->ndim = (int)t->n_dims;
    memcpy(c->dims, t->dims, t->n_dims * sizeof(int64_t));
    c->numel = n;
    int dt = t->has_data_type ? t->data_type : 0;
    size_t esz = dt == DT_FLOAT || dt == DT_INT32    ? 4
                 : dt == DT_INT64 || dt == DT_DOUBLE ? 8
                 : dt == DT_FLOAT16                  ? 2
                                                     : 0;
    if (!esz) return fail(l, FT_ENOTSUP, "%s: data type %d is not supported", what, dt);
    size_t count = (size_t)n;
    const uint8_t *raw = NULL;
    if (t->has_raw_data && t->raw_data.len) {
        if (t->raw_data.len != count * esz)
            return fail(l, FT_EFORMAT, "%s: raw_data holds %zu bytes, dims need %zu", what,
                        t->raw_data.len, count * esz);
        raw = t->raw_data.data;
    } else {
        size_t have = dt == DT_FLOAT    ? t->n_float_data
                      : dt == DT_INT64  ? t->n_int64_data
                      : dt == DT_DOUBLE ? t->n_double_data
                                        : t->n_int32_data; /* int32 and float16 */
        if (have != count)
            return fail(l, FT_EFORMAT, "%s: holds %zu values, dims need %zu", what, have, count);
    }
    int is_float = dt == DT_FLOAT || dt == DT_FLOAT16 || dt == DT_DOUBLE;
    if (is_float) {
        if (!(c->f = ir_alloc(count))) return fail(l, -ENOMEM, "out of memory");
        for (size_t i = 0; i < count; i++) {
            float v;
            if (dt == DT_FLOAT) {
                if (raw) {
                    uint32_t u = ft_rd_le32(raw + 4 * i);
                    memcpy(&v, &u, 4);
                } else {
                    v = t->float_data[i];
                }
            } else if (dt == DT_FLOAT16) {
                v = half_to_float(raw ? (uint16_t)(raw[2 * i] | raw[2 * i + 1] << 8)
                                      : (uint16_t)t->int32_data[i]);
            } else {
                double d;
                if (raw) {
                    uint64_t u = ft_rd_le64(raw + 8 * i);
                    memcpy(&d, &u, 8);
                } else {
                    d = t->double_data[i];
                }
                v = (float)d;
            }
            c->f[i] = v;
        }
    } else {
        if (!(c->i = malloc(count ? count * sizeof(int64_t) : 1)))
            return fail(l, -ENOMEM, "out of memory");
        for (size_t i = 0; i < count; i++)
            c->i[i] = dt == DT_INT64 ? (raw ? (int64_t)ft_rd_le64(raw + 8 * i) : t->int64_data[i])
                                     : (raw ? (int32_t)ft_rd_le32(raw + 4 * i) : t->int32_data[i]);
    }
    return 0;
}

/* ---- node helpers ---- */

static const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name) {
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0)
            return n->attribute[i];
    return NULL;
}
static int64_t attr_i(const Onnx__NodeProto *n, const char *name, int64_t def) {
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_i ? a->i : def;
}
static float attr_f(const Onnx__NodeProto *n, const char *name, float def) {
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_f ? a->f : def;
}

/* input k of the node: -1 when absent or empty (optional inputs) */
static const char *in_name(const ld *l, size_t k) {
    return k < l->np->n_input && l->np->input[k] && *l->np->input[k] ? l->np->input[k] : NULL;
}
static int get_act(ld *l, size_t k, int *id) {
    const char *nm = in_name(l, k);
    if (!nm) return fail(l, FT_EFORMAT, "input %zu is missing", k);
    const sym *s = find(l, nm);
    if (!s) return fail(l, FT_EFORMAT, "input '%s' is not defined before this node", nm);
    if (s->is_const) return fail(l, FT_ENOTSUP, "input '%s' is a constant, not computed", nm);
    *id = s->id;
    return 0;
}
static int get_const(ld *l, size_t k, const cst **c) {
    const char *nm = in_name(l, k);
    if (!nm) return fail(l, FT_EFORMAT, "input %zu is missing", k);
    const sym *s = find(l, nm);
    if (!s) return fail(l, FT_EFORMAT, "input '%s' is not defined before this node", nm);
    if (!s->is_const) return fail(l, FT_ENOTSUP, "input '%s' must be a constant (initializer)", nm);
    *c = &l->c[s->id];
    if (!(*c)->f && k != 1) /* integer tensors only as Reshape shapes (input 1) */
        return fail(l, FT_ENOTSUP, "input '%s' is not a float tensor", nm);
    return 0;
}
static int out1(ld *l, ir_shape s, int *id) {
    if (l->np->n_output < 1) return fail(l, FT_EFORMAT, "no output");
    for (size_t k = 1; k < l->np->n_output; k++)
        if (l->np->output[k] && *l->np->output[k])
            return fail(l, FT_ENOTSUP, "optional output '%s' is not supported", l->np->output[k]);
    if (s.c < 1 || s.c > IR_MAX_FEAT || s.h < 1 || s.h > IR_MAX_HW || s.w < 1 || s.w > IR_MAX_HW ||
        (int64_t)s.c * s.h * s.w > IR_MAX_FEAT)
        return fail(l, FT_ERANGE, "output shape [%d, %d, %d] out of range", s.c, s.h, s.w);
    int v = ir_add_value(l->g, s);
    if (v < 0) return fail(l, -ENOMEM, "out of memory (or too many values)");
    *id = v;
    return define(l, l->np->output[0], 0, v);
}
static ir_step *step(ld *l, int kind) {
    if (l->g->n >= IR_MAX_STEPS) return NULL;
    ir_step *s = ir_add_step(l->g);
    if (!s) return NULL;
    s->kind = kind;
    s->node = l->node;
    snprintf(s->name, sizeof s->name, "%s", l->np->name ? l->np->name : "");
    return s;
}
#define STEP(var, kind)                                                                            \
    ir_step *var = step(l, kind);                                                                  \
    if (!var) return fail(l, -ENOMEM, "out of memory (or more than %d steps)", IR_MAX_STEPS)

static const char *shape_str(const ir_shape *s, char *buf, size_t cap) {
    if (s->flat)
        snprintf(buf, cap, "[N, %d]", s->c);
    else
        snprintf(buf, cap, "[N, %d, %d, %d]", s->c, s->h, s->w);
    return buf;
}

/* a constant that broadcasts per channel over x: numel 1, or its non-1 dims are a single C at
 * the channel axis of x ([C], [C,1,1], [1,C,1,1] for maps; [C], [1,C] for vectors) */
static int per_channel(ld *l, const cst *c, const ir_shape *x, float **out) {
    int C = x->c;
    if (c->numel != 1) {
        int rank = x->flat ? 2 : 4, ok = c->ndim <= rank && c->numel == C;
        /* the dim holding C must be the channel axis: position rank-1-ndim+... */
        for (int d = 0; ok && d < c->ndim; d++) {
            int axis = rank - c->ndim + d; /* right-aligned broadcasting */
            if (c->dims[d] != 1 && axis != 1) ok = 0;
        }
        if (!ok || (x->flat && x->src_hw != 1)) {
            char b[64];
            return fail(l, FT_ENOTSUP,
                        "constant of %lld values does not broadcast per channel "
                        "over %s",
                        (long long)c->numel, shape_str(x, b, sizeof b));
        }
    }
    float *v = ir_alloc((size_t)C);
    if (!v) return fail(l, -ENOMEM, "out of memory");
    for (int i = 0; i < C; i++) v[i] = c->numel == 1 ? c->f[0] : c->f[i];
    *out = v;
    return 0;
}

/* an affine step y = x * mul + add per channel (mul or add NULL: 1 or 0); takes ownership */
static int affine(ld *l, int in, float *mul, float *add) {
    ir_shape x = l->g->v[in];
    int C = x.c, rc = 0;
    STEP(s, IR_AFFINE);
    s->in = in;
    s->gamma = mul ? mul : ir_alloc((size_t)C);
    s->beta = add ? add : ir_alloc((size_t)C);
    s->mean = ir_alloc((size_t)C);
    s->var = ir_alloc((size_t)C);
    if (!s->gamma || !s->beta || !s->mean || !s->var) return fail(l, -ENOMEM, "out of memory");
    for (int i = 0; i < C; i++) {
        if (!mul) s->gamma[i] = 1.0f;
        s->var[i] = 1.0f;
    }
    s->eps = 0.0f;
    if (in == 0 && l->g->n == 1) l->g->normalizes = 1;
    x.base = -1;
    rc = out1(l, x, &s->out);
    return rc;
}

/* ---- ops ---- */

static int op_conv(ld *l) {
    int x, rc;
    const cst *w, *b = NULL;
    if ((rc = get_act(l, 0, &x)) || (rc = get_const(l, 1, &w))) return rc;
    if (in_name(l, 2) && (rc = get_const(l, 2, &b))) return rc;
    ir_shape in = l->g->v[x];
    char sb[64];
    if (in.flat)
        return fail(l, FT_ENOTSUP, "input is %s, not a feature map", shape_str(&in, sb, 64));
    if (w->ndim != 4 || w->dims[2] != w->dims[3])
        return fail(l, FT_ENOTSUP, "weight must be [K, C, R, R] (square kernel)");
    if (w->dims[0] < 1 || w->dims[0] > IR_MAX_CHANNELS || w->dims[2] < 1 || w->dims[2] > 64)
        return fail(l, FT_ERANGE, "weight [%lld, %lld, %lld, %lld] out of range",
                    (long long)w->dims[0], (long long)w->dims[1], (long long)w->dims[2],
                    (long long)w->dims[3]);
    int k = (int)w->dims[0], r = (int)w->dims[2];
    if (w->dims[1] != in.c)
        return fail(l, FT_EFORMAT, "weight has %lld input channels, its input has %d",
                    (long long)w->dims[1], in.c);
    if (attr_i(l->np, "group", 1) != 1) return fail(l, FT_ENOTSUP, "group != 1 is not supported");
    const Onnx__AttributeProto *a;
    if ((a = attr(l->np, "auto_pad")) && a->has_s && a->s.len &&
        !(a->s.len == 6 && memcmp(a->s.data, "NOTSET", 6) == 0))
        return fail(l, FT_ENOTSUP, "auto_pad is not supported");
    if ((a = attr(l->np, "kernel_shape")) && (a->n_ints != 2 || a->ints[0] != r || a->ints[1] != r))
        return fail(l, FT_EFORMAT, "kernel_shape does not match the weight's %dx%d", r, r);
    int stride = 1, pad = 0;
    if ((a = attr(l->np, "strides"))) {
        if (a->n_ints != 2 || a->ints[0] != a->ints[1] || a->ints[0] < 1 || a->ints[0] > 64)
            return fail(l, FT_ENOTSUP, "strides must be two equal values in 1..64");
        stride = (int)a->ints[0];
    }
    if ((a = attr(l->np, "pads"))) {
        if (a->n_ints != 4) return fail(l, FT_EFORMAT, "pads needs 4 values");
        for (int i = 1; i < 4; i++)
            if (a->ints[i] != a->ints[0])
                return fail(l, FT_ENOTSUP, "asymmetric pads are not supported");
        if (a->ints[0] < 0 || a->ints[0] > 64) return fail(l, FT_ERANGE, "pads out of range");
        pad = (int)a->ints[0];
    }
    if ((a = attr(l->np, "dilations")))
        for (size_t i = 0; i < a->n_ints; i++)
            if (a->ints[i] != 1) return fail(l, FT_ENOTSUP, "dilations != 1 are not supported");
    if (b && b->numel != k)
        return fail(l, FT_EFORMAT, "bias has %lld values, the weight %d outputs",
                    (long long)b->numel, k);
    int oh = (in.h + 2 * pad - r) / stride + 1, ow = (in.w + 2 * pad - r) / stride + 1;
    if (in.h + 2 * pad < r || in.w + 2 * pad < r)
        return fail(l, FT_EFORMAT, "kernel %dx%d larger than the padded input %dx%d", r, r,
                    in.h + 2 * pad, in.w + 2 * pad);
    STEP(s, IR_CONV);
    s->in = x, s->k = k, s->r = r, s->stride = stride, s->pad = pad;
    size_t wn = (size_t)w->numel;
    if (!(s->w = ir_alloc(wn))) return fail(l, -ENOMEM, "out of memory");
    memcpy(s->w, w->f, wn * sizeof(float));
    if (b) {
        if (!(s->b = ir_alloc((size_t)k))) return fail(l, -ENOMEM, "out of memory");
        memcpy(s->b, b->f, (size_t)k * sizeof(float));
    }
    ir_shape o = {k, oh, ow, 0, k, oh * ow, -1};
    return out1(l, o, &s->out);
}

static int op_bn(ld *l) {
    int x, rc;
    const cst *p[4];
    if ((rc = get_act(l, 0, &x))) return rc;
    for (int i = 0; i < 4; i++)
        if ((rc = get_const(l, (size_t)i + 1, &p[i]))) return rc;
    ir_shape in = l->g->v[x];
    static const char *what[4] = {"scale", "B", "mean", "var"};
    for (int i = 0; i < 4; i++)
        if (p[i]->numel != in.c)
            return fail(l, FT_EFORMAT, "%s has %lld values, the input has %d channels", what[i],
                        (long long)p[i]->numel, in.c);
    if (in.flat && in.src_hw != 1)
        return fail(l, FT_ENOTSUP, "batch norm over a flattened feature map");
    if (attr_i(l->np, "training_mode", 0) != 0)
        return fail(l, FT_ENOTSUP, "training_mode = 1 (the engine runs in eval mode)");
    if (attr_i(l->np, "spatial", 1) != 1) return fail(l, FT_ENOTSUP, "spatial = 0");
    float eps = attr_f(l->np, "epsilon", 1e-5f);
    if (!(eps >= 0.0f) || !isfinite(eps)) return fail(l, FT_ERANGE, "epsilon %g", (double)eps);
    for (int i = 0; i < in.c; i++)
        if (!(p[3]->f[i] + eps > 0.0f))
            return fail(l, FT_ERANGE, "var[%d] + epsilon = %g is not positive", i,
                        (double)(p[3]->f[i] + eps));
    STEP(s, IR_AFFINE);
    s->in = x, s->eps = eps;
    float **dst[4] = {&s->gamma, &s->beta, &s->mean, &s->var};
    for (int i = 0; i < 4; i++) {
        if (!(*dst[i] = ir_alloc((size_t)in.c))) return fail(l, -ENOMEM, "out of memory");
        memcpy(*dst[i], p[i]->f, (size_t)in.c * sizeof(float));
    }
    in.base = -1;
    return out1(l, in, &s->out);
}

static int op_prelu(ld *l) {
    int x, rc;
    const cst *a;
    if ((rc = get_act(l, 0, &x)) || (rc = get_const(l, 1, &a))) return rc;
    ir_shape in = l->g->v[x];
    float *alpha;
    if ((rc = per_channel(l, a, &in, &alpha))) return rc;
    STEP(s, IR_PRELU);
    s->in = x, s->alpha = alpha;
    in.base = -1;
    return out1(l, in, &s->out);
}

/* Add/Sub/Mul/Div: two computed operands (Add only: the residual) or one and a constant */
static int op_binary(ld *l, const char *op) {
    const char *na = in_name(l, 0), *nb = in_name(l, 1);
    const sym *a = na ? find(l, na) : NULL, *b = nb ? find(l, nb) : NULL;
    if (!a || !b)
        return fail(l, FT_EFORMAT, "input '%s' is not defined before this node",
                    !a ? (na ? na : "") : (nb ? nb : ""));
    int rc;
    if (!a->is_const && !b->is_const) {
        if (strcmp(op, "Add") != 0)
            return fail(l, FT_ENOTSUP, "%s of two computed tensors is not supported", op);
        ir_shape sa = l->g->v[a->id], sb = l->g->v[b->id];
        if (sa.c != sb.c || sa.h != sb.h || sa.w != sb.w || sa.flat != sb.flat) {
            char x[64], y[64];
            return fail(l, FT_EFORMAT, "operand shapes differ: %s and %s", shape_str(&sa, x, 64),
                        shape_str(&sb, y, 64));
        }
        STEP(s, IR_ADD);
        s->in = a->id, s->in2 = b->id;
        sa.base = -1;
        return out1(l, sa, &s->out);
    }
    if (a->is_const && b->is_const)
        return fail(l, FT_ENOTSUP, "%s of two constants (fold it before export)", op);
    int x = a->is_const ? b->id : a->id;
    const cst *c = &l->c[a->is_const ? a->id : b->id];
    if (!c->f) return fail(l, FT_ENOTSUP, "constant operand is not a float tensor");
    if (a->is_const && (strcmp(op, "Sub") == 0 || strcmp(op, "Div") == 0))
        return fail(l, FT_ENOTSUP, "%s with the constant as first operand", op);
    ir_shape in = l->g->v[x];
    float *v;
    if ((rc = per_channel(l, c, &in, &v))) return rc;
    if (strcmp(op, "Add") == 0) return affine(l, x, NULL, v);
    if (strcmp(op, "Mul") == 0) return affine(l, x, v, NULL);
    for (int i = 0; i < in.c; i++) {
        if (strcmp(op, "Sub") == 0) {
            v[i] = -v[i];
        } else if (v[i] == 0.0f) {
            free(v);
            return fail(l, FT_ERANGE, "division by zero (channel %d)", i);
        } else {
            v[i] = 1.0f / v[i];
        }
    }
    return strcmp(op, "Sub") == 0 ? affine(l, x, NULL, v) : affine(l, x, v, NULL);
}

/* an alias of input 0 with shape s (Flatten, Reshape, Identity, Dropout, Cast) */
static int alias(ld *l, int x, ir_shape s) {
    s.base = l->g->v[x].base;
    return out1(l, s, &(int){0});
}

static ir_shape flat_of(const ir_shape *in) {
    ir_shape s = {in->c * in->h * in->w,
                  1,
                  1,
                  1,
                  in->flat ? in->src_c : in->c,
                  in->flat ? in->src_hw : in->h * in->w,
                  0};
    return s;
}

static int op_flatten(ld *l) {
    int x, rc;
    if ((rc = get_act(l, 0, &x))) return rc;
    if (attr_i(l->np, "axis", 1) != 1)
        return fail(l, FT_ENOTSUP, "axis %lld (only 1 keeps the batch)",
                    (long long)attr_i(l->np, "axis", 1));
    ir_shape in = l->g->v[x];
    return alias(l, x, flat_of(&in));
}

static int op_reshape(ld *l) {
    int x, rc;
    const cst *sh;
    if ((rc = get_act(l, 0, &x)) || (rc = get_const(l, 1, &sh))) return rc;
    if (!sh->i) return fail(l, FT_EFORMAT, "shape must be an int64 tensor");
    ir_shape in = l->g->v[x];
    int64_t per = (int64_t)in.c * in.h * in.w;
    const int64_t *t = sh->i;
    if (sh->numel == 2) {
        int64_t a = t[0], b = t[1];
        if (b == 0) b = in.c; /* 0 copies the input's dim 1 */
        if (a == 0 || a == -1) {
            if (b != per && !(b == -1 && a == 0))
                return fail(l, FT_ENOTSUP,
                            "reshape to [%lld, %lld] changes the per-sample "
                            "size %lld",
                            (long long)t[0], (long long)t[1], (long long)per);
        } else if (a > 0) {
            if (b != per && b != -1)
                return fail(l, FT_ENOTSUP,
                            "reshape to [%lld, %lld] changes the per-sample "
                            "size %lld",
                            (long long)t[0], (long long)t[1], (long long)per);
            if (a > INT32_MAX) return fail(l, FT_ERANGE, "batch %lld", (long long)a);
            l->g->fixed_batch = (int)a;
            snprintf(l->g->fixed_batch_at, sizeof l->g->fixed_batch_at, "node %d '%s' (Reshape)",
                     l->node, l->np->name ? l->np->name : "");
        } else {
            return fail(l, FT_ERANGE, "shape [%lld, %lld]", (long long)t[0], (long long)t[1]);
        }
        return alias(l, x, flat_of(&in));
    }
    if (sh->numel == 4 && !in.flat && (t[0] == 0 || t[0] == -1) && t[1] == in.c && t[2] == in.h &&
        t[3] == in.w)
        return alias(l, x, in);
    return fail(l, FT_ENOTSUP,
                "reshape to a shape of %lld dims other than [N, C*H*W] or the "
                "same map",
                (long long)sh->numel);
}

/* Gemm (transA 0) or MatMul with a constant right operand */
static int op_fc(ld *l, int gemm) {
    int x, rc;
    const cst *w, *b = NULL;
    if ((rc = get_act(l, 0, &x)) || (rc = get_const(l, 1, &w))) return rc;
    if (gemm && in_name(l, 2) && (rc = get_const(l, 2, &b))) return rc;
    ir_shape in = l->g->v[x];
    char sb[64];
    if (!in.flat)
        return fail(l, FT_ENOTSUP, "input is %s; flatten it first", shape_str(&in, sb, 64));
    if (w->ndim != 2) return fail(l, FT_EFORMAT, "weight must be 2-D");
    int transb = gemm ? (int)attr_i(l->np, "transB", 0) : 0;
    if (gemm && attr_i(l->np, "transA", 0) != 0)
        return fail(l, FT_ENOTSUP, "transA = 1 is not supported");
    float alpha = gemm ? attr_f(l->np, "alpha", 1.0f) : 1.0f;
    float beta = gemm ? attr_f(l->np, "beta", 1.0f) : 1.0f;
    int64_t K = transb ? w->dims[1] : w->dims[0], N = transb ? w->dims[0] : w->dims[1];
    if (K != in.c)
        return fail(l, FT_EFORMAT, "weight takes %lld inputs, the input has %d", (long long)K,
                    in.c);
    if (N < 1 || N > IR_MAX_CHANNELS) return fail(l, FT_ERANGE, "%lld outputs", (long long)N);
    if (b && b->numel != 1 && b->numel != N)
        return fail(l, FT_EFORMAT, "bias has %lld values, the weight %lld outputs",
                    (long long)b->numel, (long long)N);
    STEP(s, IR_FC);
    s->in = x, s->k = (int)N;
    size_t n = (size_t)N, k = (size_t)K;
    if (!(s->w = ir_alloc(n * k))) return fail(l, -ENOMEM, "out of memory");
    for (size_t o = 0; o < n; o++)
        for (size_t i = 0; i < k; i++)
            s->w[o * k + i] = alpha * (transb ? w->f[o * k + i] : w->f[i * n + o]);
    if (b) {
        if (!(s->b = ir_alloc(n))) return fail(l, -ENOMEM, "out of memory");
        for (size_t o = 0; o < n; o++) s->b[o] = beta * (b->numel == 1 ? b->f[0] : b->f[o]);
    }
    ir_shape o = {(int)N, 1, 1, 1, (int)N, 1, -1};
    return out1(l, o, &s->out);
}

static int op_constant(ld *l) {
    const Onnx__AttributeProto *a = attr(l->np, "value");
    if (!a || !a->t) return fail(l, FT_ENOTSUP, "only the 'value' tensor form is supported");
    cst *c = NULL;
    int rc = new_const(l, &c);
    if (!rc) rc = read_tensor(l, a->t, "value", c);
    if (!rc && l->np->n_output != 1) rc = fail(l, FT_EFORMAT, "needs one output");
    if (!rc) rc = define(l, l->np->output[0], 1, (int)(l->nc - 1));
    return rc;
}

/* Identity / Dropout (eval) / Cast to float: an alias; of a constant: the same constant */
static int op_passthrough(ld *l, const char *op) {
    const char *nm = in_name(l, 0);
    const sym *s = nm ? find(l, nm) : NULL;
    if (!s) return fail(l, FT_EFORMAT, "input '%s' is not defined before this node", nm ? nm : "");
    /* a float16 graph (ft-export --fp16) casts its input to float16 and its output back: the
     * engine keeps fp32 throughout, so both casts are aliases */
    int64_t to = attr_i(l->np, "to", 0);
    if (strcmp(op, "Cast") == 0 && to != DT_FLOAT && !(to == DT_FLOAT16 && !s->is_const) &&
        !(s->is_const && l->c[s->id].i && to == DT_INT64))
        return fail(l, FT_ENOTSUP, "cast to type %lld (only to float or float16)", (long long)to);
    if (strcmp(op, "Dropout") == 0 && in_name(l, 2))
        return fail(l, FT_ENOTSUP, "training_mode input (the engine runs in eval mode)");
    if (s->is_const) {
        if (l->np->n_output < 1) return fail(l, FT_EFORMAT, "no output");
        return define(l, l->np->output[0], 1, s->id);
    }
    if (strcmp(op, "Dropout") == 0 && l->np->n_output > 1 && l->np->output[1] &&
        *l->np->output[1]) {
        /* the mask output: never computed; a node that reads it fails as undefined */
        const char *keep = l->np->output[1];
        l->np->output[1] = NULL;
        int rc = alias(l, s->id, l->g->v[s->id]);
        l->np->output[1] = (char *)keep;
        return rc;
    }
    return alias(l, s->id, l->g->v[s->id]);
}

static int do_node(ld *l) {
    const char *op = l->np->op_type ? l->np->op_type : "";
    if (l->np->domain && *l->np->domain && strcmp(l->np->domain, "ai.onnx") != 0)
        return fail(l, FT_ENOTSUP, "unsupported op (domain '%s')", l->np->domain);
    if (strcmp(op, "Conv") == 0) return op_conv(l);
    if (strcmp(op, "BatchNormalization") == 0) return op_bn(l);
    if (strcmp(op, "PRelu") == 0) return op_prelu(l);
    if (strcmp(op, "Add") == 0 || strcmp(op, "Sub") == 0 || strcmp(op, "Mul") == 0 ||
        strcmp(op, "Div") == 0)
        return op_binary(l, op);
    if (strcmp(op, "Flatten") == 0) return op_flatten(l);
    if (strcmp(op, "Reshape") == 0) return op_reshape(l);
    if (strcmp(op, "Gemm") == 0) return op_fc(l, 1);
    if (strcmp(op, "MatMul") == 0) return op_fc(l, 0);
    if (strcmp(op, "Constant") == 0) return op_constant(l);
    if (strcmp(op, "Identity") == 0 || strcmp(op, "Dropout") == 0 || strcmp(op, "Cast") == 0)
        return op_passthrough(l, op);
    return fail(l, FT_ENOTSUP, "unsupported op");
}

/* ---- the model ---- */

static int read_input(ld *l, const Onnx__GraphProto *g) {
    const Onnx__ValueInfoProto *in = NULL;
    int n_real = 0;
    for (size_t i = 0; i < g->n_input; i++) {
        const char *nm = g->input[i]->name;
        if (nm && find(l, nm)) continue; /* an initializer listed as input (older exporters) */
        in = g->input[i], n_real++;
    }
    if (n_real != 1)
        return fail(l, FT_EFORMAT, "the graph has %d inputs, the engine takes 1", n_real);
    const char *nm = in->name ? in->name : "";
    const Onnx__TypeProto *tp = in->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return fail(l, FT_EFORMAT, "input '%s' is not a tensor", nm);
    if (tp->tensor_type->elem_type != DT_FLOAT)
        return fail(l, FT_ENOTSUP, "input '%s' has element type %d, not float", nm,
                    tp->tensor_type->elem_type);
    const Onnx__TensorShapeProto *sh = tp->tensor_type->shape;
    if (!sh || sh->n_dim != 4)
        return fail(l, FT_EFORMAT, "input '%s' has rank %zu, not 4 (N, 3, H, W)", nm,
                    sh ? sh->n_dim : 0);
    int64_t d[4] = {0};
    for (int i = 1; i < 4; i++) {
        if (sh->dim[i]->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
            return fail(l, FT_EFORMAT, "input '%s' dim %d is not a number", nm, i);
        d[i] = sh->dim[i]->dim_value;
    }
    if (d[1] != 3 || d[2] != d[3] || d[2] < 8 || d[2] > IR_MAX_HW)
        return fail(l, FT_ENOTSUP, "input '%s' is [N, %lld, %lld, %lld], not [N, 3, S, S]", nm,
                    (long long)d[1], (long long)d[2], (long long)d[3]);
    l->g->hw = (int)d[2];
    ir_shape s = {3, (int)d[2], (int)d[3], 0, 3, (int)(d[2] * d[3]), -1};
    int v = ir_add_value(l->g, s);
    if (v != 0) return fail(l, -ENOMEM, "out of memory");
    return define(l, nm, 0, 0);
}

static int read_output(ld *l, const Onnx__GraphProto *g) {
    if (g->n_output < 1) return fail(l, FT_EFORMAT, "the graph has no output");
    const char *nm = g->output[0]->name ? g->output[0]->name : "";
    const sym *s = find(l, nm);
    if (!s) return fail(l, FT_EFORMAT, "output '%s' is not computed by any node", nm);
    if (s->is_const) return fail(l, FT_EFORMAT, "output '%s' is a constant", nm);
    ir_shape o = l->g->v[s->id];
    if (!o.flat && (o.h != 1 || o.w != 1))
        return fail(l, FT_ENOTSUP,
                    "output '%s' is a feature map [N, %d, %d, %d], not an "
                    "embedding",
                    nm, o.c, o.h, o.w);
    const Onnx__TypeProto *tp = g->output[0]->type;
    if (tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && tp->tensor_type &&
        tp->tensor_type->shape && tp->tensor_type->shape->n_dim == 2) {
        const Onnx__TensorShapeProto__Dimension *d = tp->tensor_type->shape->dim[1];
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
            d->dim_value != o.c)
            return fail(l, FT_EFORMAT,
                        "output '%s' is declared [N, %lld] but the graph "
                        "computes [N, %d]",
                        nm, (long long)d->dim_value, o.c);
    }
    l->g->output = s->id;
    return 0;
}

int ir_load_onnx(ir_graph *g, const char *path, const void *buf, size_t len, char *err,
                 size_t errcap) {
    ld l = {.path = path, .err = err, .errcap = errcap, .g = g, .node = -1};
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    int rc = 0;
    if (!m) {
        rc = fail(&l, FT_EFORMAT, "not an ONNX model (the protobuf does not parse; truncated?)");
        goto out;
    }
    if (!m->graph) {
        rc = fail(&l, FT_EFORMAT, "not an ONNX model (no graph; empty or truncated file?)");
        goto out;
    }
    int64_t opset = -1;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if (!o->domain || !*o->domain || strcmp(o->domain, "ai.onnx") == 0)
            opset = o->has_version ? o->version : -1;
    }
    if (opset < 7 || opset > 21) {
        rc = fail(&l, FT_ENOTSUP, "default-domain opset %lld (the engine reads 7..21)",
                  (long long)opset);
        goto out;
    }
    const Onnx__GraphProto *gr = m->graph;
    if (!gr) {
        rc = fail(&l, FT_EFORMAT, "the model has no graph");
        goto out;
    }
    if (gr->n_node > IR_MAX_STEPS) {
        rc = fail(&l, FT_ERANGE, "%zu nodes (at most %d)", gr->n_node, IR_MAX_STEPS);
        goto out;
    }
    if (gr->n_sparse_initializer) {
        rc = fail(&l, FT_ENOTSUP, "sparse initializers are not supported");
        goto out;
    }
    for (size_t i = 0; i < gr->n_initializer && !rc; i++) {
        const Onnx__TensorProto *t = gr->initializer[i];
        char what[160];
        snprintf(what, sizeof what, "initializer '%s'", t->name ? t->name : "");
        cst *c = NULL;
        if (!(rc = new_const(&l, &c))) rc = read_tensor(&l, t, what, c);
        if (!rc) rc = define(&l, t->name, 1, (int)(l.nc - 1));
    }
    if (!rc) rc = read_input(&l, gr);
    for (size_t i = 0; i < gr->n_node && !rc; i++) {
        l.node = (int)i, l.np = gr->node[i];
        rc = do_node(&l);
    }
    l.np = NULL;
    if (!rc) rc = read_output(&l, gr);
out:
    for (size_t i = 0; i < l.nc; i++) free(l.c[i].f), free(l.c[i].i);
    free(l.c);
    free(l.syms);
    if (m) onnx__model_proto__free_unpacked(m, NULL);
    return rc;
}
