/* ops.c: what every backend shares: the backend factory (the one place a backend is chosen),
 * the capability query, the slot names, convolution geometry, dtypes and the arena planner. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "ops.h"

int ft_ops_cpu_create_(int threads, int inference, ft_ops **out); /* cpu/backend.c */
int ft_ops_cpu_strict_create_(int threads, int inference, ft_ops **out, char *err,
                              size_t errcap); /* cpu/strict.c */
#if defined(FT_HAVE_CUDA)
int ft_ops_cuda_create_(int device, int local_rank, int layout, ft_ops **out, char *err,
                        size_t errcap); /* cuda/ */
#endif

/* ---- dtypes ---- */

size_t ft_dtype_size(ft_dtype dt) {
    static const size_t sz[FT_NDTYPES] = {4, 2, 2, 8, 4, 1, 8};
    return (unsigned)dt < FT_NDTYPES ? sz[dt] : 0;
}

const char *ft_dtype_name(ft_dtype dt) {
    static const char *const nm[FT_NDTYPES] = {"f32", "f16", "bf16", "i64", "i32", "u8", "f64"};
    return (unsigned)dt < FT_NDTYPES ? nm[dt] : "?";
}

int ft_dtype_parse(const char *name) {
    static const struct {
        const char *name;
        ft_dtype dt;
    } tab[] = {{"f32", FT_F32},  {"fp32", FT_F32},    {"float32", FT_F32}, {"f16", FT_F16},
               {"fp16", FT_F16}, {"float16", FT_F16}, {"bf16", FT_BF16},   {"bfloat16", FT_BF16}};
    for (size_t i = 0; name && i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(name, tab[i].name) == 0) return (int)tab[i].dt;
    return -1;
}

int ft_dtype_is_float(ft_dtype dt) {
    return dt == FT_F32 || dt == FT_F16 || dt == FT_BF16;
}

/* ---- slots ---- */

const char *ft_op_name(int op) {
#define FT_OP_NAME_(name) #name,
    static const char *const names[FT_OP_COUNT] = {FT_OPS_SLOTS(FT_OP_NAME_)};
#undef FT_OP_NAME_
    return op >= 0 && op < FT_OP_COUNT ? names[op] : NULL;
}

int ft_op_takes_dtype(int op) {
    switch (op) {
    case FT_OP_cast:
    case FT_OP_act_import:
    case FT_OP_act_export:
    case FT_OP_conv_ws_bytes:
    case FT_OP_conv_fwd:
    case FT_OP_conv_bwd_data:
    case FT_OP_conv_bwd_filter:
    case FT_OP_bn_fwd_train:
    case FT_OP_bn_fwd_eval:
    case FT_OP_bn_bwd:
    case FT_OP_prelu_fwd:
    case FT_OP_prelu_bwd:
    case FT_OP_add:
    case FT_OP_gemm:
    case FT_OP_fc_fwd:
    case FT_OP_fc_bwd:
    case FT_OP_dropout_fwd:
    case FT_OP_dropout_bwd:
        return 1;
    default:
        return 0;
    }
}

int ft_ops_supports(const ft_ops *o, int op, ft_dtype dt) {
    return o && o->supports && o->supports(o, op, dt);
}

/* ---- convolution geometry ---- */

int ft_conv_desc_init(ft_conv_desc *d, int n, int c, int h, int w, int k, int r, int stride,
                      int pad) {
    if (n < 1 || c < 1 || h < 1 || w < 1 || k < 1 || r < 1 || stride < 1 || pad < 0) return FT_EARG;
    int oh = (h + 2 * pad - r) / stride + 1, ow = (w + 2 * pad - r) / stride + 1;
    if (h + 2 * pad < r || w + 2 * pad < r || oh < 1 || ow < 1) return FT_EARG;
    *d = (ft_conv_desc){n, c, h, w, k, r, stride, pad, oh, ow};
    return 0;
}

/* ---- the factory ---- */

