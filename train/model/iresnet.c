/* iresnet.c: IResNet backbone with explicit forward and backward on an ft_ops backend (see
 * iresnet.h for the architecture and the API).
 *
 * Memory: one device arena, laid out by plan() in two passes (measure, then assign):
 *   [ parameters + buffers | gradients | activations + saved BN stats | scratch | conv ws ]
 * Activations are kept for backward; backward runs on three scratch tensors P, Q, R of the
 * largest activation size, rotating as described at block_bwd.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "iresnet.h"
#include "kmath.h"

#define IMG 112

typedef struct tensor_ent {
    char name[96];
    int dtype, ndim;
    int64_t shape[4];
    size_t numel;
    float *w;     /* device value (F32) */
    float *g;     /* device gradient, NULL for buffers and frozen weights */
    int64_t *i64; /* host value (I64: num_batches_tracked) */
    int is_param, trainable;
    int init; /* INIT_* */
} tensor_ent;

enum { INIT_ZERO, INIT_ONE, INIT_CONV, INIT_PRELU, INIT_FC };

typedef struct conv_l {
    int cin, cout, r, stride, pad, h, wd; /* input height and width */
    float *w, *g;
    void *wc; /* the weight as the conv consumes it: w itself (f32) or its storage-dtype copy */
} conv_l;

typedef struct bn_l {
    int c, hw;
    float *w, *b, *rm, *rv, *gw, *gb, *sm, *si;
    int64_t nbt;
} bn_l;

typedef struct prelu_l {
    int c;
    float *a, *ga;
} prelu_l;

typedef struct block_l {
    bn_l bn1;
    conv_l conv1;
    bn_l bn2;
    prelu_l prelu;
    conv_l conv2;
    bn_l bn3;
    int has_ds;
    conv_l ds;
    bn_l ds_bn;
    int cin, cout, h, w, oh, ow;
    int p_first;                             /* its first parameter's index (grad hook) */
    const void *x;                           /* block input: previous output (activation) */
    void *a1, *a2, *a3, *a4, *a5, *d1, *out; /* see block_fwd */
} block_l;

/* regions of the arena, in order */
enum { R_CONV, R_PARAM, R_SHADOW, R_GRAD, R_ACT, R_COUNT };

struct ft_iresnet {
    ft_ops *o;
    ft_iresnet_config cfg;
    ft_dtype dt; /* storage dtype of activations and their gradients */
    void *arena;
    size_t bytes, param_bytes, grad_bytes, act_bytes, ws_bytes;
    size_t region[R_COUNT];
    double flops; /* forward FLOPs per sample: convs and fc */
    char plan_desc[160];
    float *grad_base;
    float *conv_base;  /* every conv weight, contiguous: [conv_numel] f32 */
    void *shadow_base; /* their storage-dtype copies (dt != F32) */
    size_t conv_numel;
    int shadow_stale; /* the copies must be refreshed before the next forward */
    /* layers */
    conv_l conv1;
    bn_l bn1;
    prelu_l prelu;
    block_l *blocks;
    int nblocks;
    bn_l bn2, features;
    float *fc_w, *fc_b, *fc_gw, *fc_gb;
    int flat; /* 8w * 7 * 7 */
    /* input [max_batch, 3, 112, 112] f32 NCHW (the caller's upload buffer) */
    float *input;
    /* activations [max_batch, ...] of dtype dt */
    void *xin, *c1, *b1, *p1, *fbn, *fd;
    /* fc output and embeddings [max_batch, emb] f32 */
    float *z, *emb;
    uint8_t *mask;
    void *sP, *sQ, *sR; /* backward scratch (dt) */
    float *gz;          /* d z (f32) */
    void *ws;
    /* last forward */
    int batch, trained;
    uint64_t drop_calls;
    uint64_t *d_seed; /* dropout: the next train forward's seed, on the device */
    int seed_staged;  /* d_seed holds the seed of train forward drop_calls - 1 */
    /* state_dict */
    tensor_ent *t;
    int nt, tcap;
    /* ft_iresnet_set_grad_hook; p_bn2: bn2's first parameter index */
    ft_iresnet_grad_hook hook;
    void *hook_ctx;
    int p_bn2;
};

/* ---- planning ---- */

typedef struct plan_ctx {
    ft_iresnet *m;
    ft_arena ar[R_COUNT];
    size_t conv_n;          /* conv weight floats so far (R_CONV, unpadded) */
    size_t ws_max, act_max; /* bytes of conv workspace; elements of the largest activation */
    double flops;           /* forward FLOPs per sample of the convs so far (2 per MAC) */
} plan_ctx;

static float *take_f32(plan_ctx *pc, int region, size_t n) {
    return ft_arena_take(&pc->ar[region], FT_F32, n);
}

