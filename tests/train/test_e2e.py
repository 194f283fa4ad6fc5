"""ft-train end to end on ft-synth data (CPU).

  test_e2e.py learn  FT_BIN REPO WORK   configs/synth_r18.py on 128 x 20 synthetic identities:
                                        the loss falls, lfw reaches >= 95% Accuracy-Flip,
                                        training.log / TensorBoard / checkpoints are complete,
                                        and PyTorch loads backbone.safetensors into an IResNet
                                        with load_state_dict(strict=True) and reproduces the
                                        logged lfw XNorm and accuracy from it
  test_e2e.py resume FT_BIN REPO WORK   stop at max_steps (mid-epoch and at an epoch end) and
                                        by SIGINT, resume each time: per-step losses and every
                                        saved tensor equal an uninterrupted run bit for bit;
                                        also with stops inside gradient-accumulation windows,
                                        with dropout and with Partial FC sampled-rows updates
  test_e2e.py bad    FT_BIN REPO WORK   bad configs and bad checkpoints give one clear line
  test_e2e.py robust FT_BIN REPO WORK   SIGINT/SIGTERM during verification (also the final one
                                        after max_steps) stop within 2 s with a checkpoint,
                                        exit 130; a diverging run stops at the first NaN with
                                        the last good checkpoint kept; a NaN in a checkpoint is
                                        refused; missing val_targets are reported (an error
                                        with strict_targets); one ft-train per output folder;
                                        stale temporary files of dead writers are removed
  test_e2e.py cuda   FT_BIN REPO WORK   ft-train device=cuda: fp32 against the CPU, stop +
                                        resume bit for bit on the device, fp16 overflow skip
                                        (a GPU, or the CUDA emulator: FT_CUDA_EMU=1);
                                        cuda_lean: its first step only
Exit 77 (skip) when ft-synth or ft-ingest are not built, or (cuda) no device is visible.
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

_here = os.path.dirname(os.path.realpath(__file__))
sys.path[:0] = [_here, os.path.join(_here, "..")]  # tb_reader, and the pyref package
import pyref  # noqa: E402

np = pyref.need("numpy")
from tb_reader import read_events  # noqa: E402
from pyref.safetensors import load_safetensors  # noqa: E402

MODE, BIN, REPO, WORK = sys.argv[1:5]
TRAIN = os.path.join(BIN, "ft-train")
CONFIG = os.path.join(REPO, "configs", "synth_r18.py")
fail = pyref.FAILS  # pyref.check records here
check = pyref.check
finish = pyref.finish


def make_data(path, classes, per_class, seed=1):
    pyref.synth_data(BIN, path, classes, per_class, seed=seed)


def train(out, *args, loss_file=None, check_rc=0):
    env = dict(os.environ)
    if loss_file:
        env["FT_TRAIN_LOSS_FILE"] = loss_file
    p = subprocess.run([TRAIN, CONFIG, f"output={out}", *args], capture_output=True, text=True,
                       env=env)
    if check_rc is not None and p.returncode != check_rc:
        print(p.stdout[-3000:], p.stderr[-3000:])
        check(False, f"ft-train {' '.join(args)}: exit {p.returncode}")
    return p


# ---------------------------------------------------------------------------------- learn

def learn():
    torch, _ = pyref.need("torch", "cv2")  # the PyTorch check at the end: fail before training
    data = os.path.join(WORK, "synth128")
    make_data(data, 128, 20)
    out = os.path.join(WORK, "run")
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    p = train(out, f"rec={data}")
    wall = time.time() - t0
    log = open(os.path.join(out, "training.log")).read()
    speed = re.findall(r"Speed ([\d.]+) samples/sec   Loss ([\d.]+)", log)
    losses = [float(l) for _, l in speed]
    acc = {m.group(1): float(m.group(3)) for m in re.finditer(r"\[(\w+)\]\[(\d+)\]Accuracy-Flip: ([\d.]+)", log)}
    steps = re.findall(r"\[lfw\]\[(\d+)\]Accuracy-Flip: ([\d.]+)", log)
    print(f"wall {wall:.0f} s; loss lines {losses[:2]} ... {losses[-2:]}; final accuracy {acc}")
    print(p.stderr.strip().splitlines()[0] if p.stderr.strip() else "")
    check(len(losses) >= 5 and losses[-1] < 0.5 * losses[0], "loss does not fall")
    check(acc.get("lfw", 0) >= 0.95, f"lfw accuracy {acc.get('lfw')} < 0.95")
    check(log.startswith("Training: ") and "-rank_id: 0\n" in log.splitlines(True)[0], "first line")
    check([s for s, _ in steps][-1] == "320", f"verification steps {steps}")
    for name in ("backbone.safetensors", "pfc_rank0_of1.safetensors", "state_rank0.safetensors"):
        check(os.path.exists(os.path.join(out, name)), f"{name} missing")
    check(not glob.glob(os.path.join(out, "*.tmp.*")), "temporary files left")
    ev = glob.glob(os.path.join(out, "tensorboard", "events.out.tfevents.*"))
    check(len(ev) == 1, f"event files {ev}")
    if ev:
        tags = {}
        for e in read_events(ev[0])[1:]:
            for v in e.get("summary", []):
                tags.setdefault(v["tag"], []).append((e["step"], v["simple_value"]))
        check(set(tags) == {"loss", "learning_rate", "time_for_end", "input_wait", "lfw",
                            "cfp_fp", "agedb_30"}, f"tags {sorted(tags)}")
        wait = [v for _, v in tags.get("input_wait", [])]
        check(wait and all(0 <= v <= 100 for v in wait),
              f"input_wait scalars (percent of the time since the last progress step): {wait}")
        check([s for s, _ in tags.get("loss", [])][:2] == [20, 30], "loss scalar steps")
        check(abs(tags["lfw"][-1][1] - acc["lfw"]) < 1e-5, "lfw scalar")
    # PyTorch side: load_state_dict(strict=True) and reproduce the logged verification
    from pyref.verify import evaluate  # the numpy protocol on a PyTorch model

    sd = load_safetensors(os.path.join(out, "backbone.safetensors"))
    # the PyTorch IResNet of the trainer-core tests (insightface layout and state_dict names)
    from pyref.iresnet import Net

    model = Net(8, (1, 1, 1, 1), 128)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, strict=True)
    check(sd["features.num_batches_tracked"].dtype == np.int64 and
          int(sd["features.num_batches_tracked"]) == 320, "num_batches_tracked")
    model.eval()
    xnorm, acc2, std2, _ = evaluate(model, os.path.join(data, "lfw.bin"))
    logged = re.findall(r"\[lfw\]\[320\]XNorm: ([\d.]+)", log)
    print(f"PyTorch on backbone.safetensors: lfw XNorm {xnorm:.6f} Accuracy-Flip {acc2:.5f}+-"
          f"{std2:.5f}; logged XNorm {logged[-1] if logged else '?'} acc {acc.get('lfw')}")
    check(logged and abs(xnorm - float(logged[-1])) < 1e-3 * xnorm, "XNorm differs from PyTorch")
    check(abs(acc2 - acc.get("lfw", 0)) <= 0.005, "accuracy differs from PyTorch")
    finish()


def learn_mixed():
    """configs/synth_r18.py with bf16 storage and with fp16 = True (fp16 storage and loss
    scaling) reaches lfw >= 0.95 as fp32 does; the fp16 log shows the scale and the steps the
    scaler skipped, TensorBoard gets grad_scale and skipped_steps."""
    data = os.path.join(WORK, "synth128")
    make_data(data, 128, 20)
    for label, args in (("bf16", ["dtype=bf16"]), ("fp16", ["fp16=True"])):
        out = os.path.join(WORK, "run_" + label)
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.time()
        # verification at the last step only (the check reads step 320's): a fifth less time
        p = train(out, f"rec={data}", "verbose=320", *args)
        log = open(os.path.join(out, "training.log")).read()
        acc = {m.group(1): float(m.group(2))
               for m in re.finditer(r"\[(\w+)\]\[320\]Accuracy-Flip: ([\d.]+)", log)}
        losses = [float(l) for l in re.findall(r"Speed [\d.]+ samples/sec   Loss ([\d.]+)", log)]
        print(f"{label}: wall {time.time() - t0:.0f} s; loss {losses[:1]} ... {losses[-1:]}; "
              f"accuracy {acc}")
        check(p.returncode == 0, f"{label}: exit {p.returncode}: {p.stderr[-400:]}")
        check(acc.get("lfw", 0) >= 0.95, f"{label}: lfw accuracy {acc.get('lfw')} < 0.95")
        check(len(losses) >= 5 and losses[-1] < 0.5 * losses[0], f"{label}: loss does not fall")
        check(f": dtype                    {'bf16' if label == 'bf16' else 'None'}" in log,
              f"{label}: the dtype line of the config dump")
        ev = glob.glob(os.path.join(out, "tensorboard", "events.out.tfevents.*"))
        tags = {v["tag"] for e in (read_events(ev[0])[1:] if ev else [])
                for v in e.get("summary", [])}
        if label == "fp16":
            scales = [float(x) for x in re.findall(r"Fp16 Grad Scale: ([\d.]+)", log)]
            skips = re.findall(r"step (\d+): inf/NaN in the fp16 gradients at loss scale ([\d.]+): "
                               r"step skipped, scale now ([\d.]+)", log)
            print(f"fp16: {len(skips)} skipped steps {skips[:4]}; scales {sorted(set(scales))}")
            check(len(scales) >= 5 and all(s > 0 for s in scales), "fp16: no scale in the log")
            check(skips and all(float(b) == float(a) / 2 for _, a, b in skips),
                  "fp16: skipped steps missing or the scale did not halve")
            check({"grad_scale", "skipped_steps"} <= tags, f"fp16: TensorBoard tags {sorted(tags)}")
            st = load_safetensors(os.path.join(out, "state_rank0.safetensors"))
            check(int(st["scaler.skipped"]) == len(skips) and float(st["scaler.scale"]) > 0,
                  "fp16: scaler state in the checkpoint")
        else:
            check("Fp16 Grad Scale" not in log and "grad_scale" not in tags,
                  "bf16: a loss scale where none is used")
    finish()


# ---------------------------------------------------------------------------------- resume

SMALL = ["num_epoch=2", "val_targets=[]", "frequent=2", "verbose=1000", "threads=2"]
# the stop + resume cases compare bytes, which the network's width does not change: width 4
# (a third of width 8's step time) keeps their ~30 trainings short
NARROW = [*SMALL, "width=4"]


def tensors_of(out):
    res = {}
    for name in sorted(os.listdir(out)):
        if name.endswith(".safetensors"):
            for k, v in load_safetensors(os.path.join(out, name)).items():
                res[f"{name}:{k}"] = v
    return res


def compare_runs(label, ref_out, ref_losses, out, loss_file):
    got = open(loss_file).read().split("\n")
    want = open(ref_losses).read().split("\n")
    check(got == want, f"{label}: per-step losses differ ({len(got)} vs {len(want)} lines)")
    a, b = tensors_of(ref_out), tensors_of(out)
    check(sorted(a) == sorted(b), f"{label}: different tensor sets")
    diff = [k for k in a if k in b and (a[k].dtype != b[k].dtype or a[k].tobytes() != b[k].tobytes())]
    check(not diff, f"{label}: tensors differ: {diff[:5]}")
    print(f"{label}: {len(want) - 1} losses and {len(a)} tensors identical" if not diff and got == want
          else f"{label}: mismatch")


def resume():
    data = os.path.join(WORK, "synth16")
    make_data(data, 16, 20, seed=3)  # 320 images: 10 steps of 32 per epoch, 20 in all
    common = [f"rec={data}", *NARROW]
    # stop mid-epoch (7), at an epoch end (10), mid-epoch again (13), then to the end
    out = stops("plain", common, [7, 10, 13])
    log = open(os.path.join(out, "training.log")).read()
    check(log.count("-rank_id: 0\n") == 4, "training.log is appended to on resume")
    # Ctrl-C: stops after the current step with a checkpoint, exit 130; resume finishes
    stop_by_sigint("plain", common)
    # Partial FC with sample_rate < 1 and the sampled-rows update: the sampled index set is a
    # function of (seed, step), so a resumed run samples and updates the same centres
    sampled = [*common, "sample_rate=0.5", "pfc_update=sampled"]
    # (cases without an epoch boundary or a late stop in them train one epoch of 10 steps)
    stops("sample_rate 0.5", [*sampled, "num_epoch=1"], [7])
    # stops inside a gradient-accumulation window: the partial gradients (and the rows sampled
    # so far) travel in the state file, so the window ends as in an uninterrupted run
    acc2 = [*common, "gradient_acc=2"]
    stops("gradient_acc 2", acc2, [3, 7, 13], mid_window=2)
    stop_by_sigint("gradient_acc 2", acc2)
    # gradient_acc 3: the epoch-end checkpoint at step 10 and the final one are mid-window
    stops("gradient_acc 3, epoch end", [*common, "gradient_acc=3"], [10], mid_window=3)
    # dropout: the mask generator continues where it stopped
    stops("dropout 0.2", [*common, "dropout=0.2", "num_epoch=1"], [5])
    stops("dropout 0.2, gradient_acc 2",
          [*common, "dropout=0.2", "gradient_acc=2", "num_epoch=1"], [5])
    # Partial FC sampled-rows update across a window split by a stop
    stops("sample_rate 0.5, pfc_update sampled, gradient_acc 2",
          [*sampled, "gradient_acc=2"], [5, 11], mid_window=2)
    finish()


def resume_lean():
    """The sanitizer pass's share of resume(): one stop mid-epoch + resume, and a Ctrl-C stop,
    bit-equal to the uninterrupted run (resume() runs every case in the release pass). One
    epoch of 10 steps (resume() trains 2): each step costs ~6x the release build's there."""
    data = os.path.join(WORK, "synth16")
    make_data(data, 16, 20, seed=3)
    common = [f"rec={data}", *NARROW, "num_epoch=1"]
    stops("lean", common, [7])
    stop_by_sigint("lean", common)
    finish()


