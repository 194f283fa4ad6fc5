#!/bin/bash
# tools/stage-tmpfs.sh on real tmpfs mounts (needs root; exit 77 otherwise).
#   test_stage.sh BUILD/bin PYTHON
# Targets live under a fresh /tmp/ft-stage-test.* folder; every mount is undone on exit.
set -uo pipefail
BIN=$1
PY=$2
HERE=$(cd "$(dirname "$0")" && pwd)
STAGE=$HERE/../../tools/stage-tmpfs.sh
export FT_BIN=$BIN

if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: needs root to mount tmpfs"
    exit 77
fi
W=$(mktemp -d /tmp/ft-stage-test.XXXXXX)
probe=$W/probe
mkdir -p "$probe"
if ! mount -t tmpfs -o size=1m tmpfs "$probe" 2>/dev/null; then
    rm -rf "$W"
    echo "SKIP: cannot mount a tmpfs here"
    exit 77
fi
umount "$probe"

cleanup() {
    local m
    for m in $(findmnt -rn -o TARGET | grep -F "$W/" | sort -r); do umount "$m" 2>/dev/null; done
    for t in "$W"/t*; do
        [ -d "$t" ] && rm -rf "/dev/shm/facetrain-stage$(echo "$t" | tr '/' '_')"
    done
    rm -rf "$W"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*"
    [ -f "$W/err" ] && sed 's/^/  stderr: /' "$W/err"
    exit 1
}

# dataset: a release folder written by ft-synth (or the Python writer), then ft-ingest
make_ds() { # make_ds OUT_LMDB CLASSES PER_CLASS SEED
    local rel=$W/rel-$2-$3-$4
    if [ ! -d "$rel" ]; then
        if [ -x "$BIN/ft-synth" ]; then
            "$BIN/ft-synth" "$rel" --classes "$2" --per-class "$3" --seed "$4" --pairs 0 \
                >/dev/null 2>&1 || fail "ft-synth"
        else
            "$PY" -c "import sys; sys.path.insert(0, '$HERE/../ingest'); import ingest_util as u; \
u.write_release('$rel', [c for c in range($2) for _ in range($3)], property_classes=$2, seed=$4)" ||
                fail "python writer"
        fi
    fi
    "$BIN/ft-ingest" "$rel" "$1" >/dev/null 2>&1 || fail "ft-ingest $rel"
}

stage() { "$STAGE" "$@" 2>"$W/err"; }

mkdir -p "$W/a" "$W/b"
make_ds "$W/a/ds.lmdb" 10 8 1
make_ds "$W/b/ds.lmdb" 10 8 2 # same name, another dataset

# 1. stage into a fresh tmpfs
T=$W/t1
out=$(stage "$W/a/ds.lmdb" --target "$T") || fail "stage"
[ "$out" = "$T/ds.lmdb" ] || fail "printed '$out', expected $T/ds.lmdb"
[ "$(findmnt -n -o FSTYPE "$T")" = tmpfs ] || fail "$T is not a tmpfs mount"
"$BIN/ft-ingest" --verify "$out" >/dev/null 2>&1 || fail "staged copy does not verify"
grep -q "mounted a tmpfs" "$W/err" || fail "no mount message"
echo "ok: staged into a new tmpfs"

# 2. re-run: nothing copied
before=$(stat -c '%i %Y' "$out/data.mdb")
out2=$(stage "$W/a/ds.lmdb" --target "$T") || fail "re-stage"
[ "$out2" = "$out" ] || fail "re-stage printed '$out2'"
grep -q "already staged" "$W/err" || fail "no 'already staged' message"
[ "$(stat -c '%i %Y' "$out/data.mdb")" = "$before" ] || fail "re-stage copied again"
echo "ok: re-run is a no-op"

