/* ingest.h: internals of ft-ingest, shared by its source files (not a public API).
 *
 *   ingest_main.c      command line, --verify, --info
 *   ingest_run.c       one run: temporary output directory, rename when complete, summary
 *   ingest_source.c    what to ingest: a RecordIO release folder or an image folder, in the
 *                      order arcface_torch enumerates it; reading one sample's bytes
 *   ingest_pipeline.c  reader thread -> T decode-validate workers -> in-order writer
 *   ingest_writer.c    the LMDB environment (ftdb.h layout): append, periodic commits, meta
 *
 * Functions return 0 or a negative status (ft_common.h); messages go to an err buffer that
 * the caller prints as "ft-ingest: <message>".
 */
#ifndef FT_INGEST_H
#define FT_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "ft_classdir.h"
#include "ft_common.h"
#include "ftdb.h"
#include "recordio.h"

#define ING_ERRCAP   8192
#define ING_LIST_MAX 20 /* bad records listed by name under --skip-bad */

/* ------------------------------------------------------------------ source */
typedef struct ing_source {
    int is_folder;
    char path[4096];     /* SRC as given */
    char rec_path[4200]; /* .rec (RecordIO source) */
    uint64_t n;          /* samples, in source (arcface_torch) order */
    /* RecordIO */
    uint64_t *keys;    /* [n] record keys */
    uint64_t *offsets; /* [n] byte offsets of the records' first segment */
    uint64_t rec_size;
    int has_header; /* key 0 is an insightface header record */
    /* image folder */
    ft_classdir dir; /* the samples (paths relative to path), labels and sizes */
    /* both */
    uint64_t num_classes;     /* 0: not known before the run (max label + 1) */
    const char *classes_from; /* "--num-classes", "property", "class folders" or NULL */
    uint32_t prop_h, prop_w;  /* from property, or 0 */
    uint64_t map_estimate;    /* LMDB map size that holds every sample (upper bound) */
    uint64_t data_estimate;   /* bytes of data.mdb expected (upper bound, without slack) */
    uint64_t total_bytes;     /* sum of sample sizes on disk (upper bound for records) */
} ing_source;

/* Open SRC (release folder, .rec path, or image folder); num_classes 0 = not given. */
int ing_source_open(ing_source *src, const char *path, uint64_t num_classes, int skip_bad,
                    char *err, size_t errcap);
void ing_source_free(ing_source *src);
/* Path of image-folder sample s (SRC joined with its relative path) into buf. */
const char *ing_source_file(const ing_source *src, uint64_t s, char *buf, size_t cap);
/* Bytes LMDB needs for one value of `vlen` bytes plus its leaf node, page size `psize`. */
uint64_t ing_value_footprint(uint64_t vlen, uint64_t psize);
/* Map size for values whose footprints sum to `footprint` over `n` samples. */
uint64_t ing_map_size(uint64_t footprint, uint64_t n, uint64_t psize);

/* ------------------------------------------------------------------ pipeline */
/* One sample on its way through the pipeline. */
typedef struct ing_rec {
    uint64_t src_index; /* position in source order */
    uint64_t key;       /* RecordIO key, or file number */
    uint64_t offset;    /* byte offset in the .rec (RecordIO) */
    size_t at, len;     /* JPEG bytes: batch buf[at, at + len) */
    int32_t label;
    uint16_t height, width;
    int bad;   /* 0 good; else rc (< 0) of the failure */
    int fatal; /* a system error (I/O, memory): never skipped */
    char why[RIO_ERRCAP + 64];
} ing_rec;

typedef struct ing_opts {
    const char *out_tmp; /* LMDB directory being written */
    int shuffle;
    uint64_t seed;
    int skip_bad;
    unsigned threads;
    uint64_t commit_bytes;
} ing_opts;

typedef struct ing_result {
    uint64_t written, skipped, read_bytes, value_bytes, checksum, max_label;
    uint64_t skipped_keys[ING_LIST_MAX];
    uint32_t height, width; /* the dataset's image size: the first written sample's */
    uint64_t size_key;      /* key of that sample (messages about other sizes) */
    double seconds;
} ing_result;

/* Run reader, workers and writer; fills res. On failure err names the record. The caller
 * writes meta through the writer it passes. */
struct ing_writer;
int ing_pipeline_run(const ing_source *src, const ing_opts *o, const uint64_t *perm,
                     struct ing_writer *w, ing_result *res, char *err, size_t errcap);

/* Reader side (ingest_source.c): per-thread state that reads samples into memory. */
typedef struct ing_reader ing_reader;
int ing_reader_open(ing_reader **out, const ing_source *src, int random_order, char *err,
                    size_t errcap);
void ing_reader_close(ing_reader *r);
/* Read source sample `s`: fills rec (key, offset, label, or bad/why) and stores the JPEG
 * bytes via the sink: sink(ctx, len) returns where to put len bytes (NULL: out of memory). */
typedef uint8_t *(*ing_sink)(void *ctx, size_t len, size_t *at);
void ing_reader_read(ing_reader *r, uint64_t s, ing_rec *rec, ing_sink sink, void *ctx);

/* ------------------------------------------------------------------ writer */
typedef struct ing_writer ing_writer;
int ing_writer_open(ing_writer **out, const char *dir, uint64_t map_size, uint64_t commit_bytes,
                    char *err, size_t errcap);
/* Append the value (header + jpeg) of the next sample; adds it to the checksum. */
int ing_writer_put(ing_writer *w, const ftdb_value_hdr *h, const uint8_t *jpeg, char *err,
                   size_t errcap);
uint64_t ing_writer_count(const ing_writer *w);
/* Put meta (checksum filled in here), commit, sync to disk, close. Frees w. */
int ing_writer_finish(ing_writer *w, ftdb_meta *meta, char *err, size_t errcap);
void ing_writer_abort(ing_writer *w); /* NULL ok; frees w */

/* ------------------------------------------------------------------ the program */
typedef struct ing_run_args {
    const char *src, *out;
    int shuffle, skip_bad, force;
    uint64_t seed, num_classes; /* num_classes 0: property, class folders or max label + 1 */
    unsigned threads;
} ing_run_args;
int ing_run(const ing_run_args *a, char *err, size_t errcap); /* ingest_run.c */
int ing_verify(const char *dir, char *err, size_t errcap);    /* ingest_main.c */
int ing_info(const char *dir, char *err, size_t errcap);      /* ingest_main.c */

#endif
