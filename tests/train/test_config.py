"""ft-train config files: parsing, str() formatting of the training.log lines, overrides and
every validation error.

The reference for the config lines is Python itself: the test executes each config file with a
stand-in for easydict, merges it over configs/base.py's defaults in dict order (as
arcface_torch's get_config does), and prints `": " + key + " "*(25-len(key)) + str(value)`.
Usage: test_config.py TR_CFGDUMP REPO_ROOT
"""
import math
import os
import random
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_config_ref import reference  # noqa: E402

TOOL, REPO = sys.argv[1], sys.argv[2]

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402

failures = pyref.FAILS  # pyref.check records here
check = pyref.check


def run(*args):
    p = subprocess.run([TOOL, *args], capture_output=True, text=True)
    return p.returncode, p.stdout


def compare(path, overrides=(), dataset=None):
    args = [path]
    if dataset:
        args += ["--dataset", str(dataset[0]), str(dataset[1])]
    rc, out = run(*args, *overrides)
    want = reference(path, overrides, dataset)
    got = out.splitlines()
    check(rc == 0, f"{path} {overrides}: exit {rc}: {out.strip()}")
    if rc == 0 and got != want:
        for a, b in zip(got + [""] * len(want), want + [""] * len(got)):
            if a != b:
                print(f"  got  {a!r}\n  want {b!r}")
        check(False, f"{path} {overrides}: config lines differ")


def expect_error(path, needle, *args):
    rc, out = run(path, *args)
    check(rc == 2 and needle in out, f"{os.path.basename(path)} {args}: want error containing "
          f"{needle!r}, got rc={rc} {out.strip()!r}")


tmp = tempfile.mkdtemp(prefix="ft_cfg_")


def write(name, text):
    p = os.path.join(tmp, name)
    with open(p, "w") as f:
        f.write(text)
    return p


# 1. the shipped configs
for name in ("ms1mv3_r50.py", "ms1mv3_r100.py", "glint360k_r100.py", "synth_r18.py"):
    path = os.path.join(REPO, "configs", name)
    compare(path)
    compare(path, dataset=(5179510, 93431) if "ms1m" in name else (17091657, 360232)
            if "glint" in name else (2560, 64))

# 2. an arcface_torch-style file with every literal form the subset allows
full = write("arc_style.py", '''from easydict import EasyDict as edict

# make training faster
# our RAM is 256G
config = edict()
config.margin_list = (1.0, 0.0, 0.4)   # CosFace
config.network = 'r34'
config.resume = False
config.output = None
config.embedding_size = 256
config.sample_rate = 0.3
config.fp16 = True
config.momentum = 0.9
config.weight_decay = 1e-4
config.batch_size = 64
config.lr = 0.02
config.verbose = 1_000
config.dali = False
config.rec = "/train_tmp/with # hash"
config.num_classes = 10572
config.num_image = "auto" if False else 490623
config.num_epoch = 16
config.warmup_epoch = 1
config.val_targets = [
    'lfw',      # comment inside a list
    "cfp_fp",
]
config.using_wandb = False
config.wandb_key = "XXXX"
config.blocks = (1, 1, 2, 1,)
config.width = 16
''')
# the line with a conditional expression is not a literal: file:line error
expect_error(full, "arc_style.py:21: bad value for 'num_image'")
full = write("arc_style.py", open(full).read().replace(
    'config.num_image = "auto" if False else 490623', 'config.num_image = 490623'))
compare(full)
compare(full, ["lr=0.05", "network=r18", "output=/tmp/run one", "val_targets=['lfw']",
               "max_steps=100", "config.seed=7", "blocks=None", "dropout=0.25"])
compare(full, dataset=(490623, 10572))

