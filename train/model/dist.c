/* dist.c: data-parallel backbone and model-parallel Partial FC over an ft_comm (see dist.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "ft_common.h"

/* ------------------------------------------------------------------ backbone */

int ft_dp_broadcast_model(ft_comm *c, ft_ops *o, ft_iresnet *m) {
    if (c->world == 1) return 0;
    int n = ft_iresnet_tensor_count(m), rc = 0;
    size_t cap = 0;
    for (int i = 0; i < n; i++) {
        ft_tensor_info ti;
        if ((rc = ft_iresnet_tensor_info(m, i, &ti))) return rc;
        size_t b = ti.numel * ft_dtype_size(ti.dtype);
        if (b > cap) cap = b;
    }
    void *host = malloc(cap ? cap : 1), *dev = NULL;
    if (!host) return -ENOMEM;
    if ((rc = o->alloc(o, cap ? cap : 1, &dev))) {
        free(host);
        return rc;
    }
    for (int i = 0; i < n && !rc; i++) {
        ft_tensor_info ti;
        rc = ft_iresnet_tensor_info(m, i, &ti);
        size_t b = ti.numel * ft_dtype_size(ti.dtype);
        if (!rc && c->rank == 0) rc = ft_iresnet_tensor_get(m, i, host);
        if (!rc && c->rank == 0) rc = o->upload(o, dev, host, b);
        /* every rank takes part even after a local error (comm.h) */
        int rb = c->broadcast(c, o, dev, b, 0);
        if (!rc) rc = rb;
        if (!rc && c->rank != 0) rc = o->download(o, host, dev, b);
        if (!rc && c->rank != 0) rc = ft_iresnet_tensor_set(m, i, host);
    }
    o->free(o, dev);
    free(host);
    return rc;
}

typedef struct dp_param {
    float *g;
    size_t numel, off; /* offset in the flat buffer (floats) */
    int index;         /* ft_iresnet_param's index */
} dp_param;

typedef struct dp_bucket {
    int first, last; /* params[first..last] (reverse order: first > last is never the case) */
    size_t off, numel;
    float *span;   /* in place: the gradients' own memory, from params[last].g ... */
    size_t span_n; /* ... to the end of params[first].g (the arena's padding included) */
} dp_bucket;

struct ft_dp {
    ft_comm *c;
    ft_ops *o;
    ft_iresnet *m;
    dp_param *p;
    int np;
    dp_bucket *b;
    int nb;
    float *flat; /* device, all trainable gradients packed in bucket order (packed mode) */
    size_t flat_n;
    /* in place: every bucket's gradients lie back to back in the model's arena, so a bucket
     * is all-reduced and averaged where backward wrote it (no packing copies, no staging) */
    int can_inplace, inplace;
    double t_comm;
    /* this backward: buckets started so far, the first error of a copy / of a start */
    int next, rc_copy, rc_start;
    int early, overlap; /* buckets the last reduce had started inside backward; hook on */
};

/* Pack bucket k's gradients and start its all-reduce. A local error is kept for
 * ft_dp_reduce_grads: every rank still starts every bucket (comm.h). */
static void start_bucket(ft_dp *d, int k) {
    dp_bucket *bk = &d->b[k];
    ft_ops *o = d->o;
    if (d->inplace) {
        int ra = d->c->all_reduce_async(d->c, o, bk->span, bk->span_n, FT_F32, FT_COMM_SUM);
        if (!d->rc_start) d->rc_start = ra;
        return;
    }
    for (int i = bk->first; i <= bk->last && !d->rc_copy; i++)
        d->rc_copy = o->copy(o, d->flat + d->p[i].off, d->p[i].g, d->p[i].numel * sizeof(float));
    int ra = d->c->all_reduce_async(d->c, o, d->flat + bk->off, bk->numel, FT_F32, FT_COMM_SUM);
    if (!d->rc_start) d->rc_start = ra;
}

/* the backbone's grad hook: start every bucket whose parameters are all final (a bucket's
 * last entry has its lowest index), then let the started ones advance */
static int grads_ready(void *ctx, int first) {
    ft_dp *d = ctx;
    double t0 = ft_now();
    while (d->next < d->nb && d->p[d->b[d->next].last].index >= first) start_bucket(d, d->next++);
    if (d->next && d->c->progress) {
        int rp = d->c->progress(d->c);
        if (!d->rc_start) d->rc_start = rp;
    }
    d->t_comm += ft_now() - t0;
    return 0;
}

void ft_dp_set_overlap(ft_dp *d, int on) {
    d->overlap = on && d->c->world > 1;
    ft_iresnet_set_grad_hook(d->m, d->overlap ? grads_ready : NULL, d);
}

int ft_dp_early_buckets(const ft_dp *d) {
    return d->early;
}

