"""Verification protocol (formats.md 3.3) against an independent numpy implementation of
arcface_torch's eval/verification.py: XNorm, flip fusion, L2 normalization, squared
distances, 10-fold CV with contiguous folds (the first P mod 10 one larger), thresholds
k * 0.01 for k < 400, strict '<', first argmax, mean and population std.
Then a .bin file end to end (JPEG decode, normalization, mirror) with a fixed feature
extractor computed here from cv2-decoded images.
Usage: test_verify.py TR_VERIFY WORKDIR
"""
import os
import pickle
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402

cv2, np = pyref.need("cv2", "numpy")
from pyref.verify import decode_rgb, reference, to_input  # noqa: E402

TOOL, WORK = sys.argv[1], sys.argv[2]
os.makedirs(WORK, exist_ok=True)
fail = pyref.FAILS  # pyref.check records here
check = pyref.check


def parse(out):
    r = {"fold": []}
    for line in out.splitlines():
        f = line.split()
        if f[0] == "fold":
            r["fold"].append(float(f[2]))
        else:
            r[f[0]] = float(f[1])
    return r


def compare(label, res, ref):
    xnorm, acc, std, folds = ref
    ok = (abs(res["xnorm"] - xnorm) <= 1e-6 * max(1, abs(xnorm)) and abs(res["acc"] - acc) <= 1e-6
          and abs(res["std"] - std) <= 1e-6
          and np.allclose(res["fold"], folds, atol=1e-6, rtol=0))
    print(f"{label}: ours xnorm={res['xnorm']:.6f} acc={res['acc']:.5f}+-{res['std']:.5f}; "
          f"numpy xnorm={xnorm:.6f} acc={acc:.5f}+-{std:.5f}")
    check(ok, f"{label}: results differ")


rng = np.random.default_rng(11)
for p, dim, noise, zero_rows in [(613, 64, 1.1, False), (3000, 512, 4.0, False),
                                 (10, 8, 0.7, False), (257, 16, 0.9, True)]:
    ids = rng.standard_normal((p, dim))
    issame = rng.random(p) < 0.5
    orig = np.empty((2 * p, dim), np.float32)
    for i in range(p):
        a = ids[i]
        b = ids[i] if issame[i] else rng.standard_normal(dim)
        orig[2 * i] = a + noise * rng.standard_normal(dim)
        orig[2 * i + 1] = b + noise * rng.standard_normal(dim)
    orig *= 7.0
    flip = (orig + 2.0 * rng.standard_normal(orig.shape)).astype(np.float32)
    if zero_rows:
        orig[5] = 0
        flip[5] = 0
    path = os.path.join(WORK, f"emb_{p}.bin")
    with open(path, "wb") as f:
        f.write(struct.pack("<qi", p, dim) + issame.astype(np.uint8).tobytes() + orig.tobytes()
                + flip.tobytes())
    r = subprocess.run([TOOL, "protocol", path], capture_output=True, text=True)
    check(r.returncode == 0, f"P={p}: {r.stdout}")
    if r.returncode == 0:
        compare(f"P={p} dim={dim}", parse(r.stdout), reference(orig, flip, issame))

# too few pairs for 10 folds
path = os.path.join(WORK, "emb_9.bin")
with open(path, "wb") as f:
    f.write(struct.pack("<qi", 9, 2) + bytes(9) + bytes(2 * 2 * 9 * 2 * 4))
r = subprocess.run([TOOL, "protocol", path], capture_output=True, text=True)
check(r.returncode == 2, "P=9 must be refused")

# ---- a .bin end to end
p = 60
imgs, issame = [], []
base = [cv2.GaussianBlur(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8), (0, 0), 9)
        for _ in range(2 * p)]
for i in range(p):
    same = bool(i % 3)
    a = base[2 * i]
    b = base[2 * i] if same else base[2 * i + 1]
    for img in (a, b):
        jitter = np.clip(img.astype(int) + rng.integers(-25, 26, img.shape), 0, 255).astype(np.uint8)
        imgs.append(cv2.imencode(".jpg", jitter, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    issame.append(same)
binpath = os.path.join(WORK, "lfw.bin")
with open(binpath, "wb") as f:
    pickle.dump((imgs, issame), f, protocol=4)


def feature(x):  # x: CHW float32 normalized
    return np.array([[x[c, gy * 28:(gy + 1) * 28, gx * 28:(gx + 1) * 28].astype(np.float64).mean()
                      for gy in range(4) for gx in range(4)] for c in range(3)],
                    dtype=np.float32).reshape(-1)


orig = np.empty((2 * p, 48), np.float32)
flip = np.empty((2 * p, 48), np.float32)
for i, jpg in enumerate(imgs):
    x = to_input(decode_rgb(jpg))
    orig[i] = feature(x)
    flip[i] = feature(x[:, :, ::-1])
r = subprocess.run([TOOL, "bin", binpath], capture_output=True, text=True)
check(r.returncode == 0, f"bin: {r.stdout}")
if r.returncode == 0:
    res, ref = parse(r.stdout), reference(orig, flip, issame)
    print(f".bin: ours xnorm={res['xnorm']:.6f} acc={res['acc']:.5f}+-{res['std']:.5f}; "
          f"cv2+numpy xnorm={ref[0]:.6f} acc={ref[1]:.5f}+-{ref[2]:.5f}")
    check(abs(res["xnorm"] - ref[0]) < 1e-4 * ref[0] and abs(res["acc"] - ref[1]) < 0.02,
          ".bin end to end differs")
# a .bin with a bad image is refused at load, naming the image
imgs[7] = b"not a jpeg"
with open(binpath, "wb") as f:
    pickle.dump((imgs, issame), f, protocol=4)
r = subprocess.run([TOOL, "bin", binpath], capture_output=True, text=True)
check(r.returncode == 2 and "image 7" in r.stdout, f"bad image: {r.stdout.strip()}")
print(f"{len(fail)} failure(s)")
sys.exit(1 if fail else 0)
