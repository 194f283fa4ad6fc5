"""pyrio: a small, independent RecordIO implementation in plain Python, written from
docs/formats.md sections 1-2, used as the oracle for facetrain's C library in
test_recordio.py. Strict: any framing error raises RioError naming the byte offset."""
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
