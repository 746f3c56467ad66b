// kernels/cuda/fast_math_check.h for a build without CUDA: there is no device to check on.
// Compiled instead of fast_math_check.cu when SHARDQUANT_CUDA is OFF.
#include "kernels/cuda/fast_math_check.h"
#include "kernels/gpu_api.h"

namespace shardquant::gpu {

fast_check_result check_fast_math(fast_fn) {
  throw unavailable_error("built without CUDA: no device to check kernels/cuda/fast_math.cuh on");
}

}  // namespace shardquant::gpu