def resume_mixed():
    """Stop + resume with 16-bit storage equals an uninterrupted run bit for bit. fp16: the loss
    scaler's state (scale, growth count, skips) travels in the checkpoint; the first steps
    overflow at 65536 and are skipped, so the stops fall after the scale moved; a stop inside a
    window carries scaled partial gradients (inf allowed there)."""
    data = os.path.join(WORK, "synth16")
    make_data(data, 16, 20, seed=3)  # the data of resume()
    common = [f"rec={data}", *SMALL]
    stops("fp16", [*common, "fp16=True"], [2, 9])
    stops("fp16, gradient_acc 2", [*common, "fp16=True", "gradient_acc=2"], [5], mid_window=2)
    stops("bf16", [*common, "dtype=bf16"], [6])
    finish()


def strict():
    """ft-train on the cpu-strict backend (CPU kernels behind memory the host cannot touch: a
    dereference of device memory outside upload/download crashes, as it would fail on a GPU)
    equals the plain CPU run bit for bit: every path of a step (fp16 storage with the loss
    scaler and its skipped steps, dropout, Partial FC sampling with the sampled-rows update,
    verification, checkpoint save and resume) keeps to the ops interface."""
    data = os.path.join(WORK, "synth16")
    make_data(data, 16, 20, seed=3)
    args = [f"rec={data}", *SMALL, "max_steps=6", "fp16=True", "dropout=0.2", "sample_rate=0.5",
            "pfc_update=sampled", "val_targets=['lfw']", "verbose=3"]
    ref, ref_losses = os.path.join(WORK, "strict_ref"), os.path.join(WORK, "strict_ref.loss")
    out, lf = os.path.join(WORK, "strict_run"), os.path.join(WORK, "strict_run.loss")
    fresh(ref, ref_losses, out, lf)
    train(ref, *args, "device=cpu", loss_file=ref_losses)
    train(out, *args, "device=cpu-strict", "max_steps=3", loss_file=lf)
    train(out, *args, "device=cpu-strict", "resume=True", loss_file=lf)
    check("Accuracy-Flip" in open(os.path.join(out, "training.log")).read(),
          "cpu-strict: verification ran")
    compare_runs("cpu-strict vs cpu, stop at 3 + resume", ref, ref_losses, out, lf)
    finish()


