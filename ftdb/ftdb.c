/* ftdb.c: see ftdb.h. */
#include "ftdb.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ftdb {
    MDB_env *env;
    MDB_txn *txn; /* long-lived read transaction: values stay mapped */
    MDB_dbi samples, meta_dbi;
    ftdb_meta meta;
    char path[4096];
};

static int lmdb_rc(int rc) {
    /* LMDB returns errno values or its own codes (-30799..); map its codes to FT_EFORMAT
     * only where the caller prints mdb_strerror itself. */
    return rc > 0 ? -rc : rc;
}

void ftdb_value_hdr_encode(uint8_t out[FTDB_VALUE_HDR], const ftdb_value_hdr *h) {
    ft_wr_le32(out, (uint32_t)h->label);
    out[4] = (uint8_t)h->height, out[5] = (uint8_t)(h->height >> 8);
    out[6] = (uint8_t)h->width, out[7] = (uint8_t)(h->width >> 8);
    ft_wr_le32(out + 8, h->jpeg_len);
    ft_wr_le32(out + 12, h->src_key);
}

int ftdb_value_hdr_decode(const uint8_t *v, size_t len, ftdb_value_hdr *h) {
    if (len < FTDB_VALUE_HDR) return FT_ETRUNC;
    h->label = (int32_t)ft_rd_le32(v);
    h->height = (uint16_t)(v[4] | v[5] << 8);
    h->width = (uint16_t)(v[6] | v[7] << 8);
    h->jpeg_len = ft_rd_le32(v + 8);
    h->src_key = ft_rd_le32(v + 12);
    if ((uint64_t)h->jpeg_len + FTDB_VALUE_HDR != len) return FT_EFORMAT;
    if (h->label < 0) return FT_ERANGE;
    return 0;
}

int ftdb_sum_init(ftdb_sum *s) {
    s->st = XXH3_createState();
    if (!s->st) return -ENOMEM;
    XXH3_64bits_reset(s->st);
    return 0;
}

void ftdb_sum_add(ftdb_sum *s, const void *value, size_t len) {
    uint8_t l[8];
    ft_wr_le64(l, (uint64_t)len);
    XXH3_64bits_update(s->st, l, 8);
    XXH3_64bits_update(s->st, value, len);
}

uint64_t ftdb_sum_final(ftdb_sum *s) {
    uint64_t h = XXH3_64bits_digest(s->st);
    XXH3_freeState(s->st);
    s->st = NULL;
    return h;
}

/* ---- meta ---- */

static int meta_get(MDB_txn *txn, MDB_dbi dbi, const char *key, char *out, size_t cap) {
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc) return rc;
    if (v.mv_size >= cap) return FT_ERANGE;
    memcpy(out, v.mv_data, v.mv_size);
    out[v.mv_size] = '\0';
    return 0;
}

static int meta_put(MDB_txn *txn, MDB_dbi dbi, const char *key, const char *val) {
    MDB_val k = {strlen(key), (void *)key}, v = {strlen(val), (void *)val};
    return lmdb_rc(mdb_put(txn, dbi, &k, &v, 0));
}

int ftdb_meta_put(MDB_txn *txn, MDB_dbi dbi, const ftdb_meta *m) {
    char b[64];
    int rc = 0;
    rc = rc ? rc : meta_put(txn, dbi, "format", FTDB_FORMAT);
    snprintf(b, sizeof b, "%d", FTDB_VERSION);
    rc = rc ? rc : meta_put(txn, dbi, "version", b);
    snprintf(b, sizeof b, "%" PRIu64, m->num_samples);
    rc = rc ? rc : meta_put(txn, dbi, "num_samples", b);
    snprintf(b, sizeof b, "%" PRIu64, m->num_classes);
    rc = rc ? rc : meta_put(txn, dbi, "num_classes", b);
    snprintf(b, sizeof b, "%" PRIu32, m->height);
    rc = rc ? rc : meta_put(txn, dbi, "image_height", b);
    snprintf(b, sizeof b, "%" PRIu32, m->width);
    rc = rc ? rc : meta_put(txn, dbi, "image_width", b);
    rc = rc ? rc : meta_put(txn, dbi, "source", m->source);
    rc = rc ? rc : meta_put(txn, dbi, "shuffle", m->shuffle[0] ? m->shuffle : "none");
    snprintf(b, sizeof b, "xxh3-64:%016" PRIx64, m->checksum);
    rc = rc ? rc : meta_put(txn, dbi, "checksum", b);
    return rc;
}

