/* loop.c: ft-train's training loop, logging, verification and checkpoint cadence, as
 * arcface_torch's train_v2.py runs them. See run.h. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "run.h"

/* ------------------------------------------------------------------ outputs */

/* "lfw.bin cfp_fp.bin" (sorted), or "none": the .bin files in dir, for messages. */
static void list_bins(const char *dir, char *out, size_t cap) {
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t k = strlen(names[i]->d_name);
        if (k > 4 && strcmp(names[i]->d_name + k - 4, ".bin") == 0 && len + k + 2 < cap)
            len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? " " : "", names[i]->d_name);
        free(names[i]);
    }
    free(names);
    if (!out[0]) snprintf(out, cap, "none");
}

/* A val_targets name without <rec>/<name>.bin: a note at start, an error with strict_targets. */
static int missing_target(ft_run *r, const char *name, const char *path) {
    char have[1024];
    list_bins(r->cfg.rec, have, sizeof have);
    if (r->cfg.strict_targets)
        return ft_run_fail(r, -ENOENT,
                           "%s: val_targets '%s' has no .bin file (strict_targets = True); the "
                           ".bin files in %s: %s",
                           path, name, r->cfg.rec, have);
    fprintf(stderr,
            FT_TRAIN_PROG ": note: %s: val_targets '%s' has no .bin file, it is skipped; the .bin "
                          "files in %s: %s\n",
            path, name, r->cfg.rec, have);
    return 0;
}

static int load_targets(ft_run *r) {
    for (int i = 0; i < r->cfg.n_val_targets; i++) {
        char path[PATH_MAX], name[80], err[1024];
        snprintf(name, sizeof name, "%s.bin", r->cfg.val_targets[i]);
        if (ft_path_join(path, sizeof path, r->cfg.rec, name))
            return ft_run_fail(r, FT_ERANGE, "%s: path too long", r->cfg.rec);
        uint64_t size;
        if (ft_file_size(path, &size) != 0) {
            int rc = missing_target(r, r->cfg.val_targets[i], path);
            if (rc) return rc;
            continue;
        }
        ft_verify_target *t;
        int rc = ft_verify_load(&t, path, r->cfg.val_targets[i], 112, 112, err, sizeof err);
        if (rc) return ft_run_fail(r, rc, "%s", err);
        r->out.targets[r->out.n_targets++] = t;
    }
    return 0;
}

int ft_run_open_outputs(ft_run *r) {
    char err[1024];
    int rc = 0;
    if (r->rank == 0) {
        if ((rc = ft_trainlog_open(&r->out.log, r->cfg.output, stdout, err, sizeof err)))
            return ft_run_fail(r, rc, "%s", err);
        char tbdir[PATH_MAX];
        if (ft_path_join(tbdir, sizeof tbdir, r->cfg.output, "tensorboard"))
            return ft_run_fail(r, FT_ERANGE, "%s: path too long", r->cfg.output);
        if ((rc = ft_tboard_open(&r->out.tb, tbdir, -1, err, sizeof err)))
            return ft_run_fail(r, rc, "%s", err);
        ft_trainlog_msg(r->out.log, "rank_id: %d", r->rank);
        for (int i = 0; i < r->cfg.n_entries; i++) {
            char line[8192];
            ft_config_line(&r->cfg, i, line, sizeof line);
            ft_trainlog_msg(r->out.log, "%s", line);
        }
        if ((rc = load_targets(r))) return rc;
    }
    r->out.last_verified = -1;
    return 0;
}

void ft_run_close_outputs(ft_run *r) {
    for (int i = 0; i < r->out.n_targets; i++) ft_verify_free(r->out.targets[i]);
    r->out.n_targets = 0;
    ft_tboard_close(r->out.tb);
    ft_trainlog_close(r->out.log);
    r->out.tb = NULL, r->out.log = NULL;
}

/* ------------------------------------------------------------------ progress display */

/* On a terminal (stderr): one bar line "step [###...] 123/320  410.2 samples/s  loss 21.4312
 * lr 0.100000  ETA 00:01:23", and "verifying lfw [###...] 3/12 ..." while a target is
 * evaluated; it is erased before training.log lines (stdout may be the same terminal).
 * Otherwise a plain line every 10 s, and one line when a verification starts. */
static void progress_start(ft_run *r) {
    ft_progress_init(&r->out.prog, "step", (uint64_t)r->cfg.total_step);
    r->out.prog.done = r->out.prog.first = (uint64_t)r->pos.global_step;
}

