/* ft-synth: write a deterministic synthetic face dataset in the insightface release layout
 * (train.rec, train.idx, property, lfw.bin, cfp_fp.bin, agedb_30.bin). See docs/tools.md.
 *
 *   ft-synth OUTDIR --classes N --per-class M --seed S [--size 112] [--quality 95]
 *            [--pairs 300] [--nuisance 0.5] [--no-header] [--label-floats K] [--threads T]
 *
 * Images are rendered by synth_render.c from (seed, class, sample) and JPEG-encoded on worker
 * threads; records are written in order by the main thread (synth_pool.c), so the output is
 * byte-identical whatever --threads is.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "ft_common.h"    // defines: status codes, parsing, progress, rng, stop flag
#include "ft_verbin.h"    // defines: ft_verbin_write
#include "recordio.h"     // defines: rio_writer_*, rio_pack, rio_write_insightface_meta
#include "synth_pool.h"   // defines: ordered parallel map
#include "synth_render.h" // defines: synth_render

#define PROG       "ft-synth"
#define N_VERIF    3
#define MAX_FLOATS 16
#define KEY_LIMIT  (1ull << 24) /* insightface header keys are float32: exact below 2^24 */

static const char *const verif_names[N_VERIF] = {"lfw", "cfp_fp", "agedb_30"};

typedef struct synth_opts {
    const char *outdir;
    uint64_t classes, per_class, seed, pairs;
    int size, quality, threads, no_header, label_floats;
    double nuisance;
} synth_opts;

/* One image to render: identity and sample index. */
typedef struct job_map {
    uint64_t cls, sample;
} job_map;

typedef struct synth_ctx {
    const synth_opts *o;
    tjhandle *tj;         /* [threads] */
    uint8_t **rgb, **jpg; /* [threads] scratch */
    size_t jpg_cap;
    const job_map *verif; /* verification images of the current set, or NULL: training */
} synth_ctx;

static void usage(FILE *f) {
    fprintf(f, "usage: " PROG " OUTDIR --classes N --per-class M --seed S [options]\n"
               "Write a synthetic face dataset: OUTDIR/train.rec, train.idx, property and the\n"
               "verification files lfw.bin, cfp_fp.bin, agedb_30.bin (held-out identities).\n"
               "  --classes N        training identities (>= 1)\n"
               "  --per-class M      images per identity (>= 1)\n"
               "  --seed S           random seed; same seed -> byte-identical output\n"
               "  --size PX          image side in pixels (default 112)\n"
               "  --quality Q        JPEG quality 1..100 (default 95)\n"
               "  --pairs P          pairs per verification file, multiple of 10 (default 300;\n"
               "                     0 writes no .bin files)\n"
               "  --nuisance X       per-sample variation 0..1 (default 0.5)\n"
               "  --no-header        im2rec layout: keys 0..N-1, no header/identity records\n"
               "  --label-floats K   K float labels per image [class, 1, 0...] (flag K; default\n"
               "                     0: scalar label)\n"
               "  --threads T        render threads (default: online CPUs)\n"
               "  -V, --version      print the version\n"
               "  -h, --help         this text\n");
}

static int bad_value(const char *opt, const char *val, int rc) {
    fprintf(stderr, PROG ": --%s: %s '%s'\n", opt,
            rc == FT_ERANGE ? "out of range" : "not a number", val);
    return 2;
}

static int parse_int(const char *opt, const char *val, uint64_t lo, uint64_t hi, int *out) {
    uint64_t v = 0;
    int rc = ft_parse_u64(val, lo, hi, &v);
    if (rc) return bad_value(opt, val, rc);
    *out = (int)v;
    return 0;
}

/* getopt reported an unknown option ('?') or a missing value (':'). */
static int bad_option(int c, const char *arg) {
    fprintf(stderr, PROG ": %s '%s'\n", c == ':' ? "missing value for" : "unknown option", arg);
    usage(stderr);
    return 2;
}

/* One option with its value: 0, or 2 after printing the error. `have` collects the required
 * options seen (bit 0 --classes, 1 --per-class, 2 --seed). */
