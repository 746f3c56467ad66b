// OCP MX element and block math (formats.md §5.7, §12.4, §12.5): the shared-exponent rule with
// Quark's "even" rounding, the k = -127 divisor quirk (TC6), the e8m0 byte, quantize_lp for
// FP4 E2M1 / FP6 E2M3 / FP6 E3M2 as codes, FP4/FP6 packing, and "encode one 32-element block".
// Host and device (SQ_HD); depends only on kernels/numeric.h.
#pragma once

#include <cstdint>

#include "kernels/numeric.h"

namespace shardquant {

inline constexpr uint32_t k_mx_block = 32;

// Parameters of one MX element format (§5.7 table).
struct mx_format {
  uint32_t ebits;
  uint32_t mbits;
  uint32_t bias;
  int32_t emax;        // exponent of the largest normal, used by the scale rule
  uint32_t max_bits;   // fp32 bits of the largest value (6, 7.5, 28)
  uint32_t code_bits;  // 4 or 6
};

// Functions, not variables, so device code can use them without odr-using host objects.
SQ_HD constexpr mx_format mx_fp4_e2m1() {
  return {2, 1, 1, 2, 0x40C00000u, 4};
}
SQ_HD constexpr mx_format mx_fp6_e2m3() {
  return {2, 3, 1, 2, 0x40F00000u, 6};
}
SQ_HD constexpr mx_format mx_fp6_e3m2() {
  return {3, 2, 3, 4, 0x41E00000u, 6};
}

// Shared exponent k of a block with amax `a` (finite, >= 0), §5.7 step 2: round the amax's
// exponent up when its mantissa reaches the threshold (b + 2^(22-mbits), masked), then
// k = clamp(floor(log2 r) - emax, -127, 127); r = 0 (a = 0) gives -127, r = +Inf gives 127.
SQ_HD int32_t mx_shared_exponent(float a, mx_format f) {
  const uint32_t b = f32_bits(a);
  const uint32_t r = (b + (1u << (22 - f.mbits))) & 0xFF800000u;
  if (r == 0) return -127;
  if (r >= k_f32_inf_bits) return 127;  // r = +Inf: E = +inf
  const int32_t e = static_cast<int32_t>(r >> 23) - 127;
  int32_t k = e - f.emax;
  k = k < -127 ? -127 : k;
  k = k > 127 ? 127 : k;
  return k;
}

// The divisor S of a block's elements: 2^k, except k = -127, where the reference's GPU exp2
// returns 0x003FFFFF instead of 2^-127 (TC6).
SQ_HD float mx_scale_divisor(int32_t k) {
  if (k == -127) return f32_from_bits(0x003FFFFFu);
  return f32_from_bits(static_cast<uint32_t>(k + 127) << 23);
}

// 2^-k, exact for every k in [-126, 127] (2^-127 is an exact fp32 subnormal). For these k,
// x * 2^-k == RN32(x / 2^k) bit for bit, so fast paths may multiply instead of divide; k = -127
// must divide by mx_scale_divisor(-127).
SQ_HD float mx_scale_reciprocal(int32_t k) {
  const int32_t e = -k;  // in [-127, 126]
  if (e >= -126) return f32_from_bits(static_cast<uint32_t>(e + 127) << 23);
  return f32_from_bits(0x00400000u);  // 2^-127
}

// Stored e8m0 byte (§5.7 step 3): max(k, -126) + 127, range 1..254.
SQ_HD uint8_t mx_scale_byte(int32_t k) {
  return static_cast<uint8_t>((k < -126 ? -126 : k) + 127);
}

// quantize_lp (§12.4) returning the element code directly: round |y| to the nearest value of the
// format (ties to an even mantissa, subnormal step 2^(1-bias-mbits)), saturate at max, a zero
// result is +0 (code 0), otherwise the sign bit (bit ebits+mbits) follows y. y must be finite.
SQ_HD uint32_t mx_encode_element(float y, mx_format f) {
  const uint32_t u = f32_bits(y);
  const uint32_t a = u & k_f32_abs_mask;
  const uint32_t nbits = f.ebits + f.mbits;
  const uint32_t max_code = (1u << nbits) - 1u;
  // Smallest normal of the format: 2^(1 - bias).
  const uint32_t min_normal_bits = (128u - f.bias) << 23;
  // Both paths are computed and one is selected, so loops over this function vectorize.
  // Subnormal range: k = rne(|y| / 2^(1-bias-mbits)); the scaling by a power of two is exact,
  // and adding 2^23 rounds the (< 2^(mbits+1)) result to an integer, half to even.
  const float scaled =
      mul_rn(f32_from_bits(a), f32_from_bits((127u + f.bias - 1u + f.mbits) << 23));
  const uint32_t sub = f32_bits(add_rn(scaled, f32_from_bits(0x4B000000u))) - 0x4B000000u;
  // Normal range: round exponent|fraction to mbits fraction bits, half to even (a carry
  // increments the exponent), rebias 127 -> bias, saturate. (Huge |y| cannot wrap: r <
  // 2^(9+mbits).)
  const uint32_t drop = 23u - f.mbits;
  const uint32_t r = (a + ((1u << (drop - 1u)) - 1u) + ((a >> drop) & 1u)) >> drop;
  uint32_t nrm = r - ((127u - f.bias) << f.mbits);
  nrm = nrm > max_code ? max_code : nrm;
  const uint32_t code = a < min_normal_bits ? sub : nrm;
  // A zero result is +0: the sign bit only for non-zero codes.
  return code | (code == 0 ? 0u : (u >> 31) << nbits);
}

// Value of a code of format f as fp32 (exact); for round-trip checks and decoders.
SQ_HD float mx_decode_element(uint32_t code, mx_format f) {
  const uint32_t nbits = f.ebits + f.mbits;
  const uint32_t e = (code >> f.mbits) & ((1u << f.ebits) - 1u);
  const uint32_t m = code & ((1u << f.mbits) - 1u);
  float v;
  if (e == 0) {  // m * 2^(1 - bias - mbits)
    v = mul_rn(static_cast<float>(m), f32_from_bits((128u - f.bias - f.mbits) << 23));
  } else {  // (1 + m / 2^mbits) * 2^(e - bias)
    v = f32_from_bits(((e + 127u - f.bias) << 23) | (m << (23u - f.mbits)));
  }
  return (code >> nbits) & 1u ? -v : v;
}

// e8m0 byte -> 2^(b-127) as fp32 (b = 0 -> 2^-127, exact subnormal). b = 255 (NaN) is the
// caller's error; it decodes to a quiet NaN here.
SQ_HD float e8m0_decode(uint8_t b) {
  if (b == 255) return f32_from_bits(0x7FC00000u);
  if (b == 0) return f32_from_bits(0x00400000u);
  return f32_from_bits(static_cast<uint32_t>(b) << 23);
}

// Packed bytes of n codes (n even for FP4, n % 4 == 0 for FP6).
SQ_HD uint64_t mx_packed_bytes(uint64_t n, mx_format f) {
  return f.code_bits == 4 ? n / 2 : 3 * n / 4;
}

// Packs n codes (see mx_packed_bytes): FP4 byte k = code[2k] | code[2k+1] << 4; FP6 each 4
// codes v0..v3 -> w = v0 | v1<<6 | v2<<12 | v3<<18 written as 3 little-endian bytes (§5.7 step 6).
SQ_HD void mx_pack_codes(const uint8_t* codes, uint32_t n, mx_format f, uint8_t* out) {
  if (f.code_bits == 4) {
    for (uint32_t k = 0; k < n / 2; ++k)
      out[k] = static_cast<uint8_t>(codes[2 * k] | (codes[2 * k + 1] << 4));
  } else {
    for (uint32_t g = 0; g < n / 4; ++g) {
      const uint32_t w = static_cast<uint32_t>(codes[4 * g]) | (codes[4 * g + 1] << 6) |
                         (codes[4 * g + 2] << 12) | (codes[4 * g + 3] << 18);
      out[3 * g] = static_cast<uint8_t>(w & 0xFFu);
      out[3 * g + 1] = static_cast<uint8_t>((w >> 8) & 0xFFu);
      out[3 * g + 2] = static_cast<uint8_t>((w >> 16) & 0xFFu);
    }
  }
}

// Encodes one block of n <= 32 finite fp32 values x[0..n) (a last partial block is n < 32; its
// zero padding only affects the amax, which it does not change). Writes
// mx_packed_bytes(n, f) bytes to `packed` and returns the e8m0 scale byte.
SQ_HD uint8_t mx_encode_block(const float* x, uint32_t n, mx_format f, uint8_t* packed) {
  uint32_t amax_bits = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t ab = abs_bits(x[i]);
    amax_bits = ab > amax_bits ? ab : amax_bits;
  }
  const int32_t k = mx_shared_exponent(f32_from_bits(amax_bits), f);
  const float s = mx_scale_divisor(k);
  uint8_t codes[k_mx_block];
  for (uint32_t i = 0; i < n; ++i)
    codes[i] = static_cast<uint8_t>(mx_encode_element(div_rn(x[i], s), f));
  mx_pack_codes(codes, n, f, packed);
  return mx_scale_byte(k);
}

// The same block read straight from a source buffer of kind D (element i at src[i]).
template <src_kind D>
SQ_HD uint8_t mx_encode_block_src(const void* src, uint32_t n, mx_format f, uint8_t* packed) {
  float x[k_mx_block];
  for (uint32_t i = 0; i < n; ++i) x[i] = load_src<D>(src, i);
  return mx_encode_block(x, n, f, packed);
}

}  // namespace shardquant
