/* ft-ingest: RecordIO release folder or image folder -> validated LMDB dataset (ftdb.h).
 *
 *   ft-ingest SRC OUT_LMDB [--shuffle [--seed S]] [--skip-bad] [--num-classes N] [--threads T]
 *             [--force]
 *   ft-ingest --verify LMDB      recompute the checksum, compare with meta
 *   ft-ingest --info LMDB        print meta (no data read)
 *
 * docs/ingest.md describes the behaviour; exit status 0 on success, 1 on failure, 2 on a
 * usage error. */
#include "ingest.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: ft-ingest SRC OUT_LMDB [--shuffle [--seed S]] [--skip-bad] [--num-classes N]\n"
            "                 [--threads T] [--force]\n"
            "       ft-ingest --verify LMDB\n"
            "       ft-ingest --info LMDB\n"
            "\n"
            "Decode-validate every image of SRC and write an LMDB dataset to OUT_LMDB.\n"
            "SRC is a release folder (train.rec, train.idx, optional property), a .rec file\n"
            "with its .idx next to it, or an image folder (one sub-folder per class).\n"
            "\n"
            "  --shuffle          store samples in a seeded random order\n"
            "  --seed S           seed of that order (default 0; needs --shuffle)\n"
            "  --skip-bad         leave out bad records (listed at the end) instead of stopping\n"
            "  --num-classes N    labels must be < N (default: property file, number of class\n"
            "                     folders, or max label + 1)\n"
            "  --threads T        decode threads (default: number of CPUs)\n"
            "  --force            replace an existing OUT_LMDB\n"
            "  --verify           re-read LMDB, check sample count and checksum against meta\n"
            "  --info             print LMDB's meta, one 'key value' line each\n"
            "  -h, --help         this help\n"
            "  -V, --version      version\n");
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "ft-ingest: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see ft-ingest --help)\n");
    return 2;
}

int ing_verify(const char *dir, char *err, size_t errcap) {
    ftdb *db;
    int rc = ftdb_open(&db, dir, err, errcap);
    if (rc < 0) return rc;
    ft_stop_install();
    const ftdb_meta *m = ftdb_get_meta(db);
    ft_progress pr;
    ft_progress_init(&pr, "verify", m->num_samples);
    uint64_t sum = 0, count = 0;
    rc = ftdb_compute_checksum(db, &sum, &count, &pr, err, errcap);
    if (rc < 0)
        ft_progress_clear(&pr);
    else
        ft_progress_done(&pr);
    double sec = ft_now() - pr.t_start;
    if (rc == 0 && count != m->num_samples) {
        snprintf(err, errcap, "%s: %" PRIu64 " samples found, meta says %" PRIu64, dir, count,
                 m->num_samples);
        rc = FT_EFORMAT;
    } else if (rc == 0 && sum != m->checksum) {
        snprintf(err, errcap,
                 "%s: checksum mismatch: meta says xxh3-64:%016" PRIx64 ", data gives "
                 "xxh3-64:%016" PRIx64 " (the dataset is damaged)",
                 dir, m->checksum, sum);
        rc = FT_EFORMAT;
    } else if (rc == 0) {
        printf("ft-ingest: %s: OK: %" PRIu64 " samples, %" PRIu64 " classes, checksum "
               "xxh3-64:%016" PRIx64 " (%.1f MB in %.2f s)\n",
               dir, count, m->num_classes, sum, (double)pr.bytes / 1e6, sec);
    }
    ftdb_close(db);
    return rc;
}

int ing_info(const char *dir, char *err, size_t errcap) {
    ftdb *db;
    int rc = ftdb_open(&db, dir, err, errcap);
    if (rc < 0) return rc;
    const ftdb_meta *m = ftdb_get_meta(db);
    char data[4200];
    uint64_t size = 0;
    if (ftdb_data_path(db, data, sizeof data) == 0) ft_file_size(data, &size);
    printf("format %s\nversion %" PRIu32 "\nnum_samples %" PRIu64 "\nnum_classes %" PRIu64
           "\nimage_height %" PRIu32 "\nimage_width %" PRIu32 "\nshuffle %s\n"
           "checksum xxh3-64:%016" PRIx64 "\ndata_bytes %" PRIu64 "\nsource %s\n",
           FTDB_FORMAT, m->version, m->num_samples, m->num_classes, m->height, m->width, m->shuffle,
           m->checksum, size, m->source);
    ftdb_close(db);
    return 0;
}

enum {
    OPT_SHUFFLE = 256,
    OPT_SEED,
    OPT_SKIP,
    OPT_CLASSES,
    OPT_THREADS,
    OPT_FORCE,
    OPT_VERIFY,
    OPT_INFO
};

typedef struct cli {
    ing_run_args a;
    int verify, info, seed_given;
} cli;

