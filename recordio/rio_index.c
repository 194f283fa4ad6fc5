/* rio_index.c: the .idx text index (docs/formats.md section 1.3): "<key>\t<offset>\n" lines in
 * write order, keys in any order, a duplicate key resolving to its later line. */
#include "recordio.h"
#include "rio_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parse one line in place. Returns 1 for a record line, 0 for a blank line, or FT_EFORMAT /
 * FT_ERANGE with *why set. */
static int parse_line(char *s, size_t n, uint64_t *key, uint64_t *off, const char **why) {
    while (n > 0 && s[n - 1] && strchr(" \t\r\n\v\f", s[n - 1])) s[--n] = '\0';
    if (n == 0) return 0;
    if (strlen(s) != n) {
        *why = "NUL byte in line";
        return FT_EFORMAT;
    }
    size_t sep = strcspn(s, " \t");
    if (s[sep] == '\0') {
        *why = "expected \"<key>\\t<offset>\"";
        return FT_EFORMAT;
    }
    s[sep] = '\0';
    char *o = s + sep + 1;
    while (*o == ' ' || *o == '\t') o++;
    if (*s < '0' || *s > '9') {
        *why = "key is not a decimal number";
        return FT_EFORMAT;
    }
    int rc = ft_parse_u64(s, 0, UINT64_MAX, key);
    if (rc < 0) {
        *why = rc == FT_ERANGE ? "key out of range" : "key is not a decimal number";
        return rc;
    }
    rc = *o >= '0' && *o <= '9' ? ft_parse_u64(o, 0, UINT64_MAX, off) : FT_EFORMAT;
    if (rc < 0) *why = rc == FT_ERANGE ? "offset out of range" : "offset is not a decimal number";
    return rc < 0 ? rc : 1;
}

static int push(rio_index *idx, uint64_t *cap, uint64_t key, uint64_t off) {
    if (idx->n == *cap) {
        uint64_t ncap = *cap ? *cap * 2 : 1024;
        uint64_t *k = realloc(idx->keys, ncap * sizeof *k);
        if (!k) return -ENOMEM;
        idx->keys = k;
        uint64_t *o = realloc(idx->offsets, ncap * sizeof *o);
        if (!o) return -ENOMEM;
        idx->offsets = o;
        *cap = ncap;
    }
    idx->keys[idx->n] = key;
    idx->offsets[idx->n] = off;
    idx->n++;
    return 0;
}

static uint64_t slot_of(const rio_index *idx, uint64_t key) {
    return ft_hash64(key, 0x72696f, 0) & (idx->tabcap - 1);
}

/* Open addressing, linear probing, load <= 2/3; slots hold line + 1 (0 = empty). */
static int build_table(rio_index *idx) {
    uint64_t cap = 16;
    while (cap < idx->n + idx->n / 2) cap *= 2;
    idx->tab = calloc(cap, sizeof *idx->tab);
    if (!idx->tab) return -ENOMEM;
    idx->tabcap = cap;
    for (uint64_t i = 0; i < idx->n; i++) {
        uint64_t s = slot_of(idx, idx->keys[i]);
        while (idx->tab[s] && idx->keys[idx->tab[s] - 1] != idx->keys[i]) s = (s + 1) & (cap - 1);
        idx->tab[s] = i + 1; /* a later duplicate replaces the earlier line */
    }
    return 0;
}

static int read_lines(rio_index *idx, FILE *f, const char *path, char *err, size_t errcap) {
    char *line = NULL;
    size_t lcap = 0;
    uint64_t cap = 0, lineno = 0, blank = 0; /* blank: first blank line, if any */
    ssize_t got;
    int rc = 0;
    while (rc == 0 && (got = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        uint64_t key, off;
        const char *why = "";
        int kind = parse_line(line, (size_t)got, &key, &off, &why);
        if (kind == 0) {
            if (!blank) blank = lineno;
        } else if (kind < 0) {
            rc = rio_fail(kind, err, errcap, "%s:%" PRIu64 ": %s: \"%.60s\"", path, lineno, why,
                          line);
        } else if (blank) {
            rc = rio_fail(FT_EFORMAT, err, errcap,
                          "%s:%" PRIu64 ": blank line before the last record", path, blank);
        } else if ((rc = push(idx, &cap, key, off)) < 0) {
            rio_fail(rc, err, errcap, "%s: out of memory", path);
        }
    }
    if (rc == 0 && ferror(f)) rc = rio_fail(-EIO, err, errcap, "%s: read error", path);
    free(line);
    return rc;
}

int rio_index_load(rio_index *idx, const char *path, char *err, size_t errcap) {
    memset(idx, 0, sizeof *idx);
    FILE *f = fopen(path, "re");
    if (!f) {
        int rc = -errno;
        return rio_fail(rc, err, errcap, "%s: cannot open: %s", path, strerror(-rc));
    }
    int rc = read_lines(idx, f, path, err, errcap);
    fclose(f);
    if (rc == 0 && build_table(idx) < 0)
        rc = rio_fail(-ENOMEM, err, errcap, "%s: out of memory", path);
    if (rc < 0) rio_index_free(idx);
    return rc;
}

int rio_index_validate(const rio_index *idx, uint64_t rec_size, const char *idx_name, char *err,
                       size_t errcap) {
    const char *name = idx_name ? idx_name : "index";
    for (uint64_t i = 0; i < idx->n; i++) {
        uint64_t off = idx->offsets[i];
        if (off % 4)
            return rio_fail(FT_EFORMAT, err, errcap,
                            "%s:%" PRIu64 ": key %" PRIu64 ": offset %" PRIu64 " is not 4-aligned",
                            name, i + 1, idx->keys[i], off);
        if (rec_size < 8 || off > rec_size - 8)
            return rio_fail(FT_ERANGE, err, errcap,
                            "%s:%" PRIu64 ": key %" PRIu64 ": offset %" PRIu64
                            " is past the end of the .rec (%" PRIu64
                            " bytes; a segment header needs 8)",
                            name, i + 1, idx->keys[i], off, rec_size);
    }
    return 0;
}

int rio_index_find(const rio_index *idx, uint64_t key, uint64_t *offset) {
    if (!idx->tabcap) return FT_ERANGE;
    for (uint64_t s = slot_of(idx, key); idx->tab[s]; s = (s + 1) & (idx->tabcap - 1)) {
        uint64_t line = idx->tab[s] - 1;
        if (idx->keys[line] == key) {
            *offset = idx->offsets[line];
            return 0;
        }
    }
    return FT_ERANGE;
}

void rio_index_free(rio_index *idx) {
    if (!idx) return;
    free(idx->keys);
    free(idx->offsets);
    free(idx->tab);
    memset(idx, 0, sizeof *idx);
}
