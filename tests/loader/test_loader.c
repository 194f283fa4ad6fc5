/* test_loader: order, sharding, flips, determinism, engines, layouts, resume, sources.
 *
 *   test_loader CASE DATASET_DIR     (DATASET_DIR from ld_mkdata: train.lmdb [+ train.rec])
 *   cases: order pixels threads engines fallback resume rec
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "ft_dataset.h"
#include "ld_test.h"

static char lmdb[4200], rec[4200];

/* PyTorch DistributedSampler(shuffle, drop_last=False) + DataLoader(drop_last=True), written
 * the way torch does it: pad by repetition, take indices[rank:total:world], cut whole batches. */
static uint64_t *expected_shard(uint64_t n, uint64_t seed, uint64_t epoch, uint32_t rank,
                                uint32_t world, uint32_t B, uint64_t *count) {
    uint64_t *perm = malloc(n * sizeof *perm);
    uint64_t per = (n + world - 1) / world, total = per * world;
    uint64_t *padded = malloc(total * sizeof *padded), *out = malloc(per * sizeof *out);
    ft_permutation(perm, n, seed, epoch);
    for (uint64_t i = 0; i < total; i++) padded[i] = i < n ? perm[i] : padded[i - n];
    uint64_t k = 0;
    for (uint64_t i = rank; i < total; i += world) out[k++] = padded[i];
    *count = (per / B) * B;
    free(perm), free(padded);
    return out;
}

static int check_world(uint32_t world, uint32_t B, uint64_t n) {
    uint64_t *seen = calloc(n, sizeof *seen), delivered = 0, steps0 = 0;
    for (uint32_t r = 0; r < world; r++) {
        loader_config c = t_config(lmdb);
        c.rank = r, c.world = world, c.batch = B, c.seed = 11;
        loader *l;
        CHECK(t_open(&l, &c) == 0, "open");
        uint64_t steps = loader_steps_per_epoch(l);
        if (r == 0) steps0 = steps;
        CHECK(steps == steps0, "rank %u has %" PRIu64 " steps, rank 0 %" PRIu64, r, steps, steps0);
        CHECK(steps == ((n + world - 1) / world) / B, "steps %" PRIu64, steps);
        uint64_t cnt;
        uint64_t *exp = expected_shard(n, 11, 0, r, world, B, &cnt);
        CHECK(cnt == steps * B, "count");
        t_run run;
        CHECK(t_collect(l, steps + 1, &run) == 0, "collect");
        for (uint64_t i = 0; i < cnt; i++) {
            CHECK(run.requested[i] == exp[i],
                  "world %u rank %u pos %" PRIu64 ": %" PRIu64 " expected %" PRIu64, world, r, i,
                  run.requested[i], exp[i]);
            CHECK(run.indices[i] == run.requested[i], "no substitution expected");
            seen[run.indices[i]]++;
        }
        delivered += cnt;
        /* the batch after the last one is step 0 of epoch 1, in epoch 1's order */
        CHECK(run.epoch[steps] == 1 && run.step[steps] == 0, "epoch roll-over");
        free(exp);
        exp = expected_shard(n, 11, 1, r, world, B, &cnt);
        for (uint32_t i = 0; i < B; i++) CHECK(run.requested[steps * B + i] == exp[i], "epoch 1");
        /* labels match the source */
        for (uint64_t i = 0; i < cnt; i += 7) {
            int32_t lab;
            uint8_t *rgb;
            uint32_t h, w;
            CHECK(t_ref_decode(lmdb, run.indices[i], &lab, &rgb, &h, &w) == 0, "ref");
            CHECK(lab == run.labels[i], "label of %" PRIu64, run.indices[i]);
            free(rgb);
        }
        free(exp);
        t_run_free(&run);
        loader_close(l);
    }
    /* Across ranks: positions 0..world*steps*B-1 of the padded permutation, once each. Without
     * a dropped tail (B == 1) every sample appears, and exactly `total - n` of them twice. */
    uint64_t twice = 0, missing = 0;
    for (uint64_t i = 0; i < n; i++) twice += seen[i] == 2, missing += seen[i] == 0;
    uint64_t total = ((n + world - 1) / world) * world;
    CHECK(delivered == world * steps0 * B, "delivered %" PRIu64, delivered);
    if (B == 1) {
        CHECK(missing == 0 && twice == total - n,
              "world %u: %" PRIu64 " missing, %" PRIu64 " twice", world, missing, twice);
    } else if (delivered <= n) {
        CHECK(twice == 0 && missing == n - delivered, "world %u B %u: twice %" PRIu64, world, B,
              twice);
    }
    free(seen);
    return 0;
}

static int case_order(void) {
    loader_config c = t_config(lmdb);
    loader *l;
    CHECK(t_open(&l, &c) == 0, "open");
    uint64_t n = loader_num_samples(l);
    loader_close(l);
    CHECK(n % 2 && n % 3, "dataset size %" PRIu64 " must not divide by 2 or 3", n);
    for (uint32_t world = 1; world <= 3; world++) {
        if (check_world(world, 8, n) || check_world(world, 1, n)) return 1;
    }
    return 0;
}