static void progress_step(ft_run *r, float loss, double lr) {
    ft_progress *p = &r->out.prog;
    double el = ft_now() - p->t_start;
    double sps = el > 0 ? (double)((uint64_t)r->pos.global_step - p->first) * r->cfg.batch_size *
                              r->world / el
                        : 0;
    snprintf(p->note, sizeof p->note, "%.1f samples/s  loss %.4f  lr %.6f", sps, (double)loss, lr);
    uint64_t add = (uint64_t)r->pos.global_step - p->done;
    if (p->tty && !p->printed) { /* hidden for a log line: back at once */
        p->done += add;
        ft_progress_redraw(p);
    } else {
        ft_progress_add(p, add, 0);
    }
}

/* ft_embed_fn around ft_run_embed that moves the verification bar. */
static int embed_progress(void *ctx, const float *x, int n, float *out) {
    ft_run *r = ctx;
    int rc = ft_run_embed(r, x, n, out);
    if (!rc) ft_progress_add(&r->out.vprog, 1, 0);
    return rc;
}

static void progress_verify_start(ft_run *r, const ft_verify_target *t) {
    int64_t imgs = 2 * ft_verify_pairs(t), b = r->cfg.batch_size;
    snprintf(r->out.vwhat, sizeof r->out.vwhat, "verifying %s", ft_verify_name(t));
    ft_progress_hide(&r->out.prog);
    /* two embed calls (originals, mirrors) per chunk of batch images */
    ft_progress_init(&r->out.vprog, r->out.vwhat, (uint64_t)(2 * ((imgs + b - 1) / b)));
    if (r->out.vprog.tty)
        ft_progress_redraw(&r->out.vprog);
    else
        fprintf(stderr, FT_TRAIN_PROG ": step %lld: %s (%lld pairs)\n",
                (long long)r->pos.global_step, r->out.vwhat, (long long)ft_verify_pairs(t));
}

/* ------------------------------------------------------------------ verification */

int ft_run_verify_all(ft_run *r) {
    for (int i = 0; i < r->out.n_targets; i++) {
        ft_verify_result res;
        char err[1024];
        progress_verify_start(r, r->out.targets[i]);
        int rc = ft_verify_run(r->out.targets[i], embed_progress, r, r->cfg.embedding_size,
                               r->cfg.batch_size, &res, err, sizeof err);
        ft_progress_hide(&r->out.vprog);
        if (rc == FT_ESTOP) { /* a signal: stop now, the caller checkpoints as for any stop */
            r->stats.stopped = 1;
            return rc;
        }
        if (rc) return ft_run_fail(r, rc, "verification: %s", err);
        const char *name = ft_verify_name(r->out.targets[i]);
        long long step = (long long)r->pos.global_step;
        ft_trainlog_msg(r->out.log, "[%s][%lld]XNorm: %f", name, step, res.xnorm);
        ft_trainlog_msg(r->out.log, "[%s][%lld]Accuracy-Flip: %1.5f+-%1.5f", name, step, res.acc,
                        res.std);
        if (res.acc > r->out.highest[i]) r->out.highest[i] = res.acc;
        ft_trainlog_msg(r->out.log, "[%s][%lld]Accuracy-Highest: %1.5f", name, step,
                        r->out.highest[i]);
        if (r->out.tb) ft_tboard_scalar(r->out.tb, name, (float)res.acc, r->pos.global_step, -1);
        r->out.last_acc[i] = res.acc;
    }
    r->out.last_verified = r->pos.global_step;
    return 0;
}

/* ------------------------------------------------------------------ one step */

/* Per-step losses for tests and debugging: FT_TRAIN_LOSS_FILE=path appends "step loss". */
static void dump_loss(int64_t step, float loss) {
    const char *p = getenv("FT_TRAIN_LOSS_FILE");
    if (!p || !*p) return;
    FILE *f = fopen(p, "a");
    if (!f) return;
    fprintf(f, "%lld %.9g\n", (long long)step, (double)loss);
    fclose(f);
}

/* pfc_update = 'sampled' with gradient_acc > 1: remember the rows this micro-step sampled
 * (the host copy of the index: one wait for the device per micro-step). */
static void mark_sampled_rows(ft_run *r) {
    const int32_t *idx;
    int count;
    if (!r->model.sampled_update || r->cfg.gradient_acc == 1 ||
        ft_pfc_index(r->model.pfc, &idx, &count))
        return;
    for (int i = 0; i < count; i++) r->model.row_mask[idx ? idx[i] : i] = 1; /* NULL: every row */
}

/* Restrict the head's optimizer step to the rows sampled since the last step (the union over
 * the gradient_acc micro-steps), then forget them. One micro-step: the sampled index as it
 * lies on the device. */
