/* ft_classdir.c: see ft_classdir.h. */
#include "ft_classdir.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ft_common.h"

typedef struct name_list {
    char **v;
    size_t n, cap;
} name_list;

static void names_free(name_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Non-hidden names in dir, sorted. */
static int list_names(const char *dir, name_list *out, char *err, size_t errcap) {
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d) {
        int rc = -errno;
        snprintf(err, errcap, "%s: %s", dir, strerror(errno));
        return rc;
    }
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        if (out->n == out->cap) {
            size_t nc = out->cap ? 2 * out->cap : 64;
            char **nv = realloc(out->v, nc * sizeof *nv);
            if (!nv) {
                rc = -ENOMEM;
                break;
            }
            out->v = nv, out->cap = nc;
        }
        if (!(out->v[out->n] = strdup(de->d_name)))
            rc = -ENOMEM;
        else
            out->n++;
    }
    closedir(d);
    if (rc) {
        snprintf(err, errcap, "%s: out of memory", dir);
        names_free(out);
        return rc;
    }
    if (out->n) qsort(out->v, out->n, sizeof *out->v, cmp_str);
    return 0;
}

/* stat dir/name; errors name the path. */
static int stat_entry(const char *dir, const char *name, struct stat *st, char *err,
                      size_t errcap) {
    char p[8192];
    if (ft_path_join(p, sizeof p, dir, name) != 0) {
        snprintf(err, errcap, "%s/%s: path too long", dir, name);
        return FT_ERANGE;
    }
    if (stat(p, st) != 0) {
        int rc = -errno;
        snprintf(err, errcap, "%s: %s", p, strerror(errno));
        return rc;
    }
    return 0;
}

static int add_sample(ft_classdir *d, const char *cls, const char *file, int32_t label,
                      uint64_t size) {
    size_t need = strlen(cls) + strlen(file) + 2;
    if (d->names_len + need > d->names_cap) {
        size_t nc = d->names_cap ? d->names_cap : 1 << 16;
        while (nc < d->names_len + need) nc *= 2;
        char *np = realloc(d->names, nc);
        if (!np) return -ENOMEM;
        d->names = np, d->names_cap = nc;
    }
    if (d->n == d->cap) {
        uint64_t nc = d->cap ? 2 * d->cap : 1024;
        ft_classdir_entry *ne = realloc(d->e, nc * sizeof *ne);
        if (!ne) return -ENOMEM;
        d->e = ne, d->cap = nc;
    }
    d->e[d->n++] = (ft_classdir_entry){d->names_len, label, size};
    d->names_len += (size_t)snprintf(d->names + d->names_len, need, "%s/%s", cls, file) + 1;
    return 0;
}

static void note(uint64_t *count, char *first, size_t cap, const char *a, const char *b) {
    if ((*count)++ == 0) snprintf(first, cap, "%s%s%s", a, b ? "/" : "", b ? b : "");
}

static int scan_class(ft_classdir *d, const char *root, const char *cls, int32_t label, char *err,
                      size_t errcap) {
    char dir[8192];
    if (ft_path_join(dir, sizeof dir, root, cls) != 0) {
        snprintf(err, errcap, "%s/%s: path too long", root, cls);
        return FT_ERANGE;
    }
    name_list files;
    int rc = list_names(dir, &files, err, errcap);
    uint64_t before = d->n;
    for (size_t i = 0; !rc && i < files.n; i++) {
        struct stat st;
        if ((rc = stat_entry(dir, files.v[i], &st, err, errcap)) != 0) break;
        if (!S_ISREG(st.st_mode)) {
            note(&d->n_other, d->first_other, sizeof d->first_other, cls, files.v[i]);
            continue;
        }
        if ((rc = add_sample(d, cls, files.v[i], label, (uint64_t)st.st_size)) != 0)
            snprintf(err, errcap, "%s: out of memory", dir);
    }
    if (!rc && d->n == before) note(&d->n_empty, d->first_empty, sizeof d->first_empty, cls, NULL);
    names_free(&files);
    return rc;
}

int ft_classdir_scan(const char *root, ft_classdir *d, char *err, size_t errcap) {
    memset(d, 0, sizeof *d);
    name_list top;
    int rc = list_names(root, &top, err, errcap);
    for (size_t i = 0; !rc && i < top.n; i++) {
        struct stat st;
        if ((rc = stat_entry(root, top.v[i], &st, err, errcap)) != 0) break;
        if (!S_ISDIR(st.st_mode)) {
            note(&d->n_loose, d->first_loose, sizeof d->first_loose, top.v[i], NULL);
            continue;
        }
        if (d->n_classes >= INT32_MAX) {
            snprintf(err, errcap, "%s: more than 2^31 - 1 class folders", root);
            rc = FT_ERANGE;
            break;
        }
        rc = scan_class(d, root, top.v[i], (int32_t)d->n_classes++, err, errcap);
    }
    names_free(&top);
    if (rc) ft_classdir_free(d);
    return rc;
}

const char *ft_classdir_path(const ft_classdir *d, uint64_t i) {
    return d->names + d->e[i].name_at;
}

void ft_classdir_warn(const ft_classdir *d, const char *root, const char *prog) {
    if (d->n_loose)
        fprintf(stderr,
                "%s: warning: %s: %" PRIu64 " file%s outside the class folders skipped "
                "(first: %s)\n",
                prog, root, d->n_loose, d->n_loose == 1 ? "" : "s", d->first_loose);
    if (d->n_other)
        fprintf(stderr,
                "%s: warning: %s: %" PRIu64 " entr%s in class folders that are not files "
                "skipped (first: %s)\n",
                prog, root, d->n_other, d->n_other == 1 ? "y" : "ies", d->first_other);
    if (d->n_empty)
        fprintf(stderr,
                "%s: warning: %s: %" PRIu64 " class folder%s without images keep%s a label "
                "(first: %s)\n",
                prog, root, d->n_empty, d->n_empty == 1 ? "" : "s", d->n_empty == 1 ? "s" : "",
                d->first_empty);
}

void ft_classdir_free(ft_classdir *d) {
    free(d->e);
    free(d->names);
    memset(d, 0, sizeof *d);
}
