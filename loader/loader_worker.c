/* loader_worker.c: a worker thread claims the next chunk of the next batch whose ring slot is
 * free, reads the chunk's samples in one go (ld_io_read), decodes each JPEG straight into its
 * place in the slot (u8 HWC) or via a per-thread scratch (f32 CHW: flip + normalize +
 * transpose in one pass), and replaces bad samples with deterministic substitutes.
 */
#include "loader_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double ld_thread_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

uint64_t ld_substitute(uint64_t seed, uint64_t epoch, uint64_t index, uint32_t a, uint64_t n) {
    return ft_hash64(seed ^ 0x73756273ull /* "subs" */, epoch, index * 64 + a) % n;
}

int ld_worker_init(ld_worker *w, struct loader *l, uint32_t id) {
    memset(w, 0, sizeof *w);
    w->l = l, w->id = id;
    w->tj = tjInitDecompress();
    w->rgb = malloc((size_t)l->h * l->w * 3 + 4);
    w->payload = malloc(l->src.max_len ? l->src.max_len : 1);
    if (!w->tj || !w->rgb || !w->payload) return -ENOMEM;
    return ld_io_init(&w->io, l->engine, l->fd, l->map, l->map_len, l->cfg.direct, l->chunk,
                      l->src.max_len);
}

void ld_worker_free(ld_worker *w) {
    if (w->tj) tjDestroy(w->tj);
    free(w->rgb);
    free(w->payload);
    ld_io_free(&w->io);
    w->tj = NULL, w->rgb = NULL, w->payload = NULL;
}

/* Mirror each row: copy it aside, then write its pixels back in reverse order (4-byte
 * stores that overlap by one byte; the last pixel separately). */
static void flip_u8(uint8_t *img, uint32_t h, uint32_t w, uint8_t *tmp) {
    size_t rb = (size_t)w * 3;
    for (uint32_t y = 0; y < h; y++) {
        uint8_t *row = img + y * rb;
        memcpy(tmp, row, rb);
        const uint8_t *s = tmp + rb - 3;
        uint32_t x = 0;
        for (; x + 1 < w; x++, s -= 3) {
            uint32_t v;
            memcpy(&v, s, 4);
            memcpy(row + 3 * (size_t)x, &v, 4);
        }
        row[3 * (size_t)x] = s[0], row[3 * (size_t)x + 1] = s[1], row[3 * (size_t)x + 2] = s[2];
    }
}

static void to_f32chw(const struct loader *l, const uint8_t *rgb, float *out, int flip) {
    size_t plane = (size_t)l->h * l->w;
    for (uint32_t y = 0; y < l->h; y++) {
        const uint8_t *row = rgb + (size_t)y * l->w * 3;
        float *r = out + (size_t)y * l->w, *g = r + plane, *b = g + plane;
        for (uint32_t x = 0; x < l->w; x++) {
            const uint8_t *p = row + (size_t)(flip ? l->w - 1 - x : x) * 3;
            r[x] = l->lut[p[0]], g[x] = l->lut[p[1]], b[x] = l->lut[p[2]];
        }
    }
}

/* Bytes of one sample -> image at dst. 0 or < 0 with why. Adds decode time to *dec_s. */
static int decode_one(ld_worker *w, uint64_t index, const uint8_t *bytes, size_t n, void *dst,
                      int flip, int32_t *label, double *dec_s, char *why, size_t whycap) {
    struct loader *l = w->l;
    const uint8_t *jpeg;
    size_t jlen;
    int rc =
        ld_source_parse(&l->src, index, bytes, n, w->payload, label, &jpeg, &jlen, why, whycap);
    if (rc) return rc;
    double t0 = ft_now();
    int iw, ih, sub, cs;
    if (jlen == 0 || jlen > 0xFFFFFFFFul ||
        tjDecompressHeader3(w->tj, jpeg, (unsigned long)jlen, &iw, &ih, &sub, &cs) != 0) {
        snprintf(why, whycap, "not a JPEG (%s)", jlen ? tjGetErrorStr2(w->tj) : "empty");
        *dec_s += ft_now() - t0;
        return FT_EDECODE;
    }
    if ((uint32_t)iw != l->w || (uint32_t)ih != l->h) {
        snprintf(why, whycap, "image is %dx%d, expected %" PRIu32 "x%" PRIu32, iw, ih, l->w, l->h);
        *dec_s += ft_now() - t0;
        return FT_EFORMAT;
    }
    int flags = l->cfg.fast_idct ? TJFLAG_FASTDCT : 0;
    uint8_t *rgb = l->cfg.layout == LOADER_U8_HWC ? dst : w->rgb;
    /* Any libjpeg warning (e.g. truncated data) makes this return -1: never deliver a
     * partially decoded image. */
    rc = tjDecompress2(w->tj, jpeg, (unsigned long)jlen, rgb, iw, iw * 3, ih, TJPF_RGB, flags);
    *dec_s += ft_now() - t0;
    if (rc != 0) {
        snprintf(why, whycap, "JPEG decode failed: %s", tjGetErrorStr2(w->tj));
        return FT_EDECODE;
    }
    if (l->cfg.layout == LOADER_U8_HWC) {
        if (flip) flip_u8(rgb, l->h, l->w, w->rgb);
    } else {
        to_f32chw(l, rgb, dst, flip);
    }
    return 0;
}

