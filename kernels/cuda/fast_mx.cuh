// Device-specialised MX FP6 element encoders (formats.md §12.4), equal bit for bit to
// mx_encode_element() of kernels/mx.h on EVERY fp32 input (checked exhaustively by
// tests/gpu/fast_math_gpu_test.cpp through kernels/cuda/fast_math_check.cu).
// Why they are exact: FP6 E2M3 (bias 1) scaled by 2^-6 is exactly the FP8 E4M3 grid below
// 7.5 * 2^-6 (same 3 mantissa bits, same subnormal step 2^-9, E2M3 exponent e <-> E4M3 exponent
// e), and FP6 E3M2 (bias 3) scaled by 2^-12 is the FP8 E5M2 grid below 28 * 2^-12 (2 mantissa
// bits, subnormal step 2^-16). The scaling is exact except for |y| < 2^-120, which both sides
// round to 0. Clamping |y| at the format's max before rounding equals rounding then saturating
// (the max is a grid point); fminf makes a NaN the max, as the header's integer path does. The
// magnitude code of the FP8 result is then the FP6 magnitude code; the sign goes to bit 5 unless
// the code is 0. FP4 E2M1 has no 1-mantissa-bit hardware format and keeps the header function.
// For .cu files only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/mx.h"
#include "kernels/numeric.h"

namespace shardquant::gpu::detail::fast {

__device__ __forceinline__ uint32_t fp6_with_sign(uint32_t mag, float y) {
  return mag | (mag == 0 ? 0u : (f32_bits(y) >> 31) << 5);
}

// mx_encode_element(a, E2M3) | mx_encode_element(b, E2M3) << 8.
__device__ __forceinline__ uint32_t mx_e2m3_encode2(float a, float b) {
  const float scale = f32_from_bits(121u << 23);  // 2^-6
  const float mx = f32_from_bits(0x3DF00000u);    // 7.5 * 2^-6
  const float ca = fminf(mul_rn(abs_f(a), scale), mx);
  const float cb = fminf(mul_rn(abs_f(b), scale), mx);
  uint16_t p;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(p) : "f"(cb), "f"(ca));  // a -> low byte
  return fp6_with_sign(p & 0x7Fu, a) | fp6_with_sign((p >> 8) & 0x7Fu, b) << 8;
}

// mx_encode_element(a, E3M2) | mx_encode_element(b, E3M2) << 8.
__device__ __forceinline__ uint32_t mx_e3m2_encode2(float a, float b) {
  const float scale = f32_from_bits(115u << 23);  // 2^-12
  const float mx = f32_from_bits(0x3BE00000u);    // 28 * 2^-12
  const float ca = fminf(mul_rn(abs_f(a), scale), mx);
  const float cb = fminf(mul_rn(abs_f(b), scale), mx);
  uint16_t p;
  asm("cvt.rn.satfinite.e5m2x2.f32 %0, %1, %2;" : "=h"(p) : "f"(cb), "f"(ca));  // a -> low byte
  return fp6_with_sign(p & 0x7Fu, a) | fp6_with_sign((p >> 8) & 0x7Fu, b) << 8;
}

}  // namespace shardquant::gpu::detail::fast
