/* loader.c: open/close, the ring of batches, the consumer side (loader_next), resume, stats
 * and the order functions. Workers are in loader_worker.c.
 *
 * Ring: nslots = prefetch + 1 slots; batch g (g = epoch * steps + step) lives in slot
 * g % nslots. Workers may fill batch g once every batch < g - nslots + 1 has been released,
 * so `prefetch` batches are filled ahead while the consumer holds one. All shared state is
 * under one mutex; workers hold it only to claim a chunk and to hand it back.
 */
#include "loader_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ft_dataset.h"

void loader_config_init(loader_config *c) {
    memset(c, 0, sizeof *c);
    c->world = 1;
    c->batch = 128;
    c->seed = 2048;
    c->threads = 2;
    c->prefetch = 4;
    c->layout = LOADER_U8_HWC;
    c->engine = LOADER_ENGINE_AUTO;
}

uint64_t loader_shard_len(uint64_t n, uint32_t world) {
    return world ? (n + world - 1) / world : 0;
}

/* DistributedSampler: the permutation padded by repetition from its start to a multiple of
 * world, rank r takes padded[r::world]; padded[q] = perm[q % n]. */
uint64_t loader_shard_index(const uint64_t *perm, uint64_t n, uint32_t rank, uint32_t world,
                            uint64_t pos) {
    return perm[(rank + pos * world) % n];
}

int loader_flip_of(uint64_t seed, uint64_t epoch, uint64_t index) {
    return (int)(ft_hash64(seed ^ 0x666c6970ull /* "flip" */, epoch, index) >> 63);
}

static int check_config(const loader_config *c, char *err, size_t errcap) {
    const char *bad = NULL;
    if (!c->path)
        bad = "no dataset path";
    else if (c->world == 0 || c->rank >= c->world)
        bad = "rank must be < world size";
    else if (c->batch == 0)
        bad = "batch size must be > 0";
    else if (c->threads == 0 || c->threads > 256)
        bad = "threads must be 1..256";
    else if (c->prefetch == 0 || c->prefetch > 1024)
        bad = "prefetch must be 1..1024";
    else if (c->chunk > LD_MAX_CHUNK)
        bad = "chunk must be <= 256";
    else if (c->layout != LOADER_U8_HWC && c->layout != LOADER_F32_CHW)
        bad = "unknown layout";
    else if (c->engine > LOADER_ENGINE_MMAP)
        bad = "unknown engine";
    else if (c->direct && c->engine == LOADER_ENGINE_MMAP)
        bad = "O_DIRECT needs uring or pread";
    else if (!c->alloc != !c->free)
        bad = "alloc and free callbacks go together";
    if (bad) snprintf(err, errcap, "loader: %s", bad);
    return bad ? FT_EARG : 0;
}

static int alloc_slots(loader *l) {
    l->slots = calloc(l->nslots, sizeof *l->slots);
    if (!l->slots) return -ENOMEM;
    size_t B = l->cfg.batch, bytes = B * l->img_bytes;
    for (uint32_t i = 0; i < l->nslots; i++) {
        ld_slot *s = &l->slots[i];
        s->g = UINT64_MAX;
        s->data = l->cfg.alloc ? l->cfg.alloc(l->cfg.alloc_user, bytes) : malloc(bytes);
        s->labels = calloc(B, sizeof *s->labels);
        s->indices = calloc(B, sizeof *s->indices);
        s->requested = calloc(B, sizeof *s->requested);
        s->flags = calloc(B, 1);
        if (!s->data || !s->labels || !s->indices || !s->requested || !s->flags) return -ENOMEM;
    }
    return 0;
}

