/* dist.h: the distributed parts of a training step, as arcface_torch runs them with
 * DistributedDataParallel and PartialFC_V2, over an ft_comm (comm.h).
 *
 * Data-parallel backbone (DDP, broadcast_buffers off as arcface_torch builds it):
 *   ft_dp_broadcast_model   every state_dict tensor (parameters and BN statistics) from rank 0
 *                           once at start, so every rank starts from rank 0's weights;
 *   ft_dp_reduce_grads      after each backward: the backbone's gradients summed over ranks
 *                           and divided by the world size (DDP's average), packed into buckets
 *                           of bucket_bytes (reverse parameter order, as DDP's buckets are
 *                           filled during backward), each started with all_reduce_async and
 *                           completed with one wait; BN running statistics stay per rank.
 *                           With overlap (the default), the buckets start inside backward,
 *                           as DDP's do: the backbone's grad hook (iresnet.h) starts each
 *                           bucket as soon as its gradients are final, and
 *                           ft_dp_reduce_grads starts the rest (the stem's) and waits. The
 *                           buckets, their order and so every result are the same either
 *                           way; overlap only moves the starts earlier.
 * Model-parallel Partial FC (PartialFC_V2):
 *   ft_dpfc_gather          all-gathers the ranks' embeddings [B, E] and labels [B] into the
 *                           global batch [W*B] (rank r's rows at r*B), which every rank's shard
 *                           then prepares (ft_pfc_prepare, positives kept, its own negatives)
 *                           and runs ft_pfc_forward_backward on (softmax across shards via
 *                           all_reduce of row max and row sums, loss reduced, pfc.c);
 *   ft_dpfc_scatter         the backward of the all-gather: the global embedding gradient
 *                           reduce-scattered (summed over shards) back to the rank owning each
 *                           row, then multiplied by the world size, as arcface_torch's
 *                           AllGatherFunc does ("grad_out *= len(grad_list)") so that DDP's
 *                           averaging leaves the gradient of the global-batch mean loss.
 * Every rank must make the same calls in the same order (see comm.h).
 */
#ifndef FT_DIST_H
#define FT_DIST_H

#include "comm.h"
#include "iresnet.h"
#include "ops.h"
#include "pfc.h"

#define FT_DP_BUCKET_BYTES (25u << 20) /* DDP's bucket_cap_mb = 25 */

int ft_dp_broadcast_model(ft_comm *c, ft_ops *o, ft_iresnet *m);

typedef struct ft_dp ft_dp;
/* Buckets over the trainable backbone parameters of m (reduced in place, see
 * ft_dp_set_inplace; else a device staging buffer of their size). */
int ft_dp_create(ft_comm *c, ft_ops *o, ft_iresnet *m, size_t bucket_bytes, ft_dp **out);
void ft_dp_free(ft_dp *d); /* NULL-safe */
int ft_dp_reduce_grads(ft_dp *d);
/* Overlap the buckets' all-reduce with backward (on by default; the model's grad hook belongs
 * to this ft_dp until ft_dp_free). Every rank must choose the same. */
void ft_dp_set_overlap(ft_dp *d, int on);
/* Reduce each bucket in the gradients' own memory (on by default where the model's arena
 * lays a bucket's gradients back to back, as ft_iresnet's does), or pack them into a staging
 * buffer first (off, or a layout that does not allow it). Same bytes either way. Every rank
 * must choose the same; not inside a reduce. */
int ft_dp_set_inplace(ft_dp *d, int on);
int ft_dp_inplace(const ft_dp *d); /* 1 when the buckets are reduced in place */
/* How many buckets the last ft_dp_reduce_grads found already started inside backward. */
int ft_dp_early_buckets(const ft_dp *d);
/* Seconds spent in collectives (reduce_grads and the dpfc calls that were given this ft_dp's
 * counters) since create, for the throughput figures. */
double ft_dp_comm_seconds(const ft_dp *d);
int ft_dp_buckets(const ft_dp *d);

typedef struct ft_dpfc ft_dpfc;
/* Buffers for the global batch of world * max_batch rows of emb floats. */
int ft_dpfc_create(ft_comm *c, ft_ops *o, int max_batch, int emb, ft_dpfc **out);
void ft_dpfc_free(ft_dpfc *d); /* NULL-safe */
/* emb [batch, E] device and labels [batch] host of this rank -> *emb_all (device
 * [W*batch, E]) and *labels_all (host [W*batch]), valid until the next gather; *demb_all is
 * the device buffer [W*batch, E] for ft_pfc_forward_backward's embedding gradient. */
int ft_dpfc_gather(ft_dpfc *d, const float *emb, const int32_t *labels, int batch,
                   const float **emb_all, const int32_t **labels_all, float **demb_all);
/* The same in two halves, for a step recorded in a graph: the labels first (host in, host out:
 * a wait), with an optional vote carried by the same all-gather (agree: in, this rank's; out,
 * 1 when every rank's was non-zero); then the embeddings of that batch (device only, no wait:
 * a graph can record it). */
int ft_dpfc_gather_labels(ft_dpfc *d, const int32_t *labels, int batch, const int32_t **labels_all,
                          int *agree);
int ft_dpfc_gather_emb(ft_dpfc *d, const float *emb, const float **emb_all, float **demb_all);
/* demb_all (after forward_backward) -> demb [batch, E] of this rank's rows, times W. */
int ft_dpfc_scatter(ft_dpfc *d, float *demb);
double ft_dpfc_comm_seconds(const ft_dpfc *d);

#endif
