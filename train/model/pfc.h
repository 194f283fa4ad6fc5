/* pfc.h: margin softmax (ArcFace / CosFace, arcface_torch CombinedMarginLoss) on a Partial FC
 * classifier (arcface_torch PartialFC_V2), with explicit backward, on an ft_ops backend.
 *
 * One step, as arcface_torch computes it on the (global, all-gathered) batch of B rows:
 *   labels outside this shard -> -1, others -> label - class_start;
 *   sample_rate < 1: index = all positive local classes + random negatives, sorted, of size
 *     max(int(rate * num_local), #positives); labels remapped to positions in index;
 *   cos = normalize(emb) . normalize(W[index])^T, clamped to [-1, 1];
 *   interclass filtering (threshold t > 0): entries with cos > t are multiplied by 0 (value and
 *     gradient), except the target entry of rows whose label is in this shard (rows with
 *     label -1 lose every entry above t), as losses.py does;
 *   margin on the target entry: ArcFace (m1 = 1, m3 = 0) cos(acos(x) + m2), no easy-margin
 *     guard; CosFace (m3 > 0) x - m3 (m1, m2 ignored, as upstream); other combinations are
 *     rejected (upstream raises);
 *   logits = s * that; loss = -mean over rows of log(max(p_target, 1e-30)) with the softmax
 *     taken over all classes of all shards;
 *   backward: dlogits = (softmax - onehot) / B. Upstream applies the ArcFace margin under
 *     torch.no_grad(), so d logit / d cos = s everywhere (FT_MARGIN_GRAD_UPSTREAM, the
 *     default); FT_MARGIN_GRAD_EXACT uses the true derivative of the margin instead. The clamp
 *     passes gradient only where -1 <= cos <= 1. Gradients reach the embeddings and the
 *     sampled rows of W (the dense weight gradient is accumulated, "+=", like the backbone's).
 *
 * Optimizer semantics: PyTorch's SGD sees a dense gradient for the PFC weight, zero on rows
 * that were not sampled, so momentum and weight decay move EVERY row each step (this is what
 * arcface_torch does; register the weight with ft_sgd_add_param as any parameter). The cheaper
 * "update only the sampled rows" variant is available through ft_sgd_set_rows with
 * ft_pfc_sampled_rows (not upstream's behaviour when sample_rate < 1).
 *
 * Precision (cfg.dtype F16/BF16, arcface_torch under autocast): normalize in fp32; the
 *   cosine GEMM and its two gradient GEMMs take operands rounded to the dtype and round their
 *   product once (fp32 accumulate); clamp, margin, softmax and loss in fp32.
 *
 * Sharding: a rank holds classes [class_start, class_start + num_local) with
 *   num_local = C / W + (rank < C % W), class_start = C / W * rank + min(rank, C % W).
 * The softmax runs as local row max -> all_reduce max -> local exp-sum -> all_reduce sum ->
 * p_target reduced with all_reduce sum (an ft_comm); without a comm (single rank) the
 * reductions are skipped. The embedding gradient written by forward_backward is this shard's
 * contribution: a distributed caller sums it across ranks (the AllGather backward) and keeps
 * its own rows.
 */
#ifndef FT_PFC_H
#define FT_PFC_H

#include "comm.h"
#include "ops.h"

typedef struct ft_pfc ft_pfc;

typedef struct ft_pfc_config {
    int64_t num_classes;                  /* C, all shards together */
    int rank, world_size;                 /* this shard; 0 and 1 for single-process training */
    int emb;                              /* embedding size (512) */
    int max_batch;                        /* largest number of rows (global batch) per step */
    float sample_rate;                    /* (0, 1]; 1 = use every local class */
    float s, m1, m2, m3;                  /* 64, (1, 0.5, 0) ArcFace or (1, 0, 0.4) CosFace */
    float interclass_filtering_threshold; /* 0 = off */
    int margin_grad; /* FT_MARGIN_GRAD_UPSTREAM (default) or FT_MARGIN_GRAD_EXACT */
    uint64_t seed;   /* weight init and per-step sampling */
    int dtype;       /* operands of the cosine GEMMs: FT_F32 (default), FT_F16, FT_BF16 */
} ft_pfc_config;

/* Defaults: ArcFace (1, 0.5, 0), s 64, sample_rate 1, single rank, emb 512, max_batch 128,
 * seed 2048; num_classes must be set by the caller. */
void ft_pfc_config_init(ft_pfc_config *cfg, int64_t num_classes);

/* Create the shard; W[num_local, emb] ~ N(0, 0.01), row j drawn from a stream keyed by its
 * global class id (so the initial weights do not depend on the world size). */
int ft_pfc_create(ft_ops *o, const ft_pfc_config *cfg, ft_pfc **out);
void ft_pfc_free(ft_pfc *p);                    /* NULL-safe */
void ft_pfc_set_comm(ft_pfc *p, ft_comm *comm); /* borrowed; NULL = single rank */
/* Multiply the loss gradient by scale (fp16 loss scaling; 1 by default). The loss itself is
 * reported unscaled. */
