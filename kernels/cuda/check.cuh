// Checking every CUDA runtime call: SQ_CUDA(call) throws gpu::cuda_error naming the call, the
// file:line and cudaGetErrorString; SQ_CUDA_LAUNCH() checks a kernel launch. For .cu files only.
#pragma once

#include <cuda_runtime.h>

#include "kernels/gpu_api.h"

namespace shardquant::gpu::detail {

[[noreturn]] void throw_cuda(cudaError_t e, const char* call, const char* file, int line);
// For destructors: reports a failing release to stderr instead of throwing.
void warn_cuda(cudaError_t e, const char* call, const char* file, int line) noexcept;

}  // namespace shardquant::gpu::detail

#define SQ_CUDA(call)                                                          \
  do {                                                                         \
    const cudaError_t sq_e_ = (call);                                          \
    if (sq_e_ != cudaSuccess)                                                  \
      ::shardquant::gpu::detail::throw_cuda(sq_e_, #call, __FILE__, __LINE__); \
  } while (0)

#define SQ_CUDA_WARN(call)                                                    \
  do {                                                                        \
    const cudaError_t sq_e_ = (call);                                         \
    if (sq_e_ != cudaSuccess)                                                 \
      ::shardquant::gpu::detail::warn_cuda(sq_e_, #call, __FILE__, __LINE__); \
  } while (0)

// After a <<<...>>> launch (`name` a string literal): configuration errors surface here, not at
// the next synchronization.
#define SQ_CUDA_LAUNCH(name)                                                               \
  do {                                                                                     \
    const cudaError_t sq_e_ = cudaGetLastError();                                          \
    if (sq_e_ != cudaSuccess)                                                              \
      ::shardquant::gpu::detail::throw_cuda(sq_e_, "launch of " name, __FILE__, __LINE__); \
  } while (0)
