/* ranks.c: ft-train as one rank of a distributed job (docs/distributed.md): where rank and
 * world come from, the collectives' transport, the checks every rank makes at start, and the
 * agreements the loop needs (stop, fp16 skip, checkpoint commit). See run.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ft_common.h"
#include "run.h"

/* ------------------------------------------------------------------ environment */

static int env_int(const char *name, int *v) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long x = strtol(s, &end, 10);
    if (*end || x < 0 || x > INT_MAX) return -1;
    *v = (int)x;
    return 1;
}

/* The launcher that started this process and what it says (rank, world, local rank). */
typedef struct launch_env {
    const char *launcher; /* "mpirun", "srun", "ft-launch", NULL: none */
    const char *vars;     /* the variables read, for messages */
    int rank, world, local, local_world;
} launch_env;

static int read_env(launch_env *e, char *err, size_t cap) {
    static const struct {
        const char *launcher, *rank, *world, *local, *local_world;
    } SRC[] = {
        {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
         "OMPI_COMM_WORLD_LOCAL_SIZE"},
        {"srun", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"},
        {"ft-launch", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"},
    };
    *e = (launch_env){NULL, NULL, 0, 1, 0, 1};
    /* ft-launch starts one mpirun per node, whose ranks carry its variables: those first */
    size_t first = getenv("FT_LAUNCH_NNODES") ? 2 : 0;
    for (size_t i = first; i < sizeof SRC / sizeof SRC[0]; i++) {
        int rank = 0, world = 1;
        int hr = env_int(SRC[i].rank, &rank), hw = env_int(SRC[i].world, &world);
        if (hr == 0 && hw == 0) continue;
        /* srun sets SLURM_PROCID in a batch script's own shell too: only a step counts */
        if (i == 1 && !getenv("SLURM_STEP_ID")) continue;
        if (hr < 0 || hw < 0 || hr == 0 || hw == 0 || world < 1 || rank >= world) {
            snprintf(err, cap, "%s=%s and %s=%s (from %s) do not name a rank of a world",
                     SRC[i].rank, getenv(SRC[i].rank) ? getenv(SRC[i].rank) : "(unset)",
                     SRC[i].world, getenv(SRC[i].world) ? getenv(SRC[i].world) : "(unset)",
                     SRC[i].launcher);
            return FT_EARG;
        }
        e->launcher = SRC[i].launcher;
        e->rank = rank, e->world = world;
        if (env_int(SRC[i].local, &e->local) <= 0) e->local = 0;
        if (env_int(SRC[i].local_world, &e->local_world) <= 0) e->local_world = 1;
        static char vars[160];
        snprintf(vars, sizeof vars, "%s/%s", SRC[i].rank, SRC[i].world);
        e->vars = vars;
        return 0;
    }
    return 0;
}

int ft_run_env_rank(void) {
    launch_env e;
    char err[256];
    return read_env(&e, err, sizeof err) ? 0 : e.rank;
}

/* ------------------------------------------------------------------ start */

/* FNV-1a over the resolved config's training.log lines */
static uint64_t config_hash(const ft_config *c) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < c->n_entries; i++) {
        char line[8192];
        size_t n = ft_config_line(c, i, line, sizeof line);
        for (size_t k = 0; k < n && k < sizeof line; k++)
            h = (h ^ (uint8_t)line[k]) * 0x100000001b3ull;
        h = (h ^ '\n') * 0x100000001b3ull;
    }
    return h;
}

/* Every rank's config hash against rank 0's: a mismatch fails every rank, naming the first
 * rank that differs. */
static int check_same_config(ft_run *r) {
    ft_comm *c = r->dist.comm;
    uint64_t mine = config_hash(&r->cfg);
    uint64_t *all = calloc((size_t)c->world, sizeof *all);
    if (!all) return ft_run_fail(r, -ENOMEM, "out of memory");
    /* host values go through a CPU table (host_ops): the model's backend may be a device */
    int rc = c->all_gather(c, r->dist.host_ops, &mine, all, sizeof mine);
    if (rc) {
        free(all);
        return ft_run_fail(r, rc, "exchanging the config hash: %s", ft_strerror(rc));
    }
    for (int k = 1; k < c->world; k++)
        if (all[k] != all[0]) {
            rc = ft_run_fail(r, FT_EARG,
                             "rank %d's resolved config differs from rank 0's (hash %016llx vs "
                             "%016llx): every rank must get the same CONFIG file and key=value "
                             "overrides (ft-train --check-config shows the resolved config)",
                             k, (unsigned long long)all[k], (unsigned long long)all[0]);
            break;
        }
    free(all);
    return rc;
}

