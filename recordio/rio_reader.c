/* rio_reader.c: reading .rec files (docs/formats.md section 1): a buffered sequential scan, pread
 * random access, header-only walks (rio_reader_extent) and decoding of in-memory copies
 * (rio_decode). All four share one segment walker, so they accept and reject the same inputs. */
#include "recordio.h"
#include "rio_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RIO_WINDOW (1u << 20) /* read window of the sequential scan */

static const uint8_t rio_magic_bytes[4] = {0x0A, 0x23, 0xD7, 0xCE};

struct rio_reader {
    int fd;
    char *path;
    uint64_t size;
    uint64_t pos; /* sequential position: offset of the next record's first segment */
    uint8_t *win; /* [RIO_WINDOW]: file bytes [win_off, win_off + win_len) */
    uint64_t win_off;
    size_t win_len;
    uint8_t *rec; /* reassembled record of the last call */
    size_t rec_cap;
    char err[RIO_ERRCAP];
};

/* Message of the last failed rio_reader_open on this thread (there is no handle to hold it). */
static _Thread_local char rio_open_err[RIO_ERRCAP];

int rio_fail(int rc, char *err, size_t errcap, const char *fmt, ...) {
    if (err && errcap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errcap, fmt, ap);
        va_end(ap);
    }
    return rc;
}

ssize_t rio_pread_full(int fd, void *buf, size_t n, uint64_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t got = pread(fd, (uint8_t *)buf + done, n - done, (off_t)(off + done));
        if (got < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (got == 0) break;
        done += (size_t)got;
    }
    return (ssize_t)done;
}

static uint64_t round4(uint64_t n) {
    return (n + 3) & ~(uint64_t)3;
}

/* ---------------------------------------------------------------- byte sources */

/* Where a walk reads from: the file (through the window or with pread) or a memory copy. */
typedef struct rio_src {
    rio_reader *r;      /* file source, or NULL */
    int buffered;       /* file source: go through the sequential window */
    const uint8_t *mem; /* memory source: bytes of file offsets [base, end) */
    uint64_t base, end;
    const char *name; /* for messages */
    const char *what; /* "file" or "buffer" */
    char *err;
    size_t errcap;
} rio_src;

static int src_pread(rio_src *s, uint64_t off, uint8_t *dst, size_t n) {
    ssize_t got = rio_pread_full(s->r->fd, dst, n, off);
    if (got < 0)
        return rio_fail((int)got, s->err, s->errcap, "%s: offset %" PRIu64 ": read failed: %s",
                        s->name, off, strerror((int)-got));
    if ((size_t)got < n)
        return rio_fail(FT_ETRUNC, s->err, s->errcap,
                        "%s: offset %" PRIu64 ": file ended early (got %zd of %zu bytes)", s->name,
                        off, got, n);
    return 0;
}

/* Load the window with the file bytes from `off` on. */
static int win_fill(rio_src *s, uint64_t off) {
    rio_reader *r = s->r;
    size_t n = r->size - off < RIO_WINDOW ? (size_t)(r->size - off) : RIO_WINDOW;
    r->win_len = 0;
    int rc = src_pread(s, off, r->win, n);
    if (rc < 0) return rc;
    r->win_off = off;
    r->win_len = n;
    return 0;
}

static int win_copy(rio_src *s, uint64_t off, uint8_t *dst, size_t n) {
    rio_reader *r = s->r;
    while (n > 0) {
        if (off >= r->win_off && off < r->win_off + r->win_len) {
            size_t k = (size_t)(r->win_off + r->win_len - off);
            if (k > n) k = n;
            memcpy(dst, r->win + (off - r->win_off), k);
            dst += k, off += k, n -= k;
        } else if (n >= RIO_WINDOW) {
            return src_pread(s, off, dst, n); /* large payloads bypass the window */
        } else {
            int rc = win_fill(s, off);
            if (rc < 0) return rc;
        }
    }
    return 0;
}

static int src_read(rio_src *s, uint64_t off, uint8_t *dst, size_t n) {
    if (s->mem) {
        memcpy(dst, s->mem + (off - s->base), n);
        return 0;
    }
    return s->buffered ? win_copy(s, off, dst, n) : src_pread(s, off, dst, n);
}

static rio_src src_file(rio_reader *r, int buffered) {
    rio_src s = {.r = r, .buffered = buffered, .end = r->size, .name = r->path, .what = "file"};
    s.err = r->err, s.errcap = sizeof r->err;
    return s;
}

/* ---------------------------------------------------------------- segment walker */

/* Is there room for the header of the segment at `seg` of the record that starts at `start`? */
static int hdr_room(rio_src *s, uint64_t seg, uint64_t start) {
    if (s->end - seg >= 8) return 0;
    if (seg == s->end && seg != start)
        return rio_fail(FT_ETRUNC, s->err, s->errcap,
                        "%s: offset %" PRIu64 ": end of %s inside the split record that starts at "
                        "offset %" PRIu64 " (no segment with cflag 3)",
                        s->name, seg, s->what, start);
    return rio_fail(FT_ETRUNC, s->err, s->errcap,
                    "%s: offset %" PRIu64 ": truncated segment header (%" PRIu64 " of 8 bytes)",
                    s->name, seg, s->end - seg);
}

