"""numpy implementation of IJB-C/IJB-B 1:1 verification as insightface's onnx_ijbc.py does it
(formats.md 4), written from its description, with neither scikit-image nor scikit-learn:

  TEMPLATE            the arcface 112x112 landmark template (float32)
  umeyama(src, dst)   skimage's SimilarityTransform.estimate: Umeyama least squares with
                      scale, in float64, through the SVD and its rank cases (formats.md 4.2)
  align(img, lmk)     umeyama + cv2.warpAffine(img, M, (112, 112), borderValue=0.0)
  fuse(feat, flip, faceness)  feat + flip, times the detector score (no normalization)
  pool(img_feats, templates, medias)  media means, template sums, L2 normalization ->
                      (template features, sorted template ids)
  scores(tfeats, tids, p1, p2)  cosine of the two templates of each pair
  roc_curve(label, score)  sklearn.metrics.roc_curve with its defaults (drop_intermediate)
  tar_at_far(label, score)  the helper's table: {far: tar * 100} at FAR 1e-6 .. 1e-1
  read_meta / write_meta  the three meta files of <root>/meta
"""
import os

import numpy as np

TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
FARS = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]


def umeyama(src, dst):
    """2x3 float64 similarity (source -> destination) minimizing the squared error."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    n, dim = src.shape
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    s, d_ = src - src_mean, dst - dst_mean
    a = d_.T @ s / n
    d = np.ones(dim)
    if np.linalg.det(a) < 0:
        d[dim - 1] = -1
    t = np.eye(dim + 1)
    u, sig, v = np.linalg.svd(a)
    rank = np.linalg.matrix_rank(a)
    if rank == 0:
        return np.full((2, 3), np.nan)
    if rank == dim - 1:
        if np.linalg.det(u) * np.linalg.det(v) > 0:
            t[:dim, :dim] = u @ v
        else:
            dd = d[dim - 1]
            d[dim - 1] = -1
            t[:dim, :dim] = u @ np.diag(d) @ v
            d[dim - 1] = dd
    else:
        t[:dim, :dim] = u @ np.diag(d) @ v
    scale = 1.0 / s.var(axis=0).sum() * (sig @ d)
    t[:dim, dim] = dst_mean - scale * (t[:dim, :dim] @ src_mean.T)
    t[:dim, :dim] *= scale
    return t[:2]


def align(img, lmk):
    """The 112x112 crop of img (HWC uint8) for landmarks lmk [5][2], and M."""
    import cv2

    m = umeyama(np.asarray(lmk, np.float32), TEMPLATE)
    return cv2.warpAffine(img, m, (112, 112), borderValue=0.0), m


def fuse(feat, flip, faceness):
    """N1 D1 F1: feat(orig) + feat(flip), float32, times the detector score (float32)."""
    f = np.asarray(feat, np.float32) + np.asarray(flip, np.float32)
    return f * np.asarray(faceness, np.float32)[:, None]


def pool(img_feats, templates, medias):
    """Media means then template sums (float64), L2-normalized; templates in ascending id."""
    img_feats = np.asarray(img_feats, np.float32)
    templates, medias = np.asarray(templates), np.asarray(medias)
    uniq = np.unique(templates)
    out = np.zeros((len(uniq), img_feats.shape[1]))
    for k, t in enumerate(uniq):
        (ind,) = np.where(templates == t)
        f, m = img_feats[ind], medias[ind]
        acc = []
        for u in np.unique(m):
            (im,) = np.where(m == u)
            acc.append(f[im][0] if len(im) == 1 else np.mean(f[im], axis=0))
        out[k] = np.sum(np.array(acc), axis=0)
    norm = np.sqrt(np.einsum("ij,ij->i", out, out))
    norm[norm == 0] = 1.0  # as sklearn's normalize: a zero row stays zero
    return out / norm[:, None], uniq


def scores(tfeats, tids, p1, p2):
    pos = {int(t): i for i, t in enumerate(tids)}
    a = tfeats[[pos[int(t)] for t in p1]]
    b = tfeats[[pos[int(t)] for t in p2]]
    return np.sum(a * b, -1)


def roc_curve(label, score):
    """(fpr, tpr) of sklearn.metrics.roc_curve(label, score) with drop_intermediate=True."""
    y = np.asarray(label) == 1
    s = np.asarray(score, np.float64)
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    distinct = np.where(np.diff(s))[0]
    idx = np.r_[distinct, y.size - 1]
    tps = np.cumsum(y)[idx].astype(np.float64)
    fps = 1 + idx - tps
    if len(fps) > 2:
        keep = np.where(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        fps, tps = fps[keep], tps[keep]
    tps, fps = np.r_[0, tps], np.r_[0, fps]
    return fps / fps[-1], tps / tps[-1]


def tar_at_far(label, score):
    """{far: TAR in percent} as the helper's PrettyTable row: the ROC reversed, the nearest
    vertex (first of the reversed arrays on ties)."""
    fpr, tpr = roc_curve(label, score)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    return {far: tpr[np.argmin(np.abs(fpr - far))] * 100 for far in FARS}


def write_meta(root, tag, names, lmks, faceness, templates, medias, pairs):
    """<root>/meta/<tag>_name_5pts_score.txt, _face_tid_mid.txt, _template_pair_label.txt."""
    meta = os.path.join(root, "meta")
    os.makedirs(meta, exist_ok=True)
    with open(os.path.join(meta, tag + "_name_5pts_score.txt"), "w") as f:
        for n, l, s in zip(names, lmks, faceness):
            f.write(" ".join([n] + ["%.3f" % v for v in np.ravel(l)] + ["%.3f" % s]) + "\n")
    with open(os.path.join(meta, tag + "_face_tid_mid.txt"), "w") as f:
        for n, t, m in zip(names, templates, medias):
            f.write("%s %d %d\n" % (n, t, m))
    with open(os.path.join(meta, tag + "_template_pair_label.txt"), "w") as f:
        for a, b, lab in pairs:
            f.write("%d %d %d\n" % (a, b, lab))


def read_meta(root, tag):
    """(names, lmk [N,5,2] float32, faceness float32, templates, medias, p1, p2, label)."""
    meta = os.path.join(root, "meta")
    names, lmk, score = [], [], []
    with open(os.path.join(meta, tag + "_name_5pts_score.txt")) as f:
        for line in f:
            v = line.strip().split(" ")
            names.append(v[0])
            lmk.append([float(x) for x in v[1:-1]])
            score.append(float(v[-1]))
    tm = np.loadtxt(os.path.join(meta, tag + "_face_tid_mid.txt"), dtype=str, ndmin=2)
    pl = np.loadtxt(os.path.join(meta, tag + "_template_pair_label.txt"), dtype=int, ndmin=2)
    return (names, np.array(lmk, np.float32).reshape(-1, 5, 2), np.array(score, np.float32),
            tm[:, 1].astype(int), tm[:, 2].astype(int), pl[:, 0], pl[:, 1], pl[:, 2])
