#!/bin/bash
# ft-synth dataset, read directly as .rec and after ft-ingest (no shuffle) as LMDB: the loader
# must give identical batches. Exit 77 (skip) while ft-synth / ft-ingest are not built.
set -u
bin=$1 test_loader=$2 out=$3
for p in ft-synth ft-ingest; do
    [ -x "$bin/$p" ] || { echo "skip: $bin/$p not built"; exit 77; }
done
rm -rf "$out"
"$bin/ft-synth" "$out" --classes 7 --per-class 13 --seed 3 >/dev/null || exit 1
"$bin/ft-ingest" "$out" "$out/train.lmdb" >/dev/null || exit 1
exec "$test_loader" rec "$out"
