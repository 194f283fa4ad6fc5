#!/usr/bin/python3
"""RecordIO round trips between facetrain's C library (through rio_tool) and pyref.recordio,
an independent Python implementation of docs/formats.md sections 1-2.

usage: test_recordio.py PATH/TO/rio_tool      exit 0 pass, 1 fail, 77 skip
"""
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
from pyref import recordio as rio  # noqa: E402

TOOL = None
TMP = None
SEED = 20240611
FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def tool(*args, stdin=None):
    p = subprocess.run([TOOL] + [str(a) for a in args], input=stdin, capture_output=True,
                       text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def path(name):
    return os.path.join(TMP, name)


def put(name, data):
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path(name), mode) as f:
        f.write(data)
    return path(name)


def get(name, mode="rb"):
    with open(path(name), mode) as f:
        return f.read()


def hx(b):
    return b.hex() if b else "-"


def c_write(name, records, with_idx=True):
    """Write [(key, payload)] with the C writer; returns True on success."""
    lines = "".join("raw %d %s\n" % (k, hx(p)) for k, p in records)
    rc, out, err = tool("write", path(name + ".rec"), path(name + ".idx") if with_idx else "-",
                        stdin=lines)
    return check(rc == 0, "C write %s: rc %d %s" % (name, rc, err.strip()))


def c_dump(*args, cmd="dump"):
    rc, out, err = tool(cmd, *args)
    if not check(rc == 0, "C %s %s: rc %d %s" % (cmd, args, rc, err.strip())):
        return []
    return [json.loads(line) for line in out.splitlines()]


def check_irh(rec, payload, what):
    """C's IRHeader view of a record must match rio.unpack."""
    try:
        flag, label, id_, id2, labels, img = rio.unpack(payload)
    except rio.RioError:
        return check(rec["irh"] is None, what + ": C unpacked a record pyref.recordio rejects")
    irh = rec["irh"]
    if not check(irh is not None, what + ": C rejected the IRHeader"):
        return False
    label0 = labels[0] if flag else label
    got = (irh["flag"], irh["label"], irh["id"], irh["id2"], irh["labels"], irh["label0"],
           bytes.fromhex(irh["img"]))
    return check(got == (flag, label, id_, id2, labels, label0, img), what + ": IRHeader differs")


# ------------------------------------------------------------------------- payload corpus

def corpus():
    rng = random.Random(SEED)
    M = rio.MAGIC_BYTES

    def rnd(n):
        return bytes(rng.randrange(256) for _ in range(n))

    out = [rnd(n) for n in range(10)]  # lengths 0..9
    for n in range(4, 41):  # the magic at every aligned position, and at unaligned ones
        for pos in range(0, n - 3):
            b = bytearray(b"\xaa" * n)
            b[pos:pos + 4] = M
            out.append(bytes(b))
    out += [M, M * 2, M * 3 + b"x", b"ab" + M + M, M + b"\0" * 4 + M, b"\0" * 8 + M]
    # IRHeaders holding the magic in each field, scalar and multi-float
    magic_f = rio.bits_f32(rio.MAGIC)
    out.append(rio.pack(None, magic_f, 1, 0, b"jpg"))
    out.append(rio.pack(None, 2.0, rio.MAGIC, rio.MAGIC, b""))
    out.append(rio.pack(None, 2.0, rio.MAGIC << 32, 0, M + b"tail"))
    out.append(rio.pack([1.0, magic_f, 3.5], 0.0, 7, 0, b"img" + M))
    out.append(struct.pack("<I", rio.MAGIC) + b"\0" * 20)  # flag field == magic
    # larger payloads, including ones longer than the reader's 1 MiB window
    big = bytearray(rnd(100_000))
    for pos in (0, 4096, 65532, 99_996):
        big[pos:pos + 4] = M
    out.append(bytes(big))
    huge = bytearray(rnd(2_600_000))
    for pos in (1 << 20, (1 << 20) + 4, 2_599_996, 17):
        huge[pos:pos + 4] = M
    out.append(bytes(huge))
    return out


# ------------------------------------------------------------------------- cases

