/* ft_verbin.c: verification .bin (pickle) reader and writer; see ft_verbin.h and
 * docs/formats.md section 3.2.
 *
 * The reader is a small pickle machine restricted to the opcodes such files use. It keeps a
 * value stack, a memo and a table of lists; byte strings are (pointer, length) views into the
 * file buffer, except protocol 2's _codecs.encode(str, 'latin1') form, which is decoded into
 * separately owned memory.
 */
#include "ft_verbin.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ pickle opcodes */
enum {
    OP_PROTO = 0x80,
    OP_FRAME = 0x95,
    OP_STOP = 0x2E,
    OP_MARK = 0x28,
    OP_EMPTY_LIST = 0x5D,
    OP_APPEND = 0x61,
    OP_APPENDS = 0x65,
    OP_TUPLE = 0x74,
    OP_TUPLE2 = 0x86,
    OP_BINSTRING = 0x54,
    OP_SHORT_BINSTRING = 0x55,
    OP_BINBYTES = 0x42,
    OP_SHORT_BINBYTES = 0x43,
    OP_BINBYTES8 = 0x8E,
    OP_BINUNICODE = 0x58,
    OP_SHORT_BINUNICODE = 0x8C,
    OP_BINPUT = 0x71,
    OP_LONG_BINPUT = 0x72,
    OP_MEMOIZE = 0x94,
    OP_BINGET = 0x68,
    OP_LONG_BINGET = 0x6A,
    OP_NEWTRUE = 0x88,
    OP_NEWFALSE = 0x89,
    OP_BININT = 0x4A,
    OP_BININT1 = 0x4B,
    OP_GLOBAL = 0x63,
    OP_REDUCE = 0x52,
};

#define BATCH 1000 /* items per MARK ... APPENDS batch, as pickle writes them */

/* ------------------------------------------------------------------ reader state */
enum { PK_MARK = 1, PK_BYTES, PK_STR, PK_INT, PK_BOOL, PK_LIST, PK_TUPLE, PK_ENCODE };

typedef struct pk_obj {
    uint8_t kind;
    const uint8_t *p; /* PK_BYTES, PK_STR: data */
    uint64_t n;       /* PK_BYTES, PK_STR: length; PK_INT, PK_BOOL: value; PK_LIST/TUPLE: id */
} pk_obj;

typedef struct pk_list {
    pk_obj *items;
    size_t n, cap;
} pk_list;

typedef struct pk_state {
    const uint8_t *buf;
    size_t len, pos;
    const char *name;
    char *err;
    size_t errcap;
    pk_obj *stack; /* value stack, MARKs included */
    size_t sp, scap;
    pk_obj *memo;
    size_t nmemo, mcap;
    pk_list *lists; /* lists and tuples, by id */
    size_t nlists, lcap;
    uint8_t **owned; /* bytes decoded from latin-1 strings */
    size_t nowned, ocap;
} pk_state;

typedef struct verbin_store {
    uint8_t *file;
    uint8_t **owned;
    size_t nowned;
} verbin_store;

