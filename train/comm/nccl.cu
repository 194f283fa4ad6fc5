/* nccl.cu: the NCCL transport (GPU ranks, one GPU each) of comm.h, on the CUDA backend's
 * stream: every blocking collective is enqueued there, so it is ordered with the kernels around
 * it. The async all-reduce (the gradient buckets) runs on a side stream that first waits for
 * an event recorded on the backend's stream, so that backward's kernels go on while NCCL
 * reduces; `wait`, and any blocking collective issued while async ones are pending, makes the
 * backend's stream wait for the side stream (one stream of NCCL work at a time: the ranks'
 * order of operations on the communicator stays the order of the calls).
 *
 * Bootstrap: rank 0's ncclUniqueId reaches the other ranks through an MPI comm of the same
 * ranks when MPI started the job (its broadcast), else through the TCP rendezvous
 * (rendezvous.h) at master_addr:master_port.
 * The communicator is nonblocking (config.blocking = 0): its init returns at once and is
 * polled, so a rank that never joins (it died after the id was sent, or NCCL's bootstrap cannot
 * reach it: a firewalled port, a wrong NCCL_SOCKET_IFNAME) ends the init after timeout_s with
 * one line instead of hanging in ncclCommInitRank. Any call on it may return ncclInProgress
 * (the first collective connects the peers); it is then polled until NCCL has it on the stream
 * (`settle`) before anything waits on that stream, with the same timeout.
 * Errors: NCCL's asynchronous errors are polled (ncclCommGetAsyncError) while a collective is
 * waited for; on an error, or when the wait outlasts timeout_s, the communicator is aborted
 * (ncclCommAbort) and the call fails with one line naming this rank and the collective.
 * Synchronous variants wait for their collective (so a lost peer is noticed where it is lost);
 * the async variants return at once and `wait` completes them.
 * CUDA graphs: while the backend's stream captures (ft-train's cuda_graphs), the collectives
 * are recorded with the rest of the step: a synchronous variant returns once NCCL has it on
 * the stream (a capture forbids waiting for the stream), and `wait` joins the side stream
 * back into the capture without waiting (the gradient buckets become a branch of the graph).
 * After a launch, `sync` polls the stream as the synchronous variants do (NCCL's errors, the
 * timeout, the abort), so a lost peer still ends the step with one line.
 */
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda_runtime.h>
#include <errno.h>

extern "C" {
#include "comm.h"
#include "ft_common.h"
#include "rendezvous.h"
void *ft_ops_cuda_stream(const ft_ops *o); /* ops/cuda/backend.cu */
}

typedef struct nccl_impl {
    ncclComm_t comm;
    cudaStream_t stream;
    cudaStream_t side;             /* the async all-reduces */
    cudaEvent_t ev_ready, ev_done; /* backend stream -> side, side -> backend stream */
    double timeout_s;
    const char *prog;
    void *scratch; /* one float on the device, for barrier */
    int aborted;
    int pending; /* async calls since the last wait */
} nccl_impl;

static nccl_impl *ni(ft_comm *c) {
    return (nccl_impl *)c->impl;
}

static int nccl_err(ft_comm *c, const char *what, ncclResult_t r) {
    fprintf(stderr, "%s: rank %d of %d: NCCL %s: %s\n", ni(c)->prog, c->rank, c->world, what,
            ncclGetErrorString(r));
    return FT_EDEVICE;
}

/* wait for stream st, polling NCCL's async error; abort on error or timeout */
static int poll_stream(ft_comm *c, cudaStream_t st, const char *what) {
    nccl_impl *m = ni(c);
    if (m->aborted) return FT_EDEVICE;
    double t0 = ft_now();
    for (unsigned spin = 0;; spin++) {
        cudaError_t e = cudaStreamQuery(st);
        if (e == cudaSuccess) return 0;
        if (e != cudaErrorNotReady) {
            fprintf(stderr, "%s: rank %d of %d: %s: %s\n", m->prog, c->rank, c->world, what,
                    cudaGetErrorString(e));
            ncclCommAbort(m->comm), m->aborted = 1;
            return FT_EDEVICE;
        }
        ncclResult_t ae = ncclSuccess;
        ncclCommGetAsyncError(m->comm, &ae);
        if (ae != ncclSuccess && ae != ncclInProgress) {
            int rc = nccl_err(c, what, ae);
            ncclCommAbort(m->comm), m->aborted = 1;
            return rc;
        }
        if (m->timeout_s > 0 && ft_now() - t0 > m->timeout_s) {
            fprintf(stderr,
                    "%s: rank %d of %d: %s did not complete within %g s (a peer is gone or "
                    "stuck); aborting the communicator\n",
                    m->prog, c->rank, c->world, what, m->timeout_s);
            ncclCommAbort(m->comm), m->aborted = 1;
            return FT_EDEVICE;
        }
        if (spin > 100) usleep(50);
    }
}

