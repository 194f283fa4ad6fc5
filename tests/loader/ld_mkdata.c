/* ld_mkdata: writes a small deterministic test dataset for the loader tests.
 *
 *   ld_mkdata OUTDIR [--n N] [--classes C] [--size S] [--quality Q] [--seed X]
 *                    [--truncate I]... [--garbage I]... [--wrongsize I]...
 *
 * OUTDIR/train.lmdb  facetrain LMDB (ingest/ftdb.h), sample i = image i
 * OUTDIR/train.rec, train.idx, property   insightface layout with the same images in the same
 *                    order (image key i + 1; odd samples carry 2-float labels [class, 1.0]),
 *                    when the build has RecordIO.
 * Images: S x S (default 112) RGB patterns, asymmetric left/right, JPEG quality Q (95).
 * Labels: contiguous classes, label(i) = i * C / N. --truncate cuts sample I's JPEG in half,
 * --garbage replaces it with random bytes, --wrongsize encodes it at S-16 pixels.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>
#include <turbojpeg.h>

#include "ft_common.h"
#include "ftdb.h"
#ifdef FT_LOADER_HAVE_RECORDIO
#include "recordio.h"
#endif

#define MAXBAD 64

typedef struct mk {
    const char *out;
    uint64_t n, classes, seed;
    int size, quality;
    uint64_t trunc[MAXBAD], garb[MAXBAD], wrong[MAXBAD];
    int ntrunc, ngarb, nwrong;
} mk;

static int in(const uint64_t *a, int n, uint64_t v) {
    for (int i = 0; i < n; i++)
        if (a[i] == v) return 1;
    return 0;
}

static int32_t label_of(const mk *m, uint64_t i) {
    return (int32_t)(i * m->classes / m->n);
}

/* JPEG of sample i (malloc'd). */
static int make_jpeg(const mk *m, tjhandle tj, uint64_t i, uint8_t **out, unsigned long *len) {
    int s = in(m->wrong, m->nwrong, i) ? m->size - 16 : m->size;
    uint8_t *px = malloc((size_t)s * s * 3);
    if (!px) return -ENOMEM;
    for (int y = 0; y < s; y++)
        for (int x = 0; x < s; x++) {
            uint8_t *p = px + ((size_t)y * s + x) * 3;
            uint64_t h = ft_hash64(m->seed, i, (uint64_t)y * 4096 + x);
            int noise = (int)(h & 15) - 8;
            int blob = (x < s / 3 && y > s / 4 && y < s / 2) ? 60 : 0; /* left-only feature */
            p[0] = (uint8_t)((x * 2 + (int)(i * 7) + noise + blob) & 255);
            p[1] = (uint8_t)((y * 2 + (int)(i * 13) + noise) & 255);
            p[2] = (uint8_t)(((x + y) + (int)(i * 3) - noise + blob) & 255);
        }
    *out = NULL, *len = 0;
    int rc = tjCompress2(tj, px, s, s * 3, s, TJPF_RGB, out, len, TJSAMP_420, m->quality, 0);
    free(px);
    if (rc) return FT_EDECODE;
    if (in(m->trunc, m->ntrunc, i)) *len /= 2;
    if (in(m->garb, m->ngarb, i))
        for (unsigned long k = 0; k < *len; k++) (*out)[k] = (uint8_t)ft_hash64(7, i, k);
    return 0;
}

typedef struct sink {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi samples, meta;
    ftdb_sum sum;
#ifdef FT_LOADER_HAVE_RECORDIO
    rio_writer *rw;
    uint64_t *class_first;
#endif
} sink;

static int lmdb_open(const mk *m, sink *k) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/train.lmdb", m->out);
    int rc = ft_mkdir_p(dir);
    if (rc) return rc;
    if ((rc = mdb_env_create(&k->env)) != 0) return rc;
    mdb_env_set_maxdbs(k->env, 4);
    mdb_env_set_mapsize(k->env, (size_t)(m->n * 64 * 1024 + (64u << 20)));
    if ((rc = mdb_env_open(k->env, dir, 0, 0644)) != 0) return rc;
    if ((rc = mdb_txn_begin(k->env, NULL, 0, &k->txn)) != 0) return rc;
    if ((rc = mdb_dbi_open(k->txn, FTDB_DB_SAMPLES, MDB_CREATE, &k->samples)) != 0) return rc;
    if ((rc = mdb_dbi_open(k->txn, FTDB_DB_META, MDB_CREATE, &k->meta)) != 0) return rc;
    return ftdb_sum_init(&k->sum);
}

static int put_sample(const mk *m, sink *k, uint64_t i, const uint8_t *jpeg, unsigned long len) {
    int s = in(m->wrong, m->nwrong, i) ? m->size - 16 : m->size;
    size_t vlen = FTDB_VALUE_HDR + len;
    uint8_t *v = malloc(vlen), key[8];
    if (!v) return -ENOMEM;
    ftdb_value_hdr h = {label_of(m, i), (uint16_t)s, (uint16_t)s, (uint32_t)len, (uint32_t)i + 1};
    ftdb_value_hdr_encode(v, &h);
    memcpy(v + FTDB_VALUE_HDR, jpeg, len);
    ftdb_key(key, i);
    MDB_val mk_ = {8, key}, mv = {vlen, v};
    int rc = mdb_put(k->txn, k->samples, &mk_, &mv, MDB_APPEND);
    ftdb_sum_add(&k->sum, v, vlen);
#ifdef FT_LOADER_HAVE_RECORDIO
    if (!rc) {
        rio_irheader ih = {0, (float)label_of(m, i), i + 1, 0};
        float lab[2] = {(float)label_of(m, i), 1.0f};
        uint32_t nl = (i & 1) ? 2 : 0;
        size_t plen = rio_pack_size(nl, len);
        uint8_t *p = malloc(plen);
        rc = p ? 0 : -ENOMEM;
        if (p) rio_pack(p, &ih, lab, nl, jpeg, len);
        if (!rc) rc = rio_writer_write(k->rw, i + 1, p, plen);
        free(p);
    }
#endif
    free(v);
    return rc;
}

