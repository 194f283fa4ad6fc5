/* test_train_torch.c: run a few training steps of IResNet + Partial FC + SGD on the CPU backend
 * and dump everything a PyTorch reference needs to replay and check them (torch_ref.py):
 * initial state, inputs, labels, sampled class index, embeddings, losses, gradients of the
 * first step, gradient norms, and the final weights, running statistics and momentum buffers.
 *
 * Output: one safetensors file (8-byte LE header size, JSON header, raw LE data); the run's
 * configuration is in "__metadata__".
 *
 * --sampled-update (needs --rate < 1 and --acc 1): the optimizer updates only the rows of the
 * PFC weight sampled in the step, and their momentum (ft_sgd_set_rows with
 * ft_pfc_sampled_rows); the PFC weight and its momentum buffer are then also dumped after every
 * step ("stepN.pfc.weight", "stepN.pfc.mom") so the reference can check that unsampled rows
 * are left bit-identical. Without it the update is dense (PyTorch SGD on the whole weight).
 *
 * --dtype f16|bf16: the backbone's activations and the cosine GEMMs in that storage dtype (see
 * iresnet.h and pfc.h); with f16 the loss is scaled (--loss-scale S, default 65536) with
 * GradScaler semantics (scaler.h): the first-step gradients are dumped unscaled (divided by
 * the scale, exact for a power of two), and per step "scale" (F32 [steps], the scale the step
 * ran with) and "skipped" (I64 [steps], 1 when its optimizer step was skipped) are dumped;
 * the metadata carries "dtype" and "loss_scale".
 *
 * Usage: test_train_torch --out FILE [--width 8] [--blocks 2,1,1,1] [--emb 32] [--batch 6]
 *        [--classes 40] [--rate 1] [--margin arcface|cosface] [--threshold 0] [--steps 3]
 *        [--acc 1] [--lr 0.1] [--wd 5e-4] [--threads 2] [--seed 1] [--sampled-update]
 *        [--dtype f32|f16|bf16] [--loss-scale S]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "iresnet.h"
#include "optim.h"
#include "pfc.h"
#include "scaler.h"
#include "tc_util.h"

/* ---- a minimal safetensors writer ---- */

typedef struct st_ent {
    char name[128];
    const char *dtype;
    int ndim;
    int64_t shape[4];
    void *data;
    size_t bytes;
} st_ent;

static st_ent *ents;
static int nents, capents;

static void st_add(const char *name, const char *dtype, int ndim, const int64_t *shape,
                   const void *data, size_t bytes) {
    if (nents == capents) {
        capents = capents ? 2 * capents : 256;
        ents = realloc(ents, (size_t)capents * sizeof *ents);
        if (!ents) abort();
    }
    st_ent *e = &ents[nents++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->data = malloc(bytes ? bytes : 1);
    if (!e->data) abort();
    memcpy(e->data, data, bytes);
    e->bytes = bytes;
}

static int st_write(const char *path, const char *meta) {
    size_t cap = 1 << 20, len = 0, off = 0;
    char *h = malloc(cap);
    if (!h) return 1;
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":%s", meta);
    for (int i = 0; i < nents; i++) {
        st_ent *e = &ents[i];
        if (cap - len < 512) h = realloc(h, cap *= 2);
        if (!h) return 1;
        len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                                e->name, e->dtype);
        for (int d = 0; d < e->ndim; d++)
            len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? "," : "",
                                    (long long)e->shape[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off,
                                off + e->bytes);
        off += e->bytes;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    unsigned char sz[8];
    ft_wr_le64(sz, len);
    int bad = fwrite(sz, 8, 1, f) != 1 || fwrite(h, len, 1, f) != 1;
    for (int i = 0; i < nents && !bad; i++)
        bad = ents[i].bytes && fwrite(ents[i].data, ents[i].bytes, 1, f) != 1;
    bad |= fclose(f) != 0;
    free(h);
    return bad;
}

/* ---- options ---- */

typedef struct opts {
    const char *out, *margin;
    int width, blocks[4], emb, batch, classes, steps, acc, threads;
    double rate, threshold, lr, wd;
    uint64_t seed;
    int sampled_update; /* update only the sampled PFC rows and their momentum */
    int dtype;          /* FT_F32, FT_F16, FT_BF16 */
    double loss_scale;  /* initial scale (f16) */
} opts;

