/* tr_cfgdump: test driver for train/config and train/run/pyliteral.
 *
 *   tr_cfgdump CONFIG [--dataset IMAGES CLASSES] [key=value ...]
 *       parse, override, finalize (and derive with the dataset counts); print the
 *       training.log config lines (without the "Training: <time>-" prefix) on stdout, or
 *       "ERROR: <message>" and exit 2
 *   tr_cfgdump --str LITERAL      print Python str() of a literal (or ERROR)
 *   tr_cfgdump --float-repr X     print repr(float(X)) for X given as a C hex/decimal float
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "config.h"
#include "pyliteral.h"

static int literal(const char *text) {
    ft_pyval v;
    char err[256];
    if (ft_pyval_parse(text, &v, err, sizeof err)) {
        printf("ERROR: %s\n", err);
        return 2;
    }
    char out[4096];
    ft_pyval_str(&v, out, sizeof out);
    printf("%s\n", out);
    ft_pyval_free(&v);
    return 0;
}

static int float_reprs(int argc, char **argv) {
    for (int i = 2; i < argc; i++) {
        char out[64];
        ft_py_float_repr(strtod(argv[i], NULL), out, sizeof out);
        printf("%s\n", out);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "tr_cfgdump",
                            "usage: tr_cfgdump CONFIG [--dataset IMAGES CLASSES] [key=value ...]\n"
                            "       tr_cfgdump --str LITERAL | --float-repr X...\n"))
        return 0;
    if (argc >= 3 && !strcmp(argv[1], "--str")) return literal(argv[2]);
    if (argc >= 2 && !strcmp(argv[1], "--float-repr")) return float_reprs(argc, argv);
    if (argc < 2) {
        fprintf(stderr, "usage: tr_cfgdump CONFIG [--dataset IMAGES CLASSES] [key=value ...]\n");
        return 1;
    }
    ft_config c;
    char err[FT_CFG_ERRCAP];
    int rc = ft_config_init(&c), argi = 2;
    unsigned long long images = 0, classes = 0;
    int have_ds = 0;
    if (!rc && strcmp(argv[1], "-")) rc = ft_config_load_file(&c, argv[1], err, sizeof err);
    if (!rc && argc >= 5 && !strcmp(argv[2], "--dataset")) {
        images = strtoull(argv[3], NULL, 10);
        classes = strtoull(argv[4], NULL, 10);
        have_ds = 1;
        argi = 5;
    }
    for (int i = argi; i < argc && !rc; i++) rc = ft_config_set_arg(&c, argv[i], err, sizeof err);
    if (!rc) rc = ft_config_finalize(&c, argv[1], err, sizeof err);
    if (!rc && have_ds) rc = ft_config_derive(&c, images, classes, 1, err, sizeof err);
    if (rc) {
        printf("ERROR: %s\n", err);
        ft_config_free(&c);
        return 2;
    }
    for (int i = 0; i < c.n_entries; i++) {
        char line[8192];
        ft_config_line(&c, i, line, sizeof line);
        printf("%s\n", line);
    }
    fprintf(stderr,
            "typed: network=%s lr=%g batch=%d targets=%d blocks=%d,%d,%d,%d width=%d "
            "max_steps=%lld total_step=%lld\n",
            c.network, c.lr, c.batch_size, c.n_val_targets, c.blocks[0], c.blocks[1], c.blocks[2],
            c.blocks[3], c.width, (long long)c.max_steps, (long long)c.total_step);
    ft_config_free(&c);
    return 0;
}
