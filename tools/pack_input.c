/* pack_input.c: ft-pack inputs: class folders and im2rec .lst files (see pack.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_classdir.h"
#include "ft_common.h"
#include "pack.h"

#define KEY_LIMIT (1ull << 24)

static int add_entry(pack_list *l, char *path, uint64_t index, uint64_t line, const float *labels,
                     uint32_t nlabels) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 256;
        pack_entry *ne = realloc(l->e, nc * sizeof *ne);
        if (!ne) return -ENOMEM;
        l->e = ne, l->cap = nc;
    }
    pack_entry *e = &l->e[l->n];
    e->labels = malloc(nlabels * sizeof(float));
    if (!e->labels) return -ENOMEM;
    memcpy(e->labels, labels, nlabels * sizeof(float));
    e->path = path, e->index = index, e->line = line, e->nlabels = nlabels;
    l->n++;
    return 0;
}

void pack_list_free(pack_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->e[i].path), free(l->e[i].labels);
    free(l->e);
    memset(l, 0, sizeof *l);
}

/* The class-folder convention is ft_classdir's (shared with ft-ingest); keys need the class
 * count below 2^24 so the header's float labels stay exact. */
int pack_scan_folder(const char *dir, pack_list *out, char *err, size_t errcap) {
    memset(out, 0, sizeof *out);
    ft_classdir cd;
    int rc = ft_classdir_scan(dir, &cd, err, errcap);
    if (rc) return rc;
    ft_classdir_warn(&cd, dir, "ft-pack");
    if (cd.n_classes >= KEY_LIMIT)
        rc = FT_ERANGE, snprintf(err, errcap, "%s: too many class folders", dir);
    for (uint64_t i = 0; !rc && i < cd.n; i++) {
        const char *rel = ft_classdir_path(&cd, i);
        size_t len = strlen(dir) + strlen(rel) + 2;
        char *p = malloc(len);
        float label = (float)cd.e[i].label;
        if (!p)
            rc = -ENOMEM;
        else
            snprintf(p, len, "%s/%s", dir, rel);
        if (!rc && (rc = add_entry(out, p, out->n, 0, &label, 1)) != 0) free(p);
        if (rc) snprintf(err, errcap, "%s: out of memory", dir);
    }
    out->n_classes = cd.n_classes;
    ft_classdir_free(&cd);
    if (rc) pack_list_free(out);
    return rc;
}

/* ------------------------------------------------------------------ .lst */

/* Parse one .lst line (tabs split, trailing CR/blanks stripped by the caller). */
static int parse_lst_line(char *line, const char *root, uint64_t lineno, pack_list *out, char *err,
                          size_t errcap, const char *lst) {
    char *f[PACK_MAX_LABELS + 2];
    int nf = 0;
    for (char *p = line;;) {
        if (nf == PACK_MAX_LABELS + 2) {
            snprintf(err, errcap, "%s:%llu: more than %d labels", lst, (unsigned long long)lineno,
                     PACK_MAX_LABELS);
            return FT_EFORMAT;
        }
        f[nf++] = p;
        char *t = strchr(p, '\t');
        if (!t) break;
        *t = '\0', p = t + 1;
    }
    uint64_t index = 0;
    float labels[PACK_MAX_LABELS];
    if (nf < 3) {
        snprintf(err, errcap, "%s:%llu: expected index<TAB>label<TAB>path", lst,
                 (unsigned long long)lineno);
        return FT_EFORMAT;
    }
    if (ft_parse_u64(f[0], 0, UINT64_MAX, &index) != 0) {
        snprintf(err, errcap, "%s:%llu: bad index '%s'", lst, (unsigned long long)lineno, f[0]);
        return FT_EFORMAT;
    }
    for (int i = 1; i < nf - 1; i++) {
        double v;
        if (ft_parse_double(f[i], -3.4e38, 3.4e38, &v) != 0) {
            snprintf(err, errcap, "%s:%llu: bad label '%s'", lst, (unsigned long long)lineno, f[i]);
            return FT_EFORMAT;
        }
        labels[i - 1] = (float)v;
    }
    const char *rel = f[nf - 1];
    size_t len = strlen(root) + strlen(rel) + 2;
    char *path = malloc(len);
    if (!path) return -ENOMEM;
    if (rel[0] == '/')
        snprintf(path, len, "%s", rel);
    else
        snprintf(path, len, "%s/%s", root, rel);
    int rc = add_entry(out, path, index, lineno, labels, (uint32_t)(nf - 2));
    if (rc) free(path);
    return rc;
}

int pack_read_lst(const char *lst, const char *root, pack_list *out, char *err, size_t errcap) {
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t len = 0;
    int rc = ft_read_file(lst, &text, &len);
    if (rc) {
        snprintf(err, errcap, "%s: %s", lst, ft_strerror(rc));
        return rc;
    }
    uint64_t lineno = 0;
    for (char *p = text; !rc && p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        char *end = nl ? nl : text + len;
        lineno++;
        *end = '\0';
        for (char *q = end; q > p && (q[-1] == '\r' || q[-1] == ' '); q--) q[-1] = '\0';
        if (*p) rc = parse_lst_line(p, root, lineno, out, err, errcap, lst);
        if (rc == -ENOMEM) snprintf(err, errcap, "%s: out of memory", lst);
        p = end + 1;
    }
    free(text);
    if (rc) pack_list_free(out);
    return rc;
}

static int cmp_label(const void *a, const void *b) {
    const pack_entry *x = a, *y = b;
    if (x->labels[0] != y->labels[0]) return x->labels[0] < y->labels[0] ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line; /* stable: keep file order */
}

int pack_list_group(pack_list *l, const char *lst, char *err, size_t errcap) {
    uint64_t max = 0;
    for (size_t i = 0; i < l->n; i++) {
        float c = l->e[i].labels[0];
        if (!(c >= 0 && c < (float)KEY_LIMIT) || c != (float)(uint64_t)c) {
            snprintf(err, errcap,
                     "%s:%llu: label %g is not a class id (a whole number >= 0); "
                     "use --no-header for other labels",
                     lst, (unsigned long long)l->e[i].line, c);
            return FT_EFORMAT;
        }
        if ((uint64_t)c > max) max = (uint64_t)c;
    }
    qsort(l->e, l->n, sizeof *l->e, cmp_label);
    l->n_classes = l->n ? max + 1 : 0;
    return 0;
}

typedef struct key_line {
    uint64_t key, line;
} key_line;

static int cmp_key(const void *a, const void *b) {
    const key_line *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

int pack_list_unique(const pack_list *l, const char *lst, char *err, size_t errcap) {
    key_line *k = malloc((l->n ? l->n : 1) * sizeof *k);
    if (!k) return -ENOMEM;
    for (size_t i = 0; i < l->n; i++) k[i].key = l->e[i].index, k[i].line = l->e[i].line;
    qsort(k, l->n, sizeof *k, cmp_key);
    int rc = 0;
    for (size_t i = 1; !rc && i < l->n; i++) {
        if (k[i].key == k[i - 1].key) {
            snprintf(err, errcap, "%s:%llu: index %llu already used on line %llu", lst,
                     (unsigned long long)k[i].line, (unsigned long long)k[i].key,
                     (unsigned long long)k[i - 1].line);
            rc = FT_EFORMAT;
        }
    }
    free(k);
    return rc;
}
