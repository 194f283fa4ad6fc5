/* pfc.c: margin softmax on a Partial FC classifier shard (see pfc.h for the semantics).
 *
 * Device memory (one arena, planned for max_batch rows and the largest sampled class count
 * smax): W and its dense gradient [num_local, emb]; normalized sampled centres Wn and a second
 * [smax, emb] buffer (gathered W, then dWn); normalized embeddings and their gradient
 * [max_batch, emb]; cos and logits [max_batch, smax]; per-row max, sum, p_target; the remapped
 * labels and the sampled index (int32); with sampling, the step's seed (one u64) and the
 * scratch of the ops' pfc_sample.
 *
 * Sampling runs on the backend (ops.h pfc_sample: the same index on every backend): the host
 * only maps the labels to the shard and counts the positives, so a GPU step uploads the batch's
 * labels and its seed and never waits for its classes. The host copy of the index is
 * downloaded when asked for (ft_pfc_index). The uploads (ft_pfc_stage) and the device work
 * (ft_pfc_forward_backward_dev, which draws the sample first) are separate calls, so that
 * the device work can be recorded once in a graph (ops.h graph_begin) and replayed with each
 * step's labels and seed.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "kmath.h"
#include "pfc.h"

struct ft_pfc {
    ft_ops *o;
    ft_pfc_config cfg;
    ft_comm *comm; /* NULL: one rank */
    int64_t num_local, class_start;
    int num_sample, smax;
    ft_margin mg;
    ft_dtype dt;      /* dtype of the cosine GEMMs' operands */
    float loss_scale; /* the loss gradient is multiplied by it (fp16 loss scaling) */
    void *arena;
    size_t bytes;
    float *w, *g, *wn, *wbuf, *wnorm, *en, *gen, *enorm, *cosv, *logits, *mx, *sum, *pt;
    /* the GEMM operands in dt (dt != F32): normalized embeddings and centres, cos / dcos, and
     * the two gradient products */
    void *en_h, *wn_h, *cos_h, *dwn_h, *den_h;
    int32_t *d_label, *d_index;
    uint64_t *d_seed; /* the step's sampling seed (pfc_sample reads it on the device) */
    void *d_scratch;  /* pfc_sample's */
    /* host state of the prepared step (h_index: valid when have_index) */
    int32_t *h_index, *h_label;
    int32_t *h_sort; /* ft_pfc_shard_counts' copy of the labels */
    uint8_t *pos;
    float *h_pt;
    int count, batch, prepared, sampling, have_index;
    int drawn; /* the prepared step's pfc_sample has been queued (always 1 without sampling) */
};

void ft_pfc_config_init(ft_pfc_config *cfg, int64_t num_classes) {
    *cfg = (ft_pfc_config){.num_classes = num_classes,
                           .rank = 0,
                           .world_size = 1,
                           .emb = 512,
                           .max_batch = 128,
                           .sample_rate = 1.0f,
                           .s = 64.0f,
                           .m1 = 1.0f,
                           .m2 = 0.5f,
                           .m3 = 0.0f,
                           .interclass_filtering_threshold = 0.0f,
                           .margin_grad = FT_MARGIN_GRAD_UPSTREAM,
                           .seed = 2048};
}

static int margin_of(const ft_pfc_config *c, ft_margin *mg) {
    memset(mg, 0, sizeof *mg);
    if (c->m1 == 1.0f && c->m3 == 0.0f)
        mg->kind = FT_MARGIN_ARCFACE;
    else if (c->m3 > 0.0f)
        mg->kind = FT_MARGIN_COSFACE;
    else
        return FT_EARG; /* upstream raises on other combinations */
    if (c->margin_grad != FT_MARGIN_GRAD_UPSTREAM && c->margin_grad != FT_MARGIN_GRAD_EXACT)
        return FT_EARG;
    mg->grad_mode = c->margin_grad;
    mg->s = c->s, mg->m2 = c->m2, mg->m3 = c->m3;
    mg->filter_thr = c->interclass_filtering_threshold;
    return 0;
}

