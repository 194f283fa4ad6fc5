/* config.c: ft-train configuration files, overrides and validation; see config.h. */
#include "config.h"
#include "tensor.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"

typedef enum ktype {
    K_INT,        /* int field */
    K_INT64,      /* int64_t field */
    K_INT64_NONE, /* int64_t field, None -> 0 */
    K_FLOAT,      /* double field; int literals accepted */
    K_BOOL,       /* int field, True/False only */
    K_STR,        /* char[] field */
    K_STR_NONE,   /* char[] field, None -> "" */
    K_INT_NONE,   /* int field, None -> 0 */
    K_MARGIN,     /* margin_list: 3 numbers */
    K_TARGETS,    /* val_targets: list/tuple of names */
    K_BLOCKS,     /* blocks: None or 4 ints */
    K_COMPAT      /* accepted for arcface_torch compatibility, no effect */
} ktype;

typedef struct keydef {
    const char *key;
    ktype type;
    double lo, hi;
    size_t off, cap;
    int base;        /* 1: a key of configs/base.py (listed first, in base.py's order) */
    const char *def; /* default as a Python literal */
} keydef;

#define F(field) offsetof(ft_config, field), sizeof(((ft_config *)0)->field)
#define BIG      9.0e18

static const keydef KEYS[] = {
    {"margin_list", K_MARGIN, 0, 0, F(margin_list), 1, "(1.0, 0.5, 0.0)"},
    {"network", K_STR, 0, 0, F(network), 1, "'r50'"},
    {"resume", K_BOOL, 0, 1, F(resume), 1, "False"},
    {"save_all_states", K_BOOL, 0, 1, F(save_all_states), 1, "False"},
    {"output", K_STR_NONE, 0, 0, F(output), 1, "None"},
    {"embedding_size", K_INT, 1, 65536, F(embedding_size), 1, "512"},
    {"sample_rate", K_FLOAT, 0, 1, F(sample_rate), 1, "1"},
    {"interclass_filtering_threshold", K_FLOAT, 0, 1, F(interclass_filtering_threshold), 1, "0"},
    {"fp16", K_BOOL, 0, 1, F(fp16), 1, "False"},
    {"batch_size", K_INT, 1, 65536, F(batch_size), 1, "128"},
    {"optimizer", K_COMPAT, 0, 0, 0, 0, 1, "'sgd'"},
    {"lr", K_FLOAT, 0, 100, F(lr), 1, "0.1"},
    {"momentum", K_FLOAT, 0, 1, F(momentum), 1, "0.9"},
    {"weight_decay", K_FLOAT, 0, 1, F(weight_decay), 1, "5e-4"},
    {"verbose", K_INT64, 1, BIG, F(verbose), 1, "2000"},
    {"frequent", K_INT64, 1, BIG, F(frequent), 1, "10"},
    {"dali", K_COMPAT, 0, 0, 0, 0, 1, "False"},
    {"gradient_acc", K_INT, 1, 65536, F(gradient_acc), 1, "1"},
    {"seed", K_INT64, 0, BIG, F(seed), 1, "2048"},
    {"num_workers", K_INT, 0, 1024, F(num_workers), 1, "2"},
    /* set by every job config in arcface_torch, or facetrain's own */
    {"rec", K_STR_NONE, 0, 0, F(rec), 0, "None"},
    {"num_classes", K_INT64_NONE, 1, BIG, F(num_classes), 0, "None"},
    {"num_image", K_INT64_NONE, 1, BIG, F(num_image), 0, "None"},
    {"num_epoch", K_INT, 1, 1000000, F(num_epoch), 0, "20"},
    {"warmup_epoch", K_INT, 0, 1000000, F(warmup_epoch), 0, "0"},
    {"val_targets", K_TARGETS, 0, 0, F(val_targets), 0, "['lfw', 'cfp_fp', 'agedb_30']"},
    {"dali_aug", K_COMPAT, 0, 0, 0, 0, 0, "False"},
    {"max_steps", K_INT64_NONE, 1, BIG, F(max_steps), 0, "None"},
    {"width", K_INT_NONE, 1, 4096, F(width), 0, "None"},
    {"blocks", K_BLOCKS, 1, 256, F(blocks), 0, "None"},
    {"dropout", K_FLOAT, 0, 0.999999, F(dropout), 0, "0.0"},
    {"threads", K_INT, 0, 4096, F(threads), 0, "0"},
    {"pfc_update", K_STR, 0, 0, F(pfc_update), 0, "'sampled'"},
    {"strict_targets", K_BOOL, 0, 1, F(strict_targets), 0, "False"},
    {"dtype", K_STR_NONE, 0, 0, F(dtype_name), 0, "None"},
    {"device", K_STR, 0, 0, F(device), 0, "'auto'"},
    {"layout", K_STR, 0, 0, F(layout), 0, "'auto'"},
    {"max_skipped_steps", K_INT, 1, 1000000, F(max_skipped_steps), 0, "20"},
    {"export_onnx", K_BOOL, 0, 1, F(export_onnx), 0, "True"},
    {"dist_timeout", K_FLOAT, 0.1, 1e7, F(dist_timeout), 0, "300"},
    {"ddp_overlap", K_BOOL, 0, 1, F(ddp_overlap), 0, "True"},
    {"ddp_bucket_view", K_BOOL, 0, 1, F(ddp_bucket_view), 0, "True"},
    {"cuda_graphs", K_BOOL, 0, 1, F(cuda_graphs), 0, "False"},
};
#define NKEYS (sizeof KEYS / sizeof KEYS[0])