static int meta_read(ftdb *db, char *err, size_t errcap) {
    char b[1024];
    ftdb_meta *m = &db->meta;
    memset(m, 0, sizeof *m);
    if (meta_get(db->txn, db->meta_dbi, "format", b, sizeof b) || strcmp(b, FTDB_FORMAT) != 0) {
        snprintf(err, errcap, "%s: not a facetrain dataset (meta 'format' is not '%s')", db->path,
                 FTDB_FORMAT);
        return FT_EFORMAT;
    }
    uint64_t v;
    if (meta_get(db->txn, db->meta_dbi, "version", b, sizeof b) ||
        ft_parse_u64(b, 0, UINT32_MAX, &v)) {
        snprintf(err, errcap, "%s: meta 'version' missing or not a number", db->path);
        return FT_EFORMAT;
    }
    if (v != FTDB_VERSION) {
        snprintf(err, errcap,
                 "%s: dataset format version %" PRIu64 ", this build reads version %d "
                 "(re-run ft-ingest)",
                 db->path, v, FTDB_VERSION);
        return FT_EVERSION;
    }
    m->version = (uint32_t)v;
    struct {
        const char *key;
        uint64_t *u64;
        uint32_t *u32;
    } nums[] = {{"num_samples", &m->num_samples, NULL},
                {"num_classes", &m->num_classes, NULL},
                {"image_height", NULL, &m->height},
                {"image_width", NULL, &m->width}};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        if (meta_get(db->txn, db->meta_dbi, nums[i].key, b, sizeof b) ||
            ft_parse_u64(b, 0, nums[i].u32 ? UINT32_MAX : UINT64_MAX, &v)) {
            snprintf(err, errcap, "%s: meta '%s' missing or not a number", db->path, nums[i].key);
            return FT_EFORMAT;
        }
        if (nums[i].u64)
            *nums[i].u64 = v;
        else
            *nums[i].u32 = (uint32_t)v;
    }
    if (meta_get(db->txn, db->meta_dbi, "source", m->source, sizeof m->source)) m->source[0] = '\0';
    if (meta_get(db->txn, db->meta_dbi, "shuffle", m->shuffle, sizeof m->shuffle))
        strcpy(m->shuffle, "none");
    if (meta_get(db->txn, db->meta_dbi, "checksum", b, sizeof b) ||
        strncmp(b, "xxh3-64:", 8) != 0 || strlen(b) != 24) {
        snprintf(err, errcap, "%s: meta 'checksum' missing or malformed", db->path);
        return FT_EFORMAT;
    }
    char *end;
    m->checksum = strtoull(b + 8, &end, 16);
    if (*end) {
        snprintf(err, errcap, "%s: meta 'checksum' malformed", db->path);
        return FT_EFORMAT;
    }
    return 0;
}

/* LMDB maps data.mdb and trusts its meta pages: in a file shorter than they say (an interrupted
 * copy or rsync) the first access past the end faults with SIGBUS. Read both meta pages as
 * LMDB 0.9 lays them out on a 64-bit host (16-byte page header; MDB_meta: magic, version,
 * address, mapsize, two 48-byte MDB_db whose first holds the page size, last page number,
 * txnid), take the newer one and compare the size it needs with the file's. A file that is
 * not LMDB is left to mdb_env_open to name. */
#define LMDB_MAGIC   0xBEEFC0DEu
#define META_AT      16
#define META_BYTES   144 /* up to and including mm_txnid */
#define META_PSIZE   24  /* mm_dbs[FREE_DBI].md_pad, offsets within MDB_meta */
#define META_LAST_PG 120
#define META_TXNID   128

static int read_meta(int fd, uint64_t at, uint64_t *psize, uint64_t *last_pg, uint64_t *txnid) {
    uint8_t m[META_BYTES];
    if (pread(fd, m, sizeof m, (off_t)(at + META_AT)) != (ssize_t)sizeof m) return -1;
    if (ft_rd_le32(m) != LMDB_MAGIC) return -1;
    *psize = ft_rd_le32(m + META_PSIZE);
    *last_pg = ft_rd_le64(m + META_LAST_PG);
    *txnid = ft_rd_le64(m + META_TXNID);
    return *psize >= 512 && *psize <= (1u << 16) ? 0 : -1;
}