static int parse(int argc, char **argv, opts *o) {
    *o = (opts){NULL, "arcface", 8,   {2, 1, 1, 1}, 32,   6, 40, 3,      1,
                2,    1.0,       0.0, 0.1,          5e-4, 1, 0,  FT_F32, 65536.0};
    for (int i = 1; i < argc; i += 2) {
        const char *k = argv[i];
        if (!strcmp(k, "--sampled-update")) {
            o->sampled_update = 1;
            i--;
            continue;
        }
        if (i + 1 >= argc) return fprintf(stderr, "option %s needs a value\n", k), 1;
        const char *v = argv[i + 1];
        if (!strcmp(k, "--out"))
            o->out = v;
        else if (!strcmp(k, "--margin"))
            o->margin = v;
        else if (!strcmp(k, "--width"))
            o->width = atoi(v);
        else if (!strcmp(k, "--blocks"))
            sscanf(v, "%d,%d,%d,%d", &o->blocks[0], &o->blocks[1], &o->blocks[2], &o->blocks[3]);
        else if (!strcmp(k, "--emb"))
            o->emb = atoi(v);
        else if (!strcmp(k, "--batch"))
            o->batch = atoi(v);
        else if (!strcmp(k, "--classes"))
            o->classes = atoi(v);
        else if (!strcmp(k, "--steps"))
            o->steps = atoi(v);
        else if (!strcmp(k, "--acc"))
            o->acc = atoi(v);
        else if (!strcmp(k, "--threads"))
            o->threads = atoi(v);
        else if (!strcmp(k, "--rate"))
            o->rate = atof(v);
        else if (!strcmp(k, "--threshold"))
            o->threshold = atof(v);
        else if (!strcmp(k, "--lr"))
            o->lr = atof(v);
        else if (!strcmp(k, "--wd"))
            o->wd = atof(v);
        else if (!strcmp(k, "--seed"))
            o->seed = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--dtype") && (o->dtype = ft_dtype_parse(v)) < 0)
            return fprintf(stderr, "--dtype: f32, f16 or bf16\n"), 1;
        else if (!strcmp(k, "--dtype"))
            continue;
        else if (!strcmp(k, "--loss-scale"))
            o->loss_scale = atof(v);
        else if (strcmp(k, "--dropout"))
            return fprintf(stderr, "unknown option %s\n", k), 1;
    }
    if (!o->out || o->acc < 1 || o->steps < 1) return fprintf(stderr, "bad options\n"), 1;
    /* the row restriction follows the index of the last prepare: with accumulation, rows
     * sampled only in earlier micro-steps would keep gradients that are never applied */
    if (o->sampled_update && !(o->rate < 1 && o->acc == 1))
        return fprintf(stderr, "--sampled-update needs --rate < 1 and --acc 1\n"), 1;
    return 0;
}

/* ---- dumping model state ---- */

static int dump_backbone(ft_iresnet *m, const char *prefix) {
    for (int i = 0; i < ft_iresnet_tensor_count(m); i++) {
        ft_tensor_info ti;
        ft_iresnet_tensor_info(m, i, &ti);
        size_t es = ft_dtype_size(ti.dtype);
        void *h = malloc(ti.numel * es);
        if (!h || ft_iresnet_tensor_get(m, i, h)) return 1;
        char name[160];
        snprintf(name, sizeof name, "%s%s", prefix, ti.name);
        st_add(name, es == 8 ? "I64" : "F32", ti.ndim, ti.shape, h, ti.numel * es);
        free(h);
    }
    return 0;
}

static int dump_f32(const char *name, const float *dev, ft_ops *o, int ndim, const int64_t *shape) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    float *h = malloc(n * sizeof(float));
    if (!h || o->download(o, h, dev, n * sizeof(float))) return 1;
    st_add(name, "F32", ndim, shape, h, n * sizeof(float));
    free(h);
    return 0;
}

