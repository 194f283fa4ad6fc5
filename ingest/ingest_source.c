/* ingest_source.c: what ft-ingest reads, in which order, and how one sample is read.
 *
 * RecordIO release folder (train.rec + train.idx [+ property]) or a .rec path: samples are the
 * image keys arcface_torch's MXFaceDataset uses (docs/formats.md 2.2). Image folder, as ft-pack
 * reads it: class sub-folders in byte order of their names give labels 0..C-1; every regular
 * file inside (byte order) is a sample and must be a JPEG; hidden entries are skipped. */
#include "ingest.h"

#include "ft_dataset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ map size */

uint64_t ing_value_footprint(uint64_t vlen, uint64_t psize) {
    const uint64_t page_hdr = 16, node_hdr = 8, key = 8, ptr = 2;
    uint64_t nodemax = (((psize - page_hdr) / 2) & ~(uint64_t)1) - 2;
    if (node_hdr + key + vlen > nodemax) /* value on its own overflow pages */
        return ((page_hdr - 1 + vlen) / psize + 1) * psize + node_hdr + key + 8 + ptr;
    return ((node_hdr + key + vlen + 1) & ~(uint64_t)1) + ptr;
}

uint64_t ing_map_size(uint64_t footprint, uint64_t n, uint64_t psize) {
    /* leaf page headers and branch pages (~6 %), freed copies of the right-most path after
     * each commit, and the meta db: a fixed 64 MiB */
    uint64_t m = footprint + footprint / 16 + n * 8 + (64u << 20);
    return (m + psize - 1) / psize * psize;
}

static uint64_t page_size(void) {
    long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 ? (uint64_t)ps : 4096;
}

/* ------------------------------------------------------------------ RecordIO */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Map size from each sample's extent: the gap to the next offset in the .idx (or EOF) bounds
 * the record, and the value (16-byte header + image) is at least 16 bytes smaller. Sorts
 * idx->offsets in place (the index is not used for look-ups afterwards). */
static void rec_estimate(ing_source *src, rio_index *idx) {
    uint64_t ps = page_size(), fp = 0, bytes = 0;
    qsort(idx->offsets, idx->n, sizeof *idx->offsets, cmp_u64);
    for (uint64_t i = 0; i < src->n; i++) {
        uint64_t o = src->offsets[i], lo = 0, hi = idx->n;
        while (lo < hi) { /* first sorted offset > o */
            uint64_t mid = lo + (hi - lo) / 2;
            if (idx->offsets[mid] <= o)
                lo = mid + 1;
            else
                hi = mid;
        }
        uint64_t end = lo < idx->n ? idx->offsets[lo] : src->rec_size;
        uint64_t ext = end > o ? end - o : 0;
        bytes += ext;
        fp += ing_value_footprint(ext > 32 ? ext - 16 : 16, ps);
    }
    src->total_bytes = bytes;
    src->map_estimate = ing_map_size(fp, src->n, ps);
    src->data_estimate = fp + fp / 16;
}

static int rec_paths(ing_source *src, const char *path, char *idx_path, char *prop_path, size_t cap,
                     char *err, size_t errcap) {
    size_t n = strlen(path);
    if (!ft_is_dir(path) && n > 4 && strcmp(path + n - 4, ".rec") == 0)
        snprintf(src->rec_path, sizeof src->rec_path, "%s", path);
    else if (ft_path_join(src->rec_path, sizeof src->rec_path, path, "train.rec")) {
        snprintf(err, errcap, "%s: path too long", path);
        return FT_ERANGE;
    }
    if (ft_rec_paths(src->rec_path, idx_path, cap, prop_path, cap)) {
        snprintf(err, errcap, "%s: path too long", path);
        return FT_ERANGE;
    }
    if (access(idx_path, F_OK) != 0) {
        snprintf(err, errcap, "%s: missing (the .rec needs its index to enumerate samples)",
                 idx_path);
        return -ENOENT;
    }
    return 0;
}

