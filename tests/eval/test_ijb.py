"""ft-eval ijb (formats.md 4) on a synthetic IJB-C folder (make_ijb.py) against independent
references:
  1. features: ft-eval's saved image features (<target>_feats.npy) equal the cv2 + numpy +
     PyTorch pipeline (cv2.imread, BGR->RGB, pyref.ijb.umeyama, cv2.warpAffine, pyref.iresnet
     on the crop and its mirror, summed): cosine >= 0.99999 for every image; the aligned crops
     recover the ft-synth faces (pixel error printed and bounded);
  2. pooling, scores, TAR@FAR: pyref.ijb on those features gives ft-eval's template features,
     scores (1e-6) and exactly its printed table; --load-features re-scores to the same table;
  3. the ROC: ev_tools roc (ft_roc_tar) equals pyref.ijb.roc_curve + the helper's argmin
     exactly (every FPR and TAR bit for bit) on scores with many ties and on small cases;
  4. malformed meta files, a missing or corrupt image, degenerate landmarks, a features file
     of the wrong size, a model whose embeddings overflow: exit 1 and one line naming the
     file and the line; SIGINT during the features: exit 130, no outputs.
With --onnx (ft-export is built) the features are also compared with onnxruntime running the
exported model on the same crops normalized as onnx_ijbc.py does, (x - 127.5) / 127.5.
Usage: test_ijb.py FT_BIN EV_TOOLS WORKDIR small|large [--onnx]
"""
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import pyref  # noqa: E402

cv2, np, torch = pyref.need("cv2", "numpy", "torch")
from pyref import ijb  # noqa: E402
from pyref.iresnet import Net  # noqa: E402
from pyref.safetensors import load_safetensors  # noqa: E402
from pyref.verify import to_input  # noqa: E402
import make_ijb  # noqa: E402

FT_BIN, TOOLS, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
MODE = sys.argv[4] if len(sys.argv) > 4 else "small"
ONNX = "--onnx" in sys.argv[5:]  # ft-export is built: also compare with onnxruntime
EVAL = os.path.join(FT_BIN, "ft-eval")
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
fail = pyref.FAILS  # pyref.check records here
check = pyref.check


def run(*args, rc=0):
    p = subprocess.run([*map(str, args)], capture_output=True, text=True)
    if rc is not None and p.returncode != rc:
        print(p.stdout, p.stderr)
        raise SystemExit("FAIL: %s exited %d, expected %d" % (args[:2], p.returncode, rc))
    return p


def table(out):
    """{far label: '%.2f' cell} and the method of ft-eval's PrettyTable."""
    rows = [r for r in out.splitlines() if r.startswith("|")]
    head = [c.strip() for c in rows[0].strip("|").split("|")]
    vals = [c.strip() for c in rows[1].strip("|").split("|")]
    return dict(zip(head[1:], vals[1:])), vals[0]


ids, per_id = (8, 5) if MODE == "small" else (60, 8)
faces = make_ijb.synth_faces(os.path.join(FT_BIN, "ft-synth"), WORK, ids, per_id, 4)
root = os.path.join(WORK, "IJBC")
truth = make_ijb.build(root, faces, seed=2)
names, lmk, score, tids, mids, p1, p2, label = ijb.read_meta(root, "ijbc")
print("synthetic IJB-C: %d images, %d templates, %d pairs (%d genuine)" %
      (len(names), len(np.unique(tids)), len(p1), int(label.sum())))

width, blocks, emb = 8, (1, 1, 1, 1), 64
ckpt = os.path.join(WORK, "r18")
run(TOOLS, "ckpt", ckpt, 18, width, *blocks, emb, 33)
res = os.path.join(WORK, "result")
p = run(EVAL, "ijb", ckpt, root, "--target", "IJBC", "--result-dir", res, "--batch", 16,
        "--threads", 2)
print(p.stdout, end="")
# stderr is not a terminal here: nothing but the progress line ft-eval writes every 10 s for
# logs (a slow or busy machine takes that long), "ijb features: 368/480  34/s  0.3 MB/s  ETA .."
check(all(re.fullmatch(r"ijb features: \d+/%d  \d+/s  [\d.]+ MB/s  ETA \S+" % len(names), ln)
          for ln in p.stderr.splitlines()), "stderr: %r" % p.stderr)
ours, method = table(p.stdout)
check(method == "r18-IJBC", "method cell %r" % method)
rate = re.search(r"features of \d+ images in [\d.]+ s, ([\d.]+) images/s", p.stdout)
check(rate is not None, "no throughput line")

