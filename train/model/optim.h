/* optim.h: SGD with momentum and weight decay (torch.optim.SGD semantics) and global grad-norm
 * clipping (torch.nn.utils.clip_grad_norm_), on an ft_ops backend.
 *
 * Update of every trainable parameter, per step (dampening 0, no nesterov):
 *   g' = g + wd * w;  buf = momentum * buf + g';  w -= lr * buf
 * The momentum buffer starts at zero, which gives PyTorch's first-step buf = g' exactly.
 * Frozen parameters (ft_param.trainable == 0, e.g. features.weight) are never touched.
 *
 * How arcface_torch (train_v2.py, fp32 path) drives it, and how ft-train should:
 *   every micro-step: forward, loss, backward (gradients accumulate; the loss is NOT divided
 *     by gradient_acc, so accumulated gradients are sums over micro-batches);
 *   if global_step % gradient_acc == 0:
 *       (fp16) ft_sgd_unscale(s, 1 / scale, &inf); skip = ft_scaler_update(&scaler, inf);
 *       ft_sgd_clip_grad_norm(s, FT_SGD_GROUP_BACKBONE, 5, &norm);  (backbone only, not PFC)
 *       unless skip: ft_sgd_step(s, lr);  then ft_sgd_zero_grad(s);
 *   the LR scheduler steps every micro-step.
 * Weight decay applies to all params including BN, PReLU and the PFC weight.
 */
#ifndef FT_OPTIM_H
#define FT_OPTIM_H

#include "ops.h"

typedef struct ft_sgd ft_sgd;

enum {
    FT_SGD_GROUP_BACKBONE = 0, /* clipped by clip_grad_norm */
    FT_SGD_GROUP_HEAD = 1      /* Partial FC weight: not clipped */
};

typedef struct ft_sgd_config {
    float momentum;     /* 0.9 (arcface_torch hard-codes it) */
    float weight_decay; /* 5e-4 (cfg.weight_decay) */
} ft_sgd_config;

int ft_sgd_create(ft_ops *o, const ft_sgd_config *cfg, ft_sgd **out);
void ft_sgd_free(ft_sgd *s); /* NULL-safe */

/* Register a parameter (w and g are borrowed and must outlive the optimizer; the name is
 * copied). Allocates a zeroed momentum buffer for trainable ones. Returns the id (>= 0) or a
 * negative status. */
int ft_sgd_add_param(ft_sgd *s, const ft_param *p, int group);
int ft_sgd_param_count(const ft_sgd *s);

/* Restrict the next steps' update of parameter id to the rows dev_index[0..count) of its
 * [numel/dim, dim] matrix (device int32, borrowed); dev_index NULL restores full updates. */
int ft_sgd_set_rows(ft_sgd *s, int id, int dim, const int32_t *dev_index, int count);

/* Global L2 norm of the gradients of one group (0 for an empty group), returned in *norm (may
 * be NULL); when max_norm / (norm + 1e-6) < 1 every gradient of the group is scaled by it. */
int ft_sgd_clip_grad_norm(ft_sgd *s, int group, double max_norm, double *norm);

/* Loss scaling (scaler.h): multiply every trainable gradient by inv_scale and set *found_inf
 * to 1 when any of them held an inf or NaN (torch GradScaler.unscale_). One host sync. */
int ft_sgd_unscale(ft_sgd *s, float inv_scale, int *found_inf);

/* One SGD step on every trainable parameter at learning rate lr; counts steps. */
int ft_sgd_step(ft_sgd *s, float lr);
/* Zero the gradients of every registered parameter (trainable or not). */
int ft_sgd_zero_grad(ft_sgd *s);
uint64_t ft_sgd_steps(const ft_sgd *s);
void ft_sgd_set_steps(ft_sgd *s, uint64_t steps);

/* Serializable state: one momentum buffer per trainable parameter, named
 * "<param name>.momentum_buffer", float32 with the parameter's shape. */
int ft_sgd_state_count(const ft_sgd *s);
int ft_sgd_state_info(const ft_sgd *s, int i, ft_tensor_info *info);
int ft_sgd_state_get(ft_sgd *s, int i, void *host);
int ft_sgd_state_set(ft_sgd *s, int i, const void *host);

#endif