static int pk_fail(pk_state *s, size_t off, int rc, const char *fmt, ...) {
    if (s->errcap == 0) return rc;
    int n = snprintf(s->err, s->errcap, "%s: offset %zu: ", s->name, off);
    if (n >= 0 && (size_t)n < s->errcap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->err + n, s->errcap - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Grow *arr (element size `sz`) so that it holds at least `need` elements. */
static int grow(void **arr, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    void *p = realloc(*arr, nc * sz);
    if (!p) return -ENOMEM;
    *arr = p;
    *cap = nc;
    return 0;
}

static int push(pk_state *s, pk_obj o) {
    if (grow((void **)&s->stack, &s->scap, s->sp + 1, sizeof(pk_obj))) return -ENOMEM;
    s->stack[s->sp++] = o;
    return 0;
}

static int new_list(pk_state *s, uint8_t kind, pk_obj *out) {
    if (grow((void **)&s->lists, &s->lcap, s->nlists + 1, sizeof(pk_list))) return -ENOMEM;
    memset(&s->lists[s->nlists], 0, sizeof(pk_list));
    out->kind = kind;
    out->p = NULL;
    out->n = s->nlists++;
    return 0;
}

static int list_add(pk_state *s, uint64_t id, const pk_obj *items, size_t n) {
    if (n == 0) return 0; /* an empty MARK ... APPENDS: the list may have no storage yet */
    pk_list *l = &s->lists[id];
    if (grow((void **)&l->items, &l->cap, l->n + n, sizeof(pk_obj))) return -ENOMEM;
    memcpy(l->items + l->n, items, n * sizeof(pk_obj));
    l->n += n;
    return 0;
}

/* Index of the topmost MARK on the stack, or -1. */
static long find_mark(const pk_state *s) {
    for (size_t i = s->sp; i > 0; i--)
        if (s->stack[i - 1].kind == PK_MARK) return (long)(i - 1);
    return -1;
}

static uint64_t rd_len(const uint8_t *p, int width) {
    return width == 1 ? p[0] : width == 4 ? ft_rd_le32(p) : ft_rd_le64(p);
}

/* ------------------------------------------------------------------ opcode handlers */

/* BINSTRING, SHORT_BINSTRING, BINBYTES, SHORT_BINBYTES, BINBYTES8, BINUNICODE, SHORT_BINUNICODE:
 * a `width`-byte little-endian length, then the data. */
static int op_string(pk_state *s, size_t off, int width, uint8_t kind) {
    if (s->len - s->pos < (size_t)width)
        return pk_fail(s, off, FT_ETRUNC, "truncated string length");
    uint64_t n = rd_len(s->buf + s->pos, width);
    s->pos += (size_t)width;
    if (width == 4 && n > INT32_MAX)
        return pk_fail(s, off, FT_EFORMAT, "string length %llu too large", (unsigned long long)n);
    if (n > s->len - s->pos)
        return pk_fail(s, off, FT_ETRUNC, "string of %llu bytes runs past the end of the file",
                       (unsigned long long)n);
    pk_obj o = {kind, s->buf + s->pos, n};
    s->pos += (size_t)n;
    return push(s, o);
}

static int op_put(pk_state *s, size_t off, uint64_t idx) {
    if (s->sp == 0 || s->stack[s->sp - 1].kind == PK_MARK)
        return pk_fail(s, off, FT_EFORMAT, "memo put with no value on the stack");
    if (idx > s->nmemo)
        return pk_fail(s, off, FT_EFORMAT, "memo index %llu skips ahead (memo holds %zu)",
                       (unsigned long long)idx, s->nmemo);
    if (idx == s->nmemo) {
        if (grow((void **)&s->memo, &s->mcap, s->nmemo + 1, sizeof(pk_obj))) return -ENOMEM;
        s->nmemo++;
    }
    s->memo[idx] = s->stack[s->sp - 1];
    return 0;
}

static int op_get(pk_state *s, size_t off, uint64_t idx) {
    if (idx >= s->nmemo)
        return pk_fail(s, off, FT_EFORMAT, "memo index %llu not defined", (unsigned long long)idx);
    return push(s, s->memo[idx]);
}

/* APPEND (batch of one) and APPENDS (items above the topmost MARK). */
static int op_append(pk_state *s, size_t off, int many) {
    size_t first, lpos;
    if (many) {
        long m = find_mark(s);
        if (m < 1) return pk_fail(s, off, FT_EFORMAT, "APPENDS without MARK and list");
        first = (size_t)m + 1;
        lpos = (size_t)m - 1;
    } else {
        if (s->sp < 2) return pk_fail(s, off, FT_EFORMAT, "APPEND with too few values");
        first = s->sp - 1;
        lpos = s->sp - 2;
    }
    if (s->stack[lpos].kind != PK_LIST) return pk_fail(s, off, FT_EFORMAT, "append to a non-list");
    for (size_t i = first; i < s->sp; i++)
        if (s->stack[i].kind == PK_MARK) return pk_fail(s, off, FT_EFORMAT, "stray MARK");
    int rc = list_add(s, s->stack[lpos].n, s->stack + first, s->sp - first);
    if (rc) return rc;
    s->sp = lpos + 1;
    return 0;
}

/* TUPLE (items above the topmost MARK) and TUPLE2. */
static int op_tuple(pk_state *s, size_t off, int from_mark) {
    size_t first;
    if (from_mark) {
        long m = find_mark(s);
        if (m < 0) return pk_fail(s, off, FT_EFORMAT, "TUPLE without MARK");
        first = (size_t)m + 1;
    } else {
        if (s->sp < 2) return pk_fail(s, off, FT_EFORMAT, "TUPLE2 with too few values");
        first = s->sp - 2;
    }
    for (size_t i = first; i < s->sp; i++)
        if (s->stack[i].kind == PK_MARK) return pk_fail(s, off, FT_EFORMAT, "stray MARK");
    pk_obj t;
    int rc = new_list(s, PK_TUPLE, &t);
    if (!rc) rc = list_add(s, t.n, s->stack + first, s->sp - first);
    if (rc) return rc;
    s->sp = from_mark ? first - 1 : first;
    return push(s, t);
}

/* GLOBAL: only `_codecs encode`, which protocol 2 uses to carry bytes from Python 3. */
static int op_global(pk_state *s, size_t off) {
    static const char want[] = "_codecs\nencode\n";
    size_t n = sizeof want - 1;
    if (s->len - s->pos >= n && memcmp(s->buf + s->pos, want, n) == 0) {
        s->pos += n;
        pk_obj o = {PK_ENCODE, NULL, 0};
        return push(s, o);
    }
    return pk_fail(s, off, FT_EFORMAT, "unsupported GLOBAL (only _codecs.encode is read)");
}

/* UTF-8 text whose code points are all < 256 -> those bytes (latin-1). */
static int latin1_from_utf8(const uint8_t *p, size_t n, uint8_t *out, size_t *outlen) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x80) {
            out[k++] = p[i];
        } else if ((p[i] == 0xC2 || p[i] == 0xC3) && i + 1 < n && (p[i + 1] & 0xC0) == 0x80) {
            out[k++] = (uint8_t)((p[i] & 0x03) << 6 | (p[i + 1] & 0x3F));
            i++;
        } else {
            return -1;
        }
    }
    *outlen = k;
    return 0;
}

