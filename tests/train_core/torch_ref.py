#!/usr/bin/python3
"""torch_ref.py: check facetrain's CPU trainer core against a PyTorch reference.

Runs test_train_torch (C) with the given options, which trains a few steps of IResNet +
margin softmax + Partial FC + SGD and dumps its initial state, inputs, sampled class indexes,
outputs, first-step gradients and final state to a safetensors file. This script builds the
same model in PyTorch (written here from the architecture description, insightface IResNet
layout and state_dict names), loads the C initial weights with load_state_dict(strict=True),
replays the steps with the same inputs (and the C's sampled index when sample_rate < 1) and
compares.

Semantics replayed (arcface_torch): logits = normalize(emb) . normalize(W[index])^T clamped to
[-1, 1]; interclass filtering multiplies entries above the threshold by a no-grad 0 (except the
target); ArcFace margin applied under no_grad (straight-through gradient), CosFace x - m3;
times s = 64; mean cross-entropy; SGD(momentum 0.9, weight_decay) over backbone and PFC weight;
clip_grad_norm_(backbone, 5); gradient_acc.

Two update modes for the PFC weight (metadata "update"):
  dense    PyTorch SGD on the whole weight, as arcface_torch's PartialFC_V2 does: the gradient
           is zero on unsampled rows, yet weight decay and momentum still move them.
  sampled  (test_train_torch --sampled-update) original PartialFC semantics: each step the
           rows of the step's index are gathered into a fresh leaf Parameter whose optimizer
           state is set to the gathered momentum rows; SGD steps it and weight and momentum are
           scattered back, so unsampled rows keep weight AND momentum exactly. Checked per step:
           the C's unsampled rows (weight and momentum) are bit-identical to the previous step's
           and its sampled rows moved; all rows match the reference within the tolerances below.

Metric per tensor: max |c - t| / max |t| (normalized max error). Tolerances (fp32):
  embeddings, loss            1e-4  (different summation orders: ~1e-6 expected)
  first-step gradients        2e-3  (BN backward subtracts nearly equal sums; errors of the
                                     batch statistics grow through the depth)
  weights after the steps     1e-3  (lr 0.1 steps move weights by ~ their own size; a wrong
                                     gradient or update rule gives errors ~1e-1)
  running stats, momentum     2e-3 ; num_batches_tracked exact
Usage: torch_ref.py TEST_BINARY WORKDIR [options for TEST_BINARY]; exit 0 pass, 1 fail, 77 skip.
"""
import json
import os
import struct
import subprocess
import sys

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover
    print("skip: torch/numpy not available:", e)
    sys.exit(77)

torch.set_num_threads(2)
DT = {"F32": np.float32, "I64": np.int64, "I32": np.int32}


def load_st(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    meta = head.pop("__metadata__")
    base = 8 + n
    out = {}
    for k, v in head.items():
        b, e = v["data_offsets"]
        a = np.frombuffer(raw[base + b:base + e], dtype=DT[v["dtype"]]).reshape(v["shape"])
        out[k] = torch.from_numpy(a.copy())
    return meta, out, list(head.keys())


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout, eps=1e-5))

    def forward(self, x):
        y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return y + (x if self.downsample is None else self.downsample(x))


class Net(nn.Module):
    def __init__(self, width, blocks, emb):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-5)
        self.prelu = nn.PReLU(width)
        cin = width
        for i, n in enumerate(blocks):
            cout = width << i
            seq = [Block(cin, cout, 2)] + [Block(cout, cout, 1) for _ in range(n - 1)]
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*seq))
            cin = cout
        self.bn2 = nn.BatchNorm2d(8 * width, eps=1e-5)
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(8 * width * 49, emb)
        self.features = nn.BatchNorm1d(emb, eps=1e-5)
        self.features.weight.requires_grad = False

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def pfc_loss(emb, w_all, labels, index, cfg):
    if index is not None:
        w = w_all[index]
        lab = torch.searchsorted(index, labels)
    else:
        w, lab = w_all, labels
    cos = F.linear(F.normalize(emb), F.normalize(w)).clamp(-1, 1)
    rows = torch.arange(emb.shape[0])
    thr = cfg["threshold"]
    if thr > 0:
        with torch.no_grad():
            dirty = (cos > thr).float()
            dirty[rows, lab] = 0
        cos = (1 - dirty) * cos
    if cfg["margin"] == "arcface":
        with torch.no_grad():
            t = cos[rows, lab]
            delta = torch.zeros_like(cos)
            delta[rows, lab] = torch.cos(torch.acos(t) + 0.5) - t
        logits = (cos + delta) * cfg["s"]
    else:
        onehot = torch.zeros_like(cos)
        onehot[rows, lab] = 0.4
        logits = (cos - onehot) * cfg["s"]
    # arcface_torch's value is -mean(log(max(p_target, 1e-30))) while its backward is the plain
    # softmax-CE gradient (p - onehot) / B, also for clamped rows
    ce = F.cross_entropy(logits, lab)
    p_t = torch.softmax(logits, 1)[rows, lab]
    clamped = -torch.log(p_t.clamp_min(1e-30)).mean()
    return ce + (clamped - ce).detach()


