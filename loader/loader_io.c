/* loader_io.c: the read engines. Each worker thread owns one ld_io, so nothing here locks.
 *
 * uring: one io_uring per worker; a chunk's reads go out in one submission (registered file
 *        and one registered buffer holding all read slots when the kernel allows, READ_FIXED),
 *        short reads are requeued, -EAGAIN/-EINTR retried.
 * pread: one pread per sample (short reads continued).
 * mmap:  no copy: the sample's bytes are read from the caller's read-only mapping.
 * direct (uring, pread): the file is opened O_DIRECT, each read covers the LD_ALIGN-aligned
 *        range enclosing the sample into an aligned slot, and out[i] points inside it.
 */
#include "loader_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int ld_uring_probe(void) {
    const char *e = getenv("FT_LOADER_NO_URING");
    if (e && *e && strcmp(e, "0") != 0) return -ENOSYS; /* forced, for tests */
    struct io_uring r;
    int rc = io_uring_queue_init(4, &r, 0);
    if (rc == 0) io_uring_queue_exit(&r);
    return rc;
}

static uint64_t align_down(uint64_t x) {
    return x & ~(uint64_t)(LD_ALIGN - 1);
}

static uint64_t align_up(uint64_t x) {
    return (x + LD_ALIGN - 1) & ~(uint64_t)(LD_ALIGN - 1);
}

int ld_io_init(ld_io *io, loader_engine engine, int fd, const uint8_t *map, uint64_t map_len,
               int direct, uint32_t nslots, uint32_t max_len) {
    memset(io, 0, sizeof *io);
    io->engine = engine, io->fd = fd, io->direct = direct;
    io->map = map, io->map_len = map_len;
    io->nslots = nslots;
    if (engine == LOADER_ENGINE_MMAP) return 0;
    io->slot_cap = direct ? align_up(max_len) + LD_ALIGN : align_up(max_len ? max_len : 1);
    void *p;
    if (posix_memalign(&p, LD_ALIGN, io->slot_cap * nslots)) return -ENOMEM;
    io->buf = p;
    if (engine != LOADER_ENGINE_URING) return 0;
    int rc = ld_uring_probe();
    if (rc == 0) {
        /* completions are only reaped by this ring's own thread: no IPI needed */
        rc = io_uring_queue_init(nslots, &io->ring, IORING_SETUP_COOP_TASKRUN);
        if (rc == -EINVAL) rc = io_uring_queue_init(nslots, &io->ring, 0); /* older kernels */
    }
    if (rc) {
        free(io->buf);
        io->buf = NULL;
        return rc;
    }
    io->ring_ok = 1;
    io->fixed_file = io_uring_register_files(&io->ring, &io->fd, 1) == 0;
    struct iovec iov = {io->buf, io->slot_cap * nslots};
    io->fixed_buf = io_uring_register_buffers(&io->ring, &iov, 1) == 0;
    return 0;
}

void ld_io_free(ld_io *io) {
    if (io->ring_ok) io_uring_queue_exit(&io->ring);
    io->ring_ok = 0;
    free(io->buf);
    io->buf = NULL;
}

/* Range actually read for a sample: [*roff, *roff + *rlen), and where the sample starts in it. */
static void plan(const ld_io *io, uint64_t off, uint32_t len, uint64_t *roff, size_t *rlen,
                 size_t *skip) {
    if (io->direct) {
        *roff = align_down(off);
        *skip = (size_t)(off - *roff);
        *rlen = (size_t)(align_up(off + len) - *roff);
    } else {
        *roff = off, *skip = 0, *rlen = len;
    }
}

static int pread_full(int fd, uint8_t *dst, size_t want, size_t need, uint64_t off) {
    size_t done = 0;
    while (done < need) {
        ssize_t r = pread(fd, dst + done, want - done, (off_t)(off + done));
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r < 0) return -errno;
        if (r == 0) return -EIO; /* the file ends before the sample does */
        done += (size_t)r;
    }
    return 0;
}