static tensor_ent *reg(plan_ctx *pc, const char *prefix, const char *leaf, int ndim,
                       const int64_t *shape, int init) {
    ft_iresnet *m = pc->m;
    tensor_ent *e = &m->t[m->nt++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s%s%s", prefix, *prefix ? "." : "", leaf);
    e->dtype = FT_F32;
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i], e->numel *= (size_t)shape[i];
    e->init = init;
    if (init == INIT_CONV) { /* conv weights sit together, unpadded: one cast refreshes all */
        e->w = (float *)pc->ar[R_CONV].base + pc->conv_n;
        pc->conv_n += e->numel;
    } else {
        e->w = take_f32(pc, R_PARAM, e->numel);
    }
    return e;
}

static void reg_param(plan_ctx *pc, const char *prefix, const char *leaf, int ndim,
                      const int64_t *shape, int init, float **w, float **g, int trainable) {
    tensor_ent *e = reg(pc, prefix, leaf, ndim, shape, init);
    e->is_param = 1;
    e->trainable = trainable;
    if (trainable) e->g = take_f32(pc, R_GRAD, e->numel);
    *w = e->w;
    if (g) *g = e->g;
}

static void plan_conv(plan_ctx *pc, conv_l *cv, const char *prefix, int batch) {
    int64_t sh[4] = {cv->cout, cv->cin, cv->r, cv->r};
    reg_param(pc, prefix, "weight", 4, sh, INIT_CONV, &cv->w, &cv->g, 1);
    ft_conv_desc d;
    if (ft_conv_desc_init(&d, batch, cv->cin, cv->h, cv->wd, cv->cout, cv->r, cv->stride,
                          cv->pad) == 0) {
        size_t b = pc->m->o->conv_ws_bytes(pc->m->o, &d, pc->m->dt);
        if (b > pc->ws_max) pc->ws_max = b;
        pc->flops += 2.0 * cv->cout * cv->cin * cv->r * cv->r * d.oh * d.ow;
    }
}

