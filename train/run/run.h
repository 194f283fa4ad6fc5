/* run.h: the pieces of the ft-train program (main.c, build.c, loop.c).
 *
 * One run: config -> data (loader) -> model (IResNet), Partial FC, SGD on an ops backend ->
 * training loop with training.log, TensorBoard and verification -> checkpoints.
 * Every function returns 0 or a negative status and leaves a one-line reason in run->err;
 * main() prints it as "ft-train: <reason>" and exits.
 */
#ifndef FT_TRAIN_H
#define FT_TRAIN_H

#include <stdint.h>

#include "checkpoint.h" // defines: checkpoint files and tensor sources
#include "comm.h"       // defines: collectives between ranks
#include "config.h"     // defines: ft_config (the run's settings)
#include "dist.h"       // defines: the distributed step (DDP buckets, Partial FC gather)
#include "ft_common.h"  // defines: ft_progress
#include "iresnet.h"    // defines: the backbone
#include "loader.h"     // defines: the batch loader
#include "lrsched.h"    // defines: the LR schedule
#include "ops.h"        // defines: the compute backend
#include "optim.h"      // defines: SGD and clipping
#include "pfc.h"        // defines: margin softmax + Partial FC
#include "scaler.h"     // defines: fp16 loss scaling
#include "tboard.h"     // defines: TensorBoard event files
#include "trainlog.h"   // defines: training.log lines and the progress callback
#include "verify.h"     // defines: verification on .bin targets

#define FT_TRAIN_PROG  "ft-train"
#define FT_TRAIN_CLIP  5.0   /* clip_grad_norm_(backbone.parameters(), 5) */
#define FT_TRAIN_SCALE 64.0f /* CombinedMarginLoss(64, ...) */
/* torch.cuda.amp.GradScaler(growth_interval=100) as train_v2.py creates it for fp16 */
#define FT_TRAIN_INIT_SCALE      65536.0f
#define FT_TRAIN_GROWTH_INTERVAL 100

/* the data: the resolved dataset path and the loader */
typedef struct ft_run_data {
    char data_path[FT_CFG_PATHCAP];
    loader *ld;
    uint64_t steps_per_epoch; /* batches per epoch and rank (drop_last) */
    /* a backend with memory of its own (cuda, cpu-strict): the loader fills page-locked uint8
     * HWC batches (the backend's host_alloc), one upload per step into pixels_dev, and the
     * backend makes the network input (input_u8); the CPU backend takes the loader's float
     * CHW batches as they are */
    int u8_input;
    uint8_t *pixels_dev;
    double t_input; /* seconds the step waited for the loader (loader_next) */
} ft_run_data;

/* cuda_graphs = True (loop.c): the step's device part (network input, forward, Partial FC,
 * backward) recorded once as a graph of the backend's (ops.h graph_begin) and replayed while
 * its shape holds: rows, sampled classes, loss scale. A shape is recorded at the second step
 * in a row that has it (the first ran directly: one-time work such as cuDNN's algorithm
 * choice stays out of the recording). */
typedef struct ft_run_graph {
    int on;             /* asked for, and possible here (a backend with graphs; several ranks:
                           a transport a graph records) */
    ft_graph_slot slot; /* the step's recording; its counters feed the summary */
    /* several ranks: every shard's sampled-class count of this step and of the step before
     * (host [world] each), and the number of that vector (shards_shape in loop.c) */
    int32_t *counts, *counts_seen;
    uint64_t counts_id;
} ft_run_graph;

/* the model: backend, backbone, head, optimizer, loss scaler (build.c) */
typedef struct ft_run_model {
    ft_ops *ops;
    ft_iresnet *net;
    ft_pfc *pfc;
    ft_sgd *sgd;
    ft_scaler scaler; /* fp16: dynamic loss scaling (disabled otherwise) */
    float *demb;      /* device [batch, emb] */
    /* pfc_update = 'sampled' with sample_rate < 1: rows sampled since the last optimizer
     * step (host mask [num_local]), their sorted list (host) and its device copy */
    int sampled_update, pfc_param_id;
    uint8_t *row_mask;
    int32_t *row_host, *row_dev;
    char arch[128]; /* "r18 (width 8, blocks 1,1,1,1, emb 128)" for messages */
    ft_run_graph graph;
} ft_run_model;

/* where training stands: the schedule and the position in the data */
typedef struct ft_run_pos {
    ft_lrsched lr;
    int64_t global_step; /* steps done */
    uint64_t epoch;      /* epoch of the next batch */
    uint64_t epoch_step; /* position of the next batch within its epoch */
} ft_run_pos;

/* what the run writes and shows: training.log, TensorBoard, verification, the displays, the
 * output folder's lock (loop.c, outdir.c) */
typedef struct ft_run_outputs {
    ft_trainlog *log;
    ft_tboard *tb;
    ft_verify_target *targets[FT_CFG_MAX_TARGET];
    double highest[FT_CFG_MAX_TARGET];
    int n_targets;
    int64_t last_verified; /* step of the last verification, -1 none */
    double last_acc[FT_CFG_MAX_TARGET];
    int64_t last_saved;      /* step of the last checkpoint, -1 none */
    ft_progress prog, vprog; /* the training and verification displays */
    char vwhat[96];          /* "verifying lfw" */
    int lock_fd;             /* the output folder's lock, -1 none */
    /* the input_wait scalar: wall clock and loader wait at the last progress step */
    double wait_t0, wait_in0;
} ft_run_outputs;

