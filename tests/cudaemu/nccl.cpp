/* nccl.cpp: the emulator's NCCL: communicators between processes (one emulated GPU each) of
 * one machine, through a shared-memory segment named by the unique id.
 *
 * A collective is queued on its stream like a kernel (emu::enqueue_poll) and runs when that
 * stream runs, in chunks of at most SLOT bytes per rank: each rank copies its chunk into its
 * slot, waits until every rank has (a barrier: each rank publishes how many barriers it has
 * reached), computes its result from all slots, and waits again before the slots are reused.
 * Every rank reduces the slots in rank order, so all ranks get the same bits, as NCCL's
 * all-reduce gives every rank the same result. While a collective waits for its peers it is
 * not done: a stream query says cudaErrorNotReady, as for a collective running on a GPU. A peer
 * that is gone (its process ended) or that aborted its communicator makes
 * ncclCommGetAsyncError report ncclRemoteError; the collective then never completes, as on
 * GPUs, until ncclCommAbort drops it.
 *
 * Nonblocking communicators (ncclCommInitRankConfig with config.blocking = 0) behave as
 * NCCL documents them: the init returns ncclInProgress and the communicator is usable only
 * once ncclCommGetAsyncError has reported ncclSuccess (every rank joined); the first
 * collective on it returns ncclInProgress too (NCCL connects peers on first use) and is not on
 * its stream until a poll of ncclCommGetAsyncError has seen it through, so a caller that waits
 * on the stream without polling reads stale data; ncclCommFinalize returns ncclInProgress
 * until a poll. Any other call on a communicator in progress is ncclInvalidUsage.
 * FT_CUDA_EMU_NCCL_UNREACHABLE=1 in a rank's environment: its bootstrap never reaches the
 * others (a firewalled port, a wrong NCCL_SOCKET_IFNAME): it never joins, so every init of
 * that unique id waits (nonblocking: stays in progress; blocking: FT_CUDA_EMU_HANG_S).
 *
 * A collective queued on a capturing stream is recorded (NCCL's collectives can be captured in
 * CUDA graphs): each launch of the graph runs it again, with the arguments of its capture.
 *
 * Arguments are checked as NCCL checks them (ranks, counts, types, ops, a live communicator)
 * and every buffer against the device memory it must cover (recvbuff of an all-gather:
 * nranks * sendcount elements).
 */
#include <fcntl.h>
#include <nccl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "emu.h"

extern "C" {
#include "ft_common.h" /* ft_now */
}

namespace {

const size_t SLOT = (size_t)4 << 20;
const int MAXR = 256;
const uint32_t MAGIC = 0x4e43434cu; /* "NCCL" */

struct shm_hdr {
    uint32_t magic;
    int32_t nranks;
    std::atomic<int32_t> joined;
    std::atomic<int32_t> aborted_by; /* rank + 1 of a rank that aborted */
    std::atomic<int32_t> pid[MAXR];
    std::atomic<uint64_t> seq[MAXR]; /* barriers each rank has reached */
};
const size_t HDR = (sizeof(shm_hdr) + 4095) / 4096 * 4096;

/* the process is gone: no such pid, or a zombie nobody has reaped yet */
bool gone(pid_t p) {
    if (p <= 0) return false;
    if (kill(p, 0) != 0) return errno == ESRCH;
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)p);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *e = strrchr(buf, ')'); /* "pid (comm) S ..." */
    return e && e[1] == ' ' && (e[2] == 'Z' || e[2] == 'X');
}

} // namespace

struct ncclComm {
    int rank = 0, nranks = 0;
    shm_hdr *h = nullptr;
    char *base = nullptr;
    size_t bytes = 0;
    uint64_t nbar = 0;    /* barriers this rank has reached */
    bool aborted = false; /* ncclCommAbort or ncclCommDestroy: queued work is dropped */
    ncclResult_t async = ncclSuccess;
    bool nonblocking = false;
    enum { READY, JOINING, CONNECTING, FINALIZING } state = READY; /* nonblocking: in progress */
    bool connected = false;        /* a nonblocking comm's first collective was seen through */
    std::function<void()> pending; /* that collective's enqueue, done by the poll */
    const char *id_name = nullptr; /* rank 0 unlinks the segment when all have joined */
    char id_buf[NCCL_UNIQUE_ID_BYTES] = {};
    double last_check = 0;
    std::string last_error;
    char *slot(int r) {
        return base + HDR + (size_t)r * SLOT;
    }
};

