#!/usr/bin/python3
"""dtype_vs_f32.py: facetrain's fp16 / bf16 storage against its own fp32 path, model-level.

Runs test_train_torch twice with the same options, once with --dtype f32 and once with the
given storage dtype (--dtype f16|bf16, optional --loss-scale), and compares the two dumps
tensor by tensor: step-0 embeddings, the per-step losses, every first-step gradient (unscaled
for f16), the gradient norms, and the weights, running statistics and momentum after the
steps. What differs is the dtype's own rounding, so the bounds are the same relative-RMS table
(pyref.trainer.MP_TOL, per tensor group, with its per-element floor for gradients that a
following BN cancels) that bounds the C storage mode against the same-casts PyTorch reference:
about 1e-3 (fp16) / 1e-2 (bf16) for the forward and the step-0 loss, a few percent for
gradients. A case whose fp16 steps are all skipped is refused (nothing would be compared).

Usage: dtype_vs_f32.py TEST_BINARY WORKDIR --dtype f16|bf16 [options for TEST_BINARY]
Exit 0 pass, 1 fail, 77 when numpy/torch are missing outside CI.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from torch_ref import Checker  # noqa: E402  (imports pyref, which handles missing modules)
from pyref.safetensors import load_torch  # noqa: E402
from pyref.trainer import MP_TOL, config  # noqa: E402


def main():
    if len(sys.argv) < 5 or "--dtype" not in sys.argv:
        print(__doc__)
        return 2
    binary, work, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    i = args.index("--dtype")
    dtype = args[i + 1]
    if dtype not in MP_TOL:
        print("FAIL --dtype must be f16 or bf16")
        return 2
    base = args[:i] + args[i + 2:]
    if "--loss-scale" in base:
        j = base.index("--loss-scale")
        base = base[:j] + base[j + 2:]
    os.makedirs(work, exist_ok=True)
    paths = {}
    for name, extra in (("f32", ["--dtype", "f32"]), (dtype, args[i:i + 2] + (
            args[args.index("--loss-scale"):args.index("--loss-scale") + 2]
            if "--loss-scale" in args else []))):
        paths[name] = os.path.join(work, "dump_%s.safetensors" % name)
        subprocess.run([binary, "--out", paths[name]] + base + extra, check=True,
                       stdout=subprocess.DEVNULL)
    meta, d, order = load_torch(paths[dtype])
    _, r, _ = load_torch(paths["f32"])
    cfg = config(meta)
    steps, acc = cfg["steps"], cfg["acc"]
    if "skipped" in d and int(d["skipped"].sum()) == steps // acc:
        print("FAIL every optimizer step was skipped: lower --loss-scale")
        return 1
    ck = Checker(MP_TOL[dtype])
    print("%s storage against the fp32 path: relative RMS per tensor" % dtype)
    ck.cmp("step0 embeddings", d["step0.emb"], r["step0.emb"], 0, "embeddings")
    for s in range(steps):
        ck.cmp("step%d loss" % s, d["step%d.loss" % s], r["step%d.loss" % s], 0, "loss")
    grads = [k for k in order if k.startswith("step0.grad.")]
    gmax = max(r[k].abs().max().item() for k in grads)
    gfloor = MP_TOL[dtype]["grad floor"] * gmax
    for k in grads:
        ck.cmp("step0 grad " + k[11:], d[k], r[k], 0, "grads", gfloor)
    for s in range(steps):
        k = "step%d.gradnorm" % s
        if k in r and "skipped" in d and int(d["skipped"][s]):
            continue  # a skipped fp16 step has no meaningful norm
        if k in r:
            ck.cmp("step%d grad norm" % s, d[k], r[k], 0, "grads")
    for k in order:
        if not k.startswith("final."):
            continue
        if k.startswith("final.mom."):
            ck.cmp(k, d[k], r[k], 0, "momentum", gfloor)
        elif d[k].dtype.is_floating_point:
            ck.cmp(k, d[k], r[k], 0, "running stats" if "running" in k else "weights", 1e-2)
        else:
            ck.exact(k, d[k], r[k])
    for g, (e, what) in sorted(ck.worst.items()):
        print("max err %-18s %.3e  (%s)" % (g, e, what))
    print("PASS" if ck.fails == 0 else "FAIL: %d mismatches" % ck.fails)
    return 1 if ck.fails else 0


if __name__ == "__main__":
    sys.exit(main())
