/* ft_common.c: see ft_common.h. */
#include "ft_common.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *ft_strerror(int rc) {
    switch (rc) {
    case FT_OK:
        return "success";
    case FT_EFORMAT:
        return "bad format";
    case FT_ETRUNC:
        return "truncated input";
    case FT_ERANGE:
        return "value out of range";
    case FT_EDECODE:
        return "image cannot be decoded";
    case FT_EARG:
        return "bad argument";
    case FT_ESTOP:
        return "stopped by signal";
    case FT_EVERSION:
        return "unsupported format version";
    case FT_ENOTSUP:
        return "not supported";
    case FT_ENODEV:
        return "no device";
    case FT_ENONFINITE:
        return "value is inf or NaN";
    case FT_EDEVICE:
        return "device error";
    case FT_ESTALE:
        return "recording is stale";
    default:
        break;
    }
    if (rc < 0 && rc > -4096) return strerror(-rc);
    return "unknown error";
}

double ft_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int ft_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ') return FT_EFORMAT;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE) return FT_ERANGE;
    if (*end != '\0') return FT_EFORMAT;
    if (v < lo || v > hi) return FT_ERANGE;
    *out = (uint64_t)v;
    return 0;
}

int ft_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s || !*s || *s == ' ') return FT_EFORMAT;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE) return FT_ERANGE;
    if (*end != '\0') return FT_EFORMAT;
    if (v < lo || v > hi) return FT_ERANGE;
    *out = (int64_t)v;
    return 0;
}

int ft_parse_double(const char *s, double lo, double hi, double *out) {
    if (!s || !*s || *s == ' ') return FT_EFORMAT;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno == ERANGE || !isfinite(v)) return FT_ERANGE;
    if (*end != '\0') return FT_EFORMAT;
    if (v < lo || v > hi) return FT_ERANGE;
    *out = v;
    return 0;
}

int ft_mkdir_p(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -errno;
            buf[i] = c;
        }
    }
    return ft_is_dir(path) ? 0 : -ENOTDIR;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(p) == 0 || errno == ENOENT ? 0 : -errno;
}

int ft_rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode)) return unlink(path) == 0 ? 0 : -errno;
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int ft_file_size(const char *path, uint64_t *size) {
    struct stat st;
    if (stat(path, &st) != 0) return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

int ft_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int ft_fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = fsync(fd) == 0 || errno == EINVAL ? 0 : -errno;
    close(fd);
    return rc;
}

int ft_fsync_parent(const char *path) {
    char dir[4096];
    size_t n = strlen(path);
    if (n >= sizeof dir) return -ENAMETOOLONG;
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash) return ft_fsync_path(".");
    if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    return ft_fsync_path(dir);
}

int ft_cli_help_version(int argc, char **argv, const char *prog, const char *usage) {
    if (argc < 2) return 0;
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage, stdout);
        if (usage[0] && usage[strlen(usage) - 1] != '\n') fputc('\n', stdout);
        return 1;
    }
    if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
        printf("%s (%s)\n", prog, FT_VERSION_STRING);
        return 1;
    }
    return 0;
}

int ft_path_join(char *out, size_t cap, const char *a, const char *b) {
    int n = snprintf(out, cap, "%s/%s", a, b);
    return n < 0 || (size_t)n >= cap ? FT_ERANGE : 0;
}

int ft_read_file(const char *path, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return -errno;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return -ENOMEM;
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return -ENOMEM;
            }
            buf = nb, cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f) ? -EIO : 0;
    fclose(f);
    if (err) {
        free(buf);
        return err;
    }
    buf[n] = '\0';
    *data = buf;
    if (len) *len = n;
    return 0;
}

/* ---- progress ---- */

void ft_progress_init(ft_progress *p, const char *what, uint64_t total) {
    memset(p, 0, sizeof *p);
    p->what = what;
    p->total = total;
    p->t_start = p->t_last = ft_now();
    p->tty = isatty(STDERR_FILENO);
}

