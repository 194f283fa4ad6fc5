/* features.c: IJB image features (eval.h ft_ijb_features): read, decode, align and normalize
 * a batch on worker threads while the model embeds the previous one. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "eval.h"
#include "ft_dataset.h"

#define IMG       FT_ALIGN_SIZE
#define PLANE     ((size_t)IMG * IMG)
#define INPUT     (3 * PLANE)
#define MAX_PIXEL (1 << 26) /* 64 Mpixel: far above any loose crop */
#define MAX_FILE  (256u << 20)

typedef struct worker {
    const ft_ijb_meta *m;
    float *x;         /* the batch: [2n][3][112][112], orig then mirror per image */
    int64_t start;    /* first image of the batch */
    int n, id, count; /* images in the batch; this worker takes id, id + count, ... */
    tjhandle tj;
    uint8_t *file, *rgb;
    size_t file_cap, rgb_cap;
    uint64_t bytes;
    int64_t bad; /* first failing image of this worker, -1 none */
    int rc;
    char err[4096];
    const float *lut;
    pthread_t th;
} worker;

static int read_all(const char *path, uint8_t **buf, size_t *cap, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
    } else if (!S_ISREG(st.st_mode)) {
        rc = -EISDIR;
    } else if ((uint64_t)st.st_size > MAX_FILE) {
        rc = FT_ERANGE;
    } else {
        size_t n = (size_t)st.st_size;
        if (n + 1 > *cap) {
            uint8_t *b = realloc(*buf, n + 1);
            if (!b)
                rc = -ENOMEM;
            else
                *buf = b, *cap = n + 1;
        }
        size_t got = 0;
        while (!rc && got < n) {
            ssize_t r = read(fd, *buf + got, n - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0)
                rc = r < 0 ? -errno : FT_ETRUNC;
            else
                got += (size_t)r;
        }
        *len = n;
    }
    close(fd);
    return rc;
}

/* image i -> x[0] (aligned) and x[INPUT] (mirrored), normalized CHW */
static int one_image(worker *w, int64_t i, float *x) {
    const ft_ijb_meta *m = w->m;
    char path[2200];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/loose_crop/%s", m->root, m->names[i]);
    const char *where = "_name_5pts_score.txt line";
    int rc = read_all(path, &w->file, &w->file_cap, &len);
    if (rc) {
        snprintf(w->err, sizeof w->err, "%s (%s%s %lld): cannot read: %s", path, m->tag, where,
                 (long long)m->line[i], rc == FT_ERANGE ? "larger than 256 MiB" : ft_strerror(rc));
        return rc;
    }
    w->bytes += len;
    int iw, ih, sub, cs;
    if (tjDecompressHeader3(w->tj, w->file, (unsigned long)len, &iw, &ih, &sub, &cs) != 0) {
        snprintf(w->err, sizeof w->err, "%s (%s%s %lld): not a JPEG (%s)", path, m->tag, where,
                 (long long)m->line[i], tjGetErrorStr2(w->tj));
        return FT_EDECODE;
    }
    if (iw < 1 || ih < 1 || (int64_t)iw * ih > MAX_PIXEL) {
        snprintf(w->err, sizeof w->err, "%s (%s%s %lld): %dx%d pixels is out of range", path,
                 m->tag, where, (long long)m->line[i], iw, ih);
        return FT_ERANGE;
    }
    size_t need = (size_t)iw * ih * 3;
    if (need > w->rgb_cap) {
        uint8_t *b = realloc(w->rgb, need);
        if (!b) {
            snprintf(w->err, sizeof w->err, "%s: out of memory", path);
            return -ENOMEM;
        }
        w->rgb = b, w->rgb_cap = need;
    }
    /* a warning (e.g. a truncated scan) still gives the image, as OpenCV's imread does */
    if (tjDecompress2(w->tj, w->file, (unsigned long)len, w->rgb, iw, 0, ih, TJPF_RGB, 0) != 0 &&
        tjGetErrorCode(w->tj) != TJERR_WARNING) {
        snprintf(w->err, sizeof w->err, "%s (%s%s %lld): cannot decode: %s", path, m->tag, where,
                 (long long)m->line[i], tjGetErrorStr2(w->tj));
        return FT_EDECODE;
    }
    uint8_t crop[IMG * IMG * 3];
    if ((rc = ft_align_face(w->rgb, iw, ih, (const float(*)[2])m->lmk[i], crop, NULL))) {
        snprintf(w->err, sizeof w->err,
                 "%s (%s%s %lld): the landmarks give no similarity transform (all at one point "
                 "or not finite)",
                 path, m->tag, where, (long long)m->line[i]);
        return rc;
    }
    float *flip = x + INPUT;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < IMG; y++)
            for (int u = 0; u < IMG; u++) {
                float v = w->lut[crop[((size_t)y * IMG + u) * 3 + c]];
                x[c * PLANE + (size_t)y * IMG + u] = v;
                flip[c * PLANE + (size_t)y * IMG + (IMG - 1 - u)] = v;
            }
    return 0;
}

static void *work(void *arg) {
    worker *w = arg;
    for (int k = w->id; k < w->n; k += w->count) {
        int rc = one_image(w, w->start + k, w->x + (size_t)2 * k * INPUT);
        if (rc) {
            w->rc = rc, w->bad = w->start + k;
            break;
        }
    }
    return NULL;
}

