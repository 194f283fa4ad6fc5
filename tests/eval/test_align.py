"""5-point alignment (export/eval/align.h, formats.md 4.2) against independent references:
  1. the similarity estimate vs pyref.ijb.umeyama (numpy SVD with skimage's rank cases) on
     random landmark sets: proper, mirrored (det < 0), collinear (rank 1); |dM| <= 1e-9;
     coincident landmarks are refused;
  2. the warp vs cv2.warpAffine(img, M, (ow, oh), borderValue=0.0) on random images and
     transforms (faces in the frame, half outside, shrinking and enlarging): bit-identical;
  3. recovery: a smooth 112x112 image placed into a larger loose crop by a known similarity,
     landmarks = that similarity applied to the template (printed to 3 decimals, as the IJB
     files are): the estimate is the inverse transform to 2e-3, and the crop is the original
     up to the two bilinear resamplings (mean |error| <= 1.5, 99th percentile <= 6 grey levels
     inside the face; the figures are printed).
Usage: test_align.py EV_ALIGN WORKDIR
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402

cv2, np = pyref.need("cv2", "numpy")
from pyref.ijb import TEMPLATE, umeyama  # noqa: E402

TOOL, WORK = sys.argv[1], sys.argv[2]
os.makedirs(WORK, exist_ok=True)
fail = pyref.FAILS  # pyref.check records here
check = pyref.check


def run(*args, ok=True):
    p = subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True)
    if ok and p.returncode != 0:
        print(p.stderr)
        raise SystemExit("FAIL: ev_align %s exited %d" % (args[0], p.returncode))
    return p


def parse_m(out):
    return np.array([[float(v) for v in line.split()] for line in out.strip().splitlines()])


def write_ppm(path, rgb):
    h, w, _ = rgb.shape
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        f.write(np.ascontiguousarray(rgb, np.uint8).tobytes())


def read_ppm(path):
    with open(path, "rb") as f:
        data = f.read()
    head = data.split(maxsplit=4)
    w, h = int(head[1]), int(head[2])
    return np.frombuffer(head[4], np.uint8).reshape(h, w, 3)


def similarity(scale, angle, tx, ty, mirror=False):
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    m = np.array([[c, -s, tx], [s, c, ty]])
    if mirror:
        m[:, 0] *= -1
    return m


def apply(m, pts):
    pts = np.asarray(pts, np.float64)
    return pts @ m[:, :2].T + m[:, 2]


rng = np.random.default_rng(5)

# 1. the estimate
worst = 0.0
cases = []
for i in range(40):
    m = similarity(rng.uniform(0.3, 3), rng.uniform(-np.pi, np.pi), rng.uniform(-50, 250),
                   rng.uniform(-50, 250), mirror=i % 5 == 4)
    cases.append(apply(m, TEMPLATE) + rng.normal(0, 2.0, (5, 2)))
cases.append(np.array([[10, 10], [20, 20], [30, 30], [40, 40], [55, 55]], float))  # rank 1
cases.append(np.array([[10, 50], [20, 50], [30, 50], [40, 50], [55, 50]], float))  # rank 1
for lmk in cases:
    lmk32 = np.asarray(lmk, np.float32)
    ours = parse_m(run("estimate", *["%.9g" % v for v in lmk32.ravel()]).stdout)
    ref = umeyama(lmk32, TEMPLATE)
    err = np.max(np.abs(ours - ref)) / max(1.0, np.max(np.abs(ref)))
    worst = max(worst, err)
print("estimate: %d landmark sets, max relative |dM| vs numpy Umeyama %.2e" % (len(cases), worst))
check(worst <= 1e-9, "similarity estimate differs from the numpy Umeyama")
p = run("estimate", *(["12.5", "40.25"] * 5), ok=False)
check(p.returncode != 0 and p.stderr.count("\n") == 1,
      "coincident landmarks must be refused with one line (got %d: %r)" % (p.returncode, p.stderr))

# 2. the warp, bit for bit against OpenCV
src = os.path.join(WORK, "src.ppm")
dst = os.path.join(WORK, "dst.ppm")
n_px = n_diff = 0
for i in range(24):
    h, w = int(rng.integers(60, 300)), int(rng.integers(60, 300))
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    write_ppm(src, img)
    if i % 3 == 0:  # a general affine map
        m = np.array([[rng.uniform(0.3, 2), rng.uniform(-0.5, 0.5), rng.uniform(-80, 80)],
                      [rng.uniform(-0.5, 0.5), rng.uniform(0.3, 2), rng.uniform(-80, 80)]])
    else:
        lmk = apply(similarity(rng.uniform(0.4, 2.5), rng.uniform(-1.5, 1.5), rng.uniform(-60, w),
                               rng.uniform(-60, h), mirror=i % 7 == 6), TEMPLATE)
        m = umeyama(np.asarray(lmk, np.float32), TEMPLATE)
    ow, oh = (112, 112) if i % 4 else (int(rng.integers(20, 200)), int(rng.integers(20, 200)))
    run("warp", src, dst, ow, oh, *["%.17g" % v for v in m.ravel()])
    ours = read_ppm(dst)
    ref = cv2.warpAffine(img, m, (ow, oh), borderValue=0.0)
    n_px += ref.size
    n_diff += int(np.count_nonzero(ours != ref))
print("warp: %d images, %d of %d values differ from cv2.warpAffine %s" %
      (24, n_diff, n_px, cv2.__version__))
check(n_diff == 0, "warp differs from cv2.warpAffine")

# 3. recovery of a known crop
yy, xx = np.mgrid[0:112, 0:112].astype(np.float64)
face = np.zeros((112, 112, 3))
for c in range(3):
    for _ in range(6):
        fx, fy, ph = rng.uniform(0.02, 0.12), rng.uniform(0.02, 0.12), rng.uniform(0, 6.3)
        face[..., c] += np.sin(fx * xx + fy * yy + ph)
face = np.clip(128 + 20 * face, 0, 255).astype(np.uint8)
errs, m_errs = [], []
for i in range(6):
    s = similarity(rng.uniform(0.8, 1.8), rng.uniform(-0.6, 0.6), 0, 0)
    corners = apply(s, [[0, 0], [112, 0], [0, 112], [112, 112]])
    s[:, 2] = 20 - corners.min(axis=0)  # the face inside a 20-pixel margin
    size = tuple(int(v) for v in np.ceil(apply(s, [[0, 0], [112, 0], [0, 112], [112, 112]])
                                         .max(axis=0) + 20))
    loose = cv2.warpAffine(face, s, size, borderValue=0.0)
    write_ppm(src, loose)
    lmk = np.round(apply(s, TEMPLATE), 3)
    out = run("face", src, dst, *["%.3f" % v for v in lmk.ravel()])
    m = parse_m(out.stdout)
    inv = cv2.invertAffineTransform(s)
    m_errs.append(np.max(np.abs(m - inv) / np.maximum(1, np.abs(inv))))
    crop = read_ppm(dst).astype(np.int32)
    inner = np.abs(crop[4:-4, 4:-4] - face[4:-4, 4:-4].astype(np.int32))
    errs.append(inner)
    cv_crop = cv2.warpAffine(loose, umeyama(np.asarray(lmk, np.float32), TEMPLATE), (112, 112),
                             borderValue=0.0)
    check(np.array_equal(crop, cv_crop), "recovered crop %d differs from the cv2 pipeline" % i)
errs = np.concatenate([e.ravel() for e in errs])
print("recovery: M vs the inverse of the known similarity %.2e; crop vs the original face: "
      "mean |err| %.3f, 99th percentile %d, max %d grey levels" %
      (max(m_errs), errs.mean(), np.percentile(errs, 99), errs.max()))
check(max(m_errs) <= 2e-3, "estimated transform is not the inverse of the known one")
check(errs.mean() <= 1.5 and np.percentile(errs, 99) <= 6, "recovered crop differs too much")

if fail:
    print("%d check(s) failed" % len(fail))
    sys.exit(1)
print("ok")