/* Flips against a reference decode; f32chw equals normalized u8hwc. */
static int case_pixels(void) {
    loader_config c = t_config(lmdb);
    c.seed = 5;
    t_run u8, f32;
    CHECK(t_collect_cfg(&c, 6, &u8) == 0, "u8");
    c.layout = LOADER_F32_CHW;
    CHECK(t_collect_cfg(&c, 6, &f32) == 0, "f32");
    int nflip = 0;
    uint64_t n = u8.nb * u8.per;
    float lut[256];
    ft_pixel_norm_table(lut);
    for (uint64_t i = 0; i < n; i++) {
        int32_t lab;
        uint8_t *ref;
        uint32_t h, w;
        CHECK(t_ref_decode(lmdb, u8.indices[i], &lab, &ref, &h, &w) == 0, "ref");
        int flip = loader_flip_of(5, u8.epoch[i / u8.per], u8.indices[i]);
        CHECK(flip == !!(u8.flags[i] & LOADER_FLAG_FLIPPED), "flip flag of image %" PRIu64, i);
        nflip += flip;
        const uint8_t *img = u8.data + i * u8.img_bytes;
        const float *fimg = (const float *)(f32.data + i * f32.img_bytes);
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++)
                for (int ch = 0; ch < 3; ch++) {
                    uint32_t sx = flip ? w - 1 - x : x;
                    uint8_t want = ref[((size_t)y * w + sx) * 3 + ch];
                    uint8_t got = img[((size_t)y * w + x) * 3 + ch];
                    CHECK(got == want, "image %" PRIu64 " (%s) pixel %u,%u,%d: %u vs %u", i,
                          flip ? "flipped" : "plain", x, y, ch, got, want);
                    float fw = lut[got]; /* the one normalization (test_pixel_norm) */
                    float fg = fimg[(size_t)ch * h * w + (size_t)y * w + x];
                    CHECK(fg == fw, "f32 image %" PRIu64 " pixel %u,%u,%d: %g vs %g", i, x, y, ch,
                          (double)fg, (double)fw);
                }
        free(ref);
        CHECK(u8.labels[i] == lab && f32.labels[i] == lab, "label");
    }
    CHECK(nflip > 0 && (uint64_t)nflip < n, "flips %d of %" PRIu64, nflip, n);
    c.layout = LOADER_U8_HWC, c.no_flip = 1;
    t_run nf;
    CHECK(t_collect_cfg(&c, 1, &nf) == 0, "no flip");
    for (uint64_t i = 0; i < nf.per; i++) CHECK(nf.flags[i] == 0, "no_flip");
    t_run_free(&nf), t_run_free(&u8), t_run_free(&f32);
    return 0;
}

/* Same batches for 1 and 4 threads (and other chunk/prefetch); different across epochs/seeds. */
static int case_threads(void) {
    loader_config c = t_config(lmdb);
    loader *l;
    CHECK(t_open(&l, &c) == 0, "open");
    uint64_t steps = loader_steps_per_epoch(l);
    loader_close(l);
    uint64_t nb = steps + 3; /* crosses into epoch 1 */
    t_run a, b, s2;
    c.threads = 1, c.prefetch = 1;
    CHECK(t_collect_cfg(&c, nb, &a) == 0, "1 thread");
    c.threads = 4, c.prefetch = 6, c.chunk = 3;
    CHECK(t_collect_cfg(&c, nb, &b) == 0, "4 threads");
    CHECK(t_run_cmp(&a, &b, "1 vs 4 threads") == 0, "threads");
    /* epoch 0 step 0 vs epoch 1 step 0 */
    CHECK(memcmp(a.requested, a.requested + steps * a.per, a.per * sizeof *a.requested) != 0,
          "epochs 0 and 1 start with the same batch");
    c.seed = 999;
    CHECK(t_collect_cfg(&c, 1, &s2) == 0, "seed");
    CHECK(memcmp(a.requested, s2.requested, a.per * sizeof *a.requested) != 0, "seeds");
    t_run_free(&a), t_run_free(&b), t_run_free(&s2);
    return 0;
}

static int case_engines(void) {
    static const struct {
        loader_engine e;
        int direct;
        const char *name;
    } eng[] = {{LOADER_ENGINE_URING, 0, "uring"},
               {LOADER_ENGINE_PREAD, 0, "pread"},
               {LOADER_ENGINE_MMAP, 0, "mmap"},
               {LOADER_ENGINE_URING, 1, "uring+O_DIRECT"},
               {LOADER_ENGINE_PREAD, 1, "pread+O_DIRECT"}};
    t_run ref;
    for (size_t i = 0; i < sizeof eng / sizeof eng[0]; i++) {
        loader_config c = t_config(lmdb);
        c.engine = eng[i].e, c.direct = eng[i].direct;
        c.layout = LOADER_F32_CHW;
        t_run r;
        int rc = t_collect_cfg(&c, 5, &r);
        if (rc && eng[i].direct) {
            fprintf(stderr, "note: %s unavailable here, skipped\n", eng[i].name);
            continue;
        }
        CHECK(rc == 0, "%s", eng[i].name);
        if (i == 0)
            ref = r;
        else {
            CHECK(t_run_cmp(&ref, &r, eng[i].name) == 0, "%s differs from uring", eng[i].name);
            t_run_free(&r);
        }
    }
    t_run_free(&ref);
    return 0;
}

