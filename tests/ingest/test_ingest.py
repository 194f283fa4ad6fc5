"""ft-ingest tests. Usage: test_ingest.py CASE --bin BUILD/bin --dump FT_TEST_FTDB_DUMP --work DIR

Cases: cli, roundtrip, shuffle, folder, corrupt, labels, mixed, skipbad, verify, truncated, diskfull,
signal, threads.
Exit 0 pass, 1 fail, 77 skip. Every case checks that ft-ingest leaves no output (and no
temporary directory) when it fails, and that no sanitizer report appears."""
import argparse
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

_here = os.path.dirname(os.path.realpath(__file__))
sys.path[:0] = [_here, os.path.join(_here, "..")]  # ingest_util, and the pyref package
import pyref  # noqa: E402
from pyref import recordio as rio  # noqa: E402

cv2, np = pyref.need("cv2", "numpy")
import ingest_util as u  # noqa: E402

ARGS = None


class Skip(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def exe(name):
    return os.path.join(ARGS.bin, name)


def run(args, rc=0, timeout=600):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    tag = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(args))
    for marker in ("Sanitizer", "runtime error:", "ThreadSanitizer"):
        check(marker not in p.stderr, "%s: sanitizer report:\n%s" % (tag, p.stderr))
    if rc is not None:
        check(p.returncode == rc, "%s: exit %d, expected %d\nstdout:\n%s\nstderr:\n%s" %
              (tag, p.returncode, rc, p.stdout, p.stderr))
    return p


def ingest(*args, rc=0):
    return run([exe("ft-ingest")] + [str(a) for a in args], rc)


