/* ft_dataset.c: see ft_dataset.h. */
#include "ft_dataset.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ft_common.h"

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int ft_rec_paths(const char *rec, char *idx, size_t idxcap, char *prop, size_t propcap) {
    size_t n = strlen(rec);
    if (!ends_with(rec, ".rec")) return FT_EARG;
    if (idx && (size_t)snprintf(idx, idxcap, "%.*s.idx", (int)(n - 4), rec) >= idxcap)
        return FT_ERANGE;
    if (prop) {
        const char *slash = strrchr(rec, '/');
        int k = slash ? snprintf(prop, propcap, "%.*s/property", (int)(slash - rec), rec)
                      : snprintf(prop, propcap, "property");
        if (k < 0 || (size_t)k >= propcap) return FT_ERANGE;
    }
    return 0;
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && !S_ISDIR(st.st_mode);
}

/* The .rec at `rec` and its .idx must both be there. */
static int rec_pair(const char *rec, char *out, size_t cap, char *err, size_t errcap) {
    char idx[4200];
    int rc = ft_rec_paths(rec, idx, sizeof idx, NULL, 0);
    if (rc == 0 && (size_t)snprintf(out, cap, "%s", rec) >= cap) rc = FT_ERANGE;
    if (rc) {
        snprintf(err, errcap, "%s: path too long", rec);
        return rc;
    }
    struct stat st;
    if (stat(rec, &st) != 0) {
        rc = -errno;
        snprintf(err, errcap, "%s: %s", rec, strerror(errno));
        return rc;
    }
    if (!is_file(idx)) {
        snprintf(err, errcap, "%s: missing (the .rec needs its index to enumerate samples)", idx);
        return -ENOENT;
    }
    return 0;
}

int ft_dataset_resolve(const char *path, ft_dataset_kind *kind, char *out, size_t cap, char *err,
                       size_t errcap) {
    char a[4200];
    struct stat st;
    if (stat(path, &st) != 0) {
        int rc = -errno;
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return rc;
    }
    if (!S_ISDIR(st.st_mode)) {
        *kind = FT_DATASET_REC;
        if (ends_with(path, ".rec")) return rec_pair(path, out, cap, err, errcap);
        snprintf(err, errcap, "%s: not a dataset folder, LMDB directory or .rec file", path);
        return FT_EARG;
    }
    *kind = FT_DATASET_LMDB;
    if (ft_path_join(a, sizeof a, path, "data.mdb") == 0 && is_file(a))
        return (size_t)snprintf(out, cap, "%s", path) < cap ? 0 : FT_ERANGE;
    if (ft_path_join(a, sizeof a, path, "train.lmdb") == 0 && ft_is_dir(a))
        return ft_path_join(out, cap, path, "train.lmdb");
    *kind = FT_DATASET_REC;
    if (ft_path_join(a, sizeof a, path, "train.rec") == 0 && is_file(a))
        return rec_pair(a, out, cap, err, errcap);
    snprintf(err, errcap,
             "%s: no train.lmdb/ and no train.rec there (a dataset folder as ft-synth or the "
             "insightface releases lay out, an LMDB directory or a .rec file)",
             path);
    return -ENOENT;
}

void ft_pixel_norm_table(float lut[256]) {
    for (int v = 0; v < 256; v++) lut[v] = ((float)v / 255.0f - 0.5f) / 0.5f;
}