static int rec_property(ing_source *src, const char *prop_path, char *err, size_t errcap) {
    if (access(prop_path, F_OK) != 0) return 0;
    uint64_t nc;
    uint32_t h, w;
    int rc = rio_property_read(prop_path, &nc, &h, &w, err, errcap);
    if (rc < 0) return rc;
    src->prop_h = h, src->prop_w = w;
    if (!src->num_classes) {
        src->num_classes = nc;
        src->classes_from = "property";
    }
    return 0;
}

static int rec_open(ing_source *src, const char *path, int skip_bad, char *err, size_t errcap) {
    char idx_path[4200], prop_path[4200];
    int rc = rec_paths(src, path, idx_path, prop_path, sizeof idx_path, err, errcap);
    if (rc < 0 || (rc = rec_property(src, prop_path, err, errcap)) < 0) return rc;
    rio_index idx;
    memset(&idx, 0, sizeof idx);
    if ((rc = rio_index_load(&idx, idx_path, err, errcap)) < 0) return rc;
    rio_reader *r = NULL;
    if ((rc = rio_reader_open(&r, src->rec_path)) < 0) {
        snprintf(err, errcap, "%s", rio_reader_errmsg(NULL));
        goto done;
    }
    src->rec_size = rio_reader_size(r);
    /* with --skip-bad a bad offset only costs its record; otherwise stop before writing */
    if (!skip_bad && (rc = rio_index_validate(&idx, src->rec_size, idx_path, err, errcap)) < 0)
        goto done;
    rc = rio_insightface_image_keys(r, &idx, &src->keys, &src->n, &src->has_header, err, errcap);
    if (rc < 0) goto done;
    src->offsets = malloc((src->n ? src->n : 1) * sizeof *src->offsets);
    if (!src->offsets) {
        rc = -ENOMEM;
        snprintf(err, errcap, "out of memory for %" PRIu64 " offsets", src->n);
        goto done;
    }
    for (uint64_t i = 0; i < src->n; i++) {
        if (rio_index_find(&idx, src->keys[i], &src->offsets[i]) != 0) {
            snprintf(err, errcap, "%s: image key %" PRIu64 " (from the header record) is missing",
                     idx_path, src->keys[i]);
            rc = FT_EFORMAT;
            goto done;
        }
    }
    rec_estimate(src, &idx);
done:
    rio_reader_close(r);
    rio_index_free(&idx);
    return rc;
}

/* ------------------------------------------------------------------ image folder */

/* The class-folder convention is ft_classdir's (shared with ft-pack). */
static int folder_open(ing_source *src, char *err, size_t errcap) {
    int rc = ft_classdir_scan(src->path, &src->dir, err, errcap);
    if (rc < 0) return rc;
    ft_classdir_warn(&src->dir, src->path, "ft-ingest");
    if (src->dir.n_classes == 0) {
        snprintf(err, errcap,
                 "%s: neither a release folder (train.rec, train.idx) nor an image folder "
                 "(one sub-folder per class)",
                 src->path);
        return FT_EFORMAT;
    }
    uint64_t fp = 0, ps = page_size();
    for (uint64_t i = 0; i < src->dir.n; i++) {
        src->total_bytes += src->dir.e[i].size;
        fp += ing_value_footprint(src->dir.e[i].size + FTDB_VALUE_HDR, ps);
    }
    src->n = src->dir.n;
    if (!src->num_classes) {
        src->num_classes = src->dir.n_classes;
        src->classes_from = "class folders";
    }
    src->map_estimate = ing_map_size(fp, src->n, ps);
    src->data_estimate = fp + fp / 16;
    return 0;
}

const char *ing_source_file(const ing_source *src, uint64_t s, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s", src->path, ft_classdir_path(&src->dir, s));
    return buf;
}

/* ------------------------------------------------------------------ open / free */

