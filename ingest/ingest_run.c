/* ingest_run.c: one ingest from source to a finished LMDB directory.
 *
 * The dataset is written to OUT.tmp.<pid> next to OUT, synced, and renamed to OUT only when
 * complete (with --force an existing OUT is swapped out atomically and then removed). On any
 * failure or a stop signal the temporary directory is removed, so OUT either does not exist or
 * is a whole dataset. Temporaries left by a killed run (their pid is gone) are removed. */
#include "ingest.h"

#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define ING_COMMIT_BYTES (64u << 20)

static void split_path(const char *path, char *dir, char *base, size_t cap) {
    const char *slash = strrchr(path, '/');
    while (slash && slash > path && slash[1] == '\0') { /* trailing slash: "out/" */
        const char *p = slash - 1;
        while (p > path && *p != '/') p--;
        slash = *p == '/' ? p : NULL;
    }
    if (!slash)
        snprintf(dir, cap, ".");
    else if (slash == path)
        snprintf(dir, cap, "/");
    else
        snprintf(dir, cap, "%.*s", (int)(slash - path), path);
    snprintf(base, cap, "%s", slash ? slash + 1 : path);
    size_t n = strlen(base);
    while (n > 1 && base[n - 1] == '/') base[--n] = '\0';
}

/* Remove OUT.tmp.<pid> directories whose process is gone (a crash or kill -9). */
static void remove_stale(const char *dir, const char *base) {
    DIR *d = opendir(dir);
    if (!d) return;
    char prefix[PATH_MAX];
    snprintf(prefix, sizeof prefix, "%s.tmp.", base);
    size_t n = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t pid;
        if (strncmp(e->d_name, prefix, n) != 0 || ft_parse_u64(e->d_name + n, 1, INT_MAX, &pid))
            continue;
        if ((pid_t)pid == getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char p[2 * PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        fprintf(stderr, "ft-ingest: removing %s (left by an interrupted run)\n", p);
        ft_rm_rf(p);
    }
    closedir(d);
}

/* --force replaces only an LMDB environment: a directory holding data.mdb (+ lock.mdb). */
static int replaceable(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 0;
    int data = 0, other = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (!strcmp(e->d_name, "data.mdb"))
            data = 1;
        else if (strcmp(e->d_name, "lock.mdb") != 0)
            other = 1;
    }
    closedir(d);
    return data && !other;
}

static int check_out(const ing_run_args *a, char *err, size_t errcap) {
    struct stat st;
    if (lstat(a->out, &st) != 0) return 0;
    if (!a->force) {
        snprintf(err, errcap, "%s: exists (use --force to replace it)", a->out);
        return -EEXIST;
    }
    if (!S_ISDIR(st.st_mode) || !replaceable(a->out)) {
        snprintf(err, errcap, "%s: exists and is not an LMDB directory; not replacing it", a->out);
        return -EEXIST;
    }
    return 0;
}

/* Rename the finished temporary directory into place (see the file comment). */
static int publish(const char *tmp, const char *out, const char *out_dir, char *err,
                   size_t errcap) {
    int rc = ft_fsync_path(tmp);
    if (rc == 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_NOREPLACE) != 0) {
        rc = -errno;
        if (rc == -EEXIST && renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_EXCHANGE) == 0) {
            rc = ft_rm_rf(tmp);                      /* tmp now holds the replaced dataset */
        } else if (rc == -EINVAL || rc == -ENOSYS) { /* file system without renameat2 flags */
            rc = rename(tmp, out) == 0 ? 0 : -errno;
        }
    }
    if (rc == 0) rc = ft_fsync_path(out_dir);
    if (rc < 0)
        snprintf(err, errcap, "%s: cannot move the finished dataset into place: %s", out,
                 ft_strerror(rc));
    return rc;
}

static void fill_meta(const ing_source *src, const ing_run_args *a, const ing_result *res,
                      ftdb_meta *m) {
    memset(m, 0, sizeof *m);
    m->num_classes = src->num_classes ? src->num_classes : res->max_label + 1;
    m->height = res->height;
    m->width = res->width;
    char abs[PATH_MAX + 128], desc[PATH_MAX + 256];
    const char *p = src->is_folder ? src->path : src->rec_path;
    if (!realpath(p, abs)) snprintf(abs, sizeof abs, "%.4095s", p);
    if (src->is_folder)
        snprintf(desc, sizeof desc, "folder:%s", abs);
    else
        snprintf(desc, sizeof desc, "recordio:%s (%s)", abs,
                 src->has_header ? "header record" : "all .idx keys");
    size_t n = strlen(desc) < sizeof m->source ? strlen(desc) : sizeof m->source - 1;
    memcpy(m->source, desc, n); /* very long paths are cut: the text is informational */
    m->source[n] = '\0';
    if (a->shuffle)
        snprintf(m->shuffle, sizeof m->shuffle, "%" PRIu64, a->seed);
    else
        snprintf(m->shuffle, sizeof m->shuffle, "none");
}

static void warn_space(const char *dir, uint64_t need) {
    struct statvfs vf;
    if (statvfs(dir, &vf) != 0) return;
    uint64_t avail = (uint64_t)vf.f_bavail * vf.f_frsize;
    if (avail < need)
        fprintf(stderr,
                "ft-ingest: warning: %s: %.1f MB free; the dataset may need up to %.1f MB\n", dir,
                (double)avail / 1e6, (double)need / 1e6);
}

