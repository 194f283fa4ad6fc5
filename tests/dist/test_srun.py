#!/usr/bin/python3
"""test_srun.py: ft-train started by Slurm, on a private one-node cluster that the test starts
and ends itself (munged, slurmctld and slurmd from Debian's packages, in a fresh folder under
/tmp, on free ports, in the foreground; root only, as slurmd runs jobs as their user).

  - `srun -n 2 --mpi=pmix ft-train ...` equals `mpirun -np 2 ft-train ...` bit for bit (the
    per-step losses and every checkpoint tensor); the summary says "2 ranks (srun, mpi ...)"
  - `sbatch --wait -n 2` of a batch script shaped like docs/distributed.md's: ft-train started
    in the batch shell itself (SLURM_PROCID and SLURM_NTASKS=2 are set there, but it is no job
    step) trains as one rank, equal to a plain one-process run; the script's
    `srun --mpi=pmix ft-train` line trains as 2 ranks, equal to the mpirun run
  - `srun -n 2 --mpi=none ft-train`: every rank exits non-zero within seconds, with one line
    that says to use --mpi=pmix (instead of Open MPI's abort page)
usage: test_srun.py BIN WORK MPIRUN [ARGS...]
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from distrun import CONFIG, check, free_port, fresh, make_data, tensors  # noqa: E402
import distrun  # noqa: E402

BIN, WORK = sys.argv[1:3]
MPIRUN = sys.argv[3:]
TOOLS = ("munged", "slurmctld", "slurmd", "srun", "sbatch", "sinfo")


def skip(why):
    # the CI machine installs Slurm (tools/install-deps.sh): there a missing piece is a failure
    print(("FAIL: " if os.environ.get("CI") == "true" else "skipped: ") + why)
    sys.exit(1 if os.environ.get("CI") == "true" else 77)


class Cluster:
    """munged + slurmctld + slurmd in dir d, for this test's commands (SLURM_CONF)."""

    def __init__(self, d):
        self.d, self.procs = d, []
        os.chmod(d, 0o755)  # munged wants its socket's folders searchable by every user
        for sub in ("munge", "state", "spool", "log"):
            os.makedirs(os.path.join(d, sub))
            os.chmod(os.path.join(d, sub), 0o755)
        key = os.path.join(d, "munge", "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        self.sock = os.path.join(d, "munge", "sock")
        host = socket.gethostname().split(".")[0]
        conf = f"""ClusterName=facetrain-test
SlurmctldHost={host}(127.0.0.1)
AuthType=auth/munge
AuthInfo=socket={self.sock}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
NodeName={host} NodeAddr=127.0.0.1 CPUs=8 RealMemory=4000 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
"""
        self.conf = os.path.join(d, "slurm.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.env = dict(os.environ, SLURM_CONF=self.conf)

    def start(self):
        m = os.path.join(self.d, "munge")
        self.spawn(["munged", "-F", "--key-file", os.path.join(m, "munge.key"), "--socket",
                    self.sock, "--pid-file", os.path.join(m, "pid"), "--log-file",
                    os.path.join(m, "log"), "--seed-file", os.path.join(m, "seed")])
        self.wait_for(lambda: os.path.exists(self.sock), "munged's socket")
        self.spawn(["slurmctld", "-D", "-i"])
        self.spawn(["slurmd", "-D"])
        self.wait_for(self.idle, "the node to come up idle (sinfo)")

    def spawn(self, cmd):
        log = open(os.path.join(self.d, "log", os.path.basename(cmd[0]) + ".out"), "w")
        self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log))

    def idle(self):
        p = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True,
                           text=True, timeout=20)
        return p.returncode == 0 and p.stdout.strip() == "idle"

    def wait_for(self, ready, what, limit=60):
        t0 = time.time()
        while time.time() - t0 < limit:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} ended ({p.returncode}) while waiting for "
                                       f"{what}: {self.logs()}")
            if ready():
                return
            time.sleep(0.3)
        raise RuntimeError(f"no {what} after {limit} s: {self.logs()}")

    def logs(self):
        out = []
        for name in sorted(os.listdir(os.path.join(self.d, "log"))):
            with open(os.path.join(self.d, "log", name), errors="replace") as f:
                out.append(f"--- {name}\n{f.read()[-1500:]}")
        return "\n".join(out)

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def targs(data, out, *extra):
    return [os.path.join(BIN, "ft-train"), CONFIG] + distrun.train_args(data, 24, out,
                                                                        "max_steps=4", *extra)


