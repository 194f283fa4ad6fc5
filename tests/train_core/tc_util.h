/* tc_util.h: small helpers for the train_core tests (random fills, error metrics). */
#ifndef TC_UTIL_H
#define TC_UTIL_H

#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include "ft_common.h"
#include "ops.h"

static inline void tc_fill(float *x, size_t n, ft_rng *r, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * ft_rng_uniform(r));
}

/* |x| >= gap for every element (keeps finite differences away from kinks) */
static inline void tc_fill_gap(float *x, size_t n, ft_rng *r, float gap) {
    for (size_t i = 0; i < n; i++) {
        float v = (float)(gap + (1.0 - gap) * ft_rng_uniform(r));
        x[i] = ft_rng_uniform(r) < 0.5 ? -v : v;
    }
}

/* normalized max error: max |a - b| / max(max |b|, floor) */
static inline double tc_nmax(const float *a, const float *b, size_t n, double floor) {
    double d = 0, m = floor;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (e > d || e != e) d = e != e ? INFINITY : e;
        if (fabs((double)b[i]) > m) m = fabs((double)b[i]);
    }
    return d / m;
}

/* the CPU backend with `threads` workers through the factory (NULL on failure, reported) */
static inline ft_ops *tc_cpu(int threads) {
    ft_ops_options opts = {.threads = threads, .device = -1};
    ft_ops *o = NULL;
    char err[256];
    if (ft_ops_create("cpu", &opts, &o, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    return o;
}

#endif
