/* lrsched.c: PolynomialLRWarmup in closed form; see lrsched.h. */
#include "lrsched.h"

#include <math.h>

#include "ft_common.h"

int ft_lrsched_init(ft_lrsched *s, double base, int64_t warmup, int64_t total, double power) {
    if (total < 1 || warmup < 0 || (warmup > 0 && warmup >= total) || !(base > 0) || !(power > 0))
        return FT_EARG;
    s->base = base, s->warmup = warmup, s->total = total, s->power = power;
    return 0;
}

double ft_lrsched_at(const ft_lrsched *s, int64_t l) {
    if (l <= 0) return s->base;
    if (l > s->total) l = s->total;
    if (l <= s->warmup) return s->base * (double)l / (double)s->warmup;
    double x = 1.0 - (double)(l - s->warmup) / (double)(s->total - s->warmup);
    return s->base * (s->power == 1.0 ? x : pow(x, s->power));
}