static void plan_bn(plan_ctx *pc, bn_l *bn, const char *prefix, int frozen_w) {
    int64_t sh[1] = {bn->c};
    reg_param(pc, prefix, "weight", 1, sh, INIT_ONE, &bn->w, &bn->gw, !frozen_w);
    reg_param(pc, prefix, "bias", 1, sh, INIT_ZERO, &bn->b, &bn->gb, 1);
    bn->rm = reg(pc, prefix, "running_mean", 1, sh, INIT_ZERO)->w;
    bn->rv = reg(pc, prefix, "running_var", 1, sh, INIT_ONE)->w;
    tensor_ent *e = &pc->m->t[pc->m->nt++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s.num_batches_tracked", prefix);
    e->dtype = FT_I64;
    e->numel = 1;
    e->i64 = &bn->nbt;
    bn->sm = take_f32(pc, R_ACT, (size_t)bn->c);
    bn->si = take_f32(pc, R_ACT, (size_t)bn->c);
}

/* an activation [max_batch, per_sample] of the storage dtype */
static void *act(plan_ctx *pc, size_t per_sample) {
    size_t n = per_sample * (size_t)pc->m->cfg.max_batch;
    if (n > pc->act_max) pc->act_max = n;
    return ft_arena_take(&pc->ar[R_ACT], pc->m->dt, n);
}
/* the same in fp32 (the layers after flatten) */
static float *act_f32(plan_ctx *pc, size_t per_sample) {
    return take_f32(pc, R_ACT, per_sample * (size_t)pc->m->cfg.max_batch);
}

static void plan_block(plan_ctx *pc, block_l *b, const char *prefix, int batch) {
    char p[64];
    b->bn1.c = b->cin, b->bn1.hw = b->h * b->w;
    b->conv1 = (conv_l){b->cin, b->cout, 3, 1, 1, b->h, b->w, NULL, NULL, NULL};
    b->bn2.c = b->cout, b->bn2.hw = b->h * b->w;
    b->prelu.c = b->cout;
    b->conv2 = (conv_l){b->cout, b->cout, 3, b->h / b->oh, 1, b->h, b->w, NULL, NULL, NULL};
    b->bn3.c = b->cout, b->bn3.hw = b->oh * b->ow;
    snprintf(p, sizeof p, "%s.bn1", prefix), plan_bn(pc, &b->bn1, p, 0);
    snprintf(p, sizeof p, "%s.conv1", prefix), plan_conv(pc, &b->conv1, p, batch);
    snprintf(p, sizeof p, "%s.bn2", prefix), plan_bn(pc, &b->bn2, p, 0);
    int64_t sh[1] = {b->cout};
    snprintf(p, sizeof p, "%s.prelu", prefix);
    reg_param(pc, p, "weight", 1, sh, INIT_PRELU, &b->prelu.a, &b->prelu.ga, 1);
    snprintf(p, sizeof p, "%s.conv2", prefix), plan_conv(pc, &b->conv2, p, batch);
    snprintf(p, sizeof p, "%s.bn3", prefix), plan_bn(pc, &b->bn3, p, 0);
    if (b->has_ds) {
        b->ds = (conv_l){b->cin, b->cout, 1, b->h / b->oh, 0, b->h, b->w, NULL, NULL, NULL};
        b->ds_bn.c = b->cout, b->ds_bn.hw = b->oh * b->ow;
        snprintf(p, sizeof p, "%s.downsample.0", prefix), plan_conv(pc, &b->ds, p, batch);
        snprintf(p, sizeof p, "%s.downsample.1", prefix), plan_bn(pc, &b->ds_bn, p, 0);
    }
    size_t in_hw = (size_t)b->h * b->w, out_hw = (size_t)b->oh * b->ow;
    b->a1 = act(pc, b->cin * in_hw);
    b->a2 = act(pc, b->cout * in_hw);
    b->a3 = act(pc, b->cout * in_hw);
    b->a4 = act(pc, b->cout * in_hw);
    b->a5 = act(pc, b->cout * out_hw);
    b->d1 = b->has_ds ? act(pc, b->cout * out_hw) : NULL;
    b->out = act(pc, b->cout * out_hw);
}

/* every conv's weight copy in the storage dtype: element i of the shadow block mirrors
 * element i of the conv block */
static void point_shadows(ft_iresnet *m, conv_l *cv) {
    size_t i = (size_t)(cv->w - m->conv_base);
    cv->wc = m->dt == FT_F32 ? (void *)cv->w : (char *)m->shadow_base + i * ft_dtype_size(m->dt);
}

/* One pass over the architecture. arena == 0 measures (the pointers are then meaningless) and
 * records the region sizes; the second pass lays the regions out from arena. */
static void plan(ft_iresnet *m, uintptr_t arena) {
    const ft_iresnet_config *c = &m->cfg;
    int w = c->width, B = c->max_batch;
    plan_ctx pc = {.m = m};
    uintptr_t at = arena;
    for (int r = 0; r < R_COUNT; r++) ft_arena_init(&pc.ar[r], at), at += m->region[r];
    m->conv_base = (float *)pc.ar[R_CONV].base;
    m->shadow_base = (void *)pc.ar[R_SHADOW].base;
    m->grad_base = (float *)pc.ar[R_GRAD].base;
    m->nt = 0;
    m->conv1 = (conv_l){3, w, 3, 1, 1, IMG, IMG, NULL, NULL, NULL};
    plan_conv(&pc, &m->conv1, "conv1", B);
    m->bn1.c = w, m->bn1.hw = IMG * IMG;
    plan_bn(&pc, &m->bn1, "bn1", 0);
    int64_t sh[2] = {w, 0};
    m->prelu.c = w;
    reg_param(&pc, "prelu", "weight", 1, sh, INIT_PRELU, &m->prelu.a, &m->prelu.ga, 1);
    m->input = act_f32(&pc, 3 * IMG * IMG);
    m->xin = act(&pc, 3 * IMG * IMG);
    m->c1 = act(&pc, (size_t)w * IMG * IMG);
    m->b1 = act(&pc, (size_t)w * IMG * IMG);
    m->p1 = act(&pc, (size_t)w * IMG * IMG);
    const void *prev = m->p1;
    int inpl = w, hw = IMG, bi = 0;
    for (int s = 0; s < 4; s++) {
        for (int j = 0; j < c->blocks[s]; j++, bi++) {
            block_l *b = &m->blocks[bi];
            memset(b, 0, sizeof *b);
            b->cin = j == 0 ? inpl : w << s;
            b->cout = w << s;
            b->h = b->w = j == 0 ? hw : hw / 2;
            b->oh = b->ow = hw / 2;
            b->has_ds = j == 0;
            b->x = prev;
            char prefix[32];
            snprintf(prefix, sizeof prefix, "layer%d.%d", s + 1, j);
            plan_block(&pc, b, prefix, B);
            prev = b->out;
        }
        inpl = w << s;
        hw /= 2;
    }
    m->flat = 8 * w * 7 * 7;
    m->bn2.c = 8 * w, m->bn2.hw = 49;
    plan_bn(&pc, &m->bn2, "bn2", 0);
    int64_t fsh[2] = {c->emb, m->flat}, bsh[1] = {c->emb};
    reg_param(&pc, "fc", "weight", 2, fsh, INIT_FC, &m->fc_w, &m->fc_gw, 1);
    reg_param(&pc, "fc", "bias", 1, bsh, INIT_FC, &m->fc_b, &m->fc_gb, 1);
    m->features.c = c->emb, m->features.hw = 1;
    plan_bn(&pc, &m->features, "features", 1);
    m->fbn = act(&pc, (size_t)m->flat);
    m->fd = c->dropout > 0 ? act(&pc, (size_t)m->flat) : m->fbn;
    m->mask = c->dropout > 0 ? ft_arena_take(&pc.ar[R_ACT], FT_U8, (size_t)m->flat * B) : NULL;
    m->d_seed = c->dropout > 0 ? ft_arena_take(&pc.ar[R_ACT], FT_U8, sizeof(uint64_t)) : NULL;
    m->z = act_f32(&pc, (size_t)c->emb);
    m->emb = act_f32(&pc, (size_t)c->emb);
    m->gz = act_f32(&pc, (size_t)c->emb);
    size_t big = pc.act_max;
    m->sP = ft_arena_take(&pc.ar[R_ACT], m->dt, big);
    m->sQ = ft_arena_take(&pc.ar[R_ACT], m->dt, big);
    m->sR = ft_arena_take(&pc.ar[R_ACT], m->dt, big);
    m->ws = pc.ws_max ? ft_arena_take(&pc.ar[R_ACT], FT_U8, pc.ws_max) : NULL;
    /* the conv block (unpadded) and its shadow copy */
    m->conv_numel = pc.conv_n;
    ft_arena_take(&pc.ar[R_CONV], FT_F32, pc.conv_n);
    if (m->dt != FT_F32) ft_arena_take(&pc.ar[R_SHADOW], m->dt, pc.conv_n);
    point_shadows(m, &m->conv1);
    for (int i = 0; i < m->nblocks; i++) {
        block_l *b = &m->blocks[i];
        point_shadows(m, &b->conv1);
        point_shadows(m, &b->conv2);
        if (b->has_ds) point_shadows(m, &b->ds);
    }
    if (arena == 0) {
        for (int r = 0; r < R_COUNT; r++) m->region[r] = pc.ar[r].off;
        m->ws_bytes = pc.ws_max;
        m->flops = pc.flops + 2.0 * m->flat * c->emb; /* + fc */
        /* what the plan holds, by dtype */
        ft_arena all;
        ft_arena_init(&all, 0);
        for (int r = 0; r < R_COUNT; r++)
            for (int dt = 0; dt < FT_NDTYPES; dt++) all.bytes[dt] += pc.ar[r].bytes[dt];
        ft_arena_describe(&all, m->plan_desc, sizeof m->plan_desc);
    }
}

/* ---- create / free ---- */

int ft_iresnet_config_init(ft_iresnet_config *cfg, int depth) {
    static const int tab[5][5] = {{18, 2, 2, 2, 2},
                                  {34, 3, 4, 6, 3},
                                  {50, 3, 4, 14, 3},
                                  {100, 3, 13, 30, 3},
                                  {200, 6, 26, 60, 6}};
    for (int i = 0; i < 5; i++)
        if (tab[i][0] == depth) {
            *cfg = (ft_iresnet_config){{tab[i][1], tab[i][2], tab[i][3], tab[i][4]},
                                       64,
                                       512,
                                       0.0f,
                                       128,
                                       2048,
                                       1e-5f,
                                       0.1f,
                                       FT_F32};
            return 0;
        }
    return FT_EARG;
}

static int init_tensor(ft_iresnet *m, int i) {
    tensor_ent *e = &m->t[i];
    if (e->dtype == FT_I64) {
        *e->i64 = 0;
        return 0;
    }
    float *h = malloc(e->numel * sizeof(float));
    if (!h) return -ENOMEM;
    ft_rng r;
    ft_rng_seed(&r, m->cfg.seed, (uint64_t)i);
    double bound = e->ndim == 2 ? 1.0 / sqrt((double)e->shape[1]) : 1.0 / sqrt((double)m->flat);
    for (size_t k = 0; k < e->numel; k++) {
        switch (e->init) {
        case INIT_ZERO:
            h[k] = 0.0f;
            break;
        case INIT_ONE:
            h[k] = 1.0f;
            break;
        case INIT_PRELU:
            h[k] = 0.25f;
            break;
        case INIT_CONV:
            h[k] = (float)(0.1 * ft_rng_normal(&r));
            break;
        default:
            h[k] = (float)((2.0 * ft_rng_uniform(&r) - 1.0) * bound);
            break;
        }
    }
    int rc = m->o->upload(m->o, e->w, h, e->numel * sizeof(float));
    free(h);
    return rc;
}

/* the ops the backbone calls on activations of its storage dtype */
static const int dtype_ops[] = {
    FT_OP_act_import,   FT_OP_conv_fwd,    FT_OP_conv_bwd_data, FT_OP_conv_bwd_filter,
    FT_OP_bn_fwd_train, FT_OP_bn_fwd_eval, FT_OP_bn_bwd,        FT_OP_prelu_fwd,
    FT_OP_prelu_bwd,    FT_OP_add,         FT_OP_fc_fwd,        FT_OP_fc_bwd,
    FT_OP_dropout_fwd,  FT_OP_dropout_bwd, FT_OP_cast};

static int check_config(const ft_iresnet_config *c) {
    if (c->width < 1 || c->width > 1024 || c->emb < 1 || c->max_batch < 1) return FT_EARG;
    if (!ft_dtype_is_float((ft_dtype)c->dtype)) return FT_EARG;
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f) || !(c->bn_eps > 0.0f)) return FT_EARG;
    for (int i = 0; i < 4; i++)
        if (c->blocks[i] < 1 || c->blocks[i] > 1000) return FT_EARG;
    return 0;
}

