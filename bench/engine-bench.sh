#!/bin/bash
# engine-bench.sh: facetrain's inference engine next to onnxruntime on the same .onnx, same
# CPU, same thread count, in one command: batch-1 latency as onnx_helper measures it (the 6th
# fastest of 50 runs) and batch-32 throughput (images/s from the median of 10 runs).
#
#   bench/engine-bench.sh [--bin BUILD_DIR] [--depth 50] [--width 64] [--threads 2] [--rounds 3]
#
# The model: an IResNet-DEPTH checkpoint written by the trainer's checkpoint code (eng_tool
# make: trained-looking random weights), exported by torch.onnx.export from the PyTorch
# reference as torch2onnx.py does (tests/pyref/onnx_export.py). The two runtimes alternate for
# --rounds rounds (a shared machine drifts; alternating keeps both under the same load) and
# the best round of each is reported, every round printed. Needs /usr/bin/python3 with torch,
# onnx and onnxruntime, and a build with the tests (build/tests/eng_tool).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/build" depth=50 width=64 threads=2 rounds=3
while [ $# -gt 0 ]; do
    case $1 in
    --bin) bin=$2; shift 2 ;;
    --depth) depth=$2; shift 2 ;;
    --width) width=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "engine-bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
tool="$bin/tests/eng_tool"
py=/usr/bin/python3
[ -x "$tool" ] || { echo "engine-bench.sh: $tool not built (cmake --build $bin --target eng_tool)" >&2; exit 1; }
work=$(mktemp -d /tmp/engine-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$tool" make "$work/ckpt" "$depth" "$width" 512 2048
"$py" "$here/tests/pyref/onnx_export.py" "$work/ckpt" "$work/model.onnx" > /dev/null
size=$(stat -c %s "$work/model.onnx")
echo "model: IResNet-$depth width $width, $(awk -v s="$size" 'BEGIN{printf "%.1f MiB", s/1048576}'), threads $threads, CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
nth() { tr ' ' '\n' | sed -n "$(($1 + 3))p"; }  # value k (0-based) after "sorted ms:"
best1e=1e9 best1o=1e9 best32e=0 best32o=0
for r in $(seq 1 "$rounds"); do
    e1=$("$tool" bench "$work/model.onnx" 1 50 "$threads" | nth 5)
    o1=$("$py" "$here/bench/ort_bench.py" "$work/model.onnx" 1 50 "$threads" | nth 5)
    e32=$("$tool" bench "$work/model.onnx" 32 10 "$threads" | nth 4)
    o32=$("$py" "$here/bench/ort_bench.py" "$work/model.onnx" 32 10 "$threads" | nth 4)
    ie=$(awk -v t="$e32" 'BEGIN{printf "%.1f", 32000/t}') io=$(awk -v t="$o32" 'BEGIN{printf "%.1f", 32000/t}')
    printf 'round %d: batch-1 6th fastest: engine %s ms, onnxruntime %s ms; batch 32: engine %s img/s, onnxruntime %s img/s\n' "$r" "$e1" "$o1" "$ie" "$io"
    best1e=$(awk -v a="$best1e" -v b="$e1" 'BEGIN{print (b<a)?b:a}')
    best1o=$(awk -v a="$best1o" -v b="$o1" 'BEGIN{print (b<a)?b:a}')
    best32e=$(awk -v a="$best32e" -v b="$ie" 'BEGIN{print (b>a)?b:a}')
    best32o=$(awk -v a="$best32o" -v b="$io" 'BEGIN{print (b>a)?b:a}')
done
printf 'best: batch-1 latency engine %s ms, onnxruntime %s ms; batch-32 throughput engine %s img/s, onnxruntime %s img/s\n' "$best1e" "$best1o" "$best32e" "$best32o"
