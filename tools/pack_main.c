/* ft-pack: pack JPEGs into RecordIO in the insightface layout (train.rec, train.idx, property).
 * See docs/tools.md.
 *
 *   ft-pack IMAGE_FOLDER OUTDIR [--no-header] [--resize WxH] [--quality Q]
 *   ft-pack LIST.lst OUTDIR [--root DIR] [--no-header] [--resize WxH] [--quality Q]
 *   ft-pack SRC.rec OUTDIR --shuffle [--seed S]
 *
 * JPEG bytes are stored as they are unless --resize asks for decode, resize and re-encode.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ft_common.h" // defines: status codes, parsing, progress, stop flag
#include "pack.h"      // defines: pack_list (inputs), pack_image (JPEG check, resize)
#include "recordio.h"  // defines: rio_writer_*, rio_pack, rio_write_insightface_meta

#define PROG "ft-pack"

typedef struct pack_opts {
    const char *input, *outdir, *root;
    int no_header, resize_w, resize_h, quality, is_lst, is_rec, shuffle;
    uint64_t seed;
} pack_opts;

static void usage(FILE *f) {
    fprintf(f, "usage: " PROG " IMAGE_FOLDER OUTDIR [options]\n"
               "       " PROG " LIST.lst OUTDIR [--root DIR] [options]\n"
               "       " PROG " SRC.rec OUTDIR --shuffle [--seed S]\n"
               "Pack JPEGs into OUTDIR/train.rec, train.idx and property.\n"
               "IMAGE_FOLDER holds one sub-folder per class (sorted names -> labels 0..C-1).\n"
               "LIST.lst has im2rec lines: index<TAB>label[<TAB>label...]<TAB>relative_path.\n"
               "  --root DIR       base of the .lst paths (default: the .lst's folder)\n"
               "  --no-header      im2rec layout: no header/identity records; keys are the .lst\n"
               "                   indexes (folders: 0..N-1)\n"
               "  --resize WxH     decode, resize and re-encode every image (default: store the\n"
               "                   JPEG bytes unchanged)\n"
               "  --quality Q      JPEG quality for --resize, 1..100 (default 95)\n"
               "  --shuffle        SRC.rec: copy it with the image records in a seeded random\n"
               "                   order (keys, header and identity records kept; for DALI)\n"
               "  --seed S         seed of that order, 0..2^64-1 (default 0)\n"
               "  -V, --version    print the version\n"
               "  -h, --help       this text\n");
}

static int parse_size(const char *s, int *w, int *h) {
    char buf[64];
    const char *x = strchr(s, 'x');
    uint64_t a, b;
    if (!x || (size_t)(x - s) >= sizeof buf) return FT_EFORMAT;
    memcpy(buf, s, (size_t)(x - s));
    buf[x - s] = '\0';
    int rc = ft_parse_u64(buf, 1, 16384, &a);
    if (!rc) rc = ft_parse_u64(x + 1, 1, 16384, &b);
    if (rc) return rc;
    *w = (int)a, *h = (int)b;
    return 0;
}

/* getopt reported an unknown option ('?') or a missing value (':'). */
static int bad_option(int c, const char *arg) {
    fprintf(stderr, PROG ": %s '%s'\n", c == ':' ? "missing value for" : "unknown option", arg);
    usage(stderr);
    return 2;
}

