/* build.c: ft-train's model side: build backbone, Partial FC and SGD from the config;
 * checkpoint save and resume; the embedding callback for verification. See run.h. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "run.h"
#include "sources.h"

int ft_run_fail(ft_run *r, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
    return rc ? rc : FT_EARG;
}

/* ------------------------------------------------------------------ building */

int ft_run_open_device(ft_run *r) {
    const ft_config *c = &r->cfg;
    ft_ops_options opts;
    ft_ops_options_init(&opts);
    opts.threads = c->threads;
    /* the one visible GPU, else the local rank's (one per local rank) */
    opts.local_rank = r->world > 1 ? r->dist.local_rank : -1;
    opts.layout = ft_layout_parse(c->layout);
    char err[512];
    int rc = ft_ops_create(c->device, &opts, &r->model.ops, err, sizeof err);
    if (rc) return ft_run_fail(r, rc, "%s", err);
    /* a CPU backend reads host memory as its own: the loader's float batches go in as they are */
    r->data.u8_input = strcmp(r->model.ops->name, "cpu") != 0;
    return 0;
}

/* What a batch size needs on the device: the backbone's arena plus its momentum (the size of
 * its gradients; momentum is passed in, it does not depend on the batch), Partial FC's arena plus
 * the centres' momentum, the embedding gradient and the uint8 pixels. */
static int plan_bytes(ft_run *r, ft_iresnet_config mc, ft_pfc_config pc, int batch, size_t momentum,
                      size_t *total, size_t *backbone, size_t *head) {
    mc.max_batch = batch, pc.max_batch = batch * r->world;
    size_t bb = 0;
    ft_pfc_plan_info pi;
    int rc = ft_iresnet_plan_bytes(r->model.ops, &mc, &bb);
    if (!rc) rc = ft_pfc_plan(&pc, &pi);
    if (rc) return rc;
    *backbone = bb + momentum;
    *head = pi.arena_bytes + pi.centre_bytes;
    *total = *backbone + *head + (size_t)batch * r->world * pc.emb * sizeof(float) +
             (size_t)batch * 112 * 112 * 3;
    return 0;
}

static void size_str(char out[32], size_t b) {
    if (b >= ((size_t)1 << 30))
        snprintf(out, 32, "%.2f GiB", (double)b / 1073741824.0);
    else
        snprintf(out, 32, "%.1f MiB", (double)b / 1048576.0);
}

/* An allocation failed: say what the plan needs, what the device has free and the largest
 * batch_size that fits (the parts built so far are freed first, so that free is what the model
 * can have). */
static int out_of_memory(ft_run *r, const ft_iresnet_config *mc, const ft_pfc_config *pc,
                         const char *what) {
    ft_ops *o = r->model.ops;
    ft_sgd_free(r->model.sgd), ft_pfc_free(r->model.pfc), ft_iresnet_free(r->model.net);
    r->model.sgd = NULL, r->model.pfc = NULL, r->model.net = NULL;
    size_t need = 0, bb = 0, hd = 0, fr = 0, tot = 0, mom = 0;
    int batch = r->cfg.batch_size;
    /* the backbone's momentum, bounded by half its batch-1 arena (parameters and gradients,
     * the same size, dominate it) */
    ft_iresnet_config m1 = *mc;
    m1.max_batch = 1;
    int prc = ft_iresnet_plan_bytes(o, &m1, &mom);
    mom /= 2;
    if (prc || plan_bytes(r, *mc, *pc, batch, mom, &need, &bb, &hd) || o->mem_info(o, &fr, &tot))
        return ft_run_fail(r, -ENOMEM, "device %s: out of memory allocating %s (%s)", o->name, what,
                           r->model.arch);
    /* the libraries' handles and workspaces take some too: leave 5% */
    size_t avail = fr - fr / 20;
    int lo = 0, hi = batch - 1; /* largest b in [2, batch) with plan(b) <= avail */
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        size_t t, b1, h1;
        if (mid >= 2 && !plan_bytes(r, *mc, *pc, mid, mom, &t, &b1, &h1) && t <= avail)
            lo = mid;
        else
            hi = mid - 1;
    }
    char fits[256], s_need[32], s_bb[32], s_hd[32], s_fr[32], s_tot[32];
    if (lo >= 2) {
        snprintf(fits, sizeof fits, "batch_size = %d fits", lo);
    } else {
        size_t t2 = 0, b2 = 0, h2 = 0;
        plan_bytes(r, *mc, *pc, 2, mom, &t2, &b2, &h2);
        size_str(s_bb, b2), size_str(s_hd, h2);
        snprintf(fits, sizeof fits,
                 "not even batch_size = 2 fits (backbone %s, Partial FC %s: a smaller network, "
                 "a lower sample_rate or more ranks)",
                 s_bb, s_hd);
    }
    size_str(s_need, need), size_str(s_bb, bb), size_str(s_hd, hd), size_str(s_fr, fr);
    size_str(s_tot, tot);
    return ft_run_fail(r, -ENOMEM,
                       "device %s: out of memory allocating %s: the plan needs %s at batch_size "
                       "= %d (backbone %s, Partial FC %s, with their momentum), %s of %s are "
                       "free; %s",
                       o->name, what, s_need, batch, s_bb, s_hd, s_fr, s_tot, fits);
}