static int check_data_size(const char *data, char *err, size_t errcap) {
    int fd = open(data, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int rc = -errno;
        snprintf(err, errcap, "%s: %s", data, ft_strerror(rc));
        if (fd >= 0) close(fd);
        return rc;
    }
    uint64_t ps0, last0, txn0, ps1, last1, txn1, size = (uint64_t)st.st_size;
    int ok0 = read_meta(fd, 0, &ps0, &last0, &txn0) == 0;
    int ok1 = ok0 && read_meta(fd, ps0, &ps1, &last1, &txn1) == 0 && ps1 == ps0;
    close(fd);
    if (!ok0) return 0; /* not LMDB (or its first page is gone): mdb_env_open says so */
    uint64_t last = ok1 && txn1 > txn0 ? last1 : last0;
    if (last > UINT64_MAX / ps0 - 1 || (last + 1) * ps0 > size) {
        snprintf(err, errcap,
                 "%s: truncated: %" PRIu64 " bytes, but its LMDB meta page needs %" PRIu64
                 " (%" PRIu64 " pages of %" PRIu64 "); an interrupted copy? copy it again",
                 data, size, (last + 1) * ps0, last + 1, ps0);
        return FT_ETRUNC;
    }
    return 0;
}

int ftdb_open(ftdb **out, const char *dir, char *err, size_t errcap) {
    *out = NULL;
    ftdb *db = calloc(1, sizeof *db);
    if (!db) return -ENOMEM;
    snprintf(db->path, sizeof db->path, "%s", dir);
    int rc;
    char data[4200];
    if (ft_path_join(data, sizeof data, dir, "data.mdb") == 0) {
        if ((rc = check_data_size(data, err, errcap)) != 0) {
            free(db);
            return rc;
        }
    }
    if ((rc = mdb_env_create(&db->env)) != 0) goto lmdb_fail;
    mdb_env_set_maxdbs(db->env, 4);
    if ((rc = mdb_env_open(db->env, dir, MDB_RDONLY | MDB_NOLOCK | MDB_NORDAHEAD, 0644)) != 0)
        goto lmdb_fail;
    if ((rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &db->txn)) != 0) goto lmdb_fail;
    if ((rc = mdb_dbi_open(db->txn, FTDB_DB_META, 0, &db->meta_dbi)) != 0 ||
        (rc = mdb_dbi_open(db->txn, FTDB_DB_SAMPLES, 0, &db->samples)) != 0) {
        snprintf(err, errcap, "%s: not a facetrain dataset (no '%s'/'%s' databases: %s)", dir,
                 FTDB_DB_META, FTDB_DB_SAMPLES, mdb_strerror(rc));
        ftdb_close(db);
        return FT_EFORMAT;
    }
    if ((rc = meta_read(db, err, errcap)) != 0) {
        ftdb_close(db);
        return rc;
    }
    *out = db;
    return 0;
lmdb_fail:
    snprintf(err, errcap, "%s: cannot open LMDB: %s", dir, mdb_strerror(rc));
    ftdb_close(db);
    return rc > 0 ? -rc : FT_EFORMAT;
}

void ftdb_close(ftdb *db) {
    if (!db) return;
    if (db->txn) mdb_txn_abort(db->txn);
    if (db->env) mdb_env_close(db->env);
    free(db);
}

const ftdb_meta *ftdb_get_meta(const ftdb *db) {
    return &db->meta;
}

const char *ftdb_path(const ftdb *db) {
    return db->path;
}

int ftdb_data_path(const ftdb *db, char *out, size_t cap) {
    return ft_path_join(out, cap, db->path, "data.mdb");
}

int ftdb_get(ftdb *db, uint64_t index, const uint8_t **val, size_t *len) {
    uint8_t kb[8];
    ftdb_key(kb, index);
    MDB_val k = {8, kb}, v;
    int rc = mdb_get(db->txn, db->samples, &k, &v);
    if (rc == MDB_NOTFOUND) return FT_ERANGE;
    if (rc) return rc > 0 ? -rc : FT_EFORMAT;
    *val = v.mv_data;
    *len = v.mv_size;
    return 0;
}

/* File offset of a pointer into the read-only map of data.mdb. LMDB reports the map address
 * only for MDB_FIXEDMAP environments, so find the mapping that holds `p` (same device and
 * inode as data.mdb) in /proc/self/maps and add its file offset. */
