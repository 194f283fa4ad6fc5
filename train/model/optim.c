/* optim.c: SGD (momentum, weight decay; torch.optim.SGD semantics) and global grad-norm
 * clipping (torch.nn.utils.clip_grad_norm_) over registered parameters. See optim.h.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "optim.h"

typedef struct sgd_param {
    char name[64];    /* parameter name */
    char bufname[96]; /* "<name>.momentum_buffer" */
    ft_param p;       /* borrowed w, g */
    int group;
    float *buf;    /* device momentum, NULL for frozen parameters */
    int dim, rows; /* row restriction (ft_sgd_set_rows) */
    const int32_t *rows_idx;
} sgd_param;

struct ft_sgd {
    ft_ops *o;
    ft_sgd_config cfg;
    sgd_param *ps;
    int n, cap;
    uint64_t steps;
    float *found; /* device flag of ft_sgd_unscale */
    double *norm; /* device accumulator of ft_sgd_clip_grad_norm */
};

int ft_sgd_create(ft_ops *o, const ft_sgd_config *cfg, ft_sgd **out) {
    if (!(cfg->momentum >= 0.0f) || !(cfg->weight_decay >= 0.0f)) return FT_EARG;
    ft_sgd *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->o = o;
    s->cfg = *cfg;
    int rc = o->alloc(o, sizeof(float), (void **)&s->found);
    if (!rc) rc = o->alloc(o, sizeof(double), (void **)&s->norm);
    if (rc) {
        ft_sgd_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void ft_sgd_free(ft_sgd *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++)
        if (s->ps[i].buf) s->o->free(s->o, s->ps[i].buf);
    if (s->found) s->o->free(s->o, s->found);
    if (s->norm) s->o->free(s->o, s->norm);
    free(s->ps);
    free(s);
}

int ft_sgd_add_param(ft_sgd *s, const ft_param *p, int group) {
    if (group != FT_SGD_GROUP_BACKBONE && group != FT_SGD_GROUP_HEAD) return FT_EARG;
    if (!p->name || !p->w || (p->trainable && !p->g) || p->numel == 0) return FT_EARG;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        sgd_param *np = realloc(s->ps, (size_t)cap * sizeof *np);
        if (!np) return -ENOMEM;
        s->ps = np, s->cap = cap;
    }
    sgd_param *q = &s->ps[s->n];
    memset(q, 0, sizeof *q);
    snprintf(q->name, sizeof q->name, "%s", p->name);
    snprintf(q->bufname, sizeof q->bufname, "%s.momentum_buffer", p->name);
    q->p = *p;
    q->p.name = q->name;
    q->group = group;
    if (p->trainable) {
        void *b;
        int rc = s->o->alloc(s->o, p->numel * sizeof(float), &b);
        if (rc) return rc;
        q->buf = b;
        rc = s->o->zero(s->o, q->buf, p->numel * sizeof(float));
        if (rc) {
            s->o->free(s->o, b);
            return rc;
        }
    }
    return s->n++;
}

int ft_sgd_param_count(const ft_sgd *s) {
    return s->n;
}

int ft_sgd_set_rows(ft_sgd *s, int id, int dim, const int32_t *dev_index, int count) {
    if (id < 0 || id >= s->n) return FT_EARG;
    sgd_param *q = &s->ps[id];
    if (!dev_index) {
        q->rows_idx = NULL;
        return 0;
    }
    if (dim < 1 || q->p.numel % (size_t)dim || count < 0 ||
        (size_t)count > q->p.numel / (size_t)dim)
        return FT_EARG;
    q->rows_idx = dev_index, q->dim = dim, q->rows = count;
    return 0;
}

