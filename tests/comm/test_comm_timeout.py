"""comm_mpi_timeout: a rank that never reaches a collective (test_comm_mpi --hang: rank 1
sleeps 60 s before the barrier) must not hang the job: the waiting ranks' watchdog ends them
after the timeout (2 s here) with exit status 1 and one line naming the rank and the
collective, and mpirun then ends the whole job, well before the sleeping rank would arrive.

usage: test_comm_timeout.py TEST_COMM_MPI MPIRUN [MPIRUN_ARGS...]
"""
import subprocess
import sys
import time

helper, mpirun = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
p = subprocess.run(mpirun + ["-np", "2", helper, "--hang", "2"], capture_output=True, text=True,
                   timeout=100)
took = time.monotonic() - t0
out = p.stdout + p.stderr
ok = True
if p.returncode == 0:
    print("FAIL: the job exited 0 although rank 1 never reached the barrier")
    ok = False
line = [l for l in out.splitlines() if "got no answer from the other ranks" in l]
if not line or "rank 0 of 2: barrier" not in line[0]:
    print("FAIL: no watchdog line naming rank 0 of 2 and the barrier")
    ok = False
if took > 40:
    print("FAIL: took %.1f s; the 2 s timeout should end the job long before the 60 s sleep"
          % took)
    ok = False
if "FAIL" in out:
    ok = False
print(out.strip())
print("%s: exit %d after %.1f s" % ("ok" if ok else "FAIL", p.returncode, took))
sys.exit(0 if ok else 1)
