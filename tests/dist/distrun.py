"""distrun.py: what the ft-train tests under mpirun, ft-launch and Slurm share
(test_train_mpi.py, test_launch.py, test_srun.py): the check list, the synthetic data set,
ft-train's arguments for the small model, a free local port, and the outputs read back
(per-step losses, every checkpoint tensor)."""
import os
import shutil
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402

np = pyref.need("numpy")
from pyref.safetensors import load_safetensors  # noqa: E402,F401

REPO = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..")
CONFIG = os.path.join(REPO, "configs", "synth_r18.py")
fails = pyref.FAILS  # pyref.check records here
check = pyref.check
finish = pyref.finish


def make_data(bin_dir, path, classes=24):
    """ft-synth faces (8 per class) ingested into path/train.lmdb, made once per work folder."""
    pyref.synth_data(bin_dir, path, classes, 8, seed=1, pairs=10)


def train_args(data, classes, out, *extra):
    """ft-train's key=value overrides: width-4 r18, embedding 16, batch 8 per rank, 2 epochs."""
    return [f"rec={data}", f"num_classes={classes}", "batch_size=8", "width=4",
            "embedding_size=16", "val_targets=[]", "threads=1", "frequent=2", "num_epoch=2",
            f"output={out}", *extra]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def fresh(*paths):
    for p in paths:
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)


def losses(path):
    """FT_TRAIN_LOSS_FILE's lines as {step: [loss text of each rank]}."""
    out = {}
    for line in open(path):
        s, v = line.split()
        out.setdefault(int(s), []).append(v)
    return out


def tensors(out):
    """{"<file>:<tensor>": array} of every .safetensors file in out."""
    res = {}
    for name in sorted(os.listdir(out)):
        if name.endswith(".safetensors"):
            for k, v in load_safetensors(os.path.join(out, name)).items():
                res[f"{name}:{k}"] = v
    return res



def children(pid):
    """pids of the processes whose parent is pid (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            if int(st.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d))
    return out


def descendants(pid):
    todo, out = [pid], []
    while todo:
        c = children(todo.pop())
        out += c
        todo += c
    return out