static int init_weights(ft_pfc *p) {
    size_t e = (size_t)p->cfg.emb;
    float *h = malloc(e * sizeof(float) * 1024);
    if (!h) return -ENOMEM;
    int rc = 0;
    for (int64_t r0 = 0; r0 < p->num_local && !rc; r0 += 1024) {
        int64_t n = p->num_local - r0 < 1024 ? p->num_local - r0 : 1024;
        for (int64_t r = 0; r < n; r++) {
            ft_rng g;
            ft_rng_seed(&g, p->cfg.seed,
                        0x5046430000000000ull + (uint64_t)(p->class_start + r0 + r));
            for (size_t j = 0; j < e; j++) h[r * e + j] = (float)(0.01 * ft_rng_normal(&g));
        }
        rc = p->o->upload(p->o, p->w + r0 * e, h, (size_t)n * e * sizeof(float));
    }
    free(h);
    return rc;
}

static int check_config(const ft_pfc_config *c) {
    if (c->num_classes < 1 || c->num_classes > INT32_MAX || c->world_size < 1 || c->rank < 0 ||
        c->rank >= c->world_size || c->emb < 1 || c->max_batch < 1)
        return FT_EARG;
    if (!(c->sample_rate > 0.0f && c->sample_rate <= 1.0f) || !(c->s > 0.0f)) return FT_EARG;
    if (c->num_classes < c->world_size) return FT_EARG;
    if (!ft_dtype_is_float((ft_dtype)c->dtype)) return FT_EARG;
    return 0;
}

/* The shard's sizes: num_local, class_start, num_sample, smax (pfc.h "Sharding"). */
/* rank r's shard: its classes [*start, *start + *num_local) and how many it samples */
static void shard_of(const ft_pfc_config *cfg, int64_t r, int64_t *num_local, int64_t *start,
                     int *num_sample) {
    int64_t C = cfg->num_classes, W = cfg->world_size;
    *num_local = C / W + (r < C % W);
    *start = C / W * r + (r < C % W ? r : C % W);
    *num_sample = (int)(cfg->sample_rate * (float)*num_local);
}

static void shard_sizes(ft_pfc *p, const ft_pfc_config *cfg) {
    shard_of(cfg, cfg->rank, &p->num_local, &p->class_start, &p->num_sample);
    p->sampling = cfg->sample_rate < 1.0f;
    int64_t pos_max = cfg->max_batch < p->num_local ? cfg->max_batch : p->num_local;
    p->smax =
        !p->sampling ? (int)p->num_local : (p->num_sample > pos_max ? p->num_sample : (int)pos_max);
}

/* Carve the arena at base (0: only measure); returns its size. */
static size_t plan_arena(ft_pfc *p, uintptr_t base) {
    size_t E = (size_t)p->cfg.emb, B = (size_t)p->cfg.max_batch, S = (size_t)p->smax;
    size_t NL = (size_t)p->num_local;
    size_t sizes[] = {NL * E, NL * E, S * E, S * E, S, B * E, B * E, B, B * S, B * S, B, B, B};
    float **dst[] = {&p->w,     &p->g,    &p->wn,     &p->wbuf, &p->wnorm, &p->en, &p->gen,
                     &p->enorm, &p->cosv, &p->logits, &p->mx,   &p->sum,   &p->pt};
    size_t hsizes[] = {B * E, S * E, B * S, S * E, B * E};
    void **hdst[] = {&p->en_h, &p->wn_h, &p->cos_h, &p->dwn_h, &p->den_h};
    int nh = p->dt == FT_F32 ? 0 : (int)(sizeof hsizes / sizeof *hsizes);
    ft_arena a;
    ft_arena_init(&a, base);
    for (size_t i = 0; i < sizeof dst / sizeof *dst; i++)
        *dst[i] = ft_arena_take(&a, FT_F32, sizes[i]);
    for (int i = 0; i < nh; i++) *hdst[i] = ft_arena_take(&a, p->dt, hsizes[i]);
    p->d_label = ft_arena_take(&a, FT_I32, B);
    p->d_index = ft_arena_take(&a, FT_I32, S);
    p->d_seed = p->sampling ? ft_arena_take(&a, FT_U8, sizeof(uint64_t)) : NULL;
    p->d_scratch =
        p->sampling ? ft_arena_take(&a, FT_U8, ft_ops_pfc_sample_scratch(p->num_local)) : NULL;
    return a.off;
}