def step_counts(base, what="fp32"):
    """The CUDA emulator counts what the host asks of the device (FT_CUDA_EMU_STATS): runs of
    2 and 4 steps differ by 2 steady steps, which must allocate nothing (one arena per model,
    planned before the first step), never synchronize the whole device, and wait for the
    stream at most 3 times per step (the loss, the fp16 inf flag, the gradient norm; Partial
    FC's sampling runs on the device and adds none). With cuda_graphs the steady steps are
    replays: one cudaGraphLaunch carries the forward and backward, and what the host still
    issues itself is the optimizer's few multi-tensor passes."""
    got = {}
    for n in (2, 4):
        tag = f"{what.replace(' ', '_')}{n}"
        d, f = os.path.join(WORK, f"cuda_count_{tag}"), os.path.join(WORK, f"cuda_count_{tag}.txt")
        fresh(d, f)
        os.environ["FT_CUDA_EMU_STATS"] = f
        try:
            train(d, *base, f"max_steps={n}", "device=cuda")
        finally:
            del os.environ["FT_CUDA_EMU_STATS"]
        got[n] = {}
        for line in open(f).read().splitlines():
            c, name = line.split(" ", 1)
            got[n][name] = int(c)
    per = {k: (got[4].get(k, 0) - got[2].get(k, 0)) / 2 for k in set(got[2]) | set(got[4])}
    api = {"cudaMalloc", "cudaFree", "cudaHostAlloc", "cudaFreeHost", "cudaStreamSynchronize",
           "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy",
           "cudaStreamCreateWithFlags", "cudaEventCreateWithFlags"}
    work = sum(v for k, v in per.items() if k not in api and not k.startswith("cudaMemcpy") and
               not k.startswith("cudaMemset") and k != "cudaStreamWaitEvent" and
               not k.startswith("graph:"))
    in_graph = sum(v for k, v in per.items() if k.startswith("graph:"))
    print(f"a steady {what} step on the device: {work:.0f} kernels and library calls issued by "
          f"the host, {in_graph:.0f} in graph launches, "
          f"{per.get('cudaStreamSynchronize', 0):.0f} stream waits, "
          f"{per.get('cudaMalloc', 0):.0f} cudaMalloc")
    if "graphs" in what:
        check(per.get("cudaGraphLaunch", 0) == 1 and in_graph >= 100 and work <= 10,
              f"a steady {what} step: {per.get('cudaGraphLaunch', 0):g} graph launches of "
              f"{in_graph:g} items, {work:g} issued by the host")
        check(per.get("cudaStreamBeginCapture", 0) == 0,
              f"a steady {what} step records again ({per.get('cudaStreamBeginCapture', 0):g})")
    for k in ("cudaMalloc", "cudaFree", "cudaHostAlloc", "cudaFreeHost", "cudaMemcpy",
              "cudaDeviceSynchronize", "cudaStreamCreateWithFlags", "cudaEventCreateWithFlags"):
        check(per.get(k, 0) == 0, f"a steady {what} step calls {k} {per.get(k, 0):g} times")
    check(per.get("cudaStreamSynchronize", 0) <= 3,
          f"a steady {what} step waits for the stream "
          f"{per.get('cudaStreamSynchronize', 0):g} times")


