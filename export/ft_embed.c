/* ft-embed: aligned face crops -> L2-normalized embeddings in a .npy (arcface_torch's
 * inference.py for many images). See docs/inference.md.
 *
 *   ft-embed MODEL IMAGE... [-o feats.npy] [--flip] [--batch N] [--threads N] [--device D]
 *   ft-embed MODEL --list FILE ...     one image path per line (relative to the current folder)
 *   ft-embed MODEL --folder DIR ...    every *.jpg / *.jpeg of DIR, sorted by name
 *   ft-embed MODEL --landmarks FILE .. images of any size with their 5 landmarks, one line each:
 *                                      PATH x1 y1 x2 y2 x3 y3 x4 y4 x5 y5
 *
 * MODEL: an .onnx file, a folder with one .onnx, or an ft-train checkpoint folder. Images are
 * JPEG face crops of exactly the model's input size (112x112), already aligned; or, with
 * --landmarks, JPEGs of any size aligned here to the arcface 112x112 template by the
 * least-squares similarity of their landmarks (export/eval/align.h, as ft-eval ijb aligns).
 * Pixels become (x - 127.5) / 127.5 in RGB order (raw pixels when the graph normalizes
 * itself). Row i of the output is image i; --flip adds the embedding of the mirrored crop
 * before normalizing. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "align.h"
#include "engine.h"
#include "ft_common.h"
#include "ft_npy.h"

#define PROG "ft-embed"

static const char usage[] =
    "usage: ft-embed MODEL IMAGE... | --list FILE | --folder DIR | --landmarks FILE\n"
    "                [-o feats.npy] [--flip]\n"
    "                [--batch N] [--threads N] [--device cpu|cuda]\n"
    "  MODEL          .onnx file, folder with one .onnx, or ft-train checkpoint folder\n"
    "  IMAGE          aligned JPEG face crop of the model's input size (112x112)\n"
    "  --list FILE    image paths, one per line\n"
    "  --folder DIR   every .jpg/.jpeg in DIR, sorted by name\n"
    "  --landmarks FILE  JPEGs of any size and their 5-point landmarks, one line each:\n"
    "                 PATH x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 (left eye, right eye, nose tip,\n"
    "                 left and right mouth corners, pixels); each image is aligned to the\n"
    "                 arcface 112x112 template by a similarity transform. FILE lists the\n"
    "                 images itself: no IMAGE, --list or --folder with it\n"
    "  -o FILE        output .npy, float32 [images, dim], rows L2-normalized (default feats.npy)\n"
    "  --flip         add the mirrored crop's embedding before normalizing (flip fusion)\n"
    "  --batch N      images per forward (default 32)\n"
    "  --threads N    CPU threads (default: all cores)\n"
    "  --device D     ops backend (default cpu)\n";

typedef struct names {
    char **v;
    size_t n, cap;
    float (*lmk)[5][2]; /* [n] with --landmarks, else NULL */
    long *line;         /* [n] the image's line in the landmarks file */
    size_t lcap;
} names;

static int push(names *l, const char *s) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) return -ENOMEM;
        l->v = v, l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s))) return -ENOMEM;
    l->n++;
    return 0;
}

/* the landmarks of the image just pushed (l->n - 1) */
static int push_lmk(names *l, const float lmk[5][2], long line) {
    if (l->n > l->lcap) {
        size_t cap = l->cap;
        float(*v)[5][2] = realloc(l->lmk, cap * sizeof *v);
        if (!v) return -ENOMEM;
        l->lmk = v;
        long *ln = realloc(l->line, cap * sizeof *ln);
        if (!ln) return -ENOMEM;
        l->line = ln, l->lcap = cap;
    }
    memcpy(l->lmk[l->n - 1], lmk, sizeof(float[5][2]));
    l->line[l->n - 1] = line;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_jpeg_name(const char *s) {
    size_t n = strlen(s);
    return (n > 4 && strcasecmp(s + n - 4, ".jpg") == 0) ||
           (n > 5 && strcasecmp(s + n - 5, ".jpeg") == 0);
}

static int read_folder(names *l, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, PROG ": %s: %s\n", dir, strerror(errno));
        return 1;
    }
    struct dirent *e;
    size_t first = l->n;
    while ((e = readdir(d))) {
        char p[PATH_MAX];
        if (!is_jpeg_name(e->d_name)) continue;
        if (ft_path_join(p, sizeof p, dir, e->d_name) || push(l, p)) {
            closedir(d);
            fprintf(stderr, PROG ": %s: path too long or out of memory\n", dir);
            return 1;
        }
    }
    closedir(d);
    qsort(l->v + first, l->n - first, sizeof(char *), cmp_str);
    if (l->n == first) {
        fprintf(stderr, PROG ": %s: no .jpg/.jpeg file in this folder\n", dir);
        return 1;
    }
    return 0;
}

