/* rio_meta.c: what sits on top of the framing (docs/formats.md sections 1.4 and 2): the 24-byte
 * IRHeader with its optional float32 labels, the insightface record-0 header with identity
 * ranges, and the `property` file. */
#include "recordio.h"
#include "rio_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RIO_FLOAT_EXACT (1u << 24) /* integers up to here are exact in float32 */

/* ---------------------------------------------------------------- IRHeader */

static void wr_f32(uint8_t *p, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    ft_wr_le32(p, u);
}

static float rd_f32(const uint8_t *p) {
    uint32_t u = ft_rd_le32(p);
    float v;
    memcpy(&v, &u, 4);
    return v;
}

size_t rio_pack_size(uint32_t nlabels, size_t img_len) {
    return RIO_IRHEADER_SIZE + 4 * (size_t)nlabels + img_len;
}

size_t rio_pack(uint8_t *buf, const rio_irheader *h, const float *labels, uint32_t nlabels,
                const void *img, size_t img_len) {
    ft_wr_le32(buf, nlabels);
    wr_f32(buf + 4, nlabels ? 0.0f : h->label);
    ft_wr_le64(buf + 8, h->id);
    ft_wr_le64(buf + 16, h->id2);
    uint8_t *p = buf + RIO_IRHEADER_SIZE;
    for (uint32_t i = 0; i < nlabels; i++, p += 4) wr_f32(p, labels[i]);
    if (img_len) memcpy(p, img, img_len);
    return rio_pack_size(nlabels, img_len);
}

int rio_unpack(const uint8_t *data, size_t len, rio_record *out) {
    memset(out, 0, sizeof *out);
    if (len < RIO_IRHEADER_SIZE) return FT_ETRUNC;
    out->h.flag = ft_rd_le32(data);
    out->h.label = rd_f32(data + 4);
    out->h.id = ft_rd_le64(data + 8);
    out->h.id2 = ft_rd_le64(data + 16);
    uint64_t head = RIO_IRHEADER_SIZE + 4 * (uint64_t)out->h.flag;
    if (head > len) return FT_ETRUNC;
    out->labels = out->h.flag ? data + RIO_IRHEADER_SIZE : NULL;
    out->img = data + head;
    out->img_len = len - (size_t)head;
    return 0;
}

float rio_record_label(const rio_record *r, uint32_t i) {
    if (r->h.flag == 0) return i == 0 ? r->h.label : NAN;
    return i < r->h.flag ? rd_f32(r->labels + 4 * (size_t)i) : NAN;
}

int rio_label_class(float label, int32_t *cls, char *why, size_t whycap) {
    /* 2147483648.0f is 2^31 exactly; every float below it that is whole fits an int32 */
    if (isfinite(label) && label >= 0.0f && label < 2147483648.0f && label == floorf(label)) {
        *cls = (int32_t)label;
        return 0;
    }
    if (whycap)
        snprintf(why, whycap, "label %.9g is not a class id (a whole number in [0, 2^31))",
                 (double)label);
    return FT_ERANGE;
}

/* ---------------------------------------------------------------- insightface layout */

/* Image keys 1 .. bound-1 from the header record, each checked against the index. */
static int header_keys(const rio_index *idx, float bound, const char *name, uint64_t **keys,
                       uint64_t *n, char *err, size_t errcap) {
    if (!(bound >= 1.0f && bound <= (float)RIO_FLOAT_EXACT))
        return rio_fail(FT_ERANGE, err, errcap,
                        "%s: record key 0: header label[0] = %g is not a key bound in [1, 2^24]",
                        name, (double)bound);
    uint64_t count = (uint64_t)bound - 1; /* truncation, as int() in the reference loader */
    uint64_t *k = malloc((count ? count : 1) * sizeof *k);
    if (!k) return rio_fail(-ENOMEM, err, errcap, "%s: out of memory", name);
    for (uint64_t i = 0; i < count; i++) {
        uint64_t off;
        k[i] = i + 1;
        if (rio_index_find(idx, k[i], &off) != 0) {
            free(k);
            return rio_fail(FT_EFORMAT, err, errcap,
                            "%s: image key %" PRIu64 " (below header label[0] = %" PRIu64
                            ") is missing from the index",
                            name, i + 1, count + 1);
        }
    }
    *keys = k;
    *n = count;
    return 0;
}

int rio_insightface_image_keys(rio_reader *r, const rio_index *idx, uint64_t **keys, uint64_t *n,
                               int *has_header, char *err, size_t errcap) {
    const char *name = rio_reader_path(r);
    *keys = NULL, *n = 0, *has_header = 0;
    uint64_t off;
    if (rio_index_find(idx, 0, &off) != 0)
        return rio_fail(FT_EFORMAT, err, errcap, "%s: no record with key 0 in the index", name);
    const uint8_t *data;
    size_t len;
    int rc = rio_reader_read_at(r, off, &data, &len);
    if (rc < 0) return rio_fail(rc, err, errcap, "%s", rio_reader_errmsg(r));
    rio_record rec;
    if (rio_unpack(data, len, &rec) < 0)
        return rio_fail(FT_ETRUNC, err, errcap,
                        "%s: offset %" PRIu64 ": record key 0 has %zu bytes, too short for its "
                        "IRHeader and labels",
                        name, off, len);
    if (rec.h.flag > 0) {
        *has_header = 1;
        return header_keys(idx, rio_record_label(&rec, 0), name, keys, n, err, errcap);
    }
    uint64_t *k = malloc((idx->n ? idx->n : 1) * sizeof *k);
    if (!k) return rio_fail(-ENOMEM, err, errcap, "%s: out of memory", name);
    if (idx->n) memcpy(k, idx->keys, idx->n * sizeof *k);
    *keys = k;
    *n = idx->n;
    return 0;
}

