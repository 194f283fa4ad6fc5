/* conv_onednn.c: the CPU backend's convolutions on oneDNN (the CPU twin of cuDNN), used by
 * conv.c whenever oneDNN is built in and accepts the shape; conv.c's im2col + sgemm path is
 * the fallback (and FT_CPU_CONV=im2col forces it).
 *
 * The tensors the ops interface passes stay plain (NCHW activations, OIHW weights, of the
 * storage dtype); oneDNN's fast kernels want blocked layouts (nChw16c and friends) that it
 * picks per shape and ISA at run time. Each call therefore reorders its inputs into the
 * primitive's layout in the workspace, runs the primitive and reorders the result back; on
 * r50's shapes the two activation reorders cost ~10% of the convolution and the layout of
 * every other op is untouched. The weight gradient is reordered with a sum post-op, which
 * gives the interface's dw += semantics.
 *
 * Precision: F32 computes in fp32; BF16 computes in bf16 with fp32 accumulation where oneDNN
 * has a kernel for the CPU (AVX-512 BF16 natively, AVX-512 emulated), else in fp32 on operands
 * staged in fp32 by the backend's casts; F16 computes in fp32 on operands staged in fp32 by the
 * backend's F16C casts (oneDNN 2.6's f16 reorders are its generic, slow ones on this ISA).
 * Reference
 * ("ref:") implementations are refused: such a shape takes the im2col path instead.
 *
 * Threads: oneDNN runs its own OpenMP team of the pool's size, started from the calling
 * thread (the pool's workers sit idle meanwhile). A plan (primitive descriptors, primitives,
 * reorders, workspace offsets) is built once per (geometry, dtype) and kept.
 */
#include <errno.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "cpu.h"

enum { DN_FWD, DN_BWD_DATA, DN_BWD_W, DN_PASSES };

/* One primitive and its three operands. Operand order: fwd (src, weights, dst), bwd_data
 * (diff_dst, weights, diff_src), bwd_w (src, diff_dst, diff_weights); the first two are read,
 * the third written. */
typedef struct dn_pass {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_memory_desc_t md[3];   /* the primitive's layouts */
    dnnl_memory_desc_t user[3]; /* the interface's plain layouts */
    dnnl_primitive_t ro[3];     /* user -> md (inputs), md -> user (output); NULL: same layout */
    size_t off[4];              /* workspace offsets of the three operands and the scratchpad */
    size_t bytes;
} dn_pass;

typedef struct dn_plan {
    ft_conv_desc d;
    ft_dtype dt;
    int ok;      /* 0: oneDNN declined this shape (conv.c falls back) */
    int crop;    /* the input's last rows/columns are never read (see plan_build) */
    int stage;   /* F16 (BF16 without bf16 kernels): the passes run on fp32 copies in the
                    workspace (after core bytes) */
    size_t core; /* workspace bytes of the passes themselves */
    dn_pass pass[DN_PASSES];
    size_t ws;
} dn_plan;

/* inference backends: a weight in a forward primitive's layout, kept from its first use (the
 * plans of one conv at several batch sizes share it when their layouts agree) */
typedef struct dn_wcache {
    dnnl_memory_desc_t md;
    const void *w;
    void *buf;
} dn_wcache;

struct cpu_dnnl {
    dnnl_engine_t eng;
    dnnl_stream_t st;
    int nthreads;
    int inference; /* forward_inference kernels, no backward passes, weights cached */
    pthread_mutex_t mu;
    dn_plan **plans;
    size_t nplans, cap;
    dn_wcache *wc;
    size_t nwc, wccap;
};

static dnnl_data_type_t dn_type(ft_dtype dt) {
    return dt == FT_F16 ? dnnl_f16 : dt == FT_BF16 ? dnnl_bf16 : dnnl_f32;
}
static size_t align64(size_t n) {
    return (n + 63) / 64 * 64;
}

static void pass_free(dn_pass *p) {
    for (int i = 0; i < 3; i++)
        if (p->ro[i]) dnnl_primitive_destroy(p->ro[i]);
    if (p->prim) dnnl_primitive_destroy(p->prim);
    if (p->pd) dnnl_primitive_desc_destroy(p->pd);
    memset(p, 0, sizeof *p);
}
static void plan_free(dn_plan *pl) {
    if (!pl) return;
    for (int k = 0; k < DN_PASSES; k++) pass_free(&pl->pass[k]);
    free(pl);
}