static int restrict_head_rows(ft_run *r) {
    if (!r->model.sampled_update) return 0;
    if (r->cfg.gradient_acc == 1) {
        const int32_t *rows;
        int n;
        int rc = ft_pfc_sampled_rows(r->model.pfc, &rows, &n);
        return rc ? rc
                  : ft_sgd_set_rows(r->model.sgd, r->model.pfc_param_id, r->cfg.embedding_size,
                                    rows, n);
    }
    int64_t nl = ft_pfc_num_local(r->model.pfc);
    int count = 0;
    for (int64_t j = 0; j < nl; j++)
        if (r->model.row_mask[j]) r->model.row_host[count++] = (int32_t)j, r->model.row_mask[j] = 0;
    int rc = r->model.ops->upload(r->model.ops, r->model.row_dev, r->model.row_host,
                                  (size_t)count * sizeof(int32_t));
    if (rc) return rc;
    return ft_sgd_set_rows(r->model.sgd, r->model.pfc_param_id, r->cfg.embedding_size,
                           r->model.row_dev, count);
}

/* "step N: <what> (training diverged: ...; the checkpoint in <output> is the last good one)" */
static int diverged(ft_run *r, const char *what) {
    char ck[PATH_MAX + 96];
    if (r->out.last_saved >= 0)
        snprintf(ck, sizeof ck, "the checkpoint in %s is the last good one, from step %lld",
                 r->cfg.output, (long long)r->out.last_saved);
    else
        snprintf(ck, sizeof ck, "no checkpoint was written");
    return ft_run_fail(r, FT_ERANGE,
                       "step %lld: %s (training diverged: lower lr = %g or check the data; %s)",
                       (long long)r->pos.global_step, what, r->cfg.lr, ck);
}

/* fp32: a non-finite loss or gradient norm stops the run with one line, before the optimizer
 * step, so that the poisoned state is never saved and the last good checkpoint stays (norm < 0:
 * no optimizer step this micro-step). Returns 0 to go on, or < 0 with r->err set. With fp16
 * the loss scaler decides instead (unscale_step): a non-finite step is skipped, and only
 * repeated skips stop the run. */
static int check_finite(ft_run *r, float loss, double norm) {
    if (r->model.scaler.enabled) return 0;
    const char *what = !isfinite(loss)                ? "loss"
                       : norm >= 0 && !isfinite(norm) ? "gradient norm"
                                                      : NULL;
    if (!what) return 0;
    char msg[64];
    double x = !isfinite(loss) ? (double)loss : norm;
    snprintf(msg, sizeof msg, "%s is %s", what, isnan(x) ? "nan" : x > 0 ? "inf" : "-inf");
    return diverged(r, msg);
}

/* Tests and the GPU check: FT_TRAIN_INJECT_INF=N puts an inf into the first gradient of the
 * backbone at global step N (an fp16 overflow on demand). */
static int inject_inf(ft_run *r) {
    const char *v = getenv("FT_TRAIN_INJECT_INF");
    if (!v || !*v || strtoll(v, NULL, 10) != r->pos.global_step) return 0;
    ft_param p;
    float inf = INFINITY;
    int rc = ft_iresnet_param(r->model.net, 0, &p);
    return rc ? rc : r->model.ops->upload(r->model.ops, p.g, &inf, sizeof inf);
}

/* fp16: unscale the accumulated gradients and check them (GradScaler.unscale_ + update);
 * *skip is 1 when the optimizer step must be skipped. Too many skips in a row stop the run
 * as a divergence. Returns 0, or < 0 with r->err set. */
static int unscale_step(ft_run *r, int *skip) {
    *skip = 0;
    if (!r->model.scaler.enabled) return 0;
    float scale = ft_scaler_scale(&r->model.scaler);
    int inf = 0, rc = inject_inf(r);
    if (!rc) rc = ft_sgd_unscale(r->model.sgd, 1.0f / scale, &inf);
    if (rc)
        return ft_run_fail(r, rc, "step %lld: loss scaler: %s", (long long)r->pos.global_step,
                           ft_strerror(rc));
    /* the backbone's gradients are the same on every rank, the shards' are not: one rank's
     * inf skips the step everywhere */
    if ((rc = ft_run_dist_any(r, inf, &inf))) return rc;
    *skip = ft_scaler_update(&r->model.scaler, inf);
    if (!*skip) return 0;
    ft_progress_hide(&r->out.prog);
    ft_trainlog_msg(r->out.log,
                    "step %lld: inf/NaN in the fp16 gradients at loss scale %g: step skipped, "
                    "scale now %g (%lld skipped so far)",
                    (long long)r->pos.global_step, (double)scale,
                    (double)ft_scaler_scale(&r->model.scaler), (long long)r->model.scaler.skipped);
    if (r->model.scaler.consecutive > r->cfg.max_skipped_steps) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "%lld optimizer steps in a row had inf/NaN fp16 gradients (loss scale down to "
                 "%g, max_skipped_steps = %d)",
                 (long long)r->model.scaler.consecutive, (double)ft_scaler_scale(&r->model.scaler),
                 r->cfg.max_skipped_steps);
        return diverged(r, msg);
    }
    return 0;
}