/* create's steps up to the measuring plan; with arena, also the allocation and the rest */
static int build(ft_ops *o, const ft_iresnet_config *cfg, int allocate, ft_iresnet **out,
                 size_t *bytes) {
    int rc = check_config(cfg);
    if (rc) return rc;
    for (size_t i = 0; i < sizeof dtype_ops / sizeof dtype_ops[0]; i++)
        if (!ft_ops_supports(o, dtype_ops[i], (ft_dtype)cfg->dtype)) return FT_ENOTSUP;
    ft_iresnet *m = calloc(1, sizeof *m);
    if (!m) return -ENOMEM;
    m->o = o;
    m->cfg = *cfg;
    m->dt = (ft_dtype)cfg->dtype;
    m->nblocks = cfg->blocks[0] + cfg->blocks[1] + cfg->blocks[2] + cfg->blocks[3];
    m->tcap = 24 * m->nblocks + 32;
    m->blocks = calloc((size_t)m->nblocks, sizeof *m->blocks);
    m->t = calloc((size_t)m->tcap, sizeof *m->t);
    if (!m->blocks || !m->t) {
        rc = -ENOMEM;
        goto fail;
    }
    plan(m, 0); /* measure */
    m->param_bytes = m->region[R_CONV] + m->region[R_PARAM] + m->region[R_SHADOW];
    m->grad_bytes = m->region[R_GRAD];
    m->act_bytes = m->region[R_ACT] - (m->ws_bytes + 63) / 64 * 64;
    for (int r = 0; r < R_COUNT; r++) m->bytes += m->region[r];
    if (bytes) *bytes = m->bytes;
    if (!allocate) {
        ft_iresnet_free(m);
        return 0;
    }
    rc = o->alloc(o, m->bytes, &m->arena);
    if (rc) goto fail;
    plan(m, (uintptr_t)m->arena);
    m->shadow_stale = 1;
    for (int i = 0; i < m->nt && !rc; i++) rc = init_tensor(m, i);
    if (!rc) rc = ft_iresnet_zero_grad(m);
    if (rc) goto fail;
    *out = m;
    return 0;
fail:
    ft_iresnet_free(m);
    return rc;
}

