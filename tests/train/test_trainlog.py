"""training.log golden test: the same run logged by Python's logging module with
arcface_torch's formatter and a CallBackLogging written from its documented behaviour
(formats.md 6.1), with time.time() pinned to the same scripted clock. The C output must match
byte for byte, in the file and on stdout.
Usage: test_trainlog.py TR_TRAINLOG CONFIG WORKDIR
"""
import io
import logging
import os
import shutil
import subprocess
import sys
import time

TOOL, CONFIG, WORK = sys.argv[1:4]
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
os.environ["TZ"] = "Asia/Kolkata"  # a non-UTC zone with a half-hour offset
time.tzset()

T0 = 1706704496.789
now = [T0]
time.time = lambda: now[0]
time.time_ns = lambda: int(round(now[0] * 1e9))

buf = io.StringIO()
log = logging.getLogger("ref")
log.setLevel(logging.INFO)
h = logging.StreamHandler(buf)
h.setFormatter(logging.Formatter("Training: %(asctime)s-%(message)s"))
log.addHandler(h)


class Meter:
    def __init__(self):
        self.reset()

    def reset(self):
        self.sum, self.count, self.avg = 0, 0, 0

    def update(self, v, n=1):
        self.sum += v * n
        self.count += n
        self.avg = self.sum / self.count


class CallBackLogging:
    def __init__(self, frequent, total_step, batch_size, start_step=0, world_size=1):
        self.frequent, self.total_step, self.batch_size = frequent, total_step, batch_size
        self.start_step, self.world_size = start_step, world_size
        self.time_start = time.time()
        self.init, self.tic = False, 0

    def __call__(self, global_step, loss, epoch, fp16, learning_rate, scale):
        if global_step > 0 and global_step % self.frequent == 0:
            if self.init:
                try:
                    speed = self.frequent * self.batch_size / (time.time() - self.tic)
                    speed_total = speed * self.world_size
                except ZeroDivisionError:
                    speed_total = float("inf")
                time_now = time.time()
                time_sec = int(time_now - self.time_start)
                time_sec_avg = time_sec / (global_step - self.start_step + 1)
                eta_sec = time_sec_avg * (self.total_step - global_step - 1)
                time_for_end = eta_sec / 3600
                if fp16:
                    msg = ("Speed %.2f samples/sec   Loss %.4f   LearningRate %.6f   Epoch: %d   "
                           "Global Step: %d   Fp16 Grad Scale: %2.f   Required: %1.f hours" % (
                               speed_total, loss.avg, learning_rate, epoch, global_step, scale,
                               time_for_end))
                else:
                    msg = ("Speed %.2f samples/sec   Loss %.4f   LearningRate %.6f   Epoch: %d   "
                           "Global Step: %d   Required: %1.f hours" % (
                               speed_total, loss.avg, learning_rate, epoch, global_step,
                               time_for_end))
                log.info(msg)
                loss.reset()
                self.tic = time.time()
            else:
                self.init = True
                self.tic = time.time()


# config lines: from the C tool's own config dump is not independent, so print them with
# Python str() from the file (keys in base.py order, as test_config.py checks in depth)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_config_ref  # noqa: E402

log.info("rank_id: %d" % 0)
for line in test_config_ref.reference(CONFIG, dataset=(6080, 10)):
    log.info(line)
cb = CallBackLogging(10, 950000, 64, 0, 2)
meter = Meter()
highest = 0.0
for step in range(1, 46):
    now[0] = T0 + 0.37 * step + 0.0004 * step * step
    meter.update(10.0 / step + 0.123456789, 1)
    cb(step, meter, step // 20, step >= 40, 0.1 * (1.0 - step / 95.0), 65536.0)
    if step % 20 == 0:
        acc, std = 0.5 + step / 100.0, 0.0123456
        highest = max(highest, acc)
        log.info("[%s][%d]XNorm: %f" % ("lfw", step, 22.5 + step))
        log.info("[%s][%d]Accuracy-Flip: %1.5f+-%1.5f" % ("lfw", step, acc, std))
        log.info("[%s][%d]Accuracy-Highest: %1.5f" % ("lfw", step, highest))
want = buf.getvalue()

r = subprocess.run([TOOL, WORK, CONFIG], capture_output=True, text=True, env=os.environ)
got_file = open(os.path.join(WORK, "training.log")).read()
fail = 0
if r.returncode != 0:
    print("FAIL: tool exit", r.returncode, r.stderr)
    fail += 1
for what, got in (("training.log", got_file), ("stdout", r.stdout)):
    if got != want:
        fail += 1
        print(f"FAIL: {what} differs")
        for a, b in zip(got.splitlines(), want.splitlines()):
            if a != b:
                print(f"  got  {a!r}\n  want {b!r}")
                break
        if len(got.splitlines()) != len(want.splitlines()):
            print(f"  {len(got.splitlines())} lines, want {len(want.splitlines())}")
print(want.splitlines()[0])
print("\n".join(l for l in want.splitlines() if "Speed" in l))
print(f"{fail} failure(s)")
sys.exit(1 if fail else 0)