/* Engine, file descriptor and (mmap) mapping. io_uring trouble means pread, said once. */
static int open_file(loader *l, char *err, size_t errcap) {
    l->engine = l->cfg.engine;
    if (l->engine == LOADER_ENGINE_AUTO || l->engine == LOADER_ENGINE_URING) {
        int rc = ld_uring_probe();
        if (rc) {
            if (!l->cfg.quiet)
                fprintf(stderr, "loader: io_uring unavailable (%s); using pread\n",
                        ft_strerror(rc));
            l->engine = LOADER_ENGINE_PREAD;
        } else {
            l->engine = LOADER_ENGINE_URING;
        }
    }
    l->fd = open(l->src.file, O_RDONLY | O_CLOEXEC | (l->cfg.direct ? O_DIRECT : 0));
    if (l->fd < 0) {
        int e = errno;
        snprintf(err, errcap, "%s: cannot open%s: %s", l->src.file,
                 l->cfg.direct ? " with O_DIRECT" : "", strerror(e));
        return -e;
    }
    if (l->engine == LOADER_ENGINE_MMAP && l->src.file_size > 0) {
        void *m = mmap(NULL, l->src.file_size, PROT_READ, MAP_SHARED, l->fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            snprintf(err, errcap, "%s: mmap: %s", l->src.file, strerror(e));
            return -e;
        }
        l->map = m;
        l->map_len = l->src.file_size;
    }
    return 0;
}

static int start_workers(loader *l, char *err, size_t errcap) {
    l->workers = calloc(l->cfg.threads, sizeof *l->workers);
    if (!l->workers) return -ENOMEM;
    l->nworkers = l->cfg.threads;
    for (uint32_t i = 0; i < l->nworkers; i++) {
        int rc = ld_worker_init(&l->workers[i], l, i);
        if (rc && l->engine == LOADER_ENGINE_URING && rc != -ENOMEM) {
            /* the probe passed but this ring did not (e.g. locked-memory limits) */
            if (!l->cfg.quiet)
                fprintf(stderr, "loader: io_uring setup failed (%s); using pread\n",
                        ft_strerror(rc));
            l->engine = LOADER_ENGINE_PREAD;
            for (uint32_t j = 0; j <= i; j++) ld_worker_free(&l->workers[j]);
            i = UINT32_MAX; /* restart with pread */
            continue;
        }
        if (rc) {
            snprintf(err, errcap, "loader: worker setup: %s", ft_strerror(rc));
            return rc;
        }
    }
    for (uint32_t i = 0; i < l->nworkers; i++) {
        int rc = pthread_create(&l->workers[i].th, NULL, ld_worker_main, &l->workers[i]);
        if (rc) {
            snprintf(err, errcap, "loader: cannot start thread: %s", strerror(rc));
            return -rc;
        }
        l->workers[i].started = 1;
    }
    return 0;
}

static int setup(loader *l, char *err, size_t errcap) {
    int rc = ld_source_open(&l->src, l->path, err, errcap);
    if (rc) return rc;
    l->h = l->src.h, l->w = l->src.w;
    l->img_bytes = (size_t)l->h * l->w * 3 * (l->cfg.layout == LOADER_F32_CHW ? 4 : 1);
    l->shard_len = loader_shard_len(l->src.n, l->cfg.world);
    l->steps = l->shard_len / l->cfg.batch;
    if (l->steps == 0) {
        snprintf(err, errcap,
                 "%s: %" PRIu64 " samples give rank shards of %" PRIu64 ", less than one batch "
                 "of %" PRIu32,
                 l->path, l->src.n, l->shard_len, l->cfg.batch);
        return FT_EARG;
    }
    l->chunk = l->cfg.chunk ? l->cfg.chunk : 16;
    if (l->chunk > l->cfg.batch) l->chunk = l->cfg.batch;
    l->nchunks = (l->cfg.batch + l->chunk - 1) / l->chunk;
    ft_pixel_norm_table(l->lut);
    l->perm = malloc(l->src.n * sizeof *l->perm);
    if (!l->perm) return -ENOMEM;
    l->perm_epoch = UINT64_MAX;
    l->bad = calloc(LOADER_BAD_KEEP, sizeof *l->bad);
    if (!l->bad) return -ENOMEM;
    l->nslots = l->cfg.prefetch + 1;
    if ((rc = alloc_slots(l)) != 0) {
        snprintf(err, errcap, "loader: out of memory for %" PRIu32 " batches", l->nslots);
        return rc;
    }
    if ((rc = open_file(l, err, errcap)) != 0) return rc;
    l->g_next = l->g_released = l->g_claim = l->cfg.start_epoch * l->steps + l->cfg.start_step;
    return start_workers(l, err, errcap);
}

