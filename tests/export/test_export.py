"""ft-export end to end: checkpoints -> ONNX, checked by onnx (checker, the graph as
torch2onnx.py writes it), onnxruntime, ft-train's eval forward (ex_tool embed) and PyTorch.

  test_export.py onnx  FT_BIN EX_TOOL WORK [REPO]   r18 at width 16, r50 at width 8 (random
        weights with non-trivial BN statistics, ex_tool mkckpt): onnx.checker full_check;
        input/output/initializers/opset as formats.md 5.1 says; the --fold-bn graph is
        torch2onnx's op sequence (r50: 130 nodes); onnxruntime vs ft-train's eval forward for
        batch 1 and 7 (cosine >= 0.99999, max abs error <= 2e-5 x the largest |embedding|),
        vs PyTorch (pyref.iresnet) as well; --fold-bn vs unfolded (<= 2e-5 x the largest
        |embedding|); --fold-bn vs torch.onnx.export of pyref.iresnet with the checkpoint
        (torch2onnx.py's call): node for node the same ops, names, attributes, and outputs; --fp16 (float16 initializers, cosine >= 0.999 and max abs error <=
        1e-2 x the largest |embedding|); --opset 9/13/17; the same bytes twice
  test_export.py bad   ...   every error path: exit 1 (2 for usage), one line
        "ft-export: ...", naming the file and the tensor, no file left behind, an existing
        output untouched
  test_export.py train FT_BIN EX_TOOL WORK REPO   ft-train's export_onnx: a short run writes
        <output>/backbone.onnx, byte-equal to ft-export's output of the same checkpoint, and
        onnxruntime matches ft-train's eval forward on it; a dtype=bf16 run exports its fp32
        master weights (FLOAT initializers, train_dtype bf16 in the metadata);
        export_onnx=False writes none
  test_export.py r50   ...   r50 at full width: checker, onnxruntime vs ft-train's eval
        forward at batch 1 and 7, --fold-bn; SIGINT / SIGTERM during the export leave no
        file (slow)
Exit 0 pass, 1 fail, 77 skip (an oracle module missing outside CI: pyref.need).
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys

_here = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, os.path.join(_here, ".."))
import pyref  # noqa: E402

np, onnx, ort = pyref.need("numpy", "onnx", "onnxruntime")
from onnx import numpy_helper  # noqa: E402
from pyref.safetensors import load as load_st  # noqa: E402

MODE, BIN, TOOL, WORK = sys.argv[1:5]
REPO = sys.argv[5] if len(sys.argv) > 5 else None
EXPORT = os.path.join(BIN, "ft-export")
fail = pyref.FAILS  # pyref.check records here
check = pyref.check

# tolerances, relative to the largest |embedding| of the reference
TOL_FP32 = 2e-5   # fp32 graph vs ft-train's fp32 forward (summation order only)
TOL_FOLD = 2e-5   # --fold-bn vs unfolded (one rounding of the folded weights)
TOL_FP16 = 1e-2   # float16 graph vs fp32 (11-bit mantissa through every layer)
COS_FP32, COS_FP16 = 0.99999, 0.999


finish = pyref.finish


def run(*args, check_rc=0):
    p = subprocess.run(list(args), capture_output=True, text=True)
    if check_rc is not None and p.returncode != check_rc:
        print(p.stdout[-2000:], p.stderr[-2000:])
        check(False, f"{' '.join(args)}: exit {p.returncode}")
    return p


def mkckpt(d, depth, width=None, emb=None, seed=1, blocks=None):
    args = [TOOL, "mkckpt", d, "--depth", str(depth), "--seed", str(seed)]
    if width:
        args += ["--width", str(width)]
    if emb:
        args += ["--emb", str(emb)]
    if blocks:
        args += ["--blocks", ",".join(map(str, blocks))]
    run(*args)


def export(d, *opts, out=None):
    args = [EXPORT, d] + list(opts) + (["-o", out] if out else [])
    p = run(*args)
    return out or os.path.join(d, "backbone.onnx"), p


def inputs(n, seed=5):
    return np.random.RandomState(seed).uniform(-1, 1, (n, 3, 112, 112)).astype(np.float32)


def ft_embed(d, x, tag):
    xi, yo = os.path.join(WORK, f"{tag}.in.f32"), os.path.join(WORK, f"{tag}.out.f32")
    x.tofile(xi)
    run(TOOL, "embed", d, xi, yo, "--threads", "2")
    return np.fromfile(yo, np.float32).reshape(len(x), -1)


def ort_run(path, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return s.run(None, {"data": x})[0]


def compare(label, got, ref, cos_min, tol):
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    err = float(np.abs(got - ref).max())
    scale = float(np.abs(ref).max())
    print(f"{label}: cosine min {cos.min():.8f}, max abs error {err:.3g} "
          f"(largest |embedding| {scale:.3g}, bound {tol * scale:.3g})")
    check(got.shape == ref.shape, f"{label}: shape {got.shape} vs {ref.shape}")
    check(np.isfinite(got).all(), f"{label}: non-finite outputs")
    check(cos.min() >= cos_min, f"{label}: cosine {cos.min()} < {cos_min}")
    check(err <= tol * scale, f"{label}: max abs error {err} > {tol * scale}")


# ---------------------------------------------------------------------------------- structure

IR = {9: 4, 10: 5, 11: 6, 12: 7, 13: 7, 14: 7, 15: 8, 16: 8, 17: 8}


def torch2onnx_ops(blocks):
    """The op sequence torch2onnx.py exports (formats.md 5.1: eval-mode Conv+BN fused)."""
    ops = ["Conv", "PRelu"]
    for n in blocks:
        for j in range(n):
            ops += ["BatchNormalization", "Conv", "PRelu", "Conv"] + (["Conv"] if j == 0 else [])
            ops += ["Add"]
    return ops + ["BatchNormalization", "Flatten", "Gemm", "BatchNormalization"]


def unfolded_ops(blocks):
    """The same with every BN a node of its own, after the conv it follows."""
    ops = ["Conv", "BatchNormalization", "PRelu"]
    for n in blocks:
        for j in range(n):
            ops += ["BatchNormalization", "Conv", "BatchNormalization", "PRelu", "Conv",
                    "BatchNormalization"]
            if j == 0:
                ops += ["Conv", "BatchNormalization"]
            ops += ["Add"]
    return ops + ["BatchNormalization", "Flatten", "Gemm", "BatchNormalization"]


def check_structure(label, path, ckpt, emb, blocks, fold=False, fp16=False, opset=11):
    m = onnx.load(path)
    try:
        onnx.checker.check_model(m, full_check=True)
    except Exception as e:  # noqa: BLE001 (the checker raises several kinds)
        check(False, f"{label}: onnx.checker: {e}")
    g = m.graph
    check(m.ir_version == IR[opset], f"{label}: ir_version {m.ir_version}")
    check([(o.domain, o.version) for o in m.opset_import] == [("", opset)],
          f"{label}: opset_import {m.opset_import}")
    check(len(g.input) == 1 and g.input[0].name == "data", f"{label}: inputs {g.input}")
    check(len(g.output) == 1, f"{label}: {len(g.output)} outputs")
    t = g.input[0].type.tensor_type
    dims = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in t.shape.dim]
    check(t.elem_type == onnx.TensorProto.FLOAT and dims == ["None", 3, 112, 112],
          f"{label}: input {t.elem_type} {dims}")
    o = g.output[0].type.tensor_type
    odims = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in o.shape.dim]
    check(o.elem_type == onnx.TensorProto.FLOAT and odims == ["None", emb],
          f"{label}: output {o.elem_type} {odims}")
    want_t = onnx.TensorProto.FLOAT16 if fp16 else onnx.TensorProto.FLOAT
    check(all(i.data_type == want_t and i.HasField("raw_data") for i in g.initializer),
          f"{label}: initializers not all {'FLOAT16' if fp16 else 'FLOAT'} raw_data")
    inits = {i.name for i in g.initializer}
    check(not inits & {i.name for i in g.input}, f"{label}: initializers listed as inputs")
    ops = [n.op_type for n in g.node]
    want = torch2onnx_ops(blocks) if fold else unfolded_ops(blocks)
    if fp16:
        want = ["Cast"] + want + ["Cast"]
    check(ops == want, f"{label}: op sequence differs from the expected one "
                       f"({len(ops)} vs {len(want)} nodes)")
    names = [n.name for n in g.node]
    check(len(set(names)) == len(names), f"{label}: node names not unique")
    bad = [n for n in names if not re.fullmatch(r"(/[A-Za-z0-9_.]+)*/[A-Za-z]+", n)]
    check(not bad, f"{label}: node names not in torch's style: {bad[:3]}")
    first = ["/data/Cast", "/conv1/Conv"] if fp16 else \
        ["/conv1/Conv", "/prelu/PRelu" if fold else "/bn1/BatchNormalization"]
    check(names[:2] == first, f"{label}: first nodes {names[:2]}")
    _, arrays, _ = load_st(os.path.join(ckpt, "backbone.safetensors"))
    sd = {k for k in arrays if not k.endswith("num_batches_tracked")}
    if not fold:
        check(inits == sd, f"{label}: initializers {sorted(inits ^ sd)[:4]} differ from the "
                           "state_dict names")
    else:
        kept = {k for k in sd if not re.search(r"(conv\d|downsample\.0)\.weight$", k) and
                not re.search(r"(^bn1|\.bn2|\.bn3|downsample\.1)\.", k)}
        folded = inits - kept
        check(all(re.search(r"\.(weight|bias)_folded$", k) for k in folded) and kept <= inits,
              f"{label}: folded initializer names {sorted(folded)[:4]}")
    md = {p.key: p.value for p in m.metadata_props}
    check(md.get("facetrain.precision") == ("fp16" if fp16 else "fp32"), f"{label}: metadata {md}")
    return m


# ---------------------------------------------------------------------------------- onnx

def torch_embed(ckpt, width, blocks, emb, x):
    torch = pyref.need("torch")
    from pyref.iresnet import Net
    from pyref.safetensors import load_torch
    net = Net(width, blocks, emb)
    net.load_state_dict(load_torch(os.path.join(ckpt, "backbone.safetensors"))[1], strict=True)
    net.eval()
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def torch_export(ckpt, width, blocks, emb, path):
    """torch2onnx.py's call (formats.md 5.1) on pyref.iresnet with the checkpoint."""
    torch = pyref.need("torch")
    from pyref.iresnet import Net
    from pyref.safetensors import load_torch
    net = Net(width, blocks, emb)
    net.load_state_dict(load_torch(os.path.join(ckpt, "backbone.safetensors"))[1], strict=True)
    torch.onnx.export(net.eval(), torch.zeros(1, 3, 112, 112), path, input_names=["data"],
                      keep_initializers_as_inputs=False, opset_version=11)
    m = onnx.load(path)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "None"  # as torch2onnx.py does
    onnx.save(m, path)
    return m