int ft_iresnet_create(ft_ops *o, const ft_iresnet_config *cfg, ft_iresnet **out) {
    return build(o, cfg, 1, out, NULL);
}

int ft_iresnet_plan_bytes(ft_ops *o, const ft_iresnet_config *cfg, size_t *bytes) {
    return build(o, cfg, 0, NULL, bytes);
}

void ft_iresnet_free(ft_iresnet *m) {
    if (!m) return;
    if (m->arena) m->o->free(m->o, m->arena);
    free(m->blocks);
    free(m->t);
    free(m);
}

double ft_iresnet_flops(const ft_iresnet *m) {
    return m->flops;
}

const ft_iresnet_config *ft_iresnet_get_config(const ft_iresnet *m) {
    return &m->cfg;
}

size_t ft_iresnet_bytes(const ft_iresnet *m, size_t *param_bytes, size_t *act_bytes,
                        size_t *ws_bytes) {
    if (param_bytes) *param_bytes = m->param_bytes + m->grad_bytes;
    if (act_bytes) *act_bytes = m->act_bytes;
    if (ws_bytes) *ws_bytes = m->ws_bytes;
    return m->bytes;
}

const char *ft_iresnet_plan_desc(const ft_iresnet *m) {
    return m->plan_desc;
}

void ft_iresnet_params_changed(ft_iresnet *m) {
    m->shadow_stale = 1;
}

float *ft_iresnet_input(ft_iresnet *m) {
    return m->input;
}

/* ---- layer helpers ---- */

static int conv_desc(const conv_l *cv, int n, ft_conv_desc *d) {
    return ft_conv_desc_init(d, n, cv->cin, cv->h, cv->wd, cv->cout, cv->r, cv->stride, cv->pad);
}

static int conv_fwd(ft_iresnet *m, const conv_l *cv, const void *x, void *y) {
    ft_conv_desc d;
    int rc = conv_desc(cv, m->batch, &d);
    return rc ? rc : m->o->conv_fwd(m->o, &d, m->dt, x, cv->wc, y, m->ws);
}

/* dx may be NULL (input image). */
static int conv_bwd(ft_iresnet *m, const conv_l *cv, const void *x, const void *dy, void *dx) {
    ft_conv_desc d;
    int rc = conv_desc(cv, m->batch, &d);
    if (!rc) rc = m->o->conv_bwd_filter(m->o, &d, m->dt, x, dy, cv->g, m->ws);
    if (!rc && dx) rc = m->o->conv_bwd_data(m->o, &d, m->dt, dy, cv->wc, dx, m->ws);
    return rc;
}

