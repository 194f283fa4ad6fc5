#!/bin/sh
# bench_graphs.sh FT_BIN: ft-bench-train --graphs 1 (forward, head and backward replayed from a
# recording) against --graphs 0 on the CUDA backend: the same loss and gradient norm at every
# step, to the printed 9 digits (the replay runs the very kernels). The GPU benchmark of
# tools/gpu-check.sh uses both modes; this keeps them equal. Exit 77 without a device.
bin=$1
run() {
    "$bin/ft-bench-train" --device cuda --depth 18 --width 8 --batch 8 --classes 300 --rate 0.5 \
        --steps "$2" --dtype f16 --graphs "$1" 2>&1 >/dev/null
}
direct=$(run 0 3)
rc=$?
if [ $rc -eq 77 ]; then
    echo "skip: $(echo "$direct" | tail -1)"
    exit 77
fi
[ $rc -eq 0 ] || { echo "FAIL: --graphs 0: exit $rc: $direct"; exit 1; }
graphs=$(run 1 2) || { echo "FAIL: --graphs 1: $graphs"; exit 1; }
# "step N: T s, loss L, grad norm G": the times differ, the rest must not
a=$(echo "$direct" | grep '^step' | sed 's/: [0-9.]* s,/:/')
b=$(echo "$graphs" | grep '^step' | sed 's/: [0-9.]* s,/:/')
echo "$b"
# steps 0-3 both ways: --graphs 0 one warm-up and 3 timed, --graphs 1 two warm-up (the
# second recorded) and 2 replayed
[ "$(echo "$a" | wc -l)" -eq 4 ] || { echo "FAIL: expected 4 steps: $direct"; exit 1; }
[ "$a" = "$b" ] || { printf 'FAIL: the replayed steps differ:\n%s\nvs\n%s\n' "$a" "$b"; exit 1; }
echo "ok: 4 steps equal with and without graphs (step 1 recorded, steps 2-3 replayed)"