static int map_file_offset(const ftdb *db, const void *p, uint64_t *off) {
    char data[4200];
    struct stat st;
    if (ftdb_data_path(db, data, sizeof data) != 0) return FT_ERANGE;
    if (stat(data, &st) != 0) return -errno;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -errno;
    char line[4600];
    int rc = FT_EFORMAT;
    while (rc && fgets(line, sizeof line, f)) {
        unsigned long lo, hi, fo, ino;
        unsigned int dmaj, dmin;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &lo, &hi, perms, &fo, &dmaj, &dmin, &ino) !=
            7)
            continue;
        uintptr_t a = (uintptr_t)p;
        if (ino == (unsigned long)st.st_ino && a >= lo && a < hi) {
            *off = (uint64_t)(a - lo) + fo;
            rc = 0;
        }
    }
    fclose(f);
    return rc;
}

int ftdb_value_extents(ftdb *db, uint64_t *offsets, uint32_t *lengths, char *err, size_t errcap) {
    MDB_envinfo info;
    mdb_env_info(db->env, &info);
    MDB_cursor *c;
    int rc = mdb_cursor_open(db->txn, db->samples, &c);
    if (rc) {
        snprintf(err, errcap, "%s: %s", db->path, mdb_strerror(rc));
        return FT_EFORMAT;
    }
    MDB_val k, v;
    const uint8_t *base = NULL; /* address of file offset 0 in the single read-only map */
    uint64_t i = 0, n = db->meta.num_samples;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), i++) {
        if (i >= n || k.mv_size != 8 || ft_rd_be64(k.mv_data) != i) {
            snprintf(err, errcap,
                     "%s: sample keys are not 0..%" PRIu64 " (at position %" PRIu64 ")", db->path,
                     n - 1, i);
            mdb_cursor_close(c);
            return FT_EFORMAT;
        }
        const uint8_t *p = v.mv_data;
        if (!base) {
            uint64_t off0;
            if (map_file_offset(db, p, &off0) != 0) {
                snprintf(err, errcap, "%s: cannot locate the data.mdb mapping", db->path);
                mdb_cursor_close(c);
                return FT_EFORMAT;
            }
            base = p - off0;
        }
        if (v.mv_size > UINT32_MAX || p < base || p + v.mv_size > base + info.me_mapsize) {
            snprintf(err, errcap, "%s: sample %" PRIu64 ": value outside the map", db->path, i);
            mdb_cursor_close(c);
            return FT_EFORMAT;
        }
        offsets[i] = (uint64_t)(p - base);
        lengths[i] = (uint32_t)v.mv_size;
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND || i != n) {
        snprintf(err, errcap, "%s: %" PRIu64 " samples found, meta says %" PRIu64, db->path, i, n);
        return FT_EFORMAT;
    }
    return 0;
}

int ftdb_compute_checksum(ftdb *db, uint64_t *sum, uint64_t *count, ft_progress *progress,
                          char *err, size_t errcap) {
    ftdb_sum s;
    int rc = ftdb_sum_init(&s);
    if (rc) return rc;
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(db->txn, db->samples, &c)) != 0) {
        snprintf(err, errcap, "%s: %s", db->path, mdb_strerror(rc));
        ftdb_sum_final(&s);
        return FT_EFORMAT;
    }
    MDB_val k, v;
    uint64_t i = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), i++) {
        if (k.mv_size != 8 || ft_rd_be64(k.mv_data) != i) {
            snprintf(err, errcap, "%s: sample key at position %" PRIu64 " is not %" PRIu64,
                     db->path, i, i);
            rc = FT_EFORMAT;
            break;
        }
        ftdb_sum_add(&s, v.mv_data, v.mv_size);
        if (progress) ft_progress_add(progress, 1, v.mv_size);
        if (ft_stop_requested()) {
            rc = FT_ESTOP;
            snprintf(err, errcap, "%s: stopped", db->path);
            break;
        }
    }
    mdb_cursor_close(c);
    uint64_t h = ftdb_sum_final(&s);
    if (rc != MDB_NOTFOUND) {
        if (rc == FT_EFORMAT || rc == FT_ESTOP) return rc; /* message already in err */
        /* errno values and LMDB's own codes (MDB_CORRUPTED, MDB_PAGE_NOTFOUND, ...) */
        snprintf(err, errcap, "%s: %s", db->path, mdb_strerror(rc));
        return rc > 0 ? -rc : FT_EFORMAT;
    }
    *sum = h;
    *count = i;
    return 0;
}
