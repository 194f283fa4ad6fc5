"""PyTorch IResNet and Partial FC margin head, written from the architecture description
(insightface arcface_torch backbones/iresnet.py layout and state_dict names; losses.py and
partial_fc_v2.py semantics), the reference of facetrain's trainer core (train_core/torch_ref.py)
and of the checkpoints ft-train writes (train/test_e2e.py).

Net(width, blocks, emb, dtype=None)   dtype None / 'f32': the fp32 model. dtype 'f16' / 'bf16':
                                      the mixed-precision ("same casts") model of facetrain's
                                      storage modes, below. rounding=False keeps that model's
                                      graph with every rounding an identity (== the fp32 model).
pfc_loss(emb, w_all, labels, index, cfg, dtype=None, rounding=True, margins=None)
                                      the margin softmax loss of Partial FC (same dtype rules)

Mixed precision, D the storage dtype, round(t) = t.to(D).float() (pyref.amp):
  * every activation and activation-gradient tensor of the backbone, from conv1's input to the
    flattened bn2 output incl. dropout, is stored in D: RoundBoth on the network input and on
    every op's input and output (conv, BatchNorm2d, PReLU, residual add, dropout). The shortcut
    branch takes its own RoundBoth(x), so the gradients of the two branches are each rounded
    before they are summed, and the sum is rounded again by the previous op's output rounding;
  * conv weights: RoundFwd(weight) (a D copy; the weight gradient stays fp32);
  * BN gamma/beta/running statistics and PReLU alpha: fp32; BN statistics are computed in
    fp32 from the rounded input;
  * fc (Linear) in fp32 on the rounded flattened input (arcface_torch: self.fc(x.float())),
    features BatchNorm1d in fp32, embeddings fp32;
  * Partial FC: en = normalize(emb), wn = normalize(W[index]) in fp32; cos =
    RoundBoth(RoundBoth(en) @ RoundBoth(wn).T) (GEMM inputs and output in D, fp32
    accumulation), then fp32: clamp(-1, 1), interclass filtering, margin, * s, softmax cross
    entropy, loss.
The model runs in the dtype of its parameters: net.double() gives the same roundings with
fp64 accumulation (used to calibrate tolerances, pyref.selftest).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from pyref.amp import Rounding, storage_dtype


def _conv(conv, x, r):
    """conv with its weight's D copy, input and output in D."""
    return r.both(F.conv2d(r.both(x), r.fwd(conv.weight), None, conv.stride, conv.padding))


def _op(mod, x, r):
    """an fp32-parameter op (BatchNorm2d, PReLU, Dropout) with input and output in D."""
    return r.both(mod(r.both(x)))


class Block(nn.Module):
    def __init__(self, cin, cout, stride, rounding=None):
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
        self.r = rounding or Rounding(None)

    def forward(self, x):
        r = self.r
        if r.d is None:
            y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
            return y + (x if self.downsample is None else self.downsample(x))
        y = _op(self.bn1, x, r)
        y = _op(self.prelu, _op(self.bn2, _conv(self.conv1, y, r), r), r)
        y = _op(self.bn3, _conv(self.conv2, y, r), r)
        s = r.both(x)
        if self.downsample is not None:
            s = _op(self.downsample[1], _conv(self.downsample[0], s, r), r)
        return r.both(r.both(y) + r.both(s))


class Net(nn.Module):
    """IResNet for 112x112 inputs: conv1 (3x3, stride 1) - bn1 - prelu, four layers of Blocks
    (first block of each layer stride 2, width << layer), bn2, dropout(0), fc to emb, features
    BatchNorm1d with a frozen weight."""

    def __init__(self, width, blocks, emb, dtype=None, rounding=True):
        super().__init__()
        self.r = Rounding(storage_dtype(dtype), rounding)
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-5)
        self.prelu = nn.PReLU(width)
        cin = width
        for i, n in enumerate(blocks):
            cout = width << i
            seq = [Block(cin, cout, 2, self.r)] + [Block(cout, cout, 1, self.r)
                                                   for _ in range(n - 1)]
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*seq))
            cin = cout
        self.bn2 = nn.BatchNorm2d(8 * width, eps=1e-5)
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(8 * width * 49, emb)
        self.features = nn.BatchNorm1d(emb, eps=1e-5)
        self.features.weight.requires_grad = False

    def forward(self, x):
        r = self.r
        if r.d is None:
            x = self.prelu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            x = self.dropout(torch.flatten(self.bn2(x), 1))
            return self.features(self.fc(x))
        x = _op(self.prelu, _op(self.bn1, _conv(self.conv1, x, r), r), r)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = _op(self.dropout, torch.flatten(_op(self.bn2, x, r), 1), r)
        return self.features(self.fc(x))


def pfc_loss(emb, w_all, labels, index, cfg, dtype=None, rounding=True, margins=None):
    """Partial FC margin softmax (arcface_torch): logits = normalize(emb) . normalize(W[index])^T
    clamped to [-1, 1]; interclass filtering multiplies entries above cfg['threshold'] by a
    no-grad 0 (except the target); ArcFace margin (cfg['margin'] 'arcface', m2 0.5) applied
    under no_grad (straight-through gradient), CosFace x - 0.4; times cfg['s']; mean cross
    entropy. index: the sorted sampled class ids (None: all classes). dtype: as Net's.
    margins: a list that gets, when filtering, min |cos - threshold| over the non-target
    entries (the filter is a step in the loss: an entry within rounding of it flips)."""
    r = Rounding(storage_dtype(dtype), rounding)
    if index is not None:
        w = w_all[index]
        lab = torch.searchsorted(index, labels)
    else:
        w, lab = w_all, labels
    cos = r.both(F.linear(r.both(F.normalize(emb)), r.both(F.normalize(w))))
    cos = cos.clamp(-1, 1)
    rows = torch.arange(emb.shape[0])
    thr = cfg["threshold"]
    if thr > 0:
        with torch.no_grad():
            dirty = (cos > thr).to(cos.dtype)
            dirty[rows, lab] = 0
            if margins is not None:
                gap = (cos - thr).abs()
                gap[rows, lab] = float("inf")
                margins.append(gap.min().item())
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