int ft_run_dist_init(ft_run *r) {
    char err[512];
    launch_env e;
    int rc = read_env(&e, err, sizeof err);
    if (rc) return ft_run_fail(r, rc, "%s", err);
    snprintf(r->dist.launcher, sizeof r->dist.launcher, "%s", e.launcher ? e.launcher : "none");
    r->dist.local_rank = e.local, r->dist.local_world = e.local_world;
    if (e.world == 1) {
        if ((rc = ft_comm_single(&r->dist.comm))) return ft_run_fail(r, rc, "out of memory");
        r->rank = 0, r->world = 1;
        return 0;
    }
    if (!ft_comm_have_mpi())
        return ft_run_fail(r, FT_ENOTSUP,
                           "started as rank %d of %d by %s (%s), but this build has no MPI "
                           "transport (collectives: %s); install libopenmpi-dev and rebuild",
                           e.rank, e.world, e.launcher, e.vars, ft_comm_backends());
    int nnodes = 1, node = 0;
    if (strcmp(e.launcher, "ft-launch") == 0 &&
        (!getenv("OMPI_COMM_WORLD_SIZE") || env_int("FT_LAUNCH_NNODES", &nnodes) <= 0 ||
         env_int("FT_LAUNCH_NODE_RANK", &node) <= 0 || nnodes < 1 || node >= nnodes))
        return ft_run_fail(r, FT_ENOTSUP,
                           "RANK/WORLD_SIZE say rank %d of %d, but the process was not started "
                           "by mpirun, srun or ft-launch: start CPU ranks with ft-launch or "
                           "mpirun -np N ft-train ... (docs/distributed.md)",
                           e.rank, e.world);
    /* srun starts the ranks itself; Open MPI's MPI_Init then needs Slurm's PMIx server, and
     * without it aborts with a page about rebuilding MPI */
    if (strcmp(e.launcher, "srun") == 0 && !getenv("PMIX_NAMESPACE") && !getenv("PMIX_RANK"))
        return ft_run_fail(r, FT_ENOTSUP,
                           "started by srun as rank %d of %d without PMIx (PMIX_NAMESPACE is "
                           "unset): run srun --mpi=pmix ft-train ... (or set MpiDefault=pmix in "
                           "slurm.conf)",
                           e.rank, e.world);
    ft_comm_mpi_options mo;
    ft_comm_mpi_options_init(&mo);
    mo.prog = FT_TRAIN_PROG;
    mo.timeout_s = r->cfg.dist_timeout;
    char service[160];
    if (nnodes > 1) {
        const char *a = getenv("MASTER_ADDR"), *p = getenv("MASTER_PORT");
        snprintf(service, sizeof service, "facetrain-%s-%s", a ? a : "", p ? p : "");
        mo.join_nodes = nnodes, mo.join_node = node, mo.join_service = service;
    }
    if ((rc = ft_comm_mpi(&r->dist.comm, &mo, err, sizeof err)))
        return ft_run_fail(r, rc, "%s", err);
    ft_comm *c = r->dist.comm;
    r->rank = c->rank, r->world = c->world;
    if (c->world != e.world || c->rank != e.rank)
        return ft_run_fail(r, FT_EARG,
                           "%s says rank %d of %d (%s) but MPI has rank %d of %d: the ranks "
                           "were not started as one job",
                           e.launcher, e.rank, e.world, e.vars, c->rank, c->world);
    ft_ops_options opts;
    ft_ops_options_init(&opts);
    opts.threads = 1;
    if ((rc = ft_ops_create("cpu", &opts, &r->dist.host_ops, err, sizeof err)))
        return ft_run_fail(r, rc, "%s", err);
    return check_same_config(r);
}

/* Every rank's backend and device against the others': the same backend on every rank
 * (device='auto' finds a GPU on one node and none on another: the ranks would not meet in
 * one transport) and, for GPUs, no two ranks on one GPU (NCCL refuses that, less clearly).
 * A mismatch fails every rank with one line naming the ranks. */
