/* ld_testutil.c: see ld_test.h. */
#include "ld_test.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <turbojpeg.h>

#include "ftdb.h"

loader_config t_config(const char *path) {
    loader_config c;
    loader_config_init(&c);
    c.path = path;
    c.batch = 8;
    c.threads = 2;
    c.prefetch = 3;
    c.quiet = 1;
    return c;
}

int t_open(loader **l, const loader_config *c) {
    char err[LOADER_ERRCAP] = "";
    int rc = loader_open(l, c, err, sizeof err);
    if (rc) fprintf(stderr, "loader_open(%s): %s\n", c->path, err);
    return rc;
}

int t_collect(loader *l, uint64_t nb, t_run *r) {
    memset(r, 0, sizeof *r);
    r->nb = nb;
    loader_batch b;
    for (uint64_t k = 0; k < nb; k++) {
        int rc = loader_next(l, &b);
        if (rc) {
            fprintf(stderr, "loader_next: %s\n", loader_errmsg(l));
            return rc;
        }
        if (k == 0) {
            r->per = b.n;
            r->img_bytes = b.data_bytes / b.n;
            r->data = malloc(nb * b.data_bytes);
            r->labels = malloc(nb * b.n * sizeof *r->labels);
            r->indices = malloc(nb * b.n * sizeof *r->indices);
            r->requested = malloc(nb * b.n * sizeof *r->requested);
            r->flags = malloc(nb * b.n);
            r->epoch = malloc(nb * sizeof *r->epoch);
            r->step = malloc(nb * sizeof *r->step);
            if (!r->data || !r->labels || !r->indices || !r->requested || !r->flags || !r->epoch ||
                !r->step)
                return -ENOMEM;
        }
        memcpy(r->data + k * b.data_bytes, b.data, b.data_bytes);
        memcpy(r->labels + k * b.n, b.labels, b.n * sizeof *b.labels);
        memcpy(r->indices + k * b.n, b.indices, b.n * sizeof *b.indices);
        memcpy(r->requested + k * b.n, b.requested, b.n * sizeof *b.requested);
        memcpy(r->flags + k * b.n, b.flags, b.n);
        r->epoch[k] = b.epoch, r->step[k] = b.step;
    }
    return 0;
}

int t_collect_cfg(const loader_config *c, uint64_t nb, t_run *r) {
    loader *l;
    int rc = t_open(&l, c);
    if (rc) return rc;
    rc = t_collect(l, nb, r);
    loader_close(l);
    return rc;
}

void t_run_free(t_run *r) {
    free(r->data), free(r->labels), free(r->indices), free(r->requested), free(r->flags);
    free(r->epoch), free(r->step);
    memset(r, 0, sizeof *r);
}

int t_run_cmp(const t_run *a, const t_run *b, const char *what) {
    if (a->nb != b->nb || a->per != b->per || a->img_bytes != b->img_bytes) {
        fprintf(stderr, "%s: shapes differ\n", what);
        return 1;
    }
    uint64_t n = a->nb * a->per;
    for (uint64_t i = 0; i < n; i++) {
        if (a->labels[i] != b->labels[i] || a->indices[i] != b->indices[i] ||
            a->flags[i] != b->flags[i] ||
            memcmp(a->data + i * a->img_bytes, b->data + i * b->img_bytes, a->img_bytes)) {
            fprintf(stderr,
                    "%s: image %" PRIu64 " differs (index %" PRIu64 "/%" PRIu64 ", label %d/%d, "
                    "flags %d/%d)\n",
                    what, i, a->indices[i], b->indices[i], a->labels[i], b->labels[i], a->flags[i],
                    b->flags[i]);
            return 1;
        }
    }
    for (uint64_t k = 0; k < a->nb; k++)
        if (a->epoch[k] != b->epoch[k] || a->step[k] != b->step[k]) {
            fprintf(stderr, "%s: batch %" PRIu64 " position differs\n", what, k);
            return 1;
        }
    return 0;
}

int t_ref_decode(const char *lmdb_dir, uint64_t index, int32_t *label, uint8_t **rgb, uint32_t *h,
                 uint32_t *w) {
    char err[FTDB_ERRCAP];
    ftdb *db;
    int rc = ftdb_open(&db, lmdb_dir, err, sizeof err);
    if (rc) {
        fprintf(stderr, "%s\n", err);
        return rc;
    }
    const uint8_t *v;
    size_t len;
    ftdb_value_hdr hd;
    rc = ftdb_get(db, index, &v, &len);
    if (!rc) rc = ftdb_value_hdr_decode(v, len, &hd);
    tjhandle tj = tjInitDecompress();
    *rgb = NULL;
    if (!rc) {
        *label = hd.label, *h = hd.height, *w = hd.width;
        *rgb = malloc((size_t)hd.height * hd.width * 3);
        if (!*rgb) rc = -ENOMEM;
    }
    if (!rc && tjDecompress2(tj, v + FTDB_VALUE_HDR, hd.jpeg_len, *rgb, hd.width, hd.width * 3,
                             hd.height, TJPF_RGB, 0) != 0)
        rc = FT_EDECODE;
    tjDestroy(tj);
    ftdb_close(db);
    return rc;
}
