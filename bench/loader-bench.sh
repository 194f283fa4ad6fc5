#!/bin/bash
# loader-bench.sh: the loader against the PyTorch MXFaceDataset baseline on the same dataset,
# the read engines (warm on tmpfs, cold from disk with O_DIRECT) and thread scaling against the
# decode-only ceiling. One command; prints tables and the ratios.
#
#   bench/loader-bench.sh [--bin DIR] [--dataset DIR] [--classes N] [--per-class M]
#                         [--batches K] [--repeat R] [--keep]
#
# --bin      folder with ft-loadbench, ft-synth, ft-ingest (default: build-loader/bin, build/bin)
# --dataset  an existing dataset folder (train.rec + train.idx); copied to tmpfs. Default: an
#            ft-synth dataset of N x M 112x112 q95 images (default 200 x 100) made on tmpfs.
# The LMDB is ft-ingest'ed without shuffle next to the copy. Cold runs read a disk copy
# (/var/tmp) after dropping it from the page cache (ft-loadbench --cold says how).
# Wall-clock figures suffer when other processes share the CPUs; ft-loadbench also reports
# images per CPU-second of its worker threads against the ceiling's, which does not.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
bin="" dataset="" classes=200 per_class=100 batches=100 repeat=3 keep=0
while [ $# -gt 0 ]; do
    case $1 in
    --bin) bin=$2; shift 2 ;;
    --dataset) dataset=$2; shift 2 ;;
    --classes) classes=$2; shift 2 ;;
    --per-class) per_class=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "loader-bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -z "$bin" ]; then
    for d in "$here/build-loader/bin" "$here/build/bin"; do
        [ -x "$d/ft-loadbench" ] && { bin=$d; break; }
    done
fi
[ -x "$bin/ft-loadbench" ] || { echo "loader-bench.sh: no ft-loadbench (use --bin)" >&2; exit 1; }
for p in ft-ingest ft-loadbench; do
    [ -x "$bin/$p" ] || { echo "loader-bench.sh: $bin/$p not built" >&2; exit 1; }
done

shm=$(mktemp -d /dev/shm/ft-loadbench.XXXXXX)
cold=$(mktemp -d /var/tmp/ft-loadbench-cold.XXXXXX)
cleanup() { [ $keep -eq 1 ] || rm -rf "$shm" "$cold"; }
trap cleanup EXIT
if [ -n "$dataset" ]; then
    cp "$dataset/train.rec" "$dataset/train.idx" "$shm/"
    [ -f "$dataset/property" ] && cp "$dataset/property" "$shm/"
else
    [ -x "$bin/ft-synth" ] || { echo "loader-bench.sh: $bin/ft-synth not built" >&2; exit 1; }
    "$bin/ft-synth" "$shm" --classes "$classes" --per-class "$per_class" --seed 1 --pairs 0 \
        --quality 95 >/dev/null
fi
"$bin/ft-ingest" "$shm" "$shm/train.lmdb" >/dev/null 2>&1
cp -r "$shm/train.lmdb" "$cold/"
n=$(wc -l <"$shm/train.idx")
echo "dataset: $shm ($n records, $(du -sh "$shm/train.rec" | cut -f1) train.rec, tmpfs)"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# field NAME from a JSON line on stdin
jf() { $PY -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }
lb() { "$bin/ft-loadbench" "$@" --batches "$batches" --repeat "$repeat" --json; }

echo
echo "== PyTorch baseline vs loader (train.rec on tmpfs, batch 128, 2 workers/threads) =="
base=$($PY "$here/bench/mxface_baseline.py" "$shm" --batches "$batches" --workers 2 --json)
base_ips=$(echo "$base" | jf images_per_s)
printf '%-44s %12s\n' "reader" "images/s"
printf '%-44s %12.1f\n' "PyTorch DataLoader, MXFaceDataset (f32 CHW)" "$base_ips"
for layout in f32chw u8hwc; do
    for src in train.rec train.lmdb; do
        j=$(lb "$shm/$src" --threads 2 --layout $layout --engine uring)
        ips=$(echo "$j" | jf images_per_s)
        printf '%-44s %12.1f   x%.1f vs baseline\n' "loader $src uring $layout" "$ips" \
            "$($PY -c "print($ips / $base_ips)")"
    done
done
# The same with libjpeg-turbo's fast integer IDCT (pixels within a few levels of the accurate
# IDCT that the rows above and the baseline's OpenCV decode use).
for layout in f32chw u8hwc; do
    j=$(lb "$shm/train.lmdb" --threads 2 --layout $layout --engine uring --fast-idct)
    ips=$(echo "$j" | jf images_per_s)
    printf '%-44s %12.1f   x%.1f vs baseline\n' "loader train.lmdb uring $layout fast-idct" \
        "$ips" "$($PY -c "print($ips / $base_ips)")"
done

echo
echo "== engines (LMDB, 2 threads, u8hwc): warm = tmpfs, cold = disk copy + O_DIRECT =="
printf '%-8s %-6s %12s %10s %14s %10s %10s\n' engine cache "images/s" "MB/s" "ceiling img/s" \
    "ratio" "cpu ratio"
for e in uring pread mmap; do
    for mode in warm cold; do
        if [ $mode = warm ]; then j=$(lb "$shm/train.lmdb" --threads 2 --engine $e)
        else j=$("$bin/ft-loadbench" "$cold/train.lmdb" --threads 2 --engine $e \
                 --batches "$batches" --cold --json); fi
        printf '%-8s %-6s %12.1f %10.1f %14.1f %10.3f %10.3f\n' $e $mode \
            "$(echo "$j" | jf images_per_s)" "$(echo "$j" | jf mb_per_s)" \
            "$(echo "$j" | jf decode_ceiling_images_per_s)" "$(echo "$j" | jf ratio_to_ceiling)" \
            "$(echo "$j" | jf cpu_ratio_to_ceiling)"
    done
done

echo
echo "== thread scaling (LMDB on tmpfs, uring, u8hwc) against the decode-only ceiling =="
printf '%-8s %12s %14s %10s %16s %16s %10s\n' threads "images/s" "ceiling img/s" ratio \
    "img/CPU-s" "ceiling/CPU-s" "cpu ratio"
max=$(nproc)
[ "$max" -gt 16 ] && max=16
for t in 1 2 4 8 16; do
    [ "$t" -gt "$max" ] && [ "$t" -gt 2 ] && break
    j=$(lb "$shm/train.lmdb" --threads $t --engine uring)
    printf '%-8s %12.1f %14.1f %10.3f %16.1f %16.1f %10.3f\n' $t \
        "$(echo "$j" | jf images_per_s)" "$(echo "$j" | jf decode_ceiling_images_per_s)" \
        "$(echo "$j" | jf ratio_to_ceiling)" "$(echo "$j" | jf images_per_cpu_s)" \
        "$(echo "$j" | jf ceiling_images_per_cpu_s)" "$(echo "$j" | jf cpu_ratio_to_ceiling)"
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