static int apply_opt(synth_opts *o, int c, const char *name, int *have) {
    int rc = 0;
    switch (c) {
    case 'c':
        rc = ft_parse_u64(optarg, 1, KEY_LIMIT, &o->classes), *have |= 1;
        break;
    case 'm':
        rc = ft_parse_u64(optarg, 1, KEY_LIMIT, &o->per_class), *have |= 2;
        break;
    case 's':
        rc = ft_parse_u64(optarg, 0, UINT64_MAX, &o->seed), *have |= 4;
        break;
    case 'p':
        rc = ft_parse_u64(optarg, 0, 1000000, &o->pairs);
        break;
    case 'n':
        rc = ft_parse_double(optarg, 0, 1, &o->nuisance);
        break;
    case 'z':
        return parse_int(name, optarg, SYNTH_MIN_SIZE, SYNTH_MAX_SIZE, &o->size);
    case 'q':
        return parse_int(name, optarg, 1, 100, &o->quality);
    case 't':
        return parse_int(name, optarg, 1, 256, &o->threads);
    case 'l':
        return parse_int(name, optarg, 0, MAX_FLOATS, &o->label_floats);
    case 'H':
        o->no_header = 1;
        break;
    default:
        break;
    }
    return rc ? bad_value(name, optarg, rc) : 0;
}

/* Parse argv into *o: 0 ok, 1 help/version printed (exit 0), 2 usage error. */
static int parse_args(int argc, char **argv, synth_opts *o) {
    // --classes N, --per-class M, --seed S (required); --size, --quality, --pairs, --nuisance,
    // --threads, --label-floats take values; --no-header is a switch; -V version; -h help.
    static const struct option longopts[] = {{"classes", 1, 0, 'c'},
                                             {"per-class", 1, 0, 'm'},
                                             {"seed", 1, 0, 's'},
                                             {"size", 1, 0, 'z'},
                                             {"quality", 1, 0, 'q'},
                                             {"pairs", 1, 0, 'p'},
                                             {"nuisance", 1, 0, 'n'},
                                             {"threads", 1, 0, 't'},
                                             {"label-floats", 1, 0, 'l'},
                                             {"no-header", 0, 0, 'H'},
                                             {"version", 0, 0, 'V'},
                                             {"help", 0, 0, 'h'},
                                             {0, 0, 0, 0}};
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int have = 0, c;
    o->size = 112, o->quality = 95, o->pairs = 300, o->nuisance = 0.5;
    o->threads = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (int)ncpu;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":Vh", longopts, NULL)) != -1) {
        const char *name = "";
        for (const struct option *lo = longopts; lo->name; lo++)
            if (lo->val == c) name = lo->name;
        if (c == 'V') {
            printf(PROG " (" FT_VERSION_STRING ")\n");
            return 1;
        }
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c == '?' || c == ':') return bad_option(c, argv[optind - 1]);
        if (apply_opt(o, c, name, &have)) return 2;
    }
    if (optind != argc - 1 || have != 7) {
        fprintf(stderr, PROG ": %s\n",
                optind != argc - 1 ? "expected exactly one OUTDIR"
                                   : "--classes, --per-class and --seed are required");
        usage(stderr);
        return 2;
    }
    o->outdir = argv[optind];
    if (o->no_header && o->label_floats > 0) {
        /* record 0 would carry flag K > 0, which MXFaceDataset (and every reader following
         * it) takes for an insightface header record: arcface_torch would read 0 samples */
        fprintf(stderr,
                PROG ": --no-header and --label-floats %d exclude each other: without a header "
                     "record, key 0 with float labels reads as one (use --label-floats 0)\n",
                o->label_floats);
        return 2;
    }
    if (o->pairs % 10 != 0) {
        fprintf(stderr, PROG ": --pairs: %llu is not a multiple of 10\n",
                (unsigned long long)o->pairs);
        return 2;
    }
    uint64_t n = o->classes * o->per_class;
    if (o->per_class > UINT64_MAX / o->classes ||
        (!o->no_header && n + o->classes + 1 >= KEY_LIMIT) || n > (1ull << 32)) {
        fprintf(stderr, PROG ": --classes x --per-class: too many images (%s)\n",
                o->no_header ? "at most 2^32" : "header keys must stay below 2^24");
        return 2;
    }
    return 0;
}

/* ------------------------------------------------------------------ rendering jobs */

