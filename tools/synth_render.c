/* synth_render.c: see synth_render.h. Geometry is expressed in a canonical 112 x 112 frame with
 * the origin at the image centre and v pointing down; each output pixel is mapped back into
 * that frame through the sample's inverse similarity transform and the identity's shapes are
 * composited there with anti-aliased (signed-distance) edges.
 */
#include "synth_render.h"

#include <math.h>
#include <string.h>

#include "ft_common.h"

#define MAX_SHAPES 48
#define PI         3.14159265358979323846

enum { SH_ELLIPSE, SH_RING, SH_CAPSULE };
enum { CUT_NONE, CUT_ABOVE, CUT_BELOW };

typedef struct shape {
    int type;      /* SH_* */
    int clip_face; /* multiply coverage by the face oval's */
    int stripes;   /* modulate colour with the identity's stripe texture */
    int cut;       /* CUT_ABOVE keeps v < cut_y + cut_k*u^2 + cut_t*u; CUT_BELOW the rest */
    double cx, cy; /* ellipse/ring centre; capsule end a */
    double rx, ry; /* ellipse/ring radii; capsule end b */
    double r;      /* capsule radius; ring half-width */
    double cut_y, cut_k, cut_t;
    double col[3]; /* RGB 0..255 */
    double alpha;  /* opacity at full coverage */
    double bb[4];  /* u0, u1, v0, v1: coverage is 0 outside */
} shape;

typedef struct scene {
    shape sh[MAX_SHAPES];
    int n;
    double face[4];                      /* face oval cx, cy, rx, ry */
    double st_dir[2], st_freq, st_phase; /* stripe texture */
    double st_amp[3];
} scene;

typedef struct look {           /* per-sample photometric and geometric nuisance */
    double cos_t, sin_t, scale; /* canonical = R(-t) (p - shift) / scale */
    double tx, ty;
    double bg0[3], bg1[3], bg_dir[2]; /* background gradient */
    double light_dir[2], light_amp;   /* directional shading */
    double gain, bias[3];             /* contrast and brightness per channel */
    double noise;                     /* pixel noise sigma */
} look;

static double U(ft_rng *r, double a, double b) {
    return a + (b - a) * ft_rng_uniform(r);
}

static double clamp01(double x) {
    return x < 0 ? 0 : x > 1 ? 1 : x;
}

static void set_col(double *dst, double r, double g, double b) {
    dst[0] = r, dst[1] = g, dst[2] = b;
}

static void mix_col(double *dst, const double *a, const double *b, double t) {
    for (int c = 0; c < 3; c++) dst[c] = a[c] + (b[c] - a[c]) * t;
}

static void vivid_col(ft_rng *r, double *dst) {
    for (int c = 0; c < 3; c++) dst[c] = U(r, 0, 255);
    dst[ft_rng_below(r, 3)] = U(r, 200, 255); /* one strong channel */
    dst[ft_rng_below(r, 3)] = U(r, 0, 60);
}

static shape *add(scene *s, int type, double cx, double cy, double rx, double ry, double rad,
                  const double *col) {
    if (s->n == MAX_SHAPES) return &s->sh[MAX_SHAPES - 1]; /* never reached by build_* */
    shape *p = &s->sh[s->n++];
    memset(p, 0, sizeof *p);
    p->type = type, p->cx = cx, p->cy = cy, p->rx = rx, p->ry = ry, p->r = rad, p->alpha = 1;
    memcpy(p->col, col, sizeof p->col);
    double m = type == SH_RING ? rad + 2 : 2;
    if (type == SH_CAPSULE) {
        p->bb[0] = fmin(cx, rx) - rad - 2, p->bb[1] = fmax(cx, rx) + rad + 2;
        p->bb[2] = fmin(cy, ry) - rad - 2, p->bb[3] = fmax(cy, ry) + rad + 2;
    } else {
        p->bb[0] = cx - rx - m, p->bb[1] = cx + rx + m, p->bb[2] = cy - ry - m,
        p->bb[3] = cy + ry + m;
    }
    return p;
}

