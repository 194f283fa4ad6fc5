#!/usr/bin/python3
"""torch_ref.py: check facetrain's CPU trainer core against a PyTorch reference.

Runs test_train_torch (C) with the given options, which trains a few steps of IResNet +
margin softmax + Partial FC + SGD and dumps its initial state, inputs, sampled class indexes,
outputs, first-step gradients and final state to a safetensors file. The reference
(pyref.iresnet: the model written from the architecture description, insightface IResNet
layout and state_dict names; pyref.trainer: the steps) loads the C initial weights with
load_state_dict(strict=True), replays the steps with the same inputs (and the C's sampled
index when sample_rate < 1) and this script compares.

Semantics replayed (arcface_torch): logits = normalize(emb) . normalize(W[index])^T clamped to
[-1, 1]; interclass filtering multiplies entries above the threshold by a no-grad 0 (except the
target); ArcFace margin applied under no_grad (straight-through gradient), CosFace x - m3;
times s = 64; mean cross-entropy; SGD(momentum 0.9, weight_decay) over backbone and PFC weight;
clip_grad_norm_(backbone, 5); gradient_acc.

Two update modes for the PFC weight (metadata "update"), see pyref/trainer.py: dense (PyTorch
SGD on the whole weight, as PartialFC_V2) and sampled (test_train_torch --sampled-update:
only the step's rows and their momentum move). Checked per step in sampled mode: the C's
unsampled rows (weight and momentum) are bit-identical to the previous step's and its sampled
rows moved (unless the step was skipped); all rows match the reference within the tolerances.

fp32 (metadata "dtype" absent or "f32"). Metric per tensor: max |c - t| / max |t| (normalized
max error). Tolerances:
  embeddings, loss            1e-4  (different summation orders: ~1e-6 expected)
  first-step gradients        2e-3  (BN backward subtracts nearly equal sums; errors of the
                                     batch statistics grow through the depth)
  weights after the steps     1e-3  (lr 0.1 steps move weights by ~ their own size; a wrong
                                     gradient or update rule gives errors ~1e-1)
  running stats, momentum     2e-3 ; num_batches_tracked exact

fp16 / bf16 storage (metadata "dtype" "f16" / "bf16"): the replay is the mixed-precision
("same casts") reference of pyref.iresnet, with pyref.amp's GradScaler-style loss scaler for
f16. Metric per tensor: relative RMS error sqrt(sum((c - t)^2) / sum(t^2)) (pyref.trainer.
rel_rms; the denominator at least the per-element floors above, gradients and momentum at
MP_TOL's "grad floor" of the largest gradient; a tensor whose finite/non-finite pattern
differs fails). Tolerances pyref.trainer.MP_TOL, calibrated there (the figures are in its
comment): f16 5e-3 embeddings, 1e-3 step-0 loss, 1e-1 weight gradients, 2e-1 gradients of
1-d parameters (BN, PReLU, biases); bf16 5e-2, 1e-2, 3e-1, 5e-1; later-step losses, gradient
norms and the final state wider (they follow diverging trajectories). The per-step "scale" and
"skipped" must equal the reference's exactly. For the small cases give f16 --loss-scale 1024
(or less): at 65536 the logits' gradient 64 * 65536 / batch overflows fp16 and every step is
skipped (a case of its own for the skip path).

What the C dump must contain (safetensors, every float tensor F32 whatever the storage dtype,
i.e. the fp32 value of what the C holds; indexes I32; num_batches_tracked I64):
  metadata  width, blocks ("a,b,c,d"), emb, batch, classes, rate, margin (arcface|cosface),
            threshold, steps, acc, lr, wd, s, num_sample, update (dense|sampled), and for the
            storage modes dtype ("f32"|"f16"|"bf16") and loss_scale (the initial scale:
            --loss-scale, default 65536 for f16, "1" otherwise)
  init.<state_dict name>       every backbone tensor before the first step, in state_dict
                               order (the names must equal PyTorch's, in that order)
  init.pfc.weight              [classes, emb]
  stepN.x [B,3,112,112], stepN.labels I32 [B]      the inputs of step N (fp32 values; the
                               storage modes round them to D, as the reference does)
  stepN.index I32 [num_sample]  when rate < 1: the sorted sampled class ids of step N
  step0.emb [B, emb]           embeddings of step 0 (fp32)
  stepN.loss [1]               the loss of step N (fp32, unscaled)
  step0.grad.<param>, step0.grad.pfc.weight   the step-0 gradients of every trainable
                               parameter (backbone and PFC weight, dense [classes, emb]), for
                               f16 unscaled: the accumulated gradient times float32(1 / scale),
                               before clipping
  stepN.gradnorm [1]           at each window end ((N + 1) % acc == 0): the backbone's total
                               norm returned by the clipping (after unscaling; inf/NaN when
                               the step is skipped)
  stepN.pfc.weight, stepN.pfc.mom   sampled update only: after each window end
  final.<state_dict name>, final.pfc.weight   the state after the last step
  final.mom.<param>.momentum_buffer, final.mom.weight.momentum_buffer   SGD momentum (zero
                               where no step was taken)
  scale F32 [steps]            f16 only: the loss scale step N's backward used
  skipped I64 [steps]          f16 only: 1 when step N ended a window whose update was
                               skipped for an inf/NaN gradient (weights and momentum kept,
                               scale halved), else 0
Usage: torch_ref.py TEST_BINARY WORKDIR [options for TEST_BINARY]; exit 0 pass, 1 fail, 77 skip
(no torch outside CI; in CI a missing oracle fails).
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402

torch = pyref.need("torch")
pyref.need("numpy")
from pyref.iresnet import Net  # noqa: E402
from pyref.safetensors import load_torch  # noqa: E402
from pyref.trainer import (MP_TOL, config, prelu_kink_margin, rel_rms, replay,  # noqa: E402
                           split_1d)

torch.set_num_threads(2)


class Checker:
    """cmp: the fp32 metric (normalized max error); rms: the storage modes' relative RMS."""

    def __init__(self, mp=None):
        self.fails = 0
        self.worst = {}
        self.mp = mp  # None, or the storage dtype's MP_TOL table

    def _note(self, what, e, tol, group):
        if e >= self.worst.get(group, (-1.0, ""))[0]:
            self.worst[group] = (e, what)
        if not e <= tol:
            self.fails += 1
            print("FAIL %-52s err %.3e tol %.0e" % (what, e, tol))

    def cmp(self, what, c, t, tol, group, floor=1e-12):
        """fp32: max |c - t| / max(max |t|, floor) <= tol. Storage modes: rel_rms <= the
        group's MP_TOL (tol is the fp32 one and is not used)."""
        if self.mp is not None:
            return self.rms(what, c, t, group, floor)
        c = c.double()
        t = t.double()
        den = max(t.abs().max().item(), floor)
        e = (c - t).abs().max().item() / den if c.numel() else 0.0
        self._note(what, e, tol, group)

    def rms(self, what, c, t, group, floor=0.0):
        key = "gradnorm" if what.endswith("grad norm") else split_1d(group, t)
        if key == "loss" and not what.startswith("step0 "):
            key = "loss, later steps"
        self._note(what, rel_rms(c, t, floor), self.mp[key], key)

    def exact(self, what, c, t):
        if not torch.equal(c, t):
            self.fails += 1
            if c.numel() <= 8:
                print("FAIL %-52s %s != %s" % (what, c.tolist(), t.tolist()))
            else:
                bad = (c != t) if c.shape == t.shape else torch.ones(1, dtype=torch.bool)
                print("FAIL %-52s not bit-identical (%d of %d elements differ)"
                      % (what, int(bad.sum()), c.numel()))