/* The batch's upload: the uint8 pixels (a quarter of the floats) on the backend's copy
 * stream beside the previous step's optimizer pass, or the loader's floats into the network
 * input. Safe: the previous step's input_u8 (the last user of pixels_dev) was followed by its
 * loss download, and the page-locked batch stays untouched until the next loader_next, by
 * which time this step's downloads have waited for the copy. */
static int upload_batch(ft_run *r, const loader_batch *b) {
    ft_ops *o = r->model.ops;
    int rc = b->layout == LOADER_U8_HWC
                 ? o->upload_ahead(o, r->data.pixels_dev, b->data, b->data_bytes)
                 : o->upload(o, ft_iresnet_input(r->model.net), b->data, b->data_bytes);
    return rc ? ft_run_fail(r, rc, "%s: %s", b->layout == LOADER_U8_HWC ? "input" : "upload",
                            ft_strerror(rc))
              : 0;
}

/* the network input from the uploaded pixels, normalized where they land (input_u8) */
static int make_input(ft_run *r, const loader_batch *b) {
    if (b->layout != LOADER_U8_HWC) return 0;
    ft_ops *o = r->model.ops;
    return o->input_u8(o, (int)b->n, (int)b->h, (int)b->w, r->data.pixels_dev,
                       ft_iresnet_input(r->model.net));
}

/* The device part of a step, with its per-step values staged (ft_iresnet_stage,
 * ft_pfc_stage; several ranks: the labels gathered): input, forward, Partial FC (its draw
 * first), backward; no wait for the device, so that a graph can record it. Several ranks add
 * the embeddings' all-gather before Partial FC (over the global batch, its softmax reduced
 * across the shards), the embedding gradient's reduce-scatter after it and the gradient
 * buckets' all-reduce after backward (ft_comm_recordable: recorded with the kernels). */
static int step_device(ft_run *r, const loader_batch *b) {
    const float *emb = NULL, *emb_all = NULL;
    float *demb_all = r->model.demb;
    int rc = make_input(r, b);
    if (!rc)
        rc = ft_iresnet_forward(r->model.net, ft_iresnet_input(r->model.net), (int)b->n, 1, &emb);
    emb_all = emb;
    if (!rc && r->dist.dpfc) rc = ft_dpfc_gather_emb(r->dist.dpfc, emb, &emb_all, &demb_all);
    if (!rc) rc = ft_pfc_forward_backward_dev(r->model.pfc, emb_all, demb_all);
    if (!rc && r->dist.dpfc) rc = ft_dpfc_scatter(r->dist.dpfc, r->model.demb);
    if (!rc) rc = ft_iresnet_backward(r->model.net, r->model.demb);
    if (!rc && r->dist.dp) rc = ft_dp_reduce_grads(r->dist.dp);
    return rc;
}

static int step_device_cb(void *ctx) {
    void **a = ctx;
    return step_device(a[0], a[1]);
}

/* Several ranks: a number for the step's sampled-class counts on every shard (the graph's
 * shape besides rows and loss scale). Every rank computes the vector from the gathered labels
 * alone, so every rank gets the same number, and it stays while the vector does; a step whose
 * vector differs from the one before gets a new number (a recording of an older vector was
 * dropped then anyway: the slot holds one). */
static int shards_shape(ft_run *r, const int32_t *labels, int rows, uint64_t *id) {
    ft_run_graph *gr = &r->model.graph;
    size_t bytes = (size_t)r->world * sizeof(int32_t);
    int rc = ft_pfc_shard_counts(r->model.pfc, labels, rows, gr->counts);
    if (rc) return rc;
    if (gr->counts_id == 0 || memcmp(gr->counts, gr->counts_seen, bytes) != 0) {
        memcpy(gr->counts_seen, gr->counts, bytes);
        gr->counts_id++;
    }
    *id = gr->counts_id;
    return 0;
}

/* cuda_graphs: step_device through the model's graph slot (ft_graph_run), keyed by the step's
 * shape: rows, sampled classes, loss scale. A shape seen for the second step in a row is
 * recorded (the recording's calls have their host-side effects then, and the launch runs
 * them); later steps of that shape replay it, and the host side of the replayed calls is
 * brought up to date (ft_iresnet_replayed, ft_pfc_replayed). */
