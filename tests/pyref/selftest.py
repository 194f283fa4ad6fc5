#!/usr/bin/python3
"""The oracle package's own checks (ctest pyref_selftest), and the calibration of the
tolerances that train_core/torch_ref.py uses for facetrain's fp16/bf16 storage modes.

  selftest.py              RoundBoth / RoundFwd values and gradients; the f16 and bf16 models
                           with rounding disabled equal the fp32 model bit for bit (forward,
                           loss, every gradient, 3 SGD steps with loss scaling); the loss
                           scaler skips, halves and grows like GradScaler; a whole f16 replay
                           with the default scale skips its steps and leaves the state as it
                           was; torch_ref.py passes a stand-in f16/bf16 dump laid out as the
                           C must write it and fails it with a wrong gradient, a wrong skipped
                           flag or no per-step scale; the mixed-precision tolerances
                           (pyref.trainer.MP_TOL) are at least twice the reference's own
                           accumulation noise (fp32 vs fp64), and the f16 one of the
                           embeddings rejects the bf16 reference
  selftest.py calibrate [DUMP ...]
                           print the figures behind MP_TOL: per tensor group, the relative RMS
                           error of the f16/bf16 reference computed in fp32 against the same
                           reference computed in fp64, and against the fp32 model; on the
                           built-in cases, or on test_train_torch dumps (their initial state
                           and inputs)
Exit 0 pass, 1 fail, 77 skip (no torch, outside CI).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402

torch = pyref.need("torch")
from pyref import amp  # noqa: E402
from pyref.iresnet import Net  # noqa: E402
from pyref.trainer import MP_TOL, group_of, rel_rms, replay  # noqa: E402

torch.set_num_threads(2)
fails = pyref.FAILS  # pyref.check records here
check = pyref.check


# ---------------------------------------------------------------------------------- roundings

def t_roundings():
    f16, bf16 = torch.float16, torch.bfloat16
    # round to nearest, ties to even; fp16 overflows to inf, bf16 keeps fp32's range
    x = torch.tensor([1 + 2 ** -11, 1 + 3 * 2 ** -11, 70000.0, -1e-9, 1 + 2 ** -8,
                      1 + 3 * 2 ** -8, 1e30])
    h = amp.round_to(x, f16)
    b = amp.round_to(x, bf16)
    check(h[:2].tolist() == [1.0, 1 + 2 ** -9] and h[2] == float("inf") and h[3] == 0,
          "fp16 rounding %s" % h.tolist())
    check(b[4:6].tolist() == [1.0, 1 + 2 ** -6] and torch.isfinite(b[6]),
          "bf16 rounding %s" % b.tolist())
    check(amp.round_to(x, None) is x and amp.round_to(x.double(), f16).dtype == torch.float64,
          "round_to keeps the dtype")
    g = torch.tensor([1 + 2 ** -12, 3.0, 1e5, 1.0 / 3, -2.5, 7e-8, 1e-3])
    for d in (f16, bf16):
        xa = x.clone().requires_grad_()
        y = amp.RoundBoth.apply(xa, d)
        check(torch.equal(y, amp.round_to(x, d)), "RoundBoth forward (%s)" % d)
        y.backward(g)
        check(torch.equal(xa.grad, amp.round_to(g, d)), "RoundBoth backward rounds (%s)" % d)
        xb = x.clone().requires_grad_()
        y = amp.RoundFwd.apply(xb, d)
        check(torch.equal(y, amp.round_to(x, d)), "RoundFwd forward (%s)" % d)
        y.backward(g)
        check(torch.equal(xb.grad, g), "RoundFwd backward is the identity (%s)" % d)
    # the gradient of a tensor read by two rounded branches: each branch rounded, then summed
    xc = torch.tensor([1.0], requires_grad=True)
    r = amp.Rounding(f16)
    ((r.both(xc) * (1 + 2 ** -12)) + (r.both(xc) * (1 + 2 ** -12))).backward()
    check(xc.grad.item() == 2.0, "two branches rounded separately: %r" % xc.grad.item())
    off = amp.Rounding(f16, enabled=False)
    check(off.both(x) is x and off.fwd(x) is x, "disabled rounding is the identity")


# ---------------------------------------------------------------------------------- scaler

def t_scaler():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    sc = amp.LossScaler(8.0, growth_interval=3)

    def one(grad):
        opt.zero_grad()
        sc.scale(torch.tensor(1.0))  # the value is not used; the gradient stands for it
        w.grad = grad.clone() * sc.scale_value
        found = sc.unscale_([w])
        unscaled = w.grad.clone()
        before = (w.detach().clone(), opt.state.get(w, {}).get("momentum_buffer"))
        skipped = sc.step(opt)
        sc.update()
        return found, skipped, unscaled, before

    found, skipped, g, _ = one(torch.tensor([0.5, 0.25]))
    check(not found and not skipped and torch.equal(g, torch.tensor([0.5, 0.25])),
          "finite step: unscaled gradient %s" % g.tolist())
    check(sc.scale_value == 8.0 and sc.growth_tracker == 1, "finite step keeps the scale")
    mom = opt.state[w]["momentum_buffer"].clone()
    found, skipped, _, (w0, m0) = one(torch.tensor([float("inf"), 1.0]))
    check(found and skipped, "an inf gradient skips the step")
    check(torch.equal(w.detach(), w0) and torch.equal(opt.state[w]["momentum_buffer"], mom),
          "a skipped step leaves weights and momentum unchanged")
    check(sc.scale_value == 4.0 and sc.growth_tracker == 0, "inf halves the scale: %g"
          % sc.scale_value)
    found, skipped, _, _ = one(torch.tensor([float("nan"), 1.0]))
    check(skipped and sc.scale_value == 2.0, "NaN skips and halves too")
    for i in range(3):
        one(torch.tensor([0.1, 0.1]))
        want = 2.0 if i < 2 else 4.0
        check(sc.scale_value == want, "after %d finite steps the scale is %g, want %g"
              % (i + 1, sc.scale_value, want))
    check(sc.growth_tracker == 0, "growth resets the tracker")
    d = amp.LossScaler(65536.0, growth_interval=100)
    for _ in range(100):
        d.found_inf, d._unscaled = False, True
        d.update()
    check(d.scale_value == 131072.0, "growth_interval 100: x2 after 100 finite steps")
    off = amp.LossScaler(65536.0, enabled=False)
    w.grad = torch.tensor([float("inf"), 0.0])
    check(off.scale_value == 1.0 and not off.unscale_([w]), "disabled scaler: scale 1, no check")


# ---------------------------------------------------------------------------------- models

def synthetic(width=4, blocks=(1, 1, 1, 1), emb=16, batch=6, classes=30, steps=3, rate=1.0,
              margin="arcface", threshold=0.0, acc=1, update="dense", seed=0, loss_scale=None,
              dtype="f32"):
    """A dump-like (meta, tensors) with torch's initialization and random BN state."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = Net(width, list(blocks), emb)
    with torch.no_grad():
        for k, v in net.state_dict().items():
            if k.endswith((".weight", ".bias")) and ("bn" in k or "features" in k or
                                                      "downsample.1" in k):
                v.add_(0.1 * torch.randn(v.shape, generator=g))
            elif k.endswith("running_var"):
                v.uniform_(0.5, 1.5, generator=g)
            elif k.endswith("running_mean"):
                v.normal_(0, 0.1, generator=g)
    d = {"init." + k: v.clone() for k, v in net.state_dict().items()}
    d["init.pfc.weight"] = 0.01 * torch.randn(classes, emb, generator=g)
    num_sample = int(rate * classes)
    for s in range(steps):
        d["step%d.x" % s] = 2 * torch.rand(batch, 3, 112, 112, generator=g) - 1
        lab = torch.randint(0, classes, (batch,), generator=g, dtype=torch.int32)
        d["step%d.labels" % s] = lab
        if rate < 1:
            pos = torch.unique(lab.long())
            rest = torch.tensor([c for c in torch.randperm(classes, generator=g).tolist()
                                 if c not in set(pos.tolist())])
            n = max(num_sample, len(pos))
            d["step%d.index" % s] = torch.sort(torch.cat([pos, rest[:n - len(pos)]]))[0].int()
    meta = {"width": str(width), "blocks": ",".join(map(str, blocks)), "emb": str(emb),
            "batch": str(batch), "classes": str(classes), "rate": str(rate), "margin": margin,
            "threshold": str(threshold), "steps": str(steps), "acc": str(acc), "lr": "0.1",
            "wd": "0.0005", "s": "64", "num_sample": str(num_sample), "update": update,
            "dtype": dtype}
    if loss_scale is not None:
        meta["loss_scale"] = str(loss_scale)
    return meta, d


