/* tr_sttool: test driver for train/safetensors.
 *
 *   tr_sttool write OUT      write the fixed test tensors (see below) with metadata
 *   tr_sttool dump IN        print "meta KEY VALUE" lines, then per tensor (file order)
 *                            "NAME DTYPE d0,d1,.. HEXBYTES"; or "ERROR: msg" and exit 2
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "safetensors.h"

static int write_fixed(const char *path) {
    float w[6];
    for (int i = 0; i < 6; i++) w[i] = (float)i * 0.5f - 1.0f;
    int64_t nbt = 1234567890123LL;
    double z[4] = {1.0 / 3.0, -2.5, 1e300, 0.0};
    unsigned char c[5] = {0, 1, 2, 254, 255};
    unsigned short bf[2] = {0x3f80, 0xc000}; /* bf16 1.0, -2.0 */
    int32_t ii[3] = {-1, 0, 2147483647};
    ft_st_tensor t[] = {
        {.name = "layer1.0.bn1.weight", .dtype = FT_ST_F32, .ndim = 2, .shape = {2, 3}, .data = w},
        {.name = "features.num_batches_tracked", .dtype = FT_ST_I64, .ndim = 0, .data = &nbt},
        {.name = "z\"quoted\\name", .dtype = FT_ST_F64, .ndim = 1, .shape = {4}, .data = z},
        {.name = "bytes", .dtype = FT_ST_U8, .ndim = 1, .shape = {5}, .data = c},
        {.name = "empty", .dtype = FT_ST_F32, .ndim = 2, .shape = {0, 3}, .data = NULL},
        {.name = "bf", .dtype = FT_ST_BF16, .ndim = 1, .shape = {2}, .data = bf},
        {.name = "a.ints", .dtype = FT_ST_I32, .ndim = 1, .shape = {3}, .data = ii},
    };
    const char *meta[] = {"format", "pt", "global_step", "12"};
    char err[FT_ST_ERRCAP];
    if (ft_st_write(path, t, (int)(sizeof t / sizeof t[0]), meta, 2, err, sizeof err)) {
        printf("ERROR: %s\n", err);
        return 2;
    }
    return 0;
}

static int dump(const char *path) {
    ft_st_file f;
    char err[FT_ST_ERRCAP];
    if (ft_st_read(path, &f, err, sizeof err)) {
        printf("ERROR: %s\n", err);
        return 2;
    }
    for (int i = 0; i < f.n_meta; i++) printf("meta %s %s\n", f.meta[2 * i], f.meta[2 * i + 1]);
    for (int i = 0; i < f.n; i++) {
        const ft_st_tensor *t = &f.t[i];
        printf("%s %s ", t->name, ft_st_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) printf("%s%lld", d ? "," : "", (long long)t->shape[d]);
        printf(" ");
        for (size_t k = 0; k < t->nbytes; k++) printf("%02x", ((const unsigned char *)t->data)[k]);
        printf("\n");
    }
    ft_st_free(&f);
    return 0;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "tr_sttool", "usage: tr_sttool write OUT | dump IN\n"))
        return 0;
    if (argc == 3 && !strcmp(argv[1], "write")) return write_fixed(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "dump")) return dump(argv[2]);
    fprintf(stderr, "usage: tr_sttool write OUT | dump IN\n");
    return 1;
}
