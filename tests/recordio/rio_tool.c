/* rio_tool: a thin command-line face of the recordio library for test_recordio.py.
 *
 *   rio_tool write REC IDX|-     records from stdin, one per line:
 *                                  raw KEY HEX|-                     payload as given
 *                                  pack KEY LABELS ID ID2 HEX|-      IRHeader + image, where LABELS
 *                                     is s:BITS (scalar) or m:BITS,BITS,... (float32 bits in hex)
 *                                  meta NIMG F0,F1,...,FC            insightface identity + header
 *                                prints "KEY OFFSET" per written record
 *   rio_tool dump REC [START]    sequential scan from START; one JSON line per record
 *   rio_tool dumpidx REC IDX     every .idx line in file order, read by key; JSON lines
 *   rio_tool keys REC IDX        rio_insightface_image_keys as one JSON line
 *   rio_tool prop-read PATH      prints "n,h,w"
 *   rio_tool prop-write PATH N H W
 *
 * dump also checks, for every record, that read_at, extent and rio_decode agree with the scan.
 * Errors: "rio_tool: <library message>" on stderr, exit 1. Usage errors exit 2.
 */
#include "ft_common.h"
#include "recordio.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *msg) {
    fprintf(stderr, "rio_tool: %s\n", msg);
    return 1;
}

static int usage(void) {
    fprintf(stderr, "usage: rio_tool write|dump|dumpidx|keys|prop-read|prop-write ARGS "
                    "(see the comment at the top of rio_tool.c)\n");
    return 2;
}

static int parse_hex(const char *s, uint8_t *out, size_t *n) {
    if (strcmp(s, "-") == 0) {
        *n = 0;
        return 0;
    }
    size_t len = strlen(s);
    if (len % 2) return -1;
    for (size_t i = 0; i < len; i++) {
        int c = s[i], v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0) return -1;
        out[i / 2] = (uint8_t)(i % 2 ? out[i / 2] | v : v << 4);
    }
    *n = len / 2;
    return 0;
}

static void print_hex(const uint8_t *p, size_t n) {
    static const char dig[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) putchar(dig[p[i] >> 4]), putchar(dig[p[i] & 15]);
}

static float bits_to_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* "s:BITS" or "m:BITS,BITS,..." into labels; returns the count (0 for scalar) or -1. */
static int parse_labels(char *s, float *labels, uint32_t max, float *scalar) {
    if (strncmp(s, "s:", 2) == 0) {
        *scalar = bits_to_float((uint32_t)strtoul(s + 2, NULL, 16));
        return 0;
    }
    if (strncmp(s, "m:", 2) != 0) return -1;
    uint32_t n = 0;
    for (char *tok = strtok(s + 2, ","); tok && n < max; tok = strtok(NULL, ","))
        labels[n++] = bits_to_float((uint32_t)strtoul(tok, NULL, 16));
    return (int)n;
}

static int write_meta(rio_writer *w, char *nimg, char *firsts) {
    uint64_t n_images = strtoull(nimg, NULL, 10), cf[4096];
    uint64_t n = 0;
    for (char *tok = strtok(firsts, ","); tok && n < 4096; tok = strtok(NULL, ","))
        cf[n++] = strtoull(tok, NULL, 10);
    if (n == 0) return -1;
    return rio_write_insightface_meta(w, n_images, cf, n - 1);
}

/* One stdin line; returns 0, a library status (< 0) or 2 for a malformed line. */
static int write_line(rio_writer *w, char *line, uint8_t *buf, uint8_t *img, float *labels) {
    char *f[6] = {0};
    int nf = 0;
    for (char *tok = strtok(line, " \n"); tok && nf < 6; tok = strtok(NULL, " \n")) f[nf++] = tok;
    if (nf == 0) return 0;
    uint64_t key = nf > 1 ? strtoull(f[1], NULL, 10) : 0, off = rio_writer_tell(w);
    size_t n;
    int rc;
    if (strcmp(f[0], "raw") == 0 && nf == 3) {
        if (parse_hex(f[2], buf, &n) < 0) return 2;
        rc = rio_writer_write(w, key, buf, n);
    } else if (strcmp(f[0], "pack") == 0 && nf == 6) {
        rio_irheader h = {.id = strtoull(f[3], NULL, 10), .id2 = strtoull(f[4], NULL, 10)};
        int nl = parse_labels(f[2], labels, 1024, &h.label);
        if (nl < 0 || parse_hex(f[5], img, &n) < 0) return 2;
        size_t len = rio_pack(buf, &h, labels, (uint32_t)nl, img, n);
        if (len != rio_pack_size((uint32_t)nl, n)) return 2;
        rc = rio_writer_write(w, key, buf, len);
    } else if (strcmp(f[0], "meta") == 0 && nf == 3) {
        return write_meta(w, f[1], f[2]) < 0 ? -1 : 0;
    } else {
        return 2;
    }
    if (rc == 0) printf("%" PRIu64 " %" PRIu64 "\n", key, off);
    return rc;
}

