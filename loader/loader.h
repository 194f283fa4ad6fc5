/* loader: facetrain's prefetching batch loader (design.md contract 3).
 *
 * Reads JPEG samples from a facetrain LMDB dataset (ingest/ftdb.h) or straight from an
 * insightface RecordIO dataset (train.rec + train.idx), decodes them with libjpeg-turbo on a
 * pool of worker threads, applies the random horizontal flip (and, for the CPU trainer, the
 * normalization), and fills a bounded ring of batches ahead of the consumer.
 *
 *   loader_config c;
 *   loader_config_init(&c);
 *   c.path = "data/train.lmdb"; c.batch = 128; c.rank = 0; c.world = 1; c.seed = 2048;
 *   loader *l;
 *   char err[LOADER_ERRCAP];
 *   if (loader_open(&l, &c, err, sizeof err)) { fprintf(stderr, "%s\n", err); ... }
 *   loader_batch b;
 *   for (;;) {
 *       int rc = loader_next(l, &b);         // releases the batch of the previous call
 *       if (rc) { fprintf(stderr, "%s\n", loader_errmsg(l)); break; }
 *       train_step(b.data, b.labels, b.n);   // b.epoch, b.step tell where we are
 *   }
 *   loader_close(l);
 *
 * Order is a pure function of (seed, epoch, rank, world, batch): the same whatever the thread
 * count, prefetch depth or read engine. See docs/loader.md for the exact sharding, flip and
 * bad-sample substitution rules.
 *
 * Errors: calls return 0 or a negative status (-errno, or FT_E* from ft_common.h) and keep a
 * message (loader_errmsg). Nothing here exits. loader_close(NULL) is a no-op.
 */
#ifndef FT_LOADER_H
#define FT_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "ft_common.h"

#define LOADER_ERRCAP 512

typedef struct loader loader; /* opaque */

typedef enum loader_layout {
    LOADER_U8_HWC = 0, /* uint8 [n][h][w][3] RGB (the GPU trainer normalizes on device) */
    LOADER_F32_CHW = 1 /* float32 [n][3][h][w], ft_pixel_norm_table (x/127.5 - 1; CPU trainer) */
} loader_layout;

typedef enum loader_engine {
    LOADER_ENGINE_AUTO = 0, /* io_uring, or pread when io_uring is unavailable */
    LOADER_ENGINE_URING = 1,
    LOADER_ENGINE_PREAD = 2,
    LOADER_ENGINE_MMAP = 3
} loader_engine;

/* Optional caller-owned batch memory (e.g. cudaHostAlloc'd pinned memory). Called once per
 * ring slot at open for the image buffer (loader_batch.data) and once per slot at close. */
typedef void *(*loader_alloc_fn)(void *user, size_t bytes);
typedef void (*loader_free_fn)(void *user, void *ptr, size_t bytes);

typedef struct loader_config {
    const char *path;     /* LMDB directory, dataset folder (train.rec + train.idx), or .rec */
    uint32_t rank, world; /* this process's shard; default 0 of 1 */
    uint32_t batch;       /* images per batch (default 128) */
    uint64_t seed;        /* default 2048 (arcface_torch's) */
    uint32_t threads;     /* decode threads (default 2) */
    uint32_t prefetch;    /* batches in the ring, filled ahead (default 4, >= 2) */
    uint32_t chunk;       /* samples a worker reads and decodes per claim (0 = 16) */
    loader_layout layout;
    loader_engine engine;
    int direct;      /* O_DIRECT reads of aligned enclosing ranges (uring and pread) */
    int no_flip;     /* disable the random horizontal flip */
    int fail_on_bad; /* bad sample: loader_next fails instead of substituting */
    int quiet;       /* no stderr messages */
    int fast_idct;   /* libjpeg-turbo's fast integer IDCT (default: the accurate one) */
    uint64_t start_epoch, start_step; /* where the first loader_next starts (resume) */
    loader_alloc_fn alloc;            /* NULL: the loader allocates batch memory itself */
    loader_free_fn free;
    void *alloc_user;
} loader_config;

void loader_config_init(loader_config *c);

enum { LOADER_FLAG_FLIPPED = 1, LOADER_FLAG_SUBSTITUTED = 2 };

