// Scalar numeric helpers shared by every quantizer (formats.md §5.0, §12.1, §12.2): bit casts,
// exact fp32 <-> bf16/f16 conversions with round-to-nearest-even and subnormals, explicit fp32
// arithmetic (RN32), round-half-even to an integer, and the R(c) constants.
// Host and device (SQ_HD); depends on nothing but <cstdint> and <cstring>: no <cmath>, whose
// functions may round differently on the GPU, no casts that round implicitly.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/host_device.h"

namespace shardquant {

// The three dtypes a weight can have when it reaches quantization (formats.md §5.0 "D").
enum class src_kind : uint8_t { f32, bf16, f16 };

// ---- bit casts -------------------------------------------------------------------------------

SQ_HD uint32_t f32_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

SQ_HD float f32_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// ---- constants (fp32 bit patterns of formats.md §5.0) ----------------------------------------

inline constexpr uint32_t k_eps_bits = 0x34000000u;     // 2^-23
inline constexpr uint32_t k_r448_bits = 0x3B124925u;    // RN32(1/448)
inline constexpr uint32_t k_r127_5_bits = 0x3C008081u;  // RN32(1/127.5)
inline constexpr uint32_t k_r7_5_bits = 0x3E088889u;    // RN32(1/7.5)
inline constexpr uint32_t k_r15_bits = 0x3D888889u;     // RN32(1/15)
inline constexpr uint32_t k_f32_inf_bits = 0x7F800000u;
inline constexpr uint32_t k_f32_abs_mask = 0x7FFFFFFFu;

SQ_HD float k_eps() {
  return f32_from_bits(k_eps_bits);
}
SQ_HD float k_r448() {
  return f32_from_bits(k_r448_bits);
}
SQ_HD float k_r7_5() {
  return f32_from_bits(k_r7_5_bits);
}
SQ_HD float k_r15() {
  return f32_from_bits(k_r15_bits);
}

// ---- explicit fp32 arithmetic: RN32 of the exact result ---------------------------------------
// On the host (x86-64 SSE, -ffp-contract=off) the operators are IEEE round-to-nearest-even; on the
// device the _rn intrinsics say so explicitly and can never be fused into an FMA.

SQ_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

SQ_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

SQ_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

SQ_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

// ---- classification on bits (NaN-safe, vectorizes) ---------------------------------------------

SQ_HD uint32_t abs_bits(float x) {
  return f32_bits(x) & k_f32_abs_mask;
}
SQ_HD bool is_finite(float x) {
  return abs_bits(x) < k_f32_inf_bits;
}
SQ_HD float abs_f(float x) {
  return f32_from_bits(abs_bits(x));
}
SQ_HD float copysign_f(float mag, float sgn) {
  return f32_from_bits((f32_bits(mag) & k_f32_abs_mask) | (f32_bits(sgn) & 0x80000000u));
}
// Max/min of two finite floats without the NaN semantics of std::fmax (inputs are checked first).
SQ_HD float max_f(float a, float b) {
  return a < b ? b : a;
}
SQ_HD float min_f(float a, float b) {
  return b < a ? b : a;
}

// ---- round half to even to an integer (formats.md §12.1) ---------------------------------------
// For |x| < 2^23, x + 2^23 has an ulp of 1, so the hardware addition (round-to-nearest-even) does
// the rounding; subtracting 2^23 back is exact. |x| >= 2^23 is already an integer. The sign is
// put back so -0.3 -> -0 (irrelevant for integers, kept for symmetry). NaN stays NaN.
SQ_HD float rne_f(float x) {
  const float two23 = f32_from_bits(0x4B000000u);
  const float a = abs_f(x);
  const float r = sub_rn(add_rn(a, two23), two23);
  return a < two23 ? copysign_f(r, x) : x;
}

// rne(x) clamped to [lo, hi], as an int. The clamp happens on the float, so a huge x never
// reaches the conversion (whose out-of-range behaviour differs between host and device).
SQ_HD int32_t rne_clamp_i(float x, int32_t lo, int32_t hi) {
  float r = rne_f(x);
  const float flo = static_cast<float>(lo);  // exact: |lo|, |hi| are small integers
  const float fhi = static_cast<float>(hi);
  r = r < flo ? flo : r;
  r = r > fhi ? fhi : r;
  return static_cast<int32_t>(r);  // exact: r is an integer in [lo, hi]
}

// ---- bf16 (formats.md §12.2) -------------------------------------------------------------------

SQ_HD uint16_t to_bf16_rne(float x) {
  const uint32_t u = f32_bits(x);
  const uint32_t r = ((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16) & 0xFFFFu;
  return static_cast<uint16_t>((u & k_f32_abs_mask) > k_f32_inf_bits ? 0x7FC0u : r);
}

SQ_HD float bf16_to_f32(uint16_t h) {
  return f32_from_bits(static_cast<uint32_t>(h) << 16);
}

// ---- f16: IEEE binary16, round-to-nearest-even, subnormals, overflow (>= 65520) -> Inf ----------

// Every path is computed and one selected (no branches), so loops over these vectorize.
SQ_HD uint16_t to_f16_rne(float x) {
  uint32_t u = f32_bits(x);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  // >= 65536 (or Inf/NaN): Inf, or a quiet NaN.
  const uint32_t big = u > k_f32_inf_bits ? 0x7E00u : 0x7C00u;
  // Below 2^-14, an f16 subnormal (or zero): adding 0.5 makes the fp32 ulp exactly the f16
  // subnormal step 2^-24, so the hardware addition rounds to nearest even; the low bits then hold
  // the f16 mantissa.
  const uint32_t magic = 126u << 23;
  const uint32_t sub = f32_bits(add_rn(f32_from_bits(u), f32_from_bits(magic))) - magic;
  // Normal range: rebias the exponent ((15 - 127) << 23, mod 2^32) and round the 13 dropped bits to
  // nearest even; a carry past exponent 30 gives 0x7C00 = Inf (x >= 65520).
  const uint32_t nrm = (u + 0xC8000FFFu + ((u >> 13) & 1u)) >> 13;
  const uint32_t o = u >= (143u << 23) ? big : (u < (113u << 23) ? sub : nrm);
  return static_cast<uint16_t>(o | (sign >> 16));
}

SQ_HD float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7FFFu;
  const uint32_t special = 0x7F800000u | (em & 0x3FFu) << 13;  // Inf / NaN
  const uint32_t nrm = (em << 13) + (112u << 23);
  // Subnormal or zero: em * 2^-24, exact in fp32.
  const uint32_t sub =
      f32_bits(mul_rn(static_cast<float>(static_cast<int32_t>(em)), f32_from_bits(0x33800000u)));
  const uint32_t o = em >= 0x7C00u ? special : (em >= 0x0400u ? nrm : sub);
  return f32_from_bits(o | sign);
}

// ---- source dtype access ------------------------------------------------------------------------

// Exact widening of element i of a source buffer of kind D to fp32.
template <src_kind D>
SQ_HD float load_src(const void* base, uint64_t i) {
  if constexpr (D == src_kind::f32) {
    return static_cast<const float*>(base)[i];
  } else if constexpr (D == src_kind::bf16) {
    return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
  } else {
    return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
  }
}

// round_D(x) of formats.md §5.0: fp32 -> D (RNE) -> back to fp32.
template <src_kind D>
SQ_HD float round_src(float x) {
  if constexpr (D == src_kind::f32) {
    return x;
  } else if constexpr (D == src_kind::bf16) {
    return bf16_to_f32(to_bf16_rne(x));
  } else {
    return f16_to_f32(to_f16_rne(x));
  }
}

SQ_HD float round_src(src_kind d, float x) {
  switch (d) {
    case src_kind::bf16:
      return round_src<src_kind::bf16>(x);
    case src_kind::f16:
      return round_src<src_kind::f16>(x);
    default:
      return x;
  }
}

SQ_HD uint32_t src_bytes(src_kind d) {
  return d == src_kind::f32 ? 4u : 2u;
}

}  // namespace shardquant