def test_vectors():
    h = rio.pack(None, 3.0, 1, 0, b"")
    v1 = bytes.fromhex("0a23d7ce1b000000" "0000000000004040" "0100000000000000"
                       "0000000000000000" "616263" "00")
    v2 = bytes.fromhex("0a23d7ce18000020") + h + bytes.fromhex("0a23d7ce05000060" "78797a3132000000")
    p1, p2 = h + b"abc", h + rio.MAGIC_BYTES + b"xyz12"
    check(rio.encode(p1) == v1 and rio.encode(p2) == v2, "pyref.recordio reproduces the test vectors")
    if c_write("vec", [(0, p1), (1, p2)]):
        check(get("vec.rec") == v1 + v2, "C writer reproduces the formats.md test vectors")
        check(get("vec.idx", "r") == "0\t0\n1\t%d\n" % len(v1), "test vector .idx")
    rc, _, err = tool("write", path("vecp.rec"), "-",
                      stdin="pack 0 s:40400000 1 0 616263\n")
    check(rc == 0 and get("vecp.rec") == v1, "rio_pack + writer give test vector 1 " + err)
    recs = c_dump(put("v.rec", v1 + v2))
    check([bytes.fromhex(r["hex"]) for r in recs] == [p1, p2], "C reads the test vectors")
    check([r["extent"] for r in recs] == [len(v1), len(v2)], "extents of the test vectors")


def test_c_writes_python_reads():
    payloads = corpus()
    rng = random.Random(SEED + 1)
    keys = rng.sample(range(10 * len(payloads)), len(payloads))  # unsorted, unique
    records = list(zip(keys, payloads))
    if not c_write("cw", records):
        return
    rec, idx = get("cw.rec"), get("cw.idx", "r")
    want_rec, want_idx = rio.write(records)
    check(rec == want_rec, "C .rec is byte-identical to pyref.recordio's")
    check(idx == want_idx, "C .idx is identical to pyref.recordio's")
    try:
        got = [p for _, p, _ in rio.read_all(rec)]
        check(got == payloads, "pyref.recordio reads back every payload the C writer wrote")
    except rio.RioError as e:
        check(False, "pyref.recordio rejects the C file: %s" % e)


def test_python_writes_c_reads():
    payloads = corpus()
    records = [(i * 7 % 1000, p) for i, p in enumerate(payloads)]
    rec, idx = rio.write(records)
    put("pw.rec", rec)
    put("pw.idx", idx)
    want = rio.read_all(rec)
    got = c_dump(path("pw.rec"))
    check(len(got) == len(want), "C scan finds %d records (want %d)" % (len(got), len(want)))
    for g, (off, p, ext) in zip(got, want):
        ok = check((g["offset"], bytes.fromhex(g["hex"]), g["extent"]) == (off, p, ext),
                   "C record at offset %d" % off)
        if ok:
            check_irh(g, p, "record at offset %d" % off)
    by_key = c_dump(path("pw.rec"), path("pw.idx"), cmd="dumpidx")
    check([(g["key"], bytes.fromhex(g["hex"])) for g in by_key] == records,
          "C reads every record through the .idx")
    # a scan that starts in the middle (seek) sees the tail of the file
    mid = want[len(want) // 2][0]
    tail = c_dump(path("pw.rec"), mid)
    check([g["offset"] for g in tail] == [w[0] for w in want if w[0] >= mid], "seek + scan")


def test_labels():
    rng = random.Random(SEED + 2)
    lines, want = [], []
    for i in range(40):
        n = rng.randrange(0, 6)
        img = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 30)))
        id_, id2 = rng.randrange(1 << 64), rng.choice([0, 1, rng.randrange(1 << 64)])
        vals = [rio.bits_f32(rio.f32_bits(rng.uniform(-1e6, 1e6))) for _ in range(max(n, 1))]
        if n == 0:
            lines.append("pack %d s:%08x %d %d %s\n" % (i, rio.f32_bits(vals[0]), id_, id2, hx(img)))
            want.append(rio.pack(None, vals[0], id_, id2, img))
        else:
            spec = ",".join("%08x" % rio.f32_bits(v) for v in vals)
            lines.append("pack %d m:%s %d %d %s\n" % (i, spec, id_, id2, hx(img)))
            want.append(rio.pack(vals, 0.0, id_, id2, img))
    rc, _, err = tool("write", path("lab.rec"), path("lab.idx"), stdin="".join(lines))
    if not check(rc == 0, "C pack write: " + err):
        return
    got = [p for _, p, _ in rio.read_all(get("lab.rec"))]
    check(got == want, "rio_pack output equals rio.pack (scalar and multi-float labels)")
    for g, p in zip(c_dump(path("lab.rec")), want):
        check_irh(g, p, "labels record")