/* a gradient divided by the loss scale (exact for a power of two) */
static int dump_grad(const char *name, const float *dev, ft_ops *o, int ndim, const int64_t *shape,
                     float scale) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    float *h = malloc(n * sizeof(float));
    if (!h || o->download(o, h, dev, n * sizeof(float))) return 1;
    for (size_t i = 0; i < n; i++) h[i] /= scale;
    st_add(name, "F32", ndim, shape, h, n * sizeof(float));
    free(h);
    return 0;
}

static int dump_grads(ft_ops *o, ft_sgd *s, ft_iresnet *m, ft_pfc *p, float scale) {
    int rc = 0;
    for (int i = 0; i < ft_iresnet_param_count(m) && !rc; i++) {
        ft_param pr;
        ft_iresnet_param(m, i, &pr);
        if (!pr.trainable) continue;
        char name[160];
        snprintf(name, sizeof name, "step0.grad.%s", pr.name);
        rc = dump_grad(name, pr.g, o, pr.ndim, pr.shape, scale);
    }
    ft_param pp;
    ft_pfc_param(p, &pp);
    return rc ? rc : dump_grad("step0.grad.pfc.weight", pp.g, o, pp.ndim, pp.shape, scale);
}

/* the PFC weight and its momentum buffer ("weight.momentum_buffer") as NAME.pfc.weight and
 * NAME.pfc.mom */
static int dump_head(ft_ops *o, ft_sgd *s, ft_pfc *p, const char *prefix) {
    ft_param pp;
    ft_pfc_param(p, &pp);
    char name[160];
    snprintf(name, sizeof name, "%s.pfc.weight", prefix);
    if (dump_f32(name, pp.w, o, pp.ndim, pp.shape)) return 1;
    for (int i = 0; i < ft_sgd_state_count(s); i++) {
        ft_tensor_info ti;
        ft_sgd_state_info(s, i, &ti);
        if (strcmp(ti.name, "weight.momentum_buffer")) continue;
        float *h = malloc(pp.numel * sizeof(float));
        if (!h || ft_sgd_state_get(s, i, h)) return 1;
        snprintf(name, sizeof name, "%s.pfc.mom", prefix);
        st_add(name, "F32", ti.ndim, ti.shape, h, ti.numel * 4);
        free(h);
        return 0;
    }
    return 1;
}

static int dump_final(ft_ops *o, ft_sgd *s, ft_iresnet *m, ft_pfc *p) {
    if (dump_backbone(m, "final.")) return 1;
    ft_param pp;
    ft_pfc_param(p, &pp);
    if (dump_f32("final.pfc.weight", pp.w, o, pp.ndim, pp.shape)) return 1;
    for (int i = 0; i < ft_sgd_state_count(s); i++) {
        ft_tensor_info ti;
        ft_sgd_state_info(s, i, &ti);
        float *h = malloc(ti.numel * sizeof(float));
        if (!h || ft_sgd_state_get(s, i, h)) return 1;
        char name[200];
        snprintf(name, sizeof name, "final.mom.%s", ti.name);
        st_add(name, "F32", ti.ndim, ti.shape, h, ti.numel * 4);
        free(h);
    }
    return 0;
}

/* ---- the run ---- */

typedef struct run {
    ft_ops *o;
    ft_iresnet *m;
    ft_pfc *p;
    ft_sgd *s;
    int head_id; /* optimizer id of the PFC weight */
    float *demb;
    ft_scaler scaler;
    float *scales;    /* [steps] the scale each step ran with */
    int64_t *skipped; /* [steps] */
} run;