/* Render and JPEG-encode one image on `worker`; *jpg points at the worker's buffer. */
static int render_jpeg(synth_ctx *x, int worker, uint64_t cls, uint64_t sample, uint8_t **jpg,
                       unsigned long *len) {
    const synth_opts *o = x->o;
    synth_render(o->seed, cls, sample, o->nuisance, o->size, x->rgb[worker]);
    *jpg = x->jpg[worker];
    *len = (unsigned long)x->jpg_cap;
    if (tjCompress2(x->tj[worker], x->rgb[worker], o->size, 0, o->size, TJPF_RGB, jpg, len,
                    TJSAMP_420, o->quality, TJFLAG_NOREALLOC) != 0)
        return FT_EDECODE;
    return 0;
}

/* Job j: a training record (class j / M, sample j % M, packed with its IRHeader) or, while
 * x->verif is set, verification image j (bare JPEG). */
static int work(void *ctx, int worker, uint64_t j, pool_item *out) {
    synth_ctx *x = ctx;
    const synth_opts *o = x->o;
    uint64_t cls = x->verif ? x->verif[j].cls : j / o->per_class;
    uint64_t sample = x->verif ? x->verif[j].sample : j % o->per_class;
    uint8_t *jpg = NULL;
    unsigned long len = 0;
    int rc = render_jpeg(x, worker, cls, sample, &jpg, &len);
    if (rc) return rc;
    if (x->verif) {
        if ((rc = pool_item_reserve(out, len))) return rc;
        memcpy(out->data, jpg, len);
        out->len = len;
        return 0;
    }
    float labels[MAX_FLOATS] = {0};
    labels[0] = (float)cls;
    if (o->label_floats > 1) labels[1] = 1.0f;
    rio_irheader h = {0, (float)cls, o->no_header ? j : j + 1, 0};
    size_t need = rio_pack_size((uint32_t)o->label_floats, len);
    if ((rc = pool_item_reserve(out, need))) return rc;
    out->len = rio_pack(out->data, &h, labels, (uint32_t)o->label_floats, jpg, len);
    return 0;
}

static void ctx_free(synth_ctx *x) {
    for (int i = 0; i < x->o->threads; i++) {
        if (x->tj && x->tj[i]) tjDestroy(x->tj[i]);
        if (x->rgb) free(x->rgb[i]);
        if (x->jpg) free(x->jpg[i]);
    }
    free(x->tj), free(x->rgb), free(x->jpg);
}

static int ctx_init(synth_ctx *x, const synth_opts *o) {
    memset(x, 0, sizeof *x);
    x->o = o;
    int t = o->threads;
    x->jpg_cap = tjBufSize(o->size, o->size, TJSAMP_420);
    x->tj = calloc((size_t)t, sizeof *x->tj);
    x->rgb = calloc((size_t)t, sizeof *x->rgb);
    x->jpg = calloc((size_t)t, sizeof *x->jpg);
    if (!x->tj || !x->rgb || !x->jpg) return -ENOMEM;
    for (int i = 0; i < t; i++) {
        x->tj[i] = tjInitCompress();
        x->rgb[i] = malloc((size_t)o->size * o->size * 3);
        x->jpg[i] = malloc(x->jpg_cap);
        if (!x->tj[i] || !x->rgb[i] || !x->jpg[i]) return -ENOMEM;
    }
    return 0;
}

/* ------------------------------------------------------------------ verification sets */

/* Set b draws its identities from classes N + b*H .. N + (b+1)*H - 1, none of them trained on.
 * Pair i is a same-identity pair when i is even, so every 10-fold split is balanced; its two
 * images are samples 2i and 2i+1 of their identities, so no image repeats. */
static uint64_t held_out_per_set(uint64_t pairs) {
    uint64_t h = pairs / 6;
    return h < 10 ? 10 : h;
}

static void plan_pairs(const synth_opts *o, int b, job_map *map, uint8_t *issame) {
    uint64_t h = held_out_per_set(o->pairs), base = o->classes + (uint64_t)b * h;
    ft_rng r;
    ft_rng_seed(&r, o->seed, ft_hash64(0xb1b1b1b1ull, (uint64_t)b, 0));
    for (uint64_t i = 0; i < o->pairs; i++) {
        uint64_t k1 = ft_rng_below(&r, h), k2 = k1;
        issame[i] = i % 2 == 0;
        if (!issame[i]) {
            k2 = ft_rng_below(&r, h - 1);
            if (k2 >= k1) k2++;
        }
        map[2 * i] = (job_map){base + k1, 2 * i};
        map[2 * i + 1] = (job_map){base + k2, 2 * i + 1};
    }
}

