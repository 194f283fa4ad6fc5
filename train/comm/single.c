/* single.c: the collectives of a job with one rank: every one is the identity. */
#include <errno.h>
#include <stdlib.h>

#include "comm.h"
#include "ft_common.h"

static void single_destroy(ft_comm *c) {
    free(c);
}
static int single_all_reduce(ft_comm *c, ft_ops *o, void *dev, size_t count, ft_dtype dt,
                             ft_comm_op op) {
    return dt == FT_F32 || dt == FT_F64 ? 0 : FT_EARG;
}
static int single_all_gather(ft_comm *c, ft_ops *o, const void *send, void *recv, size_t bytes) {
    return send == recv ? 0 : o->copy(o, recv, send, bytes);
}
static int single_broadcast(ft_comm *c, ft_ops *o, void *dev, size_t bytes, int root) {
    return root == 0 ? 0 : FT_EARG;
}
static int single_barrier(ft_comm *c) {
    return 0;
}
static int single_reduce_scatter(ft_comm *c, ft_ops *o, const void *send, void *recv, size_t count,
                                 ft_dtype dt) {
    if (dt != FT_F32 && dt != FT_F64) return FT_EARG;
    return o->copy(o, recv, send, count * (dt == FT_F64 ? sizeof(double) : sizeof(float)));
}
static int single_wait(ft_comm *c) {
    return 0;
}
static int single_set_timeout(ft_comm *c, double seconds) {
    return 0;
}

int ft_comm_single(ft_comm **out) {
    ft_comm *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    *c = (ft_comm){.name = "single",
                   .rank = 0,
                   .world = 1,
                   .destroy = single_destroy,
                   .all_reduce = single_all_reduce,
                   .all_gather = single_all_gather,
                   .broadcast = single_broadcast,
                   .barrier = single_barrier,
                   .reduce_scatter = single_reduce_scatter,
                   .all_reduce_async = single_all_reduce,
                   .wait = single_wait,
                   .set_timeout = single_set_timeout};
    *out = c;
    return 0;
}

void ft_comm_free(ft_comm *c) {
    if (c && c->destroy) c->destroy(c);
}

int ft_comm_recordable(const ft_comm *c) {
    return c && c->stream && c->sync;
}

const char *ft_comm_backends(void) {
    static const char *names[] = {"single threads", "single threads mpi", "single threads nccl",
                                  "single threads mpi nccl"};
    return names[(ft_comm_have_mpi() ? 1 : 0) + (ft_comm_have_nccl() ? 2 : 0)];
}