static int finish(const mk *m, sink *k) {
    ftdb_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.version = FTDB_VERSION;
    meta.num_samples = m->n, meta.num_classes = m->classes;
    meta.height = meta.width = (uint32_t)m->size;
    snprintf(meta.source, sizeof meta.source, "ld_mkdata seed %" PRIu64, m->seed);
    snprintf(meta.shuffle, sizeof meta.shuffle, "none");
    meta.checksum = ftdb_sum_final(&k->sum);
    int rc = ftdb_meta_put(k->txn, k->meta, &meta);
    if (!rc)
        rc = mdb_txn_commit(k->txn);
    else
        mdb_txn_abort(k->txn);
    mdb_env_close(k->env);
#ifdef FT_LOADER_HAVE_RECORDIO
    if (!rc) {
        for (uint64_t c = 0, i = 0; c <= m->classes; c++) {
            while (i < m->n && (uint64_t)label_of(m, i) < c) i++;
            k->class_first[c] = i + 1;
        }
        rc = rio_write_insightface_meta(k->rw, m->n, k->class_first, m->classes);
        if (!rc)
            rc = rio_writer_close(k->rw);
        else
            rio_writer_abort(k->rw);
        char p[4200];
        snprintf(p, sizeof p, "%s/property", m->out);
        if (!rc) rc = rio_property_write(p, m->classes, (uint32_t)m->size, (uint32_t)m->size);
    }
    free(k->class_first);
#endif
    return rc;
}

static int write_all(const mk *m) {
    sink k;
    memset(&k, 0, sizeof k);
    int rc = lmdb_open(m, &k);
    if (rc) return rc;
#ifdef FT_LOADER_HAVE_RECORDIO
    char rec[4200], idx[4200];
    snprintf(rec, sizeof rec, "%s/train.rec", m->out);
    snprintf(idx, sizeof idx, "%s/train.idx", m->out);
    k.class_first = calloc(m->classes + 1, sizeof *k.class_first);
    if (!k.class_first || (rc = rio_writer_open(&k.rw, rec, idx)) != 0) return rc ? rc : -ENOMEM;
#endif
    tjhandle tj = tjInitCompress();
    for (uint64_t i = 0; i < m->n && rc == 0; i++) {
        uint8_t *jpeg;
        unsigned long len;
        rc = make_jpeg(m, tj, i, &jpeg, &len);
        if (!rc) rc = put_sample(m, &k, i, jpeg, len);
        tjFree(jpeg);
    }
    tjDestroy(tj);
    if (rc) return rc;
    return finish(m, &k);
}

static int add(uint64_t *a, int *n, const char *s) {
    if (*n >= MAXBAD) return FT_ERANGE;
    return ft_parse_u64(s, 0, UINT64_MAX, &a[(*n)++]);
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(
            argc, argv, "ld_mkdata",
            "usage: ld_mkdata OUTDIR [--n N] [--classes C] [--size S] [--quality Q] [--seed X]\n"
            "                 [--truncate I] [--garbage I] [--wrongsize I]\n"
            "Write a deterministic loader test dataset (LMDB, and .rec/.idx/property).\n"))
        return 0;
    mk m = {.n = 200, .classes = 10, .seed = 1, .size = 112, .quality = 95};
    if (argc < 2) {
        fprintf(stderr, "usage: ld_mkdata OUTDIR [--n N] [--classes C] [--size S] [--quality Q] "
                        "[--seed X] [--truncate I] [--garbage I] [--wrongsize I]\n");
        return 2;
    }
    m.out = argv[1];
    uint64_t v;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *o = argv[i], *a = argv[i + 1];
        int rc = 0;
        if (!strcmp(o, "--n"))
            rc = ft_parse_u64(a, 1, 1u << 24, &m.n);
        else if (!strcmp(o, "--classes"))
            rc = ft_parse_u64(a, 1, 1u << 20, &m.classes);
        else if (!strcmp(o, "--seed"))
            rc = ft_parse_u64(a, 0, UINT64_MAX, &m.seed);
        else if (!strcmp(o, "--size"))
            rc = ft_parse_u64(a, 32, 1024, &v), m.size = (int)v;
        else if (!strcmp(o, "--quality"))
            rc = ft_parse_u64(a, 1, 100, &v), m.quality = (int)v;
        else if (!strcmp(o, "--truncate"))
            rc = add(m.trunc, &m.ntrunc, a);
        else if (!strcmp(o, "--garbage"))
            rc = add(m.garb, &m.ngarb, a);
        else if (!strcmp(o, "--wrongsize"))
            rc = add(m.wrong, &m.nwrong, a);
        else
            rc = FT_EARG;
        if (rc) {
            fprintf(stderr, "ld_mkdata: bad option %s %s\n", o, a);
            return 2;
        }
    }
    if (m.classes > m.n) m.classes = m.n;
    int rc = ft_rm_rf(m.out);
    if (!rc) rc = ft_mkdir_p(m.out);
    if (!rc) rc = write_all(&m);
    if (rc) {
        fprintf(stderr, "ld_mkdata: %s: %s\n", m.out, rc > 0 ? mdb_strerror(rc) : ft_strerror(rc));
        return 1;
    }
    return 0;
}
