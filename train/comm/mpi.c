/* mpi.c: the collectives of CPU ranks over MPI (Open MPI from Debian in CI), see comm.h.
 *
 * Buffers of a host backend (o->name "cpu") are handed to MPI as they are; any other backend's
 * are staged through a host buffer with o->download / o->upload. Counts above INT_MAX elements
 * go in pieces. MPI_ERRORS_RETURN is set on the communicator, so an MPI error comes back as a
 * status (-EIO) instead of aborting the job.
 *
 * Timeout: a watchdog thread (no MPI calls of its own) looks at the collective in flight; one
 * that has not returned for timeout_s ends the process with exit status 1 and one line
 * "<prog>: rank R of W: <collective> got no answer from the other ranks for T s (a rank died,
 * hangs or runs with another configuration)". mpirun then ends the other ranks; a rank killed
 * outright (SIGKILL) is named by mpirun itself.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm.h"
#include "ft_common.h"

void ft_comm_mpi_options_init(ft_comm_mpi_options *o) {
    *o = (ft_comm_mpi_options){.timeout_s = 300.0, .prog = "facetrain"};
}

#ifndef FT_HAVE_MPI

int ft_comm_have_mpi(void) {
    return 0;
}

int ft_comm_mpi(ft_comm **out, const ft_comm_mpi_options *opt, char *err, size_t cap) {
    snprintf(err, cap,
             "this build has no MPI transport (the collectives it has: %s); install "
             "libopenmpi-dev and rebuild",
             ft_comm_backends());
    return FT_ENOTSUP;
}

#else

#include <mpi.h>

#define MAX_ASYNC 64

typedef struct mpi_impl {
    MPI_Comm comm;
    void *stage;      /* host staging buffer for other backends */
    size_t stage_cap; /* its size */
    /* async requests (MPI_Iallreduce) and the device buffers to upload on wait */
    MPI_Request req[MAX_ASYNC];
    int nreq;
    /* watchdog */
    ft_comm_mpi_options opt;
    pthread_t wd;
    int wd_running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    double busy_since; /* monotonic seconds, 0 = no collective in flight */
    const char *what;
} mpi_impl;

static int g_inited; /* this file initialized MPI */

int ft_comm_have_mpi(void) {
    return 1;
}

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *watchdog(void *arg) {
    ft_comm *c = arg;
    mpi_impl *m = c->impl;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&m->cv, &m->mu, &ts);
        if (m->opt.timeout_s > 0 && m->busy_since > 0 &&
            mono_now() - m->busy_since > m->opt.timeout_s) {
            /* one line, then out: the stuck collective cannot be cancelled */
            fprintf(stderr,
                    "%s: rank %d of %d: %s got no answer from the other ranks for %.0f s (a "
                    "rank died, hangs or runs with another configuration); exiting\n",
                    m->opt.prog, c->rank, c->world, m->what, m->opt.timeout_s);
            fflush(stderr);
            _exit(1);
        }
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

static void busy(mpi_impl *m, const char *what) {
    pthread_mutex_lock(&m->mu);
    m->busy_since = mono_now();
    m->what = what;
    pthread_mutex_unlock(&m->mu);
}
static void idle(mpi_impl *m) {
    pthread_mutex_lock(&m->mu);
    m->busy_since = 0;
    pthread_mutex_unlock(&m->mu);
}

static int mpi_status(int e) {
    return e == MPI_SUCCESS ? 0 : -EIO;
}

static MPI_Datatype mpi_type(ft_dtype dt) {
    return dt == FT_F64 ? MPI_DOUBLE : MPI_FLOAT;
}
static size_t dt_size(ft_dtype dt) {
    return dt == FT_F64 ? sizeof(double) : sizeof(float);
}

/* host pointer for a device buffer of bytes (the buffer itself on a host backend) */
static int is_host(const ft_ops *o) {
    return strcmp(o->name, "cpu") == 0;
}
static int host_view(mpi_impl *m, ft_ops *o, void *dev, size_t bytes, int fill, void **h) {
    if (is_host(o)) {
        *h = dev;
        return 0;
    }
    if (m->stage_cap < bytes) {
        void *p = realloc(m->stage, bytes ? bytes : 1);
        if (!p) return -ENOMEM;
        m->stage = p, m->stage_cap = bytes;
    }
    *h = m->stage;
    return fill ? o->download(o, m->stage, dev, bytes) : 0;
}
static int host_done(mpi_impl *m, ft_ops *o, void *dev, const void *h, size_t bytes) {
    return is_host(o) ? 0 : o->upload(o, dev, h, bytes);
}