CASES = {  # the shapes of the trainer-core cases (train_core/CMakeLists.txt), smaller images
    "arcface": dict(width=8, blocks=(2, 1, 1, 1), emb=32, batch=6, classes=40),
    "cosface_sampled": dict(width=8, emb=32, batch=6, classes=60, rate=0.5, margin="cosface"),
    "sampled_update_filter": dict(width=8, emb=16, batch=4, classes=50, rate=0.3,
                                  threshold=0.02, update="sampled"),
    "gradacc": dict(width=4, emb=16, batch=4, classes=30, steps=4, acc=2),
}


def t_disabled_equals_fp32():
    for name in ("arcface", "sampled_update_filter", "gradacc"):
        meta, d = synthetic(**CASES[name], seed=3)
        want, _ = replay(meta, d)
        for dt in ("f16", "bf16"):
            got, _ = replay(meta, d, dt, rounding=False)
            bad = [k for k in want if not torch.equal(got[k], want[k])]
            check(not bad, "%s %s without rounding differs from fp32 in %s" % (name, dt, bad[:5]))
            if dt == "f16":
                check(got["skipped"].tolist() == [0] * int(meta["steps"]),
                      "%s: no step skipped without rounding" % name)
    print("f16/bf16 models without rounding == the fp32 model, bit for bit")