def attrs(n):
    return {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}


def same_as_torch(label, ours, theirs):
    """--fold-bn against torch's own export: node for node the same op, name, attributes and
    number of inputs; the BN initializers by name."""
    a, b = ours.graph.node, theirs.graph.node
    check([n.op_type for n in a] == [n.op_type for n in b],
          f"{label}: op sequence differs from torch's ({len(a)} vs {len(b)} nodes)")
    diff = [(x.name, y.name) for x, y in zip(a, b) if x.name != y.name]
    check(not diff, f"{label}: node names differ from torch's: {diff[:3]}")
    diff = [x.name for x, y in zip(a, b) if attrs(x) != attrs(y) or len(x.input) != len(y.input)]
    check(not diff, f"{label}: attributes or inputs differ from torch's at {diff[:3]}")
    bn = lambda m: [list(n.input[1:]) for n in m.graph.node if n.op_type == "BatchNormalization"]
    check(bn(ours) == bn(theirs), f"{label}: BN initializer names differ from torch's")
    # the weights node by node: shapes equal, values within float rounding (torch folds in
    # float32, facetrain in double)
    to = numpy_helper.to_array
    ia = {i.name: to(i) for i in ours.graph.initializer}
    ib = {i.name: to(i) for i in theirs.graph.initializer}
    worst, bad = 0.0, []
    for x, y in zip(a, b):
        for u, v in zip(x.input, y.input):
            if u in ia and v in ib:
                if ia[u].shape != ib[v].shape:
                    bad.append(u)
                    continue
                scale = max(float(np.abs(ib[v]).max()), 1e-30)
                worst = max(worst, float(np.abs(ia[u] - ib[v]).max()) / scale)
    print(f"{label}: initializers vs torch's: largest difference {worst:.3g} of the tensor's "
          "largest |value|")
    check(not bad, f"{label}: initializer shapes differ from torch's: {bad[:3]}")
    check(worst <= 1e-6, f"{label}: initializers differ from torch's by {worst}")