/* A curve v = y0 + k*(u-x0)^2 for |u-x0| <= half, drawn as 4 capsules. */
static void add_arc(scene *s, double x0, double y0, double half, double k, double tilt, double rad,
                    const double *col) {
    for (int i = 0; i < 4; i++) {
        double ua = -half + half * i / 2.0, ub = -half + half * (i + 1) / 2.0;
        add(s, SH_CAPSULE, x0 + ua, y0 + k * ua * ua + tilt * ua, x0 + ub,
            y0 + k * ub * ub + tilt * ub, rad, col);
    }
}

/* ------------------------------------------------------------------ identity */

typedef struct ident {
    double skin[3], hair[3], iris[3], lips[3], cloth[3], brow[3];
    double fx, fy, frx, fry; /* face oval */
    int bald, beard, glasses;
    double hair_up, hair_wide, hair_tall, fringe_y, fringe_k, fringe_t;
    double eye_y, eye_dx, eye_rx, eye_ry, iris_r;
    double brow_up, brow_len, brow_th, brow_tilt, brow_arch;
    double nose_top, nose_len, nose_th, nostril_dx;
    double mouth_dy, mouth_half, mouth_k, mouth_th;
    double ear_ry, ear_rx;
    double glass_col[3], glass_th;
    int n_marks;
    double mark[4][4]; /* u, v, radius, opacity */
    double mark_col[4][3];
    int has_stripes;
    double st_angle, st_period, st_phase, st_amp[3];
} ident;

static void draw_palette(ft_rng *r, ident *id) {
    static const double hairs[6][3] = {{25, 20, 18},    {70, 45, 28},  {130, 90, 50},
                                       {200, 170, 110}, {150, 60, 30}, {170, 170, 170}};
    static const double irises[5][3] = {
        {70, 40, 20}, {50, 90, 160}, {60, 120, 70}, {110, 110, 120}, {25, 20, 20}};
    double light[3] = {250, 222, 196}, dark[3] = {100, 62, 40};
    mix_col(id->skin, light, dark, U(r, 0, 1));
    for (int c = 0; c < 3; c++) id->skin[c] += U(r, -14, 14);
    if (ft_rng_uniform(r) < 0.15)
        vivid_col(r, id->hair);
    else
        memcpy(id->hair, hairs[ft_rng_below(r, 6)], sizeof id->hair);
    for (int c = 0; c < 3; c++) id->hair[c] += U(r, -15, 15);
    memcpy(id->iris, irises[ft_rng_below(r, 5)], sizeof id->iris);
    double red[3] = {190, 60, 70};
    mix_col(id->lips, id->skin, red, U(r, 0.25, 0.8));
    vivid_col(r, id->cloth);
    for (int c = 0; c < 3; c++) id->brow[c] = id->hair[c] * U(r, 0.5, 0.9);
    vivid_col(r, id->glass_col);
    if (ft_rng_uniform(r) < 0.5) set_col(id->glass_col, 20, 20, 25);
}