/* a reorder primitive from -> to (with dst += when sum), or NULL on failure */
static dnnl_primitive_t make_reorder(struct cpu_dnnl *c, const dnnl_memory_desc_t *from,
                                     const dnnl_memory_desc_t *to, int sum) {
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t p = NULL;
    if (sum) {
        if (dnnl_primitive_attr_create(&attr) || dnnl_post_ops_create(&po) ||
            dnnl_post_ops_append_sum(po, 1.0f) || dnnl_primitive_attr_set_post_ops(attr, po))
            goto out;
    }
    if (dnnl_reorder_primitive_desc_create(&pd, from, c->eng, to, c->eng, attr) == dnnl_success)
        if (dnnl_primitive_create(&p, pd) != dnnl_success) p = NULL;
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return p;
}

/* Finish a pass whose pd is set: refuse reference kernels, take the operand layouts, build
 * the reorders and the primitive, lay out the workspace. 0 or -1. */
static int pass_finish(struct cpu_dnnl *c, dn_pass *p, const dnnl_query_t q[3], int out_sum) {
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(p->pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success ||
        !impl || strncmp(impl, "ref", 3) == 0)
        return -1;
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        const dnnl_memory_desc_t *m = dnnl_primitive_desc_query_md(p->pd, q[i], 0);
        if (!m) return -1;
        p->md[i] = *m;
        int same = dnnl_memory_desc_equal(&p->md[i], &p->user[i]);
        if (same && !(i == 2 && out_sum)) continue;
        p->ro[i] = i < 2 ? make_reorder(c, &p->user[i], &p->md[i], 0)
                         : make_reorder(c, &p->md[i], &p->user[i], out_sum);
        if (!p->ro[i]) return -1;
        p->off[i] = off;
        off += align64(dnnl_memory_desc_get_size(&p->md[i]));
    }
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(p->pd, dnnl_query_scratchpad_md, 0);
    p->off[3] = off;
    off += sp ? align64(dnnl_memory_desc_get_size(sp)) : 0;
    p->bytes = off;
    return dnnl_primitive_create(&p->prim, p->pd) == dnnl_success ? 0 : -1;
}

/* Build the three passes of d for compute type cdt (the user layouts are of dt). */
static int plan_passes(struct cpu_dnnl *c, dn_plan *pl, dnnl_data_type_t cdt) {
    const ft_conv_desc *d = &pl->d;
    dnnl_data_type_t udt = pl->stage ? dnnl_f32 : dn_type(pl->dt);
    /* oneDNN wants oh = (h + pl + pr - r) / s + 1 exactly; when (h + 2p - r) is not a multiple
     * of s, pr = p would overshoot: the input's last rows (columns) are then never read, so
     * describe the input without them (a strided view) and pad by p on the left only. */
    int ph = (d->oh - 1) * d->stride + d->r - d->h - d->pad;
    int pw = (d->ow - 1) * d->stride + d->r - d->w - d->pad;
    int he = d->h + (ph < 0 ? ph : 0), we = d->w + (pw < 0 ? pw : 0);
    pl->crop = he != d->h || we != d->w;
    dnnl_dims_t xs = {d->n, d->c, he, we},
                xstr = {(dnnl_dim_t)d->c * d->h * d->w, (dnnl_dim_t)d->h * d->w, d->w, 1};
    dnnl_dims_t ws = {d->k, d->c, d->r, d->r}, ys = {d->n, d->k, d->oh, d->ow};
    dnnl_dims_t strides = {d->stride, d->stride}, padl = {d->pad, d->pad};
    dnnl_dims_t padr = {ph < 0 ? 0 : ph, pw < 0 ? 0 : pw};
    dnnl_memory_desc_t ux, uw, uw32, uy, ax, aw, aw32, ay;
    if (dnnl_memory_desc_init_by_strides(&ux, 4, xs, udt, xstr) ||
        dnnl_memory_desc_init_by_tag(&uw, 4, ws, udt, dnnl_oihw) ||
        dnnl_memory_desc_init_by_tag(&uw32, 4, ws, dnnl_f32, dnnl_oihw) ||
        dnnl_memory_desc_init_by_tag(&uy, 4, ys, udt, dnnl_nchw) ||
        dnnl_memory_desc_init_by_tag(&ax, 4, xs, cdt, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&aw, 4, ws, cdt, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&aw32, 4, ws, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&ay, 4, ys, cdt, dnnl_format_tag_any))
        return -1;
    dnnl_primitive_attr_t attr;
    if (dnnl_primitive_attr_create(&attr)) return -1;
    int rc = -1;
    if (dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)) goto out;
    dnnl_convolution_desc_t cd;
    dn_pass *f = &pl->pass[DN_FWD], *bd = &pl->pass[DN_BWD_DATA], *bw = &pl->pass[DN_BWD_W];
    dnnl_prop_kind_t prop = c->inference ? dnnl_forward_inference : dnnl_forward_training;
    if (dnnl_convolution_forward_desc_init(&cd, prop, dnnl_convolution_direct, &ax, &aw, NULL, &ay,
                                           strides, padl, padr) ||
        dnnl_primitive_desc_create(&f->pd, &cd, attr, c->eng, NULL))
        goto out;
    f->user[0] = ux, f->user[1] = uw, f->user[2] = uy;
    static const dnnl_query_t qf[3] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md};
    if (pass_finish(c, f, qf, 0)) goto out;
    if (c->inference) {
        rc = 0;
        goto out;
    }

    if (dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &ax, &aw, &ay,
                                                 strides, padl, padr) ||
        dnnl_primitive_desc_create(&bd->pd, &cd, attr, c->eng, f->pd))
        goto out;
    bd->user[0] = uy, bd->user[1] = uw, bd->user[2] = ux;
    static const dnnl_query_t qd[3] = {dnnl_query_diff_dst_md, dnnl_query_weights_md,
                                       dnnl_query_diff_src_md};
    if (pass_finish(c, bd, qd, 0)) goto out;

    if (dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &ax, &aw32, NULL,
                                                    &ay, strides, padl, padr) ||
        dnnl_primitive_desc_create(&bw->pd, &cd, attr, c->eng, f->pd))
        goto out;
    bw->user[0] = ux, bw->user[1] = uy, bw->user[2] = uw32;
    static const dnnl_query_t qw[3] = {dnnl_query_src_md, dnnl_query_diff_dst_md,
                                       dnnl_query_diff_weights_md};
    if (pass_finish(c, bw, qw, 1)) goto out;
    rc = 0;
