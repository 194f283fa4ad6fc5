"""Helpers for the ft-ingest tests: a RecordIO writer and reader written from the format
description (docs/formats.md sections 1-2, independent of the C code), test images, and a
reader for the dump that ft-test-ftdb-dump writes from an LMDB dataset.

Run with the system interpreter (/usr/bin/python3: numpy and cv2)."""
import os
import struct

import cv2
import numpy as np

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)


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


# ---------------------------------------------------------------- RecordIO writing

def segments(payload):
    """Split a payload the way dmlc's writer does (magic at 4-aligned offsets is cut out)."""
    out, dptr = [], 0
    n4 = len(payload) // 4 * 4
    for i in range(0, n4, 4):
        if payload[i:i + 4] == MAGIC_BYTES:
            out.append((1 if dptr == 0 else 2, payload[dptr:i]))
            dptr = i + 4
    out.append((3 if dptr else 0, payload[dptr:]))
    return out


def encode_record(payload):
    b = bytearray()
    for cflag, part in segments(payload):
        b += struct.pack("<II", MAGIC, (cflag << 29) | len(part)) + part
        b += b"\0" * ((4 - len(part) % 4) % 4)
    return bytes(b)


def pack(label, img, id_=0, id2=0):
    """mxnet pack(): a number gives flag 0, a list gives flag=len with the floats after."""
    if isinstance(label, (list, tuple)):
        return struct.pack("<IfQQ", len(label), 0.0, id_, id2) + \
            struct.pack("<%df" % len(label), *label) + img
    return struct.pack("<IfQQ", 0, float(label), id_, id2) + img


class RecWriter:
    def __init__(self, folder):
        os.makedirs(folder, exist_ok=True)
        self.rec = open(os.path.join(folder, "train.rec"), "wb")
        self.idx = open(os.path.join(folder, "train.idx"), "w")

    def write(self, key, payload):
        self.idx.write("%d\t%d\n" % (key, self.rec.tell()))
        self.rec.write(encode_record(payload))

    def close(self):
        self.rec.close()
        self.idx.close()


def write_release(folder, labels, header=True, array_labels=False, split_keys=(),
                  property_classes=None, seed=0):
    """Insightface layout: images keys 1..N grouped by class, identity records, header key 0
    last (RecBuilder order). labels: class of each image, non-decreasing. Records whose key is
    in split_keys carry the magic in their id field, so the writer splits them (cflag 1/3).
    Without header: im2rec layout, keys 0..N-1. Returns {key: (label, jpeg)}."""
    w = RecWriter(folder)
    samples = {}
    first = 1 if header else 0
    for i, lab in enumerate(labels):
        key = first + i
        jpg = make_jpeg(seed * 1000003 + key)
        id_ = MAGIC if key in split_keys else key
        lab_field = [float(lab), 0.0] if array_labels else lab
        w.write(key, pack(lab_field, jpg, id_))
        samples[key] = (lab, jpg)
    if header:
        n = len(labels)
        classes = sorted(set(labels))
        for c in classes:
            ks = [first + i for i, lab in enumerate(labels) if lab == c]
            w.write(n + 1 + c, pack([float(ks[0]), float(ks[-1] + 1)], b""))
        w.write(0, pack([float(n + 1), float(n + 1 + len(classes))], b"", 0, 1))
    w.close()
    if property_classes is not None:
        with open(os.path.join(folder, "property"), "w") as f:
            f.write("%d,112,112\n" % property_classes)
    return samples


# ---------------------------------------------------------------- RecordIO reading

def read_idx(folder):
    keys, offs = [], {}
    with open(os.path.join(folder, "train.idx")) as f:
        for line in f:
            if line.strip():
                k, o = line.strip().split("\t")
                keys.append(int(k))
                offs[int(k)] = int(o)
    return keys, offs


def read_record(data, off):
    out = bytearray()
    while True:
        magic, lrec = struct.unpack_from("<II", data, off)
        assert magic == MAGIC, "bad magic at %d" % off
        n, cflag = lrec & ((1 << 29) - 1), lrec >> 29
        out += data[off + 8:off + 8 + n]
        off += 8 + (n + 3) // 4 * 4
        if cflag in (0, 3):
            return bytes(out)
        out += MAGIC_BYTES


def unpack(rec):
    flag, label, _, _ = struct.unpack_from("<IfQQ", rec, 0)
    if flag > 0:
        labels = struct.unpack_from("<%df" % flag, rec, 24)
        return labels[0], flag, rec[24 + 4 * flag:]
    return label, flag, rec[24:]


def arcface_samples(folder):
    """[(key, label, jpeg)] in arcface_torch's MXFaceDataset order."""
    keys, offs = read_idx(folder)
    with open(os.path.join(folder, "train.rec"), "rb") as f:
        data = f.read()
    lab0, flag0, _ = unpack(read_record(data, offs[0]))
    order = list(range(1, int(lab0))) if flag0 > 0 else keys
    out = []
    for k in order:
        lab, _, img = unpack(read_record(data, offs[k]))
        out.append((k, int(lab), img))
    return out


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
