"""ft-pack tests (ctest runs: test_pack.py BIN_DIR WORKDIR).

Builds a small class folder of JPEGs with OpenCV (and .lst files), packs it, and reads the
result back with the independent reader pyref.recordio: bytes, labels, keys, header and
identity records, property. Also --resize, --no-header, non-JPEG input and argument errors,
and --shuffle of a .rec (same records, other order, header kept).
"""
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402
from pyref import recordio as rio  # noqa: E402

cv2, np = pyref.need("cv2", "numpy")

BIN, WORK = sys.argv[1], sys.argv[2]
PACK = os.path.join(BIN, "ft-pack")
failures = pyref.FAILS  # pyref.check records here
check = pyref.check


def pack(*args):
    r = subprocess.run([PACK] + [str(a) for a in args], capture_output=True, text=True)
    check("Sanitizer" not in r.stderr, "sanitizer report: " + r.stderr)
    return r


def fresh(name):
    d = os.path.join(WORK, name)
    shutil.rmtree(d, ignore_errors=True)
    return d


def jpeg(seed, w=112, h=112, quality=90):
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (w, h))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def make_folder(root):
    """Classes alice, bob, carol (labels 0, 1, 2); returns [(label, relpath, bytes)] in pack order."""
    layout = {"bob": ["b.jpg", "a.jpg", "10.jpg", "2.jpg"], "alice": ["x.jpg"],
              "carol": ["z.jpeg", "y.JPG", "q.jpg"]}
    files, seed = {}, 0
    for cls, names in layout.items():
        os.makedirs(os.path.join(root, cls))
        for n in names:
            seed += 1
            data = jpeg(seed)
            open(os.path.join(root, cls, n), "wb").write(data)
            files[cls + "/" + n] = data
    open(os.path.join(root, "bob", ".hidden"), "w").write("not an image")
    open(os.path.join(root, "README"), "w").write("top-level file, not a class")
    out = []
    for label, cls in enumerate(sorted(layout)):
        for n in sorted(layout[cls]):
            out.append((label, cls + "/" + n, files[cls + "/" + n]))
    return out


def load(d):
    return rio.load(os.path.join(d, "train.rec"), os.path.join(d, "train.idx"))


def check_header_layout(d, expect, n_classes, what):
    """expect: [(label, bytes)] in key order 1..N."""
    idx, recs = load(d)
    n = len(expect)
    check(sorted(recs) == list(range(n + n_classes + 1)), what + ": keys")
    check([k for k, _ in idx][:n] == list(range(1, n + 1)), what + ": image keys first")
    for k, (label, data) in enumerate(expect, 1):
        flag, lab, id1, _, labels, img = recs[k]
        got = labels[0] if flag else lab
        check(got == label and id1 == k and img == data, what + ": record %d" % k)
    check(recs[0][0] == 2 and recs[0][4] == (n + 1, n + n_classes + 1), what + ": header record")
    first = 1
    for c in range(n_classes):
        cnt = sum(1 for label, _ in expect if label == c)
        check(recs[n + 1 + c][4] == (first, first + cnt), what + ": identity %d" % c)
        first += cnt


def test_folder(src, files):
    d = fresh("out_folder")
    r = pack(src, d)
    check(r.returncode == 0 and r.stdout.startswith("ft-pack: 8 images, 3 classes"),
          "folder pack: %s %s" % (r.stdout, r.stderr))
    loose = [x for x in r.stderr.splitlines() if "outside the class folders" in x]
    check(len(loose) == 1 and "README" in loose[0] and loose[0].startswith("ft-pack: warning: "),
          "top-level files: one warning line: " + r.stderr)
    # an entry that cannot be stat'ed (a dangling symlink) is an error naming it, not a gap
    dangling = os.path.join(src, "bob", "zz.jpg")
    os.symlink("nowhere.jpg", dangling)
    d = fresh("out_folder_stat")
    r = pack(src, d)
    check(r.returncode == 1 and r.stderr.strip().splitlines()[-1] ==
          "ft-pack: %s: No such file or directory" % dangling, "stat failure: " + r.stderr)
    check(not os.path.exists(os.path.join(d, "train.rec")), "stat failure: output written")
    os.unlink(dangling)
    d = fresh("out_folder")
    r = pack(src, d)
    check(open(os.path.join(d, "property")).read() == "3,112,112\n", "folder property")
    check_header_layout(d, [(lab, data) for lab, _, data in files], 3, "folder")
    check(sorted(os.listdir(d)) == ["property", "train.idx", "train.rec"], "only 3 outputs")

    d = fresh("out_folder_nh")
    r = pack(src, d, "--no-header")
    idx, recs = load(d)
    check([k for k, _ in idx] == list(range(8)), "--no-header keys 0..N-1")
    check(all(recs[k][0] == 0 and recs[k][1] == files[k][0] and recs[k][5] == files[k][2]
              for k in range(8)), "--no-header records")

    d = fresh("out_resize")
    r = pack(src, d, "--resize", "56x48", "--quality", 97)
    check(r.returncode == 0, "--resize: " + r.stderr)
    check(open(os.path.join(d, "property")).read() == "3,48,56\n", "--resize property h,w")
    _, recs = load(d)
    for k in range(1, 9):
        im = cv2.imdecode(np.frombuffer(recs[k][5], np.uint8), cv2.IMREAD_COLOR)
        ref = cv2.resize(cv2.imdecode(np.frombuffer(files[k - 1][2], np.uint8), cv2.IMREAD_COLOR),
                         (56, 48), interpolation=cv2.INTER_AREA)
        diff = np.abs(im.astype(int) - ref.astype(int)).mean()
        check(im.shape == (48, 56, 3) and diff < 3, "--resize image %d (mean diff %.2f)" % (k, diff))


