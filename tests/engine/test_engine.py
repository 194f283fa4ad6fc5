"""Engine, ft-check and ft-embed tests (ctest runs: test_engine.py MODE BIN_DIR TOOL WORKDIR).

MODE
  onnx_r18     IResNet-18 at width 8: a checkpoint written by the trainer's checkpoint code
               (eng_tool make), exported with torch.onnx.export from the PyTorch reference
               (pyref.onnx_export, as torch2onnx.py does) and with ft-export (plain, --fold-bn,
               --fp16); the engine on each .onnx and on the checkpoint folder against
               onnxruntime, and against ft-train's eval forward (eng_tool ref), batch 1 and 7,
               on the cpu and cpu-strict backends
  onnx_r50     the same for IResNet-50 at width 64, emb 512 (slow)
  bad          unknown op, bad shapes, truncated files, bad checkpoints: refused, naming the
               file and the node or tensor
  check        ft-check passes a good model and fails each bad case with the helper's rule
  check_size   ft-check on a file over the track's 1024 MiB (slow: writes 1 GiB)
  embed        ft-embed's .npy loads in numpy and equals the engine's embeddings of the crops
  embed_landmarks  ft-embed --landmarks on ft-synth faces warped by known similarities into
               larger images: equal to the numpy/cv2 alignment (pyref.ijb.align) + the engine,
               and close to ft-embed on the original crops; bad landmark files refused
Tolerances: cosine >= 0.99999 per row and max abs error <= 1e-4 * max(1, max |reference|),
both printed (fp32 everywhere; the sums run in other orders than onnxruntime's)."""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pyref import need  # noqa: E402

np = need("numpy")
MODE, BIN, TOOL, WORK = sys.argv[1:5]
COS_MIN = 0.99999
REL_ABS = 1e-4
ERRORS = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg, flush=True)
    if not cond:
        ERRORS.append(msg)


def run(cmd, ok=True, env=None):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    if ok and r.returncode != 0:
        print(r.stdout, r.stderr)
        raise SystemExit("command failed: %s" % " ".join(map(str, cmd)))
    return r


def fresh(name):
    d = os.path.join(WORK, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def compare(what, got, ref):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        check(False, "%s: shape %s vs %s" % (what, got.shape, ref.shape))
        return
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    err = np.abs(got - ref).max()
    lim = REL_ABS * max(1.0, np.abs(ref).max())
    check(np.isfinite(got).all() and cos.min() >= COS_MIN and err <= lim,
          "%s: min cosine %.9f (>= %g), max abs err %.3g (<= %.3g, |ref| max %.3g)"
          % (what, cos.min(), COS_MIN, err, lim, np.abs(ref).max()))


def make_ckpt(d, depth, width, emb, seed):
    run([TOOL, "make", d, depth, width, emb, seed])


def export(ckpt, path, **kw):
    from pyref.onnx_export import export as ex
    ex(ckpt, path, **kw)
    return path


def inputs(n, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, (n, 3, 112, 112)).astype(np.float32)


def engine(model, x, batch, threads=2, device="cpu", graphs=0, said=None):
    d = os.path.join(WORK, "io")
    os.makedirs(d, exist_ok=True)
    xin, out = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
    np.save(xin, x.reshape(len(x), -1))
    r = run([TOOL, "run", model, xin, out, batch, threads, device, graphs])
    if said is not None:
        said.append(r.stdout)
    return np.load(out)


def mode_onnx(depth, width, emb):
    onnx = need("onnx")
    from pyref.onnx_export import ort_run
    d = fresh("onnx_r%d" % depth)
    ck = os.path.join(d, "ckpt")
    make_ckpt(ck, depth, width, emb, 11)
    path = export(ck, os.path.join(d, "model.onnx"))
    onnx.checker.check_model(onnx.load(path), full_check=True)
    ops = sorted({n.op_type for n in onnx.load(path).graph.node})
    print("torch.onnx.export ops:", ops)
    x = inputs(7)
    ref7 = ort_run(path, x)
    ref1 = ort_run(path, x[:1])
    compare("onnx batch 1 vs onnxruntime", engine(path, x[:1], 1), ref1)
    compare("onnx batch 7 vs onnxruntime", engine(path, x, 7), ref7)
    compare("onnx batch 7 in chunks of 3 vs onnxruntime", engine(path, x, 3), ref7)
    # cpu-strict: the CPU kernels behind memory the host cannot touch, so an engine that read
    # or wrote device memory directly would crash here (what the CUDA backend needs)
    compare("onnx batch 7 on cpu-strict vs onnxruntime", engine(path, x, 7, device="cpu-strict"),
            ref7)
    compare("checkpoint batch 1 on cpu-strict vs onnxruntime",
            engine(ck, x[:1], 1, device="cpu-strict"), ref1)
    compare("checkpoint batch 7 vs onnxruntime", engine(ck, x, 7), ref7)
    compare("checkpoint batch 1 vs onnxruntime", engine(ck, x[:1], 1), ref1)
    xin, out = os.path.join(d, "x.npy"), os.path.join(d, "ref.npy")
    np.save(xin, x.reshape(7, -1))
    run([TOOL, "ref", ck, xin, out])
    train_eval = np.load(out)
    compare("checkpoint batch 7 vs ft-train eval forward", engine(ck, x, 7), train_eval)
    compare("onnx batch 7 vs ft-train eval forward", engine(path, x, 7), train_eval)

    # our own export (ft-export): plain, BN folded, and the float16 deployment variant, which
    # the engine runs in fp32 (its weights rounded to fp16) while onnxruntime runs it in fp16
    for opt in ([], ["--fold-bn"]):
        ours = os.path.join(d, "ours%s.onnx" % "".join(o[1:] for o in opt))
        run([os.path.join(BIN, "ft-export"), ck, "-o", ours] + opt)
        onnx.checker.check_model(onnx.load(ours), full_check=True)
        label = "ft-export %s" % (" ".join(opt) or "(default)")
        compare(label + " batch 1 vs onnxruntime", engine(ours, x[:1], 1), ort_run(ours, x[:1]))
        compare(label + " batch 7 vs onnxruntime", engine(ours, x, 7), ort_run(ours, x))
        compare(label + " batch 7 vs ft-train eval forward", engine(ours, x, 7), train_eval)
    half = os.path.join(d, "ours_fp16.onnx")
    run([os.path.join(BIN, "ft-export"), ck, "-o", half, "--fp16"])
    got, ref = engine(half, x, 7).astype(np.float64), ort_run(half, x).astype(np.float64)
    cos = ((got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)).min()
    check(cos >= 0.9999, "ft-export --fp16 batch 7 (engine fp32 vs onnxruntime fp16): min cosine "
          "%.7f (>= 0.9999), max abs err %.3g (|ref| max %.3g)"
          % (cos, np.abs(got - ref).max(), np.abs(ref).max()))


# ---------------------------------------------------------------- bad files

def refused(what, model, *needles):
    x = inputs(1)
    d = os.path.join(WORK, "io")
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "x.npy"), x.reshape(1, -1))
    r = run([TOOL, "run", model, os.path.join(d, "x.npy"), os.path.join(d, "y.npy"), 1], ok=False)
    msg = r.stderr.strip()
    good = r.returncode != 0 and len(msg.splitlines()) == 1 and all(n in msg for n in needles)
    check(good, "%s refused: %s" % (what, msg or "(exit %d, no message)" % r.returncode))


