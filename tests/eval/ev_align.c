/* ev_align: the alignment library on the command line, for test_align.py.
 *   ev_align estimate X1 Y1 ... X5 Y5           prints M (2 rows, %.17g)
 *   ev_align warp IN.ppm OUT.ppm OW OH M00 M01 M02 M10 M11 M12
 *   ev_align face IN.ppm OUT.ppm X1 Y1 ... X5 Y5  the 112x112 crop; prints M
 * Images are binary PPM (P6, maxval 255), RGB. Exit 0, or 1 with one line on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "align.h"
#include "ft_common.h"

static const char *usage = "usage: ev_align estimate X1 Y1 ... X5 Y5\n"
                           "       ev_align warp IN.ppm OUT.ppm OW OH M00 M01 M02 M10 M11 M12\n"
                           "       ev_align face IN.ppm OUT.ppm X1 Y1 ... X5 Y5\n";

static uint8_t *read_ppm(const char *path, int *w, int *h) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    int maxv = 0;
    uint8_t *px = NULL;
    if (fscanf(f, "P6 %d %d %d", w, h, &maxv) == 3 && maxv == 255 && fgetc(f) != EOF && *w > 0 &&
        *h > 0 && *w < 100000 && *h < 100000) {
        size_t n = (size_t)*w * *h * 3;
        px = malloc(n);
        if (px && fread(px, 1, n, f) != n) free(px), px = NULL;
    }
    fclose(f);
    return px;
}

static int write_ppm(const char *path, const uint8_t *px, int w, int h) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fprintf(f, "P6\n%d %d\n255\n", w, h);
    size_t n = (size_t)w * h * 3;
    int ok = fwrite(px, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int parse_doubles(char **s, int n, double *out) {
    for (int i = 0; i < n; i++)
        if (ft_parse_double(s[i], -1e300, 1e300, &out[i])) {
            fprintf(stderr, "ev_align: bad number '%s'\n", s[i]);
            return -1;
        }
    return 0;
}

static void print_m(const double M[2][3]) {
    for (int r = 0; r < 2; r++) printf("%.17g %.17g %.17g\n", M[r][0], M[r][1], M[r][2]);
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "ev_align", usage)) return 0;
    if (argc < 2) goto bad;
    double v[10];
    float lmk[5][2];
    double M[2][3];
    if (!strcmp(argv[1], "estimate") && argc == 12) {
        if (parse_doubles(argv + 2, 10, v)) return 1;
        for (int i = 0; i < 10; i++) lmk[i / 2][i % 2] = (float)v[i];
        int rc = ft_align_estimate(lmk, M);
        if (rc) {
            fprintf(stderr, "ev_align: %s\n", ft_strerror(rc));
            return 1;
        }
        print_m(M);
        return 0;
    }
    int is_warp = !strcmp(argv[1], "warp") && argc == 12;
    int is_face = !strcmp(argv[1], "face") && argc == 14;
    if (!is_warp && !is_face) goto bad;
    int w, h;
    uint8_t *img = read_ppm(argv[2], &w, &h);
    if (!img) {
        fprintf(stderr, "ev_align: %s: not a binary PPM\n", argv[2]);
        return 1;
    }
    int ow = FT_ALIGN_SIZE, oh = FT_ALIGN_SIZE, rc;
    double p[8];
    if (is_warp) {
        if (parse_doubles(argv + 4, 8, p)) return 1;
        ow = (int)p[0], oh = (int)p[1];
        for (int i = 0; i < 6; i++) M[i / 3][i % 3] = p[2 + i];
    } else {
        if (parse_doubles(argv + 4, 10, v)) return 1;
        for (int i = 0; i < 10; i++) lmk[i / 2][i % 2] = (float)v[i];
    }
    uint8_t *out = ow > 0 && oh > 0 ? malloc((size_t)ow * oh * 3) : NULL;
    if (!out) {
        fprintf(stderr, "ev_align: bad output size\n");
        free(img);
        return 1;
    }
    if (is_warp)
        rc = ft_align_warp(img, w, h, w * 3, 3, M, out, ow, oh, ow * 3);
    else
        rc = ft_align_face(img, w, h, lmk, out, M);
    if (!rc) rc = write_ppm(argv[3], out, ow, oh) ? -1 : 0;
    if (!rc && is_face) print_m(M);
    if (rc)
        fprintf(stderr, "ev_align: %s\n", rc == -1 ? "cannot write the output" : ft_strerror(rc));
    free(img), free(out);
    return rc ? 1 : 0;
bad:
    fputs(usage, stderr);
    return 2;
}
