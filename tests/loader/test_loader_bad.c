/* test_loader_bad: bad samples are substituted, counted and reported (or fail cleanly), and
 * the loader shuts down mid-epoch without leaks or races.
 *
 *   test_loader_bad bad DIR        DIR from ld_mkdata --n 64 --truncate 5 --garbage 17
 *                                  --wrongsize 30
 *   test_loader_bad shutdown DIR
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ft_common.h"
#include "ld_test.h"

static const uint64_t bad_idx[] = {5, 17, 30};
#define NBAD 3

static int is_bad(uint64_t i) {
    for (int k = 0; k < NBAD; k++)
        if (bad_idx[k] == i) return 1;
    return 0;
}

/* Substituted images hold exactly the substitute's pixels (and label, and flip). */
static int check_substitutes(const t_run *r, const char *lmdb) {
    int subs = 0;
    for (uint64_t i = 0; i < r->nb * r->per; i++) {
        if (!is_bad(r->requested[i])) {
            CHECK(r->indices[i] == r->requested[i] && !(r->flags[i] & LOADER_FLAG_SUBSTITUTED),
                  "good sample %" PRIu64 " was replaced", r->requested[i]);
            continue;
        }
        subs++;
        CHECK(r->flags[i] & LOADER_FLAG_SUBSTITUTED, "bad sample %" PRIu64 " not flagged",
              r->requested[i]);
        CHECK(!is_bad(r->indices[i]) && r->indices[i] != r->requested[i], "substitute");
        int32_t lab;
        uint8_t *ref;
        uint32_t h, w;
        CHECK(t_ref_decode(lmdb, r->indices[i], &lab, &ref, &h, &w) == 0, "ref");
        CHECK(lab == r->labels[i], "substitute label");
        int flip = !!(r->flags[i] & LOADER_FLAG_FLIPPED);
        const uint8_t *img = r->data + i * r->img_bytes;
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++) {
                uint32_t sx = flip ? w - 1 - x : x;
                CHECK(!memcmp(img + ((size_t)y * w + x) * 3, ref + ((size_t)y * w + sx) * 3, 3),
                      "substitute pixels of image %" PRIu64, i);
            }
        free(ref);
    }
    CHECK(subs == NBAD, "%d substitutions in one epoch, expected %d", subs, NBAD);
    return 0;
}

static int bad_substitute(const char *path, const char *lmdb) {
    loader_config c = t_config(path);
    c.quiet = 0; /* one line per bad sample on stderr */
    loader *l;
    CHECK(t_open(&l, &c) == 0, "open");
    uint64_t steps = loader_steps_per_epoch(l);
    CHECK(steps * c.batch == loader_num_samples(l), "test wants a whole epoch in batches");
    t_run r, r1;
    CHECK(t_collect(l, steps, &r) == 0, "epoch");
    if (check_substitutes(&r, lmdb)) return 1;
    /* prefetched batches of epoch 1 may have been met too: count epoch 0's reports */
    loader_bad rep[32];
    uint64_t got, total = loader_bad_samples(l, rep, 32, &got), e0 = 0;
    loader_stats st;
    loader_get_stats(l, &st);
    CHECK(total >= NBAD && got == total && st.bad_samples == total, "reported %" PRIu64, total);
    for (uint64_t k = 0; k < got; k++) {
        CHECK(is_bad(rep[k].index) && rep[k].reason[0], "report %" PRIu64, k);
        e0 += rep[k].epoch == 0;
        CHECK(rep[k].substitute != UINT64_MAX && !is_bad(rep[k].substitute), "substitute");
        fprintf(stderr, "reported: sample %" PRIu64 " -> %" PRIu64 ": %s\n", rep[k].index,
                rep[k].substitute, rep[k].reason);
    }
    CHECK(e0 == NBAD, "%" PRIu64 " reports for epoch 0, expected %d", e0, NBAD);
    loader_close(l);
    /* the same substitutes whatever the thread count */
    c.threads = 1, c.quiet = 1;
    CHECK(t_collect_cfg(&c, steps, &r1) == 0, "1 thread");
    CHECK(t_run_cmp(&r, &r1, "bad, 1 vs 2 threads") == 0, "substitution not deterministic");
    t_run_free(&r), t_run_free(&r1);
    return 0;
}