/* results for the summary */
typedef struct ft_run_stats {
    double last_loss, first_loss;
    int64_t steps_run;
    double t_train;
    double t_input; /* of t_train: waiting for the loader's next batch */
    int stopped;    /* by a signal */
} ft_run_stats;

/* the distributed job (ranks.c): the collectives, the step's distributed parts, where rank
 * and world came from */
typedef struct ft_run_dist {
    ft_comm *comm;    /* ft_comm_single for one rank, ft_comm_mpi for several */
    ft_comm *dev;     /* the step's collectives: comm, or NCCL on the CUDA backend */
    ft_comm *nccl;    /* owned when dev is NCCL */
    ft_ops *host_ops; /* a CPU table for collectives over host values (world > 1) */
    ft_dp *dp;        /* gradient buckets (world > 1) */
    ft_dpfc *dpfc;    /* Partial FC's all-gather / reduce-scatter (world > 1) */
    int local_rank, local_world;
    char launcher[16]; /* "mpirun", "srun", "ft-launch", "none" */
} ft_run_dist;

/* The checkpoint manifest rank 0 writes last, once every rank has written its files. */
#define FT_RUN_MANIFEST "checkpoint.json"

/* One run of ft-train, by concern. */
typedef struct ft_run {
    ft_config cfg;
    const char *config_path;
    int rank, world;
    char err[2048];
    ft_run_data data;
    ft_run_model model;
    ft_run_pos pos;
    ft_run_outputs out;
    ft_run_stats stats;
    ft_run_dist dist;
} ft_run;

/* The compute backend (config key device), made before the data so that the loader can fill
 * the backend's page-locked batches (build.c). */
int ft_run_open_device(ft_run *r);

/* build.c */
int ft_run_build_model(ft_run *r);
void ft_run_free_model(ft_run *r);
/* Stage this rank's files of a checkpoint at the current step (backbone on rank 0, PFC shard,
 * state with the optimizer buffers under save_all_states) as "<file>.pending-<step>"; once
 * rank 0 has committed the step in the manifest, ft_run_promote renames them into place;
 * ft_run_unstage removes them when the save is abandoned (see checkpoint.h). */
int ft_run_save(ft_run *r);
int ft_run_promote(ft_run *r);
void ft_run_unstage(ft_run *r);
/* Load <output>'s checkpoint for resume = True: weights, optimizer, position. */
int ft_run_resume(ft_run *r);
/* ft_embed_fn for verification: eval-mode forward in chunks of the model's max batch. */
int ft_run_embed(void *ctx, const float *x, int n, float *out);

/* loop.c */
int ft_run_open_outputs(ft_run *r); /* training.log, TensorBoard, config lines, targets */
int ft_run_train(ft_run *r);        /* the loop, checkpoints included */
int ft_run_verify_all(ft_run *r);   /* every target at the current step */
void ft_run_close_outputs(ft_run *r);

/* onnx_out.c: export_onnx: <output>/backbone.onnx from the checkpoint just written, as
 * ft-export writes it (rank 0; nothing when the key is False). */
int ft_run_export_onnx(ft_run *r);

/* outdir.c: hold the output folder's lock for the run (a second ft-train into it is refused);
 * remove the temporary checkpoint files of dead writers (after taking the lock). */
int ft_run_lock_output(ft_run *r);
void ft_run_unlock_output(ft_run *r);
int ft_run_clean_stale_tmp(ft_run *r);
/* After a crash inside a save (rank 0, holding the lock): staged files of the step the
 * manifest commits are renamed into place, any other staged file is removed. */
int ft_run_recover_ckpt(ft_run *r);

/* ranks.c: the rank of this process from its launcher's environment (0 when none), before
 * anything is set up (notes are printed by rank 0 only) */
int ft_run_env_rank(void);
/* rank and world from mpirun / srun / ft-launch, the transport, the config hash check */
int ft_run_dist_init(ft_run *r);
/* after the model is built: Partial FC's comm, rank 0's weights broadcast, the buffers */
int ft_run_dist_build(ft_run *r);
void ft_run_dist_free(ft_run *r);  /* the buffers (before the model) */
void ft_run_dist_close(ft_run *r); /* the transport (last) */
/* *any = 1 when any rank passed mine != 0 (stop requests, fp16 skips, save failures) */
int ft_run_dist_any(ft_run *r, int mine, int *any);
/* after a phase run by rank 0 alone: every rank learns rank 0's status (and its stop) */
int ft_run_dist_rank0_status(ft_run *r, int rc0);
double ft_run_dist_comm_seconds(const ft_run *r);
int ft_run_write_manifest(ft_run *r);
int ft_run_read_manifest(ft_run *r, int64_t *step, int *world);

/* Record an error (printf style) in r->err; returns rc. */
int ft_run_fail(ft_run *r, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