/* batch norm on activations of dtype dt (the backbone's, or fp32 for features) */
static int bn_fwd(ft_iresnet *m, bn_l *bn, ft_dtype dt, const void *x, void *y) {
    const ft_iresnet_config *c = &m->cfg;
    if (!m->trained)
        return m->o->bn_fwd_eval(m->o, dt, m->batch, bn->c, bn->hw, c->bn_eps, x, bn->w, bn->b,
                                 bn->rm, bn->rv, y);
    bn->nbt++;
    return m->o->bn_fwd_train(m->o, dt, m->batch, bn->c, bn->hw, c->bn_eps, c->bn_momentum, x,
                              bn->w, bn->b, y, bn->rm, bn->rv, bn->sm, bn->si);
}

static int bn_bwd(ft_iresnet *m, bn_l *bn, ft_dtype dt, const void *x, const void *dy, void *dx) {
    return m->o->bn_bwd(m->o, dt, m->batch, bn->c, bn->hw, x, dy, bn->w, bn->sm, bn->si, dx, bn->gw,
                        bn->gb);
}

static size_t numel(int n, int c, int h, int w) {
    return (size_t)n * c * h * w;
}

/* the conv weights' storage-dtype copies, from the fp32 weights (one cast over the block) */
static int refresh_shadows(ft_iresnet *m) {
    if (m->dt == FT_F32) return 0;
    int rc = m->o->cast(m->o, m->conv_numel, FT_F32, m->conv_base, m->dt, m->shadow_base);
    if (!rc) m->shadow_stale = 0;
    return rc;
}

/* ---- forward ---- */

/* a1 = bn1(x); a2 = conv1(a1); a3 = bn2(a2); a4 = prelu(a3); a5 = conv2(a4);
 * out = bn3(a5) + (downsample ? ds_bn(d1 = ds(x)) : x) */
static int block_fwd(ft_iresnet *m, block_l *b) {
    ft_ops *o = m->o;
    ft_dtype dt = m->dt;
    int rc = bn_fwd(m, &b->bn1, dt, b->x, b->a1);
    if (!rc) rc = conv_fwd(m, &b->conv1, b->a1, b->a2);
    if (!rc) rc = bn_fwd(m, &b->bn2, dt, b->a2, b->a3);
    if (!rc) rc = o->prelu_fwd(o, dt, m->batch, b->cout, b->h * b->w, b->a3, b->prelu.a, b->a4);
    if (!rc) rc = conv_fwd(m, &b->conv2, b->a4, b->a5);
    if (!rc) rc = bn_fwd(m, &b->bn3, dt, b->a5, b->out);
    size_t n_out = numel(m->batch, b->cout, b->oh, b->ow);
    if (rc) return rc;
    if (!b->has_ds) return o->add(o, dt, n_out, b->out, b->x, b->out);
    rc = conv_fwd(m, &b->ds, b->x, b->d1);
    if (!rc) rc = bn_fwd(m, &b->ds_bn, dt, b->d1, m->sP);
    if (!rc) rc = o->add(o, dt, n_out, b->out, m->sP, b->out);
    return rc;
}

int ft_iresnet_forward(ft_iresnet *m, const float *x, int batch, int train, const float **emb) {
    ft_ops *o = m->o;
    const ft_iresnet_config *c = &m->cfg;
    ft_dtype dt = m->dt;
    if (batch < 1 || batch > c->max_batch || (train && batch < 2)) return FT_EARG;
    m->batch = batch, m->trained = train ? 1 : 0;
    /* a train forward is followed by an optimizer step: refresh now and after it */
    int rc = train || m->shadow_stale ? refresh_shadows(m) : 0;
    if (train) m->shadow_stale = 1;
    if (!rc) rc = o->act_import(o, dt, batch, 3, IMG * IMG, x, m->xin);
    if (!rc) rc = conv_fwd(m, &m->conv1, m->xin, m->c1);
    if (!rc) rc = bn_fwd(m, &m->bn1, dt, m->c1, m->b1);
    if (!rc) rc = o->prelu_fwd(o, dt, batch, c->width, IMG * IMG, m->b1, m->prelu.a, m->p1);
    for (int i = 0; i < m->nblocks && !rc; i++) rc = block_fwd(m, &m->blocks[i]);
    if (!rc) rc = bn_fwd(m, &m->bn2, dt, m->blocks[m->nblocks - 1].out, m->fbn);
    if (!rc && c->dropout > 0 && train) {
        if (!m->seed_staged) rc = ft_iresnet_stage(m);
        m->seed_staged = 0;
        if (!rc)
            rc = o->dropout_fwd(o, dt, batch, 8 * c->width, 49, c->dropout, m->d_seed, m->fbn,
                                m->fd, m->mask);
    } else if (!rc && c->dropout > 0) {
        rc = o->copy(o, m->fd, m->fbn, (size_t)batch * m->flat * ft_dtype_size(dt));
    }
    if (!rc) rc = o->fc_fwd(o, dt, batch, 8 * c->width, 49, c->emb, m->fd, m->fc_w, m->fc_b, m->z);
    if (!rc) rc = bn_fwd(m, &m->features, FT_F32, m->z, m->emb);
    if (rc) {
        m->trained = 0;
        return rc;
    }
    *emb = m->emb;
    return 0;
}