def cuda_lean():
    cuda(lean=True)


def cuda(lean=False):
    """ft-train on the CUDA backend (a GPU, or the CPU emulator of tests/cudaemu with
    FT_CUDA_EMU=1), what tools/gpu-check.sh checks on a lent GPU, in small:
    (1) fp32 against the CPU run of the same config and data: one step, then resumed to 4.
        The first loss to 1e-5 relative; every saved tensor after the step (weights, BN
        statistics, momentum = the step's gradients) and the next losses to 1e-2: the
        gradients of this small PReLU network are sensitive to summation order (the CPU's
        own two convolution paths, oneDNN and im2col, give gradients 2.6e-3 apart after one
        step), a wrong formula is off by O(1). The device's verification (the eval forward)
        logs the CPU's XNorm to 1e-3.
    (2) stop at 3 + resume on the device equals the uninterrupted device run bit for bit
        (every kernel is deterministic: cuDNN algorithms are picked among the deterministic
        ones, reductions run in a fixed order), with fp16 storage, dropout, Partial FC
        sampling and the sampled-rows update.
    (3) fp16 with an overflow injected at a step that was finite: it is skipped, the scale
        halved, training.log says so.
    (4) the layouts (ft_ops layout): fp32 with every activation NHWC against the CPU's losses
        as in (1); fp16 NCHW against fp16 in the default NHWC.
    On the emulator also what a steady step asks of the device (step_counts).
    Exit 77 where no device is visible."""
    data = os.path.join(WORK, "synth16p40")
    pyref.synth_data(BIN, data, 16, 20, seed=3, pairs=40)
    # the emulator's convolutions are plain loops (width 8: 350 s of CI's emulator pass);
    # width 4 runs the same kernels and paths, a GPU runs width 8
    base = [f"rec={data}", *(NARROW if os.environ.get("FT_CUDA_EMU") == "1" else SMALL)]
    # (1) fp32 against the CPU
    ref, ref_l = os.path.join(WORK, "cuda_cpu_ref"), os.path.join(WORK, "cuda_cpu_ref.loss")
    out, out_l = os.path.join(WORK, "cuda_fp32"), os.path.join(WORK, "cuda_fp32.loss")
    fresh(ref, ref_l, out, out_l)
    one = [*base, "max_steps=1", "val_targets=['lfw']", "verbose=1"]
    p = train(out, *one, "device=cuda", loss_file=out_l, check_rc=None)
    if p.returncode != 0 and "no CUDA device is visible" in p.stderr:
        print("skip: " + p.stderr.strip().splitlines()[-1])
        sys.exit(77)
    check(p.returncode == 0, f"ft-train device=cuda: exit {p.returncode}: {p.stderr[-600:]}")
    if os.environ.get("FT_CUDA_EMU") == "1" and not lean:
        device_errors(base)
    train(ref, *one, "device=cpu", loss_file=ref_l)
    a, b = tensors_of(ref), tensors_of(out)
    check(sorted(a) == sorted(b), "fp32: different tensor sets")
    worst, name = 0.0, ""
    for k in a:
        if k in b and a[k].dtype.kind == "f" and a[k].size:
            x, y = a[k].astype(np.float64), b[k].astype(np.float64)
            if np.linalg.norm(x) / np.sqrt(x.size) < 1e-6:
                continue  # zero in exact arithmetic (a bias that a later BN cancels): noise
            d = float(np.linalg.norm(x - y) / np.linalg.norm(x))
            if d > worst:
                worst, name = d, k
    print(f"fp32 cuda vs cpu after one step: worst relative L2 difference {worst:.2e} ({name})")
    check(worst <= 1e-2, f"fp32: {name} differs from the CPU's by {worst:.2e}")
    xn = [re.findall(r"\[lfw\]\[1\]XNorm: ([0-9.]+)", open(os.path.join(d, "training.log")).read())
          for d in (ref, out)]
    check(all(xn) and abs(float(xn[1][0]) / float(xn[0][0]) - 1) <= 1e-3,
          f"lfw XNorm on cuda {xn[1]} vs cpu {xn[0]}")
    first = [float(open(f).read().split()[1]) for f in (ref_l, out_l)]
    check(abs(first[1] - first[0]) <= 1e-5 * abs(first[0]),
          f"fp32: first loss {first[1]} vs the CPU's {first[0]}")
    if lean:  # the sanitizer pass: one step is where the device's every kernel runs
        finish()
    train(out, *base, "max_steps=4", "resume=True", "device=cuda", loss_file=out_l)
    train(ref, *base, "max_steps=4", "resume=True", "device=cpu", loss_file=ref_l)
    want = [float(x.split()[1]) for x in open(ref_l).read().split("\n") if x]
    got = [float(x.split()[1]) for x in open(out_l).read().split("\n") if x]
    check(len(got) == len(want) == 4, f"fp32: {len(got)} and {len(want)} losses")
    rel = [abs(g - w) / abs(w) for g, w in zip(got, want)]
    print("fp32 cuda vs cpu, per-step loss relative difference: " +
          " ".join(f"{r:.2e}" for r in rel))
    check(rel and rel[0] <= 1e-5, f"fp32: first loss {got[:1]} vs the CPU's {want[:1]}")
    check(max(rel, default=1) <= 1e-2, f"fp32: losses {got} vs the CPU's {want}")
    if os.environ.get("FT_CUDA_EMU") == "1":
        step_counts(base)
        step_counts([*base, "sample_rate=0.5", "pfc_update=sampled"], "fp32 sampled")
        step_counts([*base, "cuda_graphs=True"], "fp32 graphs")
    # (4) the activation layouts agree: fp32 all NHWC (every activation reordered, cuDNN's
    # NHWC filters) against the CPU's 4 steps as above; fp16 in NCHW against fp16 in the
    # default NHWC (a different rounding order on a GPU: the fp16 bound of (1))
    losses = {}
    for tag, extra in (("fp32_nhwc", ["layout=nhwc"]), ("fp16_nchw", ["fp16=True", "layout=nchw"]),
                       ("fp16_auto", ["fp16=True"])):
        d, lf = os.path.join(WORK, f"cuda_{tag}"), os.path.join(WORK, f"cuda_{tag}.loss")
        fresh(d, lf)
        train(d, *base, "max_steps=4", "device=cuda", *extra, loss_file=lf)
        losses[tag] = [float(x.split()[1]) for x in open(lf).read().split("\n") if x]
    for tag, ref_losses, first_tol in (("fp32_nhwc", want, 1e-5),
                                       ("fp16_nchw", losses["fp16_auto"], 1e-2)):
        got = losses[tag]
        rel = [abs(g - w) / abs(w) for g, w in zip(got, ref_losses)]
        print(f"{tag} vs {'cpu' if tag.startswith('fp32') else 'fp16 nhwc'}, per-step loss "
              "relative difference: " + " ".join(f"{r:.2e}" for r in rel))
        check(len(got) == 4 and rel[0] <= first_tol and max(rel) <= 1e-2,
              f"{tag}: losses {got} vs {ref_losses}")
    # (2) stop + resume on the device == the uninterrupted device run, bit for bit
    mixed = [*base, "max_steps=6", "fp16=True", "dropout=0.2", "sample_rate=0.5",
             "pfc_update=sampled", "device=cuda"]
    stops("cuda fp16 dropout sampled", mixed, [3])
    # (3) fp16 with an overflow injected at step 5, where the run of (2) had a finite step
    _, plain, _ = reference("cuda fp16 dropout sampled", mixed)
    skip5 = re.compile(r"step 5: inf/NaN in the fp16 gradients at loss scale \S+: step skipped")
    check(not skip5.search(open(os.path.join(plain, "training.log")).read()),
          "fp16: the run without injection skipped step 5 (pick another step)")
    inj = os.path.join(WORK, "cuda_inject")
    fresh(inj)
    os.environ["FT_TRAIN_INJECT_INF"] = "5"
    try:
        train(inj, *mixed)
    finally:
        del os.environ["FT_TRAIN_INJECT_INF"]
    check(skip5.search(open(os.path.join(inj, "training.log")).read()),
          "fp16 injected overflow at step 5: no skipped-step line in training.log")
    graphs(base)
    finish()


