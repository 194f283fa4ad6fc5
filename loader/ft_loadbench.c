/* ft-loadbench: run the loader alone over K batches and report images/s, MB/s and the time
 * split per worker thread, next to the decode-only ceiling measured in the same run: the same
 * JPEGs decoded from memory by the same number of threads, with no reads, no augmentation and
 * no batching.
 *
 *   ft-loadbench DATASET [--engine uring|mmap|pread] [--threads N] [--batch B] [--batches K]
 *                [--layout u8hwc|f32chw] [--prefetch D] [--seed S] [--cold] [--json]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <turbojpeg.h>

#include "loader.h"

#define CEIL_SET_MAX 4096 /* distinct JPEGs kept in memory for the ceiling */

static void usage(FILE *f) {
    fprintf(f, "usage: ft-loadbench DATASET [--engine uring|mmap|pread] [--threads N] [--batch B]\n"
               "         [--batches K] [--layout u8hwc|f32chw] [--prefetch D] [--seed S]\n"
               "         [--repeat R] [--cold] [--fast-idct] [--json]\n"
               "DATASET: LMDB directory, dataset folder, or .rec (with .idx next to it).\n"
               "--repeat R: R rounds of K batches, each followed by the ceiling; best of each\n"
               "            is reported (default 3; the machine may be shared)\n"
               "--cold: drop the file from the page cache first and read with O_DIRECT\n"
               "        (mmap: page cache dropped only).\n"
               "--fast-idct: libjpeg-turbo's fast integer IDCT in the loader and the ceiling\n"
               "             (pixels may differ by a few levels from the accurate IDCT).\n");
}

typedef struct opts {
    loader_config c;
    uint64_t batches, repeat;
    int json, cold;
} opts;

static int parse_engine(const char *s, loader_engine *e) {
    if (!strcmp(s, "uring"))
        *e = LOADER_ENGINE_URING;
    else if (!strcmp(s, "pread"))
        *e = LOADER_ENGINE_PREAD;
    else if (!strcmp(s, "mmap"))
        *e = LOADER_ENGINE_MMAP;
    else
        return FT_EARG;
    return 0;
}

