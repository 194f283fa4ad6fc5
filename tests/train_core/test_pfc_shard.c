/* test_pfc_shard.c: Partial FC sharded over the class dimension (world sizes 2 and 3, simulated
 * in one process) must compute what the single-rank head computes.
 *
 * Setup per case: a world-1 head (the reference) and W rank heads built with the shard formulas
 * of pfc.h (num_local = C/W + (rank < C%W), class_start = C/W*rank + min(rank, C%W)). Each rank
 * gets its shard of the reference's centres (the per-class initialisation already makes them
 * equal; that is checked bit-exactly first, then the rows are copied anyway), its own CPU
 * backend (one thread, like one device per rank) and its own SGD (momentum 0.9, wd 5e-4, lr
 * 0.1) on its shard. Every rank receives the same full batch of embeddings and labels, as after
 * the all-gather of a distributed step.
 *
 * The ranks run in lock-step threads with the in-process collectives of comm/threads.c: a
 * rank downloads its buffer to its host slot, waits on a barrier, reduces all slots in rank
 * order (the same float operations on every rank, so all ranks get bit-identical results),
 * waits again, and uploads the result.
 *
 * Sampling (sample_rate < 1): each rank draws its own index with ft_pfc_prepare, as a
 * distributed run does (positives of its shard + its own negatives). The reference replays the
 * union of the ranks' indexes (shifted by class_start; sorted because shards are contiguous)
 * with ft_pfc_prepare_index. The union can hold more rows than the world-1 head's own
 * int(rate*C) when one shard holds many positives, and prepare_index accepts at most
 * max(num_sample, min(max_batch, num_local)) rows, so the reference is created with
 * max_batch = C (it only sizes buffers; the batch stays B). The update is either dense (PyTorch
 * SGD on the whole weight) or restricted to the sampled rows (ft_sgd_set_rows with
 * ft_pfc_sampled_rows), on the reference and on every rank alike.
 *
 * Checked over 3 steps, ArcFace and CosFace (s 64, upstream margin gradient), sample rate 1 and
 * 0.5, interclass filtering threshold 0.3 (the number of filtered entries is counted and must be
 * > 0), W = 2 and 3 with C = 53 (uneven shards):
 *   - every rank's loss is bit-identical to the other ranks' and equal to the reference's
 *     (relative error <= 1e-6);
 *   - the embedding gradient summed over ranks (the all-gather's backward) equals the
 *     reference's, and each rank's centre gradient, updated centres and momentum equal the
 *     reference's rows [class_start, class_start + num_local): max |a - b| / max |reference| over
 *     the whole tensor <= 2e-4;
 *   - on each rank, rows outside its sampled index have exactly zero gradient and, with the
 *     rows-only update, weight and momentum bit-identical to before the step;
 *   - every rank called the hooks 3 times per step (max, sum, p_target).
 * Differences come only from rounding: the sgemm of a [B, num_local] shard rounds cos
 * differently from the [B, C] one (~6e-8), s = 64 turns that into absolute logit errors of
 * ~4e-6, i.e. relative errors of that size in every softmax probability, and the exp-sums are
 * split across ranks. Measured: loss <= 3e-7 relative, gradients/weights/momentum <= 4e-5
 * (the same run at s = 8 gives <= 5e-7, confirming the amplification by s). A missing reduction
 * or a wrong shard offset gives errors of order 1: a negative control runs W = 2 without hooks
 * and must fail the loss check. The inputs are fixed, so a cos within rounding of the threshold
 * (which would flip one filtered entry) either occurs in every run or in none.
 *
 * Usage: test_pfc_shard   (exit 0 pass, 1 fail)
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "optim.h"
#include "pfc.h"
#include "tc_util.h"

enum { MAXW = 3, C = 53, E = 16, B = 12, STEPS = 3 };

#define TOL_LOSS  1e-6
#define TOL_DEMB  2e-4
#define TOL_ROWS  2e-4
#define LR        0.1f
#define THRESHOLD 0.3f

static int failures;

/* ---- one head (reference or rank) and its optimizer ---- */

typedef struct head {
    ft_ops *o;
    ft_pfc *p;
    ft_sgd *s;
    int sgd_id;
    int64_t nl, start;
    float *d_emb, *d_demb;                /* device [B, E] */
    float *h_demb, *h_grad, *h_w, *h_mom; /* host results of the last step */
    float *h_pw, *h_pm;                   /* weight and momentum before it */
    float loss;
    int rc;
} head;