def device_errors(base):
    """The device's start-up refusals (emulator: FT_CUDA_EMU_* play the machine): one line,
    exit 1, nothing written; device='auto' takes the CPU only where no GPU is visible."""
    out = os.path.join(WORK, "cuda_refused")
    for label, env, dev, want in (
            ("a GPU older than sm_80", {"FT_CUDA_EMU_CC": "70"}, "cuda",
             "CUDA device 0 has compute capability 7.0; facetrain's CUDA backend needs 8.0"),
            ("an old driver", {"FT_CUDA_EMU_DRIVER": "12040"}, "cuda",
             "the NVIDIA driver is too old (it supports CUDA 12.4"),
            ("more local ranks than GPUs", {"FT_CUDA_EMU_DEVICES": "2", "LOCAL_RANK": "3"},
             "auto", "local rank 3 needs CUDA device 3, but 2 are visible"),
            ("CUDA_VISIBLE_DEVICES empty", {"CUDA_VISIBLE_DEVICES": ""}, "cuda",
             "device=cuda but no CUDA device is visible")):
        fresh(out)
        p = subprocess.run([TRAIN, CONFIG, *base, "max_steps=1", f"device={dev}",
                            f"output={out}"], capture_output=True, text=True,
                           env=dict(os.environ, **env))
        last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
        check(p.returncode == 1 and last.startswith("ft-train: ") and want in last and
              not os.path.exists(os.path.join(out, "backbone.safetensors")),
              f"{label}: rc {p.returncode}: {p.stderr.strip()[-400:]}")
        print(f"ok: {label}: {last}", flush=True)
    # a visible GPU of any index: LOCAL_RANK 1 with one visible device takes that one
    fresh(out)
    p = subprocess.run([TRAIN, CONFIG, *base, "max_steps=1", "device=cuda", f"output={out}",
                        "val_targets=[]"], capture_output=True, text=True,
                       env=dict(os.environ, LOCAL_RANK="1", FT_CUDA_EMU_DEVICES="1"))
    check(p.returncode == 0, f"LOCAL_RANK=1 with one visible GPU: rc {p.returncode}: "
          f"{p.stderr.strip()[-400:]}")


def graphs(base):
    """(5) cuda_graphs = True: the steps that replay the recorded forward and backward give the
    bytes the directly run steps give: per-step losses and every checkpoint file, with fp16
    (the first steps overflow, so the loss scale changes and the step is recorded anew),
    dropout (its seed uploaded per replay), Partial FC sampling of a fixed count (64 classes
    for 16 identities: the positives always fit) and the sampled-rows update; fp32 stopped at
    2 and resumed (a resumed run records afresh) against an uninterrupted run without graphs.
    The summary says how many steps were replays."""
    runs = {
        "fp16": [*base, "max_steps=8", "fp16=True", "dropout=0.2", "num_classes=64",
                 "sample_rate=0.5", "pfc_update=sampled", "device=cuda"],
        "fp32": [*base, "max_steps=5", "device=cuda"],
    }
    for tag, args in runs.items():
        outs = {}
        for g in ("False", "True"):
            d, lf = os.path.join(WORK, f"cuda_graphs_{tag}_{g}"), os.path.join(
                WORK, f"cuda_graphs_{tag}_{g}.loss")
            fresh(d, lf)
            if tag == "fp32" and g == "True":  # stopped at 2, resumed to 5
                train(d, *[a for a in args if not a.startswith("max_steps")], "max_steps=2",
                      f"cuda_graphs={g}", loss_file=lf)
                p = train(d, *args, "resume=True", f"cuda_graphs={g}", loss_file=lf)
            else:
                p = train(d, *args, f"cuda_graphs={g}", loss_file=lf)
            outs[g] = (d, open(lf).read(), p.stderr)
        (d0, l0, _), (d1, l1, err) = outs["False"], outs["True"]
        m = re.search(r"cuda graphs: (\d+) of (\d+) steps replayed a recording .*\((\d+) recorded\)",
                      err)
        print(f"cuda_graphs {tag}: " + (m.group(0) if m else "no summary line"))
        check(m and int(m.group(1)) >= 2, f"cuda_graphs {tag}: too few replays: {err[-800:]}")
        check(l1 == l0, f"cuda_graphs {tag}: losses differ:\n{l0}\nvs\n{l1}")
        for f in sorted(os.listdir(d0)):
            if f.endswith(".safetensors"):
                same = open(os.path.join(d0, f), "rb").read() == open(os.path.join(d1, f),
                                                                         "rb").read()
                check(same, f"cuda_graphs {tag}: {f} differs from the run without graphs")


