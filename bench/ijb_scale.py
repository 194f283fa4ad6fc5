"""IJB-C-sized meta files (469,375 images, 23,124 templates, 15,658,489 pairs, 1 in 800
genuine) and random features, to time ft-eval ijb --load-features (parsing, pooling, scores,
ROC) at full scale without images or a model (docs/benchmarks.md). With random features the
TAR at each FAR is about the FAR itself, a check of the ROC on 15.7 M pairs.
Usage: ijb_scale.py OUT_DIR [DIM]   (writes OUT_DIR/IJBC/meta/* and OUT_DIR/feats.npy)
"""
import os
import sys

import numpy as np

out = sys.argv[1]
dim = int(sys.argv[2]) if len(sys.argv) > 2 else 64
meta = os.path.join(out, "IJBC", "meta")
os.makedirs(meta, exist_ok=True)
rng = np.random.default_rng(0)
n_img, n_t, n_p = 469375, 23124, 15658489
tid = np.sort(rng.integers(0, n_t, n_img))
tid[:n_t] = np.arange(n_t)  # every template has an image
tid = rng.permutation(tid) + 1
mid = rng.integers(1, 150000, n_img)
lmk = rng.uniform(30, 90, (n_img, 10))
score = rng.uniform(0.3, 1, n_img)
with open(os.path.join(meta, "ijbc_name_5pts_score.txt"), "w") as f:
    for i in range(n_img):
        f.write("%d.jpg %s %.3f\n" % (i + 1, " ".join("%.3f" % v for v in lmk[i]), score[i]))
np.savetxt(os.path.join(meta, "ijbc_face_tid_mid.txt"), np.c_[np.arange(1, n_img + 1), tid, mid],
           fmt="%d.jpg %d %d")
a, b = rng.integers(1, n_t + 1, n_p), rng.integers(1, n_t + 1, n_p)
lab = (rng.random(n_p) < 19557 / n_p).astype(int)
with open(os.path.join(meta, "ijbc_template_pair_label.txt"), "w") as f:
    for s in range(0, n_p, 1000000):
        e = s + 1000000
        f.write("".join("%d %d %d\n" % t for t in zip(a[s:e], b[s:e], lab[s:e])))
np.save(os.path.join(out, "feats.npy"), rng.normal(size=(n_img, dim)).astype(np.float32))
