#!/bin/bash
# gpu-check.sh: facetrain's whole GPU verification in one unattended command, for the few minutes
# of a lent GPU machine (no network, no apt there). See docs/gpu.md.
#
#   tools/gpu-check.sh --prepare    here (Debian, apt reachable): download the .deb files of the
#                                   libraries facetrain builds against into .gpu-deps/ (git-ignored;
#                                   the device call carries it)
#   tools/gpu-check.sh              on the GPU machine: unpack them, build with CMake against the
#                                   machine's CUDA (cuDNN/cuBLAS/NCCL located through PyTorch's pip
#                                   packages when the toolkit lacks them), print GPU / driver /
#                                   library versions, run every GPU test (ctest -L gpu),
#                                   compute-sanitizer memcheck on the op tests, training checks,
#                                   then the benchmarks; one log and one JSON into $OUT (or
#                                   ./gpu-out). Correctness first: if time runs out, the log of
#                                   what ran still comes back.
#   tools/gpu-check.sh --dry-run    here, without a GPU: the same script up to the point where a
#                                   device is needed: the package list resolves, the build
#                                   configures and compiles the CUDA backend, the GPU tests it
#                                   would run exist, the PyTorch reference imports and runs a step
#                                   on the CPU. A ctest case (tools_gpu_check_dry_run).
#   tools/gpu-check.sh --rehearse --carried-build BUILD-EMU
#                                   here, without a GPU: the GPU run itself, every section and
#                                   every figure it parses, on the CUDA emulator's build
#                                   (-DFT_CUDA_EMU=ON) at toy sizes (a few steps, r18 of width 8,
#                                   no PyTorch on the device, no compute-sanitizer), so that the
#                                   script cannot fail on a lent GPU for a reason a CPU could
#                                   have shown. A ctest case of emulator builds
#                                   (tools_gpu_check_rehearse).
# Options: --build-dir DIR (default build-gpu; with --dry-run an existing CUDA build may be
#          named to skip the compile: --no-build), --carried-build DIR (use a build made
#          elsewhere instead of building), --quick (correctness only, no benchmarks),
#          --bench-only (the benchmarks only, e.g. a second device call on the warm machine
#          after a --quick one: --bench-only --carried-build build-gpu; a carried build that
#          is not there, the machine having gone cold between the calls, is built afresh),
#          --deadline S (stop starting work S seconds after the start, so that the log and the
#          JSON are written before the device call's own limit: pass the call's timeout_s
#          minus about 20; default: none), --deps DIR (default .gpu-deps).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

MODE=gpu
BUILD=build-gpu
DEPS=$ROOT/.gpu-deps
NO_BUILD=0
DEADLINE=0
QUICK=0
BENCH_ONLY=0
CARRIED=""
while [ $# -gt 0 ]; do
    case "$1" in
    --prepare) MODE=prepare ;;
    --dry-run) MODE=dry ;;
    --rehearse) MODE=emu ;;
    --build-dir) BUILD=$2; shift ;;
    --build-dir=*) BUILD=${1#*=} ;;
    --carried-build) CARRIED=$2; shift ;;
    --deps) DEPS=$2; shift ;;
    --deadline) DEADLINE=$2; shift ;;
    --deadline=*) DEADLINE=${1#*=} ;;
    --no-build) NO_BUILD=1 ;;
    --quick) QUICK=1 ;;
    --bench-only) BENCH_ONLY=1 ;;
    -h | --help)
        sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac

# The runtime and build-time packages (Debian 12 names) the build needs beyond a C compiler,
# CMake and CUDA: headers, .so links and pkg-config files come from the -dev packages.
PKGS="liblmdb0 liblmdb-dev liburing2 liburing-dev libturbojpeg0 libturbojpeg0-dev
libjpeg62-turbo libjpeg62-turbo-dev libxxhash0 libxxhash-dev libopenblas0-pthread
libopenblas-pthread-dev libopenblas-dev libgfortran5 libquadmath0 libcjson1 libcjson-dev
libprotobuf-c1 libprotobuf-c-dev protobuf-c-compiler libprotoc32 libprotobuf32 libonnx-dev
pkgconf pkgconf-bin libpkgconf3 libdnnl2 libdnnl-dev ocl-icd-libopencl1"
# the GPU tests tools/gpu-check.sh runs (ctest label gpu); each must exist in a CUDA build
GPU_TESTS="ops_backend_cuda train_core_grad_cuda engine_cuda train_e2e_cuda"