def test_idx_order():
    # keys unsorted, key 0 last, key 3 duplicated (the later line wins), CRLF + trailing blank
    records = [(5, b"five"), (3, b"three-old"), (9, b""), (1, b"one"), (3, b"three-new"),
               (0, rio.pack(None, 1.0, 0, 0, b"zero"))]
    rec, idx = rio.write(records)
    put("ord.rec", rec)
    put("ord.idx", idx.replace("\n", "\r\n") + "\n")
    got = c_dump(path("ord.rec"), path("ord.idx"), cmd="dumpidx")
    want = [(k, dict(records)[k]) for k, _ in records]  # dict(): later duplicate wins
    check([(g["key"], bytes.fromhex(g["hex"])) for g in got] == want,
          "idx: unsorted keys, key 0 last, duplicates resolve to the later line")
    rc, out, _ = tool("keys", path("ord.rec"), path("ord.idx"))
    check(rc == 0 and json.loads(out) == {"has_header": 0, "keys": [5, 3, 9, 1, 3, 0]},
          "no header record: image keys are the .idx keys in file order: " + out)


def insightface_records(n_per_class, face2rec2=False):
    """Images grouped by class, identity records, header record (pyref.recordio)."""
    recs, first, key = [], [], 1
    for c, n in enumerate(n_per_class):
        first.append(key)
        for _ in range(n):
            recs.append((key, rio.pack([float(c), 0.0], 0, key, 0, b"\xff\xd8jpeg%d" % key)))
            key += 1
    first.append(key)
    n_img, n_cls = key - 1, len(n_per_class)
    ident = [(n_img + 1 + c, rio.pack([float(first[c]), float(first[c + 1])], 0, 0, 0, b""))
             for c in range(n_cls)]
    head = [(0, rio.pack([float(n_img + 1), float(n_img + n_cls + 1)], 0, 0, 0, b""))]
    return recs + (head + ident if face2rec2 else ident + head), first


def test_insightface():
    sizes = [3, 1, 4, 1, 5, 9, 2, 6]
    recs, first = insightface_records(sizes)
    images = recs[:sum(sizes)]
    lines = "".join("raw %d %s\n" % (k, hx(p)) for k, p in images)
    lines += "meta %d %s\n" % (sum(sizes), ",".join(map(str, first)))
    rc, _, err = tool("write", path("if.rec"), path("if.idx"), stdin=lines)
    if not check(rc == 0, "C insightface write: " + err):
        return
    want_rec, want_idx = rio.write(recs)
    check(get("if.rec") == want_rec and get("if.idx", "r") == want_idx,
          "rio_write_insightface_meta writes identity records, then header key 0 last")
    keys, table = rio.parse_idx(get("if.idx", "r"))
    data = get("if.rec")
    head = rio.unpack(rio.read_at(data, table[0])[0])
    lo, hi = (int(rio.bits_f32(b)) for b in head[4])
    check((head[0], lo, hi) == (2, sum(sizes) + 1, sum(sizes) + len(sizes) + 1), "header record")
    for c in range(len(sizes)):
        r = rio.unpack(rio.read_at(data, table[lo + c])[0])
        check([int(rio.bits_f32(b)) for b in r[4]] == first[c:c + 2], "identity range %d" % c)
    rc, out, err = tool("keys", path("if.rec"), path("if.idx"))
    check(rc == 0 and json.loads(out) == {"has_header": 1, "keys": list(range(1, sum(sizes) + 1))},
          "image keys from the C-written header: " + out + err)
    # the other builder's order (header before the identity records), written by pyref.recordio
    recs2, _ = insightface_records(sizes, face2rec2=True)
    rec2, idx2 = rio.write(recs2)
    put("if2.rec", rec2)
    put("if2.idx", idx2)
    rc, out, err = tool("keys", path("if2.rec"), path("if2.idx"))
    check(rc == 0 and json.loads(out)["keys"] == list(range(1, sum(sizes) + 1)),
          "image keys from a pyref.recordio-written header: " + out + err)
    # a header that names an image key the .idx lacks, and a rec without key 0
    put("if3.idx", "".join("%d\t%d\n" % (k, table[k]) for k in keys if k != 2))
    rc, _, err = tool("keys", path("if.rec"), path("if3.idx"))
    check(rc == 1 and "image key 2" in err, "missing image key is reported: " + err)
    put("if4.idx", "".join("%d\t%d\n" % (k, table[k]) for k in keys if k != 0))
    rc, _, err = tool("keys", path("if.rec"), path("if4.idx"))
    check(rc == 1 and "key 0" in err, "missing key 0 is reported: " + err)


def test_property():
    p = path("property")
    rc, _, err = tool("prop-write", p, 85742, 112, 112)
    check(rc == 0 and get("property", "r") == "85742,112,112\n", "property written " + err)
    put("property2", "93431,112,96\n")
    rc, out, _ = tool("prop-read", path("property2"))
    check(rc == 0 and out == "93431,112,96\n", "property read: " + out)
    for bad in ["85742,112\n", "a,112,112\n", "1,2,3,4\n", "", "-1,112,112\n", "1,2,3\nx\n"]:
        put("property3", bad)
        rc, _, err = tool("prop-read", path("property3"))
        check(rc == 1 and "property3" in err, "bad property %r rejected: %s" % (bad, err))


