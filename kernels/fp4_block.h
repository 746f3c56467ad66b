// What the scaled-FP4 schemes (nvfp4, amdfp4*, kernels/FORMATS-fp4.md) share: the division of an
// amax by a constant as Quark's device computes it, and "encode one block of FP4 E2M1 elements
// with a given fp32 divisor" (the element rounding and nibble packing of kernels/mx.h, reused).
// Host and device (SQ_HD); depends only on kernels/mx.h and kernels/numeric.h.
#pragma once

#include <cstdint>

#include "kernels/mx.h"
#include "kernels/numeric.h"

namespace shardquant {

// Largest element block of these schemes (group sizes 16 and 32).
inline constexpr uint32_t k_fp4_max_group = 32;

// Quark divides a tensor by a Python constant c (amax / 6.0, amax / 2688.0, ...). On CUDA torch
// computes that as a multiply by RN32(1/c) (a CPU scalar divisor); on the CPU as a true division.
// shardquant follows CUDA (the reference, formats.md §1.2) [TO CONFIRM ON CUDA: FORMATS-fp4.md
// F1]. A build with SHARDQUANT_FP4_TRUE_DIVISION reproduces Quark-on-CPU instead, so the trace can
// be checked byte for byte against Quark on a machine without a GPU.
#if defined(SHARDQUANT_FP4_TRUE_DIVISION)
inline constexpr bool k_fp4_scale_by_reciprocal = false;
#else
inline constexpr bool k_fp4_scale_by_reciprocal = true;
#endif

// The constants and their RN32 reciprocals (fp32 bit patterns).
inline constexpr uint32_t k_six_bits = 0x40C00000u;      // 6.0 = FP4 E2M1 max
inline constexpr uint32_t k_r6_bits = 0x3E2AAAABu;       // RN32(1/6)
inline constexpr uint32_t k_2688_bits = 0x45280000u;     // 6 * 448 (FP4 max * E4M3 max)
inline constexpr uint32_t k_r2688_bits = 0x39C30C31u;    // RN32(1/2688)
inline constexpr uint32_t k_688128_bits = 0x49280000u;   // 6 * 114688 (FP4 max * E5M3 max)
inline constexpr uint32_t k_r688128_bits = 0x35C30C31u;  // RN32(1/688128)

// RN32(a / c) as Quark's device computes it: a * R(c) (or a / c in the true-division build).
SQ_HD float fp4_div_const(float a, uint32_t c_bits, uint32_t rc_bits) {
  if constexpr (k_fp4_scale_by_reciprocal) return mul_rn(a, f32_from_bits(rc_bits));
  return div_rn(a, f32_from_bits(c_bits));
}

// Quark's `scale.masked_fill(scale == 0, eps)` (eps = 2^-23): applied to every scale before it
// divides anything.
SQ_HD float fp4_nonzero(float s) {
  return s == 0.0f ? k_eps() : s;
}

// Exact amax of x[0..n).
SQ_HD float fp4_block_amax(const float* x, uint32_t n) {
  uint32_t amax_bits = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t ab = abs_bits(x[i]);
    amax_bits = ab > amax_bits ? ab : amax_bits;
  }
  return f32_from_bits(amax_bits);
}

// The elements of one block (n even, n <= 32): code_i = quantize_lp(RN32(x_i / d)) (formats.md
// §12.4, as kernels/mx.h encodes it), packed two per byte, even element in the low nibble.
// Writes n / 2 bytes.
SQ_HD void fp4_encode_elements(const float* x, uint32_t n, float d, uint8_t* packed) {
  uint8_t codes[k_fp4_max_group];
  for (uint32_t i = 0; i < n; ++i)
    codes[i] = static_cast<uint8_t>(mx_encode_element(div_rn(x[i], d), mx_fp4_e2m1()));
  mx_pack_codes(codes, n, mx_fp4_e2m1(), packed);
}

}  // namespace shardquant
