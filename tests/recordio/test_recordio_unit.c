/* test_recordio_unit: in-process tests of the recordio library (the Python round trips in
 * test_recordio.py cover format compatibility). Deterministic (fixed seed). Exit 0 pass, 1 fail.
 */
#include "ft_common.h"
#include "recordio.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEED 20240611u

static int failures;
static char dir[256];

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static const char *tpath(const char *name) {
    static char buf[4][512];
    static int i;
    char *p = buf[i++ % 4];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

static void put_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, n, f) == n);
    if (f) fclose(f);
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ------------------------------------------------------------------ random records */

typedef struct rec {
    uint64_t key, off;
    uint8_t *data;
    size_t len;
} rec;

static rec *make_records(size_t n) {
    ft_rng rng;
    ft_rng_seed(&rng, SEED, 1);
    rec *r = calloc(n, sizeof *r);
    uint64_t *perm = malloc(n * sizeof *perm);
    ft_permutation(perm, n, SEED, 2);
    for (size_t i = 0; i < n; i++) {
        size_t len = (size_t)ft_rng_below(&rng, 64);
        if (i % 50 == 7) len = 200000 + (size_t)ft_rng_below(&rng, 300000); /* straddle windows */
        if (i == n / 2) len = (1u << 20) + 1000; /* larger than the read window */
        r[i].key = perm[i] * 3;
        r[i].len = len;
        r[i].data = malloc(len ? len : 1);
        for (size_t j = 0; j < len; j++) r[i].data[j] = (uint8_t)ft_rng_u64(&rng);
        for (size_t j = 0; len >= 4 && j < 3; j++) { /* the magic at aligned spots */
            size_t at = (size_t)ft_rng_below(&rng, len / 4) * 4;
            if (ft_rng_below(&rng, 2)) ft_wr_le32(r[i].data + at, RIO_MAGIC);
        }
    }
    free(perm);
    return r;
}

static void free_records(rec *r, size_t n) {
    for (size_t i = 0; i < n; i++) free(r[i].data);
    free(r);
}

static void test_roundtrip(void) {
    enum { N = 400 };
    rec *r = make_records(N);
    rio_writer *w;
    CHECK(rio_writer_open(&w, tpath("rt.rec"), tpath("rt.idx")) == 0);
    for (size_t i = 0; i < N; i++) {
        r[i].off = rio_writer_tell(w);
        CHECK(rio_writer_write(w, r[i].key, r[i].data, r[i].len) == 0);
    }
    CHECK(!file_exists(tpath("rt.rec"))); /* only the temporary exists before close */
    CHECK(rio_writer_close(w) == 0);

    rio_reader *rd;
    rio_index idx;
    char err[RIO_ERRCAP];
    CHECK(rio_reader_open(&rd, tpath("rt.rec")) == 0);
    CHECK(rio_index_load(&idx, tpath("rt.idx"), err, sizeof err) == 0);
    CHECK(rio_index_validate(&idx, rio_reader_size(rd), "rt.idx", err, sizeof err) == 0);
    CHECK(idx.n == N);
    const uint8_t *p;
    size_t len;
    uint64_t off;
    for (size_t i = 0; i < N; i++) {
        CHECK(rio_reader_next(rd, &p, &len, &off) == 1);
        CHECK(off == r[i].off && len == r[i].len && memcmp(p, r[i].data, len) == 0);
        if (i % 7 == 3) { /* random access in between must not move the scan */
            size_t j = (i * 31) % N;
            uint64_t o, ext, plen;
            CHECK(rio_index_find(&idx, r[j].key, &o) == 0 && o == r[j].off);
            CHECK(rio_reader_read_at(rd, o, &p, &len) == 0);
            CHECK(len == r[j].len && memcmp(p, r[j].data, len) == 0);
            CHECK(rio_reader_extent(rd, o, &ext, &plen) == 0 && plen == r[j].len);
            CHECK(ext == (j + 1 < N ? r[j + 1].off : rio_reader_size(rd)) - o);
        }
    }
    CHECK(rio_reader_next(rd, &p, &len, &off) == 0);
    CHECK(rio_reader_next(rd, &p, &len, &off) == 0); /* EOF is sticky */
    CHECK(rio_reader_seek(rd, r[N - 3].off) == 0);
    CHECK(rio_reader_next(rd, &p, &len, &off) == 1 && off == r[N - 3].off);
    CHECK(rio_reader_seek(rd, rio_reader_size(rd)) == 0);
    CHECK(rio_reader_next(rd, &p, &len, &off) == 0);
    CHECK(rio_reader_seek(rd, 2) == FT_EARG);
    CHECK(rio_reader_seek(rd, rio_reader_size(rd) + 4) == FT_ERANGE);
    CHECK(rio_reader_read_at(rd, rio_reader_size(rd), &p, &len) == FT_ERANGE);
    CHECK(strstr(rio_reader_errmsg(rd), "rt.rec: offset ") != NULL);
    CHECK(rio_index_find(&idx, 1, &off) == FT_ERANGE); /* keys are multiples of 3 */
    rio_index_free(&idx);
    rio_reader_close(rd);
    free_records(r, N);
}