int loader_open(loader **out, const loader_config *cfg, char *err, size_t errcap) {
    *out = NULL;
    int rc = check_config(cfg, err, errcap);
    if (rc) return rc;
    loader *l = calloc(1, sizeof *l);
    if (!l) return -ENOMEM;
    l->cfg = *cfg;
    l->fd = -1;
    snprintf(l->path, sizeof l->path, "%s", cfg->path);
    l->cfg.path = l->path;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_work, NULL);
    pthread_cond_init(&l->cv_ready, NULL);
    if ((rc = setup(l, err, errcap)) != 0) {
        if (rc == -ENOMEM && !err[0]) snprintf(err, errcap, "loader: out of memory");
        loader_close(l);
        return rc;
    }
    *out = l;
    return 0;
}

void loader_close(loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    for (uint32_t i = 0; i < l->nworkers; i++)
        if (l->workers[i].started) pthread_join(l->workers[i].th, NULL);
    for (uint32_t i = 0; i < l->nworkers; i++) ld_worker_free(&l->workers[i]);
    free(l->workers);
    size_t bytes = (size_t)l->cfg.batch * l->img_bytes;
    for (uint32_t i = 0; l->slots && i < l->nslots; i++) {
        ld_slot *s = &l->slots[i];
        if (s->data && l->cfg.free)
            l->cfg.free(l->cfg.alloc_user, s->data, bytes);
        else
            free(s->data);
        free(s->labels), free(s->indices), free(s->requested), free(s->flags);
    }
    free(l->slots);
    if (l->map) munmap(l->map, l->map_len);
    if (l->fd >= 0) close(l->fd);
    ld_source_free(&l->src);
    free(l->perm);
    free(l->bad);
    pthread_cond_destroy(&l->cv_work);
    pthread_cond_destroy(&l->cv_ready);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* Under l->mu. */
static void release_locked(loader *l) {
    if (!l->held) return;
    l->held = 0;
    l->g_released = l->g_next;
    pthread_cond_broadcast(&l->cv_work);
}

void loader_release(loader *l, loader_batch *b) {
    pthread_mutex_lock(&l->mu);
    if (l->held && b && (uint64_t)b->slot == (l->g_next - 1) % l->nslots) release_locked(l);
    pthread_mutex_unlock(&l->mu);
    if (b) b->data = NULL;
}

int loader_next(loader *l, loader_batch *b) {
    pthread_mutex_lock(&l->mu);
    release_locked(l);
    uint64_t g = l->g_next;
    ld_slot *s = &l->slots[g % l->nslots];
    double t0 = ft_now();
    while (!(s->ready && s->g == g)) pthread_cond_wait(&l->cv_ready, &l->mu);
    l->st.consumer_wait_s += ft_now() - t0;
    if (s->err_rc) {
        int rc = s->err_rc;
        snprintf(l->errmsg, sizeof l->errmsg, "%s", s->err);
        pthread_mutex_unlock(&l->mu);
        return rc;
    }
    memset(b, 0, sizeof *b);
    b->epoch = g / l->steps, b->step = g % l->steps;
    b->n = l->cfg.batch, b->h = l->h, b->w = l->w;
    b->layout = l->cfg.layout;
    b->data = s->data;
    b->data_bytes = (size_t)l->cfg.batch * l->img_bytes;
    b->labels = s->labels, b->indices = s->indices, b->requested = s->requested;
    b->flags = s->flags;
    b->slot = (int)(g % l->nslots);
    l->held = 1;
    l->g_next = g + 1;
    l->st.batches++;
    l->st.images += l->cfg.batch;
    pthread_mutex_unlock(&l->mu);
    return 0;
}

int loader_seek(loader *l, uint64_t epoch, uint64_t step) {
    if (step >= l->steps) {
        snprintf(l->errmsg, sizeof l->errmsg,
                 "loader: step %" PRIu64 " is past the end of an epoch (%" PRIu64 " steps)", step,
                 l->steps);
        return FT_ERANGE;
    }
    pthread_mutex_lock(&l->mu);
    l->paused = 1;
    l->held = 0;
    while (l->inflight > 0) pthread_cond_wait(&l->cv_ready, &l->mu);
    for (uint32_t i = 0; i < l->nslots; i++) l->slots[i].g = UINT64_MAX, l->slots[i].ready = 0;
    l->g_next = l->g_released = l->g_claim = epoch * l->steps + step;
    l->c_claim = 0;
    l->paused = 0;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

uint64_t loader_num_samples(const loader *l) {
    return l->src.n;
}

uint64_t loader_num_classes(const loader *l) {
    return l->src.num_classes;
}

uint64_t loader_steps_per_epoch(const loader *l) {
    return l->steps;
}

void loader_image_shape(const loader *l, uint32_t *h, uint32_t *w) {
    *h = l->h, *w = l->w;
}

const char *loader_engine_name(const loader *l) {
    switch (l->engine) {
    case LOADER_ENGINE_URING:
        return "uring";
    case LOADER_ENGINE_MMAP:
        return "mmap";
    default:
        return "pread";
    }
}

const char *loader_errmsg(const loader *l) {
    return l->errmsg;
}

static void add_worker(loader_stats *s, const ld_worker *w) {
    s->read_s += w->read_s, s->decode_s += w->decode_s, s->other_s += w->other_s;
    s->wait_s += w->wait_s, s->cpu_s += w->cpu_s;
    s->bytes_read += w->bytes;
    s->images_decoded += w->images;
}

void loader_get_stats(loader *l, loader_stats *s) {
    pthread_mutex_lock(&l->mu);
    *s = l->st;
    s->bad_samples = l->nbad;
    s->threads = l->nworkers;
    for (uint32_t i = 0; i < l->nworkers; i++) add_worker(s, &l->workers[i]);
    pthread_mutex_unlock(&l->mu);
}

void loader_get_thread_stats(loader *l, uint32_t thread, loader_stats *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&l->mu);
    if (thread < l->nworkers) {
        add_worker(s, &l->workers[thread]);
        s->images = l->workers[thread].images; /* per thread: images it decoded */
        s->threads = 1;
    }
    pthread_mutex_unlock(&l->mu);
}

uint64_t loader_bad_samples(loader *l, loader_bad *out, uint64_t cap, uint64_t *n_out) {
    pthread_mutex_lock(&l->mu);
    uint64_t kept = l->nbad < LOADER_BAD_KEEP ? l->nbad : LOADER_BAD_KEEP;
    uint64_t n = kept < cap ? kept : cap;
    if (out && n) memcpy(out, l->bad, n * sizeof *out);
    uint64_t total = l->nbad;
    pthread_mutex_unlock(&l->mu);
    if (n_out) *n_out = out ? n : 0;
    return total;
}

int loader_sample_jpeg(loader *l, uint64_t index, uint8_t **jpeg, size_t *len, int32_t *label) {
    *jpeg = NULL, *len = 0;
    if (index >= l->src.n) return FT_ERANGE;
    uint64_t off = l->src.offsets[index];
    uint32_t n = l->src.lengths[index];
    uint8_t *raw = malloc(n ? n : 1), *scratch = malloc(n ? n : 1);
    int rc = raw && scratch ? 0 : -ENOMEM;
    size_t done = 0;
    /* a plain descriptor: the loader's own may be O_DIRECT */
    int fd = rc ? -1 : open(l->src.file, O_RDONLY | O_CLOEXEC);
    if (!rc && fd < 0) rc = -errno;
    while (!rc && done < n) {
        ssize_t r = pread(fd, raw + done, n - done, (off_t)(off + done));
        if (r <= 0 && !(r < 0 && errno == EINTR))
            rc = r < 0 ? -errno : -EIO;
        else if (r > 0)
            done += (size_t)r;
    }
    if (fd >= 0) close(fd);
    const uint8_t *j;
    size_t jl;
    char why[160];
    if (!rc) rc = ld_source_parse(&l->src, index, raw, n, scratch, label, &j, &jl, why, sizeof why);
    if (!rc && (*jpeg = malloc(jl ? jl : 1)) == NULL) rc = -ENOMEM;
    if (!rc) memcpy(*jpeg, j, jl), *len = jl;
    free(raw), free(scratch);
    return rc;
}
