/* threads.c: ranks as threads of one process, for tests of the distributed code paths.
 *
 * A collective: every rank copies its buffer to its host slot (o->download), waits on a
 * barrier, computes the result from all slots in rank order (the same float operations on
 * every rank, so all ranks get bit-identical results), waits again (so no rank overwrites its
 * slot while another still reads it) and uploads the result. Every rank reaches both barriers
 * also after an error, or the others would hang; an error on one rank is reported by all.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "ft_common.h"

typedef struct slot {
    void *buf;
    size_t cap;
    int rc;
    long calls;
} slot;

struct ft_comm_group {
    int world;
    pthread_barrier_t bar;
    slot *slots;   /* [world] */
    ft_comm *rank; /* [world] */
};

static ft_comm_group *group_of(ft_comm *c) {
    return c->impl;
}

/* grow rank r's slot to bytes (called by rank r only) */
static int slot_reserve(slot *s, size_t bytes) {
    if (s->cap >= bytes) return 0;
    void *p = realloc(s->buf, bytes ? bytes : 1);
    if (!p) return -ENOMEM;
    s->buf = p, s->cap = bytes;
    return 0;
}

/* phase 1: publish (rc or the staged buffer), wait; returns the first error of any rank */
static int publish(ft_comm *c, int rc) {
    ft_comm_group *g = group_of(c);
    g->slots[c->rank].rc = rc;
    g->slots[c->rank].calls++;
    pthread_barrier_wait(&g->bar);
    for (int r = 0; r < g->world; r++)
        if (g->slots[r].rc) return g->slots[r].rc;
    return 0;
}

static int thr_all_reduce(ft_comm *c, ft_ops *o, void *dev, size_t count, ft_dtype dt,
                          ft_comm_op op) {
    ft_comm_group *g = group_of(c);
    slot *me = &g->slots[c->rank];
    size_t es = dt == FT_F64 ? sizeof(double) : sizeof(float), bytes = count * es;
    int rc = dt != FT_F32 && dt != FT_F64 ? FT_EARG : slot_reserve(me, 2 * bytes);
    if (!rc) rc = o->download(o, me->buf, dev, bytes);
    rc = publish(c, rc);
    /* the result goes to the second half of my slot: others only read first halves */
    char *res = rc ? NULL : (char *)me->buf + bytes;
    for (size_t i = 0; res && i < count; i++) {
        if (dt == FT_F32) {
            float acc = ((const float *)g->slots[0].buf)[i];
            for (int r = 1; r < g->world; r++) {
                float v = ((const float *)g->slots[r].buf)[i];
                acc = op == FT_COMM_MAX ? fmaxf(acc, v) : acc + v;
            }
            ((float *)res)[i] = acc;
        } else {
            double acc = ((const double *)g->slots[0].buf)[i];
            for (int r = 1; r < g->world; r++) {
                double v = ((const double *)g->slots[r].buf)[i];
                acc = op == FT_COMM_MAX ? fmax(acc, v) : acc + v;
            }
            ((double *)res)[i] = acc;
        }
    }
    pthread_barrier_wait(&g->bar);
    if (!rc) rc = o->upload(o, dev, res, bytes);
    return rc;
}

static int thr_all_gather(ft_comm *c, ft_ops *o, const void *send, void *recv, size_t bytes) {
    ft_comm_group *g = group_of(c);
    slot *me = &g->slots[c->rank];
    int rc = slot_reserve(me, bytes);
    if (!rc) rc = o->download(o, me->buf, send, bytes);
    rc = publish(c, rc);
    for (int r = 0; r < g->world && !rc; r++)
        rc = o->upload(o, (char *)recv + (size_t)r * bytes, g->slots[r].buf, bytes);
    pthread_barrier_wait(&g->bar);
    return rc;
}