/* A staged backend can fail before the collective (download, memory): every rank must still
 * take part, so the ranks first agree on the status with one more all_reduce. A host backend
 * cannot fail there and skips it. */
static int agree(mpi_impl *m, const ft_ops *o, int rc) {
    if (is_host(o)) return rc;
    int mine = rc ? 1 : 0, any = 0;
    if (MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, m->comm) != MPI_SUCCESS) return -EIO;
    return rc ? rc : any ? FT_EARG : 0;
}

static int mpi_all_reduce(ft_comm *c, ft_ops *o, void *dev, size_t count, ft_dtype dt,
                          ft_comm_op op) {
    mpi_impl *m = c->impl;
    void *h = NULL;
    int rc =
        dt != FT_F32 && dt != FT_F64 ? FT_EARG : host_view(m, o, dev, count * dt_size(dt), 1, &h);
    busy(m, op == FT_COMM_MAX ? "all_reduce(max)" : "all_reduce(sum)");
    if ((rc = agree(m, o, rc))) return idle(m), rc;
    for (size_t off = 0; off < count && !rc;) {
        size_t n = count - off > INT_MAX ? INT_MAX : count - off;
        rc =
            mpi_status(MPI_Allreduce(MPI_IN_PLACE, (char *)h + off * dt_size(dt), (int)n,
                                     mpi_type(dt), op == FT_COMM_MAX ? MPI_MAX : MPI_SUM, m->comm));
        off += n;
    }
    idle(m);
    return rc ? rc : host_done(m, o, dev, h, count * dt_size(dt));
}

static int mpi_all_gather(ft_comm *c, ft_ops *o, const void *send, void *recv, size_t bytes) {
    mpi_impl *m = c->impl;
    if (bytes > INT_MAX) return FT_ERANGE; /* the same on every rank: no peer is left waiting */
    void *hs = (void *)send, *hr = recv;
    int rc = 0;
    if (!is_host(o)) { /* stage: [world * bytes] receive area then the send block */
        size_t all = bytes * (size_t)c->world;
        rc = host_view(m, o, recv, all + bytes, 0, &hr);
        hs = (char *)hr + all;
        if (!rc) rc = o->download(o, hs, send, bytes);
    }
    busy(m, "all_gather");
    if ((rc = agree(m, o, rc))) return idle(m), rc;
    if (is_host(o) && send == (char *)recv + (size_t)c->rank * bytes) hs = MPI_IN_PLACE;
    rc = mpi_status(MPI_Allgather(hs, (int)bytes, MPI_BYTE, hr, (int)bytes, MPI_BYTE, m->comm));
    idle(m);
    return rc ? rc : host_done(m, o, recv, hr, bytes * (size_t)c->world);
}

static int mpi_broadcast(ft_comm *c, ft_ops *o, void *dev, size_t bytes, int root) {
    mpi_impl *m = c->impl;
    if (root < 0 || root >= c->world) return FT_EARG; /* the same on every rank */
    void *h = NULL;
    int rc = host_view(m, o, dev, bytes, c->rank == root, &h);
    busy(m, "broadcast");
    if ((rc = agree(m, o, rc))) return idle(m), rc;
    for (size_t off = 0; off < bytes && !rc;) {
        size_t n = bytes - off > INT_MAX ? INT_MAX : bytes - off;
        rc = mpi_status(MPI_Bcast((char *)h + off, (int)n, MPI_BYTE, root, m->comm));
        off += n;
    }
    idle(m);
    return rc || c->rank == root ? rc : host_done(m, o, dev, h, bytes);
}

static int mpi_barrier(ft_comm *c) {
    mpi_impl *m = c->impl;
    busy(m, "barrier");
    int rc = mpi_status(MPI_Barrier(m->comm));
    idle(m);
    return rc;
}

static int mpi_reduce_scatter(ft_comm *c, ft_ops *o, const void *send, void *recv, size_t count,
                              ft_dtype dt) {
    mpi_impl *m = c->impl;
    if ((dt != FT_F32 && dt != FT_F64) || count > INT_MAX) return FT_EARG;
    size_t es = dt_size(dt), all = count * es * (size_t)c->world;
    void *hs = (void *)send, *hr = recv;
    int rc = 0;
    if (!is_host(o)) { /* stage: send blocks then the result */
        rc = host_view(m, o, (void *)send, all + count * es, 0, &hs);
        hr = (char *)hs + all;
        if (!rc) rc = o->download(o, hs, send, all);
    }
    busy(m, "reduce_scatter");
    if ((rc = agree(m, o, rc))) return idle(m), rc;
    rc = mpi_status(MPI_Reduce_scatter_block(hs, hr, (int)count, mpi_type(dt), MPI_SUM, m->comm));
    idle(m);
    return rc ? rc : host_done(m, o, recv, hr, count * es);
}

