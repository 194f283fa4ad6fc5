#!/bin/bash
# ingest-bench.sh: how fast ft-ingest and staging are, against a plain read of the .rec.
#
#   bench/ingest-bench.sh [WORKDIR]        (default: build-bench/ingest in the repository)
#
# Makes (or reuses) a synthetic release folder of at least BENCH_MIN_MB (default 1024) MB with
# ft-synth, then in the same run times:
#   1. cat train.rec > /dev/null, page cache warm (best of 2), and dd iflag=direct (device)
#   2. ft-ingest in source order and with --shuffle (records/s, MB/s of JPEG bytes; also per
#      CPU-second, which does not depend on what else the machine runs)
#   3. ft-ingest --verify of the result
#   4. copying data.mdb into a tmpfs with cp and with mdb_copy (GB/s), and the whole
#      tools/stage-tmpfs.sh run (copy + verify)
# and prints a table. Environment: FT_BIN (default build/bin), BENCH_THREADS (ft-ingest
# --threads, default: all CPUs), BENCH_MIN_MB.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FT_BIN:-$ROOT/build/bin}
W=${1:-$ROOT/build-bench/ingest}
MIN_MB=${BENCH_MIN_MB:-1024}
THREADS=${BENCH_THREADS:-$(nproc)}
export FT_BIN=$BIN

for p in ft-synth ft-ingest; do
    [ -x "$BIN/$p" ] || {
        echo "ingest-bench: $BIN/$p not built" >&2
        exit 1
    }
done
mkdir -p "$W"
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rate() { awk -v n="$1" -v s="$2" -v d="$3" 'BEGIN { printf "%.1f", n / s / d }'; }

# 1. data: ~7 KB per 112x112 JPEG at quality 95, so 1 GB is ~150k images
SRC=$W/synth
have_mb=0
[ -f "$SRC/train.rec" ] && have_mb=$(($(stat -c %s "$SRC/train.rec") / 1048576))
if [ "$have_mb" -lt "$MIN_MB" ]; then
    rm -rf "$SRC"
    per_class=100
    classes=$(((MIN_MB * 1048576 / 6800 + per_class - 1) / per_class))
    echo "ingest-bench: ft-synth $classes classes x $per_class images" >&2
    "$BIN/ft-synth" "$SRC" --classes "$classes" --per-class "$per_class" --seed 1 --pairs 0 >&2
fi
REC_BYTES=$(stat -c %s "$SRC/train.rec")
N=$(wc -l <"$SRC/train.idx")

# 2. plain sequential read, warm page cache
cat "$SRC/train.rec" >/dev/null
best=""
for _ in 1 2; do
    t0=$(now)
    cat "$SRC/train.rec" >/dev/null
    t=$(secs "$t0" "$(now)")
    if [ -z "$best" ] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$t; fi
done
T_CAT=$best
# the same read from the device, bypassing the page cache (what a first ingest sees)
t0=$(now)
dd if="$SRC/train.rec" of=/dev/null bs=8M iflag=direct status=none
T_DIRECT=$(secs "$t0" "$(now)")

# 3. ingest, source order and shuffled
ingest() { # ingest OUT [args...] -> "wall_seconds cpu_seconds"
    local out=$1
    shift
    rm -rf "$out"
    /usr/bin/time -f "%e %U %S" -o "$W/time.txt" \
        "$BIN/ft-ingest" "$SRC" "$out" --threads "$THREADS" "$@" >"$W/ingest.out" 2>"$W/ingest.err"
    awk '{ printf "%.2f %.2f", $1, $2 + $3 }' "$W/time.txt"
}
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
read -r T_ING C_ING <<<"$(ingest "$W/train.lmdb")"
SAMPLES=$("$BIN/ft-ingest" --info "$W/train.lmdb" | awk '$1 == "num_samples" { print $2 }')
read -r T_SHUF C_SHUF <<<"$(ingest "$W/shuf.lmdb" --shuffle --seed 1)"
rm -rf "$W/shuf.lmdb"
t0=$(now)
"$BIN/ft-ingest" --verify "$W/train.lmdb" >/dev/null 2>&1
T_VER=$(secs "$t0" "$(now)")
DB_BYTES=$(stat -c %s "$W/train.lmdb/data.mdb")

