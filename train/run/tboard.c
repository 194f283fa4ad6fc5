/* tboard.c: TensorBoard event writer; see tboard.h. */
#include "tboard.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "ft_common.h"

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t ft_crc32c(const void *data, size_t len) {
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = data;
    uint32_t c = 0xFFFFFFFFu;
    while (len >= 8) {
        uint32_t lo = c ^ ft_rd_le32(p), hi = ft_rd_le32(p + 4);
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
            crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^
            crc_table[2][(hi >> 8) & 0xff] ^ crc_table[1][(hi >> 16) & 0xff] ^
            crc_table[0][hi >> 24];
        p += 8, len -= 8;
    }
    while (len--) c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
    return c ^ 0xFFFFFFFFu;
}

uint32_t ft_crc32c_masked(const void *data, size_t len) {
    uint32_t c = ft_crc32c(data, len);
    return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

/* ------------------------------------------------------------------ protobuf pieces */

typedef struct pb {
    uint8_t *p;
    size_t cap, len;
} pb;

static void pb_byte(pb *b, uint8_t v) {
    if (b->len < b->cap) b->p[b->len] = v;
    b->len++;
}
static void pb_varint(pb *b, uint64_t v) {
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        pb_byte(b, (uint8_t)(c | (v ? 0x80 : 0)));
    } while (v);
}
static void pb_bytes(pb *b, const void *d, size_t n) {
    for (size_t i = 0; i < n; i++) pb_byte(b, ((const uint8_t *)d)[i]);
}
static void pb_double(pb *b, uint8_t tag, double v) {
    uint64_t u;
    uint8_t le[8];
    memcpy(&u, &v, 8);
    ft_wr_le64(le, u);
    pb_byte(b, tag);
    pb_bytes(b, le, 8);
}
static void pb_string(pb *b, uint8_t tag, const char *s) {
    pb_byte(b, tag);
    pb_varint(b, strlen(s));
    pb_bytes(b, s, strlen(s));
}
static size_t varint_len(uint64_t v) {
    size_t n = 1;
    while (v >>= 7) n++;
    return n;
}

size_t ft_tb_event_scalar(uint8_t *out, size_t cap, double wall_time, int64_t step, const char *tag,
                          float value) {
    pb b = {out, cap, 0};
    size_t tl = strlen(tag);
    size_t value_len = 1 + varint_len(tl) + tl + 5; /* tag field + simple_value */
    size_t summary_len = 1 + varint_len(value_len) + value_len;
    if (wall_time != 0.0) pb_double(&b, 0x09, wall_time);
    if (step != 0) {
        pb_byte(&b, 0x10);
        pb_varint(&b, (uint64_t)step);
    }
    pb_byte(&b, 0x2A); /* summary */
    pb_varint(&b, summary_len);
    pb_byte(&b, 0x0A); /* value */
    pb_varint(&b, value_len);
    pb_string(&b, 0x0A, tag);
    uint32_t u;
    uint8_t le[4];
    memcpy(&u, &value, 4);
    ft_wr_le32(le, u);
    pb_byte(&b, 0x15);
    pb_bytes(&b, le, 4);
    return b.len;
}

#define TB_WRITER "tensorboard.summary.writer.event_file_writer"

size_t ft_tb_event_version(uint8_t *out, size_t cap, double wall_time, int source_metadata) {
    pb b = {out, cap, 0};
    if (wall_time != 0.0) pb_double(&b, 0x09, wall_time);
    pb_string(&b, 0x1A, "brain.Event:2");
    if (source_metadata) {
        size_t wl = strlen(TB_WRITER);
        pb_byte(&b, 0x52);
        pb_varint(&b, 1 + varint_len(wl) + wl);
        pb_string(&b, 0x0A, TB_WRITER);
    }
    return b.len;
}

size_t ft_tb_record(uint8_t *out, size_t cap, const uint8_t *data, size_t len) {
    if (cap >= len + 16) {
        ft_wr_le64(out, len);
        ft_wr_le32(out + 8, ft_crc32c_masked(out, 8));
        memcpy(out + 12, data, len);
        ft_wr_le32(out + 12 + len, ft_crc32c_masked(data, len));
    }
    return len + 16;
}

/* ------------------------------------------------------------------ the file */

struct ft_tboard {
    FILE *f;
    char path[PATH_MAX];
};

static double wall_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

static int write_event(ft_tboard *tb, const uint8_t *ev, size_t n) {
    uint8_t stackbuf[512];
    uint8_t *rec = n + 16 <= sizeof stackbuf ? stackbuf : malloc(n + 16);
    if (!rec) return -ENOMEM;
    ft_tb_record(rec, n + 16, ev, n);
    int rc = fwrite(rec, 1, n + 16, tb->f) == n + 16 && fflush(tb->f) == 0 ? 0 : -EIO;
    if (rec != stackbuf) free(rec);
    return rc;
}

static int g_uid; /* files opened by this process */

int ft_tboard_open(ft_tboard **out, const char *logdir, double wall_time, char *err,
                   size_t errcap) {
    *out = NULL;
    if (wall_time < 0) wall_time = wall_now();
    int rc = ft_mkdir_p(logdir);
    if (rc) {
        snprintf(err, errcap, "%s: cannot create: %s", logdir, ft_strerror(rc));
        return rc;
    }
    ft_tboard *tb = calloc(1, sizeof *tb);
    if (!tb) return -ENOMEM;
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    int n = snprintf(tb->path, sizeof tb->path, "%s/events.out.tfevents.%010lld.%s.%ld.%d", logdir,
                     (long long)wall_time, host, (long)getpid(),
                     __atomic_fetch_add(&g_uid, 1, __ATOMIC_RELAXED));
    if (n < 0 || (size_t)n >= sizeof tb->path) {
        free(tb);
        snprintf(err, errcap, "%s: path too long", logdir);
        return FT_ERANGE;
    }
    tb->f = fopen(tb->path, "wb");
    if (!tb->f) {
        rc = -errno;
        snprintf(err, errcap, "%s: cannot create: %s", tb->path, strerror(errno));
        free(tb);
        return rc;
    }
    uint8_t ev[128];
    size_t len = ft_tb_event_version(ev, sizeof ev, wall_time, 1);
    if ((rc = write_event(tb, ev, len))) {
        snprintf(err, errcap, "%s: write failed: %s", tb->path, ft_strerror(rc));
        ft_tboard_close(tb);
        return rc;
    }
    *out = tb;
    return 0;
}

int ft_tboard_scalar(ft_tboard *tb, const char *tag, float value, int64_t step, double wall_time) {
    if (wall_time < 0) wall_time = wall_now();
    size_t n = ft_tb_event_scalar(NULL, 0, wall_time, step, tag, value);
    uint8_t stackbuf[256];
    uint8_t *ev = n <= sizeof stackbuf ? stackbuf : malloc(n);
    if (!ev) return -ENOMEM;
    ft_tb_event_scalar(ev, n, wall_time, step, tag, value);
    int rc = write_event(tb, ev, n);
    if (ev != stackbuf) free(ev);
    return rc;
}

const char *ft_tboard_path(const ft_tboard *tb) {
    return tb->path;
}

void ft_tboard_close(ft_tboard *tb) {
    if (!tb) return;
    if (tb->f) fclose(tb->f);
    free(tb);
}
