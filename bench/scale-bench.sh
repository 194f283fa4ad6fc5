#!/bin/bash
# scale-bench.sh: how ft-ingest and the loader grow with the number of records, up to millions,
# to show that memory stays bounded (Glint360K has 17.1 M images).
#
#   bench/scale-bench.sh [--bin DIR] [--sizes "100000 1000000 5000000"] [--px 32] [--work DIR]
#
# For each N: ft-synth writes N images (N/100 identities x 100) at PX x PX pixels (scaled down
# from 112 so that millions of records fit the machine's disk and time: the metadata path, the
# index, LMDB's B-tree and the loader's order are what grows with N; the per-image decode cost is
# measured by bench/loader-bench.sh at 112 x 112). Then, each under /usr/bin/time:
#   ft-ingest N records -> LMDB (--shuffle), ft-ingest --verify, ft-loadbench on the LMDB and on
#   the .rec (500 batches of 128, 2 threads, plus opening the dataset and building its order).
# Prints wall seconds, peak RSS and peak anonymous RSS (MiB) per step, and the file sizes.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/build/bin sizes="100000 1000000 5000000" px=32 work=""
while [ $# -gt 0 ]; do
    case $1 in
    --bin) bin=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --px) px=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "scale-bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -n "$work" ] || work=$(mktemp -d /tmp/facetrain-scale.XXXXXX)
trap 'rm -rf "$work"' EXIT
# measure LABEL CMD...: wall seconds, peak RSS and peak anonymous RSS (MiB). The peak RSS
# counts the pages of memory-mapped files (LMDB's data.mdb) the process touched; the anonymous
# RSS (RssAnon, sampled every 20 ms) is the memory the program itself allocated.
measure() {
    local label=$1
    shift
    /usr/bin/time -f "%e %M" -o "$work/t" "$@" >"$work/out" 2>"$work/err" &
    local tpid=$! anon=0 a
    while kill -0 "$tpid" 2>/dev/null; do
        for p in $(pgrep -P "$tpid" 2>/dev/null); do
            a=$(awk '/^RssAnon/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
            [ -n "$a" ] && [ "$a" -gt "$anon" ] && anon=$a
        done
        sleep 0.02
    done
    wait "$tpid" || { echo "scale-bench.sh: $label failed: $(tail -2 "$work/err")" >&2; exit 1; }
    awk -v l="$label" -v an="$anon" \
        '{printf "  %-30s %8.1f s  peak RSS %6.0f MiB  anonymous %6.0f MiB\n", l, $1, $2 / 1024, an / 1024}' "$work/t"
}
for n in $sizes; do
    cls=$((n / 100))
    d=$work/n$n
    echo "N = $n records ($cls identities x 100, ${px}x${px} JPEG q90)"
    measure "ft-synth" "$bin/ft-synth" "$d" --classes "$cls" --per-class 100 --seed 1 \
        --size "$px" --quality 90 --pairs 0
    measure "ft-ingest --shuffle" "$bin/ft-ingest" "$d" "$d/train.lmdb" --shuffle --seed 7
    measure "ft-ingest --verify" "$bin/ft-ingest" --verify "$d/train.lmdb"
    for src in "$d/train.lmdb" "$d/train.rec"; do
        measure "ft-loadbench $(basename "$src")" "$bin/ft-loadbench" "$src" \
            --threads 2 --batch 128 --batches 500 --layout u8hwc --repeat 1
    done
    printf '  sizes: train.rec %s, train.idx %s, LMDB %s\n' "$(du -h "$d/train.rec" | cut -f1)" \
        "$(du -h "$d/train.idx" | cut -f1)" "$(du -sh "$d/train.lmdb" | cut -f1)"
    rm -rf "$d"
done
