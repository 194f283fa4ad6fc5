#!/bin/bash
# test_help.sh BIN_DIR TEST_BIN_DIR STAGE_SCRIPT WORK: every executable in BIN_DIR and
# TEST_BIN_DIR (and STAGE_SCRIPT) answers --help (usage on stdout) and -V (the version) with
# exit 0, within 30 s, creating nothing in its working directory. BIN_DIR must hold only user
# programs (ft-*): test helpers belong in TEST_BIN_DIR. Exit 0 pass, 1 fail.
set -uo pipefail
BIN=$1 TBIN=$2 STAGE=$3 WORK=$4
rm -rf "$WORK"
mkdir -p "$WORK/cwd"
cd "$WORK/cwd" || exit 1
fails=0
fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}

progs=()
for p in "$BIN"/* "$TBIN"/*; do
    [ -f "$p" ] && [ -x "$p" ] && progs+=("$p")
done
progs+=("$STAGE")
[ ${#progs[@]} -ge 10 ] || fail "only ${#progs[@]} programs found in $BIN and $TBIN"
for p in "$BIN"/*; do
    case $(basename "$p") in
    ft-test-*) fail "$p: a test helper in $BIN (belongs in $TBIN)" ;;
    ft-*) ;;
    *) fail "$p: not a user program (ft-*), yet in $BIN" ;;
    esac
done

version=""
for p in "${progs[@]}"; do
    name=$(basename "$p")
    timeout 30 "$p" --help >"$WORK/out" 2>"$WORK/err"
    rc=$?
    [ $rc -eq 0 ] || fail "$name --help: exit $rc: $(head -c 300 "$WORK/err")"
    grep -qi "usage" "$WORK/out" || fail "$name --help: no usage on stdout"
    timeout 30 "$p" -V >"$WORK/out" 2>"$WORK/err"
    rc=$?
    [ $rc -eq 0 ] || fail "$name -V: exit $rc: $(head -c 300 "$WORK/err")"
    v=$(grep -o "facetrain [0-9][0-9.]*" "$WORK/out")
    [ -n "$v" ] || fail "$name -V: no 'facetrain x.y.z' on stdout: $(head -c 200 "$WORK/out")"
    [ -z "$version" ] && version=$v
    [ "$v" = "$version" ] || fail "$name -V says '$v', others '$version'"
    left=$(ls -A)
    if [ -n "$left" ]; then
        fail "$name --help / -V created in the working directory: $left"
        rm -rf ./* ./.[!.]* 2>/dev/null
    fi
done
echo "${#progs[@]} programs checked, $fails failure(s)"
[ $fails -eq 0 ]
