/* test_nccl.c: the NCCL transport against the single-rank one, bit for bit, on one GPU: every
 * collective (all_reduce sum/max in fp32/fp64, all_gather, broadcast, reduce_scatter, barrier,
 * the async all_reduce + wait) over random data on the CUDA backend; then the same collectives
 * recorded in a CUDA graph after a kernel (ft-train's cuda_graphs with several ranks): the
 * recording runs nothing, sync is refused inside it, each launch + sync gives the direct
 * results. Exit 77 without a GPU or without NCCL in the build. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "ft_common.h"
#include "ops.h"

static int failures;

static void check(int ok, const char *what) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
}

/* every collective of c on device buffers a, b of n bytes (a holds the data), after a kernel
 * that doubles a's first half (so that a recording that ran would show) */
static int collectives(ft_comm *c, ft_ops *o, void *a, void *b, size_t n) {
    size_t nf = n / 4 / 2, nd = n / 8 / 2;
    int rc = o->scale(o, nf, 2.0f, a);
    if (!rc) rc = c->all_reduce(c, o, a, nf, FT_F32, FT_COMM_SUM);
    if (!rc) rc = c->all_reduce(c, o, (char *)a + n / 2, nd, FT_F64, FT_COMM_MAX);
    if (!rc) rc = c->all_gather(c, o, a, b, n / 2);
    if (!rc) rc = c->broadcast(c, o, b, n, 0);
    if (!rc) rc = c->reduce_scatter(c, o, b, a, nf, FT_F32);
    if (!rc) rc = c->all_reduce_async(c, o, a, nf, FT_F32, FT_COMM_SUM);
    if (!rc) rc = c->wait(c);
    if (!rc) rc = c->barrier(c);
    return rc;
}

/* run every collective of c on a copy of host data; result bytes into out */
static int exercise(ft_comm *c, ft_ops *o, const unsigned char *h, size_t n, unsigned char *out) {
    void *a = NULL, *b = NULL;
    int rc = o->alloc(o, n, &a);
    if (!rc) rc = o->alloc(o, n, &b);
    if (!rc) rc = o->upload(o, a, h, n);
    if (!rc) rc = collectives(c, o, a, b, n);
    if (!rc) rc = o->download(o, out, a, n);
    o->free(o, a), o->free(o, b);
    return rc;
}

/* the same recorded once in a graph and launched twice (fresh data each time): *idle 1 when
 * the recording left a untouched, *refused 1 when sync inside the recording was refused;
 * out holds the second launch's result */
static int exercise_graph(ft_comm *c, ft_ops *o, const unsigned char *h, size_t n,
                          unsigned char *out, int *idle, int *refused) {
    void *a = NULL, *b = NULL, *g = NULL;
    unsigned char *back = malloc(n);
    int rc = back ? o->alloc(o, n, &a) : FT_EARG;
    if (!rc) rc = o->alloc(o, n, &b);
    if (!rc) rc = o->upload(o, a, h, n);
    if (!rc) rc = o->graph_begin(o);
    if (!rc) {
        int rw = collectives(c, o, a, b, n);
        *refused = c->sync(c) == FT_EARG;
        int re = o->graph_end(o, &g);
        rc = rw ? rw : re;
    }
    if (!rc) rc = o->download(o, back, a, n);
    *idle = !rc && memcmp(back, h, n) == 0;
    for (int l = 0; l < 2 && !rc; l++) {
        rc = o->upload(o, a, h, n);
        if (!rc) rc = o->graph_launch(o, g);
        if (!rc) rc = c->sync(c);
        if (!rc) rc = o->download(o, out, a, n);
    }
    if (g) o->graph_free(o, g);
    o->free(o, a), o->free(o, b);
    free(back);
    return rc;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "test_nccl", "usage: test_nccl\n")) return 0;
    if (!ft_comm_have_nccl()) {
        printf("skip: this build has no NCCL transport\n");
        return 77;
    }
    char err[512];
    ft_ops *o = NULL;
    int rc = ft_ops_create("cuda", NULL, &o, err, sizeof err);
    if (rc) {
        printf("skip: %s\n", err);
        return rc == FT_ENODEV ? 77 : 1;
    }
    enum { N = 1 << 16 };
    unsigned char *h = malloc(N), *r1 = malloc(N), *r2 = malloc(N);
    ft_rng g;
    ft_rng_seed(&g, 7, 0);
    for (size_t i = 0; i < N / 4; i++) ((float *)h)[i] = (float)(ft_rng_uniform(&g) * 2 - 1);
    ft_comm *single = NULL, *nccl = NULL;
    ft_comm_nccl_options no = {.rank = 0, .world = 1, .timeout_s = 60, .prog = "test_nccl"};
    rc = ft_comm_single(&single);
    check(!rc, "single-rank transport");
    rc = ft_comm_nccl(&nccl, o, &no, err, sizeof err);
    if (rc) printf("    %s\n", err);
    check(!rc && nccl && !strcmp(nccl->name, "nccl") && nccl->world == 1, "NCCL, one rank");
    if (!rc) {
        int e1 = exercise(single, o, h, N, r1), e2 = exercise(nccl, o, h, N, r2);
        check(!e1 && !e2, "every collective runs on both");
        check(!e1 && !e2 && memcmp(r1, r2, N) == 0,
              "NCCL's results equal the single rank's bit for bit");
        int idle = 0, refused = 0;
        memset(r2, 0, N);
        check(ft_comm_recordable(nccl) && !ft_comm_recordable(single),
              "a graph can record NCCL's collectives, not the host transport's");
        int e3 = exercise_graph(nccl, o, h, N, r2, &idle, &refused);
        if (e3) printf("    %s\n", ft_strerror(e3));
        check(!e3 && idle && refused, "recorded in a CUDA graph: nothing runs, sync is refused");
        check(!e3 && !e1 && memcmp(r1, r2, N) == 0,
              "each launch of the recording + sync gives the direct results bit for bit");
    }
    ft_comm_free(nccl);
    ft_comm_free(single);
    ft_ops_free(o);
    free(h), free(r1), free(r2);
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