void ft_ops_options_init(ft_ops_options *opts) {
    opts->threads = 0;
    opts->device = -1;
    opts->local_rank = -1;
    opts->inference = 0;
    opts->layout = FT_LAYOUT_AUTO;
}

static const char *const LAYOUTS[] = {"auto", "nchw", "nhwc"};

int ft_layout_parse(const char *s) {
    for (int i = 0; s && i < 3; i++)
        if (strcmp(s, LAYOUTS[i]) == 0) return i;
    return -1;
}
const char *ft_layout_name(int layout) {
    return layout >= 0 && layout < 3 ? LAYOUTS[layout] : "?";
}

/* the CPU's keys and their selection copy (16 n bytes); the CUDA backend's keys (8 n), its
 * radix-select state and histogram (about 1 KiB) and its per-block counts (4 bytes per block of
 * cuda/cuda.h's CUDA_RED threads: at most 4 (n + 1) bytes, whatever CUDA_RED is) fit in the
 * same */
size_t ft_ops_pfc_sample_scratch(int64_t n) {
    return (size_t)(n > 0 ? n : 0) * 2 * sizeof(uint64_t) + 4096;
}

const char *ft_ops_backends(void) {
#if defined(FT_HAVE_CUDA)
    return "cpu cuda";
#else
    return "cpu";
#endif
}

static int create_named(const char *name, const ft_ops_options *opts, ft_ops **out, char *err,
                        size_t errcap) {
    ft_ops_options def;
    if (!opts) ft_ops_options_init(&def), opts = &def;
    if (errcap) err[0] = '\0';
    int is_cpu = name && (!strcmp(name, "cpu") || !strcmp(name, "cpu-strict"));
    const char *conv = getenv("FT_CPU_CONV");
    if (is_cpu && conv && *conv && strcmp(conv, "onednn") && strcmp(conv, "im2col")) {
        if (errcap) snprintf(err, errcap, "FT_CPU_CONV='%s': expected 'onednn' or 'im2col'", conv);
        return FT_EARG;
    }
    if (opts->layout < FT_LAYOUT_AUTO || opts->layout > FT_LAYOUT_NHWC) {
        if (errcap)
            snprintf(err, errcap, "layout %d is not a layout (auto, nchw, nhwc)", opts->layout);
        return FT_EARG;
    }
    if (is_cpu && opts->layout == FT_LAYOUT_NHWC) {
        if (errcap)
            snprintf(err, errcap, "layout 'nhwc': the %s backend keeps activations NCHW", name);
        return FT_ENOTSUP;
    }
    if (name && strcmp(name, "cpu") == 0) {
        int rc = ft_ops_cpu_create_(opts->threads, opts->inference, out);
        if (rc && errcap)
            snprintf(err, errcap, "cannot start the CPU backend (%d threads): %s", opts->threads,
                     ft_strerror(rc));
        return rc;
    }
    if (name && strcmp(name, "cpu-strict") == 0)
        return ft_ops_cpu_strict_create_(opts->threads, opts->inference, out, err, errcap);
    if (name && strcmp(name, "auto") == 0) {
#if defined(FT_HAVE_CUDA)
        /* a GPU when one is visible, else the CPU */
        int rc =
            ft_ops_cuda_create_(opts->device, opts->local_rank, opts->layout, out, err, errcap);
        if (rc != FT_ENODEV) return rc;
        if (errcap) err[0] = '\0';
#endif
        return create_named("cpu", opts, out, err, errcap);
    }
    if (name && strcmp(name, "cuda") == 0) {
#if defined(FT_HAVE_CUDA)
        return ft_ops_cuda_create_(opts->device, opts->local_rank, opts->layout, out, err, errcap);
#else
        if (errcap)
            snprintf(err, errcap,
                     "device 'cuda': this build has no CUDA backend (it has: %s); build with "
                     "the CUDA toolkit (cmake -DFT_CUDA=ON)",
                     ft_ops_backends());
        return FT_ENOTSUP;
#endif
    }
    if (errcap)
        snprintf(err, errcap, "device '%s' is not a backend (this build has: %s)",
                 name ? name : "(null)", ft_ops_backends());
    return FT_EARG;
}

