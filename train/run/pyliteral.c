/* pyliteral.c: Python literal parsing and str()/repr() printing; see pyliteral.h. */
#include "pyliteral.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"

#define PY_MAX_DEPTH 16

typedef struct pyparser {
    const char *p;
    char *err;
    size_t errcap;
    ft_py_lookup_fn lookup; /* config.<key> references, or NULL */
    void *lookup_ctx;
} pyparser;

static int perr(pyparser *ps, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (ps->err && ps->errcap) vsnprintf(ps->err, ps->errcap, fmt, ap);
    va_end(ap);
    return FT_EFORMAT;
}

static void skip_blank(pyparser *ps) {
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r') ps->p++;
}

const char *ft_pykind_name(ft_pykind k) {
    switch (k) {
    case FT_PY_NONE:
        return "NoneType";
    case FT_PY_BOOL:
        return "bool";
    case FT_PY_INT:
        return "int";
    case FT_PY_FLOAT:
        return "float";
    case FT_PY_STR:
        return "str";
    case FT_PY_TUPLE:
        return "tuple";
    case FT_PY_LIST:
        return "list";
    }
    return "?";
}

void ft_pyval_free(ft_pyval *v) {
    if (!v) return;
    free(v->s);
    for (int i = 0; i < v->n; i++) ft_pyval_free(&v->items[i]);
    free(v->items);
    memset(v, 0, sizeof *v);
    v->kind = FT_PY_NONE;
}

ft_pyval ft_pyval_int(int64_t i) {
    ft_pyval v = {.kind = FT_PY_INT, .i = i};
    return v;
}

ft_pyval ft_pyval_float(double f) {
    ft_pyval v = {.kind = FT_PY_FLOAT, .f = f};
    return v;
}

int ft_pyval_set_str(ft_pyval *v, const char *s) {
    char *c = strdup(s);
    if (!c) return -ENOMEM;
    ft_pyval_free(v);
    v->kind = FT_PY_STR;
    v->s = c;
    return 0;
}

