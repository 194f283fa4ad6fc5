/* ingest_pipeline.c: reader thread -> T decode-validate workers -> in-order writer.
 *
 * The reader fills batches (up to ING_BATCH_RECS samples or ING_BATCH_BYTES of JPEG bytes) in
 * output order and queues them; workers decode every JPEG in full with libjpeg-turbo
 * (warnings are errors) and record its size; the writer (the calling thread) takes batches
 * strictly in sequence, appends them to the LMDB and hands the buffers back. A fixed pool of
 * 2T+3 batches bounds memory. All shared state is under one mutex. */
#include "ingest.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <turbojpeg.h>

#define ING_BATCH_RECS  256
#define ING_BATCH_BYTES (4u << 20)
#define ING_MAX_PIXELS  (1u << 26)

typedef struct batch {
    uint64_t seq;
    int decoded;
    uint8_t *buf;
    size_t len, cap;
    ing_rec recs[ING_BATCH_RECS];
    unsigned n;
} batch;

typedef struct pipe {
    const ing_source *src;
    const ing_opts *o;
    const uint64_t *perm;
    ing_reader *reader;
    pthread_mutex_t mu;
    pthread_cond_t cv_free, cv_todo, cv_done;
    batch *pool;
    unsigned nb;
    batch **free_list, **todo, **slot; /* [nb] each; slot[seq % nb] = batch in flight */
    unsigned nfree, todo_head, todo_n;
    uint64_t nseq;   /* batches the reader produced (final once reader_done) */
    int reader_done; /* no more batches will come */
    int stop;        /* writer gave up: everyone leaves */
} pipe;

/* ------------------------------------------------------------------ reader thread */

static uint8_t *batch_sink(void *ctx, size_t len, size_t *at) {
    batch *b = ctx;
    if (b->len + len > b->cap) {
        size_t ncap = b->cap ? b->cap : ING_BATCH_BYTES;
        while (ncap < b->len + len) ncap *= 2;
        uint8_t *nbuf = realloc(b->buf, ncap);
        if (!nbuf) return NULL;
        b->buf = nbuf, b->cap = ncap;
    }
    *at = b->len;
    b->len += len;
    return b->buf + *at;
}

static batch *take_free(pipe *p) {
    pthread_mutex_lock(&p->mu);
    while (!p->nfree && !p->stop) pthread_cond_wait(&p->cv_free, &p->mu);
    batch *b = p->stop ? NULL : p->free_list[--p->nfree];
    pthread_mutex_unlock(&p->mu);
    return b;
}

static void submit(pipe *p, batch *b) {
    pthread_mutex_lock(&p->mu);
    b->decoded = 0;
    p->slot[b->seq % p->nb] = b;
    p->todo[(p->todo_head + p->todo_n++) % p->nb] = b;
    pthread_cond_signal(&p->cv_todo);
    pthread_mutex_unlock(&p->mu);
}