namespace {

/* communicators are never freed: work still queued may name one after abort */
std::vector<ncclComm *> &g_comms = *new std::vector<ncclComm *>;

ncclResult_t fail(ncclComm *c, ncclResult_t r, const char *api, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
ncclResult_t fail(ncclComm *c, ncclResult_t r, const char *api, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emu::diag(api, "%s", msg);
    if (c) c->last_error = msg;
    return r;
}

/* have all ranks reached barrier k? Notices peers that are gone or aborted. */
bool all_reached(ncclComm *c, uint64_t k) {
    bool all = true;
    for (int r = 0; r < c->nranks; r++)
        if (c->h->seq[r].load(std::memory_order_acquire) < k) all = false;
    if (all) return true;
    double t = ft_now();
    if (c->async == ncclSuccess && t - c->last_check > 0.05) {
        c->last_check = t;
        int ab = c->h->aborted_by.load();
        if (ab) {
            c->async = ncclRemoteError;
            c->last_error = "rank " + std::to_string(ab - 1) + " aborted the communicator";
        }
        for (int r = 0; r < c->nranks && c->async == ncclSuccess; r++) {
            if (c->h->seq[r].load() >= k) continue;
            pid_t p = c->h->pid[r].load();
            if (gone(p)) {
                c->async = ncclRemoteError;
                c->last_error =
                    "rank " + std::to_string(r) + " (pid " + std::to_string(p) + ") is gone";
            }
        }
    }
    return false;
}

size_t type_size(ncclDataType_t t) {
    switch (t) {
    case ncclInt8:
    case ncclUint8:
        return 1;
    case ncclFloat16:
    case ncclBfloat16:
        return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
        return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
        return 8;
    default:
        return 0;
    }
}

template <class T> T red(ncclRedOp_t op, T a, T b) {
    switch (op) {
    case ncclProd:
        return (T)(a * b);
    case ncclMax:
        return a > b ? a : b;
    case ncclMin:
        return a < b ? a : b;
    default:
        return (T)(a + b); /* ncclSum, ncclAvg (divided at the end) */
    }
}

/* out[j] = op over ranks r (in order) of src(r)[j], j < n */
template <class T>
void reduce_typed(ncclRedOp_t op, int nranks, const std::function<const char *(int)> &src, size_t n,
                  char *out) {
    for (size_t j = 0; j < n; j++) {
        T acc;
        memcpy(&acc, src(0) + j * sizeof(T), sizeof(T));
        for (int r = 1; r < nranks; r++) {
            T v;
            memcpy(&v, src(r) + j * sizeof(T), sizeof(T));
            acc = red(op, acc, v);
        }
        if (op == ncclAvg) acc = (T)(acc / (T)nranks);
        memcpy(out + j * sizeof(T), &acc, sizeof(T));
    }
}
void reduce16(ncclRedOp_t op, bool bf, int nranks, const std::function<const char *(int)> &src,
              size_t n, char *out) {
    for (size_t j = 0; j < n; j++) {
        float acc = 0;
        for (int r = 0; r < nranks; r++) {
            uint16_t v;
            memcpy(&v, src(r) + j * 2, 2);
            float f = bf ? emu::bf16_to_float(v) : emu::half_to_float(v);
            acc = r ? red(op, acc, f) : f;
        }
        if (op == ncclAvg) acc /= (float)nranks;
        uint16_t o = bf ? emu::float_to_bf16(acc) : emu::float_to_half(acc);
        memcpy(out + j * 2, &o, 2);
    }
}
void reduce(ncclDataType_t t, ncclRedOp_t op, int nranks,
            const std::function<const char *(int)> &src, size_t n, char *out) {
    switch (t) {
    case ncclInt8:
        reduce_typed<int8_t>(op, nranks, src, n, out);
        break;
    case ncclUint8:
        reduce_typed<uint8_t>(op, nranks, src, n, out);
        break;
    case ncclInt32:
        reduce_typed<int32_t>(op, nranks, src, n, out);
        break;
    case ncclUint32:
        reduce_typed<uint32_t>(op, nranks, src, n, out);
        break;
    case ncclInt64:
        reduce_typed<int64_t>(op, nranks, src, n, out);
        break;
    case ncclUint64:
        reduce_typed<uint64_t>(op, nranks, src, n, out);
        break;
    case ncclFloat32:
        reduce_typed<float>(op, nranks, src, n, out);
        break;
    case ncclFloat64:
        reduce_typed<double>(op, nranks, src, n, out);
        break;
    case ncclFloat16:
        reduce16(op, false, nranks, src, n, out);
        break;
    case ncclBfloat16:
        reduce16(op, true, nranks, src, n, out);
        break;
    default:
        break;
    }
}

enum kind { ALL_REDUCE, ALL_GATHER, BROADCAST, REDUCE_SCATTER };

struct coll {
    ncclComm *c;
    kind k;
    const char *send;
    char *recv;
    size_t count; /* elements: all-reduce, broadcast; per rank: all-gather, reduce-scatter */
    size_t es;
    ncclDataType_t t;
    ncclRedOp_t op;
    int root;
    size_t chunk; /* elements per chunk */
    size_t i = 0; /* next chunk */
    int phase = 0;
    uint64_t b = 0;

    size_t nchunks() const {
        return count ? (count + chunk - 1) / chunk : 0;
    }
    void write(size_t off, size_t n) {
        char *mine = c->slot(c->rank);
        switch (k) {
        case ALL_REDUCE:
        case ALL_GATHER:
            memcpy(mine, send + off * es, n * es);
            break;
        case BROADCAST:
            if (c->rank == root) memcpy(mine, send + off * es, n * es);
            break;
        case REDUCE_SCATTER:
            for (int d = 0; d < c->nranks; d++)
                memcpy(mine + (size_t)d * chunk * es, send + ((size_t)d * count + off) * es,
                       n * es);
            break;
        }
    }
    void read(size_t off, size_t n) {
        ncclComm *cc = c;
        switch (k) {
        case ALL_REDUCE:
            reduce(
                t, op, cc->nranks, [cc](int r) -> const char * { return cc->slot(r); }, n,
                recv + off * es);
            break;
        case ALL_GATHER:
            for (int r = 0; r < cc->nranks; r++)
                memmove(recv + ((size_t)r * count + off) * es, cc->slot(r), n * es);
            break;
        case BROADCAST:
            memmove(recv + off * es, cc->slot(root), n * es);
            break;
        case REDUCE_SCATTER: {
            size_t at = (size_t)cc->rank * chunk * es;
            reduce(
                t, op, cc->nranks, [cc, at](int r) -> const char * { return cc->slot(r) + at; }, n,
                recv + off * es);
            break;
        }
        }
    }
    /* one step: as far as the peers allow; true when done */
    bool step() {
        for (;;) {
            if (c->aborted) return true;
            if (i >= nchunks()) return true;
            size_t off = i * chunk, n = count - off < chunk ? count - off : chunk;
            if (phase == 0) {
                write(off, n);
                b = ++c->nbar;
                c->h->seq[c->rank].store(b, std::memory_order_release);
                phase = 1;
            }
            if (phase == 1) {
                if (!all_reached(c, b)) return false;
                read(off, n);
                b = ++c->nbar;
                c->h->seq[c->rank].store(b, std::memory_order_release);
                phase = 2;
            }
            if (phase == 2) {
                if (!all_reached(c, b)) return false;
                i++, phase = 0;
            }
        }
    }
};

ncclResult_t check_comm(ncclComm *c, const char *api) {
    if (!c) return fail(nullptr, ncclInvalidArgument, api, "comm is NULL");
    bool known = false;
    for (ncclComm *x : g_comms) known |= x == c;
    if (!known)
        return fail(nullptr, ncclInvalidArgument, api, "comm %p is not a communicator", (void *)c);
    if (c->aborted)
        return fail(c, ncclInvalidUsage, api, "the communicator was aborted or destroyed");
    if (c->state != ncclComm::READY)
        return fail(c, ncclInvalidUsage, api,
                    "the communicator's last call is still in progress (poll "
                    "ncclCommGetAsyncError until it is ncclSuccess first)");
    return ncclSuccess;
}

bool unreachable() {
    const char *v = getenv("FT_CUDA_EMU_NCCL_UNREACHABLE");
    return v && *v && strcmp(v, "0") != 0;
}

/* all ranks joined: the communicator is ready (or over-subscribed) */
ncclResult_t joined_all(ncclComm *c, const char *api) {
    if (c->h->joined.load() > c->nranks) {
        c->aborted = true;
        return fail(c, ncclInvalidUsage, api, "more than %d ranks joined this unique id",
                    c->nranks);
    }
    if (c->rank == 0) shm_unlink(c->id_buf); /* everybody has it mapped */
    return ncclSuccess;
}

ncclResult_t start(ncclComm *c, kind k, const char *api, const void *send, void *recv, size_t count,
                   ncclDataType_t t, ncclRedOp_t op, int root, cudaStream_t st) {
    ncclResult_t r = check_comm(c, api);
    if (r != ncclSuccess) return r;
    size_t es = type_size(t);
    if (!es) return fail(c, ncclInvalidArgument, api, "invalid data type %d", (int)t);
    bool reduces = k == ALL_REDUCE || k == REDUCE_SCATTER;
    if (reduces && (op < ncclSum || op > ncclAvg))
        return fail(c, ncclInvalidArgument, api, "invalid reduction op %d", (int)op);
    if (k == BROADCAST && (root < 0 || root >= c->nranks))
        return fail(c, ncclInvalidArgument, api, "root %d is not a rank of %d", root, c->nranks);
    if (!count) return ncclSuccess;
    size_t w = (size_t)c->nranks;
    size_t sbytes = (k == REDUCE_SCATTER ? w * count : count) * es;
    size_t rbytes = (k == ALL_GATHER ? w * count : count) * es;
    bool need_send = k != BROADCAST || c->rank == root;
    if (need_send && !emu::check_device(send, sbytes, api, "sendbuff"))
        return fail(c, ncclInvalidArgument, api, "sendbuff does not cover %zu bytes", sbytes);
    if (!emu::check_device(recv, rbytes, api, "recvbuff"))
        return fail(c, ncclInvalidArgument, api, "recvbuff does not cover %zu bytes", rbytes);
    coll proto;
    proto.c = c, proto.k = k, proto.send = (const char *)send, proto.recv = (char *)recv;
    proto.count = count, proto.es = es, proto.t = t, proto.op = op, proto.root = root;
    proto.chunk = SLOT / es / (k == REDUCE_SCATTER ? w : 1);
    /* one run of the collective (a graph's launches each make their own) */
    auto make = [proto]() -> std::function<bool()> {
        auto s = std::make_shared<coll>(proto);
        return [s]() { return s->step(); };
    };
    if (c->nonblocking && !c->connected) {
        /* the first collective of a nonblocking comm: in progress until polled */
        c->connected = true, c->state = ncclComm::CONNECTING, c->async = ncclInProgress;
        c->pending = [make, st, api]() { emu::enqueue_poll(st, api, make); };
        return ncclInProgress;
    }
    emu::enqueue_poll(st, api, make);
    return ncclSuccess;
}

} // namespace

extern "C" {

ncclResult_t ncclGetVersion(int *version) {
    if (!version) return ncclInvalidArgument;
    *version = NCCL_VERSION_CODE;
    return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    if (!id) return ncclInvalidArgument;
    memset(id, 0, sizeof *id);
    unsigned char rnd[12];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, rnd, sizeof rnd) != (ssize_t)sizeof rnd) {
        if (fd >= 0) close(fd);
        return fail(nullptr, ncclSystemError, "ncclGetUniqueId", "/dev/urandom: %s",
                    strerror(errno));
    }
    close(fd);
    char *p = id->internal;
    p += snprintf(p, 32, "/ftemu-nccl-");
    for (unsigned char b : rnd) p += snprintf(p, 3, "%02x", b);
    return ncclSuccess;
}

