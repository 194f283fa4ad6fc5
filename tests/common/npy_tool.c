/* npy_tool: the ft_npy test driver.
 *   npy_tool write PATH ROWS COLS   writes value(r, c) = r * 1000 + c + 0.25 (and -0.0, NaN,
 *                                   +inf at [0][0..2] when the array has room) as PATH
 *   npy_tool read PATH              prints "ROWS COLS" then one line per row, %.9g values
 * Errors: the reader's/writer's line on stderr, exit 1. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "ft_npy.h"

#define USAGE "usage: npy_tool write PATH ROWS COLS | read PATH\n"

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "npy_tool", USAGE)) return 0;
    char err[512];
    if (argc == 5 && !strcmp(argv[1], "write")) {
        int64_t r = atoll(argv[3]), c = atoll(argv[4]);
        size_t count = (size_t)(r * c);
        float *d = malloc((count ? count : 1) * sizeof(float));
        if (!d) return 1;
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < c; j++) d[i * c + j] = (float)(i * 1000 + j) + 0.25f;
        if (r * c >= 3) d[0] = -0.0f, d[1] = NAN, d[2] = INFINITY;
        int rc = ft_npy_write_f32(argv[2], d, r, c, err, sizeof err);
        free(d);
        if (rc) {
            fprintf(stderr, "npy_tool: %s\n", err);
            return 1;
        }
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "read")) {
        float *d;
        int64_t r, c;
        if (ft_npy_read_f32(argv[2], &d, &r, &c, err, sizeof err)) {
            fprintf(stderr, "npy_tool: %s\n", err);
            return 1;
        }
        printf("%" PRId64 " %" PRId64 "\n", r, c);
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < c; j++)
                printf("%.9g%c", (double)d[i * c + j], j + 1 == c ? '\n' : ' ');
        free(d);
        return 0;
    }
    fprintf(stderr, USAGE);
    return 2;
}
