/* comm.h: collectives between the ranks of a training job (a vtable, one per transport).
 *
 * Partial FC reduces its softmax statistics across class shards, the data-parallel backbone
 * averages gradients, rank 0's initial weights are broadcast: all through an ft_comm. Buffers
 * live in device memory of the backend passed with each call; a transport that cannot reach
 * device memory stages through the host with o->download / o->upload.
 *
 * Implementations: single rank (every collective is the identity; ft_comm_single), ranks
 * as threads of one process (ft_comm_threads_*, for tests: reductions in rank order, so every
 * rank gets bit-identical results) and MPI (ft_comm_mpi, CPU ranks, mpi.c; built when CMake
 * finds MPI). NCCL (GPU ranks) fills the same table: its calls are enqueued on `stream` (the
 * backend's stream) and the async variants return at once; `wait` completes them. On a host
 * transport the async variants may run at once (single, threads) or be started as
 * non-blocking requests (MPI_Iallreduce) that `wait` completes.
 * A device transport can be recorded in a CUDA graph (ft_comm_recordable).
 * Every rank of a group must make the same calls in the same order; a call returns 0 or a
 * negative status on every rank (a failing rank still takes part, so peers never hang). A
 * transport that can lose a peer (MPI across processes) ends the process after `timeout_s`
 * without an answer, with one line naming the rank and the collective (see ft_comm_mpi).
 */
#ifndef FT_COMM_H
#define FT_COMM_H

#include <stddef.h>

#include "ops.h"

typedef enum ft_comm_op { FT_COMM_SUM = 0, FT_COMM_MAX = 1 } ft_comm_op;

typedef struct ft_comm ft_comm;
struct ft_comm {
    const char *name; /* "single", "threads", "mpi", "nccl" */
    int rank, world;
    void *impl;
    void (*destroy)(ft_comm *c);
    /* in place over count elements of dtype FT_F32 or FT_F64 */
    int (*all_reduce)(ft_comm *c, ft_ops *o, void *dev, size_t count, ft_dtype dt, ft_comm_op op);
    /* recv[r * bytes .. ) = rank r's send, for every r (recv holds world * bytes) */
    int (*all_gather)(ft_comm *c, ft_ops *o, const void *send, void *recv, size_t bytes);
    /* dev = root's dev on every rank */
    int (*broadcast)(ft_comm *c, ft_ops *o, void *dev, size_t bytes, int root);
    int (*barrier)(ft_comm *c);
    /* recv[0 .. count) = sum over ranks r of r's send[rank * count .. (rank + 1) * count):
     * send holds world * count elements of dtype FT_F32 or FT_F64 (the backward of an
     * all_gather of fixed blocks); recv must not overlap send */
    int (*reduce_scatter)(ft_comm *c, ft_ops *o, const void *send, void *recv, size_t count,
                          ft_dtype dt);
    /* all_reduce started; dev must not be touched until wait() returns (bucketed gradient
     * reduction overlapping the rest of backward) */
    int (*all_reduce_async)(ft_comm *c, ft_ops *o, void *dev, size_t count, ft_dtype dt,
                            ft_comm_op op);
    /* completes every async call started so far; returns the first error among them */
    int (*wait)(ft_comm *c);
    /* optional (NULL: nothing to do): lets the async calls started so far advance without
     * waiting for them (MPI_Testall: Open MPI moves a non-blocking collective on only inside
     * MPI calls); the data-parallel buckets call it between backward's layers */
    int (*progress)(ft_comm *c);
    /* the timeout of later collectives (seconds, <= 0: none), e.g. lifted while rank 0 alone
     * runs a long verification; a no-op where no peer can be lost */
    int (*set_timeout)(ft_comm *c, double seconds);
    /* optional (NULL: a host transport, whose calls are complete when they return or when
     * `wait` returns): waits until every collective queued on `stream` so far has completed,
     * those of a launched CUDA graph included, polling the transport's errors with the
     * timeout (a lost peer ends the wait with one line, never a hang) */
    int (*sync)(ft_comm *c);
    void *stream; /* NCCL: the backend stream the calls are enqueued on; NULL for host ones */
};

