#!/usr/bin/python3
"""test_launch.py: ft-launch (train/launch) on one machine.

  nodes2x2  two launchers (--node_rank 0 and 1, --nproc_per_node 2, master 127.0.0.1, one
            with '=' flags, one with spaces) form one job of 4 ranks: the per-step losses and
            every checkpoint tensor equal those of `mpirun -np 4 ft-train` bit for bit; one
            launcher with --nnodes 1 equals `mpirun -np 2`; the ranks saw RANK / WORLD_SIZE /
            LOCAL_RANK / LOCAL_WORLD_SIZE / MASTER_ADDR / MASTER_PORT (training.log's
            "4 ranks (ft-launch" summary on stderr)
  failures  a launcher whose master never comes (wrong port, --timeout 3): exit 1 within
            seconds, one line naming the address; a rank of node 1 killed with SIGKILL mid-run:
            both launchers end non-zero within 30 s (node 0's ranks are ended by its launcher);
            SIGTERM to node 0's launcher: every rank stops at one step with a complete
            checkpoint, both launchers exit 130
usage: test_launch.py MODE BIN WORK MPIRUN [ARGS...]
"""
import os
import signal
import subprocess
import sys
import time

from distrun import (CONFIG, check, descendants, free_port, fresh, load_safetensors,  # noqa: E402
                     make_data, tensors)
import distrun  # noqa: E402

MODE, BIN, WORK = sys.argv[1:4]
MPIRUN = sys.argv[4:]
LAUNCH = os.path.join(BIN, "ft-launch")


def train_args(data, out, *extra):
    return ["ft-train", CONFIG] + distrun.train_args(data, 24, out, *extra)


def launchers(nodes, nproc, port, targs, env, extra=()):
    procs = []
    for node in range(nodes):
        if node == 0:
            flags = [f"--nproc_per_node={nproc}", f"--nnodes={nodes}", f"--node_rank={node}",
                     "--master_addr=127.0.0.1", f"--master_port={port}"]
        else:
            flags = ["--nproc_per_node", str(nproc), "--nnodes", str(nodes), "--node_rank",
                     str(node), "--master_addr", "127.0.0.1", "--master_port", str(port)]
        procs.append(subprocess.Popen([LAUNCH] + flags + list(extra) + ["--"] + targs,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=env))
    return procs


def nodes_mode():
    data = os.path.join(WORK, "synth24")
    make_data(BIN, data)
    for nodes, nproc in ((2, 2), (1, 2)):
        world = nodes * nproc
        ref, out = (os.path.join(WORK, "%s%d" % (t, world)) for t in ("mpirun", "launch"))
        lr, ll = ref + ".loss", out + ".loss"
        fresh(ref, out, lr, ll)
        e = dict(os.environ, FT_TRAIN_LOSS_FILE=lr)
        p = subprocess.run(MPIRUN + ["-np", str(world), os.path.join(BIN, "ft-train")] +
                           train_args(data, ref, "max_steps=4")[1:], capture_output=True,
                           text=True, env=e, timeout=120)
        check(p.returncode == 0, f"mpirun -np {world}: exit {p.returncode} {p.stderr[-800:]}")
        e = dict(os.environ, FT_TRAIN_LOSS_FILE=ll)
        procs = launchers(nodes, nproc, free_port(), train_args(data, out, "max_steps=4"), e)
        res = [q.communicate(timeout=120) + (q.returncode,) for q in procs]
        for i, (so, se, rc) in enumerate(res):
            check(rc == 0, f"{nodes} nodes: launcher {i} exit {rc}: {se[-1500:]}")
        check("%d ranks (ft-launch, mpi collectives)" % world in res[0][1],
              f"{nodes} nodes: no '{world} ranks (ft-launch' summary: {res[0][1][-600:]}")
        check(os.path.exists(ll) and open(ll).read() == open(lr).read(),
              f"{nodes}x{nproc}: losses differ from mpirun -np {world}")
        a, b = tensors(ref), tensors(out)
        check(sorted(a) == sorted(b) and all(a[k].tobytes() == b[k].tobytes() for k in a),
              f"{nodes}x{nproc}: checkpoint tensors differ from mpirun -np {world}")
        print(f"ok: {nodes} x {nproc} ranks by ft-launch == mpirun -np {world}", flush=True)


