// Device-specialised forms of the hot element functions of the shared math headers
// (numeric.h, fp8.h, int_quant.h), built on Hopper's conversion instructions (cvt.*x2 pack two
// elements per instruction) and on float compares instead of the integer bit tricks the headers
// use for CPU vectorisation. Every function here returns exactly what its shared counterpart
// returns, bit for bit, on EVERY input (NaN and Inf included): tests/gpu/fast_math_gpu_test.cpp
// checks that exhaustively (all 2^32 fp32 patterns, all f16 / fp8 codes) through
// kernels/cuda/fast_math_check.cu. No -ftz, no FMA: only cvt.rn, compares, selects and _rn ops.
// For .cu files only; depends on the shared math headers and nothing else.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/fp8.h"
#include "kernels/int_quant.h"
#include "kernels/numeric.h"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 890
#error "kernels/cuda/fast_math.cuh needs sm_89 or newer (cvt.rn.satfinite.e4m3x2.f32)"
#endif

namespace shardquant::gpu::detail::fast {

__device__ __forceinline__ bool is_nan_f(float x) {
  return abs_bits(x) > k_f32_inf_bits;
}

// ---- round_src<D> on a pair -------------------------------------------------------------------

// round_src<bf16>(a), round_src<bf16>(b): cvt.rn.bf16x2.f32 is IEEE RNE with subnormals and
// overflow to Inf, as to_bf16_rne(); a NaN becomes to_bf16_rne's 0x7FC0 (sign dropped).
__device__ __forceinline__ void round_bf16x2(float& a, float& b) {
  uint32_t p;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(p) : "f"(b), "f"(a));  // a -> low half
  const uint32_t ra = p << 16, rb = p & 0xFFFF0000u;
  a = f32_from_bits(is_nan_f(a) ? 0x7FC00000u : ra);
  b = f32_from_bits(is_nan_f(b) ? 0x7FC00000u : rb);
}

// f16 bits -> fp32 (exact), as f16_to_f32() for finite and infinite codes.
__device__ __forceinline__ float f16_bits_to_f32_hw(uint16_t h) {
  float r;
  asm("cvt.f32.f16 %0, %1;" : "=f"(r) : "h"(h));
  return r;
}

// round_src<f16>(a), round_src<f16>(b): cvt.rn.f16x2.f32 rounds to nearest even with f16
// subnormals and overflow (>= 65520) to Inf, as to_f16_rne(); a NaN becomes to_f16_rne's 0x7E00
// with the sign kept, which f16_to_f32 widens to 0x7FC00000 | sign.
__device__ __forceinline__ void round_f16x2(float& a, float& b) {
  uint32_t p;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(p) : "f"(b), "f"(a));  // a -> low half
  const float ra = f16_bits_to_f32_hw(static_cast<uint16_t>(p & 0xFFFFu));
  const float rb = f16_bits_to_f32_hw(static_cast<uint16_t>(p >> 16));
  const uint32_t na = 0x7FC00000u | (f32_bits(a) & 0x80000000u);
  const uint32_t nb = 0x7FC00000u | (f32_bits(b) & 0x80000000u);
  a = is_nan_f(a) ? f32_from_bits(na) : ra;
  b = is_nan_f(b) ? f32_from_bits(nb) : rb;
}

template <src_kind D>
__device__ __forceinline__ void round_src2(float& a, float& b) {
  if constexpr (D == src_kind::bf16) {
    round_bf16x2(a, b);
  } else if constexpr (D == src_kind::f16) {
    round_f16x2(a, b);
  }
}

// f16_to_f32(): the hardware widening for finite and infinite codes; NaN codes keep the header's
// payload formula.
__device__ __forceinline__ float f16_to_f32(uint16_t h) {
  const uint32_t em = h & 0x7FFFu;
  const uint32_t special =
      (static_cast<uint32_t>(h & 0x8000u) << 16) | 0x7F800000u | (em & 0x3FFu) << 13;
  return em > 0x7C00u ? f32_from_bits(special) : f16_bits_to_f32_hw(h);
}

// ---- fp8 e4m3fn --------------------------------------------------------------------------------

// fp8_e4m3fn_encode(a) | fp8_e4m3fn_encode(b) << 8. cvt.rn.satfinite.e4m3x2.f32 rounds to
// nearest even (subnormals included) and saturates finite and infinite values to +-448; the
// header maps a NaN to 0x7E | sign, which min(|y|, 448) with the sign put back reproduces
// (fminf returns 448 for a NaN operand) before the conversion.
__device__ __forceinline__ uint32_t fp8_e4m3fn_encode2(float a, float b) {
  const float m = f32_from_bits(k_fp8_max_bits);
  const uint32_t ua = f32_bits(a), ub = f32_bits(b);
  const float ca = f32_from_bits(f32_bits(fminf(abs_f(a), m)) | (ua & 0x80000000u));
  const float cb = f32_from_bits(f32_bits(fminf(abs_f(b), m)) | (ub & 0x80000000u));
  uint16_t p;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(p) : "f"(cb), "f"(ca));  // a -> low byte
  return p;
}

