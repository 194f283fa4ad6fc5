#!/bin/bash
# stage-tmpfs.sh: put an LMDB dataset on a RAM disk (tmpfs) for training, verified.
#
#   tools/stage-tmpfs.sh LMDB [--target DIR] [--verify-existing]   stage; prints the staged path
#   tools/stage-tmpfs.sh --unstage [--target DIR]
#   tools/stage-tmpfs.sh --help | -V
#
# Sizes the tmpfs from data.mdb and the dataset folder's verification files (plus 1 % and
# 16 MiB), refuses when MemAvailable cannot hold it, mounts a tmpfs at DIR (default /train_tmp)
# or grows the one it mounted there, copies to a temporary name, checks the copy with
# `ft-ingest --verify`, then renames it to DIR/<name of LMDB>. The *.bin verification files and
# the property file of the LMDB's folder are copied to DIR beside it, so that DIR is a dataset
# folder as ft-train reads it (rec=DIR: DIR/train.lmdb and DIR/<target>.bin). A copy already
# staged with the same meta checksum is reused ("already staged"); --verify-existing re-checks
# its checksum with `ft-ingest --verify` first and copies again when that fails.
# Without permission to mount, it stages in /dev/shm/facetrain-stage<DIR with / as _> and says
# so. --unstage unmounts what this script mounted, or removes the copies it made.
# Messages go to stderr; stdout carries only the staged path. docs/staging.md has the details.
#
# Environment:
#   FT_BIN                     folder holding ft-ingest (else ../build/bin, else PATH)
#   FT_STAGE_RESERVE_MB        RAM to leave free besides the copy (default 1024)
#   FT_STAGE_COPY              cp (default, measured faster) or mdb_copy
#   FT_STAGE_MEM_AVAILABLE_KB  for tests: pretend /proc/meminfo says this MemAvailable
#   FT_STAGE_NO_MOUNT=1        for tests: act as if mounting were not permitted
set -euo pipefail

PROG=stage-tmpfs.sh
VERSION="facetrain 0.1.0" # FT_VERSION_STRING in common/ft_common.h (a test compares them)
MARK=.facetrain-stage-mount # in the root of a tmpfs this script mounted
LIST=.facetrain-staged      # names of the copies this script made in a folder

say() { echo "$PROG: $*" >&2; }
die() {
    echo "$PROG: $*" >&2
    exit 1
}
usage_text() {
    cat <<EOF
usage: $PROG LMDB [--target DIR] [--verify-existing]
       $PROG --unstage [--target DIR]
Stage LMDB (an ft-ingest dataset) on a tmpfs at DIR (default /train_tmp) and print its path.
The *.bin verification files and the property file next to LMDB are staged beside it.
  --target DIR         where to stage (a tmpfs is mounted there when permitted)
  --verify-existing    re-check the checksum of an already staged copy instead of trusting
                       its meta (copies again when it fails)
  --unstage            unmount what this script mounted at DIR, or remove its copies
  -h, --help           this text
  -V, --version        print the version
EOF
}
usage() {
    usage_text >&2
    exit 2
}

find_ingest() {
    local here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    if [ -n "${FT_BIN:-}" ] && [ -x "$FT_BIN/ft-ingest" ]; then
        echo "$FT_BIN/ft-ingest"
    elif [ -x "$here/../build/bin/ft-ingest" ]; then
        echo "$here/../build/bin/ft-ingest"
    elif command -v ft-ingest >/dev/null 2>&1; then
        command -v ft-ingest
    else
        die "ft-ingest not found (set FT_BIN, build into build/bin, or put it on PATH)"
    fi
}

# meta value of an LMDB dataset ("" when it is not one)
meta() { { "$INGEST" --info "$1" 2>/dev/null || true; } | awk -v k="$2" '$1 == k { print $2 }'; }

mem_available_kb() {
    if [ -n "${FT_STAGE_MEM_AVAILABLE_KB:-}" ]; then
        echo "$FT_STAGE_MEM_AVAILABLE_KB"
    else
        awk '/^MemAvailable:/ { print $2 }' /proc/meminfo
    fi
}

avail_kb() { df -Pk "$1" | awk 'NR == 2 { print $4 }'; }
size_kb() { df -Pk "$1" | awk 'NR == 2 { print $2 }'; }
is_mount() { mountpoint -q "$1" 2>/dev/null; }
fallback_dir() { echo "/dev/shm/facetrain-stage$(echo "$1" | tr '/' '_')"; }

