/* ft_common: small helpers shared by every facetrain program and library.
 *
 * - status codes: library calls return 0 on success, -errno for system errors, or one of the
 *   FT_E* codes below; ft_strerror() names any of them. Only main() exits.
 * - time, strict number parsing, file helpers (mkdir -p, rm -rf, fsync'd atomic rename)
 * - progress reporting: a bar with rate and ETA when stderr is a terminal, plain periodic
 *   lines otherwise
 * - deterministic random numbers (splitmix64 / xoshiro256**) and permutations, so that every
 *   stage derives the same order from (seed, ...) whatever the thread count
 * - stop-on-signal flag for long loops (SIGINT/SIGTERM/SIGHUP only set a flag)
 */
#ifndef FT_COMMON_H
#define FT_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FT_VERSION_STRING "facetrain 0.1.0"

/* facetrain's own status codes live below -30000, clear of -errno values. */
enum {
    FT_OK = 0,
    FT_EFORMAT = -30001,    /* input does not follow its format */
    FT_ETRUNC = -30002,     /* input ends early */
    FT_ERANGE = -30003,     /* a value is out of its allowed range */
    FT_EDECODE = -30004,    /* an image cannot be decoded */
    FT_EARG = -30005,       /* bad argument from the caller */
    FT_ESTOP = -30006,      /* stopped by a signal */
    FT_EVERSION = -30007,   /* format version this build does not read */
    FT_ENOTSUP = -30008,    /* not supported by this build or backend */
    FT_ENODEV = -30009,     /* the backend is built but no device is present */
    FT_ENONFINITE = -30010, /* a value is inf or NaN */
    FT_EDEVICE = -30011,    /* the device (CUDA, cuDNN, cuBLAS) reported an error */
    FT_ESTALE = -30012      /* a recording (ops.h graphs) uses memory replaced since */
};
const char *ft_strerror(int rc);

/* ---- command line ---- */
/* For programs whose arguments are positional (test helpers, benchmarks): when argv[1] is
 * -h/--help, prints `usage` on stdout; when it is -V/--version, prints "PROG (facetrain x.y.z)".
 * Returns 1 then (main exits 0 without doing anything else), else 0. */
int ft_cli_help_version(int argc, char **argv, const char *prog, const char *usage);

/* ---- time ---- */
double ft_now(void); /* monotonic seconds */

/* ---- strict parsing: whole string must be a number in [lo, hi]; 0 or FT_ERANGE/FT_EFORMAT ---- */
int ft_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
int ft_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
int ft_parse_double(const char *s, double lo, double hi, double *out);

/* ---- files ---- */
int ft_mkdir_p(const char *path);                   /* 0 or -errno */
int ft_rm_rf(const char *path);                     /* 0 or -errno; missing path is fine */
int ft_file_size(const char *path, uint64_t *size); /* 0 or -errno */
int ft_is_dir(const char *path);                    /* 1 dir, 0 otherwise */
int ft_fsync_path(const char *path);                /* fsync a file or directory */
int ft_fsync_parent(const char *path); /* fsync the folder holding path (after a rename) */
int ft_path_join(char *out, size_t cap, const char *a, const char *b); /* 0 or FT_ERANGE */
/* Read a whole small file (NUL-terminated; *len excludes the NUL). Caller frees. */
int ft_read_file(const char *path, char **data, size_t *len);

/* ---- progress ----
 * On a terminal every redraw is "\r<line>\033[K" (the rest of a longer previous line is
 * erased) and the final state is drawn once, by ft_progress_done, ending the line. */
typedef struct ft_progress {
    const char *what; /* e.g. "ingest" */
    uint64_t total;   /* items expected (0 = unknown) */
    uint64_t done;    /* items so far */
    uint64_t bytes;   /* bytes so far */
    uint64_t first;   /* done when the clock started (rate and ETA count from there) */
    double t_start, t_last;
    int tty;        /* stderr is a terminal */
    int printed;    /* a bar is on screen (needs a newline before other output) */
    char note[192]; /* when set: shown instead of the items/s and MB/s fields */
} ft_progress;
void ft_progress_init(ft_progress *p, const char *what, uint64_t total);
/* Add items/bytes; redraws at most ~10 times a second (tty) or every 10 s (not a tty). */
void ft_progress_add(ft_progress *p, uint64_t items, uint64_t bytes);
void ft_progress_done(ft_progress *p); /* final line */
/* Erase the bar (tty) so that other output (an error) can be printed; the next redraw or
 * ft_progress_done brings it back. clear and hide are the same. */
void ft_progress_clear(ft_progress *p);
void ft_progress_hide(ft_progress *p);
void ft_progress_redraw(ft_progress *p); /* now, whatever the time since the last one */

/* ---- stop flag ---- */
void ft_stop_install(void); /* SIGINT, SIGTERM, SIGHUP set the flag */
int ft_stop_requested(void);

/* ---- deterministic random numbers ---- */
uint64_t ft_splitmix64(uint64_t *state);
uint64_t ft_hash64(uint64_t a, uint64_t b, uint64_t c); /* keyed mix of three words */
typedef struct ft_rng {
    uint64_t s[4];
} ft_rng;
void ft_rng_seed(ft_rng *r, uint64_t seed, uint64_t stream);
uint64_t ft_rng_u64(ft_rng *r);
uint64_t ft_rng_below(ft_rng *r, uint64_t n); /* uniform in [0, n), unbiased */
double ft_rng_uniform(ft_rng *r);             /* [0, 1) with 53 bits */
double ft_rng_normal(ft_rng *r);              /* standard normal (Box-Muller) */
/* perm[i], i < n: Fisher-Yates permutation of 0..n-1 from ft_rng_seed(seed, stream). */
void ft_permutation(uint64_t *perm, uint64_t n, uint64_t seed, uint64_t stream);

/* ---- little-endian helpers ---- */
static inline uint32_t ft_rd_le32(const void *p) {
    const uint8_t *b = (const uint8_t *)p;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static inline uint64_t ft_rd_le64(const void *p) {
    return (uint64_t)ft_rd_le32(p) | (uint64_t)ft_rd_le32((const uint8_t *)p + 4) << 32;
}
static inline void ft_wr_le32(void *p, uint32_t v) {
    uint8_t *b = (uint8_t *)p;
    b[0] = (uint8_t)v, b[1] = (uint8_t)(v >> 8), b[2] = (uint8_t)(v >> 16),
    b[3] = (uint8_t)(v >> 24);
}
static inline void ft_wr_le64(void *p, uint64_t v) {
    ft_wr_le32(p, (uint32_t)v);
    ft_wr_le32((uint8_t *)p + 4, (uint32_t)(v >> 32));
}
static inline void ft_wr_be64(void *p, uint64_t v) {
    uint8_t *b = (uint8_t *)p;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (56 - 8 * i));
}
static inline uint64_t ft_rd_be64(const void *p) {
    const uint8_t *b = (const uint8_t *)p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | b[i];
    return v;
}

#endif
