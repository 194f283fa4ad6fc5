"""safetensors round trip between our C writer/reader and Python.

- our file, read by the independent parser pyref.safetensors.parse and by torch.frombuffer;
- files written here (the reference layout, and other valid layouts), read by our reader;
- damaged files: each refused with a clear message.
Usage: test_safetensors.py TR_STTOOL WORKDIR
"""
import json
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402

np, torch = pyref.need("numpy", "torch")
from pyref.safetensors import DTYPE_ORDER as ORDER, parse  # noqa: E402

TOOL, WORK = sys.argv[1], sys.argv[2]
os.makedirs(WORK, exist_ok=True)
failures = pyref.FAILS  # pyref.check records here
check = pyref.check

TORCH = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32,
         "U8": torch.uint8, "BF16": torch.bfloat16}


# ---- 1. our file
ours = os.path.join(WORK, "ours.safetensors")
r = subprocess.run([TOOL, "write", ours], capture_output=True, text=True)
check(r.returncode == 0, f"write failed: {r.stdout}")
check(not [f for f in os.listdir(WORK) if ".tmp." in f], "temporary file left behind")
n, header, meta, entries, data = parse(ours)
check(n % 8 == 0, f"header length {n} not a multiple of 8")
check(header.rstrip(b" ") == header[:len(header.rstrip(b" "))] and header.strip().endswith(b"}"),
      "header padding must be spaces after the JSON")
check(header.startswith(b'{"__metadata__":{"format":"pt","global_step":"12"},'),
      f"header start: {header[:60]!r}")
check(meta == {"format": "pt", "global_step": "12"}, f"metadata {meta}")
names = [k for k, _ in entries]
want_order = sorted(names, key=lambda k: (-ORDER.index(dict(entries)[k]["dtype"]), k))
check(names == want_order, f"tensor order {names} want {want_order}")
pos = 0
for k, info in entries:
    b, e = info["data_offsets"]
    check(b == pos, f"{k}: offsets not contiguous")
    pos = e
check(pos == len(data), "data length")
expect = {
    "layer1.0.bn1.weight": np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5 - 1.0,
    "features.num_batches_tracked": np.array(1234567890123, dtype=np.int64),
    'z"quoted\\name': np.array([1.0 / 3.0, -2.5, 1e300, 0.0]),
    "bytes": np.array([0, 1, 2, 254, 255], dtype=np.uint8),
    "empty": np.zeros((0, 3), dtype=np.float32),
    "a.ints": np.array([-1, 0, 2147483647], dtype=np.int32),
}
for k, info in entries:
    b, e = info["data_offsets"]
    buf = bytearray(data[b:e])
    if info["dtype"] == "BF16":
        t = torch.frombuffer(buf, dtype=torch.bfloat16) if buf else torch.empty(0)
        check(t.tolist() == [1.0, -2.0], f"bf16 values {t.tolist()}")
        continue
    t = (torch.frombuffer(buf, dtype=TORCH[info["dtype"]]) if buf else
         torch.empty(0, dtype=TORCH[info["dtype"]])).reshape(info["shape"])
    check(list(t.shape) == list(expect[k].shape), f"{k}: shape {list(t.shape)}")
    check(np.array_equal(t.numpy(), expect[k]), f"{k}: values differ")
    check(t.dtype == TORCH[info["dtype"]], f"{k}: dtype")

# ---- 2. files written here, read by ours


def write(path, tensors, meta=None, order=None, pad=True, raw_header=None, extra=b""):
    entries, blobs, off = {}, [], 0
    if meta is not None:
        entries["__metadata__"] = meta
    for k in (order or sorted(tensors, key=lambda k: (-ORDER.index(tensors[k][0]), k))):
        dt, arr = tensors[k]
        b = arr.tobytes()
        entries[k] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = raw_header if raw_header is not None else json.dumps(entries, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs) + extra)


def dump(path):
    r = subprocess.run([TOOL, "dump", path], capture_output=True, text=True)
    return r.returncode, r.stdout


