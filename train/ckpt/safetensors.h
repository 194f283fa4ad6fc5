/* safetensors: read and write the safetensors format (checkpoints, design.md contract 4).
 *
 * File layout (all little-endian):
 *   8 bytes   N, uint64: length of the JSON header
 *   N bytes   JSON: {"__metadata__": {"k": "v", ...}, "name": {"dtype": "F32", "shape": [..],
 *             "data_offsets": [begin, end]}, ...}, padded with spaces to a multiple of 8
 *   rest      the tensors' raw bytes; offsets are relative to the end of the header
 *
 * The writer lays tensors out as the reference implementation (huggingface/safetensors) does:
 * ordered by dtype, widest-ranked first in its Dtype order (so I64 before F32), then by name
 * (bytewise), contiguous from offset 0, with the header entries in that same order after
 * "__metadata__". Writes go to "<path>.tmp.<pid>", are fsync'd and renamed over path, and the
 * directory is fsync'd: a crash leaves either the old file or the new one.
 *
 * The reader is strict: header length in bounds, JSON well-formed, dtypes known, shapes whose
 * element count times the dtype size equals the offsets' span, offsets contiguous from 0 and
 * ending exactly at the end of the file, names unique. Errors read "path: reason".
 */
#ifndef FT_SAFETENSORS_H
#define FT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define FT_ST_MAX_DIMS 8
#define FT_ST_ERRCAP   512

typedef enum ft_st_dtype {
    /* values follow the reference implementation's Dtype order (used for layout) */
    FT_ST_BOOL = 0,
    FT_ST_U8,
    FT_ST_I8,
    FT_ST_I16,
    FT_ST_U16,
    FT_ST_F16,
    FT_ST_BF16,
    FT_ST_I32,
    FT_ST_U32,
    FT_ST_F32,
    FT_ST_F64,
    FT_ST_I64,
    FT_ST_U64,
    FT_ST_NDTYPES
} ft_st_dtype;

const char *ft_st_dtype_name(int dtype); /* "F32", ... */
size_t ft_st_dtype_size(int dtype);      /* bytes per element */

typedef struct ft_st_tensor {
    const char *name;
    int dtype; /* ft_st_dtype */
    int ndim;
    int64_t shape[FT_ST_MAX_DIMS];
    const void *data; /* host bytes, numel * dtype size, little-endian */
    size_t nbytes;    /* filled by the reader; checked by the writer */
} ft_st_tensor;

size_t ft_st_numel(const ft_st_tensor *t);

/* Write n tensors and optional string metadata (meta: 2*n_meta strings, key then value) to
 * path atomically. Returns 0 or < 0 with err. */
int ft_st_write(const char *path, const ft_st_tensor *t, int n, const char *const *meta, int n_meta,
                char *err, size_t errcap);

/* The same in two phases, for sets of files that must change together: write and fsync
 * "<path>.tmp.<pid>" (its name in tmp), then ft_st_commit renames it over path and fsyncs the
 * directory. A failed commit removes tmp. */
int ft_st_write_tmp(const char *path, const ft_st_tensor *t, int n, const char *const *meta,
                    int n_meta, char *tmp, size_t tmpcap, char *err, size_t errcap);
int ft_st_commit(const char *tmp, const char *path, char *err, size_t errcap);

/* A file read into memory; tensor data points into it. */
typedef struct ft_st_file {
    int n;
    ft_st_tensor *t; /* sorted by data offset */
    int n_meta;
    char **meta; /* 2*n_meta strings */
    void *buf;   /* whole file */
    size_t size;
} ft_st_file;

int ft_st_read(const char *path, ft_st_file *out, char *err, size_t errcap);
/* Parse from memory (takes ownership of buf, which must come from malloc, even on error). */
int ft_st_parse(void *buf, size_t size, const char *name, ft_st_file *out, char *err,
                size_t errcap);
void ft_st_free(ft_st_file *f); /* NULL or zeroed ok */
const ft_st_tensor *ft_st_find(const ft_st_file *f, const char *name);
const char *ft_st_meta(const ft_st_file *f, const char *key); /* NULL if absent */

#endif
