/* test_pixel_norm: the loader's float batches and verification's input images normalize every
 * pixel value the same way, bit for bit (ft_pixel_norm_table).
 *
 *   test_pixel_norm WORKDIR
 *
 * One 128x128 grayscale JPEG made of flat 8x8 blocks, block b holding value b (quality 100
 * decodes flat blocks exactly), so the image holds all 256 values. It goes into a RecordIO
 * dataset read by the loader (LOADER_F32_CHW, no flip) and into a .bin read by ft_verify (the
 * embed callback keeps the input it is given); both float images must equal the table applied
 * to the decoded pixels. Exit 0 pass, 1 fail.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <turbojpeg.h>

#include "ft_common.h"
#include "ft_dataset.h"
#include "ft_verbin.h"
#include "ld_test.h"
#include "recordio.h"
#include "verify.h"

#define S 128

static float *g_verify_in; /* first image the verification embed callback saw */

static int keep_input(void *ctx, const float *x, int n, float *out) {
    (void)ctx;
    if (!g_verify_in) {
        g_verify_in = malloc(3 * S * S * sizeof(float));
        if (!g_verify_in) return -1;
        memcpy(g_verify_in, x, 3 * S * S * sizeof(float));
    }
    for (int i = 0; i < n; i++) out[i] = 1.0f;
    return 0;
}

static int make_jpeg(uint8_t **jpg, unsigned long *len) {
    uint8_t *gray = malloc(S * S);
    tjhandle tj = tjInitCompress();
    if (!gray || !tj) return 1;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) gray[y * S + x] = (uint8_t)((y / 8) * (S / 8) + x / 8);
    *jpg = NULL;
    int rc = tjCompress2(tj, gray, S, 0, S, TJPF_GRAY, jpg, len, TJSAMP_GRAY, 100, 0);
    tjDestroy(tj);
    free(gray);
    return rc != 0;
}

static int write_rec(const char *dir, const uint8_t *jpg, unsigned long len) {
    char rec[4096], idx[4096];
    rio_writer *w;
    if (ft_mkdir_p(dir) || ft_path_join(rec, sizeof rec, dir, "train.rec") ||
        ft_path_join(idx, sizeof idx, dir, "train.idx") || rio_writer_open(&w, rec, idx))
        return 1;
    size_t cap = rio_pack_size(0, len);
    uint8_t *buf = malloc(cap);
    int rc = !buf;
    for (uint64_t k = 0; !rc && k < 2; k++) { /* im2rec layout: keys 0, 1, both class 0 */
        rio_irheader h = {0, 0.0f, k, 0};
        size_t n = rio_pack(buf, &h, NULL, 0, jpg, len);
        rc = rio_writer_write(w, k, buf, n) != 0;
    }
    free(buf);
    if (rc) {
        rio_writer_abort(w);
        return 1;
    }
    return rio_writer_close(w) != 0;
}

/* One batch of the loader in `layout` (no flip); data copied into *out. */
static int load_one(const char *dir, loader_layout layout, void **out, size_t *bytes) {
    loader_config c = t_config(dir);
    c.batch = 1, c.threads = 1, c.no_flip = 1, c.layout = layout;
    loader *l;
    if (t_open(&l, &c)) return 1;
    loader_batch b;
    int rc = loader_next(l, &b);
    if (rc == 0 && (*out = malloc(b.data_bytes)) != NULL) {
        memcpy(*out, b.data, b.data_bytes);
        *bytes = b.data_bytes;
    }
    if (rc) fprintf(stderr, "loader_next: %s\n", loader_errmsg(l));
    loader_close(l);
    return rc != 0 || !*out;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(
            argc, argv, "test_pixel_norm",
            "usage: test_pixel_norm WORKDIR\n"
            "Loader and verification inputs: identical floats for every pixel value.\n"))
        return 0;
    if (argc != 2) {
        fprintf(stderr, "usage: test_pixel_norm WORKDIR\n");
        return 2;
    }
    char dir[4096], bin[4096], err[512];
    CHECK(ft_path_join(dir, sizeof dir, argv[1], "pixnorm") == 0, "path");
    CHECK(ft_path_join(bin, sizeof bin, dir, "lfw.bin") == 0, "path");
    uint8_t *jpg;
    unsigned long len;
    CHECK(make_jpeg(&jpg, &len) == 0, "JPEG encode");
    CHECK(write_rec(dir, jpg, len) == 0, "write %s", dir);

    uint8_t *img[20];
    size_t img_len[20];
    uint8_t same[10] = {0};
    for (int i = 0; i < 20; i++) img[i] = jpg, img_len[i] = len;
    ft_verbin v = {10, img, img_len, same, NULL};
    CHECK(ft_verbin_write(bin, &v) == 0, "write %s", bin);

    void *u8, *f32;
    size_t nu8, nf32;
    CHECK(load_one(dir, LOADER_U8_HWC, &u8, &nu8) == 0 && nu8 == 3 * S * S, "u8 batch");
    CHECK(load_one(dir, LOADER_F32_CHW, &f32, &nf32) == 0 && nf32 == 3 * S * S * 4, "f32 batch");

    ft_verify_target *t;
    ft_verify_result res;
    CHECK(ft_verify_load(&t, bin, "lfw", S, S, err, sizeof err) == 0, "%s", err);
    int rc = ft_verify_run(t, keep_input, NULL, 1, 20, &res, err, sizeof err);
    ft_verify_free(t);
    CHECK(g_verify_in != NULL, "verification embedded nothing (%d: %s)", rc, err);

    float lut[256];
    ft_pixel_norm_table(lut);
    int seen[256] = {0};
    const uint8_t *p = u8;
    const float *fl = f32;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < S * S; i++) {
            uint8_t px = p[i * 3 + c];
            seen[px] = 1;
            float a = fl[c * S * S + i], b = g_verify_in[c * S * S + i];
            CHECK(memcmp(&a, &lut[px], sizeof a) == 0,
                  "loader: pixel %d ch %d value %u: %.9g, "
                  "table %.9g",
                  i, c, px, (double)a, (double)lut[px]);
            CHECK(memcmp(&b, &lut[px], sizeof b) == 0,
                  "verify: pixel %d ch %d value %u: %.9g, "
                  "table %.9g",
                  i, c, px, (double)b, (double)lut[px]);
        }
    for (int x = 0; x < 256; x++) {
        CHECK(seen[x], "pixel value %d not in the decoded test image", x);
        CHECK(fabs((double)lut[x] - (x / 127.5 - 1.0)) < 1e-6, "table[%d] = %.9g", x,
              (double)lut[x]);
    }
    printf("PASS: loader and verification inputs identical for all 256 pixel values\n");
    tjFree(jpg);
    free(u8), free(f32), free(g_verify_in);
    return 0;
}