/* Under l->mu: record a bad sample, print a bounded number of one-line messages. */
static void note_bad(struct loader *l, uint64_t epoch, uint64_t index, uint64_t sub,
                     const char *why) {
    if (l->nbad < LOADER_BAD_KEEP) {
        loader_bad *b = &l->bad[l->nbad];
        b->epoch = epoch, b->index = index, b->substitute = sub;
        snprintf(b->reason, sizeof b->reason, "%s", why);
    }
    l->nbad++;
    if (l->cfg.quiet) return;
    if (l->msgs < LD_MSG_LIMIT) {
        if (sub == UINT64_MAX)
            fprintf(stderr, "loader: %s: sample %" PRIu64 " (epoch %" PRIu64 "): %s\n", l->path,
                    index, epoch, why);
        else
            fprintf(stderr,
                    "loader: %s: sample %" PRIu64 " (epoch %" PRIu64 "): %s; substituted sample "
                    "%" PRIu64 "\n",
                    l->path, index, epoch, why, sub);
    } else if (l->msgs == LD_MSG_LIMIT) {
        fprintf(stderr,
                "loader: further bad-sample messages suppressed (see loader_bad_samples)\n");
    }
    l->msgs++;
}

/* Replace bad sample `index` (at position pos of slot s): try the substitutes of
 * ld_substitute in order; the first that reads and decodes wins. */
static int substitute(ld_worker *w, ld_slot *s, uint32_t pos, uint64_t epoch, uint64_t index,
                      const char *why0, double *read_s, double *dec_s) {
    struct loader *l = w->l;
    char why[160];
    for (uint32_t a = 1; a <= LD_SUBST_TRIES; a++) {
        uint64_t sub = ld_substitute(l->cfg.seed, epoch, index, a, l->src.n);
        if (sub == index) continue;
        const uint8_t *p;
        int rrc;
        double t0 = ft_now();
        ld_io_read(&w->io, &l->src.offsets[sub], &l->src.lengths[sub], 1, &p, &rrc);
        *read_s += ft_now() - t0;
        int flip = l->cfg.no_flip ? 0 : loader_flip_of(l->cfg.seed, epoch, sub);
        void *dst = (uint8_t *)s->data + (size_t)pos * l->img_bytes;
        if (rrc == 0 && decode_one(w, sub, p, l->src.lengths[sub], dst, flip, &s->labels[pos],
                                   dec_s, why, sizeof why) == 0) {
            s->indices[pos] = sub;
            s->flags[pos] = (uint8_t)(LOADER_FLAG_SUBSTITUTED | (flip ? LOADER_FLAG_FLIPPED : 0));
            pthread_mutex_lock(&l->mu);
            note_bad(l, epoch, index, sub, why0);
            pthread_mutex_unlock(&l->mu);
            return 0;
        }
    }
    return FT_EDECODE;
}

/* Fail mode, or no substitute found: the slot carries the error of its lowest position. */
static void slot_error(struct loader *l, ld_slot *s, uint32_t pos, int rc, uint64_t epoch,
                       uint64_t index, const char *why, int fail_mode) {
    pthread_mutex_lock(&l->mu);
    if (fail_mode) note_bad(l, epoch, index, UINT64_MAX, why);
    if (s->err_rc == 0 || pos < s->err_pos) {
        s->err_rc = rc, s->err_pos = pos;
        snprintf(s->err, sizeof s->err, "%.300s: sample %" PRIu64 " (epoch %" PRIu64 "): %.150s%s",
                 l->path, index, epoch, why, fail_mode ? "" : " (and no substitute decodes)");
    }
    pthread_mutex_unlock(&l->mu);
}