out:
    dnnl_primitive_attr_destroy(attr);
    if (rc)
        for (int k = 0; k < DN_PASSES; k++) pass_free(&pl->pass[k]);
    return rc;
}

/* element counts of x (0), w (1) and y (2) */
static size_t stage_n(const ft_conv_desc *d, int which) {
    return which == 0   ? (size_t)d->n * d->c * d->h * d->w
           : which == 1 ? (size_t)d->k * d->c * d->r * d->r
                        : (size_t)d->n * d->k * d->oh * d->ow;
}

static dn_plan *plan_build(struct cpu_dnnl *c, const ft_conv_desc *d, ft_dtype dt) {
    dn_plan *pl = calloc(1, sizeof *pl);
    if (!pl) return NULL;
    pl->d = *d, pl->dt = dt;
    omp_set_num_threads(c->nthreads); /* kernels are partitioned for the team they will get */
    /* bf16 storage computes in bf16 where the CPU has the kernels, else (AVX2) in fp32 on
     * operands staged by the backend's casts, as f16: oneDNN 2.6 converts bf16 <-> f32 in
     * reorders with its generic "simple:any" kernel there, which made bf16 training ~17x
     * slower than fp32 on an AVX2 machine */
    pl->stage = dt == FT_F16;
    pl->ok = !plan_passes(c, pl, dt == FT_BF16 ? dnnl_bf16 : dnnl_f32);
    if (!pl->ok && dt == FT_BF16) {
        pl->stage = 1;
        pl->ok = !plan_passes(c, pl, dnnl_f32);
    }
    for (int k = 0; pl->ok && k < DN_PASSES; k++)
        if (pl->pass[k].bytes > pl->core) pl->core = pl->pass[k].bytes;
    pl->ws = pl->core;
    if (pl->stage) /* x, w and y (or their gradients) as fp32, 64-byte aligned each */
        pl->ws +=
            align64(stage_n(d, 0) * 4) + align64(stage_n(d, 1) * 4) + align64(stage_n(d, 2) * 4);
    return pl;
}

/* the plan of (d, dt), built on first use when build is set; NULL when out of memory or not
 * built yet */