static int head_create(head *h, const ft_pfc_config *pc) {
    memset(h, 0, sizeof *h);
    ft_sgd_config sc = {0.9f, 5e-4f};
    void *a, *b;
    int rc = (h->o = tc_cpu(1)) ? 0 : -1;
    if (!rc) rc = ft_pfc_create(h->o, pc, &h->p);
    if (!rc) rc = ft_sgd_create(h->o, &sc, &h->s);
    if (rc) return rc;
    ft_param pp;
    ft_pfc_param(h->p, &pp);
    if ((h->sgd_id = ft_sgd_add_param(h->s, &pp, FT_SGD_GROUP_HEAD)) < 0) return h->sgd_id;
    h->nl = ft_pfc_num_local(h->p), h->start = ft_pfc_class_start(h->p);
    if ((rc = h->o->alloc(h->o, (size_t)B * E * sizeof(float), &a))) return rc;
    h->d_emb = a;
    if ((rc = h->o->alloc(h->o, (size_t)B * E * sizeof(float), &b))) return rc;
    h->d_demb = b;
    size_t nw = (size_t)h->nl * E;
    h->h_demb = malloc((size_t)B * E * sizeof(float));
    h->h_grad = malloc(nw * sizeof(float));
    h->h_w = malloc(nw * sizeof(float));
    h->h_mom = calloc(nw, sizeof(float));
    h->h_pw = malloc(nw * sizeof(float));
    h->h_pm = malloc(nw * sizeof(float));
    return h->h_demb && h->h_grad && h->h_w && h->h_mom && h->h_pw && h->h_pm ? 0 : -1;
}

static void head_free(head *h) {
    if (h->o) {
        h->o->free(h->o, h->d_emb);
        h->o->free(h->o, h->d_demb);
    }
    ft_sgd_free(h->s);
    ft_pfc_free(h->p);
    ft_ops_free(h->o);
    free(h->h_demb), free(h->h_grad), free(h->h_w), free(h->h_mom), free(h->h_pw), free(h->h_pm);
}

/* forward + backward + SGD step; results to the host buffers. Runs in the rank's thread. */
static void *head_step(void *arg) {
    head *h = arg;
    int rc = ft_pfc_forward_backward(h->p, h->d_emb, h->d_demb, &h->loss);
    if (!rc) rc = h->o->download(h->o, h->h_demb, h->d_demb, (size_t)B * E * sizeof(float));
    if (!rc) rc = ft_pfc_grad_get(h->p, h->h_grad);
    if (!rc) rc = ft_sgd_step(h->s, LR);
    if (!rc) rc = ft_sgd_zero_grad(h->s);
    if (!rc) rc = ft_pfc_tensor_get(h->p, 0, h->h_w);
    if (!rc) rc = ft_sgd_state_get(h->s, 0, h->h_mom);
    h->rc = rc;
    return NULL;
}

/* ---- a case ---- */

typedef struct kase {
    const char *name;
    int cosface, world, rows_only, no_comm;
    float rate;
} kase;

typedef struct errs {
    double loss, demb, grad, w, mom;
    long filtered;
} errs;

static void cfg_of(const kase *k, int rank, int world_size, ft_pfc_config *pc) {
    ft_pfc_config_init(pc, C);
    pc->rank = rank, pc->world_size = world_size, pc->emb = E, pc->max_batch = B;
    pc->sample_rate = k->rate, pc->interclass_filtering_threshold = THRESHOLD, pc->seed = 77;
    if (k->cosface) pc->m2 = 0.0f, pc->m3 = 0.4f;
}

/* max |a - b| over n floats, divided by scale (the reference's max magnitude) */
static double nerr(const float *a, const float *b, size_t n, double scale) {
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d)) d = e != e ? INFINITY : e;
    }
    return d / (scale > 0 ? scale : 1e-30);
}

static double maxabs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs((double)a[i]) > m ? fabs((double)a[i]) : m;
    return m;
}

/* the batch: labels uniform over the classes; even rows near their normalized centre (so the
 * softmax is not saturated), odd rows uniform in [-1, 1]^E */