/* Keys of arcface_torch that facetrain accepts and ignores: set to anything but base.py's
 * default (def; NULL: any value), each gets a note (ft_config_note). */
static const struct {
    const char *key, *def, *why;
} IGNORED[] = {
    {"wandb_key", "'XXXX'", "facetrain does not log to Weights & Biases"},
    {"suffix_run_name", "None", "facetrain does not log to Weights & Biases"},
    {"using_wandb", "False", "facetrain does not log to Weights & Biases"},
    {"wandb_entity", "'entity'", "facetrain does not log to Weights & Biases"},
    {"wandb_project", "'project'", "facetrain does not log to Weights & Biases"},
    {"wandb_log_all", "True", "facetrain does not log to Weights & Biases"},
    {"save_artifacts", "False", "facetrain does not log to Weights & Biases"},
    {"wandb_resume", "False", "facetrain does not log to Weights & Biases"},
    {"notes", NULL, "facetrain does not log to Weights & Biases"},
    {"dali", "False", "facetrain reads the data with its own loader"},
    {"dali_aug", "False",
     "facetrain's loader applies arcface_torch's default augmentation (random horizontal flip)"},
};
#define NIGNORED (sizeof IGNORED / sizeof IGNORED[0])
/* Keys ft_config_derive appends, as train_v2.py does. */
static const char *const DERIVED[] = {"total_batch_size", "warmup_step", "total_step"};

static int cerr(char *err, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && cap) vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return FT_EARG;
}

static const keydef *find_key(const char *key) {
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].key, key) == 0) return &KEYS[i];
    return NULL;
}

static int known_key(const char *key) {
    if (find_key(key)) return 1;
    for (size_t i = 0; i < NIGNORED; i++)
        if (strcmp(IGNORED[i].key, key) == 0) return 1;
    for (size_t i = 0; i < sizeof DERIVED / sizeof DERIVED[0]; i++)
        if (strcmp(DERIVED[i], key) == 0) return 2;
    return 0;
}

static int find_entry(const ft_config *c, const char *key) {
    for (int i = 0; i < c->n_entries; i++)
        if (strcmp(c->entries[i].key, key) == 0) return i;
    return -1;
}

const ft_pyval *ft_config_get(const ft_config *c, const char *key) {
    int i = find_entry(c, key);
    return i < 0 ? NULL : &c->entries[i].val;
}

