/* engine: an eval-mode face-embedding model on the ops backends, loaded from
 *   - an ONNX file (ours from ft-export, or torch.onnx.export of insightface's IResNet:
 *     Conv, BatchNormalization, PRelu, Add, Flatten, Gemm/MatMul, Reshape, Constant and
 *     Sub/Mul/Div for mxnet-style input normalization), or
 *   - a checkpoint folder written by ft-train (backbone.safetensors + its recorded
 *     architecture; preferred when the folder also holds an .onnx), or a folder holding
 *     exactly one .onnx file.
 * Several outputs: the first is the embedding (the submission checker refuses such files).
 * Input: float32 NCHW [n][3][112][112] already normalized as training does ((x/255-0.5)/0.5)
 * unless the graph itself normalizes; output: the raw embedding [n][dim] (not L2-normalized).
 * Batch 1..max_batch per call; the caller splits larger sets.
 *
 * Errors are one line naming the file and, for graph problems, the node:
 *   "m.onnx: node 17 'Conv_23' (Resize): unsupported op". */
#ifndef FT_ENGINE_H
#define FT_ENGINE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ft_engine ft_engine;

typedef struct ft_engine_opts {
    const char *device; /* "cpu" (default) | "cuda" */
    int threads;        /* CPU threads, 0 = all cores */
    int max_batch;      /* largest n per ft_engine_run, 0 = 32 */
    /* 1: on a backend with graphs (CUDA), a batch size's forward is recorded at its second
     * run and replayed from then on (one launch instead of one per step); the same outputs */
    int graphs;
} ft_engine_opts;

/* path: .onnx file, checkpoint folder, or a folder with one .onnx. 0 or an FT_E* code. */
int ft_engine_open(ft_engine **out, const char *path, const ft_engine_opts *opts, char *err,
                   size_t errcap);
int ft_engine_dim(const ft_engine *e);      /* embedding size */
int ft_engine_input_hw(const ft_engine *e); /* 112 */
int ft_engine_max_batch(const ft_engine *e);
/* x[n][3][hw][hw] -> out[n][dim]; 1 <= n <= max_batch. */
int ft_engine_run(ft_engine *e, const float *x, int n, float *out, char *err, size_t errcap);
void ft_engine_free(ft_engine *e); /* NULL ok */

/* 1 when the graph normalizes raw pixels itself (its first step is a Sub/Mul/Div/Add by a
 * constant on the input, mxnet style): feed it (x - 0) / 1 pixels then. */
int ft_engine_normalizes(const ft_engine *e);
const char *ft_engine_source(const ft_engine *e); /* the file loaded */
const char *ft_engine_kind(const ft_engine *e);   /* "onnx" or "checkpoint" */
int ft_engine_steps(const ft_engine *e);          /* kernels per forward (after aliasing) */
/* runs done by a graph launch (opts.graphs: the run that recorded, and every replay), and
 * recordings made */
void ft_engine_graph_stats(const ft_engine *e, int64_t *replays, int *recorded);

/* The .onnx files of dir: *count of them; the path of the lexicographically last (last = 1,
 * the rule of the submission checker) or first one in out. 0, FT_EFORMAT when there is none,
 * -errno when dir cannot be read. */
int ft_engine_find_onnx(const char *dir, char *out, size_t cap, int *count, int last);

/* ---- inputs from image files ----
 * A JPEG (libjpeg-turbo; the only format read) as 8-bit RGB, *rgb malloc'd [h][w][3]. */
int ft_image_read_rgb(const char *path, uint8_t **rgb, int *w, int *h, char *err, size_t errcap);
/* bilinear resize as cv2.resize(INTER_LINEAR) (within one level of OpenCV's fixed point) */
void ft_image_resize(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh);
/* out[3][hw][hw] = (rgb - mean) / std, RGB planes; flip: mirrored left-right */
void ft_image_blob(const uint8_t *rgb, int hw, float mean, float std, int flip, float *out);

#endif