static void draw_geometry(ft_rng *r, ident *id) {
    id->fx = U(r, -2, 2), id->fy = U(r, 2, 8), id->frx = U(r, 26, 36), id->fry = U(r, 34, 44);
    id->bald = ft_rng_uniform(r) < 0.1;
    id->beard = ft_rng_uniform(r) < 0.2;
    id->glasses = ft_rng_uniform(r) < 0.25;
    id->hair_up = U(r, 2, 9), id->hair_wide = U(r, 2, 9), id->hair_tall = U(r, 2, 12);
    id->fringe_y = id->fy - id->fry + U(r, 7, 20);
    id->fringe_k = U(r, -0.004, 0.012), id->fringe_t = U(r, -0.2, 0.2);
    id->eye_y = id->fy - U(r, 3, 12), id->eye_dx = U(r, 10, 17);
    id->eye_rx = U(r, 4, 7), id->eye_ry = U(r, 2, 4.2);
    id->iris_r = fmin(id->eye_ry + U(r, 0, 1.2), id->eye_rx * 0.65);
    id->brow_up = U(r, 5, 10), id->brow_len = U(r, 5, 8), id->brow_th = U(r, 1.0, 2.6);
    id->brow_tilt = U(r, -0.3, 0.3), id->brow_arch = U(r, -0.08, 0.02);
    id->nose_top = U(r, 2, 5), id->nose_len = U(r, 11, 20), id->nose_th = U(r, 1.5, 3.2);
    id->nostril_dx = U(r, 2.5, 5.5);
    id->mouth_dy = U(r, 6, 12), id->mouth_half = U(r, 6, 13);
    id->mouth_k = U(r, -0.05, 0.03), id->mouth_th = U(r, 1.2, 3.2);
    id->ear_rx = U(r, 3, 6), id->ear_ry = U(r, 6, 11);
    id->glass_th = U(r, 0.7, 1.6);
    id->n_marks = 2 + (int)ft_rng_below(r, 3);
    for (int i = 0; i < id->n_marks; i++) {
        id->mark[i][0] = id->fx + U(r, -0.7, 0.7) * id->frx;
        id->mark[i][1] = id->fy + U(r, -0.6, 0.7) * id->fry;
        id->mark[i][2] = U(r, 2.5, 7), id->mark[i][3] = U(r, 0.55, 0.95);
        vivid_col(r, id->mark_col[i]);
    }
    id->has_stripes = ft_rng_uniform(r) < 0.6;
    id->st_angle = U(r, 0, PI), id->st_period = U(r, 5, 14), id->st_phase = U(r, 0, 2 * PI);
    for (int c = 0; c < 3; c++) id->st_amp[c] = U(r, -30, 30);
}

static void ident_draw(ident *id, uint64_t seed, uint64_t cls) {
    ft_rng r;
    ft_rng_seed(&r, seed, ft_hash64(0x1de47177ull, cls, 0));
    draw_palette(&r, id);
    draw_geometry(&r, id);
}

/* ------------------------------------------------------------------ scene */

/* Back layers: hair mass, neck, clothing, ears, face oval (with stripes). */
static void build_head(scene *s, const ident *id) {
    double neck[3];
    for (int c = 0; c < 3; c++) neck[c] = id->skin[c] * 0.85;
    if (!id->bald)
        add(s, SH_ELLIPSE, id->fx, id->fy - id->hair_up, id->frx + id->hair_wide,
            id->fry + id->hair_tall, 0, id->hair);
    add(s, SH_CAPSULE, id->fx, id->fy + id->fry * 0.6, id->fx, 70, id->frx * 0.5, neck);
    add(s, SH_ELLIPSE, id->fx, 56 + 14, 52, 26, 0, id->cloth);
    for (int side = -1; side <= 1; side += 2)
        add(s, SH_ELLIPSE, id->fx + side * id->frx * 0.97, id->eye_y + 4, id->ear_rx, id->ear_ry, 0,
            neck);
    shape *f = add(s, SH_ELLIPSE, id->fx, id->fy, id->frx, id->fry, 0, id->skin);
    f->stripes = id->has_stripes;
    s->face[0] = id->fx, s->face[1] = id->fy, s->face[2] = id->frx, s->face[3] = id->fry;
    s->st_dir[0] = cos(id->st_angle), s->st_dir[1] = sin(id->st_angle);
    s->st_freq = 2 * PI / id->st_period, s->st_phase = id->st_phase;
    memcpy(s->st_amp, id->st_amp, sizeof s->st_amp);
}