/* Takes ownership of *v (left as None). */
static int put_owned(ft_config *c, const char *key, ft_pyval *v, const char *origin) {
    int i = find_entry(c, key);
    if (i < 0) {
        if (strlen(key) >= sizeof c->entries[0].key) return FT_ERANGE;
        if (c->n_entries == c->cap_entries) {
            int nc = c->cap_entries ? c->cap_entries * 2 : 64;
            ft_cfg_entry *ne = realloc(c->entries, (size_t)nc * sizeof *ne);
            if (!ne) return -ENOMEM;
            c->entries = ne, c->cap_entries = nc;
        }
        i = c->n_entries++;
        memset(&c->entries[i], 0, sizeof c->entries[i]);
        snprintf(c->entries[i].key, sizeof c->entries[i].key, "%s", key);
    }
    ft_pyval_free(&c->entries[i].val);
    c->entries[i].val = *v;
    snprintf(c->entries[i].origin, sizeof c->entries[i].origin, "%s", origin);
    memset(v, 0, sizeof *v);
    return 0;
}

int ft_config_put(ft_config *c, const char *key, const ft_pyval *v, const char *origin) {
    ft_pyval copy;
    int rc = ft_pyval_copy(&copy, v);
    if (rc) return rc;
    rc = put_owned(c, key, &copy, origin);
    ft_pyval_free(&copy);
    return rc;
}

static int put_literal(ft_config *c, const char *key, const char *lit, const char *origin) {
    ft_pyval v;
    char err[256];
    int rc = ft_pyval_parse(lit, &v, err, sizeof err);
    if (rc) return rc;
    rc = put_owned(c, key, &v, origin);
    ft_pyval_free(&v);
    return rc;
}

int ft_config_init(ft_config *c) {
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NKEYS; i++) {
        if (!KEYS[i].base) continue;
        int rc = put_literal(c, KEYS[i].key, KEYS[i].def, "default");
        if (rc) return rc;
    }
    return 0;
}

void ft_config_free(ft_config *c) {
    if (!c) return;
    for (int i = 0; i < c->n_entries; i++) ft_pyval_free(&c->entries[i].val);
    free(c->entries);
    c->entries = NULL;
    c->n_entries = c->cap_entries = 0;
}

/* ------------------------------------------------------------------ file syntax */

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

/* Cut a '#' comment that is not inside a string; returns the bracket depth change. */
static int strip_comment(char *s) {
    char q = 0;
    int depth = 0;
    for (char *p = s; *p; p++) {
        if (q) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == q)
                q = 0;
        } else if (*p == '\'' || *p == '"') {
            q = *p;
        } else if (*p == '#') {
            *p = '\0';
            break;
        } else if (*p == '(' || *p == '[') {
            depth++;
        } else if (*p == ')' || *p == ']') {
            depth--;
        }
    }
    return depth;
}

static int squash_eq(const char *s, const char *want) {
    /* compare ignoring blanks: "config = edict()" */
    for (;;) {
        while (*s == ' ' || *s == '\t') s++;
        while (*want == ' ') want++;
        if (!*s || !*want) return !*s && !*want;
        if (*s++ != *want++) return 0;
    }
}

static int is_ignored_line(const char *s) {
    return squash_eq(s, "from easydict import EasyDict as edict") ||
           squash_eq(s, "config = edict()") || squash_eq(s, "import easydict") ||
           squash_eq(s, "config = easydict.EasyDict()");
}

/* "config.key = value": key and value (pointers into s), or 0. */
static int split_assign(char *s, char **key, char **val) {
    if (strncmp(s, "config", 6) != 0) return 0;
    char *p = s + 6;
    while (*p == ' ' || *p == '\t') p++;
    if (*p++ != '.') return 0;
    while (*p == ' ' || *p == '\t') p++;
    char *k = p;
    if (!isalpha((unsigned char)*p) && *p != '_') return 0;
    while (isalnum((unsigned char)*p) || *p == '_') p++;
    char *kend = p;
    while (*p == ' ' || *p == '\t') p++;
    if (*p != '=' || p[1] == '=') return 0;
    *kend = '\0';
    *key = k;
    *val = p + 1;
    return 1;
}

/* config.<key> in a value: keys set so far by the file or the command line (in arcface_torch
 * the file fills an empty edict; base.py's defaults are merged in only afterwards). */
static int lookup_set(void *ctx, const char *key, const ft_pyval **v) {
    const ft_config *c = ctx;
    int i = find_entry(c, key);
    if (i < 0 || strcmp(c->entries[i].origin, "default") == 0) return -1;
    *v = &c->entries[i].val;
    return 0;
}