static int graph_step(ft_run *r, const loader_batch *b, uint64_t shape, int *reported) {
    ft_run_graph *gr = &r->model.graph;
    ft_ops *o = r->model.ops;
    int n = (int)b->n, how;
    float scale = ft_scaler_scale(&r->model.scaler);
    uint32_t scale_bits;
    memcpy(&scale_bits, &scale, sizeof scale_bits);
    uint64_t key[3] = {(uint64_t)n, shape, scale_bits};
    void *ctx[2] = {r, (void *)b};
    int rc = ft_graph_run(o, &gr->slot, key, 3, step_device_cb, ctx, &how);
    /* a recording that failed (the work inside it, or graph_begin/graph_end: the slot holds
     * none); a failed launch is reported by the caller as any device error */
    if (rc && (how == FT_GRAPH_RECORDED || (how == FT_GRAPH_FAILED && !gr->slot.g))) {
        *reported = 1;
        return ft_run_fail(r, rc,
                           "step %lld: cuda_graphs: the step could not be recorded as a graph "
                           "(%s; the line above says which call); cuda_graphs=False runs it "
                           "without",
                           (long long)r->pos.global_step, ft_strerror(rc));
    }
    if (!rc && how == FT_GRAPH_REPLAYED) {
        ft_iresnet_replayed(r->model.net, n);
        ft_pfc_replayed(r->model.pfc);
    }
    return rc;
}

static int partial_fc_error(ft_run *r, int rc) {
    return ft_run_fail(r, rc, "step %lld: Partial FC: %s (labels must be < num_classes = %lld)",
                       (long long)r->pos.global_step, ft_strerror(rc),
                       (long long)r->cfg.num_classes);
}

/* Tests: FT_TRAIN_INJECT_STALE=STEP[:RANK] makes rank RANK (default 0) vote at global step
 * STEP as if its recording had gone stale (its scratch memory replaced). */
static int inject_stale(const ft_run *r) {
    const char *v = getenv("FT_TRAIN_INJECT_STALE");
    long long step = -1;
    int rank = 0;
    if (!v || sscanf(v, "%lld:%d", &step, &rank) < 1) return 0;
    return step == r->pos.global_step && rank == r->rank;
}

/* Several ranks with cuda_graphs: the global batch's labels gathered (a wait), with every
 * rank's vote that its recording is still launchable (graph_check) carried along: a
 * recording one rank could not replay (its scratch memory was replaced, e.g. by rank 0's
 * verification) is dropped on every rank, so that the ranks record, replay or run directly
 * at the same steps and their collectives always pair up. */
static int stage_dist(ft_run *r, const loader_batch *b, const int32_t **labels, int *rows,
                      uint64_t *shape) {
    ft_run_graph *gr = &r->model.graph;
    ft_ops *o = r->model.ops;
    int agree = !gr->slot.g || (o->graph_check(o, gr->slot.g) == 0 && !inject_stale(r));
    int rc = ft_dpfc_gather_labels(r->dist.dpfc, b->labels, (int)b->n, labels, &agree);
    if (rc)
        return ft_run_fail(r, rc, "step %lld: all-gather of the labels: %s",
                           (long long)r->pos.global_step, ft_strerror(rc));
    if (!agree) ft_graph_slot_drop(o, &gr->slot);
    *rows = (int)b->n * r->world;
    if ((rc = shards_shape(r, *labels, *rows, shape))) return partial_fc_error(r, rc);
    return 0;
}

/* The forward and backward of a step with cuda_graphs: the per-step values staged on the
 * device first (several ranks: the labels gathered), then the device part (recorded or
 * replayed; several ranks: waited for with the transport's error polling), then the loss. */
static int fwd_bwd_graph(ft_run *r, const loader_batch *b, float *loss) {
    int reported = 0, rows = (int)b->n, rc = ft_iresnet_stage(r->model.net);
    const int32_t *labels = b->labels;
    uint64_t shape = 0;
    if (rc) return ft_run_fail(r, rc, "upload: %s", ft_strerror(rc));
    if (r->dist.dpfc && (rc = stage_dist(r, b, &labels, &rows, &shape))) return rc;
    if ((rc = ft_pfc_stage(r->model.pfc, labels, rows, (uint64_t)r->pos.global_step)))
        return partial_fc_error(r, rc);
    if (!r->dist.dpfc) shape = (uint64_t)ft_pfc_step_count(r->model.pfc);
    if ((rc = ft_pfc_set_loss_scale(r->model.pfc, ft_scaler_scale(&r->model.scaler))) ||
        (rc = graph_step(r, b, shape, &reported)))
        return reported ? rc
                        : ft_run_fail(r, rc, "step %lld: forward/backward: %s",
                                      (long long)r->pos.global_step, ft_strerror(rc));
    if (r->dist.dpfc && (rc = r->dist.dev->sync(r->dist.dev)))
        return ft_run_fail(r, rc, "step %lld: the step's collectives: %s",
                           (long long)r->pos.global_step, ft_strerror(rc));
    mark_sampled_rows(r);
    if ((rc = ft_pfc_loss(r->model.pfc, loss)))
        return ft_run_fail(r, rc, "step %lld: loss: %s", (long long)r->pos.global_step,
                           ft_strerror(rc));
    return 0;
}