/* Non-blocking on a host backend (MPI_Iallreduce, completed by wait); staged backends run the
 * blocking call (the staging buffer is shared). */
static int mpi_all_reduce_async(ft_comm *c, ft_ops *o, void *dev, size_t count, ft_dtype dt,
                                ft_comm_op op) {
    mpi_impl *m = c->impl;
    if (!is_host(o) || count > INT_MAX) return mpi_all_reduce(c, o, dev, count, dt, op);
    if (dt != FT_F32 && dt != FT_F64) return FT_EARG;
    if (m->nreq == MAX_ASYNC) {
        int rc = c->wait(c);
        if (rc) return rc;
    }
    busy(m, op == FT_COMM_MAX ? "all_reduce(max)" : "all_reduce(sum)");
    int rc = mpi_status(MPI_Iallreduce(MPI_IN_PLACE, dev, (int)count, mpi_type(dt),
                                       op == FT_COMM_MAX ? MPI_MAX : MPI_SUM, m->comm,
                                       &m->req[m->nreq]));
    if (!rc) m->nreq++;
    idle(m);
    return rc;
}

static int mpi_wait(ft_comm *c) {
    mpi_impl *m = c->impl;
    if (!m->nreq) return 0;
    busy(m, "all_reduce(async)");
    int rc = mpi_status(MPI_Waitall(m->nreq, m->req, MPI_STATUSES_IGNORE));
    m->nreq = 0;
    idle(m);
    return rc;
}

static int mpi_progress(ft_comm *c) {
    mpi_impl *m = c->impl;
    int done = 0;
    if (!m->nreq) return 0;
    /* completed requests become MPI_REQUEST_NULL, which the final MPI_Waitall takes */
    return mpi_status(MPI_Testall(m->nreq, m->req, &done, MPI_STATUSES_IGNORE));
}

static int mpi_set_timeout(ft_comm *c, double seconds) {
    mpi_impl *m = c->impl;
    pthread_mutex_lock(&m->mu);
    m->opt.timeout_s = seconds;
    if (m->busy_since > 0) m->busy_since = mono_now();
    pthread_mutex_unlock(&m->mu);
    return 0;
}

static void mpi_destroy(ft_comm *c) {
    mpi_impl *m = c->impl;
    if (m) {
        if (m->nreq) MPI_Waitall(m->nreq, m->req, MPI_STATUSES_IGNORE);
        if (m->wd_running) {
            pthread_mutex_lock(&m->mu);
            m->stop = 1;
            pthread_cond_signal(&m->cv);
            pthread_mutex_unlock(&m->mu);
            pthread_join(m->wd, NULL);
        }
        pthread_mutex_destroy(&m->mu);
        pthread_cond_destroy(&m->cv);
        if (m->comm != MPI_COMM_NULL) MPI_Comm_free(&m->comm);
        free(m->stage);
        free(m);
    }
    free(c);
    int fin = 0;
    MPI_Finalized(&fin);
    if (g_inited && !fin) MPI_Finalize();
    g_inited = 0;
}

/* The jobs of join_nodes nodes into one communicator (see comm.h); the watchdog bounds every
 * wait (a node launcher that never comes). */