static int parse_args(int argc, char **argv, opts *o) {
    static const struct option lo[] = {{"engine", 1, 0, 'e'},    {"threads", 1, 0, 't'},
                                       {"batch", 1, 0, 'b'},     {"batches", 1, 0, 'k'},
                                       {"layout", 1, 0, 'l'},    {"prefetch", 1, 0, 'p'},
                                       {"seed", 1, 0, 's'},      {"cold", 0, 0, 'c'},
                                       {"json", 0, 0, 'j'},      {"repeat", 1, 0, 'r'},
                                       {"help", 0, 0, 'h'},      {"version", 0, 0, 'V'},
                                       {"fast-idct", 0, 0, 'f'}, {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    loader_config_init(&o->c);
    o->c.engine = LOADER_ENGINE_URING;
    o->batches = 100;
    o->repeat = 3;
    int ch;
    uint64_t v;
    /* -e engine, -t threads, -b batch, -k batches, -l layout, -p prefetch, -s seed,
     * -r rounds (best of), -c cold, -f fast IDCT, -j json, -h help, -V version */
    while ((ch = getopt_long(argc, argv, "e:t:b:k:l:p:s:r:cfjhV", lo, NULL)) != -1) {
        int rc = 0;
        switch (ch) {
        case 'e':
            rc = parse_engine(optarg, &o->c.engine);
            break;
        case 't':
            rc = ft_parse_u64(optarg, 1, 256, &v), o->c.threads = (uint32_t)v;
            break;
        case 'b':
            rc = ft_parse_u64(optarg, 1, 65536, &v), o->c.batch = (uint32_t)v;
            break;
        case 'k':
            rc = ft_parse_u64(optarg, 1, UINT32_MAX, &o->batches);
            break;
        case 'r':
            rc = ft_parse_u64(optarg, 1, 100, &o->repeat);
            break;
        case 'p':
            rc = ft_parse_u64(optarg, 1, 1024, &v), o->c.prefetch = (uint32_t)v;
            break;
        case 's':
            rc = ft_parse_u64(optarg, 0, UINT64_MAX, &o->c.seed);
            break;
        case 'l':
            if (!strcmp(optarg, "u8hwc"))
                o->c.layout = LOADER_U8_HWC;
            else if (!strcmp(optarg, "f32chw"))
                o->c.layout = LOADER_F32_CHW;
            else
                rc = FT_EARG;
            break;
        case 'c':
            o->cold = 1;
            break;
        case 'f':
            o->c.fast_idct = 1;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case 'V':
            printf("%s\n", FT_VERSION_STRING);
            exit(0);
        default:
            return FT_EARG;
        }
        if (rc) {
            fprintf(stderr, "ft-loadbench: bad value for -%c: '%s'\n", ch, optarg);
            return FT_EARG;
        }
    }
    if (optind != argc - 1) return FT_EARG;
    o->c.path = argv[optind];
    o->c.direct = o->cold && o->c.engine != LOADER_ENGINE_MMAP;
    if (o->cold) o->repeat = 1; /* later rounds would not be cold */
    return 0;
}

/* Percent of the file's pages in the page cache (mincore), or -1. */
static double cached_percent(int fd, uint64_t size) {
    if (size == 0) return -1;
    long pg = sysconf(_SC_PAGESIZE);
    void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return -1;
    size_t pages = (size + (uint64_t)pg - 1) / (uint64_t)pg, in = 0;
    unsigned char *vec = malloc(pages);
    if (vec && mincore(m, size, vec) == 0)
        for (size_t i = 0; i < pages; i++) in += vec[i] & 1;
    double pct = vec ? 100.0 * (double)in / (double)pages : -1;
    free(vec);
    munmap(m, size);
    return pct;
}

/* fsync + posix_fadvise(DONTNEED): drops this file's clean pages (tmpfs keeps them: there the
 * page cache is the storage). Reports the method and what stays cached. */
static int drop_cache(const char *dataset, char *method, size_t cap) {
    char file[4200];
    int rc = loader_resolve_file(dataset, file, sizeof file);
    if (rc) return rc;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    uint64_t size = 0;
    ft_file_size(file, &size);
    fsync(fd);
    rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    double pct = cached_percent(fd, size);
    close(fd);
    snprintf(method, cap, "fsync+posix_fadvise(DONTNEED) %s, %.0f%% still cached",
             rc ? "failed" : "ok", pct);
    return 0;
}

static double thread_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct ceil_job {
    double cpu_s;
    uint8_t **jpeg;
    size_t *len;
    uint64_t nset, first, count; /* decode images first, first+1, ... count of them (mod nset) */
    uint32_t h, w;
    int flags, failed;
} ceil_job;

static void *ceil_thread(void *arg) {
    ceil_job *j = arg;
    tjhandle tj = tjInitDecompress();
    uint8_t *out = malloc((size_t)j->h * j->w * 3);
    if (!tj || !out) j->failed = 1;
    double c0 = thread_cpu();
    for (uint64_t i = 0; !j->failed && i < j->count; i++) {
        uint64_t k = (j->first + i) % j->nset;
        if (tjDecompress2(tj, j->jpeg[k], (unsigned long)j->len[k], out, (int)j->w, (int)j->w * 3,
                          (int)j->h, TJPF_RGB, j->flags) != 0)
            j->failed = 1;
    }
    j->cpu_s = thread_cpu() - c0;
    free(out);
    if (tj) tjDestroy(tj);
    return NULL;
}

/* Decode `total` images from the in-memory set with `threads` threads; images/s or < 0.
 * *cpu_s gets the decode threads' CPU time. */
static double decode_ceiling(uint8_t **jpeg, size_t *len, uint64_t nset, uint64_t total,
                             uint32_t threads, uint32_t h, uint32_t w, int flags, double *cpu_s) {
    ceil_job jobs[256];
    pthread_t th[256];
    double t0 = ft_now();
    for (uint32_t t = 0; t < threads; t++) {
        uint64_t a = total * t / threads, b = total * (t + 1) / threads;
        jobs[t] = (ceil_job){0, jpeg, len, nset, a, b - a, h, w, flags, 0};
        pthread_create(&th[t], NULL, ceil_thread, &jobs[t]);
    }
    int failed = 0;
    *cpu_s = 0;
    for (uint32_t t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        failed |= jobs[t].failed;
        *cpu_s += jobs[t].cpu_s;
    }
    double dt = ft_now() - t0;
    return failed ? -1.0 : (double)total / dt;
}

typedef struct result {
    double secs, images_s, mb_s, ceil_s;
    double cpu_img_s, ceil_cpu_img_s; /* images per CPU second (robust on a shared machine) */
    char engine[16];
    loader_stats th[256]; /* per worker thread */
    uint64_t images, bytes;
    loader_stats st;
} result;

/* Print s as the inside of a JSON string (quotes, backslashes and control bytes escaped). */
static void json_str(const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
}

static void print_report(const opts *o, const result *r, const char *cold_method) {
    const char *layout = o->c.layout == LOADER_F32_CHW ? "f32chw" : "u8hwc";
    if (o->json) {
        printf("{\"dataset\":\"");
        json_str(o->c.path);
        printf("\",\"engine\":\"%s\",\"threads\":%" PRIu32 ",\"batch\":%" PRIu32
               ",\"batches\":%" PRIu64 ",\"rounds\":%" PRIu64
               ",\"layout\":\"%s\",\"cold\":%s,\"fast_idct\":%s,\"images\":%" PRIu64
               ",\"seconds\":%.4f,\"images_per_s\":%.1f,\"mb_per_s\":%.2f,"
               "\"decode_ceiling_images_per_s\":%.1f,\"ratio_to_ceiling\":%.4f,"
               "\"images_per_cpu_s\":%.1f,\"ceiling_images_per_cpu_s\":%.1f,\"cpu_ratio_to_"
               "ceiling\":%.4f,"
               "\"read_s\":%.4f,\"decode_s\":%.4f,\"other_s\":%.4f,\"worker_wait_s\":%.4f,"
               "\"consumer_wait_s\":%.4f,\"bad_samples\":%" PRIu64 "}\n",
               r->engine, o->c.threads, o->c.batch, o->batches, o->repeat, layout,
               o->cold ? "true" : "false", o->c.fast_idct ? "true" : "false", r->images, r->secs,
               r->images_s, r->mb_s, r->ceil_s, r->ceil_s > 0 ? r->images_s / r->ceil_s : 0,
               r->cpu_img_s, r->ceil_cpu_img_s,
               r->ceil_cpu_img_s > 0 ? r->cpu_img_s / r->ceil_cpu_img_s : 0, r->st.read_s,
               r->st.decode_s, r->st.other_s, r->st.wait_s, r->st.consumer_wait_s,
               r->st.bad_samples);
        return;
    }
    printf("ft-loadbench %s: engine %s, %" PRIu32 " threads, batch %" PRIu32 ", %" PRIu64
           " batches x %" PRIu64 " rounds (best), %s, prefetch %" PRIu32 "%s\n",
           o->c.path, r->engine, o->c.threads, o->c.batch, o->batches, o->repeat, layout,
           o->c.prefetch, o->cold ? ", cold (O_DIRECT)" : "");
    if (cold_method) printf("cache drop: %s\n", cold_method);
    printf("%-22s %12s\n", "metric", "value");
    printf("%-22s %12.1f\n", "images/s", r->images_s);
    printf("%-22s %12.2f\n", "MB/s", r->mb_s);
    printf("%-22s %12.1f\n", "decode ceiling img/s", r->ceil_s);
    printf("%-22s %11.1f%%\n", "loader / ceiling",
           r->ceil_s > 0 ? 100 * r->images_s / r->ceil_s : 0);
    printf("%-22s %12.1f\n", "images/CPU-s", r->cpu_img_s);
    printf("%-22s %12.1f\n", "ceiling images/CPU-s", r->ceil_cpu_img_s);
    printf("%-22s %11.1f%%\n", "per CPU-s / ceiling",
           r->ceil_cpu_img_s > 0 ? 100 * r->cpu_img_s / r->ceil_cpu_img_s : 0);
    printf("%-22s %12.3f\n", "wall s (best round)", r->secs);
    printf("%-22s %12.3f\n", "consumer wait s", r->st.consumer_wait_s);
    printf("%-22s %12" PRIu64 "\n", "bad samples", r->st.bad_samples);
    printf("\nper thread (best round):\n");
    printf("%-8s %10s %10s %10s %10s %10s\n", "thread", "images", "read s", "decode s", "other s",
           "idle s");
    for (uint32_t t = 0; t < o->c.threads; t++) {
        const loader_stats ts = r->th[t];
        printf("%-8" PRIu32 " %10" PRIu64 " %10.3f %10.3f %10.3f %10.3f\n", t, ts.images, ts.read_s,
               ts.decode_s, ts.other_s, ts.wait_s);
    }
    printf("%-8s %10s %10.3f %10.3f %10.3f %10.3f\n", "total", "", r->st.read_s, r->st.decode_s,
           r->st.other_s, r->st.wait_s);
}

/* The JPEGs of the samples delivered (up to CEIL_SET_MAX), for the decode-only ceiling. */
static int collect_set(loader *l, const uint64_t *idx, uint64_t n, uint8_t ***jpeg, size_t **len) {
    *jpeg = calloc(n, sizeof **jpeg);
    *len = calloc(n, sizeof **len);
    if (!*jpeg || !*len) return -ENOMEM;
    for (uint64_t i = 0; i < n; i++) {
        int32_t label;
        int rc = loader_sample_jpeg(l, idx[i], &(*jpeg)[i], &(*len)[i], &label);
        if (rc) return rc;
    }
    return 0;
}

/* One round: a fresh loader continuing the order at (epoch, step) of `*at` batches, K batches
 * timed from the end of loader_open (empty ring: the fill is part of the time). The loader is
 * closed before the ceiling runs, so the two never share the CPUs. Remembers the delivered
 * indices for the ceiling set (first round). */
static int round_once(const opts *o, uint64_t *at, uint64_t *steps, uint64_t *set, uint64_t *nset,
                      result *r) {
    char err[LOADER_ERRCAP] = "";
    loader_config c = o->c;
    c.start_epoch = *steps ? *at / *steps : 0, c.start_step = *steps ? *at % *steps : 0;
    loader *l;
    int rc = loader_open(&l, &c, err, sizeof err);
    if (rc) {
        fprintf(stderr, "ft-loadbench: %s\n", err);
        return rc;
    }
    double t0 = ft_now();
    loader_batch b;
    for (uint64_t k = 0; k < o->batches && !rc; k++) {
        if ((rc = loader_next(l, &b)) != 0) fprintf(stderr, "ft-loadbench: %s\n", loader_errmsg(l));
        for (uint32_t i = 0; !rc && i < b.n && *nset < CEIL_SET_MAX; i++)
            set[(*nset)++] = b.indices[i];
    }
    r->secs = ft_now() - t0;
    loader_get_stats(l, &r->st);
    for (uint32_t t = 0; t < o->c.threads; t++) loader_get_thread_stats(l, t, &r->th[t]);
    snprintf(r->engine, sizeof r->engine, "%s", loader_engine_name(l));
    *steps = loader_steps_per_epoch(l);
    *at = c.start_epoch * *steps + c.start_step + o->batches;
    loader_close(l);
    r->images = r->st.images;
    r->images_s = (double)r->images / r->secs;
    r->mb_s = (double)r->st.bytes_read / r->secs / 1e6;
    r->cpu_img_s = r->st.cpu_s > 0 ? (double)r->st.images_decoded / r->st.cpu_s : 0;
    return rc;
}

static void keep_best(result *best, const result *r, double ceil, double ceil_cpu) {
    if (r->images_s > best->images_s) {
        result old = *best;
        *best = *r;
        best->ceil_s = old.ceil_s, best->ceil_cpu_img_s = old.ceil_cpu_img_s;
        if (old.cpu_img_s > best->cpu_img_s) best->cpu_img_s = old.cpu_img_s;
    } else if (r->cpu_img_s > best->cpu_img_s) {
        best->cpu_img_s = r->cpu_img_s;
    }
    if (ceil > best->ceil_s) best->ceil_s = ceil;
    if (ceil_cpu > best->ceil_cpu_img_s) best->ceil_cpu_img_s = ceil_cpu;
}

static int run(opts *o, const char *cold_method) {
    uint64_t *set = malloc(CEIL_SET_MAX * sizeof *set), nset = 0, nceil = 0, at = 0, steps = 0;
    uint8_t **jpeg = NULL;
    size_t *len = NULL;
    uint32_t h = 0, w = 0;
    result *best = calloc(1, sizeof *best), *r = calloc(1, sizeof *r);
    int rc = set && best && r ? 0 : -ENOMEM;
    for (uint64_t round = 0; !rc && round < o->repeat; round++) {
        if ((rc = round_once(o, &at, &steps, set, &nset, r)) != 0) break;
        if (round == 0) { /* the delivered JPEGs, read by an idle loader */
            loader_config c = o->c;
            c.prefetch = 1, c.threads = 1, c.direct = 0;
            char err[LOADER_ERRCAP];
            loader *l;
            nceil = nset; /* later rounds do not add to the set */
            if ((rc = loader_open(&l, &c, err, sizeof err)) == 0) {
                rc = collect_set(l, set, nceil, &jpeg, &len);
                loader_image_shape(l, &h, &w);
                loader_close(l);
            }
            if (rc) {
                fprintf(stderr, "ft-loadbench: JPEGs for the ceiling: %s\n", ft_strerror(rc));
                break;
            }
        }
        double ccpu;
        double c = decode_ceiling(jpeg, len, nceil, r->images, o->c.threads, h, w,
                                  o->c.fast_idct ? TJFLAG_FASTDCT : 0, &ccpu);
        if (c < 0) fprintf(stderr, "ft-loadbench: some JPEGs do not decode (ceiling)\n");
        keep_best(best, r, c, ccpu > 0 ? (double)r->images / ccpu : 0);
    }
    if (!rc) print_report(o, best, cold_method);
    for (uint64_t i = 0; jpeg && i < nceil; i++) free(jpeg[i]);
    free(jpeg), free(len), free(set), free(best), free(r);
    return rc;
}

int main(int argc, char **argv) {
    opts o;
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    char method[256];
    if (o.cold) {
        int rc = drop_cache(o.c.path, method, sizeof method);
        if (rc) {
            fprintf(stderr, "ft-loadbench: %s: cannot drop the page cache: %s\n", o.c.path,
                    ft_strerror(rc));
            return 1;
        }
        if (!o.json) fprintf(stderr, "ft-loadbench: cache drop: %s\n", method);
    }
    return run(&o, o.cold ? method : NULL) ? 1 : 0;
}
