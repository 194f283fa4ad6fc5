/* rio_writer.c: writing .rec files and their .idx (docs/formats.md section 1), splitting records
 * that hold the magic at 4-aligned offsets. Output goes to temporaries that rio_writer_close
 * fsyncs and renames into place. */
#include "recordio.h"
#include "rio_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RIO_WBUF (1u << 20) /* pending .rec bytes */
#define RIO_IBUF (1u << 16) /* pending .idx bytes */

struct rio_writer {
    int fd, ifd; /* .rec and .idx temporaries; ifd is -1 without an index */
    char *rec_path, *rec_tmp, *idx_path, *idx_tmp;
    uint64_t pos; /* .rec bytes written so far, buffered ones included */
    uint8_t *buf; /* [RIO_WBUF] */
    size_t blen;
    char *ibuf; /* [RIO_IBUF] */
    size_t ilen;
    int failed; /* status of an earlier I/O failure; later calls return it */
    char err[RIO_ERRCAP];
};

/* Messages of failed rio_writer_open / rio_writer_close calls, which leave no handle. */
static _Thread_local char rio_writer_lasterr[RIO_ERRCAP];

/* ---------------------------------------------------------------- file helpers */

int rio_write_full(int fd, const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t put = write(fd, p, n);
        if (put < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (put == 0) return -EIO;
        p += put, n -= (size_t)put;
    }
    return 0;
}

char *rio_tmp_name(const char *path) {
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (tmp) snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    return tmp;
}

int rio_sync_close(int fd) {
    int rc = 0;
    while (fsync(fd) != 0) {
        if (errno == EINTR) continue;
        if (errno != EINVAL) rc = -errno; /* EINVAL: the file cannot be synced (e.g. a pipe) */
        break;
    }
    if (close(fd) != 0 && rc == 0 && errno != EINTR) rc = -errno;
    return rc;
}

int rio_rename_durable(const char *tmp, const char *path) {
    if (rename(tmp, path) != 0) return -errno;
    const char *slash = strrchr(path, '/');
    if (!slash) return ft_fsync_path(".");
    if (slash == path) return ft_fsync_path("/");
    char *dir = strndup(path, (size_t)(slash - path));
    if (!dir) return -ENOMEM;
    int rc = ft_fsync_path(dir);
    free(dir);
    return rc;
}

/* ---------------------------------------------------------------- open / abort */

static void writer_free(rio_writer *w) {
    if (w->fd >= 0) close(w->fd);
    if (w->ifd >= 0) close(w->ifd);
    free(w->rec_path), free(w->rec_tmp), free(w->idx_path), free(w->idx_tmp);
    free(w->buf), free(w->ibuf);
    free(w);
}

void rio_writer_abort(rio_writer *w) {
    if (!w) return;
    if (w->rec_tmp && w->fd >= 0) unlink(w->rec_tmp);
    if (w->idx_tmp && w->ifd >= 0) unlink(w->idx_tmp);
    writer_free(w);
}

static int open_tmp(const char *tmp, const char *path) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd >= 0) return fd;
    int rc = -errno;
    rio_fail(rc, rio_writer_lasterr, sizeof rio_writer_lasterr, "%s: cannot create %s: %s", path,
             tmp, strerror(-rc));
    return rc;
}

