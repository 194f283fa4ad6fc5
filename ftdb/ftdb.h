/* ftdb: the facetrain LMDB dataset layout (design.md contract 2), shared by ft-ingest (writer),
 * the loader and staging (readers).
 *
 * One LMDB environment directory (data.mdb, lock.mdb) with two named databases:
 *   samples  key   = sample index, 8-byte big-endian (cursor order = index order)
 *            value = 16-byte header, then the JPEG bytes:
 *                    0  int32  label (class id, >= 0)
 *                    4  uint16 image height
 *                    6  uint16 image width
 *                    8  uint32 JPEG length (= value length - 16)
 *                    12 uint32 source key (RecordIO key or file number; for messages)
 *                    all little-endian
 *   meta     key = ASCII name, value = ASCII text (readable with mdb_dump -p):
 *            format "facetrain-lmdb", version "1", num_samples, num_classes, image_height,
 *            image_width, source, shuffle ("none" or the seed), checksum "xxh3-64:<16 hex>"
 *
 * Checksum: XXH3-64 (seed 0) over, for every sample in index order, the value length as
 * uint64 LE followed by the value bytes. A copy is whole iff its recomputed checksum and
 * sample count match meta.
 */
#ifndef FT_FTDB_H
#define FT_FTDB_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>
#include <xxhash.h>

#include "ft_common.h"

#define FTDB_FORMAT     "facetrain-lmdb"
#define FTDB_VERSION    1
#define FTDB_VALUE_HDR  16
#define FTDB_DB_SAMPLES "samples"
#define FTDB_DB_META    "meta"
#define FTDB_ERRCAP     512

typedef struct ftdb_value_hdr {
    int32_t label;
    uint16_t height, width;
    uint32_t jpeg_len;
    uint32_t src_key;
} ftdb_value_hdr;

void ftdb_value_hdr_encode(uint8_t out[FTDB_VALUE_HDR], const ftdb_value_hdr *h);
/* Checks that the value holds the header and exactly jpeg_len bytes after it. */
int ftdb_value_hdr_decode(const uint8_t *v, size_t len, ftdb_value_hdr *h);

typedef struct ftdb_meta {
    uint32_t version;
    uint64_t num_samples;
    uint64_t num_classes;
    uint32_t height, width;
    char source[1024];
    char shuffle[32]; /* "none" or decimal seed */
    uint64_t checksum;
} ftdb_meta;

static inline void ftdb_key(uint8_t out[8], uint64_t index) {
    ft_wr_be64(out, index);
}

/* Streaming checksum in the layout above. */
typedef struct ftdb_sum {
    XXH3_state_t *st;
} ftdb_sum;
int ftdb_sum_init(ftdb_sum *s);
void ftdb_sum_add(ftdb_sum *s, const void *value, size_t len);
uint64_t ftdb_sum_final(ftdb_sum *s); /* also frees */

/* ------------------------------------------------------------------ reading */
typedef struct ftdb ftdb;

/* Open read-only (MDB_RDONLY | MDB_NOLOCK, so read-only and staged copies work), check format
 * name and version, read meta. */
int ftdb_open(ftdb **out, const char *dir, char *err, size_t errcap);
void ftdb_close(ftdb *db); /* NULL ok */
const ftdb_meta *ftdb_get_meta(const ftdb *db);
const char *ftdb_path(const ftdb *db);
/* Value of sample `index` (pointer into the read-only map, valid until ftdb_close). */
int ftdb_get(ftdb *db, uint64_t index, const uint8_t **val, size_t *len);
/* For every sample (in index order) the byte offset of its value inside data.mdb and its
 * length, so readers can fetch values with pread/io_uring without LMDB. Arrays have
 * meta.num_samples entries. Fails with FT_EFORMAT if keys are not exactly 0..n-1. */
int ftdb_value_extents(ftdb *db, uint64_t *offsets, uint32_t *lengths, char *err, size_t errcap);
/* Path of data.mdb inside the environment directory. */
int ftdb_data_path(const ftdb *db, char *out, size_t cap);
/* Recompute the checksum by a cursor walk in index order; counts samples too. `progress`
 * may be NULL. Returns 0 and the values, or < 0 with err. */
int ftdb_compute_checksum(ftdb *db, uint64_t *sum, uint64_t *count, ft_progress *progress,
                          char *err, size_t errcap);

/* ------------------------------------------------------------------ writing meta */
/* Write every meta key of `m` in txn (db opened with MDB_CREATE by the caller). */
int ftdb_meta_put(MDB_txn *txn, MDB_dbi dbi, const ftdb_meta *m);

#endif
