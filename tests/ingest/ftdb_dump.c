/* ft-test-ftdb-dump: test helper that writes every sample value of an LMDB dataset, in index
 * order, as [uint64 LE length][value bytes] to OUTFILE, and meta as "key value" lines to
 * stdout. Reads through ftdb.h (ftdb_open, ftdb_get), the loader's path.
 *
 *   ft-test-ftdb-dump LMDB OUTFILE */
#include <inttypes.h>
#include <stdio.h>

#include "ft_common.h"
#include "ftdb.h"

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "ft-test-ftdb-dump",
                            "usage: ft-test-ftdb-dump LMDB OUTFILE\n"
                            "Dump every sample of an LMDB dataset (ftdb.h) for test_ingest.py.\n"))
        return 0;
    if (argc != 3) {
        fprintf(stderr, "usage: ft-test-ftdb-dump LMDB OUTFILE\n");
        return 2;
    }
    char err[FTDB_ERRCAP];
    ftdb *db;
    if (ftdb_open(&db, argv[1], err, sizeof err) < 0) {
        fprintf(stderr, "ft-test-ftdb-dump: %s\n", err);
        return 1;
    }
    FILE *f = fopen(argv[2], "wb");
    int rc = f ? 0 : 1;
    const ftdb_meta *m = ftdb_get_meta(db);
    for (uint64_t i = 0; rc == 0 && i < m->num_samples; i++) {
        const uint8_t *v;
        size_t len;
        ftdb_value_hdr h;
        uint8_t l[8];
        if (ftdb_get(db, i, &v, &len) < 0 || ftdb_value_hdr_decode(v, len, &h) < 0) {
            fprintf(stderr, "ft-test-ftdb-dump: sample %" PRIu64 ": missing or bad value\n", i);
            rc = 1;
            break;
        }
        ft_wr_le64(l, len);
        if (fwrite(l, 8, 1, f) != 1 || fwrite(v, 1, len, f) != len) rc = 1;
    }
    if (f && fclose(f) != 0) rc = 1;
    printf("num_samples %" PRIu64 "\nnum_classes %" PRIu64 "\nimage_height %" PRIu32
           "\nimage_width %" PRIu32 "\nshuffle %s\nsource %s\n",
           m->num_samples, m->num_classes, m->height, m->width, m->shuffle, m->source);
    ftdb_close(db);
    return rc;
}
