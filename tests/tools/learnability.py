"""Learnability check for ft-synth data (manual, minutes on a CPU; not run by ctest).

    /usr/bin/python3 tests/tools/learnability.py DATASET_DIR [--minutes 4 | --steps N] [--threads 2]

Trains a small IResNet-style network (insightface block: BN-conv-BN-PReLU-conv-BN, stride in
the second conv; BN-dropout-FC-BN embedding head) with a CosFace margin head on train.rec and
reports lfw/cfp_fp/agedb_30 accuracy with the 10-fold protocol of docs/formats.md 3.3
(pyref.verify: flip-fused embeddings, thresholds 0..4 step 0.01). Uses PyTorch and OpenCV.
"""
import argparse
import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402

np, torch, _ = pyref.need("numpy", "torch", "cv2")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from pyref import recordio as rio  # noqa: E402
from pyref.iresnet import Block  # noqa: E402  (insightface block: BN-conv-BN-PReLU-conv-BN)
from pyref.verify import decode_rgb, evaluate, to_input  # noqa: E402


def load_train(d):
    xs, ys = [], []
    for _, label, img in rio.arcface_samples(d):
        xs.append(decode_rgb(img))
        ys.append(label)
    return np.stack(xs), np.array(ys)


def to_tensor(x):
    return torch.from_numpy(np.ascontiguousarray(to_input(x)))


class SmallIResNet(nn.Module):
    def __init__(self, widths=(16, 32, 64, 128), emb=128):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0]))  # 56x56
        layers, cin = [], widths[0]
        for w in widths:
            layers.append(Block(cin, w, 2))
            cin = w
        self.layers = nn.Sequential(*layers)  # 3x3 for 112 input
        self.bn2, self.drop = nn.BatchNorm2d(cin), nn.Dropout(0.0)
        self.fc = nn.Linear(cin * 4 * 4, emb)
        self.features = nn.BatchNorm1d(emb)

    def forward(self, x):
        x = self.bn2(self.layers(self.stem(x)))
        x = F.adaptive_avg_pool2d(x, 4)
        return self.features(self.fc(self.drop(torch.flatten(x, 1))))


def cosface_logits(emb, weight, labels, s=32.0, m=0.35):
    cos = F.linear(F.normalize(emb), F.normalize(weight))
    onehot = F.one_hot(labels, weight.shape[0]).float()
    return s * (cos - m * onehot)


def verify(model, path):
    model.eval()
    _, acc, std, _ = evaluate(model, path)
    model.train()
    return acc, std


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--minutes", type=float, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=0, help="train this many steps instead of --minutes")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    xs, ys = load_train(a.dataset)
    n_cls = int(ys.max()) + 1
    print("train: %d images, %d classes" % (len(xs), n_cls))
    model = SmallIResNet()
    weight = nn.Parameter(torch.randn(n_cls, 128) * 0.01)
    opt = torch.optim.SGD(list(model.parameters()) + [weight], lr=0.1, momentum=0.9,
                          weight_decay=5e-4)
    t0, step, rng = time.time(), 0, np.random.default_rng(0)
    budget = a.minutes * 60

    def progress():
        return step / a.steps if a.steps else (time.time() - t0) / budget

    while progress() < 1:
        idx = rng.integers(0, len(xs), a.batch)
        x = xs[idx]
        flip = rng.random(a.batch) < 0.5
        x[flip] = x[flip][:, :, ::-1]
        for g in opt.param_groups:
            g["lr"] = 0.1 * (1 - progress())
        loss = F.cross_entropy(cosface_logits(model(to_tensor(x)), weight,
                                              torch.from_numpy(ys[idx]).long()), torch.from_numpy(ys[idx]).long())
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            print("step %d  %.0fs  loss %.3f" % (step, time.time() - t0, loss.item()), flush=True)
    print("trained %d steps of %d in %.0f s" % (step, a.batch, time.time() - t0))
    for name in ("lfw", "cfp_fp", "agedb_30"):
        p = os.path.join(a.dataset, name + ".bin")
        if os.path.exists(p):
            m, s = verify(model, p)
            print("%s: Accuracy-Flip %.5f+-%.5f" % (name, m, s))


if __name__ == "__main__":
    main()