/* The forward and backward of a step, directly (any number of ranks). */
static int fwd_bwd(ft_run *r, const loader_batch *b, float *loss) {
    int n = (int)b->n, rows = n, rc;
    const float *emb = NULL, *emb_all;
    const int32_t *labels_all = b->labels;
    float *demb_all = r->model.demb;
    if ((rc = make_input(r, b))) return ft_run_fail(r, rc, "input: %s", ft_strerror(rc));
    if ((rc = ft_iresnet_forward(r->model.net, ft_iresnet_input(r->model.net), n, 1, &emb)))
        return ft_run_fail(r, rc, "step %lld: forward: %s", (long long)r->pos.global_step,
                           ft_strerror(rc));
    emb_all = emb;
    /* several ranks: Partial FC sees the global batch (every rank's rows, in rank order) */
    if (r->dist.dpfc) {
        rows = n * r->world;
        if ((rc =
                 ft_dpfc_gather(r->dist.dpfc, emb, b->labels, n, &emb_all, &labels_all, &demb_all)))
            return ft_run_fail(r, rc, "step %lld: all-gather of the embeddings: %s",
                               (long long)r->pos.global_step, ft_strerror(rc));
    }
    if ((rc = ft_pfc_prepare(r->model.pfc, labels_all, rows, (uint64_t)r->pos.global_step)))
        return partial_fc_error(r, rc);
    mark_sampled_rows(r);
    if ((rc = ft_pfc_set_loss_scale(r->model.pfc, ft_scaler_scale(&r->model.scaler))) ||
        (rc = ft_pfc_forward_backward(r->model.pfc, emb_all, demb_all, loss)) ||
        (r->dist.dpfc && (rc = ft_dpfc_scatter(r->dist.dpfc, r->model.demb))) ||
        (rc = ft_iresnet_backward(r->model.net, r->model.demb)) ||
        (r->dist.dp && (rc = ft_dp_reduce_grads(r->dist.dp))))
        return ft_run_fail(r, rc, "step %lld: backward: %s", (long long)r->pos.global_step,
                           ft_strerror(rc));
    return 0;
}

static int train_step(ft_run *r, const loader_batch *b, float *loss) {
    int rc = upload_batch(r, b);
    if (!rc) rc = r->model.graph.on ? fwd_bwd_graph(r, b, loss) : fwd_bwd(r, b, loss);
    if (rc) return rc;
    if (r->pos.global_step % r->cfg.gradient_acc == 0) {
        double norm = 0;
        int skip = 0;
        float lr = (float)ft_lrsched_at(&r->pos.lr, r->pos.global_step - 1);
        if ((rc = unscale_step(r, &skip))) return rc;
        if ((rc = ft_sgd_clip_grad_norm(r->model.sgd, FT_SGD_GROUP_BACKBONE, FT_TRAIN_CLIP, &norm)))
            return ft_run_fail(r, rc, "step %lld: optimizer: %s", (long long)r->pos.global_step,
                               ft_strerror(rc));
        if ((rc = check_finite(r, *loss, norm))) return rc;
        if ((rc = restrict_head_rows(r)) || (!skip && (rc = ft_sgd_step(r->model.sgd, lr))) ||
            (rc = ft_sgd_zero_grad(r->model.sgd)))
            return ft_run_fail(r, rc, "step %lld: optimizer: %s", (long long)r->pos.global_step,
                               ft_strerror(rc));
        return 0;
    }
    return check_finite(r, *loss, -1);
}

/* ------------------------------------------------------------------ the loop */

static int next_batch(ft_run *r, loader_batch *b) {
    double t0 = ft_now();
    int rc = loader_next(r->data.ld, b);
    r->data.t_input += ft_now() - t0;
    if (rc) return ft_run_fail(r, rc, "%s", loader_errmsg(r->data.ld));
    if (b->epoch != r->pos.epoch || b->step != r->pos.epoch_step)
        return ft_run_fail(r, FT_EFORMAT,
                           "loader delivered epoch %llu step %llu, expected %llu/%llu",
                           (unsigned long long)b->epoch, (unsigned long long)b->step,
                           (unsigned long long)r->pos.epoch, (unsigned long long)r->pos.epoch_step);
    return 0;
}