static int read_list(names *l, const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, PROG ": %s: %s\n", file, strerror(errno));
        return 1;
    }
    char line[PATH_MAX + 2];
    long no = 0;
    size_t first = l->n;
    while (fgets(line, sizeof line, f)) {
        no++;
        size_t n = strlen(line);
        if (n && line[n - 1] != '\n' && !feof(f)) {
            fprintf(stderr, PROG ": %s:%ld: line too long\n", file, no);
            fclose(f);
            return 1;
        }
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
            line[--n] = 0;
        if (!n) continue;
        if (push(l, line)) {
            fclose(f);
            fprintf(stderr, PROG ": out of memory\n");
            return 1;
        }
    }
    fclose(f);
    if (l->n == first) {
        fprintf(stderr, PROG ": %s: lists no image\n", file);
        return 1;
    }
    return 0;
}

/* --landmarks FILE: non-blank lines "PATH x1 y1 ... x5 y5", fields separated by spaces or
 * tabs (so PATH holds none). Every line is checked here, before the model is opened: field
 * count, numbers (finite, |v| <= 1e6), and landmarks a similarity can be fitted to. */
static int read_landmarks(names *l, const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, PROG ": %s: %s\n", file, strerror(errno));
        return 1;
    }
    static const char *const what[5] = {"left eye", "right eye", "nose tip", "left mouth corner",
                                        "right mouth corner"};
    char line[PATH_MAX + 512];
    long no = 0;
    int rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        no++;
        size_t n = strlen(line);
        if (n && line[n - 1] != '\n' && !feof(f)) {
            fprintf(stderr, PROG ": %s:%ld: line too long\n", file, no);
            rc = 1;
            break;
        }
        char *fld[12], *save = NULL;
        int k = 0;
        for (char *t = strtok_r(line, " \t\r\n", &save); t; t = strtok_r(NULL, " \t\r\n", &save))
            if (k < 12)
                fld[k++] = t;
            else
                k++;
        if (k == 0) continue; /* blank line */
        if (k != 11) {
            fprintf(stderr,
                    PROG ": %s:%ld: %d field%s, expected 11: an image path and the x y of 5 "
                         "landmarks\n",
                    file, no, k, k == 1 ? "" : "s");
            rc = 1;
            break;
        }
        float lmk[5][2];
        for (int j = 0; j < 10 && !rc; j++) {
            double v;
            if (ft_parse_double(fld[1 + j], -1e6, 1e6, &v)) {
                fprintf(stderr,
                        PROG ": %s:%ld: field %d '%s' (%s %c) is not a number in -1e6..1e6\n", file,
                        no, j + 2, fld[1 + j], what[j / 2], j % 2 ? 'y' : 'x');
                rc = 1;
            } else {
                lmk[j / 2][j % 2] = (float)v; /* float32, as the reference parses them */
            }
        }
        double M[2][3];
        if (!rc && ft_align_estimate((const float(*)[2])lmk, M)) {
            fprintf(stderr,
                    PROG ": %s:%ld: the 5 landmarks coincide: no similarity transform to the "
                         "template\n",
                    file, no);
            rc = 1;
        }
        if (!rc && (push(l, fld[0]) || push_lmk(l, (const float(*)[2])lmk, no))) {
            fprintf(stderr, PROG ": out of memory\n");
            rc = 1;
        }
    }
    if (!rc && ferror(f)) {
        fprintf(stderr, PROG ": %s: read error\n", file);
        rc = 1;
    }
    fclose(f);
    if (!rc && l->n == 0) {
        fprintf(stderr, PROG ": %s: lists no image\n", file);
        rc = 1;
    }
    return rc;
}