#if defined(FT_HAVE_CUDA)
int ft_ops_cuda_device_id(const ft_ops *o, char *buf, size_t cap); /* cuda/backend.cu */
#endif
int ft_ops_device_id(const ft_ops *o, char *buf, size_t cap) {
    if (cap < 32) return FT_EARG;
    buf[0] = '\0';
#if defined(FT_HAVE_CUDA)
    if (o && o->name && strcmp(o->name, "cuda") == 0) return ft_ops_cuda_device_id(o, buf, cap);
#endif
    return 0;
}

int ft_ops_create(const char *name, const ft_ops_options *opts, ft_ops **out, char *err,
                  size_t errcap) {
    int rc = create_named(name, opts, out, err, errcap);
    if (!rc) ft_ops_fill_defaults(*out);
    return rc;
}

/* ---- tensor lists: the host part, and the multi ops as per-tensor loops ---- */

int ft_tlist_host_make(int n, const ft_tentry *e, ft_tlist **out) {
    if (n < 0 || (n && !e)) return FT_EARG;
    ft_tlist *t = calloc(1, sizeof *t);
    if (!t || !(t->e = malloc((size_t)(n ? n : 1) * sizeof *t->e))) {
        free(t);
        return -ENOMEM;
    }
    t->n = n;
    for (int i = 0; i < n; i++) t->e[i] = e[i], t->total += e[i].numel;
    *out = t;
    return 0;
}

void ft_tlist_host_free(ft_tlist *t) {
    if (!t) return;
    free(t->e);
    free(t);
}

static int gen_tlist_make(ft_ops *o, int n, const ft_tentry *e, ft_tlist **out) {
    (void)o;
    return ft_tlist_host_make(n, e, out);
}
static void gen_tlist_free(ft_ops *o, ft_tlist *t) {
    (void)o;
    ft_tlist_host_free(t);
}
static int gen_multi_zero(ft_ops *o, const ft_tlist *t) {
    int rc = 0;
    for (int i = 0; i < t->n && !rc; i++) rc = o->zero(o, t->e[i].g, t->e[i].numel * sizeof(float));
    return rc;
}
static int gen_multi_scale(ft_ops *o, const ft_tlist *t, float alpha) {
    int rc = 0;
    for (int i = 0; i < t->n && !rc; i++) rc = o->scale(o, t->e[i].numel, alpha, t->e[i].g);
    return rc;
}
static int gen_multi_sumsq_acc(ft_ops *o, const ft_tlist *t, double *acc) {
    int rc = 0;
    for (int i = 0; i < t->n && !rc; i++) rc = o->sumsq_acc(o, t->e[i].numel, t->e[i].g, acc);
    return rc;
}
static int gen_multi_unscale_check(ft_ops *o, const ft_tlist *t, float inv_scale, float *found) {
    int rc = 0;
    for (int i = 0; i < t->n && !rc; i++)
        rc = o->unscale_check(o, t->e[i].numel, inv_scale, t->e[i].g, found);
    return rc;
}
static int gen_multi_sgd(ft_ops *o, const ft_tlist *t, float lr, float momentum, float wd) {
    int rc = 0;
    for (int i = 0; i < t->n && !rc; i++)
        rc = o->sgd_update(o, t->e[i].numel, lr, momentum, wd, t->e[i].w, t->e[i].g, t->e[i].m);
    return rc;
}

