"""TensorBoard event file written by train/tboard, read back with an independent TFRecord and
protobuf parser (tensorboard itself is not needed).
Usage: test_tboard.py TR_TBOARD WORKDIR
"""
import os
import re
import shutil
import socket
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tb_reader import event, masked  # noqa: E402

TOOL, WORK = sys.argv[1], sys.argv[2]
shutil.rmtree(WORK, ignore_errors=True)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402

fail = pyref.FAILS  # pyref.check records here
check = pyref.check


r = subprocess.run([TOOL, "vectors"], capture_output=True, text=True)
print(r.stdout.strip())
check(r.returncode == 0, "C test vectors")

r = subprocess.run([TOOL, "write", WORK], capture_output=True, text=True)
check(r.returncode == 0, f"write: {r.stdout}")
path = r.stdout.strip()
name = os.path.basename(path)
m = re.fullmatch(r"events\.out\.tfevents\.(\d{10})\.(.+)\.(\d+)\.(\d+)", name)
check(m is not None, f"file name {name}")
if m:
    check(m.group(1) == "1700000000", "timestamp in name")
    check(m.group(2) == socket.gethostname(), "hostname in name")
    check(m.group(4) == "0", "first file of the process has uid 0")
raw = open(path, "rb").read()
events, i = [], 0
while i < len(raw):
    (n,) = struct.unpack("<Q", raw[i:i + 8])
    check(struct.unpack("<I", raw[i + 8:i + 12])[0] == masked(raw[i:i + 8]), "length crc")
    data = raw[i + 12:i + 12 + n]
    check(struct.unpack("<I", raw[i + 12 + n:i + 16 + n])[0] == masked(data), "data crc")
    events.append(event(data))
    i += 16 + n
check(i == len(raw), "trailing bytes")
check(len(events) == 6, f"{len(events)} events")
first = events[0]
check(first.get("file_version") == "brain.Event:2", "file_version")
check(first.get("source_metadata") == {1: "tensorboard.summary.writer.event_file_writer"},
      f"source_metadata {first.get('source_metadata')}")
check(first["wall_time"] == 1700000000.0, "version wall_time")
want = [("loss", 0.5, 10, 1700000000.5), ("learning_rate", 0.1, 20, 1700000001.25),
        ("lfw", 0.97125, 2000, 1700000002.0), ("time_for_end", -3.25, 0, 1700000003.0),
        ("x" * 300, 1e-20, 1 << 40, 1700000004.0)]
for ev, (tag, val, step, wt) in zip(events[1:], want):
    s = ev.get("summary", [{}])[0]
    check(s.get("tag") == tag, f"tag {s.get('tag', '')[:20]}")
    check(s.get("simple_value") == struct.unpack("<f", struct.pack("<f", val))[0],
          f"{tag[:20]} value {s.get('simple_value')}")
    check(ev["step"] == step and ev["wall_time"] == wt, f"{tag[:20]} step/wall_time")
print(f"{len(fail)} failure(s)")
sys.exit(1 if fail else 0)