def test_lst(src, files):
    rel = {p: (lab, data) for lab, p, data in files}
    # interleaved classes, unsorted indexes, one multi-label line
    lines = [(40, [1], "bob/a.jpg"), (7, [0], "alice/x.jpg"), (12, [2], "carol/q.jpg"),
             (3, [1, 5.5], "bob/b.jpg"), (99, [0], "carol/y.JPG")]
    lst = os.path.join(WORK, "list.lst")
    with open(lst, "w") as f:
        for i, labels, p in lines:
            f.write("%d\t%s\t%s\n" % (i, "\t".join("%g" % x for x in labels), p))
    d = fresh("out_lst")
    r = pack(lst, d, "--root", src)
    check(r.returncode == 0, "lst pack: " + r.stderr)
    order = sorted(range(len(lines)), key=lambda j: (lines[j][1][0], j))
    check_header_layout(d, [(lines[j][1][0], rel[lines[j][2]][1]) for j in order], 3, "lst")
    _, recs = load(d)
    k_multi = order.index(3) + 1
    check(recs[k_multi][0] == 2 and recs[k_multi][4] == (1.0, 5.5), "multi-label line kept")

    d = fresh("out_lst_nh")
    r = pack(lst, d, "--root", src, "--no-header")
    idx, recs = load(d)
    check([k for k, _ in idx] == [i for i, _, _ in lines], "--no-header keeps .lst indexes")
    for i, labels, p in lines:
        flag, lab, id1, _, lab2, img = recs[i]
        got = list(lab2) if flag else [lab]
        check(got == labels and id1 == i and img == rel[p][1], "lst --no-header record %d" % i)
    check(open(os.path.join(d, "property")).read() == "3,112,112\n", "lst --no-header property")

    # default root: the .lst's folder
    lst2 = os.path.join(src, "rel.lst")
    open(lst2, "w").write("0\t0\talice/x.jpg\r\n1\t1\tbob/2.jpg\n\n")
    d = fresh("out_lst_root")
    r = pack(lst2, d)
    check(r.returncode == 0, "lst default root: " + r.stderr)
    os.remove(lst2)


def expect_error(args, needle, what, out):
    r = pack(*args)
    msg = r.stderr.strip()
    lines = [x for x in msg.split("\n") if x.startswith("ft-pack: ") and "skipped" not in x]
    ok = r.returncode in (1, 2) and len(lines) == 1 and needle in lines[0] and "Sanitizer" not in msg
    left = [f for f in os.listdir(out)] if os.path.isdir(out) else []
    check(ok and left == [], "%s: rc=%d msg=%r left=%s" % (what, r.returncode, msg, left))


def test_errors(src):
    bad = fresh("bad_src")
    shutil.copytree(src, bad)
    png = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    open(os.path.join(bad, "carol", "w.jpg"), "wb").write(png)
    out = fresh("out_bad")
    expect_error([bad, out], "carol/w.jpg: not a JPEG", "non-JPEG", out)
    # a JPEG cut after its header is stored as-is without --resize (only the header is parsed;
    # ft-ingest decodes every image), but --resize must decode it and fails
    cut = jpeg(1)
    cut = cut[:cut.index(b"\xff\xda") + 40]
    open(os.path.join(bad, "carol", "w.jpg"), "wb").write(cut)
    r = pack(bad, out)
    check(r.returncode == 0, "JPEG cut after its header is stored: " + r.stderr)
    shutil.rmtree(out)
    expect_error([bad, out, "--resize", "20x20"], "carol/w.jpg", "truncated JPEG with --resize",
                 out)
    expect_error([src, out, "--quality", 90], "--quality only applies", "--quality alone", out)
    expect_error([src, out, "--resize", "0x5"], "--resize", "--resize 0x5", out)
    expect_error([src, out, "--root", src], "--root only applies", "--root with folder", out)
    expect_error([src], "expected", "missing OUTDIR", out)
    expect_error([os.path.join(WORK, "nope.lst"), out], "nope.lst", "missing input", out)
    lst = os.path.join(WORK, "bad.lst")
    open(lst, "w").write("0\t0\talice/x.jpg\n1\tzero\tbob/a.jpg\n")
    expect_error([lst, out, "--root", src], "bad.lst:2: bad label", "bad label", out)
    open(lst, "w").write("0\t0\talice/x.jpg\n1\tbob/a.jpg\n")
    expect_error([lst, out, "--root", src], "bad.lst:2:", "too few fields", out)
    open(lst, "w").write("0\t0\talice/x.jpg\n0\t1\tbob/a.jpg\n")
    expect_error([lst, out, "--root", src, "--no-header"], "bad.lst:2: index 0", "dup index", out)
    open(lst, "w").write("0\t0.5\talice/x.jpg\n")
    expect_error([lst, out, "--root", src], "not a class id", "fractional class", out)
    open(lst, "w").write("0\t0\talice/missing.jpg\n")
    expect_error([lst, out, "--root", src], "alice/missing.jpg", "missing image", out)
    empty = fresh("empty_src")
    os.makedirs(empty)
    expect_error([empty, out], "no images", "empty folder", out)
    r = pack("--help")
    check(r.returncode == 0 and "usage" in r.stdout, "--help")
    r = pack("-V")
    check(r.returncode == 0 and "facetrain" in r.stdout, "-V")