static ncclResult_t init_rank(ncclComm_t *out, int nranks, ncclUniqueId id, int rank,
                              bool nonblocking, const char *api) {
    if (!out) return fail(nullptr, ncclInvalidArgument, api, "comm is NULL");
    *out = nullptr;
    if (nranks < 1 || nranks > MAXR)
        return fail(nullptr, ncclInvalidArgument, api, "nranks %d (1..%d)", nranks, MAXR);
    if (rank < 0 || rank >= nranks)
        return fail(nullptr, ncclInvalidArgument, api, "rank %d of %d", rank, nranks);
    if (!emu::device_visible())
        return fail(nullptr, ncclUnhandledCudaError, api, "no CUDA device is visible");
    if (strncmp(id.internal, "/ftemu-nccl-", 12) != 0 ||
        !memchr(id.internal, 0, sizeof id.internal))
        return fail(nullptr, ncclInvalidArgument, api,
                    "the unique id was not made by ncclGetUniqueId (rank %d)", rank);
    size_t bytes = HDR + (size_t)nranks * SLOT;
    int fd = shm_open(id.internal, O_RDWR | O_CREAT, 0600);
    if (fd < 0)
        return fail(nullptr, ncclSystemError, api, "shm_open %s: %s", id.internal, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || ((size_t)st.st_size < bytes && ftruncate(fd, (off_t)bytes) != 0)) {
        close(fd);
        return fail(nullptr, ncclSystemError, api, "sizing %s: %s", id.internal, strerror(errno));
    }
    void *m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return fail(nullptr, ncclSystemError, api, "mmap %s: %s", id.internal, strerror(errno));
    ncclComm *c = new ncclComm;
    c->rank = rank, c->nranks = nranks, c->base = (char *)m, c->bytes = bytes;
    c->h = (shm_hdr *)m;
    c->nonblocking = nonblocking;
    memcpy(c->id_buf, id.internal, sizeof c->id_buf);
    g_comms.push_back(c);
    if (!unreachable()) {
        c->h->pid[rank].store((int32_t)getpid());
        int joined = c->h->joined.fetch_add(1) + 1;
        if (joined == 1) c->h->nranks = nranks, c->h->magic = MAGIC;
    }
    if (nonblocking) {
        /* NCCL hands the communicator out at once; ncclCommGetAsyncError says when it is up */
        c->state = ncclComm::JOINING, c->async = ncclInProgress;
        *out = c;
        return ncclInProgress;
    }
    /* every rank blocks until all have joined, as NCCL's bootstrap does */
    double t0 = ft_now(), hang = emu::hang_seconds();
    while (c->h->joined.load() < nranks) {
        if (ft_now() - t0 > hang) {
            c->aborted = true;
            return fail(c, ncclSystemError, api, "rank %d: %d of %d ranks joined in %.0f s", rank,
                        c->h->joined.load(), nranks, hang);
        }
        usleep(1000);
    }
    ncclResult_t r = joined_all(c, api);
    if (r != ncclSuccess) return r;
    *out = c;
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *out, int nranks, ncclUniqueId id, int rank) {
    return init_rank(out, nranks, id, rank, false, "ncclCommInitRank");
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t *out, int nranks, ncclUniqueId id, int rank,
                                    ncclConfig_t *config) {
    const char *api = "ncclCommInitRankConfig";
    int blocking = 1;
    if (config) {
        /* NCCL refuses a config that did not start as NCCL_CONFIG_INITIALIZER */
        if (config->magic != 0xcafebeef || config->size != sizeof(ncclConfig_t))
            return fail(nullptr, ncclInvalidArgument, api,
                        "the config was not initialized with NCCL_CONFIG_INITIALIZER");
        if (config->blocking != NCCL_CONFIG_UNDEF_INT) {
            if (config->blocking != 0 && config->blocking != 1)
                return fail(nullptr, ncclInvalidArgument, api, "config.blocking %d (0 or 1)",
                            config->blocking);
            blocking = config->blocking;
        }
    }
    return init_rank(out, nranks, id, rank, blocking == 0, api);
}