// fp8_e4m3fn_decode() of the two codes in the low 16 bits of `c2` (byte 0 -> lo, byte 1 -> hi):
// cvt.rn.f16x2.e4m3x2 is exact; NaN codes decode to the header's 0x7FC00000 | sign.
__device__ __forceinline__ void fp8_e4m3fn_decode2(uint32_t c2, float& lo, float& hi) {
  uint32_t h2;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h2) : "h"(static_cast<uint16_t>(c2 & 0xFFFFu)));
  const float l = f16_bits_to_f32_hw(static_cast<uint16_t>(h2 & 0xFFFFu));
  const float h = f16_bits_to_f32_hw(static_cast<uint16_t>(h2 >> 16));
  const uint32_t c0 = c2 & 0xFFu, c1 = (c2 >> 8) & 0xFFu;
  lo = (c0 & 0x7Fu) == 0x7Fu ? f32_from_bits(0x7FC00000u | (c0 & 0x80u) << 24) : l;
  hi = (c1 & 0x7Fu) == 0x7Fu ? f32_from_bits(0x7FC00000u | (c1 & 0x80u) << 24) : h;
}

// ---- rne_clamp_i --------------------------------------------------------------------------------

// rne_clamp_i(x, lo, hi) for integer bounds with -2^21 < lo <= hi < 2^21: clamp on the float
// (rounding is monotone and the bounds are integers, so clamp-then-round == round-then-clamp),
// then x + 1.5 * 2^23 rounds to an integer (half to even) in the low mantissa bits: one FADD
// instead of the header's two FADDs, sign fix-up and float->int conversion. The header's NaN
// result is (int)NaN, which the device conversion makes 0.
__device__ __forceinline__ int32_t rne_clamp_i(float x, float lo, float hi) {
  float r = x < lo ? lo : x;  // NaN passes both compares
  r = r > hi ? hi : r;
  const int32_t q = static_cast<int32_t>(f32_bits(add_rn(r, 12582912.0f)) - 0x4B400000u);
  return x != x ? 0 : q;
}

__device__ __forceinline__ int32_t int8_code(float w, float inv) {
  return rne_clamp_i(mul_rn(w, inv), -128.0f, 127.0f);
}
__device__ __forceinline__ int32_t int4_code(float w, float inv) {
  return rne_clamp_i(mul_rn(w, inv), -8.0f, 7.0f);
}
__device__ __forceinline__ int32_t uint4_code(float w, float inv, float zero_f) {
  return rne_clamp_i(add_rn(mul_rn(w, inv), zero_f), 0.0f, 15.0f);
}

// round_src<D>(x) of one value (the pair form with a dummy partner).
template <src_kind D>
__device__ __forceinline__ float round_src1(float x) {
  float dummy = 0.0f;
  round_src2<D>(x, dummy);
  return x;
}

// ---- per-unit scales (int_quant.h), the same operations with the fast:: pieces above ------------

// int4_scale<D>(amax).
template <src_kind D>
__device__ __forceinline__ float int4_scale(float amax) {
  return max_f(round_src1<D>(mul_rn(amax, k_r7_5())), k_eps());
}

// uint4_params_from_range<D>(lo, hi).
template <src_kind D>
__device__ __forceinline__ uint4_params uint4_params_from_range(float lo, float hi) {
  const float mn = min_f(lo, 0.0f);
  const float mx = max_f(hi, 0.0f);
  const float d = round_src1<D>(sub_rn(mx, mn));
  const float s = max_f(round_src1<D>(mul_rn(d, k_r15())), k_eps());
  const float t = round_src1<D>(div_rn(mn, s));
  const int32_t zp = rne_clamp_i(-t, 0.0f, 15.0f);
  return {s, reciprocal_rn(s), zp, static_cast<float>(zp)};
}

// ---- composite element functions ---------------------------------------------------------------

// fp8_quantize_element<D>(a, s_div) | fp8_quantize_element<D>(b, s_div) << 8.
template <src_kind D>
__device__ __forceinline__ uint32_t fp8_quantize2(float a, float b, float s_div) {
  float ya = div_rn(a, s_div), yb = div_rn(b, s_div);
  round_src2<D>(ya, yb);
  return fp8_e4m3fn_encode2(ya, yb);
}

// Eight fp8_quantize_element<D>(x[i], s_div) codes into b[0..8).
template <src_kind D>
__device__ __forceinline__ void fp8_quantize8(const float (&x)[8], float s_div, uint8_t (&b)[8]) {
#pragma unroll
  for (int i = 0; i < 8; i += 2) {
    const uint32_t p = fp8_quantize2<D>(x[i], x[i + 1], s_div);
    b[i] = static_cast<uint8_t>(p & 0xFFu);
    b[i + 1] = static_cast<uint8_t>(p >> 8);
  }
}

// int4_fp8_stage1_value<D>(x[i], s_div) for the eight values, in place.
template <src_kind D>
__device__ __forceinline__ void int4_fp8_stage1_8(float (&x)[8], float s_div) {
#pragma unroll
  for (int i = 0; i < 8; i += 2)
    fp8_e4m3fn_decode2(fp8_quantize2<D>(x[i], x[i + 1], s_div), x[i], x[i + 1]);
}

}  // namespace shardquant::gpu::detail::fast