# 2b. a dataset folder: the .bin verification files and property go beside the staged LMDB,
# so that the target is a dataset folder for ft-train (rec=TARGET)
DSF=$W/dsfolder
if [ -x "$BIN/ft-synth" ]; then
    "$BIN/ft-synth" "$DSF" --classes 10 --per-class 8 --seed 4 --pairs 10 >/dev/null 2>&1 ||
        fail "ft-synth with pairs"
else
    make_ds "$W/unused.lmdb" 10 8 4
    mkdir -p "$DSF" && cp -r "$W/rel-10-8-4/." "$DSF/"
    printf 'fake pairs' >"$DSF/lfw.bin"
fi
"$BIN/ft-ingest" "$DSF" "$DSF/train.lmdb" >/dev/null 2>&1 || fail "ft-ingest $DSF"
T6=$W/t6
out=$(stage "$DSF/train.lmdb" --target "$T6") || fail "stage of a dataset folder"
[ "$out" = "$T6/train.lmdb" ] || fail "printed '$out'"
nbin=0
for f in "$DSF"/*.bin "$DSF/property"; do
    [ -f "$f" ] || continue
    cmp -s "$f" "$T6/$(basename "$f")" || fail "$(basename "$f") not staged beside the LMDB"
    nbin=$((nbin + 1))
done
[ $nbin -ge 2 ] || fail "test dataset has no .bin/property files"
grep -q "verification/property file" "$W/err" || fail "no message about the copied files"
rm -f "$T6/property"
stage "$DSF/train.lmdb" --target "$T6" >/dev/null || fail "re-stage of a dataset folder"
cmp -s "$DSF/property" "$T6/property" || fail "missing property not restored on re-run"
echo "ok: .bin and property staged beside the LMDB"

# 2c. --verify-existing re-checks an already staged copy instead of trusting its meta
sz=$(stat -c %s "$T6/train.lmdb/data.mdb")
printf '\xff\x00\xff\x00' | dd of="$T6/train.lmdb/data.mdb" bs=1 seek=$((sz / 2)) conv=notrunc \
    2>/dev/null
"$BIN/ft-ingest" --verify "$T6/train.lmdb" >/dev/null 2>&1 && fail "damage did not take"
stage "$DSF/train.lmdb" --target "$T6" >/dev/null || fail "plain re-stage"
grep -q "already staged" "$W/err" || fail "plain re-stage should trust the meta"
out=$(stage "$DSF/train.lmdb" --target "$T6" --verify-existing) || fail "--verify-existing"
grep -q "fails verification; copying it again" "$W/err" || fail "damaged copy not detected"
"$BIN/ft-ingest" --verify "$out" >/dev/null 2>&1 || fail "--verify-existing left a bad copy"
stage "$DSF/train.lmdb" --target "$T6" --verify-existing >/dev/null || fail "re-verify"
grep -q "already staged.*re-verified" "$W/err" || fail "good copy not re-verified"
"$STAGE" --unstage --target "$T6" 2>"$W/err" || fail "unstage $T6"
echo "ok: --verify-existing"

# 3. another dataset with the same name replaces the copy; the tmpfs grows when needed
out3=$(stage "$W/b/ds.lmdb" --target "$T") || fail "stage of a new version"
grep -q "already staged" "$W/err" && fail "new version taken for the staged one"
[ "$("$BIN/ft-ingest" --info "$out3" | awk '$1=="checksum"{print $2}')" = \
    "$("$BIN/ft-ingest" --info "$W/b/ds.lmdb" | awk '$1=="checksum"{print $2}')" ] ||
    fail "staged copy is not the new version"
make_ds "$W/big.lmdb" 40 60 3
size_before=$(df -Pk "$T" | awk 'NR==2{print $2}')
out4=$(stage "$W/big.lmdb" --target "$T") || fail "stage of a bigger dataset"
size_after=$(df -Pk "$T" | awk 'NR==2{print $2}')
if [ ! -f "$out3/data.mdb" ] || [ ! -f "$out4/data.mdb" ]; then
    fail "both datasets should be staged"
fi
if [ "$size_after" -le "$size_before" ] || ! grep -q "growing" "$W/err"; then
    fail "tmpfs not grown ($size_before -> $size_after KiB)"
fi
echo "ok: new version replaces, tmpfs grows"

# 4. refusal when it does not fit in RAM (MemAvailable override)
T2=$W/t2
FT_STAGE_MEM_AVAILABLE_KB=20000 stage "$W/a/ds.lmdb" --target "$T2" >"$W/out" &&
    fail "staged although it does not fit"
grep -q "does not fit" "$W/err" || fail "no 'does not fit' message"
[ -s "$W/out" ] && fail "printed a path on refusal"
mountpoint -q "$T2" && fail "mounted although it does not fit"
echo "ok: refuses what does not fit"

# 5. a tmpfs mounted by someone else that is too small is left alone
T3=$W/t3
mkdir -p "$T3"
mount -t tmpfs -o size=1m tmpfs "$T3"
stage "$W/a/ds.lmdb" --target "$T3" >/dev/null && fail "used a foreign, too small tmpfs"
grep -q "not mounted by" "$W/err" || fail "no message about the foreign tmpfs"
umount "$T3"
echo "ok: foreign tmpfs untouched"

# 6. unstage unmounts what we mounted
"$STAGE" --unstage --target "$T" 2>"$W/err" || fail "unstage"
mountpoint -q "$T" && fail "$T still mounted after --unstage"
echo "ok: unstage"

# 7. no permission to mount: /dev/shm fallback, and its unstage
T4=$W/t4
fb=/dev/shm/facetrain-stage$(echo "$T4" | tr '/' '_')
out=$(FT_STAGE_NO_MOUNT=1 stage "$W/a/ds.lmdb" --target "$T4") || fail "fallback stage"
[ "$out" = "$fb/ds.lmdb" ] || fail "fallback printed '$out', expected $fb/ds.lmdb"
grep -q "staging in /dev/shm" "$W/err" || fail "fallback not announced"
"$BIN/ft-ingest" --verify "$out" >/dev/null 2>&1 || fail "fallback copy does not verify"
out2=$(FT_STAGE_NO_MOUNT=1 stage "$W/a/ds.lmdb" --target "$T4") || fail "fallback re-stage"
grep -q "already staged" "$W/err" || fail "fallback re-run copied again"
"$STAGE" --unstage --target "$T4" 2>"$W/err" || fail "fallback unstage"
[ -e "$fb" ] && fail "$fb left after --unstage"
echo "ok: /dev/shm fallback"

# 8. usage errors and bad input
"$STAGE" 2>/dev/null && fail "no arguments accepted"
"$STAGE" "$W/a" --target "$W/t5" 2>"$W/err" && fail "non-LMDB accepted"
grep -q "not an LMDB directory" "$W/err" || fail "no message for a non-LMDB"
mkdir -p "$W/junk.lmdb"
head -c 65536 /dev/zero >"$W/junk.lmdb/data.mdb"
"$STAGE" "$W/junk.lmdb" --target "$W/t5" 2>"$W/err" && fail "junk data.mdb accepted"
grep -q "not a facetrain dataset" "$W/err" || fail "no message for a junk data.mdb"
"$STAGE" --help >"$W/out" 2>"$W/err" || fail "--help exits non-zero"
grep -q "^usage: stage-tmpfs.sh" "$W/out" || fail "--help does not print usage on stdout"
"$STAGE" --bogus 2>/dev/null && fail "unknown option accepted"
v=$("$STAGE" -V) || fail "-V exits non-zero"
[ "${v#stage-tmpfs.sh }" = "$("$BIN/ft-ingest" -V | sed 's/^ft-ingest //')" ] ||
    fail "-V says '$v', ft-ingest says '$("$BIN/ft-ingest" -V)'"
echo "ok: --help, -V"
echo "PASS"