static int assign(ft_config *c, const char *key, const char *text, const char *origin, int bare_ok,
                  char *err, size_t errcap) {
    int kind = known_key(key);
    if (kind == 0) return cerr(err, errcap, "%s: unknown key '%s'", origin, key);
    if (kind == 2)
        return cerr(err, errcap, "%s: '%s' is computed by ft-train and cannot be set", origin, key);
    ft_pyval v;
    char perrbuf[256];
    int rc = ft_pyval_eval(text, lookup_set, c, &v, perrbuf, sizeof perrbuf);
    if (rc && bare_ok && !strpbrk(text, "'\"()[]") && *text) {
        memset(&v, 0, sizeof v);
        rc = ft_pyval_set_str(&v, text);
    }
    if (rc) return cerr(err, errcap, "%s: bad value for '%s': %s", origin, key, perrbuf);
    rc = put_owned(c, key, &v, origin);
    ft_pyval_free(&v);
    return rc ? cerr(err, errcap, "%s: %s", origin, ft_strerror(rc)) : 0;
}

int ft_config_load_file(ft_config *c, const char *path, char *err, size_t errcap) {
    char *text = NULL;
    int rc = ft_read_file(path, &text, NULL);
    if (rc) return cerr(err, errcap, "%s: cannot read: %s", path, ft_strerror(rc)), rc;
    char *stmt = NULL;
    size_t stmt_len = 0;
    int depth = 0, line = 0, stmt_line = 0;
    rc = 0;
    for (char *ln = text, *next = NULL; ln; ln = next) {
        char *nl = strchr(ln, '\n');
        if (nl) *nl = '\0';
        next = nl ? nl + 1 : NULL;
        line++;
        depth += strip_comment(ln);
        size_t add = strlen(ln);
        char *ns = realloc(stmt, stmt_len + add + 2);
        if (!ns) {
            rc = cerr(err, errcap, "%s: out of memory", path);
            break;
        }
        stmt = ns;
        if (stmt_len == 0) stmt_line = line;
        memcpy(stmt + stmt_len, ln, add);
        stmt_len += add;
        stmt[stmt_len++] = ' ';
        stmt[stmt_len] = '\0';
        if (depth > 0) continue;
        char *s = trim(stmt), *key = NULL, *val = NULL;
        char origin[300];
        snprintf(origin, sizeof origin, "%s:%d", path, stmt_line);
        if (*s && !is_ignored_line(s)) {
            if (depth < 0 || !split_assign(s, &key, &val)) {
                rc = cerr(err, errcap, "%s: expected 'config.key = value', got '%.60s'", origin, s);
                break;
            }
            if ((rc = assign(c, key, trim(val), origin, 0, err, errcap))) break;
        }
        stmt_len = 0;
        depth = 0;
    }
    if (!rc && stmt_len && depth > 0)
        rc = cerr(err, errcap, "%s:%d: unclosed bracket", path, stmt_line);
    free(stmt);
    free(text);
    return rc;
}

int ft_config_set_arg(ft_config *c, const char *arg, char *err, size_t errcap) {
    const char *eq = strchr(arg, '=');
    char key[64];
    if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof key)
        return cerr(err, errcap, "command line: expected key=value, got '%s'", arg);
    memcpy(key, arg, (size_t)(eq - arg));
    key[eq - arg] = '\0';
    char *k = trim(key);
    if (strncmp(k, "config.", 7) == 0) k += 7;
    char origin[128];
    snprintf(origin, sizeof origin, "command line '%.60s'", arg);
    return assign(c, k, eq + 1, origin, 1, err, errcap);
}

/* ------------------------------------------------------------------ validation */

static int is_number(const ft_pyval *v) {
    return v->kind == FT_PY_INT || v->kind == FT_PY_FLOAT;
}
static double num_of(const ft_pyval *v) {
    return v->kind == FT_PY_INT ? (double)v->i : v->f;
}

static int type_error(const ft_cfg_entry *e, const char *want, char *err, size_t cap) {
    char got[96];
    ft_pyval_repr(&e->val, got, sizeof got);
    return cerr(err, cap, "%s: '%s' must be %s, got %s %s", e->origin, e->key, want,
                ft_pykind_name(e->val.kind), got);
}