/* Fail mode: the batch holding the first bad sample in order fails with its index. */
static int bad_fail(const char *path) {
    loader_config c = t_config(path);
    c.fail_on_bad = 1;
    loader *l;
    CHECK(t_open(&l, &c) == 0, "open");
    uint64_t steps = loader_steps_per_epoch(l), *perm = malloc(loader_num_samples(l) * 8);
    ft_permutation(perm, loader_num_samples(l), c.seed, 0);
    uint64_t first = UINT64_MAX;
    for (uint64_t p = 0; p < steps * c.batch && first == UINT64_MAX; p++)
        if (is_bad(perm[p])) first = p;
    loader_batch b;
    int rc = 0;
    uint64_t k;
    for (k = 0; k < steps && (rc = loader_next(l, &b)) == 0; k++) {
    }
    CHECK(rc != 0, "fail mode delivered a whole epoch");
    CHECK(k == first / c.batch, "failed at batch %" PRIu64 ", first bad at %" PRIu64, k, first);
    char want[64];
    snprintf(want, sizeof want, "sample %" PRIu64 " ", perm[first]);
    CHECK(strstr(loader_errmsg(l), want) != NULL, "message '%s' lacks '%s'", loader_errmsg(l),
          want);
    fprintf(stderr, "fail mode: rc %d (%s): %s\n", rc, ft_strerror(rc), loader_errmsg(l));
    CHECK(loader_next(l, &b) == rc, "error is sticky");
    free(perm);
    loader_close(l);
    return 0;
}

static int case_bad(const char *dir) {
    char lmdb[4200], rec[4200];
    snprintf(lmdb, sizeof lmdb, "%s/train.lmdb", dir);
    snprintf(rec, sizeof rec, "%s/train.rec", dir);
    if (bad_substitute(lmdb, lmdb) || bad_fail(lmdb)) return 1;
    loader_config c = t_config(rec);
    loader *l;
    char err[LOADER_ERRCAP] = "";
    if (loader_open(&l, &c, err, sizeof err) != 0) {
        fprintf(stderr, "note: .rec source not checked: %s\n", err);
        return strstr(err, "no RecordIO support") ? 0 : 1;
    }
    loader_close(l);
    return bad_substitute(rec, lmdb) || bad_fail(rec);
}

/* Close while workers are busy, with and without batches taken, after a seek. */
static int case_shutdown(const char *dir) {
    char lmdb[4200];
    snprintf(lmdb, sizeof lmdb, "%s/train.lmdb", dir);
    for (int round = 0; round < 12; round++) {
        loader_config c = t_config(lmdb);
        c.threads = 1 + round % 4, c.prefetch = 1 + round % 5, c.chunk = 1 + round % 3;
        c.layout = round % 2 ? LOADER_F32_CHW : LOADER_U8_HWC;
        c.engine = (loader_engine)(1 + round % 3);
        loader *l;
        CHECK(t_open(&l, &c) == 0, "open");
        loader_batch b;
        for (int k = 0; k < round % 4; k++) CHECK(loader_next(l, &b) == 0, "next");
        if (round % 3 == 1) CHECK(loader_seek(l, 2, 1) == 0, "seek");
        if (round % 5 == 2) loader_release(l, &b);
        loader_close(l);
    }
    loader_close(NULL);
    return 0;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "test_loader_bad",
                            "usage: test_loader_bad bad|shutdown DATASET_DIR\n"))
        return 0;
    if (argc != 3) {
        fprintf(stderr, "usage: test_loader_bad bad|shutdown DATASET_DIR\n");
        return 2;
    }
    if (!strcmp(argv[1], "bad")) return case_bad(argv[2]);
    if (!strcmp(argv[1], "shutdown")) return case_shutdown(argv[2]);
    return 2;
}