def t_f16_default_scale_skips():
    """B = 6 and s = 64 at scale 65536: the logits' gradient 64 * 65536 / 6 overflows fp16, so
    every step is skipped (the scale halves each time) and the state stays as it was."""
    meta, d = synthetic(**CASES["arcface"], seed=5, dtype="f16")
    ref, info = replay(meta, d, "f16")
    check(ref["skipped"].tolist() == [1, 1, 1], "skipped %s" % ref["skipped"].tolist())
    check(ref["scale"].tolist() == [65536.0, 32768.0, 16384.0], "scale %s" % ref["scale"])
    for k in info["names"]:
        if "running" in k or "num_batches" in k:
            continue  # the forward passes still update the BN statistics
        check(torch.equal(ref["final." + k], d["init." + k]), "skipped steps changed " + k)
    check(torch.equal(ref["final.pfc.weight"], d["init.pfc.weight"]), "skipped steps moved pfc")
    check(all(not bool(v.any()) for k, v in ref.items() if k.startswith("final.mom.")),
          "momentum after skipped steps is not zero")
    meta["loss_scale"] = "1024"
    ref, _ = replay(meta, d, "f16")
    check(ref["skipped"].tolist() == [0, 0, 0] and ref["scale"].tolist() == [1024.0] * 3,
          "scale 1024: no skip (%s)" % ref["skipped"].tolist())
    print("f16 at scale 65536 with batch 6: all steps skipped, scale halves; at 1024 none")


# ---------------------------------------------------------------------------------- calibration

def errors(a, b, floors):
    """{group: worst relative RMS error} of a against b over the keys they share."""
    worst = {}
    for k in a:
        if k in ("scale", "skipped") or k not in b or a[k].dtype == torch.int64:
            continue
        e = rel_rms(a[k], b[k], floors.get(k, 0.0))
        g = group_of(k, b[k])
        if e > worst.get(g, (-1, ""))[0]:
            worst[g] = (e, k)
    return worst