/* image i of --landmarks FILE -> its aligned 112x112 crop -> blob rows */
static int load_aligned(const names *l, size_t i, const char *file, float mean, float std, int flip,
                        float *dst) {
    uint8_t *rgb, crop[FT_ALIGN_SIZE * FT_ALIGN_SIZE * 3];
    int w, h, hw = FT_ALIGN_SIZE;
    char err[512];
    if (ft_image_read_rgb(l->v[i], &rgb, &w, &h, err, sizeof err)) {
        fprintf(stderr, PROG ": %s:%ld: %s\n", file, l->line[i], err);
        return 1;
    }
    int rc = ft_align_face(rgb, w, h, (const float(*)[2])l->lmk[i], crop, NULL);
    free(rgb);
    if (rc) {
        fprintf(stderr, PROG ": %s:%ld: %s: cannot align (%s)\n", file, l->line[i], l->v[i],
                ft_strerror(rc));
        return 1;
    }
    ft_image_blob(crop, hw, mean, std, 0, dst);
    if (flip) ft_image_blob(crop, hw, mean, std, 1, dst + (size_t)3 * hw * hw);
    return 0;
}

/* one crop -> blob rows (original, and mirrored when flip) */
static int load_crop(const char *path, int hw, float mean, float std, int flip, float *dst) {
    uint8_t *rgb;
    int w, h;
    char err[512];
    if (ft_image_read_rgb(path, &rgb, &w, &h, err, sizeof err)) {
        fprintf(stderr, PROG ": %s\n", err);
        return 1;
    }
    if (w != hw || h != hw) {
        fprintf(stderr, PROG ": %s: image is %dx%d, the model takes aligned %dx%d crops\n", path, w,
                h, hw, hw);
        free(rgb);
        return 1;
    }
    ft_image_blob(rgb, hw, mean, std, 0, dst);
    if (flip) ft_image_blob(rgb, hw, mean, std, 1, dst + (size_t)3 * hw * hw);
    free(rgb);
    return 0;
}