int ft_pfc_set_loss_scale(ft_pfc *p, float scale);

int64_t ft_pfc_num_local(const ft_pfc *p);
int64_t ft_pfc_class_start(const ft_pfc *p);
int ft_pfc_num_sample(const ft_pfc *p); /* int(sample_rate * num_local) */
size_t ft_pfc_bytes(const ft_pfc *p);   /* device bytes held */

/* The plan of a shard without allocating it (memory figures for any class count): its rows,
 * the sampled rows per step (smax), the arena ft_pfc_create would allocate (= ft_pfc_bytes),
 * of which the centres (W; the gradient is as large) and the per-step logits (cos and
 * logits in fp32 [max_batch, smax], plus the dtype copy of cos with fp16/bf16). The SGD
 * momentum of the centres (another centre_bytes) lives in the optimizer. */
typedef struct ft_pfc_plan_info {
    int64_t num_local;
    int num_sample;
    size_t arena_bytes, centre_bytes, logit_bytes;
} ft_pfc_plan_info;
int ft_pfc_plan(const ft_pfc_config *cfg, ft_pfc_plan_info *info);

/* Step part 1: take the global labels (host, batch rows, 0 <= label < num_classes) and choose
 * this step's classes on the backend (ops.h pfc_sample; no wait for the device). The
 * negatives are a pure function of (seed, step, rank, labels), the same on every backend. */
int ft_pfc_prepare(ft_pfc *p, const int32_t *labels, int batch, uint64_t step);
/* The same in two halves, for a step recorded in a graph (ops.h graph_begin): ft_pfc_stage
 * does the host part and the uploads (labels, the step's seed) and leaves the draw to
 * ft_pfc_forward_backward_dev (or ft_pfc_index), which queue it first. After a replay of a
 * graph that recorded ft_pfc_forward_backward_dev, ft_pfc_replayed tells the shard that the
 * staged step was drawn. ft_pfc_step_count: the staged step's sampled classes (a graph's
 * shape), -1 before a stage. */
int ft_pfc_stage(ft_pfc *p, const int32_t *labels, int batch, uint64_t step);
void ft_pfc_replayed(ft_pfc *p);
int ft_pfc_step_count(const ft_pfc *p);
/* What ft_pfc_step_count would be on every shard of the job for a step of these (global)
 * labels: counts[r] for r < world_size, from the shard formulas and the labels alone, so every
 * rank computes the same vector without a collective (the shape of a step several ranks
 * record in a graph). FT_ERANGE for a label outside [0, num_classes), FT_EARG for batch
 * outside [1, max_batch]. */
int ft_pfc_shard_counts(ft_pfc *p, const int32_t *labels, int batch, int32_t *counts);
/* The same with a given index (sorted, distinct local rows containing every positive), e.g.
 * to replay a step; count <= max(num_sample, positives). */
int ft_pfc_prepare_index(ft_pfc *p, const int32_t *labels, int batch, const int32_t *index,
                         int count);
/* The current index (host, sorted local rows) and its size; with sample_rate 1 it is
 * 0..num_local-1 (*index NULL). A drawn index is downloaded on the first call of a step (a
 * wait for the device); ft_pfc_sampled_rows has it without one. */
int ft_pfc_index(ft_pfc *p, const int32_t **index, int *count);
/* Device copy of the index for ft_sgd_set_rows; *dev_index is NULL when every row is used. */
int ft_pfc_sampled_rows(const ft_pfc *p, const int32_t **dev_index, int *count);

/* Step part 2: emb [batch, emb] device (the rows given to prepare). Computes the loss (host,
 * the mean over the batch), writes demb [batch, emb] (device, overwritten; may be NULL) and
 * accumulates the weight gradient. */
int ft_pfc_forward_backward(ft_pfc *p, const float *emb, float *demb, float *loss);
/* The same in two halves: the device work (no wait for the device: a graph may record it),
 * then the loss (a download: after the device work, or after a graph launch that replays it). */
int ft_pfc_forward_backward_dev(ft_pfc *p, const float *emb, float *demb);
int ft_pfc_loss(ft_pfc *p, float *loss);
int ft_pfc_zero_grad(ft_pfc *p);

/* The classifier weight as the optimizer sees it (name "weight", [num_local, emb]). */
int ft_pfc_param(ft_pfc *p, ft_param *out);
/* Checkpoint access: one tensor, "weight" [num_local, emb], as in state_dict_softmax_fc. */
int ft_pfc_tensor_count(const ft_pfc *p);
int ft_pfc_tensor_info(const ft_pfc *p, int i, ft_tensor_info *info);
int ft_pfc_tensor_get(ft_pfc *p, int i, void *host);
int ft_pfc_tensor_set(ft_pfc *p, int i, const void *host);
int ft_pfc_grad_get(ft_pfc *p, float *host); /* dense weight gradient, num_local*emb floats */

#endif