static int setup(const opts *op, run *r) {
    ft_iresnet_config mc;
    ft_iresnet_config_init(&mc, 18);
    memcpy(mc.blocks, op->blocks, sizeof mc.blocks);
    mc.width = op->width, mc.emb = op->emb, mc.max_batch = op->batch, mc.seed = op->seed;
    mc.dtype = op->dtype;
    ft_scaler_init(&r->scaler, op->dtype == FT_F16, (float)op->loss_scale, 100);
    r->scales = calloc((size_t)op->steps, sizeof(float));
    r->skipped = calloc((size_t)op->steps, sizeof(int64_t));
    if (!r->scales || !r->skipped) return 1;
    ft_pfc_config pc;
    ft_pfc_config_init(&pc, op->classes);
    pc.emb = op->emb, pc.max_batch = op->batch, pc.sample_rate = (float)op->rate;
    pc.interclass_filtering_threshold = (float)op->threshold, pc.seed = op->seed + 1;
    pc.dtype = op->dtype;
    if (!strcmp(op->margin, "cosface")) pc.m2 = 0.0f, pc.m3 = 0.4f;
    ft_sgd_config sc = {0.9f, (float)op->wd};
    void *d;
    if (!(r->o = tc_cpu(op->threads)) || ft_iresnet_create(r->o, &mc, &r->m) ||
        ft_pfc_create(r->o, &pc, &r->p) || ft_sgd_create(r->o, &sc, &r->s) ||
        r->o->alloc(r->o, (size_t)op->batch * op->emb * sizeof(float), &d))
        return 1;
    r->demb = d;
    for (int i = 0; i < ft_iresnet_param_count(r->m); i++) {
        ft_param pr;
        ft_iresnet_param(r->m, i, &pr);
        if (ft_sgd_add_param(r->s, &pr, FT_SGD_GROUP_BACKBONE) < 0) return 1;
    }
    ft_param pp;
    ft_pfc_param(r->p, &pp);
    r->head_id = ft_sgd_add_param(r->s, &pp, FT_SGD_GROUP_HEAD);
    return r->head_id < 0;
}