int ft_run_build_model(ft_run *r) {
    const ft_config *c = &r->cfg;
    int depth = atoi(c->network + 1), rc;
    ft_iresnet_config mc;
    if ((rc = ft_iresnet_config_init(&mc, depth)))
        return ft_run_fail(r, rc, "network '%s' is not supported", c->network);
    if (c->width) mc.width = c->width;
    if (c->blocks[0])
        for (int i = 0; i < 4; i++) mc.blocks[i] = c->blocks[i];
    mc.emb = c->embedding_size;
    mc.dropout = (float)c->dropout;
    mc.max_batch = c->batch_size;
    mc.seed = (uint64_t)c->seed;
    mc.dtype = c->dtype;
    snprintf(r->model.arch, sizeof r->model.arch,
             "network %s, width %d, blocks (%d, %d, %d, %d), emb %d", c->network, mc.width,
             mc.blocks[0], mc.blocks[1], mc.blocks[2], mc.blocks[3], mc.emb);
    ft_pfc_config pc;
    ft_pfc_config_init(&pc, c->num_classes);
    pc.rank = r->rank, pc.world_size = r->world;
    pc.emb = c->embedding_size;
    pc.max_batch = c->batch_size * r->world;
    pc.sample_rate = (float)c->sample_rate;
    pc.s = FT_TRAIN_SCALE;
    pc.m1 = (float)c->margin_list[0], pc.m2 = (float)c->margin_list[1];
    pc.m3 = (float)c->margin_list[2];
    pc.interclass_filtering_threshold = (float)c->interclass_filtering_threshold;
    pc.seed = (uint64_t)c->seed;
    pc.dtype = c->dtype;
    if (!r->model.ops && (rc = ft_run_open_device(r))) return rc;
    if ((rc = ft_iresnet_create(r->model.ops, &mc, &r->model.net)) == -ENOMEM)
        return out_of_memory(r, &mc, &pc, "the backbone");
    if (rc == FT_ENOTSUP)
        return ft_run_fail(r, rc, "device '%s' cannot train with dtype %s", c->device,
                           ft_dtype_name((ft_dtype)c->dtype));
    if (rc)
        return ft_run_fail(r, rc, "cannot build the model (%s): %s", r->model.arch,
                           ft_strerror(rc));
    ft_scaler_init(&r->model.scaler, c->loss_scaling, FT_TRAIN_INIT_SCALE,
                   FT_TRAIN_GROWTH_INTERVAL);

    if ((rc = ft_pfc_create(r->model.ops, &pc, &r->model.pfc)) == -ENOMEM)
        return out_of_memory(r, &mc, &pc, "Partial FC");
    if (rc)
        return ft_run_fail(r, rc, "cannot build Partial FC (%lld classes, emb %d): %s",
                           (long long)c->num_classes, c->embedding_size, ft_strerror(rc));

    ft_sgd_config sc = {.momentum = (float)c->momentum, .weight_decay = (float)c->weight_decay};
    if ((rc = ft_sgd_create(r->model.ops, &sc, &r->model.sgd)))
        return ft_run_fail(r, rc, "cannot create the optimizer: %s", ft_strerror(rc));
    int np = ft_iresnet_param_count(r->model.net);
    for (int i = 0; i < np; i++) {
        ft_param p;
        if ((rc = ft_iresnet_param(r->model.net, i, &p)) ||
            (rc = ft_sgd_add_param(r->model.sgd, &p, FT_SGD_GROUP_BACKBONE)) < 0)
            return rc == -ENOMEM ? out_of_memory(r, &mc, &pc, "the momentum")
                                 : ft_run_fail(r, rc, "optimizer setup: %s", ft_strerror(rc));
    }
    ft_param pw; /* the PFC weight goes last, as in train_v2.py's param groups */
    if ((rc = ft_pfc_param(r->model.pfc, &pw)) ||
        (rc = ft_sgd_add_param(r->model.sgd, &pw, FT_SGD_GROUP_HEAD)) < 0)
        return rc == -ENOMEM ? out_of_memory(r, &mc, &pc, "the momentum")
                             : ft_run_fail(r, rc, "optimizer setup: %s", ft_strerror(rc));
    r->model.pfc_param_id = rc;
    r->model.sampled_update = c->sample_rate < 1.0 && strcmp(c->pfc_update, "sampled") == 0;
    if (r->model.sampled_update) {
        int64_t nl = ft_pfc_num_local(r->model.pfc);
        r->model.row_mask = calloc((size_t)nl, 1);
        r->model.row_host = malloc((size_t)nl * sizeof(int32_t));
        if (!r->model.row_mask || !r->model.row_host ||
            (rc = r->model.ops->alloc(r->model.ops, (size_t)nl * sizeof(int32_t),
                                      (void **)&r->model.row_dev)))
            return ft_run_fail(r, rc ? rc : -ENOMEM, "out of memory");
    }
    size_t demb_bytes = (size_t)c->batch_size * r->world * c->embedding_size * sizeof(float);
    if ((rc = r->model.ops->alloc(r->model.ops, demb_bytes, (void **)&r->model.demb)))
        return ft_run_fail(r, rc, "out of memory");
    size_t px = (size_t)c->batch_size * 112 * 112 * 3;
    if (r->data.u8_input &&
        (rc = r->model.ops->alloc(r->model.ops, px, (void **)&r->data.pixels_dev)))
        return ft_run_fail(r, rc, "out of memory");
    return 0;
}

