/* pack_shuffle.c: `ft-pack SRC.rec OUTDIR --shuffle [--seed S]`, a shuffled copy of a RecordIO
 * dataset (what insightface's scripts/shuffle_rec.py does for DALI users, formats.md 2.5), but
 * with the insightface layout kept.
 *
 * Records keep their keys and bytes; only their order in the file changes. The image records
 * (MXFaceDataset's samples: keys 1 .. label[0]-1 under a header record, else every key) are
 * written first, in the order of ft_permutation(n, seed); then the other records (identity
 * records N+1 .. N+C) in .idx order, and the header record, key 0, last, as RecBuilder writes
 * them. Since no key changes, the header's and identity records' key ranges stay true. The
 * copy streams: each record is read through the .idx (rio_reader_read_at) and written at once;
 * memory is the index and the permutation. The property file is copied when there is one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ft_common.h"
#include "ft_dataset.h"
#include "pack.h"
#include "recordio.h"

#define PROG "ft-pack"

typedef struct shuf {
    rio_reader *r;
    rio_writer *w;
    rio_index idx;
    uint64_t *keys, n; /* image keys (MXFaceDataset order) */
    int has_header;
    uint64_t written, bytes;
} shuf;

static int copy_one(shuf *s, uint64_t key, const char *src, char *err, size_t errcap) {
    uint64_t off;
    const uint8_t *data;
    size_t len;
    if (rio_index_find(&s->idx, key, &off) != 0) {
        snprintf(err, errcap, "%s: key %" PRIu64 " is not in the index", src, key);
        return FT_EFORMAT;
    }
    int rc = rio_reader_read_at(s->r, off, &data, &len);
    if (rc) {
        snprintf(err, errcap, "%s", rio_reader_errmsg(s->r));
        return rc;
    }
    if ((rc = rio_writer_write(s->w, key, data, len)) != 0) {
        snprintf(err, errcap, "%s", rio_writer_errmsg(s->w));
        return rc;
    }
    s->written++, s->bytes += len;
    return 0;
}

/* Images in shuffled order, then the other .idx keys in file order, key 0 last. */
static int copy_all(shuf *s, uint64_t seed, const char *src, char *err, size_t errcap) {
    uint64_t *perm = malloc((s->n ? s->n : 1) * sizeof *perm);
    if (!perm) {
        snprintf(err, errcap, "out of memory for a permutation of %" PRIu64, s->n);
        return -ENOMEM;
    }
    ft_permutation(perm, s->n, seed, 0);
    uint64_t lo = 1, hi = s->n + 1; /* header layout: image keys are 1 .. n */
    ft_progress pr;
    ft_progress_init(&pr, PROG, s->idx.n);
    int rc = 0;
    for (uint64_t i = 0; !rc && i < s->n; i++) {
        rc = copy_one(s, s->keys[perm[i]], src, err, errcap);
        ft_progress_add(&pr, 1, 0);
        if (!rc && ft_stop_requested()) rc = FT_ESTOP;
    }
    int last0 = 0;
    for (uint64_t i = 0; !rc && s->has_header && i < s->idx.n; i++) {
        uint64_t k = s->idx.keys[i];
        if (k >= lo && k < hi) continue;
        if (k == 0) {
            last0 = 1;
            continue;
        }
        rc = copy_one(s, k, src, err, errcap);
        ft_progress_add(&pr, 1, 0);
    }
    if (!rc && last0) rc = copy_one(s, 0, src, err, errcap);
    free(perm);
    if (rc)
        ft_progress_clear(&pr);
    else
        ft_progress_done(&pr);
    return rc;
}

static int copy_property(const char *src_prop, const char *outdir, char *err, size_t errcap) {
    uint64_t nc, sz;
    uint32_t h, w;
    char prop[4200];
    if (ft_file_size(src_prop, &sz) != 0) return 0;
    int rc = rio_property_read(src_prop, &nc, &h, &w, err, errcap);
    if (rc) return rc;
    if ((rc = ft_path_join(prop, sizeof prop, outdir, "property")) != 0 ||
        (rc = rio_property_write(prop, nc, h, w)) != 0)
        snprintf(err, errcap, "%s/property: %s", outdir, ft_strerror(rc));
    return rc;
}

int pack_shuffle_rec(const char *src, const char *outdir, uint64_t seed) {
    char idxp[4200], prop[4200], rec[4200], idx[4200], err[8192] = "";
    shuf s;
    memset(&s, 0, sizeof s);
    int rc = ft_rec_paths(src, idxp, sizeof idxp, prop, sizeof prop);
    if (!rc) rc = ft_path_join(rec, sizeof rec, outdir, "train.rec");
    if (!rc) rc = ft_path_join(idx, sizeof idx, outdir, "train.idx");
    if (rc) snprintf(err, sizeof err, "%s: path too long", outdir);
    if (!rc && (rc = rio_index_load(&s.idx, idxp, err, sizeof err)) == 0 &&
        (rc = rio_reader_open(&s.r, src)) != 0)
        snprintf(err, sizeof err, "%s", rio_reader_errmsg(NULL));
    if (!rc) rc = rio_index_validate(&s.idx, rio_reader_size(s.r), idxp, err, sizeof err);
    if (!rc)
        rc = rio_insightface_image_keys(s.r, &s.idx, &s.keys, &s.n, &s.has_header, err, sizeof err);
    double t0 = ft_now();
    if (!rc && (rc = ft_mkdir_p(outdir)) != 0)
        snprintf(err, sizeof err, "%s: %s", outdir, ft_strerror(rc));
    if (!rc && (rc = rio_writer_open(&s.w, rec, idx)) != 0)
        snprintf(err, sizeof err, "%s: %s", rec, ft_strerror(rc));
    if (!rc) rc = copy_all(&s, seed, src, err, sizeof err);
    if (!rc) {
        rc = rio_writer_close(s.w);
        s.w = NULL;
        if (rc) snprintf(err, sizeof err, "%s: %s", rec, ft_strerror(rc));
        if (!rc && (rc = copy_property(prop, outdir, err, sizeof err)) != 0)
            unlink(rec), unlink(idx);
    }
    if (rc == FT_ESTOP) snprintf(err, sizeof err, "interrupted; nothing written");
    rio_writer_abort(s.w);
    if (rc)
        fprintf(stderr, PROG ": %s\n", err[0] ? err : ft_strerror(rc));
    else
        printf(PROG ": %" PRIu64 " records (%" PRIu64 " images shuffled with seed %" PRIu64
                    ", %s), %.1f MB in %.1f s -> %s\n",
               s.written, s.n, seed, s.has_header ? "insightface header kept" : "no header",
               (double)s.bytes / 1e6, ft_now() - t0, outdir);
    rio_reader_close(s.r);
    rio_index_free(&s.idx);
    free(s.keys);
    return rc;
}
