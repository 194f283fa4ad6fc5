/* scaler.h: dynamic loss scaling with torch.cuda.amp.GradScaler semantics, as arcface_torch
 * configures it for fp16 = True (GradScaler(growth_interval=100)).
 *
 *   scale starts at 2^16; every optimizer step: the loss gradient was multiplied by scale,
 *   the gradients are unscaled (x 1/scale) and checked for inf/NaN (ft_sgd_unscale) before
 *   clipping; if any is non-finite the step is skipped (weights and momentum untouched), the
 *   scale halves and the growth count restarts; otherwise after growth_interval finite steps
 *   in a row the scale doubles (unless that overflows fp32).
 * The scale is kept in fp32, as GradScaler keeps it in a float tensor. A disabled scaler (fp32,
 * bf16) has scale 1 and never skips.
 *
 * The state (scale, growth count, skipped steps) goes into the checkpoint so that a resumed
 * run continues exactly.
 */
#ifndef FT_SCALER_H
#define FT_SCALER_H

#include <stdint.h>

typedef struct ft_scaler {
    int enabled;
    float scale;
    float growth_factor, backoff_factor; /* 2, 0.5 */
    int growth_interval;                 /* 100 in arcface_torch */
    int64_t growth_tracker;              /* finite steps since the last change */
    int64_t skipped;                     /* steps skipped so far (the whole run) */
    int64_t consecutive;                 /* steps skipped in a row, up to now */
} ft_scaler;

/* enabled: fp16. init_scale 65536 and growth_interval 100 for GradScaler's defaults as
 * arcface_torch uses them. */
void ft_scaler_init(ft_scaler *s, int enabled, float init_scale, int growth_interval);
/* the factor for the loss gradient this step (1 when disabled) */
float ft_scaler_scale(const ft_scaler *s);
/* after the unscale check of an optimizer step: 1 when the step must be skipped */
int ft_scaler_update(ft_scaler *s, int found_inf);

#endif