# Mount a tmpfs of need_kb at $1, or grow the one we mounted there. Returns 1 when mounting is
# not permitted; dies when $1 is a mount this script does not own and it is too small.
ensure_tmpfs() {
    local dir=$1 need_kb=$2 free_kb fstype
    if is_mount "$dir"; then
        fstype=$(findmnt -n -o FSTYPE --target "$dir")
        [ "$fstype" = tmpfs ] || die "$dir: already a $fstype mount point, not a tmpfs; use --target"
        free_kb=$(avail_kb "$dir")
        [ "$free_kb" -ge "$need_kb" ] && return 0
        [ -e "$dir/$MARK" ] ||
            die "$dir: tmpfs with $((free_kb / 1024)) MiB free, $((need_kb / 1024)) MiB needed; it was not mounted by $PROG (grow it or use another --target)"
        local size=$(($(size_kb "$dir") + need_kb - free_kb))
        say "growing the tmpfs at $dir to $((size / 1024)) MiB"
        mount -o "remount,size=${size}k" "$dir" 2>/dev/null || return 1
        return 0
    fi
    [ "${FT_STAGE_NO_MOUNT:-0}" = 1 ] && return 1
    [ "$(id -u)" -eq 0 ] || return 1
    mkdir -p "$dir" 2>/dev/null || return 1
    mount -t tmpfs -o "size=${need_kb}k,mode=0755" tmpfs "$dir" 2>/dev/null || return 1
    : >"$dir/$MARK"
    say "mounted a tmpfs of $((need_kb / 1024)) MiB at $dir"
}

copy_data() {
    local src=$1 dst=$2 how=${FT_STAGE_COPY:-cp}
    case $how in
    cp) cp "$src/data.mdb" "$dst/data.mdb" ;;
    mdb_copy) mdb_copy "$src" "$dst" ;;
    *) die "FT_STAGE_COPY must be cp or mdb_copy, not '$how'" ;;
    esac
}

TMP_COPY=""
TMP_SIDE=""
cleanup() {
    if [ -n "$TMP_COPY" ]; then rm -rf "$TMP_COPY"; fi
    if [ -n "$TMP_SIDE" ]; then rm -f "$TMP_SIDE"; fi
}

