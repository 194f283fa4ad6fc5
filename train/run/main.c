/* ft-train: train a face-recognition embedding model (IResNet + ArcFace/CosFace margin softmax
 * + Partial FC) from an arcface_torch-style config file. See docs/training.md.
 *
 *   ft-train CONFIG [key=value ...]
 *   ft-train --check-config CONFIG [key=value ...]   the resolved config, nothing else
 *
 * Outputs in config.output: training.log, tensorboard/, backbone.safetensors,
 * pfc_rank<r>_of<w>.safetensors, state_rank<r>.safetensors, backbone.onnx (export_onnx, at
 * the end of a run not stopped by a signal). Exit status: 0 done, 1 error,
 * 2 usage, 130 stopped by a signal (after writing a checkpoint; resume with resume=True).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h" // defines: status codes, files, stop flag
#include "run.h"       // defines: ft_run and the steps of a run

#include "ft_dataset.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: " FT_TRAIN_PROG " [--check-config] CONFIG [key=value ...]\n"
            "Train an IResNet face-embedding model with margin softmax and Partial FC.\n"
            "CONFIG is an arcface_torch-style Python config (config.key = value lines); each\n"
            "key=value overrides one key with a Python value (literal, arithmetic, config.k):\n"
            "lr=0.02 max_steps=500 network='r18' val_targets=\"['lfw']\" num_epoch=2*10\n"
            "(a bare word is a string: output=/tmp/run).\n"
            "      --check-config  print the resolved config and exit: 0 if it would\n"
            "                  train, 1 with the reason (no data read, no model built)\n"
            "  -h, --help      this help\n"
            "  -V, --version   print the version\n"
            "Distributed: mpirun -np N ft-train CONFIG ... (or srun) runs N ranks: the\n"
            "backbone data-parallel, Partial FC sharded over the ranks' classes.\n"
            "Collectives in this build: %s. See docs/distributed.md.\n"
            "See docs/training.md for the keys, outputs, checkpoints and resume.\n",
            ft_comm_backends());
}

static int fail(const ft_run *r, const char *msg) {
    if (r->world > 1)
        fprintf(stderr, FT_TRAIN_PROG ": rank %d of %d: %s\n", r->rank, r->world, msg);
    else
        fprintf(stderr, FT_TRAIN_PROG ": %s\n", msg);
    return 1;
}

static int load_config(ft_run *r, int argc, char **argv, int first) {
    ft_config *c = &r->cfg;
    char err[FT_CFG_ERRCAP];
    int rc = ft_config_init(c);
    if (rc) return ft_run_fail(r, rc, "out of memory");
    if ((rc = ft_config_load_file(c, r->config_path, err, sizeof err)))
        return ft_run_fail(r, rc, "%s", err);
    for (int i = first; i < argc; i++)
        if ((rc = ft_config_set_arg(c, argv[i], err, sizeof err)))
            return ft_run_fail(r, rc, "%s", err);
    if ((rc = ft_config_finalize(c, r->config_path, err, sizeof err)))
        return ft_run_fail(r, rc, "%s", err);
    int pos = 0;
    while (ft_run_env_rank() == 0 && ft_config_note(c, &pos, err, sizeof err))
        fprintf(stderr, FT_TRAIN_PROG ": note: %s\n", err);
    return 0;
}

/* --check-config: the resolved config as training.log would list it (with total_batch_size,
 * warmup_step and total_step when num_image is set), without data or model. */
static int check_config(ft_run *r) {
    ft_config *c = &r->cfg;
    char err[FT_CFG_ERRCAP];
    int rc;
    if (c->num_image &&
        (rc = ft_config_derive(c, (uint64_t)c->num_image, 0, r->world, err, sizeof err)))
        return ft_run_fail(r, rc, "%s", err);
    for (int i = 0; i < c->n_entries; i++) {
        char line[8192];
        ft_config_line(c, i, line, sizeof line);
        printf("%s\n", line);
    }
    return fflush(stdout) == 0 ? 0 : ft_run_fail(r, -EIO, "stdout: write failed");
}

/* the loader's batch memory from the backend (cudaHostAlloc on the GPU) */
static void *host_alloc(void *user, size_t bytes) {
    ft_ops *o = user;
    void *p = NULL;
    return o->host_alloc(o, bytes, &p) ? NULL : p;
}
static void host_free(void *user, void *ptr, size_t bytes) {
    ft_ops *o = user;
    o->host_free(o, ptr);
}