/* REDUCE of _codecs.encode(str, 'latin1') -> bytes. */
static int op_reduce(pk_state *s, size_t off) {
    if (s->sp < 2 || s->stack[s->sp - 2].kind != PK_ENCODE || s->stack[s->sp - 1].kind != PK_TUPLE)
        return pk_fail(s, off, FT_EFORMAT, "unsupported REDUCE (only _codecs.encode is read)");
    const pk_list *args = &s->lists[s->stack[s->sp - 1].n];
    if (args->n != 2 || args->items[0].kind != PK_STR || args->items[1].kind != PK_STR ||
        args->items[1].n != 6 || memcmp(args->items[1].p, "latin1", 6) != 0)
        return pk_fail(s, off, FT_EFORMAT,
                       "_codecs.encode with arguments other than (str, 'latin1')");
    const pk_obj *str = &args->items[0];
    if (grow((void **)&s->owned, &s->ocap, s->nowned + 1, sizeof(uint8_t *))) return -ENOMEM;
    uint8_t *b = malloc(str->n ? str->n : 1);
    if (!b) return -ENOMEM;
    s->owned[s->nowned++] = b;
    size_t blen = 0;
    if (latin1_from_utf8(str->p, str->n, b, &blen))
        return pk_fail(s, off, FT_EFORMAT, "encoded string is not latin-1 text");
    s->sp -= 2;
    pk_obj o = {PK_BYTES, b, blen};
    return push(s, o);
}

static int op_fixed(pk_state *s, size_t off, size_t n, const uint8_t **p) {
    if (s->len - s->pos < n) return pk_fail(s, off, FT_ETRUNC, "truncated opcode argument");
    *p = s->buf + s->pos;
    s->pos += n;
    return 0;
}

