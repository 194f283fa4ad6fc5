"""Minimal independent safetensors reader for the tests (the format as huggingface/safetensors
documents it: 8-byte LE header length, JSON header, raw LE data), sharing no code with
train/'s writer and reader.

  parse(path)          (header length, header bytes, metadata or None, [(name, info)] in header
                       order, data bytes): the layout as written, for format checks
  load(path)           (metadata, {name: numpy array}, [names in header order])
  load_safetensors(p)  {name: numpy array}; load_metadata(p): the "__metadata__" dict
  load_torch(path)     (metadata, {name: torch tensor}, [names in header order]); BF16 tensors
                       as torch.bfloat16
numpy has no bfloat16: load() gives BF16 tensors as their uint16 bit patterns.
"""
import json
import struct

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "BF16": np.uint16,
          "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
          "U16": np.uint16, "U32": np.uint32, "U64": np.uint64, "BOOL": np.bool_}
# the reference implementation's Dtype order (its writer sorts tensors by it, widest first)
DTYPE_ORDER = ["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64",
               "I64", "U64"]


def parse(path):
    """(header length, header bytes, metadata or None, [(name, info dict)] in header order,
    data bytes). A name that appears twice is listed twice."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = raw[8:8 + n]
    obj = json.loads(header, object_pairs_hook=list)
    meta = None
    entries = []
    for k, v in obj:
        if k == "__metadata__":
            meta = dict(v)
        else:
            entries.append((k, dict(v)))
    return n, header, meta, entries, raw[8 + n:]


def load(path):
    """(metadata ({} when absent), {name: numpy array}, [names in header order])."""
    _, _, meta, entries, data = parse(path)
    out = {}
    for k, v in entries:
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(data[b:e], dtype=DTYPES[v["dtype"]]).reshape(v["shape"])
    return meta or {}, out, [k for k, _ in entries]


def load_safetensors(path):
    return load(path)[1]


def load_metadata(path):
    return load(path)[0]


def load_torch(path):
    """(metadata, {name: torch tensor (a copy)}, [names in header order])."""
    import torch

    meta, arrays, order = load(path)
    dtypes = dict(parse(path)[3])
    out = {}
    for k, a in arrays.items():
        if dtypes[k]["dtype"] == "BF16":
            out[k] = torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
        else:
            out[k] = torch.from_numpy(a.copy())
    return meta, out, order