/* Start the workers on images [start, start + n) into x. */
static int batch_start(worker *ws, int nw, float *x, int64_t start, int n) {
    for (int t = 0; t < nw; t++) {
        ws[t].x = x, ws[t].start = start, ws[t].n = n, ws[t].rc = 0, ws[t].bad = -1;
        int rc = pthread_create(&ws[t].th, NULL, work, &ws[t]);
        if (rc) {
            for (int j = 0; j < t; j++) pthread_join(ws[j].th, NULL);
            return -rc;
        }
    }
    return 0;
}

/* Join; the error of the lowest failing image, so a run fails the same way every time. */
static int batch_join(worker *ws, int nw, uint64_t *bytes, char *err, size_t errcap) {
    int rc = 0;
    int64_t bad = -1;
    for (int t = 0; t < nw; t++) {
        pthread_join(ws[t].th, NULL);
        *bytes += ws[t].bytes;
        ws[t].bytes = 0;
        if (ws[t].rc && (bad < 0 || ws[t].bad < bad)) {
            bad = ws[t].bad, rc = ws[t].rc;
            snprintf(err, errcap, "%s", ws[t].err);
        }
    }
    return rc;
}

int ft_ijb_features(const ft_ijb_meta *m, ft_eval_embed_fn embed, void *ctx, int dim,
                    const ft_ijb_feat_opts *o, float *feats, char *err, size_t errcap) {
    int batch = o && o->batch > 0 ? o->batch : 64;
    int nw = o && o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (nw < 1) nw = 1;
    if (nw > batch) nw = batch;
    ft_progress *prog = o ? o->progress : NULL;
    float lut[256];
    ft_pixel_norm_table(lut);
    worker *ws = calloc((size_t)nw, sizeof *ws);
    float *x[2] = {malloc((size_t)2 * batch * INPUT * sizeof(float)),
                   malloc((size_t)2 * batch * INPUT * sizeof(float))};
    float *out = malloc((size_t)2 * batch * dim * sizeof(float));
    int rc = 0, running = 0;
    if (!ws || !x[0] || !x[1] || !out) {
        rc = -ENOMEM;
        snprintf(err, errcap, "%s: out of memory for batches of %d images", m->root, batch);
        goto done;
    }
    for (int t = 0; t < nw && !rc; t++) {
        ws[t].m = m, ws[t].id = t, ws[t].count = nw, ws[t].lut = lut;
        if (!(ws[t].tj = tjInitDecompress())) {
            rc = -ENOMEM;
            snprintf(err, errcap, "%s: cannot start the JPEG decoder", m->root);
        }
    }
    if (rc) goto done;
    int64_t n_img = m->n_img;
    uint64_t bytes = 0;
    int n0 = (int)(n_img < batch ? n_img : batch);
    if ((rc = batch_start(ws, nw, x[0], 0, n0))) {
        snprintf(err, errcap, "%s: cannot start threads: %s", m->root, ft_strerror(rc));
        goto done;
    }
    rc = batch_join(ws, nw, &bytes, err, errcap);
    for (int64_t s = 0, b = 0; s < n_img && !rc; s += batch, b++) {
        int n = (int)(n_img - s < batch ? n_img - s : batch);
        int64_t next = s + n;
        int nn = (int)(n_img - next < batch ? n_img - next : batch);
        if (nn > 0) { /* decode the next batch while the model runs */
            if ((rc = batch_start(ws, nw, x[(b + 1) & 1], next, nn))) {
                snprintf(err, errcap, "%s: cannot start threads: %s", m->root, ft_strerror(rc));
                break;
            }
            running = 1;
        }
        if (ft_stop_requested()) {
            rc = FT_ESTOP;
            snprintf(err, errcap, "%s: stopped by a signal", m->root);
        }
        if (!rc) rc = embed(ctx, x[b & 1], 2 * n, out, err, errcap);
        for (int k = 0; k < n && !rc; k++) {
            float *f = feats + (size_t)(s + k) * dim;
            const float *e0 = out + (size_t)2 * k * dim, *e1 = e0 + dim;
            for (int d = 0; d < dim; d++) {
                f[d] = e0[d] + e1[d];
                if (!isfinite(f[d])) {
                    rc = FT_ENONFINITE;
                    snprintf(err, errcap,
                             "%s/loose_crop/%s (%s_name_5pts_score.txt line %lld): "
                             "the model's embedding is not finite",
                             m->root, m->names[s + k], m->tag, (long long)m->line[s + k]);
                    break;
                }
            }
        }
        if (running) {
            char err2[4096];
            int rc2 = batch_join(ws, nw, &bytes, err2, sizeof err2);
            running = 0;
            if (!rc && rc2) rc = rc2, snprintf(err, errcap, "%s", err2);
        }
        if (!rc && prog) ft_progress_add(prog, (uint64_t)n, bytes), bytes = 0;
    }
done:
    if (ws)
        for (int t = 0; t < nw; t++) {
            if (ws[t].tj) tjDestroy(ws[t].tj);
            free(ws[t].file), free(ws[t].rgb);
        }
    free(ws), free(x[0]), free(x[1]), free(out);
    return rc;
}