void ft_run_free_model(ft_run *r) {
    if (r->model.ops) ft_graph_slot_drop(r->model.ops, &r->model.graph.slot);
    free(r->model.graph.counts);
    free(r->model.graph.counts_seen);
    r->model.graph.counts = r->model.graph.counts_seen = NULL;
    if (r->model.ops && r->model.demb) r->model.ops->free(r->model.ops, r->model.demb);
    if (r->model.ops && r->data.pixels_dev) r->model.ops->free(r->model.ops, r->data.pixels_dev);
    r->data.pixels_dev = NULL;
    if (r->model.ops && r->model.row_dev) r->model.ops->free(r->model.ops, r->model.row_dev);
    free(r->model.row_mask);
    free(r->model.row_host);
    r->model.row_mask = NULL, r->model.row_host = NULL, r->model.row_dev = NULL;
    ft_sgd_free(r->model.sgd);
    ft_pfc_free(r->model.pfc);
    ft_iresnet_free(r->model.net);
    ft_ops_free(r->model.ops);
    r->model.demb = NULL, r->model.sgd = NULL, r->model.pfc = NULL, r->model.net = NULL,
    r->model.ops = NULL;
}

int ft_run_embed(void *ctx, const float *x, int n, float *out) {
    ft_run *r = ctx;
    int max = r->cfg.batch_size, dim = r->cfg.embedding_size, rc = 0;
    size_t img = (size_t)3 * 112 * 112;
    float *in = ft_iresnet_input(r->model.net);
    for (int s = 0; s < n && !rc; s += max) {
        int m = n - s < max ? n - s : max;
        const float *emb = NULL;
        rc = r->model.ops->upload(r->model.ops, in, x + (size_t)s * img,
                                  (size_t)m * img * sizeof(float));
        if (!rc) rc = ft_iresnet_forward(r->model.net, in, m, 0, &emb);
        if (!rc)
            rc = r->model.ops->download(r->model.ops, out + (size_t)s * dim, emb,
                                        (size_t)m * dim * sizeof(float));
    }
    return rc;
}

/* ------------------------------------------------------------------ tensor sources */

static ft_ckpt_source src_backbone(ft_run *r) {
    return ft_ckpt_src_backbone(r->model.net);
}
static ft_ckpt_source src_pfc(ft_run *r) {
    return ft_ckpt_src_pfc(r->model.pfc);
}
/* head: the PFC momentum buffer only; otherwise the backbone's buffers only */
static ft_ckpt_source src_opt(ft_run *r, int head) {
    return ft_ckpt_src_momentum(r->model.sgd, head);
}

/* ------------------------------------------------------------------ save */

static int add_common_meta(ft_run *r, ft_ckpt_part *p) {
    char v[64];
    int rc = ft_ckpt_part_add_meta(p, "format", "pt");
    snprintf(v, sizeof v, "%lld", (long long)r->pos.global_step);
    if (!rc) rc = ft_ckpt_part_add_meta(p, "global_step", v);
    snprintf(v, sizeof v, "%llu", (unsigned long long)r->pos.epoch);
    if (!rc) rc = ft_ckpt_part_add_meta(p, "epoch", v);
    if (!rc) rc = ft_ckpt_part_add_meta(p, "producer", FT_VERSION_STRING);
    snprintf(v, sizeof v, "%d", FT_CKPT_SCHEMA);
    if (!rc) rc = ft_ckpt_part_add_meta(p, "schema", v);
    if (!rc) rc = ft_ckpt_part_add_meta(p, "dtype", ft_dtype_name((ft_dtype)r->cfg.dtype));
    if (!rc) rc = ft_ckpt_part_add_meta(p, "loss_scaling", r->model.scaler.enabled ? "1" : "0");
    if (!rc) rc = ft_ckpt_part_add_meta(p, "architecture", r->model.arch);
    return rc;
}

/* ------------------------------------------------------------------ accumulation window */

/* Tensors of the state file that carry an unfinished gradient-accumulation window (a stop at a
 * global step that is not a multiple of gradient_acc): the summed gradient of every optimizer
 * parameter (backbone in parameters() order, then the PFC weight) and, with pfc_update =
 * 'sampled', the rows sampled since the last optimizer step. */
#define ACC_PREFIX  FT_CKPT_ACCUM_PREFIX
#define ACC_PFC     FT_CKPT_ACCUM_PREFIX "pfc."
#define ACC_ROWS    FT_CKPT_ACCUM_PREFIX "pfc.sampled_rows"
#define ACC_DROPOUT "model.dropout_rng_state"

static int mid_window(const ft_run *r, int64_t gradient_acc) {
    return gradient_acc > 1 && r->pos.global_step % gradient_acc != 0;
}

/* Optimizer parameter i of count(r) (the last one is the PFC weight) and its state name;
 * 1 for a parameter without a gradient buffer (features.weight, frozen): nothing to keep. */
