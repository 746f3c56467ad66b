// Integer quantizer math (formats.md §5.4, §5.5, §5.6, §10): int8 per-tensor, int4 symmetric and
// uint4 asymmetric scales with source-dtype rounding (TC3) and the division rules of TC4, zero
// points, element codes, and the 8-codes-per-I32 packing orders (sequential and int4_fp8's).
// Host and device (SQ_HD); depends only on kernels/numeric.h.
#pragma once

#include <cstdint>

#include "kernels/numeric.h"

namespace shardquant {

// ---- int8, symmetric per-tensor (§5.4)
// -----------------------------------------------------------

// s = max(round_D(RN32(amax / 127.5)), EPS): true division (per-tensor, TC4), rounded to D (TC3).
template <src_kind D>
SQ_HD float int8_scale(float amax) {
  return max_f(round_src<D>(div_rn(amax, 127.5f)), k_eps());
}

// q = clamp(rne(RN32(w * inv)), -128, 127) with inv = RN32(1 / s).
SQ_HD int32_t int8_code(float w, float inv) {
  return rne_clamp_i(mul_rn(w, inv), -128, 127);
}

// The value of an int8 code as fp32, the input of a progressive pair's second stage (Quark's
// `.float()` of the int8 codes: a zero code is +0). GCC 12 rewrites `(float)(int)x` into a float
// truncation, which keeps the -0 of a negative x that rounds to 0 (seen in the vectorized loop,
// and a `+ 0.0f` was folded away); going through q + 256 (exact, in [128, 383]) and subtracting
// 256 again gives +0 for q = 0 and cannot be rewritten that way.
SQ_HD float int8_code_value(float w, float inv) {
  return sub_rn(static_cast<float>(int8_code(w, inv) + 256), 256.0f);
}

// ---- int4, symmetric (§5.5) ---------------------------------------------------------------------

// s = max(round_D(RN32(amax * R(7.5))), EPS) (reciprocal multiply, TC4; rounded to D, TC3).
// int4_fp8 stage 2 uses D = F32.
template <src_kind D>
SQ_HD float int4_scale(float amax) {
  return max_f(round_src<D>(mul_rn(amax, k_r7_5())), k_eps());
}

SQ_HD float reciprocal_rn(float s) {
  return div_rn(1.0f, s);
}

// q = clamp(rne(RN32(w * inv)), -8, 7).
SQ_HD int32_t int4_code(float w, float inv) {
  return rne_clamp_i(mul_rn(w, inv), -8, 7);
}

// ---- uint4, asymmetric with an int32 zero point (§5.5)
// -------------------------------------------

struct uint4_params {
  float scale;   // s, stored as F32
  float inv;     // RN32(1 / s)
  int32_t zero;  // zp in [0, 15], stored as I32
  float zero_f;  // zp as float (exact)
};

// From the unit's min and max (exact D values widened to fp32; NaN-free):
// mn = min(min, 0), mx = max(max, 0); d = round_D(RN32(mx - mn)); s = max(round_D(RN32(d * R(15))),
// EPS); t = round_D(RN32(mn / s)); zp = clamp(-rne(t), 0, 15).
template <src_kind D>
SQ_HD uint4_params uint4_params_from_range(float lo, float hi) {
  const float mn = min_f(lo, 0.0f);
  const float mx = max_f(hi, 0.0f);
  const float d = round_src<D>(sub_rn(mx, mn));
  const float s = max_f(round_src<D>(mul_rn(d, k_r15())), k_eps());
  const float t = round_src<D>(div_rn(mn, s));
  // -rne(t) clamped to [0, 15] == clamp(rne(-t), 0, 15): rne is symmetric.
  const int32_t zp = rne_clamp_i(-t, 0, 15);
  return {s, reciprocal_rn(s), zp, static_cast<float>(zp)};
}

// q = clamp(rne(RN32(RN32(w * inv) + zp)), 0, 15) — two separate roundings.
SQ_HD int32_t uint4_code(float w, float inv, float zero_f) {
  return rne_clamp_i(add_rn(mul_rn(w, inv), zero_f), 0, 15);
}

// ---- packing (§5.6, §10 step 4)
// ------------------------------------------------------------------

// Nibble i of a word holds element order[i] of its 8 elements.
// int4_fp8: Quark's pack order with reorder=True, [0,2,4,6,1,3,5,7]: int4_fp8 and the int4/uint4
// second stage of every progressive pair (per-group: along the transposed rows).
enum class nibble_order : uint8_t { sequential, int4_fp8 };

// Element index held by nibble i.
SQ_HD uint32_t nibble_source(nibble_order o, uint32_t i) {
  // [0,1,2,3,4,5,6,7] or [0,2,4,6,1,3,5,7]
  return o == nibble_order::sequential ? i : (i < 4 ? 2 * i : 2 * (i - 4) + 1);
}

// Packs up to 8 codes (n <= 8; missing positions are 0 nibbles) into one word. int4 codes are
// stored as 4-bit two's complement (q & 0xF), uint4 codes as they are: both are `q & 0xF`.
SQ_HD uint32_t pack_nibbles(const int32_t* q, uint32_t n, nibble_order o) {
  uint32_t w = 0;
  for (uint32_t i = 0; i < 8; ++i) {
    const uint32_t src = nibble_source(o, i);
    if (src < n) w |= (static_cast<uint32_t>(q[src]) & 0xFu) << (4 * i);
  }
  return w;
}

// Signed value of nibble i of a word for the given kind (for decoders and tests).
SQ_HD int32_t unpack_int4(uint32_t w, uint32_t i) {
  const int32_t v = static_cast<int32_t>((w >> (4 * i)) & 0xFu);
  return v >= 8 ? v - 16 : v;
}
SQ_HD int32_t unpack_uint4(uint32_t w, uint32_t i) {
  return static_cast<int32_t>((w >> (4 * i)) & 0xFu);
}

// ---- per-unit helpers (a group or a whole row, contiguous in the source)
// --------------------------

// Exact amax of n source elements; also reports the index of the first non-finite one (n if none).
template <src_kind D>
SQ_HD float unit_amax(const void* src, uint32_t n, uint32_t* first_bad) {
  uint32_t m = 0;
  uint32_t bad = n;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t ab = abs_bits(load_src<D>(src, i));
    if (ab >= k_f32_inf_bits && bad == n) bad = i;
    m = ab > m ? ab : m;
  }
  *first_bad = bad;
  return f32_from_bits(m);
}

// int4 symmetric codes of one unit of n finite source elements: returns the scale, writes q[0..n).
template <src_kind D>
SQ_HD float int4_unit(const void* src, uint32_t n, int32_t* q) {
  uint32_t bad;
  const float s = int4_scale<D>(unit_amax<D>(src, n, &bad));
  const float inv = reciprocal_rn(s);
  for (uint32_t i = 0; i < n; ++i) q[i] = int4_code(load_src<D>(src, i), inv);
  return s;
}

// uint4 asymmetric codes of one unit of n finite source elements: returns scale and zero point,
// writes q[0..n).
template <src_kind D>
SQ_HD uint4_params uint4_unit(const void* src, uint32_t n, int32_t* q) {
  float lo = 0.0f, hi = 0.0f;  // the min/max with 0 included, as §5.5 step 1 needs anyway
  for (uint32_t i = 0; i < n; ++i) {
    const float w = load_src<D>(src, i);
    lo = min_f(lo, w);
    hi = max_f(hi, w);
  }
  const uint4_params p = uint4_params_from_range<D>(lo, hi);
  for (uint32_t i = 0; i < n; ++i) q[i] = uint4_code(load_src<D>(src, i), p.inv, p.zero_f);
  return p;
}

}  // namespace shardquant
