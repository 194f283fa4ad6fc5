/* engine: an eval-mode face-embedding model on the ops backends, loaded from
 *   - an ONNX file (ours from ft-export, or torch.onnx.export of insightface's IResNet:
 *     Conv, BatchNormalization, PRelu, Add, Flatten, Gemm/MatMul, Reshape, Constant and
 *     Sub/Mul/Div for mxnet-style input normalization), or
 *   - a checkpoint folder written by ft-train (backbone.safetensors + its recorded
 *     architecture), or a folder holding exactly one .onnx file.
 * Input: float32 NCHW [n][3][112][112] already normalized as training does ((x/255-0.5)/0.5)
 * unless the graph itself normalizes; output: the raw embedding [n][dim] (not L2-normalized).
 * Batch 1..max_batch per call; the caller splits larger sets.
 *
 * Errors are one line naming the file and, for graph problems, the node:
 *   "m.onnx: node 17 'Conv_23' (Resize): unsupported op". */
#ifndef FT_ENGINE_H
#define FT_ENGINE_H

#include <stddef.h>

typedef struct ft_engine ft_engine;

typedef struct ft_engine_opts {
    const char *device; /* "cpu" (default) | "cuda" */
    int threads;        /* CPU threads, 0 = all cores */
    int max_batch;      /* largest n per ft_engine_run, 0 = 32 */
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

#endif