def expect_error(args, where, reason, what):
    rc, _, err = tool(*args)
    check(rc == 1 and where in err and reason in err,
          "%s: want rc 1 and %r + %r in the message, got rc %d: %s" % (what, where, reason, rc,
                                                                       err.strip()))


def test_corrupt_rec():
    ok = rio.encode(b"A" * 12)  # 20 bytes
    M = rio.MAGIC

    def seg(cflag, body, length=None):
        n = len(body) if length is None else length
        return struct.pack("<II", M, cflag << 29 | n) + body + b"\0" * rio.pad4(len(body))

    cases = [
        ("hdr", ok + seg(0, b"xyzw")[:5], "offset 20:", "truncated segment header"),
        ("payload", ok + seg(0, b"x" * 40)[:30], "offset 20:", "runs past the end"),
        ("pad", ok + seg(0, b"xyz")[:11], "offset 20:", "runs past the end"),
        ("magic", ok + b"\0" * 8 + b"abcd", "offset 20:", "bad magic 0x00000000"),
        ("c3first", ok + seg(3, b"abcd"), "offset 20:", "cflag 3"),
        ("c2first", seg(2, b"abcd"), "offset 0:", "cflag 2"),
        ("c1c0", ok + seg(1, b"abcd") + seg(0, b"efgh"), "offset 32:", "cflag 0 inside"),
        ("c1c1", seg(1, b"abcd") + seg(1, b"efgh"), "offset 12:", "cflag 1 inside"),
        ("c1eof", ok + seg(1, b"abcd"), "offset 32:", "inside the split record"),
        ("len", seg(0, b"abcd", length=1000), "offset 0:", "runs past the end"),
    ]
    for cflag in range(4, 8):
        cases.append(("cflag%d" % cflag, ok + seg(cflag, b"abcd"), "offset 20:",
                      "invalid cflag %d" % cflag))
    for name, data, where, reason in cases:
        f = put("bad_%s.rec" % name, data)
        expect_error(["dump", f], f + ": " + where, reason, "corrupt .rec " + name)
    # random access into the middle of a split record, and an unaligned seek
    f = put("split.rec", rio.encode(b"ab" * 2 + rio.MAGIC_BYTES + b"cd"))
    put("split.idx", "0\t12\n")
    expect_error(["dumpidx", f, path("split.idx")], f + ": offset 12:", "cflag 3", "idx into a split")
    expect_error(["dump", f, 6], f + ": offset 6:", "not 4-aligned", "unaligned seek")


def test_corrupt_idx():
    rec = rio.write([(0, b"a" * 8), (1, b"b" * 8)])[0]  # 2 x 16 bytes
    f = put("ci.rec", rec)
    cases = [
        ("past", "0\t0\n1\t32\n", ":2:", "past the end"),
        ("unaligned", "0\t0\n1\t6\n", ":2:", "not 4-aligned"),
        ("alpha", "0\t0\nx1\t16\n", ":2:", "key is not a decimal number"),
        ("alphaoff", "0\t0\n1\t1b\n", ":2:", "offset is not a decimal number"),
        ("negative", "-1\t0\n", ":1:", "key is not a decimal number"),
        ("notab", "0\t0\n116\n", ":2:", "expected"),
        ("blank", "0\t0\n\n1\t16\n", ":2:", "blank line"),
        ("huge", "0\t99999999999999999999999\n", ":1:", "offset out of range"),
    ]
    for name, text, where, reason in cases:
        i = put("ci_%s.idx" % name, text)
        expect_error(["dumpidx", f, i], i + where, reason, "corrupt .idx " + name)


def main():
    global TOOL, TMP
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 1
    TOOL = sys.argv[1]
    if not os.access(TOOL, os.X_OK):
        print("rio_tool not found: %s" % TOOL, file=sys.stderr)
        return 1
    tests = [test_vectors, test_c_writes_python_reads, test_python_writes_c_reads, test_labels,
             test_idx_order, test_insightface, test_property, test_corrupt_rec, test_corrupt_idx]
    with tempfile.TemporaryDirectory(prefix="ft-recordio-") as d:
        TMP = d
        for t in tests:
            before = len(FAILS)
            t()
            print("%-32s %s" % (t.__name__, "ok" if len(FAILS) == before else "FAILED"))
    print("seed %d: %d failure(s)" % (SEED, len(FAILS)))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
