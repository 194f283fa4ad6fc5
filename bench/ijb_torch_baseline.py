"""The job of ft-eval ijb's feature pass in Python, as onnx_ijbc.py does it (cv2.imread,
BGR->RGB, Umeyama similarity, cv2.warpAffine, the crop and its mirror through the model in
batches), with the PyTorch IResNet of tests/pyref on the same checkpoint; prints images/s.
Usage: ijb_torch_baseline.py IJB_DIR CKPT_DIR WIDTH B1 B2 B3 B4 EMB [--threads T] [--batch N]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "tests"))
import pyref  # noqa: E402

cv2, np, torch = pyref.need("cv2", "numpy", "torch")
from pyref import ijb  # noqa: E402
from pyref.iresnet import Net  # noqa: E402
from pyref.safetensors import load_safetensors  # noqa: E402
from pyref.verify import to_input  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("root")
ap.add_argument("ckpt")
ap.add_argument("arch", nargs=6, type=int)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch", type=int, default=64)
a = ap.parse_args()
torch.set_num_threads(a.threads)
cv2.setNumThreads(a.threads)
width, blocks, emb = a.arch[0], tuple(a.arch[1:5]), a.arch[5]
model = Net(width, blocks, emb)
sd = load_safetensors(os.path.join(a.ckpt, "backbone.safetensors"))
model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, strict=True)
model.eval()
names, lmk = ijb.read_meta(a.root, "ijbc")[:2]
t0 = time.time()
with torch.no_grad():
    for s in range(0, len(names), a.batch):
        crops = []
        for i in range(s, min(s + a.batch, len(names))):
            img = cv2.imread(os.path.join(a.root, "loose_crop", names[i]))
            crops.append(ijb.align(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), lmk[i])[0])
        x = torch.from_numpy(np.ascontiguousarray(to_input(np.stack(crops))))
        model(torch.cat([x, torch.flip(x, dims=[3])]))
dt = time.time() - t0
print("python baseline: features of %d images in %.1f s, %.1f images/s" %
      (len(names), dt, len(names) / dt))
