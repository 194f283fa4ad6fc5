"""pyref: facetrain's Python oracles, written from the format and model descriptions and
sharing no code with the C sources. Every Python test imports them from here.

  pyref.recordio     RecordIO (.rec/.idx), IRHeader, the insightface release layout:
                     writer, strict reader, MXFaceDataset sample order
  pyref.safetensors  safetensors reader (numpy, or torch tensors)
  pyref.verify       the verification .bin protocol (arcface_torch eval/verification.py)
  pyref.ijb          IJB-C/IJB-B 1:1 (onnx_ijbc.py): Umeyama alignment, pooling, scores,
                     sklearn's roc_curve and the TAR@FAR table, the meta files
  pyref.iresnet      PyTorch IResNet (insightface layout and state_dict names), the Partial FC
                     margin head, and the mixed-precision ("same casts") variant of both
  pyref.amp          rounding to fp16/bf16 storage (RoundBoth, RoundFwd) and a loss scaler
                     with torch.cuda.amp.GradScaler semantics
  pyref.trainer      the replay of a trainer-core dump (train_core/test_train_torch.c) in
                     PyTorch, fp32 or mixed precision, and the storage modes' tolerances
  pyref.selftest     the package's own checks (ctest pyref_selftest)

A test finds the package with sys.path.insert(0, <its folder>/..) (tests/ is the parent of
every test folder), then calls need() for the third-party modules its oracle uses (numpy,
torch, cv2) before importing them. check() / FAILS / finish() are the shared pass/fail
bookkeeping of the test scripts.
"""
import importlib
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean

# PyTorch's portable CPU kernels, on every machine: its AVX2 kernel set rounds differently
# from its AVX-512 and portable ones, and on an AVX2-only machine the small trainer-core case
# then lands on the other side of a PReLU kink in one layer (every gradient below it off by
# 4e-2, while facetrain and the portable kernels both stay within 5e-6 of a float64 replay).
# An oracle must not change with the machine it runs on. Set before torch is imported (every
# test imports pyref first); a caller's own ATEN_CPU_CAPABILITY stands.
os.environ.setdefault("ATEN_CPU_CAPABILITY", "default")
# The same for OpenBLAS, which torch's CPU matmuls (and facetrain's, in the processes the tests
# start: they inherit this) go through: it picks its kernels by CPU model, and a model newer
# than Debian's OpenBLAS knows gets its generic Prescott kernels (an Intel Xeon with AVX-512
# BF16, 2026-12-04: pyref_selftest's bf16 stand-in off by 0.229 against a 0.2 bound,
# train_core_torch_small_arcface's momentum by 3.8e-3 against 2e-3). Name the kernels it
# picks on the models it knows, by the CPU's features: SkylakeX's with AVX-512 (what the
# AVX-512 CI machines ran), Haswell's with AVX2 (the AVX2 ones).
def _openblas_core():
    try:
        flags = set()
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        return None
    if {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        return "SkylakeX"
    return "Haswell" if {"avx2", "fma"} <= flags else None


if "OPENBLAS_CORETYPE" not in os.environ and _openblas_core():
    os.environ["OPENBLAS_CORETYPE"] = _openblas_core()

SKIP_RC = 77


def in_ci():
    """True when the CI entry point (.ci/run) runs the tests: CI=true (or 1/yes)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _missing(name, err):
    if in_ci():
        print("FAIL: oracle module %s is missing (%s); CI installs it with "
              "tools/install-deps.sh" % (name, err), flush=True)
        sys.exit(1)
    print("skip: oracle module %s is missing (%s); tools/install-deps.sh installs it"
          % (name, err), flush=True)
    sys.exit(SKIP_RC)


# The checks every test script makes: check() records a failure as one "FAIL: <what>" line
# and goes on, so a run reports every broken property at once; the script ends with
# finish() (or exits 1 itself when FAILS is not empty).
FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL:", what, flush=True)
    return cond


def finish():
    print("%d failure(s)" % len(FAILS), flush=True)
    sys.exit(1 if FAILS else 0)


def synth_data(bin_dir, path, classes, per_class, seed=1, pairs=None):
    """ft-synth faces ingested (shuffled, seed 7) into path/train.lmdb, made once per folder:
    the training set of the ft-train tests. Exit 77 (skip) when the tools are not built."""
    import shutil
    import subprocess
    for tool in ("ft-synth", "ft-ingest"):
        if not os.access(os.path.join(bin_dir, tool), os.X_OK):
            print(f"skip: {tool} is not built", flush=True)
            sys.exit(SKIP_RC)
    if os.path.isdir(os.path.join(path, "train.lmdb")):
        return
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([os.path.join(bin_dir, "ft-synth"), path, "--classes", str(classes),
                    "--per-class", str(per_class), "--seed", str(seed)] +
                   (["--pairs", str(pairs)] if pairs else []), check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([os.path.join(bin_dir, "ft-ingest"), path, os.path.join(path, "train.lmdb"),
                    "--shuffle", "--seed", "7"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def need(*names):
    """Import the named modules and return them (one module, or a tuple for several). A
    missing one ends the test: exit 1 in CI (an oracle must not be skipped there), exit 77
    (skip) elsewhere, with one line saying which module is missing."""
    mods = []
    for name in names:
        try:
            mods.append(importlib.import_module(name))
        except ImportError as e:
            _missing(name, e)
    return mods[0] if len(mods) == 1 else tuple(mods)


def optional(name):
    """The module, or None when it is not installed and the test can do without it; in CI a
    missing optional oracle is a failure too (CI must run every case)."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        if in_ci():
            _missing(name, e)
        print("note: %s is not installed; the cases that need it are left out" % name)
        return None
