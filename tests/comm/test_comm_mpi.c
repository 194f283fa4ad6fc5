/* test_comm_mpi.c: the MPI collectives (train/comm/mpi.c) against the in-process thread
 * implementation (threads.c), run under mpirun -np W (W = 2, 3).
 *
 * Every rank knows every rank's inputs (a pure function of (seed, rank, case)), so it runs the
 * same collective twice: over MPI with its own input, and over a threads group of W threads in
 * this process that plays all W ranks; the result for its rank must match:
 *   - all_reduce MAX, all_gather, broadcast: bit for bit;
 *   - all_reduce SUM, reduce_scatter, all_reduce_async + wait: bit for bit when the values are
 *     small integers (exact in any order), and within 4 ulp-scale relative error (|a - b| <=
 *     1e-6 * sum |x_r|) for random values (MPI may add in another order than rank order);
 *   - after every collective, every rank holds the same bytes (an all_gather of a hash of the
 *     result is compared): the data-parallel trainer relies on identical weights on all ranks.
 * Counts: 1, 1000 and 300001 elements (a multi-segment message); fp32 and fp64. Each case runs
 * twice: on the CPU backend (buffers handed to MPI directly) and on a staged copy of it (the
 * same table under another name, so mpi.c stages through o->download / o->upload as for a
 * device backend). Bad arguments (dtype I32, broadcast root W) return FT_EARG on every rank.
 *
 *   test_comm_mpi            the checks above; prints "ok W ranks, N checks"
 *   test_comm_mpi --hang T   rank 1 never reaches the barrier (sleeps 60 s); the other ranks'
 *                            watchdog (timeout T s) must end them with one line naming the rank
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"
#include "ft_common.h"

static int nchecks, nfail;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        nchecks++;                                                                                 \
        if (!(cond)) {                                                                             \
            nfail++;                                                                               \
            fprintf(stderr, "rank %d: FAIL: ", g_rank);                                            \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)

static int g_rank, g_world;

typedef enum kind { K_ALLRED, K_GATHER, K_BCAST, K_RSCAT, K_ASYNC } kind;

typedef struct tcase {
    kind k;
    ft_comm_op op;
    ft_dtype dt;
    size_t count; /* elements (all_gather: elements per block) */
    int ints;     /* small integer values */
    int root;
} tcase;

/* input of rank r for a case: count * (reduce_scatter ? world : 1) elements */
static void fill(const tcase *t, int r, void *buf, size_t n) {
    ft_rng g;
    ft_rng_seed(&g, 77, (uint64_t)r * 1000 + (uint64_t)t->k * 10 + (uint64_t)t->dt);
    for (size_t i = 0; i < n; i++) {
        double v = t->ints ? (double)((int)ft_rng_below(&g, 2001) - 1000)
                           : (ft_rng_uniform(&g) * 2 - 1) * exp2((double)ft_rng_below(&g, 9) - 4);
        if (t->dt == FT_F64)
            ((double *)buf)[i] = v;
        else
            ((float *)buf)[i] = (float)v;
    }
}

static size_t in_elems(const tcase *t) {
    return t->k == K_RSCAT ? t->count * (size_t)g_world : t->count;
}
static size_t out_elems(const tcase *t) {
    return t->k == K_GATHER ? t->count * (size_t)g_world : t->count;
}

static int run_one(ft_comm *c, ft_ops *o, const tcase *t, void *in, void *out) {
    size_t es = t->dt == FT_F64 ? 8 : 4;
    switch (t->k) {
    case K_ALLRED:
        memcpy(out, in, t->count * es);
        return c->all_reduce(c, o, out, t->count, t->dt, t->op);
    case K_ASYNC: { /* two halves started, then one wait */
        memcpy(out, in, t->count * es);
        size_t h = t->count / 2;
        int rc = c->all_reduce_async(c, o, out, h, t->dt, t->op);
        if (!rc) rc = c->all_reduce_async(c, o, (char *)out + h * es, t->count - h, t->dt, t->op);
        int rw = c->wait(c);
        return rc ? rc : rw;
    }
    case K_GATHER:
        return c->all_gather(c, o, in, out, t->count * es);
    case K_BCAST:
        memcpy(out, in, t->count * es);
        return c->broadcast(c, o, out, t->count * es, t->root);
    case K_RSCAT:
        return c->reduce_scatter(c, o, in, out, t->count, t->dt);
    }
    return FT_EARG;
}