/* <rec>/train.lmdb when it is a directory, else <rec>/train.rec + .idx (ft_dataset_resolve). */
static int open_data(ft_run *r) {
    ft_config *c = &r->cfg;
    char err[LOADER_ERRCAP];
    ft_dataset_kind kind;
    int rc = ft_dataset_resolve(c->rec, &kind, r->data.data_path, sizeof r->data.data_path, err,
                                sizeof err);
    if (rc) return ft_run_fail(r, rc, "rec = '%s': %s", c->rec, err);
    loader_config lc;
    loader_config_init(&lc);
    lc.path = r->data.data_path;
    lc.rank = (uint32_t)r->rank, lc.world = (uint32_t)r->world;
    lc.batch = (uint32_t)c->batch_size;
    lc.seed = (uint64_t)c->seed;
    lc.threads = c->num_workers > 0 ? (uint32_t)c->num_workers : 1;
    lc.layout = LOADER_F32_CHW;
    if (r->data.u8_input) { /* pixels into the backend's page-locked memory */
        lc.layout = LOADER_U8_HWC;
        lc.alloc = host_alloc, lc.free = host_free, lc.alloc_user = r->model.ops;
    }
    if ((rc = loader_open(&r->data.ld, &lc, err, sizeof err))) return ft_run_fail(r, rc, "%s", err);
    uint32_t h, w;
    loader_image_shape(r->data.ld, &h, &w);
    if (h != 112 || w != 112)
        return ft_run_fail(r, FT_EFORMAT, "%s: images are %ux%u; IResNet needs 112x112",
                           r->data.data_path, w, h);
    char cerr[FT_CFG_ERRCAP];
    if ((rc = ft_config_derive(c, loader_num_samples(r->data.ld), loader_num_classes(r->data.ld),
                               r->world, cerr, sizeof cerr)))
        return ft_run_fail(r, rc, "%s", cerr);
    r->data.steps_per_epoch = loader_steps_per_epoch(r->data.ld);
    if (r->data.steps_per_epoch == 0)
        return ft_run_fail(r, FT_ERANGE, "%s: %llu images, fewer than one batch of %d",
                           r->data.data_path, (unsigned long long)loader_num_samples(r->data.ld),
                           c->batch_size);
    if ((uint64_t)c->steps_per_epoch != r->data.steps_per_epoch && r->rank == 0)
        fprintf(stderr,
                FT_TRAIN_PROG ": note: num_image = %lld gives %lld steps per epoch for the "
                              "LR schedule, the dataset has %llu images (%llu steps)\n",
                (long long)c->num_image, (long long)c->steps_per_epoch,
                (unsigned long long)loader_num_samples(r->data.ld),
                (unsigned long long)r->data.steps_per_epoch);
    return 0;
}

static int prepare(ft_run *r) {
    ft_config *c = &r->cfg;
    int rc = ft_mkdir_p(c->output), any = 0;
    if (rc) return ft_run_fail(r, rc, "%s: cannot create: %s", c->output, ft_strerror(rc));
    /* rank 0 holds the output folder's lock and cleans it; the others learn whether it could */
    if (r->rank == 0) rc = ft_run_lock_output(r);
    if (!rc && r->rank == 0) rc = ft_run_clean_stale_tmp(r);
    if (!rc && r->rank == 0) rc = ft_run_recover_ckpt(r);
    int ra = ft_run_dist_any(r, rc != 0, &any);
    if (rc || ra) return rc ? rc : ra;
    if (any)
        return ft_run_fail(r, FT_EARG, "rank 0 could not take the output folder %s (see its line)",
                           c->output);
    if ((rc = ft_run_build_model(r)) || (rc = ft_run_dist_build(r))) return rc;
    if ((rc = ft_lrsched_init(&r->pos.lr, c->lr, c->warmup_step, c->total_step, 1.0)))
        return ft_run_fail(r, rc, "LR schedule: warmup_step %lld, total_step %lld",
                           (long long)c->warmup_step, (long long)c->total_step);
    if (c->resume) {
        if ((rc = ft_run_resume(r))) return rc;
        if ((rc = loader_seek(r->data.ld, r->pos.epoch, r->pos.epoch_step)))
            return ft_run_fail(r, rc, "%s", loader_errmsg(r->data.ld));
    }
    return ft_run_open_outputs(r);
}

