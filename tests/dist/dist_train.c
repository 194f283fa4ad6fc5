/* dist_train.c: a few distributed training steps of IResNet + Partial FC + SGD, one MPI rank
 * per process (mpirun -np W), dumped for the PyTorch DDP oracle (tests/pyref/ddp.py, driven by
 * test_ddp.py).
 *
 * Each rank builds the backbone from seed + rank (so only the broadcast from rank 0 can make
 * them equal) and its Partial FC shard of the classes; then per step, exactly as ft-train's
 * loop does it through train/model/dist.h: forward of the rank's own batch, all-gather of
 * embeddings and labels, prepare (the shard's own sampling) and forward/backward of the shard
 * on the global batch, reduce-scatter of the embedding gradient (times W), backbone backward,
 * bucketed gradient all-reduce (average), clip_grad_norm_(5), SGD (momentum 0.9).
 * After every step the ranks compare a hash of their backbone parameters: they must be
 * bit-identical (exit 1 otherwise). BN running statistics are per rank and not compared.
 *
 * Output: OUTDIR/rank<r>.safetensors with metadata (the run's options) and
 *   init.<state_dict name>       after the broadcast (parameters and buffers)
 *   init.pfc.weight              this rank's shard [num_local, emb]
 *   stepN.x, stepN.labels        this rank's inputs
 *   stepN.index I32              rate < 1: this shard's sorted sampled rows (local ids)
 *   stepN.loss [1]               the (global) loss of step N
 *   final.<state_dict name>, final.pfc.weight, final.mom.<param>.momentum_buffer,
 *   final.mom.weight.momentum_buffer
 *
 * Usage: mpirun -np W dist_train --out DIR [--width 4] [--blocks 1,1,1,1] [--emb 16]
 *        [--batch 4] [--classes 23] [--rate 1] [--steps 3] [--lr 0.01] [--wd 5e-4]
 *        [--seed 1] [--bucket-bytes N] [--overlap 1|0] [--inplace 1|0]
 * (--overlap 0: every bucket starts after backward; --inplace 0: the buckets are packed into
 * a staging buffer instead of reduced in the gradients' memory; the results must not change)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "comm.h"
#include "dist.h"
#include "ft_common.h"
#include "iresnet.h"
#include "optim.h"
#include "pfc.h"

typedef struct opts {
    const char *out;
    int width, blocks[4], emb, batch, classes, steps;
    double rate, lr, wd;
    uint64_t seed;
    size_t bucket;
    int overlap, inplace;
} opts;

static int parse(int argc, char **argv, opts *o) {
    *o = (opts){NULL, 4, {1, 1, 1, 1}, 16, 4, 23, 3, 1.0, 0.01, 5e-4, 1, FT_DP_BUCKET_BYTES, 1, 1};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--out"))
            o->out = v;
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
        else if (!strcmp(k, "--rate"))
            o->rate = atof(v);
        else if (!strcmp(k, "--lr"))
            o->lr = atof(v);
        else if (!strcmp(k, "--wd"))
            o->wd = atof(v);
        else if (!strcmp(k, "--seed"))
            o->seed = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--bucket-bytes"))
            o->bucket = (size_t)strtoull(v, NULL, 10);
        else if (!strcmp(k, "--overlap"))
            o->overlap = atoi(v);
        else if (!strcmp(k, "--inplace"))
            o->inplace = atoi(v);
        else
            return fprintf(stderr, "dist_train: unknown option %s\n", k), 1;
    }
    if (!o->out || o->steps < 1 || o->batch < 2)
        return fprintf(stderr, "dist_train: bad options\n"), 1;
    return 0;
}

static ft_ckpt_part part;

static int add_f32(const char *name, int ndim, const int64_t *shape, const void *host,
                   size_t bytes) {
    void *dst;
    int rc = ft_ckpt_part_add_tensor(&part, name, FT_ST_F32, ndim, shape, &dst);
    if (!rc) memcpy(dst, host, bytes);
    return rc;
}

static int add_dev(ft_ops *o, const char *name, int ndim, const int64_t *shape, const float *dev) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    void *dst;
    int rc = ft_ckpt_part_add_tensor(&part, name, FT_ST_F32, ndim, shape, &dst);
    return rc ? rc : o->download(o, dst, dev, n * sizeof(float));
}

static int dump_backbone(ft_iresnet *m, const char *prefix) {
    int rc = 0;
    for (int i = 0; i < ft_iresnet_tensor_count(m) && !rc; i++) {
        ft_tensor_info ti;
        ft_iresnet_tensor_info(m, i, &ti);
        char name[200];
        snprintf(name, sizeof name, "%s%s", prefix, ti.name);
        void *dst;
        rc = ft_ckpt_part_add_tensor(&part, name, ti.dtype == FT_I64 ? FT_ST_I64 : FT_ST_F32,
                                     ti.ndim, ti.shape, &dst);
        if (!rc) rc = ft_iresnet_tensor_get(m, i, dst);
    }
    return rc;
}

/* FNV-1a over every trainable parameter's bytes */
static int param_hash(ft_ops *o, ft_iresnet *m, uint64_t *h) {
    *h = 0xcbf29ce484222325ull;
    for (int i = 0; i < ft_iresnet_param_count(m); i++) {
        ft_param p;
        ft_iresnet_param(m, i, &p);
        float *buf = malloc(p.numel * sizeof(float));
        if (!buf || o->download(o, buf, p.w, p.numel * sizeof(float))) return free(buf), 1;
        const uint8_t *b = (const uint8_t *)buf;
        for (size_t k = 0; k < p.numel * sizeof(float); k++) *h = (*h ^ b[k]) * 0x100000001b3ull;
        free(buf);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "dist_train",
                            "usage: mpirun -np W dist_train --out DIR [--width W] [--blocks "
                            "a,b,c,d] [--emb E]\n"
                            "         [--batch B] [--classes C] [--rate R] [--steps S] ...\n"
                            "Distributed steps dumped for the PyTorch DDP oracle (test_ddp.py).\n"))
        return 0;
    opts op;
    if (parse(argc, argv, &op)) return 2;
    char err[1024];
    ft_comm *c = NULL;
    ft_comm_mpi_options mo;
    ft_comm_mpi_options_init(&mo);
    mo.prog = "dist_train";
    mo.timeout_s = 120;
    if (ft_comm_mpi(&c, &mo, err, sizeof err)) return fprintf(stderr, "dist_train: %s\n", err), 1;
    int R = c->rank, W = c->world, B = op.batch, rc = 0;
    ft_ops_options oo = {.threads = 1, .device = -1};
    ft_ops *o = NULL;
    ft_iresnet *m = NULL;
    ft_pfc *p = NULL;
    ft_sgd *s = NULL;
    ft_dp *dp = NULL;
    ft_dpfc *dpfc = NULL;
    if (ft_ops_create("cpu", &oo, &o, err, sizeof err))
        return fprintf(stderr, "dist_train: %s\n", err), 1;
    ft_iresnet_config mc;
    ft_iresnet_config_init(&mc, 18);
    memcpy(mc.blocks, op.blocks, sizeof mc.blocks);
    mc.width = op.width, mc.emb = op.emb, mc.max_batch = B, mc.dropout = 0;
    mc.seed = op.seed + (uint64_t)R; /* differs per rank: the broadcast must fix it */
    ft_pfc_config pc;
    ft_pfc_config_init(&pc, op.classes);
    pc.rank = R, pc.world_size = W, pc.emb = op.emb, pc.max_batch = B * W;
    pc.sample_rate = (float)op.rate, pc.seed = op.seed + 100;
    ft_sgd_config sc = {0.9f, (float)op.wd};
    rc = ft_iresnet_create(o, &mc, &m);
    if (!rc) rc = ft_pfc_create(o, &pc, &p);
    if (!rc) ft_pfc_set_comm(p, c);
    if (!rc) rc = ft_sgd_create(o, &sc, &s);
    for (int i = 0; !rc && i < ft_iresnet_param_count(m); i++) {
        ft_param pr;
        ft_iresnet_param(m, i, &pr);
        rc = ft_sgd_add_param(s, &pr, FT_SGD_GROUP_BACKBONE) < 0;
    }
    ft_param pw;
    if (!rc) ft_pfc_param(p, &pw), rc = ft_sgd_add_param(s, &pw, FT_SGD_GROUP_HEAD) < 0;
    if (!rc) rc = ft_dp_broadcast_model(c, o, m);
    if (!rc) rc = ft_dp_create(c, o, m, op.bucket, &dp);
    if (!rc) ft_dp_set_overlap(dp, op.overlap);
    if (!rc) rc = ft_dp_set_inplace(dp, op.inplace);
    if (!rc) rc = ft_dpfc_create(c, o, B, op.emb, &dpfc);
    float *demb = NULL;
    if (!rc) rc = o->alloc(o, (size_t)B * op.emb * sizeof(float), (void **)&demb);
    if (rc)
        return fprintf(stderr, "dist_train: rank %d: setup failed: %s\n", R, ft_strerror(rc)), 1;
    ft_ckpt_part_init(&part, "dump");
    if (!rc) rc = dump_backbone(m, "init.");
    if (!rc) rc = add_dev(o, "init.pfc.weight", pw.ndim, pw.shape, pw.w);
    size_t nx = (size_t)B * 3 * 112 * 112;
    float *x = malloc(nx * sizeof(float));
    int32_t *lab = malloc((size_t)B * sizeof(int32_t));
    uint64_t *hashes = malloc((size_t)W * sizeof(uint64_t));
    int32_t *counts = malloc((size_t)W * sizeof(int32_t)),
            *got = malloc((size_t)W * sizeof(int32_t));
    if (!x || !lab || !hashes || !counts || !got) rc = -ENOMEM;
    for (int st = 0; st < op.steps && !rc; st++) {
        ft_rng g;
        ft_rng_seed(&g, op.seed, 1000 + (uint64_t)st * 64 + (uint64_t)R);
        for (size_t i = 0; i < nx; i++) x[i] = (float)(2 * ft_rng_uniform(&g) - 1);
        for (int i = 0; i < B; i++) lab[i] = (int32_t)ft_rng_below(&g, (uint64_t)op.classes);
        char name[64];
        int64_t xs[4] = {B, 3, 112, 112}, ls[1] = {B}, one[1] = {1};
        snprintf(name, sizeof name, "step%d.x", st);
        rc = add_f32(name, 4, xs, x, nx * sizeof(float));
        void *dl;
        snprintf(name, sizeof name, "step%d.labels", st);
        if (!rc && !(rc = ft_ckpt_part_add_tensor(&part, name, FT_ST_I32, 1, ls, &dl)))
            memcpy(dl, lab, (size_t)B * sizeof(int32_t));
        const float *emb, *emb_all;
        const int32_t *lab_all;
        float *demb_all, loss = 0;
        if (!rc) rc = o->upload(o, ft_iresnet_input(m), x, nx * sizeof(float));
        if (!rc) rc = ft_iresnet_forward(m, ft_iresnet_input(m), B, 1, &emb);
        if (!rc) rc = ft_dpfc_gather(dpfc, emb, lab, B, &emb_all, &lab_all, &demb_all);
        if (!rc) rc = ft_pfc_prepare(p, lab_all, B * W, (uint64_t)st);
        /* every shard's sampled-class count, computed here from the global labels alone,
         * equals what each rank's own shard prepared (the graph shape of several ranks) */
        int32_t mine = ft_pfc_step_count(p);
        if (!rc) rc = ft_pfc_shard_counts(p, lab_all, B * W, counts);
        if (!rc) rc = c->all_gather(c, o, &mine, got, sizeof mine);
        for (int r = 0; r < W && !rc; r++)
            if (got[r] != counts[r]) {
                fprintf(stderr,
                        "dist_train: FAIL: step %d: ft_pfc_shard_counts gives shard %d %d "
                        "classes, its rank prepared %d\n",
                        st, r, counts[r], got[r]);
                rc = 1;
            }
        const int32_t *idx;
        int cnt;
        if (!rc && op.rate < 1 && !(rc = ft_pfc_index(p, &idx, &cnt))) {
            int64_t is[1] = {cnt};
            void *di;
            snprintf(name, sizeof name, "step%d.index", st);
            if (!(rc = ft_ckpt_part_add_tensor(&part, name, FT_ST_I32, 1, is, &di)))
                memcpy(di, idx, (size_t)cnt * sizeof(int32_t));
        }
        if (!rc) rc = ft_pfc_forward_backward(p, emb_all, demb_all, &loss);
        if (!rc) rc = ft_dpfc_scatter(dpfc, demb);
        if (!rc) rc = ft_iresnet_backward(m, demb);
        if (!rc) rc = ft_dp_reduce_grads(dp);
        double norm = 0;
        if (!rc) rc = ft_sgd_clip_grad_norm(s, FT_SGD_GROUP_BACKBONE, 5.0, &norm);
        if (!rc) rc = ft_sgd_step(s, (float)op.lr);
        if (!rc) rc = ft_sgd_zero_grad(s);
        snprintf(name, sizeof name, "step%d.loss", st);
        if (!rc) rc = add_f32(name, 1, one, &loss, sizeof loss);
        uint64_t h = 0;
        if (!rc) rc = param_hash(o, m, &h);
        if (!rc) rc = c->all_gather(c, o, &h, hashes, sizeof h);
        for (int r = 1; r < W && !rc; r++)
            if (hashes[r] != hashes[0]) {
                fprintf(stderr,
                        "dist_train: FAIL: after step %d rank %d's backbone differs from rank "
                        "0's\n",
                        st, r);
                rc = 1;
            }
        if (!rc && R == 0)
            printf("step %d loss %.6f gradnorm %.6f (backbone identical on %d ranks); buckets "
                   "reduced %s, started inside backward: %d of %d\n",
                   st, (double)loss, norm, W, ft_dp_inplace(dp) ? "in place" : "packed",
                   ft_dp_early_buckets(dp), ft_dp_buckets(dp));
    }
    if (!rc) rc = dump_backbone(m, "final.");
    if (!rc) rc = add_dev(o, "final.pfc.weight", pw.ndim, pw.shape, pw.w);
    for (int i = 0; i < ft_sgd_state_count(s) && !rc; i++) {
        ft_tensor_info ti;
        ft_sgd_state_info(s, i, &ti);
        char name[200];
        snprintf(name, sizeof name, "final.mom.%s", ti.name);
        void *dst;
        rc = ft_ckpt_part_add_tensor(&part, name, FT_ST_F32, ti.ndim, ti.shape, &dst);
        if (!rc) rc = ft_sgd_state_get(s, i, dst);
    }
    char v[512];
    snprintf(v, sizeof v, "%d", W);
    if (!rc) rc = ft_ckpt_part_add_meta(&part, "world", v);
    snprintf(v, sizeof v, "%d", R);
    if (!rc) rc = ft_ckpt_part_add_meta(&part, "rank", v);
    snprintf(v, sizeof v, "%d,%d,%d,%d", op.blocks[0], op.blocks[1], op.blocks[2], op.blocks[3]);
    if (!rc) rc = ft_ckpt_part_add_meta(&part, "blocks", v);
    snprintf(v, sizeof v,
             "width=%d emb=%d batch=%d classes=%d steps=%d rate=%.9g lr=%.9g wd=%.9g "
             "seed=%llu num_sample=%d class_start=%lld num_local=%lld",
             op.width, op.emb, B, op.classes, op.steps, op.rate, op.lr, op.wd,
             (unsigned long long)pc.seed, ft_pfc_num_sample(p), (long long)ft_pfc_class_start(p),
             (long long)ft_pfc_num_local(p));
    if (!rc) rc = ft_ckpt_part_add_meta(&part, "run", v);
    snprintf(part.file, sizeof part.file, "rank%d.safetensors", R);
    if (!rc && (rc = ft_ckpt_write(op.out, &part, 1, err, sizeof err)))
        fprintf(stderr, "dist_train: rank %d: %s\n", R, err);
    ft_ckpt_part_free(&part);
    free(x), free(lab), free(hashes), free(counts), free(got);
    o->free(o, demb);
    ft_dpfc_free(dpfc);
    ft_dp_free(dp);
    ft_sgd_free(s);
    ft_pfc_free(p);
    ft_iresnet_free(m);
    ft_ops_free(o);
    ft_comm_free(c);
    if (rc) fprintf(stderr, "dist_train: rank %d failed (%d)\n", R, rc);
    return rc ? 1 : 0;
}