ncclResult_t ncclCommFinalize(ncclComm_t c) {
    ncclResult_t r = check_comm(c, "ncclCommFinalize");
    if (r != ncclSuccess) return r;
    emu::drain_all(); /* the communicator's queued work is flushed */
    if (c->nonblocking) {
        c->state = ncclComm::FINALIZING, c->async = ncclInProgress;
        return ncclInProgress;
    }
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t c) {
    /* after ncclCommFinalize has been seen through, or instead of it */
    ncclResult_t r = check_comm(c, "ncclCommDestroy");
    if (r != ncclSuccess) return r;
    emu::drain_all(); /* NCCL completes the communicator's queued work first */
    c->aborted = true;
    munmap(c->base, c->bytes);
    c->base = nullptr, c->h = nullptr;
    return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t c) {
    if (!c) return ncclInvalidArgument;
    if (c->aborted) return ncclSuccess;
    c->aborted = true; /* queued collectives of this comm are dropped */
    c->pending = nullptr, c->state = ncclComm::READY;
    c->h->aborted_by.store(c->rank + 1);
    munmap(c->base, c->bytes);
    c->base = nullptr, c->h = nullptr;
    return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *err) {
    if (!c || !err) return ncclInvalidArgument;
    if (!c->aborted && c->state == ncclComm::JOINING && c->h->joined.load() >= c->nranks) {
        c->state = ncclComm::READY;
        c->async = joined_all(c, "ncclCommGetAsyncError");
    } else if (!c->aborted && c->state == ncclComm::CONNECTING) {
        c->pending(), c->pending = nullptr;
        c->state = ncclComm::READY, c->async = ncclSuccess;
    } else if (!c->aborted && c->state == ncclComm::FINALIZING) {
        c->state = ncclComm::READY, c->async = ncclSuccess;
    }
    *err = c->async;
    return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t c, int *count) {
    if (!c || !count) return ncclInvalidArgument;
    *count = c->nranks;
    return ncclSuccess;
}
ncclResult_t ncclCommUserRank(const ncclComm_t c, int *rank) {
    if (!c || !rank) return ncclInvalidArgument;
    *rank = c->rank;
    return ncclSuccess;
}
ncclResult_t ncclCommCuDevice(const ncclComm_t c, int *device) {
    if (!c || !device) return ncclInvalidArgument;
    return cudaGetDevice(device) == cudaSuccess ? ncclSuccess : ncclUnhandledCudaError;
}

