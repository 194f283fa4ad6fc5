/* iresnet.h: insightface's IResNet backbone (arcface_torch backbones/iresnet.py) with explicit
 * forward and backward on an ft_ops backend.
 *
 * Architecture (width w = 64 for the released models, channels w, 2w, 4w, 8w):
 *   conv1 3x3 (3->w, stride 1, pad 1, no bias) - bn1 - prelu
 *   layer1..4: IBasicBlock x blocks[i], the first of each stage with stride 2 and a
 *     downsample (conv1x1 stride 2 + BN); block: bn1 - conv1 3x3 - bn2 - prelu - conv2 3x3
 *     (stride s) - bn3, + identity / downsample(x)
 *   bn2 (8w) - flatten (8w*7*7) - dropout(p) - fc Linear(8w*49 -> emb, bias)
 *   features BatchNorm1d(emb) with weight fixed at 1 (not trained), bias trained.
 * Input [B, 3, 112, 112] float32, normalized (x/127.5 - 1). Output [B, emb] embeddings.
 *
 * Precision (ops/tensor.h): activations and their gradients, from the input to the flattened
 * bn2 output (dropout included), are stored in cfg.dtype; the convs consume a copy of their
 * weights in that dtype (refreshed from the fp32 weights before a forward that follows a
 * change), so every conv operand is of one dtype, with fp32 accumulation. fc runs in fp32 on
 * the flattened activations (arcface_torch: self.fc(x.float())), as do features and the
 * embeddings. Parameters, their gradients, BN statistics stay fp32.
 *
 * Memory: one device arena holds parameters (conv weights contiguous, and their storage-dtype
 * copy), gradients, activations for max_batch samples, backward scratch and conv workspace; it
 * is planned at create time (ft_arena, bytes counted per dtype), nothing is allocated per step.
 *
 * Tensors are exposed in PyTorch state_dict order with the same names and shapes
 * (conv1.weight, bn1.weight, ..., layer1.0.bn1.running_mean, ..., fc.weight, fc.bias,
 * features.weight, features.bias, features.running_mean, features.running_var,
 * features.num_batches_tracked), so a checkpoint loads with load_state_dict.
 */
#ifndef FT_IRESNET_H
#define FT_IRESNET_H

#include "ops.h"

typedef struct ft_iresnet ft_iresnet;

typedef struct ft_iresnet_config {
    int blocks[4];     /* IBasicBlocks per stage, e.g. {3, 4, 14, 3} for r50 */
    int width;         /* base channel count: 64 for the real models, e.g. 8 or 16 for tests */
    int emb;           /* embedding size (fc out / features), 512 */
    float dropout;     /* dropout before fc, 0 in arcface_torch */
    int max_batch;     /* largest batch forward/backward will see (memory is planned for it) */
    uint64_t seed;     /* initialization seed (ft_rng) */
    float bn_eps;      /* 1e-5 */
    float bn_momentum; /* 0.1 (PyTorch convention: weight of the new statistic) */
    int dtype;         /* storage dtype of activations and their gradients: FT_F32 (default),
                          FT_F16 or FT_BF16 (see "Precision" above) */
} ft_iresnet_config;

/* Defaults for depth 18/34/50/100/200: width 64, emb 512, dropout 0, eps 1e-5, momentum 0.1,
 * seed 2048, max_batch 128. FT_EARG for other depths. */
int ft_iresnet_config_init(ft_iresnet_config *cfg, int depth);

/* Build the model and initialize it from cfg->seed as arcface_torch does:
 * conv ~ N(0, 0.1); BN weight 1, bias 0, running mean 0, var 1; PReLU 0.25;
 * fc weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); features weight 1, bias 0. */
int ft_iresnet_create(ft_ops *o, const ft_iresnet_config *cfg, ft_iresnet **out);
void ft_iresnet_free(ft_iresnet *m); /* NULL-safe */
/* The bytes ft_iresnet_create would allocate on o for cfg, without allocating them (the
 * backend's conv workspace sizes are asked as create asks them). */
int ft_iresnet_plan_bytes(ft_ops *o, const ft_iresnet_config *cfg, size_t *bytes);

const ft_iresnet_config *ft_iresnet_get_config(const ft_iresnet *m);
/* Forward FLOPs per sample (2 per multiply-add) of the convolutions and the fc layer; a
 * training step is about 3x (forward, backward data, backward filter). */