/* Check one segment header; *len and *cflag receive its fields. */
static int seg_check(rio_src *s, const uint8_t hdr[8], uint64_t seg, uint64_t start, uint32_t *len,
                     uint32_t *cflag) {
    uint32_t magic = ft_rd_le32(hdr), lrec = ft_rd_le32(hdr + 4);
    *len = lrec & RIO_MAX_LEN;
    *cflag = lrec >> 29;
    if (magic != RIO_MAGIC)
        return rio_fail(FT_EFORMAT, s->err, s->errcap,
                        "%s: offset %" PRIu64 ": bad magic 0x%08" PRIx32 " (expected 0x%08" PRIx32
                        ")",
                        s->name, seg, magic, (uint32_t)RIO_MAGIC);
    if (*cflag > 3)
        return rio_fail(FT_EFORMAT, s->err, s->errcap,
                        "%s: offset %" PRIu64 ": invalid cflag %" PRIu32 " (lrec 0x%08" PRIx32 ")",
                        s->name, seg, *cflag, lrec);
    if (seg == start && *cflag >= 2)
        return rio_fail(FT_EFORMAT, s->err, s->errcap,
                        "%s: offset %" PRIu64 ": cflag %" PRIu32
                        " (continuation segment) at the start of a record",
                        s->name, seg, *cflag);
    if (seg != start && *cflag <= 1)
        return rio_fail(FT_EFORMAT, s->err, s->errcap,
                        "%s: offset %" PRIu64 ": cflag %" PRIu32 " inside the split record that "
                        "starts at offset %" PRIu64 " (expected 2 or 3)",
                        s->name, seg, *cflag, start);
    uint64_t need = 8 + round4(*len);
    if (s->end - seg < need)
        return rio_fail(FT_ETRUNC, s->err, s->errcap,
                        "%s: offset %" PRIu64 ": segment of %" PRIu64 " bytes (payload %" PRIu32
                        " + padding) runs past the end of the %s (%" PRIu64 " bytes left)",
                        s->name, seg, need, *len, s->what, s->end - seg);
    return 0;
}

/* Make room for `need` bytes in *out: grow it (realloc) or, when !grow, fail. */
static int out_reserve(rio_src *s, uint8_t **out, size_t *cap, int grow, size_t need) {
    if (need <= *cap) return 0;
    if (!grow) return rio_fail(FT_EARG, s->err, s->errcap, "%s: output buffer too small", s->name);
    size_t ncap = *cap * 2 > need ? *cap * 2 : need;
    if (ncap < 65536) ncap = 65536;
    uint8_t *p = realloc(*out, ncap);
    if (!p) return rio_fail(-ENOMEM, s->err, s->errcap, "%s: out of memory", s->name);
    *out = p, *cap = ncap;
    return 0;
}

/* Walk the logical record whose first segment starts at `start`. When out is non-NULL the
 * reassembled payload goes to *out (capacity *cap; realloc'd when grow). *len receives the
 * payload length and *next the offset just past the record's last segment. */
static int walk(rio_src *s, uint64_t start, uint8_t **out, size_t *cap, int grow, size_t *len,
                uint64_t *next) {
    uint64_t seg = start;
    size_t total = 0;
    for (;;) {
        uint8_t hdr[8];
        uint32_t n = 0, cflag = 0;
        int rc = hdr_room(s, seg, start);
        if (rc == 0) rc = src_read(s, seg, hdr, 8);
        if (rc == 0) rc = seg_check(s, hdr, seg, start, &n, &cflag);
        if (rc == 0 && out) rc = out_reserve(s, out, cap, grow, total + n + 4);
        if (rc == 0 && out) rc = src_read(s, seg + 8, *out + total, n);
        if (rc < 0) return rc;
        total += n;
        seg += 8 + round4(n);
        if (cflag == 0 || cflag == 3) break;
        if (out) memcpy(*out + total, rio_magic_bytes, 4); /* the cut removed one magic */
        total += 4;
    }
    *len = total;
    *next = seg;
    return 0;
}

/* ---------------------------------------------------------------- reader API */