/* Read and decode positions [p0, p1) of slot s (batch of `epoch`). */
static void fill_chunk(ld_worker *w, ld_slot *s, uint64_t epoch, uint32_t p0, uint32_t p1) {
    struct loader *l = w->l;
    uint32_t k = p1 - p0;
    uint64_t off[LD_MAX_CHUNK];
    uint32_t len[LD_MAX_CHUNK];
    const uint8_t *ptr[LD_MAX_CHUNK];
    int rcs[LD_MAX_CHUNK];
    double c0 = ld_thread_cpu(), t0 = ft_now(), read_s, dec_s = 0;
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < k; i++) {
        uint64_t idx = s->requested[p0 + i];
        off[i] = l->src.offsets[idx], len[i] = l->src.lengths[idx];
        bytes += len[i];
    }
    ld_io_read(&w->io, off, len, k, ptr, rcs);
    read_s = ft_now() - t0;
    for (uint32_t i = 0; i < k; i++) {
        uint32_t pos = p0 + i;
        uint64_t idx = s->requested[pos];
        int flip = l->cfg.no_flip ? 0 : loader_flip_of(l->cfg.seed, epoch, idx);
        char why[160];
        int rc = rcs[i];
        if (rc)
            snprintf(why, sizeof why, "read failed: %s", ft_strerror(rc));
        else
            rc = decode_one(w, idx, ptr[i], len[i], (uint8_t *)s->data + (size_t)pos * l->img_bytes,
                            flip, &s->labels[pos], &dec_s, why, sizeof why);
        s->indices[pos] = idx;
        s->flags[pos] = flip ? LOADER_FLAG_FLIPPED : 0;
        if (rc == 0) continue;
        if (l->cfg.fail_on_bad)
            slot_error(l, s, pos, rc, epoch, idx, why, 1);
        else if (substitute(w, s, pos, epoch, idx, why, &read_s, &dec_s) != 0)
            slot_error(l, s, pos, rc, epoch, idx, why, 0);
    }
    double total = ft_now() - t0, cpu = ld_thread_cpu() - c0;
    pthread_mutex_lock(&l->mu);
    w->cpu_s += cpu;
    w->read_s += read_s, w->decode_s += dec_s;
    w->other_s += total - read_s - dec_s;
    w->images += k, w->bytes += bytes;
    pthread_mutex_unlock(&l->mu);
}

/* Under l->mu: set up slot for batch g (order from the epoch's permutation). */
static int setup_slot(struct loader *l, ld_slot *s, uint64_t g) {
    uint64_t epoch = g / l->steps, step = g % l->steps;
    if (l->perm_epoch != epoch) {
        ft_permutation(l->perm, l->src.n, l->cfg.seed, epoch);
        l->perm_epoch = epoch;
    }
    s->g = g, s->pending = l->nchunks, s->ready = 0, s->err_rc = 0, s->err_pos = 0;
    s->err[0] = '\0';
    for (uint32_t p = 0; p < l->cfg.batch; p++)
        s->requested[p] = loader_shard_index(l->perm, l->src.n, l->cfg.rank, l->cfg.world,
                                             step * l->cfg.batch + p);
    return 0;
}

void *ld_worker_main(void *arg) {
    ld_worker *w = arg;
    struct loader *l = w->l;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        double t0 = ft_now();
        while (!l->stop && (l->paused || l->g_claim >= l->g_released + l->nslots))
            pthread_cond_wait(&l->cv_work, &l->mu);
        w->wait_s += ft_now() - t0;
        if (l->stop) break;
        uint64_t g = l->g_claim;
        uint32_t c = l->c_claim;
        ld_slot *s = &l->slots[g % l->nslots];
        if (c == 0) setup_slot(l, s, g);
        if (++l->c_claim == l->nchunks) l->c_claim = 0, l->g_claim++;
        l->inflight++;
        pthread_mutex_unlock(&l->mu);

        uint32_t p0 = c * l->chunk, p1 = p0 + l->chunk;
        fill_chunk(w, s, g / l->steps, p0, p1 < l->cfg.batch ? p1 : l->cfg.batch);

        pthread_mutex_lock(&l->mu);
        l->inflight--;
        if (--s->pending == 0) s->ready = 1;
        pthread_cond_broadcast(&l->cv_ready);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}
