#!/usr/bin/python3
"""torch_arcface_step.py: arcface_torch's training step on one GPU, the reference facetrain's
CUDA trainer is measured against (tools/gpu-check.sh runs both in the same command).

The step is arcface_torch's train_v2 recipe: IResNet (tests/pyref/iresnet.py, insightface's
layout), Partial FC v2 on one rank (sample rate r: the batch's positive classes plus random
negatives up to r * C, positives first, as PartialFC_V2.sample does), CombinedMarginLoss as
ArcFace (s 64, m2 0.5, applied under no_grad), cross entropy, torch.autocast fp16 + GradScaler
(growth_interval 100), or bf16 autocast without scaling; clip_grad_norm_(backbone, 5), SGD
(momentum 0.9, wd 5e-4). PyTorch gets its best setup: channels_last, cudnn.benchmark, and
torch.compile of the backbone with --compile (skipped, and said, when it fails).

Input: a synthetic batch already on the device (the data path is measured separately).
Prints one JSON line: samples/s, step ms, peak device memory (torch.cuda.max_memory_allocated).
Usage: torch_arcface_step.py [--depth 50] [--batch 128] [--classes 93431] [--rate 1.0]
       [--dtype fp16|bf16|fp32] [--steps 20] [--warmup 5] [--compile] [--check]
--check: import and build everything on the CPU with a tiny model, run one step, print "ok"
(tools/gpu-check.sh --dry-run uses it where there is no GPU).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from pyref.iresnet import Net  # noqa: E402

BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 14, 3], 100: [3, 13, 30, 3],
          200: [6, 26, 60, 6]}


def sample(labels, num_classes, num_sample):
    """PartialFC_V2.sample on one rank: positives kept, random negatives fill up to
    num_sample; returns sorted class ids and the labels remapped into them."""
    pos = torch.unique(labels, sorted=True)
    if num_sample >= num_classes:
        return None, labels
    num_sample = max(num_sample, pos.numel())
    perm = torch.rand(num_classes, device=labels.device)
    perm[pos] = 2.0
    index = torch.topk(perm, k=num_sample)[1].sort()[0]
    return index, torch.searchsorted(index, labels)


def margin_loss(emb, weight, labels, s=64.0, m2=0.5):
    cos = F.linear(F.normalize(emb), F.normalize(weight)).clamp(-1, 1)
    rows = torch.arange(cos.shape[0], device=cos.device)
    with torch.no_grad():  # CombinedMarginLoss applies the ArcFace margin without its gradient
        t = cos[rows, labels].float()
        delta = torch.zeros_like(cos)
        delta[rows, labels] = (torch.cos(torch.acos(t) + m2) - t).to(cos.dtype)
    return F.cross_entropy(((cos + delta) * s).float(), labels)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--classes", type=int, default=93431)
    ap.add_argument("--rate", type=float, default=1.0)
    ap.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    if a.check:
        a.depth, a.width, a.batch, a.classes, a.steps, a.warmup = 18, 8, 4, 50, 1, 0
        a.dtype, a.rate = "bf16", 0.5  # CPU autocast takes bf16 only; rate < 1 runs sample()
    dev = torch.device("cpu" if a.check else "cuda")
    if not a.check:
        torch.backends.cudnn.benchmark = True
    net = Net(a.width, BLOCKS[a.depth], 512, rounding=False).to(dev)
    net = net.to(memory_format=torch.channels_last) if not a.check else net
    compiled = False
    if a.compile and not a.check:
        try:
            net_c = torch.compile(net)
            compiled = True
        except Exception as e:  # noqa: BLE001 - report and go on uncompiled
            print("torch.compile failed: %s" % e, file=sys.stderr)
            net_c = net
    else:
        net_c = net
    weight = torch.nn.Parameter(torch.normal(0, 0.01, (a.classes, 512), device=dev))
    opt = torch.optim.SGD([{"params": net.parameters()}, {"params": [weight]}], lr=0.1,
                          momentum=0.9, weight_decay=5e-4)
    amp_dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}[a.dtype]
    use_scaler = a.dtype == "fp16" and not a.check
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        scaler = torch.amp.GradScaler("cuda", growth_interval=100, enabled=use_scaler)
    else:
        scaler = torch.cuda.amp.GradScaler(growth_interval=100, enabled=use_scaler)
    x = (torch.rand(a.batch, 3, 112, 112, device=dev) * 2 - 1)
    if not a.check:
        x = x.contiguous(memory_format=torch.channels_last)
    num_sample = int(a.rate * a.classes)
    g = torch.Generator(device=dev).manual_seed(0)

    def step():
        labels = torch.randint(0, a.classes, (a.batch,), device=dev, generator=g)
        index, lab = sample(labels, a.classes, num_sample)
        with torch.autocast(dev.type, dtype=amp_dt or torch.float32, enabled=amp_dt is not None):
            emb = net_c(x)
            w = weight if index is None else weight[index]
            loss = margin_loss(emb, w, lab)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(a.warmup):
        step()
    if a.check:
        loss = step()
        assert torch.isfinite(loss)
        print("ok")
        return
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / a.steps
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "depth": a.depth,
                      "batch": a.batch, "classes": a.classes, "rate": a.rate, "dtype": a.dtype,
                      "compiled": compiled, "step_ms": round(dt * 1e3, 3),
                      "samples_per_s": round(a.batch / dt, 1),
                      "peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
                      "loss": float(loss)}))


if __name__ == "__main__":
    main()
