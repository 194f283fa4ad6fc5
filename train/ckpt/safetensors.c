/* safetensors.c: safetensors writer and strict reader; see safetensors.h. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "ft_common.h"

#define ST_MAX_HEADER (100u << 20) /* the reference implementation's limit */

static const struct {
    const char *name;
    size_t size;
} DTYPES[FT_ST_NDTYPES] = {
    [FT_ST_BOOL] = {"BOOL", 1}, [FT_ST_U8] = {"U8", 1},   [FT_ST_I8] = {"I8", 1},
    [FT_ST_I16] = {"I16", 2},   [FT_ST_U16] = {"U16", 2}, [FT_ST_F16] = {"F16", 2},
    [FT_ST_BF16] = {"BF16", 2}, [FT_ST_I32] = {"I32", 4}, [FT_ST_U32] = {"U32", 4},
    [FT_ST_F32] = {"F32", 4},   [FT_ST_F64] = {"F64", 8}, [FT_ST_I64] = {"I64", 8},
    [FT_ST_U64] = {"U64", 8},
};

const char *ft_st_dtype_name(int dtype) {
    return dtype >= 0 && dtype < FT_ST_NDTYPES ? DTYPES[dtype].name : "?";
}
size_t ft_st_dtype_size(int dtype) {
    return dtype >= 0 && dtype < FT_ST_NDTYPES ? DTYPES[dtype].size : 0;
}

size_t ft_st_numel(const ft_st_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

static int sterr(char *err, size_t cap, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && cap) vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return rc;
}

/* ------------------------------------------------------------------ writing */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 1024;
        while (nc < b->len + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np, b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}
static void sb_str(sbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}
/* The header is printed here rather than with cJSON, whose printer escapes \b and \f in
 * short form and writes integers from 1e15 on in exponent form: the bytes written stay
 * exactly those of earlier facetrain versions. */
static void sb_json_str(sbuf *b, const char *s) {
    sb_str(b, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char e[8];
        if (*c == '"' || *c == '\\') {
            e[0] = '\\', e[1] = (char)*c, e[2] = '\0';
        } else if (*c == '\n') {
            strcpy(e, "\\n");
        } else if (*c == '\t') {
            strcpy(e, "\\t");
        } else if (*c == '\r') {
            strcpy(e, "\\r");
        } else if (*c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", *c);
        } else {
            e[0] = (char)*c, e[1] = '\0';
        }
        sb_str(b, e);
    }
    sb_str(b, "\"");
}

static const ft_st_tensor *g_sort_base;
static int cmp_layout(const void *a, const void *b) {
    const ft_st_tensor *x = &g_sort_base[*(const int *)a], *y = &g_sort_base[*(const int *)b];
    if (x->dtype != y->dtype) return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int build_header(const ft_st_tensor *t, int n, const int *order, const char *const *meta,
                        int n_meta, sbuf *b) {
    sb_str(b, "{");
    if (n_meta > 0) {
        sb_str(b, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_str(b, ",");
            sb_json_str(b, meta[2 * i]);
            sb_str(b, ":");
            sb_json_str(b, meta[2 * i + 1]);
        }
        sb_str(b, "}");
    }
    uint64_t off = 0;
    for (int k = 0; k < n; k++) {
        const ft_st_tensor *x = &t[order[k]];
        char num[64];
        if (k || n_meta > 0) sb_str(b, ",");
        sb_json_str(b, x->name);
        sb_str(b, ":{\"dtype\":\"");
        sb_str(b, ft_st_dtype_name(x->dtype));
        sb_str(b, "\",\"shape\":[");
        for (int d = 0; d < x->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)x->shape[d]);
            sb_str(b, num);
        }
        uint64_t bytes = (uint64_t)ft_st_numel(x) * ft_st_dtype_size(x->dtype);
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + bytes));
        sb_str(b, num);
        off += bytes;
    }
    sb_str(b, "}");
    while (b->len % 8) sb_str(b, " ");
    return b->oom ? -ENOMEM : 0;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        c += w, n -= (size_t)w;
    }
    return 0;
}