def failures_mode():
    data = os.path.join(WORK, "synth24")
    make_data(BIN, data)
    # a master that never comes
    t0 = time.monotonic()
    p = subprocess.run([LAUNCH, "--nproc_per_node", "1", "--nnodes", "2", "--node_rank", "1",
                        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                        "--timeout", "3", "--"] + train_args(data, os.path.join(WORK, "x")),
                       capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    check(p.returncode == 1 and "cannot reach the master at 127.0.0.1:" in p.stderr,
          f"wrong port: exit {p.returncode}: {p.stderr[-600:]}")
    check(took < 20, f"wrong port took {took:.1f} s")
    print(f"wrong port: exit {p.returncode} after {took:.1f} s: {p.stderr.strip()}", flush=True)
    # a rank of node 1 killed mid-run
    out = os.path.join(WORK, "killed")
    fresh(out)
    procs = launchers(2, 1, free_port(), train_args(data, out, "num_epoch=400", "dist_timeout=20"),
                      dict(os.environ))
    man = os.path.join(out, "checkpoint.json")
    end = time.monotonic() + 60
    while time.monotonic() < end and not os.path.exists(man):
        time.sleep(0.2)
    check(os.path.exists(man), "no checkpoint within 60 s")
    ranks = [c for c in descendants(procs[1].pid)
             if "ft-train" in open(f"/proc/{c}/cmdline").read().split("\0")[0]]
    check(len(ranks) == 1, f"node 1's ranks: {ranks}")
    t0 = time.monotonic()
    if ranks:
        os.kill(ranks[0], signal.SIGKILL)
    res = []
    for q in procs:
        try:
            so, se = q.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            q.kill()
            so, se = q.communicate()
            check(False, "a launcher did not end within 60 s of the SIGKILL")
        res.append((q.returncode, se))
    took = time.monotonic() - t0
    check(all(rc != 0 for rc, _ in res), f"exit codes {[rc for rc, _ in res]}")
    check(took < 30, f"took {took:.1f} s to end every rank")
    check("another node's job ended with an error" in res[0][1],
          f"node 0 launcher: {res[0][1][-800:]}")
    print(f"SIGKILL on node 1: launchers exit {[rc for rc, _ in res]} after {took:.1f} s",
          flush=True)
    # SIGTERM to node 0's launcher: forwarded to its ranks; every rank of both nodes stops at
    # the same step with a complete checkpoint, both launchers exit 130 (a stop, not a failure)
    out = os.path.join(WORK, "stopped")
    fresh(out)
    procs = launchers(2, 1, free_port(), train_args(data, out, "num_epoch=400"), dict(os.environ))
    man = os.path.join(out, "checkpoint.json")
    end = time.monotonic() + 60
    while time.monotonic() < end and not os.path.exists(man):
        time.sleep(0.2)
    time.sleep(0.5)
    procs[0].send_signal(signal.SIGTERM)
    res = [q.communicate(timeout=60) for q in procs]
    rcs = [q.returncode for q in procs]
    check(rcs == [130, 130], f"SIGTERM: launchers exit {rcs}: {res[0][1][-600:]}")
    step = int(open(man).read().split('"global_step": ')[1].split(",")[0])
    for k in range(2):
        st = load_safetensors(os.path.join(out, "state_rank%d.safetensors" % k))
        check(int(st["global_step"]) == step, f"SIGTERM: state_rank{k} at "
              f"{int(st['global_step'])}, manifest {step}")
    print(f"SIGTERM to node 0's launcher: exit {rcs}, checkpoint at step {step}", flush=True)


if MODE == "nodes2x2":
    nodes_mode()
elif MODE == "failures":
    failures_mode()
else:
    sys.exit("unknown mode " + MODE)
distrun.finish()
