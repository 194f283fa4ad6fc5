"""A synthetic IJB-C-style folder (formats.md 4.1) from ft-synth faces, with known ground truth:

  <out>/loose_crop/<n>.jpg   each aligned 112x112 ft-synth face placed into a larger "loose
                             crop" by a known similarity (scale 0.7..1.6, rotation +-0.5 rad,
                             a shift), JPEG quality 95 (one image stored as greyscale)
  <out>/meta/ijbc_name_5pts_score.txt   the template landmarks mapped by that similarity (3
                             decimals) and a detector score 0.3..1
  <out>/meta/ijbc_face_tid_mid.txt      templates of 1..3 images of one identity, media ids
                             shared by some images of a template (media means are exercised);
                             ids neither contiguous nor in file order, images shuffled
  <out>/meta/ijbc_template_pair_label.txt  every pair of templates (or a sample of them),
                             label 1 for the same identity, shuffled

build() returns the ground truth: per image its identity, face (RGB) and similarity.
As a script:  make_ijb.py FT_SYNTH OUT [--identities N] [--per-id M] [--seed S]
(the larger synthetic set of docs/benchmarks.md).
"""
import argparse
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
from pyref.ijb import TEMPLATE, write_meta  # noqa: E402
from pyref.recordio import arcface_samples  # noqa: E402


def synth_faces(ft_synth, work, identities, per_id, seed):
    """[(label, RGB 112x112 uint8)] of an ft-synth dataset."""
    import cv2

    folder = os.path.join(work, "synth")
    if not os.path.exists(os.path.join(folder, "train.rec")):
        subprocess.run([ft_synth, folder, "--classes", str(identities), "--per-class",
                        str(per_id), "--seed", str(seed), "--pairs", "0", "--threads", "2"],
                       check=True, capture_output=True)
    out = []
    for _, label, jpeg in arcface_samples(folder):
        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        out.append((label, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return out


def build(out, faces, seed=1, max_pairs=None, tag="ijbc"):
    import cv2

    rng = np.random.default_rng(seed)
    by_id = {}
    for k, (label, _) in enumerate(faces):
        by_id.setdefault(label, []).append(k)
    # templates: consecutive runs of 1..3 images of one identity
    templates = []  # (identity, [face index], [media id])
    media = 1000
    for label in sorted(by_id):
        ks = list(by_id[label])
        while ks:
            n = min(len(ks), int(rng.integers(1, 4)))
            part, ks = ks[:n], ks[n:]
            mids = []
            for j in range(n):
                if j == 0 or rng.random() < 0.5:
                    media += int(rng.integers(1, 9))
                mids.append(media)
            templates.append((label, part, mids))
    tids = rng.permutation(len(templates)) * 7 + 3  # distinct, not in order
    os.makedirs(os.path.join(out, "loose_crop"), exist_ok=True)
    order = rng.permutation(len(faces))  # image file order
    slot = {}
    for t, (label, part, mids) in enumerate(templates):
        for k, m in zip(part, mids):
            slot[k] = (int(tids[t]), m)
    names, lmks, scores, tcol, mcol, truth = [], [], [], [], [], []
    for i, k in enumerate(order):
        label, face = faces[k]
        s, a = rng.uniform(0.7, 1.6), rng.uniform(-0.5, 0.5)
        w, h = int(rng.integers(150, 260)), int(rng.integers(150, 260))
        m = np.array([[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0]])
        c = m[:, :2] @ np.array([56.0, 56.0])
        m[:, 2] = np.array([w / 2, h / 2]) - c + rng.uniform(-12, 12, 2)
        loose = cv2.warpAffine(face, m, (w, h), borderValue=0.0)
        name = "%d.jpg" % (i + 1)
        bgr = cv2.cvtColor(loose, cv2.COLOR_RGB2BGR)
        if i == 3:  # one greyscale file: decoders must give 3 equal channels
            bgr = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        ok, jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        with open(os.path.join(out, "loose_crop", name), "wb") as f:
            f.write(jpg.tobytes())
        names.append(name)
        lmks.append(TEMPLATE.astype(np.float64) @ m[:, :2].T + m[:, 2])
        scores.append(rng.uniform(0.3, 1.0))
        tcol.append(slot[k][0])
        mcol.append(slot[k][1])
        truth.append({"label": label, "face": face, "M": m, "grey": i == 3})
    pairs = [(int(tids[a]), int(tids[b]), int(templates[a][0] == templates[b][0]))
             for a in range(len(templates)) for b in range(a + 1, len(templates))]
    pairs = [pairs[j] for j in rng.permutation(len(pairs))]
    if max_pairs and len(pairs) > max_pairs:  # keep every genuine pair
        gen = [p for p in pairs if p[2]]
        imp = [p for p in pairs if not p[2]][: max_pairs - len(gen)]
        pairs = [(gen + imp)[j] for j in rng.permutation(len(gen) + len(imp))]
    write_meta(out, tag, names, lmks, scores, tcol, mcol, pairs)
    return truth


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ft_synth")
    ap.add_argument("out")
    ap.add_argument("--identities", type=int, default=200)
    ap.add_argument("--per-id", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-pairs", type=int, default=200000)
    a = ap.parse_args()
    faces = synth_faces(a.ft_synth, a.out, a.identities, a.per_id, a.seed)
    truth = build(a.out, faces, a.seed, a.max_pairs)
    print("%s: %d images of %d identities" % (a.out, len(truth), a.identities))


if __name__ == "__main__":
    main()
