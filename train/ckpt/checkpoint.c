/* checkpoint.c: checkpoint files; see checkpoint.h. */
#include "checkpoint.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ft_common.h"

static int ckerr(char *err, size_t cap, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && cap) vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return rc;
}

void ft_ckpt_part_init(ft_ckpt_part *p, const char *file) {
    memset(p, 0, sizeof *p);
    snprintf(p->file, sizeof p->file, "%s", file);
}

void ft_ckpt_part_free(ft_ckpt_part *p) {
    if (!p) return;
    for (int i = 0; i < p->n_owned; i++) free(p->owned[i]);
    for (int i = 0; i < p->n; i++) free((char *)p->t[i].name);
    for (int i = 0; i < p->n_meta; i++) free(p->meta[i]);
    free(p->owned);
    free(p->t);
    memset(p, 0, sizeof *p);
}

static ft_st_tensor *new_tensor(ft_ckpt_part *p, const char *name, size_t bytes, void **buf) {
    if (p->n == p->cap) {
        int nc = p->cap ? p->cap * 2 : 64;
        ft_st_tensor *nt = realloc(p->t, (size_t)nc * sizeof *nt);
        if (!nt) return NULL;
        p->t = nt, p->cap = nc;
        void **no = realloc(p->owned, (size_t)nc * sizeof *no);
        if (!no) return NULL;
        p->owned = no;
    }
    void *b = malloc(bytes ? bytes : 1);
    char *nm = strdup(name);
    if (!b || !nm) {
        free(b), free(nm);
        return NULL;
    }
    p->owned[p->n_owned++] = b;
    ft_st_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->data = b;
    t->nbytes = bytes;
    *buf = b;
    return t;
}

/* The first NaN or infinity of a floating-point tensor's data: 1 with its element index and
 * "nan"/"inf"/"-inf" in what, or 0 (also for integer dtypes). */
static int first_nonfinite(int dtype, const void *data, size_t nbytes, size_t *at,
                           const char **what) {
    const uint8_t *b = data;
    size_t es = ft_st_dtype_size(dtype);
    for (size_t i = 0; es && (i + 1) * es <= nbytes; i++) {
        const uint8_t *e = b + i * es;
        int bad = 0, nan = 0, neg = 0;
        if (dtype == FT_ST_F32) {
            uint32_t u = ft_rd_le32(e);
            bad = (u & 0x7f800000u) == 0x7f800000u, nan = (u & 0x007fffffu) != 0, neg = u >> 31;
        } else if (dtype == FT_ST_F64) {
            uint64_t u = ft_rd_le64(e);
            bad = (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
            nan = (u & 0x000fffffffffffffull) != 0, neg = (int)(u >> 63);
        } else if (dtype == FT_ST_F16 || dtype == FT_ST_BF16) {
            unsigned u = (unsigned)e[0] | (unsigned)e[1] << 8;
            unsigned ex = dtype == FT_ST_F16 ? 0x7c00u : 0x7f80u;
            bad = (u & ex) == ex, nan = (u & (0x7fffu & ~ex)) != 0, neg = (int)(u >> 15);
        } else {
            return 0;
        }
        if (bad) {
            *at = i;
            *what = nan ? "nan" : neg ? "-inf" : "inf";
            return 1;
        }
    }
    return 0;
}

static int st_dtype(int dt) {
    return dt == FT_I64 ? FT_ST_I64 : FT_ST_F32;
}

int ft_ckpt_part_add_source(ft_ckpt_part *p, ft_ckpt_source *src) {
    int n = src->count(src->obj);
    for (int i = 0; i < n; i++) {
        if (src->skip && src->skip(src->obj, i)) continue;
        ft_tensor_info info;
        int rc = src->info(src->obj, i, &info);
        if (rc) return rc;
        void *buf = NULL;
        ft_st_tensor *t = new_tensor(p, info.name, info.numel * ft_dtype_size(info.dtype), &buf);
        if (!t) return -ENOMEM;
        t->dtype = st_dtype(info.dtype);
        t->ndim = info.ndim;
        for (int d = 0; d < info.ndim; d++) t->shape[d] = info.shape[d];
        if ((rc = src->get(src->obj, i, buf))) return rc;
    }
    return 0;
}

int ft_ckpt_part_add_i64(ft_ckpt_part *p, const char *name, int64_t v) {
    void *buf = NULL;
    ft_st_tensor *t = new_tensor(p, name, 8, &buf);
    if (!t) return -ENOMEM;
    t->dtype = FT_ST_I64;
    ft_wr_le64(buf, (uint64_t)v);
    return 0;
}

int ft_ckpt_part_add_f64(ft_ckpt_part *p, const char *name, double v) {
    void *buf = NULL;
    ft_st_tensor *t = new_tensor(p, name, 8, &buf);
    if (!t) return -ENOMEM;
    t->dtype = FT_ST_F64;
    uint64_t u;
    memcpy(&u, &v, 8);
    ft_wr_le64(buf, u);
    return 0;
}

int ft_ckpt_part_add_tensor(ft_ckpt_part *p, const char *name, int st_dtype, int ndim,
                            const int64_t *shape, void **host) {
    if (ndim < 0 || ndim > FT_ST_MAX_DIMS || st_dtype < 0 || st_dtype >= FT_ST_NDTYPES)
        return FT_EARG;
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) return FT_EARG;
        numel *= (size_t)shape[d];
    }
    ft_st_tensor *t = new_tensor(p, name, numel * ft_st_dtype_size(st_dtype), host);
    if (!t) return -ENOMEM;
    t->dtype = st_dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    return 0;
}

