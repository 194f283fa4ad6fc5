#!/bin/bash
# facetrain end to end on the built-in synthetic dataset, no GPU needed:
#   ft-synth -> ft-ingest -> stage-tmpfs.sh -> ft-ingest --verify -> ft-train (CPU) -> verification
# Usage: tools/demo.sh [OUTDIR]      (default: ./demo_out)
# Environment: DEMO_CLASSES, DEMO_PER_CLASS, DEMO_STEPS to change the size of the run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${1:-$ROOT/demo_out}
CLASSES=${DEMO_CLASSES:-128}
PER_CLASS=${DEMO_PER_CLASS:-20}

bash tools/install-deps.sh >/dev/null
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
BIN=$ROOT/build/bin
export FT_BIN=$BIN

step() { printf '\n== %s\n' "$*"; }

step "1. synthesize $CLASSES identities x $PER_CLASS images (insightface release layout)"
rm -rf "$OUT"
mkdir -p "$OUT"
"$BIN/ft-synth" "$OUT/synth" --classes "$CLASSES" --per-class "$PER_CLASS" --seed 1
ls -l "$OUT/synth"

step "2. ingest RecordIO -> LMDB (every JPEG decoded and checked, shuffled, checksummed)"
"$BIN/ft-ingest" "$OUT/synth" "$OUT/synth/train.lmdb" --shuffle --seed 7

step "3. stage the LMDB on a RAM disk (the verification .bin files go beside it)"
# A fresh mount point for each demo, unstaged and removed on exit: two demos on one machine
# never unmount each other's RAM disk.
STAGE=$(mktemp -d /tmp/facetrain-demo-stage.XXXXXX)
unstage() {
    tools/stage-tmpfs.sh --unstage --target "$STAGE" >/dev/null 2>&1 || true
    rmdir "$STAGE" 2>/dev/null || true
}
trap unstage EXIT
STAGED=$(tools/stage-tmpfs.sh "$OUT/synth/train.lmdb" --target "$STAGE")
DATA=$(dirname "$STAGED")
echo "staged at $STAGED; dataset folder for training: $DATA"

step "4. verify the staged copy"
"$BIN/ft-ingest" --verify "$STAGED"

if [ -x "$BIN/ft-train" ]; then
    step "5. train a small IResNet on CPU (configs/synth_r18.py), verification on lfw/cfp_fp/agedb_30"
    "$BIN/ft-train" configs/synth_r18.py rec="$DATA" output="$OUT/work" \
        ${DEMO_STEPS:+max_steps=$DEMO_STEPS}
    ls -l "$OUT/work"
fi

unstage
step "done: outputs in $OUT"