def small_model(d):
    ck = os.path.join(d, "ckpt")
    if not os.path.exists(ck):
        make_ckpt(ck, 18, 8, 64, 3)
    return export(ck, os.path.join(d, "good.onnx")), ck


def mode_cuda(depth, width, emb):
    """The engine on the CUDA backend against onnxruntime (CPU) and the engine on the CPU: an
    exported file at batch 1 and 7, a checkpoint folder at 7. 77 where no GPU is visible."""
    from pyref.onnx_export import ort_run
    # first a small model on the device: without one, skip before the large model is made
    probe = fresh("cuda_probe")
    x = inputs(7, seed=3)
    xin, out = os.path.join(probe, "x.npy"), os.path.join(probe, "y.npy")
    np.save(xin, x[:1].reshape(1, -1))
    r = run([TOOL, "run", small_model(probe)[0], xin, out, 1, 2, "cuda"], ok=False)
    said = r.stdout + r.stderr
    if r.returncode == 77 or (r.returncode != 0 and "no CUDA backend" in said):
        print("engine on cuda: %s: skipped" % said.strip())
        sys.exit(77)
    check(r.returncode == 0, "a small model on cuda: exit %d: %s" % (r.returncode, said.strip()))
    d = fresh("cuda_r%d" % depth)
    ck = os.path.join(d, "ckpt")
    make_ckpt(ck, depth, width, emb, 13)
    path = export(ck, os.path.join(d, "model.onnx"))
    ref7 = ort_run(path, x)
    compare("onnx batch 1 on cuda vs onnxruntime", engine(path, x[:1], 1, device="cuda"),
            ort_run(path, x[:1]))
    compare("onnx batch 7 on cuda vs onnxruntime", engine(path, x, 7, device="cuda"), ref7)
    compare("onnx batch 7 in chunks of 3 on cuda vs the CPU engine",
            engine(path, x, 3, device="cuda"), engine(path, x, 7))
    compare("checkpoint batch 7 on cuda vs onnxruntime", engine(ck, x, 7, device="cuda"), ref7)
    # graphs: 21 rows in batches of 3 (the first direct, the second recorded, five replays)
    # and then a batch of 1 (direct), the same bytes as without graphs
    x22 = np.concatenate([x, x[::-1], x, x[:1]])
    said = []
    got = engine(path, x22, 3, device="cuda", graphs=1, said=said)
    want = engine(path, x22, 3, device="cuda")
    m = re.search(r"graph replays (\d+) recorded (\d+)", said[0])
    print("engine on cuda with graphs: " + (m.group(0) if m else said[0].strip()))
    check(m and int(m.group(1)) == 6 and int(m.group(2)) == 1,
          "graphs: 6 replays of 1 recording (%s)" % (m.group(0) if m else said[0].strip()))
    check(np.array_equal(got, want), "graphs: the replayed batches equal the direct ones bit for "
          "bit (max abs difference %.3g)" % float(np.max(np.abs(got - want))))


