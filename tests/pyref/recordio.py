"""pyref.recordio: a small, independent RecordIO implementation in plain Python, written from
docs/formats.md sections 1-2 (RecordIO framing, .idx, IRHeader, the insightface release
layout), the oracle for facetrain's C library (recordio/test_recordio.py), ft-synth and
ft-pack (tools/), ft-ingest (ingest/) and the stage test. Shares no code with recordio/.
Strict: any framing error raises RioError naming the byte offset.

  encode / write / RecWriter / write_release      writing (dmlc's splitting of the magic)
  read_at / read_all / parse_idx / read_idx / load reading
  pack / unpack (label bits), pack_mx / unpack_floats (mxnet's pack(): a number or a list)
  arcface_samples                                  the samples in MXFaceDataset's order
"""
import os
import struct

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
IRH = struct.Struct("<IfQQ")  # flag, label, id, id2: 24 bytes


class RioError(Exception):
    pass


def pad4(n):
    return (4 - n % 4) % 4


def segment(cflag, body):
    return struct.pack("<II", MAGIC, (cflag << 29) | len(body)) + body + b"\0" * pad4(len(body))


def encode(payload):
    """On-disk bytes of one logical record: split wherever the magic sits at a 4-aligned offset."""
    if len(payload) >= 1 << 29:
        raise RioError("record too large")
    cuts = [i for i in range(0, len(payload) // 4 * 4, 4) if payload[i:i + 4] == MAGIC_BYTES]
    if not cuts:
        return segment(0, payload)
    out, start = [], 0
    for n, i in enumerate(cuts):
        out.append(segment(1 if n == 0 else 2, payload[start:i]))
        start = i + 4
    out.append(segment(3, payload[start:]))
    return b"".join(out)


def write(records):
    """records: [(key, payload)] -> (rec bytes, idx text)."""
    rec, idx = bytearray(), []
    for key, payload in records:
        idx.append("%d\t%d\n" % (key, len(rec)))
        rec += encode(payload)
    return bytes(rec), "".join(idx)


def read_at(data, off):
    """(payload, next offset) of the logical record starting at off."""
    parts, pos, first = [], off, True
    while True:
        if len(data) - pos < 8:
            raise RioError("offset %d: truncated segment header" % pos)
        magic, lrec = struct.unpack_from("<II", data, pos)
        if magic != MAGIC:
            raise RioError("offset %d: bad magic 0x%08x" % (pos, magic))
        cflag, n = lrec >> 29, lrec & ((1 << 29) - 1)
        if cflag > 3 or (first and cflag in (2, 3)) or (not first and cflag in (0, 1)):
            raise RioError("offset %d: unexpected cflag %d" % (pos, cflag))
        if pos + 8 + n + pad4(n) > len(data):
            raise RioError("offset %d: segment runs past the end" % pos)
        if data[pos + 8 + n:pos + 8 + n + pad4(n)] != b"\0" * pad4(n):
            raise RioError("offset %d: nonzero padding" % pos)
        parts.append(data[pos + 8:pos + 8 + n])
        pos += 8 + n + pad4(n)
        if cflag in (0, 3):
            return MAGIC_BYTES.join(parts), pos
        first = False


def read_all(data):
    """[(offset, payload, extent)] of every record, in file order."""
    out, pos = [], 0
    while pos < len(data):
        payload, nxt = read_at(data, pos)
        out.append((pos, payload, nxt - pos))
        pos = nxt
    return out


def parse_idx(text):
    """(keys in file order, {key: offset} with later duplicates winning)."""
    keys, table = [], {}
    for line in text.splitlines():
        if not line.strip():
            continue
        k, o = line.strip().split("\t")
        keys.append(int(k))
        table[int(k)] = int(o)
    return keys, table


def pack(flag_labels, label, id_, id2, img):
    """IRHeader + labels + image. flag_labels: None for a scalar label, else a list of float32s."""
    if flag_labels is None:
        return IRH.pack(0, label, id_, id2) + img
    return (IRH.pack(len(flag_labels), 0.0, id_, id2)
            + struct.pack("<%df" % len(flag_labels), *flag_labels) + img)


def unpack(payload):
    """(flag, label bits, id, id2, [label bits], image bytes)."""
    if len(payload) < 24:
        raise RioError("payload shorter than the IRHeader")
    flag, _, id_, id2 = IRH.unpack_from(payload)
    label_bits = struct.unpack_from("<I", payload, 4)[0]
    if 24 + 4 * flag > len(payload):
        raise RioError("labels run past the payload")
    labels = list(struct.unpack_from("<%dI" % flag, payload, 24))
    return flag, label_bits, id_, id2, labels, payload[24 + 4 * flag:]


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def bits_f32(b):
    return struct.unpack("<f", struct.pack("<I", b))[0]


# ---------------------------------------------------------------- float views, mxnet pack()

def pack_mx(label, img, id_=0, id2=0):
    """mxnet pack(): a number gives flag 0, a list gives flag = len with the floats after."""
    if isinstance(label, (list, tuple)):
        return pack(list(label), 0.0, id_, id2, img)
    return pack(None, float(label), id_, id2, img)


def unpack_floats(payload):
    """(flag, label, id, id2, labels tuple or None, image bytes), the labels as floats."""
    flag, label, id_, id2 = IRH.unpack_from(payload)
    if 24 + 4 * flag > len(payload):
        raise RioError("labels run past the payload")
    if flag > 0:
        labels = struct.unpack_from("<%df" % flag, payload, 24)
        return flag, label, id_, id2, labels, payload[24 + 4 * flag:]
    return flag, label, id_, id2, None, payload[24:]


# ---------------------------------------------------------------- files and folders

def read_idx(path):
    """[(key, offset)] of an .idx file, in file order."""
    out = []
    with open(path) as f:
        for line in f:
            if line.strip():
                k, o = line.strip().split("\t")
                out.append((int(k), int(o)))
    return out


def idx_table(path):
    """parse_idx of an .idx file: (keys in file order, {key: offset})."""
    with open(path) as f:
        return parse_idx(f.read())


def load(rec_path, idx_path):
    """-> (idx list, {key: unpack_floats(payload)}); also checks that the .idx offsets are
    exactly the records of the .rec, in order, and that no key repeats."""
    with open(rec_path, "rb") as f:
        data = f.read()
    idx = read_idx(idx_path)
    recs = read_all(data)
    if [o for o, _, _ in recs] != [o for _, o in idx]:
        raise RioError("%s: idx offsets differ from the records" % idx_path)
    by_key = {}
    for (key, _), (_, payload, _) in zip(idx, recs):
        if key in by_key:
            raise RioError("%s: duplicate key %d" % (idx_path, key))
        by_key[key] = unpack_floats(payload)
    return idx, by_key


def arcface_samples(folder):
    """[(key, label, jpeg)] of folder/train.rec in arcface_torch's MXFaceDataset order: with an
    insightface header (key 0, flag > 0) the image keys 1 .. labels[0] - 1, else every key
    of the .idx in file order; the label is labels[0] when the record has a label array."""
    keys, offs = idx_table(os.path.join(folder, "train.idx"))
    with open(os.path.join(folder, "train.rec"), "rb") as f:
        data = f.read()
    head = unpack_floats(read_at(data, offs[0])[0]) if 0 in offs else None
    order = list(range(1, int(head[4][0]))) if head and head[0] > 0 else keys
    out = []
    for k in order:
        flag, label, _, _, labels, img = unpack_floats(read_at(data, offs[k])[0])
        out.append((k, int(labels[0] if flag > 0 else label), img))
    return out


class RecWriter:
    """folder/train.rec + train.idx, one record at a time."""

    def __init__(self, folder):
        os.makedirs(folder, exist_ok=True)
        self.rec = open(os.path.join(folder, "train.rec"), "wb")
        self.idx = open(os.path.join(folder, "train.idx"), "w")

    def write(self, key, payload):
        self.idx.write("%d\t%d\n" % (key, self.rec.tell()))
        self.rec.write(encode(payload))

    def close(self):
        self.rec.close()
        self.idx.close()


def write_release(folder, labels, jpeg, header=True, array_labels=False, split_keys=(),
                  property_classes=None):
    """Insightface layout: image keys 1..N grouped by class, identity records, header key 0
    last (RecBuilder order). labels: class of each image, non-decreasing; jpeg(key): the
    image bytes of a key. Records whose key is in split_keys carry the magic in their id
    field, so the writer splits them (cflag 1/3). Without header: im2rec layout, keys
    0..N-1. Returns {key: (label, jpeg)}."""
    w = RecWriter(folder)
    samples = {}
    first = 1 if header else 0
    for i, lab in enumerate(labels):
        key = first + i
        jpg = jpeg(key)
        id_ = MAGIC if key in split_keys else key
        lab_field = [float(lab), 0.0] if array_labels else lab
        w.write(key, pack_mx(lab_field, jpg, id_))
        samples[key] = (lab, jpg)
    if header:
        n = len(labels)
        classes = sorted(set(labels))
        for c in classes:
            ks = [first + i for i, lab in enumerate(labels) if lab == c]
            w.write(n + 1 + c, pack_mx([float(ks[0]), float(ks[-1] + 1)], b""))
        w.write(0, pack_mx([float(n + 1), float(n + 1 + len(classes))], b"", 0, 1))
    w.close()
    if property_classes is not None:
        with open(os.path.join(folder, "property"), "w") as f:
            f.write("%d,112,112\n" % property_classes)
    return samples