static int acc_count(const ft_run *r) {
    return ft_iresnet_param_count(r->model.net) + 1;
}
static int acc_param(ft_run *r, int i, ft_param *p, char *name, size_t cap) {
    int nb = ft_iresnet_param_count(r->model.net);
    int rc = i < nb ? ft_iresnet_param(r->model.net, i, p) : ft_pfc_param(r->model.pfc, p);
    if (rc) return rc;
    if (!p->g) return 1;
    int len = snprintf(name, cap, "%s%s", i < nb ? ACC_PREFIX : ACC_PFC, p->name);
    return len < 0 || (size_t)len >= cap ? FT_ERANGE : 0;
}

static int add_window(ft_run *r, ft_ckpt_part *st) {
    int rc = 0, n = acc_count(r);
    for (int i = 0; i < n && !rc; i++) {
        ft_param p;
        char name[256];
        void *host = NULL;
        if ((rc = acc_param(r, i, &p, name, sizeof name)) == 1) {
            rc = 0;
            continue;
        }
        if (rc) break;
        rc = ft_ckpt_part_add_tensor(st, name, FT_ST_F32, p.ndim, p.shape, &host);
        if (!rc) rc = r->model.ops->download(r->model.ops, host, p.g, p.numel * sizeof(float));
    }
    if (!rc && r->model.sampled_update) {
        int64_t nl = ft_pfc_num_local(r->model.pfc);
        void *host = NULL;
        rc = ft_ckpt_part_add_tensor(st, ACC_ROWS, FT_ST_U8, 1, &nl, &host);
        if (!rc) memcpy(host, r->model.row_mask, (size_t)nl);
    }
    return rc;
}

static int add_state(ft_run *r, ft_ckpt_part *st) {
    int rc = 0;
    const struct {
        const char *name;
        int64_t v;
    } ints[] = {
        {"global_step", r->pos.global_step},
        {"epoch", (int64_t)r->pos.epoch},
        {"loader_epoch", (int64_t)r->pos.epoch},
        {"loader_step", (int64_t)r->pos.epoch_step},
        {"optimizer_steps", (int64_t)ft_sgd_steps(r->model.sgd)},
        {"lr_scheduler.last_epoch", r->pos.global_step},
        {"lr_scheduler.warmup_step", r->pos.lr.warmup},
        {"lr_scheduler.total_step", r->pos.lr.total},
        {"seed", r->cfg.seed},
        {"world_size", r->world},
        {"batch_size", r->cfg.batch_size},
        {"save_all_states", r->cfg.save_all_states},
        {"gradient_acc", r->cfg.gradient_acc},
        {ACC_DROPOUT, (int64_t)ft_iresnet_get_rng_state(r->model.net)},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && !rc; i++)
        rc = ft_ckpt_part_add_i64(st, ints[i].name, ints[i].v);
    if (!rc) rc = ft_ckpt_part_add_f64(st, "lr_scheduler.base_lr", r->pos.lr.base);
    if (!rc) rc = ft_ckpt_part_add_f64(st, "lr_scheduler.power", r->pos.lr.power);
    /* the loss scaler (fp16), so that a resumed run scales as an uninterrupted one */
    if (!rc && r->model.scaler.enabled)
        rc = ft_ckpt_part_add_f64(st, "scaler.scale", r->model.scaler.scale);
    if (!rc && r->model.scaler.enabled)
        rc = ft_ckpt_part_add_i64(st, "scaler.growth_tracker", r->model.scaler.growth_tracker);
    if (!rc && r->model.scaler.enabled)
        rc = ft_ckpt_part_add_i64(st, "scaler.skipped", r->model.scaler.skipped);
    if (!rc && r->model.scaler.enabled)
        rc = ft_ckpt_part_add_i64(st, "scaler.consecutive", r->model.scaler.consecutive);
    if (!rc && r->cfg.save_all_states) {
        ft_ckpt_source so = src_opt(r, 0);
        rc = ft_ckpt_part_add_source(st, &so);
    }
    if (!rc && mid_window(r, r->cfg.gradient_acc)) rc = add_window(r, st);
    return rc;
}

int ft_run_save(ft_run *r) {
    ft_ckpt_part parts[3];
    char name[64];
    ft_ckpt_part_init(&parts[0], FT_CKPT_BACKBONE);
    ft_ckpt_pfc_name(name, sizeof name, r->rank, r->world);
    ft_ckpt_part_init(&parts[1], name);
    ft_ckpt_state_name(name, sizeof name, r->rank);
    ft_ckpt_part_init(&parts[2], name);
    ft_ckpt_source sb = src_backbone(r), sp = src_pfc(r), sh = src_opt(r, 1);
    int rc = ft_ckpt_part_add_source(&parts[0], &sb);
    if (!rc) rc = ft_ckpt_part_add_source(&parts[1], &sp);
    if (!rc && r->cfg.save_all_states) rc = ft_ckpt_part_add_source(&parts[1], &sh);
    if (!rc) rc = add_state(r, &parts[2]);
    for (int i = 0; i < 3 && !rc; i++) rc = add_common_meta(r, &parts[i]);
    if (rc) {
        ft_run_fail(r, rc, "checkpoint: cannot collect tensors: %s", ft_strerror(rc));
    } else {
        char err[1024];
        /* rank 0 writes the backbone; every rank its PFC shard and state, state last */
        ft_ckpt_part *first = r->rank == 0 ? &parts[0] : &parts[1];
        rc = ft_ckpt_stage(r->cfg.output, first, (int)(&parts[3] - first), r->pos.global_step, err,
                           sizeof err);
        if (rc) ft_run_fail(r, rc, "checkpoint: %s", err);
    }
    for (int i = 0; i < 3; i++) ft_ckpt_part_free(&parts[i]);
    return rc;
}