# 4. staging copy into a tmpfs (mounted here when root, else /dev/shm)
MNT=$W/tmpfs
mkdir -p "$MNT"
mounted=0
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=$((DB_BYTES * 2 / 1048576 + 256))m tmpfs "$MNT"; then
    mounted=1
    DST=$MNT
else
    DST=/dev/shm/ingest-bench.$$
    mkdir -p "$DST"
fi
cleanup() {
    rm -rf "${DST:?}/cp" "${DST:?}/mdb_copy" "${DST:?}/stage"
    [ $mounted = 1 ] && umount "$MNT"
    [ $mounted = 1 ] || rm -rf "$DST"
    rmdir "$MNT" 2>/dev/null || true
}
trap cleanup EXIT
copy_time() { # copy_time cp|mdb_copy -> seconds (best of 2)
    local b="" t t0
    for _ in 1 2; do
        rm -rf "${DST:?}/$1"
        mkdir -p "$DST/$1"
        t0=$(now)
        if [ "$1" = cp ]; then cp "$W/train.lmdb/data.mdb" "$DST/cp/data.mdb"; else mdb_copy "$W/train.lmdb" "$DST/mdb_copy"; fi
        t=$(secs "$t0" "$(now)")
        rm -rf "${DST:?}/$1"
        if [ -z "$b" ] || awk -v a="$t" -v c="$b" 'BEGIN { exit !(a < c) }'; then b=$t; fi
    done
    echo "$b"
}
T_CP=$(copy_time cp)
T_MDB=$(copy_time mdb_copy)
rm -f "$W/train.lmdb/lock.mdb" # left by mdb_copy
t0=$(now)
"$ROOT/tools/stage-tmpfs.sh" "$W/train.lmdb" --target "$DST/stage" >/dev/null 2>"$W/stage.err"
T_STAGE=$(secs "$t0" "$(now)")
"$ROOT/tools/stage-tmpfs.sh" --unstage --target "$DST/stage" 2>/dev/null

MB=$(awk -v b="$REC_BYTES" 'BEGIN { printf "%.0f", b / 1e6 }')
DBMB=$(awk -v b="$DB_BYTES" 'BEGIN { printf "%.0f", b / 1e6 }')
echo
echo "ingest-bench: $MB MB train.rec, $N .idx records, $SAMPLES samples, data.mdb $DBMB MB;"
echo "  $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), ft-ingest --threads $THREADS, load average before ingest: $LOAD0"
printf '%-40s %9s %12s %10s\n' "step" "seconds" "records/s" "MB/s"
row() { printf '%-40s %9s %12s %10s\n' "$1" "$2" "$3" "$4"; }
row "cat train.rec > /dev/null (warm)" "$T_CAT" "-" "$(rate "$REC_BYTES" "$T_CAT" 1e6)"
row "dd iflag=direct (no page cache)" "$T_DIRECT" "-" "$(rate "$REC_BYTES" "$T_DIRECT" 1e6)"
row "ft-ingest (source order)" "$T_ING" "$(rate "$SAMPLES" "$T_ING" 1)" "$(rate "$REC_BYTES" "$T_ING" 1e6)"
row "  same, per CPU-second (user+sys $C_ING s)" "-" "$(rate "$SAMPLES" "$C_ING" 1)" "$(rate "$REC_BYTES" "$C_ING" 1e6)"
row "ft-ingest --shuffle" "$T_SHUF" "$(rate "$SAMPLES" "$T_SHUF" 1)" "$(rate "$REC_BYTES" "$T_SHUF" 1e6)"
row "  same, per CPU-second (user+sys $C_SHUF s)" "-" "$(rate "$SAMPLES" "$C_SHUF" 1)" "$(rate "$REC_BYTES" "$C_SHUF" 1e6)"
row "ft-ingest --verify" "$T_VER" "$(rate "$SAMPLES" "$T_VER" 1)" "$(rate "$DB_BYTES" "$T_VER" 1e6)"
row "copy data.mdb to tmpfs: cp" "$T_CP" "-" "$(rate "$DB_BYTES" "$T_CP" 1e6)"
row "copy data.mdb to tmpfs: mdb_copy" "$T_MDB" "-" "$(rate "$DB_BYTES" "$T_MDB" 1e6)"
row "stage-tmpfs.sh (copy + verify)" "$T_STAGE" "-" "$(rate "$DB_BYTES" "$T_STAGE" 1e6)"
echo "(tmpfs: $([ $mounted = 1 ] && echo "mounted at $MNT" || echo "$DST"))"
