/* tr_lrsched: print lr(l) of train/lrsched for l = 0..STEPS, one "%.17g" per line.
 *   tr_lrsched BASE WARMUP TOTAL POWER STEPS */
#include <stdio.h>
#include <stdlib.h>

#include "ft_common.h"
#include "lrsched.h"

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "tr_lrsched",
                            "usage: tr_lrsched BASE WARMUP TOTAL POWER STEPS\n"))
        return 0;
    if (argc != 6) {
        fprintf(stderr, "usage: tr_lrsched BASE WARMUP TOTAL POWER STEPS\n");
        return 1;
    }
    ft_lrsched s;
    if (ft_lrsched_init(&s, strtod(argv[1], NULL), atoll(argv[2]), atoll(argv[3]),
                        strtod(argv[4], NULL))) {
        printf("ERROR: bad schedule\n");
        return 2;
    }
    long long steps = atoll(argv[5]);
    for (long long l = 0; l <= steps; l++) printf("%.17g\n", ft_lrsched_at(&s, l));
    return 0;
}