int ft_run_promote(ft_run *r) {
    char names[3][FT_CKPT_NAME_CAP], err[PATH_MAX + 128];
    int n = ft_ckpt_rank_files(names, r->rank, r->world);
    for (int i = 0; i < n; i++) {
        int rc = ft_ckpt_promote(r->cfg.output, names[i], r->pos.global_step, err, sizeof err);
        if (rc)
            return ft_run_fail(r, rc,
                               "checkpoint of step %lld: %s (the step is committed in %s: the "
                               "next start with resume = True completes the rename)",
                               (long long)r->pos.global_step, err, FT_RUN_MANIFEST);
    }
    return 0;
}

void ft_run_unstage(ft_run *r) {
    char names[3][FT_CKPT_NAME_CAP];
    int n = ft_ckpt_rank_files(names, r->rank, r->world);
    for (int i = 0; i < n; i++) ft_ckpt_unstage(r->cfg.output, names[i], r->pos.global_step);
}

/* ------------------------------------------------------------------ resume */

static int read_part(ft_run *r, const char *file, ft_st_file *f, int64_t want_step) {
    char path[PATH_MAX], err[1024];
    if (ft_path_join(path, sizeof path, r->cfg.output, file))
        return ft_run_fail(r, FT_ERANGE, "%s: path too long", r->cfg.output);
    int rc = ft_st_read(path, f, err, sizeof err);
    if (rc == -ENOENT)
        return ft_run_fail(r, rc, "resume = True but %s does not exist (no checkpoint in %s)", path,
                           r->cfg.output);
    if (rc) return ft_run_fail(r, rc, "%s", err);
    const char *s = ft_st_meta(f, "global_step");
    if (want_step >= 0 && (!s || strtoll(s, NULL, 10) != want_step))
        return ft_run_fail(r, FT_EFORMAT,
                           "%s: saved at step %s but the state file says %lld: "
                           "the last checkpoint save was cut short",
                           path, s ? s : "?", (long long)want_step);
    return 0;
}

/* The loss scaler's state: schema 3 files written with fp16 hold it (meta "loss_scaling"). */
static int resume_scaler(ft_run *r, const ft_st_file *st, const char *what, int schema) {
    const char *ls = ft_st_meta(st, "loss_scaling");
    int have = schema >= 3 && ls && strcmp(ls, "1") == 0;
    if (!r->model.scaler.enabled) return 0;
    if (!have) {
        fprintf(stderr,
                FT_TRAIN_PROG ": note: %s was saved without fp16 loss scaling; the loss scale "
                              "restarts at %g\n",
                what, (double)FT_TRAIN_INIT_SCALE);
        return 0;
    }
    double scale;
    int64_t tracker, skipped, consecutive;
    char err[512];
    int rc = ft_ckpt_get_f64(st, what, "scaler.scale", &scale, err, sizeof err);
    if (!rc) rc = ft_ckpt_get_i64(st, what, "scaler.growth_tracker", &tracker, err, sizeof err);
    if (!rc) rc = ft_ckpt_get_i64(st, what, "scaler.skipped", &skipped, err, sizeof err);
    if (!rc) rc = ft_ckpt_get_i64(st, what, "scaler.consecutive", &consecutive, err, sizeof err);
    if (rc) return ft_run_fail(r, rc, "%s", err);
    if (!(scale > 0) || !isfinite(scale) || tracker < 0 || skipped < 0 || consecutive < 0)
        return ft_run_fail(r, FT_EFORMAT, "%s: loss-scaler state out of range (scale %g)", what,
                           scale);
    r->model.scaler.scale = (float)scale;
    r->model.scaler.growth_tracker = tracker;
    r->model.scaler.skipped = skipped;
    r->model.scaler.consecutive = consecutive;
    return 0;
}