/* A call on the nonblocking communicator returned ncclInProgress: poll its state until NCCL
 * is through with it (init: every rank joined; a collective: enqueued on its stream;
 * finalize: quiescent). An error or the timeout aborts the communicator; the reason goes into
 * msg (without the rank: the line that prints it names it). */
static int settle_msg(ft_comm *c, const char *what, char *msg, size_t cap) {
    nccl_impl *m = ni(c);
    double t0 = ft_now();
    for (unsigned spin = 0;; spin++) {
        ncclResult_t st = ncclInProgress;
        ncclResult_t r = ncclCommGetAsyncError(m->comm, &st);
        if (r != ncclSuccess) st = r;
        if (st == ncclSuccess) return 0;
        if (st != ncclInProgress) {
            snprintf(msg, cap, "NCCL %s: %s", what, ncclGetErrorString(st));
            break;
        }
        if (m->timeout_s > 0 && ft_now() - t0 > m->timeout_s) {
            snprintf(msg, cap,
                     "NCCL %s did not complete within %g s (a rank never joined, is gone or "
                     "stuck, or NCCL cannot reach it: check NCCL_SOCKET_IFNAME); communicator "
                     "aborted",
                     what, m->timeout_s);
            break;
        }
        if (spin > 100) usleep(spin > 10000 ? 1000 : 50);
    }
    ncclCommAbort(m->comm), m->aborted = 1;
    return FT_EDEVICE;
}

static int settle(ft_comm *c, const char *what) {
    char msg[400];
    int rc = settle_msg(c, what, msg, sizeof msg);
    if (rc) fprintf(stderr, "%s: rank %d of %d: %s\n", ni(c)->prog, c->rank, c->world, msg);
    return rc;
}

static int poll_wait(ft_comm *c, const char *what) {
    return poll_stream(c, ni(c)->stream, what);
}

/* the backend's stream is recording a CUDA graph (or its recording was spoiled): no waits */
static int capturing(const nccl_impl *m) {
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    return cudaStreamIsCapturing(m->stream, &st) == cudaSuccess &&
           st != cudaStreamCaptureStatusNone;
}

static int cuda_fail(ft_comm *c, const char *what, cudaError_t e) {
    nccl_impl *m = ni(c);
    fprintf(stderr, "%s: rank %d of %d: %s: %s\n", m->prog, c->rank, c->world, what,
            cudaGetErrorString(e));
    return FT_EDEVICE;
}

/* the backend's stream waits for the async all-reduces started so far */
static int join_side(ft_comm *c) {
    nccl_impl *m = ni(c);
    if (!m->pending) return 0;
    cudaError_t e = cudaEventRecord(m->ev_done, m->side);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(m->stream, m->ev_done, 0);
    return e == cudaSuccess ? 0 : cuda_fail(c, "joining the async all-reduces", e);
}

static int check_call(ft_comm *c, const char *what, ncclResult_t r, int sync) {
    if (r != ncclSuccess && r != ncclInProgress) return nccl_err(c, what, r);
    if (r == ncclInProgress) {
        int rc = settle(c, what);
        if (rc) return rc;
    }
    if (!sync) {
        ni(c)->pending++;
        return 0;
    }
    return capturing(ni(c)) ? 0 : poll_wait(c, what);
}

static int type_of(ft_dtype dt, ncclDataType_t *t) {
    if (dt == FT_F32)
        *t = ncclFloat32;
    else if (dt == FT_F64)
        *t = ncclFloat64;
    else
        return FT_ENOTSUP;
    return 0;
}