int ft_ckpt_part_add_meta(ft_ckpt_part *p, const char *key, const char *value) {
    if (p->n_meta + 2 > (int)(sizeof p->meta / sizeof p->meta[0])) return FT_ERANGE;
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k), free(v);
        return -ENOMEM;
    }
    p->meta[p->n_meta++] = k;
    p->meta[p->n_meta++] = v;
    return 0;
}

/* Never save a poisoned state: a NaN or infinity anywhere refuses the whole save. */
/* The partial gradient sums of an accumulation window may hold inf/NaN legitimately: with fp16
 * loss scaling the window's end skips that step (and in fp32 the run stops there), so they are
 * saved and loaded as they are. */
static int may_be_nonfinite(const char *name) {
    return strncmp(name, FT_CKPT_ACCUM_PREFIX, strlen(FT_CKPT_ACCUM_PREFIX)) == 0;
}

static int check_finite_parts(const ft_ckpt_part *parts, int n, char *err, size_t errcap) {
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < parts[i].n; k++) {
            const ft_st_tensor *t = &parts[i].t[k];
            size_t at;
            const char *v;
            if (!may_be_nonfinite(t->name) &&
                first_nonfinite(t->dtype, t->data, t->nbytes, &at, &v))
                return ckerr(err, errcap, FT_ERANGE,
                             "%s: tensor '%s' holds %s (element %zu): not saved", parts[i].file,
                             t->name, v, at);
        }
    }
    return 0;
}

/* Write parts to dir under their names + suffix (step >= 0: ".pending-<step>"): every
 * temporary first, then the renames in order; on a failure nothing of this call stays. */