/* ------------------------------------------------------------------ rio_decode */

static void test_decode(void) {
    uint8_t payload[40], raw[128], out[128];
    memset(payload, 'x', sizeof payload);
    ft_wr_le32(payload + 8, RIO_MAGIC);
    ft_wr_le32(payload + 12, RIO_MAGIC);
    rio_writer *w;
    CHECK(rio_writer_open(&w, tpath("dec.rec"), NULL) == 0);
    CHECK(rio_writer_write(w, 0, payload, sizeof payload) == 0);
    uint64_t n = rio_writer_tell(w);
    CHECK(n == 8 + 8 + 8 + 0 + 8 + 24); /* cflag 1 (8 bytes), 2 (empty), 3 (24 bytes) */
    CHECK(rio_writer_close(w) == 0);
    FILE *f = fopen(tpath("dec.rec"), "rb");
    CHECK(f && fread(raw, 1, sizeof raw, f) == n);
    if (f) fclose(f);
    size_t len = 0;
    char err[RIO_ERRCAP];
    CHECK(rio_decode(raw, (size_t)n, 4096, out, &len, err, sizeof err) == 0);
    CHECK(len == sizeof payload && memcmp(out, payload, len) == 0);
    CHECK(rio_decode(raw, (size_t)n - 4, 4096, out, &len, err, sizeof err) == FT_ETRUNC);
    CHECK(strcmp(err, "buffer: offset 4120: segment of 32 bytes (payload 24 + padding) runs past "
                      "the end of the buffer (28 bytes left)") == 0);
    CHECK(rio_decode(raw, 5, 0, out, &len, err, sizeof err) == FT_ETRUNC);
    CHECK(rio_decode(raw + 16, (size_t)n - 16, 16, out, &len, err, sizeof err) == FT_EFORMAT);
    CHECK(strstr(err, "offset 16: cflag 2 (continuation segment) at the start") != NULL);
}

/* ------------------------------------------------------------------ error messages */

static void test_errors(void) {
    uint8_t data[32] = {0};
    ft_wr_le32(data, RIO_MAGIC);
    ft_wr_le32(data + 4, 12);
    put_file(tpath("bad.rec"), data, sizeof data);
    rio_reader *rd;
    const uint8_t *p;
    size_t len;
    uint64_t off;
    CHECK(rio_reader_open(&rd, tpath("bad.rec")) == 0);
    CHECK(rio_reader_next(rd, &p, &len, &off) == 1 && len == 12);
    CHECK(rio_reader_next(rd, &p, &len, &off) == FT_EFORMAT);
    char want[RIO_ERRCAP];
    snprintf(want, sizeof want, "%s: offset 20: bad magic 0x00000000 (expected 0xced7230a)",
             tpath("bad.rec"));
    CHECK(strcmp(rio_reader_errmsg(rd), want) == 0);
    CHECK(rio_reader_next(rd, &p, &len, &off) == FT_EFORMAT); /* the scan stays on the error */
    rio_reader_close(rd);
    rio_reader_close(NULL);

    CHECK(rio_reader_open(&rd, tpath("missing.rec")) == -ENOENT && rd == NULL);
    CHECK(strstr(rio_reader_errmsg(NULL), "missing.rec: cannot open") != NULL);

    /* records of 2^29 bytes or more are refused before any byte is read */
    rio_writer *w;
    CHECK(rio_writer_open(&w, tpath("big.rec"), tpath("big.idx")) == 0);
    CHECK(rio_writer_write(w, 1, data, (size_t)RIO_MAX_LEN + 1) == FT_ERANGE);
    CHECK(strstr(rio_writer_errmsg(w), "smaller than 2^29") != NULL);
    CHECK(rio_writer_write(w, 1, data, 4) == 0); /* still usable */
    CHECK(rio_writer_close(w) == 0);

    /* a close whose rename fails reports through rio_writer_errmsg(NULL), leaves no temps */
    CHECK(mkdir(tpath("isdir.rec"), 0755) == 0);
    CHECK(rio_writer_open(&w, tpath("isdir.rec"), NULL) == 0);
    CHECK(rio_writer_write(w, 0, data, 8) == 0);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", tpath("isdir.rec"), (long)getpid());
    CHECK(file_exists(tmp));
    CHECK(rio_writer_close(w) < 0);
    CHECK(strstr(rio_writer_errmsg(NULL), "isdir.rec: rename failed") != NULL);
    CHECK(!file_exists(tmp));
}