int rio_writer_open(rio_writer **out, const char *rec_path, const char *idx_path) {
    *out = NULL;
    rio_writer *w = calloc(1, sizeof *w);
    if (!w) return -ENOMEM;
    w->fd = w->ifd = -1;
    w->rec_path = strdup(rec_path);
    w->rec_tmp = rio_tmp_name(rec_path);
    w->buf = malloc(RIO_WBUF);
    int oom = !w->rec_path || !w->rec_tmp || !w->buf;
    if (idx_path) {
        w->idx_path = strdup(idx_path);
        w->idx_tmp = rio_tmp_name(idx_path);
        w->ibuf = malloc(RIO_IBUF);
        oom = oom || !w->idx_path || !w->idx_tmp || !w->ibuf;
    }
    if (oom) {
        writer_free(w);
        return rio_fail(-ENOMEM, rio_writer_lasterr, sizeof rio_writer_lasterr, "%s: out of memory",
                        rec_path);
    }
    int rc = w->fd = open_tmp(w->rec_tmp, rec_path);
    if (rc >= 0 && idx_path) rc = w->ifd = open_tmp(w->idx_tmp, idx_path);
    if (rc < 0) {
        if (w->fd < 0) w->fd = -1;
        if (w->ifd < 0) w->ifd = -1;
        rio_writer_abort(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* ---------------------------------------------------------------- appending */

static int io_fail(rio_writer *w, int rc, const char *path) {
    w->failed = rc;
    return rio_fail(rc, w->err, sizeof w->err, "%s: offset %" PRIu64 ": write failed: %s", path,
                    w->pos, strerror(-rc));
}

static int flush_rec(rio_writer *w) {
    int rc = rio_write_full(w->fd, w->buf, w->blen);
    w->blen = 0;
    return rc < 0 ? io_fail(w, rc, w->rec_path) : 0;
}

static int flush_idx(rio_writer *w) {
    if (w->ifd < 0) return 0;
    int rc = rio_write_full(w->ifd, w->ibuf, w->ilen);
    w->ilen = 0;
    return rc < 0 ? io_fail(w, rc, w->idx_path) : 0;
}

static int put(rio_writer *w, const void *p, size_t n) {
    if (n == 0) return 0;
    if (n > RIO_WBUF - w->blen) {
        int rc = flush_rec(w);
        if (rc < 0) return rc;
    }
    if (n >= RIO_WBUF) { /* large payloads skip the buffer */
        int rc = rio_write_full(w->fd, p, n);
        if (rc < 0) return io_fail(w, rc, w->rec_path);
    } else {
        memcpy(w->buf + w->blen, p, n);
        w->blen += n;
    }
    w->pos += n;
    return 0;
}

static int put_segment(rio_writer *w, uint32_t cflag, const uint8_t *p, size_t n) {
    static const uint8_t zeros[4];
    uint8_t hdr[8];
    ft_wr_le32(hdr, RIO_MAGIC);
    ft_wr_le32(hdr + 4, cflag << 29 | (uint32_t)n);
    int rc = put(w, hdr, 8);
    if (rc == 0) rc = put(w, p, n);
    if (rc == 0) rc = put(w, zeros, (4 - n % 4) % 4);
    return rc;
}

int rio_writer_write(rio_writer *w, uint64_t key, const void *data, size_t len) {
    if (w->failed) return w->failed;
    if (len > RIO_MAX_LEN)
        return rio_fail(FT_ERANGE, w->err, sizeof w->err,
                        "%s: offset %" PRIu64 ": record with key %" PRIu64
                        " has %zu bytes; records must be smaller than 2^29",
                        w->rec_path, w->pos, key, len);
    const uint8_t *p = len ? data : (const uint8_t *)""; /* data may be NULL when empty */
    uint64_t start = w->pos;
    size_t cut = 0; /* start of the bytes not yet written */
    int split = 0, rc = 0;
    for (size_t i = 0; i + 4 <= len && rc == 0; i += 4) {
        if (ft_rd_le32(p + i) != RIO_MAGIC) continue;
        rc = put_segment(w, split ? 2 : 1, p + cut, i - cut);
        split = 1;
        cut = i + 4; /* the magic itself is dropped; readers put it back */
    }
    if (rc == 0) rc = put_segment(w, split ? 3 : 0, p + cut, len - cut);
    if (rc < 0 || w->ifd < 0) return rc;
    if (RIO_IBUF - w->ilen < 48 && (rc = flush_idx(w)) < 0) return rc;
    w->ilen += (size_t)snprintf(w->ibuf + w->ilen, RIO_IBUF - w->ilen, "%" PRIu64 "\t%" PRIu64 "\n",
                                key, start);
    return 0;
}

uint64_t rio_writer_tell(const rio_writer *w) {
    return w->pos;
}

const char *rio_writer_errmsg(const rio_writer *w) {
    return w ? w->err : rio_writer_lasterr;
}

/* ---------------------------------------------------------------- close */

static int close_fail(rio_writer *w, int rc, const char *path, const char *what) {
    rio_fail(rc, rio_writer_lasterr, sizeof rio_writer_lasterr, "%s: %s failed: %s", path, what,
             strerror(-rc));
    return rc;
}

int rio_writer_close(rio_writer *w) {
    if (!w) return FT_EARG;
    int rc = w->failed;
    if (rc == 0) rc = flush_rec(w);
    if (rc == 0) rc = flush_idx(w);
    if (rc < 0) { /* flush failures have a message with the offset */
        memcpy(rio_writer_lasterr, w->err, sizeof rio_writer_lasterr);
        rio_writer_abort(w);
        return rc;
    }
    /* Sync both files before renaming either, so the two renames happen close together. */
    rc = rio_sync_close(w->fd);
    w->fd = -2; /* closed, temporary still present */
    if (rc < 0) close_fail(w, rc, w->rec_path, "fsync");
    if (rc == 0 && w->ifd >= 0) {
        rc = rio_sync_close(w->ifd);
        w->ifd = -2;
        if (rc < 0) close_fail(w, rc, w->idx_path, "fsync");
    }
    if (rc == 0 && (rc = rio_rename_durable(w->rec_tmp, w->rec_path)) < 0)
        close_fail(w, rc, w->rec_path, "rename");
    else if (rc == 0)
        w->fd = -1; /* renamed: nothing left to remove */
    if (rc == 0 && w->idx_tmp && (rc = rio_rename_durable(w->idx_tmp, w->idx_path)) < 0)
        close_fail(w, rc, w->idx_path, "rename");
    else if (rc == 0)
        w->ifd = -1;
    if (rc < 0) {
        if (w->fd == -2) unlink(w->rec_tmp);
        if (w->ifd == -2) unlink(w->idx_tmp);
        w->fd = w->ifd = -1;
    }
    writer_free(w);
    if (rc == 0) rio_writer_lasterr[0] = '\0';
    return rc;
}

const char *rio_writer_path(const rio_writer *w) {
    return w->rec_path;
}

char *rio_writer_errbuf(rio_writer *w) {
    return w->err;
}