int ing_source_open(ing_source *src, const char *path, uint64_t num_classes, int skip_bad,
                    char *err, size_t errcap) {
    memset(src, 0, sizeof *src);
    if (strlen(path) >= sizeof src->path) {
        snprintf(err, errcap, "%s: path too long", path);
        return FT_ERANGE;
    }
    snprintf(src->path, sizeof src->path, "%s", path);
    src->num_classes = num_classes;
    if (num_classes) src->classes_from = "--num-classes";
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return -errno;
    }
    size_t len = strlen(path);
    if (!S_ISDIR(st.st_mode) && (len < 4 || strcmp(path + len - 4, ".rec") != 0)) {
        snprintf(err, errcap, "%s: not a folder or a .rec file", path);
        return FT_EARG;
    }
    char rec[4200];
    int is_rec = !S_ISDIR(st.st_mode) ||
                 (ft_path_join(rec, sizeof rec, path, "train.rec") == 0 && access(rec, F_OK) == 0);
    int rc;
    if (is_rec)
        rc = rec_open(src, path, skip_bad, err, errcap);
    else {
        src->is_folder = 1;
        rc = folder_open(src, err, errcap);
    }
    if (rc < 0) ing_source_free(src);
    return rc;
}

void ing_source_free(ing_source *src) {
    free(src->keys);
    free(src->offsets);
    ft_classdir_free(&src->dir);
    src->keys = src->offsets = NULL;
}

/* ------------------------------------------------------------------ reading samples */

struct ing_reader {
    const ing_source *src;
    rio_reader *rr;
    int random; /* pread each record (shuffled order) instead of the sequential scan */
};

int ing_reader_open(ing_reader **out, const ing_source *src, int random_order, char *err,
                    size_t errcap) {
    ing_reader *r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    r->src = src;
    r->random = random_order;
    if (!src->is_folder) {
        int rc = rio_reader_open(&r->rr, src->rec_path);
        if (rc < 0) {
            snprintf(err, errcap, "%s", rio_reader_errmsg(NULL));
            free(r);
            return rc;
        }
    }
    *out = r;
    return 0;
}

void ing_reader_close(ing_reader *r) {
    if (!r) return;
    rio_reader_close(r->rr);
    free(r);
}

static void rec_bad(ing_rec *rec, int rc, const char *fmt, const char *detail) {
    rec->bad = rc < 0 ? rc : FT_EFORMAT;
    rec->fatal = rc < 0 && rc > -4096; /* -errno: a system error, not a bad record */
    snprintf(rec->why, sizeof rec->why, fmt, detail);
}

/* rio messages read "<rec>: offset <n>: reason"; drop the parts our message already has
 * (file, and the offset when it is the record's own). Writes into buf. */
static const char *rio_reason(const char *msg, const char *rec_path, uint64_t rec_off, char *buf,
                              size_t cap) {
    size_t n = strlen(rec_path);
    if (strncmp(msg, rec_path, n) == 0 && strncmp(msg + n, ": ", 2) == 0) msg += n + 2;
    uint64_t at;
    const char *c = strchr(msg, ':');
    if (strncmp(msg, "offset ", 7) != 0 || !c || c[1] != ' ' || (size_t)(c - msg - 7) >= 24)
        return msg;
    char num[24];
    snprintf(num, sizeof num, "%.*s", (int)(c - msg - 7), msg + 7);
    if (ft_parse_u64(num, 0, UINT64_MAX, &at) != 0) return msg;
    if (at == rec_off) return c + 2;
    snprintf(buf, cap, "segment at %s", msg); /* a later segment of a split record */
    return buf;
}