static int check_tensors(const ft_st_tensor *t, int n, char *err, size_t errcap, const char *path) {
    for (int i = 0; i < n; i++) {
        if (!t[i].name || !t[i].name[0] || t[i].dtype < 0 || t[i].dtype >= FT_ST_NDTYPES ||
            t[i].ndim < 0 || t[i].ndim > FT_ST_MAX_DIMS || !strcmp(t[i].name, "__metadata__"))
            return sterr(err, errcap, FT_EARG, "%s: bad tensor %d", path, i);
        for (int d = 0; d < t[i].ndim; d++)
            if (t[i].shape[d] < 0)
                return sterr(err, errcap, FT_EARG, "%s: %s: negative dimension", path, t[i].name);
        size_t want = ft_st_numel(&t[i]) * ft_st_dtype_size(t[i].dtype);
        if (t[i].nbytes && t[i].nbytes != want)
            return sterr(err, errcap, FT_EARG, "%s: %s: %zu bytes given, shape needs %zu", path,
                         t[i].name, t[i].nbytes, want);
        if (want && !t[i].data)
            return sterr(err, errcap, FT_EARG, "%s: %s: no data", path, t[i].name);
        for (int j = 0; j < i; j++)
            if (!strcmp(t[i].name, t[j].name))
                return sterr(err, errcap, FT_EARG, "%s: tensor name '%s' used twice", path,
                             t[i].name);
    }
    return 0;
}

static int dir_of(const char *path, char *out, size_t cap) {
    const char *s = strrchr(path, '/');
    int n = s ? snprintf(out, cap, "%.*s", (int)(s - path) ? (int)(s - path) : 1, path)
              : snprintf(out, cap, ".");
    return n < 0 || (size_t)n >= cap ? FT_ERANGE : 0;
}

