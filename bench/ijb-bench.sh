#!/bin/bash
# ijb-bench.sh: ft-eval ijb throughput (images/s of the feature pass: read, decode, align,
# crop + mirror through the model) on synthetic IJB-C folders (tests/eval/make_ijb.py), next
# to the same job in Python (bench/ijb_torch_baseline.py: cv2 + numpy + PyTorch, as
# onnx_ijbc.py does it) in the same run. Two models: the demo's small IResNet (r18, width 8,
# one block per stage, 128-d) on N1 images, and a full IResNet-50 (512-d) on N2 images.
#
#   bench/ijb-bench.sh [--bin DIR] [--tests DIR] [--work DIR] [--threads T] [--n1 N] [--n2 N]
#
# Defaults: build/bin, build/tests, build/bench-ijb, 2 threads, 2000 and 200 images. Seeded
# (untrained) models: throughput does not depend on the weights.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
bin=$here/build/bin tests=$here/build/tests work=$here/build/bench-ijb threads=2 n1=2000 n2=200
while [ $# -gt 0 ]; do
    case $1 in
    --bin) bin=$2; shift 2 ;;
    --tests) tests=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --n1) n1=$2; shift 2 ;;
    --n2) n2=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "ijb-bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
for p in "$bin/ft-eval" "$bin/ft-synth" "$tests/ev_tools"; do
    [ -x "$p" ] || { echo "ijb-bench.sh: $p not built" >&2; exit 1; }
done
mkdir -p "$work"
run() { # name n_images depth width b1 b2 b3 b4 emb
    local name=$1 n=$2 depth=$3; shift 3
    local set=$work/set$n
    [ -f "$set/meta/ijbc_name_5pts_score.txt" ] ||
        $PY "$here/tests/eval/make_ijb.py" "$bin/ft-synth" "$set" --identities $((n / 10)) \
            --per-id 10 --max-pairs 100000 >/dev/null
    "$tests/ev_tools" ckpt "$work/$name" "$depth" "$@" 5
    echo "== $name on $n images, $threads threads"
    "$bin/ft-eval" ijb "$work/$name" "$set" --target IJBC --result-dir "$work/res_$name" \
        --threads "$threads" --batch 64 | grep -E "^features"
    $PY "$here/bench/ijb_torch_baseline.py" "$set" "$work/$name" "$@" --threads "$threads"
}
run r18w8 "$n1" 18 8 1 1 1 1 128
run r50 "$n2" 50 64 3 4 14 3 512
