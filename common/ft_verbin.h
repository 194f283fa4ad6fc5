/* ft_verbin: verification pair files (lfw.bin, cfp_fp.bin, agedb_30.bin, ...), docs/formats.md
 * section 3. A file is a pickle of (bins, issame_list): 2*P encoded images (JPEG byte strings;
 * pair i is images 2i and 2i+1) and P booleans.
 *
 * - ft_verbin_write writes exactly what Python 2's pickle.dump(..., protocol=2) wrote for the
 *   released files (BINSTRING/SHORT_BINSTRING, BINPUT/LONG_BINPUT, MARK/APPENDS batches of 1000,
 *   APPEND for a one-item batch, NEWTRUE/NEWFALSE, TUPLE2, STOP), to a temporary name renamed
 *   into place.
 * - ft_verbin_read also accepts what Python 3 re-dumps produce: protocols 2 to 5 with FRAME,
 *   MEMOIZE, SHORT_BINBYTES/BINBYTES/BINBYTES8, BINGET/LONG_BINGET, TUPLE after MARK, BININT1/
 *   BININT 0 or 1 instead of bools, and protocol 2's _codecs.encode(str, 'latin1') form of bytes.
 *   Anything else is rejected with a message naming the file and the byte offset.
 *
 * Errors: 0 on success, -errno for system errors, FT_EFORMAT / FT_ETRUNC for bad files
 * (ft_common.h). Nothing here exits.
 */
#ifndef FT_VERBIN_H
#define FT_VERBIN_H

#include <stddef.h>
#include <stdint.h>

#include "ft_common.h"

typedef struct ft_verbin {
    uint64_t n_pairs; /* P */
    uint8_t **img;    /* [2P] encoded images; pair i = img[2i], img[2i+1] */
    size_t *img_len;  /* [2P] byte lengths */
    uint8_t *issame;  /* [P] 1 = same identity, 0 = different */
    void *priv;       /* reader-owned storage (file bytes); NULL for caller-built structs */
} ft_verbin;

/* Read and validate `path`. On success *out owns its memory: release with ft_verbin_free.
 * On failure *out is left empty and err (if errcap > 0) receives
 * "lfw.bin: offset 1234: reason". */
int ft_verbin_read(const char *path, ft_verbin *out, char *err, size_t errcap);

/* Same, from bytes in memory (`name` is used in messages). The images are copied out of `buf`
 * only where the pickle stores them transformed; otherwise they point into a private copy. */
int ft_verbin_parse(const uint8_t *buf, size_t len, const char *name, ft_verbin *out, char *err,
                    size_t errcap);

/* Write `v` to `path` atomically (<path>.tmp.<pid>, fsync, rename). Each image must be shorter
 * than 2^31 bytes. */
int ft_verbin_write(const char *path, const ft_verbin *v);

/* Free what ft_verbin_read/parse allocated and zero the struct; NULL or empty is a no-op. Do not
 * call it on a struct the caller filled in by hand. */
void ft_verbin_free(ft_verbin *v);

#endif