const char *ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess:
        return "no error";
    case ncclUnhandledCudaError:
        return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError:
        return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError:
        return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument:
        return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage:
        return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError:
        return "remote process exited or there was a network error";
    case ncclInProgress:
        return "NCCL operation in progress";
    default:
        return "unknown result code";
    }
}
const char *ncclGetLastError(ncclComm_t c) {
    return c ? c->last_error.c_str() : "";
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t t,
                           ncclRedOp_t op, ncclComm_t c, cudaStream_t s) {
    return start(c, ALL_REDUCE, "ncclAllReduce", send, recv, count, t, op, 0, s);
}
ncclResult_t ncclAllGather(const void *send, void *recv, size_t sendcount, ncclDataType_t t,
                           ncclComm_t c, cudaStream_t s) {
    return start(c, ALL_GATHER, "ncclAllGather", send, recv, sendcount, t, ncclSum, 0, s);
}
ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t t, int root,
                           ncclComm_t c, cudaStream_t s) {
    return start(c, BROADCAST, "ncclBroadcast", send, recv, count, t, ncclSum, root, s);
}
ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t recvcount, ncclDataType_t t,
                               ncclRedOp_t op, ncclComm_t c, cudaStream_t s) {
    return start(c, REDUCE_SCATTER, "ncclReduceScatter", send, recv, recvcount, t, op, 0, s);
}

} // extern "C"