/* One opcode with a fixed-size argument (or none). *handled = 0 if `op` is not one of them. */
static int step_simple(pk_state *s, size_t off, uint8_t op, int *handled) {
    const uint8_t *a = NULL;
    int rc = 0;
    pk_obj o = {0, NULL, 0};
    *handled = 1;
    switch (op) {
    case OP_PROTO:
        if ((rc = op_fixed(s, off, 1, &a))) return rc;
        if (a[0] < 2 || a[0] > 5)
            return pk_fail(s, off, FT_EFORMAT, "unsupported pickle protocol %d (2 to 5 are read)",
                           a[0]);
        return 0;
    case OP_FRAME:
        if ((rc = op_fixed(s, off, 8, &a))) return rc;
        if (ft_rd_le64(a) > s->len - s->pos)
            return pk_fail(s, off, FT_ETRUNC, "frame runs past the end of the file");
        return 0;
    case OP_MARK:
        o.kind = PK_MARK;
        return push(s, o);
    case OP_EMPTY_LIST:
        return (rc = new_list(s, PK_LIST, &o)) ? rc : push(s, o);
    case OP_NEWTRUE:
    case OP_NEWFALSE:
        o.kind = PK_BOOL, o.n = op == OP_NEWTRUE;
        return push(s, o);
    case OP_BININT1:
        if ((rc = op_fixed(s, off, 1, &a))) return rc;
        o.kind = PK_INT, o.n = a[0];
        return push(s, o);
    case OP_BININT:
        if ((rc = op_fixed(s, off, 4, &a))) return rc;
        o.kind = PK_INT, o.n = (uint64_t)(int64_t)(int32_t)ft_rd_le32(a);
        return push(s, o);
    case OP_BINPUT:
        return (rc = op_fixed(s, off, 1, &a)) ? rc : op_put(s, off, a[0]);
    case OP_LONG_BINPUT:
        return (rc = op_fixed(s, off, 4, &a)) ? rc : op_put(s, off, ft_rd_le32(a));
    case OP_MEMOIZE:
        return op_put(s, off, s->nmemo);
    case OP_BINGET:
        return (rc = op_fixed(s, off, 1, &a)) ? rc : op_get(s, off, a[0]);
    case OP_LONG_BINGET:
        return (rc = op_fixed(s, off, 4, &a)) ? rc : op_get(s, off, ft_rd_le32(a));
    default:
        *handled = 0;
        return 0;
    }
}

static int step(pk_state *s, size_t off, uint8_t op) {
    int handled = 0;
    int rc = step_simple(s, off, op, &handled);
    if (handled) return rc;
    switch (op) {
    case OP_SHORT_BINSTRING:
    case OP_SHORT_BINBYTES:
        return op_string(s, off, 1, PK_BYTES);
    case OP_BINSTRING:
    case OP_BINBYTES:
        return op_string(s, off, 4, PK_BYTES);
    case OP_BINBYTES8:
        return op_string(s, off, 8, PK_BYTES);
    case OP_SHORT_BINUNICODE:
        return op_string(s, off, 1, PK_STR);
    case OP_BINUNICODE:
        return op_string(s, off, 4, PK_STR);
    case OP_APPEND:
        return op_append(s, off, 0);
    case OP_APPENDS:
        return op_append(s, off, 1);
    case OP_TUPLE:
        return op_tuple(s, off, 1);
    case OP_TUPLE2:
        return op_tuple(s, off, 0);
    case OP_GLOBAL:
        return op_global(s, off);
    case OP_REDUCE:
        return op_reduce(s, off);
    default:
        return pk_fail(s, off, FT_EFORMAT, "unsupported pickle opcode 0x%02X", op);
    }
}

/* ------------------------------------------------------------------ result */

/* The single value left at STOP must be (list of bytes, list of bools or 0/1 ints), with
 * twice as many images as flags. Fills out->img/img_len/issame. */