static void test_atomic(void) {
    put_file(tpath("at.rec"), "old", 3);
    put_file(tpath("at.idx"), "old", 3);
    rio_writer *w;
    CHECK(rio_writer_open(&w, tpath("at.rec"), tpath("at.idx")) == 0);
    CHECK(rio_writer_write(w, 5, "abcdef", 6) == 0);
    rio_writer_abort(w);
    rio_writer_abort(NULL);
    uint64_t sz = 0;
    CHECK(ft_file_size(tpath("at.rec"), &sz) == 0 && sz == 3); /* untouched */
    CHECK(ft_file_size(tpath("at.idx"), &sz) == 0 && sz == 3);
    CHECK(rio_writer_open(&w, tpath("at.rec"), tpath("at.idx")) == 0);
    CHECK(rio_writer_write(w, 5, "abcdef", 6) == 0);
    CHECK(rio_writer_close(w) == 0);
    CHECK(ft_file_size(tpath("at.rec"), &sz) == 0 && sz == 16);
    char *text = NULL;
    CHECK(ft_read_file(tpath("at.idx"), &text, NULL) == 0 && strcmp(text, "5\t0\n") == 0);
    free(text);
}

/* ------------------------------------------------------------------ IRHeader */

static void test_irheader(void) {
    uint8_t buf[64];
    rio_irheader h = {.flag = 99, .label = 7.5f, .id = 12, .id2 = 1};
    CHECK(rio_pack(buf, &h, NULL, 0, "img", 3) == 27 && rio_pack_size(0, 3) == 27);
    rio_record r;
    CHECK(rio_unpack(buf, 27, &r) == 0);
    CHECK(r.h.flag == 0 && r.h.label == 7.5f && r.h.id == 12 && r.h.id2 == 1);
    CHECK(r.labels == NULL && r.img_len == 3 && memcmp(r.img, "img", 3) == 0);
    CHECK(rio_record_label(&r, 0) == 7.5f && isnan(rio_record_label(&r, 1)));
    float labels[3] = {1.0f, -2.5f, 16777216.0f};
    CHECK(rio_pack(buf, &h, labels, 3, NULL, 0) == 36 && rio_pack_size(3, 0) == 36);
    CHECK(rio_unpack(buf, 36, &r) == 0 && r.h.flag == 3 && r.h.label == 0.0f && r.img_len == 0);
    CHECK(rio_record_label(&r, 1) == -2.5f && rio_record_label(&r, 2) == 16777216.0f);
    CHECK(isnan(rio_record_label(&r, 3)));
    CHECK(rio_unpack(buf, 35, &r) == FT_ETRUNC); /* labels cut short */
    CHECK(rio_unpack(buf, 23, &r) == FT_ETRUNC);
    ft_wr_le32(buf, 0xFFFFFFFFu); /* a flag whose label bytes would overflow 32 bits */
    CHECK(rio_unpack(buf, 36, &r) == FT_ETRUNC);
}

/* ------------------------------------------------------------------ .idx */

static void test_index(void) {
    const char *text = "7\t0\n3\t16\n7\t32\n0\t48  \r\n\n\n";
    put_file(tpath("d.idx"), text, strlen(text));
    rio_index idx;
    char err[RIO_ERRCAP];
    uint64_t off;
    CHECK(rio_index_load(&idx, tpath("d.idx"), err, sizeof err) == 0);
    CHECK(idx.n == 4 && idx.keys[2] == 7 && idx.offsets[3] == 48);
    CHECK(rio_index_find(&idx, 7, &off) == 0 && off == 32); /* the later line wins */
    CHECK(rio_index_find(&idx, 0, &off) == 0 && off == 48);
    CHECK(rio_index_find(&idx, 4, &off) == FT_ERANGE);
    CHECK(rio_index_validate(&idx, 56, "d.idx", err, sizeof err) == 0);
    CHECK(rio_index_validate(&idx, 55, "d.idx", err, sizeof err) == FT_ERANGE);
    CHECK(strncmp(err, "d.idx:4: key 0: offset 48 is past the end", 41) == 0);
    rio_index_free(&idx);
    put_file(tpath("e.idx"), "", 0);
    CHECK(rio_index_load(&idx, tpath("e.idx"), err, sizeof err) == 0 && idx.n == 0);
    CHECK(rio_index_find(&idx, 0, &off) == FT_ERANGE);
    rio_index_free(&idx);
    put_file(tpath("f.idx"), "1\t0\n2\t+4\n", 9);
    CHECK(rio_index_load(&idx, tpath("f.idx"), err, sizeof err) == FT_EFORMAT);
    CHECK(strstr(err, "f.idx:2: offset is not a decimal number") != NULL);
    CHECK(idx.n == 0 && idx.keys == NULL);
}