static void fmt_eta(char *buf, size_t cap, double sec) {
    if (!(sec >= 0) || sec > 1e7) {
        snprintf(buf, cap, "--:--:--");
        return;
    }
    long s = (long)(sec + 0.5);
    snprintf(buf, cap, "%02ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
}

static void progress_print(ft_progress *p, int final) {
    double el = ft_now() - p->t_start;
    double rate = el > 0 ? (double)(p->done - p->first) / el : 0;
    double mbs = el > 0 ? (double)p->bytes / el / 1e6 : 0;
    char eta[32], mid[224];
    fmt_eta(eta, sizeof eta,
            p->total && rate > 0 && p->done <= p->total ? (double)(p->total - p->done) / rate : -1);
    if (p->note[0])
        snprintf(mid, sizeof mid, "%s", p->note);
    else
        snprintf(mid, sizeof mid, "%.0f/s  %.1f MB/s", rate, mbs);
    if (p->tty) {
        char bar[31];
        int fill = p->total ? (int)(30.0 * (double)p->done / (double)p->total) : 0;
        if (fill > 30) fill = 30;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        /* \033[K: erase what a longer previous line left to the right */
        fprintf(stderr, "\r%s [%s] %llu/%llu  %s  ETA %s\033[K%s", p->what, bar,
                (unsigned long long)p->done, (unsigned long long)p->total, mid, eta,
                final ? "\n" : "");
        p->printed = !final;
    } else {
        fprintf(stderr, "%s: %llu/%llu  %s  ETA %s\n", p->what, (unsigned long long)p->done,
                (unsigned long long)p->total, mid, eta);
    }
    fflush(stderr);
}

void ft_progress_add(ft_progress *p, uint64_t items, uint64_t bytes) {
    p->done += items;
    p->bytes += bytes;
    /* on a terminal the final state is ft_progress_done's to draw, once */
    if (p->tty && p->total && p->done >= p->total) return;
    double t = ft_now();
    if (t - p->t_last >= (p->tty ? 0.1 : 10.0)) {
        p->t_last = t;
        progress_print(p, 0);
    }
}

void ft_progress_redraw(ft_progress *p) {
    p->t_last = ft_now();
    progress_print(p, 0);
}

void ft_progress_done(ft_progress *p) {
    if (p->tty) progress_print(p, 1);
    p->printed = 0;
}

void ft_progress_clear(ft_progress *p) {
    ft_progress_hide(p);
}

void ft_progress_hide(ft_progress *p) {
    if (p->printed) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    p->printed = 0;
}

/* ---- stop flag ---- */

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}
void ft_stop_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}
int ft_stop_requested(void) {
    return g_stop != 0;
}

/* ---- random numbers ---- */

uint64_t ft_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t ft_hash64(uint64_t a, uint64_t b, uint64_t c) {
    uint64_t s = a;
    uint64_t h = ft_splitmix64(&s);
    s = h ^ b;
    h = ft_splitmix64(&s);
    s = h ^ c;
    return ft_splitmix64(&s);
}

void ft_rng_seed(ft_rng *r, uint64_t seed, uint64_t stream) {
    uint64_t s = ft_hash64(seed, stream, 0x66616365ull /* "face" */);
    for (int i = 0; i < 4; i++) r->s[i] = ft_splitmix64(&s);
}

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t ft_rng_u64(ft_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t ft_rng_below(ft_rng *r, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t lim = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
    uint64_t x;
    do x = ft_rng_u64(r);
    while (x >= lim);
    return x % n;
}

double ft_rng_uniform(ft_rng *r) {
    return (double)(ft_rng_u64(r) >> 11) * 0x1.0p-53;
}

double ft_rng_normal(ft_rng *r) {
    double u1, u2;
    do u1 = ft_rng_uniform(r);
    while (u1 <= 0.0);
    u2 = ft_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void ft_permutation(uint64_t *perm, uint64_t n, uint64_t seed, uint64_t stream) {
    ft_rng r;
    ft_rng_seed(&r, seed, stream);
    for (uint64_t i = 0; i < n; i++) perm[i] = i;
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = ft_rng_below(&r, i);
        uint64_t t = perm[i - 1];
        perm[i - 1] = perm[j], perm[j] = t;
    }
}
