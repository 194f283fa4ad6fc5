"""ONNX files of the PyTorch reference IResNet (pyref.iresnet.Net) made the way arcface_torch's
torch2onnx.py makes them (formats.md 5.1): the net is built for the architecture a facetrain
checkpoint records, the checkpoint's backbone.safetensors is loaded with load_state_dict
(strict), and torch.onnx.export writes it in eval mode with a [1, 3, 112, 112] dummy input named
"data", keep_initializers_as_inputs=False, opset 11; then the input's dim 0 is set to the
symbolic dim_param "None" (the output stays [1, emb]), as the script does after exporting.

  arch(ckpt_dir)                 (width, blocks, emb) from the "architecture" metadata
  load_net(ckpt_dir)             the eval-mode pyref Net holding the checkpoint's weights
  export(ckpt_dir, out_path, opset=11, symbolic=True)
                                 writes the .onnx; returns out_path
  ort_run(path, x, threads=2)    onnxruntime CPU outputs for x [n, 3, H, W] float32
Command line: python3 onnx_export.py CKPT_DIR OUT.onnx
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pyref import need  # noqa: E402


def arch(ckpt_dir):
    from pyref.safetensors import load_metadata
    meta = load_metadata(os.path.join(ckpt_dir, "backbone.safetensors")) or {}
    m = re.search(r"width (\d+), blocks \((\d+), (\d+), (\d+), (\d+)\), emb (\d+)",
                  meta.get("architecture", ""))
    if not m:
        raise ValueError("%s: no 'architecture' metadata" % ckpt_dir)
    v = [int(g) for g in m.groups()]
    return v[0], v[1:5], v[5]


def load_net(ckpt_dir):
    torch = need("torch")
    from pyref.iresnet import Net
    from pyref.safetensors import load_torch
    width, blocks, emb = arch(ckpt_dir)
    net = Net(width, blocks, emb)
    _, sd, _ = load_torch(os.path.join(ckpt_dir, "backbone.safetensors"))
    net.load_state_dict({k: torch.as_tensor(v) for k, v in sd.items()}, strict=True)
    return net.eval()


def export(ckpt_dir, out_path, opset=11, symbolic=True):
    torch, onnx = need("torch", "onnx")
    net = load_net(ckpt_dir)
    dummy = torch.zeros(1, 3, 112, 112)
    with torch.no_grad():
        torch.onnx.export(net, dummy, out_path, input_names=["data"],
                          keep_initializers_as_inputs=False, verbose=False,
                          opset_version=opset)
    if symbolic:
        model = onnx.load(out_path)
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "None"
        onnx.save(model, out_path)
    return out_path


def ort_run(path, x, threads=2):
    ort = need("onnxruntime")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: onnx_export.py CKPT_DIR OUT.onnx")
    print(export(sys.argv[1], sys.argv[2]))