static int write_range(rio_writer *w, uint64_t key, uint64_t lo, uint64_t hi) {
    uint8_t buf[RIO_IRHEADER_SIZE + 8];
    rio_irheader h = {0};
    float labels[2] = {(float)lo, (float)hi};
    size_t n = rio_pack(buf, &h, labels, 2, NULL, 0);
    return rio_writer_write(w, key, buf, n);
}

int rio_write_insightface_meta(rio_writer *w, uint64_t n_images, const uint64_t *class_first,
                               uint64_t n_classes) {
    char *err = rio_writer_errbuf(w);
    const char *name = rio_writer_path(w);
    if (n_images >= RIO_FLOAT_EXACT || n_classes >= RIO_FLOAT_EXACT ||
        n_images + n_classes + 1 > RIO_FLOAT_EXACT)
        return rio_fail(FT_ERANGE, err, RIO_ERRCAP,
                        "%s: %" PRIu64 " images and %" PRIu64
                        " classes: insightface meta keys must stay below 2^24",
                        name, n_images, n_classes);
    if (class_first[0] != 1 || class_first[n_classes] != n_images + 1)
        return rio_fail(FT_EARG, err, RIO_ERRCAP,
                        "%s: class ranges must run from key 1 to %" PRIu64 " (got %" PRIu64
                        " .. %" PRIu64 ")",
                        name, n_images + 1, class_first[0], class_first[n_classes]);
    for (uint64_t c = 0; c < n_classes; c++)
        if (class_first[c + 1] < class_first[c])
            return rio_fail(FT_EARG, err, RIO_ERRCAP,
                            "%s: class %" PRIu64 " starts at key %" PRIu64
                            ", after the next class (%" PRIu64 ")",
                            name, c, class_first[c], class_first[c + 1]);
    for (uint64_t c = 0; c < n_classes; c++) {
        int rc = write_range(w, n_images + 1 + c, class_first[c], class_first[c + 1]);
        if (rc < 0) return rc;
    }
    return write_range(w, 0, n_images + 1, n_images + n_classes + 1);
}

/* ---------------------------------------------------------------- property */

int rio_property_read(const char *path, uint64_t *num_classes, uint32_t *h, uint32_t *w, char *err,
                      size_t errcap) {
    char *text;
    size_t len;
    int rc = ft_read_file(path, &text, &len);
    if (rc < 0) return rio_fail(rc, err, errcap, "%s: cannot read: %s", path, ft_strerror(rc));
    char *nl = strchr(text, '\n');
    size_t n = nl ? (size_t)(nl - text) : strlen(text);
    int ok = strlen(text) == len; /* no NUL bytes */
    for (const char *p = text + n; ok && *p; p++) ok = strchr(" \t\r\n", *p) != NULL;
    while (n > 0 && strchr(" \t\r", text[n - 1])) n--;
    text[n] = '\0';
    char *f1 = strchr(text, ','), *f2 = f1 ? strchr(f1 + 1, ',') : NULL;
    uint64_t v[3];
    if (ok && f1 && f2) {
        *f1++ = '\0', *f2++ = '\0';
        ok = ft_parse_u64(text, 1, UINT64_MAX, &v[0]) == 0 &&
             ft_parse_u64(f1, 1, UINT32_MAX, &v[1]) == 0 &&
             ft_parse_u64(f2, 1, UINT32_MAX, &v[2]) == 0;
        f1[-1] = ',', f2[-1] = ',';
    } else {
        ok = 0;
    }
    if (!ok) {
        rc = rio_fail(FT_EFORMAT, err, errcap,
                      "%s:1: expected \"<num_classes>,<h>,<w>\" with positive integers, got "
                      "\"%.60s\"",
                      path, text);
    } else {
        *num_classes = v[0], *h = (uint32_t)v[1], *w = (uint32_t)v[2];
    }
    free(text);
    return rc;
}

int rio_property_write(const char *path, uint64_t num_classes, uint32_t h, uint32_t w) {
    char line[96];
    int n = snprintf(line, sizeof line, "%" PRIu64 ",%" PRIu32 ",%" PRIu32 "\n", num_classes, h, w);
    char *tmp = rio_tmp_name(path);
    if (!tmp) return -ENOMEM;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    int rc = fd < 0 ? -errno : rio_write_full(fd, line, (size_t)n);
    if (fd >= 0) {
        int rc2 = rio_sync_close(fd);
        if (rc == 0) rc = rc2;
    }
    if (rc == 0) rc = rio_rename_durable(tmp, path);
    if (rc < 0 && fd >= 0) unlink(tmp);
    free(tmp);
    return rc;
}