static void read_pread(ld_io *io, const uint64_t *off, const uint32_t *len, uint32_t k,
                       const uint8_t **out, int *rcs) {
    for (uint32_t i = 0; i < k; i++) {
        uint64_t roff;
        size_t rlen, skip;
        plan(io, off[i], len[i], &roff, &rlen, &skip);
        uint8_t *dst = io->buf + (size_t)i * io->slot_cap;
        rcs[i] = pread_full(io->fd, dst, rlen, skip + len[i], roff);
        out[i] = dst + skip;
    }
}

static void read_mmap(ld_io *io, const uint64_t *off, const uint32_t *len, uint32_t k,
                      const uint8_t **out, int *rcs) {
    for (uint32_t i = 0; i < k; i++) {
        int ok = off[i] <= io->map_len && len[i] <= io->map_len - off[i];
        rcs[i] = ok ? 0 : -EIO;
        out[i] = ok ? io->map + off[i] : NULL;
    }
}

static void queue_read(ld_io *io, uint32_t i, uint64_t roff, size_t rlen, size_t done) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
    uint8_t *dst = io->buf + (size_t)i * io->slot_cap + done;
    int fd = io->fixed_file ? 0 : io->fd;
    if (io->fixed_buf)
        io_uring_prep_read_fixed(sqe, fd, dst, (unsigned)(rlen - done), roff + done, 0);
    else
        io_uring_prep_read(sqe, fd, dst, (unsigned)(rlen - done), roff + done);
    if (io->fixed_file) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, i);
}

/* All k reads in one submission; completions are matched by index. done[i] counts bytes read. */
static void read_uring(ld_io *io, const uint64_t *off, const uint32_t *len, uint32_t k,
                       const uint8_t **out, int *rcs) {
    uint64_t roff[LD_MAX_CHUNK];
    size_t rlen[LD_MAX_CHUNK], skip[LD_MAX_CHUNK], done[LD_MAX_CHUNK];
    uint32_t open = 0;
    for (uint32_t i = 0; i < k; i++) {
        plan(io, off[i], len[i], &roff[i], &rlen[i], &skip[i]);
        done[i] = 0, rcs[i] = 0;
        out[i] = io->buf + (size_t)i * io->slot_cap + skip[i];
        queue_read(io, i, roff[i], rlen[i], 0);
        open++;
    }
    while (open > 0) {
        int rc = io_uring_submit_and_wait(&io->ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
            for (uint32_t i = 0; i < k; i++)
                if (done[i] < skip[i] + len[i] && rcs[i] == 0) rcs[i] = rc;
            return; /* ring unusable; nothing is left in flight we could reap */
        }
        struct io_uring_cqe *cqe;
        while (io_uring_peek_cqe(&io->ring, &cqe) == 0) {
            uint32_t i = (uint32_t)io_uring_cqe_get_data64(cqe);
            int res = cqe->res;
            io_uring_cqe_seen(&io->ring, cqe);
            if (res == -EAGAIN || res == -EINTR) {
                queue_read(io, i, roff[i], rlen[i], done[i]);
                continue;
            }
            if (res > 0) done[i] += (size_t)res;
            int complete = done[i] >= skip[i] + len[i];
            if (res < 0)
                rcs[i] = res;
            else if (res == 0 && !complete)
                rcs[i] = -EIO;
            else if (!complete && (!io->direct || done[i] % LD_ALIGN == 0)) {
                queue_read(io, i, roff[i], rlen[i], done[i]); /* short read: continue */
                continue;
            } else if (!complete)
                rcs[i] = -EIO;
            open--;
        }
    }
}

void ld_io_read(ld_io *io, const uint64_t *off, const uint32_t *len, uint32_t k,
                const uint8_t **out, int *rcs) {
    if (io->engine == LOADER_ENGINE_MMAP)
        read_mmap(io, off, len, k, out, rcs);
    else if (io->engine == LOADER_ENGINE_URING && io->ring_ok)
        read_uring(io, off, len, k, out, rcs);
    else
        read_pread(io, off, len, k, out, rcs);
}