def fresh(*paths):
    for p in paths:
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)


_refs = {}


def reference(label, args):
    """The uninterrupted run of args (run once per argument list)."""
    tag = re.sub(r"\W+", "_", label)
    if tuple(args) not in _refs:
        ref, ref_losses = os.path.join(WORK, f"ref_{tag}"), os.path.join(WORK, f"ref_{tag}.loss")
        fresh(ref, ref_losses)
        train(ref, *args, loss_file=ref_losses)
        _refs[tuple(args)] = ref, ref_losses
    return (tag, *_refs[tuple(args)])


def stops(label, args, at, mid_window=0):
    """Stop at each max_steps in at, resume each time, then run to the end; compare. Returns
    the output folder of the stopped-and-resumed run."""
    tag, ref, ref_losses = reference(label, args)
    out, lf = os.path.join(WORK, f"parts_{tag}"), os.path.join(WORK, f"parts_{tag}.loss")
    fresh(out, lf)
    for i, step in enumerate(at):
        p = train(out, *args, f"max_steps={step}", *(["resume=True"] if i else []), loss_file=lf)
        check("note:" not in p.stderr, f"{label}: a note at step {step}: {p.stderr.strip()}")
        if mid_window and step % mid_window:
            st = load_safetensors(os.path.join(out, "state_rank0.safetensors"))
            acc = [k for k in st if k.startswith("accum_grad.")]
            check("accum_grad.pfc.weight" in acc and "accum_grad.conv1.weight" in acc and
                  any(np.any(st[k] != 0) for k in acc),
                  f"{label}: the checkpoint at step {step} holds no accumulated gradient")
            check(int(st.get("gradient_acc", -1)) == mid_window, f"{label}: gradient_acc not saved")
    p = train(out, *args, "resume=True", loss_file=lf)
    check("note:" not in p.stderr, f"{label}: a note at the end: {p.stderr.strip()}")
    compare_runs(f"{label}, max_steps {'/'.join(map(str, at))} + resume", ref, ref_losses, out, lf)
    return out