double ft_iresnet_flops(const ft_iresnet *m);
/* Bytes of the arena, and of its parts (any pointer may be NULL). */
size_t ft_iresnet_bytes(const ft_iresnet *m, size_t *param_bytes, size_t *act_bytes,
                        size_t *ws_bytes);
/* The plan by dtype, e.g. "240.1 MiB f32 + 1180.3 MiB bf16" */
const char *ft_iresnet_plan_desc(const ft_iresnet *m);
/* Weights were changed behind the model's back (an optimizer step on ft_iresnet_param
 * pointers is covered: every train forward refreshes the conv copies): refresh the storage-
 * dtype copies before the next forward. tensor_set does this itself. */
void ft_iresnet_params_changed(ft_iresnet *m);

/* Device buffer [max_batch, 3, 112, 112] (fp32, NCHW) owned by the model, for the caller to
 * upload a batch into; forward may also be given any other device pointer of that form. */
float *ft_iresnet_input(ft_iresnet *m);

/* Forward a batch (1 <= batch <= max_batch; train mode needs batch >= 2 for the BN1d).
 * train = 1: batch statistics, running stats and num_batches_tracked updated, activations
 *            kept for ft_iresnet_backward, dropout active;
 * train = 0: running statistics, no dropout.
 * *emb receives a device pointer [batch, emb] valid until the next forward. */
int ft_iresnet_forward(ft_iresnet *m, const float *x, int batch, int train, const float **emb);
/* Upload what the next train forward draws afresh (dropout's seed; nothing without dropout)
 * now instead of inside it: a train forward recorded in a graph (ops.h graph_begin) then
 * records no upload, and each replay is preceded by this call. A train forward after a stage
 * uses the staged values; one without a stage makes its own. */
int ft_iresnet_stage(ft_iresnet *m);
/* After a graph launch that replayed a recorded train forward + backward of batch rows: the
 * host-side effects of those calls (BN's num_batches_tracked, the model's step state). */
void ft_iresnet_replayed(ft_iresnet *m, int batch);

/* Backward of the last train forward: demb [batch, emb] device. Parameter gradients are
 * accumulated ("+="); call ft_iresnet_zero_grad between optimizer steps. demb is not
 * modified. */
int ft_iresnet_backward(ft_iresnet *m, const float *demb);
/* Called inside ft_iresnet_backward whenever the gradients of a suffix of the parameters are
 * final for this backward: every parameter i >= first (ft_iresnet_param's order) holds its
 * gradient. Called after the head (bn2, fc, features) and after each residual block, the last
 * block first; the stem's gradients are final when backward returns. The data-parallel
 * buckets start their all-reduce from it (dist.h). A non-zero return ends backward with it.
 * fn NULL removes the hook. */
typedef int (*ft_iresnet_grad_hook)(void *ctx, int first);
void ft_iresnet_set_grad_hook(ft_iresnet *m, ft_iresnet_grad_hook fn, void *ctx);
int ft_iresnet_zero_grad(ft_iresnet *m);

/* Dropout mask generator state: the number of train-mode forwards done so far (the mask of
 * the k-th one is a pure function of (cfg.seed, k)). A checkpoint saves it and a resumed run
 * sets it back, so the masks continue as in an uninterrupted run. */
uint64_t ft_iresnet_get_rng_state(const ft_iresnet *m);
void ft_iresnet_set_rng_state(ft_iresnet *m, uint64_t state);

/* state_dict tensors in order: parameters and buffers (running stats, num_batches_tracked). */
int ft_iresnet_tensor_count(const ft_iresnet *m);
int ft_iresnet_tensor_info(const ft_iresnet *m, int i, ft_tensor_info *info);
/* Copy tensor i to/from host memory (numel elements of its dtype: float or int64_t). */
int ft_iresnet_tensor_get(ft_iresnet *m, int i, void *host);
int ft_iresnet_tensor_set(ft_iresnet *m, int i, const void *host);
/* Index of a tensor by state_dict name, or -1. */
int ft_iresnet_tensor_find(const ft_iresnet *m, const char *name);
/* Gradient of tensor i to host (floats); FT_EARG for buffers (no gradient). */
int ft_iresnet_grad_get(ft_iresnet *m, int i, float *host);

/* Learnable parameters in backbone.parameters() order (features.weight included, with
 * trainable = 0). */
int ft_iresnet_param_count(const ft_iresnet *m);
int ft_iresnet_param(ft_iresnet *m, int i, ft_param *p);

#endif