/* Parse argv into *o: 0 ok, 1 help/version printed (exit 0), 2 usage error. */
static int parse_args(int argc, char **argv, pack_opts *o) {
    // --root DIR (.lst only), --no-header switch, --resize WxH, --quality Q (needs --resize),
    // --shuffle (SRC.rec only), --seed S (needs --shuffle), -V version, -h help.
    static const struct option longopts[] = {
        {"root", 1, 0, 'r'},      {"shuffle", 0, 0, 'S'}, {"seed", 1, 0, 's'},
        {"no-header", 0, 0, 'H'}, {"resize", 1, 0, 'R'},  {"quality", 1, 0, 'q'},
        {"version", 0, 0, 'V'},   {"help", 0, 0, 'h'},    {0, 0, 0, 0}};
    int c, have_q = 0, have_seed = 0;
    uint64_t q = 95;
    o->quality = 95;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":Vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'r':
            o->root = optarg;
            break;
        case 'H':
            o->no_header = 1;
            break;
        case 'R':
            if (parse_size(optarg, &o->resize_w, &o->resize_h) != 0) {
                fprintf(stderr, PROG ": --resize: expected WxH (1..16384), got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'q':
            if (ft_parse_u64(optarg, 1, 100, &q) != 0) {
                fprintf(stderr, PROG ": --quality: expected 1..100, got '%s'\n", optarg);
                return 2;
            }
            o->quality = (int)q, have_q = 1;
            break;
        case 'S':
            o->shuffle = 1;
            break;
        case 's':
            if (ft_parse_u64(optarg, 0, UINT64_MAX, &o->seed) != 0) {
                fprintf(stderr, PROG ": --seed: expected 0..2^64-1, got '%s'\n", optarg);
                return 2;
            }
            have_seed = 1;
            break;
        case 'V':
            printf(PROG " (" FT_VERSION_STRING ")\n");
            return 1;
        case 'h':
            usage(stdout);
            return 1;
        default:
            return bad_option(c, argv[optind - 1]);
        }
    }
    if (optind != argc - 2) {
        fprintf(stderr, PROG ": expected an input (folder or .lst) and OUTDIR\n");
        usage(stderr);
        return 2;
    }
    o->input = argv[optind], o->outdir = argv[optind + 1];
    size_t n = strlen(o->input);
    o->is_rec = !ft_is_dir(o->input) && n > 4 && strcmp(o->input + n - 4, ".rec") == 0;
    o->is_lst = !ft_is_dir(o->input) && !o->is_rec;
    const char *bad = have_q && !o->resize_w     ? "--quality only applies with --resize"
                      : o->root && !o->is_lst    ? "--root only applies to a .lst input"
                      : o->is_rec && !o->shuffle ? "a .rec input is only copied with --shuffle"
                      : o->shuffle && !o->is_rec ? "--shuffle takes a .rec input (SRC.rec OUTDIR)"
                      : have_seed && !o->shuffle ? "--seed needs --shuffle"
                      : o->is_rec && (o->no_header || o->resize_w)
                          ? "--no-header and --resize do not apply to a .rec input"
                          : NULL;
    if (bad) {
        fprintf(stderr, PROG ": %s\n", bad);
        usage(stderr);
        return 2;
    }
    return 0;
}

/* The .lst's folder, the default --root. */
static char *lst_dir(const char *lst) {
    const char *slash = strrchr(lst, '/');
    if (!slash) return strdup(".");
    size_t n = slash == lst ? 1 : (size_t)(slash - lst);
    char *d = malloc(n + 1);
    if (d) memcpy(d, lst, n), d[n] = '\0';
    return d;
}

static int load_inputs(const pack_opts *o, pack_list *l) {
    char err[1024] = "";
    int rc;
    if (!o->is_lst) {
        rc = pack_scan_folder(o->input, l, err, sizeof err);
    } else {
        char *root = o->root ? strdup(o->root) : lst_dir(o->input);
        rc = root ? pack_read_lst(o->input, root, l, err, sizeof err) : -ENOMEM;
        free(root);
        if (!rc && !o->no_header) rc = pack_list_group(l, o->input, err, sizeof err);
        if (!rc && o->no_header) rc = pack_list_unique(l, o->input, err, sizeof err);
        if (rc) pack_list_free(l);
    }
    if (!rc && l->n == 0) {
        snprintf(err, sizeof err, "%s: no images found", o->input);
        rc = FT_EFORMAT;
        pack_list_free(l);
    }
    if (rc) fprintf(stderr, PROG ": %s\n", *err ? err : ft_strerror(rc));
    return rc;
}