def test_shuffle():
    """ft-pack SRC.rec OUT --shuffle --seed S: same records (keys and bytes), images in another
    order, header and identity records still true, read back with pyref.recordio."""
    synth = os.path.join(BIN, "ft-synth")
    if not os.access(synth, os.X_OK):
        print("ft-synth not built: --shuffle part skipped")
        return
    for layout, extra in (("header", []), ("noheader", ["--no-header"])):
        src = fresh("shuf_src_" + layout)
        r = subprocess.run([synth, src, "--classes", "7", "--per-class", "6", "--seed", "3",
                            "--pairs", "0", "--size", "32"] + extra, capture_output=True,
                           text=True)
        check(r.returncode == 0, "ft-synth: " + r.stderr)
        sidx, srecs = load(src)
        outs = {}
        for name, seed in (("a", 9), ("b", 9), ("c", 10)):
            outs[name] = fresh("shuf_%s_%s" % (layout, name))
            r = pack(os.path.join(src, "train.rec"), outs[name], "--shuffle", "--seed", seed)
            check(r.returncode == 0, "--shuffle %s: %s" % (layout, r.stderr))
        oidx, orecs = load(outs["a"])
        check(orecs == srecs, layout + ": the shuffled copy holds other records")
        n = 42
        img = lambda idx: [k for k, _ in idx if (1 <= k <= n if layout == "header" else True)]
        check(sorted(img(oidx)) == sorted(img(sidx)) and img(oidx) != img(sidx),
              layout + ": image order not shuffled")
        rb = lambda d: open(os.path.join(d, "train.rec"), "rb").read()
        check(rb(outs["a"]) == rb(outs["b"]), layout + ": same seed, different copies")
        check(load(outs["c"])[0] != oidx, layout + ": other seed, same order")
        check(open(os.path.join(outs["a"], "property")).read() ==
              open(os.path.join(src, "property")).read(), layout + ": property")
        if layout == "header":
            keys = [k for k, _ in oidx]
            check(set(keys[:n]) == set(range(1, n + 1)) and keys[n:] == list(range(n + 1, n + 8))
                  + [0], "header layout: images, identity records, header last: %s" % keys[n:])
            flag, _, _, _, lab, _ = orecs[0]
            check(flag == 2 and lab == (n + 1, n + 8), "header record %s" % (lab,))
            for c in range(7):
                first, end = (int(x) for x in orecs[n + 1 + c][4])
                check(all(orecs[k][1] == c for k in range(first, end)),
                      "identity record of class %d does not match its images" % c)
    rec = os.path.join(fresh("shuf_src_header"), "train.rec")
    for args, what in (([src, fresh("x"), "--shuffle"], "--shuffle of a folder"),
                       ([os.path.join(WORK, "shuf_src_noheader", "train.rec"), fresh("x")],
                        ".rec without --shuffle"),
                       ([src, fresh("x"), "--seed", 3], "--seed without --shuffle")):
        r = pack(*args)
        check(r.returncode == 2 and r.stderr.startswith("ft-pack: "), "%s: rc=%d %s" %
              (what, r.returncode, r.stderr))
    r = pack(rec, fresh("x"), "--shuffle")
    check(r.returncode == 1 and r.stderr.startswith("ft-pack: ") and "shuf_src_header" in r.stderr,
          "missing .rec: %s" % r.stderr)


src = fresh("src")
files = make_folder(src)
test_folder(src, files)
test_lst(src, files)
test_errors(src)
test_shuffle()
print("%d failures" % len(failures))
sys.exit(1 if failures else 0)
