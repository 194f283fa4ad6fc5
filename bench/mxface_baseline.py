#!/usr/bin/python3
"""PyTorch baseline for ft-loadbench: a DataLoader that reads train.rec the way arcface_torch's
MXFaceDataset does (docs/formats.md section 2.2), timed over K batches.

Reading: our own minimal RecordIO reader (mxnet is not installed): the .idx maps key -> offset,
a record is reassembled from its segments (cflag 0..3), the IRHeader '<IfQQ' is unpacked, and
the image list is keys 1 .. label[0]-1 when record 0 is an insightface header (flag > 0), else
every key of the .idx. Per sample: cv2.imdecode (BGR) -> RGB, random horizontal flip p=0.5,
ToTensor + Normalize(0.5, 0.5) written with torch ops (torchvision is not installed; its
ToPILImage round trip, which arcface_torch also does, is left out, which only favours the
baseline). DistributedSampler(world 1, seed 2048), DataLoader(num_workers=2, batch 128,
drop_last=True).

Run with /usr/bin/python3 (Debian python3-torch and python3-opencv):
    bench/mxface_baseline.py DATASET_DIR [--batches K] [--batch B] [--workers W] [--json]
Timing starts when the first batch arrives (worker start-up excluded) and covers K batches.
"""
import argparse
import json
import numbers
import os
import struct
import sys
import time

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

MAGIC = 0xCED7230A


class RecReader:
    """Random access to an MXNet .rec through its .idx."""

    def __init__(self, rec_path, idx_path):
        self.rec_path = rec_path
        self.keys, self.offsets = [], {}
        with open(idx_path) as f:
            for line in f:
                parts = line.strip().split("\t")
                if len(parts) < 2:
                    continue
                k, off = int(parts[0]), int(parts[1])
                self.keys.append(k)
                self.offsets[k] = off
        self.f = None

    def read(self, key):
        if self.f is None:  # opened lazily: one handle per DataLoader worker process
            self.f = open(self.rec_path, "rb")
        self.f.seek(self.offsets[key])
        out = bytearray()
        while True:
            magic, lrec = struct.unpack("<II", self.f.read(8))
            if magic != MAGIC:
                raise ValueError(f"bad magic at key {key}")
            cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
            out += self.f.read(length)
            self.f.read((4 - length % 4) % 4)
            if cflag in (0, 3):
                return bytes(out)
            out += struct.pack("<I", MAGIC)


def unpack(record):
    flag, label, _id, _id2 = struct.unpack("<IfQQ", record[:24])
    body = record[24:]
    if flag > 0:
        label = np.frombuffer(body[: 4 * flag], dtype=np.float32)
        body = body[4 * flag:]
    return flag, label, body


class MXFaceDataset(Dataset):
    def __init__(self, root):
        self.rec = RecReader(os.path.join(root, "train.rec"), os.path.join(root, "train.idx"))
        flag, label, _ = unpack(self.rec.read(0))
        if flag > 0:
            self.imgidx = np.array(range(1, int(label[0])))
        else:
            self.imgidx = np.array(list(self.rec.keys))
        self.rec.f = None  # do not share the parent's handle with forked workers

    def __len__(self):
        return len(self.imgidx)

    def __getitem__(self, index):
        _flag, label, img = unpack(self.rec.read(int(self.imgidx[index])))
        if not isinstance(label, numbers.Number):
            label = label[0]
        label = torch.tensor(label, dtype=torch.long)
        bgr = cv2.imdecode(np.frombuffer(img, dtype=np.uint8), cv2.IMREAD_COLOR)
        rgb = bgr[:, :, ::-1]
        if torch.rand(1).item() < 0.5:  # RandomHorizontalFlip
            rgb = rgb[:, ::-1, :]
        t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255)
        t = t.sub_(0.5).div_(0.5)  # Normalize(mean=0.5, std=0.5)
        return t, label


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    ds = MXFaceDataset(a.dataset)
    sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=2048)
    dl = DataLoader(ds, batch_size=a.batch, sampler=sampler, num_workers=a.workers,
                    pin_memory=False, drop_last=True, persistent_workers=a.workers > 0)
    done, t0, epoch = 0, None, 0
    while done <= a.batches:
        sampler.set_epoch(epoch)
        for x, y in dl:
            if t0 is None:
                t0 = time.perf_counter()  # first batch: workers are up
            else:
                done += 1
            if done >= a.batches:
                break
        epoch += 1
        if done >= a.batches:
            break
    dt = time.perf_counter() - t0
    ips = done * a.batch / dt
    res = {"images_per_s": round(ips, 1), "batches": done, "batch": a.batch,
           "workers": a.workers, "seconds": round(dt, 4)}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"PyTorch MXFaceDataset baseline: {ips:.1f} images/s "
              f"({done} batches of {a.batch}, {a.workers} workers, {dt:.2f} s)")


if __name__ == "__main__":
    sys.exit(main())