def onnx_mode():
    cases = [("r18w16", 18, 16, 64, (2, 2, 2, 2)), ("r50w8", 50, 8, 32, (3, 4, 14, 3))]
    x7 = inputs(7)
    for tag, depth, width, emb, blocks in cases:
        ck = os.path.join(WORK, tag)
        mkckpt(ck, depth, width, emb, seed=depth)
        ref7, ref1 = ft_embed(ck, x7, tag + "_7"), ft_embed(ck, x7[:1], tag + "_1")
        path, p = export(ck)
        check(os.path.exists(path), f"{tag}: no {path}")
        check(re.match(r".*backbone\.onnx: \d+ nodes", p.stdout), f"{tag}: stdout {p.stdout!r}")
        check_structure(tag, path, ck, emb, blocks)
        # what onnx_helper.py's check (formats.md 5.3) looks at beyond the structure: >= 8
        # nodes, no Sub/Mul/Div name among the first 8 (so it takes mean = std = 127.5, as for
        # arcface_torch's exports), a finite batch of 32 copies
        mm = onnx.load(path)
        check(len(mm.graph.node) >= 8, f"{tag}: {len(mm.graph.node)} nodes")
        check(not [n.name for n in mm.graph.node[:8]
                   if n.name.startswith(("Sub", "_minus", "Mul", "_mul", "Div"))],
              f"{tag}: a node name the helper takes for in-graph normalization")
        y32 = ort_run(path, np.repeat(x7[:1], 32, axis=0))
        check(np.isfinite(y32.sum()) and y32.shape == (32, emb), f"{tag}: batch of 32")
        y7, y1 = ort_run(path, x7), ort_run(path, x7[:1])
        compare(f"{tag} onnxruntime vs ft-train eval, batch 7", y7, ref7, COS_FP32, TOL_FP32)
        compare(f"{tag} onnxruntime vs ft-train eval, batch 1", y1, ref1, COS_FP32, TOL_FP32)
        compare(f"{tag} onnxruntime vs PyTorch, batch 7", y7,
                torch_embed(ck, width, blocks, emb, x7), COS_FP32, TOL_FP32)
        fpath, _ = export(ck, "--fold-bn", out=os.path.join(WORK, tag + "_fold.onnx"))
        mf = check_structure(tag + " --fold-bn", fpath, ck, emb, blocks, fold=True)
        tpath = os.path.join(WORK, tag + "_torch.onnx")
        same_as_torch(f"{tag} --fold-bn vs torch.onnx.export", mf,
                      torch_export(ck, width, blocks, emb, tpath))
        compare(f"{tag} --fold-bn vs torch.onnx.export's model, batch 7", ort_run(fpath, x7),
                ort_run(tpath, x7), COS_FP32, TOL_FOLD)
        if depth == 50:
            check(len(mf.graph.node) == 130, f"r50 --fold-bn: {len(mf.graph.node)} nodes, "
                                             "torch2onnx.py's r50 has 130")
        compare(f"{tag} --fold-bn vs unfolded, batch 7", ort_run(fpath, x7), y7, COS_FP32,
                TOL_FOLD)
        hpath, _ = export(ck, "--fp16", out=os.path.join(WORK, tag + "_fp16.onnx"))
        check_structure(tag + " --fp16", hpath, ck, emb, blocks, fp16=True)
        check(os.path.getsize(hpath) < 0.55 * os.path.getsize(path), f"{tag}: fp16 file size")
        compare(f"{tag} --fp16 vs ft-train eval, batch 7", ort_run(hpath, x7), ref7, COS_FP16,
                TOL_FP16)
        hf, _ = export(ck, "--fp16", "--fold-bn", out=os.path.join(WORK, tag + "_fp16f.onnx"))
        check_structure(tag + " --fp16 --fold-bn", hf, ck, emb, blocks, fold=True, fp16=True)
        compare(f"{tag} --fp16 --fold-bn vs ft-train eval, batch 7", ort_run(hf, x7), ref7,
                COS_FP16, TOL_FP16)
        if depth == 18:
            for opset in (9, 13, 17):
                op, _ = export(ck, "--opset", str(opset), out=os.path.join(WORK, f"op{opset}.onnx"))
                check_structure(f"{tag} --opset {opset}", op, ck, emb, blocks, opset=opset)
                compare(f"{tag} --opset {opset} vs opset 11", ort_run(op, x7[:2]), y7[:2],
                        COS_FP32, 1e-6)
            again, _ = export(ck, out=os.path.join(WORK, "again.onnx"))
            check(open(again, "rb").read() == open(path, "rb").read(),
                  "two exports of one checkpoint differ")
            again, _ = export(ck, "--fold-bn", out=os.path.join(WORK, "again.onnx"))
            check(open(again, "rb").read() == open(fpath, "rb").read(),
                  "two --fold-bn exports of one checkpoint differ")
    left = [f for f in os.listdir(WORK) if ".tmp." in f]
    check(not left, f"temporary files left: {left}")