void ft_ops_fill_defaults(ft_ops *o) {
    if (!o->upload_ahead) o->upload_ahead = o->upload;
    if (!o->tlist_make || !o->tlist_free)
        o->tlist_make = gen_tlist_make, o->tlist_free = gen_tlist_free;
    if (!o->multi_zero) o->multi_zero = gen_multi_zero;
    if (!o->multi_scale) o->multi_scale = gen_multi_scale;
    if (!o->multi_sumsq_acc) o->multi_sumsq_acc = gen_multi_sumsq_acc;
    if (!o->multi_unscale_check) o->multi_unscale_check = gen_multi_unscale_check;
    if (!o->multi_sgd) o->multi_sgd = gen_multi_sgd;
}

void ft_ops_free(ft_ops *o) {
    if (o && o->destroy) o->destroy(o);
}

/* ---- graph slots ---- */

void ft_graph_slot_drop(ft_ops *o, ft_graph_slot *s) {
    if (s->g && o->graph_free) o->graph_free(o, s->g);
    s->g = NULL;
}

int ft_graph_run(ft_ops *o, ft_graph_slot *s, const uint64_t *key, int nkey, ft_graph_work work,
                 void *ctx, int *how) {
    int dummy, rc;
    if (!how) how = &dummy;
    *how = FT_GRAPH_DIRECT;
    if (nkey < 1 || nkey > FT_GRAPH_KEY_MAX || (s->nkey && s->nkey != nkey)) return FT_EARG;
    size_t kb = (size_t)nkey * sizeof key[0];
    int again = s->nkey && !memcmp(s->prev, key, kb);
    memcpy(s->prev, key, kb), s->nkey = nkey;
    if (!o->graph_begin) return work(ctx);
    if (s->g && memcmp(s->key, key, kb)) ft_graph_slot_drop(o, s);
    if (s->g) {
        rc = o->graph_launch(o, s->g);
        if (rc == FT_ESTALE) {
            /* memory the recording uses was replaced (a larger op grew a scratch): this run
             * goes directly, the next one of this shape records afresh */
            ft_graph_slot_drop(o, s);
            return work(ctx);
        }
        if (rc) {
            *how = FT_GRAPH_FAILED;
            return rc;
        }
        s->replayed++;
        *how = FT_GRAPH_REPLAYED;
        return 0;
    }
    if (!again) return work(ctx);
    if ((rc = o->graph_begin(o))) {
        *how = FT_GRAPH_FAILED;
        return rc;
    }
    int rc_work = work(ctx);
    void *g = NULL;
    rc = o->graph_end(o, &g);
    if (rc_work || rc) {
        if (g) o->graph_free(o, g);
        *how = rc_work ? FT_GRAPH_RECORDED : FT_GRAPH_FAILED;
        return rc_work ? rc_work : rc;
    }
    s->g = g, s->recorded++;
    memcpy(s->key, key, kb);
    *how = FT_GRAPH_RECORDED;
    /* the recorded calls' host side has happened; the launch runs their device side */
    if ((rc = o->graph_launch(o, s->g))) *how = FT_GRAPH_FAILED;
    return rc;
}

/* ---- the arena planner ---- */

void ft_arena_init(ft_arena *a, uintptr_t base) {
    memset(a, 0, sizeof *a);
    a->base = base;
}

void *ft_arena_take(ft_arena *a, ft_dtype dt, size_t numel) {
    size_t bytes = (numel * ft_dtype_size(dt) + 63) / 64 * 64;
    void *r = (void *)(a->base + a->off);
    a->off += bytes;
    if ((unsigned)dt < FT_NDTYPES) a->bytes[dt] += bytes;
    return r;
}

void ft_arena_describe(const ft_arena *a, char *out, size_t cap) {
    size_t len = 0;
    if (cap) out[0] = '\0';
    for (int dt = 0; dt < FT_NDTYPES && cap; dt++) {
        if (!a->bytes[dt]) continue;
        int n = snprintf(out + len, cap - len, "%s%.1f MiB %s", len ? " + " : "",
                         (double)a->bytes[dt] / 1048576.0, ft_dtype_name((ft_dtype)dt));
        if (n < 0 || (size_t)n >= cap - len) break;
        len += (size_t)n;
    }
}