static void fmt_bound(double v, char *out, size_t cap) {
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, cap, "%.0f", v);
    else
        ft_py_float_repr(v, out, cap);
}

static int range_error(const ft_cfg_entry *e, double lo, double hi, char *err, size_t cap) {
    char got[96], los[40], his[40];
    ft_pyval_repr(&e->val, got, sizeof got);
    fmt_bound(lo, los, sizeof los);
    fmt_bound(hi, his, sizeof his);
    if (hi >= BIG)
        return cerr(err, cap, "%s: '%s' = %s must be >= %s", e->origin, e->key, got, los);
    return cerr(err, cap, "%s: '%s' = %s is out of range [%s, %s]", e->origin, e->key, got, los,
                his);
}

static int conv_int(const keydef *k, const ft_cfg_entry *e, char *base, char *err, size_t cap) {
    const ft_pyval *v = &e->val;
    int none_ok = k->type == K_INT64_NONE || k->type == K_INT_NONE;
    int64_t x = 0;
    if (v->kind == FT_PY_NONE && none_ok) {
        x = 0;
    } else if (v->kind != FT_PY_INT) {
        return type_error(e, none_ok ? "an integer or None" : "an integer", err, cap);
    } else {
        x = v->i;
        if ((double)x < k->lo || (double)x > k->hi) return range_error(e, k->lo, k->hi, err, cap);
    }
    if (k->type == K_INT || k->type == K_INT_NONE)
        *(int *)(base + k->off) = (int)x;
    else
        *(int64_t *)(base + k->off) = x;
    return 0;
}

static int conv_str(const keydef *k, const ft_cfg_entry *e, char *base, char *err, size_t cap) {
    const ft_pyval *v = &e->val;
    char *dst = base + k->off;
    if (v->kind == FT_PY_NONE && k->type == K_STR_NONE) {
        dst[0] = '\0';
        return 0;
    }
    if (v->kind != FT_PY_STR)
        return type_error(e, k->type == K_STR_NONE ? "a string or None" : "a string", err, cap);
    if (strlen(v->s) >= k->cap)
        return cerr(err, cap, "%s: '%s' is too long (at most %zu characters)", e->origin, e->key,
                    k->cap - 1);
    if (!v->s[0]) return cerr(err, cap, "%s: '%s' must not be empty", e->origin, e->key);
    memcpy(dst, v->s, strlen(v->s) + 1);
    return 0;
}

static int conv_margin(ft_config *c, const ft_cfg_entry *e, char *err, size_t cap) {
    const ft_pyval *v = &e->val;
    if ((v->kind != FT_PY_TUPLE && v->kind != FT_PY_LIST) || v->n != 3)
        return type_error(e, "a tuple of 3 numbers (m1, m2, m3)", err, cap);
    for (int i = 0; i < 3; i++) {
        if (!is_number(&v->items[i]))
            return type_error(e, "a tuple of 3 numbers (m1, m2, m3)", err, cap);
        c->margin_list[i] = num_of(&v->items[i]);
    }
    if (c->margin_list[0] != 1.0)
        return cerr(err, cap,
                    "%s: margin_list m1 must be 1.0 (ArcFace (1.0, m2, 0.0) or CosFace "
                    "(1.0, 0.0, m3))",
                    e->origin);
    if (c->margin_list[1] < 0 || c->margin_list[1] >= 3.14159 || c->margin_list[2] < 0 ||
        c->margin_list[2] >= 1.0)
        return cerr(err, cap, "%s: margin_list m2 must be in [0, pi) and m3 in [0, 1)", e->origin);
    if (c->margin_list[1] > 0 && c->margin_list[2] > 0)
        return cerr(err, cap, "%s: margin_list sets both m2 (ArcFace) and m3 (CosFace); set one",
                    e->origin);
    return 0;
}