/* Render set b into *v (images malloc'd individually; free with free_set). */
static int render_set(synth_ctx *x, int b, ft_verbin *v) {
    const synth_opts *o = x->o;
    uint64_t n = 2 * o->pairs;
    job_map *map = malloc(n * sizeof *map);
    v->n_pairs = o->pairs;
    v->img = calloc(n, sizeof *v->img);
    v->img_len = calloc(n, sizeof *v->img_len);
    v->issame = calloc(o->pairs, 1);
    if (!map || !v->img || !v->img_len || !v->issame) {
        free(map);
        return -ENOMEM;
    }
    plan_pairs(o, b, map, v->issame);
    x->verif = map;
    pool *p = NULL;
    const pool_item *it = NULL;
    int rc = pool_start(&p, o->threads, n, 64 * (size_t)o->threads, work, x);
    for (uint64_t i = 0; !rc && i < n; i++) {
        if (ft_stop_requested())
            rc = FT_ESTOP;
        else if ((rc = pool_next(p, &it)) == 1) {
            rc = (v->img[i] = malloc(it->len)) ? 0 : -ENOMEM;
            if (!rc) memcpy(v->img[i], it->data, it->len), v->img_len[i] = it->len;
            pool_release(p);
        } else if (rc == 0) {
            rc = FT_ETRUNC;
        }
    }
    pool_stop(p);
    x->verif = NULL;
    free(map);
    return rc;
}

static void free_set(ft_verbin *v) {
    for (uint64_t i = 0; v->img && i < 2 * v->n_pairs; i++) free(v->img[i]);
    free(v->img), free(v->img_len), free(v->issame);
    memset(v, 0, sizeof *v);
}

/* ------------------------------------------------------------------ train.rec */

typedef struct out_paths {
    char rec[4096], idx[4096], prop[4096], bin[N_VERIF][4096];
} out_paths;

static int write_meta(rio_writer *w, const synth_opts *o) {
    uint64_t *first = malloc((o->classes + 1) * sizeof *first);
    if (!first) return -ENOMEM;
    for (uint64_t c = 0; c <= o->classes; c++) first[c] = c * o->per_class + 1;
    int rc = rio_write_insightface_meta(w, o->classes * o->per_class, first, o->classes);
    free(first);
    return rc;
}

/* Write train.rec/.idx; *bytes gets the .rec size. Messages are printed here. */
static int write_rec(synth_ctx *x, const out_paths *op, uint64_t *bytes) {
    const synth_opts *o = x->o;
    uint64_t n = o->classes * o->per_class;
    rio_writer *w = NULL;
    pool *p = NULL;
    const pool_item *it = NULL;
    ft_progress pr;
    int rc = rio_writer_open(&w, op->rec, op->idx);
    if (rc) {
        fprintf(stderr, PROG ": %s: %s\n", op->rec, ft_strerror(rc));
        return rc;
    }
    ft_progress_init(&pr, PROG, n);
    rc = pool_start(&p, o->threads, n, 64 * (size_t)o->threads, work, x);
    int werr = 0; /* the failure came from the writer (its message names the offset) */
    for (uint64_t j = 0; !rc && j < n; j++) {
        if (ft_stop_requested())
            rc = FT_ESTOP;
        else if ((rc = pool_next(p, &it)) == 1) {
            rc = werr = rio_writer_write(w, o->no_header ? j : j + 1, it->data, it->len);
            ft_progress_add(&pr, 1, it->len);
            pool_release(p);
        } else if (rc == 0) {
            rc = FT_ETRUNC;
        }
    }
    pool_stop(p);
    if (!rc && !o->no_header) rc = werr = write_meta(w, o);
    if (!rc) *bytes = rio_writer_tell(w);
    ft_progress_clear(&pr);
    if (!rc) {
        ft_progress_done(&pr);
        if ((rc = rio_writer_close(w)) != 0)
            fprintf(stderr, PROG ": %s: %s\n", op->rec, ft_strerror(rc));
        return rc;
    }
    if (rc == FT_EDECODE)
        fprintf(stderr, PROG ": %s: JPEG encoding failed\n", op->rec);
    else if (rc != FT_ESTOP)
        fprintf(stderr, PROG ": %s\n",
                werr && *rio_writer_errmsg(w) ? rio_writer_errmsg(w) : ft_strerror(rc));
    rio_writer_abort(w);
    return rc;
}

