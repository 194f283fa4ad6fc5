#!/usr/bin/python3
"""test_ddp.py: facetrain's distributed step (CPU ranks over MPI) against PyTorch DDP.

Runs `mpirun -np W dist_train --out WORKDIR ...` (tests/dist/dist_train.c: one MPI rank per
process, the backbone data-parallel and Partial FC model-parallel through train/model/dist.h,
the per-rank dumps rank<r>.safetensors), then the oracle pyref.ddp (W gloo processes: DDP
around pyref.iresnet.Net + PartialFC_V2's algorithm) from the same initial state and inputs,
and compares, per rank:
  init          every rank's initial backbone equals rank 0's bit for bit (each rank built
                its model from another seed: only the broadcast makes them equal), and the
                shards' initial centres are [class_start, class_start + num_local) of one
                table (the concatenation over ranks is checked against the split formula)
  losses        every step's loss within 1e-4 relative of the oracle's
  index         sample_rate < 1: every shard's sampled rows, every step, equal to the
                oracle's re-implementation of the sampler (so their union over ranks is the
                same set of centres)
  backbone      final parameters, per rank, max |c - t| / max(max |t|, 1e-2) <= 1e-3 (fp32:
                different summation orders over 3 steps at lr 0.1); BN running statistics
                per rank <= 2e-3 (same floor); momentum <= 2e-3, the normalizer at least
                1e-3 of the model's largest momentum (biases followed by a BatchNorm have
                zero gradient up to rounding, as in train_core/torch_ref.py)
  centres       the rank's final shard and its momentum <= 1e-3 / 2e-3
The C side checks itself that all ranks hold bit-identical backbone parameters after every
step (dist_train exits 1 otherwise). The gradient buckets overlap backward: all but the
stem's must start inside it (dist_train's lines say how many), and they are reduced in the
gradients' own memory ("in place"); with --bucket-bytes (many buckets) a run with --overlap 0
and one with --inplace 0 (packed into a staging buffer) must write the same bytes.

usage: test_ddp.py DIST_TRAIN WORKDIR NP MPIRUN [ARGS...] -- [dist_train options]
exit 0 pass, 1 fail, 77 skip (no torch outside CI; a missing oracle fails in CI)
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402

torch = pyref.need("torch")
import torch.distributed as tdist  # noqa: E402
from pyref.safetensors import load_torch  # noqa: E402

fails = 0


def fail(msg):
    global fails
    fails += 1
    print("FAIL " + msg)


def nmax(c, t, floor):
    c, t = c.double(), t.double()
    return (c - t).abs().max().item() / max(t.abs().max().item(), floor) if c.numel() else 0.0


def cmp(what, c, t, tol, floor=1e-12):
    e = nmax(c, t, floor)
    if not e <= tol:
        fail("%-48s err %.3e tol %.0e" % (what, e, tol))
    return e


def main():
    helper, work, np_ = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sep = sys.argv.index("--")
    mpirun, args = sys.argv[4:sep], sys.argv[sep + 1:]
    if not tdist.is_available() or not tdist.is_gloo_available():
        pyref._missing("torch.distributed (gloo)", "not built into this torch")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    cmd = mpirun + ["-np", str(np_), helper, "--out", work] + args
    print(" ".join(cmd), flush=True)
    p = subprocess.run(cmd, timeout=240, capture_output=True, text=True)
    print(p.stdout + p.stderr, end="", flush=True)
    if p.returncode != 0:
        print("FAIL: dist_train exited %d" % p.returncode)
        return 1
    # the buckets overlap backward: all but the stem's start inside it, and the same run with
    # every bucket started after backward gives the same bytes
    started = [tuple(map(int, line.rsplit(": ", 1)[1].split(" of ")))
               for line in p.stdout.splitlines() if "started inside backward" in line]
    if not started or any(n > 1 and not 1 <= k < n for k, n in started):
        fail("buckets started inside backward (of all): %s" % started)
    if "buckets reduced in place" not in p.stdout:
        fail("the buckets were not reduced in the gradients' memory (in place)")
    if "--bucket-bytes" in args:
        # every bucket started after backward, and buckets packed into a staging buffer:
        # the same bytes as the overlapped in-place run
        for name, extra in (("sequential", ["--overlap", "0"]), ("packed", ["--inplace", "0"])):
            alt = work + "_" + name
            shutil.rmtree(alt, ignore_errors=True)
            os.makedirs(alt)
            q = subprocess.run(mpirun + ["-np", str(np_), helper, "--out", alt] + args + extra,
                               timeout=240, capture_output=True, text=True)
            if q.returncode != 0:
                fail("dist_train %s exited %d: %s" % (" ".join(extra), q.returncode,
                                                      q.stderr[-800:]))
                continue
            if name == "packed" and "buckets reduced packed" not in q.stdout:
                fail("dist_train --inplace 0 did not pack the buckets")
            for r in range(np_):
                a, b = (open(os.path.join(d, "rank%d.safetensors" % r), "rb").read()
                        for d in (work, alt))
                if a != b:
                    fail("rank %d: %s changed the results" % (r, " ".join(extra)))
        print("overlap: %s buckets started inside backward; --overlap 0 and --inplace 0 give "
              "the same bytes" % started[0][0], flush=True)
    from pyref import ddp  # noqa: E402 (after need("torch"))
    dumps = []
    for r in range(np_):
        path = os.path.join(work, "rank%d.safetensors" % r)
        meta, tensors, _ = load_torch(path)
        meta["run"] = ddp.parse_run(meta["run"])
        dumps.append((meta, tensors))
    cfg = dumps[0][0]["run"]
    # the broadcast: every rank's initial backbone is rank 0's, bit for bit
    d0 = dumps[0][1]
    for r in range(1, np_):
        for k, v in dumps[r][1].items():
            if k.startswith("init.") and k != "init.pfc.weight" and not torch.equal(v, d0[k]):
                fail("rank %d: %s differs from rank 0's after the broadcast" % (r, k))
                break
    # the shards: PartialFC_V2's split, contiguous, covering every class once
    total = 0
    for r in range(np_):
        start, nl = ddp.shard(cfg["classes"], np_, r)
        m = dumps[r][0]["run"]
        if (m["class_start"], m["num_local"]) != (start, nl) or start != total:
            fail("rank %d: shard [%d, +%d), want [%d, +%d)" % (r, m["class_start"],
                                                               m["num_local"], start, nl))
        total += nl
    if total != cfg["classes"]:
        fail("the shards hold %d classes, not %d" % (total, cfg["classes"]))
    ref = ddp.run(dumps, work)
    worst = {}
    for r in range(np_):
        meta, d = dumps[r]
        t = ref[r]
        for s in range(cfg["steps"]):
            c = d["step%d.loss" % s].double().item()
            e = abs(c - t["loss"][s]) / abs(t["loss"][s])
            worst["loss"] = max(worst.get("loss", 0), e)
            if not e <= 1e-4:
                fail("rank %d step %d loss %.7f, oracle %.7f (rel %.2e)" % (r, s, c,
                                                                             t["loss"][s], e))
            if cfg["rate"] < 1:
                ci = d["step%d.index" % s].tolist()
                if ci != t["index"][s]:
                    fail("rank %d step %d: sampled rows %s, oracle %s" % (r, s, ci,
                                                                          t["index"][s]))
        for k, v in t["final"].items():
            c = d["final." + k]
            if k.endswith("num_batches_tracked"):
                if not torch.equal(c, v):
                    fail("rank %d final.%s %s != %s" % (r, k, c.tolist(), v.tolist()))
                continue
            grp, tol = ("running stats", 2e-3) if "running" in k else ("backbone", 1e-3)
            worst[grp] = max(worst.get(grp, 0),
                             cmp("rank %d final.%s" % (r, k), c, v, tol, 1e-2))
        # biases followed by a BatchNorm have zero gradient up to rounding: a momentum
        # tensor's normalizer is at least 1e-3 of the largest momentum of the model
        mfloor = 1e-3 * max(v.abs().max().item() for v in t["mom"].values())
        for k, v in t["mom"].items():
            c = d["final.mom.%s.momentum_buffer" % k]
            worst["momentum"] = max(worst.get("momentum", 0),
                                    cmp("rank %d momentum %s" % (r, k), c, v, 2e-3, mfloor))
        worst["centres"] = max(worst.get("centres", 0),
                               cmp("rank %d final.pfc.weight" % r, d["final.pfc.weight"],
                                   t["final.pfc.weight"], 1e-3))
        worst["momentum"] = max(worst["momentum"],
                                cmp("rank %d centre momentum" % r,
                                    d["final.mom.weight.momentum_buffer"], t["mom.pfc"], 2e-3))
    print("worst: " + ", ".join("%s %.2e" % kv for kv in sorted(worst.items())))
    print("%s: %d ranks, %d classes, rate %g, %d steps, losses %s" % (
        "FAIL" if fails else "ok", np_, cfg["classes"], cfg["rate"], cfg["steps"],
        " ".join("%.5f" % v for v in ref[0]["loss"])))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