static int write_parts(const char *dir, ft_ckpt_part *parts, int n, int64_t step, char *err,
                       size_t errcap) {
    if (n < 1) return ckerr(err, errcap, FT_EARG, "%s: nothing to save", dir);
    int frc = check_finite_parts(parts, n, err, errcap);
    if (frc) return frc;
    char(*tmp)[PATH_MAX] = calloc((size_t)n, sizeof *tmp);
    char(*dst)[PATH_MAX] = calloc((size_t)n, sizeof *dst);
    int rc = (!tmp || !dst) ? -ENOMEM : 0, written = 0, renamed = 0;
    if (rc) ckerr(err, errcap, rc, "out of memory");
    for (int i = 0; i < n && !rc; i++) {
        char name[128];
        if (step >= 0)
            ft_ckpt_pending_name(name, sizeof name, parts[i].file, step);
        else
            snprintf(name, sizeof name, "%s", parts[i].file);
        if (ft_path_join(dst[i], PATH_MAX, dir, name)) {
            rc = ckerr(err, errcap, FT_ERANGE, "%s: path too long", dir);
            break;
        }
        rc = ft_st_write_tmp(dst[i], parts[i].t, parts[i].n, (const char *const *)parts[i].meta,
                             parts[i].n_meta / 2, tmp[i], PATH_MAX, err, errcap);
        if (!rc) written = i + 1;
    }
    if (rc) {
        for (int i = 0; i < written; i++) unlink(tmp[i]);
    } else {
        for (int i = 0; i < n && !rc; i++) {
            rc = ft_st_commit(tmp[i], dst[i], err, errcap);
            if (!rc) renamed = i + 1;
            if (rc)
                for (int k = i + 1; k < n; k++) unlink(tmp[k]);
        }
        /* staged files of a failed stage are nobody's: a final name stays as renamed */
        for (int i = 0; rc && step >= 0 && i < renamed; i++) unlink(dst[i]);
    }
    free(tmp);
    free(dst);
    return rc;
}

int ft_ckpt_write(const char *dir, ft_ckpt_part *parts, int n, char *err, size_t errcap) {
    return write_parts(dir, parts, n, -1, err, errcap);
}

void ft_ckpt_pending_name(char *out, size_t cap, const char *file, int64_t step) {
    snprintf(out, cap, "%s" FT_CKPT_PENDING "%lld", file, (long long)step);
}

int ft_ckpt_parse_pending(const char *name, char *file, size_t cap, int64_t *step) {
    const char *p = strstr(name, FT_CKPT_PENDING);
    if (!p || p == name) return 0;
    for (const char *q; (q = strstr(p + 1, FT_CKPT_PENDING)); p = q) continue;
    const char *d = p + strlen(FT_CKPT_PENDING);
    char *end = NULL;
    errno = 0;
    long long v = strtoll(d, &end, 10);
    if (*d < '0' || *d > '9' || !end || *end || errno || (size_t)(p - name) >= cap) return 0;
    memcpy(file, name, (size_t)(p - name));
    file[p - name] = '\0';
    *step = v;
    return 1;
}

int ft_ckpt_stage(const char *dir, ft_ckpt_part *parts, int n, int64_t step, char *err,
                  size_t errcap) {
    if (step < 0) return ckerr(err, errcap, FT_EARG, "%s: step %lld", dir, (long long)step);
    return write_parts(dir, parts, n, step, err, errcap);
}

int ft_ckpt_promote(const char *dir, const char *file, int64_t step, char *err, size_t errcap) {
    char name[128], from[PATH_MAX], to[PATH_MAX];
    ft_ckpt_pending_name(name, sizeof name, file, step);
    if (ft_path_join(from, sizeof from, dir, name) || ft_path_join(to, sizeof to, dir, file))
        return ckerr(err, errcap, FT_ERANGE, "%s: path too long", dir);
    if (rename(from, to) != 0) {
        int e = errno;
        return ckerr(err, errcap, -e, "%s: cannot rename into place as %s: %s", from, file,
                     strerror(e));
    }
    return 0;
}

int ft_ckpt_unstage(const char *dir, const char *file, int64_t step) {
    char name[128], path[PATH_MAX];
    ft_ckpt_pending_name(name, sizeof name, file, step);
    if (ft_path_join(path, sizeof path, dir, name)) return FT_ERANGE;
    return unlink(path) == 0 || errno == ENOENT ? 0 : -errno;
}

int ft_ckpt_rank_files(char names[3][FT_CKPT_NAME_CAP], int rank, int world) {
    int n = 0;
    if (rank == 0) snprintf(names[n++], FT_CKPT_NAME_CAP, "%s", FT_CKPT_BACKBONE);
    ft_ckpt_pfc_name(names[n++], FT_CKPT_NAME_CAP, rank, world);
    ft_ckpt_state_name(names[n++], FT_CKPT_NAME_CAP, rank);
    return n;
}

