#!/bin/sh
# dist-bench.sh: CPU training throughput, 1 rank x 1 thread, 2 ranks x 1 thread (mpirun) and
# 1 rank x 2 threads, on the synthetic set, with the share of rank 0's training time spent in
# collectives (ft-train's summary line); then the gradient buckets' overlap with backward
# (ddp_overlap True / False, alternated twice) and the buckets reduced in the gradients' memory
# or packed into a staging buffer (ddp_bucket_view True / False, alternated twice) on a
# full-width r18 (4 buckets of 25 MiB), 2 ranks x 1 thread. Figures in docs/benchmarks.md.
#   bench/dist-bench.sh [BUILD_DIR] [STEPS] [OVERLAP_STEPS]
set -eu
B=${1:-build}
STEPS=${2:-40}
OSTEPS=${3:-16}
W=${TMPDIR:-/tmp}/ft-dist-bench
mkdir -p "$W"
if [ ! -d "$W/data/train.lmdb" ]; then
    "$B/bin/ft-synth" "$W/data" --classes 128 --per-class 20 --seed 1 >/dev/null
    "$B/bin/ft-ingest" "$W/data" "$W/data/train.lmdb" --shuffle --seed 7 >/dev/null 2>&1
fi
MPIRUN="mpirun --allow-run-as-root --oversubscribe --bind-to none"
ARGS="rec=$W/data val_targets=[] frequent=1000 num_epoch=100 max_steps=$STEPS batch_size=32"
run() { # label, ranks, threads, [extra key=value ...]
    rm -rf "$W/out"
    l=$1 n=$2 t=$3
    shift 3
    if [ "$n" -gt 1 ]; then
        $MPIRUN -np "$n" "$B/bin/ft-train" configs/synth_r18.py $ARGS threads="$t" "$@" \
            output="$W/out" 2>"$W/err" >/dev/null
    else
        "$B/bin/ft-train" configs/synth_r18.py $ARGS threads="$t" "$@" output="$W/out" \
            2>"$W/err" >/dev/null
    fi
    sps=$(sed -n 's/.* \([0-9.]*\) samples\/s; loss.*/\1/p' "$W/err")
    comm=$(sed -n 's/.*collectives (\([0-9.]*%\)).*/\1/p' "$W/err")
    echo "| $l | $sps | ${comm:-0%} |"
}
echo "| ranks x threads | samples/s (global) | rank 0's time in collectives |"
echo "|---|---|---|"
run "1 x 1" 1 1
run "2 x 1 (mpirun)" 2 1
run "1 x 2" 1 2
echo
echo "| r18 (width 64, blocks 2-2-2-2, emb 512, batch 16), 2 x 1 | samples/s (global) | rank 0's time in collectives |"
echo "|---|---|---|"
R18="width=64 blocks=(2,2,2,2) embedding_size=512 batch_size=16 num_workers=1 max_steps=$OSTEPS"
for ov in True False False True; do
    # shellcheck disable=SC2086
    run "ddp_overlap = $ov" 2 1 $R18 ddp_overlap=$ov export_onnx=False
done
for bv in True False False True; do
    # shellcheck disable=SC2086
    run "ddp_bucket_view = $bv" 2 1 $R18 ddp_bucket_view=$bv export_onnx=False
done