def floors_of(ref, grad_floor):
    """the per-element floors torch_ref.py uses: gradients and momentum grad_floor (MP_TOL's
    "grad floor") of the largest backbone gradient; final weights and running statistics 1e-2"""
    gmax = max(v.abs().max().item() for k, v in ref.items()
               if k.startswith("step0.grad.") and k != "step0.grad.pfc.weight")
    fl = {}
    for k in ref:
        if k.startswith("step0.grad.") and k != "step0.grad.pfc.weight":
            fl[k] = grad_floor * gmax
        elif k.startswith("final.mom.") and k != "final.mom.weight.momentum_buffer":
            fl[k] = grad_floor * gmax
        elif k.startswith("final.") and k != "final.pfc.weight":
            fl[k] = 1e-2
    return fl


def calibrate(cases, verbose=True):
    """{dtype: {group: [noise, distance to fp32, distance to the other storage dtype, where
    the noise is worst]}}, worst noise and smallest distances over the cases. noise: the
    reference computed in fp32 against the same reference computed in fp64."""
    out = {}
    for label, (meta, d) in cases:
        f32, _ = replay(meta, d)
        runs = {}
        for dt in ("f16", "bf16"):
            m = dict(meta, dtype=dt)
            if dt == "f16" and "loss_scale" not in meta:
                m["loss_scale"] = "1024"
            a, _ = replay(m, d, dt)
            b, _ = replay(m, d, dt, compute=torch.float64)
            if dt == "f16" and not torch.equal(a["skipped"], b["skipped"]):
                check(False, "%s f16: skipped steps differ between fp32 and fp64" % label)
            runs[dt] = a, b
        for dt, other in (("f16", "bf16"), ("bf16", "f16")):
            fl = floors_of(f32, MP_TOL[dt]["grad floor"])
            a, b = runs[dt]
            noise, dist, alt = errors(a, b, fl), errors(a, f32, fl), errors(runs[other][0], a, fl)
            for g in noise:
                o = out.setdefault(dt, {}).setdefault(g, [0.0, float("inf"), float("inf"), ""])
                if noise[g][0] > o[0]:
                    o[0], o[3] = noise[g][0], "%s %s" % (label, noise[g][1])
                o[1], o[2] = min(o[1], dist[g][0]), min(o[2], alt[g][0])
                if verbose:
                    print("%-22s %-4s %-13s fp32-vs-fp64 %.2e (%s)   vs fp32 model %.2e   "
                          "vs %s %.2e" % (label, dt, g, noise[g][0], noise[g][1], dist[g][0],
                                          other, alt[g][0]), flush=True)
    return out


def t_tolerances():
    """MP_TOL must exceed the reference's own accumulation noise by a margin of 2 (the C's
    summation orders differ from PyTorch's about as much as fp32 from fp64, and rounding to
    the storage dtype amplifies any such difference to the level of the roundings), and the
    f16 tolerance of the embeddings must reject the bf16 reference (a C that stored the
    wrong dtype fails)."""
    cases = [(n, synthetic(**CASES[n], seed=7)) for n in ("arcface", "gradacc")]
    res = calibrate(cases, verbose=False)
    for dt, groups in res.items():
        for g, (noise, dist, alt, where) in sorted(groups.items()):
            tol = MP_TOL[dt][g]
            print("%-4s %-13s tol %.0e  noise %.2e (%s)  fp32-model distance %.2e"
                  % (dt, g, tol, noise, where, dist))
            check(tol >= 2 * noise, "%s %s: tolerance %.0e below 2x the noise %.2e (%s)"
                  % (dt, g, tol, noise, where))
            if dt == "f16" and g == "embeddings":
                check(tol < alt, "f16 %s: tolerance %.0e does not reject the bf16 reference "
                      "(distance %.2e)" % (g, tol, alt))


# ---------------------------------------------------------------------------------- torch_ref.py

