/* ft_dataset: what every facetrain program knows about dataset paths and pixels, in one place.
 *
 * - ft_rec_paths: a .rec path gives its .idx (same stem) and its property file (same folder).
 * - ft_dataset_resolve: the path a user gives (ft-train's `rec`, ft-loadbench's DATASET, the
 *   loader's config path) -> the LMDB directory or the .rec to read (design.md, "Dataset
 *   folder convention").
 * - ft_pixel_norm_table: the network input of a uint8 pixel value, for the loader's float
 *   batches and for verification images alike.
 *
 * Functions return 0 or a negative status (ft_common.h) with "path: reason" in err.
 */
#ifndef FT_DATASET_H
#define FT_DATASET_H

#include <stddef.h>

/* idx = <stem>.idx and prop = <folder of rec>/property ("property" for a bare file name); either
 * output may be NULL. 0, or FT_EARG when rec does not end in ".rec", FT_ERANGE when too long. */
int ft_rec_paths(const char *rec, char *idx, size_t idxcap, char *prop, size_t propcap);

typedef enum ft_dataset_kind { FT_DATASET_LMDB = 1, FT_DATASET_REC = 2 } ft_dataset_kind;

/* What `path` names, tried in this order:
 *   a .rec file (with its .idx next to it)            -> FT_DATASET_REC,  path
 *   an LMDB directory (data.mdb inside)               -> FT_DATASET_LMDB, path
 *   a dataset folder whose train.lmdb is a directory  -> FT_DATASET_LMDB, <path>/train.lmdb
 *   a dataset folder with train.rec (+ train.idx)     -> FT_DATASET_REC,  <path>/train.rec
 * out receives the LMDB directory or the .rec. Nothing is opened. */
int ft_dataset_resolve(const char *path, ft_dataset_kind *kind, char *out, size_t cap, char *err,
                       size_t errcap);

/* lut[v] = the normalized input for pixel value v: x/127.5 - 1, computed as arcface_torch's
 * ToTensor + Normalize(0.5, 0.5) computes it in float32, ((float)v / 255 - 0.5f) / 0.5f, so that
 * inputs match PyTorch's bit for bit. The loader and verification both use this table. */
void ft_pixel_norm_table(float lut[256]);

#endif
