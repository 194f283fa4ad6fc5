#!/usr/bin/python3
"""test_train_mpi.py: ft-train as CPU ranks under mpirun (docs/distributed.md).

Modes (each on a small synthetic dataset, 24 classes, width-4 r18, batch 8 per rank):
  run      2 and 3 ranks (3: uneven class split 8/8/8 of 24 -> use 25 classes): exit 0; every
           rank reports the same loss at every step (FT_TRAIN_LOSS_FILE gets W equal lines
           per step); rank 0 alone writes training.log, tensorboard/, backbone.safetensors (and
           backbone.onnx with export_onnx);
           every rank its pfc_rank<r>_of<W> and state_rank<r>; checkpoint.json names the step
           and the world; training.log's Speed is the global rate (batch_size * world_size
           per step); resume=True continues bit for bit (3 + 3 steps equal 6 straight: losses
           and every checkpoint tensor; the first 3 with ddp_bucket_view=False and
           ddp_overlap=False, which must give the same bytes)
  failure  a rank's resolved config differs (mpirun MPMD, lr on rank 1): every rank exits
           non-zero naming rank 1, no hang; a rank killed with SIGKILL mid-run: mpirun ends the
           job non-zero within the timeout, naming the rank; the last complete checkpoint
           (checkpoint.json) resumes; a manifest that disagrees with the state files is
           refused naming both; 3 ranks on a 2-rank checkpoint whose position is no multiple
           of the new global batch are refused, naming the numbers
  resplit  save with 3 ranks (25 classes: shards 9/8/8), resume with 2 (13/12) and with 1:
           the re-split checkpoint (resume with max_steps already reached writes it) holds
           the old shards' centres and momentum concatenated bit for bit, the same backbone
           and backbone momentum, the loader at the same global sample; the next 2 steps from
           the 3-rank checkpoint equal those from the re-split one (losses and tensors, bit
           for bit)
  crashsave  a rank killed inside a checkpoint save (FT_TRAIN_INJECT_CRASH), on 2 ranks and
           on 1: before the commit the previous checkpoint stays whole and resumes (the staged
           files are removed), after it the next start renames the staged files into place
           and resumes from the new one; either way the losses and the final tensors equal an
           uninterrupted run's, bit for bit
  nccl     GPU ranks (device=cuda, 2 devices: the CUDA emulator or 2 GPUs): 2 ranks over
           NCCL, equal losses on both ranks, against 2 CPU ranks within the device's rounding,
           resume bit for bit (the second half with each rank bound to its own GPU by
           CUDA_VISIBLE_DEVICES), a SIGKILLed rank ends the job; on the emulator also two
           ranks on one GPU and device='auto' with a GPU on one rank only: refused at the
           start on every rank, naming the ranks; cuda_graphs=True (the collectives recorded
           in the step's graph) equals False bit for bit (fp16, sampling, dropout; fp32 with a
           resume; one rank's recording gone stale: all record afresh); a rank NCCL cannot reach: the init gives
           up after dist_timeout, naming the rank
usage: test_train_mpi.py MODE BIN WORK MPIRUN [ARGS...]
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from distrun import (CONFIG, check, children, load_safetensors, losses, np,  # noqa: E402
                     tensors)
import distrun  # noqa: E402

MODE, BIN, WORK = sys.argv[1:4]
MPIRUN = sys.argv[4:]
TRAIN = os.path.join(BIN, "ft-train")


def make_data(path, classes):
    distrun.make_data(BIN, path, classes)


args = distrun.train_args


def mpi(np_, a, env=None, timeout=120):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(MPIRUN + ["-np", str(np_), TRAIN, CONFIG] + a, capture_output=True,
                          text=True, env=e, timeout=timeout)


def mpi_per_rank(envs, a, env=None, timeout=120):
    """One rank per entry of envs (mpirun MPMD), each started through env(1) with its own
    variables, as a scheduler that binds each task to its own GPU starts them."""
    e = dict(os.environ)
    e.update(env or {})
    cmd = list(MPIRUN)
    for i, re_ in enumerate(envs):
        cmd += ([":"] if i else []) + ["-np", "1", "env"] + \
            [f"{k}={v}" for k, v in re_.items()] + [TRAIN, CONFIG] + a
    return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=timeout)


def run_mode():
    for world, classes in ((2, 24), (3, 25)):
        data = os.path.join(WORK, "synth%d" % classes)
        make_data(data, classes)
        out = os.path.join(WORK, "run%d" % world)
        lf = os.path.join(WORK, "loss%d.txt" % world)
        for p in (out, lf):
            shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else (
                os.path.exists(p) and os.remove(p))
        p = mpi(world, args(data, classes, out, "max_steps=6"), {"FT_TRAIN_LOSS_FILE": lf})
        check(p.returncode == 0, f"{world} ranks: exit {p.returncode}: {p.stderr[-2000:]}")
        if p.returncode:
            continue
        ls = losses(lf)
        check(sorted(ls) == list(range(1, 7)), f"{world} ranks: steps {sorted(ls)}")
        for s, v in ls.items():
            check(len(v) == world and len(set(v)) == 1,
                  f"{world} ranks: step {s} losses differ between ranks: {v}")
        names = sorted(os.listdir(out))
        want = ["backbone.onnx", "backbone.safetensors", "checkpoint.json", "tensorboard",
                "training.log"] + \
            ["pfc_rank%d_of%d.safetensors" % (k, world) for k in range(world)] + \
            ["state_rank%d.safetensors" % k for k in range(world)]
        check(sorted(n for n in names if not n.startswith(".")) == sorted(want),
              f"{world} ranks: outputs {names}")
        man = open(os.path.join(out, "checkpoint.json")).read()
        check('"global_step": 6' in man and '"world_size": %d' % world in man,
              f"{world} ranks: manifest {man}")
        log = open(os.path.join(out, "training.log")).read()
        check(": total_batch_size         %d" % (8 * world) in log,
              f"{world} ranks: training.log total_batch_size")
        check(log.count("Speed") >= 2, f"{world} ranks: no Speed lines")
        check("%d ranks (mpirun, mpi collectives)" % world in p.stderr and
              "gradient buckets reduced in place" in p.stderr,
              f"{world} ranks: summary line: {p.stderr[-500:]}")
        # the shards: rank k holds classes [start, start + n) of the split formula
        for k in range(world):
            w = load_safetensors(os.path.join(out, "pfc_rank%d_of%d.safetensors" % (k, world)))
            n = classes // world + (1 if k < classes % world else 0)
            check(w["weight"].shape == (n, 16), f"rank {k} shard {w['weight'].shape}")
        # resume: 3 + 3 steps equal 6 straight, bit for bit; the first 3 with the gradient
        # buckets packed into a staging buffer and started after backward (same bytes)
        out2, lf2 = out + "_resumed", lf + ".resumed"
        shutil.rmtree(out2, ignore_errors=True)
        if os.path.exists(lf2):
            os.remove(lf2)
        p = mpi(world, args(data, classes, out2, "max_steps=3", "ddp_bucket_view=False",
                            "ddp_overlap=False"), {"FT_TRAIN_LOSS_FILE": lf2})
        check("reduced packed, 0 started inside backward" in p.stderr,
              f"{world} ranks, packed: summary: {p.stderr[-400:]}")
        check(p.returncode == 0, f"{world} ranks, first half: exit {p.returncode} {p.stderr[-800:]}")
        p = mpi(world, args(data, classes, out2, "max_steps=6", "resume=True"),
                {"FT_TRAIN_LOSS_FILE": lf2})
        check(p.returncode == 0, f"{world} ranks, resumed: exit {p.returncode} {p.stderr[-800:]}")
        check(losses(lf2) == ls, f"{world} ranks: resumed losses {losses(lf2)} vs {ls}")
        a, b = tensors(out), tensors(out2)
        check(sorted(a) == sorted(b), f"{world} ranks: resumed checkpoint tensors differ in names")
        bad = [k for k in a if k in b and not np.array_equal(a[k], b[k])]
        check(not bad, f"{world} ranks: resumed tensors differ: {bad[:5]}")
        print(f"ok: {world} ranks, losses {[ls[s][0] for s in sorted(ls)]}", flush=True)


def kill_rank1(label, a, out, env=None, checkpoint_s=60, end_s=60, settle_s=0.0):
    """Start 2 ranks of ft-train with overrides a into out, SIGKILL rank 1 once the first
    checkpoint exists (after settle_s more), and check that the job ends non-zero within
    end_s with a line naming the rank. Returns (manifest path, exit code, seconds from the
    kill to the end, the naming lines)."""
    proc = subprocess.Popen(MPIRUN + ["-np", "2", TRAIN, CONFIG] + a, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, **(env or {})))
    man = os.path.join(out, "checkpoint.json")
    t_end = time.monotonic() + checkpoint_s
    while time.monotonic() < t_end and not os.path.exists(man) and proc.poll() is None:
        time.sleep(0.2)
    check(os.path.exists(man), f"{label}no checkpoint within {checkpoint_s} s")
    time.sleep(settle_s)
    ranks = sorted(c for c in children(proc.pid)
                   if "ft-train" in open(f"/proc/{c}/cmdline").read())
    check(len(ranks) == 2, f"{label}ranks {ranks}")
    t0 = time.monotonic()
    if len(ranks) == 2:
        os.kill(ranks[1], signal.SIGKILL)
    try:
        so, se = proc.communicate(timeout=end_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        so, se = proc.communicate()
        check(False, f"{label}the job did not end within {end_s} s of the SIGKILL")
    took = time.monotonic() - t0
    check(proc.returncode != 0, f"{label}killed run: exit 0")
    named = [ln for ln in se.splitlines() if "exited on signal 9" in ln or "rank 1" in ln]
    check(named, f"{label}no line naming the killed rank: {se[-1500:]}")
    return man, proc.returncode, took, named


def failure_mode():
    data = os.path.join(WORK, "synth24")
    make_data(data, 24)
    # 1. a rank with another config
    out = os.path.join(WORK, "mismatch")
    shutil.rmtree(out, ignore_errors=True)
    a = args(data, 24, out, "max_steps=2")
    t0 = time.monotonic()
    p = subprocess.run(MPIRUN + ["-np", "1", TRAIN, CONFIG] + a + [":", "-np", "1", TRAIN,
                                                                    CONFIG] + a + ["lr=0.2"],
                       capture_output=True, text=True, timeout=120)
    check(p.returncode != 0, "config mismatch: exit 0")
    lines = [l for l in p.stderr.splitlines() if "resolved config differs" in l]
    check(len(lines) == 2 and all("rank 1's resolved config differs from rank 0's" in l
                                  for l in lines),
          f"config mismatch: lines {lines} / {p.stderr[-1500:]}")
    print(f"config mismatch: exit {p.returncode} after {time.monotonic() - t0:.1f} s", flush=True)
    # 2. SIGKILL of rank 1 mid-run; dist_timeout 5 s
    out = os.path.join(WORK, "killed")
    shutil.rmtree(out, ignore_errors=True)
    a = args(data, 24, out, "num_epoch=400", "dist_timeout=5")
    man, rc, took, named = kill_rank1("", a, out, checkpoint_s=60, end_s=60, settle_s=0.5)
    check(took < 30, f"killed run took {took:.1f} s to end")
    print(f"SIGKILL: exit {rc} after {took:.1f} s: {named[:1]}", flush=True)
    # the last complete checkpoint resumes
    step = int(open(man).read().split('"global_step": ')[1].split(",")[0])
    p = mpi(2, args(data, 24, out, "num_epoch=400", f"max_steps={step + 2}", "resume=True"))
    check(p.returncode == 0, f"resume after the kill: exit {p.returncode} {p.stderr[-1500:]}")
    print(f"resumed from step {step}: exit {p.returncode}", flush=True)
    # 3. a manifest that disagrees with the state files
    txt = open(man).read()
    bad = txt.replace('"global_step": %d' % (step + 2), '"global_step": 1')
    open(man, "w").write(bad)
    p = mpi(2, args(data, 24, out, "num_epoch=400", f"max_steps={step + 4}", "resume=True"))
    check(p.returncode != 0 and "a save was cut short on some rank" in p.stderr,
          f"mixed checkpoint: exit {p.returncode} {p.stderr[-1500:]}")
    open(man, "w").write(txt)
    # 4. another world size where the saved position is no multiple of the new global batch
    p = mpi(3, args(data, 24, out, "num_epoch=400", f"max_steps={step + 4}", "resume=True"))
    check(p.returncode != 0 and "only when it is a multiple of" in p.stderr,
          f"3 ranks on a 2-rank checkpoint at step {step}: exit {p.returncode} "
          f"{p.stderr[-1500:]}")
    check(not glob.glob(os.path.join(out, "*.tmp.*")), "temporary files left")


def shards(out, world, name):
    return np.concatenate([load_safetensors(os.path.join(
        out, "pfc_rank%d_of%d.safetensors" % (k, world)))[name] for k in range(world)])


def resplit_mode():
    """Save with 3 ranks (25 classes: shards 9/8/8), resume with 2 (13/12) and 1."""
    data = os.path.join(WORK, "synth25")
    make_data(data, 25)
    out3 = os.path.join(WORK, "w3")
    shutil.rmtree(out3, ignore_errors=True)
    p = mpi(3, args(data, 25, out3, "max_steps=4"))
    check(p.returncode == 0, f"3 ranks: exit {p.returncode} {p.stderr[-1500:]}")
    st3 = load_safetensors(os.path.join(out3, "state_rank0.safetensors"))
    g3 = int(st3["loader_step"]) * 8 * 3
    for world, step in ((2, 6), (1, 12)):
        run = (lambda a, env=None: mpi(world, a, env)) if world > 1 else (
            lambda a, env=None: subprocess.run([TRAIN, CONFIG] + a, capture_output=True,
                                               text=True, env=dict(os.environ, **(env or {})),
                                               timeout=120))
        split, direct = (os.path.join(WORK, "w3_on%d_%s" % (world, t)) for t in ("split",
                                                                                 "direct"))
        for d in (split, direct):
            shutil.rmtree(d, ignore_errors=True)
            shutil.copytree(out3, d)
        # re-split only (max_steps already reached): the checkpoint in the new layout
        p = run(args(data, 25, split, "max_steps=1", "resume=True"))
        check(p.returncode == 0, f"re-split on {world}: exit {p.returncode} {p.stderr[-1500:]}")
        check("re-split over %d ranks" % world in p.stderr, f"re-split note: {p.stderr[-800:]}")
        man = open(os.path.join(split, "checkpoint.json")).read()
        check('"world_size": %d' % world in man and '"global_step": %d' % step in man,
              f"re-split manifest {man}")
        for t in ("weight", "weight.momentum_buffer"):
            a, b = shards(out3, 3, t), shards(split, world, t)
            check(a.shape == b.shape and a.tobytes() == b.tobytes(),
                  f"{world} ranks: re-split {t} is not the old shards concatenated")
        bb3 = load_safetensors(os.path.join(out3, "backbone.safetensors"))
        bbs = load_safetensors(os.path.join(split, "backbone.safetensors"))
        check(all(bb3[k].tobytes() == bbs[k].tobytes() for k in bb3), "re-split backbone differs")
        st = load_safetensors(os.path.join(split, "state_rank0.safetensors"))
        check(int(st["loader_step"]) * 8 * world == g3 and int(st["global_step"]) == step,
              f"{world} ranks: loader at {int(st['loader_step'])} (global sample "
              f"{int(st['loader_step']) * 8 * world}, saved at {g3}), step {int(st['global_step'])}")
        for k in [n for n in st3 if n.endswith(".momentum_buffer")]:
            check(st3[k].tobytes() == st[k].tobytes(), f"backbone momentum {k} differs")
        # the next steps: from the 3-rank checkpoint directly == from the re-split one
        la, lb = (os.path.join(WORK, "loss_on%d_%s" % (world, t)) for t in ("split", "direct"))
        for f in (la, lb):
            if os.path.exists(f):
                os.remove(f)
        p = run(args(data, 25, split, "max_steps=%d" % (step + 2), "resume=True"),
                {"FT_TRAIN_LOSS_FILE": la})
        check(p.returncode == 0, f"{world} ranks from the re-split: exit {p.returncode}")
        p = run(args(data, 25, direct, "max_steps=%d" % (step + 2), "resume=True"),
                {"FT_TRAIN_LOSS_FILE": lb})
        check(p.returncode == 0, f"{world} ranks from 3: exit {p.returncode} {p.stderr[-800:]}")
        check(os.path.exists(la) and open(la).read() == open(lb).read(),
              f"{world} ranks: the next steps differ")
        a, b = tensors(split), tensors(direct)
        same = [k for k in a if k in b and a[k].tobytes() == b[k].tobytes()]
        want = [k for k in a if "_of3" not in k and "state_rank2" not in k and (
            world > 1 or "state_rank1" not in k)]
        check(want and set(want) <= set(same), f"{world} ranks: final tensors differ: "
              f"{sorted(set(want) - set(same))[:4]}")
        print(f"ok: 3 -> {world} ranks, losses {open(la).read().split()}", flush=True)


def pending(out):
    return sorted(n for n in os.listdir(out) if ".pending-" in n)


def saved_steps(out, world):
    return [int(load_safetensors(os.path.join(out, "state_rank%d.safetensors" % k))
                ["global_step"]) for k in range(world)]


def crashsave_mode():
    """A crash inside a checkpoint save, before and after the commit, on 2 ranks and on 1."""
    data = os.path.join(WORK, "synth24")
    make_data(data, 24)
    for world in (2, 1):
        # 192 images: 12 steps per epoch on 2 ranks of 8, 24 on 1; saves at each epoch's end
        spe = 192 // (8 * world)
        run = (lambda a, env=None: mpi(world, a, env)) if world > 1 else (
            lambda a, env=None: subprocess.run([TRAIN, CONFIG] + a, capture_output=True,
                                               text=True, env=dict(os.environ, **(env or {})),
                                               timeout=120))
        ref, lref = os.path.join(WORK, "straight%d" % world), os.path.join(WORK, "ls%d" % world)
        shutil.rmtree(ref, ignore_errors=True)
        if os.path.exists(lref):
            os.remove(lref)
        a = ["num_epoch=3", "dist_timeout=5"]
        p = run(args(data, 24, ref, *a), {"FT_TRAIN_LOSS_FILE": lref})
        check(p.returncode == 0, f"{world} ranks straight: exit {p.returncode} {p.stderr[-1500:]}")
        if p.returncode:
            continue
        want = losses(lref)
        crank = world - 1  # the last rank dies
        for point, resumes_at in (("staged", spe), ("committed", 2 * spe)):
            out, lf = (os.path.join(WORK, "crash%d_%s" % (world, point)),
                       os.path.join(WORK, "lc%d_%s" % (world, point)))
            shutil.rmtree(out, ignore_errors=True)
            if os.path.exists(lf):
                os.remove(lf)
            t0 = time.monotonic()
            p = run(args(data, 24, out, *a),
                    {"FT_TRAIN_INJECT_CRASH": "%d:%s:%d" % (2 * spe, point, crank)})
            took = time.monotonic() - t0
            what = f"{world} ranks, killed at step {2 * spe} ({point})"
            check(p.returncode != 0, f"{what}: exit 0")
            check(took < 60, f"{what}: took {took:.1f} s to end")
            man = open(os.path.join(out, "checkpoint.json")).read()
            check('"global_step": %d' % resumes_at in man, f"{what}: manifest {man}")
            left = pending(out)
            check(left, f"{what}: no staged file left (the crash came too late?)")
            if point == "staged":  # the previous checkpoint is whole
                check(saved_steps(out, world) == [spe] * world,
                      f"{what}: state files at {saved_steps(out, world)}")
            p = run(args(data, 24, out, *a, "resume=True"), {"FT_TRAIN_LOSS_FILE": lf})
            check(p.returncode == 0, f"{what}: resume: exit {p.returncode} {p.stderr[-1500:]}")
            note = "renamed into place" if point == "committed" else "never committed"
            check(note in p.stderr, f"{what}: no note '{note}': {p.stderr[-800:]}")
            check(not pending(out), f"{what}: staged files left after the resume: {pending(out)}")
            got = losses(lf) if os.path.exists(lf) else {}
            check(sorted(got) == list(range(resumes_at + 1, 3 * spe + 1)),
                  f"{what}: resumed steps {sorted(got)[:3]}.. (want from {resumes_at + 1})")
            check(all(got[s] == want[s] for s in got), f"{what}: resumed losses differ")
            x, y = tensors(ref), tensors(out)
            bad = [k for k in x if k not in y or not np.array_equal(x[k], y[k])]
            check(not bad, f"{what}: final tensors differ from the straight run: {bad[:4]}")
            print(f"ok: {what}: ended in {took:.1f} s with {len(left)} staged files, resumed "
                  f"from step {resumes_at}", flush=True)


def same_tensors(x, y, what):
    """Every checkpoint tensor of the output folders x and y equal, bit for bit."""
    a, b = tensors(x), tensors(y)
    bad = [k for k in a if k not in b or not np.array_equal(a[k], b[k])]
    check(sorted(a) == sorted(b) and not bad, f"{what}: tensors differ: {bad[:5]}")


def nccl_graphs(data, env):
    """cuda_graphs=True on 2 GPU ranks: the step, its collectives included, recorded once per
    shape and replayed; the losses and every checkpoint tensor equal the run without graphs,
    bit for bit: fp16 (the loss scale changes at the start), Partial FC sampling of a fixed
    count (64 classes, 16 per shard sampled, for 16 labels a step: the positives always fit)
    with the sampled-rows update and dropout, over 10 steps (the loss scale halves over the
    first 6, each a new shape, then steps 7 and 8 record and 9 and 10 replay); and fp32 stopped at 3 and
    resumed (a resumed run records afresh) against 6 straight steps without graphs."""
    common = ["device=cuda", "dtype=fp16", "num_classes=64", "sample_rate=0.5",
              "pfc_update=sampled", "dropout=0.2"]
    replays = re.compile(r"cuda graphs: (\d+) of (\d+) steps replayed a recording")
    runs = {}
    for graphs in ("False", "True"):
        out, lf = os.path.join(WORK, "nccl_g" + graphs), os.path.join(WORK, "nccl_g%s.loss" % graphs)
        distrun.fresh(out, lf)
        p = mpi(2, args(data, 24, out, "max_steps=10", f"cuda_graphs={graphs}", *common),
                dict(env, FT_TRAIN_LOSS_FILE=lf))
        check(p.returncode == 0, f"GPU ranks, cuda_graphs={graphs}: exit {p.returncode}: "
              f"{p.stderr[-1500:]}")
        runs[graphs] = (out, losses(lf), p.stderr)
    (og, lg, eg), (od, ld, _) = runs["True"], runs["False"]
    m = replays.search(eg)
    check(m and int(m.group(1)) >= 2 and "ignored" not in eg,
          f"GPU ranks, cuda_graphs: too few replays: {eg[-800:]}")
    # the summary does not pass the host's timing off as the collectives' time
    check("in collectives outside the graph launches, which hold the step's own" in eg,
          f"GPU ranks, cuda_graphs: the collectives' summary line: {eg[-600:]}")
    check(sorted(lg) == list(range(1, 11)) and lg == ld,
          f"GPU ranks, cuda_graphs: losses {lg} vs {ld}")
    same_tensors(od, og, "GPU ranks, cuda_graphs against the run without")
    print(f"ok: 2 GPU ranks, cuda_graphs=True equals False bit for bit over 10 fp16 steps "
          f"({m.group(0) if m else ''})", flush=True)
    # fp32 without sampling: recorded at step 2, replayed after; 3 + 3 steps with a resume
    # equal 6 straight without graphs
    out, lf = os.path.join(WORK, "nccl_gres"), os.path.join(WORK, "nccl_gres.loss")
    ref, rl = os.path.join(WORK, "nccl_gref"), os.path.join(WORK, "nccl_gref.loss")
    distrun.fresh(out, lf, ref, rl)
    p = mpi(2, args(data, 24, ref, "max_steps=6", "device=cuda"), dict(env, FT_TRAIN_LOSS_FILE=rl))
    check(p.returncode == 0, f"GPU ranks, fp32 reference: exit {p.returncode} {p.stderr[-800:]}")
    for steps, extra in ((3, []), (6, ["resume=True"])):
        p = mpi(2, args(data, 24, out, f"max_steps={steps}", "device=cuda", "cuda_graphs=True",
                        *extra), dict(env, FT_TRAIN_LOSS_FILE=lf))
        check(p.returncode == 0, f"GPU ranks, cuda_graphs fp32 to step {steps}: exit "
              f"{p.returncode} {p.stderr[-800:]}")
        m = replays.search(p.stderr)
        check(m and int(m.group(1)) >= 1, f"GPU ranks, cuda_graphs fp32 to step {steps}: no "
              f"replay: {p.stderr[-600:]}")
    check(losses(lf) == losses(rl), f"GPU ranks, cuda_graphs + resume: losses {losses(lf)} vs "
          f"{losses(rl)}")
    same_tensors(ref, out, "GPU ranks, cuda_graphs + resume")
    print("ok: 2 GPU ranks, cuda_graphs=True stopped at 3 and resumed equals 6 steps without",
          flush=True)
    # one rank's recording goes stale (FT_TRAIN_INJECT_STALE: rank 1 at step 4): every rank
    # drops its recording and records afresh at that step (rank 0's summary: step 1 direct,
    # 2 and 4 recorded, 3, 5 and 6 replayed: "5 of 6 ... (2 recorded)"; without the vote rank
    # 0 would have replayed step 4: 1 recorded), and the bytes stay those of the run without
    # graphs
    out, lf = os.path.join(WORK, "nccl_gstale"), os.path.join(WORK, "nccl_gstale.loss")
    distrun.fresh(out, lf)
    p = mpi(2, args(data, 24, out, "max_steps=6", "device=cuda", "cuda_graphs=True"),
            dict(env, FT_TRAIN_LOSS_FILE=lf, FT_TRAIN_INJECT_STALE="4:1"))
    m = re.search(r"cuda graphs: (\d+) of (\d+) steps replayed .*\((\d+) recorded\)", p.stderr)
    check(p.returncode == 0 and m and m.group(1, 3) == ("5", "2"),
          f"GPU ranks, a stale recording on rank 1: exit {p.returncode}, summary "
          f"{m.group(0) if m else None}: {p.stderr[-800:]}")
    check(losses(lf) == losses(rl), f"GPU ranks, a stale recording on rank 1: losses "
          f"{losses(lf)} vs {losses(rl)}")
    same_tensors(ref, out, "GPU ranks, a stale recording on rank 1")
    print(f"ok: 2 GPU ranks, rank 1's recording stale at step 4: every rank recorded afresh "
          f"({m.group(0) if m else ''})", flush=True)


def nccl_graph_counts(data, env):
    """The emulator's counts (FT_CUDA_EMU_STATS, rank 0) of a steady step of 2 GPU ranks with
    and without cuda_graphs: runs of 2 and 4 steps differ by 2 steady steps. With graphs a
    steady step is one cudaGraphLaunch that holds the step's collectives, and the host still
    issues only the labels' all-gather, the optimizer's passes and the uploads."""
    per = {}
    for graphs in ("False", "True"):
        got = {}
        for n in (2, 4):
            d = os.path.join(WORK, f"nccl_count_{graphs}{n}")
            f = [os.path.join(WORK, f"nccl_count_{graphs}{n}.rank{r}") for r in (0, 1)]
            distrun.fresh(d, *f)
            p = mpi_per_rank([{"FT_CUDA_EMU_STATS": f[0]}, {"FT_CUDA_EMU_STATS": f[1]}],
                             args(data, 24, d, f"max_steps={n}", "device=cuda",
                                  f"cuda_graphs={graphs}"), env)
            check(p.returncode == 0 and os.path.exists(f[0]),
                  f"GPU ranks, counts with cuda_graphs={graphs}: exit {p.returncode} "
                  f"{p.stderr[-600:]}")
            if p.returncode or not os.path.exists(f[0]):
                return
            got[n] = {}
            for line in open(f[0]).read().splitlines():
                c, name = line.split(" ", 1)
                got[n][name] = int(c)
        per[graphs] = {k: (got[4].get(k, 0) - got[2].get(k, 0)) / 2
                       for k in set(got[2]) | set(got[4])}
    coll = ("ncclAllReduce", "ncclAllGather", "ncclReduceScatter", "ncclBroadcast")
    said = []
    for graphs, c in per.items():
        host = sum(v for k, v in c.items() if not k.startswith("graph:") and
                   not k.startswith("cuda") and k not in coll)
        host_coll = sum(c.get(k, 0) for k in coll)
        in_graph = sum(v for k, v in c.items() if k.startswith("graph:"))
        graph_coll = sum(c.get("graph:" + k, 0) for k in coll)
        said.append(f"cuda_graphs={graphs}: {host:.0f} kernels and library calls and "
                    f"{host_coll:.0f} collectives issued by the host, {in_graph:.0f} items "
                    f"({graph_coll:.0f} collectives) in {c.get('cudaGraphLaunch', 0):.0f} graph "
                    f"launch(es)")
        if graphs == "True":
            check(c.get("cudaGraphLaunch", 0) == 1 and c.get("cudaStreamBeginCapture", 0) == 0
                  and host_coll == 1 and graph_coll >= 6 and host <= 10,
                  f"GPU ranks, a steady step with cuda_graphs: {sorted(c.items())}")
        else:
            check(c.get("cudaGraphLaunch", 0) == 0 and host_coll >= 7,
                  f"GPU ranks, a steady step without graphs: {sorted(c.items())}")
    print("ok: a steady step of 2 GPU ranks (rank 0, emulator counts): " + "; ".join(said),
          flush=True)


def nccl_mode():
    """GPU ranks: 2 ranks of ft-train device=cuda under mpirun, one GPU each, the step's
    collectives over NCCL (its id sent over MPI). Needs 2 visible devices: the CUDA emulator
    (FT_CUDA_EMU=1, 2 emulated devices) or a machine with 2 GPUs; exit 77 otherwise."""
    env = {}
    if os.environ.get("FT_CUDA_EMU") == "1":
        env["FT_CUDA_EMU_DEVICES"] = "2"
    data = os.path.join(WORK, "synth24")
    make_data(data, 24)
    out, lf = os.path.join(WORK, "nccl"), os.path.join(WORK, "nccl.loss")
    cpu, cl = os.path.join(WORK, "nccl_cpu"), os.path.join(WORK, "nccl_cpu.loss")
    distrun.fresh(out, lf, cpu, cl)
    p = mpi(2, args(data, 24, out, "max_steps=4", "device=cuda"), dict(env, FT_TRAIN_LOSS_FILE=lf))
    if p.returncode and ("no CUDA device is visible" in p.stderr or
                         "are on the same GPU" in p.stderr):
        print("skip: two GPU ranks need two visible devices: " + p.stderr.strip()[-300:])
        sys.exit(77)
    check(p.returncode == 0, f"2 GPU ranks: exit {p.returncode}: {p.stderr[-2000:]}")
    check("2 ranks (mpirun, nccl collectives)" in p.stderr,
          f"2 GPU ranks: summary line: {p.stderr[-600:]}")
    ls = losses(lf)
    check(sorted(ls) == [1, 2, 3, 4], f"2 GPU ranks: steps {sorted(ls)}")
    for st, v in ls.items():
        check(len(v) == 2 and v[0] == v[1], f"2 GPU ranks: step {st}: ranks differ: {v}")
    # against the same job on CPU ranks (MPI): the first loss to 1e-5, the next to 1e-2 (the
    # device's convolutions sum in another order; see train_e2e_cuda)
    p = mpi(2, args(data, 24, cpu, "max_steps=4", "device=cpu"), {"FT_TRAIN_LOSS_FILE": cl})
    check(p.returncode == 0, f"2 CPU ranks: exit {p.returncode}: {p.stderr[-1000:]}")
    lc = losses(cl)
    rel = [abs(float(ls[k][0]) - float(lc[k][0])) / abs(float(lc[k][0])) for k in sorted(lc)
           if k in ls]
    print("2 ranks, nccl on cuda vs mpi on cpu, per-step loss relative difference: " +
          " ".join(f"{r:.2e}" for r in rel), flush=True)
    check(len(rel) == 4 and rel[0] <= 1e-5 and max(rel) <= 1e-2,
          f"nccl vs cpu losses: {ls} vs {lc}")
    # resume: 2 + 2 steps on GPU ranks equal 4 straight, bit for bit (the first half with the
    # gradient buckets packed and started after backward: the same bytes). The second half
    # with each rank bound to its own GPU by CUDA_VISIBLE_DEVICES (Slurm's --gpus-per-task):
    # each sees one device, whatever its local rank
    out2, lf2 = out + "_resumed", lf + ".resumed"
    distrun.fresh(out2, lf2)
    p = mpi(2, args(data, 24, out2, "max_steps=2", "device=cuda", "ddp_bucket_view=False",
                    "ddp_overlap=False"), dict(env, FT_TRAIN_LOSS_FILE=lf2))
    check(p.returncode == 0, f"GPU ranks, first half: exit {p.returncode} {p.stderr[-800:]}")
    p = mpi_per_rank([{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}],
                     args(data, 24, out2, "max_steps=4", "device=cuda", "resume=True"),
                     dict(env, FT_TRAIN_LOSS_FILE=lf2))
    check(p.returncode == 0, f"GPU ranks, resumed: exit {p.returncode} {p.stderr[-800:]}")
    check(losses(lf2) == ls, f"GPU ranks: resumed losses {losses(lf2)} vs {ls}")
    a, b = tensors(out), tensors(out2)
    bad = [k for k in a if k not in b or not np.array_equal(a[k], b[k])]
    check(sorted(a) == sorted(b) and not bad, f"GPU ranks: resumed tensors differ: {bad[:5]}")
    nccl_graphs(data, env)
    nccl_graph_counts(data, env)
    if os.environ.get("FT_CUDA_EMU") == "1":
        # ranks that cannot meet on GPUs: every rank exits 1 at the start with one line naming
        # the ranks: two on one GPU (one emulated device for both), and device='auto' finding
        # a GPU on rank 0 only (rank 1 without the emulator's device falls back to the CPU)
        bad = os.path.join(WORK, "nccl_bad")
        for label, envs, dev, want in (
                ("two ranks on one GPU", [{"FT_CUDA_EMU_DEVICES": "1"}] * 2, "cuda",
                 "ranks 0 and 1 are on the same GPU"),
                ("device='auto' with a GPU on rank 0 only",
                 [{"FT_CUDA_EMU": "1"}, {"FT_CUDA_EMU": "0"}], "auto",
                 "rank 1 trains on the cpu backend, rank 0 on cuda")):
            distrun.fresh(bad)
            p = mpi_per_rank(envs, args(data, 24, bad, "max_steps=1", f"device={dev}"), env)
            lines = [ln for ln in p.stderr.splitlines() if want in ln]
            check(p.returncode != 0 and len(lines) == 2 and
                  not os.path.exists(os.path.join(bad, "backbone.safetensors")),
                  f"{label}: exit {p.returncode}, lines {lines}: {p.stderr[-1200:]}")
            print(f"ok: {label}: exit {p.returncode}: {lines[0] if lines else ''}", flush=True)
        # a rank NCCL's bootstrap cannot reach (a firewalled port, a wrong NCCL_SOCKET_IFNAME;
        # the emulator's FT_CUDA_EMU_NCCL_UNREACHABLE): the nonblocking init gives up after
        # dist_timeout with one line naming the rank, the job ends non-zero, no checkpoint
        distrun.fresh(bad)
        t0 = time.time()
        p = mpi_per_rank([{}, {"FT_CUDA_EMU_NCCL_UNREACHABLE": "1"}],
                         args(data, 24, bad, "max_steps=1", "device=cuda", "dist_timeout=3"), env)
        took = time.time() - t0
        want = "NCCL initialization did not complete within 3 s"
        lines = [ln for ln in p.stderr.splitlines() if want in ln]
        check(p.returncode != 0 and lines and all(ln.startswith("ft-train: rank ") for ln in lines)
              and took < 60 and not os.path.exists(os.path.join(bad, "backbone.safetensors")),
              f"unreachable rank: exit {p.returncode} after {took:.1f} s, lines {lines}: "
              f"{p.stderr[-1200:]}")
        print(f"ok: a rank NCCL cannot reach: exit {p.returncode} after {took:.1f} s: "
              f"{lines[0] if lines else ''}", flush=True)
    # a GPU rank killed mid-run: the other's NCCL wait notices (dist_timeout 5 s), every
    # rank ends non-zero, the job names the rank
    kd = os.path.join(WORK, "nccl_killed")
    distrun.fresh(kd)
    _, rc, took, named = kill_rank1(
        "GPU ranks: ", args(data, 24, kd, "num_epoch=400", "dist_timeout=5", "device=cuda"), kd,
        env=env, checkpoint_s=120, end_s=90)
    print(f"ok: 2 GPU ranks over NCCL; SIGKILL of rank 1: exit {rc} after "
          f"{took:.1f} s: {named[:1]}", flush=True)


if MODE == "run":
    run_mode()
elif MODE == "nccl":
    nccl_mode()
elif MODE == "failure":
    failure_mode()
elif MODE == "resplit":
    resplit_mode()
elif MODE == "crashsave":
    crashsave_mode()
else:
    sys.exit("unknown mode " + MODE)
distrun.finish()