def mode_bad():
    onnx = need("onnx")
    from onnx import numpy_helper
    d = fresh("bad")
    good, ck = small_model(d)
    base = onnx.load(good)

    def save(m, name):
        p = os.path.join(d, name)
        onnx.save(m, p)
        return p

    m = onnx.load(good)
    k = 5
    node = m.graph.node[k]
    node.op_type = "Resize"
    refused("unknown op", save(m, "unknown.onnx"), "unknown.onnx", "node %d" % k,
            "'%s'" % node.name, "(Resize)", "unsupported op")

    m = onnx.load(good)
    conv = [n for n in m.graph.node if n.op_type == "Conv"][3]
    init = {t.name: t for t in m.graph.initializer}
    w = numpy_helper.to_array(init[conv.input[1]])
    bad = np.zeros((w.shape[0], w.shape[1] + 1) + w.shape[2:], np.float32)
    init[conv.input[1]].CopyFrom(numpy_helper.from_array(bad, conv.input[1]))
    refused("conv weight of the wrong input channels", save(m, "conv.onnx"), "conv.onnx",
            "'%s' (Conv)" % conv.name, "input channels")

    m = onnx.load(good)
    gemm = [n for n in m.graph.node if n.op_type == "Gemm"][0]
    init = {t.name: t for t in m.graph.initializer}
    w = numpy_helper.to_array(init[gemm.input[1]])
    init[gemm.input[1]].CopyFrom(numpy_helper.from_array(w[:, :-7].copy(), gemm.input[1]))
    refused("fc weight of the wrong size", save(m, "gemm.onnx"), "'%s' (Gemm)" % gemm.name,
            "weight takes")

    m = onnx.load(good)
    bn = [n for n in m.graph.node if n.op_type == "BatchNormalization"][1]
    init = {t.name: t for t in m.graph.initializer}
    v = numpy_helper.to_array(init[bn.input[1]])
    init[bn.input[1]].CopyFrom(numpy_helper.from_array(v[:-1].copy(), bn.input[1]))
    refused("batch norm scale of the wrong size", save(m, "bn.onnx"),
            "'%s' (BatchNormalization)" % bn.name, "scale has")

    m = onnx.load(good)
    t = m.graph.initializer[0]
    t.raw_data = t.raw_data[:-4]
    refused("initializer raw_data shorter than its dims", save(m, "raw.onnx"), "raw.onnx",
            "initializer '%s'" % t.name, "raw_data holds")

    m = onnx.load(good)
    t = m.graph.initializer[2]
    t.dims[0] = 1 << 40
    refused("initializer dims out of range", save(m, "dims.onnx"), "dims.onnx",
            "initializer '%s'" % t.name)

    m = onnx.load(good)
    m.graph.node[3].input[0] = "no_such_value"
    refused("a node reading an undefined value", save(m, "undef.onnx"), "node 3",
            "'no_such_value' is not defined")

    raw = open(good, "rb").read()
    for frac in (0.5, 0.999):
        p = os.path.join(d, "trunc%d.onnx" % int(frac * 1000))
        open(p, "wb").write(raw[:int(len(raw) * frac)])
        refused("file truncated at %.1f%%" % (frac * 100), p, os.path.basename(p))
    p = os.path.join(d, "empty.onnx")
    open(p, "wb").close()
    refused("empty file", p, "empty.onnx")

    two = fresh("bad_two")
    shutil.copy(good, os.path.join(two, "a.onnx"))
    shutil.copy(good, os.path.join(two, "b.onnx"))
    refused("folder with two .onnx", two, "bad_two", "several .onnx")
    refused("folder with no model", fresh("bad_none"), "bad_none", "no .onnx")

    # checkpoints: tensor missing, wrong shape, NaN, an architecture that disagrees
    from pyref.safetensors import load as st_load
    meta, tensors, order = st_load(os.path.join(ck, "backbone.safetensors"))

    def ckpt(name, edit, meta_edit=None):
        out = fresh(name)
        t = dict(tensors)
        edit(t)
        mm = dict(meta or {})
        if meta_edit:
            meta_edit(mm)
        write_safetensors(os.path.join(out, "backbone.safetensors"), t, mm)
        return out

    refused("checkpoint without a tensor",
            ckpt("ck_missing", lambda t: t.pop("layer1.1.bn2.running_var")),
            "backbone.safetensors", "'layer1.1.bn2.running_var' is missing")

    def wrong_shape(t):
        t["layer2.0.conv1.weight"] = t["layer2.0.conv1.weight"][:, :-1].copy()
    refused("checkpoint tensor of the wrong shape", ckpt("ck_shape", wrong_shape),
            "'layer2.0.conv1.weight'", "needs F32")

    def nan(t):
        t["fc.bias"] = t["fc.bias"].copy()
        t["fc.bias"][3] = np.nan
    refused("checkpoint holding a NaN", ckpt("ck_nan", nan), "'fc.bias'", "nan")

    def extra(t):
        t["head.weight"] = np.ones(4, np.float32)
    refused("checkpoint with a tensor of something else", ckpt("ck_extra", extra),
            "'head.weight' is not part of the IResNet")

    def arch(mm):
        mm["architecture"] = mm["architecture"].replace("width 8", "width 16")
    refused("checkpoint whose architecture metadata disagrees",
            ckpt("ck_arch", lambda t: None, arch), "metadata 'architecture'", "width 8")
    del base