static void *reader_main(void *arg) {
    pipe *p = arg;
    batch *b = NULL;
    uint64_t seq = 0;
    for (uint64_t j = 0; j < p->src->n; j++) {
        if (!b) {
            if (!(b = take_free(p))) break;
            b->seq = seq, b->n = 0, b->len = 0;
        }
        uint64_t s = p->perm ? p->perm[j] : j;
        ing_reader_read(p->reader, s, &b->recs[b->n++], batch_sink, b);
        if (b->n == ING_BATCH_RECS || b->len >= ING_BATCH_BYTES) {
            submit(p, b);
            seq++, b = NULL;
        }
    }
    if (b) submit(p, b), seq++; /* a batch is only taken to hold a record */
    pthread_mutex_lock(&p->mu);
    p->nseq = seq;
    p->reader_done = 1;
    pthread_cond_broadcast(&p->cv_todo);
    pthread_cond_broadcast(&p->cv_done);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ------------------------------------------------------------------ decode workers */

typedef struct decoder {
    tjhandle tj;
    uint8_t *rgb;
    size_t cap;
} decoder;

static void bad(ing_rec *rec, int rc, const char *what, const char *detail) {
    rec->bad = rc;
    snprintf(rec->why, sizeof rec->why, "%s%s", what, detail);
}

/* Full decode to RGB; any libjpeg warning (corrupt data, premature end) is an error. */
static void decode_one(decoder *d, const uint8_t *jpg, ing_rec *rec) {
    int w, h, ss, cs;
    if (rec->len == 0) return bad(rec, FT_EDECODE, "empty image (no bytes after the header)", "");
    if (tjDecompressHeader3(d->tj, jpg, (unsigned long)rec->len, &w, &h, &ss, &cs) != 0)
        return bad(rec, FT_EDECODE, "not a JPEG: ", tjGetErrorStr2(d->tj));
    if (w <= 0 || h <= 0 || w > 65535 || h > 65535 || (uint64_t)w * (uint64_t)h > ING_MAX_PIXELS) {
        char dim[64];
        snprintf(dim, sizeof dim, "%dx%d", w, h);
        return bad(rec, FT_EDECODE, "image too large: ", dim);
    }
    size_t need = (size_t)w * (size_t)h * 3;
    if (need > d->cap) {
        uint8_t *n = realloc(d->rgb, need);
        if (!n) {
            rec->fatal = 1;
            return bad(rec, -ENOMEM, "out of memory", "");
        }
        d->rgb = n, d->cap = need;
    }
    if (tjDecompress2(d->tj, jpg, (unsigned long)rec->len, d->rgb, w, 0, h, TJPF_RGB,
                      TJFLAG_STOPONWARNING) != 0)
        return bad(rec, FT_EDECODE, "JPEG decode failed: ", tjGetErrorStr2(d->tj));
    rec->height = (uint16_t)h, rec->width = (uint16_t)w;
}

static batch *take_todo(pipe *p) {
    pthread_mutex_lock(&p->mu);
    while (!p->todo_n && !p->reader_done && !p->stop) pthread_cond_wait(&p->cv_todo, &p->mu);
    batch *b = NULL;
    if (!p->stop && p->todo_n) {
        b = p->todo[p->todo_head];
        p->todo_head = (p->todo_head + 1) % p->nb, p->todo_n--;
    }
    pthread_mutex_unlock(&p->mu);
    return b;
}

static void *worker_main(void *arg) {
    pipe *p = arg;
    decoder d = {tjInitDecompress(), NULL, 0};
    batch *b;
    while ((b = take_todo(p)) != NULL) {
        for (unsigned i = 0; i < b->n; i++) {
            ing_rec *rec = &b->recs[i];
            if (rec->bad) continue;
            if (!d.tj) {
                rec->fatal = 1;
                bad(rec, -ENOMEM, "cannot start a JPEG decoder: ", tjGetErrorStr2(NULL));
            } else
                decode_one(&d, b->buf + rec->at, rec);
        }
        pthread_mutex_lock(&p->mu);
        b->decoded = 1;
        pthread_cond_broadcast(&p->cv_done);
        pthread_mutex_unlock(&p->mu);
    }
    if (d.tj) tjDestroy(d.tj);
    free(d.rgb);
    return NULL;
}

/* ------------------------------------------------------------------ writer (caller) */

static void describe(const ing_source *src, const ing_rec *rec, char *out, size_t cap) {
    if (src->is_folder) {
        char path[8192];
        snprintf(out, cap, "%s: %s", ing_source_file(src, rec->src_index, path, sizeof path),
                 rec->why);
    } else
        snprintf(out, cap, "%s: record key %" PRIu64 " at offset %" PRIu64 ": %s", src->rec_path,
                 rec->key, rec->offset, rec->why);
}

/* Next batch in sequence, NULL at the end (*rc 0) or on a stop request (*rc FT_ESTOP). */
static batch *take_next(pipe *p, uint64_t seq, int *rc) {
    batch *b = NULL;
    *rc = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        batch *s = p->slot[seq % p->nb];
        if (s && s->seq == seq && s->decoded) {
            b = s;
            p->slot[seq % p->nb] = NULL;
            break;
        }
        if (p->reader_done && seq >= p->nseq) break;
        if (ft_stop_requested()) {
            *rc = FT_ESTOP;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&p->cv_done, &p->mu, &ts);
    }
    pthread_mutex_unlock(&p->mu);
    return b;
}

static void give_back(pipe *p, batch *b) {
    pthread_mutex_lock(&p->mu);
    p->free_list[p->nfree++] = b;
    pthread_cond_signal(&p->cv_free);
    pthread_mutex_unlock(&p->mu);
}

/* One image size per dataset (the loader and the trainer need it): the first written
 * sample's. A sample of another size becomes a bad record (skipped with --skip-bad); `odd`
 * receives it. Returns 1 when rec has another size. */
static int odd_size(const ing_result *res, const ing_rec *rec, ing_rec *odd) {
    if (res->written == 0 || (rec->height == res->height && rec->width == res->width)) return 0;
    *odd = *rec;
    odd->bad = FT_EFORMAT;
    snprintf(odd->why, sizeof odd->why,
             "image is %ux%u, the dataset's images are %" PRIu32 "x%" PRIu32 " (from key %" PRIu64
             "); leave such records out with --skip-bad, or make every image one size with "
             "ft-pack --resize 112x112",
             (unsigned)rec->width, (unsigned)rec->height, res->width, res->height, res->size_key);
    return 1;
}

static int skip_record(const ing_opts *o, ing_result *res, const char *msg, const ing_rec *rec,
                       ft_progress *pr, char *err, size_t errcap) {
    if (rec->fatal || !o->skip_bad) {
        snprintf(err, errcap, "%s", msg);
        return rec->bad < 0 ? rec->bad : FT_EFORMAT;
    }
    if (res->skipped < ING_LIST_MAX) {
        res->skipped_keys[res->skipped] = rec->key;
        ft_progress_clear(pr);
        fprintf(stderr, "ft-ingest: %s (skipped)\n", msg);
    }
    res->skipped++;
    return 0;
}

