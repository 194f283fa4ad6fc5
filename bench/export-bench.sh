#!/bin/bash
# export-bench.sh: ft-export's time, file size and peak memory per network at full width
# (width 64, emb 512), for the default graph, --fold-bn and --fp16, next to the sizes of
# insightface's released ONNX models (R50 166 MB, R100 248 MB, R200 476 MB). The checkpoints
# hold random weights (tests' ex_tool mkckpt: the same tensors, shapes and file layout as
# ft-train's); the time does not depend on the values.
#
#   bench/export-bench.sh [--build DIR] [--depths "50 100 200"] [--repeat 3]
#
# Each time is the best of --repeat runs (the checkpoint in the page cache); the output goes
# to a temporary folder on the same file system as the checkpoint (fsync included).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build depths="50 100 200" repeat=3
while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$2; shift 2 ;;
    --depths) depths=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "export-bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
exp=$build/bin/ft-export tool=$build/tests/ex_tool
for p in "$exp" "$tool"; do
    [ -x "$p" ] || { echo "export-bench.sh: no $p (build ft-export and ex_tool)" >&2; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/export-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
printf '%-6s %-10s %10s %12s %10s %10s\n' model variant "export s" "size MiB" nodes "peak MiB"
for d in $depths; do
    ck=$tmp/r$d
    "$tool" mkckpt "$ck" --depth "$d" --seed "$d"
    for v in default --fold-bn --fp16; do
        opt=()
        [ "$v" = default ] || opt=("$v")
        best="" rss="" line=""
        for _ in $(seq "$repeat"); do
            /usr/bin/time -f "%e %M" -o "$tmp/t" "$exp" "$ck" -o "$tmp/m.onnx" "${opt[@]}" >"$tmp/out"
            read -r s k <"$tmp/t"
            if [ -z "$best" ] || awk "BEGIN {exit !($s < $best)}"; then best=$s rss=$k; fi
            line=$(cat "$tmp/out")
        done
        bytes=$(stat -c %s "$tmp/m.onnx")
        nodes=$(echo "$line" | grep -o '[0-9]* nodes' | cut -d' ' -f1)
        printf '%-6s %-10s %10s %12.1f %10s %10.0f\n' "r$d" "$v" "$best" \
            "$(awk "BEGIN {print $bytes / 1048576}")" "$nodes" "$(awk "BEGIN {print $rss / 1024}")"
    done
    rm -rf "$ck"
done