typedef struct rank_device {
    char backend[16];
    char id[304]; /* ft_ops_device_id */
} rank_device;

static int check_devices(ft_run *r) {
    ft_comm *c = r->dist.comm;
    rank_device mine;
    memset(&mine, 0, sizeof mine);
    snprintf(mine.backend, sizeof mine.backend, "%s", r->model.ops->name);
    int rc = ft_ops_device_id(r->model.ops, mine.id, sizeof mine.id);
    rank_device *all = calloc((size_t)c->world, sizeof *all);
    if (!all) return ft_run_fail(r, -ENOMEM, "out of memory");
    if (!rc) rc = c->all_gather(c, r->dist.host_ops, &mine, all, sizeof mine);
    if (rc) {
        free(all);
        return ft_run_fail(r, rc, "exchanging the ranks' devices: %s", ft_strerror(rc));
    }
    for (int k = 0; k < c->world && !rc; k++) {
        all[k].backend[sizeof all[k].backend - 1] = all[k].id[sizeof all[k].id - 1] = '\0';
        if (strcmp(all[k].backend, all[0].backend) != 0)
            rc = ft_run_fail(r, FT_EARG,
                             "rank %d trains on the %s backend, rank 0 on %s: every rank needs "
                             "the same device (with device='auto' a rank without a visible GPU "
                             "falls back to the CPU; set device='cuda' to make that an error)",
                             k, all[k].backend, all[0].backend);
        for (int j = 0; j < k && !rc; j++)
            if (all[k].id[0] && strcmp(all[k].id, all[j].id) == 0)
                rc = ft_run_fail(r, FT_EARG,
                                 "ranks %d and %d are on the same GPU (%s): each rank needs its "
                                 "own (one GPU per local rank, or CUDA_VISIBLE_DEVICES set per "
                                 "rank)",
                                 j, k, all[k].id);
    }
    free(all);
    return rc;
}

int ft_run_dist_build(ft_run *r) {
    r->dist.dev = r->dist.comm;
    if (r->world == 1) return 0;
    ft_ops *o = r->model.ops;
    int rc = check_devices(r);
    if (rc) return rc;
    /* GPU ranks: the step's collectives over NCCL on the backend's stream, its id broadcast
     * over MPI; the host agreements stay on MPI */
    if (strcmp(o->name, "cuda") == 0 && ft_comm_have_nccl()) {
        char err[512];
        ft_comm_nccl_options no = {.rank = r->rank,
                                   .world = r->world,
                                   .timeout_s = r->cfg.dist_timeout,
                                   .prog = FT_TRAIN_PROG,
                                   .boot = r->dist.comm};
        if ((rc = ft_comm_nccl(&r->dist.nccl, o, &no, err, sizeof err)))
            return ft_run_fail(r, rc, "%s", err);
        r->dist.dev = r->dist.nccl;
    }
    ft_comm *c = r->dist.dev;
    ft_pfc_set_comm(r->model.pfc, c);
    if ((rc = ft_dp_broadcast_model(c, o, r->model.net)))
        return ft_run_fail(r, rc, "broadcasting rank 0's initial weights: %s", ft_strerror(rc));
    if ((rc = ft_dp_create(c, o, r->model.net, FT_DP_BUCKET_BYTES, &r->dist.dp)) ||
        (rc = ft_dpfc_create(c, o, r->cfg.batch_size, r->cfg.embedding_size, &r->dist.dpfc)))
        return ft_run_fail(r, rc, "distributed buffers: %s", ft_strerror(rc));
    ft_dp_set_overlap(r->dist.dp, r->cfg.ddp_overlap);
    if ((rc = ft_dp_set_inplace(r->dist.dp, r->cfg.ddp_bucket_view)))
        return ft_run_fail(r, rc, "distributed buffers: %s", ft_strerror(rc));
    return 0;
}

void ft_run_dist_free(ft_run *r) {
    ft_dpfc_free(r->dist.dpfc);
    ft_dp_free(r->dist.dp);
    ft_comm_free(r->dist.nccl);
    r->dist.dpfc = NULL, r->dist.dp = NULL, r->dist.nccl = NULL, r->dist.dev = r->dist.comm;
}