int ft_pfc_plan(const ft_pfc_config *cfg, ft_pfc_plan_info *info) {
    int rc = check_config(cfg);
    if (rc) return rc;
    ft_pfc p = {.cfg = *cfg, .dt = (ft_dtype)cfg->dtype};
    shard_sizes(&p, cfg);
    size_t E = (size_t)cfg->emb, B = (size_t)cfg->max_batch, S = (size_t)p.smax;
    *info = (ft_pfc_plan_info){.num_local = p.num_local,
                               .num_sample = p.smax,
                               .arena_bytes = plan_arena(&p, 0),
                               .centre_bytes = (size_t)p.num_local * E * sizeof(float),
                               .logit_bytes = 2 * B * S * sizeof(float)};
    if (p.dt != FT_F32) info->logit_bytes += B * S * ft_dtype_size(p.dt);
    return 0;
}

int ft_pfc_create(ft_ops *o, const ft_pfc_config *cfg, ft_pfc **out) {
    int rc = check_config(cfg);
    if (rc) return rc;
    ft_pfc *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->o = o;
    p->cfg = *cfg;
    p->dt = (ft_dtype)cfg->dtype;
    p->loss_scale = 1.0f;
    if (p->dt != FT_F32 &&
        (!ft_ops_supports(o, FT_OP_gemm, p->dt) || !ft_ops_supports(o, FT_OP_cast, p->dt))) {
        rc = FT_ENOTSUP;
        goto fail;
    }
    if ((rc = margin_of(cfg, &p->mg))) goto fail;
    shard_sizes(p, cfg);
    size_t B = (size_t)cfg->max_batch, S = (size_t)p->smax, NL = (size_t)p->num_local;
    /* two passes: measure, then carve the allocation */
    p->bytes = plan_arena(p, 0);
    if ((rc = o->alloc(o, p->bytes, &p->arena))) goto fail;
    plan_arena(p, (uintptr_t)p->arena);
    p->h_index = malloc(S * sizeof(int32_t));
    p->h_label = malloc(B * sizeof(int32_t));
    p->h_sort = malloc(B * sizeof(int32_t));
    p->h_pt = malloc(B * sizeof(float));
    p->pos = calloc(NL, 1);
    if (!p->h_index || !p->h_label || !p->h_sort || !p->h_pt || !p->pos) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = init_weights(p)) || (rc = ft_pfc_zero_grad(p))) goto fail;
    *out = p;
    return 0;
fail:
    ft_pfc_free(p);
    return rc;
}

void ft_pfc_free(ft_pfc *p) {
    if (!p) return;
    if (p->arena) p->o->free(p->o, p->arena);
    free(p->h_index);
    free(p->h_label);
    free(p->h_sort);
    free(p->h_pt);
    free(p->pos);
    free(p);
}

void ft_pfc_set_comm(ft_pfc *p, ft_comm *comm) {
    p->comm = comm;
}

int ft_pfc_set_loss_scale(ft_pfc *p, float scale) {
    if (!(scale > 0.0f) || ft_km_nonfinite(scale)) return FT_EARG;
    p->loss_scale = scale;
    return 0;
}

int64_t ft_pfc_num_local(const ft_pfc *p) {
    return p->num_local;
}
int64_t ft_pfc_class_start(const ft_pfc *p) {
    return p->class_start;
}
int ft_pfc_num_sample(const ft_pfc *p) {
    return p->num_sample;
}
size_t ft_pfc_bytes(const ft_pfc *p) {
    return p->bytes;
}

/* ---- step preparation (host) ---- */

static void clear_pos(ft_pfc *p, int batch) {
    for (int i = 0; i < batch; i++)
        if (p->h_label[i] >= 0) p->pos[p->h_label[i]] = 0;
}

/* Local labels into h_label (-1 outside the shard), positives marked in pos. */
static int local_labels(ft_pfc *p, const int32_t *labels, int batch, int *npos) {
    if (batch < 1 || batch > p->cfg.max_batch) return FT_EARG;
    *npos = 0;
    for (int i = 0; i < batch; i++) {
        if (labels[i] < 0 || labels[i] >= p->cfg.num_classes) {
            clear_pos(p, i);
            return FT_ERANGE;
        }
        int64_t l = labels[i] - p->class_start;
        int in = l >= 0 && l < p->num_local;
        p->h_label[i] = in ? (int32_t)l : -1;
        if (in && !p->pos[l]) p->pos[l] = 1, (*npos)++;
    }
    return 0;
}

