/* lrsched: arcface_torch's PolynomialLRWarmup learning-rate schedule, in closed form
 * (formats.md 6.3).
 *
 *   steps_per_epoch = num_image // (batch_size * world_size)
 *   total_step  T   = steps_per_epoch * num_epoch
 *   warmup_step w   = steps_per_epoch * warmup_epoch
 *
 *   lr(0)            = base           (PyTorch's constructor step leaves the group lr as is)
 *   lr(l), 1..w      = base * l / w
 *   lr(l), w < l <= T = base * (1 - (l - w) / (T - w)) ^ power
 *   lr(l), l > T     = lr(T)          (0 for power > 0)
 *
 * The optimizer step of global step g (1-based) uses lr(g - 1); the value logged at step g is
 * lr(g). PyTorch evaluates the decay branch multiplicatively (lr(l-1) * ratio), so its values
 * differ from these by float64 rounding only (relative ~1e-15 over 1e5 steps).
 * The schedule is a pure function of the step: resuming needs only the global step.
 */
#ifndef FT_LRSCHED_H
#define FT_LRSCHED_H

#include <stdint.h>

typedef struct ft_lrsched {
    double base;    /* cfg.lr */
    int64_t warmup; /* w */
    int64_t total;  /* T */
    double power;   /* 1.0 in train_v2 */
} ft_lrsched;

/* Fill s; returns FT_EARG when total < 1, warmup < 0, or warmup >= total with warmup > 0. */
int ft_lrsched_init(ft_lrsched *s, double base, int64_t warmup, int64_t total, double power);
double ft_lrsched_at(const ft_lrsched *s, int64_t l); /* lr(l), l >= 0 */

#endif