/* ---- backward ---- */

/* Gradient of the block output in *P; on return the block input's gradient is in *P and the
 * other two scratch tensors are free. */
static int block_bwd(ft_iresnet *m, block_l *b, void **P, void **Q, void **R) {
    ft_ops *o = m->o;
    ft_dtype dt = m->dt;
    int B = m->batch, in_hw = b->h * b->w;
    int rc = bn_bwd(m, &b->bn3, dt, b->a5, *P, *Q);      /* Q = d a5 */
    if (!rc) rc = conv_bwd(m, &b->conv2, b->a4, *Q, *R); /* R = d a4 */
    if (!rc) rc = o->prelu_bwd(o, dt, B, b->cout, in_hw, b->a3, b->prelu.a, *R, *R, b->prelu.ga);
    if (!rc) rc = bn_bwd(m, &b->bn2, dt, b->a2, *R, *R); /* R = d a2 */
    if (!rc) rc = conv_bwd(m, &b->conv1, b->a1, *R, *Q); /* Q = d a1 */
    if (!rc) rc = bn_bwd(m, &b->bn1, dt, b->x, *Q, *Q);  /* Q = d x (main path) */
    if (rc) return rc;
    size_t n_in = numel(B, b->cin, b->h, b->w);
    if (b->has_ds) {
        rc = bn_bwd(m, &b->ds_bn, dt, b->d1, *P, *R);    /* R = d d1 */
        if (!rc) rc = conv_bwd(m, &b->ds, b->x, *R, *P); /* P = d x (shortcut) */
    }
    if (!rc) rc = o->add(o, dt, n_in, *Q, *P, *Q);
    void *t = *P;
    *P = *Q, *Q = t;
    return rc;
}

int ft_iresnet_backward(ft_iresnet *m, const float *demb) {
    ft_ops *o = m->o;
    const ft_iresnet_config *c = &m->cfg;
    ft_dtype dt = m->dt;
    int B = m->batch;
    if (!m->trained) return FT_EARG;
    void *P = m->sP, *Q = m->sQ, *R = m->sR;
    int rc = bn_bwd(m, &m->features, FT_F32, m->z, demb, m->gz);
    if (!rc)
        rc = o->fc_bwd(o, dt, B, 8 * c->width, 49, c->emb, m->fd, m->fc_w, m->gz, Q, m->fc_gw,
                       m->fc_gb);
    if (!rc && c->dropout > 0)
        rc = o->dropout_bwd(o, dt, B, 8 * c->width, 49, c->dropout, m->mask, Q, Q);
    if (!rc) rc = bn_bwd(m, &m->bn2, dt, m->blocks[m->nblocks - 1].out, Q, P);
    if (!rc && m->hook) rc = m->hook(m->hook_ctx, m->p_bn2);
    for (int i = m->nblocks - 1; i >= 0 && !rc; i--) {
        rc = block_bwd(m, &m->blocks[i], &P, &Q, &R);
        if (!rc && m->hook) rc = m->hook(m->hook_ctx, m->blocks[i].p_first);
    }
    if (!rc) rc = o->prelu_bwd(o, dt, B, c->width, IMG * IMG, m->b1, m->prelu.a, P, P, m->prelu.ga);
    if (!rc) rc = bn_bwd(m, &m->bn1, dt, m->c1, P, P);
    if (!rc) rc = conv_bwd(m, &m->conv1, m->xin, P, NULL);
    return rc;
}

/* The parameter index (ft_iresnet_param's order) of the tensor whose gradient is g, or a
 * large number when none is (frozen weights have no gradient). */
static int param_index(const ft_iresnet *m, const float *g) {
    for (int k = 0, i = 0; k < m->nt; k++) {
        if (!m->t[k].is_param) continue;
        if (g && m->t[k].g == g) return i;
        i++;
    }
    return 1 << 30;
}

static int min_index(const ft_iresnet *m, const float *const *g, int n) {
    int lo = 1 << 30;
    for (int i = 0; i < n; i++) {
        int k = param_index(m, g[i]);
        if (k < lo) lo = k;
    }
    return lo;
}

