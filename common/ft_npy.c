/* ft_npy: see ft_npy.h. */
#include "ft_npy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ft_common.h"

#define NPY_MAGIC     "\x93NUMPY"
#define NPY_MAGIC_LEN 6

static int fail(char *err, size_t cap, int rc, const char *path, const char *why) {
    if (err && cap) snprintf(err, cap, "%s: %s", path, why);
    return rc;
}

int ft_npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols, char *err,
                     size_t errcap) {
    if (!path || rows < 0 || cols < 1 || (rows && !data))
        return fail(err, errcap, FT_EARG, path ? path : "(null)", "bad array arguments");
    if ((uint64_t)rows > (uint64_t)INT64_MAX / 4 / (uint64_t)cols)
        return fail(err, errcap, FT_ERANGE, path, "array too large");
    char dict[160];
    int dl =
        snprintf(dict, sizeof dict,
                 "{'descr': '<f4', 'fortran_order': False, 'shape': (%" PRId64 ", %" PRId64 "), }",
                 rows, cols);
    if (dl < 0 || (size_t)dl >= sizeof dict) return fail(err, errcap, FT_ERANGE, path, "shape");
    /* magic(6) + version(2) + header_len(2) + dict + padding + '\n' = multiple of 64 */
    size_t total = 10 + (size_t)dl + 1;
    total = (total + 63) / 64 * 64;
    size_t hlen = total - 10;
    char head[256];
    memcpy(head, NPY_MAGIC, NPY_MAGIC_LEN);
    head[6] = 1, head[7] = 0;
    head[8] = (char)(hlen & 0xff), head[9] = (char)(hlen >> 8);
    memcpy(head + 10, dict, (size_t)dl);
    memset(head + 10 + dl, ' ', hlen - (size_t)dl - 1);
    head[total - 1] = '\n';

    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) return fail(err, errcap, -ENAMETOOLONG, path, "path");
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        return fail(err, errcap, -e, path, strerror(e));
    }
    int rc = 0;
    if (fwrite(head, 1, total, f) != total) rc = -(errno ? errno : EIO);
    /* float32 on a little-endian host is the '<f4' byte order (facetrain builds for x86-64
     * and aarch64, both little-endian) */
    size_t count = (size_t)rows * (size_t)cols;
    if (!rc && count && fwrite(data, sizeof(float), count, f) != count) rc = -(errno ? errno : EIO);
    if (!rc && (fflush(f) != 0 || ferror(f))) rc = -(errno ? errno : EIO);
    if (!rc && fsync(fileno(f)) != 0) rc = -errno;
    if (fclose(f) != 0 && !rc) rc = -errno;
    if (!rc && rename(tmp, path) != 0) rc = -errno;
    if (rc) {
        unlink(tmp);
        return fail(err, errcap, rc, path, strerror(-rc));
    }
    rc = ft_fsync_parent(path);
    return rc ? fail(err, errcap, rc, path, strerror(-rc)) : 0;
}