/* Face features, with per-sample expression jitter (blink, smile, brow raise). */
static void build_features(scene *s, const ident *id, ft_rng *r, double nz) {
    double open = 1 - U(r, 0, 0.5 * nz), smile = U(r, -0.015, 0.015) * nz;
    double raise = U(r, -1.5, 1.5) * nz;
    double white[3] = {240, 240, 235}, black[3] = {15, 12, 12}, shade[3], nostril[3];
    for (int c = 0; c < 3; c++) shade[c] = id->skin[c] * 0.78, nostril[c] = id->skin[c] * 0.45;
    for (int i = 0; i < id->n_marks; i++) {
        shape *m = add(s, SH_ELLIPSE, id->mark[i][0], id->mark[i][1], id->mark[i][2],
                       id->mark[i][2], 0, id->mark_col[i]);
        m->alpha = id->mark[i][3], m->clip_face = 1;
    }
    if (!id->bald) {
        shape *fr = add(s, SH_ELLIPSE, id->fx, id->fy, id->frx, id->fry, 0, id->hair);
        fr->cut = CUT_ABOVE, fr->cut_y = id->fringe_y, fr->cut_k = id->fringe_k;
        fr->cut_t = id->fringe_t;
    }
    if (id->beard) {
        shape *b = add(s, SH_ELLIPSE, id->fx, id->fy, id->frx, id->fry, 0, id->hair);
        b->cut = CUT_BELOW, b->cut_y = id->fy + id->fry * 0.35, b->cut_k = -0.01, b->alpha = 0.8;
    }
    for (int side = -1; side <= 1; side += 2) {
        double ex = id->fx + side * id->eye_dx, ey = id->eye_y;
        add(s, SH_ELLIPSE, ex, ey, id->eye_rx, id->eye_ry * open, 0, white);
        shape *ir = add(s, SH_ELLIPSE, ex, ey, id->iris_r, id->iris_r, 0, id->iris);
        ir->cut = CUT_BELOW, ir->cut_y = ey - id->eye_ry * open;
        shape *pu = add(s, SH_ELLIPSE, ex, ey, id->iris_r * 0.45, id->iris_r * 0.45, 0, black);
        pu->cut = CUT_BELOW, pu->cut_y = ey - id->eye_ry * open;
        add_arc(s, ex, ey - id->eye_ry - id->brow_up - raise, id->brow_len, id->brow_arch,
                side * id->brow_tilt, id->brow_th, id->brow);
        if (id->glasses)
            add(s, SH_RING, ex, ey, id->eye_rx + 4, id->eye_ry + 5, id->glass_th, id->glass_col);
    }
    if (id->glasses)
        add(s, SH_CAPSULE, id->fx - id->eye_dx + id->eye_rx + 4, id->eye_y,
            id->fx + id->eye_dx - id->eye_rx - 4, id->eye_y, id->glass_th, id->glass_col);
    double ny0 = id->eye_y + id->nose_top, ny1 = id->eye_y + id->nose_top + id->nose_len;
    add(s, SH_CAPSULE, id->fx, ny0, id->fx, ny1, id->nose_th, shade);
    for (int side = -1; side <= 1; side += 2)
        add(s, SH_ELLIPSE, id->fx + side * id->nostril_dx, ny1 + 1, 1.6, 1.1, 0, nostril);
    add_arc(s, id->fx, ny1 + id->mouth_dy, id->mouth_half, id->mouth_k + smile, 0, id->mouth_th,
            id->lips);
}

/* An occluder (hand, mask, sticker) over part of the face, sometimes. */
static void build_occluder(scene *s, ft_rng *r, double nz) {
    if (ft_rng_uniform(r) >= 0.25 * nz) return;
    double col[3];
    vivid_col(r, col);
    add(s, SH_ELLIPSE, U(r, -30, 30), U(r, -30, 40), U(r, 6, 14), U(r, 6, 14), 0, col);
}