static int resume_state(ft_run *r, const ft_st_file *st, const char *what, int schema,
                        int saved_world) {
    int64_t step, ep, lstep, opt_steps, seed, world;
    char err[512];
    int rc = ft_ckpt_get_i64(st, what, "global_step", &step, err, sizeof err);
    if (!rc) rc = ft_ckpt_get_i64(st, what, "loader_epoch", &ep, err, sizeof err);
    if (!rc) rc = ft_ckpt_get_i64(st, what, "loader_step", &lstep, err, sizeof err);
    if (!rc) rc = ft_ckpt_get_i64(st, what, "optimizer_steps", &opt_steps, err, sizeof err);
    if (!rc) rc = ft_ckpt_get_i64(st, what, "seed", &seed, err, sizeof err);
    if (!rc) rc = ft_ckpt_get_i64(st, what, "world_size", &world, err, sizeof err);
    if (rc) return ft_run_fail(r, rc, "%s", err);
    if (world != saved_world)
        return ft_run_fail(r, FT_EFORMAT,
                           "%s: saved by %lld ranks, this run has %d (a checkpoint resumes on "
                           "another number of ranks through its %s)",
                           what, (long long)world, r->world, FT_RUN_MANIFEST);
    if (seed != r->cfg.seed)
        fprintf(stderr,
                FT_TRAIN_PROG ": note: %s was saved with seed %lld, this run uses %lld; "
                              "the data order will differ from an uninterrupted run\n",
                what, (long long)seed, (long long)r->cfg.seed);
    r->pos.global_step = step;
    r->pos.epoch = (uint64_t)ep;
    r->pos.epoch_step = (uint64_t)lstep;
    ft_sgd_set_steps(r->model.sgd, (uint64_t)opt_steps);
    return resume_scaler(r, st, what, schema);
}

/* The dropout generator and an unfinished accumulation window (after resume_state). */
static int resume_window(ft_run *r, const ft_st_file *st, const char *what, int schema) {
    char err[1024];
    int64_t v, acc = r->cfg.gradient_acc;
    int rc;
    /* schema 1 files predate the entries: every step ran exactly one train-mode forward and
     * no window was saved; from schema 2 on a missing entry is an error */
    uint64_t drop = (uint64_t)r->pos.global_step;
    if (schema >= 2) {
        if ((rc = ft_ckpt_get_i64(st, what, ACC_DROPOUT, &v, err, sizeof err)) ||
            (rc = ft_ckpt_get_i64(st, what, "gradient_acc", &acc, err, sizeof err)))
            return ft_run_fail(r, rc, "%s", err);
        drop = (uint64_t)v;
    }
    ft_iresnet_set_rng_state(r->model.net, drop);
    if (!mid_window(r, acc)) return 0;
    if (acc != r->cfg.gradient_acc)
        return ft_run_fail(r, FT_EFORMAT,
                           "%s: saved at step %lld inside a gradient-accumulation window of "
                           "gradient_acc = %lld; this run has gradient_acc = %d (resume with "
                           "the same value)",
                           what, (long long)r->pos.global_step, (long long)acc,
                           r->cfg.gradient_acc);
    if (schema < 2) {
        /* a file from before the window was saved: the partial gradient is gone */
        fprintf(stderr,
                FT_TRAIN_PROG ": note: %s (step %lld, inside a gradient-accumulation window) "
                              "holds no accumulated gradient; this window restarts from zero\n",
                what, (long long)r->pos.global_step);
        return 0;
    }
    rc = 0;
    int n = acc_count(r);
    for (int i = 0; i < n && !rc; i++) {
        ft_param p;
        char name[256];
        if ((rc = acc_param(r, i, &p, name, sizeof name)) == 1) {
            rc = 0;
            continue;
        }
        if (rc) {
            ft_run_fail(r, rc, "%s: accumulated gradient %d: %s", what, i, ft_strerror(rc));
            break;
        }
        float *host = malloc(p.numel ? p.numel * sizeof(float) : 1);
        if (!host) return ft_run_fail(r, -ENOMEM, "out of memory");
        rc = ft_ckpt_get_tensor(st, what, name, FT_ST_F32, p.ndim, p.shape, host,
                                p.numel * sizeof(float), err, sizeof err);
        if (rc)
            ft_run_fail(r, rc, "%s", err);
        else if ((rc = r->model.ops->upload(r->model.ops, p.g, host, p.numel * sizeof(float))))
            ft_run_fail(r, rc, "upload: %s", ft_strerror(rc));
        free(host);
    }
    if (rc || !r->model.sampled_update) return rc;
    int64_t nl = ft_pfc_num_local(r->model.pfc);
    if (!ft_st_find(st, ACC_ROWS))
        return ft_run_fail(r, FT_EFORMAT,
                           "%s: saved inside a gradient-accumulation window without "
                           "pfc_update = 'sampled' and sample_rate < 1; resume with the same "
                           "settings",
                           what);
    if ((rc = ft_ckpt_get_tensor(st, what, ACC_ROWS, FT_ST_U8, 1, &nl, r->model.row_mask,
                                 (size_t)nl, err, sizeof err)))
        return ft_run_fail(r, rc, "%s", err);
    for (int64_t j = 0; j < nl; j++)
        if (r->model.row_mask[j] > 1)
            return ft_run_fail(r, FT_EFORMAT, "%s: tensor '%s' holds %d at row %lld (not 0/1)",
                               what, ACC_ROWS, r->model.row_mask[j], (long long)j);
    return 0;
}

/* The manifest rank 0 commits after every rank has written: the state this rank read must be
 * of its step (else a save was cut short on some rank). A checkpoint of one rank from before
 * manifests existed has none, which is accepted; several ranks need it. */