static int pk_result(pk_state *s, size_t off, ft_verbin *out) {
    if (s->sp != 1 || s->stack[0].kind != PK_TUPLE || s->lists[s->stack[0].n].n != 2)
        return pk_fail(s, off, FT_EFORMAT, "top value is not a (bins, issame_list) pair");
    const pk_obj *t = s->lists[s->stack[0].n].items;
    if (t[0].kind != PK_LIST || t[1].kind != PK_LIST)
        return pk_fail(s, off, FT_EFORMAT, "bins or issame_list is not a list");
    const pk_list *bins = &s->lists[t[0].n], *same = &s->lists[t[1].n];
    if (bins->n != 2 * same->n)
        return pk_fail(s, off, FT_EFORMAT, "%zu images for %zu pairs (need 2 per pair)", bins->n,
                       same->n);
    size_t np = same->n;
    out->img = calloc(bins->n ? bins->n : 1, sizeof(uint8_t *));
    out->img_len = calloc(bins->n ? bins->n : 1, sizeof(size_t));
    out->issame = calloc(np ? np : 1, 1);
    if (!out->img || !out->img_len || !out->issame) return -ENOMEM;
    for (size_t i = 0; i < bins->n; i++) {
        if (bins->items[i].kind != PK_BYTES)
            return pk_fail(s, off, FT_EFORMAT, "bins[%zu] is not a byte string", i);
        out->img[i] = (uint8_t *)bins->items[i].p;
        out->img_len[i] = (size_t)bins->items[i].n;
    }
    for (size_t i = 0; i < np; i++) {
        const pk_obj *o = &same->items[i];
        if ((o->kind != PK_BOOL && o->kind != PK_INT) || o->n > 1)
            return pk_fail(s, off, FT_EFORMAT, "issame_list[%zu] is not a bool or 0/1", i);
        out->issame[i] = (uint8_t)o->n;
    }
    out->n_pairs = np;
    return 0;
}

static void pk_state_free(pk_state *s) {
    for (size_t i = 0; i < s->nlists; i++) free(s->lists[i].items);
    free(s->lists);
    free(s->stack);
    free(s->memo);
}

/* Parse `buf` (taking ownership of it) into *out. */
static int parse_owned(uint8_t *buf, size_t len, const char *name, ft_verbin *out, char *err,
                       size_t errcap) {
    pk_state s;
    memset(&s, 0, sizeof s);
    s.buf = buf, s.len = len, s.name = name, s.err = err, s.errcap = errcap;
    memset(out, 0, sizeof *out);
    int rc = 0, stopped = 0;
    if (len < 2 || buf[0] != OP_PROTO)
        rc = pk_fail(&s, 0, FT_EFORMAT, "not a pickle (protocol 2 or later) file");
    size_t off = 0;
    while (!rc && !stopped) {
        off = s.pos;
        if (s.pos >= s.len) {
            rc = pk_fail(&s, off, FT_ETRUNC, "file ends before STOP");
            break;
        }
        uint8_t op = s.buf[s.pos++];
        if (op == OP_STOP)
            stopped = 1;
        else
            rc = step(&s, off, op);
    }
    if (!rc && s.pos != s.len) rc = pk_fail(&s, s.pos, FT_EFORMAT, "data after STOP");
    if (!rc) rc = pk_result(&s, off, out);
    verbin_store *st = rc ? NULL : malloc(sizeof *st);
    if (!rc && !st) rc = -ENOMEM;
    if (rc == -ENOMEM) pk_fail(&s, off, rc, "out of memory");
    if (rc) {
        free(out->img), free(out->img_len), free(out->issame);
        memset(out, 0, sizeof *out);
        for (size_t i = 0; i < s.nowned; i++) free(s.owned[i]);
        free(s.owned);
        free(buf);
    } else {
        st->file = buf, st->owned = s.owned, st->nowned = s.nowned;
        out->priv = st;
    }
    pk_state_free(&s);
    return rc;
}

int ft_verbin_parse(const uint8_t *buf, size_t len, const char *name, ft_verbin *out, char *err,
                    size_t errcap) {
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) {
        memset(out, 0, sizeof *out);
        if (errcap) snprintf(err, errcap, "%s: out of memory", name);
        return -ENOMEM;
    }
    if (len) memcpy(copy, buf, len);
    return parse_owned(copy, len, name, out, err, errcap);
}

int ft_verbin_read(const char *path, ft_verbin *out, char *err, size_t errcap) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    struct stat st;
    int rc = !f || fstat(fileno(f), &st) != 0 ? -errno : 0;
    size_t size = rc ? 0 : (size_t)st.st_size;
    uint8_t *buf = NULL;
    if (!rc && !(buf = malloc(size + 1))) rc = -ENOMEM;
    if (!rc && size && fread(buf, 1, size, f) != size) rc = ferror(f) ? -EIO : FT_ETRUNC;
    if (f) fclose(f);
    if (rc) {
        free(buf);
        if (errcap) snprintf(err, errcap, "%s: %s", path, ft_strerror(rc));
        return rc;
    }
    return parse_owned(buf, size, path, out, err, errcap);
}