def same_run(a, b, what):
    """a and b (output folders; their .loss files next to them) are one run, bit for bit"""
    la, lb = a + ".loss", b + ".loss"
    check(os.path.exists(lb) and open(lb).read() == open(la).read(),
          f"{what}: per-step losses differ from {os.path.basename(a)}'s")
    ta, tb = tensors(a), tensors(b)
    check(ta.keys() == tb.keys(), f"{what}: checkpoint files/tensors {sorted(tb)} vs {sorted(ta)}")
    for k in ta:
        if k in tb:
            check(ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape and
                  ta[k].tobytes() == tb[k].tobytes(), f"{what}: {k} differs")


def main():
    if os.geteuid() != 0:
        skip("Slurm's slurmd runs jobs as their user: this test needs root")
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        skip("Slurm is not installed (no %s): tools/install-deps.sh" % ", ".join(missing))
    data = os.path.join(WORK, "synth24")
    make_data(BIN, data)
    runs = {k: os.path.join(WORK, k) for k in ("mpirun2", "srun2", "single", "batch1", "batch2",
                                               "nopmix")}
    fresh(*runs.values(), *(p + ".loss" for p in runs.values()))

    def run(cmd, name, env, timeout=180):
        e = dict(env, FT_TRAIN_LOSS_FILE=runs[name] + ".loss")
        return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=timeout)

    # the references, outside Slurm
    p = run(MPIRUN + ["-np", "2"] + targs(data, runs["mpirun2"]), "mpirun2", os.environ)
    check(p.returncode == 0, f"mpirun -np 2: exit {p.returncode}: {p.stderr[-800:]}")
    p = run(targs(data, runs["single"]), "single", os.environ)
    check(p.returncode == 0, f"one process: exit {p.returncode}: {p.stderr[-800:]}")

    d = tempfile.mkdtemp(prefix="ft-slurm-")  # short: munged's socket path has a length limit
    cl = Cluster(d)
    try:
        cl.start()
        # srun: a job step of 2 tasks, Open MPI over Slurm's PMIx
        p = run(["srun", "-n", "2", "--mpi=pmix", "--kill-on-bad-exit=1"] +
                targs(data, runs["srun2"]), "srun2", cl.env)
        check(p.returncode == 0, f"srun -n 2 --mpi=pmix: exit {p.returncode}: {p.stderr[-1500:]}")
        check("2 ranks (srun, mpi collectives)" in p.stderr,
              f"srun: no '2 ranks (srun' summary: {p.stderr[-600:]}")
        same_run(runs["mpirun2"], runs["srun2"], "srun -n 2")

        # sbatch: the batch shell itself, then its srun line
        script = os.path.join(d, "train.sbatch")
        q = lambda a: " ".join("'%s'" % x for x in a)  # noqa: E731
        with open(script, "w") as f:
            f.write("#!/bin/bash\n#SBATCH --ntasks=2\nset -e\n"
                    f"FT_TRAIN_LOSS_FILE='{runs['batch1']}.loss' {q(targs(data, runs['batch1']))}\n"
                    f"FT_TRAIN_LOSS_FILE='{runs['batch2']}.loss' srun --mpi=pmix "
                    f"{q(targs(data, runs['batch2']))}\n")
        out = os.path.join(d, "batch.out")
        p = subprocess.run(["sbatch", "--wait", "-o", out, script], env=cl.env,
                           capture_output=True, text=True, timeout=300)
        log = open(out, errors="replace").read() if os.path.exists(out) else "(no output file)"
        check(p.returncode == 0, f"sbatch --wait: exit {p.returncode}: {p.stderr[-400:]} {log[-1500:]}")
        check("ranks (srun" in log and log.count("ranks (srun") == 1,
              f"sbatch: the batch shell's ft-train must run as one rank, its srun line as 2: "
              f"{log[-1500:]}")
        same_run(runs["single"], runs["batch1"], "ft-train in the batch shell")
        same_run(runs["mpirun2"], runs["batch2"], "srun in the batch script")

        # srun without PMIx: a clear line from every rank, no MPI abort page, no hang
        t0 = time.time()
        p = run(["srun", "-n", "2", "--mpi=none"] + targs(data, runs["nopmix"]), "nopmix",
                cl.env, timeout=120)
        took = time.time() - t0
        lines = [ln for ln in p.stderr.splitlines() if "without PMIx" in ln]
        check(p.returncode != 0 and len(lines) == 2 and "--mpi=pmix" in lines[0],
              f"srun --mpi=none: exit {p.returncode}, {len(lines)} 'without PMIx' lines: "
              f"{p.stderr[-1200:]}")
        check("MPI_Init" not in p.stderr, f"srun --mpi=none reached MPI_Init: {p.stderr[-800:]}")
        check(took < 60, f"srun --mpi=none took {took:.0f} s")
    except (RuntimeError, subprocess.TimeoutExpired) as ex:
        check(False, f"{ex}")
    finally:
        cl.stop()
        shutil.rmtree(d, ignore_errors=True)
    distrun.finish()


main()