/* Returns 0, or < 0 with *why set (NULL: the reader's message). */
static int rec_fetch(ing_reader *r, uint64_t off, const uint8_t **data, size_t *len,
                     const char **why) {
    *why = NULL;
    if (r->random) return rio_reader_read_at(r->rr, off, data, len);
    uint64_t at = UINT64_MAX;
    int rc = rio_reader_next(r->rr, data, len, &at);
    if (rc == 1 && at == off) return 0;
    /* not where the sequential scan is (a gap, another order, or an error): go there */
    if ((rc = rio_reader_seek(r->rr, off)) < 0) return rc;
    rc = rio_reader_next(r->rr, data, len, &at);
    if (rc == 0) *why = "no record there (end of file)";
    return rc == 0 ? FT_ETRUNC : rc < 0 ? rc : 0;
}

/* The class must be below num_classes when that is known. */
static int check_class(const ing_source *src, int32_t l, ing_rec *rec) {
    char d[96];
    if (src->num_classes && (uint64_t)l >= src->num_classes) {
        snprintf(d, sizeof d, "%" PRId32 " out of range [0, %" PRIu64 ") (classes from %s)", l,
                 src->num_classes, src->classes_from);
        rec_bad(rec, FT_ERANGE, "label %s", d);
        return -1;
    }
    rec->label = l;
    return 0;
}

static void read_rec(ing_reader *r, uint64_t s, ing_rec *rec, ing_sink sink, void *ctx) {
    const ing_source *src = r->src;
    rec->key = src->keys[s];
    rec->offset = src->offsets[s];
    const uint8_t *data;
    size_t len;
    const char *why;
    int rc = rec_fetch(r, rec->offset, &data, &len, &why);
    if (rc < 0) {
        char buf[RIO_ERRCAP + 16];
        if (!why)
            why = rio_reason(rio_reader_errmsg(r->rr), src->rec_path, rec->offset, buf, sizeof buf);
        rec_bad(rec, rc, "%s", why);
        return;
    }
    rio_record rr;
    if (rio_unpack(data, len, &rr) < 0) {
        char d[32];
        snprintf(d, sizeof d, "%zu", len);
        rec_bad(rec, FT_ETRUNC, "record of %s bytes is too short for its IRHeader", d);
        return;
    }
    int32_t cls;
    char lwhy[128];
    if (rio_label_class(rio_record_label(&rr, 0), &cls, lwhy, sizeof lwhy) < 0) {
        rec_bad(rec, FT_ERANGE, "%s", lwhy);
        return;
    }
    if (check_class(src, cls, rec) < 0) return;
    uint8_t *dst = sink(ctx, rr.img_len, &rec->at);
    if (!dst) {
        rec_bad(rec, -ENOMEM, "%s", "out of memory");
        return;
    }
    memcpy(dst, rr.img, rr.img_len);
    rec->len = rr.img_len;
}

static void read_file(ing_reader *r, uint64_t s, ing_rec *rec, ing_sink sink, void *ctx) {
    const ing_source *src = r->src;
    char path[8192];
    ing_source_file(src, s, path, sizeof path);
    rec->key = s;
    if (check_class(src, src->dir.e[s].label, rec) < 0) return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        rec_bad(rec, -errno, "cannot open: %s", strerror(errno));
        if (fd >= 0) close(fd);
        return;
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *dst = sink(ctx, n, &rec->at);
    if (!dst) rec_bad(rec, -ENOMEM, "%s", "out of memory");
    while (dst && got < n) {
        ssize_t k = read(fd, dst + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            rec_bad(rec, k < 0 ? -errno : FT_ETRUNC, "read failed: %s",
                    k < 0 ? strerror(errno) : "file shrank while reading");
            break;
        }
        got += (size_t)k;
    }
    close(fd);
    rec->len = got;
}

void ing_reader_read(ing_reader *r, uint64_t s, ing_rec *rec, ing_sink sink, void *ctx) {
    memset(rec, 0, sizeof *rec);
    rec->src_index = s;
    if (r->src->is_folder)
        read_file(r, s, rec, sink, ctx);
    else
        read_rec(r, s, rec, sink, ctx);
}