# 1. features against the cv2 / numpy / PyTorch pipeline
feats = np.load(os.path.join(res, "IJBC_feats.npy"))
check(feats.shape == (len(names), emb), "features of shape %s" % (feats.shape,))
sd = load_safetensors(os.path.join(ckpt, "backbone.safetensors"))
model = Net(width, blocks, emb)
model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, strict=True)
model.eval()
crops, errs = [], []
for i, n in enumerate(names):
    img = cv2.cvtColor(cv2.imread(os.path.join(root, "loose_crop", n)), cv2.COLOR_BGR2RGB)
    crop, _ = ijb.align(img, lmk[i])
    crops.append(crop)
    t = truth[i]
    face = t["face"].astype(np.int32)
    if t["grey"]:
        face = cv2.cvtColor(t["face"], cv2.COLOR_RGB2GRAY)[..., None].astype(np.int32)
    errs.append(np.abs(crop[8:-8, 8:-8].astype(np.int32) - face[8:-8, 8:-8]).ravel())
errs = np.concatenate(errs)
print("aligned crops vs the ft-synth faces (JPEG q95 and two resamplings between them): mean "
      "|err| %.2f, 99th percentile %d grey levels" % (errs.mean(), np.percentile(errs, 99)))
check(errs.mean() <= 6 and np.percentile(errs, 99) <= 40, "aligned crops do not recover the faces")
x = torch.from_numpy(np.ascontiguousarray(to_input(np.stack(crops))))
with torch.no_grad():
    ref = (model(x) + model(torch.flip(x, dims=[3]))).numpy()
cos = np.sum(ref * feats, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(feats, axis=1))
print("image features vs cv2 + PyTorch: min cosine %.7f, max |diff| %.2e" %
      (cos.min(), np.abs(ref - feats).max()))
check(cos.min() >= 0.99999, "image features differ from the cv2 + PyTorch pipeline")

if ONNX:  # the helper's own path: the exported model on onnxruntime, (x - 127.5) / 127.5
    ort = pyref.need("onnxruntime")
    onnx_path = os.path.join(WORK, "r18.onnx")
    run(os.path.join(FT_BIN, "ft-export"), ckpt, "-o", onnx_path)
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    blob = (np.stack(crops).astype(np.float32) - np.float32(127.5)) / np.float32(127.5)
    blob = np.ascontiguousarray(np.moveaxis(blob, -1, 1))
    both = sess.run(None, {"data": np.concatenate([blob, blob[..., ::-1].copy()])})[0]
    ort_feats = both[: len(crops)] + both[len(crops):]
    cos = np.sum(ort_feats * feats, 1) / (np.linalg.norm(ort_feats, axis=1) *
                                          np.linalg.norm(feats, axis=1))
    print("image features vs ft-export + onnxruntime (onnx_ijbc.py's path): min cosine %.7f" %
          cos.min())
    check(cos.min() >= 0.99999, "image features differ from onnxruntime's")

# 2. pooling, scores and the table from ft-eval's own features
img_feats = feats * score[:, None]
tf, uniq = ijb.pool(img_feats, tids, mids)
sc = ijb.scores(tf, uniq, p1, p2)
tar = ijb.tar_at_far(label, sc)
want = {lab: "%.2f" % tar[f] for lab, f in zip(["1e-06", "1e-05", "0.0001", "0.001", "0.01",
                                                 "0.1"], ijb.FARS)}
print("numpy TAR@FAR:", want)
check(ours == want, "TAR table differs from numpy's: %s vs %s" % (ours, want))
ttf = np.load(os.path.join(res, "IJBC_templates.npy"))
with open(os.path.join(res, "IJBC_template_ids.txt")) as f:
    tid_file = [int(v) for v in f.read().split()]
check(tid_file == list(uniq), "template ids differ")
check(ttf.shape == tf.shape and np.abs(ttf - tf).max() <= 1e-6, "template features differ")
saved = np.load(os.path.join(res, "IJBC.npy")).ravel()
check(saved.shape == sc.shape and np.abs(saved - sc).max() <= 1e-6, "scores differ")
p = run(EVAL, "ijb", os.path.join(WORK, "nomodel"), root, "--target", "ijbc", "--result-dir",
        os.path.join(WORK, "again"), "--load-features", os.path.join(res, "IJBC_feats.npy"))
again, method2 = table(p.stdout)
check(again == ours and method2 == "nomodel-IJBC", "--load-features gives another table")