/* 1 when a CUDA graph can record c's collectives: they are enqueued on the backend's stream,
 * and while that stream captures, the blocking ones return without waiting (a capture forbids
 * waits) and `wait` only joins the async ones; after a launch, `sync` waits for them. */
int ft_comm_recordable(const ft_comm *c);

void ft_comm_free(ft_comm *c); /* NULL-safe */

/* One rank: rank 0 of world 1. */
int ft_comm_single(ft_comm **out);

/* `world` ranks as threads of this process: create the group, hand ft_comm_threads_rank(g, r)
 * to the thread of rank r, free the group after every thread is done (the ranks' tables are
 * owned by the group: do not ft_comm_free them). */
typedef struct ft_comm_group ft_comm_group;
int ft_comm_threads_create(int world, ft_comm_group **out);
ft_comm *ft_comm_threads_rank(ft_comm_group *g, int rank);
/* collectives rank r has taken part in so far (tests check the call pattern) */
long ft_comm_threads_calls(const ft_comm_group *g, int rank);
void ft_comm_threads_free(ft_comm_group *g);

/* ---- MPI (CPU ranks of one MPI job: mpirun / mpiexec / srun --mpi) ---- */

/* 1 when this build has the MPI transport. */
int ft_comm_have_mpi(void);
/* The transports this build has, e.g. "single threads mpi". */
const char *ft_comm_backends(void);

typedef struct ft_comm_mpi_options {
    double timeout_s; /* a collective without an answer for this long ends the process
                         (exit 1, one line naming the rank); <= 0: never. Default 300. */
    const char *prog; /* the name the timeout line starts with ("ft-train") */
    /* Several MPI jobs joined into one (ft-launch: one mpirun per node, an ompi-server shared
     * by all): join_nodes > 1 jobs of equal size, this one node join_node; node 0's rank 0
     * opens an MPI port and publishes it as join_service, the other nodes look it up and
     * connect; the intercommunicators are merged and the ranks ordered node by node (rank =
     * join_node * job size + rank in the job). 0 or 1: MPI_COMM_WORLD alone. */
    int join_nodes, join_node;
    const char *join_service;
} ft_comm_mpi_options;
void ft_comm_mpi_options_init(ft_comm_mpi_options *o);

/* ---- NCCL (GPU ranks, one GPU each, on the CUDA backend's stream; nccl.cu) ---- */

/* 1 when this build has the NCCL transport (the CUDA backend and nccl.h were found). */
int ft_comm_have_nccl(void);

typedef struct ft_comm_nccl_options {
    int rank, world;  /* this rank of world (from the launcher) */
    double timeout_s; /* the init (every rank joined) or a collective not done in this long
                         aborts the communicator, with one line naming the rank (300) */
    const char *prog; /* the name error lines start with */
    /* the bootstrap of NCCL's unique id: rank 0's id broadcast over boot (an MPI comm of the
     * same ranks) when MPI started the job, else the TCP rendezvous (rendezvous.h) with rank
     * 0 at addr:port */
    ft_comm *boot;
    const char *addr;
    int port;
} ft_comm_nccl_options;

/* A communicator of opt->world ranks on o's CUDA stream (o must be the CUDA backend); a
 * nonblocking one, so its init is bounded by opt->timeout_s. On failure err holds the reason
 * (without this rank's number where the caller's line names it). */
int ft_comm_nccl(ft_comm **out, ft_ops *o, const ft_comm_nccl_options *opt, char *err, size_t cap);

/* Initialize MPI (once per process) and join MPI_COMM_WORLD: rank and world from MPI.
 * FT_ENOTSUP with a reason in err when the build has no MPI. ft_comm_free finalizes MPI. */
int ft_comm_mpi(ft_comm **out, const ft_comm_mpi_options *opt, char *err, size_t cap);

#endif