/* After a step: logging, verification; returns 1 when training must stop now. */
static int after_step(ft_run *r, ft_speedlog *sl, float loss, int *rc) {
    ft_speedlog_loss(sl, loss);
    double lr_now = ft_lrsched_at(&r->pos.lr, r->pos.global_step);
    if (r->rank == 0 && r->pos.global_step % r->cfg.frequent == 0) ft_progress_hide(&r->out.prog);
    if (r->rank == 0 &&
        ft_speedlog_step(sl, r->out.log, r->out.tb, r->pos.global_step, (int)r->pos.epoch, lr_now,
                         r->model.scaler.enabled, ft_scaler_scale(&r->model.scaler)) &&
        r->out.tb) {
        /* the share of the time since the last progress step that the steps waited for the
         * loader (the input pipeline's health, per logged step) */
        double now = ft_now(), wall = now - r->out.wait_t0;
        if (wall > 0)
            ft_tboard_scalar(r->out.tb, "input_wait",
                             (float)(100 * (r->data.t_input - r->out.wait_in0) / wall),
                             r->pos.global_step, -1);
        r->out.wait_t0 = now, r->out.wait_in0 = r->data.t_input;
        if (r->model.scaler.enabled) {
            ft_tboard_scalar(r->out.tb, "grad_scale", ft_scaler_scale(&r->model.scaler),
                             r->pos.global_step, -1);
            ft_tboard_scalar(r->out.tb, "skipped_steps", (float)r->model.scaler.skipped,
                             r->pos.global_step, -1);
        }
    }
    if (r->pos.global_step % r->cfg.verbose == 0) {
        int v = ft_run_verify_all(r); /* rank 0 holds the targets; the others note the step */
        if ((*rc = ft_run_dist_rank0_status(r, v))) {
            if (*rc == FT_ESTOP) *rc = 0; /* a signal inside the verification: stats.stopped */
            if (*rc == 0) r->stats.stopped = 1;
            return 1;
        }
    }
    /* a signal stops after this step, also inside a gradient-accumulation window: the
     * checkpoint carries the partial gradient (ft_run_save); every rank stops at the same
     * step (a signal reaches the ranks at different moments) */
    int stop = 0;
    if ((*rc = ft_run_dist_any(r, ft_stop_requested(), &stop))) return 1;
    if (stop) {
        r->stats.stopped = 1;
        return 1;
    }
    if (r->cfg.max_steps && r->pos.global_step >= r->cfg.max_steps) return 1;
    if (r->rank == 0) progress_step(r, loss, lr_now);
    return 0;
}

/* Tests: FT_TRAIN_INJECT_CRASH=STEP:POINT[:RANK] kills this process (SIGKILL, rank 0 unless
 * RANK is given) inside the save of global step STEP, at POINT "staged" (its files staged,
 * nothing committed) or "committed" (the manifest names the step, nothing renamed yet). */
static void inject_crash(const ft_run *r, const char *point) {
    const char *v = getenv("FT_TRAIN_INJECT_CRASH");
    char at[16] = "";
    long long step = -1;
    int rank = 0;
    if (!v || sscanf(v, "%lld:%15[a-z]:%d", &step, at, &rank) < 2) return;
    if (step == r->pos.global_step && rank == r->rank && strcmp(at, point) == 0) {
        fprintf(stderr, FT_TRAIN_PROG ": rank %d: FT_TRAIN_INJECT_CRASH: killed at step %lld, %s\n",
                r->rank, step, point);
        raise(SIGKILL);
    }
}

/* A checkpoint, in two phases (checkpoint.h): every rank stages its files; once all have,
 * rank 0 commits the step in the manifest (checkpoint.json); once every rank knows the commit
 * happened, each renames its staged files into place. A crash before the commit keeps the last
 * checkpoint whole, one after it is completed at the next start (ft_run_recover_ckpt).
 * Remembers the step for the divergence message. */
static int save(ft_run *r) {
    int rc = ft_run_save(r), any = 0;
    if (!rc) inject_crash(r, "staged");
    int ra = ft_run_dist_any(r, rc != 0, &any);
    if (ra) return rc ? rc : ra; /* no agreement is possible: the staged files stay uncommitted */
    if (any) {
        ft_run_unstage(r);
        if (rc == FT_ERANGE && strstr(r->err, ": not saved")) { /* a NaN or infinity: no file */
            char what[sizeof r->err];
            snprintf(what, sizeof what, "%s", r->err);
            return diverged(r, what);
        }
        return rc ? rc
                  : ft_run_fail(r, FT_EARG,
                                "step %lld: another rank could not write its checkpoint files (see "
                                "its line); the manifest still names the last complete checkpoint",
                                (long long)r->pos.global_step);
    }
    int mrc = r->rank == 0 ? ft_run_write_manifest(r) : 0, mbad = 0;
    if (!mrc) inject_crash(r, "committed");
    if ((ra = ft_run_dist_any(r, mrc != 0, &mbad))) return mrc ? mrc : ra;
    if (mbad) {
        ft_run_unstage(r);
        return mrc ? mrc
                   : ft_run_fail(r, FT_EARG,
                                 "step %lld: rank 0 could not commit the checkpoint (see its "
                                 "line); the manifest still names the last complete checkpoint",
                                 (long long)r->pos.global_step);
    }
    if ((rc = ft_run_promote(r))) return rc;
    r->out.last_saved = r->pos.global_step;
    return 0;
}