static int step(const opts *op, run *r, int s) {
    char name[64];
    int B = op->batch;
    size_t nx = (size_t)B * 3 * 112 * 112;
    float *x = malloc(nx * sizeof(float));
    int32_t *lab = malloc((size_t)B * sizeof(int32_t));
    ft_rng g;
    ft_rng_seed(&g, op->seed, 100 + (uint64_t)s);
    for (size_t i = 0; i < nx; i++) x[i] = (float)(2 * ft_rng_uniform(&g) - 1);
    for (int i = 0; i < B; i++) lab[i] = (int32_t)ft_rng_below(&g, (uint64_t)op->classes);
    int64_t xs[4] = {B, 3, 112, 112}, ls[1] = {B}, es[2] = {B, op->emb}, one[1] = {1};
    snprintf(name, sizeof name, "step%d.x", s), st_add(name, "F32", 4, xs, x, nx * 4);
    snprintf(name, sizeof name, "step%d.labels", s), st_add(name, "I32", 1, ls, lab, (size_t)B * 4);
    const float *emb;
    float loss;
    int rc = r->o->upload(r->o, ft_iresnet_input(r->m), x, nx * sizeof(float));
    if (!rc) rc = ft_iresnet_forward(r->m, ft_iresnet_input(r->m), B, 1, &emb);
    if (!rc && s == 0) rc = dump_f32("step0.emb", emb, r->o, 2, es);
    if (!rc) rc = ft_pfc_prepare(r->p, lab, B, (uint64_t)s);
    const int32_t *idx;
    int cnt;
    if (!rc && op->rate < 1 && !(rc = ft_pfc_index(r->p, &idx, &cnt))) {
        int64_t is[1] = {cnt};
        snprintf(name, sizeof name, "step%d.index", s);
        st_add(name, "I32", 1, is, idx, (size_t)cnt * 4);
    }
    if (!rc && op->sampled_update) {
        const int32_t *rows;
        int nrows;
        rc = ft_pfc_sampled_rows(r->p, &rows, &nrows);
        if (!rc) rc = ft_sgd_set_rows(r->s, r->head_id, op->emb, rows, nrows);
    }
    float scale = ft_scaler_scale(&r->scaler);
    r->scales[s] = scale;
    if (!rc) rc = ft_pfc_set_loss_scale(r->p, scale);
    if (!rc) rc = ft_pfc_forward_backward(r->p, emb, r->demb, &loss);
    if (!rc) rc = ft_iresnet_backward(r->m, r->demb);
    snprintf(name, sizeof name, "step%d.loss", s), st_add(name, "F32", 1, one, &loss, 4);
    if (!rc && s == 0) rc = dump_grads(r->o, r->s, r->m, r->p, scale);
    if (!rc && (s + 1) % op->acc == 0) {
        double norm;
        int inf = 0, skip = 0;
        if (r->scaler.enabled) { /* GradScaler: unscale_, clip, step unless inf, update */
            rc = ft_sgd_unscale(r->s, 1.0f / scale, &inf);
            skip = ft_scaler_update(&r->scaler, inf);
        }
        r->skipped[s] = skip;
        if (!rc) rc = ft_sgd_clip_grad_norm(r->s, FT_SGD_GROUP_BACKBONE, 5.0, &norm);
        float nf = (float)norm;
        snprintf(name, sizeof name, "step%d.gradnorm", s), st_add(name, "F32", 1, one, &nf, 4);
        if (!rc && !skip) rc = ft_sgd_step(r->s, (float)op->lr);
        if (!rc) rc = ft_sgd_zero_grad(r->s);
        if (!rc && op->sampled_update) {
            snprintf(name, sizeof name, "step%d", s);
            rc = dump_head(r->o, r->s, r->p, name);
        }
    }
    printf("step %d loss %.6f\n", s, loss);
    free(x), free(lab);
    return rc;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(
            argc, argv, "test_train_torch",
            "usage: test_train_torch --out DIR [--width W] [--blocks a,b,c,d] [--emb E] [--batch "
            "B]\n"
            "         [--classes C] [--rate R] [--margin arcface|cosface] [--steps S] ...\n"
            "Run by torch_ref.py: forward, loss, gradients and SGD steps to compare with "
            "PyTorch.\n"))
        return 0;
    opts op;
    run r = {0};
    if (parse(argc, argv, &op)) return 1;
    if (setup(&op, &r)) return fprintf(stderr, "setup failed\n"), 1;
    size_t pb, ab, wb, tot = ft_iresnet_bytes(r.m, &pb, &ab, &wb);
    printf("model arena %.1f MiB (params+grads %.1f, activations %.1f, conv ws %.1f)\n",
           tot / 1048576.0, pb / 1048576.0, ab / 1048576.0, wb / 1048576.0);
    if (dump_backbone(r.m, "init.")) return 1;
    ft_param pp;
    ft_pfc_param(r.p, &pp);
    if (dump_f32("init.pfc.weight", pp.w, r.o, pp.ndim, pp.shape)) return 1;
    for (int s = 0; s < op.steps; s++)
        if (step(&op, &r, s)) return fprintf(stderr, "step %d failed\n", s), 1;
    if (dump_final(r.o, r.s, r.m, r.p)) return 1;
    int64_t ns[1] = {op.steps};
    if (op.dtype == FT_F16) {
        st_add("scale", "F32", 1, ns, r.scales, (size_t)op.steps * sizeof(float));
        st_add("skipped", "I64", 1, ns, r.skipped, (size_t)op.steps * sizeof(int64_t));
    }
    char meta[1024];
    snprintf(meta, sizeof meta,
             "{\"width\":\"%d\",\"blocks\":\"%d,%d,%d,%d\",\"emb\":\"%d\",\"batch\":\"%d\","
             "\"classes\":\"%d\",\"rate\":\"%.9g\",\"margin\":\"%s\",\"threshold\":\"%.9g\","
             "\"steps\":\"%d\",\"acc\":\"%d\",\"lr\":\"%.9g\",\"wd\":\"%.9g\",\"s\":\"64\","
             "\"num_sample\":\"%d\",\"update\":\"%s\",\"dtype\":\"%s\",\"loss_scale\":\"%.9g\"}",
             op.width, op.blocks[0], op.blocks[1], op.blocks[2], op.blocks[3], op.emb, op.batch,
             op.classes, op.rate, op.margin, op.threshold, op.steps, op.acc, op.lr, op.wd,
             ft_pfc_num_sample(r.p), op.sampled_update ? "sampled" : "dense",
             ft_dtype_name((ft_dtype)op.dtype), op.dtype == FT_F16 ? op.loss_scale : 1.0);
    int rc = st_write(op.out, meta);
    ft_sgd_free(r.s);
    ft_pfc_free(r.p);
    ft_iresnet_free(r.m);
    r.o->free(r.o, r.demb);
    ft_ops_free(r.o);
    free(r.scales), free(r.skipped);
    for (int i = 0; i < nents; i++) free(ents[i].data);
    free(ents);
    return rc;
}
