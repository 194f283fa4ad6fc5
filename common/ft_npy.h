/* ft_npy: 2-D float32 arrays in NumPy's .npy format (format spec 1.0, read 1.0-3.0), the
 * format numpy.save writes and numpy.load reads. Used for embeddings (ft-embed) and saved
 * features (ft-eval).
 *
 * Writer: magic "\x93NUMPY", version 1.0, the header dict
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (R, C), }
 * padded with spaces and ended by '\n' so that the data starts at a multiple of 64 bytes, then
 * R*C little-endian float32 in C order. Written to "<path>.tmp.<pid>", fsync'd, renamed: a
 * reader never sees a half-written file.
 * Reader: versions 1.0, 2.0, 3.0; descr '<f4' only (little-endian float32), fortran_order
 * False, a 1-D (read as C = 1) or 2-D shape; the file size must equal header + R*C*4. Errors:
 * "path: reason" in err. */
#ifndef FT_NPY_H
#define FT_NPY_H

#include <stddef.h>
#include <stdint.h>

int ft_npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols, char *err,
                     size_t errcap);
/* *data is malloc'd (caller frees); 0 or an FT_E* / -errno code. */
int ft_npy_read_f32(const char *path, float **data, int64_t *rows, int64_t *cols, char *err,
                    size_t errcap);

#endif