int ft_pyval_copy(ft_pyval *dst, const ft_pyval *src) {
    memset(dst, 0, sizeof *dst);
    dst->kind = src->kind, dst->i = src->i, dst->f = src->f;
    if (src->s && !(dst->s = strdup(src->s))) return -ENOMEM;
    if (src->n) {
        dst->items = calloc((size_t)src->n, sizeof *dst->items);
        if (!dst->items) {
            ft_pyval_free(dst);
            return -ENOMEM;
        }
        for (int i = 0; i < src->n; i++) {
            dst->n = i + 1;
            if (ft_pyval_copy(&dst->items[i], &src->items[i])) {
                ft_pyval_free(dst);
                return -ENOMEM;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ parsing */

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int parse_string(pyparser *ps, ft_pyval *out) {
    char q = *ps->p++;
    size_t cap = 32, n = 0;
    char *buf = malloc(cap);
    if (!buf) return -ENOMEM;
    for (;;) {
        char c = *ps->p;
        if (c == '\0' || c == '\n') {
            free(buf);
            return perr(ps, "unterminated string");
        }
        ps->p++;
        if (c == q) break;
        if (c == '\\') {
            char e = *ps->p++;
            switch (e) {
            case '\\':
                c = '\\';
                break;
            case '\'':
                c = '\'';
                break;
            case '"':
                c = '"';
                break;
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case '0':
                c = '\0';
                break;
            case 'x': {
                int h = hexval(ps->p[0]), l = h < 0 ? -1 : hexval(ps->p[1]);
                if (l < 0) {
                    free(buf);
                    return perr(ps, "bad \\x escape in string");
                }
                c = (char)(h * 16 + l);
                ps->p += 2;
                break;
            }
            default:
                free(buf);
                return perr(ps, "unsupported escape '\\%c' in string", e ? e : '0');
            }
            if (c == '\0') {
                free(buf);
                return perr(ps, "NUL character in string");
            }
        }
        if (n + 2 > cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return -ENOMEM;
            }
            buf = nb;
        }
        buf[n++] = c;
    }
    buf[n] = '\0';
    out->kind = FT_PY_STR;
    out->s = buf;
    return 0;
}

/* Python int/float literal (underscores allowed between digits, 0x/0o/0b ints). */
static int parse_number(pyparser *ps, ft_pyval *out, int neg) {
    char tok[128];
    size_t n = 0;
    int is_float = 0, base = 10;
    const char *p = ps->p;
    if (p[0] == '0' &&
        (p[1] == 'x' || p[1] == 'X' || p[1] == 'o' || p[1] == 'O' || p[1] == 'b' || p[1] == 'B')) {
        base = (p[1] == 'x' || p[1] == 'X') ? 16 : (p[1] == 'o' || p[1] == 'O') ? 8 : 2;
        p += 2;
    }
    while (*p && n + 1 < sizeof tok) {
        char c = *p;
        if (c == '_') {
            if (!isalnum((unsigned char)p[1])) return perr(ps, "bad number");
            p++;
            continue;
        }
        if (base == 10 && (c == '.' || c == 'e' || c == 'E')) {
            is_float = 1;
            tok[n++] = c;
            p++;
            if ((c == 'e' || c == 'E') && (*p == '+' || *p == '-')) tok[n++] = *p++;
            continue;
        }
        if (!isalnum((unsigned char)c)) break;
        tok[n++] = c;
        p++;
    }
    tok[n] = '\0';
    if (n == 0) return perr(ps, "bad number");
    char *end = NULL;
    errno = 0;
    if (is_float) {
        double v = strtod(tok, &end);
        if (*end || errno == ERANGE || !isfinite(v)) return perr(ps, "bad number '%s'", tok);
        *out = ft_pyval_float(neg ? -v : v);
    } else {
        if (base == 10 && tok[0] == '0' && tok[1]) return perr(ps, "bad number '%s'", tok);
        unsigned long long v = strtoull(tok, &end, base);
        if (*end) return perr(ps, "bad number '%s'", tok);
        if (errno == ERANGE || v > (unsigned long long)INT64_MAX + (unsigned long long)neg)
            return perr(ps, "integer '%s' too large", tok);
        *out = ft_pyval_int(neg ? (int64_t)(0 - v) : (int64_t)v);
    }
    ps->p = p;
    return 0;
}

/* ------------------------------------------------------------------ arithmetic */

static int is_num(const ft_pyval *v) {
    return v->kind == FT_PY_INT || v->kind == FT_PY_FLOAT || v->kind == FT_PY_BOOL;
}
static double as_double(const ft_pyval *v) {
    return v->kind == FT_PY_FLOAT ? v->f : (double)v->i;
}

static int type_err(pyparser *ps, const char *op, const ft_pyval *a, const ft_pyval *b) {
    if (!b) return perr(ps, "bad operand type for unary %s: '%s'", op, ft_pykind_name(a->kind));
    return perr(ps, "unsupported operand type(s) for %s: '%s' and '%s'", op,
                ft_pykind_name(a->kind), ft_pykind_name(b->kind));
}

static int int_pow(pyparser *ps, int64_t b, int64_t e, int64_t *out) {
    int64_t r = 1;
    while (e > 0) {
        if ((e & 1) && __builtin_mul_overflow(r, b, &r)) return perr(ps, "integer too large");
        e >>= 1;
        if (e && __builtin_mul_overflow(b, b, &b)) return perr(ps, "integer too large");
    }
    *out = r;
    return 0;
}

/* Python's float // and % (Objects/floatobject.c float_divmod). */
static void float_divmod(double vx, double wx, double *floordiv, double *mod) {
    double m = fmod(vx, wx), div = (vx - m) / wx;
    if (m != 0.0) {
        if ((wx < 0) != (m < 0)) m += wx, div -= 1.0;
    } else {
        m = copysign(0.0, wx);
    }
    double fd;
    if (div != 0.0) {
        fd = floor(div);
        if (div - fd > 0.5) fd += 1.0;
    } else {
        fd = copysign(0.0, vx / wx);
    }
    *floordiv = fd, *mod = m;
}

static int float_op(pyparser *ps, const char *op, double a, double b, ft_pyval *out) {
    double r = 0, fd, m;
    if ((!strcmp(op, "/") || !strcmp(op, "//") || !strcmp(op, "%")) && b == 0.0)
        return perr(ps, "division by zero");
    if (!strcmp(op, "+"))
        r = a + b;
    else if (!strcmp(op, "-"))
        r = a - b;
    else if (!strcmp(op, "*"))
        r = a * b;
    else if (!strcmp(op, "/"))
        r = a / b;
    else if (!strcmp(op, "//"))
        float_divmod(a, b, &fd, &m), r = fd;
    else if (!strcmp(op, "%"))
        float_divmod(a, b, &fd, &m), r = m;
    else { /* ** */
        if (a == 0.0 && b < 0) return perr(ps, "0.0 cannot be raised to a negative power");
        if (a < 0 && b != floor(b))
            return perr(ps, "a negative number to a fractional power is complex");
        r = pow(a, b);
        if (isinf(r) && isfinite(a) && isfinite(b)) return perr(ps, "result of ** too large");
    }
    *out = ft_pyval_float(r);
    return 0;
}

static int int_op(pyparser *ps, const char *op, int64_t a, int64_t b, ft_pyval *out) {
    int64_t r = 0;
    int ovf = 0;
    if (!strcmp(op, "/")) return float_op(ps, op, (double)a, (double)b, out);
    if (!strcmp(op, "**")) {
        if (b < 0) return float_op(ps, op, (double)a, (double)b, out);
        int rc = int_pow(ps, a, b, &r);
        if (rc) return rc;
    } else if (!strcmp(op, "+")) {
        ovf = __builtin_add_overflow(a, b, &r);
    } else if (!strcmp(op, "-")) {
        ovf = __builtin_sub_overflow(a, b, &r);
    } else if (!strcmp(op, "*")) {
        ovf = __builtin_mul_overflow(a, b, &r);
    } else { /* // and %: floor division, the remainder takes the divisor's sign */
        if (b == 0) return perr(ps, "division by zero");
        if (a == INT64_MIN && b == -1) return perr(ps, "integer too large");
        int64_t q = a / b, m = a % b;
        if (m != 0 && ((m < 0) != (b < 0))) q -= 1, m += b;
        r = !strcmp(op, "//") ? q : m;
    }
    if (ovf) return perr(ps, "integer too large");
    *out = ft_pyval_int(r);
    return 0;
}

/* str + str, tuple + tuple, list + list */
static int concat(ft_pyval *a, const ft_pyval *b) {
    if (a->kind == FT_PY_STR) {
        size_t na = strlen(a->s), nb = strlen(b->s);
        char *s = realloc(a->s, na + nb + 1);
        if (!s) return -ENOMEM;
        memcpy(s + na, b->s, nb + 1);
        a->s = s;
        return 0;
    }
    if (b->n == 0) return 0;
    ft_pyval *it = realloc(a->items, (size_t)(a->n + b->n) * sizeof *it);
    if (!it) return -ENOMEM;
    a->items = it;
    for (int i = 0; i < b->n; i++) {
        int rc = ft_pyval_copy(&a->items[a->n], &b->items[i]);
        if (rc) return rc;
        a->n++;
    }
    return 0;
}

/* a = a <op> b, Python semantics; a is replaced, b is left as it is. */
static int binop(pyparser *ps, const char *op, ft_pyval *a, const ft_pyval *b) {
    if (is_num(a) && is_num(b)) {
        ft_pyval r;
        int rc = a->kind != FT_PY_FLOAT && b->kind != FT_PY_FLOAT
                     ? int_op(ps, op, a->i, b->i, &r)
                     : float_op(ps, op, as_double(a), as_double(b), &r);
        if (!rc) *a = r;
        return rc;
    }
    if (!strcmp(op, "+") && a->kind == b->kind &&
        (a->kind == FT_PY_STR || a->kind == FT_PY_TUPLE || a->kind == FT_PY_LIST))
        return concat(a, b);
    return type_err(ps, op, a, b);
}

/* ------------------------------------------------------------------ expressions */

static int parse_expr(pyparser *ps, ft_pyval *out, int depth);
static int parse_factor(pyparser *ps, ft_pyval *out, int depth);

static int parse_seq(pyparser *ps, ft_pyval *out, int depth) {
    char open = *ps->p++, close = open == '(' ? ')' : ']';
    ft_pyval seq = {.kind = open == '(' ? FT_PY_TUPLE : FT_PY_LIST};
    int cap = 0, comma = 0, rc = 0;
    for (;;) {
        skip_blank(ps);
        if (*ps->p == close) {
            ps->p++;
            break;
        }
        if (seq.n > 0 && !comma) {
            rc = perr(ps, "expected ',' or '%c'", close);
            goto fail;
        }
        if (seq.n == cap) {
            cap = cap ? cap * 2 : 4;
            ft_pyval *ni = realloc(seq.items, (size_t)cap * sizeof *ni);
            if (!ni) {
                rc = -ENOMEM;
                goto fail;
            }
            seq.items = ni;
        }
        memset(&seq.items[seq.n], 0, sizeof seq.items[0]);
        if ((rc = parse_expr(ps, &seq.items[seq.n], depth + 1))) goto fail;
        seq.n++;
        skip_blank(ps);
        comma = *ps->p == ',';
        if (comma) ps->p++;
    }
    if (open == '(' && seq.n == 1 && !comma) { /* (x) is just x */
        *out = seq.items[0];
        free(seq.items);
        return 0;
    }
    if (open == '(' && seq.n == 0 && comma) return perr(ps, "bad tuple");
    *out = seq;
    return 0;
fail:
    ft_pyval_free(&seq);
    return rc;
}

static int word_is(const char *p, const char *w) {
    size_t n = strlen(w);
    return strncmp(p, w, n) == 0 && !isalnum((unsigned char)p[n]) && p[n] != '_';
}

static size_t ident_len(const char *p) {
    size_t n = 0;
    if (!isalpha((unsigned char)*p) && *p != '_') return 0;
    while (isalnum((unsigned char)p[n]) || p[n] == '_') n++;
    return n;
}

/* config.<key>: the value the key holds so far (ps->lookup). */
static int parse_ref(pyparser *ps, ft_pyval *out) {
    const char *p = ps->p + 6;
    while (*p == ' ' || *p == '\t') p++;
    p++; /* '.' */
    while (*p == ' ' || *p == '\t') p++;
    size_t n = ident_len(p);
    char key[64];
    if (n == 0 || n >= sizeof key) return perr(ps, "expected config.<key>");
    memcpy(key, p, n);
    key[n] = '\0';
    const ft_pyval *v = NULL;
    if (!ps->lookup) return perr(ps, "config.%s: references to keys are not allowed here", key);
    if (ps->lookup(ps->lookup_ctx, key, &v) || !v)
        return perr(ps, "config.%s is not set yet (only keys set earlier can be used)", key);
    if (ft_pyval_copy(out, v)) return -ENOMEM;
    ps->p = p + n;
    return 0;
}

static int parse_atom(pyparser *ps, ft_pyval *out, int depth) {
    if (depth > PY_MAX_DEPTH) return perr(ps, "value nested too deeply");
    skip_blank(ps);
    const char *p = ps->p;
    if (*p == '\'' || *p == '"') return parse_string(ps, out);
    if (*p == '(' || *p == '[') return parse_seq(ps, out, depth);
    if (isdigit((unsigned char)*p) || (*p == '.' && isdigit((unsigned char)p[1])))
        return parse_number(ps, out, 0);
    static const struct {
        const char *w;
        ft_pykind k;
        int v;
    } words[] = {{"True", FT_PY_BOOL, 1}, {"False", FT_PY_BOOL, 0}, {"None", FT_PY_NONE, 0}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (word_is(p, words[i].w)) {
            memset(out, 0, sizeof *out);
            out->kind = words[i].k;
            out->i = words[i].v;
            ps->p += strlen(words[i].w);
            return 0;
        }
    }
    if (word_is(p, "config")) {
        const char *q = p + 6;
        while (*q == ' ' || *q == '\t') q++;
        if (*q == '.') return parse_ref(ps, out);
    }
    if (*p == '\0') return perr(ps, "missing value");
    size_t n = 0;
    while (p[n] && !isspace((unsigned char)p[n]) && n < 40) n++;
    return perr(ps,
                "not a value: '%.*s' (use numbers, 'strings', True/False/None, tuples, lists, "
                "arithmetic and config.<key>)",
                (int)n, p);
}

/* power: atom ['**' factor] (right-associative; binds tighter than a unary minus on its left) */
static int parse_power(pyparser *ps, ft_pyval *out, int depth) {
    int rc = parse_atom(ps, out, depth);
    if (rc) return rc;
    skip_blank(ps);
    if (ps->p[0] != '*' || ps->p[1] != '*') return 0;
    ps->p += 2;
    ft_pyval e = {0};
    if (!(rc = parse_factor(ps, &e, depth + 1))) rc = binop(ps, "**", out, &e);
    ft_pyval_free(&e);
    return rc;
}

/* factor: ('+' | '-') factor | power */
static int parse_factor(pyparser *ps, ft_pyval *out, int depth) {
    if (depth > PY_MAX_DEPTH) return perr(ps, "value nested too deeply");
    skip_blank(ps);
    char c = *ps->p;
    if (c != '-' && c != '+') return parse_power(ps, out, depth);
    ps->p++;
    int rc = parse_factor(ps, out, depth + 1);
    if (rc) return rc;
    if (!is_num(out)) return type_err(ps, c == '-' ? "-" : "+", out, NULL);
    if (out->kind == FT_PY_BOOL) out->kind = FT_PY_INT;
    if (c == '+') return 0;
    if (out->kind == FT_PY_FLOAT) {
        out->f = -out->f;
    } else {
        if (out->i == INT64_MIN) return perr(ps, "integer too large");
        out->i = -out->i;
    }
    return 0;
}

/* The operator at ps->p among ops (longest first), or NULL. */
static const char *peek_op(pyparser *ps, const char *const *ops, int n) {
    skip_blank(ps);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(ops[i]);
        if (strncmp(ps->p, ops[i], len) == 0 && ps->p[len] != '=') {
            if (!strcmp(ops[i], "*") && ps->p[1] == '*') continue;
            if (!strcmp(ops[i], "/") && ps->p[1] == '/') continue;
            return ops[i];
        }
    }
    return NULL;
}

/* term: factor (('*' | '/' | '//' | '%') factor)* ; sum: term (('+' | '-') term)* */
static int parse_level(pyparser *ps, ft_pyval *out, int depth, int sum) {
    static const char *const sum_ops[] = {"+", "-"}, *const term_ops[] = {"//", "*", "/", "%"};
    int rc = sum ? parse_level(ps, out, depth, 0) : parse_factor(ps, out, depth);
    const char *op;
    while (!rc && (op = sum ? peek_op(ps, sum_ops, 2) : peek_op(ps, term_ops, 4))) {
        ps->p += strlen(op);
        ft_pyval b = {0};
        rc = sum ? parse_level(ps, &b, depth + 1, 0) : parse_factor(ps, &b, depth + 1);
        if (!rc) rc = binop(ps, op, out, &b);
        ft_pyval_free(&b);
    }
    return rc;
}

static int parse_expr(pyparser *ps, ft_pyval *out, int depth) {
    if (depth > PY_MAX_DEPTH) return perr(ps, "value nested too deeply");
    return parse_level(ps, out, depth, 1);
}

int ft_pyval_eval(const char *text, ft_py_lookup_fn lookup, void *ctx, ft_pyval *out, char *err,
                  size_t errcap) {
    pyparser ps = {.p = text, .err = err, .errcap = errcap, .lookup = lookup, .lookup_ctx = ctx};
    memset(out, 0, sizeof *out);
    int rc = parse_expr(&ps, out, 0);
    if (rc) {
        ft_pyval_free(out);
        return rc == -ENOMEM ? perr(&ps, "out of memory") : rc;
    }
    skip_blank(&ps);
    if (*ps.p) {
        ft_pyval_free(out);
        size_t n = ident_len(ps.p);
        if (n || strchr("<>=!&|^~@", *ps.p))
            return perr(&ps,
                        "unsupported syntax at '%.40s' (a value is a literal, arithmetic "
                        "+ - * / // %% ** on numbers, + on strings, tuples or lists, "
                        "parentheses and config.<key>)",
                        ps.p);
        return perr(&ps, "unexpected text after the value: '%.40s'", ps.p);
    }
    return 0;
}

int ft_pyval_parse(const char *text, ft_pyval *out, char *err, size_t errcap) {
    return ft_pyval_eval(text, NULL, NULL, out, err, errcap);
}

/* ------------------------------------------------------------------ printing */

typedef struct outbuf {
    char *p;
    size_t cap, len;
} outbuf;

static void put(outbuf *o, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++, o->len++)
        if (o->len + 1 < o->cap) o->p[o->len] = s[i];
    if (o->cap) o->p[o->len < o->cap ? o->len : o->cap - 1] = '\0';
}
static void puts_(outbuf *o, const char *s) {
    put(o, s, strlen(s));
}

void ft_py_float_repr(double v, char *out, size_t cap) {
    if (isnan(v)) {
        snprintf(out, cap, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(out, cap, v < 0 ? "-inf" : "inf");
        return;
    }
    char sci[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(sci, sizeof sci, "%.*e", prec - 1, v);
        if (strtod(sci, NULL) == v) break;
    }
    /* sci = [-]d[.ddd]e[+-]XX -> digits and decimal exponent */
    const char *s = sci;
    int neg = *s == '-';
    if (neg) s++;
    char digits[24];
    int nd = 0;
    for (; *s && *s != 'e'; s++)
        if (isdigit((unsigned char)*s)) digits[nd++] = *s;
    int e = atoi(s + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    outbuf o = {out, cap, 0};
    if (cap) out[0] = '\0';
    if (neg) puts_(&o, "-");
    int decpt = e + 1; /* value = 0.digits * 10^decpt */
    if (decpt <= -4 || decpt > 16) {
        put(&o, digits, 1);
        if (nd > 1) {
            puts_(&o, ".");
            puts_(&o, digits + 1);
        }
        char ex[16];
        snprintf(ex, sizeof ex, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
        puts_(&o, ex);
    } else if (decpt <= 0) {
        puts_(&o, "0.");
        for (int i = 0; i < -decpt; i++) puts_(&o, "0");
        puts_(&o, digits);
    } else if (decpt >= nd) {
        puts_(&o, digits);
        for (int i = nd; i < decpt; i++) puts_(&o, "0");
        puts_(&o, ".0");
    } else {
        put(&o, digits, (size_t)decpt);
        puts_(&o, ".");
        puts_(&o, digits + decpt);
    }
}

static void str_repr(outbuf *o, const char *s) {
    char q = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
    put(o, &q, 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char esc[8];
        if (*c == '\\' || *c == (unsigned char)q) {
            esc[0] = '\\', esc[1] = (char)*c, esc[2] = '\0';
        } else if (*c == '\n') {
            strcpy(esc, "\\n");
        } else if (*c == '\t') {
            strcpy(esc, "\\t");
        } else if (*c == '\r') {
            strcpy(esc, "\\r");
        } else if (*c < 0x20 || *c == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", *c);
        } else {
            esc[0] = (char)*c, esc[1] = '\0';
        }
        puts_(o, esc);
    }
    put(o, &q, 1);
}

static void fmt_value(outbuf *o, const ft_pyval *v, int repr) {
    char num[40];
    switch (v->kind) {
    case FT_PY_NONE:
        puts_(o, "None");
        break;
    case FT_PY_BOOL:
        puts_(o, v->i ? "True" : "False");
        break;
    case FT_PY_INT:
        snprintf(num, sizeof num, "%lld", (long long)v->i);
        puts_(o, num);
        break;
    case FT_PY_FLOAT:
        ft_py_float_repr(v->f, num, sizeof num);
        puts_(o, num);
        break;
    case FT_PY_STR:
        if (repr)
            str_repr(o, v->s);
        else
            puts_(o, v->s);
        break;
    case FT_PY_TUPLE:
    case FT_PY_LIST:
        puts_(o, v->kind == FT_PY_TUPLE ? "(" : "[");
        for (int i = 0; i < v->n; i++) {
            if (i) puts_(o, ", ");
            fmt_value(o, &v->items[i], 1);
        }
        if (v->kind == FT_PY_TUPLE && v->n == 1) puts_(o, ",");
        puts_(o, v->kind == FT_PY_TUPLE ? ")" : "]");
        break;
    }
}

size_t ft_pyval_str(const ft_pyval *v, char *out, size_t cap) {
    outbuf o = {out, cap, 0};
    if (cap) out[0] = '\0';
    fmt_value(&o, v, 0);
    return o.len;
}

size_t ft_pyval_repr(const ft_pyval *v, char *out, size_t cap) {
    outbuf o = {out, cap, 0};
    if (cap) out[0] = '\0';
    fmt_value(&o, v, 1);
    return o.len;
}
