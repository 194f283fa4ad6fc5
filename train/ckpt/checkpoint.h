/* checkpoint: ft-train's checkpoints (design.md contract 4), safetensors files in <output>:
 *
 *   backbone.safetensors            the IResNet state_dict (PyTorch names and shapes,
 *                                   num_batches_tracked as I64): load_state_dict works
 *   pfc_rank<r>_of<w>.safetensors   this rank's Partial FC shard "weight" [num_local, emb] and,
 *                                   with save_all_states, its "weight.momentum_buffer"
 *   state_rank<r>.safetensors       where training stands: global_step, epoch, loader
 *                                   position, optimizer step count, LR schedule (base lr,
 *                                   warmup, total, last step), seed; with save_all_states the
 *                                   backbone's "<param>.momentum_buffer" tensors
 *
 * Every file carries __metadata__ "global_step"; ft-train stages the files of one save under
 * ".pending-<step>" names, commits the step in checkpoint.json once every rank has staged its
 * files, and only then renames them into place (ft_ckpt_stage below). A reader refuses a set
 * whose files disagree on the step.
 *
 * Loading checks names, dtypes and shapes against what the model expects and names the first
 * tensor that differs (a checkpoint of another architecture or size is refused). A NaN or an
 * infinity in a floating-point tensor is refused naming the tensor, when writing (nothing is
 * written, the files already there stay) and when loading.
 */
#ifndef FT_CHECKPOINT_H
#define FT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "ops.h"
#include "safetensors.h"

#define FT_CKPT_BACKBONE "backbone.safetensors"

/* The layout version of the state file, in every file's __metadata__ "schema":
 *   1  before facetrain wrote the dropout generator and gradient-accumulation state
 *   2  + model.dropout_rng_state, gradient_acc, accum_grad.* inside an accumulation window
 *   3  + the schema key itself; with fp16: scaler.scale, scaler.growth_tracker,
 *      scaler.skipped, scaler.consecutive
 * Files without the key are 1 or 2; ft_ckpt_schema tells them apart once, by the one entry
 * that schema 2 added. A newer schema than FT_CKPT_SCHEMA is refused (FT_EVERSION). */
#define FT_CKPT_SCHEMA 3
/* Tensors of the state file that hold the partial gradient sums of an unfinished accumulation
 * window; the only ones a checkpoint may carry with inf/NaN (fp16 overflow before the
 * window's end skips the step). Every other non-finite value is refused on save and load. */
#define FT_CKPT_ACCUM_PREFIX "accum_grad."
/* 0 and the schema in *schema, or FT_EVERSION / FT_EFORMAT with a reason in err */
int ft_ckpt_schema(const ft_st_file *f, const char *what, int *schema, char *err, size_t errcap);

/* A set of named tensors (model, PFC shard, optimizer buffers) seen through callbacks. */
typedef struct ft_ckpt_source {
    void *obj;
    int (*count)(void *obj);
    int (*info)(void *obj, int i, ft_tensor_info *info);
    int (*get)(void *obj, int i, void *host);
    int (*set)(void *obj, int i, const void *host);
    /* optional: skip tensor i (return 1), e.g. optimizer buffers of another file */
    int (*skip)(void *obj, int i);
} ft_ckpt_source;

/* One file of a save. */
typedef struct ft_ckpt_part {
    char file[64]; /* name inside the output directory */
    ft_st_tensor *t;
    int n, cap;
    void **owned; /* host buffers freed by ft_ckpt_part_free */
    int n_owned;
    char *meta[32];
    int n_meta;
} ft_ckpt_part;