static void print_summary(const ing_source *src, const ing_run_args *a, const ftdb_meta *m,
                          const ing_result *r) {
    if (r->skipped) {
        fprintf(stderr, "ft-ingest: skipped %" PRIu64 " bad record%s: %s", r->skipped,
                r->skipped == 1 ? "" : "s", src->is_folder ? "file" : "key");
        uint64_t shown = r->skipped < ING_LIST_MAX ? r->skipped : ING_LIST_MAX;
        for (uint64_t i = 0; i < shown; i++)
            fprintf(stderr, "%s %" PRIu64, i ? "," : "", r->skipped_keys[i]);
        if (r->skipped > shown) fprintf(stderr, " and %" PRIu64 " more", r->skipped - shown);
        fputc('\n', stderr);
    }
    if (src->prop_h && (src->prop_h != r->height || src->prop_w != r->width))
        fprintf(stderr, "ft-ingest: warning: images are %ux%u, the property file says %ux%u\n",
                r->height, r->width, src->prop_h, src->prop_w);
    double s = r->seconds > 0 ? r->seconds : 1e-9;
    printf("ft-ingest: %s: %" PRIu64 " samples, %" PRIu64 " classes, %ux%u, %.1f MB in %.2f s "
           "(%.1f MB/s, %.0f samples/s), shuffle %s, checksum xxh3-64:%016" PRIx64 "\n",
           a->out, m->num_samples, m->num_classes, m->height, m->width, (double)r->read_bytes / 1e6,
           r->seconds, (double)r->read_bytes / 1e6 / s, (double)r->written / s, m->shuffle,
           m->checksum);
}

static void announce(const ing_source *src, const ing_run_args *a) {
    char cls[96] = "classes: max label + 1";
    if (src->num_classes)
        snprintf(cls, sizeof cls, "%" PRIu64 " classes (from %s)", src->num_classes,
                 src->classes_from);
    fprintf(stderr, "ft-ingest: %s: %" PRIu64 " samples (%s), %s; writing %s%s\n", src->path,
            src->n,
            src->is_folder    ? "image folder"
            : src->has_header ? "insightface header record"
                              : "all .idx keys",
            cls, a->out, a->shuffle ? " in shuffled order" : "");
}

/* Source opened, output absent: write to the temporary directory and publish it. */
static int write_dataset(const ing_source *src, const ing_run_args *a, const char *tmp,
                         const char *out_dir, char *err, size_t errcap) {
    uint64_t *perm = NULL;
    if (a->shuffle) {
        if (!(perm = malloc(src->n * sizeof *perm))) {
            snprintf(err, errcap, "out of memory for a permutation of %" PRIu64, src->n);
            return -ENOMEM;
        }
        ft_permutation(perm, src->n, a->seed, 0);
    }
    ing_writer *w = NULL;
    ing_result res;
    ftdb_meta meta;
    ing_opts o = {tmp, a->shuffle, a->seed, a->skip_bad, a->threads, ING_COMMIT_BYTES};
    int rc = ing_writer_open(&w, tmp, src->map_estimate, ING_COMMIT_BYTES, err, errcap);
    if (rc == 0) rc = ing_pipeline_run(src, &o, perm, w, &res, err, errcap);
    free(perm);
    if (rc == 0 && res.written == 0) {
        snprintf(err, errcap, "%s: no valid samples", src->path);
        rc = FT_EFORMAT;
    }
    if (rc < 0) {
        ing_writer_abort(w);
        return rc;
    }
    fill_meta(src, a, &res, &meta);
    if ((rc = ing_writer_finish(w, &meta, err, errcap)) < 0) return rc;
    if ((rc = publish(tmp, a->out, out_dir, err, errcap)) < 0) return rc;
    print_summary(src, a, &meta, &res);
    return 0;
}

int ing_run(const ing_run_args *a, char *err, size_t errcap) {
    char out_dir[PATH_MAX], base[PATH_MAX], tmp[2 * PATH_MAX + 32];
    split_path(a->out, out_dir, base, sizeof out_dir);
    int rc = check_out(a, err, errcap);
    if (rc < 0) return rc;
    ft_stop_install();
    ing_source src;
    if ((rc = ing_source_open(&src, a->src, a->num_classes, a->skip_bad, err, errcap)) < 0)
        return rc;
    if (src.n == 0) {
        snprintf(err, errcap, "%s: no samples to ingest", a->src);
        ing_source_free(&src);
        return FT_EFORMAT;
    }
    announce(&src, a);
    if ((rc = ft_mkdir_p(out_dir)) < 0) {
        snprintf(err, errcap, "%s: %s", out_dir, ft_strerror(rc));
        ing_source_free(&src);
        return rc;
    }
    remove_stale(out_dir, base);
    snprintf(tmp, sizeof tmp, "%s/%s.tmp.%ld", out_dir, base, (long)getpid());
    if (mkdir(tmp, 0755) != 0) {
        rc = -errno;
        snprintf(err, errcap, "%s: %s", tmp, strerror(errno));
    } else {
        warn_space(out_dir, src.data_estimate);
        rc = write_dataset(&src, a, tmp, out_dir, err, errcap);
        if (rc < 0) ft_rm_rf(tmp);
    }
    ing_source_free(&src);
    return rc;
}