# ---------------------------------------------------------------- prepare (here)
if [ "$MODE" = prepare ]; then
    command -v apt-get >/dev/null || { echo "gpu-check --prepare: needs apt-get (Debian)" >&2; exit 1; }
    mkdir -p "$DEPS/debs"
    # the folder travels to the device machine: keep it out of git
    grep -qx '/.gpu-deps/' .git/info/exclude 2>/dev/null || echo '/.gpu-deps/' >>.git/info/exclude
    rm -f "$DEPS"/debs/*.deb
    # shellcheck disable=SC2086 # a list of package names
    # a machine whose packages were all present may never have fetched the apt lists
    # (tools/install-deps.sh only updates them to install): refresh them once and retry
    (cd "$DEPS/debs" && apt-get download $PKGS) || {
        echo "gpu-check --prepare: apt-get download failed; refreshing the apt lists and retrying" >&2
        apt-get update -qq && (cd "$DEPS/debs" && apt-get download $PKGS)
    } || { echo "gpu-check --prepare: apt-get download failed" >&2; exit 1; }
    ls "$DEPS/debs" >"$DEPS/MANIFEST"
    echo "gpu-check --prepare: $(wc -l <"$DEPS/MANIFEST") packages, $(du -sh "$DEPS" | cut -f1) in $DEPS"
    exit 0
fi

# the sizes of the GPU run, and the rehearsal's toy ones (the emulator runs ~1 s per step)
if [ "$MODE" = emu ]; then
    export FT_CUDA_EMU=1
    TRAIN_STEPS=3 FP16_STEPS=4 GRAPH_STEPS=4 ACC_MIN=0
    TRAIN_ARGS=(width=4) # the same kernels at a quarter of width 8's emulated convolutions
    SYNTH=(--classes 32 --per-class 10 --pairs 40)
    ENGINE_MODELS="18:8:64"                        # depth:width:embedding
    BENCH_DEPTHS=18 BENCH_STEPS=2 BENCH_SIZE=(--width 4 --batch 4 --classes 1000)
    LOADER_THREADS="1 2"
else
    TRAIN_STEPS=300 FP16_STEPS=20 GRAPH_STEPS=100 ACC_MIN=0.94
    TRAIN_ARGS=()
    SYNTH=(--classes 128 --per-class 20)
    ENGINE_MODELS="50:64:512 100:64:512"
    BENCH_DEPTHS="50 100" BENCH_STEPS=10 BENCH_SIZE=(--batch 128 --classes 93431)
    LOADER_THREADS="1 2 4 8 16"
fi

OUTDIR=${OUT:-$ROOT/gpu-out}
[ "$MODE" = dry ] && OUTDIR=${OUT:-$BUILD/gpu-check-dry}
[ "$MODE" = emu ] && OUTDIR=${OUT:-$BUILD/gpu-check-rehearse}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu-check.log
JSON=$OUTDIR/gpu-check.json
FIG=$OUTDIR/figures.jsonl
: >"$LOG"
: >"$FIG"
T0=$(date +%s)
FAILED=""
log() { printf '%s\n' "$*" | tee -a "$LOG"; }
section() { log ""; log "=== [$(($(date +%s) - T0)) s] $*"; }
fail() { FAILED="$FAILED $1"; log "FAIL: $1${2:+: $2}"; }
# a step not started for lack of time: logged, and out_of_time among the failures once
OOT=0
out_of_time() {
    printf 'not started (--deadline %s s reached): %s\n' "$DEADLINE" "$*" | tee -a "$LOG"
    [ $OOT = 1 ] || { OOT=1; FAILED="$FAILED out_of_time"; }
}
# the time limit for a step that wants $1 seconds: $1, or what is left before --deadline
# (15 s kept for writing the results); 0 when nothing is left
budget() {
    local want=$1 left
    [ "$DEADLINE" -gt 0 ] 2>/dev/null || { echo "$want"; return; }
    left=$((DEADLINE - ($(date +%s) - T0) - 15))
    [ $left -lt 0 ] && left=0
    [ $left -lt "$want" ] && want=$left
    echo "$want"
}
# run a command with a time limit (clamped to the deadline), its output into the log; a step
# with no time left is not started and fails as out_of_time
run_logged() {
    local limit; limit=$(budget "$1"); shift
    if [ "$limit" -lt 5 ]; then
        out_of_time "$*"
        return 124
    fi
    log "\$ $*"
    timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
}
# the same for a command whose output the caller reads ($(tlimit ...): a subshell, so the
# skip is only logged; finish() counts it): timeout with the clamped limit
tlimit() {
    local limit; limit=$(budget "$1"); shift
    if [ "$limit" -lt 5 ]; then
        printf 'not started (--deadline %s s reached): %s\n' "$DEADLINE" "$*" >>"$LOG"
        return 124
    fi
    timeout --kill-after=10 "$limit" "$@"
}
# figure lines: one JSON object per line, merged into the JSON at the end
figure() { printf '%s\n' "$1" >>"$FIG"; }

finish() {
    local status=pass
    [ $OOT = 0 ] && grep -q '^not started (--deadline' "$LOG" && FAILED="$FAILED out_of_time"
    [ -n "$FAILED" ] && status=fail
    python3 - "$JSON" "$FIG" "$status" "$FAILED" "$(($(date +%s) - T0))" "$MODE" <<'EOF' || true
import json, sys
out, fig, status, failed, secs, mode = sys.argv[1:7]
figs = []
for line in open(fig):
    line = line.strip()
    if line:
        try:
            figs.append(json.loads(line))
        except ValueError:
            figs.append({"unparsed": line})
json.dump({"mode": mode, "status": status, "failed": failed.split(), "seconds": int(secs),
           "figures": figs}, open(out, "w"), indent=1)
EOF
    log ""
    log "gpu-check ($MODE): $status in $(($(date +%s) - T0)) s${FAILED:+; failed:$FAILED}; log $LOG, figures $JSON"
    [ "$status" = pass ]
    exit $?
}

# ---------------------------------------------------------------- dependencies
section "dependencies"
SYSROOT=/tmp/ft-gpu-deps
if [ "$MODE" = emu ]; then
    log "rehearsal: the machine's own libraries, the emulator's build"
    SYSROOT=""
elif [ "$MODE" = dry ]; then
    # every package name must be a real one: known to this machine's apt lists (what
    # --prepare downloads) or installed. A machine whose packages were all present may
    # have stale or no lists (install-deps.sh only updates them to install); --prepare
    # refreshes them, so an installed package that the lists lack is a note, not a failure.
    # shellcheck disable=SC2086 # a list of package names
    known=$(apt-cache show $PKGS 2>/dev/null | awk '/^Package:/ {print $2}' | sort -u)
    missing="" unlisted=""
    for p in $PKGS; do
        echo "$known" | grep -qx "$p" && continue
        if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            unlisted="$unlisted $p"
        else
            missing="$missing $p"
        fi
    done
    [ -z "$unlisted" ] || log "installed but not in the apt lists (--prepare runs apt-get update):$unlisted"
    if [ -n "$missing" ]; then fail packages "neither in the apt lists nor installed:$missing"; else log "all $(echo $PKGS | wc -w) packages resolve"; fi
    SYSROOT=""
elif [ -d "$DEPS/debs" ] && ls "$DEPS"/debs/*.deb >/dev/null 2>&1; then
    rm -rf "$SYSROOT" && mkdir -p "$SYSROOT"
    for f in "$DEPS"/debs/*.deb; do dpkg -x "$f" "$SYSROOT" || fail "unpack" "$f"; done
    log "unpacked $(ls "$DEPS"/debs/*.deb | wc -l) packages into $SYSROOT"
    L=$SYSROOT/usr/lib/x86_64-linux-gnu
    export PKG_CONFIG_SYSROOT_DIR=$SYSROOT
    # only the carried .pc files: the sysroot prefix must not land on the machine's own
    export PKG_CONFIG_LIBDIR=$L/pkgconfig:$L/openblas-pthread/pkgconfig:$SYSROOT/usr/share/pkgconfig
    export PKG_CONFIG_PATH=$PKG_CONFIG_LIBDIR
    export LD_LIBRARY_PATH=$L:$L/openblas-pthread:$SYSROOT/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export PATH=$PATH:$SYSROOT/usr/bin
else
    log "no $DEPS/debs: using the machine's own libraries (run tools/gpu-check.sh --prepare here first)"
    SYSROOT=""
fi

# the Python that has PyTorch (on the GPU machine the first python3; here Debian's)
PY=""
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import torch' 2>/dev/null; then PY=$p; break; fi
done

# ---------------------------------------------------------------- versions
section "machine"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >>"$LOG" 2>&1
else
    log "nvidia-smi: not found"
fi
log "nvcc: $(nvcc --version 2>/dev/null | tail -1)"
log "cmake: $(cmake --version 2>/dev/null | head -1)"
log "cc: $(cc --version 2>/dev/null | head -1)"
log "cores: $(nproc)"
# cuDNN / cuBLAS / NCCL: the toolkit's, else PyTorch's pip packages
pyroot1() { ${PY:-python3} -c "import nvidia.$1, os; print(os.path.dirname(nvidia.$1.__file__))" 2>/dev/null ||
            ${PY:-python3} -c "import nvidia.$1, os; print(list(nvidia.$1.__path__)[0])" 2>/dev/null; }
# CUDA 13's pip wheels of the toolkit's libraries (nvidia-cublas 13) install into
# nvidia/cu13/{lib,include}; cuDNN and NCCL keep their own folders
pyroot() {
    local r; r=$(pyroot1 "$1")
    if [ -z "$r" ] && [ "$1" = cublas ]; then
        r=$(pyroot1 cu13)
        [ -n "$r" ] && ! ls "$r"/lib/libcublas.so* >/dev/null 2>&1 && r=""
    fi
    echo "$r"
}
CUDNN_ROOT=""
for d in /usr/local/cuda/include /usr/include; do [ -f $d/cudnn.h ] && CUDNN_ROOT=$(dirname $d); done
[ -z "$CUDNN_ROOT" ] && CUDNN_ROOT=$(pyroot cudnn)
log "cuDNN: ${CUDNN_ROOT:-not found} $(grep -h '#define CUDNN_M[AI][JN]OR\|#define CUDNN_PATCHLEVEL' "$CUDNN_ROOT"/include/cudnn_version.h 2>/dev/null | awk '{printf "%s ", $3}')"
if [ -n "$CUDNN_ROOT" ] && [ ! -e "$CUDNN_ROOT/lib/libcudnn.so" ] && [ -e "$CUDNN_ROOT/lib/libcudnn.so.9" ]; then
    export LD_LIBRARY_PATH=$CUDNN_ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
# cuBLAS: the toolkit's when it has one, else the pip package's; NCCL from pip
CUBLAS_ROOT=""
tk=$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")")
if ! ls "$tk"/lib64/libcublas.so* "$tk"/lib/libcublas.so* "$tk"/targets/x86_64-linux/lib/libcublas.so* >/dev/null 2>&1; then
    CUBLAS_ROOT=$(pyroot cublas)
    log "cuBLAS: not in the toolkit ($tk); pip: ${CUBLAS_ROOT:-not found}"
fi
for lib in cublas nccl; do
    r=$(pyroot $lib)
    [ -n "$r" ] && export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$r/lib && log "$lib (pip): $r"
done
${PY:-python3} -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "gpu", torch.cuda.is_available())' >>"$LOG" 2>&1

# ---------------------------------------------------------------- build
section "build"
# the configure line of the GPU run (archs: sm_90 there; sm_80 and sm_90 elsewhere)
configure() {
    local dir=$1 gen="" archs="80;90" extra=() werror=ON
    command -v ninja >/dev/null && gen="-G Ninja"
    # the GPU machine's compiler has never built this code: a new warning there must not end
    # the one run (CI holds the code to -Werror)
    [ "$MODE" = gpu ] && archs=90 werror=OFF
    # the tests' Python: the one with PyTorch, numpy, onnx and onnxruntime (on the GPU machine a
    # venv's python3, not /usr/bin/python3, which the tests would otherwise pick)
    [ -n "$PY" ] && extra+=(-DFT_PYTHON="$(command -v "$PY")")
    [ -n "$SYSROOT" ] && extra+=(-DFT_ONNX_PROTO="$SYSROOT/usr/include/onnx/onnx.proto" -DFT_PROTOC_C="$SYSROOT/usr/bin/protoc-c"
        -DFT_ONEDNN_INCLUDE="$SYSROOT/usr/include" -DFT_ONEDNN_LIB="$SYSROOT/usr/lib/x86_64-linux-gnu/libdnnl.so")
    [ -n "$CUDNN_ROOT" ] && extra+=(-DFT_CUDNN_ROOT="$CUDNN_ROOT")
    [ -n "$CUBLAS_ROOT" ] && extra+=(-DFT_CUBLAS_ROOT="$CUBLAS_ROOT")
    # shellcheck disable=SC2086 # $gen is empty or two words
    run_logged 300 cmake -S . -B "$dir" $gen -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFT_WERROR=$werror \
        -DFT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$archs" "${extra[@]}"
}
if [ "$MODE" = emu ] && [ -z "$CARRIED" ]; then
    fail rehearse "--rehearse needs --carried-build with an emulator build (-DFT_CUDA_EMU=ON)"
    finish
elif [ -n "$CARRIED" ] && [ "$MODE" = gpu ] && [ ! -f "$CARRIED/CMakeCache.txt" ]; then
    # a second call on a machine that went cold in between: the build is gone, make it again
    BUILD=$CARRIED
    log "the carried build $BUILD is not here (a fresh machine): building it"
    configure "$BUILD" || { fail configure; finish; }
    run_logged 900 cmake --build "$BUILD" -j"$(nproc)" || { fail build; finish; }
elif [ -n "$CARRIED" ]; then
    BUILD=$CARRIED
    log "using the carried build $BUILD"
elif [ "$NO_BUILD" = 1 ] && [ -f "$BUILD/CMakeCache.txt" ]; then
    log "using the existing build $BUILD (--no-build); the configure line is checked in a scratch folder"
    if configure "$OUTDIR/configure-check" && grep -q 'CUDA backend: nvcc' "$LOG"; then
        log "configure: ok, with the CUDA backend"
    else
        fail configure "the GPU run's cmake line fails here or finds no CUDA backend"
    fi
    rm -rf "$OUTDIR/configure-check"
else
    configure "$BUILD" || { fail configure; finish; }
    run_logged 900 cmake --build "$BUILD" -j"$(nproc)" || { fail build; finish; }
fi
GPU_LISTED=$(ctest --test-dir "$BUILD" -N -L gpu 2>/dev/null | awk '/Test *#/ {print $3}')
if ! echo "$GPU_LISTED" | grep -qx ops_backend_cuda; then
    fail cuda_build "the build has no CUDA backend (see the configure lines above)"
    finish
fi
BIN=$BUILD/bin
TBIN=$BUILD/tests

# ---------------------------------------------------------------- dry run stops here
if [ "$MODE" = dry ]; then
    section "dry run: what the GPU run would do"
    log "GPU tests: $(echo $GPU_LISTED)"
    for t in $GPU_TESTS; do echo "$GPU_LISTED" | grep -qx "$t" || fail gpu_tests "$t is not a ctest case"; done
    for t in test_backend_ops test_ops_grad eng_tool; do [ -x "$TBIN/$t" ] || fail "helpers" "$TBIN/$t missing"; done
    for p in ft-train ft-synth ft-ingest ft-bench-train ft-loadbench ft-export ft-check; do
        [ -x "$BIN/$p" ] || fail "programs" "$BIN/$p missing"
    done
    # the CUDA binaries must say "no device" here, not crash
    "$TBIN/test_backend_ops" --backend cuda >>"$LOG" 2>&1
    rc=$?
    [ $rc = 77 ] || fail no_device_path "test_backend_ops --backend cuda exited $rc, expected 77"
    out=$("$BIN/ft-bench-train" --device cuda --steps 1 2>&1)
    rc=$?
    log "ft-bench-train --device cuda here: rc $rc: $out"
    { [ $rc -ne 0 ] && echo "$out" | grep -q 'no CUDA device is visible'; } ||
        fail no_device_path "ft-bench-train --device cuda did not say that no CUDA device is visible"
    if [ -n "$PY" ]; then
        run_logged 120 "$PY" bench/torch_arcface_step.py --check || fail "pytorch_reference" "bench/torch_arcface_step.py --check"
    else
        fail "pytorch_reference" "no python3 with torch"
    fi
    finish
fi

# the demo data and the engine's models (~1 GB): on the RAM disk where it has room
D=/dev/shm/ft-gpu-check
shm_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
[ "${shm_kib:-0}" -lt 4194304 ] && D=/tmp/ft-gpu-check
[ "$MODE" = emu ] && D=$OUTDIR/data
# the demo data of the training checks and the loader benchmark
make_data() {
    rm -rf "$D" && mkdir -p "$D" &&
        run_logged 120 "$BIN/ft-synth" "$D/synth" "${SYNTH[@]}" --seed 1 --threads "$(nproc)" &&
        run_logged 120 "$BIN/ft-ingest" "$D/synth" "$D/synth/train.lmdb" --shuffle --seed 7
}
if [ "$BENCH_ONLY" = 1 ]; then
    log "--bench-only: tests, sanitizer, training and engine checks skipped"
    make_data || fail "synthetic_data"
else

# ---------------------------------------------------------------- 1. GPU tests
section "GPU tests (ctest -L gpu)"
if [ "$MODE" = emu ]; then
    # the rehearsal runs inside CI's ctest of this very build: one op test directly (a ctest
    # nested in ctest would write the same Testing/ logs)
    run_logged 300 "$TBIN/test_backend_ops" --backend cuda || fail ctest_gpu
else
    # four at a time (one GPU of 140 GB holds them all; their CPU references use the cores);
    # the _lean cases repeat the start of their full twins
    run_logged 300 ctest --test-dir "$BUILD" -L gpu -E '_lean$' -j4 --output-on-failure || fail ctest_gpu
    # a GPU test skipped (exit 77: no device, or a Python module missing) is a failure here
    skipped=$(grep -oE 'Test +#[0-9]+: [A-Za-z0-9_]+ [.*]+ *\*?Skipped' "$LOG" | awk '{print $3}' | tr '\n' ' ')
    [ -n "$skipped" ] && fail ctest_gpu "skipped on the GPU machine: $skipped"
fi

# ---------------------------------------------------------------- 3. training checks
section "training: ft-synth demo data, r18 on the GPU ($TRAIN_STEPS steps) and fp16 overflow handling"
if make_data; then
    if run_logged 300 "$BIN/ft-train" configs/synth_r18.py rec="$D/synth" output="$D/r18" device=cuda \
        max_steps=$TRAIN_STEPS "${TRAIN_ARGS[@]}"; then
        acc=$(grep -o '\[lfw\]\[[0-9]*\]Accuracy-Flip: [0-9.]*' "$D/r18/training.log" | tail -1 | awk '{print $2}')
        log "r18 on the GPU, $TRAIN_STEPS steps: lfw Accuracy-Flip $acc (the CPU run of 300 steps reaches >= 0.95)"
        figure "{\"check\": \"train_r18_$TRAIN_STEPS\", \"lfw\": ${acc:-null}}"
        python3 -c "import sys; sys.exit(0 if float('${acc:-0}') >= $ACC_MIN else 1)" && [ -n "$acc" ] ||
            fail "r18_accuracy" "lfw ${acc:-none} < $ACC_MIN"
    else
        fail "ft-train_r18_cuda"
    fi
    if FT_TRAIN_INJECT_INF=3 run_logged 200 "$BIN/ft-train" configs/synth_r18.py rec="$D/synth" \
        output="$D/r18_fp16" device=cuda fp16=True max_steps=$FP16_STEPS "${TRAIN_ARGS[@]}"; then
        grep -qi 'skipped' "$D/r18_fp16/training.log" && log "fp16 injected overflow: step skipped, logged" ||
            fail "fp16_overflow" "no skipped-step line in training.log"
        grep -i 'skip' "$D/r18_fp16/training.log" | head -3 >>"$LOG"
    else
        fail "ft-train_fp16_cuda"
    fi
    # cuda_graphs: the same fp16 steps (100), the forward and backward replayed from a recording:
    # the losses must be the same bits; the two speeds side by side
    sps=()
    for g in False True; do
        FT_TRAIN_LOSS_FILE="$D/graphs_$g.loss" run_logged 200 "$BIN/ft-train" configs/synth_r18.py \
            rec="$D/synth" output="$D/graphs_$g" device=cuda fp16=True max_steps=$GRAPH_STEPS \
            val_targets=[] export_onnx=False cuda_graphs=$g "${TRAIN_ARGS[@]}" ||
            fail "ft-train_cuda_graphs_$g"
        sps+=("$(grep -o '[0-9.]* steps/s' "$LOG" | tail -1 | awk '{print $1}')")
    done
    if cmp -s "$D/graphs_False.loss" "$D/graphs_True.loss"; then
        log "cuda_graphs: $GRAPH_STEPS fp16 steps, losses equal to the run without graphs bit for bit"
    else
        fail "cuda_graphs_losses" "the losses differ from the run without graphs"
    fi
    grep 'cuda graphs:' "$LOG" | tail -1 | grep -q 'steps replayed' ||
        fail "cuda_graphs_summary" "ft-train printed no cuda graphs summary"
    log "cuda_graphs: ${sps[0]:-?} steps/s without, ${sps[1]:-?} with (configs/synth_r18.py: width 8, batch 32: launch-bound, where graphs pay most)"
    figure "{\"check\": \"cuda_graphs\", \"steps_per_s_direct\": ${sps[0]:-null}, \"steps_per_s_graphs\": ${sps[1]:-null}}"
else
    fail "synthetic_data"
fi

# ---------------------------------------------------------------- 3b. inference engine
section "inference engine on the GPU: ft-check latency (6th fastest of 50, batch 1), $ENGINE_MODELS"
for m in $ENGINE_MODELS; do
    IFS=: read -r depth width emb <<<"$m"
    E=$D/engine_r$depth
    mkdir -p "$E/model"
    if run_logged 120 "$TBIN/eng_tool" make "$E/ckpt" $depth $width $emb 2048 &&
       run_logged 120 "$BIN/ft-export" "$E/ckpt" -o "$E/model/backbone.onnx"; then
        # cuda with each batch size's forward replayed from a CUDA graph (--graphs), cuda, cpu
        for dev in cuda+graphs cuda cpu; do
            flags=(--device "${dev%+graphs}")
            [ "$dev" = cuda+graphs ] && flags+=(--graphs)
            out=$(tlimit 300 "$BIN/ft-check" "$E/model" "${flags[@]}" --max-latency 100000 2>>"$LOG")
            echo "$out" >>"$LOG"
            ms=$(echo "$out" | grep -o 'latency [0-9.]* ms' | head -1 | awk '{print $2}')
            log "engine r$depth on $dev: batch-1 latency ${ms:-failed} ms"
            figure "{\"check\": \"engine_latency\", \"depth\": $depth, \"device\": \"$dev\", \"ms\": ${ms:-null}}"
            [ -n "$ms" ] || fail "engine_r${depth}_${dev}"
        done
    else
        fail "engine_model_r$depth"
    fi
done

# ---------------------------------------------------------------- 3c. compute-sanitizer
# after the training and engine checks, which say more per second of a short device call
section "compute-sanitizer memcheck (op tests)"
CS=$(command -v compute-sanitizer || ls "$tk"/bin/compute-sanitizer "$tk"/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1)
if [ "$MODE" = emu ]; then
    log "compute-sanitizer: not in a rehearsal (CI's ASan pass checks the emulated kernels)"
elif [ -n "$CS" ]; then
    run_logged 120 "$CS" --tool memcheck --error-exitcode 9 --leak-check full \
        "$TBIN/test_backend_ops" --backend cuda --dtype f32 || fail "memcheck_f32"
    run_logged 90 "$CS" --tool memcheck --error-exitcode 9 \
        "$TBIN/test_backend_ops" --backend cuda --dtype bf16 || fail "memcheck_bf16"
else
    fail "memcheck" "compute-sanitizer not found"
fi

[ "$QUICK" = 1 ] && finish
fi # --bench-only

# ---------------------------------------------------------------- 4. benchmarks
# the order holds up to a time limit: facetrain's figures first (seconds each), the loader,
# then PyTorch's eager steps (tens of seconds each), torch.compile last (minutes)
section "benchmarks: facetrain vs arcface_torch's step, same GPU, same command"
for depth in $BENCH_DEPTHS; do
    for dt in fp16 bf16; do
        for rate in 1.0 0.3; do
            out=$(tlimit 180 "$BIN/ft-bench-train" --device cuda --depth $depth "${BENCH_SIZE[@]}" \
                --rate $rate --dtype ${dt/fp/f} --steps $BENCH_STEPS 2>>"$LOG")
            line=$(echo "$out" | head -1)
            log "facetrain r$depth $dt rate $rate: ${line:-failed}"
            echo "$out" | tail -n +2 >>"$LOG"
            [ -n "$line" ] || fail "bench_r${depth}_${dt}_${rate}"
            sps=$(echo "$line" | grep -o '[0-9.]* samples/s' | awk '{print $1}')
            tf=$(echo "$out" | grep -o 'ran at [0-9.]* TFLOP/s' | awk '{print $3}')
            mib=$(echo "$out" | grep -o 'device memory: [0-9]* MiB' | awk '{print $3}')
            # MFU against the H200's dense fp16/bf16 peak (989.4 TFLOP/s; SXM, boost clock)
            mfu=$(python3 -c "print(round(${tf:-0} / 989.4, 4))" 2>/dev/null)
            figure "{\"impl\": \"facetrain\", \"depth\": $depth, \"dtype\": \"$dt\", \"rate\": $rate, \"samples_per_s\": ${sps:-null}, \"tflops\": ${tf:-null}, \"mfu_h200\": ${mfu:-null}, \"device_mib\": ${mib:-null}}"
            [ -n "$sps" ] && [ -n "$tf" ] && [ -n "$mib" ] || fail "bench_parse_r${depth}_${dt}_${rate}"
        done
    done
done
# the step as ft-train runs it (no wait between phases), directly and replayed from a CUDA graph
# (cuda_graphs = True): what the launches cost at batch 128
for depth in $BENCH_DEPTHS; do
    for mode in "0 whole_steps" "1 graphs"; do
        set -- $mode
        out=$(tlimit 180 "$BIN/ft-bench-train" --device cuda --depth $depth "${BENCH_SIZE[@]}" \
            --rate 1.0 --dtype f16 --steps $((2 * BENCH_STEPS)) --phases 0 --graphs $1 2>>"$LOG")
        line=$(echo "$out" | head -1)
        log "facetrain r$depth fp16 rate 1.0 $2: ${line:-failed}"
        sps=$(echo "$line" | grep -o '[0-9.]* samples/s' | awk '{print $1}')
        [ -n "$sps" ] || fail "bench_r${depth}_$2"
        figure "{\"impl\": \"facetrain\", \"depth\": $depth, \"dtype\": \"fp16\", \"rate\": 1.0, \"mode\": \"$2\", \"samples_per_s\": ${sps:-null}}"
    done
done
# what the NHWC activations buy: r50 fp16 with every activation NCHW (cuDNN transposes)
depth=${BENCH_DEPTHS%% *}
out=$(tlimit 180 "$BIN/ft-bench-train" --device cuda --depth $depth "${BENCH_SIZE[@]}" \
    --rate 1.0 --dtype f16 --steps $BENCH_STEPS --layout nchw 2>>"$LOG")
line=$(echo "$out" | head -1)
log "facetrain r$depth fp16 rate 1.0 layout nchw: ${line:-failed}"
sps=$(echo "$line" | grep -o '[0-9.]* samples/s' | awk '{print $1}')
[ -n "$sps" ] || fail "bench_r${depth}_nchw"
figure "{\"impl\": \"facetrain\", \"depth\": $depth, \"dtype\": \"fp16\", \"rate\": 1.0, \"layout\": \"nchw\", \"samples_per_s\": ${sps:-null}}"

section "loader scaling on this machine's cores (LMDB in $D, u8hwc)"
for t in $LOADER_THREADS; do
    line=$(tlimit 60 "$BIN/ft-loadbench" "$D/synth/train.lmdb" --threads $t --batch 128 --batches 20 --json 2>>"$LOG" | tail -1)
    log "threads $t: ${line:-failed}"
    [ -n "$line" ] || fail "loader_threads_$t"
    [ -n "$line" ] && figure "{\"loader_threads\": $t, \"result\": $line}"
done

if [ "$MODE" = emu ]; then
    log "PyTorch's steps: not in a rehearsal (no GPU for PyTorch here)"
    finish
fi
section "arcface_torch's step in PyTorch (bench/torch_arcface_step.py), the same configurations"
for depth in $BENCH_DEPTHS; do
    for dt in fp16 bf16; do
        for rate in 1.0 0.3; do
            tl=$(tlimit 240 "${PY:-python3}" bench/torch_arcface_step.py --depth $depth --batch 128 \
                --classes 93431 --rate $rate --dtype $dt --steps 10 2>>"$LOG" | tail -1)
            log "pytorch   r$depth $dt rate $rate: ${tl:-failed}"
            if [ -n "$tl" ]; then figure "$tl"; else fail "pytorch_r${depth}_${dt}_${rate}"; fi
        done
    done
done
# PyTorch's best: torch.compile, once per depth (compiling takes a minute or more)
for depth in $BENCH_DEPTHS; do
    tl=$(tlimit 300 "${PY:-python3}" bench/torch_arcface_step.py --depth $depth --batch 128 \
        --classes 93431 --rate 1.0 --dtype fp16 --steps 10 --compile 2>>"$LOG" | tail -1)
    log "pytorch   r$depth fp16 rate 1.0 torch.compile: ${tl:-failed}"
    [ -n "$tl" ] && figure "$tl"
done
finish