static int cmd_write(const char *rec, const char *idx) {
    rio_writer *w;
    if (rio_writer_open(&w, rec, strcmp(idx, "-") ? idx : NULL) < 0)
        return fail(rio_writer_errmsg(NULL));
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int rc = 0;
    uint8_t *buf = NULL, *img = NULL;
    float *labels = malloc(1024 * sizeof *labels);
    while (rc == 0 && (got = getline(&line, &cap, stdin)) >= 0) {
        free(buf), free(img);
        buf = malloc((size_t)got + 8192), img = malloc((size_t)got + 1);
        rc = write_line(w, line, buf, img, labels);
    }
    free(line), free(buf), free(img), free(labels);
    if (rc == 2) {
        rio_writer_abort(w);
        return fail("malformed input line");
    }
    if (rc < 0) {
        int r = fail(rio_writer_errmsg(w));
        rio_writer_abort(w);
        return r;
    }
    return rio_writer_close(w) < 0 ? fail(rio_writer_errmsg(NULL)) : 0;
}

static void print_record(const char *keypart, uint64_t off, const uint8_t *p, size_t n,
                         uint64_t extent) {
    printf("{%s\"offset\": %" PRIu64 ", \"extent\": %" PRIu64 ", \"hex\": \"", keypart, off,
           extent);
    print_hex(p, n);
    printf("\", \"irh\": ");
    rio_record r;
    if (rio_unpack(p, n, &r) < 0) {
        printf("null}\n");
        return;
    }
    printf("{\"flag\": %" PRIu32 ", \"label\": %" PRIu32 ", \"id\": %" PRIu64 ", \"id2\": %" PRIu64
           ", \"labels\": [",
           r.h.flag, float_bits(r.h.label), r.h.id, r.h.id2);
    for (uint32_t i = 0; i < r.h.flag; i++)
        printf("%s%" PRIu32, i ? ", " : "", float_bits(rio_record_label(&r, i)));
    printf("], \"label0\": %" PRIu32 ", \"img\": \"", float_bits(rio_record_label(&r, 0)));
    print_hex(r.img, r.img_len);
    printf("\"}}\n");
}

/* The other three access paths must return what the scan returned. fd: the .rec, for the raw
 * bytes that rio_decode gets. */
static int cross_check(rio_reader *r, int fd, uint64_t off, const uint8_t *p, size_t n,
                       uint64_t *extent) {
    uint64_t plen = 0;
    int rc = rio_reader_extent(r, off, extent, &plen);
    if (rc < 0) return fail(rio_reader_errmsg(r));
    if (plen != n) return fail("extent: payload length differs from the scan");
    const uint8_t *q;
    size_t qn;
    if (rio_reader_read_at(r, off, &q, &qn) < 0) return fail(rio_reader_errmsg(r));
    if (qn != n || memcmp(q, p, n)) return fail("read_at differs from the scan");
    uint8_t *raw = malloc(*extent + 1), *dec = malloc(*extent + 1);
    char err[RIO_ERRCAP];
    size_t dn = 0;
    rc = raw && dec ? 0 : fail("out of memory");
    if (rc == 0 && pread(fd, raw, *extent, (off_t)off) != (ssize_t)*extent)
        rc = fail("cannot read the raw record bytes");
    if (rc == 0 && rio_decode(raw, *extent, off, dec, &dn, err, sizeof err) < 0) rc = fail(err);
    if (rc == 0 && (dn != n || memcmp(dec, p, n))) rc = fail("rio_decode differs from the scan");
    free(raw), free(dec);
    return rc;
}

