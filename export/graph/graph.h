/* graph: an IResNet checkpoint written by ft-train -> an ONNX model (protobuf-c messages
 * generated from Debian's onnx.proto), the graph torch2onnx.py exports (formats.md 5.1).
 *
 * The checkpoint: <dir>/backbone.safetensors, its __metadata__ "architecture" as ft-train
 * records it ("network r50, width 64, blocks (3, 4, 14, 3), emb 512"). Every tensor the graph
 * uses must be there as F32 with the shape the architecture gives, finite, running_var >= 0;
 * the file may hold nothing else but the BN num_batches_tracked counters (I64 []). fp16 / bf16
 * training keeps fp32 master weights in the checkpoint: the export always starts from those.
 *
 * The graph (IResNet's eval forward, train/model/iresnet.h; dropout is the identity there):
 *   input  "data" float32 [N, 3, 112, 112], N symbolic (dim_param "None"), normalized
 *          (x - 127.5) / 127.5 by the caller, RGB, NCHW
 *   Conv(conv1) BatchNormalization(bn1) PRelu(prelu)
 *   per IBasicBlock layerS.J: BatchNormalization(bn1) Conv(conv1) BatchNormalization(bn2)
 *     PRelu Conv(conv2, stride 2 in the first block of a stage) BatchNormalization(bn3)
 *     [Conv(downsample.0) BatchNormalization(downsample.1): first block of a stage] Add
 *   BatchNormalization(bn2) Flatten(axis 1) Gemm(fc, transB) BatchNormalization(features)
 *   output "embedding" float32 [N, emb], not L2-normalized
 * Node names follow torch 1.13's exporter ("/layer1/layer1.0/conv1/Conv"), values are
 * "<node>_output_0", initializers keep their state_dict names (PReLU slopes reshaped to
 * [C, 1, 1]). BN runs on the running statistics, epsilon 1e-5, momentum 0.9 (PyTorch's 0.1).
 *
 * fold_bn: the BNs that follow a conv (stem bn1, block bn2 and bn3, downsample.1) are folded
 * into it: W' = W * g / sqrt(var + eps) per output channel, b' = beta - mean * g / sqrt(var +
 * eps), computed in double, rounded once to float; the conv gets a bias and the folded
 * initializers are named "<conv>.weight_folded" / "<conv>.bias_folded". The other BNs (block
 * bn1, the final bn2, features) precede a padded conv or follow an Add / a Gemm and stay,
 * so the folded graph is torch2onnx's node for node (r50: 130 nodes).
 * fp16: the whole graph computes in float16: Cast(data -> fp16) first, every initializer
 * float16, Cast(-> float32) last, so the input and output stay float32. A value beyond
 * float16's range (65504) is refused naming the tensor. ONNX checks for submissions
 * (onnx_helper, ft-check) reject such a model by its fp16 initializers: it is for deployment.
 *
 * Output: deterministic (the same checkpoint and options give the same bytes), written to
 * "<path>.tmp.<pid>", fsync'd and renamed; nothing is left behind on an error. A stop request
 * (ft_stop_install's SIGINT/SIGTERM/SIGHUP flag) while writing ends with FT_ESTOP, the
 * temporary file removed. Errors are one line "file: reason" in err naming the tensor where
 * there is one.
 */
#ifndef FT_GRAPH_H
#define FT_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "iresnet.h"     // defines: ft_iresnet_config (blocks, width, emb, BN epsilon)
#include "safetensors.h" // defines: ft_st_file

#define FT_GRAPH_ONNX_NAME     "backbone.onnx"
#define FT_GRAPH_OPSET_DEFAULT 11
/* The opsets whose Conv, BatchNormalization, PRelu, Add, Flatten, Gemm and Cast mean what the
 * graph needs; 17 is the newest the onnx 1.12 checker knows. */
#define FT_GRAPH_OPSET_MIN 9
#define FT_GRAPH_OPSET_MAX 17

/* The architecture ft-train records: 0, or FT_EFORMAT (not that form) / FT_EARG (a depth
 * facetrain does not build, a size out of range). cfg gets ft_iresnet_config_init's defaults
 * for the depth with the recorded width, blocks and emb. */
int ft_graph_arch_parse(const char *s, int *depth, ft_iresnet_config *cfg);
/* The same string from depth and cfg (blocks, width, emb); 0 or FT_ERANGE when cap is short. */
int ft_graph_arch_format(char *out, size_t cap, int depth, const ft_iresnet_config *cfg);

/* A checkpoint folder opened for export. */
typedef struct ft_graph_ckpt {
    char path[4096];       /* <dir>/backbone.safetensors, the name in messages */
    char arch[192];        /* as recorded */
    int depth;             /* 18, 34, 50, 100, 200 */
    ft_iresnet_config cfg; /* blocks, width, emb, bn_eps */
    int64_t global_step;   /* -1 when not recorded */
    char train_dtype[16];  /* storage dtype of the training run, "" when not recorded */
    ft_st_file st;
} ft_graph_ckpt;

/* Read <dir>/backbone.safetensors and its architecture; 0 or a status with err. */
int ft_graph_ckpt_open(ft_graph_ckpt *c, const char *dir, char *err, size_t errcap);
void ft_graph_ckpt_close(ft_graph_ckpt *c); /* zeroed ok */

typedef struct ft_graph_opts {
    int opset;   /* FT_GRAPH_OPSET_MIN..MAX, default 11 */
    int fold_bn; /* fold the BNs that follow a conv into it (off by default) */
    int fp16;    /* float16 graph (see above) */
} ft_graph_opts;
void ft_graph_opts_init(ft_graph_opts *o);

typedef struct ft_graph_info {
    int nodes, initializers;
    int64_t params; /* scalars in the initializers */
    uint64_t bytes; /* file size */
} ft_graph_info;

/* Build the graph of c and write it to path (atomically). info may be NULL. */
int ft_graph_write(const ft_graph_ckpt *c, const ft_graph_opts *o, const char *path,
                   ft_graph_info *info, char *err, size_t errcap);

/* Both steps: dir's checkpoint -> out (NULL: <dir>/backbone.onnx). */
int ft_graph_export(const char *dir, const char *out, const ft_graph_opts *o, ft_graph_info *info,
                    char *err, size_t errcap);

#endif