static void summary(const ft_run *r) {
    if (r->rank != 0) return;
    double sps = r->stats.t_train > 0 ? (double)r->stats.steps_run / r->stats.t_train : 0;
    fprintf(stderr,
            FT_TRAIN_PROG ": %s: %lld steps this run (global step %lld of %lld, epoch %llu) in "
                          "%.1f s, %.2f steps/s, %.1f samples/s; loss %.4f -> %.4f\n",
            r->stats.stopped ? "stopped" : "done", (long long)r->stats.steps_run,
            (long long)r->pos.global_step, (long long)r->cfg.total_step,
            (unsigned long long)r->pos.epoch, r->stats.t_train, sps,
            sps * r->cfg.batch_size * r->world, r->stats.first_loss, r->stats.last_loss);
    if (r->stats.t_train > 0)
        fprintf(stderr,
                FT_TRAIN_PROG ": input: %s waited %.2f s for the loader (%.1f%% of the training "
                              "time); batches %s\n",
                r->model.ops->name, r->stats.t_input, 100 * r->stats.t_input / r->stats.t_train,
                r->data.u8_input ? "as uint8 in page-locked memory, normalized on the device"
                                 : "as float");
    if (r->model.graph.on)
        fprintf(stderr,
                FT_TRAIN_PROG ": cuda graphs: %lld of %lld steps replayed a recording of the "
                              "step's forward and backward (%lld recorded)\n",
                (long long)r->model.graph.slot.replayed + (long long)r->model.graph.slot.recorded,
                (long long)r->stats.steps_run, (long long)r->model.graph.slot.recorded);
    if (r->world > 1) {
        char buckets[128] = "";
        if (r->dist.dp)
            snprintf(buckets, sizeof buckets,
                     "; %d gradient buckets reduced %s, %d started inside backward",
                     ft_dp_buckets(r->dist.dp), ft_dp_inplace(r->dist.dp) ? "in place" : "packed",
                     ft_dp_early_buckets(r->dist.dp));
        /* with graphs the step's collectives run inside the launches; the host only times
         * the labels' all-gather and what runs without a graph */
        int graphs = r->model.graph.on && r->model.graph.slot.replayed > 0;
        fprintf(stderr,
                FT_TRAIN_PROG ": %d ranks (%s, %s collectives): %.1f s of rank 0's %.1f s in "
                              "collectives%s (%.1f%%)%s\n",
                r->world, r->dist.launcher, r->dist.dev ? r->dist.dev->name : r->dist.comm->name,
                ft_run_dist_comm_seconds(r), r->stats.t_train,
                graphs ? " outside the graph launches, which hold the step's own" : "",
                r->stats.t_train > 0 ? 100 * ft_run_dist_comm_seconds(r) / r->stats.t_train : 0,
                buckets);
    }
    for (int i = 0; i < r->out.n_targets; i++)
        fprintf(stderr, FT_TRAIN_PROG ": %s: Accuracy-Flip %.5f (highest %.5f)\n",
                ft_verify_name(r->out.targets[i]), r->out.last_acc[i], r->out.highest[i]);
    fprintf(stderr, FT_TRAIN_PROG ": checkpoint in %s (%s)%s\n", r->cfg.output, FT_CKPT_BACKBONE,
            r->stats.stopped ? "; continue with resume=True" : "");
}

int main(int argc, char **argv) {
    static const struct option longopts[] = {{"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {"check-config", no_argument, NULL, 'c'},
                                             {NULL, 0, NULL, 0}};
    int opt, check_only = 0;
    /* -h: help; -V: version; --check-config: resolve the config and exit.
     * '+' stops at the first positional (key=value may start with -). */
    while ((opt = getopt_long(argc, argv, "+hV", longopts, NULL)) != -1) {
        if (opt == 'c') {
            check_only = 1;
            continue;
        }
        if (opt == 'h') {
            usage(stdout);
            return 0;
        }
        if (opt == 'V') {
            printf("%s\n", FT_VERSION_STRING);
            return 0;
        }
        usage(stderr);
        return 2;
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    static ft_run r;
    r.world = 1, r.rank = 0, r.out.lock_fd = -1;
    r.config_path = argv[optind];
    int rc = load_config(&r, argc, argv, optind + 1);
    if (check_only) {
        if (!rc) rc = check_config(&r);
        if (rc) fail(&r, r.err);
        ft_config_free(&r.cfg);
        return rc ? 1 : 0;
    }
    if (!rc) rc = ft_run_dist_init(&r);
    if (!rc) rc = ft_run_open_device(&r);
    if (!rc) rc = open_data(&r);
    if (!rc) rc = prepare(&r);
    if (!rc) {
        ft_stop_install();
        rc = ft_run_train(&r);
        if (!rc && !r.stats.stopped) rc = ft_run_export_onnx(&r);
    }
    if (rc)
        fail(&r, r.err);
    else
        summary(&r);
    ft_run_close_outputs(&r);
    loader_close(r.data.ld);
    ft_run_dist_free(&r);
    ft_run_free_model(&r);
    ft_run_unlock_output(&r);
    ft_config_free(&r.cfg);
    /* an error leaves the others to the launcher (mpirun ends the job when a rank exits
     * non-zero) or to their collectives' timeout: no finalize handshake with them */
    if (!rc || r.world == 1) ft_run_dist_close(&r);
    if (rc) return 1;
    return r.stats.stopped ? 130 : 0;
}