/* the threads group plays all ranks */
typedef struct thr_arg {
    ft_comm_group *g;
    ft_ops *o;
    const tcase *t;
    int r, rc;
    void *in, *out;
} thr_arg;

static void *thr_main(void *p) {
    thr_arg *a = p;
    a->rc = run_one(ft_comm_threads_rank(a->g, a->r), a->o, a->t, a->in, a->out);
    return NULL;
}

/* the threads result for this rank into ref */
static int reference(ft_ops *o, const tcase *t, void *ref) {
    size_t es = t->dt == FT_F64 ? 8 : 4;
    ft_comm_group *g;
    if (ft_comm_threads_create(g_world, &g)) return 1;
    thr_arg *a = calloc((size_t)g_world, sizeof *a);
    pthread_t *th = calloc((size_t)g_world, sizeof *th);
    int bad = !a || !th;
    for (int r = 0; r < g_world && !bad; r++) {
        a[r] = (thr_arg){g, o, t, r, 0, malloc(in_elems(t) * es), malloc(out_elems(t) * es)};
        if (!a[r].in || !a[r].out) bad = 1;
        if (!bad) fill(t, r, a[r].in, in_elems(t));
    }
    for (int r = 0; r < g_world && !bad; r++) pthread_create(&th[r], NULL, thr_main, &a[r]);
    for (int r = 0; r < g_world && !bad; r++) pthread_join(th[r], NULL);
    for (int r = 0; r < g_world && !bad; r++) bad |= a[r].rc != 0;
    if (!bad) memcpy(ref, a[g_rank].out, out_elems(t) * es);
    for (int r = 0; a && r < g_world; r++) free(a[r].in), free(a[r].out);
    free(a), free(th);
    ft_comm_threads_free(g);
    return bad;
}

static uint64_t hash_bytes(const void *p, size_t n) {
    uint64_t h = 0x243F6A8885A308D3ull;
    for (size_t i = 0; i < n; i++) h = (h ^ ((const uint8_t *)p)[i]) * 0x100000001B3ull;
    return h;
}

static const char *kname(kind k) {
    static const char *n[] = {"all_reduce", "all_gather", "broadcast", "reduce_scatter",
                              "all_reduce_async"};
    return n[k];
}

static void check_case(ft_comm *c, ft_ops *o, const tcase *t) {
    size_t es = t->dt == FT_F64 ? 8 : 4, no = out_elems(t);
    void *in = malloc(in_elems(t) * es), *out = malloc(no * es), *ref = malloc(no * es);
    uint64_t *hashes = malloc((size_t)g_world * sizeof(uint64_t));
    if (!in || !out || !ref || !hashes) abort();
    fill(t, g_rank, in, in_elems(t));
    char what[160];
    snprintf(what, sizeof what, "%s %s %s count %zu%s on %s", kname(t->k),
             t->op == FT_COMM_MAX ? "max" : "sum", t->dt == FT_F64 ? "f64" : "f32", t->count,
             t->ints ? " (integers)" : "", o->name);
    int rc = run_one(c, o, t, in, out);
    CHECK(rc == 0, "%s: returned %d", what, rc);
    CHECK(reference(o, t, ref) == 0, "%s: threads reference failed", what);
    int exact = t->ints || t->k == K_GATHER || t->k == K_BCAST || t->op == FT_COMM_MAX;
    if (!rc) {
        if (exact) {
            CHECK(memcmp(out, ref, no * es) == 0, "%s: differs from the threads result", what);
        } else {
            /* bound: 1e-6 relative to the sum of magnitudes (values within 2^4 * W) */
            double worst = 0;
            for (size_t i = 0; i < no; i++) {
                double a = t->dt == FT_F64 ? ((double *)out)[i] : ((float *)out)[i];
                double b = t->dt == FT_F64 ? ((double *)ref)[i] : ((float *)ref)[i];
                double d = fabs(a - b) / (16.0 * g_world);
                if (d > worst || d != d) worst = d != d ? INFINITY : d;
            }
            CHECK(worst <= (t->dt == FT_F64 ? 1e-14 : 1e-6), "%s: off by %.3g (relative)", what,
                  worst);
        }
        /* every rank holds the same bytes (the reduced results; all_gather and broadcast too) */
        if (t->k != K_RSCAT) {
            uint64_t h = hash_bytes(out, no * es);
            CHECK(c->all_gather(c, o, &h, hashes, sizeof h) == 0, "%s: hash all_gather", what);
            for (int r = 1; r < g_world; r++)
                CHECK(hashes[r] == hashes[0], "%s: rank %d's result differs from rank 0's", what,
                      r);
        }
    }
    free(in), free(out), free(ref), free(hashes);
}

