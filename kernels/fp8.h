// FP8 element math: e4m3fn encode with saturation (formats.md §12.3), e4m3fn / e5m2 decode, and the
// per-element fp8 quantizer of §5.2/§5.3 step 3 (division by the scale, source-dtype rounding,
// clamp, encode). Host and device (SQ_HD); depends only on kernels/numeric.h.
#pragma once

#include <cstdint>

#include "kernels/numeric.h"

namespace shardquant {

inline constexpr uint32_t k_fp8_max_bits = 0x43E00000u;  // 448.0f

// to_fp8_e4m3fn_sat (§12.3). y must be finite; |y| > 448 saturates to 448 (the caller's clamp is
// applied again here, so the function is total on finite inputs). Sign bit for negative and -0.
SQ_HD uint8_t fp8_e4m3fn_encode(float y) {
  const uint32_t u = f32_bits(y);
  const uint32_t sign = (u >> 24) & 0x80u;
  uint32_t a = u & k_f32_abs_mask;
  a = a > k_fp8_max_bits ? k_fp8_max_bits : a;
  // Both paths are computed and one is selected, so loops over this function vectorize.
  // Subnormal (|y| < 2^-6): k = rne(|y| * 2^9) in 0..8; |y| * 512 is exact and adding 2^23
  // rounds it to an integer (half to even) in the low mantissa bits.
  const float s = mul_rn(f32_from_bits(a), f32_from_bits(0x44000000u));
  const uint32_t sub = f32_bits(add_rn(s, f32_from_bits(0x4B000000u))) - 0x4B000000u;
  // Normal: round the 23-bit fraction to 3 bits, half to even, on exponent|fraction together so
  // a mantissa carry increments the exponent; then rebias 127 -> 7 (120 << 3).
  const uint32_t nrm = ((a + 0x7FFFFu + ((a >> 20) & 1u)) >> 20) - (120u << 3);
  const uint32_t code = a < 0x3C800000u ? sub : nrm;
  return static_cast<uint8_t>(code | sign);
}

// Whether a code is one of the e4m3fn NaNs (0x7F, 0xFF).
SQ_HD bool fp8_e4m3fn_is_nan(uint8_t c) {
  return (c & 0x7Fu) == 0x7Fu;
}

// Value of an e4m3fn code as fp32 (exact). NaN codes decode to a quiet NaN.
SQ_HD float fp8_e4m3fn_decode(uint8_t c) {
  const uint32_t sign = static_cast<uint32_t>(c & 0x80u) << 24;
  const uint32_t e = (c >> 3) & 15u;
  const uint32_t m = c & 7u;
  // Every path computed, one selected (vectorizable): normal, subnormal m * 2^-9 (exact), NaN.
  const uint32_t nrm = ((e + 120u) << 23) | (m << 20);
  const uint32_t sub =
      f32_bits(mul_rn(static_cast<float>(static_cast<int32_t>(m)), f32_from_bits(0x3B000000u)));
  const uint32_t o = fp8_e4m3fn_is_nan(c) ? 0x7FC00000u : (e == 0 ? sub : nrm);
  return f32_from_bits(o | sign);
}

// e5m2 is the top byte of an IEEE binary16 (same exponent, 2 mantissa bits): exact via f16.
SQ_HD bool fp8_e5m2_is_nan(uint8_t c) {
  return (c & 0x7Fu) > 0x7Cu;
}
SQ_HD float fp8_e5m2_decode(uint8_t c) {
  return f16_to_f32(static_cast<uint16_t>(c << 8));
}

// One element of §5.2/§5.3 step 3. `s_div` is the divisor: the fp32 scale for D = F32, or
// round_D(scale) for BF16/F16 (the caller rounds it once per scale; it must not be 0).
// y = round_D(RN32(w / s_div)); clamp to +-448 (keeps -0); encode.
template <src_kind D>
SQ_HD uint8_t fp8_quantize_element(float w, float s_div) {
  const float y = round_src<D>(div_rn(w, s_div));
  return fp8_e4m3fn_encode(y);  // the encoder's saturation is the clamp of step 3
}

// The per-tensor fp8 scale of §5.2 step 2 (true division, TC4): RN32(amax / 448), EPS if 0.
SQ_HD float fp8_tensor_scale(float amax) {
  const float s = div_rn(amax, f32_from_bits(k_fp8_max_bits));
  return s == 0.0f ? k_eps() : s;
}

// The per-row fp8 scale of §5.3 step 2 (reciprocal multiply, TC4): RN32(amax * R(448)), EPS if 0.
SQ_HD float fp8_row_scale(float amax) {
  const float s = mul_rn(amax, k_r448());
  return s == 0.0f ? k_eps() : s;
}

// The divisor used for the elements: round_D(s). Returns 0 when it underflows in D (f16), which
// the caller reports as an error (formats.md §5.2 [DIFF]).
template <src_kind D>
SQ_HD float fp8_divisor(float s) {
  return round_src<D>(s);
}

}  // namespace shardquant