rng = np.random.default_rng(5)
tensors = {
    "conv1.weight": ("F32", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
    "bn1.num_batches_tracked": ("I64", np.array(7, dtype=np.int64)),
    "fc.bias": ("F32", rng.standard_normal(5).astype(np.float32)),
    "m": ("F64", rng.standard_normal((2, 2))),
}
p = os.path.join(WORK, "theirs.safetensors")
for variant, kw in [("reference", {"meta": {"format": "pt"}}),
                    ("no metadata, name order, no padding", {"order": sorted(tensors), "pad": False}),
                    ("pretty header", {"meta": {"a": "b"}, "pad": True})]:
    write(p, tensors, **kw)
    if variant == "pretty header":
        ents = {"__metadata__": {"a": "b"}}
        off = 0
        blobs = []
        for k in sorted(tensors):
            dt, arr = tensors[k]
            ents[k] = {"shape": list(arr.shape), "dtype": dt,
                       "data_offsets": [off, off + arr.nbytes]}
            off += arr.nbytes
            blobs.append(arr.tobytes())
        h = json.dumps(ents, indent=2).encode()
        with open(p, "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    rc, out = dump(p)
    check(rc == 0, f"{variant}: our reader refused: {out.strip()}")
    got = {}
    for line in out.splitlines():
        if line.startswith("meta "):
            continue
        name, dt, shape, hx = (line.split(" ") + [""])[:4]
        got[name] = (dt, shape, hx)
    for k, (dt, arr) in tensors.items():
        shape = ",".join(str(s) for s in arr.shape)
        check(got.get(k) == (dt, shape, arr.tobytes().hex()), f"{variant}: tensor {k} differs")

# ---- 3. damaged files
good_t = {"a": ("F32", np.ones((2, 2), dtype=np.float32)), "b": ("I64", np.arange(3))}
bad_cases = [
    ("truncated data", dict(extra=b""), lambda raw: raw[:-4], "truncated"),
    ("trailing bytes", dict(extra=b"xxxx"), None, "the file holds"),
    ("header length too big", {}, lambda raw: struct.pack("<Q", 1 << 40) + raw[8:], "header length"),
    ("not json", dict(raw_header=b'{"a": {"dtype": "F32",'), None, "header"),
    ("not an object", dict(raw_header=b'[1, 2]'), None, "does not start with '{'"),
    ("unknown dtype", dict(raw_header=b'{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}',
                          extra=b"\0" * 4), None, "unknown dtype 'F33'"),
    ("gap in offsets", dict(raw_header=b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
                           extra=b"\0" * 8), None, "contiguous"),
    ("shape mismatch", dict(raw_header=b'{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}',
                           extra=b"\0" * 8), None, "shape needs 12 bytes"),
    ("duplicate", dict(raw_header=b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                  b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',
                       extra=b"\0" * 2), None, "appears twice"),
    ("reversed offsets", dict(raw_header=b'{"a":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}}',
                             extra=b"\0"), None, "reversed"),
    ("missing field", dict(raw_header=b'{"a":{"dtype":"U8","shape":[1]}}', extra=b"\0"), None,
     "lacks"),
    ("negative dim", dict(raw_header=b'{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}',
                         extra=b"\0"), None, "expected an integer"),
]
for what, kw, mangle, needle in bad_cases:
    path = os.path.join(WORK, "bad.safetensors")
    write(path, good_t if "raw_header" not in kw else {}, **kw)
    if mangle:
        raw = open(path, "rb").read()
        open(path, "wb").write(mangle(raw))
    rc, out = dump(path)
    check(rc == 2 and needle in out and "bad.safetensors" in out,
          f"{what}: want error with {needle!r}, got rc={rc} {out.strip()!r}")
open(os.path.join(WORK, "tiny.safetensors"), "wb").write(b"\1\0\0")
rc, out = dump(os.path.join(WORK, "tiny.safetensors"))
check(rc == 2 and "too short" in out, f"tiny file: {out!r}")

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