static int conv_targets(ft_config *c, const ft_cfg_entry *e, char *err, size_t cap) {
    const ft_pyval *v = &e->val;
    if (v->kind != FT_PY_TUPLE && v->kind != FT_PY_LIST)
        return type_error(e, "a list of names like ['lfw', 'cfp_fp']", err, cap);
    if (v->n > FT_CFG_MAX_TARGET)
        return cerr(err, cap, "%s: at most %d val_targets", e->origin, FT_CFG_MAX_TARGET);
    c->n_val_targets = v->n;
    for (int i = 0; i < v->n; i++) {
        const ft_pyval *it = &v->items[i];
        if (it->kind != FT_PY_STR)
            return type_error(e, "a list of names like ['lfw', 'cfp_fp']", err, cap);
        if (!it->s[0] || strchr(it->s, '/') || strlen(it->s) >= sizeof c->val_targets[0])
            return cerr(err, cap, "%s: val_targets name '%s' must be a file stem like 'lfw'",
                        e->origin, it->s);
        memcpy(c->val_targets[i], it->s, strlen(it->s) + 1);
    }
    return 0;
}

static int conv_blocks(const keydef *k, ft_config *c, const ft_cfg_entry *e, char *err,
                       size_t cap) {
    const ft_pyval *v = &e->val;
    memset(c->blocks, 0, sizeof c->blocks);
    if (v->kind == FT_PY_NONE) return 0;
    const char *want = "None or 4 integers like (1, 1, 1, 1)";
    if ((v->kind != FT_PY_TUPLE && v->kind != FT_PY_LIST) || v->n != 4)
        return type_error(e, want, err, cap);
    for (int i = 0; i < 4; i++) {
        if (v->items[i].kind != FT_PY_INT) return type_error(e, want, err, cap);
        if (v->items[i].i < k->lo || v->items[i].i > k->hi)
            return cerr(err, cap, "%s: blocks entries must be in [1, 256]", e->origin);
        c->blocks[i] = (int)v->items[i].i;
    }
    return 0;
}

static int conv_compat(ft_config *c, const ft_cfg_entry *e, char *err, size_t cap) {
    const ft_pyval *v = &e->val;
    if (strcmp(e->key, "optimizer") == 0) {
        if (v->kind != FT_PY_STR) return type_error(e, "a string", err, cap);
        if (strcmp(v->s, "sgd") != 0)
            return cerr(err, cap,
                        "%s: optimizer '%s' is not supported; facetrain trains with "
                        "'sgd'",
                        e->origin, v->s);
    } else if (strcmp(e->key, "dali") == 0 || strcmp(e->key, "dali_aug") == 0) {
        if (v->kind != FT_PY_BOOL) return type_error(e, "True or False", err, cap);
    }
    (void)c;
    return 0;
}

static int convert(ft_config *c, const keydef *k, const ft_cfg_entry *e, char *err, size_t cap) {
    char *base = (char *)c;
    const ft_pyval *v = &e->val;
    switch (k->type) {
    case K_INT:
    case K_INT64:
    case K_INT64_NONE:
    case K_INT_NONE:
        return conv_int(k, e, base, err, cap);
    case K_FLOAT:
        if (!is_number(v)) return type_error(e, "a number", err, cap);
        if (num_of(v) < k->lo || num_of(v) > k->hi) return range_error(e, k->lo, k->hi, err, cap);
        *(double *)(base + k->off) = num_of(v);
        return 0;
    case K_BOOL:
        if (v->kind != FT_PY_BOOL) return type_error(e, "True or False", err, cap);
        *(int *)(base + k->off) = (int)v->i;
        return 0;
    case K_STR:
    case K_STR_NONE:
        return conv_str(k, e, base, err, cap);
    case K_MARGIN:
        return conv_margin(c, e, err, cap);
    case K_TARGETS:
        return conv_targets(c, e, err, cap);
    case K_BLOCKS:
        return conv_blocks(k, c, e, err, cap);
    case K_COMPAT:
        return conv_compat(c, e, err, cap);
    }
    return 0;
}

/* Before anything else: a config for another architecture (mbf, vit_t, r2060, ...) gets one
 * line naming the networks facetrain has, not an error about a key that only matters there. */