def write_dump(path, meta, tensors):
    """A safetensors file laid out as test_train_torch.c writes it (header in insertion
    order, metadata first, 8-byte aligned header)."""
    import json
    import struct

    names = {torch.float32: "F32", torch.int64: "I64", torch.int32: "I32"}
    head, blobs, off = {"__metadata__": meta}, [], 0
    for k, t in tensors.items():
        b = t.contiguous().numpy().tobytes()
        head[k] = {"dtype": names[t.dtype], "shape": list(t.shape),
                   "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(head, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def t_torch_ref_storage_modes():
    """torch_ref.py end to end on the storage modes without the C side: a stand-in for the C
    dump (the same-casts reference computed in fp64, stored in the documented layout) must
    pass, and one with a wrong gradient, a wrong skipped flag or no per-step scale must fail."""
    import shutil
    import subprocess
    import tempfile

    here = os.path.dirname(os.path.realpath(__file__))
    script = os.path.join(here, "..", "train_core", "torch_ref.py")
    work = tempfile.mkdtemp(prefix="pyref-selftest-")
    try:
        fake = os.path.join(work, "fake_c.sh")
        with open(fake, "w") as f:
            f.write('#!/bin/sh\ncp "$FAKE_DUMP" "$2"\n')  # argv: --out PATH
        os.chmod(fake, 0o755)
        for dt, extra in (("f16", {"loss_scale": "1024"}), ("bf16", {})):
            meta, d = synthetic(**CASES["sampled_update_filter"], seed=13, dtype=dt)
            meta.update(extra)
            ref, _ = replay(meta, d, dt, compute=torch.float64)
            dump = {k: v for k, v in d.items()}
            for k, v in ref.items():
                dump[k] = v if v.dtype == torch.int64 else v.to(torch.float32)

            def run(tensors, label, want_rc):
                p = os.path.join(work, "dump_%s.safetensors" % label)
                write_dump(p, meta, tensors)
                r = subprocess.run([sys.executable, script, fake, os.path.join(work, label)],
                                   capture_output=True, text=True,
                                   env=dict(os.environ, FAKE_DUMP=p))
                last = (r.stdout.strip().splitlines() or [""])[-1]
                check(r.returncode == want_rc, "torch_ref.py on %s: rc %d, want %d: %s"
                      % (label, r.returncode, want_rc, r.stdout[-1500:] + r.stderr[-800:]))
                return r.stdout, last

            out, last = run(dump, dt + "_good", 0)
            print("torch_ref.py, %s stand-in dump: %s" % (dt, last))
            if dt == "f16":
                check("per-step scale" not in out and "scale [1024.0, 1024.0, 1024.0]" in out,
                      "f16 scale reported: %s" % out[-600:])
            bad = dict(dump)
            k = "step0.grad.layer1.0.conv1.weight"
            bad[k] = bad[k] * 1.5
            _, last = run(bad, dt + "_badgrad", 1)
            if dt == "f16":
                bad = dict(dump)
                bad["skipped"] = bad["skipped"].clone()
                bad["skipped"][1] = 1
                run(bad, dt + "_badskip", 1)
                bad = {k: v for k, v in dump.items() if k != "scale"}
                run(bad, dt + "_noscale", 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "calibrate":
        from pyref.safetensors import load_torch
        if len(sys.argv) > 2:
            cases = [(os.path.basename(os.path.dirname(p)) or p, load_torch(p)[:2])
                     for p in sys.argv[2:]]
        else:
            cases = [(n, synthetic(**c, seed=11)) for n, c in CASES.items()]
        res = calibrate(cases)
        print("\nover the cases: worst fp32-vs-fp64 noise, smallest distance to the fp32 model"
              " and to the other storage dtype")
        for dt, groups in res.items():
            for g, (noise, dist, alt, where) in sorted(groups.items()):
                print("%-4s %-13s noise %.2e (%s)   fp32 %.2e   other %.2e   tol %.0e"
                      % (dt, g, noise, where, dist, alt, MP_TOL[dt][g]))
        return 0
    t_roundings()
    t_scaler()
    t_disabled_equals_fp32()
    t_f16_default_scale_skips()
    t_torch_ref_storage_modes()
    t_tolerances()
    print("%d failure(s)" % len(fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