/* remap labels to positions in a host index and upload labels and index */
static int finish_prepare(ft_pfc *p, int batch) {
    for (int i = 0; i < batch; i++) {
        if (p->h_label[i] < 0 || !p->sampling) continue;
        p->h_label[i] = ft_km_find_sorted(p->h_index, p->count, p->h_label[i]);
        if (p->h_label[i] < 0) return FT_EARG; /* a positive missing from a given index */
    }
    int rc = p->o->upload(p->o, p->d_label, p->h_label, (size_t)batch * sizeof(int32_t));
    if (!rc && p->sampling)
        rc = p->o->upload(p->o, p->d_index, p->h_index, (size_t)p->count * sizeof(int32_t));
    if (!rc) p->batch = batch, p->prepared = 1, p->have_index = 1, p->drawn = 1;
    return rc;
}

int ft_pfc_stage(ft_pfc *p, const int32_t *labels, int batch, uint64_t step) {
    int npos, rc;
    p->prepared = 0, p->have_index = 0, p->drawn = 0;
    if ((rc = local_labels(p, labels, batch, &npos))) return rc;
    clear_pos(p, batch);
    if (!p->sampling) {
        p->count = (int)p->num_local;
        return finish_prepare(p, batch);
    }
    /* positives, plus (if room) negatives drawn uniformly without replacement: the backend
     * keeps the count smallest of the classes' keys (ops.h pfc_sample), positives first */
    p->count = p->num_sample > npos ? p->num_sample : npos;
    uint64_t seed = ft_hash64(p->cfg.seed, step, (uint64_t)p->cfg.rank);
    rc = p->o->upload(p->o, p->d_label, p->h_label, (size_t)batch * sizeof(int32_t));
    if (!rc) rc = p->o->upload(p->o, p->d_seed, &seed, sizeof seed);
    if (!rc) p->batch = batch, p->prepared = 1;
    return rc;
}

/* queue the staged step's draw (once): the index and the labels remapped into it */
static int draw(ft_pfc *p) {
    if (p->drawn) return 0;
    int rc = p->o->pfc_sample(p->o, p->num_local, p->d_seed, p->batch, p->d_label, p->count,
                              p->d_index, p->d_label, p->d_scratch);
    if (!rc) p->drawn = 1;
    return rc;
}

int ft_pfc_prepare(ft_pfc *p, const int32_t *labels, int batch, uint64_t step) {
    int rc = ft_pfc_stage(p, labels, batch, step);
    if (!rc) rc = draw(p);
    if (rc) p->prepared = 0;
    return rc;
}

void ft_pfc_replayed(ft_pfc *p) {
    if (p->prepared) p->drawn = 1;
}

