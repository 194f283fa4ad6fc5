/* pack: internals of ft-pack (pack_main.c). Inputs (pack_input.c): a folder of class
 * sub-folders or an im2rec .lst file, turned into a list of entries. Images (pack_image.c):
 * JPEG header check and the optional decode / resize / re-encode.
 */
#ifndef FT_PACK_H
#define FT_PACK_H

#include <stddef.h>
#include <stdint.h>
#include <turbojpeg.h>

#define PACK_MAX_LABELS 64

typedef struct pack_entry {
    char *path;       /* image file (root joined) */
    uint64_t index;   /* .lst index; folder: running number */
    uint64_t line;    /* .lst line number (messages), 0 for folders */
    uint32_t nlabels; /* >= 1; 1 = scalar label */
    float *labels;    /* [nlabels]; labels[0] is the class */
} pack_entry;

typedef struct pack_list {
    pack_entry *e;
    size_t n, cap;
    uint64_t n_classes; /* folder: sub-folder count; .lst: filled by pack_list_group */
} pack_list;

/* Folder mode: sorted sub-folder names -> labels 0..C-1, sorted file names inside each
 * (hidden files skipped). err: "dir: reason". */
int pack_scan_folder(const char *dir, pack_list *out, char *err, size_t errcap);
/* `index\tlabel[\tlabel...]\tpath` lines; relative paths are joined to root. err:
 * "list.lst:LINE: reason". */
int pack_read_lst(const char *lst, const char *root, pack_list *out, char *err, size_t errcap);
/* Header layout: every labels[0] must be a class id (integer in [0, 2^24)); entries are
 * stably sorted by it and n_classes set to max + 1. */
int pack_list_group(pack_list *l, const char *lst, char *err, size_t errcap);
/* im2rec layout: .lst indexes are the keys, so they must be unique. */
int pack_list_unique(const pack_list *l, const char *lst, char *err, size_t errcap);
void pack_list_free(pack_list *l);

typedef struct pack_image {
    tjhandle dec, enc;
    uint8_t *src, *dst; /* RGB scratch */
    size_t src_cap;
    float *tmp; /* horizontal pass */
    size_t tmp_cap;
    uint8_t *jpg; /* re-encoded output (tjAlloc'd) */
    unsigned long jpg_len;
} pack_image;

int pack_image_init(pack_image *pi);
void pack_image_free(pack_image *pi);
/* 0 and the size when data is a JPEG whose header parses, else FT_EDECODE. */
int pack_jpeg_info(pack_image *pi, const uint8_t *data, size_t len, int *w, int *h);
/* Decode, resize to w x h (area average when shrinking, bilinear when growing) and re-encode
 * at `quality`; result in pi->jpg / pi->jpg_len. 0, FT_EDECODE or -ENOMEM. */
int pack_resize(pack_image *pi, const uint8_t *data, size_t len, int w, int h, int quality);

/* ft-pack SRC.rec OUTDIR --shuffle: shuffled copy, insightface layout kept (pack_shuffle.c).
 * Prints its own messages; returns 0 or < 0 (FT_ESTOP when stopped by a signal). */
int pack_shuffle_rec(const char *src, const char *outdir, uint64_t seed);

#endif