static int check_manifest(ft_run *r, const char *st_name) {
    int64_t step;
    int world, rc = ft_run_read_manifest(r, &step, &world);
    if (rc == -ENOENT && r->world == 1) return 0;
    if (rc == -ENOENT)
        return ft_run_fail(r, FT_EFORMAT,
                           "%s/%s does not exist: the checkpoint of this %d-rank run was never "
                           "completed on every rank",
                           r->cfg.output, FT_RUN_MANIFEST, r->world);
    if (rc) return rc;
    if (step != r->pos.global_step)
        return ft_run_fail(r, FT_EFORMAT,
                           "%s/%s names step %lld (%d ranks) but %s is from step %lld: a save "
                           "was cut short on some rank; the files of one checkpoint must all be "
                           "of one step",
                           r->cfg.output, FT_RUN_MANIFEST, (long long)step, world, st_name,
                           (long long)r->pos.global_step);
    return 0;
}

/* ---- resume on another number of ranks ---- */

/* rows [lo, hi) of the class table from the old shards into host (weight, and momentum when
 * mom is not NULL), each shard file checked for the step */
static int gather_old_rows(ft_run *r, int old_world, int64_t step, int64_t lo, int64_t hi, float *w,
                           float *mom) {
    int64_t C = r->cfg.num_classes, E = r->cfg.embedding_size;
    int rc = 0;
    for (int k = 0; k < old_world && !rc; k++) {
        int64_t kn = C / old_world + (k < C % old_world);
        int64_t ks = C / old_world * k + (k < C % old_world ? k : C % old_world);
        int64_t a = lo > ks ? lo : ks, b = hi < ks + kn ? hi : ks + kn;
        if (a >= b) continue;
        char name[64], err[1024];
        ft_ckpt_pfc_name(name, sizeof name, k, old_world);
        ft_st_file f = {0};
        if ((rc = read_part(r, name, &f, step))) break;
        int64_t shape[2] = {kn, E};
        float *buf = malloc((size_t)(kn * E) * sizeof(float));
        if (!buf) rc = ft_run_fail(r, -ENOMEM, "out of memory");
        for (int t = 0; t < (mom ? 2 : 1) && !rc; t++) {
            const char *tn = t ? "weight.momentum_buffer" : "weight";
            rc = ft_ckpt_get_tensor(&f, name, tn, FT_ST_F32, 2, shape, buf,
                                    (size_t)(kn * E) * sizeof(float), err, sizeof err);
            if (rc)
                ft_run_fail(r, rc, "%s (this run has %lld classes, embedding size %lld)", err,
                            (long long)C, (long long)E);
            else
                memcpy((t ? mom : w) + (a - lo) * E, buf + (a - ks) * E,
                       (size_t)((b - a) * E) * sizeof(float));
        }
        free(buf);
        ft_st_free(&f);
    }
    return rc;
}

/* The checkpoint of old_world ranks (manifest at step) on this run's world: state and
 * backbone (with its momentum) from rank 0's files, this rank's class centres and their
 * momentum cut from the old shards (bit for bit), the loader at the same global sample. */
static int resume_resplit(ft_run *r, int old_world, int64_t step) {
    char st_name[64], hint[192];
    ft_ckpt_state_name(st_name, sizeof st_name, 0);
    snprintf(hint, sizeof hint, "this run builds %s", r->model.arch);
    ft_st_file st = {0}, bb = {0};
    int schema = 0;
    char err[1024];
    int rc = read_part(r, st_name, &st, step);
    if (!rc && (rc = ft_ckpt_schema(&st, st_name, &schema, err, sizeof err)))
        ft_run_fail(r, rc, "%s", err);
    if (!rc) rc = resume_state(r, &st, st_name, schema, old_world);
    if (!rc && mid_window(r, r->cfg.gradient_acc))
        rc = ft_run_fail(r, FT_EFORMAT,
                         "%s: saved at step %lld inside a gradient-accumulation window; resume it "
                         "on %d ranks to the window's end first",
                         st_name, (long long)r->pos.global_step, old_world);
    /* the same global sample: the old ranks consumed loader_step * batch * old_world of the
     * epoch's permutation (strided shards: its prefix) */
    uint64_t B = (uint64_t)r->cfg.batch_size, g = r->pos.epoch_step * B * (uint64_t)old_world;
    if (!rc && g % (B * (uint64_t)r->world))
        rc = ft_run_fail(r, FT_EFORMAT,
                         "%s: saved after %llu samples of epoch %llu by %d ranks of batch %llu; "
                         "%d ranks can continue at that sample only when it is a multiple of "
                         "batch_size * world_size = %llu",
                         st_name, (unsigned long long)g, (unsigned long long)r->pos.epoch,
                         old_world, (unsigned long long)B, r->world,
                         (unsigned long long)(B * (uint64_t)r->world));
    if (!rc) {
        r->pos.epoch_step = g / (B * (uint64_t)r->world);
        r->pos.global_step = (int64_t)(r->pos.epoch * r->data.steps_per_epoch + r->pos.epoch_step);
        int64_t v;
        if (schema >= 2 && !ft_ckpt_get_i64(&st, st_name, ACC_DROPOUT, &v, err, sizeof err))
            ft_iresnet_set_rng_state(r->model.net, (uint64_t)v);
    }
    if (!rc) rc = read_part(r, FT_CKPT_BACKBONE, &bb, step);
    ft_ckpt_source sb = src_backbone(r), so = src_opt(r, 0);
    if (!rc && (rc = ft_ckpt_load_source(&bb, FT_CKPT_BACKBONE, &sb, 1, hint, err, sizeof err)))
        ft_run_fail(r, rc, "%s", err);
    int have_opt = !rc && ft_st_find(&st, "conv1.weight.momentum_buffer") != NULL;
    if (have_opt && (rc = ft_ckpt_load_source(&st, st_name, &so, 0, hint, err, sizeof err)))
        ft_run_fail(r, rc, "%s", err);
    int64_t lo = ft_pfc_class_start(r->model.pfc), n = ft_pfc_num_local(r->model.pfc);
    size_t bytes = (size_t)(n * r->cfg.embedding_size) * sizeof(float);
    float *w = rc ? NULL : malloc(bytes), *m = rc || !have_opt ? NULL : malloc(bytes);
    if (!rc && (!w || (have_opt && !m))) rc = ft_run_fail(r, -ENOMEM, "out of memory");
    if (!rc) rc = gather_old_rows(r, old_world, step, lo, lo + n, w, m);
    if (!rc && (rc = ft_pfc_tensor_set(r->model.pfc, 0, w)))
        ft_run_fail(r, rc, "upload: %s", ft_strerror(rc));
    if (!rc && m && (rc = ft_sgd_state_set(r->model.sgd, ft_sgd_state_count(r->model.sgd) - 1, m)))
        ft_run_fail(r, rc, "upload: %s", ft_strerror(rc));
    if (!rc && r->rank == 0)
        fprintf(stderr,
                FT_TRAIN_PROG ": note: %s: the checkpoint of %d ranks (step %lld) re-split over "
                              "%d ranks; epoch %llu continues at sample %llu (step %lld of this "
                              "world size)\n",
                r->cfg.output, old_world, (long long)step, r->world,
                (unsigned long long)r->pos.epoch, (unsigned long long)g,
                (long long)r->pos.global_step);
    if (!rc && !have_opt && r->rank == 0)
        fprintf(stderr,
                FT_TRAIN_PROG ": note: the checkpoint in %s has no optimizer state "
                              "(saved with save_all_states = False); momentum restarts from zero\n",
                r->cfg.output);
    free(w), free(m);
    ft_st_free(&st);
    ft_st_free(&bb);
    return rc;
}