def check_sampled_step(ck, s, index, d, prev_w, prev_m, ref_w, ref_m):
    """After step s of the sampled update: the C's unsampled rows are bit-identical to their
    values before the step (weight and momentum), its sampled rows moved, and every row matches
    the reference."""
    cw, cm = d["step%d.pfc.weight" % s], d["step%d.pfc.mom" % s]
    keep = torch.ones(cw.shape[0], dtype=torch.bool)
    keep[index] = False
    ck.exact("step%d unsampled pfc rows kept (%d rows)" % (s, int(keep.sum())), cw[keep],
             prev_w[keep])
    ck.exact("step%d unsampled momentum rows kept" % s, cm[keep], prev_m[keep])
    moved = (cw[index] != prev_w[index]).any(1) & (cm[index] != prev_m[index]).any(1)
    if not bool(moved.all()):
        ck.fails += 1
        print("FAIL step%d: %d sampled pfc rows did not move" % (s, int((~moved).sum())))
    ck.cmp("step%d pfc.weight" % s, cw, ref_w, 1e-3, "weights")
    ck.cmp("step%d pfc momentum" % s, cm, ref_m, 2e-3, "momentum")
    print("step %d: %d sampled pfc rows updated, %d unsampled rows checked bit-identical"
          % (s, len(index), int(keep.sum())))