static void make_batch(const float *w_ref, int step, int32_t *lab, float *emb) {
    ft_rng g;
    ft_rng_seed(&g, 11, (uint64_t)step);
    for (int i = 0; i < B; i++) {
        lab[i] = (int32_t)ft_rng_below(&g, C);
        const float *c = w_ref + (size_t)lab[i] * E;
        double n = 0;
        for (int j = 0; j < E; j++) n += (double)c[j] * c[j];
        n = sqrt(n);
        for (int j = 0; j < E; j++) {
            double u = 2 * ft_rng_uniform(&g) - 1;
            emb[i * E + j] = (float)(i % 2 ? u : c[j] / n + 0.3 * u);
        }
    }
}

/* non-target entries the filter removes: cos(emb_i, centre_c) > threshold, c != label_i,
 * restricted to the classes used this step (used[c]) */
static long count_filtered(const float *w, const float *emb, const int32_t *lab,
                           const uint8_t *used) {
    long n = 0;
    for (int i = 0; i < B; i++)
        for (int c = 0; c < C; c++) {
            if (c == lab[i] || !used[c]) continue;
            double d = 0, a = 0, b = 0;
            for (int j = 0; j < E; j++) {
                double x = emb[i * E + j], y = w[(size_t)c * E + j];
                d += x * y, a += x * x, b += y * y;
            }
            n += d / sqrt(a * b) > THRESHOLD;
        }
    return n;
}

static int set_rows(head *h, int rows_only) {
    if (!rows_only) return 0;
    const int32_t *rows;
    int n;
    int rc = ft_pfc_sampled_rows(h->p, &rows, &n);
    return rc ? rc : ft_sgd_set_rows(h->s, h->sgd_id, E, rows, n);
}