/* One batch; valid until the next loader_next / loader_release / loader_seek / loader_close. */
typedef struct loader_batch {
    uint64_t epoch, step; /* step within the epoch, 0-based */
    uint32_t n;           /* images (= config batch) */
    uint32_t h, w;        /* image height and width; 3 channels */
    loader_layout layout;
    void *data; /* n * h * w * 3 uint8 (HWC) or float (CHW) */
    size_t data_bytes;
    int32_t *labels;     /* [n] */
    uint64_t *indices;   /* [n] dataset sample index delivered (a substitute where flagged) */
    uint64_t *requested; /* [n] sample index the order asked for */
    uint8_t *flags;      /* [n] LOADER_FLAG_* */
    int slot;            /* private */
} loader_batch;

typedef struct loader_stats {
    uint64_t batches, images, bytes_read; /* delivered batches/images; bytes read by workers */
    uint64_t images_decoded;              /* by the workers (prefetched ones included) */
    uint64_t bad_samples;                 /* samples replaced (or failed) because they were bad */
    double read_s, decode_s, other_s, wait_s; /* summed over worker threads */
    double cpu_s;           /* worker threads' CPU time while working (CLOCK_THREAD_CPUTIME_ID) */
    double consumer_wait_s; /* time loader_next spent waiting */
    uint32_t threads;
} loader_stats;

typedef struct loader_bad {
    uint64_t epoch, index, substitute; /* substitute = UINT64_MAX in fail mode */
    char reason[120];
} loader_bad;

/* Open; starts the worker threads, which begin filling the ring at once. */
int loader_open(loader **out, const loader_config *cfg, char *err, size_t errcap);
void loader_close(loader *l); /* stops workers mid-epoch if needed; NULL is a no-op */

/* Next batch (the previous one is released first). 0, or < 0 with loader_errmsg: a bad sample
 * in fail mode (FT_EDECODE/FT_EFORMAT/FT_ERANGE, message names index and reason) or an I/O
 * error. After an error the loader stays at that batch. */
int loader_next(loader *l, loader_batch *b);
void loader_release(loader *l, loader_batch *b); /* optional early release */
/* Continue from (epoch, step): drops everything prefetched; no data is replayed. */
int loader_seek(loader *l, uint64_t epoch, uint64_t step);

uint64_t loader_num_samples(const loader *l);
uint64_t loader_num_classes(const loader *l); /* 0 if the dataset does not say */
uint64_t loader_steps_per_epoch(const loader *l);
void loader_image_shape(const loader *l, uint32_t *h, uint32_t *w);
const char *loader_engine_name(const loader *l); /* engine in use: "uring", "pread", "mmap" */
const char *loader_errmsg(const loader *l);

void loader_get_stats(loader *l, loader_stats *s);
void loader_get_thread_stats(loader *l, uint32_t thread, loader_stats *s);
/* Bad samples seen so far (the first LOADER_BAD_KEEP are kept); returns the total count. */
#define LOADER_BAD_KEEP 1024
uint64_t loader_bad_samples(loader *l, loader_bad *out, uint64_t cap, uint64_t *n_out);

/* Raw JPEG bytes and label of dataset sample `index` (malloc'd copy; caller frees), read
 * synchronously. For tools and tests (reference decodes, the decode-only ceiling). */
int loader_sample_jpeg(loader *l, uint64_t index, uint8_t **jpeg, size_t *len, int32_t *label);

/* The file the dataset at `path` reads from (data.mdb or the .rec), without opening it; the
 * path forms are ft_dataset_resolve's (common/ft_dataset.h). */
int loader_resolve_file(const char *path, char *out, size_t cap);

/* The order, as pure functions (also what the loader uses). */
/* Sample index at position `pos` (0 <= pos < loader_shard_len) of this rank's shard of `epoch`;
 * perm is the epoch's permutation of n (ft_permutation(perm, n, seed, epoch)). */
uint64_t loader_shard_len(uint64_t n, uint32_t world);
uint64_t loader_shard_index(const uint64_t *perm, uint64_t n, uint32_t rank, uint32_t world,
                            uint64_t pos);
int loader_flip_of(uint64_t seed, uint64_t epoch, uint64_t index); /* 1 = mirrored */

#endif