static int write_batch(pipe *p, ing_writer *w, batch *b, ing_result *res, ft_progress *pr,
                       char *err, size_t errcap) {
    for (unsigned i = 0; i < b->n; i++) {
        const ing_rec *rec = &b->recs[i];
        ing_rec odd;
        res->read_bytes += rec->len;
        if (!rec->bad && odd_size(res, rec, &odd)) rec = &odd;
        if (rec->bad) {
            char msg[ING_ERRCAP];
            describe(p->src, rec, msg, sizeof msg);
            int rc = skip_record(p->o, res, msg, rec, pr, err, errcap);
            if (rc < 0) return rc;
            ft_progress_add(pr, 1, rec->len);
            continue;
        }
        ftdb_value_hdr h = {rec->label, rec->height, rec->width, (uint32_t)rec->len,
                            (uint32_t)rec->key};
        int rc = ing_writer_put(w, &h, b->buf + rec->at, err, errcap);
        if (rc < 0) return rc;
        if (res->written == 0) /* the dataset's image size, see odd_size */
            res->height = rec->height, res->width = rec->width, res->size_key = rec->key;
        if ((uint64_t)rec->label > res->max_label) res->max_label = (uint64_t)rec->label;
        res->written++;
        res->value_bytes += FTDB_VALUE_HDR + rec->len;
        ft_progress_add(pr, 1, rec->len);
    }
    return 0;
}

static int write_all(pipe *p, ing_writer *w, ing_result *res, char *err, size_t errcap) {
    ft_progress pr;
    ft_progress_init(&pr, "ingest", p->src->n);
    int rc = 0;
    for (uint64_t seq = 0;; seq++) {
        batch *b = take_next(p, seq, &rc);
        if (!b) break;
        rc = write_batch(p, w, b, res, &pr, err, errcap);
        give_back(p, b);
        if (rc == 0 && ft_stop_requested()) rc = FT_ESTOP;
        if (rc < 0) break;
    }
    if (rc == FT_ESTOP) snprintf(err, errcap, "stopped by signal; temporary output removed");
    if (rc < 0)
        ft_progress_clear(&pr);
    else
        ft_progress_done(&pr);
    return rc;
}

/* ------------------------------------------------------------------ run */

static int pipe_init(pipe *p, unsigned workers) {
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_free, NULL);
    pthread_cond_init(&p->cv_todo, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    p->nb = 2 * workers + 3;
    p->pool = calloc(p->nb, sizeof *p->pool);
    p->free_list = calloc(p->nb, sizeof *p->free_list);
    p->todo = calloc(p->nb, sizeof *p->todo);
    p->slot = calloc(p->nb, sizeof *p->slot);
    if (!p->pool || !p->free_list || !p->todo || !p->slot) return -ENOMEM;
    for (unsigned i = 0; i < p->nb; i++) p->free_list[p->nfree++] = &p->pool[i];
    return 0;
}

static void pipe_free(pipe *p) {
    for (unsigned i = 0; p->pool && i < p->nb; i++) free(p->pool[i].buf);
    free(p->pool);
    free(p->free_list);
    free(p->todo);
    free(p->slot);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_free);
    pthread_cond_destroy(&p->cv_todo);
    pthread_cond_destroy(&p->cv_done);
}

static void pipe_stop(pipe *p) {
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv_free);
    pthread_cond_broadcast(&p->cv_todo);
    pthread_cond_broadcast(&p->cv_done);
    pthread_mutex_unlock(&p->mu);
}

int ing_pipeline_run(const ing_source *src, const ing_opts *o, const uint64_t *perm, ing_writer *w,
                     ing_result *res, char *err, size_t errcap) {
    pipe p = {.src = src, .o = o, .perm = perm};
    memset(res, 0, sizeof *res);
    double t0 = ft_now();
    unsigned nw = o->threads ? o->threads : 1;
    int rc = pipe_init(&p, nw);
    pthread_t *tids = calloc(nw + 1, sizeof *tids);
    unsigned started = 0;
    if (rc == 0 && !tids) rc = -ENOMEM;
    if (rc == 0) rc = ing_reader_open(&p.reader, src, perm != NULL, err, errcap);
    if (rc == -ENOMEM) snprintf(err, errcap, "out of memory");
    if (rc == 0 && pthread_create(&tids[started], NULL, reader_main, &p) == 0) started++;
    for (unsigned i = 0; rc == 0 && started && i < nw; i++)
        if (pthread_create(&tids[started], NULL, worker_main, &p) == 0) started++;
    if (rc == 0 && started < nw + 1) {
        snprintf(err, errcap, "cannot start threads");
        rc = -EAGAIN;
    }
    if (rc == 0) rc = write_all(&p, w, res, err, errcap);
    pipe_stop(&p);
    for (unsigned i = 0; i < started; i++) pthread_join(tids[i], NULL);
    free(tids);
    ing_reader_close(p.reader);
    pipe_free(&p);
    res->seconds = ft_now() - t0;
    return rc;
}