int ft_run_resume(ft_run *r) {
    int64_t mstep = 0;
    int mworld = r->world, mrc = ft_run_read_manifest(r, &mstep, &mworld);
    if (mrc && mrc != -ENOENT) return mrc;
    if (!mrc && mworld != r->world) return resume_resplit(r, mworld, mstep);
    char pfc_name[64], st_name[64], hint[192];
    ft_ckpt_pfc_name(pfc_name, sizeof pfc_name, r->rank, r->world);
    ft_ckpt_state_name(st_name, sizeof st_name, r->rank);
    snprintf(hint, sizeof hint, "this run builds %s", r->model.arch);
    ft_st_file st = {0}, bb = {0}, pf = {0};
    int schema = 0;
    char serr[512];
    int rc = read_part(r, st_name, &st, -1);
    if (!rc && (rc = ft_ckpt_schema(&st, st_name, &schema, serr, sizeof serr)))
        ft_run_fail(r, rc, "%s", serr);
    if (!rc) rc = resume_state(r, &st, st_name, schema, r->world);
    if (!rc) rc = check_manifest(r, st_name);
    if (!rc) rc = resume_window(r, &st, st_name, schema);
    if (!rc) rc = read_part(r, FT_CKPT_BACKBONE, &bb, r->pos.global_step);
    if (!rc) rc = read_part(r, pfc_name, &pf, r->pos.global_step);
    char err[1024];
    ft_ckpt_source sb = src_backbone(r), sp = src_pfc(r), so = src_opt(r, 0), sh = src_opt(r, 1);
    if (!rc && (rc = ft_ckpt_load_source(&bb, FT_CKPT_BACKBONE, &sb, 1, hint, err, sizeof err)))
        ft_run_fail(r, rc, "%s", err);
    char pfc_hint[192];
    snprintf(pfc_hint, sizeof pfc_hint, "this run has %lld classes, embedding size %d",
             (long long)r->cfg.num_classes, r->cfg.embedding_size);
    if (!rc && (rc = ft_ckpt_load_source(&pf, pfc_name, &sp, 0, pfc_hint, err, sizeof err)))
        ft_run_fail(r, rc, "%s", err);
    int have_opt = !rc && ft_st_find(&pf, "weight.momentum_buffer") != NULL;
    if (have_opt && (rc = ft_ckpt_load_source(&pf, pfc_name, &sh, 0, pfc_hint, err, sizeof err)))
        ft_run_fail(r, rc, "%s", err);
    if (have_opt && (rc = ft_ckpt_load_source(&st, st_name, &so, 0, hint, err, sizeof err)))
        ft_run_fail(r, rc, "%s", err);
    if (!rc && !have_opt)
        fprintf(stderr,
                FT_TRAIN_PROG ": note: the checkpoint in %s has no optimizer state "
                              "(saved with save_all_states = False); momentum restarts from zero\n",
                r->cfg.output);
    ft_st_free(&st);
    ft_st_free(&bb);
    ft_st_free(&pf);
    return rc;
}