/* Options, one per line:
 *   --shuffle          samples in the order of ft_permutation(n, seed)
 *   --seed S           0 .. 2^64-1, needs --shuffle (default 0)
 *   --skip-bad         bad records are left out and listed instead of stopping the run
 *   --num-classes N    1 .. 2^31-1 (labels are int32)
 *   --threads T        1 .. 256 decode workers
 *   --force            replace an existing OUT_LMDB (only an LMDB directory)
 *   --verify / --info  the other two modes; take exactly one LMDB directory
 *   -h/--help, -V/--version
 * Returns -1 to go on, else the exit status. */
static int parse_option(cli *c, int opt, const char *arg) {
    uint64_t v;
    switch (opt) {
    case OPT_SHUFFLE:
        c->a.shuffle = 1;
        break;
    case OPT_SKIP:
        c->a.skip_bad = 1;
        break;
    case OPT_FORCE:
        c->a.force = 1;
        break;
    case OPT_VERIFY:
        c->verify = 1;
        break;
    case OPT_INFO:
        c->info = 1;
        break;
    case OPT_SEED:
        if (ft_parse_u64(arg, 0, UINT64_MAX, &c->a.seed))
            return usage_error("--seed: '%s' is not a number in [0, 2^64)", arg);
        c->seed_given = 1;
        break;
    case OPT_CLASSES:
        if (ft_parse_u64(arg, 1, INT32_MAX, &c->a.num_classes))
            return usage_error("--num-classes: '%s' is not a number in [1, 2^31)", arg);
        break;
    case OPT_THREADS:
        if (ft_parse_u64(arg, 1, 256, &v))
            return usage_error("--threads: '%s' is not a number in [1, 256]", arg);
        c->a.threads = (unsigned)v;
        break;
    case 'h':
        usage(stdout);
        return 0;
    case 'V':
        printf("ft-ingest (%s)\n", FT_VERSION_STRING);
        return 0;
    default:
        return usage_error("%s", "bad option");
    }
    return -1;
}

static int parse_args(cli *c, int argc, char **argv) {
    static const struct option longs[] = {{"shuffle", no_argument, NULL, OPT_SHUFFLE},
                                          {"seed", required_argument, NULL, OPT_SEED},
                                          {"skip-bad", no_argument, NULL, OPT_SKIP},
                                          {"num-classes", required_argument, NULL, OPT_CLASSES},
                                          {"threads", required_argument, NULL, OPT_THREADS},
                                          {"force", no_argument, NULL, OPT_FORCE},
                                          {"verify", no_argument, NULL, OPT_VERIFY},
                                          {"info", no_argument, NULL, OPT_INFO},
                                          {"help", no_argument, NULL, 'h'},
                                          {"version", no_argument, NULL, 'V'},
                                          {NULL, 0, NULL, 0}};
    memset(c, 0, sizeof *c);
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "hV", longs, NULL)) != -1) {
        if (opt == '?') {
            const char *bad = argv[optind - 1];
            return usage_error(
                optopt ? "option '%s' needs a value or is unknown" : "unknown option '%s'", bad);
        }
        int rc = parse_option(c, opt, optarg);
        if (rc >= 0) return rc;
    }
    int npos = argc - optind;
    if (c->verify || c->info) {
        if (c->verify && c->info)
            return usage_error("%s", "--verify and --info exclude each other");
        if (c->a.shuffle || c->seed_given || c->a.skip_bad || c->a.num_classes || c->a.threads ||
            c->a.force)
            return usage_error("%s", "--verify/--info take only the LMDB directory");
        if (npos != 1) return usage_error("%s", "--verify/--info need exactly one LMDB directory");
        c->a.out = argv[optind];
        return -1;
    }
    if (npos != 2) return usage_error("%s", "need SRC and OUT_LMDB");
    if (c->seed_given && !c->a.shuffle) return usage_error("%s", "--seed needs --shuffle");
    c->a.src = argv[optind];
    c->a.out = argv[optind + 1];
    if (!c->a.threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->a.threads = n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
    }
    return -1;
}

int main(int argc, char **argv) {
    cli c;
    int rc = parse_args(&c, argc, argv);
    if (rc >= 0) return rc;
    char err[ING_ERRCAP] = "";
    if (c.verify)
        rc = ing_verify(c.a.out, err, sizeof err);
    else if (c.info)
        rc = ing_info(c.a.out, err, sizeof err);
    else
        rc = ing_run(&c.a, err, sizeof err);
    if (rc < 0) {
        fflush(stdout);
        if (!err[0]) snprintf(err, sizeof err, "%s", ft_strerror(rc));
        fprintf(stderr, "ft-ingest: %s\n", err);
        return 1;
    }
    return 0;
}
