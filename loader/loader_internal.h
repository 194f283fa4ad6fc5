/* loader_internal.h: what the loader's .c files share (not a public header).
 *
 *   loader.c         open/close, the ring, the consumer side, order and stats
 *   loader_worker.c  worker threads: claim a chunk, read it, decode into the slot, substitute
 *   loader_source.c  datasets: LMDB (ftdb extents) and RecordIO (.idx + record extents)
 *   loader_io.c      read engines: io_uring, pread, mmap; O_DIRECT aligned ranges
 */
#ifndef FT_LOADER_INTERNAL_H
#define FT_LOADER_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include <liburing.h>
#include <turbojpeg.h>

#include "loader.h"

#define LD_ALIGN       4096u /* O_DIRECT alignment of offsets, lengths and buffers */
#define LD_MAX_CHUNK   256u
#define LD_SUBST_TRIES 16u
#define LD_MSG_LIMIT   20u /* one-line stderr messages about bad samples, then a summary */

/* ------------------------------------------------------------------ source */
enum { LD_SRC_LMDB = 1, LD_SRC_REC = 2 };

typedef struct ld_source {
    int kind;
    char file[4200];   /* data.mdb or the .rec */
    uint64_t n;        /* samples */
    uint64_t *offsets; /* [n] byte offset of the sample's bytes in `file` */
    uint32_t *lengths; /* [n] bytes to read (LMDB value, or the record's on-disk extent) */
    uint64_t *keys;    /* [n] RecordIO key (rec only; for messages) */
    uint32_t max_len;  /* max of lengths */
    uint64_t file_size;
    uint64_t num_classes; /* 0 = unknown */
    uint32_t h, w;        /* expected image shape */
} ld_source;

int ld_source_open(ld_source *s, const char *path, char *err, size_t errcap);
void ld_source_free(ld_source *s);
/* Sample bytes as read from the file -> label and JPEG. `scratch` (>= max_len bytes) holds the
 * reassembled record for RecordIO. 0, or < 0 with `why`. */
int ld_source_parse(const ld_source *s, uint64_t index, const uint8_t *bytes, size_t n,
                    uint8_t *scratch, int32_t *label, const uint8_t **jpeg, size_t *jpeg_len,
                    char *why, size_t whycap);

/* ------------------------------------------------------------------ io */
typedef struct ld_io {
    loader_engine engine; /* URING, PREAD or MMAP (never AUTO) */
    int fd;               /* not owned */
    int direct;
    const uint8_t *map; /* MMAP: the whole file, not owned */
    uint64_t map_len;
    struct io_uring ring;
    int ring_ok, fixed_file, fixed_buf;
    uint8_t *buf; /* per-sample read slots, LD_ALIGN-aligned */
    size_t slot_cap;
    uint32_t nslots;
} ld_io;

/* Prepare reads of up to `nslots` samples of at most `max_len` bytes. For URING this creates
 * the ring; failure there returns the io_uring error (the caller falls back to pread). */
int ld_io_init(ld_io *io, loader_engine engine, int fd, const uint8_t *map, uint64_t map_len,
               int direct, uint32_t nslots, uint32_t max_len);
void ld_io_free(ld_io *io);
/* Read k <= nslots samples. out[i] points at sample i's bytes (in the io's buffer or the
 * map); rcs[i] is 0 or -errno for that sample. */
void ld_io_read(ld_io *io, const uint64_t *off, const uint32_t *len, uint32_t k,
                const uint8_t **out, int *rcs);
/* Test hook: io_uring setup fails when FT_LOADER_NO_URING is set in the environment. */
int ld_uring_probe(void);

/* ------------------------------------------------------------------ ring and workers */
typedef struct ld_slot {
    uint64_t g;       /* batch sequence number it holds (UINT64_MAX: none) */
    uint32_t pending; /* chunks not yet done */
    int ready;
    int err_rc; /* fail mode: first bad sample (lowest position) */
    uint32_t err_pos;
    char err[LOADER_ERRCAP];
    void *data;
    int32_t *labels;
    uint64_t *indices, *requested;
    uint8_t *flags;
} ld_slot;

typedef struct ld_worker {
    struct loader *l;
    uint32_t id;
    pthread_t th;
    int started;
    ld_io io;
    tjhandle tj;
    uint8_t *rgb;     /* h*w*3 scratch (f32 layout) */
    uint8_t *payload; /* max_len scratch (RecordIO reassembly) */
    /* totals, under l->mu */
    double read_s, decode_s, other_s, wait_s, cpu_s;
    uint64_t images, bytes;
} ld_worker;

double ld_thread_cpu(void); /* this thread's CPU seconds */

struct loader {
    loader_config cfg;
    char path[4096];
    ld_source src;
    loader_engine engine;
    int fd;
    uint8_t *map;
    uint64_t map_len;
    uint32_t h, w;
    size_t img_bytes; /* one image in the output layout */
    uint64_t shard_len, steps;
    uint32_t chunk, nchunks;
    float lut[256]; /* ft_pixel_norm_table: the float input of each pixel value */

    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_ready;
    uint64_t *perm, perm_epoch; /* current epoch's permutation (perm_epoch UINT64_MAX: none) */
    uint64_t g_next;            /* next batch loader_next returns */
    uint64_t g_released;        /* batches < g_released are released */
    uint64_t g_claim;           /* next chunk to hand out: (g_claim, c_claim) */
    uint32_t c_claim;
    int held; /* consumer holds batch g_next - 1 */
    int stop, paused;
    uint32_t inflight; /* chunks being worked on */
    ld_slot *slots;
    uint32_t nslots;
    ld_worker *workers;
    uint32_t nworkers;

    loader_stats st; /* batches, images, bytes, bad, consumer_wait */
    loader_bad *bad; /* first LOADER_BAD_KEEP */
    uint64_t nbad;
    uint32_t msgs;
    char errmsg[LOADER_ERRCAP];
};

void *ld_worker_main(void *arg);
int ld_worker_init(ld_worker *w, struct loader *l, uint32_t id);
void ld_worker_free(ld_worker *w);
/* Substitute number a (1-based) for a bad sample: a pure function of (seed, epoch, index, a). */
uint64_t ld_substitute(uint64_t seed, uint64_t epoch, uint64_t index, uint32_t a, uint64_t n);

#endif