def stop_by_sigint(label, args):
    """Ctrl-C after at least 3 steps (wherever the window stands), resume, compare."""
    tag, ref, ref_losses = reference(label, args)
    out, lf = os.path.join(WORK, f"sigint_{tag}"), os.path.join(WORK, f"sigint_{tag}.loss")
    fresh(out, lf)
    env = dict(os.environ, FT_TRAIN_LOSS_FILE=lf)
    p = subprocess.Popen([TRAIN, CONFIG, f"output={out}", *args], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while p.poll() is None and (not os.path.exists(lf) or len(open(lf).readlines()) < 3):
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    err = p.communicate()[1]
    n = len(open(lf).readlines())
    check(p.returncode == 130 and "stopped" in err and "resume=True" in err and "note:" not in err,
          f"{label}: SIGINT: exit {p.returncode}, {err}")
    train(out, *args, "resume=True", loss_file=lf)
    compare_runs(f"{label}, SIGINT after {n} steps + resume", ref, ref_losses, out, lf)


# ---------------------------------------------------------------------------------- bad

def bad():
    data = os.path.join(WORK, "synth16")
    make_data(data, 16, 20, seed=3)
    common = [f"rec={data}", *SMALL, "num_epoch=1"]
    tmp = os.path.join(WORK, "badcfg")
    os.makedirs(tmp, exist_ok=True)

    def expect(args, needle, config=CONFIG, rc=1):
        p = subprocess.run([TRAIN, config, *args], capture_output=True, text=True)
        lines = p.stderr.strip().splitlines()
        ok = p.returncode == rc and lines and needle in lines[-1] and \
            lines[-1].startswith("ft-train: ")
        print(f"{'ok  ' if ok else 'FAIL'} {needle!r}: {lines[-1] if lines else ''}")
        check(ok, f"{args}: want {needle!r}, rc {rc}; got rc {p.returncode}: {p.stderr.strip()[-500:]}")

    cfg = os.path.join(tmp, "c.py")
    with open(cfg, "w") as f:
        f.write("config.network = 'r18'\nconfig.lr = 0.1 0.2\n")
    expect([], "c.py:2: bad value for 'lr'", config=cfg)
    expect(["lrr=1"], "unknown key 'lrr'")
    expect(["batch_size='32'"], "'batch_size' must be an integer, got str '32'")
    expect([f"rec={data}", "num_classes=10"], "num_classes = 10 is smaller than the 16 classes")
    expect([f"rec={tmp}"], "no train.lmdb/ and no train.rec")
    expect([*common, "device='tpu'"], "device 'tpu' is not a backend (this build has: cpu")
    # device=cuda on a machine without a GPU: a build without the CUDA backend says so, a build
    # with it says that no device is visible; either way one line and exit 1, nothing trained
    p = subprocess.run([TRAIN, CONFIG, *common, "device=cuda", f"output={tmp}/nodev"],
                       capture_output=True, text=True)
    last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
    check(p.returncode == 1 and last.startswith("ft-train: ") and
          ("this build has no CUDA backend" in last or "no CUDA device is visible" in last),
          f"device=cuda without a GPU: rc {p.returncode}: {p.stderr.strip()[-300:]}")
    check(not os.path.exists(os.path.join(tmp, "nodev", "backbone.safetensors")),
          "device=cuda without a GPU wrote no checkpoint")
    # a device too small for the batch (cpu-strict with FT_STRICT_MEM): one line with what the
    # plan needs, what is free and the largest batch_size that fits; that batch_size trains
    env = dict(os.environ, FT_STRICT_MEM="100M")
    p = subprocess.run([TRAIN, CONFIG, *common, "device=cpu-strict", f"output={tmp}/oom"],
                       capture_output=True, text=True, env=env)
    last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
    m = re.search(r"batch_size = (\d+) fits$", last)
    check(p.returncode == 1 and "out of memory allocating the backbone: the plan needs" in last
          and "100.0 MiB of 100.0 MiB are free" in last and m is not None,
          f"a device too small: rc {p.returncode}: {last}")
    if m:
        fit = int(m.group(1))
        check(2 <= fit < 32, f"the batch that fits ({fit}) is below the config's 32")
        # (and cuda_graphs on a backend without graphs: a note, the steps run directly)
        p = subprocess.run([TRAIN, CONFIG, *common, "device=cpu-strict", f"output={tmp}/oomfit",
                            f"batch_size={fit}", "max_steps=1", "cuda_graphs=True"],
                           capture_output=True, text=True, env=env)
        check(p.returncode == 0, f"batch_size {fit} (what the message said fits) trains: "
              f"{p.stderr.strip()[-300:]}")
        check("note: cuda_graphs = True is ignored: the cpu-strict backend has no graphs" in
              p.stderr, f"cuda_graphs on cpu-strict: no note: {p.stderr.strip()[-300:]}")
    p = subprocess.run([TRAIN, "--bogus"], capture_output=True, text=True)
    check(p.returncode == 2 and "usage: ft-train" in p.stderr, "unknown option: usage")
    p = subprocess.run([TRAIN], capture_output=True, text=True)
    check(p.returncode == 2 and p.stderr.startswith("usage: ft-train"), "no config: usage")
    # a good checkpoint to damage
    out = os.path.join(WORK, "ckpt")
    shutil.rmtree(out, ignore_errors=True)
    train(out, *common, "max_steps=3")
    expect([*common, f"output={out}", "resume=True", "width=16"],
           "tensor 'conv1.weight' has shape [8, 3, 3, 3], this model needs [16, 3, 3, 3]")
    expect([*common, f"output={out}", "resume=True", "blocks=(1, 1, 1, 2)"],
           "tensor 'layer4.1.bn1.weight' is missing")
    expect([*common, f"output={out}", "resume=True", "network='r34'", "blocks=None"],
           "tensor 'layer1.1.bn1.weight' is missing: not a checkpoint of this model (this run builds network r34")
    expect([*common, f"output={out}", "resume=True", "embedding_size=64"],
           "has shape [128, 3136], this model needs [64, 3136]")
    expect([*common, f"output={out}", "resume=True", "num_classes=20"],
           "pfc_rank0_of1.safetensors: tensor 'weight' has shape [128, 128], this model needs [20, 128]")
    bigger = os.path.join(WORK, "ckpt_bigger")
    shutil.rmtree(bigger, ignore_errors=True)
    train(bigger, *common, "max_steps=1", "blocks=(1, 1, 1, 2)")
    expect([*common, f"output={bigger}", "resume=True"],
           "is not part of this model: not a checkpoint of this model (this run builds")
    expect([*common, f"output={os.path.join(WORK, 'nothing')}", "resume=True"],
           "state_rank0.safetensors does not exist")
    bb = os.path.join(out, "backbone.safetensors")
    keep = open(bb, "rb").read()
    open(bb, "wb").write(keep[:len(keep) - 100])
    expect([*common, f"output={out}", "resume=True"], "backbone.safetensors: tensors need")
    open(bb, "wb").write(keep[:5])
    expect([*common, f"output={out}", "resume=True"], "too short for a safetensors file")
    open(bb, "wb").write(b"\x10\0\0\0\0\0\0\0" + b"[not a header]  ")
    expect([*common, f"output={out}", "resume=True"], "does not start with '{'")
    # a backbone from another step (a save cut short between renames)
    other = os.path.join(WORK, "ckpt2")
    shutil.rmtree(other, ignore_errors=True)
    train(other, *common, "max_steps=2")
    shutil.copy(os.path.join(other, "backbone.safetensors"), bb)
    expect([*common, f"output={out}", "resume=True"], "the last checkpoint save was cut short")
    open(bb, "wb").write(keep)
    p = train(out, *common, "resume=True")
    check(p.returncode == 0, "resume after restoring the checkpoint")
    # a checkpoint inside a gradient-accumulation window needs the same gradient_acc
    acc = os.path.join(WORK, "ckpt_acc")
    shutil.rmtree(acc, ignore_errors=True)
    train(acc, *common, "max_steps=3", "gradient_acc=2")
    expect([*common, f"output={acc}", "resume=True", "gradient_acc=4"],
           "inside a gradient-accumulation window of gradient_acc = 2; this run has "
           "gradient_acc = 4")
    st = os.path.join(acc, "state_rank0.safetensors")
    raw = bytearray(open(st, "rb").read())
    n = int.from_bytes(raw[:8], "little")
    hdr = raw[8:8 + n].replace(b'"accum_grad.conv1.weight"', b'"accum_grad.conv1.weighX"')
    open(st, "wb").write(raw[:8] + hdr + raw[8 + n:])
    expect([*common, f"output={acc}", "resume=True", "gradient_acc=2"],
           "state_rank0.safetensors: tensor 'accum_grad.conv1.weight' is missing")
    finish()


# ---------------------------------------------------------------------------------- robust

def st_header(path):
    """(header dict, data offset) of a safetensors file."""
    import json
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), 8 + n


def digests(out):
    import hashlib
    return {n: hashlib.sha256(open(os.path.join(out, n), "rb").read()).hexdigest()
            for n in sorted(os.listdir(out)) if n.endswith(".safetensors")}