static void build_look(look *lk, ft_rng *r, double nz) {
    double t = U(r, -15, 15) * nz * PI / 180;
    lk->cos_t = cos(t), lk->sin_t = sin(t);
    lk->scale = exp(U(r, -0.12, 0.12) * nz);
    lk->tx = U(r, -6, 6) * nz, lk->ty = U(r, -6, 6) * nz;
    for (int c = 0; c < 3; c++) lk->bg0[c] = U(r, 0, 255), lk->bg1[c] = U(r, 0, 255);
    double a = U(r, 0, 2 * PI);
    lk->bg_dir[0] = cos(a) / 112, lk->bg_dir[1] = sin(a) / 112;
    a = U(r, 0, 2 * PI);
    lk->light_dir[0] = cos(a) / 56, lk->light_dir[1] = sin(a) / 56;
    lk->light_amp = U(r, 0, 60) * nz;
    lk->gain = exp(U(r, -0.3, 0.3) * nz);
    double b = U(r, -35, 35) * nz;
    for (int c = 0; c < 3; c++) lk->bias[c] = b + U(r, -10, 10) * nz;
    lk->noise = U(r, 2, 14) * nz;
}

/* ------------------------------------------------------------------ raster */

static double cover(const shape *p, double u, double v, double aa, double face_cov) {
    double d;
    if (p->type == SH_CAPSULE) {
        double bx = p->rx - p->cx, by = p->ry - p->cy, px = u - p->cx, py = v - p->cy;
        double l2 = bx * bx + by * by;
        double h = l2 > 0 ? clamp01((px * bx + py * by) / l2) : 0;
        double ex = px - h * bx, ey = py - h * by;
        d = sqrt(ex * ex + ey * ey) - p->r;
    } else {
        double qx = (u - p->cx) / p->rx, qy = (v - p->cy) / p->ry;
        double l = sqrt(qx * qx + qy * qy) - 1, m = fmin(p->rx, p->ry);
        d = p->type == SH_RING ? fabs(l) * m - p->r : l * m;
    }
    double a = clamp01(0.5 - d / aa);
    if (a > 0 && p->cut != CUT_NONE) {
        double dc = v - (p->cut_y + p->cut_k * u * u + p->cut_t * u);
        a *= clamp01(p->cut == CUT_ABOVE ? 0.5 - dc / aa : 0.5 + dc / aa);
    }
    if (p->clip_face) a *= face_cov;
    return a * p->alpha;
}

static double face_cover(const scene *s, double u, double v, double aa) {
    double qx = (u - s->face[0]) / s->face[2], qy = (v - s->face[1]) / s->face[3];
    double d = (sqrt(qx * qx + qy * qy) - 1) * fmin(s->face[2], s->face[3]);
    return clamp01(0.5 - d / aa);
}

/* Composite the active shapes (those whose pixel box holds row y) at pixel x, canonical point
 * (u, v), over `col`. */
static void shade_point(const scene *s, const int *act, int nact, const int (*box)[4], int x,
                        double u, double v, double aa, double *col) {
    double fc = -1; /* face coverage, computed when first needed */
    for (int k = 0; k < nact; k++) {
        const shape *p = &s->sh[act[k]];
        if (x < box[act[k]][0] || x > box[act[k]][1]) continue;
        if (u < p->bb[0] || u > p->bb[1] || v < p->bb[2] || v > p->bb[3]) continue;
        if (p->clip_face && fc < 0) fc = face_cover(s, u, v, aa);
        double a = cover(p, u, v, aa, fc);
        if (a <= 0) continue;
        double st = 0;
        if (p->stripes) st = sin((u * s->st_dir[0] + v * s->st_dir[1]) * s->st_freq + s->st_phase);
        for (int c = 0; c < 3; c++) col[c] += (p->col[c] + st * s->st_amp[c] - col[c]) * a;
    }
}