/* Find `'key':` in the header dict and return the text after the colon and spaces. */
static const char *dict_value(const char *dict, const char *key) {
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(dict, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

static int parse_dim(const char **pp, int64_t *v) {
    const char *p = *pp;
    while (*p == ' ') p++;
    if (*p < '0' || *p > '9') return -1;
    int64_t x = 0;
    while (*p >= '0' && *p <= '9') {
        if (x > (INT64_MAX - 9) / 10) return -1;
        x = x * 10 + (*p++ - '0');
    }
    while (*p == ' ') p++;
    *pp = p, *v = x;
    return 0;
}

int ft_npy_read_f32(const char *path, float **data, int64_t *rows, int64_t *cols, char *err,
                    size_t errcap) {
    if (!path || !data || !rows || !cols)
        return fail(err, errcap, FT_EARG, path ? path : "(null)", "bad arguments");
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return fail(err, errcap, -e, path, strerror(e));
    }
    int rc = 0;
    char *dict = NULL;
    float *buf = NULL;
    unsigned char pre[12];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
        rc = fail(err, errcap, FT_EFORMAT, path, "not a .npy file (no \\x93NUMPY magic)");
        goto out;
    }
    uint64_t hlen, hstart;
    if (pre[6] == 1) {
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
        hstart = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (fread(pre + 10, 1, 2, f) != 2) {
            rc = fail(err, errcap, FT_ETRUNC, path, "header ends early");
            goto out;
        }
        hlen = ft_rd_le32(pre + 8);
        hstart = 12;
    } else {
        char why[64];
        snprintf(why, sizeof why, ".npy version %u.%u not supported", pre[6], pre[7]);
        rc = fail(err, errcap, FT_EVERSION, path, why);
        goto out;
    }
    if (hlen == 0 || hlen > (1u << 20)) {
        rc = fail(err, errcap, FT_EFORMAT, path, "header length out of range");
        goto out;
    }
    dict = malloc(hlen + 1);
    if (!dict) {
        rc = fail(err, errcap, -ENOMEM, path, "out of memory");
        goto out;
    }
    if (fread(dict, 1, hlen, f) != hlen) {
        rc = fail(err, errcap, FT_ETRUNC, path, "header ends early");
        goto out;
    }
    dict[hlen] = '\0';
    if (strlen(dict) != hlen) {
        rc = fail(err, errcap, FT_EFORMAT, path, "NUL byte in the header");
        goto out;
    }
    const char *d = dict_value(dict, "descr");
    if (!d || strncmp(d, "'<f4'", 5) != 0) {
        rc = fail(err, errcap, FT_EFORMAT, path, "dtype is not little-endian float32 ('<f4')");
        goto out;
    }
    const char *fo = dict_value(dict, "fortran_order");
    if (!fo || strncmp(fo, "False", 5) != 0) {
        rc = fail(err, errcap, FT_EFORMAT, path, "fortran_order is not False");
        goto out;
    }
    const char *s = dict_value(dict, "shape");
    if (!s || *s != '(') {
        rc = fail(err, errcap, FT_EFORMAT, path, "no shape tuple in the header");
        goto out;
    }
    s++;
    int64_t dims[2] = {0, 1};
    int nd = 0;
    while (*s == ' ') s++;
    while (*s != ')') {
        int64_t v;
        if (nd == 2 || parse_dim(&s, &v) != 0) {
            rc = fail(err, errcap, FT_EFORMAT, path, "shape is not a 1-D or 2-D tuple");
            goto out;
        }
        dims[nd++] = v;
        if (*s == ',') s++;
        while (*s == ' ') s++;
        if (!*s) break;
    }
    if (*s != ')' || nd == 0) {
        rc = fail(err, errcap, FT_EFORMAT, path, "shape is not a 1-D or 2-D tuple");
        goto out;
    }
    if (dims[1] == 0 || (uint64_t)dims[0] > (uint64_t)INT64_MAX / 4 / (uint64_t)dims[1]) {
        rc = fail(err, errcap, FT_ERANGE, path, "shape out of range");
        goto out;
    }
    uint64_t bytes = (uint64_t)dims[0] * (uint64_t)dims[1] * 4;
    if (fseeko(f, 0, SEEK_END) != 0) {
        rc = fail(err, errcap, -errno, path, strerror(errno));
        goto out;
    }
    off_t size = ftello(f);
    if (size < 0 || (uint64_t)size != hstart + hlen + bytes) {
        char why[160];
        snprintf(why, sizeof why,
                 "file is %lld bytes, header and shape (%" PRId64 ", %" PRId64 ") say %llu",
                 (long long)size, dims[0], dims[1], (unsigned long long)(hstart + hlen + bytes));
        rc = fail(err, errcap, (uint64_t)size < hstart + hlen + bytes ? FT_ETRUNC : FT_EFORMAT,
                  path, why);
        goto out;
    }
    buf = malloc(bytes ? (size_t)bytes : 1);
    if (!buf) {
        rc = fail(err, errcap, -ENOMEM, path, "out of memory");
        goto out;
    }
    if (fseeko(f, (off_t)(hstart + hlen), SEEK_SET) != 0 ||
        (bytes && fread(buf, 1, (size_t)bytes, f) != bytes)) {
        rc = fail(err, errcap, FT_ETRUNC, path, "data ends early");
        goto out;
    }
    *data = buf, buf = NULL;
    *rows = dims[0], *cols = dims[1];
out:
    free(buf);
    free(dict);
    fclose(f);
    return rc;
}