class Checker:
    def __init__(self):
        self.fails = 0
        self.worst = {}

    def cmp(self, what, c, t, tol, group, floor=1e-12):
        c = c.double()
        t = t.double()
        den = max(t.abs().max().item(), floor)
        e = (c - t).abs().max().item() / den if c.numel() else 0.0
        if e >= self.worst.get(group, (-1.0, ""))[0]:
            self.worst[group] = (e, what)
        if not e <= tol:
            self.fails += 1
            print("FAIL %-52s err %.3e tol %.0e" % (what, e, tol))

    def exact(self, what, c, t):
        if not torch.equal(c, t):
            self.fails += 1
            if c.numel() <= 8:
                print("FAIL %-52s %s != %s" % (what, c.tolist(), t.tolist()))
            else:
                bad = (c != t) if c.shape == t.shape else torch.ones(1, dtype=torch.bool)
                print("FAIL %-52s not bit-identical (%d of %d elements differ)"
                      % (what, int(bad.sum()), c.numel()))


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 1
    binary, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "dump.safetensors")
    subprocess.run([binary, "--out", path] + sys.argv[3:], check=True)
    meta, d, order = load_st(path)
    cfg = {"threshold": float(meta["threshold"]), "margin": meta["margin"], "s": 64.0}
    width, emb = int(meta["width"]), int(meta["emb"])
    blocks = [int(b) for b in meta["blocks"].split(",")]
    steps, acc = int(meta["steps"]), int(meta["acc"])
    lr, wd, rate = float(meta["lr"]), float(meta["wd"]), float(meta["rate"])
    update = meta.get("update", "dense")
    if update == "sampled" and not (rate < 1 and acc == 1):
        print("FAIL sampled update needs rate < 1 and acc 1")
        return 1
    ck = Checker()

    net = Net(width, blocks, emb)
    names = [k[5:] for k in order if k.startswith("init.") and k != "init.pfc.weight"]
    if names != list(net.state_dict().keys()):
        print("FAIL state_dict names/order differ:\n C:     %s\n torch: %s"
              % (names[:12], list(net.state_dict().keys())[:12]))
        return 1
    for k, v in net.state_dict().items():
        if tuple(v.shape) != tuple(d["init." + k].shape) or v.dtype != d["init." + k].dtype:
            print("FAIL shape/dtype of", k, tuple(v.shape), v.dtype, d["init." + k].shape)
            return 1
    net.load_state_dict({k: d["init." + k] for k in names}, strict=True)
    W = nn.Parameter(d["init.pfc.weight"].clone())
    opt = torch.optim.SGD([{"params": net.parameters()}, {"params": [W]}], lr=lr, momentum=0.9,
                          weight_decay=wd)
    # sampled mode: the full weight and momentum live outside the optimizer; the head group
    # holds the step's gathered sub-weight
    W_full = d["init.pfc.weight"].clone()
    M_full = torch.zeros_like(W_full)
    c_prev_w, c_prev_m = d["init.pfc.weight"], torch.zeros_like(W_full)
    net.train()
    for s in range(steps):
        x, labels = d["step%d.x" % s], d["step%d.labels" % s].long()
        index = None
        if rate < 1:
            index = d["step%d.index" % s].long()
            need = max(int(meta["num_sample"]), len(torch.unique(labels)))
            ok = (len(index) == need and bool((index[1:] > index[:-1]).all())
                  and bool(torch.isin(labels, index).all()))
            if not ok:
                ck.fails += 1
                print("FAIL step %d: sampled index is not sorted/complete/sized %d" % (s, need))
        e = net(x)
        if s == 0:
            ck.cmp("step0 embeddings", d["step0.emb"], e.detach(), 1e-4, "embeddings")
        if update == "sampled":
            sub = nn.Parameter(W_full[index].clone())
            opt.param_groups[1]["params"] = [sub]
            opt.state[sub]["momentum_buffer"] = M_full[index].clone()
            loss = pfc_loss(e, sub, torch.searchsorted(index, labels), None, cfg)
        else:
            loss = pfc_loss(e, W, labels, index, cfg)
        ck.cmp("step%d loss" % s, d["step%d.loss" % s], loss.detach().reshape(1), 1e-4, "loss")
        loss.backward()
        if update == "sampled":
            W.grad = torch.zeros_like(W_full).index_copy_(0, index, sub.grad)
        if s == 0:
            # biases followed by a BN have zero gradient up to rounding: the normalizer of a
            # tensor is at least 1e-3 of the largest gradient of the model
            gmax = max(p.grad.abs().max().item() for p in net.parameters() if p.requires_grad)
            for k, p in net.named_parameters():
                if p.requires_grad:
                    ck.cmp("step0 grad " + k, d["step0.grad." + k], p.grad, 2e-3, "grads",
                           1e-3 * gmax)
            ck.cmp("step0 grad pfc.weight", d["step0.grad.pfc.weight"], W.grad, 2e-3, "grads")
        if (s + 1) % acc == 0:
            norm = torch.nn.utils.clip_grad_norm_(net.parameters(), 5)
            ck.cmp("step%d grad norm" % s, d["step%d.gradnorm" % s], norm.reshape(1), 2e-3,
                   "grads")
            opt.step()
            opt.zero_grad()
            if update == "sampled":
                W_full[index] = sub.detach()
                M_full[index] = opt.state.pop(sub)["momentum_buffer"]
                W.grad = None
                check_sampled_step(ck, s, index, d, c_prev_w, c_prev_m, W_full, M_full)
                c_prev_w, c_prev_m = d["step%d.pfc.weight" % s], d["step%d.pfc.mom" % s]
    for k, v in net.state_dict().items():
        if v.dtype == torch.int64:
            ck.exact("final " + k, d["final." + k], v)
        elif "running" in k:
            ck.cmp("final " + k, d["final." + k], v, 2e-3, "running stats", 1e-2)
        else:
            ck.cmp("final " + k, d["final." + k], v, 1e-3, "weights", 1e-2)
    ck.cmp("final pfc.weight", d["final.pfc.weight"],
           W_full if update == "sampled" else W.detach(), 1e-3, "weights")
    for k, p in net.named_parameters():
        if p.requires_grad and steps >= acc:
            buf = opt.state[p]["momentum_buffer"]
            ck.cmp("final momentum " + k, d["final.mom.%s.momentum_buffer" % k], buf, 2e-3,
                   "momentum", 1e-3 * gmax)
    if steps >= acc:
        ck.cmp("final momentum pfc", d["final.mom.weight.momentum_buffer"],
               M_full if update == "sampled" else opt.state[W]["momentum_buffer"], 2e-3,
               "momentum")
    for g, (e, what) in sorted(ck.worst.items()):
        print("max err %-14s %.3e  (%s)" % (g, e, what))
    print("PASS" if ck.fails == 0 else "FAIL: %d mismatches" % ck.fails)
    return 1 if ck.fails else 0


if __name__ == "__main__":
    sys.exit(main())