void ft_ckpt_part_init(ft_ckpt_part *p, const char *file);
void ft_ckpt_part_free(ft_ckpt_part *p);
/* Download every (non-skipped) tensor of src into the part. */
int ft_ckpt_part_add_source(ft_ckpt_part *p, ft_ckpt_source *src);
/* A scalar I64 or F64 tensor (shape []). */
int ft_ckpt_part_add_i64(ft_ckpt_part *p, const char *name, int64_t v);
int ft_ckpt_part_add_f64(ft_ckpt_part *p, const char *name, double v);
int ft_ckpt_part_add_meta(ft_ckpt_part *p, const char *key, const char *value);
/* A tensor of safetensors dtype st_dtype (FT_ST_*) and the given shape (ndim 0: a scalar);
 * *host receives the part's buffer (numel * element size bytes) for the caller to fill. */
int ft_ckpt_part_add_tensor(ft_ckpt_part *p, const char *name, int st_dtype, int ndim,
                            const int64_t *shape, void **host);

/* Write parts to dir: all temporaries first, then renames in order (put state last).
 * FT_ERANGE, writing nothing, when a floating-point tensor holds a NaN or an infinity. */
int ft_ckpt_write(const char *dir, ft_ckpt_part *parts, int n, char *err, size_t errcap);

/* A save of several files (and several ranks) in two phases. ft_ckpt_stage writes parts as
 * "<file>.pending-<step>" (temporaries, fsync, renames; nothing of a failed call stays); once
 * every file of the save is staged the caller commits (ft-train: checkpoint.json names the
 * step), then ft_ckpt_promote renames each staged file over its final name. A crash before the
 * commit leaves the last checkpoint whole (the staged files are removed at the next start), a
 * crash after it leaves staged files of the committed step, which the next start promotes. */
#define FT_CKPT_PENDING ".pending-"
int ft_ckpt_stage(const char *dir, ft_ckpt_part *parts, int n, int64_t step, char *err,
                  size_t errcap);
/* "<dir>/<file>.pending-<step>" -> "<dir>/<file>"; -errno with err (-ENOENT: none staged) */
int ft_ckpt_promote(const char *dir, const char *file, int64_t step, char *err, size_t errcap);
/* remove "<dir>/<file>.pending-<step>" (absent is fine); 0 or -errno */
int ft_ckpt_unstage(const char *dir, const char *file, int64_t step);
void ft_ckpt_pending_name(char *out, size_t cap, const char *file, int64_t step);
/* 1 when name is "<file>.pending-<step>" (file and step filled), else 0 */
int ft_ckpt_parse_pending(const char *name, char *file, size_t cap, int64_t *step);

/* File names. */
void ft_ckpt_pfc_name(char *out, size_t cap, int rank, int world);
void ft_ckpt_state_name(char *out, size_t cap, int rank);
/* The files rank writes in a save of world ranks, in write order (rank 0: the backbone, then
 * every rank its PFC shard and its state); returns how many (2 or 3). */
#define FT_CKPT_NAME_CAP 64
int ft_ckpt_rank_files(char names[3][FT_CKPT_NAME_CAP], int rank, int world);

/* Load f's tensors into src: each tensor of src (not skipped) must exist in f with the same
 * dtype and shape. strict: f must hold no other tensor. what names the file in messages; hint is
 * appended to architecture errors (e.g. "this run builds r18 width 16"). */
int ft_ckpt_load_source(const ft_st_file *f, const char *what, ft_ckpt_source *src, int strict,
                        const char *hint, char *err, size_t errcap);
/* Scalar I64/F64 tensor of f, FT_EFORMAT (with err) when absent or of another kind. */
int ft_ckpt_get_i64(const ft_st_file *f, const char *what, const char *name, int64_t *v, char *err,
                    size_t errcap);
int ft_ckpt_get_f64(const ft_st_file *f, const char *what, const char *name, double *v, char *err,
                    size_t errcap);
/* Copy tensor name of f into host (bytes, aligned): it must exist with safetensors dtype
 * st_dtype and exactly the given shape, else FT_EFORMAT naming the tensor in err. */
int ft_ckpt_get_tensor(const ft_st_file *f, const char *what, const char *name, int st_dtype,
                       int ndim, const int64_t *shape, void *host, size_t bytes, char *err,
                       size_t errcap);

#endif
