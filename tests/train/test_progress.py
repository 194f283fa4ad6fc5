"""The progress displays on a terminal (a pseudo-terminal from Python's pty module).

  test_progress.py bar   TR_PROGRESS            common/'s bar: every redraw is "\\r<line>\\033[K"
                                                (no stale characters when a line gets shorter),
                                                other output gets a clean line, the final state
                                                is drawn exactly once
  test_progress.py train FT_BIN REPO WORK       ft-train on a terminal: a "step [...] n/total
                                                samples/s loss lr ETA" bar and "verifying lfw
                                                n/m" during verification; training.log lines
                                                on clean lines
"""
import os
import pty
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import pyref  # noqa: E402

fail = pyref.FAILS  # pyref.check records here
check = pyref.check


def run_on_pty(argv, cwd=None):
    """Run argv with stdout and stderr on one pseudo-terminal; (exit status, bytes written)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=cwd)
    os.close(slave)
    out = b""
    while True:
        try:
            d = os.read(master, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not d:
            break
        out += d
    os.close(master)
    return p.wait(), out.decode("utf-8", "replace")


def screen(raw):
    """What a terminal shows: carriage return, erase to end of line (ESC [ K), newline."""
    lines, cur, col = [], [], 0
    i = 0
    while i < len(raw):
        c = raw[i]
        if raw.startswith("\x1b[K", i):
            del cur[col:]
            i += 3
            continue
        if c == "\r":
            col = 0
        elif c == "\n":
            lines.append("".join(cur))
            cur, col = [], 0
        else:
            if col < len(cur):
                cur[col] = c
            else:
                cur.append(c)
            col += 1
        i += 1
    if cur:
        lines.append("".join(cur))
    return lines


def redraws_clean(raw):
    """Every bar redraw (a segment after \\r) ends with the erase sequence."""
    segs = [s.split("\n")[0] for s in raw.replace("\r\n", "\n").split("\r")[1:]]
    return all(s.endswith("\x1b[K") for s in segs if re.match(r"(bar|step|verifying \w+) \[", s))


def bar():
    rc, raw = run_on_pty([sys.argv[2]])
    shown = screen(raw)
    print(repr(raw))
    print("\n".join(shown))
    check(rc == 0, f"exit {rc}")
    check(redraws_clean(raw), "a redraw without \\033[K")
    check(raw.count("100/100") == 1, f"the final state drawn {raw.count('100/100')} times")
    check(len(shown) == 3 and shown[0] == "other output" and shown[2] == "after",
          f"screen {shown}")
    check(re.fullmatch(r"bar \[#{30}\] 100/100  short  ETA 00:00:00", shown[1] if len(shown) > 1
                       else ""), f"final line {shown[1:2]} (stale characters?)")


def train():
    b, repo, work = sys.argv[2:5]
    data = os.path.join(work, "synth16")
    if not os.path.isdir(os.path.join(data, "train.lmdb")):
        print("skip: no synthetic dataset (the train_e2e tests make it)")
        sys.exit(77)
    out = os.path.join(work, "progress")
    shutil.rmtree(out, ignore_errors=True)
    rc, raw = run_on_pty([os.path.join(b, "ft-train"), os.path.join(repo, "configs", "synth_r18.py"),
                          f"rec={data}", f"output={out}", "num_epoch=2", "max_steps=12",
                          "frequent=4", "verbose=6", "val_targets=['lfw']", "threads=2"])
    shown = screen(raw)
    print("\n".join(shown))
    check(rc == 0, f"exit {rc}")
    check(redraws_clean(raw), "a redraw without \\033[K")
    bars = re.findall(r"step \[[#.]{30}\] (\d+)/20  [\d.]+ samples/s  loss [\d.]+  lr [\d.]+  "
                      r"ETA \d\d:\d\d:\d\d", raw)
    # the bar redraws at most every 0.1 s, so which steps show depends on the speed; what must
    # hold: it is drawn, and it comes back after the verification of step 6 hid it
    check(len(bars) >= 3 and any(int(x) > 6 for x in bars), f"training bar lines {bars}")
    ver = re.findall(r"verifying lfw \[[#.]{30}\] (\d+)/(\d+)", raw)
    check(ver and ver[-1][0] != "0" and ver[-1][1] == "38", f"verification bar {ver[-3:]}")
    # on the screen: only log lines and ft-train's own lines, none mixed with a bar
    odd = [ln for ln in shown if ln and not re.match(r"(Training: \d{4}-|ft-train: )", ln)]
    check(not odd, f"lines mixed with a bar: {odd}")
    check(sum("Speed " in ln for ln in shown) == 2, "two speed lines (steps 8 and 12)")


{"bar": bar, "train": train}[sys.argv[1]]()
print(f"{len(fail)} failure(s)")
sys.exit(1 if fail else 0)
