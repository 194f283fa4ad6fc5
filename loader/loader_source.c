/* loader_source.c: where each sample's bytes live and how to turn them into (label, JPEG).
 *
 * LMDB (ingest/ftdb.h): ftdb_value_extents gives each value's offset and length in data.mdb;
 * a value is the 16-byte ftdb header then the JPEG.
 * RecordIO: the .idx gives each record's offset; rio_reader_extent its on-disk size (all
 * segments and padding), read once at open. A read record is reassembled with rio_decode and
 * unpacked (IRHeader, labels) with rio_unpack. Images are enumerated like arcface_torch's
 * MXFaceDataset (rio_insightface_image_keys), labels truncated toward zero.
 */
#include "loader_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ft_dataset.h"
#include "ftdb.h"
#ifdef FT_LOADER_HAVE_RECORDIO
#include "recordio.h"
#endif

static int exists(const char *path) {
    uint64_t sz;
    return ft_file_size(path, &sz) == 0;
}

static int alloc_arrays(ld_source *s, char *err, size_t errcap) {
    s->offsets = calloc(s->n ? s->n : 1, sizeof *s->offsets);
    s->lengths = calloc(s->n ? s->n : 1, sizeof *s->lengths);
    if (!s->offsets || !s->lengths) {
        snprintf(err, errcap, "%s: out of memory for %" PRIu64 " sample extents", s->file, s->n);
        return -ENOMEM;
    }
    return 0;
}

/* Mapping of `file` (by inode) that contains p, from /proc/self/maps: p's file offset. */
/* Spot-check extents against the file (first, last and every 4096th value): a wrong offset
 * must fail at open, not deliver other bytes. */
