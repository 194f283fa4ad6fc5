/* emu_prelude.h: included before anything else (-include) in every CUDA source the emulator
 * compiles with the host C++ compiler (see emu.h). It turns CUDA C++ into host C++:
 * - the execution-space qualifiers vanish; __shared__ variables become function statics (the
 *   emulator runs one block at a time, so a static is the block's shared memory);
 * - threadIdx, blockIdx, blockDim and gridDim are variables the runtime sets for each emulated
 *   thread; __syncthreads switches to the next thread of the block;
 * - atomicAdd (unsigned) is a relaxed atomic add: the kernels' shared-memory histograms work
 *   as on a GPU;
 * - a launch, written CUDA_LAUNCH(kernel, grid, block, stream)(args...) in the sources (cuda.h
 *   expands it to kernel<<<grid, block, 0, stream>>> under nvcc), converts the arguments to
 *   the kernel's parameter types, as a launch does, and queues the grid on the stream.
 */
#ifndef FT_CUDAEMU_PRELUDE_H
#define FT_CUDAEMU_PRELUDE_H

#define FT_CUDA_EMU 1
#define __host__
#define __device__
#define __global__
#define __shared__  static
#define __STORAGE__ extern
#include <cuda_runtime.h>
#include <device_launch_parameters.h>

#ifdef __cplusplus
#include <functional>
#include <tuple>
#include <utility>

void __syncthreads(void);
/* the atomics the kernels use; a block's fibers never interleave inside one */
static inline unsigned atomicAdd(unsigned *p, unsigned v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

namespace emu {
/* queue a grid of body() on stream s: the runtime checks the configuration as a launch does
 * (cudaErrorInvalidConfiguration for cudaGetLastError), then runs body once per thread */
void launch(const char *name, const void *key, dim3 grid, dim3 block, cudaStream_t s,
            std::function<void()> body);

template <class... P> struct launcher {
    const char *name;
    void (*kernel)(P...);
    dim3 grid, block;
    cudaStream_t stream;
    template <class... A> void operator()(A &&...a) const {
        std::tuple<P...> args(std::forward<A>(a)...);
        void (*k)(P...) = kernel;
        launch(name, (const void *)k, grid, block, stream, [k, args]() { std::apply(k, args); });
    }
};
template <class... P>
launcher<P...> make_launcher(const char *name, void (*k)(P...), dim3 grid, dim3 block,
                             cudaStream_t s) {
    return launcher<P...>{name, k, grid, block, s};
}
} // namespace emu

#define CUDA_LAUNCH(kernel, grid, block, stream)                                                   \
    emu::make_launcher(#kernel, kernel, dim3(grid), dim3(block), stream)
#endif

#endif
