/* verbin_tool: test driver for ft_verbin (tests/tools/test_verbin.py runs it).
 *   verbin_tool dump FILE        print "pairs P", "img I LEN FNV1A64", "same I V" lines
 *   verbin_tool copy IN OUT      read IN, write OUT with ft_verbin_write
 *   verbin_tool make OUT P       write P pairs of deterministic test "images" of varied sizes
 * Exit status: 0 ok, 1 error (message on stderr).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "ft_verbin.h"

static uint64_t fnv1a64(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static int dump(const char *path) {
    ft_verbin v;
    char err[512];
    int rc = ft_verbin_read(path, &v, err, sizeof err);
    if (rc) {
        fprintf(stderr, "verbin_tool: %s\n", err);
        return 1;
    }
    printf("pairs %llu\n", (unsigned long long)v.n_pairs);
    for (uint64_t i = 0; i < 2 * v.n_pairs; i++)
        printf("img %llu %zu %016llx\n", (unsigned long long)i, v.img_len[i],
               (unsigned long long)fnv1a64(v.img[i], v.img_len[i]));
    for (uint64_t i = 0; i < v.n_pairs; i++)
        printf("same %llu %d\n", (unsigned long long)i, v.issame[i]);
    ft_verbin_free(&v);
    return 0;
}

static int copy(const char *in, const char *out) {
    ft_verbin v;
    char err[512];
    int rc = ft_verbin_read(in, &v, err, sizeof err);
    if (rc) {
        fprintf(stderr, "verbin_tool: %s\n", err);
        return 1;
    }
    rc = ft_verbin_write(out, &v);
    ft_verbin_free(&v);
    if (rc) fprintf(stderr, "verbin_tool: %s: %s\n", out, ft_strerror(rc));
    return rc ? 1 : 0;
}

/* Image i has length (i * 37) % 700 (0, short and long strings) and bytes (i + j) & 255. */
static int make(const char *out, uint64_t np) {
    ft_verbin v = {0};
    v.n_pairs = np;
    v.img = calloc(2 * np + 1, sizeof *v.img);
    v.img_len = calloc(2 * np + 1, sizeof *v.img_len);
    v.issame = calloc(np + 1, 1);
    int rc = v.img && v.img_len && v.issame ? 0 : 1;
    for (uint64_t i = 0; !rc && i < 2 * np; i++) {
        v.img_len[i] = (size_t)(i * 37 % 700);
        v.img[i] = malloc(v.img_len[i] + 1);
        if (!v.img[i]) rc = 1;
        for (size_t j = 0; !rc && j < v.img_len[i]; j++) v.img[i][j] = (uint8_t)(i + j);
    }
    for (uint64_t i = 0; !rc && i < np; i++) v.issame[i] = (uint8_t)(i % 3 == 0);
    if (!rc) rc = ft_verbin_write(out, &v);
    if (rc) fprintf(stderr, "verbin_tool: %s: %s\n", out, ft_strerror(rc));
    for (uint64_t i = 0; v.img && i < 2 * np; i++) free(v.img[i]);
    free(v.img), free(v.img_len), free(v.issame);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "verbin_tool",
                            "usage: verbin_tool dump FILE | copy IN OUT | make OUT PAIRS\n"))
        return 0;
    uint64_t np = 0;
    if (argc == 3 && strcmp(argv[1], "dump") == 0) return dump(argv[2]);
    if (argc == 4 && strcmp(argv[1], "copy") == 0) return copy(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "make") == 0 && ft_parse_u64(argv[3], 0, 1u << 20, &np) == 0)
        return make(argv[2], np);
    fprintf(stderr, "usage: verbin_tool dump FILE | copy IN OUT | make OUT PAIRS\n");
    return 2;
}