int ft_sgd_clip_grad_norm(ft_sgd *s, int group, double max_norm, double *norm) {
    /* the squares summed on the device, tensor after tensor, one download for the norm */
    ft_ops *o = s->o;
    double total = 0;
    int rc = o->zero(o, s->norm, sizeof(double));
    for (int i = 0; i < s->n && !rc; i++) {
        sgd_param *q = &s->ps[i];
        if (q->group != group || !q->p.trainable) continue;
        rc = o->sumsq_acc(o, q->p.numel, q->p.g, s->norm);
    }
    if (!rc) rc = o->download(o, &total, s->norm, sizeof total);
    if (rc) return rc;
    double nrm = sqrt(total);
    if (norm) *norm = nrm;
    double coef = max_norm / (nrm + 1e-6);
    if (!(coef < 1.0)) return 0;
    for (int i = 0; i < s->n; i++) {
        sgd_param *q = &s->ps[i];
        if (q->group != group || !q->p.trainable) continue;
        rc = s->o->scale(s->o, q->p.numel, (float)coef, q->p.g);
        if (rc) return rc;
    }
    return 0;
}

int ft_sgd_unscale(ft_sgd *s, float inv_scale, int *found_inf) {
    ft_ops *o = s->o;
    int rc = o->zero(o, s->found, sizeof(float));
    for (int i = 0; i < s->n && !rc; i++) {
        sgd_param *q = &s->ps[i];
        if (q->p.trainable) rc = o->unscale_check(o, q->p.numel, inv_scale, q->p.g, s->found);
    }
    float f = 0;
    if (!rc) rc = o->download(o, &f, s->found, sizeof f);
    if (!rc) *found_inf = f != 0.0f;
    return rc;
}

int ft_sgd_step(ft_sgd *s, float lr) {
    float m = s->cfg.momentum, wd = s->cfg.weight_decay;
    for (int i = 0; i < s->n; i++) {
        sgd_param *q = &s->ps[i];
        if (!q->p.trainable) continue;
        int rc = q->rows_idx
                     ? s->o->sgd_update_rows(s->o, q->rows, q->dim, q->rows_idx, lr, m, wd, q->p.w,
                                             q->p.g, q->buf)
                     : s->o->sgd_update(s->o, q->p.numel, lr, m, wd, q->p.w, q->p.g, q->buf);
        if (rc) return rc;
    }
    s->steps++;
    return 0;
}

int ft_sgd_zero_grad(ft_sgd *s) {
    for (int i = 0; i < s->n; i++) {
        sgd_param *q = &s->ps[i];
        if (!q->p.g) continue;
        int rc = s->o->zero(s->o, q->p.g, q->p.numel * sizeof(float));
        if (rc) return rc;
    }
    return 0;
}

uint64_t ft_sgd_steps(const ft_sgd *s) {
    return s->steps;
}

void ft_sgd_set_steps(ft_sgd *s, uint64_t steps) {
    s->steps = steps;
}

/* ---- state: momentum buffers of trainable parameters, in registration order ---- */

static sgd_param *state_at(const ft_sgd *s, int i) {
    if (i < 0) return NULL;
    for (int k = 0; k < s->n; k++)
        if (s->ps[k].buf && i-- == 0) return &s->ps[k];
    return NULL;
}

int ft_sgd_state_count(const ft_sgd *s) {
    int n = 0;
    for (int k = 0; k < s->n; k++) n += s->ps[k].buf != NULL;
    return n;
}

int ft_sgd_state_info(const ft_sgd *s, int i, ft_tensor_info *info) {
    sgd_param *q = state_at(s, i);
    if (!q) return FT_EARG;
    *info = (ft_tensor_info){q->bufname, FT_DT_F32, q->p.ndim, {0, 0, 0, 0}, q->p.numel};
    for (int d = 0; d < q->p.ndim && d < 4; d++) info->shape[d] = q->p.shape[d];
    if (q->p.ndim == 0) info->ndim = 1, info->shape[0] = (int64_t)q->p.numel;
    return 0;
}

int ft_sgd_state_get(ft_sgd *s, int i, void *host) {
    sgd_param *q = state_at(s, i);
    if (!q) return FT_EARG;
    return s->o->download(s->o, host, q->buf, q->p.numel * sizeof(float));
}

int ft_sgd_state_set(ft_sgd *s, int i, const void *host) {
    sgd_param *q = state_at(s, i);
    if (!q) return FT_EARG;
    return s->o->upload(s->o, q->buf, host, q->p.numel * sizeof(float));
}
