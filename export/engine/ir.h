/* ir.h: the engine's internal graph (not a public header: the loaders fill it, exec.c runs it).
 *
 * A graph is a list of steps over numbered values. Every value holds, per sample, either a
 * feature map [c, h, w] or a vector [f] (a flattened map keeps its (c, h*w) so that the fully
 * connected step can read it in NCHW flatten order). Value 0 is the graph input [3, hw, hw].
 * Reshape, Flatten and Identity make no step: they alias their input's value.
 *
 * Steps, all on fp32 activations:
 *   IR_CONV    y = conv(x, w[k, c, r, r]) (+ bias[k]); square kernel, symmetric pad, group 1
 *   IR_AFFINE  y = (x - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c] per channel
 *              (BatchNormalization; a bias or a Sub/Mul/Div by a constant is the special case
 *              mean 0, var 1, eps 0)
 *   IR_PRELU   y = x > 0 ? x : alpha[c] * x
 *   IR_ADD     y = a + b (same shapes)
 *   IR_FC      y[n, out] = flat(x) w[out, c*hw]^T + bias[out]
 * Weights are host fp32 arrays owned by the graph. */
#ifndef FT_ENGINE_IR_H
#define FT_ENGINE_IR_H

#include <stddef.h>

/* bounds on what a file may declare (a face model is far below all of them) */
#define IR_MAX_STEPS    4096
#define IR_MAX_CHANNELS 65536
#define IR_MAX_HW       4096
#define IR_MAX_FEAT     (1 << 26)

enum { IR_CONV = 1, IR_AFFINE, IR_PRELU, IR_ADD, IR_FC };

typedef struct ir_shape {
    int c, h, w; /* feature map: c, h, w >= 1; vector: c = length, h = w = 1, flat = 1 */
    int flat;    /* 1: a vector; src_c/src_hw is the map it was flattened from (or c, 1) */
    int src_c, src_hw;
    int base; /* the value whose storage this one shares (itself unless an alias) */
} ir_shape;

typedef struct ir_step {
    int kind;
    int in, in2, out; /* value ids (in2: IR_ADD only) */
    int k, r, stride, pad;
    float eps;
    float *w, *b; /* conv / fc weight and bias (b may be NULL) */
    float *gamma, *beta, *mean, *var;
    float *alpha;
    int node;      /* index of the source node (ONNX) or -1 */
    char name[96]; /* the node's name or a state_dict prefix, for messages */
} ir_step;

typedef struct ir_graph {
    ir_step *s;
    int n, cap;
    ir_shape *v; /* value shapes */
    int nv, vcap;
    int output;      /* value id of the embedding */
    int hw;          /* input height = width */
    int normalizes;  /* the graph normalizes raw pixels itself (mxnet-style Sub/Mul first) */
    int fixed_batch; /* > 0: a Reshape hard-codes this batch size */
    char fixed_batch_at[160]; /* "node 12 'Reshape_3' (Reshape)" */
} ir_graph;

int ir_add_value(ir_graph *g, ir_shape s); /* id, or -1 when out of memory / too many */
ir_step *ir_add_step(ir_graph *g);         /* zeroed step, or NULL */
float *ir_alloc(size_t n);                 /* zeroed floats (1 when n is 0), NULL on OOM */
void ir_free(ir_graph *g);

/* loaders: 0 or an FT_E* code with one line in err naming the file (and node) */
int ir_load_onnx(ir_graph *g, const char *path, const void *buf, size_t len, char *err,
                 size_t errcap);
int ir_load_ckpt(ir_graph *g, const char *dir, char *err, size_t errcap);

#endif
