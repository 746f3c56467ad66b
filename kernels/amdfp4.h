// AMDFP4 block math (Quark's `amdfp4`, `amdfp4_g32`, `amdfp4_global16`, `amdfp4_global32`),
// kernels/FORMATS-fp4.md §3-§4: the unsigned FP8 E5M3 scale format (encode, decode), the
// single-level scale (an E5M3 value stored in the source dtype) and the two-level one (U8 E5M3
// codes against an F32 global scale). Host and device (SQ_HD); depends only on
// kernels/fp4_block.h.
#pragma once

#include <cstdint>

#include "kernels/fp4_block.h"
#include "kernels/numeric.h"

namespace shardquant {

// E5M3: 5 exponent bits (bias 15), 3 mantissa bits, no sign; subnormals k * 2^-17; the largest
// value 1.75 * 2^16 = 114688 (code 0xFE); 0xFF is NaN and never produced.
inline constexpr uint32_t k_e5m3_max_bits = 0x47E00000u;  // 114688.0f

SQ_HD mx_format e5m3_format() {
  return {5, 3, 15, 16, k_e5m3_max_bits, 8};
}

// Quark's E5M3 rounding of a value y >= 0: clamp to [0, 114688], then round to the nearest E5M3
// value, ties to an even mantissa (its bit-exact fp32 -> E5M3 converter). y must be finite.
SQ_HD uint8_t e5m3_encode(float y) {
  const float c = f32_bits(y) > k_e5m3_max_bits && y > 0.0f ? f32_from_bits(k_e5m3_max_bits) : y;
  const float nn = c > 0.0f ? c : 0.0f;  // clamp(min=0): -0 and negatives are 0
  return static_cast<uint8_t>(mx_encode_element(nn, e5m3_format()));
}

// Value of an E5M3 code (exact in fp32); 0xFF (NaN) decodes to a quiet NaN.
SQ_HD float e5m3_decode(uint8_t code) {
  if (code == 0xFFu) return f32_from_bits(0x7FC00000u);
  return mx_decode_element(code, e5m3_format());
}

// ---- amdfp4 / amdfp4_g32: one level, the E5M3 value stored in the source dtype D --------------

// The block scale: s = round_D(a / 6) computed in D as the device does (fp4_div_const on the fp32
// widening, rounded to D), EPS if 0 (2^-23 is exact in every D), then E5M3-rounded (a value of
// E5M3, exact in D). The stored `weight_scale` element is this value in D; the elements are
// divided by it, or by EPS when it is 0 (scales below 2^-18 round to E5M3 zero).
template <src_kind D>
SQ_HD float amdfp4_scale(float block_amax) {
  const float s = fp4_nonzero(round_src<D>(fp4_div_const(block_amax, k_six_bits, k_r6_bits)));
  return e5m3_decode(e5m3_encode(s));
}

// ---- amdfp4_global16 / 32: two levels, U8 E5M3 codes and an F32 global scale ------------------

// `weight_scale_2`: RN32(A / 688128) as the device computes it, EPS if 0 (A = tensor amax).
SQ_HD float amdfp4_global_scale(float tensor_amax) {
  return fp4_nonzero(fp4_div_const(tensor_amax, k_688128_bits, k_r688128_bits));
}

struct amdfp4_block_scale {
  float divisor;  // what the elements are divided by
  uint8_t code;   // the U8 E5M3 `weight_scale` code
};

// s = RN32(a / 6) (EPS if 0); fake-quantized against g: s' = RN32(e5m3(RN32(s / g)) * g); the
// elements are divided by s' (EPS if 0); the stored code is e5m3(RN32(s' / g)).
SQ_HD amdfp4_block_scale amdfp4_global_scale_of_block(float block_amax, float global) {
  const float s = fp4_nonzero(fp4_div_const(block_amax, k_six_bits, k_r6_bits));
  const float s_fq = mul_rn(e5m3_decode(e5m3_encode(div_rn(s, global))), global);
  return {fp4_nonzero(s_fq), e5m3_encode(div_rn(s_fq, global))};
}

}  // namespace shardquant
