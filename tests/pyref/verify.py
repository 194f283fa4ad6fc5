"""numpy implementation of arcface_torch's verification protocol (formats.md 3.3), written
from its description, for the trainer tests."""
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


def reference(orig, flip, issame):
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
    accs = []
    for train, test in kfold_indices(len(actual)):
        tr = [accuracy(t, dist[train], actual[train]) for t in thr]
        best = int(np.argmax(tr))
        accs.append(accuracy(thr[best], dist[test], actual[test]))
    accs = np.array(accs)
    return xnorm, accs.mean(), accs.std(), accs
