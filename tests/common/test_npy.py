"""ft_npy against numpy (run by ctest: test_npy.py NPY_TOOL WORKDIR).

- what the writer makes, numpy.load reads: shape, dtype, every value (incl. -0.0, NaN, inf),
  header padded so the data starts at a multiple of 64, no temporary file left;
- what numpy.save writes (versions 1.0, 2.0, 3.0 via numpy.lib.format, 1-D and 2-D, empty),
  the reader reads;
- foreign or broken files (big-endian, float64, Fortran order, 3-D, truncated, trailing bytes,
  bad magic, unknown version) are refused with one line naming the file.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402

np = pyref.need("numpy")
TOOL, WORK = sys.argv[1], sys.argv[2]
os.makedirs(WORK, exist_ok=True)
failures = pyref.FAILS  # pyref.check records here
check = pyref.check


def expected(r, c):
    a = (np.arange(r, dtype=np.float64)[:, None] * 1000 + np.arange(c)[None, :] + 0.25)
    a = a.astype(np.float32)
    if r * c >= 3:
        a.flat[0], a.flat[1], a.flat[2] = -0.0, np.nan, np.inf
    return a


for r, c in ((4, 3), (0, 512), (1, 1), (37, 512), (3, 70)):
    p = os.path.join(WORK, "w_%d_%d.npy" % (r, c))
    subprocess.run([TOOL, "write", p, str(r), str(c)], check=True)
    a = np.load(p)
    check(a.dtype == np.float32 and a.shape == (r, c), "shape/dtype %r %r" % (a.dtype, a.shape))
    check(np.array_equal(a, expected(r, c), equal_nan=True), "values %dx%d" % (r, c))
    if r * c >= 3:
        check(np.signbit(a.flat[0]), "-0.0 keeps its sign")
    with open(p, "rb") as f:
        raw = f.read()
    hl = raw[8] | raw[9] << 8
    check((10 + hl) % 64 == 0, "data offset %d is a multiple of 64" % (10 + hl))
    check(raw[9 + hl:10 + hl] == b"\n", "header ends with a newline")
    check(not [n for n in os.listdir(WORK) if ".tmp." in n], "no temporary file left")


def read(p):
    r = subprocess.run([TOOL, "read", p], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr.strip()


def parse(out):
    lines = out.split("\n")
    r, c = map(int, lines[0].split())
    vals = [float(v) for ln in lines[1:1 + r] for v in ln.split()]
    return np.array(vals, dtype=np.float32).reshape(r, c)


rng = np.random.default_rng(5)
for ver in ((1, 0), (2, 0), (3, 0)):
    a = rng.standard_normal((5, 7)).astype(np.float32)
    p = os.path.join(WORK, "v%d.npy" % ver[0])
    with open(p, "wb") as f:
        np.lib.format.write_array(f, a, version=ver)
    rc, out, err = read(p)
    check(rc == 0, "version %d.%d read: %s" % (ver + (err,)))
    if rc == 0:
        check(np.array_equal(parse(out), a), "version %d.%d values" % ver)
p = os.path.join(WORK, "one_d.npy")
np.save(p, np.arange(6, dtype=np.float32))
rc, out, err = read(p)
check(rc == 0 and parse(out).shape == (6, 1), "1-D array reads as (6, 1): %s" % err)
p = os.path.join(WORK, "empty.npy")
np.save(p, np.zeros((0, 4), np.float32))
rc, out, err = read(p)
check(rc == 0 and out.split("\n")[0] == "0 4", "empty (0, 4): %s" % err)

good = os.path.join(WORK, "good.npy")
np.save(good, rng.standard_normal((3, 4)).astype(np.float32))
raw = open(good, "rb").read()
bad = {
    "big_endian": (lambda: np.save(os.path.join(WORK, "big_endian.npy"),
                                   np.ones((2, 2), ">f4")), "float32"),
    "float64": (lambda: np.save(os.path.join(WORK, "float64.npy"), np.ones((2, 2))), "float32"),
    "fortran": (lambda: np.save(os.path.join(WORK, "fortran.npy"),
                                np.asfortranarray(np.ones((2, 3), np.float32))), "fortran"),
    "three_d": (lambda: np.save(os.path.join(WORK, "three_d.npy"),
                                np.ones((2, 2, 2), np.float32)), "shape"),
    "truncated": (lambda: open(os.path.join(WORK, "truncated.npy"), "wb").write(raw[:-5]),
                  "bytes"),
    "trailing": (lambda: open(os.path.join(WORK, "trailing.npy"), "wb").write(raw + b"xx"),
                 "bytes"),
    "magic": (lambda: open(os.path.join(WORK, "magic.npy"), "wb").write(b"PK" + raw[2:]),
              "magic"),
    "version": (lambda: open(os.path.join(WORK, "version.npy"), "wb").write(
        raw[:6] + b"\x09\x00" + raw[8:]), "version"),
    "short": (lambda: open(os.path.join(WORK, "short.npy"), "wb").write(raw[:7]), "magic"),
}
for name, (make, word) in bad.items():
    make()
    p = os.path.join(WORK, name + ".npy")
    rc, out, err = read(p)
    check(rc == 1, "%s refused (rc %d)" % (name, rc))
    check(p in err and word in err and "\n" not in err, "%s message: %r" % (name, err))
rc, out, err = read(os.path.join(WORK, "absent.npy"))
check(rc == 1 and "absent.npy" in err, "missing file named: %r" % err)
# a writer into a missing folder fails and leaves nothing
r = subprocess.run([TOOL, "write", os.path.join(WORK, "nodir", "x.npy"), "2", "2"],
                   capture_output=True, text=True)
check(r.returncode == 1 and "nodir/x.npy" in r.stderr, "write into a missing folder: %r"
      % r.stderr)

print("npy: %d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