static int do_all_reduce(ft_comm *c, void *dev, size_t count, ft_dtype dt, ft_comm_op op,
                         int sync) {
    ncclDataType_t t;
    nccl_impl *m = ni(c);
    if (type_of(dt, &t)) return FT_ENOTSUP;
    if (m->aborted) return FT_EDEVICE;
    cudaStream_t st = m->stream;
    if (sync) {
        int rc = join_side(c);
        if (rc) return rc;
    } else {
        /* the side stream starts when the backend's stream has packed the bucket */
        cudaError_t e = cudaEventRecord(m->ev_ready, m->stream);
        if (e == cudaSuccess) e = cudaStreamWaitEvent(m->side, m->ev_ready, 0);
        if (e != cudaSuccess) return cuda_fail(c, "starting an async all_reduce", e);
        st = m->side;
    }
    return check_call(
        c, "all_reduce",
        ncclAllReduce(dev, dev, count, t, op == FT_COMM_MAX ? ncclMax : ncclSum, m->comm, st),
        sync);
}
static int n_all_reduce(ft_comm *c, ft_ops *o, void *dev, size_t count, ft_dtype dt,
                        ft_comm_op op) {
    return do_all_reduce(c, dev, count, dt, op, 1);
}
static int n_all_reduce_async(ft_comm *c, ft_ops *o, void *dev, size_t count, ft_dtype dt,
                              ft_comm_op op) {
    return do_all_reduce(c, dev, count, dt, op, 0);
}
static int n_all_gather(ft_comm *c, ft_ops *o, const void *send, void *recv, size_t bytes) {
    if (ni(c)->aborted) return FT_EDEVICE;
    if (join_side(c)) return FT_EDEVICE;
    return check_call(c, "all_gather",
                      ncclAllGather(send, recv, bytes, ncclUint8, ni(c)->comm, ni(c)->stream), 1);
}
static int n_broadcast(ft_comm *c, ft_ops *o, void *dev, size_t bytes, int root) {
    if (ni(c)->aborted) return FT_EDEVICE;
    if (join_side(c)) return FT_EDEVICE;
    return check_call(c, "broadcast",
                      ncclBroadcast(dev, dev, bytes, ncclUint8, root, ni(c)->comm, ni(c)->stream),
                      1);
}
static int n_reduce_scatter(ft_comm *c, ft_ops *o, const void *send, void *recv, size_t count,
                            ft_dtype dt) {
    ncclDataType_t t;
    if (type_of(dt, &t)) return FT_ENOTSUP;
    if (ni(c)->aborted) return FT_EDEVICE;
    if (join_side(c)) return FT_EDEVICE;
    return check_call(c, "reduce_scatter",
                      ncclReduceScatter(send, recv, count, t, ncclSum, ni(c)->comm, ni(c)->stream),
                      1);
}
static int n_barrier(ft_comm *c) {
    if (ni(c)->aborted) return FT_EDEVICE;
    if (join_side(c)) return FT_EDEVICE;
    return check_call(c, "barrier",
                      ncclAllReduce(ni(c)->scratch, ni(c)->scratch, 1, ncclFloat32, ncclSum,
                                    ni(c)->comm, ni(c)->stream),
                      1);
}
static int n_wait(ft_comm *c) {
    nccl_impl *m = ni(c);
    if (!m->pending) return m->aborted ? FT_EDEVICE : 0;
    /* the side stream polled here (NCCL's errors and the timeout), then joined; inside a
     * capture only joined (the launch's sync polls) */
    int rc = capturing(m) ? 0 : poll_stream(c, m->side, "wait (async all_reduce)");
    if (!rc) rc = join_side(c);
    m->pending = 0;
    return rc;
}
static int n_sync(ft_comm *c) {
    nccl_impl *m = ni(c);
    if (m->aborted) return FT_EDEVICE;
    if (capturing(m)) return FT_EARG; /* nothing recorded has run yet */
    int rc = n_wait(c);
    return rc ? rc : poll_wait(c, "the step's collectives");
}
static int n_set_timeout(ft_comm *c, double seconds) {
    ni(c)->timeout_s = seconds;
    return 0;
}
static void n_destroy(ft_comm *c) {
    nccl_impl *m = ni(c);
    if (m) {
        if (m->comm && !m->aborted) {
            /* the queued collectives done (or timed out: aborted), then the communicator
             * finalized (nonblocking: polled) and freed */
            int rc = poll_stream(c, m->stream, "finishing the queued collectives");
            if (!rc && m->side) rc = poll_stream(c, m->side, "finishing the async all-reduces");
            if (!rc) {
                ncclResult_t r = ncclCommFinalize(m->comm);
                if (r == ncclInProgress)
                    rc = settle(c, "finalize");
                else if (r != ncclSuccess)
                    rc = nccl_err(c, "finalize", r), ncclCommAbort(m->comm), m->aborted = 1;
            }
            if (!rc) ncclCommDestroy(m->comm);
        }
        if (m->ev_ready) cudaEventDestroy(m->ev_ready);
        if (m->ev_done) cudaEventDestroy(m->ev_done);
        if (m->side) cudaStreamDestroy(m->side);
        cudaFree(m->scratch);
        free(m);
    }
    free(c);
}