static int check_network(const ft_config *c, char *err, size_t cap) {
    static const char *const nets[] = {"r18", "r34", "r50", "r100", "r200"};
    const ft_cfg_entry *e = &c->entries[find_entry(c, "network")];
    if (e->val.kind != FT_PY_STR) return 0; /* the type check reports it */
    for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++)
        if (!strcmp(e->val.s, nets[i])) return 0;
    return cerr(err, cap,
                "%s: network '%.40s' is not supported: facetrain has the IResNets r18 r34 r50 "
                "r100 r200",
                e->origin, e->val.s);
}

static int check_semantics(ft_config *c, char *err, size_t cap) {
    const ft_cfg_entry *e = &c->entries[find_entry(c, "pfc_update")];
    if (strcmp(c->pfc_update, "sampled") != 0 && strcmp(c->pfc_update, "dense") != 0)
        return cerr(err, cap, "%s: pfc_update '%s' is not supported ('sampled' or 'dense')",
                    e->origin, c->pfc_update);
    e = &c->entries[find_entry(c, "layout")];
    if (strcmp(c->layout, "auto") && strcmp(c->layout, "nchw") && strcmp(c->layout, "nhwc"))
        return cerr(err, cap, "%s: layout '%s' is not a layout ('auto', 'nchw' or 'nhwc')",
                    e->origin, c->layout);
    /* precision: fp16 = True is fp16 storage with loss scaling; dtype names it explicitly */
    e = &c->entries[find_entry(c, "dtype")];
    if (!c->dtype_name[0]) {
        c->dtype = c->fp16 ? FT_CFG_F16 : FT_CFG_F32;
    } else {
        int dt = ft_dtype_parse(c->dtype_name);
        if (dt < 0)
            return cerr(err, cap, "%s: dtype '%s' is not supported ('fp32', 'fp16' or 'bf16')",
                        e->origin, c->dtype_name);
        c->dtype = dt;
        if (c->fp16 && dt != FT_CFG_F16)
            return cerr(err, cap, "%s: dtype '%s' contradicts fp16 = True (which means fp16)",
                        e->origin, c->dtype_name);
    }
    c->loss_scaling = c->dtype == FT_CFG_F16;
    e = &c->entries[find_entry(c, "lr")];
    if (!(c->lr > 0)) return cerr(err, cap, "%s: 'lr' must be > 0", e->origin);
    e = &c->entries[find_entry(c, "sample_rate")];
    if (!(c->sample_rate > 0))
        return cerr(err, cap, "%s: 'sample_rate' must be in (0, 1]", e->origin);
    e = &c->entries[find_entry(c, "rec")];
    if (!c->rec[0])
        return cerr(err, cap,
                    "rec is not set: name the dataset folder, e.g. config.rec = "
                    "\"/train_tmp/ms1m-retinaface-t1\"");
    e = &c->entries[find_entry(c, "num_classes")];
    if (!c->num_classes)
        return cerr(err, cap,
                    "num_classes is not set: give the number of identities in the "
                    "dataset, e.g. config.num_classes = 93431");
    e = &c->entries[find_entry(c, "warmup_epoch")];
    if (c->warmup_epoch > 0 && c->warmup_epoch >= c->num_epoch)
        return cerr(err, cap, "%s: warmup_epoch (%d) must be smaller than num_epoch (%d)",
                    e->origin, c->warmup_epoch, c->num_epoch);
    return 0;
}

static int set_default_output(ft_config *c, const char *config_path, char *err, size_t cap) {
    const ft_pyval *v = ft_config_get(c, "output");
    if (v && v->kind == FT_PY_STR) return 0;
    const char *b = config_path ? strrchr(config_path, '/') : NULL;
    b = b ? b + 1 : (config_path ? config_path : "ft-train");
    char name[256], out[300];
    snprintf(name, sizeof name, "%s", b);
    size_t n = strlen(name);
    if (n > 3 && strcmp(name + n - 3, ".py") == 0) name[n - 3] = '\0';
    snprintf(out, sizeof out, "work_dirs/%s", name);
    ft_pyval sv = {0};
    if (ft_pyval_set_str(&sv, out)) return cerr(err, cap, "out of memory");
    int i = find_entry(c, "output");
    char origin[sizeof c->entries[0].origin];
    snprintf(origin, sizeof origin, "%s", i >= 0 ? c->entries[i].origin : "default");
    int rc = put_owned(c, "output", &sv, origin);
    ft_pyval_free(&sv);
    return rc;
}

