#!/bin/bash
# Build and run facetrain's whole test suite, as CI does:
#   0. the Debian packages it needs (tools/install-deps.sh, idempotent; root or sudo)
#   1. release build with -Werror, every ctest case
#   1b. CUDA-emulator build (tests/cudaemu): the CUDA backend's sources compiled for the CPU,
#      the GPU tests on the emulated device (ctest label emu)
#   2. ASan+UBSan build with the CUDA emulator, every test that is not marked 'slow' (the
#      GPU tests' lean ones among them: ASan checks the kernels' memory accesses)
#   2b. clang UBSan build of the file parsers (.bin pickle reader, RecordIO) and their tests:
#      clang's UBSan also reports pointer arithmetic on NULL, which gcc's does not (a few s)
#   3. TSan build, the tests of the threaded parts (ctest label 'threaded')
#   4. clang-format check of every C/CUDA source
# Usage: tools/test.sh [--quick]   (--quick: step 1 only)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)
quick=0
[ "${1:-}" = "--quick" ] && quick=1

# ctest runs $JOBS tests at once, most with 2 threads of their own: OpenMP's default spin-wait
# (oneDNN's and PyTorch's teams) then burns the cores the other test needs. Two 2-thread
# trainings side by side on 2 cores took 12.8 s spinning and 6.6 s passive (one alone: 3.3 s
# and 3.6 s). The results do not depend on it.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

# each stage's start in seconds since the script began: CI's log shows where the time goes
step() { printf '\n=== [%d s] %s ===\n' "$SECONDS" "$*"; }

step "dependencies"
bash tools/install-deps.sh

step "build (release, -Werror)"
cmake -S . -B build -DFT_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$JOBS"
step "tests (release)"
ctest --test-dir build --output-on-failure -j"$JOBS"
[ $quick -eq 1 ] && exit 0

step "build (CUDA emulator)"
cmake -S . -B build-emu -DFT_WERROR=ON -DFT_CUDA_EMU=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-emu -j"$JOBS"
step "tests (GPU tests on the CUDA emulator)"
ctest --test-dir build-emu --output-on-failure -j"$JOBS" -L emu

step "build (ASan + UBSan)"
cmake -S . -B build-asan -DFT_WERROR=ON -DFT_SANITIZE=address -DFT_CUDA_EMU=ON \
    -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j"$JOBS"
step "tests (ASan + UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j"$JOBS" -LE slow

step "build (clang UBSan, file parsers)"
CC=clang cmake -S . -B build-ubsan-clang -DFT_WERROR=ON -DFT_SANITIZE=undefined \
    -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-ubsan-clang -j"$JOBS" --target verbin_tool rio_tool test_recordio_unit
step "tests (clang UBSan, file parsers)"
UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build-ubsan-clang --output-on-failure \
    -j"$JOBS" -R '^(tools_verbin_pickle|recordio_unit|recordio_python)$'

step "build (TSan)"
cmake -S . -B build-tsan -DFT_WERROR=ON -DFT_SANITIZE=thread -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-tsan -j"$JOBS"
step "tests (TSan, threaded parts)"
TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build-tsan --output-on-failure -j"$JOBS" -L threaded

step "clang-format"
files=$(git ls-files '*.c' '*.h' '*.cu' '*.cuh' '*.cpp' 2>/dev/null || true)
if [ -n "$files" ]; then
    # shellcheck disable=SC2086 # $files is a list of paths without spaces
    clang-format --dry-run --Werror $files
fi
echo "all test stages passed"