extern "C" int ft_comm_nccl(ft_comm **out, ft_ops *o, const ft_comm_nccl_options *opt, char *err,
                            size_t cap) {
    char dummy[8];
    if (!err || !cap) err = dummy, cap = sizeof dummy;
    cudaStream_t stream = (cudaStream_t)ft_ops_cuda_stream(o);
    if (!stream) {
        snprintf(err, cap, "the NCCL transport needs the CUDA backend (device=cuda), not '%s'",
                 o ? o->name : "(null)");
        return FT_EARG;
    }
    int rank = opt->rank, world = opt->world;
    const char *prog = opt->prog ? opt->prog : "facetrain";
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    ncclResult_t r;
    if (rank == 0 && (r = ncclGetUniqueId(&id)) != ncclSuccess) {
        snprintf(err, cap, "rank 0: ncclGetUniqueId: %s", ncclGetErrorString(r));
        return FT_EDEVICE;
    }
    int rc = 0;
    if (world > 1 && opt->boot) {
        /* the id through the MPI comm: a device buffer of the backend, staged by the transport */
        void *d = NULL;
        rc = o->alloc(o, sizeof id, &d);
        if (!rc) rc = o->upload(o, d, &id, sizeof id);
        if (!rc) rc = opt->boot->broadcast(opt->boot, o, d, sizeof id, 0);
        if (!rc) rc = o->download(o, &id, d, sizeof id);
        o->free(o, d);
        if (rc) {
            snprintf(err, cap, "the NCCL id did not arrive over MPI: %s", ft_strerror(rc));
            return rc;
        }
    } else if (world > 1) {
        rc = ft_rendezvous(rank, world, opt->addr, opt->port,
                           opt->timeout_s > 0 ? opt->timeout_s : 300.0, &id, sizeof id, err, cap);
        if (rc) return rc;
    }
    ft_comm *c = (ft_comm *)calloc(1, sizeof *c);
    nccl_impl *m = (nccl_impl *)calloc(1, sizeof *m);
    if (!c || !m) {
        free(c), free(m);
        snprintf(err, cap, "out of memory");
        return -ENOMEM;
    }
    c->impl = m, c->name = "nccl", c->rank = rank, c->world = world;
    c->destroy = n_destroy;
    c->all_reduce = n_all_reduce;
    c->all_gather = n_all_gather;
    c->broadcast = n_broadcast;
    c->barrier = n_barrier;
    c->reduce_scatter = n_reduce_scatter;
    c->all_reduce_async = n_all_reduce_async;
    c->wait = n_wait;
    c->set_timeout = n_set_timeout;
    c->sync = n_sync;
    c->stream = stream;
    m->stream = stream, m->prog = prog;
    m->timeout_s = opt->timeout_s > 0 ? opt->timeout_s : 300.0;
    cudaError_t ce = cudaMalloc(&m->scratch, sizeof(float));
    if (ce == cudaSuccess) ce = cudaStreamCreateWithFlags(&m->side, cudaStreamNonBlocking);
    if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&m->ev_ready, cudaEventDisableTiming);
    if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&m->ev_done, cudaEventDisableTiming);
    if (ce != cudaSuccess) {
        snprintf(err, cap, "the NCCL transport's stream and buffers: %s", cudaGetErrorString(ce));
        n_destroy(c);
        return FT_EDEVICE;
    }
    cudaMemsetAsync(m->scratch, 0, sizeof(float), stream);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0; /* polled with the timeout below, never a hang */
    m->comm = NULL;
    r = ncclCommInitRankConfig(&m->comm, world, id, rank, &config);
    if (r == ncclInProgress) {
        if (settle_msg(c, "initialization", err, cap)) {
            n_destroy(c);
            return FT_EDEVICE;
        }
    } else if (r != ncclSuccess) {
        snprintf(err, cap, "ncclCommInitRankConfig: %s", ncclGetErrorString(r));
        if (m->comm) ncclCommAbort(m->comm);
        m->comm = NULL;
        n_destroy(c);
        return FT_EDEVICE;
    }
    *out = c;
    return 0;
}

extern "C" int ft_comm_have_nccl(void) {
    return 1;
}