static int thr_broadcast(ft_comm *c, ft_ops *o, void *dev, size_t bytes, int root) {
    ft_comm_group *g = group_of(c);
    slot *me = &g->slots[c->rank];
    int rc = root < 0 || root >= g->world ? FT_EARG : 0;
    if (!rc && c->rank == root && !(rc = slot_reserve(me, bytes)))
        rc = o->download(o, me->buf, dev, bytes);
    rc = publish(c, rc);
    if (!rc && c->rank != root) rc = o->upload(o, dev, g->slots[root].buf, bytes);
    pthread_barrier_wait(&g->bar);
    return rc;
}

static int thr_barrier(ft_comm *c) {
    return publish(c, 0);
}

/* every rank publishes its whole send buffer; rank r sums block r of every slot in rank order */
static int thr_reduce_scatter(ft_comm *c, ft_ops *o, const void *send, void *recv, size_t count,
                              ft_dtype dt) {
    ft_comm_group *g = group_of(c);
    slot *me = &g->slots[c->rank];
    size_t es = dt == FT_F64 ? sizeof(double) : sizeof(float), bytes = count * es;
    size_t all = bytes * (size_t)g->world;
    int rc = dt != FT_F32 && dt != FT_F64 ? FT_EARG : slot_reserve(me, all + bytes);
    if (!rc) rc = o->download(o, me->buf, send, all);
    rc = publish(c, rc);
    char *res = rc ? NULL : (char *)me->buf + all;
    size_t base = (size_t)c->rank * count;
    for (size_t i = 0; res && i < count; i++) {
        if (dt == FT_F32) {
            float acc = ((const float *)g->slots[0].buf)[base + i];
            for (int r = 1; r < g->world; r++) acc += ((const float *)g->slots[r].buf)[base + i];
            ((float *)res)[i] = acc;
        } else {
            double acc = ((const double *)g->slots[0].buf)[base + i];
            for (int r = 1; r < g->world; r++) acc += ((const double *)g->slots[r].buf)[base + i];
            ((double *)res)[i] = acc;
        }
    }
    pthread_barrier_wait(&g->bar);
    if (!rc) rc = o->upload(o, recv, res, bytes);
    return rc;
}

/* the async variant runs at once; wait has nothing left to do */
static int thr_wait(ft_comm *c) {
    return 0;
}
static int thr_set_timeout(ft_comm *c, double seconds) {
    return 0; /* threads of one process cannot lose a peer */
}

static void thr_destroy(ft_comm *c) {
    /* owned by the group */
}

int ft_comm_threads_create(int world, ft_comm_group **out) {
    if (world < 1 || world > 4096) return FT_EARG;
    ft_comm_group *g = calloc(1, sizeof *g);
    if (!g) return -ENOMEM;
    g->world = world;
    g->slots = calloc((size_t)world, sizeof *g->slots);
    g->rank = calloc((size_t)world, sizeof *g->rank);
    if (!g->slots || !g->rank || pthread_barrier_init(&g->bar, NULL, (unsigned)world)) {
        free(g->slots);
        free(g->rank);
        free(g);
        return -ENOMEM;
    }
    for (int r = 0; r < world; r++)
        g->rank[r] = (ft_comm){.name = "threads",
                               .rank = r,
                               .world = world,
                               .impl = g,
                               .destroy = thr_destroy,
                               .all_reduce = thr_all_reduce,
                               .all_gather = thr_all_gather,
                               .broadcast = thr_broadcast,
                               .barrier = thr_barrier,
                               .reduce_scatter = thr_reduce_scatter,
                               .all_reduce_async = thr_all_reduce,
                               .wait = thr_wait,
                               .set_timeout = thr_set_timeout};
    *out = g;
    return 0;
}

ft_comm *ft_comm_threads_rank(ft_comm_group *g, int rank) {
    return rank >= 0 && rank < g->world ? &g->rank[rank] : NULL;
}

long ft_comm_threads_calls(const ft_comm_group *g, int rank) {
    return rank >= 0 && rank < g->world ? g->slots[rank].calls : -1;
}

void ft_comm_threads_free(ft_comm_group *g) {
    if (!g) return;
    for (int r = 0; r < g->world; r++) free(g->slots[r].buf);
    pthread_barrier_destroy(&g->bar);
    free(g->slots);
    free(g->rank);
    free(g);
}
