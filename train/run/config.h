/* config: ft-train's configuration, in arcface_torch's key names and file syntax.
 *
 * A config file is the Python subset arcface_torch's configs/<name>.py use, so users can copy
 * theirs:
 *     from easydict import EasyDict as edict      (ignored)
 *     config = edict()                            (ignored)
 *     config.network = "r50"                      # comments and blank lines are fine
 *     config.margin_list = (1.0, 0.5, 0.0)
 * Values are Python expressions of literals, arithmetic and references to keys set earlier
 * (`config.warmup_epoch = config.num_epoch // 10`; see pyliteral.h); a bracketed value may
 * span lines.
 * Anything else is an error naming file:line.
 *
 * Keys and their order: the keys of arcface_torch's configs/base.py come first with its
 * defaults, then keys the file (and the command line) add, in order; facetrain's extra keys
 * that are not set anywhere are appended last with their defaults. training.log prints them
 * in that order, as arcface_torch does (`str(value)` after the key padded to 25 columns).
 * After ft_config_finalize the typed fields below hold the validated values.
 */
#ifndef FT_TRAIN_CONFIG_H
#define FT_TRAIN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "pyliteral.h"

#define FT_CFG_ERRCAP     1024
#define FT_CFG_F32        0 /* = FT_F32 of tensor.h */
#define FT_CFG_F16        1 /* = FT_F16 */
#define FT_CFG_MAX_TARGET 16
#define FT_CFG_PATHCAP    4096

typedef struct ft_cfg_entry {
    char key[48];
    ft_pyval val;
    char origin[300]; /* "file:line", "command line" or "default" */
} ft_cfg_entry;

typedef struct ft_config {
    /* ordered key -> value, as parsed */
    ft_cfg_entry *entries;
    int n_entries, cap_entries;

    /* typed values, valid after ft_config_finalize */
    char network[16];      /* "r18", "r34", "r50", "r100", "r200" */
    int width;             /* base width override (0 = the network's 64) */
    int blocks[4];         /* blocks per stage override (all 0 = the network's) */
    double margin_list[3]; /* m1, m2, m3 */
    int embedding_size;
    double sample_rate;
    int fp16;
    int batch_size; /* per rank */
    double lr, momentum, weight_decay;
    int num_epoch, warmup_epoch;
    char rec[FT_CFG_PATHCAP];
    int64_t num_classes;
    int64_t num_image; /* 0 = take it from the dataset */
    char val_targets[FT_CFG_MAX_TARGET][64];
    int n_val_targets;
    char output[FT_CFG_PATHCAP];
    int64_t verbose, frequent, seed;
    int num_workers;
    int resume, save_all_states, gradient_acc;
    int64_t max_steps; /* 0 = no limit */
    double interclass_filtering_threshold, dropout;
    int threads; /* CPU compute threads, 0 = all cores */
    /* Partial FC update with sample_rate < 1: "sampled" moves only the centres (and their
     * momentum) sampled since the last optimizer step, as the original Partial FC;
     * "dense" lets weight decay and momentum move every row, as PartialFC_V2 in train_v2.py */
    char pfc_update[16];
    int strict_targets; /* a val_targets name without its .bin is an error (else a note) */
    /* precision: dtype 'fp32' | 'fp16' | 'bf16' (None: fp16 ? 'fp16' : 'fp32'); fp16 storage
     * trains with dynamic loss scaling, which stops the run after max_skipped_steps skipped
     * steps in a row */
    char dtype_name[16];
    int dtype;        /* FT_F32, FT_F16, FT_BF16 (tensor.h) */
    int loss_scaling; /* dtype is fp16 */
    int max_skipped_steps;
    char device[16];     /* compute backend: 'cpu' ('cuda' when built with it) */
    char layout[8];      /* activations' memory layout: 'auto', 'nchw', 'nhwc' (ft_ops) */
    int export_onnx;     /* write <output>/backbone.onnx at the end of training (ft_graph) */
    double dist_timeout; /* seconds a collective may wait for the other ranks (300) */
    int ddp_overlap;     /* the gradient buckets' all-reduce starts inside backward (True) */
    int ddp_bucket_view; /* the buckets are reduced in the gradients' own memory (True) */
    int cuda_graphs;     /* one rank on the CUDA backend: the step's forward and backward are
                            recorded once as a CUDA graph and replayed (False) */

    /* derived by ft_config_derive (also appended as keys, as train_v2.py does) */
    int64_t total_batch_size, warmup_step, total_step, steps_per_epoch;
} ft_config;

/* Defaults of configs/base.py. */
int ft_config_init(ft_config *c);
void ft_config_free(ft_config *c);
/* Read a config file; errors are "path:line: reason". */
int ft_config_load_file(ft_config *c, const char *path, char *err, size_t errcap);
/* One command-line override "key=value" (value: a Python literal; a bare word without quotes
 * or brackets is taken as a string, so output=/tmp/run works). */
int ft_config_set_arg(ft_config *c, const char *arg, char *err, size_t errcap);
/* Append the facetrain-only keys not set, check every type and range, fill the typed fields.
 * config_path gives output's default work_dirs/<basename without .py>. */
int ft_config_finalize(ft_config *c, const char *config_path, char *err, size_t errcap);
/* After the dataset is opened: check num_classes against the labels it holds, fill num_image
 * when None, and compute total_batch_size / warmup_step / total_step (formats.md 6.3). */
int ft_config_derive(ft_config *c, uint64_t dataset_images, uint64_t dataset_classes, int world,
                     char *err, size_t errcap);

/* The notes about keys arcface_torch has and facetrain ignores (wandb_*, dali, ...), one per
 * key set to something other than base.py's default: start with *pos = 0; returns 1 with the
 * next note in out ("configs/x.py:3: using_wandb = True is ignored: ..."), 0 when done. */
int ft_config_note(const ft_config *c, int *pos, char *out, size_t cap);

/* Set or append a key (used for output and the derived keys). */
int ft_config_put(ft_config *c, const char *key, const ft_pyval *v, const char *origin);
const ft_pyval *ft_config_get(const ft_config *c, const char *key);
/* The training.log text of entry i: ": " + key + " "*(25-len(key)) + str(value). */
size_t ft_config_line(const ft_config *c, int i, char *out, size_t cap);

#endif