/* ------------------------------------------------------------------ insightface + property */

static void test_insightface(void) {
    rio_writer *w;
    uint64_t first[] = {1, 3, 3, 6}; /* classes of 2, 0 and 3 images */
    CHECK(rio_writer_open(&w, tpath("if.rec"), tpath("if.idx")) == 0);
    uint64_t big[] = {1, (1u << 24) + 1};
    CHECK(rio_write_insightface_meta(w, 1u << 24, big, 1) == FT_ERANGE);
    CHECK(strstr(rio_writer_errmsg(w), "below 2^24") != NULL);
    uint64_t bad[] = {1, 4, 3, 6};
    CHECK(rio_write_insightface_meta(w, 5, bad, 3) == FT_EARG);
    for (uint64_t k = 1; k <= 5; k++) {
        uint8_t buf[64];
        rio_irheader h = {.label = (float)(k > 2), .id = k};
        CHECK(rio_writer_write(w, k, buf, rio_pack(buf, &h, NULL, 0, "jp", 2)) == 0);
    }
    CHECK(rio_write_insightface_meta(w, 5, first, 3) == 0);
    CHECK(rio_writer_close(w) == 0);
    rio_reader *rd;
    rio_index idx;
    char err[RIO_ERRCAP];
    CHECK(rio_reader_open(&rd, tpath("if.rec")) == 0);
    CHECK(rio_index_load(&idx, tpath("if.idx"), err, sizeof err) == 0 && idx.n == 9);
    CHECK(idx.keys[8] == 0 && idx.keys[5] == 6 && idx.keys[7] == 8);
    uint64_t *keys = NULL, n = 0;
    int has_header = -1;
    CHECK(rio_insightface_image_keys(rd, &idx, &keys, &n, &has_header, err, sizeof err) == 0);
    CHECK(has_header == 1 && n == 5 && keys && keys[0] == 1 && keys[4] == 5);
    free(keys);
    uint64_t off;
    const uint8_t *p = NULL;
    size_t len = 0;
    rio_record r;
    CHECK(rio_index_find(&idx, 7, &off) == 0 && rio_reader_read_at(rd, off, &p, &len) == 0);
    CHECK(rio_unpack(p, len, &r) == 0 && r.h.flag == 2);
    CHECK(rio_record_label(&r, 0) == 3.0f && rio_record_label(&r, 1) == 3.0f); /* empty class */
    rio_index_free(&idx);
    rio_reader_close(rd);
}

static void test_property(void) {
    uint64_t n;
    uint32_t h, w;
    char err[RIO_ERRCAP];
    CHECK(rio_property_write(tpath("property"), 360232, 112, 96) == 0);
    CHECK(rio_property_read(tpath("property"), &n, &h, &w, err, sizeof err) == 0);
    CHECK(n == 360232 && h == 112 && w == 96);
    put_file(tpath("p2"), "12,112,112\r\n", 12);
    CHECK(rio_property_read(tpath("p2"), &n, &h, &w, err, sizeof err) == 0 && n == 12);
    put_file(tpath("p3"), "12,112,0\n", 9);
    CHECK(rio_property_read(tpath("p3"), &n, &h, &w, err, sizeof err) == FT_EFORMAT);
    CHECK(strstr(err, "p3:1: expected") != NULL);
    CHECK(rio_property_read(tpath("p4"), &n, &h, &w, err, sizeof err) == -ENOENT);
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "test_recordio_unit",
                            "usage: test_recordio_unit\n"
                            "In-process tests of the recordio library.\n"))
        return 0;
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/ft-rio-unit-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_roundtrip();
    test_decode();
    test_errors();
    test_atomic();
    test_irheader();
    test_index();
    test_insightface();
    test_property();
    ft_rm_rf(dir);
    printf("test_recordio_unit: seed %u, %d failure(s)\n", SEED, failures);
    return failures ? 1 : 0;
}
