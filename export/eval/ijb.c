/* ijb.c: IJB-C / IJB-B meta files, pooling, scores and the ROC table; see eval.h. The
 * feature extraction (decode, align, embed) is features.c. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eval.h"

const double ft_ijb_fars[FT_IJB_NFAR] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1};

void ft_ijb_meta_path(const ft_ijb_meta *m, const char *what, char *out, size_t cap) {
    snprintf(out, cap, "%s/meta/%s_%s.txt", m->root, m->tag, what);
}

static int fail(char *err, size_t errcap, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errcap, fmt, ap);
    va_end(ap);
    return rc;
}

/* ------------------------------------------------------------------ line splitting */

typedef struct lines {
    char *buf; /* the file, NUL-terminated, cut in place */
    char *pos;
    int64_t no; /* 1-based number of the line last returned */
} lines;

static int lines_open(lines *l, const char *path, char *err, size_t errcap) {
    size_t len;
    memset(l, 0, sizeof *l);
    int rc = ft_read_file(path, &l->buf, &len);
    if (rc) return fail(err, errcap, rc, "%s: cannot read: %s", path, ft_strerror(rc));
    if (strlen(l->buf) != len) {
        free(l->buf), l->buf = NULL;
        return fail(err, errcap, FT_EFORMAT, "%s: not a text file (NUL byte)", path);
    }
    l->pos = l->buf;
    return 0;
}

/* Next non-blank line with surrounding whitespace (\r included) removed, cut into at most cap
 * fields at single spaces; returns the field count (an empty field counts), -1 at the end. */
