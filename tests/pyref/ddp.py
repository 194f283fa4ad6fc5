"""Distributed training oracle: PyTorch DistributedDataParallel with the gloo backend on CPU
(one process per rank) around pyref.iresnet.Net, and a model-parallel Partial FC written from
arcface_torch's PartialFC_V2 algorithm (partial_fc_v2.py) -- none of facetrain's C code.

run(dumps, workdir) -> list of per-rank results; dumps[r] is rank r's dump of
tests/dist/dist_train.c (pyref.safetensors.load_torch dict + metadata). Each of the W spawned
processes:
  * joins a gloo group (file:// rendezvous in workdir), torch.set_num_threads(1);
  * builds Net(width, blocks, emb), loads rank 0's "init.*" tensors and wraps it in
    DDP(broadcast_buffers=False, bucket_cap_mb=25) as arcface_torch's train_v2.py does:
    gradients averaged over ranks, BatchNorm statistics per rank (no SyncBN);
  * holds its class shard [num_local, emb] (num_classes // W + 1 for the first
    num_classes % W ranks, else num_classes // W; contiguous) from "init.pfc.weight";
  * per step: embeddings of its own batch; all-gather of embeddings (autograd: the backward
    sums the gathered gradient over ranks and keeps this rank's rows, times W, as
    AllGatherFunc does) and labels; labels outside the shard -> -1, others - class_start;
    sample_rate < 1: positives of the shard kept plus negatives (see sample_index); cos =
    normalize(emb_all) . normalize(W[index])^T clamped to [-1, 1], ArcFace margin (m2 0.5)
    under no_grad, times s = 64; distributed cross entropy as DistCrossEntropyFunc: row max
    all-reduced (MAX), exp-sums all-reduced (SUM), p_target all-reduced, loss =
    -mean(log(max(p_target, 1e-30))), backward (softmax - onehot) / rows;
  * clip_grad_norm_(backbone, 5), SGD(momentum 0.9, weight_decay) over backbone + shard
    (dense: PartialFC_V2's weight sees a zero gradient on unsampled rows).

Sampling: PartialFC_V2 draws its negatives with torch.rand + topk; facetrain's shards draw them
with their own documented keys (ops.h pfc_sample, kmath.h ft_km_sample_key: a hash of (seed,
step, rank) and the row, positives first; the rows of the smallest keys are kept).
sample_index() re-implements that here (common/ft_common.c's published hash, a full sort) so
that "the same seeds give the same sampled centres" is checked against an independent
implementation rather than taken from the C dump.
"""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

from pyref.iresnet import Net

M64 = (1 << 64) - 1


# ---- facetrain's hash (common/ft_common.c), for the sampled negatives ----

def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def hash64(a, b, c):
    s, h = splitmix64(a & M64)
    s, h = splitmix64(h ^ b)
    s, h = splitmix64(h ^ c)
    return h


def num_sample(rate, num_local):
    """int(sample_rate * num_local) in float32, as the C computes it."""
    return int(torch.tensor(rate, dtype=torch.float32) * torch.tensor(float(num_local),
                                                                      dtype=torch.float32))


def sample_key(seed, i, positive):
    """ops.h pfc_sample's key of local class i: i for a positive; else the high word
    (hash64(seed, i, "sample") >> 33) + 1 above i."""
    if positive:
        return i
    return (((hash64(seed, i, 0x73616D706C65) >> 33) + 1) << 32) | i


def sample_index(local_labels, num_local, rate, seed, step, rank):
    """The shard's sorted sampled rows: the rows of the max(num_sample, #positives) smallest
    keys (every positive, then uniform negatives), keys seeded by hash64(seed, step, rank)."""
    pos = set(int(v) for v in local_labels if v >= 0)
    count = max(num_sample(rate, num_local), len(pos))
    s = hash64(seed, step, rank)
    keys = sorted(sample_key(s, i, i in pos) for i in range(num_local))
    return sorted(k & 0xFFFFFFFF for k in keys[:count])


def shard(C, W, r):
    """(class_start, num_local) of rank r: PartialFC_V2's split."""
    num_local = C // W + (1 if r < C % W else 0)
    return C // W * r + min(r, C % W), num_local


# ---- PartialFC_V2's collectives with autograd ----

class AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(out)

    @staticmethod
    def backward(ctx, g):
        g = g.contiguous().clone()
        dist.all_reduce(g, dist.ReduceOp.SUM)
        r, b = dist.get_rank(), ctx.rows
        return g[r * b:(r + 1) * b] * dist.get_world_size()


class DistCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, label):
        rows = logits.shape[0]
        mx = logits.max(1, keepdim=True)[0]
        dist.all_reduce(mx, dist.ReduceOp.MAX)
        e = (logits - mx).exp()
        s = e.sum(1, keepdim=True)
        dist.all_reduce(s, dist.ReduceOp.SUM)
        p = e / s
        idx = label != -1
        pt = torch.zeros(rows, 1, dtype=logits.dtype)
        pt[idx] = p[idx].gather(1, label[idx][:, None])
        dist.all_reduce(pt, dist.ReduceOp.SUM)
        ctx.save_for_backward(idx, p, label)
        return -pt.clamp_min(1e-30).log().mean()

    @staticmethod
    def backward(ctx, g):
        idx, p, label = ctx.saved_tensors
        onehot = torch.zeros_like(p)
        onehot[idx] = onehot[idx].scatter(1, label[idx][:, None], 1.0)
        return (p - onehot) / p.shape[0] * g, None


def margin_logits(emb, w, label, s=64.0, m2=0.5):
    cos = F.linear(F.normalize(emb), F.normalize(w)).clamp(-1, 1)
    idx = torch.where(label != -1)[0]
    with torch.no_grad():
        t = cos[idx, label[idx]]
        delta = torch.zeros_like(cos)
        delta[idx, label[idx]] = torch.cos(torch.acos(t) + m2) - t
    return (cos + delta) * s


# ---- one rank ----

def _rank_main(rank, world, dumps, workdir, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + os.path.join(workdir, "rdv"),
                            rank=rank, world_size=world)
    meta, d = dumps[rank]
    cfg = meta["run"]
    C, steps = cfg["classes"], cfg["steps"]
    rate, seed = cfg["rate"], cfg["seed"]
    net = Net(cfg["width"], [int(b) for b in meta["blocks"].split(",")], cfg["emb"])
    names = list(net.state_dict().keys())
    d0 = dumps[0][1]
    net.load_state_dict({k: d0["init." + k] for k in names}, strict=True)
    ddp = nn.parallel.DistributedDataParallel(net, broadcast_buffers=False, bucket_cap_mb=25)
    start, nl = shard(C, world, rank)
    Wsh = nn.Parameter(d["init.pfc.weight"].clone())
    assert Wsh.shape[0] == nl
    opt = torch.optim.SGD([{"params": ddp.parameters()}, {"params": [Wsh]}], lr=cfg["lr"],
                          momentum=0.9, weight_decay=cfg["wd"])
    res = {"loss": [], "index": []}
    ddp.train()
    for s in range(steps):
        x, lab = d["step%d.x" % s], d["step%d.labels" % s].long()
        e = ddp(x)
        e_all = AllGather.apply(e)
        lab_all = [torch.empty_like(lab) for _ in range(world)]
        dist.all_gather(lab_all, lab)
        lab_all = torch.cat(lab_all)
        loc = lab_all - start
        loc[(loc < 0) | (loc >= nl)] = -1
        if rate < 1:
            index = sample_index(loc.tolist(), nl, rate, seed, s, rank)
            res["index"].append(index)
            it = torch.tensor(index, dtype=torch.long)
            pos = torch.full((nl,), -1, dtype=torch.long)
            pos[it] = torch.arange(len(index))
            loc = torch.where(loc >= 0, pos[loc.clamp_min(0)], loc)
            w = Wsh[it]
        else:
            w = Wsh
        loss = DistCrossEntropy.apply(margin_logits(e_all, w, loc), loc)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ddp.parameters(), 5)
        opt.step()
        opt.zero_grad()
        res["loss"].append(loss.item())
    res["final"] = {k: v.clone() for k, v in net.state_dict().items()}
    res["final.pfc.weight"] = Wsh.detach().clone()
    res["mom"] = {k: opt.state[p]["momentum_buffer"].clone()
                  for k, p in net.named_parameters() if p.requires_grad}
    res["mom.pfc"] = opt.state[Wsh]["momentum_buffer"].clone()
    torch.save(res, os.path.join(out, "ref_rank%d.pt" % rank))
    dist.destroy_process_group()


def parse_run(s):
    out = {}
    for kv in s.split():
        k, v = kv.split("=")
        out[k] = float(v) if k in ("rate", "lr", "wd") else int(v)
    return out


def run(dumps, workdir):
    """dumps: [(meta, tensors)] per rank, meta["run"] parsed with parse_run. Returns the
    per-rank result dicts (loss list, sampled index lists, final state, momentum)."""
    world = len(dumps)
    rdv = os.path.join(workdir, "rdv")
    if os.path.exists(rdv):
        os.remove(rdv)
    mp.spawn(_rank_main, args=(world, dumps, workdir, workdir), nprocs=world, join=True)
    return [torch.load(os.path.join(workdir, "ref_rank%d.pt" % r)) for r in range(world)]