static int verify_extents(ftdb *db, const ld_source *s, char *err, size_t errcap) {
    int fd = open(s->file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    uint8_t buf[64];
    int rc = 0;
    for (uint64_t i = 0; i < s->n && !rc;
         i = (i + 4096 < s->n || i == s->n - 1) ? i + 4096 : s->n - 1) {
        const uint8_t *v;
        size_t len, k = s->lengths[i] < sizeof buf ? s->lengths[i] : sizeof buf;
        if ((rc = ftdb_get(db, i, &v, &len)) != 0) break;
        if (pread(fd, buf, k, (off_t)s->offsets[i]) != (ssize_t)k || memcmp(buf, v, k)) {
            snprintf(err, errcap, "%s: sample %" PRIu64 ": value not found at its offset", s->file,
                     i);
            rc = FT_EFORMAT;
        }
    }
    close(fd);
    return rc;
}

static int open_lmdb(ld_source *s, const char *dir, char *err, size_t errcap) {
    ftdb *db;
    int rc = ftdb_open(&db, dir, err, errcap);
    if (rc) return rc;
    const ftdb_meta *m = ftdb_get_meta(db);
    s->kind = LD_SRC_LMDB;
    s->n = m->num_samples;
    s->num_classes = m->num_classes;
    s->h = m->height, s->w = m->width;
    if ((rc = ftdb_data_path(db, s->file, sizeof s->file)) != 0) {
        snprintf(err, errcap, "%s: path too long", dir);
    } else if ((rc = alloc_arrays(s, err, errcap)) == 0) {
        rc = ftdb_value_extents(db, s->offsets, s->lengths, err, errcap);
        if (rc == 0) rc = verify_extents(db, s, err, errcap);
    }
    ftdb_close(db);
    if (rc) return rc;
    if (s->h == 0 || s->w == 0 || s->h > 65535 || s->w > 65535) {
        snprintf(err, errcap, "%s: meta image shape %" PRIu32 "x%" PRIu32 " is not usable", dir,
                 s->w, s->h);
        return FT_EFORMAT;
    }
    return 0;
}

#ifdef FT_LOADER_HAVE_RECORDIO
/* Image shape when there is no property file: the first image's JPEG header. */
static int shape_from_first(ld_source *s, rio_reader *r, char *err, size_t errcap) {
    const uint8_t *d;
    size_t len;
    rio_record rec;
    int rc = rio_reader_read_at(r, s->offsets[0], &d, &len);
    if (rc == 0) rc = rio_unpack(d, len, &rec);
    if (rc) {
        snprintf(err, errcap, "%s: first image record: %s", s->file, ft_strerror(rc));
        return rc;
    }
    tjhandle tj = tjInitDecompress();
    int w = 0, h = 0, sub, cs;
    if (!tj) return -ENOMEM;
    rc = tjDecompressHeader3(tj, rec.img, (unsigned long)rec.img_len, &w, &h, &sub, &cs);
    tjDestroy(tj);
    if (rc || w <= 0 || h <= 0 || w > 65535 || h > 65535) {
        snprintf(err, errcap, "%s: no property file and the first image is not a readable JPEG",
                 s->file);
        return FT_EFORMAT;
    }
    s->w = (uint32_t)w, s->h = (uint32_t)h;
    return 0;
}

static int rec_extents(ld_source *s, rio_reader *r, const rio_index *idx, char *err,
                       size_t errcap) {
    for (uint64_t i = 0; i < s->n; i++) {
        uint64_t off, ext, plen;
        int rc = rio_index_find(idx, s->keys[i], &off);
        if (rc) {
            snprintf(err, errcap, "%s: image key %" PRIu64 " is not in the index", s->file,
                     s->keys[i]);
            return FT_EFORMAT;
        }
        if ((rc = rio_reader_extent(r, off, &ext, &plen)) != 0) {
            snprintf(err, errcap, "%s", rio_reader_errmsg(r));
            return rc;
        }
        if (ext > UINT32_MAX) {
            snprintf(err, errcap, "%s: record %" PRIu64 " is too large", s->file, s->keys[i]);
            return FT_ERANGE;
        }
        s->offsets[i] = off;
        s->lengths[i] = (uint32_t)ext;
    }
    return 0;
}

static int open_rec(ld_source *s, const char *rec, const char *idxp, const char *prop, char *err,
                    size_t errcap) {
    s->kind = LD_SRC_REC;
    snprintf(s->file, sizeof s->file, "%s", rec);
    rio_reader *r = NULL;
    rio_index idx;
    memset(&idx, 0, sizeof idx);
    int has_header = 0;
    int rc = rio_reader_open(&r, rec);
    if (rc) {
        snprintf(err, errcap, "%s: %s", rec, r ? rio_reader_errmsg(r) : ft_strerror(rc));
        goto out;
    }
    if ((rc = rio_index_load(&idx, idxp, err, errcap)) != 0) goto out;
    if ((rc = rio_index_validate(&idx, rio_reader_size(r), idxp, err, errcap)) != 0) goto out;
    rc = rio_insightface_image_keys(r, &idx, &s->keys, &s->n, &has_header, err, errcap);
    if (rc) goto out;
    if ((rc = alloc_arrays(s, err, errcap)) != 0) goto out;
    if ((rc = rec_extents(s, r, &idx, err, errcap)) != 0) goto out;
    if (prop && exists(prop)) {
        uint64_t nc;
        uint32_t h, w;
        if ((rc = rio_property_read(prop, &nc, &h, &w, err, errcap)) != 0) goto out;
        s->num_classes = nc, s->h = h, s->w = w;
    } else if (s->n > 0) {
        rc = shape_from_first(s, r, err, errcap);
    }
out:
    rio_index_free(&idx);
    rio_reader_close(r);
    return rc;
}
#else
static int open_rec(ld_source *s, const char *rec, const char *idxp, const char *prop, char *err,
                    size_t errcap) {
    (void)s, (void)idxp, (void)prop;
    snprintf(err, errcap, "%s: this build has no RecordIO support (recordio/ was not built)", rec);
    return FT_EARG;
}
#endif

static void max_len(ld_source *s) {
    s->max_len = 0;
    for (uint64_t i = 0; i < s->n; i++)
        if (s->lengths[i] > s->max_len) s->max_len = s->lengths[i];
}

/* Path forms (ft_dataset_resolve): an LMDB directory; a dataset folder (train.lmdb/ preferred,
 * else train.rec + train.idx); or a .rec file with its .idx next to it. */
int ld_source_open(ld_source *s, const char *path, char *err, size_t errcap) {
    memset(s, 0, sizeof *s);
    char file[4200], idx[4200], prop[4200];
    ft_dataset_kind kind;
    int rc = ft_dataset_resolve(path, &kind, file, sizeof file, err, errcap);
    if (rc == 0 && kind == FT_DATASET_LMDB) {
        rc = open_lmdb(s, file, err, errcap);
    } else if (rc == 0) {
        if ((rc = ft_rec_paths(file, idx, sizeof idx, prop, sizeof prop)) != 0)
            snprintf(err, errcap, "%s: path too long", file);
        else
            rc = open_rec(s, file, idx, prop, err, errcap);
    }
    if (rc == 0 && (rc = ft_file_size(s->file, &s->file_size)) != 0)
        snprintf(err, errcap, "%s: %s", s->file, ft_strerror(rc));
    if (rc == 0) max_len(s);
    if (rc) ld_source_free(s);
    return rc;
}

void ld_source_free(ld_source *s) {
    free(s->offsets);
    free(s->lengths);
    free(s->keys);
    s->offsets = NULL, s->lengths = NULL, s->keys = NULL;
}

static int parse_lmdb(const ld_source *s, const uint8_t *bytes, size_t n, int32_t *label,
                      const uint8_t **jpeg, size_t *jpeg_len, char *why, size_t whycap) {
    ftdb_value_hdr h;
    int rc = ftdb_value_hdr_decode(bytes, n, &h);
    if (rc == FT_ETRUNC)
        snprintf(why, whycap, "value shorter than its header");
    else if (rc == FT_EFORMAT)
        snprintf(why, whycap, "JPEG length field disagrees with value");
    else if (rc)
        snprintf(why, whycap, "negative label %" PRId32, h.label);
    if (rc) return rc;
    if (h.height != s->h || h.width != s->w) {
        snprintf(why, whycap, "header says %ux%u, expected %" PRIu32 "x%" PRIu32, (unsigned)h.width,
                 (unsigned)h.height, s->w, s->h);
        return FT_EFORMAT;
    }
    *label = h.label;
    *jpeg = bytes + FTDB_VALUE_HDR;
    *jpeg_len = h.jpeg_len;
    return 0;
}

#ifdef FT_LOADER_HAVE_RECORDIO
static int parse_rec(const ld_source *s, uint64_t index, const uint8_t *bytes, size_t n,
                     uint8_t *scratch, int32_t *label, const uint8_t **jpeg, size_t *jpeg_len,
                     char *why, size_t whycap) {
    size_t plen;
    char e[RIO_ERRCAP];
    int rc = rio_decode(bytes, n, s->offsets[index], scratch, &plen, e, sizeof e);
    if (rc) {
        snprintf(why, whycap, "record: %.100s", e);
        return rc;
    }
    rio_record rec;
    if ((rc = rio_unpack(scratch, plen, &rec)) != 0) {
        snprintf(why, whycap, "record shorter than its IRHeader");
        return rc;
    }
    if ((rc = rio_label_class(rio_record_label(&rec, 0), label, why, whycap)) != 0) return rc;
    *jpeg = rec.img;
    *jpeg_len = rec.img_len;
    return 0;
}
#endif

int ld_source_parse(const ld_source *s, uint64_t index, const uint8_t *bytes, size_t n,
                    uint8_t *scratch, int32_t *label, const uint8_t **jpeg, size_t *jpeg_len,
                    char *why, size_t whycap) {
    int rc;
#ifdef FT_LOADER_HAVE_RECORDIO
    if (s->kind == LD_SRC_REC)
        rc = parse_rec(s, index, bytes, n, scratch, label, jpeg, jpeg_len, why, whycap);
    else
#endif
        rc = parse_lmdb(s, bytes, n, label, jpeg, jpeg_len, why, whycap);
    (void)index, (void)scratch;
    if (rc == 0 && *label < 0) {
        snprintf(why, whycap, "negative label %" PRId32, *label);
        rc = FT_ERANGE;
    }
    if (rc == 0 && s->num_classes && (uint64_t)*label >= s->num_classes) {
        snprintf(why, whycap, "label %" PRId32 " >= num_classes %" PRIu64, *label, s->num_classes);
        rc = FT_ERANGE;
    }
    return rc;
}

int loader_resolve_file(const char *path, char *out, size_t cap) {
    char where[4200], err[LOADER_ERRCAP];
    ft_dataset_kind kind;
    int rc = ft_dataset_resolve(path, &kind, where, sizeof where, err, sizeof err);
    if (rc) return rc;
    if (kind == FT_DATASET_LMDB) return ft_path_join(out, cap, where, "data.mdb");
    return (size_t)snprintf(out, cap, "%s", where) < cap ? 0 : FT_ERANGE;
}
