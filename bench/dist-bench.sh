#!/bin/sh
# dist-bench.sh: CPU training throughput, 1 rank x 1 thread, 2 ranks x 1 thread (mpirun) and
# 1 rank x 2 threads, on the synthetic set, with the share of rank 0's training time spent in
# collectives (ft-train's summary line). Figures in docs/benchmarks.md.
#   bench/dist-bench.sh [BUILD_DIR] [STEPS]
set -eu
B=${1:-build}
STEPS=${2:-40}
W=${TMPDIR:-/tmp}/ft-dist-bench
mkdir -p "$W"
if [ ! -d "$W/data/train.lmdb" ]; then
    "$B/bin/ft-synth" "$W/data" --classes 128 --per-class 20 --seed 1 >/dev/null
    "$B/bin/ft-ingest" "$W/data" "$W/data/train.lmdb" --shuffle --seed 7 >/dev/null 2>&1
fi
MPIRUN="mpirun --allow-run-as-root --oversubscribe --bind-to none"
ARGS="rec=$W/data val_targets=[] frequent=1000 num_epoch=100 max_steps=$STEPS batch_size=32"
run() { # label, ranks, threads
    rm -rf "$W/out"
    if [ "$2" -gt 1 ]; then
        $MPIRUN -np "$2" "$B/bin/ft-train" configs/synth_r18.py $ARGS threads="$3" \
            output="$W/out" 2>"$W/err" >/dev/null
    else
        "$B/bin/ft-train" configs/synth_r18.py $ARGS threads="$3" output="$W/out" \
            2>"$W/err" >/dev/null
    fi
    sps=$(sed -n 's/.* \([0-9.]*\) samples\/s; loss.*/\1/p' "$W/err")
    comm=$(sed -n 's/.*collectives (\([0-9.]*%\)).*/\1/p' "$W/err")
    echo "| $1 | $sps | ${comm:-0%} |"
}
echo "| ranks x threads | samples/s (global) | rank 0's time in collectives |"
echo "|---|---|---|"
run "1 x 1" 1 1
run "2 x 1 (mpirun)" 2 1
run "1 x 2" 1 2