int main(int argc, char **argv) {
    static const struct option lo[] = {
        {"list", required_argument, 0, 'l'},      {"folder", required_argument, 0, 'F'},
        {"landmarks", required_argument, 0, 'L'}, {"flip", no_argument, 0, 'f'},
        {"batch", required_argument, 0, 'b'},     {"threads", required_argument, 0, 't'},
        {"device", required_argument, 0, 'd'},    {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},         {0, 0, 0, 0}};
    const char *out = "feats.npy", *list = NULL, *folder = NULL, *lmfile = NULL, *device = "cpu";
    int flip = 0, opt;
    uint64_t batch = 32, threads = 0;
    /* -o FILE, --list FILE, --folder DIR, --landmarks FILE, --flip, --batch N, --threads N,
     * --device D, -h, -V */
    while ((opt = getopt_long(argc, argv, "o:hV", lo, NULL)) != -1) {
        switch (opt) {
        case 'o':
            out = optarg;
            break;
        case 'l':
            list = optarg;
            break;
        case 'F':
            folder = optarg;
            break;
        case 'L':
            lmfile = optarg;
            break;
        case 'f':
            flip = 1;
            break;
        case 'd':
            device = optarg;
            break;
        case 'b':
            if (ft_parse_u64(optarg, 1, 4096, &batch)) {
                fprintf(stderr, PROG ": --batch: '%s' is not in 1..4096\n", optarg);
                return 2;
            }
            break;
        case 't':
            if (ft_parse_u64(optarg, 0, 1024, &threads)) {
                fprintf(stderr, PROG ": --threads: '%s' is not in 0..1024\n", optarg);
                return 2;
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case 'V':
            printf(PROG " (%s)\n", FT_VERSION_STRING);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    int npos = argc - optind;
    if (lmfile && (list || folder || npos > 1)) {
        fprintf(stderr, PROG ": --landmarks FILE lists the images itself; give no IMAGE, --list "
                             "or --folder with it\n");
        return 2;
    }
    int sources = !!list + !!folder + !!lmfile;
    if (npos < 1 || sources > 1 || (sources && npos != 1) || (!sources && npos < 2)) {
        fputs(usage, stderr);
        return 2;
    }
    const char *model = argv[optind];
    names l = {0};
    int rc = 0;
    if (list)
        rc = read_list(&l, list);
    else if (folder)
        rc = read_folder(&l, folder);
    else if (lmfile)
        rc = read_landmarks(&l, lmfile);
    for (int i = optind + 1; i < argc && !rc; i++)
        if (push(&l, argv[i])) rc = 1;
    ft_engine *e = NULL;
    char err[1024];
    ft_engine_opts eo = {device, (int)threads, (int)(flip ? 2 * batch : batch), 0};
    if (!rc && ft_engine_open(&e, model, &eo, err, sizeof err)) {
        fprintf(stderr, PROG ": %s\n", err);
        rc = 1;
    }
    float *x = NULL, *emb = NULL, *feats = NULL;
    int hw = 0, dim = 0, per = flip ? 2 : 1;
    if (!rc) {
        hw = ft_engine_input_hw(e), dim = ft_engine_dim(e);
        if (lmfile && hw != FT_ALIGN_SIZE) {
            fprintf(stderr,
                    PROG ": %s: the model takes %dx%d inputs; --landmarks aligns to the %dx%d "
                         "arcface template\n",
                    model, hw, hw, FT_ALIGN_SIZE, FT_ALIGN_SIZE);
            rc = 1;
        }
    }
    if (!rc) {
        x = malloc((size_t)batch * per * 3 * hw * hw * sizeof(float));
        emb = malloc((size_t)batch * per * dim * sizeof(float));
        feats = malloc(l.n * (size_t)dim * sizeof(float));
        if (!x || !emb || !feats) {
            fprintf(stderr, PROG ": out of memory\n");
            rc = 1;
        }
    }
    float mean = 127.5f, std = 127.5f;
    if (!rc && ft_engine_normalizes(e)) mean = 0.0f, std = 1.0f;
    ft_progress pg;
    ft_progress_init(&pg, "embed", l.n);
    ft_stop_install();
    for (size_t s = 0; s < l.n && !rc; s += batch) {
        size_t m = l.n - s < batch ? l.n - s : batch;
        for (size_t i = 0; i < m && !rc; i++)
            rc = lmfile
                     ? load_aligned(&l, s + i, lmfile, mean, std, flip, x + i * per * 3 * hw * hw)
                     : load_crop(l.v[s + i], hw, mean, std, flip, x + i * per * 3 * hw * hw);
        if (!rc && ft_engine_run(e, x, (int)(m * per), emb, err, sizeof err)) {
            fprintf(stderr, PROG ": %s\n", err);
            rc = 1;
        }
        for (size_t i = 0; i < m && !rc; i++) {
            float *f = feats + (s + i) * dim;
            const float *a = emb + i * per * dim;
            double nn = 0;
            for (int j = 0; j < dim; j++) {
                f[j] = a[j] + (flip ? a[dim + j] : 0.0f);
                nn += (double)f[j] * f[j];
            }
            if (!isfinite(nn)) {
                fprintf(stderr, PROG ": %s: the model's embedding is not finite (NaN or inf)\n",
                        l.v[s + i]);
                rc = 1;
                break;
            }
            float inv = (float)(1.0 / fmax(sqrt(nn), 1e-12));
            for (int j = 0; j < dim; j++) f[j] *= inv;
        }
        ft_progress_add(&pg, m, 0);
        if (!rc && ft_stop_requested()) {
            fprintf(stderr, PROG ": stopped by a signal; %s not written\n", out);
            rc = 1;
        }
    }
    if (!rc) {
        ft_progress_done(&pg);
        if (ft_npy_write_f32(out, feats, (int64_t)l.n, dim, err, sizeof err)) {
            fprintf(stderr, PROG ": %s\n", err);
            rc = 1;
        } else {
            printf(PROG ": %zu images -> %s (%zu x %d float32, L2-normalized%s%s)\n", l.n, out, l.n,
                   dim, lmfile ? ", aligned by their landmarks" : "", flip ? ", flip fusion" : "");
        }
    }
    for (size_t i = 0; i < l.n; i++) free(l.v[i]);
    free(l.v), free(l.lmk), free(l.line);
    free(x), free(emb), free(feats);
    ft_engine_free(e);
    return rc;
}