void ft_iresnet_set_grad_hook(ft_iresnet *m, ft_iresnet_grad_hook fn, void *ctx) {
    m->hook = fn, m->hook_ctx = ctx;
    if (!fn) return;
    const float *bn2[] = {m->bn2.gw, m->bn2.gb};
    m->p_bn2 = min_index(m, bn2, 2);
    for (int i = 0; i < m->nblocks; i++) {
        block_l *b = &m->blocks[i];
        const float *g[] = {b->bn1.gw,
                            b->bn1.gb,
                            b->conv1.g,
                            b->bn2.gw,
                            b->bn2.gb,
                            b->prelu.ga,
                            b->conv2.g,
                            b->bn3.gw,
                            b->bn3.gb,
                            b->has_ds ? b->ds.g : NULL,
                            b->has_ds ? b->ds_bn.gw : NULL,
                            b->has_ds ? b->ds_bn.gb : NULL};
        b->p_first = min_index(m, g, (int)(sizeof g / sizeof g[0]));
    }
}

int ft_iresnet_zero_grad(ft_iresnet *m) {
    return m->o->zero(m->o, m->grad_base, m->grad_bytes);
}

uint64_t ft_iresnet_get_rng_state(const ft_iresnet *m) {
    return m->drop_calls;
}

void ft_iresnet_set_rng_state(ft_iresnet *m, uint64_t state) {
    m->drop_calls = state;
    m->seed_staged = 0;
}

void ft_iresnet_replayed(ft_iresnet *m, int batch) {
    /* what a train forward changes on the host: the BN layers' num_batches_tracked (every
     * BN layer runs once per train forward) and the state backward and the next forward read */
    for (int i = 0; i < m->nt; i++)
        if (m->t[i].i64) (*m->t[i].i64)++;
    m->batch = batch, m->trained = 1, m->shadow_stale = 1;
}

int ft_iresnet_stage(ft_iresnet *m) {
    if (!(m->cfg.dropout > 0)) return 0;
    uint64_t seed = ft_hash64(m->cfg.seed, FT_KM_DROPOUT_KEY, m->drop_calls);
    int rc = m->o->upload(m->o, m->d_seed, &seed, sizeof seed);
    if (!rc) m->drop_calls++, m->seed_staged = 1;
    return rc;
}

/* ---- tensors ---- */

int ft_iresnet_tensor_count(const ft_iresnet *m) {
    return m->nt;
}

static void fill_info(const tensor_ent *e, ft_tensor_info *info) {
    info->name = e->name;
    info->dtype = e->dtype;
    info->ndim = e->ndim;
    for (int k = 0; k < 4; k++) info->shape[k] = k < e->ndim ? e->shape[k] : 0;
    info->numel = e->numel;
}

int ft_iresnet_tensor_info(const ft_iresnet *m, int i, ft_tensor_info *info) {
    if (i < 0 || i >= m->nt) return FT_EARG;
    fill_info(&m->t[i], info);
    return 0;
}

int ft_iresnet_tensor_get(ft_iresnet *m, int i, void *host) {
    if (i < 0 || i >= m->nt) return FT_EARG;
    tensor_ent *e = &m->t[i];
    if (e->dtype == FT_I64) {
        memcpy(host, e->i64, sizeof(int64_t));
        return 0;
    }
    return m->o->download(m->o, host, e->w, e->numel * sizeof(float));
}

int ft_iresnet_tensor_set(ft_iresnet *m, int i, const void *host) {
    if (i < 0 || i >= m->nt) return FT_EARG;
    tensor_ent *e = &m->t[i];
    if (e->dtype == FT_I64) {
        memcpy(e->i64, host, sizeof(int64_t));
        return 0;
    }
    m->shadow_stale = 1;
    return m->o->upload(m->o, e->w, host, e->numel * sizeof(float));
}

int ft_iresnet_tensor_find(const ft_iresnet *m, const char *name) {
    for (int i = 0; i < m->nt; i++)
        if (strcmp(m->t[i].name, name) == 0) return i;
    return -1;
}

int ft_iresnet_grad_get(ft_iresnet *m, int i, float *host) {
    if (i < 0 || i >= m->nt || !m->t[i].g) return FT_EARG;
    return m->o->download(m->o, host, m->t[i].g, m->t[i].numel * sizeof(float));
}

int ft_iresnet_param_count(const ft_iresnet *m) {
    int n = 0;
    for (int i = 0; i < m->nt; i++) n += m->t[i].is_param;
    return n;
}

int ft_iresnet_param(ft_iresnet *m, int i, ft_param *p) {
    for (int k = 0; k < m->nt; k++) {
        tensor_ent *e = &m->t[k];
        if (!e->is_param || i-- > 0) continue;
        *p = (ft_param){e->name, e->w, e->g, e->numel, e->ndim, {0, 0, 0, 0}, e->trainable};
        for (int d = 0; d < e->ndim; d++) p->shape[d] = e->shape[d];
        return 0;
    }
    return FT_EARG;
}
