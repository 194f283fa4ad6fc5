#!/bin/bash
# test_scripts.sh REPO WORK: the README's two first commands keep their promises, checked on
# copies of the scripts in a fake tree whose programs only record how they are called:
#   - tools/test.sh installs the Debian packages (tools/install-deps.sh) before it builds;
#   - two tools/demo.sh runs stage into two fresh temporary mount points, each unstaged and
#     removed at the end, so that neither unmounts the other's.
# Exit 0 pass, 1 fail.
set -uo pipefail
REPO=$1 WORK=$2
rm -rf "$WORK"
mkdir -p "$WORK"
LOG=$WORK/log
fails=0
fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}

fake_tree() { # fake_tree DIR: the script under test with recording stand-ins around it
    local d=$1
    mkdir -p "$d/tools" "$d/build/bin" "$d/fakebin"
    cp "$REPO/tools/test.sh" "$REPO/tools/demo.sh" "$d/tools/"
    printf '#!/bin/sh\necho "install-deps" >>"%s"\n' "$LOG" >"$d/tools/install-deps.sh"
    # cmake: recorded; fails in the test.sh tree so that test.sh stops after its first build
    printf '#!/bin/sh\necho "cmake $*" >>"%s"\n[ -z "${FAKE_CMAKE_FAIL:-}" ]\n' "$LOG" \
        >"$d/fakebin/cmake"
    printf '#!/bin/sh\nmkdir -p "$1"\n' >"$d/build/bin/ft-synth"
    printf '#!/bin/sh\n[ "$1" = --verify ] || mkdir -p "$2"\n' >"$d/build/bin/ft-ingest"
    cat >"$d/tools/stage-tmpfs.sh" <<EOS
#!/bin/sh
if [ "\$1" = --unstage ]; then echo "unstage \$3" >>"$LOG"; rm -rf "\$3"/*; exit 0; fi
echo "stage \$3" >>"$LOG"
[ -d "\$3" ] && [ -z "\$(ls -A "\$3")" ] || { echo "target \$3 is not a fresh folder" >&2; exit 1; }
mkdir -p "\$3/train.lmdb"
echo "\$3/train.lmdb"
EOS
    chmod +x "$d"/tools/*.sh "$d"/fakebin/* "$d"/build/bin/*
}

# 1. tools/test.sh runs install-deps.sh before the first cmake
fake_tree "$WORK/t"
: >"$LOG"
PATH=$WORK/t/fakebin:$PATH FAKE_CMAKE_FAIL=1 bash "$WORK/t/tools/test.sh" >"$WORK/out" 2>&1
first=$(head -n1 "$LOG")
[ "$first" = "install-deps" ] ||
    fail "tools/test.sh: first action is '${first:-nothing}', not tools/install-deps.sh"
grep -q "^cmake" "$LOG" || fail "tools/test.sh did not build"
echo "ok: tools/test.sh installs the dependencies first"

# 2. two demos: distinct fresh mount points, each unstaged and removed
fake_tree "$WORK/d"
: >"$LOG"
for i in 1 2; do
    PATH=$WORK/d/fakebin:$PATH bash "$WORK/d/tools/demo.sh" "$WORK/out$i" >"$WORK/demo$i" 2>&1 ||
        fail "demo $i failed: $(tail -n3 "$WORK/demo$i")"
done
mapfile -t staged < <(awk '$1 == "stage" { print $2 }' "$LOG")
[ ${#staged[@]} -eq 2 ] || fail "expected two staging runs, log: $(cat "$LOG")"
if [ ${#staged[@]} -eq 2 ]; then
    [ "${staged[0]}" != "${staged[1]}" ] || fail "both demos staged into ${staged[0]}"
    for t in "${staged[@]}"; do
        case $t in /tmp/*) ;; *) fail "mount point $t is not under /tmp" ;; esac
        grep -qxF "unstage $t" "$LOG" || fail "$t not unstaged at the end"
        [ ! -e "$t" ] || fail "$t left behind"
    done
fi
echo "ok: tools/demo.sh stages into a fresh temporary mount point"
[ $fails -eq 0 ] && echo PASS
[ $fails -eq 0 ]