static int train_loop(ft_run *r) {
    ft_speedlog sl;
    ft_speedlog_init(&sl, r->cfg.frequent, r->pos.lr.total, r->cfg.batch_size, r->world,
                     r->pos.global_step, ft_trainlog_now(r->out.log));
    double t0 = ft_now();
    r->out.wait_t0 = t0, r->out.wait_in0 = r->data.t_input;
    /* max_steps already reached (e.g. a resume that only re-splits a checkpoint over another
     * number of ranks): no step, the checkpoint below is written in this run's layout */
    int rc = 0, stop = r->cfg.max_steps && r->pos.global_step >= r->cfg.max_steps;
    while (!stop && r->pos.epoch < (uint64_t)r->cfg.num_epoch) {
        while (!stop && r->pos.epoch_step < r->data.steps_per_epoch) {
            loader_batch b;
            float loss = 0;
            if ((rc = next_batch(r, &b))) return rc;
            r->pos.global_step++;
            if ((rc = train_step(r, &b, &loss))) return rc;
            r->pos.epoch_step++;
            if (r->stats.steps_run++ == 0) r->stats.first_loss = loss;
            r->stats.last_loss = loss;
            dump_loss(r->pos.global_step, loss);
            stop = after_step(r, &sl, loss, &rc);
            if (rc) return rc;
        }
        if (r->pos.epoch_step ==
            r->data.steps_per_epoch) { /* epoch done: checkpoint, as train_v2 */
            r->pos.epoch++;
            r->pos.epoch_step = 0;
            if ((rc = save(r))) return rc;
            if (stop) break;
            continue;
        }
        break;
    }
    r->stats.t_train = ft_now() - t0;
    r->stats.t_input = r->data.t_input;
    ft_progress_hide(&r->out.prog);
    /* stopped mid-epoch (max_steps or a signal): checkpoint where we are */
    if (r->pos.epoch_step != 0 && (rc = save(r))) return rc;
    /* the final verification; a signal during it (or the save) still stops with exit 130 */
    int any_stop = 0;
    if ((rc = ft_run_dist_any(r, ft_stop_requested(), &any_stop))) return rc;
    if (!r->stats.stopped && !any_stop && r->out.last_verified != r->pos.global_step) {
        int v = ft_run_verify_all(r);
        if ((rc = ft_run_dist_rank0_status(r, v)) && rc != FT_ESTOP) return rc;
    }
    if (ft_stop_requested() || any_stop) r->stats.stopped = 1;
    return 0;
}

/* cuda_graphs: on where the backend has graphs and, with several ranks, the step's
 * collectives go through a transport a graph records (NCCL); a note otherwise */
static int graphs_setup(ft_run *r) {
    ft_run_graph *gr = &r->model.graph;
    if (!r->cfg.cuda_graphs) return 0;
    int multi = r->world > 1, rec = !multi || (r->dist.dpfc && ft_comm_recordable(r->dist.dev));
    if (r->model.ops->graph_begin && rec) {
        if (multi && (!(gr->counts = calloc((size_t)r->world, sizeof(int32_t))) ||
                      !(gr->counts_seen = calloc((size_t)r->world, sizeof(int32_t)))))
            return ft_run_fail(r, -ENOMEM, "out of memory");
        gr->on = 1;
        return 0;
    }
    if (r->rank == 0 && !r->model.ops->graph_begin)
        fprintf(stderr,
                FT_TRAIN_PROG ": note: cuda_graphs = True is ignored: the %s backend has no "
                              "graphs; the steps run without graphs\n",
                r->model.ops->name);
    else if (r->rank == 0)
        fprintf(stderr,
                FT_TRAIN_PROG ": note: cuda_graphs = True is ignored: the %s transport's "
                              "collectives cannot be recorded in a graph; the steps run without "
                              "graphs\n",
                r->dist.dev ? r->dist.dev->name : "(none)");
    return 0;
}

int ft_run_train(ft_run *r) {
    int rs = graphs_setup(r);
    if (rs) return rs;
    r->out.last_saved = r->cfg.resume ? r->pos.global_step : -1;
    progress_start(r);
    int rc = train_loop(r);
    ft_progress_hide(&r->out.prog);
    return rc;
}
