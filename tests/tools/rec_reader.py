"""An independent reader of RecordIO (.rec/.idx), the IRHeader and the insightface header layout,
written from docs/formats.md sections 1-2 for the tools tests. Shares no code with recordio/."""
import struct

MAGIC = 0xCED7230A


def read_idx(path):
    """[(key, offset)] in file order."""
    out = []
    with open(path) as f:
        for line in f:
            if line.strip():
                k, o = line.strip().split("\t")
                out.append((int(k), int(o)))
    return out


def read_record_at(data, off):
    """Reassemble the logical record whose first segment starts at off -> (payload, next_off)."""
    out = bytearray()
    first = True
    while True:
        magic, lrec = struct.unpack_from("<II", data, off)
        assert magic == MAGIC, "bad magic at %d" % off
        cflag, n = lrec >> 29, lrec & ((1 << 29) - 1)
        assert cflag in ((0, 1) if first else (2, 3)), "bad cflag %d at %d" % (cflag, off)
        out += data[off + 8:off + 8 + n]
        off += 8 + n + (4 - n % 4) % 4
        if cflag in (0, 3):
            return bytes(out), off
        out += struct.pack("<I", MAGIC)
        first = False


def scan(data):
    """Every record in file order: [(offset, payload)]."""
    recs, off = [], 0
    while off < len(data):
        payload, nxt = read_record_at(data, off)
        recs.append((off, payload))
        off = nxt
    assert off == len(data)
    return recs


def unpack(payload):
    """-> (flag, label, id, id2, labels tuple or None, image bytes)."""
    flag, label, id1, id2 = struct.unpack_from("<IfQQ", payload, 0)
    if flag > 0:
        labels = struct.unpack_from("<%df" % flag, payload, 24)
        return flag, label, id1, id2, labels, payload[24 + 4 * flag:]
    return flag, label, id1, id2, None, payload[24:]


def load(rec_path, idx_path):
    """-> (idx list, {key: unpacked}); also checks that idx offsets are exactly the records."""
    data = open(rec_path, "rb").read()
    idx = read_idx(idx_path)
    recs = scan(data)
    assert [o for o, _ in recs] == [o for _, o in idx], "idx offsets differ from the records"
    by_key = {}
    for (key, _), (_, payload) in zip(idx, recs):
        assert key not in by_key, "duplicate key %d" % key
        by_key[key] = unpack(payload)
    return idx, by_key
