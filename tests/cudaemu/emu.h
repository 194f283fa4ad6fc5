/* emu.h: the CUDA emulator's internal interface, shared by its runtime (runtime.cpp) and its
 * cuBLAS, cuDNN and NCCL stand-ins (cublas.cpp, cudnn.cpp, nccl.cpp).
 *
 * The emulator runs the CUDA backend's own sources (the .cu files of train/ops/cuda and
 * train/comm), compiled by the host C++ compiler against the toolkit's real headers, on the CPU:
 * "device" memory is host memory the runtime hands out and tracks, kernels run one block at a time
 * with a fiber per thread (__syncthreads switches fibers), and every stream is a queue whose work
 * runs when something waits for it (a stream or event synchronization, a blocking copy,
 * cudaFree), as a GPU's would run later than the host enqueues it. The library stand-ins
 * check their arguments the way the libraries document (leading dimensions, descriptors,
 * device pointers and the extent each operand needs) and compute the documented result in
 * plain loops; they never share code with the CPU backend they are compared against.
 *
 * Test-only: built with -DFT_CUDA_EMU=ON, used by the gpu-labelled tests under
 * FT_CUDA_EMU=1 (see README.md here).
 */
#ifndef FT_CUDAEMU_H
#define FT_CUDAEMU_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <functional>
#include <thread>
#include <vector>

namespace emu {

/* One diagnostic line "cuda emu: <api>: <message>" on stderr. */
void diag(const char *api, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True when [p, p + bytes) lies inside one live device allocation; otherwise prints a
 * diagnostic naming api and what ("A", "workspace", ...) and returns false. bytes 0: p must
 * still be inside an allocation (or NULL when null_ok). */
bool check_device(const void *p, size_t bytes, const char *api, const char *what,
                  bool null_ok = false);

/* True when p lies inside a live device allocation (no diagnostic). */
bool is_device(const void *p);

/* Queue fn on stream s (NULL: the legacy default stream): it runs, in order with the stream's
 * other work, when the host next waits for that work. What fn reads of host memory (scalars,
 * descriptors) must be captured by value at enqueue time, as the libraries read host
 * arguments before the call returns. */
void enqueue(cudaStream_t s, const char *what, std::function<void()> fn);

/* Queue a step function on s (the one make() returns): it is called when the stream reaches
 * it and again until it returns true (a collective waiting for its peers). A blocking wait
 * keeps calling it (a wait longer than FT_CUDA_EMU_HANG_S, default 900 s, is reported and
 * aborts: a GPU would hang there); a stream or event query calls it once. On a capturing
 * stream make is recorded instead, and each launch of the graph runs a step of its own. */
void enqueue_poll(cudaStream_t s, const char *what, std::function<std::function<bool()>()> make);

/* FT_CUDA_EMU_HANG_S (default 900): how long a blocking wait may last before it is a hang. */
double hang_seconds();

/* Run everything queued on every stream (cudaDeviceSynchronize). */
void drain_all();

/* The emulated device is visible (FT_CUDA_EMU=1 in the environment). */
bool device_visible();

/* IEEE binary16 and bfloat16 <-> float, round to nearest even (the emulator's own). */
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
float bf16_to_float(uint16_t h);
uint16_t float_to_bf16(float f);

/* element i of an fp32 / fp16 / bf16 array as float, and the store that rounds once (by way
 * of fp32 for the 16-bit types) */
enum elem { F32, F16, BF16 };
inline float load(elem t, const void *p, size_t i) {
    if (t == F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return t == F16 ? half_to_float(h) : bf16_to_float(h);
}
inline void store(elem t, void *p, size_t i, double v) {
    float f = (float)v;
    if (t == F32)
        ((float *)p)[i] = f;
    else
        ((uint16_t *)p)[i] = t == F16 ? float_to_half(f) : float_to_bf16(f);
}

/* fn(begin, end) over [0, count) in static slices, one per thread: each index is handled by
 * exactly one call, so results do not depend on the number of threads */
template <class F> void parallel_for(int64_t count, double work, F fn) {
    unsigned hw = std::thread::hardware_concurrency();
    int64_t nt = std::min<int64_t>({hw ? (int64_t)hw : 1, 8, count});
    if (nt <= 1 || work < 4e6) {
        fn((int64_t)0, count);
        return;
    }
    std::vector<std::thread> threads;
    int64_t started = 0; /* slices [0, started) run on threads */
    try {
        for (int64_t t = 1; t < nt; t++) {
            int64_t b = count * t / nt, e = count * (t + 1) / nt;
            threads.emplace_back([fn, b, e] { fn(b, e); });
            started = t;
        }
    } catch (...) { /* no thread: the calling thread takes the remaining slices */
    }
    fn(0, count / nt);
    if (started + 1 < nt) fn(count * (started + 1) / nt, count);
    for (auto &th : threads) th.join();
}

} // namespace emu

#endif
