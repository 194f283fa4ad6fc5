/* ingest_writer.c: writes the LMDB dataset (ftdb.h layout) in one pass.
 *
 * Values are appended in index order (MDB_APPEND, keys 0, 1, 2, ... big-endian) straight into
 * LMDB's pages (MDB_RESERVE); a transaction is committed every commit_bytes, so memory stays
 * bounded whatever the dataset size. MDB_NOSYNC during the run, one fdatasync at the end. The
 * map size starts at the caller's estimate and grows between transactions if the estimate
 * was short. MDB_NOLOCK: we are the only user of the directory until it is renamed into place. */
#include "ingest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

struct ing_writer {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi samples, meta;
    uint64_t count;
    uint64_t map_size, psize;
    uint64_t commit_bytes, txn_bytes; /* footprint of the values in the open transaction */
    uint64_t committed_end;           /* file bytes used after the last commit */
    ftdb_sum sum;
    const char *dir;
};

/* LMDB reports a short write (what a full disk gives) as EIO: tell the two apart by the space
 * left on the file system. */
static int disk_full(const ing_writer *w) {
    struct statvfs vf;
    return statvfs(w->dir, &vf) == 0 &&
           (uint64_t)vf.f_bavail * vf.f_frsize < w->commit_bytes + (4u << 20);
}

static int fail(int rc, const ing_writer *w, const char *what, char *err, size_t errcap) {
    if (rc == EIO && disk_full(w)) rc = ENOSPC;
    if (rc == ENOSPC || rc == EDQUOT)
        snprintf(err, errcap, "%s: %s: no space left on device", w->dir, what);
    else if (rc == MDB_MAP_FULL)
        snprintf(err, errcap,
                 "%s: %s: LMDB map full at %" PRIu64 " bytes (size estimate too small)", w->dir,
                 what, w->map_size);
    else
        snprintf(err, errcap, "%s: %s: %s", w->dir, what, mdb_strerror(rc));
    return rc > 0 ? -rc : FT_EFORMAT;
}

static int txn_begin(ing_writer *w, char *err, size_t errcap) {
    int rc = mdb_txn_begin(w->env, NULL, 0, &w->txn);
    if (rc) return fail(rc, w, "mdb_txn_begin", err, errcap);
    w->txn_bytes = 0;
    return 0;
}

static int txn_commit(ing_writer *w, char *err, size_t errcap) {
    int rc = mdb_txn_commit(w->txn);
    w->txn = NULL;
    if (rc) return fail(rc, w, "commit", err, errcap);
    MDB_envinfo info;
    mdb_env_info(w->env, &info);
    w->committed_end = ((uint64_t)info.me_last_pgno + 1) * w->psize;
    return 0;
}

int ing_writer_open(ing_writer **out, const char *dir, uint64_t map_size, uint64_t commit_bytes,
                    char *err, size_t errcap) {
    *out = NULL;
    ing_writer *w = calloc(1, sizeof *w);
    if (!w) return -ENOMEM;
    w->dir = dir;
    w->map_size = map_size;
    w->commit_bytes = commit_bytes;
    int rc = ftdb_sum_init(&w->sum);
    if (rc < 0) {
        free(w);
        return rc;
    }
    MDB_stat st;
    if ((rc = mdb_env_create(&w->env)) || (rc = mdb_env_set_maxdbs(w->env, 4)) ||
        (rc = mdb_env_set_mapsize(w->env, (size_t)map_size)) ||
        (rc = mdb_env_open(w->env, dir, MDB_NOLOCK | MDB_NOSYNC, 0644)) ||
        (rc = mdb_env_stat(w->env, &st))) {
        rc = fail(rc, w, "cannot create LMDB", err, errcap);
        ing_writer_abort(w);
        return rc;
    }
    w->psize = st.ms_psize;
    if ((rc = txn_begin(w, err, errcap)) < 0) {
        ing_writer_abort(w);
        return rc;
    }
    if ((rc = mdb_dbi_open(w->txn, FTDB_DB_SAMPLES, MDB_CREATE, &w->samples)) ||
        (rc = mdb_dbi_open(w->txn, FTDB_DB_META, MDB_CREATE, &w->meta))) {
        rc = fail(rc, w, "mdb_dbi_open", err, errcap);
        ing_writer_abort(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* Before adding `fp` bytes: commit every commit_bytes, and grow the map between transactions
 * when the data so far plus this transaction could outgrow it. */
static int make_room(ing_writer *w, uint64_t fp, char *err, size_t errcap) {
    uint64_t slack = 16u << 20;
    uint64_t need = w->committed_end + (w->txn_bytes + fp) + (w->txn_bytes + fp) / 8 + slack;
    if (w->txn_bytes < w->commit_bytes && need <= w->map_size) return 0;
    int rc = txn_commit(w, err, errcap);
    if (rc < 0) return rc;
    need = w->committed_end + fp + fp / 8 + w->commit_bytes * 2 + slack;
    if (need > w->map_size) {
        uint64_t grown = w->map_size + w->map_size / 4;
        w->map_size = (grown > need ? grown : need + w->psize - 1) / w->psize * w->psize;
        if ((rc = mdb_env_set_mapsize(w->env, (size_t)w->map_size)) != 0)
            return fail(rc, w, "growing the map", err, errcap);
    }
    return txn_begin(w, err, errcap);
}

int ing_writer_put(ing_writer *w, const ftdb_value_hdr *h, const uint8_t *jpeg, char *err,
                   size_t errcap) {
    size_t vlen = FTDB_VALUE_HDR + (size_t)h->jpeg_len;
    uint64_t fp = ing_value_footprint(vlen, w->psize);
    int rc = make_room(w, fp, err, errcap);
    if (rc < 0) return rc;
    uint8_t kb[8];
    ftdb_key(kb, w->count);
    MDB_val k = {8, kb}, v = {vlen, NULL};
    if ((rc = mdb_put(w->txn, w->samples, &k, &v, MDB_APPEND | MDB_RESERVE)) != 0)
        return fail(rc, w, "mdb_put", err, errcap);
    uint8_t *dst = v.mv_data;
    ftdb_value_hdr_encode(dst, h);
    memcpy(dst + FTDB_VALUE_HDR, jpeg, h->jpeg_len);
    ftdb_sum_add(&w->sum, dst, vlen);
    w->count++;
    w->txn_bytes += fp;
    return 0;
}

uint64_t ing_writer_count(const ing_writer *w) {
    return w->count;
}

int ing_writer_finish(ing_writer *w, ftdb_meta *meta, char *err, size_t errcap) {
    meta->version = FTDB_VERSION;
    meta->num_samples = w->count;
    meta->checksum = ftdb_sum_final(&w->sum);
    int rc = ftdb_meta_put(w->txn, w->meta, meta); /* -errno or an LMDB code */
    if (rc != 0) rc = fail(rc < 0 && rc > -4096 ? -rc : rc, w, "writing meta", err, errcap);
    if (rc == 0) rc = txn_commit(w, err, errcap);
    if (rc == 0 && (rc = mdb_env_sync(w->env, 1)) != 0) rc = fail(rc, w, "sync", err, errcap);
    ing_writer_abort(w); /* closes; nothing is left to abort after a commit */
    return rc;
}

void ing_writer_abort(ing_writer *w) {
    if (!w) return;
    if (w->txn) mdb_txn_abort(w->txn);
    if (w->env) mdb_env_close(w->env);
    if (w->sum.st) ftdb_sum_final(&w->sum);
    free(w);
}