int ft_config_finalize(ft_config *c, const char *config_path, char *err, size_t errcap) {
    for (size_t i = 0; i < NKEYS; i++) {
        if (find_entry(c, KEYS[i].key) >= 0) continue;
        int rc = put_literal(c, KEYS[i].key, KEYS[i].def, "default");
        if (rc) return cerr(err, errcap, "%s", ft_strerror(rc));
    }
    int rc = set_default_output(c, config_path, err, errcap);
    if (!rc) rc = check_network(c, err, errcap);
    if (rc) return rc;
    for (int i = 0; i < c->n_entries; i++) {
        const keydef *k = find_key(c->entries[i].key);
        if (k && (rc = convert(c, k, &c->entries[i], err, errcap))) return rc;
    }
    return check_semantics(c, err, errcap);
}

static int put_int(ft_config *c, const char *key, int64_t x) {
    ft_pyval v = ft_pyval_int(x);
    return put_owned(c, key, &v, "ft-train");
}

int ft_config_derive(ft_config *c, uint64_t dataset_images, uint64_t dataset_classes, int world,
                     char *err, size_t errcap) {
    if (dataset_classes > (uint64_t)c->num_classes)
        return cerr(err, errcap,
                    "num_classes = %lld is smaller than the %llu classes in the "
                    "dataset %s; set config.num_classes = %llu",
                    (long long)c->num_classes, (unsigned long long)dataset_classes, c->rec,
                    (unsigned long long)dataset_classes);
    if (c->num_image == 0) {
        c->num_image = (int64_t)dataset_images;
        int rc = put_int(c, "num_image", c->num_image);
        if (rc) return cerr(err, errcap, "%s", ft_strerror(rc));
    }
    if (world < 1) world = 1;
    c->total_batch_size = (int64_t)c->batch_size * world;
    c->steps_per_epoch = c->num_image / c->total_batch_size;
    if (c->steps_per_epoch < 1)
        return cerr(err, errcap, "num_image = %lld is smaller than one global batch (%lld)",
                    (long long)c->num_image, (long long)c->total_batch_size);
    c->warmup_step = c->steps_per_epoch * c->warmup_epoch;
    c->total_step = c->steps_per_epoch * c->num_epoch;
    int rc = put_int(c, "total_batch_size", c->total_batch_size);
    if (!rc) rc = put_int(c, "warmup_step", c->warmup_step);
    if (!rc) rc = put_int(c, "total_step", c->total_step);
    return rc ? cerr(err, errcap, "%s", ft_strerror(rc)) : 0;
}

size_t ft_config_line(const ft_config *c, int i, char *out, size_t cap) {
    const ft_cfg_entry *e = &c->entries[i];
    int pad = 25 - (int)strlen(e->key);
    int n = snprintf(out, cap, ": %s%*s", e->key, pad > 0 ? pad : 0, "");
    if (n < 0) return 0;
    if ((size_t)n >= cap) return (size_t)n;
    return (size_t)n + ft_pyval_str(&e->val, out + n, cap - (size_t)n);
}

int ft_config_note(const ft_config *c, int *pos, char *out, size_t cap) {
    for (; *pos < c->n_entries; (*pos)++) {
        const ft_cfg_entry *e = &c->entries[*pos];
        if (strcmp(e->origin, "default") == 0) continue;
        for (size_t k = 0; k < NIGNORED; k++) {
            if (strcmp(IGNORED[k].key, e->key) != 0) continue;
            char got[128], want[128] = "";
            ft_pyval_repr(&e->val, got, sizeof got);
            if (IGNORED[k].def) {
                ft_pyval d;
                char perr[64];
                if (ft_pyval_parse(IGNORED[k].def, &d, perr, sizeof perr) == 0)
                    ft_pyval_repr(&d, want, sizeof want), ft_pyval_free(&d);
                if (strcmp(got, want) == 0) break;
            }
            snprintf(out, cap, "%s: %s = %s is ignored: %s", e->origin, e->key, got,
                     IGNORED[k].why);
            (*pos)++;
            return 1;
        }
    }
    return 0;
}
