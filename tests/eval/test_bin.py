"""ft-eval bin (formats.md 3.3) against the independent numpy protocol (pyref.verify):
  - on ft-synth's lfw/cfp_fp/agedb_30 .bin files and a seeded IResNet checkpoint, the printed
    Accuracy-Flip mean and std, Accuracy-Highest and every fold's threshold and accuracy equal
    numpy's on the embeddings ft-eval saved (--save-features), printed the same way; XNorm to
    1e-6 (relative);
  - those embeddings equal a PyTorch forward (pyref.iresnet, the checkpoint loaded with
    load_state_dict) of the cv2-decoded images and their mirrors: cosine >= 0.99999;
  - the line formats are arcface_torch's ([name][0]XNorm: %f, Accuracy-Flip: %1.5f+-%1.5f,
    Accuracy-Highest: %1.5f);
  - bad inputs: a missing named target, a truncated .bin, a model that is not a checkpoint, a
    folder without .bin files, a model whose embeddings overflow to inf/NaN give exit 1 and
    one line naming the file; usage errors exit 2.
Usage: test_bin.py FT_BIN EV_TOOLS WORKDIR
"""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402

cv2, np, torch = pyref.need("cv2", "numpy", "torch")
from pyref.iresnet import Net  # noqa: E402
from pyref.safetensors import load_safetensors  # noqa: E402
from pyref.verify import load_bin, protocol, to_input  # noqa: E402

FT_BIN, TOOLS, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
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


data = os.path.join(WORK, "data")
run(os.path.join(FT_BIN, "ft-synth"), data, "--classes", 2, "--per-class", 1, "--seed", 9,
    "--pairs", 60, "--threads", 2)
ckpt = os.path.join(WORK, "ckpt")
width, blocks, emb = 8, (1, 1, 1, 1), 64
run(TOOLS, "ckpt", ckpt, 18, width, *blocks, emb, 21)
feats = os.path.join(WORK, "feats")
p = run(EVAL, "bin", ckpt, data, "--folds", "--save-features", feats, "--batch", 16,
        "--threads", 2)
out = p.stdout
print(out, end="")

sd = load_safetensors(os.path.join(ckpt, "backbone.safetensors"))
model = Net(width, blocks, emb)
model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, strict=True)
model.eval()

for name in ["lfw", "cfp_fp", "agedb_30"]:
    orig = np.load(os.path.join(feats, name + "_orig.npy"))
    flip = np.load(os.path.join(feats, name + "_flip.npy"))
    rgb, issame = load_bin(os.path.join(data, name + ".bin"))
    check(orig.shape == (len(rgb), emb) and flip.shape == orig.shape,
          "%s: saved features of shape %s" % (name, orig.shape))
    r = protocol(orig, flip, issame)
    want = ["[%s][0]XNorm: %f" % (name, r["xnorm"]),
            "[%s][0]Accuracy-Flip: %1.5f+-%1.5f" % (name, r["acc"], r["std"]),
            "[%s][0]Accuracy-Highest: %1.5f" % (name, r["acc"])]
    want += ["[%s][0]Fold %d: threshold %.2f, accuracy %1.5f" % (name, k, t, a)
             for k, (t, a) in enumerate(zip(r["threshold"], r["fold_acc"]))]
    got = [line for line in out.splitlines() if line.startswith("[%s]" % name)]
    check(got[1:] == want[1:], "%s: lines differ from numpy's:\n  %s\n  %s" %
          (name, "\n  ".join(got), "\n  ".join(want)))
    m = re.match(r"\[%s\]\[0\]XNorm: ([\d.]+)$" % name, got[0] if got else "")
    check(m and abs(float(m.group(1)) - r["xnorm"]) <= 1e-6 * r["xnorm"] + 5e-7,
          "%s: XNorm %s vs numpy %.6f" % (name, got[0] if got else None, r["xnorm"]))
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(to_input(rgb)))
        ref_o = model(x).numpy()
        ref_f = model(torch.flip(x, dims=[3])).numpy()
    ours = np.concatenate([orig, flip])
    ref = np.concatenate([ref_o, ref_f])
    cos = np.sum(ours * ref, 1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    print("%s: %d pairs; embeddings vs PyTorch: min cosine %.7f, max |diff| %.2e" %
          (name, len(issame), cos.min(), np.max(np.abs(ours - ref))))
    check(cos.min() >= 0.99999, "%s: embeddings differ from PyTorch's" % name)


def expect_error(args, needle, code=1):
    p = run(EVAL, *args, rc=None)
    lines = p.stderr.strip().splitlines()
    ok = p.returncode == code and len(lines) == 1 and needle in lines[0]
    print("error case %s -> %d: %s" % (args[0:1] + [os.path.basename(str(a)) for a in args[1:3]],
                                        p.returncode, lines[0] if lines else ""))
    check(ok, "expected exit %d and one line naming %r, got %d: %r" %
          (code, needle, p.returncode, p.stderr))


expect_error(["bin", ckpt, data, "--targets", "lfw,nosuch"], os.path.join(data, "nosuch.bin"))
bad = os.path.join(WORK, "bad")
os.makedirs(bad)
with open(os.path.join(data, "lfw.bin"), "rb") as f:
    blob = f.read()
with open(os.path.join(bad, "lfw.bin"), "wb") as f:
    f.write(blob[: len(blob) // 2])
expect_error(["bin", ckpt, bad, "--targets", "lfw"], os.path.join(bad, "lfw.bin"))
expect_error(["bin", os.path.join(data, "lfw.bin"), data], os.path.join(data, "lfw.bin"))
expect_error(["bin", ckpt, os.path.join(WORK, "feats")], os.path.join(WORK, "feats"))
ovf = os.path.join(WORK, "overflow")  # finite weights, embeddings that overflow: NaN never hides
run(TOOLS, "ckpt", ovf, 18, width, *blocks, emb, 21, "overflow")
expect_error(["bin", ovf, data, "--targets", "lfw"], "not finite")
expect_error(["bin", ckpt], "MODEL", code=2)
expect_error(["bin", ckpt, data, "--batch", "0"], "--batch", code=2)

if fail:
    print("%d check(s) failed" % len(fail))
    sys.exit(1)
print("ok")