static int join_jobs(ft_comm *c, char *err, size_t cap) {
    mpi_impl *m = c->impl;
    int me, size, rc = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char port[MPI_MAX_PORT_NAME] = "";
    MPI_Comm comm = m->comm;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    busy(m, "joining the other nodes' ranks (MPI_Comm_accept/connect)");
    if (m->opt.join_node == 0) {
        if (me == 0 && (MPI_Open_port(MPI_INFO_NULL, port) != MPI_SUCCESS ||
                        MPI_Publish_name(m->opt.join_service, MPI_INFO_NULL, port) != MPI_SUCCESS))
            rc = -EIO;
    } else {
        if (me == 0)
            while (MPI_Lookup_name(m->opt.join_service, MPI_INFO_NULL, port) != MPI_SUCCESS)
                usleep(100000); /* node 0 has not published yet; the watchdog bounds this */
        MPI_Comm inter, merged;
        if (MPI_Comm_connect(port, MPI_INFO_NULL, 0, comm, &inter) != MPI_SUCCESS ||
            MPI_Intercomm_merge(inter, 1, &merged) != MPI_SUCCESS)
            rc = -EIO;
        else {
            MPI_Comm_free(&inter);
            MPI_Comm_free(&comm);
            comm = merged;
        }
    }
    /* every node joined so far takes part in accepting the next ones */
    int all = size * m->opt.join_nodes, now = 0;
    while (!rc && MPI_Comm_size(comm, &now) == MPI_SUCCESS && now < all) {
        MPI_Comm inter, merged;
        if (MPI_Comm_accept(port, MPI_INFO_NULL, 0, comm, &inter) != MPI_SUCCESS ||
            MPI_Intercomm_merge(inter, 0, &merged) != MPI_SUCCESS) {
            rc = -EIO;
            break;
        }
        MPI_Comm_free(&inter);
        MPI_Comm_free(&comm);
        comm = merged;
    }
    if (!rc && m->opt.join_node == 0 && me == 0) {
        MPI_Unpublish_name(m->opt.join_service, MPI_INFO_NULL, port);
        MPI_Close_port(port);
    }
    /* order the ranks node by node */
    MPI_Comm ordered;
    if (!rc && MPI_Comm_split(comm, 0, m->opt.join_node * size + me, &ordered) != MPI_SUCCESS)
        rc = -EIO;
    idle(m);
    if (rc) {
        snprintf(err, cap, "MPI: node %d could not join the other %d nodes' ranks (%s)",
                 m->opt.join_node, m->opt.join_nodes - 1, m->opt.join_service);
        return rc;
    }
    MPI_Comm_free(&comm);
    m->comm = ordered;
    MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
    return 0;
}

int ft_comm_mpi(ft_comm **out, const ft_comm_mpi_options *opt, char *err, size_t cap) {
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            snprintf(err, cap, "MPI_Init_thread failed");
            return -EIO;
        }
        g_inited = 1;
    }
    ft_comm *c = calloc(1, sizeof *c);
    mpi_impl *m = calloc(1, sizeof *m);
    if (!c || !m) {
        free(c), free(m);
        snprintf(err, cap, "out of memory");
        return -ENOMEM;
    }
    m->comm = MPI_COMM_NULL;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    if (opt)
        m->opt = *opt;
    else
        ft_comm_mpi_options_init(&m->opt);
    *c = (ft_comm){.name = "mpi",
                   .impl = m,
                   .destroy = mpi_destroy,
                   .all_reduce = mpi_all_reduce,
                   .all_gather = mpi_all_gather,
                   .broadcast = mpi_broadcast,
                   .barrier = mpi_barrier,
                   .reduce_scatter = mpi_reduce_scatter,
                   .all_reduce_async = mpi_all_reduce_async,
                   .wait = mpi_wait,
                   .progress = mpi_progress,
                   .set_timeout = mpi_set_timeout};
    if (MPI_Comm_dup(MPI_COMM_WORLD, &m->comm) != MPI_SUCCESS ||
        MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN) != MPI_SUCCESS) {
        snprintf(err, cap, "MPI: cannot set up the communicator");
        mpi_destroy(c);
        return -EIO;
    }
    MPI_Comm_rank(m->comm, &c->rank);
    MPI_Comm_size(m->comm, &c->world);
    /* always started: set_timeout may turn the timeout on later */
    if (pthread_create(&m->wd, NULL, watchdog, c)) {
        snprintf(err, cap, "cannot start the collectives' watchdog thread");
        mpi_destroy(c);
        return -EAGAIN;
    }
    m->wd_running = 1;
    int rc;
    if (m->opt.join_nodes > 1 && (!m->opt.join_service || (rc = join_jobs(c, err, cap)))) {
        if (!m->opt.join_service) snprintf(err, cap, "MPI: joining nodes needs a service name");
        mpi_destroy(c);
        return -EIO;
    }
    if (MPI_Comm_rank(m->comm, &c->rank) != MPI_SUCCESS ||
        MPI_Comm_size(m->comm, &c->world) != MPI_SUCCESS) {
        snprintf(err, cap, "MPI: cannot set up the communicator");
        mpi_destroy(c);
        return -EIO;
    }
    *out = c;
    return 0;
}

#endif
