"""ft-loadbench --json prints exactly one JSON line with the documented keys."""
import json
import subprocess
import sys

bench, dataset = sys.argv[1], sys.argv[2]
out = subprocess.run([bench, dataset, "--json", "--batches", "4", "--batch", "8",
                      "--threads", "2"], capture_output=True, text=True)
if out.returncode != 0:
    sys.exit(f"ft-loadbench failed ({out.returncode}): {out.stderr}")
lines = [l for l in out.stdout.splitlines() if l.strip()]
if len(lines) != 1:
    sys.exit(f"expected one line, got {len(lines)}: {out.stdout!r}")
d = json.loads(lines[0])
for k in ("images_per_s", "mb_per_s", "decode_ceiling_images_per_s", "engine", "threads", "batch"):
    if k not in d:
        sys.exit(f"missing key {k}: {d}")
if d["images_per_s"] <= 0 or d["decode_ceiling_images_per_s"] <= 0 or d["batch"] != 8:
    sys.exit(f"implausible values: {d}")
# the table form works too
out = subprocess.run([bench, dataset, "--batches", "2", "--batch", "8", "--engine", "pread"],
                     capture_output=True, text=True)
if out.returncode != 0 or "decode ceiling" not in out.stdout:
    sys.exit(f"table output: {out.returncode} {out.stdout} {out.stderr}")
print("ok", lines[0])