# ---------------------------------------------------------------------------------- bad

def write_st(path, tensors, meta):
    """A safetensors file (huggingface layout) from [(name, array or (dtype, shape, bytes))]."""
    hdr, blobs, off = {}, [], 0
    if meta is not None:
        hdr["__metadata__"] = meta
    codes = {np.float32: "F32", np.float64: "F64", np.int64: "I64", np.float16: "F16"}
    for name, a in tensors:
        b = a.tobytes()
        hdr[name] = {"dtype": codes[a.dtype.type], "shape": list(a.shape),
                     "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def bad_mode():
    base = os.path.join(WORK, "base")
    mkckpt(base, 18, 4, 8, seed=2)
    meta, arrays, order = load_st(os.path.join(base, "backbone.safetensors"))
    tens = [(k, arrays[k].copy()) for k in order]
    outdir = os.path.join(WORK, "cases")

    def variant(name, edit=None, meta_edit=None, raw=None):
        d = os.path.join(outdir, name)
        os.makedirs(d)
        t = [(k, v.copy()) for k, v in tens]
        md = dict(meta)
        if edit:
            t = edit(t)
        if meta_edit:
            md = meta_edit(md)
        p = os.path.join(d, "backbone.safetensors")
        write_st(p, t, md)
        if raw:
            data = open(p, "rb").read()
            open(p, "wb").write(raw(data))
        return d

    def setval(name, idx, v):
        def f(t):
            for k, a in t:
                if k == name:
                    a.reshape(-1)[idx] = v
            return t
        return f

    def arch(s):
        return lambda md: {**md, "architecture": s}

    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    afile = os.path.join(outdir, "a_file")
    open(afile, "w").write("x")
    empty = os.path.join(outdir, "empty")
    os.makedirs(empty)
    st = "backbone.safetensors"
    cases = [
        ("missing folder", [os.path.join(outdir, "nope")], 1, "no such checkpoint folder"),
        ("a file, not a folder", [afile], 1, "not a folder"),
        ("no backbone.safetensors", [empty], 1, os.path.join(empty, st)),
        ("truncated file", [variant("trunc", raw=lambda b: b[:-40])], 1, st),
        ("garbage header", [variant("garbage", raw=lambda b: b[:8] + b"{not json" + b[17:])],
         1, st),
        ("no architecture", [variant("noarch", meta_edit=lambda md: {
            k: v for k, v in md.items() if k != "architecture"})], 1, "no architecture recorded"),
        ("unknown architecture", [variant("r27", meta_edit=arch(
            "network r27, width 4, blocks (2, 2, 2, 2), emb 8"))], 1, "unknown architecture"),
        ("mangled architecture", [variant("mangled", meta_edit=arch("resnet50"))], 1,
         "unknown architecture 'resnet50'"),
        ("architecture of another width", [variant("width8", meta_edit=arch(
            "network r18, width 8, blocks (2, 2, 2, 2), emb 8"))], 1,
         "tensor 'conv1.weight' is F32 [4, 3, 3, 3], architecture network r18, width 8"),
        ("architecture with more blocks", [variant("blocks3", meta_edit=arch(
            "network r18, width 4, blocks (3, 2, 2, 2), emb 8"))], 1,
         "tensor 'layer1.2.bn1.weight' [4] is missing"),
        ("missing tensor", [variant("missing", edit=lambda t: [
            (k, v) for k, v in t if k != "layer2.0.bn3.running_var"])], 1,
         "tensor 'layer2.0.bn3.running_var' [8] is missing"),
        ("extra tensor", [variant("extra", edit=lambda t: t + [
            ("head.weight", np.zeros(3, np.float32))])], 1,
         "tensor 'head.weight' is not part of architecture"),
        ("wrong dtype", [variant("f64", edit=lambda t: [
            (k, v.astype(np.float64) if k == "fc.bias" else v) for k, v in t])], 1,
         "tensor 'fc.bias' is F64 [8]"),
        ("NaN weight", [variant("nan", edit=setval("layer1.0.conv2.weight", 5, np.nan))], 1,
         "tensor 'layer1.0.conv2.weight' holds nan (element 5)"),
        ("inf bias", [variant("inf", edit=setval("features.bias", 3, np.inf))], 1,
         "tensor 'features.bias' holds inf (element 3)"),
        ("negative variance", [variant("negvar", edit=setval("layer3.1.bn2.running_var", 1,
                                                                 -0.5))], 1,
         "tensor 'layer3.1.bn2.running_var' holds a negative variance"),
        ("newer schema", [variant("schema", meta_edit=lambda md: {**md, "schema": "99"})], 1,
         "schema 99 is newer"),
        ("fp16 overflow", [variant("big", edit=setval("fc.weight", 2, 1e5)), "--fp16"], 1,
         "tensor 'fc.weight' element 2 = 100000 does not fit float16"),
        ("output folder missing", [base, "-o", os.path.join(outdir, "no", "m.onnx")], 1,
         "cannot create"),
        ("output is a folder", [base, "-o", empty], 1, "cannot write"),
        ("opset out of range", [base, "--opset", "8"], 2, "--opset '8'"),
        ("opset not a number", [base, "--opset", "x"], 2, "--opset 'x'"),
        ("no checkpoint", [], 2, "usage"),
        ("two checkpoints", [base, base], 2, "usage"),
        ("unknown option", [base, "--bogus"], 2, "usage"),
    ]
    for label, args, rc, want in cases:
        p = subprocess.run([EXPORT] + args, capture_output=True, text=True)
        lines = p.stderr.strip().splitlines()
        ok = check(p.returncode == rc, f"{label}: exit {p.returncode}, expected {rc}")
        if rc == 1:
            ok &= check(len(lines) == 1 and lines[0].startswith("ft-export: "),
                        f"{label}: stderr is not one 'ft-export: ' line: {p.stderr!r}")
        ok &= check(want in p.stderr, f"{label}: '{want}' not in {p.stderr.strip()!r}")
        ok &= check(p.stdout == "" or rc == 2 and "usage" in p.stderr,
                    f"{label}: stdout {p.stdout!r}")
        if ok:
            print(f"ok: {label}: {lines[0] if lines else ''}")
    left = []
    for root, _, files in os.walk(outdir):
        left += [os.path.join(root, f) for f in files if f.endswith(".onnx") or ".tmp." in f]
    check(not left, f"files left behind: {left}")
    check(not os.path.exists(os.path.join(base, "backbone.onnx")), "an output from a usage error")
    # an existing output stays as it was when the export fails
    target = os.path.join(WORK, "keep.onnx")
    open(target, "wb").write(b"previous export")
    p = subprocess.run([EXPORT, os.path.join(outdir, "nan"), "-o", target], capture_output=True)
    check(p.returncode == 1 and open(target, "rb").read() == b"previous export",
          "a failed export changed the existing output")
    check(not [f for f in os.listdir(WORK) if ".tmp." in f], "temporary file left in WORK")


# ---------------------------------------------------------------------------------- train

def train_mode():
    for tool in ("ft-synth", "ft-ingest", "ft-train"):
        if not os.access(os.path.join(BIN, tool), os.X_OK):
            print(f"skip: {tool} is not built")
            sys.exit(77)
    data = os.path.join(WORK, "synth")
    if not os.path.isdir(os.path.join(data, "train.lmdb")):
        shutil.rmtree(data, ignore_errors=True)
        run(os.path.join(BIN, "ft-synth"), data, "--classes", "16", "--per-class", "6",
            "--seed", "3", "--pairs", "20")
        run(os.path.join(BIN, "ft-ingest"), data, os.path.join(data, "train.lmdb"), "--shuffle")
    config = os.path.join(REPO, "configs", "synth_r18.py")
    common = [f"rec={data}", "num_classes=16", "batch_size=16", "max_steps=3", "val_targets=[]",
              "threads=2", "num_epoch=1"]
    out = os.path.join(WORK, "run")
    shutil.rmtree(out, ignore_errors=True)
    p = run(os.path.join(BIN, "ft-train"), config, f"output={out}", *common)
    onnx_path = os.path.join(out, "backbone.onnx")
    if not check(os.path.exists(onnx_path), f"ft-train wrote no backbone.onnx: {p.stderr[-500:]}"):
        finish()
    check("backbone.onnx" in p.stderr, f"ft-train does not say it wrote backbone.onnx: "
                                       f"{p.stderr[-400:]}")
    mine, _ = export(out, out=os.path.join(WORK, "ft_export.onnx"))
    check(open(mine, "rb").read() == open(onnx_path, "rb").read(),
          "ft-train's backbone.onnx differs from ft-export's output of the same checkpoint")
    md = load_st(os.path.join(out, "backbone.safetensors"))[0]
    m = re.fullmatch(r"network r18, width (\d+), blocks \((\d+), (\d+), (\d+), (\d+)\), emb (\d+)",
                     md.get("architecture", ""))
    if not check(m is not None, f"architecture {md.get('architecture')}"):
        finish()
    v = [int(s) for s in m.groups()]
    check_structure("ft-train's backbone.onnx", onnx_path, out, v[5], tuple(v[1:5]))
    x7 = inputs(7, seed=9)
    compare("ft-train's backbone.onnx in onnxruntime vs ft-train eval, batch 7",
            ort_run(onnx_path, x7), ft_embed(out, x7, "train7"), COS_FP32, TOL_FP32)
    # bf16 storage: the checkpoint holds fp32 master weights, the export is the fp32 graph
    bf = os.path.join(WORK, "run_bf16")
    shutil.rmtree(bf, ignore_errors=True)
    run(os.path.join(BIN, "ft-train"), config, f"output={bf}", *common, "dtype='bf16'")
    bpath = os.path.join(bf, "backbone.onnx")
    if check(os.path.exists(bpath), "dtype=bf16: no backbone.onnx"):
        mb = check_structure("bf16 run's backbone.onnx", bpath, bf, v[5], tuple(v[1:5]))
        md = {p.key: p.value for p in mb.metadata_props}
        check(md.get("facetrain.train_dtype") == load_st(os.path.join(bf, "backbone.safetensors"))
              [0].get("dtype") == "bf16", f"bf16 run: metadata {md}")
        compare("bf16 run's backbone.onnx in onnxruntime vs ft-train fp32 eval of its master "
                "weights, batch 7", ort_run(bpath, x7), ft_embed(bf, x7, "bf7"), COS_FP32,
                TOL_FP32)
    off = os.path.join(WORK, "run_off")
    shutil.rmtree(off, ignore_errors=True)
    run(os.path.join(BIN, "ft-train"), config, f"output={off}", *common, "export_onnx=False")
    check(os.path.exists(os.path.join(off, "backbone.safetensors")) and
          not os.path.exists(os.path.join(off, "backbone.onnx")),
          "export_onnx=False: backbone.onnx written anyway")


# ---------------------------------------------------------------------------------- r50

def r50_mode():
    ck = os.path.join(WORK, "r50")
    mkckpt(ck, 50, seed=50)
    path, p = export(ck)
    print(p.stdout.strip())
    check_structure("r50", path, ck, 512, (3, 4, 14, 3))
    x7 = inputs(7, seed=50)
    y7 = ort_run(path, x7)
    compare("r50 onnxruntime vs ft-train eval, batch 7", y7, ft_embed(ck, x7, "r50_7"), COS_FP32,
            TOL_FP32)
    compare("r50 onnxruntime vs ft-train eval, batch 1", ort_run(path, x7[:1]),
            ft_embed(ck, x7[:1], "r50_1"), COS_FP32, TOL_FP32)
    # a signal during the export: exit 130 (or killed before the handler), nothing left
    import signal
    import time
    sig_out = os.path.join(WORK, "sig.onnx")
    for sig, delay in ((signal.SIGINT, 0.05), (signal.SIGTERM, 0.2)):
        q = subprocess.Popen([EXPORT, ck, "-o", sig_out], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        q.send_signal(sig)
        so, se = q.communicate()
        print(f"{sig.name} after {delay} s: exit {q.returncode}: {se.strip()}")
        check(q.returncode in (130, -sig), f"{sig.name}: exit {q.returncode}")
        check(q.returncode != 130 or "stopped by a signal; nothing written" in se,
              f"{sig.name}: message {se!r}")
        left = [f for f in os.listdir(WORK) if f.startswith("sig.onnx")]
        check(not left, f"{sig.name}: left {left}")
    fpath, p = export(ck, "--fold-bn", out=os.path.join(WORK, "r50_fold.onnx"))
    print(p.stdout.strip())
    check_structure("r50 --fold-bn", fpath, ck, 512, (3, 4, 14, 3), fold=True)
    compare("r50 --fold-bn vs unfolded, batch 7", ort_run(fpath, x7), y7, COS_FP32, TOL_FOLD)


os.makedirs(WORK, exist_ok=True)
{"onnx": onnx_mode, "bad": bad_mode, "train": train_mode, "r50": r50_mode}[MODE]()
finish()
