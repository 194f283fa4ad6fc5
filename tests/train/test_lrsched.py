"""LR schedule vs PyTorch: a PolynomialLRWarmup written on torch.optim.lr_scheduler's
_LRScheduler (the recursive form PyTorch evaluates), stepped as train_v2.py steps it.
Our closed form must agree to float64 rounding (relative 1e-12) at every step, including
lr(0) = base with warmup, the warmup ramp, the decay and the flat tail after total_step.
Usage: test_lrsched.py TR_LRSCHED
"""
import os
import subprocess
import sys
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402

torch = pyref.need("torch")
from torch.optim.lr_scheduler import _LRScheduler  # noqa: E402

TOOL = sys.argv[1]
warnings.filterwarnings("ignore")


class PolyWarmup(_LRScheduler):
    def __init__(self, optimizer, warmup_iters, total_iters, power=1.0, last_epoch=-1):
        self.total_iters, self.power, self.warmup_iters = total_iters, power, warmup_iters
        super().__init__(optimizer, last_epoch=last_epoch)

    def get_lr(self):
        l, w, t = self.last_epoch, self.warmup_iters, self.total_iters
        if l == 0 or l > t:
            return [g["lr"] for g in self.optimizer.param_groups]
        if l <= w:
            return [b * l / w for b in self.base_lrs]
        f = ((1.0 - (l - w) / (t - w)) / (1.0 - (l - 1 - w) / (t - w))) ** self.power
        return [g["lr"] * f for g in self.optimizer.param_groups]


def torch_lrs(base, warmup, total, power, steps):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p]}, {"params": [torch.nn.Parameter(torch.zeros(1))]}],
                          lr=base, momentum=0.9)
    sch = PolyWarmup(opt, warmup, total, power)
    out = [sch.get_last_lr()[0]]
    for _ in range(steps):
        opt.step()
        sch.step()
        out.append(sch.get_last_lr()[0])
    return out


fail = 0
# steps_per_epoch = num_image // (batch * world): the formats.md 6.3 formulas
spe = 5179510 // (128 * 8)
cases = [(0.1, 0, 200, 1.0, 230), (0.1, 20, 200, 1.0, 230), (0.02, 7, 50, 2.0, 60),
         (0.1, 0, spe * 20, 1.0, 3000), (0.1, spe * 2, spe * 20, 1.0, 12000), (0.5, 1, 2, 1.0, 5)]
for base, w, t, pw, steps in cases:
    r = subprocess.run([TOOL, str(base), str(w), str(t), str(pw), str(steps)],
                       capture_output=True, text=True, check=True)
    ours = [float(x) for x in r.stdout.split()]
    ref = torch_lrs(base, w, t, pw, steps)
    assert len(ours) == len(ref) == steps + 1
    worst = 0.0
    for l, (a, b) in enumerate(zip(ours, ref)):
        err = abs(a - b) / max(abs(b), 1e-300) if b != 0 else abs(a)
        worst = max(worst, err)
        if err > 1e-12 and abs(a - b) > 1e-15:
            print(f"FAIL base={base} w={w} T={t} power={pw}: lr({l}) = {a!r}, torch {b!r}")
            fail += 1
            break
    checks = [ours[0] == base, ours[min(t, steps)] <= 1e-15 if steps >= t else True]
    if w > 0:
        checks.append(abs(ours[1] - base / w) < 1e-15 * base)
    if not all(checks):
        print(f"FAIL base={base} w={w} T={t}: landmarks {ours[:3]} ... ")
        fail += 1
    print(f"base={base} warmup={w} total={t} power={pw}: {steps + 1} steps, worst rel diff {worst:.2e}")
r = subprocess.run([TOOL, "0.1", "10", "10", "1", "3"], capture_output=True, text=True)
if r.returncode != 2:
    print("FAIL: warmup >= total must be refused")
    fail += 1
print(f"{fail} failure(s)")
sys.exit(1 if fail else 0)
