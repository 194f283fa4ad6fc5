/* recordio: MXNet RecordIO (.rec), its .idx index, the IRHeader, insightface's record-0 header
 * with identity ranges, and the `property` file. Byte layouts: docs/formats.md sections 1-2
 * (copied from the project's shared formats sheet).
 *
 * Errors: every call returns 0 (or 1 for "got a record") on success and a negative status on
 * failure: -errno for system errors, FT_E* (ft_common.h) for format errors. Handles keep a
 * message naming the file, the byte offset and the reason ("train.rec: offset 1234: bad magic
 * 0x00000000"); calls without a handle take an (err, errcap) buffer. Nothing here exits.
 */
#ifndef FT_RECORDIO_H
#define FT_RECORDIO_H

#include <stddef.h>
#include <stdint.h>

#include "ft_common.h"

#define RIO_MAGIC         0xCED7230Au
#define RIO_MAX_LEN       ((1u << 29) - 1) /* largest segment payload */
#define RIO_IRHEADER_SIZE 24
#define RIO_ERRCAP        512

/* ------------------------------------------------------------------ reader */
typedef struct rio_reader rio_reader;

/* Open a .rec file for reading (sequential scan and random access by offset). */
int rio_reader_open(rio_reader **out, const char *rec_path);
void rio_reader_close(rio_reader *r);               /* NULL is a no-op */
uint64_t rio_reader_size(const rio_reader *r);      /* file size in bytes */
const char *rio_reader_errmsg(const rio_reader *r); /* message of the last failure */

/* Sequential scan from the current position. Returns 1 and the reassembled logical record
 * (data valid until the next call on this reader), 0 at a clean end of file (EOF exactly at a
 * segment boundary), or < 0. *offset (may be NULL) receives the offset of the record's first
 * segment header. */
int rio_reader_next(rio_reader *r, const uint8_t **data, size_t *len, uint64_t *offset);
int rio_reader_seek(rio_reader *r, uint64_t offset); /* must be 4-aligned and <= size */

/* Random access: the logical record whose first segment starts at `offset`. Does not move the
 * sequential position. Returns 0 or < 0. Data valid until the next call on this reader. */
int rio_reader_read_at(rio_reader *r, uint64_t offset, const uint8_t **data, size_t *len);

/* Walk the segment headers of the record at `offset` without reading payloads: *extent is
 * the number of file bytes the record occupies (all segments with padding), *payload_len the
 * length after reassembly. Used by the loader to plan reads. */
int rio_reader_extent(rio_reader *r, uint64_t offset, uint64_t *extent, uint64_t *payload_len);

/* Reassemble a logical record from an in-memory copy of its on-disk bytes (`n` bytes that
 * start at a segment header, e.g. read with io_uring using rio_reader_extent's size).
 * Writes at most `n` bytes to `out` (which may not alias `buf`); *len receives the payload
 * length. `base` is the file offset of buf[0], used only in messages. */
int rio_decode(const uint8_t *buf, size_t n, uint64_t base, uint8_t *out, size_t *len, char *err,
               size_t errcap);

/* ------------------------------------------------------------------ writer */
typedef struct rio_writer rio_writer;

/* Create `rec_path` (and `idx_path` unless NULL). Both are written under temporary names
 * (<path>.tmp.<pid>) and renamed into place by rio_writer_close; rio_writer_abort removes
 * them. Existing files at the final names are replaced only on a successful close. */
int rio_writer_open(rio_writer **out, const char *rec_path, const char *idx_path);
/* Append one logical record, split with cflag 1/2/3 where the payload holds the magic at a
 * 4-aligned offset; adds "key\toffset\n" to the index. len must be < 2^29. */
int rio_writer_write(rio_writer *w, uint64_t key, const void *data, size_t len);
uint64_t rio_writer_tell(const rio_writer *w); /* offset the next record will start at */
int rio_writer_close(rio_writer *w);           /* flush, fsync, rename; frees w */
void rio_writer_abort(rio_writer *w);          /* remove temporaries; frees w; NULL ok */
const char *rio_writer_errmsg(const rio_writer *w);