static int cmd_dump(const char *rec, const char *start) {
    rio_reader *r;
    if (rio_reader_open(&r, rec) < 0) return fail(rio_reader_errmsg(NULL));
    int fd = open(rec, O_RDONLY);
    int rc = start ? rio_reader_seek(r, strtoull(start, NULL, 10)) : 0;
    const uint8_t *p;
    size_t n;
    uint64_t off, extent;
    while (rc == 0 && (rc = rio_reader_next(r, &p, &n, &off)) == 1) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, p, n);
        rc = cross_check(r, fd, off, copy, n, &extent);
        if (rc == 0) print_record("", off, copy, n, extent);
        free(copy);
    }
    if (rc < 0) rc = fail(rio_reader_errmsg(r));
    close(fd);
    rio_reader_close(r);
    return rc;
}

static int open_both(const char *rec, const char *idxp, rio_reader **r, rio_index *idx) {
    char err[RIO_ERRCAP];
    if (rio_reader_open(r, rec) < 0) return fail(rio_reader_errmsg(NULL));
    int rc = rio_index_load(idx, idxp, err, sizeof err);
    if (rc == 0) rc = rio_index_validate(idx, rio_reader_size(*r), idxp, err, sizeof err);
    if (rc < 0) {
        rio_index_free(idx);
        rio_reader_close(*r);
        return fail(err);
    }
    return 0;
}

static int cmd_dumpidx(const char *rec, const char *idxp) {
    rio_reader *r;
    rio_index idx;
    if (open_both(rec, idxp, &r, &idx)) return 1;
    int rc = 0;
    for (uint64_t i = 0; i < idx.n && rc == 0; i++) {
        uint64_t off, extent, plen;
        const uint8_t *p;
        size_t n;
        char keypart[64];
        if (rio_index_find(&idx, idx.keys[i], &off) < 0) {
            rc = fail("rio_index_find: key of an index line not found");
            break;
        }
        if (rio_reader_extent(r, off, &extent, &plen) < 0 || rio_reader_read_at(r, off, &p, &n) < 0)
            rc = fail(rio_reader_errmsg(r));
        snprintf(keypart, sizeof keypart, "\"key\": %" PRIu64 ", ", idx.keys[i]);
        if (rc == 0) print_record(keypart, off, p, n, extent);
    }
    rio_index_free(&idx);
    rio_reader_close(r);
    return rc;
}

static int cmd_keys(const char *rec, const char *idxp) {
    rio_reader *r;
    rio_index idx;
    if (open_both(rec, idxp, &r, &idx)) return 1;
    uint64_t *keys, n;
    int has_header;
    char err[RIO_ERRCAP];
    int rc = rio_insightface_image_keys(r, &idx, &keys, &n, &has_header, err, sizeof err);
    if (rc < 0) {
        rc = fail(err);
    } else {
        printf("{\"has_header\": %d, \"keys\": [", has_header);
        for (uint64_t i = 0; i < n; i++) printf("%s%" PRIu64, i ? ", " : "", keys[i]);
        printf("]}\n");
        free(keys);
    }
    rio_index_free(&idx);
    rio_reader_close(r);
    return rc;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "rio_tool",
                            "usage: rio_tool write|dump|dumpidx|keys|prop-read|prop-write ARGS\n"
                            "A command-line face of the recordio library for test_recordio.py.\n"))
        return 0;
    if (argc < 3) return usage();
    const char *cmd = argv[1];
    char err[RIO_ERRCAP];
    if (strcmp(cmd, "write") == 0 && argc == 4) return cmd_write(argv[2], argv[3]);
    if (strcmp(cmd, "dump") == 0 && (argc == 3 || argc == 4))
        return cmd_dump(argv[2], argc == 4 ? argv[3] : NULL);
    if (strcmp(cmd, "dumpidx") == 0 && argc == 4) return cmd_dumpidx(argv[2], argv[3]);
    if (strcmp(cmd, "keys") == 0 && argc == 4) return cmd_keys(argv[2], argv[3]);
    if (strcmp(cmd, "prop-read") == 0 && argc == 3) {
        uint64_t n;
        uint32_t h, w;
        if (rio_property_read(argv[2], &n, &h, &w, err, sizeof err) < 0) return fail(err);
        printf("%" PRIu64 ",%" PRIu32 ",%" PRIu32 "\n", n, h, w);
        return 0;
    }
    if (strcmp(cmd, "prop-write") == 0 && argc == 6) {
        int rc = rio_property_write(argv[2], strtoull(argv[3], NULL, 10),
                                    (uint32_t)strtoul(argv[4], NULL, 10),
                                    (uint32_t)strtoul(argv[5], NULL, 10));
        return rc < 0 ? fail(ft_strerror(rc)) : 0;
    }
    return usage();
}