# IJB-B: the same files under meta/ijbb_*, --target IJBB (any case), the same table
ijbb = os.path.join(WORK, "IJBB")
os.makedirs(os.path.join(ijbb, "meta"))
os.symlink(os.path.join(root, "loose_crop"), os.path.join(ijbb, "loose_crop"))
for fn in os.listdir(os.path.join(root, "meta")):
    shutil.copy(os.path.join(root, "meta", fn),
                os.path.join(ijbb, "meta", fn.replace("ijbc_", "ijbb_")))
p = run(EVAL, "ijb", ckpt, ijbb, "--target", "ijbb", "--result-dir", os.path.join(WORK, "resb"),
        "--load-features", os.path.join(res, "IJBC_feats.npy"))
tb, mb = table(p.stdout)
check(tb == ours and mb == "r18-IJBB" and
      os.path.exists(os.path.join(WORK, "resb", "IJBB.npy")), "IJBB: %s %s" % (mb, tb))

# 3. the ROC, exactly
rng = np.random.default_rng(3)
cases = [(np.round(rng.normal(size=5000) * 8) / 8, rng.random(5000) < 0.3),
         (rng.normal(size=3000).astype(np.float32), rng.random(3000) < 0.05),
         (np.array([0.5, 0.5, 0.5, 0.1]), np.array([1, 0, 1, 0])),
         (np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([0, 1, 0, 1, 0])),
         (np.array([1.0, 1.0]), np.array([1, 0]))]
for k, (s, lab) in enumerate(cases):
    s = np.asarray(s, np.float32)
    sp, lp = os.path.join(WORK, "s.npy"), os.path.join(WORK, "l.npy")
    np.save(sp, s[:, None])
    np.save(lp, np.asarray(lab, np.float32)[:, None])
    got = [tuple(float(v) for v in line.split()) for line in run(TOOLS, "roc", sp, lp)
           .stdout.splitlines()]
    fpr, tpr = ijb.roc_curve(lab, s.astype(np.float64))
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    exp = [(far, fpr[np.argmin(np.abs(fpr - far))], tpr[np.argmin(np.abs(fpr - far))])
           for far in ijb.FARS]
    check(got == exp, "ROC case %d: %s vs numpy %s" % (k, got, exp))
print("ROC: %d cases equal to numpy's roc_curve + argmin" % len(cases))

# 4. bad inputs: one line naming the file (and line)
meta = os.path.join(root, "meta")
five = open(os.path.join(meta, "ijbc_name_5pts_score.txt")).read().splitlines()
tm = open(os.path.join(meta, "ijbc_face_tid_mid.txt")).read().splitlines()
pl = open(os.path.join(meta, "ijbc_template_pair_label.txt")).read().splitlines()
n_case = [0]


def variant(five_l=None, tm_l=None, pl_l=None, images=None):
    n_case[0] += 1
    d = os.path.join(WORK, "bad%d" % n_case[0])
    os.makedirs(os.path.join(d, "meta"))
    for fn, lines in [("name_5pts_score", five_l or five), ("face_tid_mid", tm_l or tm),
                      ("template_pair_label", pl_l or pl)]:
        if lines != "missing":
            with open(os.path.join(d, "meta", "ijbc_%s.txt" % fn), "w") as f:
                f.write("\n".join(lines) + "\n")
    if images is None:
        os.symlink(os.path.join(root, "loose_crop"), os.path.join(d, "loose_crop"))
    else:
        shutil.copytree(os.path.join(root, "loose_crop"), os.path.join(d, "loose_crop"))
        images(os.path.join(d, "loose_crop"))
    return d


def expect_error(d, needle, extra=()):
    p = run(EVAL, "ijb", ckpt, d, "--target", "IJBC", "--result-dir", os.path.join(d, "res"),
            "--threads", 2, *extra, rc=None)
    lines = p.stderr.strip().splitlines()
    print("error case %s: %s" % (os.path.basename(d), lines[0] if lines else ""))
    check(p.returncode == 1 and len(lines) == 1 and all(s in lines[0] for s in needle),
          "%s: expected exit 1 and one line with %s, got %d: %r" %
          (d, needle, p.returncode, p.stderr))
    check(not os.path.exists(os.path.join(d, "res", "IJBC.npy")), "%s: scores written" % d)


F5, FT, FP = "ijbc_name_5pts_score.txt", "ijbc_face_tid_mid.txt", "ijbc_template_pair_label.txt"
expect_error(variant(five_l=five[:2] + [five[2].rsplit(" ", 1)[0]] + five[3:]),
             [F5, "line 3", "11 fields"])