void ft_ckpt_pfc_name(char *out, size_t cap, int rank, int world) {
    snprintf(out, cap, "pfc_rank%d_of%d.safetensors", rank, world);
}

void ft_ckpt_state_name(char *out, size_t cap, int rank) {
    snprintf(out, cap, "state_rank%d.safetensors", rank);
}

static void shape_str(char *out, size_t cap, int ndim, const int64_t *shape) {
    size_t len = 0;
    len += (size_t)snprintf(out, cap, "[");
    for (int d = 0; d < ndim && len < cap; d++)
        len += (size_t)snprintf(out + len, cap - len, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (len < cap) snprintf(out + len, cap - len, "]");
}

static int check_one(const ft_st_file *f, const char *what, const ft_tensor_info *info,
                     const ft_st_tensor **out, const char *hint, char *err, size_t errcap) {
    const ft_st_tensor *t = ft_st_find(f, info->name);
    char why[256];
    snprintf(why, sizeof why, "not a checkpoint of this model%s%s%s", hint && hint[0] ? " (" : "",
             hint && hint[0] ? hint : "", hint && hint[0] ? ")" : "");
    if (!t)
        return ckerr(err, errcap, FT_EFORMAT, "%s: tensor '%s' is missing: %s", what, info->name,
                     why);
    int want = st_dtype(info->dtype);
    if (t->dtype != want)
        return ckerr(err, errcap, FT_EFORMAT, "%s: tensor '%s' is %s, expected %s: %s", what,
                     info->name, ft_st_dtype_name(t->dtype), ft_st_dtype_name(want), why);
    int same = t->ndim == info->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == info->shape[d];
    if (!same) {
        char a[128], b[128];
        shape_str(a, sizeof a, t->ndim, t->shape);
        shape_str(b, sizeof b, info->ndim, info->shape);
        return ckerr(err, errcap, FT_EFORMAT,
                     "%s: tensor '%s' has shape %s, this model needs %s: %s", what, info->name, a,
                     b, why);
    }
    *out = t;
    return 0;
}

static int nonfinite_error(const char *what, const char *name, const char *v, size_t at, char *err,
                           size_t errcap) {
    return ckerr(err, errcap, FT_ERANGE,
                 "%s: tensor '%s' holds %s (element %zu): the checkpoint is damaged or was saved "
                 "from a diverged run; not resuming from it",
                 what, name, v, at);
}

int ft_ckpt_load_source(const ft_st_file *f, const char *what, ft_ckpt_source *src, int strict,
                        const char *hint, char *err, size_t errcap) {
    int n = src->count(src->obj);
    const ft_st_tensor **found = calloc((size_t)(n > 0 ? n : 1), sizeof *found);
    if (!found) return -ENOMEM;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (src->skip && src->skip(src->obj, i)) continue;
        ft_tensor_info info;
        if ((rc = src->info(src->obj, i, &info))) break;
        rc = check_one(f, what, &info, &found[i], hint, err, errcap);
    }
    for (int k = 0; strict && !rc && k < f->n; k++) {
        int known = 0;
        for (int i = 0; i < n && !known; i++) known = found[i] == &f->t[k];
        if (!known)
            rc = ckerr(err, errcap, FT_EFORMAT,
                       "%s: tensor '%s' is not part of this model: not a checkpoint of this "
                       "model%s%s%s",
                       what, f->t[k].name, hint && hint[0] ? " (" : "", hint ? hint : "",
                       hint && hint[0] ? ")" : "");
    }
    /* no NaN or infinity in the weights to continue from */
    for (int i = 0; i < n && !rc; i++) {
        size_t at;
        const char *v;
        if (found[i] && first_nonfinite(found[i]->dtype, found[i]->data, found[i]->nbytes, &at, &v))
            rc = nonfinite_error(what, found[i]->name, v, at, err, errcap);
    }
    /* everything matches: copy (aligned copies, the file data may be unaligned) */
    for (int i = 0; i < n && !rc; i++) {
        if (!found[i]) continue;
        void *buf = malloc(found[i]->nbytes ? found[i]->nbytes : 1);
        if (!buf) {
            rc = -ENOMEM;
            break;
        }
        memcpy(buf, found[i]->data, found[i]->nbytes);
        rc = src->set(src->obj, i, buf);
        free(buf);
        if (rc)
            ckerr(err, errcap, rc, "%s: cannot set tensor '%s': %s", what, found[i]->name,
                  ft_strerror(rc));
    }
    free(found);
    return rc;
}