/* Pixel box (x0, x1, y0, y1) of each shape: its canonical box mapped into the image. */
static void pixel_boxes(const scene *s, const look *lk, int size, int (*box)[4]) {
    double px = 112.0 / size;
    for (int i = 0; i < s->n; i++) {
        const double *bb = s->sh[i].bb;
        double lo[2] = {1e9, 1e9}, hi[2] = {-1e9, -1e9};
        for (int k = 0; k < 4; k++) {
            double u = bb[k & 1], v = bb[2 + (k >> 1)];
            double ix = lk->scale * (lk->cos_t * u - lk->sin_t * v) + lk->tx;
            double iy = lk->scale * (lk->sin_t * u + lk->cos_t * v) + lk->ty;
            double p[2] = {(ix + 56) / px - 0.5, (iy + 56) / px - 0.5};
            for (int d = 0; d < 2; d++) lo[d] = fmin(lo[d], p[d]), hi[d] = fmax(hi[d], p[d]);
        }
        box[i][0] = (int)floor(lo[0]) - 1, box[i][1] = (int)ceil(hi[0]) + 1;
        box[i][2] = (int)floor(lo[1]) - 1, box[i][3] = (int)ceil(hi[1]) + 1;
    }
}

/* Approximately normal noise from 4 bytes of a random word (sum of uniforms), sd 1. */
static double noise4(uint64_t w) {
    double sum = (double)(w & 255) + (double)(w >> 8 & 255) + (double)(w >> 16 & 255) +
                 (double)(w >> 24 & 255);
    return (sum - 510.0) / 147.8;
}

static void raster(const scene *s, const look *lk, ft_rng *r, int size, uint8_t *rgb) {
    double px = 112.0 / size, aa = px / lk->scale;
    int box[MAX_SHAPES][4], act[MAX_SHAPES];
    pixel_boxes(s, lk, size, box);
    for (int y = 0; y < size; y++) {
        int nact = 0;
        for (int i = 0; i < s->n; i++)
            if (y >= box[i][2] && y <= box[i][3]) act[nact++] = i;
        for (int x = 0; x < size; x++) {
            double ix = (x + 0.5) * px - 56, iy = (y + 0.5) * px - 56; /* image frame */
            double dx = (ix - lk->tx) / lk->scale, dy = (iy - lk->ty) / lk->scale;
            double u = lk->cos_t * dx + lk->sin_t * dy, v = -lk->sin_t * dx + lk->cos_t * dy;
            double g = clamp01(0.5 + ix * lk->bg_dir[0] + iy * lk->bg_dir[1]), col[3];
            mix_col(col, lk->bg0, lk->bg1, g);
            shade_point(s, act, nact, (const int(*)[4])box, x, u, v, aa, col);
            double light = lk->light_amp * (ix * lk->light_dir[0] + iy * lk->light_dir[1]);
            uint64_t w = ft_rng_u64(r);
            uint8_t *o = rgb + ((size_t)y * size + x) * 3;
            for (int c = 0; c < 3; c++) {
                double val = (col[c] - 128) * lk->gain + 128 + lk->bias[c] + light;
                val += lk->noise * noise4(w >> (c * 16)); /* 4 overlapping bytes per channel */
                o[c] = (uint8_t)(val < 0 ? 0 : val > 255 ? 255 : val + 0.5);
            }
        }
    }
}

void synth_render(uint64_t seed, uint64_t cls, uint64_t sample, double nuisance, int size,
                  uint8_t *rgb) {
    ident id;
    scene s;
    look lk;
    ft_rng r;
    double nz = nuisance < 0 ? 0 : nuisance > 1 ? 1 : nuisance;
    ident_draw(&id, seed, cls);
    ft_rng_seed(&r, seed, ft_hash64(0x5a3b1e00ull, cls, sample));
    memset(&s, 0, sizeof s);
    build_head(&s, &id);
    build_features(&s, &id, &r, nz);
    build_occluder(&s, &r, nz);
    build_look(&lk, &r, nz);
    raster(&s, &lk, &r, size, rgb);
}