static int run_case(const kase *k, errs *er) {
    int W = k->world, rc = 0;
    head ref, rk[MAXW];
    ft_comm_group *grp = NULL;
    memset(er, 0, sizeof *er);
    memset(rk, 0, sizeof rk);
    memset(&ref, 0, sizeof ref);
    if (ft_comm_threads_create(W, &grp)) return -1;
    ft_pfc_config pc;
    cfg_of(k, 0, 1, &pc);
    pc.max_batch = C; /* lets prepare_index take the union of the ranks' indexes */
    if ((rc = head_create(&ref, &pc))) goto out;
    if ((rc = ft_pfc_tensor_get(ref.p, 0, ref.h_w))) goto out;
    for (int r = 0; r < W && !rc; r++) {
        cfg_of(k, r, W, &pc);
        if ((rc = head_create(&rk[r], &pc))) break;
        int64_t nl = C / W + (r < C % W), start = C / W * r + (r < C % W ? r : C % W);
        if (rk[r].nl != nl || rk[r].start != start) {
            printf("  rank %d: shard [%lld, +%lld), formula [%lld, +%lld)\n", r,
                   (long long)rk[r].start, (long long)rk[r].nl, (long long)start, (long long)nl);
            rc = -1;
            break;
        }
        /* the initial centres do not depend on the world size; then copy the shard anyway */
        const float *mine = ref.h_w + (size_t)start * E;
        if ((rc = ft_pfc_tensor_get(rk[r].p, 0, rk[r].h_w))) break;
        if (memcmp(rk[r].h_w, mine, (size_t)nl * E * sizeof(float))) {
            printf("  rank %d: initial centres differ from the world-1 rows\n", r);
            failures++;
        }
        if ((rc = ft_pfc_tensor_set(rk[r].p, 0, mine))) break;
        ft_pfc_set_comm(rk[r].p, k->no_comm ? NULL : ft_comm_threads_rank(grp, r));
    }
    if (rc) goto out;

    for (int step = 0; step < STEPS && !rc; step++) {
        int32_t lab[B], uni[C];
        float emb[B * E];
        uint8_t used[C];
        make_batch(ref.h_w, step, lab, emb);
        /* ranks draw their own sample; the reference replays the union */
        int nu = 0;
        for (int r = 0; r < W && !rc; r++) {
            rc = ft_pfc_prepare(rk[r].p, lab, B, (uint64_t)step + 1);
            const int32_t *idx;
            int cnt;
            if (!rc && k->rate < 1 && !(rc = ft_pfc_index(rk[r].p, &idx, &cnt)))
                for (int i = 0; i < cnt; i++) uni[nu++] = idx[i] + (int32_t)rk[r].start;
            if (!rc) rc = set_rows(&rk[r], k->rows_only);
            if (!rc) rc = rk[r].o->upload(rk[r].o, rk[r].d_emb, emb, sizeof emb);
        }
        if (rc) break;
        if (k->rate < 1)
            rc = ft_pfc_prepare_index(ref.p, lab, B, uni, nu);
        else
            rc = ft_pfc_prepare(ref.p, lab, B, (uint64_t)step + 1);
        if (!rc) rc = set_rows(&ref, k->rows_only);
        if (!rc) rc = ref.o->upload(ref.o, ref.d_emb, emb, sizeof emb);
        if (rc) break;
        memset(used, k->rate < 1 ? 0 : 1, sizeof used);
        for (int i = 0; i < nu; i++) used[uni[i]] = 1;
        er->filtered += count_filtered(ref.h_w, emb, lab, used); /* centres before the step */

        for (int r = 0; r < W; r++) {
            memcpy(rk[r].h_pw, rk[r].h_w, (size_t)rk[r].nl * E * sizeof(float));
            memcpy(rk[r].h_pm, rk[r].h_mom, (size_t)rk[r].nl * E * sizeof(float));
        }
        head_step(&ref);
        if ((rc = ref.rc)) break;
        pthread_t th[MAXW];
        int started = 0;
        for (; started < W; started++)
            if (pthread_create(&th[started], NULL, head_step, &rk[started])) break;
        if (started < W) { /* cannot happen in practice; the started ones would hang */
            printf("  pthread_create failed\n");
            abort();
        }
        for (int r = 0; r < W; r++) pthread_join(th[r], NULL);
        for (int r = 0; r < W && !rc; r++) rc = rk[r].rc;
        if (rc) break;

        /* loss: bit-identical across ranks, equal to the reference */
        for (int r = 1; r < W && !k->no_comm; r++)
            if (memcmp(&rk[r].loss, &rk[0].loss, sizeof(float))) {
                printf("  step %d: rank %d loss %.9g != rank 0 loss %.9g\n", step, r,
                       (double)rk[r].loss, (double)rk[0].loss);
                failures++;
            }
        double el = fabs((double)rk[0].loss - ref.loss) / fabs((double)ref.loss);
        if (!(el <= er->loss)) er->loss = el != el ? INFINITY : el;
        /* embedding gradient: sum over ranks */
        float dsum[B * E];
        for (int i = 0; i < B * E; i++) {
            double a = 0;
            for (int r = 0; r < W; r++) a += rk[r].h_demb[i];
            dsum[i] = (float)a;
        }
        double e = nerr(dsum, ref.h_demb, B * E, maxabs(ref.h_demb, B * E));
        er->demb = e > er->demb ? e : er->demb;
        /* centre gradients, updated centres, momentum: the rank's rows of the reference */
        size_t nall = (size_t)C * E;
        double sg = maxabs(ref.h_grad, nall), sw = maxabs(ref.h_w, nall),
               sm = maxabs(ref.h_mom, nall);
        for (int r = 0; r < W; r++) {
            size_t off = (size_t)rk[r].start * E, n = (size_t)rk[r].nl * E;
            double eg = nerr(rk[r].h_grad, ref.h_grad + off, n, sg);
            double ew = nerr(rk[r].h_w, ref.h_w + off, n, sw);
            double em = nerr(rk[r].h_mom, ref.h_mom + off, n, sm);
            er->grad = eg > er->grad ? eg : er->grad;
            er->w = ew > er->w ? ew : er->w;
            er->mom = em > er->mom ? em : er->mom;
            /* unsampled rows: exactly no gradient; with the rows-only update, weight and
             * momentum bit-identical to before the step */
            int bad = 0;
            for (int64_t l = 0; l < rk[r].nl; l++) {
                if (used[rk[r].start + l]) continue;
                size_t o = (size_t)l * E;
                for (int j = 0; j < E; j++) bad += rk[r].h_grad[o + j] != 0.0f;
                if (k->rows_only)
                    bad += memcmp(rk[r].h_w + o, rk[r].h_pw + o, E * sizeof(float)) != 0 ||
                           memcmp(rk[r].h_mom + o, rk[r].h_pm + o, E * sizeof(float)) != 0;
            }
            if (bad) {
                printf("  step %d rank %d: %d violations on unsampled rows\n", step, r, bad);
                failures++;
            }
            long calls = ft_comm_threads_calls(grp, r);
            if (!k->no_comm && calls != 3 * (step + 1)) {
                printf("  rank %d: %ld collectives after step %d, expected %d\n", r, calls, step,
                       3 * (step + 1));
                failures++;
            }
        }
        printf("  step %d loss %.6f (sampled classes %d of %d)\n", step, (double)ref.loss,
               k->rate < 1 ? nu : C, C);
    }
out:
    if (rc) printf("  error %d\n", rc);
    head_free(&ref);
    for (int r = 0; r < W; r++) head_free(&rk[r]);
    ft_comm_threads_free(grp);
    return rc;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "test_pfc_shard",
                            "usage: test_pfc_shard\n"
                            "Partial FC sharded over classes against the single-rank head.\n"))
        return 0;
    static const kase cases[] = {
        {"arcface r=1 W=2", 0, 2, 0, 0, 1.0f},
        {"arcface r=1 W=3", 0, 3, 0, 0, 1.0f},
        {"arcface r=0.5 W=2 dense update", 0, 2, 0, 0, 0.5f},
        {"arcface r=0.5 W=3 dense update", 0, 3, 0, 0, 0.5f},
        {"arcface r=0.5 W=2 sampled-rows update", 0, 2, 1, 0, 0.5f},
        {"arcface r=0.5 W=3 sampled-rows update", 0, 3, 1, 0, 0.5f},
        {"cosface r=1 W=2", 1, 2, 0, 0, 1.0f},
        {"cosface r=1 W=3", 1, 3, 0, 0, 1.0f},
        {"cosface r=0.5 W=2 dense update", 1, 2, 0, 0, 0.5f},
        {"cosface r=0.5 W=3 dense update", 1, 3, 0, 0, 0.5f},
        {"cosface r=0.5 W=2 sampled-rows update", 1, 2, 1, 0, 0.5f},
        {"cosface r=0.5 W=3 sampled-rows update", 1, 3, 1, 0, 0.5f},
    };
    errs worst = {0};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const kase *k = &cases[i];
        errs er;
        printf("%s (C %d, E %d, B %d, threshold %.2f)\n", k->name, C, E, B, (double)THRESHOLD);
        if (run_case(k, &er)) {
            failures++;
            continue;
        }
        int ok = er.loss <= TOL_LOSS && er.demb <= TOL_DEMB && er.grad <= TOL_ROWS &&
                 er.w <= TOL_ROWS && er.mom <= TOL_ROWS && er.filtered > 0;
        printf("  err loss %.2e demb %.2e grad %.2e weight %.2e momentum %.2e; filtered "
               "entries %ld  %s\n",
               er.loss, er.demb, er.grad, er.w, er.mom, er.filtered, ok ? "ok" : "FAIL");
        failures += !ok;
        worst.loss = fmax(worst.loss, er.loss), worst.demb = fmax(worst.demb, er.demb);
        worst.grad = fmax(worst.grad, er.grad), worst.w = fmax(worst.w, er.w);
        worst.mom = fmax(worst.mom, er.mom);
    }
    /* negative control: without the hooks each rank normalizes over its own classes only */
    kase ctl = {"control: arcface r=1 W=2 without hooks", 0, 2, 0, 1, 1.0f};
    errs er;
    printf("%s\n", ctl.name);
    if (run_case(&ctl, &er) || !(er.loss > 100 * TOL_LOSS)) {
        printf("  control not detected (loss err %.2e)  FAIL\n", er.loss);
        failures++;
    } else {
        printf("  loss err %.2e, demb err %.2e: detected  ok\n", er.loss, er.demb);
    }
    printf("worst: loss %.2e (tol %.0e) demb %.2e (tol %.0e) grad %.2e weight %.2e momentum "
           "%.2e (tol %.0e)\n",
           worst.loss, TOL_LOSS, worst.demb, TOL_DEMB, worst.grad, worst.w, worst.mom, TOL_ROWS);
    if (failures)
        printf("FAIL: %d\n", failures);
    else
        printf("PASS\n");
    return failures != 0;
}