/* the CPU table under another name: mpi.c stages its buffers as for a device backend */
static ft_ops *staged_copy(const ft_ops *cpu) {
    ft_ops *s = malloc(sizeof *s);
    if (!s) abort();
    *s = *cpu;
    s->name = "cpu-staged";
    return s;
}

static void check_all(ft_comm *c, ft_ops *o) {
    static const size_t counts[] = {1, 1000, 300001};
    for (int k = 0; k <= K_ASYNC; k++)
        for (int dt = 0; dt < 2; dt++)
            for (size_t ci = 0; ci < 3; ci++)
                for (int var = 0; var < 2; var++) {
                    tcase t = {(kind)k, FT_COMM_SUM, dt ? FT_F64 : FT_F32, counts[ci], 0, 0};
                    if ((k == K_ALLRED || k == K_ASYNC) && var) t.op = FT_COMM_MAX;
                    if ((k == K_RSCAT || k == K_ALLRED) && var) t.ints = 1;
                    if (k == K_BCAST) t.root = var ? g_world - 1 : 0;
                    if (k == K_GATHER && var) continue;
                    if (k == K_RSCAT && counts[ci] > 1000) t.count = 50001;
                    check_case(c, o, &t);
                }
    float x = 1;
    int32_t bogus[2] = {0};
    CHECK(c->all_reduce(c, o, bogus, 2, FT_I32, FT_COMM_SUM) == FT_EARG, "I32 all_reduce");
    CHECK(c->broadcast(c, o, &x, sizeof x, g_world) == FT_EARG, "broadcast root W");
    CHECK(c->barrier(c) == 0, "barrier");
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "test_comm_mpi",
                            "usage: mpirun -np W test_comm_mpi [--hang T]\n"
                            "The MPI collectives against the thread implementation.\n"))
        return 0;
    ft_comm_mpi_options mo;
    ft_comm_mpi_options_init(&mo);
    mo.prog = "test_comm_mpi";
    int hang = argc > 2 && !strcmp(argv[1], "--hang");
    if (hang) mo.timeout_s = atof(argv[2]);
    ft_comm *c = NULL;
    char err[512];
    int rc = ft_comm_mpi(&c, &mo, err, sizeof err);
    if (rc) {
        fprintf(stderr, "test_comm_mpi: %s\n", err);
        return 1;
    }
    g_rank = c->rank, g_world = c->world;
    if (hang) {
        if (g_rank == 1) sleep(60); /* a rank that never arrives */
        c->barrier(c);
        fprintf(stderr, "rank %d: FAIL: the barrier returned although rank 1 never came\n", g_rank);
        return 0; /* the watchdog must end this process before: exit 0 fails the test */
    }
    ft_ops_options opts = {.threads = 1, .device = -1};
    ft_ops *o = NULL;
    if (ft_ops_create("cpu", &opts, &o, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    ft_ops *s = staged_copy(o);
    check_all(c, o);
    check_all(c, s);
    free(s);
    ft_ops_free(o);
    ft_comm_free(c);
    /* mpirun exits non-zero when any rank does */
    if (!nfail) printf("rank %d: ok %d ranks, %d checks\n", g_rank, g_world, nchecks);
    return nfail ? 1 : 0;
}