def work(name):
    d = os.path.join(ARGS.work, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def dump(lmdb):
    out = lmdb.rstrip("/") + ".dump"
    p = run([ARGS.dump, lmdb, out])
    meta = dict(line.split(" ", 1) for line in p.stdout.splitlines())
    vals = u.read_dump(out)
    os.unlink(out)
    return meta, vals


def no_output(out):
    parent, base = os.path.split(out.rstrip("/"))
    left = [e for e in os.listdir(parent) if e == base or e.startswith(base + ".tmp.")]
    check(not left, "output left behind after a failure: %s" % left)


def have(name):
    return os.access(exe(name), os.X_OK)


def release(folder, classes=8, per_class=6, seed=1, synth_args=(), **kw):
    """A release folder: ft-synth's when it is built, else the Python writer's."""
    if have("ft-synth") and not kw:
        run([exe("ft-synth"), folder, "--classes", str(classes), "--per-class", str(per_class),
             "--seed", str(seed), "--pairs", "0"] + list(synth_args))
        return
    if "--no-header" in synth_args:
        kw["header"] = False
    labels = [c for c in range(classes) for _ in range(per_class)]
    u.write_release(folder, labels, property_classes=classes, seed=seed, **kw)


def compare(src_folder, vals, order=None):
    """vals (from the LMDB) against the .rec read independently; order: source positions."""
    ref = rio.arcface_samples(src_folder)
    order = order if order is not None else list(range(len(ref)))
    check(len(vals) == len(order), "%d samples, expected %d" % (len(vals), len(order)))
    for i, (label, h, w, sk, jpg) in enumerate(vals):
        key, rlabel, rjpg = ref[order[i]]
        check(sk == key, "sample %d: source key %d, expected %d" % (i, sk, key))
        check(label == rlabel, "sample %d: label %d, expected %d" % (i, label, rlabel))
        check(jpg == rjpg, "sample %d (key %d): JPEG bytes differ" % (i, key))
        img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
        check(img.shape[:2] == (h, w), "sample %d: size %dx%d, image is %s" % (i, h, w, img.shape))


# ---------------------------------------------------------------- cases

def t_cli():
    d = work("cli")
    p = ingest("--help")
    check("usage: ft-ingest" in p.stdout and "--skip-bad" in p.stdout, "help text")
    check("facetrain" in ingest("-V").stdout, "-V")
    for bad in ([], ["a"], ["a", "b", "c"], ["a", "b", "--threads", "0"],
                ["a", "b", "--threads", "x"], ["a", "b", "--seed", "3"],
                ["a", "b", "--num-classes", "-1"], ["a", "b", "--bogus"], ["--verify"],
                ["--verify", "a", "b"], ["--verify", "a", "--shuffle"], ["a", "b", "--seed"]):
        p = ingest(*bad, rc=2)
        check(p.stderr.startswith("ft-ingest: ") and p.stdout == "", "usage error for %s" % bad)
    src = os.path.join(d, "rel")
    release(src, classes=3, per_class=2)
    out = os.path.join(d, "out.lmdb")
    p = ingest(os.path.join(d, "missing"), out, rc=1)
    check("missing" in p.stderr and "No such file" in p.stderr, p.stderr)
    os.unlink(os.path.join(src, "train.idx"))
    p = ingest(src, out, rc=1)
    check("train.idx: missing" in p.stderr, p.stderr)
    no_output(out)
    release(src, classes=3, per_class=2)
    stale = out + ".tmp.999999999"
    os.makedirs(stale)
    ingest(src, out)
    check(not os.path.exists(stale), "stale temporary directory not removed")
    p = ingest(src, out, rc=1)
    check("exists (use --force" in p.stderr, p.stderr)
    ingest(src, out, "--force")
    ingest("--verify", out)
    p = ingest(src, d, "--force", rc=1)
    check("not an LMDB directory" in p.stderr, p.stderr)
    p = ingest("--verify", src, rc=1)
    check(p.stderr.startswith("ft-ingest: ") and src in p.stderr, p.stderr)


def t_roundtrip():
    d = work("roundtrip")
    cases = [("synth", {}), ("synth_noheader", dict(synth_args=["--no-header"])),
             ("arraylabels_split", dict(array_labels=True, split_keys={2, 9, 30})),
             ("im2rec", dict(header=False))]
    for name, kw in cases:
        src, out = os.path.join(d, name), os.path.join(d, name + ".lmdb")
        release(src, **kw)
        p = ingest(src, out)
        check("checksum xxh3-64:" in p.stdout and "samples" in p.stdout, p.stdout)
        meta, vals = dump(out)
        compare(src, vals)
        check(meta["shuffle"] == "none", meta)
        check(meta["num_classes"] == "8", "num_classes %s" % meta["num_classes"])
        check(meta["image_height"] == "112" and meta["image_width"] == "112", meta)
        no_header = "header" in kw or "synth_args" in kw
        check(("header record" in meta["source"]) != no_header, meta["source"])
        check("OK: %d samples" % len(vals) in ingest("--verify", out).stdout, "verify")
    # no property: classes = max label + 1; --num-classes wins over property
    src = os.path.join(d, "im2rec")
    os.unlink(os.path.join(src, "property")) if os.path.exists(os.path.join(src, "property")) \
        else None
    ingest(src, os.path.join(d, "noprop.lmdb"))
    check(dump(os.path.join(d, "noprop.lmdb"))[0]["num_classes"] == "8", "max label + 1")
    ingest(src, os.path.join(d, "nc.lmdb"), "--num-classes", "100")
    check(dump(os.path.join(d, "nc.lmdb"))[0]["num_classes"] == "100", "--num-classes")


def checksum(out):
    p = ingest("--info", out)
    return dict(line.split(" ", 1) for line in p.stdout.splitlines())["checksum"]


def t_shuffle():
    d = work("shuffle")
    src = os.path.join(d, "rel")
    release(src, classes=10, per_class=7)
    ref = rio.arcface_samples(src)
    outs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        outs[name] = os.path.join(d, name + ".lmdb")
        ingest(src, outs[name], "--shuffle", "--seed", seed, "--threads", 2)
    meta, vals = dump(outs["a"])
    pos = {k: i for i, (k, _, _) in enumerate(ref)}
    order = [pos[v[3]] for v in vals]
    check(sorted(order) == list(range(len(ref))), "not a permutation of the source")
    check(order != list(range(len(ref))), "shuffled order equals the source order")
    compare(src, vals, order)
    check(meta["shuffle"] == "5", "meta shuffle %s" % meta["shuffle"])
    check(checksum(outs["a"]) == checksum(outs["b"]), "same seed, different datasets")
    check(checksum(outs["a"]) != checksum(outs["c"]), "different seeds, same order")
    ingest("--verify", outs["c"])


def t_folder():
    d = work("folder")
    img = os.path.join(d, "images")
    expect = []
    for ci, cls in enumerate(["alice", "bob", "carol", "dave"]):
        os.makedirs(os.path.join(img, cls))
        for j in range(3 + ci):
            jpg = u.make_jpeg(100 * ci + j)
            with open(os.path.join(img, cls, "img_%02d.jpg" % j), "wb") as f:
                f.write(jpg)
            expect.append((ci, jpg))
        with open(os.path.join(img, cls, ".hidden.jpg"), "wb") as f:
            f.write(b"ignored")
    with open(os.path.join(img, "README"), "w") as f:
        f.write("ignored\n")
    out = os.path.join(d, "out.lmdb")
    p = ingest(img, out)
    loose = [ln for ln in p.stderr.splitlines() if "outside the class folders" in ln]
    check(len(loose) == 1 and "README" in loose[0] and "ft-ingest: warning: " in loose[0],
          "top-level files: one warning line:\n" + p.stderr)
    meta, vals = dump(out)
    check(meta["num_classes"] == "4" and meta["source"].startswith("folder:"), meta)
    # an entry that cannot be stat'ed (a dangling symlink) is an error naming it, not a gap
    dangling = os.path.join(img, "bob", "zz.jpg")
    os.symlink("nowhere.jpg", dangling)
    p = ingest(img, os.path.join(d, "stat.lmdb"), rc=1)
    check(p.stderr.strip().splitlines()[-1] == "ft-ingest: %s: No such file or directory" %
          dangling, p.stderr)
    no_output(os.path.join(d, "stat.lmdb"))
    os.unlink(dangling)
    check(len(vals) == len(expect), "%d samples, expected %d" % (len(vals), len(expect)))
    for i, ((label, h, w, sk, jpg), (elabel, ejpg)) in enumerate(zip(vals, expect)):
        check(label == elabel and jpg == ejpg and sk == i and (h, w) == (112, 112),
              "folder sample %d differs" % i)
    # a broken image is named by its path
    with open(os.path.join(img, "bob", "img_01.jpg"), "wb") as f:
        f.write(expect[4][1][:len(expect[4][1]) // 2])
    out2 = os.path.join(d, "bad.lmdb")
    p = ingest(img, out2, rc=1)
    check("bob/img_01.jpg: JPEG decode failed" in p.stderr.splitlines()[-1], p.stderr)
    no_output(out2)
    with open(os.path.join(img, "bob", "img_01.jpg"), "wb") as f:
        f.write(expect[4][1])
    # every file of a class folder is a sample (as in ft-pack): a text file is a bad record
    notes = os.path.join(img, "carol", "notes.txt")
    with open(notes, "w") as f:
        f.write("not an image\n")
    p = ingest(img, out2, rc=1)
    check("carol/notes.txt: not a JPEG" in p.stderr.splitlines()[-1], p.stderr)
    p = ingest(img, out2, "--skip-bad")
    check("skipped 1 bad record: file 12" in p.stderr, p.stderr)
    os.unlink(notes)
    if not have("ft-pack"):
        print("ft-pack not built: folder -> ft-pack -> ft-ingest part skipped")
        return
    packed = os.path.join(d, "packed")
    run([exe("ft-pack"), img, packed])
    out3 = os.path.join(d, "packed.lmdb")
    ingest(packed, out3)
    _, pvals = dump(out3)
    check([(v[0], v[4]) for v in pvals] == [(v[0], v[4]) for v in vals],
          "ft-pack -> ft-ingest differs from ingesting the folder")


def corrupt_cases(d):
    """(name, make(src), expected text in the error line). make edits a fresh release."""
    def rec_bytes(src):
        with open(os.path.join(src, "train.rec"), "rb") as f:
            return bytearray(f.read())

    def put(src, data):
        with open(os.path.join(src, "train.rec"), "wb") as f:
            f.write(data)

    def offs(src):
        return rio.idx_table(os.path.join(src, "train.idx"))[1]

    def truncate(src):  # im2rec layout, so that the last record is an image
        shutil.rmtree(src)
        release(src, header=False)
        data = rec_bytes(src)
        last = max(offs(src).values())
        put(src, data[:last + 100])
        return last

    def bad_magic(src):
        o = offs(src)[5]
        data = rec_bytes(src)
        data[o:o + 4] = b"\0\0\0\0"
        put(src, data)
        return o

    def idx_past_eof(src):
        keys, o = rio.idx_table(os.path.join(src, "train.idx"))
        with open(os.path.join(src, "train.idx"), "w") as f:
            for k in keys:
                f.write("%d\t%d\n" % (k, 1 << 40 if k == 7 else o[k]))

    def cflag_start(src):  # record 4 starts with a continuation segment
        o = offs(src)[4]
        data = rec_bytes(src)
        lrec = struct.unpack_from("<I", data, o + 4)[0]
        struct.pack_into("<I", data, o + 4, (lrec & 0x1FFFFFFF) | (2 << 29))
        put(src, data)
        return o

    def cflag_middle(src):  # split record 2: its second segment says 0 instead of 3
        o = offs(src)[2]
        data = rec_bytes(src)
        n1 = struct.unpack_from("<I", data, o + 4)[0] & 0x1FFFFFFF
        s2 = o + 8 + (n1 + 3) // 4 * 4
        lrec = struct.unpack_from("<I", data, s2 + 4)[0]
        struct.pack_into("<I", data, s2 + 4, lrec & 0x1FFFFFFF)
        put(src, data)
        return o

    def jpeg_edit(src, key, fn):
        o = offs(src)[key]
        data = rec_bytes(src)
        n = struct.unpack_from("<I", data, o + 4)[0] & 0x1FFFFFFF
        payload = bytes(data[o + 8:o + 8 + n])
        img = payload[24 + 8:]  # flag 2 labels
        newrec = rio.encode(payload[:32] + fn(img))
        rest = data[o + 8 + (n + 3) // 4 * 4:]
        # rewrite the file from this record on, and the offsets after it
        shift = len(newrec) - (8 + (n + 3) // 4 * 4)
        put(src, data[:o] + newrec + rest)
        keys, off = rio.idx_table(os.path.join(src, "train.idx"))
        with open(os.path.join(src, "train.idx"), "w") as f:
            for k in keys:
                f.write("%d\t%d\n" % (k, off[k] + shift if off[k] > o else off[k]))
        return o

    def garble(img):
        b = bytearray(img)
        rng = np.random.default_rng(3)
        mid = len(b) // 2
        b[mid:mid + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        b[mid + 20:mid + 22] = b"\xff\xd3"  # a stray marker inside the scan data
        return bytes(b)

    def label(src, key, value):
        o = offs(src)[key]
        data = rec_bytes(src)
        struct.pack_into("<f", data, o + 8 + 24, value)
        put(src, data)
        return o

    return [
        ("truncated_rec", truncate, "record key 47 at offset {o}: segment of"),
        ("bad_magic", bad_magic, "record key 5 at offset {o}: bad magic"),
        ("idx_past_eof", idx_past_eof, "train.idx"),
        ("cflag_start", cflag_start, "record key 4 at offset {o}: cflag 2"),
        ("cflag_middle", cflag_middle, "record key 2 at offset {o}: segment at offset"),
        ("jpeg_truncated", lambda s: jpeg_edit(s, 6, lambda i: i[:len(i) // 2]),
         "record key 6 at offset {o}: JPEG decode failed"),
        ("jpeg_garbled", lambda s: jpeg_edit(s, 8, garble),
         "record key 8 at offset {o}: JPEG decode failed"),
        ("not_jpeg", lambda s: jpeg_edit(s, 9, lambda i: b"GIF89a" + i[6:]),
         "record key 9 at offset {o}: not a JPEG"),
        ("label_range", lambda s: label(s, 10, 99.0),
         "record key 10 at offset {o}: label 99 out of range [0, 8) (classes from property)"),
        ("label_negative", lambda s: label(s, 11, -1.0), "record key 11 at offset {o}: label -1"),
        ("label_nan", lambda s: label(s, 12, float("nan")),
         "record key 12 at offset {o}: label nan"),
    ]


def t_corrupt():
    d = work("corrupt")
    for name, make, expect in corrupt_cases(d):
        src = os.path.join(d, name)
        release(src, array_labels=True, split_keys={2, 3})
        o = make(src)
        out = os.path.join(d, name + ".lmdb")
        p = ingest(src, out, rc=1)
        last = p.stderr.strip().splitlines()[-1]
        want = expect.format(o=o)
        check(last.startswith("ft-ingest: ") and want in last,
              "%s: expected '%s' in the error line, got:\n%s" % (name, want, p.stderr))
        no_output(out)
    # --num-classes below the labels
    src = os.path.join(d, "nc")
    release(src, array_labels=True)
    p = ingest(src, os.path.join(d, "nc.lmdb"), "--num-classes", "5", rc=1)
    check("label 5 out of range [0, 5) (classes from --num-classes)" in p.stderr, p.stderr)
    no_output(os.path.join(d, "nc.lmdb"))


def t_labels():
    """One label rule for ft-ingest and the loader: a whole number in [0, 2^31)."""
    d = work("labels")
    src = os.path.join(d, "rel")
    jpg = u.make_jpeg(3)
    labels = [0, 1, 2, -0.5, 3, 2.5, -0.0, 1, 2, 3, 0, 1] * 3
    w = rio.RecWriter(src)
    for k, lab in enumerate(labels):
        w.write(k, rio.pack_mx(lab, jpg, k))
    w.close()
    out = os.path.join(d, "out.lmdb")
    p = ingest(src, out, rc=1)
    want = "record key 3 at offset %d: label -0.5 is not a class id (a whole number in [0, 2^31))"
    check(want % rio.idx_table(os.path.join(src, "train.idx"))[1][3] in p.stderr.strip().splitlines()[-1], p.stderr)
    no_output(out)
    p = ingest(src, out, "--skip-bad")
    bad = [k for k, lab in enumerate(labels) if lab != int(lab) or lab < 0]
    check("skipped %d bad records: key %s" % (len(bad), ", ".join(map(str, bad))) in p.stderr,
          p.stderr)
    check("label 2.5 is not a class id" in p.stderr, p.stderr)
    _, vals = dump(out)
    check([v[0] for v in vals] == [int(lab) for k, lab in enumerate(labels) if k not in bad],
          "labels kept: %s" % [v[0] for v in vals])
    # the loader reading the .rec applies the same rule: -0.5 is not class 0 but a bad sample
    p = run([exe("ft-loadbench"), src, "--batch", "4", "--batches", "9", "--repeat", "1",
             "--threads", "1", "--json"])
    check("label -0.5 is not a class id (a whole number in [0, 2^31))" in p.stderr and
          "label 2.5 is not a class id" in p.stderr, p.stderr)
    check('"bad_samples":0' not in p.stdout, p.stdout)


def t_mixed():
    """Images of another size than the first are bad records (one size per dataset)."""
    d = work("mixed")
    src = os.path.join(d, "rel")
    w = rio.RecWriter(src)
    for k in range(20):
        w.write(k, rio.pack_mx(k % 4, u.make_jpeg(k, size=100 if k in (5, 13) else 112), k))
    w.close()
    out = os.path.join(d, "out.lmdb")
    p = ingest(src, out, rc=1)
    last = p.stderr.strip().splitlines()[-1]
    want = "record key 5 at offset %d: image is 100x100, the dataset's images are 112x112" % \
        rio.idx_table(os.path.join(src, "train.idx"))[1][5]
    check(want in last and "--skip-bad" in last and "ft-pack --resize 112x112" in last, p.stderr)
    no_output(out)
    p = ingest(src, out, "--skip-bad")
    check("skipped 2 bad records: key 5, 13" in p.stderr, p.stderr)
    meta, vals = dump(out)
    check(len(vals) == 18 and {(v[1], v[2]) for v in vals} == {(112, 112)}, "sizes kept")
    check(meta["image_height"] == "112" and meta["image_width"] == "112", meta)


def t_skipbad():
    d = work("skipbad")
    src = os.path.join(d, "rel")
    release(src, array_labels=True, split_keys={2, 3})
    cases = {c[0]: c[1] for c in corrupt_cases(d)}
    for name in ("bad_magic", "jpeg_truncated", "label_range", "cflag_start"):
        cases[name](src)
    out = os.path.join(d, "out.lmdb")
    p = ingest(src, out, "--skip-bad")
    check("skipped 4 bad records: key 4, 5, 6, 10" in p.stderr, p.stderr)
    check(p.stderr.count("(skipped)") == 4, p.stderr)
    meta, vals = dump(out)
    keys = [v[3] for v in vals]
    check(len(vals) == 44 and not {4, 5, 6, 10} & set(keys), "kept %s" % keys)
    check(meta["num_classes"] == "8", meta)
    ingest("--verify", out)
    # an offset past EOF is a bad record too under --skip-bad
    src2 = os.path.join(d, "rel2")
    release(src2)
    keys2, o2 = rio.idx_table(os.path.join(src2, "train.idx"))
    with open(os.path.join(src2, "train.idx"), "w") as f:
        for k in keys2:
            f.write("%d\t%d\n" % (k, 1 << 40 if k == 7 else o2[k]))
    p = ingest(src2, os.path.join(d, "out2.lmdb"), "--skip-bad")
    check("skipped 1 bad record: key 7" in p.stderr, p.stderr)


def rewrite_meta(src, dst, key, value):
    """Copy an LMDB dataset with one meta value changed (mdb_dump / mdb_load)."""
    if not shutil.which("mdb_dump") or not shutil.which("mdb_load"):
        raise Skip("mdb_dump/mdb_load not installed")
    os.makedirs(dst)
    text = subprocess.run(["mdb_dump", "-a", src], capture_output=True, text=True,
                          check=True).stdout
    lines = text.split("\n")
    hexkey = " " + key.encode().hex()
    for i, line in enumerate(lines):
        if line == hexkey:
            lines[i + 1] = " " + value.encode().hex()
            break
    subprocess.run(["mdb_load", dst], input="\n".join(lines), text=True, check=True,
                   capture_output=True)


def t_verify():
    d = work("verify")
    src, out = os.path.join(d, "rel"), os.path.join(d, "out.lmdb")
    release(src)
    ingest(src, out)
    ref = rio.arcface_samples(src)
    bad = os.path.join(d, "flipped.lmdb")
    shutil.copytree(out, bad)
    path = os.path.join(bad, "data.mdb")
    with open(path, "rb") as f:
        data = bytearray(f.read())
    jpg = ref[len(ref) // 2][2]
    at = data.find(jpg)
    check(at > 0, "JPEG of a sample not found in data.mdb")
    data[at + len(jpg) // 2] ^= 0x01
    with open(path, "wb") as f:
        f.write(data)
    p = ingest("--verify", bad, rc=1)
    check("checksum mismatch" in p.stderr and bad in p.stderr, p.stderr)
    # damaged structure: a leaf points to an overflow page past the end of the file
    broken = os.path.join(d, "broken.lmdb")
    shutil.copytree(out, broken)
    path = os.path.join(broken, "data.mdb")
    with open(path, "rb") as f:
        data = bytearray(f.read())
    for pg in range(2, len(data) // 4096):
        o = pg * 4096
        if struct.unpack_from("<H", data, o + 10)[0] == 0x02:  # P_LEAF
            ptr = struct.unpack_from("<H", data, o + 16)[0]
            if struct.unpack_from("<H", data, o + ptr + 4)[0] & 1:  # F_BIGDATA
                struct.pack_into("<Q", data, o + ptr + 16, 10 ** 9)
                break
    with open(path, "wb") as f:
        f.write(data)
    p = ingest("--verify", broken, rc=1)
    check(broken in p.stderr and "MDB_PAGE_NOTFOUND" in p.stderr, p.stderr)
    ver = os.path.join(d, "v2.lmdb")
    rewrite_meta(out, ver, "version", "2")
    p = ingest("--verify", ver, rc=1)
    check("format version 2" in p.stderr, p.stderr)
    cnt = os.path.join(d, "count.lmdb")
    rewrite_meta(out, cnt, "num_samples", "7")
    p = ingest("--verify", cnt, rc=1)
    check("samples found, meta says 7" in p.stderr, p.stderr)


def t_truncated():
    """A data.mdb cut short (an interrupted copy) gives one line naming it, never SIGBUS."""
    d = work("truncated")
    src = os.path.join(d, "rel")
    release(src, classes=6, per_class=8)
    lmdb = os.path.join(src, "train.lmdb")
    ingest(src, lmdb)
    data = os.path.join(lmdb, "data.mdb")
    full = os.path.getsize(data)
    repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    for cut in (full // 2, full - 4096, 12288):
        os.truncate(data, cut)
        cmds = [[exe("ft-ingest"), "--verify", lmdb], [exe("ft-ingest"), "--info", lmdb]]
        if have("ft-loadbench"):
            cmds.append([exe("ft-loadbench"), lmdb, "--batches", "2", "--repeat", "1"])
            cmds.append([exe("ft-loadbench"), src, "--batches", "2", "--repeat", "1"])
        if have("ft-train"):
            cmds.append([exe("ft-train"), os.path.join(repo, "configs", "synth_r18.py"),
                         "rec=" + src, "output=" + os.path.join(d, "work"), "max_steps=1"])
        for cmd in cmds:
            p = run(cmd, rc=None)
            tag = " ".join([os.path.basename(cmd[0])] + cmd[1:2])
            check(p.returncode > 0, "%s on a data.mdb cut to %d of %d bytes: exit %d\n%s" %
                  (tag, cut, full, p.returncode, p.stderr))
            lines = [ln for ln in p.stderr.splitlines() if "truncated" in ln]
            check(len(lines) == 1 and data in lines[0] and "%d bytes" % cut in lines[0],
                  "%s: no line naming the truncated file:\n%s" % (tag, p.stderr))
        with open(data, "r+b") as f:  # put the bytes back for the next cut
            f.truncate(full)
        ingest(src, lmdb, "--force")


def t_diskfull():
    d = work("diskfull")
    mnt = os.path.join(d, "mnt")
    os.makedirs(mnt)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt],
                      capture_output=True).returncode != 0:
        raise Skip("cannot mount a tmpfs (needs root)")
    try:
        src = os.path.join(d, "rel")
        release(src, classes=40, per_class=20)  # ~4 MB of JPEG
        out = os.path.join(mnt, "out.lmdb")
        p = ingest(src, out, rc=1)
        check("no space left on device" in p.stderr.strip().splitlines()[-1], p.stderr)
        check(os.listdir(mnt) == [], "left in the full file system: %s" % os.listdir(mnt))
    finally:
        subprocess.run(["umount", mnt])


def t_signal():
    d = work("signal")
    src = os.path.join(d, "rel")
    os.makedirs(src)
    jpg = u.make_jpeg(1)
    w = rio.RecWriter(src)
    for k in range(30000):
        w.write(k, rio.pack_mx(k % 10, jpg, k))
    w.close()
    out = os.path.join(d, "out.lmdb")
    p = subprocess.Popen([exe("ft-ingest"), src, out, "--threads", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    if p.returncode == 0:
        raise Skip("ft-ingest finished before the signal")
    check(p.returncode == 1 and "stopped by signal" in err, "rc %d:\n%s" % (p.returncode, err))
    no_output(out)


def t_threads():
    """Same bytes whatever the thread count, also with shuffle and skipped records."""
    d = work("threads")
    src = os.path.join(d, "rel")
    release(src, classes=30, per_class=20, array_labels=True, split_keys={5})
    cases = {c[0]: c[1] for c in corrupt_cases(d)}
    cases["jpeg_garbled"](src)
    sums = []
    for t in (1, 3, 8):
        out = os.path.join(d, "t%d.lmdb" % t)
        ingest(src, out, "--threads", t, "--shuffle", "--seed", "11", "--skip-bad")
        sums.append(checksum(out))
    check(len(set(sums)) == 1, "checksums differ across thread counts: %s" % sums)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--bin", required=True)
    ap.add_argument("--dump", required=True)  # the ft-test-ftdb-dump helper (build/tests)
    ap.add_argument("--work", required=True)
    ARGS = ap.parse_args()
    os.makedirs(ARGS.work, exist_ok=True)
    try:
        globals()["t_" + ARGS.case]()
    except Skip as e:
        print("SKIP: %s" % e)
        return 77
    except AssertionError as e:
        print("FAIL: %s" % e)
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