int ft_st_write_tmp(const char *path, const ft_st_tensor *t, int n, const char *const *meta,
                    int n_meta, char *tmp, size_t tmpcap, char *err, size_t errcap) {
    int rc = check_tensors(t, n, err, errcap, path);
    if (rc) return rc;
    int *order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
    if (!order) return sterr(err, errcap, -ENOMEM, "%s: out of memory", path);
    for (int i = 0; i < n; i++) order[i] = i;
    g_sort_base = t;
    qsort(order, (size_t)n, sizeof *order, cmp_layout);
    sbuf hb = {0};
    rc = build_header(t, n, order, meta, n_meta, &hb);
    int fd = -1;
    if (rc) {
        sterr(err, errcap, rc, "%s: out of memory", path);
        goto done;
    }
    int len = snprintf(tmp, tmpcap, "%s.tmp.%ld", path, (long)getpid());
    if (len < 0 || (size_t)len >= tmpcap) {
        rc = sterr(err, errcap, FT_ERANGE, "%s: path too long", path);
        goto done;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = sterr(err, errcap, -errno, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    uint8_t len8[8];
    ft_wr_le64(len8, hb.len);
    rc = write_all(fd, len8, 8);
    if (!rc) rc = write_all(fd, hb.p, hb.len);
    for (int k = 0; k < n && !rc; k++)
        rc = write_all(fd, t[order[k]].data,
                       ft_st_numel(&t[order[k]]) * ft_st_dtype_size(t[order[k]].dtype));
    if (!rc && fsync(fd) != 0) rc = -errno;
    if (close(fd) != 0 && !rc) rc = -errno;
    if (rc) {
        sterr(err, errcap, rc, "%s: write failed: %s", tmp, ft_strerror(rc));
        unlink(tmp);
    }
done:
    free(hb.p);
    free(order);
    return rc;
}

int ft_st_commit(const char *tmp, const char *path, char *err, size_t errcap) {
    char dir[PATH_MAX];
    if (rename(tmp, path) != 0) {
        int rc = -errno;
        sterr(err, errcap, rc, "%s: cannot rename into place: %s", path, strerror(errno));
        unlink(tmp);
        return rc;
    }
    if (!dir_of(path, dir, sizeof dir)) ft_fsync_path(dir);
    return 0;
}

int ft_st_write(const char *path, const ft_st_tensor *t, int n, const char *const *meta, int n_meta,
                char *err, size_t errcap) {
    char tmp[PATH_MAX];
    int rc = ft_st_write_tmp(path, t, n, meta, n_meta, tmp, sizeof tmp, err, errcap);
    return rc ? rc : ft_st_commit(tmp, path, err, errcap);
}

/* ------------------------------------------------------------------ reading */

/* The header is parsed by cJSON; the checks below add what the format requires on top of it. */

static int herr(char *err, size_t cap, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int herr(char *err, size_t cap, const char *path, const char *fmt, ...) {
    char m[FT_ST_ERRCAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    return sterr(err, cap, FT_EFORMAT, "%s: header: %s", path, m);
}

/* What cJSON accepts beyond strict JSON is refused before it runs: control bytes between
 * tokens other than JSON whitespace (cJSON skips every byte <= ' '), raw control characters
 * inside strings, and \u0000 (cJSON would silently cut the string short there). */
static int lex_check(const char *h, size_t n, const char *path, char *err, size_t errcap) {
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (in_str && c == '\\') {
            if (i + 5 < n && !memcmp(h + i + 1, "u0000", 5))
                return herr(err, errcap, path, "NUL in string at byte %zu", i + 8);
            i++;
        } else if (c == '"') {
            in_str = !in_str;
        } else if (c < 0x20 && (in_str || (c != '\t' && c != '\n' && c != '\r'))) {
            return herr(err, errcap, path, "control character %s at byte %zu",
                        in_str ? "in string" : "outside a string", i + 8);
        }
    }
    return 0;
}

/* An integer in [0, 2^53). cJSON keeps numbers as double, which holds each of those exactly;
 * from 2^53 on, neighbouring integers share a double, so a larger value may have been rounded
 * and is refused, as are fractions and -0. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d < 9007199254740992.0) || signbit(d) || d != (double)(uint64_t)d) return -1;
    *out = (uint64_t)d;
    return 0;
}

/* Past JSON whitespace (the padding after the closing '}'). */
static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static int dtype_of(const char *s) {
    for (int d = 0; d < FT_ST_NDTYPES; d++)
        if (!strcmp(DTYPES[d].name, s)) return d;
    return -1;
}

typedef struct tent {
    ft_st_tensor t;
    uint64_t off[2];
} tent;

/* {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}: each field once, in any order */
static int parse_info(const cJSON *o, tent *e, const char *path, char *err, size_t errcap) {
    const char *tn = e->t.name;
    if (!cJSON_IsObject(o)) return herr(err, errcap, path, "tensor '%s': not an object", tn);
    int seen = 0;
    e->t.dtype = -1;
    for (const cJSON *f = o->child; f; f = f->next) {
        int bit = !strcmp(f->string, "dtype")          ? 1
                  : !strcmp(f->string, "shape")        ? 2
                  : !strcmp(f->string, "data_offsets") ? 4
                                                       : 0;
        if (!bit)
            return herr(err, errcap, path, "tensor '%s': unknown field '%.40s'", tn, f->string);
        if (seen & bit)
            return herr(err, errcap, path, "tensor '%s': field '%s' appears twice", tn, f->string);
        seen |= bit;
        if (bit == 1) {
            if (!cJSON_IsString(f))
                return herr(err, errcap, path, "tensor '%s': dtype is not a string", tn);
            if ((e->t.dtype = dtype_of(f->valuestring)) < 0)
                return herr(err, errcap, path, "tensor '%s': unknown dtype '%.20s'", tn,
                            f->valuestring);
            continue;
        }
        uint64_t v[FT_ST_MAX_DIMS];
        int cap = bit == 2 ? FT_ST_MAX_DIMS : 2, k = 0;
        if (!cJSON_IsArray(f))
            return herr(err, errcap, path, "tensor '%s': %s is not an array", tn, f->string);
        for (const cJSON *x = f->child; x; x = x->next, k++) {
            if (k == cap)
                return herr(err, errcap, path, "tensor '%s': %s has more than %d entries", tn,
                            f->string, cap);
            if (json_uint(x, &v[k]))
                return herr(err, errcap, path, "tensor '%s': %s: expected an integer in [0, 2^53)",
                            tn, f->string);
        }
        if (bit == 4) {
            if (k != 2)
                return herr(err, errcap, path, "tensor '%s': data_offsets must have 2 entries", tn);
            e->off[0] = v[0], e->off[1] = v[1];
        } else {
            e->t.ndim = k;
            for (int d = 0; d < k; d++) e->t.shape[d] = (int64_t)v[d];
        }
    }
    if (seen != 7)
        return herr(err, errcap, path, "tensor '%s': entry lacks dtype, shape or data_offsets", tn);
    return 0;
}

/* {"key": "value", ...}: values strings, keys unique */
static int parse_meta(const cJSON *m, ft_st_file *f, const char *path, char *err, size_t errcap) {
    if (!cJSON_IsObject(m)) return herr(err, errcap, path, "__metadata__ is not an object");
    int cnt = cJSON_GetArraySize(m);
    if (cnt > 0 && !(f->meta = calloc((size_t)cnt * 2, sizeof *f->meta))) return -ENOMEM;
    for (const cJSON *kv = m->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return herr(err, errcap, path, "__metadata__: value of '%s' is not a string",
                        kv->string);
        for (int i = 0; i < f->n_meta; i++)
            if (!strcmp(f->meta[2 * i], kv->string))
                return herr(err, errcap, path, "__metadata__: key '%s' appears twice", kv->string);
        char **slot = &f->meta[2 * f->n_meta++];
        slot[0] = strdup(kv->string), slot[1] = strdup(kv->valuestring);
        if (!slot[0] || !slot[1]) return -ENOMEM;
    }
    return 0;
}

static int cmp_off(const void *a, const void *b) {
    const tent *x = a, *y = b;
    return x->off[0] < y->off[0]   ? -1
           : x->off[0] > y->off[0] ? 1
                                   : (x->off[1] > y->off[1]) - (x->off[1] < y->off[1]);
}

/* Element count times size, or UINT64_MAX on overflow. */
static uint64_t bytes_of(const ft_st_tensor *t) {
    uint64_t n = ft_st_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++) {
        uint64_t s = (uint64_t)t->shape[d];
        if (s && n > UINT64_MAX / s) return UINT64_MAX;
        n *= s;
    }
    return n;
}

static int check_layout(tent *e, int n, uint64_t data_len, const char *name, char *err,
                        size_t errcap) {
    if (n > 1) qsort(e, (size_t)n, sizeof *e, cmp_off);
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        if (e[i].off[1] < e[i].off[0])
            return sterr(err, errcap, FT_EFORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] "
                         "are reversed",
                         name, e[i].t.name, (unsigned long long)e[i].off[0],
                         (unsigned long long)e[i].off[1]);
        uint64_t want = bytes_of(&e[i].t);
        if (want != e[i].off[1] - e[i].off[0])
            return sterr(err, errcap, FT_EFORMAT,
                         "%s: tensor '%s': shape needs %llu bytes of %s "
                         "but data_offsets span %llu",
                         name, e[i].t.name, (unsigned long long)want,
                         ft_st_dtype_name(e[i].t.dtype),
                         (unsigned long long)(e[i].off[1] - e[i].off[0]));
        if (e[i].off[0] != pos)
            return sterr(err, errcap, FT_EFORMAT,
                         "%s: tensor '%s': data starts at %llu, expected "
                         "%llu (offsets must be contiguous)",
                         name, e[i].t.name, (unsigned long long)e[i].off[0],
                         (unsigned long long)pos);
        pos = e[i].off[1];
        for (int k = 0; k < i; k++)
            if (!strcmp(e[k].t.name, e[i].t.name))
                return sterr(err, errcap, FT_EFORMAT, "%s: tensor '%s' appears twice", name,
                             e[i].t.name);
    }
    if (pos != data_len)
        return sterr(err, errcap, pos > data_len ? FT_ETRUNC : FT_EFORMAT,
                     "%s: tensors need %llu data bytes but the file holds %llu%s", name,
                     (unsigned long long)pos, (unsigned long long)data_len,
                     pos > data_len ? " (truncated file)" : "");
    return 0;
}