def write_safetensors(path, tensors, meta):
    """a minimal writer for the bad-checkpoint cases (the format: 8-byte header length, JSON,
    raw little-endian data)"""
    import json
    names = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    header, blobs, off = {"__metadata__": meta}, [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        b = a.tobytes()
        header[k] = {"dtype": names[a.dtype], "shape": list(a.shape),
                     "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


# ---------------------------------------------------------------- ft-check

CHECK_ORDER = ["track", "model", "input rank", "input batch dim", "outputs", "nodes",
               "input size", "size", "input mean", "weights", "latency engine", "batch 32",
               "feature", "latency", "check stat:", "PASS"]


def ft_check(folder, *args, latency=True):
    """ft-check on folder; the latency is held against a limit no machine misses (a loaded
    or sanitized test machine says nothing of the model's speed) unless latency=False asks for
    the track's own limit"""
    env = dict(os.environ, FT_PYTHON=sys.executable)
    lim = ["--max-latency", "1000000"] if latency else []
    return run([os.path.join(BIN, "ft-check"), folder, "--threads", 2] + lim + list(args),
               ok=False, env=env)


def expect_fail(what, folder, rule, *args, needle=None):
    r = ft_check(folder, *args)
    lines = r.stdout.strip().splitlines()
    last = lines[-1] if lines else ""
    good = r.returncode == 1 and last == "FAIL: " + rule and (needle is None or needle in r.stdout)
    check(good, "ft-check %s -> %s (exit %d)" % (what, last, r.returncode))
    if not good:
        print(r.stdout, r.stderr)


def face_jpegs(n, size=112):
    """n face crops rendered by ft-synth (JPEG bytes), from its train.rec"""
    from pyref.recordio import arcface_samples
    d = fresh("synth")
    run([os.path.join(BIN, "ft-synth"), d, "--classes", 2, "--per-class", (n + 1) // 2,
         "--seed", 5, "--size", size, "--pairs", 10])
    return [img for _, _, img in arcface_samples(d)][:n]


def mode_check():
    onnx = need("onnx")
    from onnx import TensorProto, helper, numpy_helper
    d = fresh("check")
    good, ck = small_model(d)

    def folder(name, model=None, files=None):
        f = fresh("check_" + name)
        if model is not None:
            onnx.save(model, os.path.join(f, "model.onnx"))
        for k, v in (files or {}).items():
            open(os.path.join(f, k), "w").write(v)
        return f

    ok = folder("good", onnx.load(good))
    r = ft_check(ok)
    lines = r.stdout.strip().splitlines()
    pos, at = [], 0
    for k in CHECK_ORDER:  # each rule's line after the previous one's
        at = next((i for i in range(at, len(lines)) if lines[i].startswith(k)), -1)
        pos.append(at)
        if at < 0:
            break
        at += 1
    check(r.returncode == 0 and lines[-1] == "PASS" and -1 not in pos,
          "ft-check good model: PASS, rule lines in the helper's order (exit %d)" % r.returncode)
    check(any(ln.startswith("size ") and "MiB <= 1024 ok" in ln for ln in lines),
          "ft-check prints 'size X MiB <= 1024 ok'")
    if r.returncode != 0 or -1 in pos:
        print(r.stdout, r.stderr)

    jpg = os.path.join(d, "face.jpg")
    open(jpg, "wb").write(face_jpegs(1)[0])
    r = ft_check(ok, "--image", jpg, "--ort")
    check(r.returncode == 0 and "latency onnxruntime" in r.stdout and "(onnxruntime) <=" in
          r.stdout, "ft-check --image (an ft-synth face) --ort: PASS with both latencies")
    if r.returncode != 0:
        print(r.stdout, r.stderr)

    # the lexicographically last .onnx is the one checked
    two = folder("last", onnx.load(good))
    tiny = onnx.load(good)
    tiny.graph.output.append(helper.make_tensor_value_info(tiny.graph.node[3].output[0],
                                                           TensorProto.FLOAT, None))
    onnx.save(tiny, os.path.join(two, "zz.onnx"))
    expect_fail("uses the last .onnx (zz.onnx, two outputs)", two, "outputs")

    m = onnx.load(good)
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32:
            t.CopyFrom(numpy_helper.from_array(a.astype(np.float16), t.name))
    # the graph reads them through Casts, as fp16 converters emit
    casts, ren = [], {}
    for t in m.graph.initializer:
        ren[t.name] = t.name + "_f32"
        casts.append(helper.make_node("Cast", [t.name], [t.name + "_f32"], to=TensorProto.FLOAT,
                                      name="Cast_" + t.name))
    for n in m.graph.node:
        for i, nm in enumerate(n.input):
            if nm in ren:
                n.input[i] = ren[nm]
    nodes = casts + list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    expect_fail("fp16 initializers", folder("fp16", m), "invalid weight type", needle="float16")

    # ft-export's own files: the default passes, the float16 variant is flagged
    ours = folder("ours")
    run([os.path.join(BIN, "ft-export"), ck, "-o", os.path.join(ours, "backbone.onnx")])
    r = ft_check(ours)
    check(r.returncode == 0 and r.stdout.strip().endswith("PASS"), "ft-check ft-export's file: PASS")
    half = folder("ours_fp16")
    run([os.path.join(BIN, "ft-export"), ck, "-o", os.path.join(half, "backbone.onnx"), "--fp16"])
    expect_fail("ft-export --fp16", half, "invalid weight type", needle="float16")

    m = onnx.load(good)
    dim = m.graph.input[0].type.tensor_type.shape.dim[0]
    dim.dim_value = 1
    r = ft_check(folder("fixed", m))
    check(r.returncode == 0 and "rewritten to dim_param 'None'" in r.stdout,
          "ft-check fixed batch 1 + Flatten: rewritten to symbolic, PASS")
    fl = [n for n in m.graph.node if n.op_type == "Flatten"][0]
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "fixed_shape")
    m.graph.initializer.append(shape)
    fl.op_type = "Reshape"
    del fl.attribute[:]
    fl.input.append("fixed_shape")
    expect_fail("fixed batch 1 hard-coded by a Reshape", folder("fixed_reshape", m), "batch run",
                needle="fixed batch of 1")

    m = onnx.load(good)
    m.graph.output.append(helper.make_tensor_value_info(m.graph.node[2].output[0],
                                                        TensorProto.FLOAT, None))
    expect_fail("two outputs", folder("outputs", m), "outputs")

    w = numpy_helper.from_array(np.random.RandomState(1).normal(0, .1, (4, 3, 3, 3))
                                .astype(np.float32), "w")
    fcw = numpy_helper.from_array(np.random.RandomState(2).normal(0, .01, (8, 4 * 56 * 56))
                                  .astype(np.float32), "fcw")
    g = helper.make_graph(
        [helper.make_node("Conv", ["data", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                          strides=[2, 2], name="conv"),
         helper.make_node("Flatten", ["c"], ["f"], axis=1, name="flat"),
         helper.make_node("Gemm", ["f", "fcw"], ["out"], transB=1, name="fc")],
        "tiny", [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["None", 8])], [w, fcw])
    small = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
    onnx.checker.check_model(small)
    expect_fail("a graph of 3 nodes", folder("small", small), "too small onnx graph")

    expect_fail("crop.txt of 5 lines", folder("crop5", onnx.load(good),
                {"crop.txt": "0\n0\n112\n112\n112\n"}), "crop.txt")
    expect_fail("crop.txt not integers", folder("cropx", onnx.load(good),
                {"crop.txt": "0\n0\n112\n112\n112\n1x2\n"}), "crop.txt")
    expect_fail("crop.txt for 96x112 input", folder("crop96", onnx.load(good),
                {"crop.txt": "0\n0\n96\n112\n96\n112\n"}), "input size")
    r = ft_check(folder("cropok", onnx.load(good), {"crop.txt": "4\n4\n100\n100\n112\n112\n"}))
    check(r.returncode == 0 and "(crop.txt)" in r.stdout, "ft-check good crop.txt: PASS")
    expect_fail("pixel_norm.txt of 1 line", folder("norm1", onnx.load(good),
                {"pixel_norm.txt": "127.5\n"}), "pixel_norm.txt")
    r = ft_check(folder("normok", onnx.load(good), {"pixel_norm.txt": "127.5\n128\n"}))
    check(r.returncode == 0 and "input mean 127.5 std 128 (pixel_norm.txt)" in r.stdout,
          "ft-check good pixel_norm.txt: PASS with its mean/std")
    r = ft_check(folder("crop_ms1m", onnx.load(good), {"crop.txt": "bad\n"}), "--track", "ms1m")
    check(r.returncode == 0, "ft-check --track ms1m ignores crop.txt (cfat only)")
    # the latency rule: a limit no model meets fails it, and says which limit it was
    r = ft_check(ok, "--max-latency", "0.001", latency=False)
    check(r.returncode == 1 and r.stdout.strip().endswith("FAIL: latency") and
          "<= 0 (--max-latency) FAIL" in r.stdout, "ft-check --max-latency 0.001 -> FAIL: latency")
    r = ft_check(ok, "--max-latency", "-3", latency=False)
    check(r.returncode == 2 and "--max-latency" in r.stderr, "a bad --max-latency is a usage error")
    r = ft_check(ok, "--graphs")
    check(r.returncode == 0 and "cpu, no graphs on this backend)" in r.stdout,
          "ft-check --graphs on the CPU: PASS, the latency line says there are no graphs")
    expect_fail("a folder with no .onnx", folder("none"), "no onnx")
    expect_fail("an unknown track", ok, "track", "--track", "webface")

    m = onnx.load(good)
    gemm = [n for n in m.graph.node if n.op_type == "Gemm"][0]
    init = {t.name: t for t in m.graph.initializer}
    b = numpy_helper.to_array(init[gemm.input[2]]).copy()
    b[0] = np.nan
    init[gemm.input[2]].CopyFrom(numpy_helper.from_array(b, gemm.input[2]))
    expect_fail("a model that outputs NaN", folder("nan", m), "batch result output contains NaN")

    m = onnx.load(good)
    m.graph.node[4].op_type = "Resize"
    expect_fail("an op the engine does not run", folder("unknown", m), "load onnx failed",
                needle="unsupported op")


def mode_check_size():
    onnx = need("onnx")
    from onnx import numpy_helper
    d = fresh("check_size")
    good, _ = small_model(d)
    m = onnx.load(good)
    # an unused initializer of 1025 MiB of zeros makes the file too large for every track
    m.graph.initializer.append(numpy_helper.from_array(
        np.zeros(1025 * 1024 * 256, np.float32), "padding"))
    f = fresh("check_size_model")
    onnx.save(m, os.path.join(f, "model.onnx"))
    del m
    expect_fail("a 1025 MiB file", f, "size", needle="MiB <= 1024 FAIL")
    shutil.rmtree(f)


# ---------------------------------------------------------------- ft-embed

def mode_embed():
    cv2 = need("cv2")
    d = fresh("embed")
    good, ck = small_model(d)
    faces = os.path.join(d, "faces")
    os.makedirs(faces)
    jpegs = face_jpegs(5)
    paths = []
    for i, b in enumerate(jpegs):
        p = os.path.join(faces, "f%02d.jpg" % (4 - i))
        open(p, "wb").write(b)
        paths.append(p)
    paths.sort()
    emb = os.path.join(BIN, "ft-embed")
    out = os.path.join(d, "feats.npy")
    r = run([emb, good, "-o", out, "--batch", 2] + paths)
    feats = np.load(out)
    check(feats.dtype == np.float32 and feats.shape == (5, 64), "ft-embed .npy is float32 [5, 64]")
    check(np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-6), "rows are L2-normalized")
    x = np.stack([(cv2.imread(p)[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) - 127.5)
                  / 127.5 for p in paths])
    e = engine(good, x, 5)
    ref = e / np.linalg.norm(e, axis=1, keepdims=True)
    compare("ft-embed vs engine embeddings of the same crops", feats, ref)
    xf = x[:, :, :, ::-1].copy()
    ef = e + engine(good, xf, 5)
    ref_flip = ef / np.linalg.norm(ef, axis=1, keepdims=True)
    run([emb, good, "--folder", faces, "--flip", "-o", out])
    compare("ft-embed --flip --folder vs engine flip fusion", np.load(out), ref_flip)
    lst = os.path.join(d, "list.txt")
    open(lst, "w").write("\n".join(paths[::-1]) + "\n")
    run([emb, ck, "--list", lst, "-o", out])
    compare("ft-embed --list on the checkpoint folder (reversed order)", np.load(out), ref[::-1])
    check(r.stdout.startswith("ft-embed: 5 images"), "ft-embed summary line")

    # bad inputs: one line naming the file, exit non-zero, no output written
    os.remove(out)
    big = os.path.join(d, "big.jpg")
    cv2.imwrite(big, np.zeros((120, 100, 3), np.uint8))
    txt = os.path.join(d, "notjpeg.jpg")
    open(txt, "w").write("hello")
    for what, p, needle in (("a 100x120 image", big, "100x120"),
                            ("a file that is not JPEG", txt, "not a JPEG"),
                            ("a missing file", os.path.join(d, "nope.jpg"), "nope.jpg")):
        r = run([emb, good, "-o", out, paths[0], p], ok=False)
        check(r.returncode != 0 and needle in r.stderr and p in r.stderr
              and not os.path.exists(out),
              "ft-embed refuses %s: %s" % (what, r.stderr.strip()))