def stop_while_verifying(label, out, args, sig, want_step):
    """Start ft-train, send sig once it announces a verification, expect exit 130 within 2 s
    with a checkpoint at want_step; returns stderr."""
    fresh(out)
    p = subprocess.Popen([TRAIN, CONFIG, f"output={out}", *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    err = []
    for line in p.stderr:
        err.append(line)
        if ": verifying lfw" in line:
            break
    t0 = time.time()
    p.send_signal(sig)
    try:
        err.append(p.communicate(timeout=60)[1])
    except subprocess.TimeoutExpired:
        p.kill()
        err.append(p.communicate()[1])
    dt = time.time() - t0
    err = "".join(err)
    check(p.returncode == 130 and dt < 2.0, f"{label}: exit {p.returncode} {dt:.1f} s after the "
          f"signal: {err[-800:]}")
    check("stopped" in err and "resume=True" in err, f"{label}: summary {err[-400:]}")
    st = os.path.join(out, "state_rank0.safetensors")
    if os.path.exists(st):
        check(int(load_safetensors(st)["global_step"]) == want_step,
              f"{label}: checkpoint step {int(load_safetensors(st)['global_step'])}")
    else:
        check(False, f"{label}: no checkpoint")
    log = open(os.path.join(out, "training.log")).read()
    check(f"[lfw][{want_step}]Accuracy-Flip" not in log, f"{label}: lfw was evaluated to the end")
    print(f"{label}: exit {p.returncode} {dt:.2f} s after the signal")
    return err


def robust():
    data = os.path.join(WORK, "synth16")
    make_data(data, 16, 20, seed=3)
    base = [f"rec={data}", "num_epoch=2", "frequent=2", "threads=2"]
    # 1. stops when asked: Ctrl-C during the final verification after max_steps, SIGTERM during
    # a verification inside training; a val_targets name without its .bin is reported at start.
    # (batch_size 8: verification chunks of 8 images, short also in a sanitizer build)
    stop = [*base, "batch_size=8"]
    err = stop_while_verifying("SIGINT in the final verification", os.path.join(WORK, "stop_a"),
                               [*stop, "max_steps=2", "val_targets=['lfw', 'agedb30']"],
                               signal.SIGINT, 2)
    notes = [ln for ln in err.splitlines() if "agedb30" in ln]
    check(len(notes) == 1 and notes[0].startswith("ft-train: note: ") and
          "val_targets 'agedb30' has no .bin file" in notes[0] and
          "agedb_30.bin cfp_fp.bin lfw.bin" in notes[0], f"missing target note: {notes}")
    out = os.path.join(WORK, "stop_b")
    stop_while_verifying("SIGTERM in a verification at step 3", out,
                         [*stop, "verbose=3", "val_targets=['lfw']"], signal.SIGTERM, 3)
    p = train(out, *stop, "verbose=1000", "val_targets=[]", "resume=True", "max_steps=4")
    check(p.returncode == 0, "resume after a stop in verification")
    # 4. strict_targets turns a missing target into an error
    p = train(os.path.join(WORK, "strict"), *base, "val_targets=['lfw', 'agedb30']",
              "strict_targets=True", check_rc=1)
    last = p.stderr.strip().splitlines()[-1:]
    check(last and re.match(r"ft-train: .*/agedb30\.bin: val_targets 'agedb30' has no \.bin "
                            r"file \(strict_targets = True\); the \.bin files in .*: "
                            r"agedb_30\.bin cfp_fp\.bin lfw\.bin$", last[0]),
          f"strict_targets: {last}")
    # 3. NaN never hidden: a diverging run stops at the first non-finite loss, exit 1, and writes
    # no checkpoint of the poisoned state; the last good checkpoint stays as it was
    small = [*base, "val_targets=[]", "verbose=1000"]
    div = ["lr=100", "weight_decay=1"]
    out = os.path.join(WORK, "diverge")
    fresh(out)
    p = train(out, *small, *div, check_rc=1)
    last = p.stderr.strip().splitlines()[-1:]
    check(last and re.match(r"ft-train: step \d+: loss is nan \(training diverged: lower lr = "
                            r"100 or check the data; no checkpoint was written\)$", last[0]),
          f"divergence from scratch: {p.returncode} {last}")
    check(not [n for n in os.listdir(out) if "safetensors" in n], f"files {os.listdir(out)}")
    fresh(out)
    train(out, *small, "max_steps=3")
    good = digests(out)
    p = train(out, *small, *div, "resume=True", check_rc=1)
    last = p.stderr.strip().splitlines()[-1:]
    check(last and re.match(r"ft-train: step \d+: .*(nan|inf).* \(training diverged: .*the "
                            r"checkpoint in .* is the last good one, from step 3\)$", last[0]),
          f"divergence after resume: {last}")
    check(digests(out) == good, "the good checkpoint was replaced")
    check(not glob.glob(os.path.join(out, "*.tmp.*")), "temporary files left")
    # a checkpoint holding a NaN is refused on resume, naming the file and the tensor
    bb = os.path.join(out, "backbone.safetensors")
    hdr, off = st_header(bb)
    raw = bytearray(open(bb, "rb").read())
    a = off + hdr["layer1.0.conv1.weight"]["data_offsets"][0] + 4 * 5
    raw[a:a + 4] = b"\x00\x00\xc0\x7f"  # float32 NaN at element 5
    open(bb, "wb").write(raw)
    p = train(out, *small, "resume=True", check_rc=1)
    last = p.stderr.strip().splitlines()[-1:]
    check(last and last[0].startswith("ft-train: backbone.safetensors: tensor "
                                      "'layer1.0.conv1.weight' holds nan (element 5)"),
          f"poisoned checkpoint: {last}")
    # 5. one run per output folder; stale temporary files of dead writers are removed
    out = os.path.join(WORK, "locked")
    fresh(out)
    first = subprocess.Popen([TRAIN, CONFIG, f"output={out}", *small, "num_epoch=50"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while first.poll() is None and not os.path.exists(os.path.join(out, "training.log")):
        time.sleep(0.05)
    p = train(out, *small, check_rc=1)
    last = p.stderr.strip().splitlines()[-1:]
    check(last == [f"ft-train: {out}: another ft-train (pid {first.pid}) is writing into this "
                   "output folder; wait for it to end or choose another output"],
          f"second run into the same output: {last}")
    first.send_signal(signal.SIGINT)
    first.communicate()
    check(first.returncode == 130, f"first run: exit {first.returncode}")
    dead = 4194303
    while dead > 1:
        try:
            os.kill(dead, 0)
            dead -= 1
        except ProcessLookupError:
            break
        except PermissionError:
            dead -= 1
    stale = os.path.join(out, f"backbone.safetensors.tmp.{dead}")
    alive = os.path.join(out, f"state_rank0.safetensors.tmp.{os.getpid()}")
    for f in (stale, alive):
        open(f, "wb").write(b"partial")
    p = train(out, *small, "resume=True", "max_steps=12")
    check(not os.path.exists(stale) and os.path.exists(alive),
          f"stale temporary files: {sorted(os.listdir(out))}")
    check(f"removed 1 temporary file of an interrupted checkpoint save "
          f"(backbone.safetensors.tmp.{dead})" in p.stderr, f"note: {p.stderr.strip()}")
    os.remove(alive)
    finish()


{"learn": learn, "learn_mixed": learn_mixed, "resume": resume, "resume_mixed": resume_mixed,
 "bad": bad, "robust": robust, "strict": strict, "cuda": cuda, "cuda_lean": cuda_lean,
 "resume_lean": resume_lean}[MODE]()