static dn_plan *plan_get(struct cpu_dnnl *c, const ft_conv_desc *d, ft_dtype dt, int build) {
    dn_plan *pl = NULL;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nplans && !pl; i++)
        if (c->plans[i]->dt == dt && !memcmp(&c->plans[i]->d, d, sizeof *d)) pl = c->plans[i];
    if (!pl && build && c->nplans == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        dn_plan **np = realloc(c->plans, cap * sizeof *np);
        if (np) c->plans = np, c->cap = cap;
    }
    if (!pl && build && c->nplans < c->cap && (pl = plan_build(c, d, dt)))
        c->plans[c->nplans++] = pl;
    pthread_mutex_unlock(&c->mu);
    return pl;
}

/* Inference: the forward weight w in the primitive's layout, reordered on its first use and
 * kept; NULL when out of memory. */
static void *cached_weight(struct cpu_dnnl *c, const dn_plan *pl, const void *w, int *fresh) {
    *fresh = 0;
    const dnnl_memory_desc_t *md = &pl->pass[DN_FWD].md[1];
    for (size_t i = 0; i < c->nwc; i++)
        if (c->wc[i].w == w && dnnl_memory_desc_equal(&c->wc[i].md, md)) return c->wc[i].buf;
    if (c->nwc == c->wccap) {
        size_t cap = c->wccap ? 2 * c->wccap : 128;
        dn_wcache *n = realloc(c->wc, cap * sizeof *n);
        if (!n) return NULL;
        c->wc = n, c->wccap = cap;
    }
    void *buf = aligned_alloc(64, align64(dnnl_memory_desc_get_size(md)));
    if (!buf) return NULL;
    c->wc[c->nwc++] = (dn_wcache){*md, w, buf};
    *fresh = 1;
    return buf;
}

/* Run pass k of plan pl: in0, in1 read, out written (plain layouts); ws of pl->ws bytes. */
static int pass_run(struct cpu_dnnl *c, const dn_plan *pl, int k, const void *in0, const void *in1,
                    void *out, void *ws) {
    const dn_pass *p = &pl->pass[k];
    void *user[3] = {(void *)in0, (void *)in1, out};
    dnnl_memory_t um[3] = {0}, pm[3] = {0}, sp = NULL;
    int rc = FT_EDEVICE, skip_w = 0;
    if (!p->pd) {
        fprintf(stderr, "oneDNN convolution: a backward pass on an inference backend\n");
        return FT_EARG;
    }
    void *wbuf = NULL;
    if (k == DN_FWD && c->inference && p->ro[1] && !pl->stage) { /* staged: w is a copy */
        pthread_mutex_lock(&c->mu);
        int fresh;
        wbuf = cached_weight(c, pl, in1, &fresh);
        pthread_mutex_unlock(&c->mu);
        if (!wbuf) return -ENOMEM;
        skip_w = !fresh;
    }
    for (int i = 0; i < 3; i++) {
        if (dnnl_memory_create(&um[i], &p->user[i], c->eng, user[i])) goto out;
        if (!p->ro[i]) continue;
        void *at = i == 1 && wbuf ? wbuf : (char *)ws + p->off[i];
        if (dnnl_memory_create(&pm[i], &p->md[i], c->eng, at)) goto out;
    }
    const dnnl_memory_desc_t *spm =
        dnnl_primitive_desc_query_md(p->pd, dnnl_query_scratchpad_md, 0);
    if (spm && spm->ndims > 0 && dnnl_memory_create(&sp, spm, c->eng, (char *)ws + p->off[3]))
        goto out;
    omp_set_num_threads(c->nthreads);
    for (int i = 0; i < 2; i++) {
        if (!p->ro[i] || (i == 1 && skip_w)) continue;
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, um[i]}, {DNNL_ARG_TO, pm[i]}};
        if (dnnl_primitive_execute(p->ro[i], c->st, 2, a)) goto out;
    }
    /* the cropped input's unread rows/columns have a zero data gradient */
    if (k == DN_BWD_DATA && pl->crop)
        memset(out, 0, stage_n(&pl->d, 0) * (pl->stage ? 4 : cpu_esize(pl->dt)));
    static const int args[DN_PASSES][3] = {
        {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
        {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC},
        {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS}};
    dnnl_exec_arg_t a[4];
    int na = 0;
    for (int i = 0; i < 3; i++) a[na++] = (dnnl_exec_arg_t){args[k][i], p->ro[i] ? pm[i] : um[i]};
    if (sp) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, sp};
    if (dnnl_primitive_execute(p->prim, c->st, na, a)) goto out;
    if (p->ro[2]) {
        dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, pm[2]}, {DNNL_ARG_TO, um[2]}};
        if (dnnl_primitive_execute(p->ro[2], c->st, 2, r)) goto out;
    }
    if (dnnl_stream_wait(c->st)) goto out;
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "oneDNN convolution %s failed (n %d, c %d, %dx%d, k %d, r %d, stride %d)\n",
                k == DN_FWD        ? "forward"
                : k == DN_BWD_DATA ? "backward data"
                                   : "backward weights",
                pl->d.n, pl->d.c, pl->d.h, pl->d.w, pl->d.k, pl->d.r, pl->d.stride);
    for (int i = 0; i < 3; i++) {
        if (um[i]) dnnl_memory_destroy(um[i]);
        if (pm[i]) dnnl_memory_destroy(pm[i]);
    }
    if (sp) dnnl_memory_destroy(sp);
    return rc;
}

