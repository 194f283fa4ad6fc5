/* tensor.h: element types and tensor descriptions shared by the ops interface, the model, the
 * checkpoints and export.
 *
 * Storage dtypes: activations and their gradients live in FT_F32, FT_F16 (IEEE binary16) or
 * FT_BF16 (bfloat16); parameters, parameter gradients, optimizer state, batch-norm statistics,
 * norms, the softmax and the loss are always FT_F32 (autocast semantics, fp32 master weights).
 * Conversions to a 16-bit type round to nearest even; fp16 overflows to inf.
 */
#ifndef FT_TENSOR_H
#define FT_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum ft_dtype {
    FT_F32 = 0,
    FT_F16 = 1,
    FT_BF16 = 2,
    FT_I64 = 3, /* num_batches_tracked */
    FT_I32 = 4, /* labels, class indexes */
    FT_U8 = 5,  /* dropout masks */
    FT_F64 = 6, /* cross-rank sums that need the range (collectives) */
    FT_NDTYPES
} ft_dtype;

size_t ft_dtype_size(ft_dtype dt);      /* bytes per element; 0 for an invalid dtype */
const char *ft_dtype_name(ft_dtype dt); /* "f32", "f16", "bf16", "i64", "i32", "u8", "f64" */
/* "f32"/"fp32"/"float32", "f16"/"fp16"/"float16", "bf16"/"bfloat16" -> dtype; -1 otherwise */
int ft_dtype_parse(const char *name);
/* 1 for the storage dtypes activations may use (F32, F16, BF16) */
int ft_dtype_is_float(ft_dtype dt);

/* Description of one named tensor (a state_dict entry, an optimizer buffer ...). */
typedef struct ft_tensor_info {
    const char *name; /* e.g. "layer1.0.bn1.running_mean"; valid while the owner lives */
    int dtype;        /* FT_F32 or FT_I64 (num_batches_tracked) */
    int ndim;         /* 0 (scalar) .. 4 */
    int64_t shape[4]; /* PyTorch shape */
    size_t numel;     /* product of shape (1 for a scalar) */
} ft_tensor_info;

/* A trainable tensor as the optimizer sees it: value and gradient, both fp32 on the device. */
typedef struct ft_param {
    const char *name; /* state_dict name */
    float *w;         /* device, numel floats */
    float *g;         /* device, numel floats; accumulated by backward ("+=") */
    size_t numel;
    int ndim; /* PyTorch shape of w, as in ft_tensor_info */
    int64_t shape[4];
    int trainable; /* 0 for frozen tensors (features.weight): no update, no weight decay */
} ft_param;

#endif
