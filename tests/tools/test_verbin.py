"""ft_verbin against Python's pickle (run by ctest: test_verbin.py VERBIN_TOOL WORKDIR).

- the writer's bytes equal an independent emitter of Python 2's protocol-2 stream (formats.md 3.2),
  and pickle.load(encoding='bytes') reads them back;
- the reader accepts Python 3 dumps, protocols 2 to 5, with bools and with 0/1 ints;
- corrupted or foreign pickles are rejected with a message naming the file and the offset.
"""
import os
import pickle
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402

TOOL, WORK = sys.argv[1], sys.argv[2]
os.makedirs(WORK, exist_ok=True)
failures = pyref.FAILS  # pyref.check records here
check = pyref.check


def fnv1a64(b):
    h = 0xCBF29CE484222325
    for x in b:
        h = ((h ^ x) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def expected_dump(bins, same):
    lines = ["pairs %d" % len(same)]
    lines += ["img %d %d %016x" % (i, len(b), fnv1a64(b)) for i, b in enumerate(bins)]
    lines += ["same %d %d" % (i, int(s)) for i, s in enumerate(same)]
    return "\n".join(lines) + "\n"


def run(*args):
    r = subprocess.run([TOOL] + list(args), capture_output=True, text=True)
    check("Sanitizer" not in r.stderr, "sanitizer report: " + r.stderr)
    return r


def py2_stream(bins, same):
    """Python 2 pickle.dump((bins, same), f, 2) with str bins, written out by hand."""
    out = bytearray(b"\x80\x02")
    memo = [0]

    def put():
        m = memo[0]
        out.extend(b"q" + bytes([m]) if m < 256 else b"r" + struct.pack("<I", m))
        memo[0] += 1

    def batches(items, emit):
        for b in range(0, len(items), 1000):
            chunk = items[b:b + 1000]
            if len(chunk) > 1:
                out.extend(b"(")
            for x in chunk:
                emit(x)
            out.extend(b"e" if len(chunk) > 1 else b"a")

    def emit_str(s):
        out.extend(b"U" + bytes([len(s)]) if len(s) < 256 else b"T" + struct.pack("<i", len(s)))
        out.extend(s)
        put()

    out.extend(b"]")
    put()
    batches(bins, emit_str)
    out.extend(b"]")
    put()
    batches(same, lambda x: out.extend(b"\x88" if x else b"\x89"))
    out.extend(b"\x86")
    put()
    out.extend(b".")
    return bytes(out)


def tool_images(n_pairs):
    bins = [bytes((i + j) & 255 for j in range(i * 37 % 700)) for i in range(2 * n_pairs)]
    return bins, [i % 3 == 0 for i in range(n_pairs)]


# 1. writer == Python 2 stream, for several sizes (batch edges: 1000 images, 1001 flags)
for np_ in (0, 1, 2, 500, 501, 1001):
    path = os.path.join(WORK, "made_%d.bin" % np_)
    r = run("make", path, str(np_))
    check(r.returncode == 0, "make %d: %s" % (np_, r.stderr))
    bins, same = tool_images(np_)
    data = open(path, "rb").read()
    check(data == py2_stream(bins, same), "writer bytes differ from python 2 stream (P=%d)" % np_)
    with open(path, "rb") as f:
        got = pickle.load(f, encoding="bytes")
    check(got == (bins, same), "pickle.load of writer output (P=%d)" % np_)
    r = run("dump", path)
    check(r.returncode == 0 and r.stdout == expected_dump(bins, same), "dump of made_%d" % np_)

# 2. Python 3 dumps, protocols 2..5, bools and 0/1 ints, with repeated (memo-shared) images
bins = [bytes([(7 * i + j) & 255 for j in range(1 + (i * 53) % 900)]) for i in range(2 * 1203)]
bins[5] = bins[2]  # same object twice: BINGET on re-dump
bins[6] = b"\x0a\x23\xd7\xce" + bytes(range(256))  # all byte values through latin-1
same_b = [i % 2 == 0 for i in range(1203)]
same_i = [int(s) for s in same_b]
want = expected_dump(bins, same_b)
for proto in (2, 3, 4, 5):
    for name, same in (("bool", same_b), ("int", same_i)):
        path = os.path.join(WORK, "py3_p%d_%s.bin" % (proto, name))
        with open(path, "wb") as f:
            pickle.dump((bins, same), f, protocol=proto)
        r = run("dump", path)
        check(r.returncode == 0 and r.stdout == want, "read py3 protocol %d %s: %s" % (proto, name, r.stderr))
        out = path + ".copy"
        r = run("copy", path, out)
        check(r.returncode == 0 and open(out, "rb").read() == py2_stream(bins, same_b),
              "copy of protocol %d %s is not the python 2 stream" % (proto, name))
# MARK ... TUPLE (protocol 0/1 style tuple) inside a protocol 2 stream
tup = b"\x80\x02(]q\x00(U\x01aU\x01be]q\x01\x88at."
path = os.path.join(WORK, "tuple_mark.bin")
open(path, "wb").write(tup)
r = run("dump", path)
check(r.returncode == 0 and r.stdout == expected_dump([b"a", b"b"], [True]), "MARK/TUPLE form: " + r.stderr)

# An empty MARK ... APPENDS batch (legal pickle: list.extend of nothing) before and after the
# real items; it used to memcpy from a NULL list (UBSan in the sanitizer build).
empty = b"\x80\x02](e(U\x03abcU\x02deU\x01fU\x01ge(e](e(\x88\x89e\x86."
check(pickle.loads(empty, encoding="bytes") == ([b"abc", b"de", b"f", b"g"], [True, False]),
      "empty APPENDS fixture")
path = os.path.join(WORK, "empty_appends.bin")
open(path, "wb").write(empty)
r = run("dump", path)
check(r.returncode == 0 and r.stdout == expected_dump([b"abc", b"de", b"f", b"g"], [True, False])
      and "runtime error" not in r.stderr, "empty MARK/APPENDS: rc=%d %s" % (r.returncode, r.stderr))

# 3. rejected inputs: message names the file and an offset, exit status 1
good = py2_stream(*tool_images(3))
cases = {
    "empty": b"",
    "not_pickle": b"hello world",
    "truncated_half": good[: len(good) // 2],
    "truncated_stop": good[:-1],
    "after_stop": good + b"\x00",
    "bad_opcode": good[:2] + b"\x99" + good[3:],
    "proto1": b"\x80\x01" + good[2:],
    "three_tuple": pickle.dumps(([b"a", b"b"], [True], 1), protocol=4),
    "odd_count": pickle.dumps(([b"a", b"b", b"c"], [True]), protocol=4),
    "flag_two": pickle.dumps(([b"a", b"b"], [2]), protocol=4),
    "str_images": pickle.dumps((["a", "b"], [True]), protocol=4),
    "dict": pickle.dumps({"a": 1}, protocol=4),
    "float_flag": pickle.dumps(([b"a", b"b"], [1.0]), protocol=4),
    "huge_string": b"\x80\x02]q\x00T\xff\xff\xff\x7fab",
    "memo_get_undefined": b"\x80\x02h\x05.",
    "global_other": b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00.",
}
np = pyref.optional("numpy")
if np is not None:
    cases["numpy_arrays"] = pickle.dumps(([np.zeros(3, np.uint8)] * 2, [True]), protocol=2)
for name, blob in cases.items():
    path = os.path.join(WORK, "bad_%s.bin" % name)
    open(path, "wb").write(blob)
    r = run("dump", path)
    msg = r.stderr.strip()
    ok = r.returncode == 1 and path in msg and (name == "empty" or "offset" in msg) and r.stdout == ""
    check(ok, "bad %s: rc=%d msg=%r" % (name, r.returncode, msg))
r = run("dump", os.path.join(WORK, "missing.bin"))
check(r.returncode == 1 and "missing.bin" in r.stderr, "missing file")

print("%d failures" % len(failures))
sys.exit(1 if failures else 0)