/* The top-level object: "__metadata__" at most once, every other member a tensor entry
 * (*ents gets one slot per member; names are freed by the caller, also on error). */
static int parse_root(const cJSON *root, ft_st_file *f, tent **ents, int *n, const char *path,
                      char *err, size_t errcap) {
    int cnt = cJSON_GetArraySize(root), rc;
    if (cnt > 0 && !(*ents = calloc((size_t)cnt, sizeof **ents))) return -ENOMEM;
    const cJSON *meta = NULL;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (!strcmp(it->string, "__metadata__")) {
            if (meta) return herr(err, errcap, path, "__metadata__ appears twice");
            meta = it;
            if ((rc = parse_meta(it, f, path, err, errcap))) return rc;
            continue;
        }
        tent *e = &(*ents)[(*n)++];
        if (!(e->t.name = strdup(it->string))) return -ENOMEM;
        if ((rc = parse_info(it, e, path, err, errcap))) return rc;
    }
    return 0;
}

int ft_st_parse(void *buf, size_t size, const char *name, ft_st_file *out, char *err,
                size_t errcap) {
    memset(out, 0, sizeof *out);
    out->buf = buf, out->size = size;
    if (size < 8) {
        ft_st_free(out);
        return sterr(err, errcap, FT_ETRUNC, "%s: %zu bytes, too short for a safetensors file",
                     name, size);
    }
    uint64_t hl = ft_rd_le64(buf);
    if (hl > ST_MAX_HEADER || hl > size - 8) {
        ft_st_free(out);
        return sterr(err, errcap, hl > ST_MAX_HEADER ? FT_EFORMAT : FT_ETRUNC,
                     "%s: header length %llu does not fit the file (%zu bytes)%s", name,
                     (unsigned long long)hl, size,
                     hl > ST_MAX_HEADER ? " (not a safetensors file?)" : " (truncated file)");
    }
    const char *h = (const char *)buf + 8;
    if (hl == 0 || h[0] != '{') {
        ft_st_free(out);
        return sterr(err, errcap, FT_EFORMAT,
                     "%s: header does not start with '{' (not a "
                     "safetensors file?)",
                     name);
    }
    tent *ents = NULL;
    int n = 0;
    int rc = lex_check(h, hl, name, err, errcap);
    if (!rc) {
        const char *end = NULL;
        cJSON *root = cJSON_ParseWithLengthOpts(h, hl, &end, 0);
        if (!root)
            rc = herr(err, errcap, name, "malformed JSON at byte %ld",
                      (long)((end ? end : h) - h) + 8);
        else if (end = skip_ws(end, h + hl), end != h + hl)
            rc = herr(err, errcap, name, "text after the closing '}' at byte %ld",
                      (long)(end - h) + 8);
        else
            rc = parse_root(root, out, &ents, &n, name, err, errcap);
        cJSON_Delete(root);
    }
    if (!rc) rc = check_layout(ents, n, size - 8 - hl, name, err, errcap);
    if (rc == -ENOMEM) sterr(err, errcap, rc, "%s: out of memory", name);
    if (!rc && n > 0 && !(out->t = malloc((size_t)n * sizeof *out->t))) rc = -ENOMEM;
    out->n = rc ? 0 : n;
    for (int i = 0; i < n; i++) {
        if (rc) {
            free((char *)ents[i].t.name);
            continue;
        }
        out->t[i] = ents[i].t;
        out->t[i].data = (const char *)buf + 8 + hl + ents[i].off[0];
        out->t[i].nbytes = (size_t)(ents[i].off[1] - ents[i].off[0]);
    }
    free(ents);
    if (rc) ft_st_free(out);
    return rc;
}

int ft_st_read(const char *path, ft_st_file *out, char *err, size_t errcap) {
    memset(out, 0, sizeof *out);
    char *data = NULL;
    size_t len = 0;
    int rc = ft_read_file(path, &data, &len);
    if (rc) return sterr(err, errcap, rc, "%s: cannot read: %s", path, ft_strerror(rc));
    return ft_st_parse(data, len, path, out, err, errcap);
}

void ft_st_free(ft_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free((char *)f->t[i].name);
    for (int i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->t);
    free(f->meta);
    free(f->buf);
    memset(f, 0, sizeof *f);
}

const ft_st_tensor *ft_st_find(const ft_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

const char *ft_st_meta(const ft_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[2 * i], key)) return f->meta[2 * i + 1];
    return NULL;
}