int ft_dp_create(ft_comm *c, ft_ops *o, ft_iresnet *m, size_t bucket_bytes, ft_dp **out) {
    ft_dp *d = calloc(1, sizeof *d);
    int n = ft_iresnet_param_count(m), rc = 0;
    if (!d) return -ENOMEM;
    d->c = c, d->o = o, d->m = m;
    d->p = calloc((size_t)n, sizeof *d->p);
    d->b = calloc((size_t)n, sizeof *d->b);
    if (!d->p || !d->b) {
        ft_dp_free(d);
        return -ENOMEM;
    }
    size_t cap = bucket_bytes / sizeof(float), off = 0;
    if (cap == 0) cap = 1;
    /* reverse parameter order: the gradients backward finishes first go first */
    for (int i = n - 1; i >= 0 && !rc; i--) {
        ft_param pr;
        if ((rc = ft_iresnet_param(m, i, &pr))) break;
        if (!pr.trainable || !pr.g) continue;
        dp_param *q = &d->p[d->np];
        q->g = pr.g, q->numel = pr.numel, q->off = off, q->index = i;
        dp_bucket *bk = d->nb ? &d->b[d->nb - 1] : NULL;
        if (!bk || (bk->numel > 0 && bk->numel + pr.numel > cap)) {
            bk = &d->b[d->nb++];
            bk->first = d->np, bk->off = off, bk->numel = 0;
        }
        bk->last = d->np;
        bk->numel += pr.numel;
        off += pr.numel;
        d->np++;
    }
    /* in place when each bucket's gradients follow each other as the arena lays them out
     * (64-byte padding between tensors, nothing else) */
    d->can_inplace = !rc && d->nb > 0;
    for (int k = 0; k < d->nb && d->can_inplace; k++) {
        dp_bucket *bk = &d->b[k];
        for (int j = bk->first; j < bk->last && d->can_inplace; j++)
            d->can_inplace = d->p[j + 1].g + (d->p[j + 1].numel + 15) / 16 * 16 == d->p[j].g;
        bk->span = d->p[bk->last].g;
        bk->span_n = (size_t)(d->p[bk->first].g - bk->span) + d->p[bk->first].numel;
    }
    d->flat_n = off;
    if (!rc) rc = ft_dp_set_inplace(d, 1);
    if (rc) {
        ft_dp_free(d);
        return rc;
    }
    ft_dp_set_overlap(d, 1);
    *out = d;
    return 0;
}

int ft_dp_set_inplace(ft_dp *d, int on) {
    d->inplace = on && d->can_inplace;
    if (d->inplace || d->flat || !d->flat_n) return 0;
    return d->o->alloc(d->o, d->flat_n * sizeof(float), (void **)&d->flat);
}

int ft_dp_inplace(const ft_dp *d) {
    return d->inplace;
}

void ft_dp_free(ft_dp *d) {
    if (!d) return;
    if (d->overlap) ft_iresnet_set_grad_hook(d->m, NULL, NULL);
    if (d->flat) d->o->free(d->o, d->flat);
    free(d->p);
    free(d->b);
    free(d);
}

int ft_dp_reduce_grads(ft_dp *d) {
    ft_comm *c = d->c;
    ft_ops *o = d->o;
    if (c->world == 1) return 0;
    double t0 = ft_now();
    d->early = d->next;
    while (d->next < d->nb) start_bucket(d, d->next++); /* the rest (all without overlap) */
    int rw = c->wait(c);
    int rc = d->rc_copy ? d->rc_copy : d->rc_start ? d->rc_start : rw;
    d->next = 0, d->rc_copy = 0, d->rc_start = 0;
    float inv = 1.0f / (float)c->world;
    if (d->inplace) {
        for (int k = 0; k < d->nb && !rc; k++) rc = o->scale(o, d->b[k].span_n, inv, d->b[k].span);
    } else {
        for (int i = 0; i < d->np && !rc; i++) {
            rc = o->scale(o, d->p[i].numel, inv, d->flat + d->p[i].off);
            if (!rc)
                rc = o->copy(o, d->p[i].g, d->flat + d->p[i].off, d->p[i].numel * sizeof(float));
        }
    }
    d->t_comm += ft_now() - t0;
    return rc;
}

double ft_dp_comm_seconds(const ft_dp *d) {
    return d->t_comm;
}
int ft_dp_buckets(const ft_dp *d) {
    return d->nb;
}

/* ------------------------------------------------------------------ Partial FC */

struct ft_dpfc {
    ft_comm *c;
    ft_ops *o;
    int max_batch, emb, batch;
    float *emb_all, *demb_all; /* device [W * max_batch, emb] */
    /* device and host [W * (max_batch + 1)]: each rank's labels and its vote (the gather goes
     * through the comm) */
    int32_t *lab_dev, *lab_raw;
    int32_t *lab_all; /* host [W * max_batch]: the labels in rank order */
    double t_comm;
};

