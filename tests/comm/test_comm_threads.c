/* test_comm_threads.c: the in-process threads transport (train/comm/threads.c), world 2, 3 and
 * 5, against sums written out here in rank order (the transport promises exactly that order,
 * so the results are compared bit for bit): all_reduce sum/max fp32/fp64, the async variant
 * + wait, all_gather, broadcast from every root, reduce_scatter; and a bad dtype returns
 * FT_EARG on every rank. Also the single-rank transport (identity, reduce_scatter = copy).
 * Labelled threaded: TSan runs it. Prints "ok N checks".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "ft_common.h"

#define N 257

static int nchecks, nfail;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void check(int ok, const char *what, int rank) {
    pthread_mutex_lock(&mu);
    nchecks++;
    if (!ok) nfail++, fprintf(stderr, "FAIL: rank %d: %s\n", rank, what);
    pthread_mutex_unlock(&mu);
}

static float val(int rank, int i) {
    ft_rng g;
    ft_rng_seed(&g, 5, (uint64_t)rank * 100000 + (uint64_t)i);
    return (float)(ft_rng_uniform(&g) * 2 - 1);
}

typedef struct arg {
    ft_comm_group *g;
    ft_ops *o;
    int rank, world;
} arg;

static void *rank_main(void *p) {
    arg *a = p;
    ft_comm *c = ft_comm_threads_rank(a->g, a->rank);
    int W = a->world, R = a->rank;
    float x[N], want[N], *big = malloc(sizeof(float) * N * (size_t)W), got[N];
    double xd[N], wd[N];
    if (!big) abort();
    /* all_reduce sum (fp32, fp64) and max, in rank order */
    for (int i = 0; i < N; i++) {
        x[i] = val(R, i), xd[i] = (double)val(R, i) / 3.0;
        float s = val(0, i), m = val(0, i);
        double sd = (double)val(0, i) / 3.0;
        for (int r = 1; r < W; r++) {
            s += val(r, i), sd += (double)val(r, i) / 3.0;
            m = val(r, i) > m ? val(r, i) : m;
        }
        want[i] = s, wd[i] = sd, big[i] = m;
    }
    memcpy(got, x, sizeof x);
    check(c->all_reduce(c, a->o, got, N, FT_F32, FT_COMM_SUM) == 0 &&
              !memcmp(got, want, sizeof got),
          "all_reduce sum f32", R);
    check(c->all_reduce(c, a->o, xd, N, FT_F64, FT_COMM_SUM) == 0 && !memcmp(xd, wd, sizeof xd),
          "all_reduce sum f64", R);
    memcpy(got, x, sizeof x);
    check(c->all_reduce_async(c, a->o, got, N, FT_F32, FT_COMM_MAX) == 0 && c->wait(c) == 0 &&
              !memcmp(got, big, sizeof got),
          "all_reduce_async max f32 + wait", R);
    /* all_gather */
    check(c->all_gather(c, a->o, x, big, sizeof x) == 0, "all_gather", R);
    int ok = 1;
    for (int r = 0; r < W; r++)
        for (int i = 0; i < N; i++) ok &= big[(size_t)r * N + i] == val(r, i);
    check(ok, "all_gather blocks", R);
    /* broadcast from every root */
    for (int root = 0; root < W; root++) {
        memcpy(got, x, sizeof x);
        check(c->broadcast(c, a->o, got, sizeof got, root) == 0, "broadcast", R);
        ok = 1;
        for (int i = 0; i < N; i++) ok &= got[i] == val(root, i);
        check(ok, "broadcast value", R);
    }
    /* reduce_scatter: block R of every rank's [W * N] send, summed in rank order */
    for (int b = 0; b < W; b++)
        for (int i = 0; i < N; i++) big[(size_t)b * N + i] = val(R, b * N + i);
    check(c->reduce_scatter(c, a->o, big, got, N, FT_F32) == 0, "reduce_scatter", R);
    ok = 1;
    for (int i = 0; i < N; i++) {
        float s = val(0, R * N + i);
        for (int r = 1; r < W; r++) s += val(r, R * N + i);
        ok &= got[i] == s;
    }
    check(ok, "reduce_scatter sums", R);
    int32_t bad[2] = {0};
    check(c->all_reduce(c, a->o, bad, 2, FT_I32, FT_COMM_SUM) == FT_EARG, "I32 refused", R);
    check(c->reduce_scatter(c, a->o, big, bad, 1, FT_I32) == FT_EARG, "I32 refused (rs)", R);
    check(c->set_timeout(c, 5) == 0 && c->barrier(c) == 0, "set_timeout, barrier", R);
    free(big);
    return NULL;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "test_comm_threads",
                            "usage: test_comm_threads\nThe in-process collectives.\n"))
        return 0;
    ft_ops_options oo = {.threads = 1, .device = -1};
    ft_ops *o;
    char err[256];
    if (ft_ops_create("cpu", &oo, &o, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
    static const int worlds[] = {2, 3, 5};
    for (size_t w = 0; w < 3; w++) {
        int W = worlds[w];
        ft_comm_group *g;
        if (ft_comm_threads_create(W, &g)) return 1;
        pthread_t th[5];
        arg a[5];
        for (int r = 0; r < W; r++) {
            a[r] = (arg){g, o, r, W};
            pthread_create(&th[r], NULL, rank_main, &a[r]);
        }
        for (int r = 0; r < W; r++) pthread_join(th[r], NULL);
        ft_comm_threads_free(g);
    }
    /* one rank: identities */
    ft_comm *s;
    float x[4] = {1, 2, 3, 4}, y[4] = {0};
    if (ft_comm_single(&s)) return 1;
    check(s->all_reduce(s, o, x, 4, FT_F32, FT_COMM_SUM) == 0 && x[3] == 4, "single all_reduce", 0);
    check(s->reduce_scatter(s, o, x, y, 4, FT_F32) == 0 && !memcmp(x, y, sizeof x),
          "single reduce_scatter", 0);
    check(s->all_reduce_async(s, o, x, 4, FT_F32, FT_COMM_MAX) == 0 && s->wait(s) == 0,
          "single async", 0);
    check(s->broadcast(s, o, x, sizeof x, 1) == FT_EARG, "single broadcast root 1", 0);
    ft_comm_free(s);
    ft_ops_free(o);
    if (!nfail) printf("ok %d checks (%s)\n", nchecks, ft_comm_backends());
    return nfail ? 1 : 0;
}