/* ------------------------------------------------------------------ packing */

typedef struct pack_state {
    const pack_opts *o;
    rio_writer *w;
    pack_image img;
    uint8_t *rec;
    size_t rec_cap;
    int w0, h0, mixed; /* size of the first image; whether others differ */
    uint64_t *first;   /* header mode: [n_classes + 1] first image key per class */
    uint64_t bytes;
} pack_state;

/* Read, check (and maybe resize) entry e, pack it under `key` and write it. On failure err
 * gets "path: reason". */
static int pack_one(pack_state *s, const pack_entry *e, uint64_t key, char *err, size_t errcap) {
    char *data = NULL;
    size_t len = 0;
    int w = 0, h = 0;
    int rc = ft_read_file(e->path, &data, &len);
    if (rc) {
        snprintf(err, errcap, "%s: %s", e->path, ft_strerror(rc));
        return rc;
    }
    const uint8_t *img = (const uint8_t *)data;
    if ((rc = pack_jpeg_info(&s->img, img, len, &w, &h)) != 0) {
        snprintf(err, errcap, "%s: not a JPEG", e->path);
    } else if (s->o->resize_w) {
        rc = pack_resize(&s->img, img, len, s->o->resize_w, s->o->resize_h, s->o->quality);
        if (rc) snprintf(err, errcap, "%s: %s", e->path, ft_strerror(rc));
        img = s->img.jpg, len = s->img.jpg_len, w = s->o->resize_w, h = s->o->resize_h;
    }
    if (!rc && s->w0 == 0)
        s->w0 = w, s->h0 = h;
    else if (!rc && (w != s->w0 || h != s->h0))
        s->mixed = 1;
    uint32_t nl = e->nlabels > 1 ? e->nlabels : 0;
    size_t need = rio_pack_size(nl, len);
    if (!rc && need > s->rec_cap) {
        uint8_t *nr = realloc(s->rec, need);
        if (!nr)
            rc = -ENOMEM, snprintf(err, errcap, "%s: out of memory", e->path);
        else
            s->rec = nr, s->rec_cap = need;
    }
    if (!rc) {
        rio_irheader hd = {0, e->labels[0], key, 0};
        size_t n = rio_pack(s->rec, &hd, e->labels, nl, img, len);
        if ((rc = rio_writer_write(s->w, key, s->rec, n)) != 0)
            snprintf(err, errcap, "%s", rio_writer_errmsg(s->w));
        s->bytes += n;
    }
    free(data);
    return rc;
}

/* Header layout: class c's images are keys first[c] .. first[c+1]-1 (entries are grouped by
 * class in ascending order, keys 1..N); classes without images get empty ranges. */
static int class_ranges(pack_state *s, const pack_list *l) {
    if (!(s->first = calloc(l->n_classes + 1, sizeof *s->first))) return -ENOMEM;
    for (size_t i = 0; i < l->n; i++) s->first[(uint64_t)l->e[i].labels[0] + 1]++;
    s->first[0] = 1;
    for (uint64_t c = 1; c <= l->n_classes; c++) s->first[c] += s->first[c - 1];
    return 0;
}

/* Write every entry (header layout: keys 1..N, then the identity and header records). */
static int pack_all(pack_state *s, const pack_list *l) {
    ft_progress pr;
    int rc = 0, header = !s->o->no_header;
    if (header && (rc = class_ranges(s, l)) != 0) {
        fprintf(stderr, PROG ": out of memory\n");
        return rc;
    }
    ft_progress_init(&pr, PROG, l->n);
    for (size_t i = 0; !rc && i < l->n; i++) {
        if (ft_stop_requested()) {
            rc = FT_ESTOP;
            break;
        }
        uint64_t key = header ? i + 1 : s->o->is_lst ? l->e[i].index : i;
        uint64_t before = s->bytes;
        char err[1024] = "";
        if ((rc = pack_one(s, &l->e[i], key, err, sizeof err)) != 0) {
            ft_progress_clear(&pr);
            fprintf(stderr, PROG ": %s\n", err);
        }
        ft_progress_add(&pr, 1, s->bytes - before);
    }
    ft_progress_clear(&pr);
    if (!rc && header && (rc = rio_write_insightface_meta(s->w, l->n, s->first, l->n_classes)))
        fprintf(stderr, PROG ": %s\n", rio_writer_errmsg(s->w));
    if (!rc) ft_progress_done(&pr);
    return rc;
}