int ft_dpfc_create(ft_comm *c, ft_ops *o, int max_batch, int emb, ft_dpfc **out) {
    if (max_batch < 1 || emb < 1) return FT_EARG;
    ft_dpfc *d = calloc(1, sizeof *d);
    if (!d) return -ENOMEM;
    d->c = c, d->o = o, d->max_batch = max_batch, d->emb = emb;
    size_t rows = (size_t)c->world * (size_t)max_batch;
    int rc = o->alloc(o, rows * emb * sizeof(float), (void **)&d->emb_all);
    if (!rc) rc = o->alloc(o, rows * emb * sizeof(float), (void **)&d->demb_all);
    size_t slots = (size_t)c->world * ((size_t)max_batch + 1);
    if (!rc) rc = o->alloc(o, slots * sizeof(int32_t), (void **)&d->lab_dev);
    if (!rc && !(d->lab_all = malloc(rows * sizeof(int32_t)))) rc = -ENOMEM;
    if (!rc && !(d->lab_raw = malloc(slots * sizeof(int32_t)))) rc = -ENOMEM;
    if (rc) {
        ft_dpfc_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

void ft_dpfc_free(ft_dpfc *d) {
    if (!d) return;
    if (d->emb_all) d->o->free(d->o, d->emb_all);
    if (d->demb_all) d->o->free(d->o, d->demb_all);
    if (d->lab_dev) d->o->free(d->o, d->lab_dev);
    free(d->lab_all);
    free(d->lab_raw);
    free(d);
}

int ft_dpfc_gather_labels(ft_dpfc *d, const int32_t *labels, int batch, const int32_t **labels_all,
                          int *agree) {
    ft_comm *c = d->c;
    ft_ops *o = d->o;
    if (batch < 1 || batch > d->max_batch) return FT_EARG; /* the same on every rank */
    double t0 = ft_now();
    size_t W = (size_t)c->world, blk = (size_t)batch + 1;
    /* labels and the vote: staged in the host buffer's and the device buffer's own block,
     * gathered, downloaded, unpacked into rank order */
    int32_t *mine = d->lab_dev + (size_t)c->rank * blk, *raw = d->lab_raw + (size_t)c->rank * blk;
    memcpy(raw, labels, (size_t)batch * sizeof(int32_t));
    raw[batch] = agree ? *agree != 0 : 1;
    int rc = o->upload(o, mine, raw, blk * sizeof(int32_t));
    int rg = c->all_gather(c, o, mine, d->lab_dev, blk * sizeof(int32_t));
    if (!rc) rc = rg;
    if (!rc) rc = o->download(o, d->lab_raw, d->lab_dev, W * blk * sizeof(int32_t));
    int all = 1;
    for (size_t r = 0; r < W && !rc; r++) {
        memcpy(d->lab_all + r * batch, d->lab_raw + r * blk, (size_t)batch * sizeof(int32_t));
        all &= d->lab_raw[r * blk + batch] != 0;
    }
    if (agree) *agree = all;
    d->batch = batch;
    d->t_comm += ft_now() - t0;
    *labels_all = d->lab_all;
    return rc;
}

int ft_dpfc_gather_emb(ft_dpfc *d, const float *emb, const float **emb_all, float **demb_all) {
    ft_comm *c = d->c;
    double t0 = ft_now();
    int rc = c->all_gather(c, d->o, emb, d->emb_all, (size_t)d->batch * d->emb * sizeof(float));
    d->t_comm += ft_now() - t0;
    *emb_all = d->emb_all, *demb_all = d->demb_all;
    return rc;
}

int ft_dpfc_gather(ft_dpfc *d, const float *emb, const int32_t *labels, int batch,
                   const float **emb_all, const int32_t **labels_all, float **demb_all) {
    int rc = ft_dpfc_gather_labels(d, labels, batch, labels_all, NULL);
    int rg = ft_dpfc_gather_emb(d, emb, emb_all, demb_all); /* every rank takes part */
    return rc ? rc : rg;
}

int ft_dpfc_scatter(ft_dpfc *d, float *demb) {
    ft_comm *c = d->c;
    ft_ops *o = d->o;
    double t0 = ft_now();
    size_t n = (size_t)d->batch * d->emb;
    int rc = c->reduce_scatter(c, o, d->demb_all, demb, n, FT_F32);
    if (!rc && c->world > 1) rc = o->scale(o, n, (float)c->world, demb);
    d->t_comm += ft_now() - t0;
    return rc;
}

double ft_dpfc_comm_seconds(const ft_dpfc *d) {
    return d->t_comm;
}