# The files of the LMDB's folder that ft-train looks for next to train.lmdb: the verification
# files (*.bin) and property. Sets the array SIDE and SIDE_BYTES.
find_sidecars() {
    local dir f
    dir=$(dirname "$1")
    SIDE=()
    SIDE_BYTES=0
    for f in "$dir"/*.bin "$dir/property"; do
        if [ -f "$f" ]; then
            SIDE+=("$f")
            SIDE_BYTES=$((SIDE_BYTES + $(stat -c %s "$f")))
        fi
    done
}

# Copy SIDE into $1 (temporary name, then rename), skipping files already there and equal;
# each is listed in $1/$LIST so that --unstage removes it.
copy_sidecars() {
    local root=$1 f b n=0
    for f in "${SIDE[@]}"; do
        b=$(basename "$f")
        if ! cmp -s "$f" "$root/$b"; then
            if [ -e "$root/$b" ]; then say "replacing $root/$b (it differs from $f)"; fi
            TMP_SIDE="$root/.$b.tmp.$$"
            cp "$f" "$TMP_SIDE" || die "copy of $f to $root failed"
            mv -f "$TMP_SIDE" "$root/$b"
            TMP_SIDE=""
            n=$((n + 1))
        fi
        grep -qxF "$b" "$root/$LIST" 2>/dev/null || echo "$b" >>"$root/$LIST"
    done
    if [ $n -gt 0 ]; then say "copied $n verification/property file(s) beside the dataset in $root"; fi
}

stage() {
    local lmdb=${1%/} target=$2 verify_existing=$3 name sum samples bytes need_kb mem_kb
    local reserve_kb root dest old=0
    [ -f "$lmdb/data.mdb" ] || die "$lmdb: not an LMDB directory (no data.mdb)"
    name=$(basename "$lmdb")
    sum=$(meta "$lmdb" checksum)
    [ -n "$sum" ] || die "$lmdb: not a facetrain dataset ($("$INGEST" --info "$lmdb" 2>&1 >/dev/null | head -n1))"
    samples=$(meta "$lmdb" num_samples)
    bytes=$(stat -c %s "$lmdb/data.mdb")
    find_sidecars "$lmdb"
    bytes=$((bytes + SIDE_BYTES))
    local need_mib=$(((bytes + bytes / 100 + 16 * 1048576 + 1048575) / 1048576))
    need_kb=$((need_mib * 1024))

    # already staged (in the tmpfs or in the /dev/shm fallback)?
    trap cleanup EXIT
    for root in "$target" "$(fallback_dir "$target")"; do
        dest="$root/$name"
        if [ -f "$dest/data.mdb" ] && [ "$(meta "$dest" checksum)" = "$sum" ] &&
            [ "$(meta "$dest" num_samples)" = "$samples" ]; then
            if [ -n "$verify_existing" ] && ! "$INGEST" --verify "$dest" >&2; then
                say "$dest: the staged copy fails verification; copying it again"
                rm -rf "$dest"
                break
            fi
            say "already staged: $dest (checksum $sum${verify_existing:+, re-verified})"
            copy_sidecars "$root"
            echo "$dest"
            return 0
        fi
    done

    mem_kb=$(mem_available_kb)
    reserve_kb=$((${FT_STAGE_RESERVE_MB:-1024} * 1024))
    [ -f "$target/$name/data.mdb" ] && old=$(($(stat -c %s "$target/$name/data.mdb") / 1024))
    if [ $((need_kb + reserve_kb)) -gt $((mem_kb + old)) ]; then
        die "$lmdb needs $((need_kb / 1024)) MiB of RAM, MemAvailable is $((mem_kb / 1024)) MiB (keeping $((reserve_kb / 1024)) MiB free): it does not fit"
    fi

    root=$target
    if ! ensure_tmpfs "$target" "$need_kb"; then
        root=$(fallback_dir "$target")
        say "cannot mount a tmpfs at $target (not permitted); staging in $root instead"
        mkdir -p "$root"
        [ "$(avail_kb "$root")" -ge "$need_kb" ] ||
            die "$root: $(($(avail_kb "$root") / 1024)) MiB free, $((need_kb / 1024)) MiB needed"
    fi
    dest="$root/$name"
    rm -rf "$dest" # a stale copy of another version of the dataset

    TMP_COPY="$root/.$name.tmp.$$"
    trap 'exit 130' INT TERM HUP
    rm -rf "$TMP_COPY"
    mkdir -p "$TMP_COPY"
    local t0 t1
    t0=$(date +%s.%N)
    copy_data "$lmdb" "$TMP_COPY" || die "copy to $TMP_COPY failed"
    t1=$(date +%s.%N)
    say "copied $((bytes / 1048576)) MiB in $(awk -v a="$t0" -v b="$t1" -v n="$bytes" \
        'BEGIN { d = b - a; if (d <= 0) d = 1e-9; printf "%.2f s (%.2f GB/s)", d, n / d / 1e9 }') with ${FT_STAGE_COPY:-cp}"
    "$INGEST" --verify "$TMP_COPY" >&2 || die "verification of the copy failed; nothing staged"
    mv -T "$TMP_COPY" "$dest"
    TMP_COPY=""
    grep -qxF "$name" "$root/$LIST" 2>/dev/null || echo "$name" >>"$root/$LIST"
    copy_sidecars "$root"
    echo "$dest"
}

unstage() {
    local target=$1 fb did=0
    fb=$(fallback_dir "$target")
    if is_mount "$target" && [ -e "$target/$MARK" ]; then
        # A reader that just exited can hold the files a moment longer (io_uring rings are
        # torn down asynchronously), so retry briefly before calling the mount busy.
        local tries=0
        until umount "$target" 2>/dev/null; do
            tries=$((tries + 1))
            [ $tries -lt 20 ] || die "$target: umount failed (in use? see: fuser -vm $target)"
            sleep 0.25
        done
        say "unmounted the tmpfs at $target"
        did=1
    elif [ -f "$target/$LIST" ]; then
        while IFS= read -r n; do
            [ -n "$n" ] && rm -rf "${target:?}/$n" && say "removed $target/$n"
        done <"$target/$LIST"
        rm -f "$target/$LIST"
        did=1
    fi
    if [ -d "$fb" ]; then
        rm -rf "$fb"
        say "removed $fb"
        did=1
    fi
    [ $did = 1 ] || say "nothing staged by $PROG at $target"
}

main() {
    local lmdb="" target=/train_tmp unstage=0 verify_existing=""
    while [ $# -gt 0 ]; do
        case $1 in
        --target)
            [ $# -ge 2 ] || usage
            target=$2
            shift 2
            ;;
        --target=*)
            target=${1#--target=}
            shift
            ;;
        --unstage)
            unstage=1
            shift
            ;;
        --verify-existing)
            verify_existing=1
            shift
            ;;
        -h | --help)
            usage_text
            exit 0
            ;;
        -V | --version)
            echo "$PROG ($VERSION)"
            exit 0
            ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *)
            [ -z "$lmdb" ] || usage
            lmdb=$1
            shift
            ;;
        esac
    done
    [ -n "$target" ] || usage
    target=$(realpath -m -- "$target")
    [ "$target" != / ] || die "refusing to use / as the target"
    if [ $unstage = 1 ]; then
        [ -z "$lmdb" ] && [ -z "$verify_existing" ] || usage
        unstage "$target"
    else
        [ -n "$lmdb" ] || usage
        INGEST=$(find_ingest)
        stage "$lmdb" "$target" "$verify_existing"
    fi
}

main "$@"