# 3. errors, each one clear and located
base = "config = edict()\nconfig.rec = '/d'\nconfig.num_classes = 10\n"
cases = [
    ("config.lrr = 0.1\n", "e.py:4: unknown key 'lrr'"),
    ("config.lr = 'abc'\n", "e.py:4: 'lr' must be a number, got str 'abc'"),
    ("config.lr = 0.1 +\n", "e.py:4: bad value for 'lr'"),
    ("print('hello')\n", "e.py:4: expected 'config.key = value'"),
    ("import os\n", "e.py:4: expected 'config.key = value'"),
    ("config.network = 'r50\n", "unterminated string"),
    ("config.val_targets = ['lfw',\n", "e.py:4: unclosed bracket"),
    ("config.batch_size = 0\n", "e.py:4: 'batch_size' = 0 is out of range [1, 65536]"),
    ("config.sample_rate = 1.5\n", "e.py:4: 'sample_rate' = 1.5 is out of range"),
    ("config.sample_rate = 0\n", "'sample_rate' must be in (0, 1]"),
    ("config.embedding_size = -1\n", "e.py:4: 'embedding_size' = -1 is out of range"),
    ("config.fp16 = 1\n", "e.py:4: 'fp16' must be True or False, got int 1"),
    ("config.batch_size = 12.0\n", "'batch_size' must be an integer, got float 12.0"),
    ("config.network = 'r51'\n", "network 'r51' is not supported"),
    ("config.optimizer = 'adamw'\n", "optimizer 'adamw' is not supported"),
    ("config.pfc_update = 'all'\n", "pfc_update 'all' is not supported"),
    ("config.dali = 1\n", "'dali' must be True or False, got int 1"),
    ("config.margin_list = (1.0, 0.5)\n", "'margin_list' must be a tuple of 3 numbers"),
    ("config.margin_list = (0.9, 0.4, 0.15)\n", "margin_list m1 must be 1.0"),
    ("config.val_targets = 'lfw'\n", "'val_targets' must be a list of names"),
    ("config.val_targets = ['../lfw']\n", "must be a file stem"),
    ("config.blocks = (1, 1, 1)\n", "'blocks' must be None or 4 integers"),
    ("config.num_epoch = 2\nconfig.warmup_epoch = 2\n", "warmup_epoch (2) must be smaller"),
    ("config.total_step = 5\n", "'total_step' is computed by ft-train"),
    ("config.lr = -0.1\n", "'lr' = -0.1 is out of range"),
    ("config.seed = 1e3\n", "'seed' must be an integer, got float 1000.0"),
]
for i, (line, needle) in enumerate(cases):
    expect_error(write("e.py", base + line), needle)
expect_error(write("e.py", "config = edict()\nconfig.num_classes = 10\n"), "rec is not set")
expect_error(write("e.py", "config = edict()\nconfig.rec = '/d'\n"), "num_classes is not set")
ok = write("ok.py", base)
expect_error(ok, "command line 'foo=1': unknown key 'foo'", "foo=1")
expect_error(ok, "command line 'lr=[1': bad value for 'lr'", "lr=[1")
expect_error(ok, "command line 'lr=abc': 'lr' must be a number, got str 'abc'", "lr=abc")
expect_error(ok, "expected key=value", "lr")
expect_error(ok, "num_classes = 10 is smaller than the 12 classes in the dataset /d",
             "--dataset", "1000", "12")
expect_error(ok, "num_image = 100 is smaller than one global batch (128)", "--dataset", "100",
             "10")
expect_error(os.path.join(tmp, "missing.py"), "missing.py: cannot read")

# 4. literals: str() as Python prints it
lits = ["1", "-3", "0x1F", "1_000", "0.0005", "5e-4", "1e-05", "1e16", "1e15", "123456789.125",
        "-0.0", ".5", "2.", "'it''s'" if False else "\"it's\"", "'a\\\\b'", "'tab\\there'",
        "(1.0, 0.5, 0.0)", "(1,)", "()", "[]", "['lfw', 'cfp_fp', \"agedb_30\"]",
        "[1, [2, (3, 'x')], None, True, False]", "('q\"uote', 'both\\'\"')", "1.0e+300",
        "3.141592653589793", "0.1", "0.30000000000000004", "100.0", "1e22", "1.5e-7"]
