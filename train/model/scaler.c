/* scaler.c: dynamic loss scaling (GradScaler semantics); see scaler.h. */
#include <math.h>

#include "scaler.h"

void ft_scaler_init(ft_scaler *s, int enabled, float init_scale, int growth_interval) {
    *s = (ft_scaler){.enabled = enabled != 0,
                     .scale = enabled ? init_scale : 1.0f,
                     .growth_factor = 2.0f,
                     .backoff_factor = 0.5f,
                     .growth_interval = growth_interval > 0 ? growth_interval : 1};
}

float ft_scaler_scale(const ft_scaler *s) {
    return s->enabled ? s->scale : 1.0f;
}

/* torch's _amp_update_scale_: on inf/NaN back off and restart the count; else count, and
 * grow when the count reaches the interval (keeping the old scale if the new one is inf) */
int ft_scaler_update(ft_scaler *s, int found_inf) {
    if (!s->enabled) return 0;
    if (found_inf) {
        s->scale *= s->backoff_factor;
        s->growth_tracker = 0;
        s->skipped++;
        s->consecutive++;
        return 1;
    }
    s->consecutive = 0;
    if (s->growth_tracker + 1 == s->growth_interval) {
        float grown = s->scale * s->growth_factor;
        if (isfinite(grown)) s->scale = grown;
        s->growth_tracker = 0;
    } else {
        s->growth_tracker++;
    }
    return 0;
}
