#!/usr/bin/python3
"""train_cpu_step_torch.py: the PyTorch CPU baseline for bench/train_cpu_step.c: the same
IResNet (tests/pyref/iresnet.py), ArcFace + full-class PFC, SGD + clipping, at the same
batch and thread count. Prints wall and CPU-time samples/s.
Usage: train_cpu_step_torch.py [depth 18|50] [batch 32] [threads 2] [classes 93431] [steps 2]
                               [fp32|bf16]
bf16: forward and loss under torch.autocast('cpu', dtype=torch.bfloat16) (oneDNN's bf16 path).
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import torch  # noqa: E402
from pyref.iresnet import Net, pfc_loss  # noqa: E402

amp = len(sys.argv) > 6 and sys.argv[6] == "bf16"
depth, batch, threads, classes, steps = [int(a) for a in (sys.argv[1:6] + [0] * 5)[:5]] or []
depth, batch = depth or 18, batch or 32
threads, classes, steps = threads or 2, classes or 93431, steps or 2
torch.set_num_threads(threads)
blocks = {18: [2, 2, 2, 2], 50: [3, 4, 14, 3]}[depth]
net = Net(64, blocks, 512).train()
W = torch.nn.Parameter(torch.randn(classes, 512) * 0.01)
opt = torch.optim.SGD([{"params": net.parameters()}, {"params": [W]}], lr=0.1, momentum=0.9,
                      weight_decay=5e-4)
cfg = {"threshold": 0.0, "margin": "arcface", "s": 64.0}
x = torch.rand(batch, 3, 112, 112) * 2 - 1
wall = cpu = 0.0
for s in range(steps + 1):
    labels = torch.randint(0, classes, (batch,))
    t0, c0 = time.time(), time.process_time()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        loss = pfc_loss(net(x), W, labels, None, cfg)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 5)
    opt.step()
    opt.zero_grad()
    if s:
        wall += time.time() - t0
        cpu += time.process_time() - c0
print("torch %s r%d batch %d threads %d classes %d: %.2f samples/s wall, cpu %.2f s/step -> %.2f "
      "samples/s if the threads had their cores"
      % ("bf16" if amp else "fp32", depth, batch, threads, classes, batch * steps / wall, cpu / steps,
         batch * threads * steps / cpu))