for lit in lits:
    rc, out = run("--str", lit)
    want = str(eval(lit))
    check(rc == 0 and out.rstrip("\n") == want, f"str({lit}): got {out.strip()!r} want {want!r}")
# expressions: Python's own eval is the reference
exprs = ["7 // 2", "-7 // 2", "7 // -2", "-7 // -2", "7 % 3", "-7 % 3", "7 % -3", "-7 % -3",
         "7.5 // 2", "-7.5 // 2", "7.5 // -2", "7.5 % -2", "-7.5 % 2", "-0.0 % 5", "0.0 % -5",
         "1e300 // 1e-10", "5.5 % 2.5", "-5 % 2.5", "1 / 3", "4 / 2", "-1 / 8", "2 ** 10",
         "2 ** -2", "(-2) ** 3", "-2 ** 2", "2 ** 3 ** 2", "2 ** 0.5", "(-8) ** 2.0", "0 ** 0",
         "2 ** 62", "(-2) ** 63", "9223372036854775807 + 0", "1.5 ** 2", "10 ** 4 // 1000",
         "30 * 10000", "0.1 * 3", "0.1 + 0.2", "1 - 0.9", "3 * 0.1 * 512 / 1024", "- - 3",
         "+-+3", "3 - -3", "(1 + 2) * (3 - 4)", "1 + 2 * 3 - 4 / 5 % 6 // 7", "True + True",
         "True * 2.5", "-True", "'work_dirs/' + 'x'", "'a' + \"b\" + 'c'", "(1, 2) + (3,)",
         "[1] + [2, 'x']", "() + ()", "(1.0, 0.5 * 2, 0.0)", "[2 ** 2, -1 // 2]", "1_000 * 2",
         "0x10 * 2", "5e-4 * 2", "(((1)))", "1e308 * 10", "-1e308 * 10"]
for e in exprs:
    rc, out = run("--str", e)
    want = str(eval(e))
    check(rc == 0 and out.rstrip("\n") == want, f"{e}: got {out.strip()!r} want {want!r}")
for e, needle in [("1 / 0", "division by zero"), ("1 // 0", "division by zero"),
                  ("1 % 0.0", "division by zero"), ("0.0 ** -1", "negative power"),
                  ("2 ** 63", "integer too large"), ("-(-9223372036854775807 - 1)", "too large"),
                  ("9223372036854775807 + 1", "too large"), ("3 * 'x'", "unsupported operand"),
                  ("'x' - 'y'", "unsupported operand"), ("-'x'", "bad operand type"),
                  ("(1,) + [2]", "unsupported operand"), ("1 < 2", "unsupported syntax"),
                  ("1 if 1 else 2", "unsupported syntax"), ("config.lr", "not allowed here"),
                  ("(-1) ** 0.5", "complex"), ("2 ** 2 ** 2 ** 2 ** 2", "too large")]:
    rc, out = run("--str", e)
    check(rc == 2 and needle in out, f"{e}: want an error with {needle!r}, got {out.strip()!r}")
for bad in ["1.2.3", "'x", "(1 2)", "[1,,2]", "foo", "01", "1j", "True False"]:
    rc, out = run("--str", bad)
    check(rc == 2 and out.startswith("ERROR"), f"literal {bad!r} should be rejected: {out!r}")

# 5. Python's float repr on many doubles (random bit patterns and decimal-looking values)
rng = random.Random(1234)
vals = [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(3000)]
vals += [rng.choice([1, -1]) * rng.randint(0, 10**rng.randint(1, 17)) / 10**rng.randint(0, 20)
         for _ in range(3000)]
vals += [10.0**k for k in range(-20, 23)] + [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308]
vals = [v for v in vals if math.isfinite(v)]
for start in range(0, len(vals), 500):
    chunk = vals[start:start + 500]
    rc, out = run("--float-repr", *[v.hex() for v in chunk])
    got = out.split()
    for v, g in zip(chunk, got):
        if repr(v) != g:
            check(False, f"repr({v!r}) gave {g!r}")
            break
    check(len(got) == len(chunk), "float repr count")

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
