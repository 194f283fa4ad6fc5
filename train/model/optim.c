/* optim.c: SGD (momentum, weight decay; torch.optim.SGD semantics) and global grad-norm
 * clipping (torch.nn.utils.clip_grad_norm_) over registered parameters. See optim.h.
 *
 * Each pass over the parameters (zero, unscale, norm, clip, update) is one multi-tensor op on
 * a tensor list (ops.h ft_tlist), so a GPU step launches a handful of kernels for the
 * optimizer instead of a few per parameter tensor. The lists are made on first use and again
 * after a change of membership (a parameter added, a row restriction set or lifted).
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

/* the tensor lists of the passes */
enum {
    L_ZERO,     /* every parameter with a gradient */
    L_TRAIN,    /* the trainable ones (unscale) */
    L_BACKBONE, /* the trainable ones of a group (clip) */
    L_HEAD,
    L_WHOLE, /* the trainable ones without a row restriction (the whole-tensor update) */
    L_COUNT
};

struct ft_sgd {
    ft_ops *o;
    ft_sgd_config cfg;
    sgd_param *ps;
    int n, cap;
    uint64_t steps;
    float *found; /* device flag of ft_sgd_unscale */
    double *norm; /* device accumulator of ft_sgd_clip_grad_norm */
    ft_tlist *list[L_COUNT];
    int lists_stale;
};

static void drop_lists(ft_sgd *s) {
    for (int l = 0; l < L_COUNT; l++) {
        if (s->list[l]) s->o->tlist_free(s->o, s->list[l]);
        s->list[l] = NULL;
    }
    s->lists_stale = 1;
}

static int in_list(const sgd_param *q, int l) {
    switch (l) {
    case L_ZERO:
        return q->p.g != NULL;
    case L_TRAIN:
        return q->p.trainable;
    case L_BACKBONE:
        return q->p.trainable && q->group == FT_SGD_GROUP_BACKBONE;
    case L_HEAD:
        return q->p.trainable && q->group == FT_SGD_GROUP_HEAD;
    default:
        return q->p.trainable && !q->rows_idx;
    }
}

/* the lists, (re)made when stale */
static int lists(ft_sgd *s) {
    if (!s->lists_stale) return 0;
    drop_lists(s);
    ft_tentry *e = malloc((size_t)(s->n ? s->n : 1) * sizeof *e);
    if (!e) return -ENOMEM;
    int rc = 0;
    for (int l = 0; l < L_COUNT && !rc; l++) {
        int k = 0;
        for (int i = 0; i < s->n; i++)
            if (in_list(&s->ps[i], l))
                e[k++] = (ft_tentry){s->ps[i].p.w, s->ps[i].p.g, s->ps[i].buf, s->ps[i].p.numel};
        rc = s->o->tlist_make(s->o, k, e, &s->list[l]);
    }
    free(e);
    if (rc) {
        drop_lists(s);
        return rc;
    }
    s->lists_stale = 0;
    return 0;
}

int ft_sgd_create(ft_ops *o, const ft_sgd_config *cfg, ft_sgd **out) {
    if (!(cfg->momentum >= 0.0f) || !(cfg->weight_decay >= 0.0f)) return FT_EARG;
    ft_sgd *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->o = o;
    s->cfg = *cfg;
    s->lists_stale = 1;
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
    drop_lists(s);
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
    s->lists_stale = 1;
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
        if (q->rows_idx) s->lists_stale = 1;
        q->rows_idx = NULL;
        return 0;
    }
    if (dim < 1 || q->p.numel % (size_t)dim || count < 0 ||
        (size_t)count > q->p.numel / (size_t)dim)
        return FT_EARG;
    if (!q->rows_idx) s->lists_stale = 1;
    q->rows_idx = dev_index, q->dim = dim, q->rows = count;
    return 0;
}

int ft_sgd_clip_grad_norm(ft_sgd *s, int group, double max_norm, double *norm) {
    /* the squares summed on the device in one pass over the group, one download for the norm */
    ft_ops *o = s->o;
    if (group != FT_SGD_GROUP_BACKBONE && group != FT_SGD_GROUP_HEAD) return FT_EARG;
    int rc = lists(s);
    if (rc) return rc;
    const ft_tlist *t = s->list[group == FT_SGD_GROUP_BACKBONE ? L_BACKBONE : L_HEAD];
    double total = 0;
    rc = o->zero(o, s->norm, sizeof(double));
    if (!rc) rc = o->multi_sumsq_acc(o, t, s->norm);
    if (!rc) rc = o->download(o, &total, s->norm, sizeof total);
    if (rc) return rc;
    double nrm = sqrt(total);
    if (norm) *norm = nrm;
    double coef = max_norm / (nrm + 1e-6);
    if (!(coef < 1.0)) return 0;
    return o->multi_scale(o, t, (float)coef);
}

int ft_sgd_unscale(ft_sgd *s, float inv_scale, int *found_inf) {
    ft_ops *o = s->o;
    int rc = lists(s);
    if (!rc) rc = o->zero(o, s->found, sizeof(float));
    if (!rc) rc = o->multi_unscale_check(o, s->list[L_TRAIN], inv_scale, s->found);
    float f = 0;
    if (!rc) rc = o->download(o, &f, s->found, sizeof f);
    if (!rc) *found_inf = f != 0.0f;
    return rc;
}

int ft_sgd_step(ft_sgd *s, float lr) {
    float m = s->cfg.momentum, wd = s->cfg.weight_decay;
    int rc = lists(s);
    if (!rc) rc = s->o->multi_sgd(s->o, s->list[L_WHOLE], lr, m, wd);
    for (int i = 0; i < s->n && !rc; i++) {
        sgd_param *q = &s->ps[i];
        if (q->p.trainable && q->rows_idx)
            rc = s->o->sgd_update_rows(s->o, q->rows, q->dim, q->rows_idx, lr, m, wd, q->p.w,
                                       q->p.g, q->buf);
    }
    if (rc) return rc;
    s->steps++;
    return 0;
}

int ft_sgd_zero_grad(ft_sgd *s) {
    int rc = lists(s);
    return rc ? rc : s->o->multi_zero(s->o, s->list[L_ZERO]);
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
    *info = (ft_tensor_info){q->bufname, FT_F32, q->p.ndim, {0, 0, 0, 0}, q->p.numel};
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