/* ------------------------------------------------------------------ main */

static int make_paths(const synth_opts *o, out_paths *op) {
    int rc = ft_path_join(op->rec, sizeof op->rec, o->outdir, "train.rec");
    rc = rc ? rc : ft_path_join(op->idx, sizeof op->idx, o->outdir, "train.idx");
    rc = rc ? rc : ft_path_join(op->prop, sizeof op->prop, o->outdir, "property");
    for (int b = 0; !rc && b < N_VERIF; b++) {
        char name[64];
        snprintf(name, sizeof name, "%s.bin", verif_names[b]);
        rc = ft_path_join(op->bin[b], sizeof op->bin[b], o->outdir, name);
    }
    return rc;
}

/* After a failure past train.rec, remove this run's outputs so that no partial set is left
 * (the file that failed was never renamed into place). */
static void remove_outputs(const out_paths *op, int n_bins) {
    unlink(op->rec), unlink(op->idx), unlink(op->prop);
    for (int b = 0; b < n_bins; b++) unlink(op->bin[b]);
}

static int run(const synth_opts *o, const out_paths *op, uint64_t *bytes) {
    synth_ctx x;
    ft_verbin sets[N_VERIF];
    memset(sets, 0, sizeof sets);
    int rc = ctx_init(&x, o), n_sets = o->pairs ? N_VERIF : 0, b = 0, rec_done = 0;
    if (rc) fprintf(stderr, PROG ": %s\n", ft_strerror(rc));
    for (b = 0; !rc && b < n_sets; b++) {
        rc = render_set(&x, b, &sets[b]);
        if (rc && rc != FT_ESTOP) fprintf(stderr, PROG ": %s: %s\n", op->bin[b], ft_strerror(rc));
    }
    if (!rc) rc = write_rec(&x, op, bytes);
    rec_done = !rc;
    for (b = 0; !rc && b < n_sets; b++) {
        if ((rc = ft_verbin_write(op->bin[b], &sets[b])) != 0)
            fprintf(stderr, PROG ": %s: %s\n", op->bin[b], ft_strerror(rc));
        else
            for (uint64_t i = 0; i < 2 * sets[b].n_pairs; i++) *bytes += sets[b].img_len[i];
    }
    if (!rc &&
        (rc = rio_property_write(op->prop, o->classes, (uint32_t)o->size, (uint32_t)o->size)) != 0)
        fprintf(stderr, PROG ": %s: %s\n", op->prop, ft_strerror(rc));
    if (rc && rec_done) remove_outputs(op, n_sets);
    if (rc == FT_ESTOP) fprintf(stderr, PROG ": interrupted; nothing written\n");
    for (int i = 0; i < N_VERIF; i++) free_set(&sets[i]);
    ctx_free(&x);
    return rc;
}

int main(int argc, char **argv) {
    synth_opts o;
    out_paths op;
    memset(&o, 0, sizeof o);
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : 2;
    if (make_paths(&o, &op) != 0) {
        fprintf(stderr, PROG ": %s: path too long\n", o.outdir);
        return 1;
    }
    if ((rc = ft_mkdir_p(o.outdir)) != 0) {
        fprintf(stderr, PROG ": %s: %s\n", o.outdir, ft_strerror(rc));
        return 1;
    }
    ft_stop_install();
    double t0 = ft_now();
    uint64_t bytes = 0;
    rc = run(&o, &op, &bytes);
    if (rc) return rc == FT_ESTOP ? 130 : 1;
    double dt = ft_now() - t0, n = (double)(o.classes * o.per_class + 6 * o.pairs);
    printf(PROG ": %llu images (%llu classes x %llu) + %d x %llu pairs, %.1f MB in %.1f s "
                "(%.0f images/s) -> %s\n",
           (unsigned long long)(o.classes * o.per_class), (unsigned long long)o.classes,
           (unsigned long long)o.per_class, o.pairs ? N_VERIF : 0, (unsigned long long)o.pairs,
           (double)bytes / 1e6, dt, dt > 0 ? n / dt : 0, o.outdir);
    return 0;
}