int rio_reader_open(rio_reader **out, const char *rec_path) {
    *out = NULL;
    rio_reader *r = calloc(1, sizeof *r);
    if (r) r->path = strdup(rec_path);
    if (r && r->path) r->win = malloc(RIO_WINDOW);
    if (!r || !r->path || !r->win) {
        if (r) free(r->path);
        free(r);
        return rio_fail(-ENOMEM, rio_open_err, sizeof rio_open_err, "%s: out of memory", rec_path);
    }
    r->fd = open(rec_path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (r->fd < 0 || fstat(r->fd, &st) != 0) {
        int rc = -errno;
        rio_fail(rc, rio_open_err, sizeof rio_open_err, "%s: cannot open: %s", rec_path,
                 strerror(-rc));
        rio_reader_close(r);
        return rc;
    }
    r->size = (uint64_t)st.st_size;
    *out = r;
    return 0;
}

void rio_reader_close(rio_reader *r) {
    if (!r) return;
    if (r->fd >= 0) close(r->fd);
    free(r->path);
    free(r->win);
    free(r->rec);
    free(r);
}

uint64_t rio_reader_size(const rio_reader *r) {
    return r->size;
}

const char *rio_reader_errmsg(const rio_reader *r) {
    return r ? r->err : rio_open_err;
}

/* The common case of a sequential scan: a single-segment record inside the window is returned
 * in place. Returns 1 on success, 0 to let the general path handle (and report) the record. */
static int next_in_window(rio_reader *r, const uint8_t **data, size_t *len) {
    rio_src s = src_file(r, 1);
    char scratch[8];
    s.err = scratch, s.errcap = sizeof scratch; /* failures are reported by the general path */
    uint64_t pos = r->pos;
    if (r->size - pos < 8) return 0;
    if (pos < r->win_off || pos >= r->win_off + r->win_len || r->win_off + r->win_len - pos < 8)
        if (win_fill(&s, pos) < 0) return 0;
    const uint8_t *hdr = r->win + (pos - r->win_off);
    uint32_t lrec = ft_rd_le32(hdr + 4), n = lrec & RIO_MAX_LEN;
    if (ft_rd_le32(hdr) != RIO_MAGIC || (lrec >> 29) != 0) return 0;
    uint64_t need = 8 + round4(n);
    if (r->size - pos < need || need > RIO_WINDOW) return 0;
    if (r->win_off + r->win_len - pos < need && win_fill(&s, pos) < 0) return 0;
    *data = r->win + (pos - r->win_off) + 8;
    *len = n;
    r->pos = pos + need;
    return 1;
}

int rio_reader_next(rio_reader *r, const uint8_t **data, size_t *len, uint64_t *offset) {
    uint64_t start = r->pos;
    if (start == r->size) return 0;
    if (offset) *offset = start;
    if (next_in_window(r, data, len)) return 1;
    rio_src s = src_file(r, 1);
    uint64_t next;
    int rc = walk(&s, start, &r->rec, &r->rec_cap, 1, len, &next);
    if (rc < 0) return rc;
    *data = r->rec;
    r->pos = next;
    return 1;
}

/* A record may start at `offset`: 4-aligned and before the end of the file. */
static int check_offset(rio_reader *r, uint64_t offset, const char *what) {
    if (offset % 4)
        return rio_fail(FT_EARG, r->err, sizeof r->err,
                        "%s: offset %" PRIu64 ": %s: offset is not 4-aligned", r->path, offset,
                        what);
    if (offset >= r->size)
        return rio_fail(FT_ERANGE, r->err, sizeof r->err,
                        "%s: offset %" PRIu64 ": %s: past the end of the file (%" PRIu64 " bytes)",
                        r->path, offset, what, r->size);
    return 0;
}

int rio_reader_seek(rio_reader *r, uint64_t offset) {
    if (offset % 4 == 0 && offset == r->size) { /* the end: the next call reports EOF */
        r->pos = offset;
        return 0;
    }
    int rc = check_offset(r, offset, "seek");
    if (rc == 0) r->pos = offset;
    return rc;
}

int rio_reader_read_at(rio_reader *r, uint64_t offset, const uint8_t **data, size_t *len) {
    int rc = check_offset(r, offset, "read");
    if (rc < 0) return rc;
    rio_src s = src_file(r, 0);
    uint64_t next;
    rc = walk(&s, offset, &r->rec, &r->rec_cap, 1, len, &next);
    if (rc < 0) return rc;
    *data = r->rec;
    return 0;
}

int rio_reader_extent(rio_reader *r, uint64_t offset, uint64_t *extent, uint64_t *payload_len) {
    int rc = check_offset(r, offset, "extent");
    if (rc < 0) return rc;
    rio_src s = src_file(r, 0);
    uint64_t next;
    size_t len;
    rc = walk(&s, offset, NULL, NULL, 0, &len, &next);
    if (rc < 0) return rc;
    *extent = next - offset;
    *payload_len = len;
    return 0;
}

int rio_decode(const uint8_t *buf, size_t n, uint64_t base, uint8_t *out, size_t *len, char *err,
               size_t errcap) {
    rio_src s = {.mem = buf, .base = base, .end = base + n, .name = "buffer", .what = "buffer"};
    s.err = err, s.errcap = errcap;
    uint64_t next;
    size_t cap = n; /* reassembly never outgrows its input: each cut saves 8 - 4 bytes */
    return walk(&s, base, &out, &cap, 0, len, &next);
}

const char *rio_reader_path(const rio_reader *r) {
    return r->path;
}