void ft_run_dist_close(ft_run *r) {
    ft_comm_free(r->dist.comm);
    ft_ops_free(r->dist.host_ops);
    r->dist.comm = NULL, r->dist.host_ops = NULL;
}

/* ------------------------------------------------------------------ agreements */

int ft_run_dist_any(ft_run *r, int mine, int *any) {
    *any = mine;
    if (r->world == 1) return 0;
    ft_comm *c = r->dist.comm;
    float v = mine ? 1.0f : 0.0f;
    int rc = c->all_reduce(c, r->dist.host_ops, &v, 1, FT_F32, FT_COMM_MAX);
    if (rc) return ft_run_fail(r, rc, "all_reduce: %s", ft_strerror(rc));
    *any = v > 0;
    return 0;
}

/* rank 0's status after a phase only rank 0 runs (verification); the other ranks wait without
 * the collectives' timeout, rank 0 always answers unless it died (then the launcher ends the
 * job) */
int ft_run_dist_rank0_status(ft_run *r, int rc0) {
    if (r->world == 1) return rc0;
    ft_comm *c = r->dist.comm;
    int32_t v[2] = {rc0, r->stats.stopped};
    c->set_timeout(c, 0);
    int rc = c->broadcast(c, r->dist.host_ops, v, sizeof v, 0);
    c->set_timeout(c, r->cfg.dist_timeout);
    if (rc) return ft_run_fail(r, rc, "broadcast: %s", ft_strerror(rc));
    if (r->rank != 0 && v[0] && v[0] != FT_ESTOP)
        return ft_run_fail(r, v[0], "rank 0 failed (%s); stopping", ft_strerror(v[0]));
    if (r->rank != 0 && v[1]) r->stats.stopped = 1;
    return r->rank == 0 ? rc0 : v[0] == FT_ESTOP ? FT_ESTOP : 0;
}

double ft_run_dist_comm_seconds(const ft_run *r) {
    return (r->dist.dp ? ft_dp_comm_seconds(r->dist.dp) : 0) +
           (r->dist.dpfc ? ft_dpfc_comm_seconds(r->dist.dpfc) : 0);
}

/* ------------------------------------------------------------------ checkpoint manifest */

int ft_run_write_manifest(ft_run *r) {
    char path[PATH_MAX], tmp[PATH_MAX + 16];
    if (ft_path_join(path, sizeof path, r->cfg.output, FT_RUN_MANIFEST))
        return ft_run_fail(r, FT_ERANGE, "%s: path too long", r->cfg.output);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return ft_run_fail(r, -errno, "%s: cannot create: %s", tmp, strerror(errno));
    fprintf(f, "{\"format\": \"facetrain-checkpoint\", \"global_step\": %lld, \"world_size\": %d, ",
            (long long)r->pos.global_step, r->world);
    fprintf(f, "\"files\": [");
    for (int k = 0; k < r->world; k++) {
        char names[3][FT_CKPT_NAME_CAP];
        int n = ft_ckpt_rank_files(names, k, r->world);
        for (int i = 0; i < n; i++) fprintf(f, "%s\"%s\"", k || i ? ", " : "", names[i]);
    }
    fprintf(f, "]}\n");
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ft_run_fail(r, -e, "%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}

/* The manifest's step and world size: 0, or -ENOENT when there is none, or FT_EFORMAT. */
int ft_run_read_manifest(ft_run *r, int64_t *step, int *world) {
    char path[PATH_MAX], buf[512];
    if (ft_path_join(path, sizeof path, r->cfg.output, FT_RUN_MANIFEST))
        return ft_run_fail(r, FT_ERANGE, "%s: path too long", r->cfg.output);
    FILE *f = fopen(path, "r");
    if (!f && errno == ENOENT) return -ENOENT;
    if (!f) return ft_run_fail(r, -errno, "%s: cannot open: %s", path, strerror(errno));
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    long long s;
    const char *p = strstr(buf, "\"global_step\": "), *q = strstr(buf, "\"world_size\": ");
    if (!p || !q || sscanf(p + 15, "%lld", &s) != 1 || sscanf(q + 14, "%d", world) != 1 || s < 0 ||
        *world < 1)
        return ft_run_fail(r, FT_EFORMAT, "%s: not a facetrain checkpoint manifest", path);
    *step = s;
    return 0;
}
