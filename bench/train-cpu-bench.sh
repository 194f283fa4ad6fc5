#!/bin/bash
# train-cpu-bench.sh: CPU training speed of facetrain's trainer core next to PyTorch running the
# same IResNet, ArcFace head (full-class Partial FC), SGD + clipping, batch and thread count, in
# one command. Prints samples/s and peak memory (max RSS) of each.
#
#   bench/train-cpu-bench.sh [--bin DIR] [--depths "18 50"] [--batch 32] [--threads 2]
#                            [--classes 93431] [--steps 3] [--blas "machine native"]
#                            [--dtypes "f32 bf16 f16"]
#
# --dtypes: facetrain's storage dtypes to run (fp32, bf16 storage, fp16 storage with loss
# scaling). PyTorch runs fp32 and, next to bf16, torch.autocast('cpu', torch.bfloat16) (its
# oneDNN bf16 path); PyTorch 1.13 has no fp16 autocast on the CPU, so fp16 is compared with
# PyTorch fp32.
#
# --blas: OpenBLAS kernel settings to run under. 'machine' keeps the environment as it is (some
# machines force OPENBLAS_CORETYPE, e.g. Haswell/AVX2 kernels on an AVX-512 CPU); 'native'
# unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for both facetrain and PyTorch, so OpenBLAS
# picks the kernels of the CPU it runs on. The kernel each setting selects is printed.
#
# PyTorch gets its best setup here: Debian's python3-torch calls the generic BLAS, so it is run
# with both OpenBLAS builds (pthread: the system default; openmp: libopenblas0-openmp via
# LD_LIBRARY_PATH) and torch.set_num_threads(threads); the faster is reported.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin="" depths="18 50" batch=32 threads=2 classes=93431 steps=3 blas="machine native"
dtypes="f32 bf16 f16"
while [ $# -gt 0 ]; do
    case $1 in
    --bin) bin=$2; shift 2 ;;
    --depths) depths=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --classes) classes=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --blas) blas=$2; shift 2 ;;
    --dtypes) dtypes=$2; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "train-cpu-bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -n "$bin" ] || bin=$here/build/bin
[ -x "$bin/ft-bench-train" ] || { echo "train-cpu-bench.sh: no $bin/ft-bench-train" >&2; exit 1; }
PY=/usr/bin/python3
OMP_DIR=/usr/lib/x86_64-linux-gnu/openblas-openmp
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run OUT CMD...: stdout to OUT, peak RSS (KiB) appended as "maxrss <kib>"
run() {
    local out=$1
    shift
    /usr/bin/time -f "maxrss %M" -o "$out.rss" "$@" >"$out"
    cat "$out.rss" >>"$out"
}
rate() { grep -o '[0-9.]* samples/s' "$1" | head -1 | cut -d' ' -f1; }
rss_mib() { awk '/^maxrss/ {printf "%.0f", $2 / 1024}' "$1"; }

corename() {
    "$@" "$PY" -c "import ctypes; l = ctypes.CDLL('libopenblas.so.0');
l.openblas_get_corename.restype = ctypes.c_char_p; print(l.openblas_get_corename().decode())"
}

for setting in $blas; do
    base=()
    case $setting in
    machine) base=(env) ;;
    native) base=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE) ;;
    *) echo "train-cpu-bench.sh: --blas takes 'machine' and/or 'native'" >&2; exit 2 ;;
    esac
    echo
    echo "== OpenBLAS setting '$setting' (OPENBLAS_CORETYPE=$([ "$setting" = native ] || echo "${OPENBLAS_CORETYPE:-}"); kernels: $(corename "${base[@]}")) =="
    printf '%-6s %-30s %12s %12s\n' model engine samples/s "peak MiB"
    for d in $depths; do
        # PyTorch: fp32 with each OpenBLAS build (the faster counts), and bf16 autocast
        best=0 best_name=""
        for variant in pthread openmp; do
            env=("${base[@]}")
            if [ $variant = openmp ]; then
                [ -e "$OMP_DIR/libblas.so.3" ] || continue
                env+=("LD_LIBRARY_PATH=$OMP_DIR" "OMP_NUM_THREADS=$threads")
            fi
            run "$tmp/pt$d$variant" "${env[@]}" "$PY" "$here/bench/train_cpu_step_torch.py" \
                "$d" "$batch" "$threads" "$classes" "$steps"
            r=$(rate "$tmp/pt$d$variant")
            printf '%-6s %-30s %12s %12s\n' "r$d" "pytorch fp32 (openblas-$variant)" "$r" \
                "$(rss_mib "$tmp/pt$d$variant")"
            if awk -v a="$r" -v b="$best" 'BEGIN {exit !(a > b)}'; then
                best=$r best_name=$variant
            fi
        done
        pt_bf16=""
        case " $dtypes " in *" bf16 "*)
            run "$tmp/ptbf$d" "${base[@]}" "$PY" "$here/bench/train_cpu_step_torch.py" \
                "$d" "$batch" "$threads" "$classes" "$steps" bf16
            pt_bf16=$(rate "$tmp/ptbf$d")
            printf '%-6s %-30s %12s %12s\n' "r$d" "pytorch bf16 autocast" "$pt_bf16" \
                "$(rss_mib "$tmp/ptbf$d")" ;;
        esac
        for dt in $dtypes; do
            run "$tmp/ft$d$dt" "${base[@]}" "$bin/ft-bench-train" --depth "$d" --batch "$batch" \
                --threads "$threads" --classes "$classes" --steps "$steps" --dtype "$dt"
            ft=$(rate "$tmp/ft$d$dt")
            printf '%-6s %-30s %12s %12s\n' "r$d" "facetrain $dt" "$ft" "$(rss_mib "$tmp/ft$d$dt")"
            awk -v a="$ft" -v b="$best" -v d="$d" -v n="$best_name" -v t="$dt" \
                'BEGIN {printf "r%s: facetrain %s / best PyTorch fp32 (openblas-%s) = %.2fx\n", d, t, n, a / b}'
            if [ "$dt" = bf16 ] && [ -n "$pt_bf16" ]; then
                awk -v a="$ft" -v b="$pt_bf16" -v d="$d" \
                    'BEGIN {printf "r%s: facetrain bf16 / PyTorch bf16 autocast = %.2fx\n", d, a / b}'
            fi
        done
    done
done
echo "conditions: batch $batch, $threads threads, $classes classes (ArcFace, sample_rate 1)," \
    "$steps timed steps after one warm-up, $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