static const ft_st_tensor *scalar(const ft_st_file *f, const char *name, int dtype) {
    const ft_st_tensor *t = ft_st_find(f, name);
    return t && t->dtype == dtype && ft_st_numel(t) == 1 ? t : NULL;
}

int ft_ckpt_get_i64(const ft_st_file *f, const char *what, const char *name, int64_t *v, char *err,
                    size_t errcap) {
    const ft_st_tensor *t = scalar(f, name, FT_ST_I64);
    if (!t) return ckerr(err, errcap, FT_EFORMAT, "%s: no I64 scalar '%s'", what, name);
    *v = (int64_t)ft_rd_le64(t->data);
    return 0;
}

int ft_ckpt_get_f64(const ft_st_file *f, const char *what, const char *name, double *v, char *err,
                    size_t errcap) {
    const ft_st_tensor *t = scalar(f, name, FT_ST_F64);
    if (!t) return ckerr(err, errcap, FT_EFORMAT, "%s: no F64 scalar '%s'", what, name);
    uint64_t u = ft_rd_le64(t->data);
    memcpy(v, &u, 8);
    return 0;
}

int ft_ckpt_get_tensor(const ft_st_file *f, const char *what, const char *name, int st_dtype,
                       int ndim, const int64_t *shape, void *host, size_t bytes, char *err,
                       size_t errcap) {
    const ft_st_tensor *t = ft_st_find(f, name);
    if (!t) return ckerr(err, errcap, FT_EFORMAT, "%s: tensor '%s' is missing", what, name);
    if (t->dtype != st_dtype)
        return ckerr(err, errcap, FT_EFORMAT, "%s: tensor '%s' is %s, expected %s", what, name,
                     ft_st_dtype_name(t->dtype), ft_st_dtype_name(st_dtype));
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same || t->nbytes != bytes) {
        char a[128], b[128];
        shape_str(a, sizeof a, t->ndim, t->shape);
        shape_str(b, sizeof b, ndim, shape);
        return ckerr(err, errcap, FT_EFORMAT, "%s: tensor '%s' has shape %s, this run needs %s",
                     what, name, a, b);
    }
    size_t at;
    const char *v;
    if (!may_be_nonfinite(name) && first_nonfinite(t->dtype, t->data, t->nbytes, &at, &v))
        return nonfinite_error(what, name, v, at, err, errcap);
    memcpy(host, t->data, bytes);
    return 0;
}

int ft_ckpt_schema(const ft_st_file *f, const char *what, int *schema, char *err, size_t errcap) {
    const char *v = ft_st_meta(f, "schema");
    if (!v) { /* written before the key existed */
        *schema = ft_st_find(f, "model.dropout_rng_state") ? 2 : 1;
        return 0;
    }
    char *end;
    long s = strtol(v, &end, 10);
    if (end == v || *end || s < 1) {
        snprintf(err, errcap, "%s: metadata 'schema' is '%s', not a version number", what, v);
        return FT_EFORMAT;
    }
    if (s > FT_CKPT_SCHEMA) {
        snprintf(err, errcap,
                 "%s: checkpoint schema %ld is newer than this build reads (%d): resume with the "
                 "facetrain version that wrote it or a newer one",
                 what, s, FT_CKPT_SCHEMA);
        return FT_EVERSION;
    }
    *schema = (int)s;
    return 0;
}