expect_error(variant(five_l=five[:4] + [five[4].replace(" ", " x", 1)] + five[5:]),
             [F5, "line 5", "not a"])
expect_error(variant(tm_l=[tm[1], tm[0]] + tm[2:]), [FT, "line 1", "same order"])
expect_error(variant(tm_l=tm[:-1]), [FT, "lines"])
expect_error(variant(pl_l=pl[:6] + [pl[6].rsplit(" ", 1)[0] + " 2"] + pl[7:]),
             [FP, "line 7", "label 0 or 1"])
expect_error(variant(pl_l=["999999 %s 1" % pl[0].split()[1]] + pl[1:]),
             [FP, "line 1", "template 999999"])
expect_error(variant(pl_l="missing"), [FP])
same = five[6].split(" ")
same = " ".join(same[:1] + same[1:3] * 5 + same[-1:])
expect_error(variant(five_l=five[:6] + [same] + five[7:]), [names[6], F5 + " line 7", "landmarks"])
expect_error(variant(images=lambda d: os.remove(os.path.join(d, names[9]))),
             [names[9], F5 + " line 10", "cannot read"])
expect_error(variant(five_l=five[:5] + [""] + five[5:],  # the line of the file, blank ones counted
                     images=lambda d: os.remove(os.path.join(d, names[9]))),
             [names[9], F5 + " line 11", "cannot read"])


def corrupt(d):
    with open(os.path.join(d, names[2]), "wb") as f:
        f.write(b"not a jpeg at all")


expect_error(variant(images=corrupt), [names[2], F5 + " line 3", "JPEG"])
ovf = os.path.join(WORK, "overflow")  # embeddings that overflow to inf/NaN: refused
run(TOOLS, "ckpt", ovf, 18, width, *blocks, emb, 33, "overflow")
p = run(EVAL, "ijb", ovf, root, "--target", "IJBC", "--result-dir", os.path.join(WORK, "ovr"),
        "--threads", 2, rc=1)
check(p.stderr.count("\n") == 1 and names[0] in p.stderr and "not finite" in p.stderr,
      "overflowing model: %r" % p.stderr)
check(not os.path.exists(os.path.join(WORK, "ovr", "IJBC.npy")), "overflowing model: scores")
# Ctrl-C during the features: exit 130 within a batch, one line, no outputs
import signal  # noqa: E402
import time  # noqa: E402

slow = os.path.join(WORK, "wide")  # width 64: a few seconds for 40 images at batch 1
run(TOOLS, "ckpt", slow, 18, 64, *blocks, emb, 5)
sig_res = os.path.join(WORK, "sigres")
proc = subprocess.Popen([EVAL, "ijb", slow, root, "--target", "IJBC", "--result-dir", sig_res,
                         "--batch", "1", "--threads", "1"], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
proc.stdout.readline()  # the meta summary: the features have started
time.sleep(0.5)
proc.send_signal(signal.SIGINT)
t0 = time.time()
out_s, err_s = proc.communicate(timeout=60)
print("SIGINT during the features: exit %d after %.2f s: %s" %
      (proc.returncode, time.time() - t0, err_s.strip()))
check(proc.returncode == 130 and err_s.count("\n") == 1 and "signal" in err_s,
      "SIGINT: exit %d, %r" % (proc.returncode, err_s))
check(not os.path.exists(os.path.join(sig_res, "IJBC.npy")) and
      not os.path.exists(os.path.join(sig_res, "IJBC_feats.npy")), "SIGINT: outputs written")

np.save(os.path.join(WORK, "short.npy"), feats[:-1])
expect_error(variant(), ["short.npy", "images"],
             extra=("--load-features", os.path.join(WORK, "short.npy")))

# blank lines and CRLF ends are not errors: the same table
d = variant(five_l=five[:5] + [""] + five[5:], tm_l=[v + "\r" for v in tm], pl_l=pl + ["", ""])
p = run(EVAL, "ijb", ckpt, d, "--target", "IJBC", "--result-dir", os.path.join(d, "res"),
        "--threads", 2)
check(table(p.stdout)[0] == ours, "blank lines / CRLF change the table")
p = run(EVAL, "ijb", ckpt, root, "--target", "IJBX", rc=2)
check(p.stderr.count("\n") == 1 and "IJBX" in p.stderr, "bad --target: %r" % p.stderr)

if fail:
    print("%d check(s) failed" % len(fail))
    sys.exit(1)
print("ok")