int ft_pfc_step_count(const ft_pfc *p) {
    return p->prepared ? p->count : -1;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int ft_pfc_shard_counts(ft_pfc *p, const int32_t *labels, int batch, int32_t *counts) {
    const ft_pfc_config *c = &p->cfg;
    if (batch < 1 || batch > c->max_batch) return FT_EARG;
    for (int i = 0; i < batch; i++) {
        if (labels[i] < 0 || labels[i] >= c->num_classes) return FT_ERANGE;
        p->h_sort[i] = labels[i];
    }
    qsort(p->h_sort, (size_t)batch, sizeof *p->h_sort, cmp_i32);
    /* the shards in order, the sorted labels walked once: each shard's distinct positives */
    int i = 0;
    for (int64_t r = 0; r < c->world_size; r++) {
        int64_t nl, start;
        int ns, npos = 0;
        shard_of(c, r, &nl, &start, &ns);
        for (; i < batch && p->h_sort[i] < start + nl; i++)
            if (i == 0 || p->h_sort[i] != p->h_sort[i - 1]) npos++;
        counts[r] = !p->sampling ? (int32_t)nl : ns > npos ? ns : npos;
    }
    return 0;
}

int ft_pfc_prepare_index(ft_pfc *p, const int32_t *labels, int batch, const int32_t *index,
                         int count) {
    int npos, rc;
    p->prepared = 0, p->have_index = 0, p->drawn = 0;
    if ((rc = local_labels(p, labels, batch, &npos))) return rc;
    clear_pos(p, batch);
    if (!p->sampling) return FT_EARG; /* every class is used at sample_rate 1 */
    if (count < 1 || count > p->smax) return FT_EARG;
    for (int i = 0; i < count; i++)
        if (index[i] < 0 || index[i] >= p->num_local || (i > 0 && index[i] <= index[i - 1]))
            return FT_EARG;
    memcpy(p->h_index, index, (size_t)count * sizeof(int32_t));
    p->count = count;
    return finish_prepare(p, batch);
}

int ft_pfc_index(ft_pfc *p, const int32_t **index, int *count) {
    if (!p->prepared) return FT_EARG;
    if (!p->sampling) {
        *index = NULL;
        *count = (int)p->num_local;
        return 0;
    }
    if (!p->have_index) { /* drawn on the backend: fetch it once */
        int rc = draw(p);
        if (!rc)
            rc = p->o->download(p->o, p->h_index, p->d_index, (size_t)p->count * sizeof(int32_t));
        if (rc) return rc;
        p->have_index = 1;
    }
    *index = p->h_index;
    *count = p->count;
    return 0;
}

int ft_pfc_sampled_rows(const ft_pfc *p, const int32_t **dev_index, int *count) {
    if (!p->prepared) return FT_EARG;
    *dev_index = p->sampling ? p->d_index : NULL;
    *count = p->sampling ? p->count : (int)p->num_local;
    return 0;
}

/* ---- forward + backward ---- */

static int reduce(ft_pfc *p, int is_max, float *dev, int n) {
    if (!p->comm) return 0;
    return p->comm->all_reduce(p->comm, p->o, dev, (size_t)n, FT_F32,
                               is_max ? FT_COMM_MAX : FT_COMM_SUM);
}

/* C = op(A) op(B) of fp32 a, b into fp32 c. With dt F16/BF16 the operands are ah, bh and the
 * product ch (dtype dt): a is cast into ah first when cast_a (else ah already holds it), the
 * same for b, and the product is cast into c. */
enum { CAST_A = 1, CAST_B = 2 };
static int gemm_dt(ft_pfc *p, int ta, int tb, int m, int n, int k, const float *a, void *ah,
                   int lda, const float *b, void *bh, int ldb, void *ch, float *c, int ldc,
                   int cast) {
    ft_ops *o = p->o;
    if (p->dt == FT_F32)
        return o->gemm(o, FT_F32, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
    size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb;
    int rc = cast & CAST_A ? o->cast(o, na, FT_F32, a, p->dt, ah) : 0;
    if (!rc && (cast & CAST_B)) rc = o->cast(o, nb, FT_F32, b, p->dt, bh);
    if (!rc) rc = o->gemm(o, p->dt, ta, tb, m, n, k, 1.0f, ah, lda, bh, ldb, 0.0f, ch, ldc);
    if (!rc) rc = o->cast(o, (size_t)m * ldc, p->dt, ch, FT_F32, c);
    return rc;
}

/* cos = normalize(emb) normalize(W[index])^T; then the softmax-CE and its logit gradient */
static int fwd_logits(ft_pfc *p, const float *emb) {
    ft_ops *o = p->o;
    int B = p->batch, S = p->count, E = p->cfg.emb;
    const float *ws = p->w;
    int rc = 0;
    if (p->sampling) {
        rc = o->gather_rows(o, S, E, p->w, p->d_index, p->wbuf);
        ws = p->wbuf;
    }
    if (!rc) rc = o->l2norm_fwd(o, S, E, ws, p->wn, p->wnorm);
    if (!rc) rc = o->l2norm_fwd(o, B, E, emb, p->en, p->enorm);
    /* cos = en wn^T: in dt, the operands rounded once and the product rounded once */
    if (!rc)
        rc = gemm_dt(p, 0, 1, B, S, E, p->en, p->en_h, E, p->wn, p->wn_h, E, p->cos_h, p->cosv, S,
                     CAST_A | CAST_B);
    if (!rc) rc = o->margin_fwd(o, B, S, &p->mg, p->d_label, p->cosv, p->logits);
    if (!rc) rc = o->row_max(o, B, S, p->logits, p->mx);
    if (!rc) rc = reduce(p, 1, p->mx, B);
    if (!rc) rc = o->row_exp_sum(o, B, S, p->logits, p->mx, p->sum);
    if (!rc) rc = reduce(p, 0, p->sum, B);
    if (!rc)
        rc = o->softmax_xent_bwd(o, B, S, p->logits, p->sum, p->d_label, p->loss_scale / (float)B,
                                 p->pt);
    if (!rc) rc = reduce(p, 0, p->pt, B);
    return rc;
}

int ft_pfc_loss(ft_pfc *p, float *loss) {
    if (!p->prepared) return FT_EARG;
    int B = p->batch;
    int rc = p->o->download(p->o, p->h_pt, p->pt, (size_t)B * sizeof(float));
    if (rc) return rc;
    double acc = 0;
    for (int i = 0; i < B; i++) /* the floor only for finite values: a NaN must show */
        acc += log(p->h_pt[i] > 1e-30f || isnan(p->h_pt[i]) ? (double)p->h_pt[i] : 1e-30);
    *loss = (float)(-acc / B);
    return 0;
}

int ft_pfc_forward_backward(ft_pfc *p, const float *emb, float *demb, float *loss) {
    int rc = ft_pfc_forward_backward_dev(p, emb, demb);
    return rc ? rc : ft_pfc_loss(p, loss);
}

int ft_pfc_forward_backward_dev(ft_pfc *p, const float *emb, float *demb) {
    ft_ops *o = p->o;
    if (!p->prepared) return FT_EARG;
    int B = p->batch, S = p->count, E = p->cfg.emb;
    int rc = draw(p);
    if (!rc) rc = fwd_logits(p, emb);
    /* logits now hold d loss / d logits; turn them into d loss / d cos */
    if (!rc) rc = o->margin_bwd(o, B, S, &p->mg, p->d_label, p->cosv, p->logits, p->logits);
    /* dWn = dcos^T en (into wbuf), den = dcos Wn; in dt, dcos is rounded once (into cos_h,
     * whose values are no longer needed) and en_h / wn_h are the forward's */
    if (!rc)
        rc = gemm_dt(p, 1, 0, S, E, B, p->logits, p->cos_h, S, p->en, p->en_h, E, p->dwn_h, p->wbuf,
                     E, CAST_A);
    if (!rc && demb)
        rc = gemm_dt(p, 0, 0, B, E, S, p->logits, p->cos_h, S, p->wn, p->wn_h, E, p->den_h, p->gen,
                     E, 0);
    if (!rc && demb) rc = o->l2norm_bwd(o, B, E, p->en, p->enorm, p->gen, demb);
    if (!rc) rc = o->l2norm_bwd(o, S, E, p->wn, p->wnorm, p->wbuf, p->wbuf);
    if (!rc && p->sampling) rc = o->scatter_add_rows(o, S, E, p->wbuf, p->d_index, p->g);
    if (!rc && !p->sampling) rc = o->axpy(o, (size_t)S * E, 1.0f, p->wbuf, p->g);
    return rc;
}

int ft_pfc_zero_grad(ft_pfc *p) {
    return p->o->zero(p->o, p->g, (size_t)p->num_local * p->cfg.emb * sizeof(float));
}

/* ---- tensors ---- */

int ft_pfc_param(ft_pfc *p, ft_param *out) {
    *out = (ft_param){"weight", p->w,
                      p->g,     (size_t)p->num_local * p->cfg.emb,
                      2,        {p->num_local, p->cfg.emb, 0, 0},
                      1};
    return 0;
}

int ft_pfc_tensor_count(const ft_pfc *p) {
    return 1;
}

int ft_pfc_tensor_info(const ft_pfc *p, int i, ft_tensor_info *info) {
    if (i != 0) return FT_EARG;
    *info = (ft_tensor_info){
        "weight", FT_F32, 2, {p->num_local, p->cfg.emb, 0, 0}, (size_t)p->num_local * p->cfg.emb};
    return 0;
}

int ft_pfc_tensor_get(ft_pfc *p, int i, void *host) {
    if (i != 0) return FT_EARG;
    return p->o->download(p->o, host, p->w, (size_t)p->num_local * p->cfg.emb * sizeof(float));
}

int ft_pfc_tensor_set(ft_pfc *p, int i, const void *host) {
    if (i != 0) return FT_EARG;
    return p->o->upload(p->o, p->w, host, (size_t)p->num_local * p->cfg.emb * sizeof(float));
}

int ft_pfc_grad_get(ft_pfc *p, float *host) {
    return p->o->download(p->o, host, p->g, (size_t)p->num_local * p->cfg.emb * sizeof(float));
}
