"""Independent reader for TensorBoard event files (TFRecord framing, masked CRC-32C, the
Event/Summary protobuf fields facetrain writes). Shared by the trainer tests."""
import struct


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(b, i):
    v = s = 0
    while True:
        x = b[i]
        i += 1
        v |= (x & 0x7F) << s
        s += 7
        if not x & 0x80:
            return v, i


def fields(b):
    i, out = 0, []
    while i < len(b):
        key, i = varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 1:
            v = b[i:i + 8]
            i += 8
        elif wt == 5:
            v = b[i:i + 4]
            i += 4
        elif wt == 2:
            n, i = varint(b, i)
            v = b[i:i + n]
            i += n
        else:
            raise ValueError(f"wire type {wt}")
        out.append((num, wt, v))
    return out


def event(b):
    ev = {"wall_time": 0.0, "step": 0}
    for num, wt, v in fields(b):
        if num == 1:
            ev["wall_time"] = struct.unpack("<d", v)[0]
        elif num == 2:
            ev["step"] = v
        elif num == 3:
            ev["file_version"] = v.decode()
        elif num == 10:
            ev["source_metadata"] = {n: x.decode() for n, _, x in fields(v)}
        elif num == 5:
            vals = []
            for n, _, val in fields(v):
                assert n == 1
                d = {}
                for n2, w2, x in fields(val):
                    if n2 == 1:
                        d["tag"] = x.decode()
                    elif n2 == 2:
                        d["simple_value"] = struct.unpack("<f", x)[0]
                vals.append(d)
            ev["summary"] = vals
    return ev


def read_events(path):
    """All events of a file; raises ValueError on a bad CRC."""
    raw = open(path, "rb").read()
    events, i = [], 0
    while i < len(raw):
        (n,) = struct.unpack("<Q", raw[i:i + 8])
        if struct.unpack("<I", raw[i + 8:i + 12])[0] != masked(raw[i:i + 8]):
            raise ValueError("length crc")
        data = raw[i + 12:i + 12 + n]
        if struct.unpack("<I", raw[i + 12 + n:i + 16 + n])[0] != masked(data):
            raise ValueError("data crc")
        events.append(event(data))
        i += 16 + n
    return events
