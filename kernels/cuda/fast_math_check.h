// Host entry point of the exhaustive equality checks of kernels/cuda/fast_math.cuh against the
// shared math headers (run on the device, every input of each function). Used by
// tests/gpu/fast_math_gpu_test.cpp; plain C++, no CUDA types. Without CUDA it throws
// gpu::unavailable_error (fast_math_check_nocuda.cpp).
#pragma once

#include <cstdint>

namespace shardquant::gpu {

// Which specialised function to compare with its shared counterpart.
enum class fast_fn : uint8_t {
  round_bf16x2,     // all 2^32 fp32 patterns, in both halves of the pair
  round_f16x2,      // all 2^32 fp32 patterns, in both halves
  fp8_encode2,      // all 2^32 fp32 patterns, in both bytes
  fp8_decode2,      // all 2^16 code pairs
  f16_to_f32,       // all 2^16 f16 patterns
  rne_clamp_int8,   // all 2^32 fp32 patterns, bounds [-128, 127]
  rne_clamp_int4,   // all 2^32 fp32 patterns, bounds [-8, 7]
  rne_clamp_uint4,  // all 2^32 fp32 patterns, bounds [0, 15]
  mx_e2m3_encode2,  // all 2^32 fp32 patterns, in both codes of the pair
  mx_e3m2_encode2,  // all 2^32 fp32 patterns, in both codes of the pair
};

struct fast_check_result {
  uint64_t inputs = 0;                // inputs compared
  uint64_t mismatches = 0;            // inputs where the specialised function differs
  uint64_t first_bad = ~uint64_t{0};  // smallest mismatching input pattern
};

// Runs the comparison on device 0 and waits for it.
fast_check_result check_fast_math(fast_fn f);

}  // namespace shardquant::gpu