/* io_uring unavailable (forced): the loader says so once and reads with pread. */
static int case_fallback(void) {
    loader_config c = t_config(lmdb);
    t_run a, b;
    CHECK(t_collect_cfg(&c, 3, &a) == 0, "uring");
    setenv("FT_LOADER_NO_URING", "1", 1);
    c.quiet = 0;
    loader *l;
    CHECK(t_open(&l, &c) == 0, "open with io_uring disabled");
    CHECK(strcmp(loader_engine_name(l), "pread") == 0, "engine %s", loader_engine_name(l));
    CHECK(t_collect(l, 3, &b) == 0, "collect");
    loader_close(l);
    unsetenv("FT_LOADER_NO_URING");
    CHECK(t_run_cmp(&a, &b, "fallback") == 0, "fallback batches differ");
    t_run_free(&a), t_run_free(&b);
    return 0;
}

/* Resume at (epoch, step) equals continuing; loader_seek too. */
static int case_resume(void) {
    loader_config c = t_config(lmdb);
    loader *l;
    CHECK(t_open(&l, &c) == 0, "open");
    uint64_t steps = loader_steps_per_epoch(l);
    t_run all;
    CHECK(t_collect(l, steps + 4, &all) == 0, "continuous");
    uint64_t at = steps + 2; /* epoch 1, step 2 */
    c.start_epoch = 1, c.start_step = 2;
    t_run res;
    CHECK(t_collect_cfg(&c, 2, &res) == 0, "resumed");
    t_run tail = all;
    tail.nb = 2;
    tail.data += at * all.per * all.img_bytes;
    tail.labels += at * all.per, tail.indices += at * all.per, tail.requested += at * all.per;
    tail.flags += at * all.per, tail.epoch += at, tail.step += at;
    CHECK(t_run_cmp(&tail, &res, "resume") == 0, "resume differs from continuing");
    /* seek back on the same loader (mid-prefetch) */
    CHECK(loader_seek(l, 1, 2) == 0, "seek");
    t_run sk;
    CHECK(t_collect(l, 2, &sk) == 0, "after seek");
    CHECK(t_run_cmp(&tail, &sk, "seek") == 0, "seek differs");
    CHECK(loader_seek(l, 0, steps) != 0, "seek past the epoch end must fail");
    loader_close(l);
    t_run_free(&all), t_run_free(&res), t_run_free(&sk);
    return 0;
}

/* The .rec read directly gives the same batches as its (unshuffled) LMDB ingest. */
static int case_rec(void) {
    loader_config c = t_config(rec);
    c.seed = 3;
    loader *l;
    char err[LOADER_ERRCAP] = "";
    int rc = loader_open(&l, &c, err, sizeof err);
    if (rc && strstr(err, "no RecordIO support")) {
        fprintf(stderr, "skip: %s\n", err);
        return SKIP;
    }
    CHECK(rc == 0, "open %s: %s", rec, err);
    loader_close(l);
    for (int e = 0; e < 3; e++) {
        c.engine = e == 0 ? LOADER_ENGINE_URING : e == 1 ? LOADER_ENGINE_MMAP : LOADER_ENGINE_PREAD;
        c.direct = e == 2;
        t_run a, b;
        c.path = rec;
        CHECK(t_collect_cfg(&c, 6, &a) == 0, "rec");
        c.path = lmdb;
        CHECK(t_collect_cfg(&c, 6, &b) == 0, "lmdb");
        CHECK(t_run_cmp(&a, &b, "rec vs lmdb") == 0, "sources differ (engine %d)", e);
        t_run_free(&a), t_run_free(&b);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "test_loader",
                            "usage: test_loader CASE DATASET_DIR\n"
                            "CASE: order, pixels, threads, engines, fallback, resume, rec.\n"))
        return 0;
    if (argc != 3) {
        fprintf(stderr, "usage: test_loader CASE DATASET_DIR\n");
        return 2;
    }
    snprintf(lmdb, sizeof lmdb, "%s/train.lmdb", argv[2]);
    snprintf(rec, sizeof rec, "%s/train.rec", argv[2]);
    const char *k = argv[1];
    if (!strcmp(k, "order")) return case_order();
    if (!strcmp(k, "pixels")) return case_pixels();
    if (!strcmp(k, "threads")) return case_threads();
    if (!strcmp(k, "engines")) return case_engines();
    if (!strcmp(k, "fallback")) return case_fallback();
    if (!strcmp(k, "resume")) return case_resume();
    if (!strcmp(k, "rec")) return case_rec();
    fprintf(stderr, "unknown case %s\n", k);
    return 2;
}
