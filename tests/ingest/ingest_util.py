"""Helpers for the ft-ingest tests (and the stage test): test images, releases written with
them through the RecordIO oracle (pyref.recordio), and a reader for the dump that
ft-test-ftdb-dump writes from an LMDB dataset.

Run with the system interpreter (/usr/bin/python3: numpy and cv2)."""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402
from pyref import recordio as rio  # noqa: E402

cv2, np = pyref.need("cv2", "numpy")


# ---------------------------------------------------------------- images

def make_jpeg(seed, size=112, quality=90):
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = rng.integers(0, 255, 3, dtype=np.uint8)
    for _ in range(4):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(5, size // 3))
        cv2.circle(img, (x, y), r, tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    img += rng.integers(0, 20, img.shape, dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


# ---------------------------------------------------------------- RecordIO releases

def write_release(folder, labels, seed=0, **kw):
    """pyref.recordio.write_release with this module's test images (make_jpeg of
    seed * 1000003 + key). Returns {key: (label, jpeg)}."""
    return rio.write_release(folder, labels, lambda key: make_jpeg(seed * 1000003 + key), **kw)


# ---------------------------------------------------------------- LMDB dump

def read_dump(path):
    """Values written by ft-test-ftdb-dump: [(label, h, w, src_key, jpeg)] in index order."""
    with open(path, "rb") as f:
        data = f.read()
    out, off = [], 0
    while off < len(data):
        (n,) = struct.unpack_from("<Q", data, off)
        v = data[off + 8:off + 8 + n]
        off += 8 + n
        label, h, w, jl, sk = struct.unpack_from("<iHHII", v, 0)
        assert jl == n - 16
        out.append((label, h, w, sk, v[16:]))
    return out