/* Pack into OUTDIR; the .rec/.idx appear only on success, property right after them. */
static int run(const pack_opts *o, const pack_list *l, pack_state *s) {
    char rec[4096], idx[4096], prop[4096];
    int rc = ft_path_join(rec, sizeof rec, o->outdir, "train.rec");
    if (!rc) rc = ft_path_join(idx, sizeof idx, o->outdir, "train.idx");
    if (!rc) rc = ft_path_join(prop, sizeof prop, o->outdir, "property");
    if (rc) {
        fprintf(stderr, PROG ": %s: path too long\n", o->outdir);
        return rc;
    }
    if ((rc = ft_mkdir_p(o->outdir)) != 0 || (rc = pack_image_init(&s->img)) != 0 ||
        (rc = rio_writer_open(&s->w, rec, idx)) != 0) {
        fprintf(stderr, PROG ": %s: %s\n", o->outdir, ft_strerror(rc));
        return rc;
    }
    rc = pack_all(s, l);
    if (rc) {
        if (rc == FT_ESTOP) fprintf(stderr, PROG ": interrupted; nothing written\n");
        rio_writer_abort(s->w);
        return rc;
    }
    if ((rc = rio_writer_close(s->w)) != 0) {
        fprintf(stderr, PROG ": %s: %s\n", rec, ft_strerror(rc));
        return rc;
    }
    uint64_t classes = o->is_lst && o->no_header ? 0 : l->n_classes;
    if (o->is_lst && o->no_header)
        for (size_t i = 0; i < l->n; i++)
            if (l->e[i].labels[0] >= 0 && l->e[i].labels[0] < 16777216.0f &&
                (uint64_t)l->e[i].labels[0] + 1 > classes)
                classes = (uint64_t)l->e[i].labels[0] + 1;
    if ((rc = rio_property_write(prop, classes, (uint32_t)s->h0, (uint32_t)s->w0)) != 0) {
        fprintf(stderr, PROG ": %s: %s\n", prop, ft_strerror(rc));
        unlink(rec), unlink(idx);
        return rc;
    }
    if (s->mixed)
        fprintf(stderr, PROG ": warning: images differ in size; %s records the first, %dx%d\n",
                prop, s->w0, s->h0);
    return 0;
}

int main(int argc, char **argv) {
    pack_opts o;
    pack_list l;
    pack_state s;
    memset(&o, 0, sizeof o);
    memset(&s, 0, sizeof s);
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : 2;
    if (o.is_rec) {
        ft_stop_install();
        rc = pack_shuffle_rec(o.input, o.outdir, o.seed);
        return rc == FT_ESTOP ? 130 : rc ? 1 : 0;
    }
    if (load_inputs(&o, &l) != 0) return 1;
    ft_stop_install();
    double t0 = ft_now();
    s.o = &o;
    rc = run(&o, &l, &s);
    double dt = ft_now() - t0;
    if (!rc)
        printf(PROG ": %zu images, %llu classes, %.1f MB in %.1f s (%s%s) -> %s\n", l.n,
               (unsigned long long)l.n_classes, (double)s.bytes / 1e6, dt,
               o.no_header ? "no header" : "insightface header", o.resize_w ? ", resized" : "",
               o.outdir);
    pack_image_free(&s.img);
    free(s.rec), free(s.first);
    pack_list_free(&l);
    return rc == FT_ESTOP ? 130 : rc ? 1 : 0;
}
