"""ft-train --check-config on arcface_torch-style configs (tests/train/arcface_configs/): each file
parses with the expressions arcface_torch's configs use (arithmetic, references to keys set
earlier, string concatenation) and prints the config lines Python itself gives (the file
executed by Python, merged over base.py's defaults, as in test_config.py); the ignored
arcface_torch keys get one note each; networks facetrain does not have, undefined keys,
division by zero and unsupported syntax give one line with file:line and exit 1.
Usage: test_check_config.py FT_BIN REPO_ROOT WORK
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_config_ref import reference  # noqa: E402

BIN, REPO, WORK = sys.argv[1:4]
TRAIN = os.path.join(BIN, "ft-train")
CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "arcface_configs")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402

fail = pyref.FAILS  # pyref.check records here
check = pyref.check


def check_config(path, *args):
    p = subprocess.run([TRAIN, "--check-config", path, *args], capture_output=True, text=True,
                       cwd=WORK)
    return p.returncode, p.stdout, p.stderr


os.makedirs(WORK, exist_ok=True)
# 1. every arcface-style config: exit 0, the lines Python gives, nothing touched
for name in sorted(os.listdir(CONFIGS)):
    path = os.path.join(CONFIGS, name)
    for over in ([], ["lr=0.1*2", "num_epoch=4", "val_targets=['lfw']"]):
        rc, out, err = check_config(path, *over)
        want = reference(path, over, dataset=(1, 1) if "num_image = " in open(path).read()
                         else None)
        check(rc == 0, f"{name} {over}: exit {rc}: {err.strip()}")
        if rc == 0 and out.splitlines() != want:
            for a, b in zip(out.splitlines() + [""] * len(want), want + [""] * len(out)):
                if a != b:
                    print(f"  got  {a!r}\n  want {b!r}")
            check(False, f"{name} {over}: config lines differ from Python's")
        notes = [ln for ln in err.splitlines() if "is ignored" in ln]
        if name == "wandb_logging.py":
            keys = sorted(re.findall(r"wandb_logging\.py:\d+: (\w+) = ", "\n".join(notes)))
            check(keys == sorted(["dali_aug", "wandb_key", "suffix_run_name", "using_wandb",
                                  "wandb_project", "save_artifacts", "notes"]),
                  f"ignored-key notes: {notes}")
            check(all(ln.startswith("ft-train: note: ") for ln in notes), "note prefix")
        else:
            check(not err.strip(), f"{name}: unexpected stderr {err.strip()!r}")
    print(f"ok   {name}")
check(not os.listdir(WORK) or os.listdir(WORK) == ["bad"], f"--check-config wrote {os.listdir(WORK)}")

# 2. errors: one line "ft-train: file:line: reason", exit 1
bad = os.path.join(WORK, "bad")
os.makedirs(bad, exist_ok=True)
head = "from easydict import EasyDict as edict\nconfig = edict()\nconfig.rec = '/d'\n" \
       "config.num_classes = 10\n"
cases = [
    ("config.network = 'mbf'\n", "x.py:5: network 'mbf' is not supported: facetrain has the "
     "IResNets r18 r34 r50 r100 r200"),
    ("config.network = 'vit_t_dp005_mask0'\nconfig.optimizer = 'adamw'\n",
     "x.py:5: network 'vit_t_dp005_mask0' is not supported: facetrain has the IResNets r18 r34 "
     "r50 r100 r200"),
    ("config.network = 'r2060'\n", "network 'r2060' is not supported"),
    ("config.warmup_epoch = config.num_epochs // 10\n",
     "x.py:5: bad value for 'warmup_epoch': config.num_epochs is not set yet"),
    ("config.warmup_epoch = config.num_epoch // 10\n",  # base.py's default is not in the file
     "x.py:5: bad value for 'warmup_epoch': config.num_epoch is not set yet"),
    ("config.num_epoch = 10\nconfig.warmup_epoch = config.num_epoch // 0\n",
     "x.py:6: bad value for 'warmup_epoch': division by zero"),
    ("config.lr = 1 % 0.0\n", "x.py:5: bad value for 'lr': division by zero"),
    ("config.lr = 0.1 if True else 0.2\n", "x.py:5: bad value for 'lr': unsupported syntax at "
     "'if True else 0.2'"),
    ("config.lr = float('0.1')\n", "x.py:5: bad value for 'lr'"),
    ("config.output = 'a' + 1\n",
     "x.py:5: bad value for 'output': unsupported operand type(s) for +: 'str' and 'int'"),
    ("config.num_image = 2 ** 64\n", "x.py:5: bad value for 'num_image': integer too large"),
    ("config.lr = 0.1 +\n", "x.py:5: bad value for 'lr'"),
    ("config.lr = (0.1 *\n  2\n", "x.py:5: unclosed bracket"),
    ("config.num_image = 100\nconfig.batch_size = 128\n",
     "num_image = 100 is smaller than one global batch (128)"),
    ("config.lr = 'x'\n", "x.py:5: 'lr' must be a number, got str 'x'"),
]
for text, needle in cases:
    path = os.path.join(bad, "x.py")
    with open(path, "w") as f:
        f.write(head + text)
    rc, out, err = check_config(path)
    lines = err.strip().splitlines()
    ok = rc == 1 and len(lines) == 1 and lines[0].startswith("ft-train: ") and needle in lines[0]
    print(f"{'ok  ' if ok else 'FAIL'} {lines[-1] if lines else ''}")
    check(ok, f"{text.strip()!r}: want one line with {needle!r}, exit 1; got {rc} {err!r}")
rc, out, err = check_config(os.path.join(CONFIGS, "arithmetic.py"), "warmup_epoch=config.lr")
check(rc == 1 and "'warmup_epoch' must be an integer, got float 0.125" in err,
      f"an override referring to a key: {err!r}")
rc, out, err = check_config(os.path.join(CONFIGS, "arithmetic.py"), "num_epoch=config.num_epoch*2")
check(rc == 0 and ": num_epoch" + " " * 16 + "20\n" in out, f"override num_epoch*2: {err!r}")
p = subprocess.run([TRAIN, "--check-config"], capture_output=True, text=True)
check(p.returncode == 2 and p.stderr.startswith("usage: ft-train"), "--check-config alone: usage")
print(f"{len(fail)} failure(s)")
sys.exit(1 if fail else 0)