def mode_embed_landmarks():
    """Each ft-synth crop is warped into a larger image by a known similarity S (the canvas,
    saved as JPEG quality 100); its landmarks are S applied to the template, written with 4
    decimals. ft-embed --landmarks must give
    (1) on colour canvases, the embeddings of the reference pipeline on the same JPEG: cv2
        decode, BGR -> RGB, pyref.ijb.align (numpy Umeyama through the SVD +
        cv2.warpAffine) and the engine, at the usual COS_MIN (plain and --flip);
    (2) on grey canvases (a grey JPEG has no chroma subsampling, so coding it again at
        quality 100 moves pixels by a grey level or so), the embeddings ft-embed gives for the
        original grey crops: at EXACT_COS_MIN where S needs no resampling (integer shift,
        quarter turn), at RESAMPLED_COS_MIN where the canvas was resampled (bilinear twice:
        the recovered crop is blurred; the pixel errors are printed)."""
    cv2 = need("cv2")
    from pyref.ijb import TEMPLATE, align
    exact_cos_min, resampled_cos_min = 0.9999, 0.97
    d = fresh("embed_lm")
    good, ck = small_model(d)
    emb = os.path.join(BIN, "ft-embed")
    out = os.path.join(d, "feats.npy")
    # (scale, angle in radians): a shift only, a quarter turn, up- and downscaled, turned
    sims = [(1.0, 0.0), (1.0, np.pi / 2), (1.6, 0.35), (0.85, -0.5), (2.3, 3.0)]
    n_exact = 2
    sq = np.array([[0, 0, 1], [112, 0, 1], [0, 112, 1], [112, 112, 1]], float)
    crops, lines, glines, ref_crops, pix = [], [], [], [], []
    for i, b in enumerate(face_jpegs(len(sims))):
        face = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
        grey = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
        crop = os.path.join(d, "grey_crop%d.jpg" % i)
        cv2.imwrite(crop, grey, [cv2.IMWRITE_JPEG_QUALITY, 100])
        crops.append(crop)
        grey = cv2.imread(crop, cv2.IMREAD_GRAYSCALE)
        sc, an = sims[i]
        c, s_ = np.round(sc * np.cos(an), 12), np.round(sc * np.sin(an), 12)
        m = np.array([[c, -s_, 0], [s_, c, 0]])
        m[:, 2] = 17 + 13 * i - (sq @ m.T).min(axis=0)  # a margin, different per image
        size = tuple(int(v) for v in np.ceil((sq @ m.T).max(axis=0) + 23 + 5 * i))
        lmk = np.c_[TEMPLATE.astype(np.float64), np.ones(5)] @ m.T
        txt = " ".join("%.4f" % v for v in lmk.ravel())
        lmk32 = np.array([float(v) for v in txt.split()], np.float32).reshape(5, 2)
        path = os.path.join(d, "big%d.jpg" % i)
        cv2.imwrite(path, cv2.warpAffine(face, m, size, borderValue=0.0),
                    [cv2.IMWRITE_JPEG_QUALITY, 100])
        lines.append("%s %s" % (path, txt.replace(" ", "\t", 1) if i == 3 else txt))
        ref_crops.append(align(np.ascontiguousarray(cv2.imread(path)[:, :, ::-1]), lmk32)[0])
        gpath = os.path.join(d, "grey_big%d.jpg" % i)
        cv2.imwrite(gpath, cv2.warpAffine(grey, m, size, borderValue=0.0),
                    [cv2.IMWRITE_JPEG_QUALITY, 100])
        glines.append("%s %s" % (gpath, txt))
        rec = align(cv2.imread(gpath, cv2.IMREAD_GRAYSCALE), lmk32)[0]
        pix.append(np.abs(rec[4:-4, 4:-4].astype(int) - grey[4:-4, 4:-4].astype(int)))
    for what, p in (("exact", pix[:n_exact]), ("resampled", pix[n_exact:])):
        p = np.concatenate([q.ravel() for q in p])
        print("grey crops recovered by pyref.ijb.align vs the originals (%s transforms, 4-pixel "
              "border left out): mean |err| %.3f, 99th percentile %d, max %d grey levels" %
              (what, p.mean(), np.percentile(p, 99), p.max()))
    lm = os.path.join(d, "lm.txt")
    open(lm, "w").write(lines[0] + "\n\n" + "\n".join(lines[1:]) + "\r\n")  # blank, CRLF
    r = run([emb, good, "--landmarks", lm, "-o", out, "--batch", 2])
    check(r.stdout.startswith("ft-embed: %d images" % len(sims)) and "landmarks" in r.stdout,
          "ft-embed --landmarks summary line: " + r.stdout.strip())
    feats = np.load(out)
    check(feats.dtype == np.float32 and feats.shape == (len(sims), 64),
          "ft-embed --landmarks .npy is float32 [%d, 64]" % len(sims))
    x = np.stack([(c.transpose(2, 0, 1).astype(np.float32) - 127.5) / 127.5 for c in ref_crops])
    e = engine(good, x, len(sims))
    compare("ft-embed --landmarks vs pyref.ijb.align + engine", feats,
            e / np.linalg.norm(e, axis=1, keepdims=True))
    ef = e + engine(good, x[:, :, :, ::-1].copy(), len(sims))
    run([emb, ck, "--landmarks", lm, "-o", out, "--flip"])
    compare("ft-embed --landmarks --flip (checkpoint folder) vs pyref.ijb.align + engine",
            np.load(out), ef / np.linalg.norm(ef, axis=1, keepdims=True))
    orig = os.path.join(d, "orig.npy")
    run([emb, good, "-o", orig] + crops)
    open(lm, "w").write("\n".join(glines) + "\n")
    run([emb, good, "--landmarks", lm, "-o", out])
    cos = (np.load(out).astype(np.float64) * np.load(orig)).sum(1)
    for what, cs, lim in (("exact", cos[:n_exact], exact_cos_min),
                          ("resampled", cos[n_exact:], resampled_cos_min)):
        check(cs.min() >= lim, "ft-embed --landmarks on grey canvases vs ft-embed on the "
              "original grey crops, %s transforms: min cosine %.7f (>= %g), per image %s"
              % (what, cs.min(), lim, " ".join("%.7f" % c for c in cs)))

    # bad landmark files: one line naming the file and line, exit non-zero, nothing written
    os.remove(out)
    txt = os.path.join(d, "notjpeg.jpg")
    open(txt, "w").write("hello")
    g = lines[0].split()
    bad = [("a short line", " ".join(g[:8]), "8 fields, expected 11"),
           ("a line with a detector score (12 fields)", lines[0] + " 0.99", "12 fields"),
           ("a coordinate that is not a number", " ".join(g[:6] + ["1.5e"] + g[7:]),
            "field 7 '1.5e' (nose tip y) is not a number"),
           ("a NaN coordinate", " ".join(g[:2] + ["nan"] + g[3:]), "'nan' (left eye y)"),
           ("landmarks at one point", g[0] + " 5 5" * 5, "landmarks coincide"),
           ("a missing image", " ".join([os.path.join(d, "nope.jpg")] + g[1:]), "nope.jpg"),
           ("an image that is not JPEG", " ".join([txt] + g[1:]), "not a JPEG"),
           ("a line longer than PATH_MAX + 512", " ".join(["x" * 5000] + g[1:]), "too long")]
    for what, line, needle in bad:
        open(lm, "w").write(lines[0] + "\n\n" + line + "\n" + lines[1] + "\n")
        r = run([emb, good, "--landmarks", lm, "-o", out], ok=False)
        err = r.stderr.strip()
        check(r.returncode == 1 and len(err.splitlines()) == 1 and err.startswith(
            "ft-embed: %s:3: " % lm) and needle in err and not os.path.exists(out),
            "ft-embed --landmarks refuses %s: %s" % (what, err))
    open(lm, "w").write("\n \n")
    for what, args, needle, code in (
            ("an empty landmarks file", ["--landmarks", lm], lm + ": lists no image", 1),
            ("a missing landmarks file", ["--landmarks", lm + ".nope"], "No such file", 1),
            ("--landmarks with an IMAGE", ["--landmarks", lm, crops[0]], "lists the images", 2),
            ("--landmarks with --folder", ["--landmarks", lm, "--folder", d], "--folder", 2)):
        r = run([emb, good, "-o", out] + args, ok=False)
        err = r.stderr.strip()
        check(r.returncode == code and len(err.splitlines()) == 1 and needle in err
              and not os.path.exists(out), "ft-embed refuses %s: %s" % (what, err))


if __name__ == "__main__":
    modes = {"onnx_r18": lambda: mode_onnx(18, 8, 64), "onnx_r50": lambda: mode_onnx(50, 64, 512),
             "bad": mode_bad, "check": mode_check, "check_size": mode_check_size,
             "embed": mode_embed, "embed_landmarks": mode_embed_landmarks,
             # on the CUDA emulator (FT_CUDA_EMU=1, minutes under ASan for an r50) an r18
             # of width 16: the same layer kinds, the same kernels
             "cuda": lambda: (mode_cuda(18, 8, 64) if os.environ.get("FT_CUDA_EMU") == "1"
                              else mode_cuda(50, 64, 512))}
    if MODE not in modes:
        raise SystemExit("unknown mode %s" % MODE)
    os.makedirs(WORK, exist_ok=True)
    modes[MODE]()
    if ERRORS:
        print("%d check(s) failed" % len(ERRORS))
        sys.exit(1)
    print("all checks passed")