/* ------------------------------------------------------------------ .idx */
typedef struct rio_index {
    uint64_t n;        /* lines, in file order */
    uint64_t *keys;    /* [n] */
    uint64_t *offsets; /* [n] */
    /* private: open-addressing table key -> line (later duplicates win) */
    uint64_t *tab;
    uint64_t tabcap;
} rio_index;

/* Parse "<key>\t<offset>\n" lines (trailing whitespace tolerated, blank last line ok).
 * err gets "train.idx:LINE: reason". */
int rio_index_load(rio_index *idx, const char *path, char *err, size_t errcap);
/* Every offset must be 4-aligned and leave room for a segment header before rec_size. */
int rio_index_validate(const rio_index *idx, uint64_t rec_size, const char *idx_name, char *err,
                       size_t errcap);
int rio_index_find(const rio_index *idx, uint64_t key, uint64_t *offset); /* 0 or FT_ERANGE */
void rio_index_free(rio_index *idx);

/* ------------------------------------------------------------------ IRHeader */
typedef struct rio_irheader {
    uint32_t flag; /* 0: scalar label; N > 0: N float32 labels follow the header */
    float label;
    uint64_t id;
    uint64_t id2;
} rio_irheader;

typedef struct rio_record {
    rio_irheader h;
    const uint8_t *labels; /* h.flag little-endian float32s (unaligned), or NULL */
    const uint8_t *img;    /* payload after header and labels (may be empty) */
    size_t img_len;
} rio_record;

/* Size of a packed record; pack into buf (cap >= that size). nlabels == 0 writes flag 0 and
 * h->label; nlabels > 0 writes flag = nlabels, label 0.0 and the floats (like mxnet pack()). */
size_t rio_pack_size(uint32_t nlabels, size_t img_len);
size_t rio_pack(uint8_t *buf, const rio_irheader *h, const float *labels, uint32_t nlabels,
                const void *img, size_t img_len);
int rio_unpack(const uint8_t *data, size_t len, rio_record *out); /* 0 or FT_ETRUNC */
float rio_record_label(const rio_record *r, uint32_t i); /* labels[i]; i==0 & flag==0: h.label */
/* The one label rule (ft-ingest and the loader both use it): a sample's class is label[0] (the
 * scalar label when flag == 0), which must be a finite whole number in [0, 2^31); -0.0 is class
 * 0. MXFaceDataset would truncate 2.5 to 2 and -0.5 to 0; facetrain refuses both. Returns 0 and
 * *cls, or FT_ERANGE with "label <value> is not a class id (...)" in why (whycap may be 0). */
int rio_label_class(float label, int32_t *cls, char *why, size_t whycap);

/* ------------------------------------------------------------------ insightface layout */
/* Enumerate the image keys the way arcface_torch's MXFaceDataset does: read key 0; if its
 * flag > 0 the images are keys 1 .. label[0]-1, otherwise every key of the .idx in file order.
 * *keys is malloc'd. *has_header tells which case applied. */
int rio_insightface_image_keys(rio_reader *r, const rio_index *idx, uint64_t **keys, uint64_t *n,
                               int *has_header, char *err, size_t errcap);
/* After images with keys 1..n_images have been written grouped by class, write the identity
 * records N+1..N+C (flag 2, [first, one-past-last]) and then the header record, key 0, last
 * (flag 2, [N+1, N+C+1]), as insightface's RecBuilder does. class_first[c] is the first image
 * key of class c, c < n_classes, and class_first[n_classes] = n_images + 1. Keys stay below
 * 2^24 so the float32 labels are exact; larger datasets get FT_ERANGE. */
int rio_write_insightface_meta(rio_writer *w, uint64_t n_images, const uint64_t *class_first,
                               uint64_t n_classes);

/* ------------------------------------------------------------------ property */
/* "<num_classes>,<h>,<w>\n". */
int rio_property_read(const char *path, uint64_t *num_classes, uint32_t *h, uint32_t *w, char *err,
                      size_t errcap);
int rio_property_write(const char *path, uint64_t num_classes, uint32_t h, uint32_t w); /* atomic */

#endif