def check_index(ck, d, cfg, s):
    """The C's sampled index of step s: sorted, holds every label, num_sample long."""
    labels, index = d["step%d.labels" % s].long(), d["step%d.index" % s].long()
    need = max(cfg["num_sample"], len(torch.unique(labels)))
    ok = (len(index) == need and bool((index[1:] > index[:-1]).all())
          and bool(torch.isin(labels, index).all()))
    if not ok:
        ck.fails += 1
        print("FAIL step %d: sampled index is not sorted/complete/sized %d" % (s, need))


def check_sampled_step(ck, s, d, prev_w, prev_m, ref, skipped):
    """After step s of the sampled update: the C's unsampled rows are bit-identical to their
    values before the step (weight and momentum), its sampled rows moved (all rows kept when
    the step was skipped), and every row matches the reference."""
    index = d["step%d.index" % s].long()
    cw, cm = d["step%d.pfc.weight" % s], d["step%d.pfc.mom" % s]
    keep = torch.ones(cw.shape[0], dtype=torch.bool)
    keep[index] = False
    ck.exact("step%d unsampled pfc rows kept (%d rows)" % (s, int(keep.sum())), cw[keep],
             prev_w[keep])
    ck.exact("step%d unsampled momentum rows kept" % s, cm[keep], prev_m[keep])
    if skipped:
        ck.exact("step%d skipped: sampled pfc rows kept" % s, cw[index], prev_w[index])
        ck.exact("step%d skipped: sampled momentum rows kept" % s, cm[index], prev_m[index])
    else:
        moved = (cw[index] != prev_w[index]).any(1) & (cm[index] != prev_m[index]).any(1)
        if not bool(moved.all()):
            ck.fails += 1
            print("FAIL step%d: %d sampled pfc rows did not move" % (s, int((~moved).sum())))
    ck.cmp("step%d pfc.weight" % s, cw, ref["step%d.pfc.weight" % s], 1e-3, "weights")
    ck.cmp("step%d pfc momentum" % s, cm, ref["step%d.pfc.mom" % s], 2e-3, "momentum")
    print("step %d: %d sampled pfc rows %s, %d unsampled rows checked bit-identical"
          % (s, len(index), "kept (skipped step)" if skipped else "updated", int(keep.sum())))


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 1
    binary, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "dump.safetensors")
    subprocess.run([binary, "--out", path] + sys.argv[3:], check=True)
    meta, d, order = load_torch(path)
    cfg = config(meta)
    steps, acc, rate, dtype = cfg["steps"], cfg["acc"], cfg["rate"], cfg["dtype"]
    mixed = dtype in ("f16", "bf16")
    sampled = cfg["update"] == "sampled"
    if sampled and not (rate < 1 and acc == 1):
        print("FAIL sampled update needs rate < 1 and acc 1")
        return 1
    ck = Checker(MP_TOL[dtype] if mixed else None)
    if mixed:
        print("storage dtype %s, initial loss scale %g: relative RMS against the same-casts "
              "reference" % (dtype, cfg["loss_scale"]))

    net = Net(cfg["width"], cfg["blocks"], cfg["emb"])
    names = [k[5:] for k in order if k.startswith("init.") and k != "init.pfc.weight"]
    if names != list(net.state_dict().keys()):
        print("FAIL state_dict names/order differ:\n C:     %s\n torch: %s"
              % (names[:12], list(net.state_dict().keys())[:12]))
        return 1
    for k, v in net.state_dict().items():
        if tuple(v.shape) != tuple(d["init." + k].shape) or v.dtype != d["init." + k].dtype:
            print("FAIL shape/dtype of", k, tuple(v.shape), v.dtype, d["init." + k].shape)
            return 1
    if rate < 1:
        for s in range(steps):
            check_index(ck, d, cfg, s)
    if not mixed:
        # An input at a PReLU kink makes the step-0 gradients depend on the conv's summation
        # order (see prelu_kink_margin). Large models always have inputs within 1e-7 of it
        # (millions of unit-scale values); a flip matters where a channel has few elements
        # (4x4 maps, small batches), so a failure next to a tiny margin in that layer is the
        # case's, not the engine's: say where the kink is.
        margin, where = prelu_kink_margin(meta, d)
        print("nearest PReLU kink: %.1e (%s)" % (margin, where))
    ref, info = replay(meta, d, dtype)
    net = info["net"]
    if cfg["threshold"] > 0 and not mixed:
        # the interclass filter is a step in the loss as the kink is: a cosine within the
        # engines' rounding of the threshold flips and moves that step's gradients
        print("nearest filter threshold per step: %s"
              % ", ".join("%.1e" % m for m in info["filter_margins"]))
    if dtype == "f16":
        for k, dt in (("scale", torch.float32), ("skipped", torch.int64)):
            if k not in d or d[k].dtype != dt or d[k].shape != ref[k].shape:
                ck.fails += 1
                print("FAIL the f16 dump lacks %s %s [%d]" % (k, dt, steps))
            else:
                ck.exact("per-step " + k, d[k], ref[k])
        print("reference: scale %s, skipped %s" % (ref["scale"].tolist(), ref["skipped"].tolist()))
    skipped = ref.get("skipped", torch.zeros(steps, dtype=torch.int64)).tolist()

    ck.cmp("step0 embeddings", d["step0.emb"], ref["step0.emb"], 1e-4, "embeddings")
    for s in range(steps):
        ck.cmp("step%d loss" % s, d["step%d.loss" % s], ref["step%d.loss" % s], 1e-4, "loss")
    # biases followed by a BN have zero gradient up to rounding: the normalizer of a tensor
    # is at least 1e-3 of the largest gradient of the model (storage modes: MP_TOL's
    # "grad floor", per element)
    gmax = max(ref["step0.grad." + k].abs().max().item()
               for k, p in net.named_parameters() if p.requires_grad)
    gfloor = (MP_TOL[dtype]["grad floor"] if mixed else 1e-3) * gmax
    for k, p in net.named_parameters():
        if p.requires_grad:
            ck.cmp("step0 grad " + k, d["step0.grad." + k], ref["step0.grad." + k], 2e-3,
                   "grads", gfloor)
    ck.cmp("step0 grad pfc.weight", d["step0.grad.pfc.weight"], ref["step0.grad.pfc.weight"],
           2e-3, "grads")
    c_prev_w, c_prev_m = d["init.pfc.weight"], torch.zeros_like(d["init.pfc.weight"])
    for s in range(steps):
        if (s + 1) % acc:
            continue
        ck.cmp("step%d grad norm" % s, d["step%d.gradnorm" % s], ref["step%d.gradnorm" % s],
               2e-3, "grads")
        if sampled:
            check_sampled_step(ck, s, d, c_prev_w, c_prev_m, ref, skipped[s])
            c_prev_w, c_prev_m = d["step%d.pfc.weight" % s], d["step%d.pfc.mom" % s]
    for k, v in net.state_dict().items():
        if v.dtype == torch.int64:
            ck.exact("final " + k, d["final." + k], v)
        elif "running" in k:
            ck.cmp("final " + k, d["final." + k], v, 2e-3, "running stats", 1e-2)
        else:
            ck.cmp("final " + k, d["final." + k], v, 1e-3, "weights", 1e-2)
    ck.cmp("final pfc.weight", d["final.pfc.weight"], ref["final.pfc.weight"], 1e-3, "weights")
    for k, p in net.named_parameters():
        if p.requires_grad and steps >= acc:
            name = "final.mom.%s.momentum_buffer" % k
            ck.cmp("final momentum " + k, d[name], ref[name], 2e-3, "momentum", gfloor)
    if steps >= acc:
        name = "final.mom.weight.momentum_buffer"
        ck.cmp("final momentum pfc", d[name], ref[name], 2e-3, "momentum")
    for g, (e, what) in sorted(ck.worst.items()):
        print("max err %-14s %.3e  (%s)" % (g, e, what))
    print("PASS" if ck.fails == 0 else "FAIL: %d mismatches" % ck.fails)
    return 1 if ck.fails else 0


if __name__ == "__main__":
    sys.exit(main())