void ft_verbin_free(ft_verbin *v) {
    if (!v) return;
    verbin_store *st = v->priv;
    if (st) {
        for (size_t i = 0; i < st->nowned; i++) free(st->owned[i]);
        free(st->owned);
        free(st->file);
        free(st);
    }
    free(v->img);
    free(v->img_len);
    free(v->issame);
    memset(v, 0, sizeof *v);
}

/* ------------------------------------------------------------------ writer */

static void put_memo(FILE *f, uint64_t idx) {
    uint8_t b[5];
    if (idx < 256) {
        b[0] = OP_BINPUT, b[1] = (uint8_t)idx;
        fwrite(b, 1, 2, f);
    } else {
        b[0] = OP_LONG_BINPUT;
        ft_wr_le32(b + 1, (uint32_t)idx);
        fwrite(b, 1, 5, f);
    }
}

static void put_string(FILE *f, const uint8_t *p, size_t n) {
    uint8_t b[5];
    if (n < 256) {
        b[0] = OP_SHORT_BINSTRING, b[1] = (uint8_t)n;
        fwrite(b, 1, 2, f);
    } else {
        b[0] = OP_BINSTRING;
        ft_wr_le32(b + 1, (uint32_t)n);
        fwrite(b, 1, 5, f);
    }
    if (n) fwrite(p, 1, n, f);
}

/* The pickle stream itself, as Python 2's pickle protocol 2 writes a (list, list) tuple. */
static void write_stream(FILE *f, const ft_verbin *v) {
    uint64_t memo = 0, nimg = 2 * v->n_pairs;
    fputc(OP_PROTO, f), fputc(2, f);
    fputc(OP_EMPTY_LIST, f), put_memo(f, memo++);
    for (uint64_t b = 0; b < nimg; b += BATCH) {
        uint64_t n = nimg - b < BATCH ? nimg - b : BATCH;
        if (n > 1) fputc(OP_MARK, f);
        for (uint64_t i = b; i < b + n; i++) {
            put_string(f, v->img[i], v->img_len[i]);
            put_memo(f, memo++);
        }
        fputc(n > 1 ? OP_APPENDS : OP_APPEND, f);
    }
    fputc(OP_EMPTY_LIST, f), put_memo(f, memo++);
    for (uint64_t b = 0; b < v->n_pairs; b += BATCH) {
        uint64_t n = v->n_pairs - b < BATCH ? v->n_pairs - b : BATCH;
        if (n > 1) fputc(OP_MARK, f);
        for (uint64_t i = b; i < b + n; i++) fputc(v->issame[i] ? OP_NEWTRUE : OP_NEWFALSE, f);
        fputc(n > 1 ? OP_APPENDS : OP_APPEND, f);
    }
    fputc(OP_TUPLE2, f), put_memo(f, memo++);
    fputc(OP_STOP, f);
}

int ft_verbin_write(const char *path, const ft_verbin *v) {
    if (!path || !v || (v->n_pairs && (!v->img || !v->img_len || !v->issame))) return FT_EARG;
    if (v->n_pairs > (UINT32_MAX - 3) / 2) return FT_ERANGE;
    for (uint64_t i = 0; i < 2 * v->n_pairs; i++) {
        if (v->img_len[i] > INT32_MAX) return FT_ERANGE;
        if (v->img_len[i] && !v->img[i]) return FT_EARG;
    }
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) return -ENAMETOOLONG;
    FILE *f = fopen(tmp, "wb");
    if (!f) return -errno;
    write_stream(f, v);
    int rc = fflush(f) != 0 || ferror(f) ? -(errno ? errno : EIO) : 0;
    if (!rc && fsync(fileno(f)) != 0) rc = -errno;
    if (fclose(f) != 0 && !rc) rc = -errno;
    if (!rc && rename(tmp, path) != 0) rc = -errno;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    return ft_fsync_parent(path);
}
