"""onnxruntime CPU timing of one .onnx, for bench/engine-bench.sh: RUNS forwards of BATCH
copies of one input (uniform in [-1, 1), seed 1) after one warm-up, THREADS intra-op threads;
prints "sorted ms: a b c ..." as eng_tool bench does.
usage: ort_bench.py MODEL BATCH RUNS THREADS"""
import sys
import time

import numpy as np
import onnxruntime as ort

path, batch, runs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.log_severity_level = 3
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
x = np.random.RandomState(1).uniform(-1, 1, (1, 3, 112, 112)).astype(np.float32)
x = np.repeat(x, batch, 0)
s.run(None, {name: x})
t = []
for _ in range(runs):
    t0 = time.perf_counter()
    s.run(None, {name: x})
    t.append((time.perf_counter() - t0) * 1e3)
print("sorted ms: " + " ".join("%.3f" % v for v in sorted(t)))
