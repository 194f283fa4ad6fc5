/* ld_test.h: helpers shared by the loader tests (ld_testutil.c). Tests exit 0 pass, 1 fail,
 * 77 skip. */
#ifndef FT_LD_TEST_H
#define FT_LD_TEST_H

#include <stdint.h>
#include <stdio.h>

#include "loader.h"

#define SKIP 77

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: (%s) ", __FILE__, __LINE__, #cond);                       \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* Config for the tests: batch 8, 2 threads, prefetch 3, quiet. */
loader_config t_config(const char *path);
/* Open or report the error and return non-zero. */
int t_open(loader **l, const loader_config *c);

/* nb consecutive batches, concatenated (malloc'd; free with t_run_free). */
typedef struct t_run {
    uint64_t nb, per; /* batches, images per batch */
    size_t img_bytes;
    uint8_t *data;
    int32_t *labels;
    uint64_t *indices, *requested;
    uint8_t *flags;
    uint64_t *epoch, *step; /* per batch */
} t_run;
int t_collect(loader *l, uint64_t nb, t_run *r);
int t_collect_cfg(const loader_config *c, uint64_t nb, t_run *r);
void t_run_free(t_run *r);
/* 0 if equal in data, labels, indices and flags; else prints the first difference. */
int t_run_cmp(const t_run *a, const t_run *b, const char *what);

/* Reference: label and decoded RGB (h*w*3, malloc'd) of LMDB sample i, via ftdb + TurboJPEG. */
int t_ref_decode(const char *lmdb_dir, uint64_t index, int32_t *label, uint8_t **rgb, uint32_t *h,
                 uint32_t *w);

#endif