/* ---- what conv.c calls ---- */

int cpu_dnnl_open(cpu_backend *b, int nthreads, int inference) {
    const char *env = getenv("FT_CPU_CONV");
    /* ft_ops_create has refused any value but onednn / im2col */
    if (env && !strcmp(env, "im2col")) return 0;
    struct cpu_dnnl *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->nthreads = nthreads;
    c->inference = inference;
    pthread_mutex_init(&c->mu, NULL);
    if (dnnl_engine_create(&c->eng, dnnl_cpu, 0) ||
        dnnl_stream_create(&c->st, c->eng, dnnl_stream_default_flags)) {
        /* no usable oneDNN: the im2col path serves every shape */
        if (c->eng) dnnl_engine_destroy(c->eng);
        pthread_mutex_destroy(&c->mu);
        free(c);
        return 0;
    }
    b->dnnl = c;
    return 0;
}

void cpu_dnnl_close(cpu_backend *b) {
    struct cpu_dnnl *c = b->dnnl;
    if (!c) return;
    for (size_t i = 0; i < c->nwc; i++) free(c->wc[i].buf);
    free(c->wc);
    for (size_t i = 0; i < c->nplans; i++) plan_free(c->plans[i]);
    free(c->plans);
    dnnl_stream_destroy(c->st);
    dnnl_engine_destroy(c->eng);
    pthread_mutex_destroy(&c->mu);
    free(c);
    b->dnnl = NULL;
}

int cpu_dnnl_conv_ws(ft_ops *o, const ft_conv_desc *d, ft_dtype dt, size_t *bytes) {
    struct cpu_dnnl *c = cpu_of(o)->dnnl;
    dn_plan *pl = c ? plan_get(c, d, dt, 1) : NULL;
    if (!pl || !pl->ok) return 0;
    *bytes = pl->ws;
    return 1;
}

int cpu_dnnl_conv(ft_ops *o, int pass, const ft_conv_desc *d, ft_dtype dt, const void *in0,
                  const void *in1, void *out, void *ws) {
    struct cpu_dnnl *c = cpu_of(o)->dnnl;
    /* a shape conv_ws_bytes never saw (a smaller last or eval batch) gets its plan now, and
     * runs on oneDNN when that fits the largest workspace the caller was told about */
    dn_plan *pl = c ? plan_get(c, d, dt, 1) : NULL;
    if (!pl || !pl->ok || pl->ws > cpu_of(o)->conv_ws_max) return FT_ENOTSUP;
    if (!pl->stage) return pass_run(c, pl, pass, in0, in1, out, ws);
    /* staged (F16, BF16 without bf16 kernels): operands of the pass (fwd x, w -> y;
     * bwd_data dy, w -> dx; bwd_w x, dy -> dw f32) */
    static const int which[DN_PASSES][3] = {{0, 1, 2}, {2, 1, 0}, {0, 2, -1}};
    const int *wh = which[pass];
    char *at = (char *)ws + pl->core;
    float *s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = (float *)at;
        if (wh[i] >= 0) at += align64(stage_n(d, wh[i]) * 4);
    }
    int rc = o->cast(o, stage_n(d, wh[0]), dt, in0, FT_F32, s[0]);
    if (!rc) rc = o->cast(o, stage_n(d, wh[1]), dt, in1, FT_F32, s[1]);
    if (!rc) rc = pass_run(c, pl, pass, s[0], s[1], wh[2] < 0 ? out : s[2], ws);
    if (!rc && wh[2] >= 0) rc = o->cast(o, stage_n(d, wh[2]), FT_F32, s[2], dt, out);
    return rc;
}