static int lines_next(lines *l, char **f, int cap) {
    char *s;
    do { /* blank lines are skipped (pandas does; they would carry no image or pair) */
        if (!l->pos || !*l->pos) return -1;
        s = l->pos;
        char *e = strchr(s, '\n');
        if (e) {
            *e = 0;
            l->pos = e + 1;
        } else {
            l->pos = s + strlen(s);
        }
        l->no++;
        size_t n = strlen(s);
        while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
        while (*s == ' ' || *s == '\t') s++; /* str.strip() of the reference */
    } while (!*s);
    int k = 0;
    for (;;) {
        char *sp = strchr(s, ' ');
        if (k < cap) f[k] = s;
        k++;
        if (!sp) break;
        *sp = 0;
        s = sp + 1;
    }
    return k;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int64_t find_template(const ft_ijb_meta *m, int64_t id) {
    int64_t lo = 0, hi = m->n_templates;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (m->templates[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < m->n_templates && m->templates[lo] == id ? lo : -1;
}

/* ------------------------------------------------------------------ meta files */

static int grow(void **p, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 0;
    int64_t c = *cap ? *cap * 2 : 1024;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return -ENOMEM;
    *p = q, *cap = c;
    return 0;
}

static int load_5pts(ft_ijb_meta *m, char *err, size_t errcap) {
    char path[1200];
    ft_ijb_meta_path(m, "name_5pts_score", path, sizeof path);
    lines l;
    int rc = lines_open(&l, path, err, errcap), k;
    if (rc) return rc;
    m->blob = l.buf;
    int64_t cap = 0, cap_l = 0, cap_f = 0, cap_n = 0;
    char *f[13];
    while ((k = lines_next(&l, f, 13)) >= 0) {
        if (k != 12)
            return fail(err, errcap, FT_EFORMAT,
                        "%s: line %lld: %d fields, expected 12 (name, 10 landmark coordinates, "
                        "detector score) separated by single spaces",
                        path, (long long)l.no, k);
        if (!*f[0] || f[0][0] == '/' || strstr(f[0], ".."))
            return fail(err, errcap, FT_EFORMAT,
                        "%s: line %lld: image name '%s' is not a file name inside loose_crop/",
                        path, (long long)l.no, f[0]);
        int64_t i = m->n_img;
        if ((rc = grow((void **)&m->names, &cap, i + 1, sizeof *m->names)) ||
            (rc = grow((void **)&m->lmk, &cap_l, i + 1, sizeof *m->lmk)) ||
            (rc = grow((void **)&m->faceness, &cap_f, i + 1, sizeof *m->faceness)) ||
            (rc = grow((void **)&m->line, &cap_n, i + 1, sizeof *m->line)))
            return fail(err, errcap, rc, "%s: out of memory", path);
        m->names[i] = f[0];
        m->line[i] = l.no;
        for (int j = 0; j < 11; j++) {
            double v;
            if ((rc = ft_parse_double(f[1 + j], -1e30, 1e30, &v)))
                return fail(err, errcap, FT_EFORMAT, "%s: line %lld: field %d '%s' is not a %s",
                            path, (long long)l.no, j + 2, f[1 + j],
                            j < 10 ? "landmark coordinate" : "detector score");
            if (j < 10)
                m->lmk[i][j / 2][j % 2] = (float)v;
            else
                m->faceness[i] = (float)v;
        }
        m->n_img++;
    }
    if (m->n_img == 0) return fail(err, errcap, FT_EFORMAT, "%s: no images listed", path);
    return 0;
}

static int load_tid_mid(ft_ijb_meta *m, char *err, size_t errcap) {
    char path[1200];
    ft_ijb_meta_path(m, "face_tid_mid", path, sizeof path);
    lines l;
    int rc = lines_open(&l, path, err, errcap), k;
    if (rc) return rc;
    m->tid = malloc((size_t)m->n_img * sizeof *m->tid);
    m->mid = malloc((size_t)m->n_img * sizeof *m->mid);
    if (!m->tid || !m->mid) {
        free(l.buf);
        return fail(err, errcap, -ENOMEM, "%s: out of memory", path);
    }
    int64_t i = 0;
    char *f[4];
    while ((k = lines_next(&l, f, 4)) >= 0) {
        if (i >= m->n_img) {
            rc = fail(err, errcap, FT_EFORMAT,
                      "%s: line %lld: more lines than the %lld images of "
                      "%s_name_5pts_score.txt",
                      path, (long long)l.no, (long long)m->n_img, m->tag);
            break;
        }
        if (k != 3) {
            rc = fail(err, errcap, FT_EFORMAT,
                      "%s: line %lld: %d fields, expected 3 (name, template id, media id) "
                      "separated by single spaces",
                      path, (long long)l.no, k);
            break;
        }
        if (strcmp(f[0], m->names[i]) != 0) {
            rc = fail(err, errcap, FT_EFORMAT,
                      "%s: line %lld: image '%s', but line %lld of %s_name_5pts_score.txt is "
                      "'%s' (the files must list the images in the same order)",
                      path, (long long)l.no, f[0], (long long)m->line[i], m->tag, m->names[i]);
            break;
        }
        if (ft_parse_i64(f[1], 0, INT64_MAX, &m->tid[i]) ||
            ft_parse_i64(f[2], 0, INT64_MAX, &m->mid[i])) {
            rc = fail(err, errcap, FT_EFORMAT,
                      "%s: line %lld: template id '%s' or media id '%s' is not a whole number "
                      ">= 0",
                      path, (long long)l.no, f[1], f[2]);
            break;
        }
        i++;
    }
    free(l.buf);
    if (!rc && i < m->n_img)
        rc = fail(err, errcap, FT_EFORMAT,
                  "%s: %lld lines, but %s_name_5pts_score.txt lists "
                  "%lld images",
                  path, (long long)i, m->tag, (long long)m->n_img);
    if (rc) return rc;
    m->templates = malloc((size_t)m->n_img * sizeof *m->templates);
    if (!m->templates) return fail(err, errcap, -ENOMEM, "%s: out of memory", path);
    memcpy(m->templates, m->tid, (size_t)m->n_img * sizeof *m->tid);
    qsort(m->templates, (size_t)m->n_img, sizeof *m->templates, cmp_i64);
    int64_t u = 0;
    for (int64_t j = 0; j < m->n_img; j++)
        if (u == 0 || m->templates[u - 1] != m->templates[j]) m->templates[u++] = m->templates[j];
    m->n_templates = u;
    if (u > INT32_MAX) return fail(err, errcap, FT_ERANGE, "%s: too many templates", path);
    return 0;
}

static int load_pairs(ft_ijb_meta *m, char *err, size_t errcap) {
    char path[1200];
    ft_ijb_meta_path(m, "template_pair_label", path, sizeof path);
    lines l;
    int rc = lines_open(&l, path, err, errcap), k;
    if (rc) return rc;
    int64_t c1 = 0, c2 = 0, c3 = 0;
    char *f[4];
    while ((k = lines_next(&l, f, 4)) >= 0) {
        int64_t a, b, lab, i = m->n_pairs;
        if (k != 3) {
            rc = fail(err, errcap, FT_EFORMAT,
                      "%s: line %lld: %d fields, expected 3 (template id, template id, label) "
                      "separated by single spaces",
                      path, (long long)l.no, k);
            break;
        }
        if (ft_parse_i64(f[0], 0, INT64_MAX, &a) || ft_parse_i64(f[1], 0, INT64_MAX, &b) ||
            ft_parse_i64(f[2], 0, 1, &lab)) {
            rc = fail(err, errcap, FT_EFORMAT,
                      "%s: line %lld: expected two template ids and a label 0 or 1, got "
                      "'%s %s %s'",
                      path, (long long)l.no, f[0], f[1], f[2]);
            break;
        }
        int64_t ia = find_template(m, a), ib = find_template(m, b);
        if (ia < 0 || ib < 0) {
            rc = fail(err, errcap, FT_EFORMAT,
                      "%s: line %lld: template %lld has no images in %s_face_tid_mid.txt", path,
                      (long long)l.no, (long long)(ia < 0 ? a : b), m->tag);
            break;
        }
        if ((rc = grow((void **)&m->p1, &c1, i + 1, sizeof *m->p1)) ||
            (rc = grow((void **)&m->p2, &c2, i + 1, sizeof *m->p2)) ||
            (rc = grow((void **)&m->label, &c3, i + 1, sizeof *m->label))) {
            rc = fail(err, errcap, rc, "%s: out of memory", path);
            break;
        }
        m->p1[i] = (int32_t)ia, m->p2[i] = (int32_t)ib, m->label[i] = (uint8_t)lab;
        m->n_genuine += lab;
        m->n_pairs++;
    }
    free(l.buf);
    if (rc) return rc;
    if (m->n_pairs == 0) return fail(err, errcap, FT_EFORMAT, "%s: no pairs listed", path);
    if (m->n_genuine == 0 || m->n_genuine == m->n_pairs)
        return fail(err, errcap, FT_EFORMAT,
                    "%s: %lld pairs, all %s: the ROC needs genuine and impostor pairs", path,
                    (long long)m->n_pairs, m->n_genuine ? "genuine" : "impostor");
    return 0;
}

int ft_ijb_meta_load(ft_ijb_meta *m, const char *root, const char *target, char *err,
                     size_t errcap) {
    memset(m, 0, sizeof *m);
    if (!strcasecmp(target, "IJBC"))
        strcpy(m->tag, "ijbc");
    else if (!strcasecmp(target, "IJBB"))
        strcpy(m->tag, "ijbb");
    else
        return fail(err, errcap, FT_EARG, "target '%s': expected IJBC or IJBB", target);
    if (strlen(root) >= sizeof m->root)
        return fail(err, errcap, FT_ERANGE, "%s: path too long", root);
    strcpy(m->root, root);
    int rc = load_5pts(m, err, errcap);
    if (!rc) rc = load_tid_mid(m, err, errcap);
    if (!rc) rc = load_pairs(m, err, errcap);
    if (rc) ft_ijb_meta_free(m);
    return rc;
}

void ft_ijb_meta_free(ft_ijb_meta *m) {
    if (!m) return;
    free(m->names), free(m->lmk), free(m->faceness), free(m->line), free(m->tid), free(m->mid);
    free(m->templates), free(m->p1), free(m->p2), free(m->label), free(m->blob);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ pooling and scores */

static const ft_ijb_meta *sort_meta; /* qsort has no context argument in C11 */

static int cmp_image(const void *a, const void *b) {
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    const ft_ijb_meta *m = sort_meta;
    if (m->tid[i] != m->tid[j]) return m->tid[i] < m->tid[j] ? -1 : 1;
    if (m->mid[i] != m->mid[j]) return m->mid[i] < m->mid[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

int ft_ijb_templates(const ft_ijb_meta *m, const float *feats, int dim, double *tfeats) {
    int64_t *order = malloc((size_t)m->n_img * sizeof *order);
    double *media = malloc((size_t)dim * sizeof *media);
    if (!order || !media) {
        free(order), free(media);
        return -ENOMEM;
    }
    for (int64_t i = 0; i < m->n_img; i++) order[i] = i;
    sort_meta = m;
    qsort(order, (size_t)m->n_img, sizeof *order, cmp_image);
    memset(tfeats, 0, (size_t)m->n_templates * dim * sizeof *tfeats);
    int64_t t = -1;
    for (int64_t a = 0; a < m->n_img;) {
        int64_t b = a, i0 = order[a];
        while (b < m->n_img && m->tid[order[b]] == m->tid[i0] && m->mid[order[b]] == m->mid[i0])
            b++;
        if (t < 0 || m->templates[t] != m->tid[i0]) /* a new template: the next one up */
            while (m->templates[++t] != m->tid[i0]) {
            }
        /* media feature: mean of its rows, each row feats * detector score in float32 */
        memset(media, 0, (size_t)dim * sizeof *media);
        for (int64_t k = a; k < b; k++) {
            const float *f = feats + (size_t)order[k] * dim;
            float s = m->faceness[order[k]];
            for (int d = 0; d < dim; d++) media[d] += (double)(f[d] * s);
        }
        double *tf = tfeats + (size_t)t * dim;
        for (int d = 0; d < dim; d++) tf[d] += media[d] / (double)(b - a);
        a = b;
        if (a == m->n_img || m->tid[order[a]] != m->tid[i0]) { /* template done: normalize */
            double s = 0;
            for (int d = 0; d < dim; d++) s += tf[d] * tf[d];
            double n = sqrt(s);
            if (n > 0)
                for (int d = 0; d < dim; d++) tf[d] /= n;
        }
    }
    free(order), free(media);
    return 0;
}

void ft_ijb_scores(const ft_ijb_meta *m, const double *tfeats, int dim, double *score) {
    for (int64_t p = 0; p < m->n_pairs; p++) {
        const double *a = tfeats + (size_t)m->p1[p] * dim, *b = tfeats + (size_t)m->p2[p] * dim;
        double s = 0;
        for (int d = 0; d < dim; d++) s += a[d] * b[d];
        score[p] = s;
    }
}

/* ------------------------------------------------------------------ ROC */

typedef struct scored {
    double s;
    uint8_t label;
} scored;

static int cmp_desc(const void *a, const void *b) {
    double x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return x > y ? -1 : x < y;
}

int ft_roc_tar(const double *score, const uint8_t *label, int64_t n, const double *fars, int nfar,
               ft_roc_point *out, int64_t *bad) {
    int64_t pos = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(score[i])) {
            if (bad) *bad = i;
            return FT_ENONFINITE;
        }
        pos += label[i] != 0;
    }
    if (pos == 0 || pos == n) return FT_EARG;
    scored *v = malloc((size_t)n * sizeof *v);
    double *fps = malloc((size_t)(n + 1) * sizeof *fps);
    double *tps = malloc((size_t)(n + 1) * sizeof *tps);
    if (!v || !fps || !tps) {
        free(v), free(fps), free(tps);
        return -ENOMEM;
    }
    for (int64_t i = 0; i < n; i++) v[i].s = score[i], v[i].label = label[i] != 0;
    qsort(v, (size_t)n, sizeof *v, cmp_desc);
    /* one point per distinct threshold: counts of pairs with score >= it */
    int64_t k = 0, tp = 0;
    for (int64_t i = 0; i < n; i++) {
        tp += v[i].label;
        if (i == n - 1 || v[i].s != v[i + 1].s) {
            tps[k] = (double)tp;
            fps[k] = (double)(i + 1 - tp);
            k++;
        }
    }
    free(v);
    /* drop_intermediate: interior points where both second differences are zero */
    if (k > 2) {
        int64_t w = 1;
        for (int64_t j = 1; j < k - 1; j++) {
            int keep = fps[j - 1] - 2 * fps[j] + fps[j + 1] != 0 ||
                       tps[j - 1] - 2 * tps[j] + tps[j + 1] != 0;
            /* w <= j: the slots read later (j and above) are not yet overwritten */
            if (keep) fps[w] = fps[j], tps[w] = tps[j], w++;
        }
        fps[w] = fps[k - 1], tps[w] = tps[k - 1];
        k = w + 1;
    }
    /* prepend (0, 0); rates */
    memmove(fps + 1, fps, (size_t)k * sizeof *fps);
    memmove(tps + 1, tps, (size_t)k * sizeof *tps);
    fps[0] = tps[0] = 0, k++;
    double fl = fps[k - 1], tl = tps[k - 1];
    for (int64_t j = 0; j < k; j++) fps[j] /= fl, tps[j] /= tl;
    /* the helper: reversed arrays, argmin |fpr - far| (first index of the reversed ones) */
    for (int f = 0; f < nfar; f++) {
        int64_t best = k - 1;
        double bd = fabs(fps[k - 1] - fars[f]);
        for (int64_t j = k - 2; j >= 0; j--) {
            double d = fabs(fps[j] - fars[f]);
            if (d < bd) bd = d, best = j;
        }
        out[f].far = fars[f], out[f].fpr = fps[best], out[f].tar = tps[best];
    }
    free(fps), free(tps);
    return 0;
}
