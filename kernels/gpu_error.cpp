// The cuda_error of kernels/gpu_api.h: one definition for both builds (the CUDA runtime's
// kernels/cuda/runtime.cu throws it; a build without CUDA still links code that catches it).
// Plain C++, no CUDA header.
#include <string>
#include <utility>

#include "kernels/gpu_api.h"

namespace shardquant::gpu {

cuda_error::cuda_error(std::string call, std::string file, int line, int code,
                       std::string code_name, const std::string& message)
    : std::runtime_error(call + " failed at " + file + ":" + std::to_string(line) + ": " +
                         code_name + " (" + message + ")"),
      call_(std::move(call)),
      file_(std::move(file)),
      line_(line),
      code_(code),
      code_name_(std::move(code_name)) {}

}  // namespace shardquant::gpu
