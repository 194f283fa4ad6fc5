"""numpy implementation of arcface_torch's verification protocol (formats.md 3.3), written
from its description, for the trainer and ft-eval tests: reference() on embeddings
(protocol() also gives each fold's threshold); load_bin(), decode_rgb() and to_input() read
a .bin as arcface_torch does (cv2 decode, RGB, ((x / 255) - 0.5) / 0.5 in float32, NCHW);
evaluate() runs a PyTorch model on it."""
import pickle

import numpy as np


def kfold_indices(p, k=10):
    sizes = np.full(k, p // k, dtype=int)
    sizes[: p % k] += 1
    start = 0
    for s in sizes:
        test = np.arange(start, start + s)
        yield np.setdiff1d(np.arange(p), test), test
        start += s


def accuracy(threshold, dist, actual):
    pred = np.less(dist, threshold)
    tp = np.sum(np.logical_and(pred, actual))
    tn = np.sum(np.logical_and(np.logical_not(pred), np.logical_not(actual)))
    return float(tp + tn) / dist.size


def protocol(orig, flip, issame):
    """The protocol on raw embeddings [2P][dim] of the images and of their mirror images:
    dict of xnorm, acc, std (Accuracy-Flip), fold_acc and threshold (per fold, the one
    chosen on the other nine folds)."""
    lst = [orig.astype(np.float64), flip.astype(np.float64)]
    norms = [np.linalg.norm(e) for emb in lst for e in emb]
    xnorm = sum(norms) / len(norms)
    e = lst[0] + lst[1]
    n = np.sqrt(np.einsum("ij,ij->i", e, e))
    n[n == 0] = 1.0
    e = e / n[:, None]
    dist = np.sum(np.square(e[0::2] - e[1::2]), 1)
    thr = np.arange(0, 4, 0.01)
    actual = np.asarray(issame, dtype=bool)
    accs, best_t = [], []
    for train, test in kfold_indices(len(actual)):
        tr = [accuracy(t, dist[train], actual[train]) for t in thr]
        best = int(np.argmax(tr))
        best_t.append(thr[best])
        accs.append(accuracy(thr[best], dist[test], actual[test]))
    accs = np.array(accs)
    return {"xnorm": xnorm, "acc": accs.mean(), "std": accs.std(), "fold_acc": accs,
            "threshold": np.array(best_t)}


def reference(orig, flip, issame):
    """(xnorm, acc, std, fold accuracies) of protocol()."""
    r = protocol(orig, flip, issame)
    return r["xnorm"], r["acc"], r["std"], r["fold_acc"]


def decode_rgb(jpeg):
    """HWC uint8 RGB image of JPEG bytes (cv2 decodes to BGR)."""
    import cv2

    return cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2RGB)


def load_bin(path):
    """(N x H x W x 3 uint8 RGB images, issame list) of a verification .bin."""
    with open(path, "rb") as f:
        bins, issame = pickle.load(f, encoding="bytes")
    return np.stack([decode_rgb(b) for b in bins]), issame


def to_input(rgb):
    """((x / 255) - 0.5) / 0.5 in float32, HWC -> CHW (or NHWC -> NCHW)."""
    x = np.moveaxis(np.asarray(rgb), -1, -3).astype(np.float32)
    return ((x / np.float32(255)) - np.float32(0.5)) / np.float32(0.5)


def evaluate(model, path, batch=100):
    """reference() of a PyTorch model (in the mode the caller set) on a .bin: embeddings of
    the images and of their mirror images, in batches."""
    import torch

    rgb, issame = load_bin(path)
    x = torch.from_numpy(np.ascontiguousarray(to_input(rgb)))
    with torch.no_grad():
        orig = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)]).numpy()
        flip = torch.cat([model(torch.flip(x[i:i + batch], dims=[3]))
                          for i in range(0, len(x), batch)]).numpy()
    return reference(orig, flip, issame)
