// Progressive int4_fp8 (W4A8) math of formats.md §10: stage 1 is the per-tensor fp8 quantizer
// (kernels/fp8.h), stage 2 quantizes the fp8 *values* of one row to int4 per row (D = F32) and
// packs them in the AWQ nibble order [0,2,4,6,1,3,5,7]. Host and device (SQ_HD); depends only on
// kernels/fp8.h and kernels/int_quant.h.
#pragma once

#include <cstdint>

#include "kernels/fp8.h"
#include "kernels/int_quant.h"

namespace shardquant {

// Stage 1 of one element: the fp8 value (range +-448) of the fp8 code of w (s_div as in
// fp8_quantize_element).
template <src_kind D>
SQ_HD float int4_fp8_stage1_value(float w, float s_div) {
  return fp8_e4m3fn_decode(fp8_quantize_element<D>(w, s_div));
}

// Stage 2 of one row of n fp8 values f[0..n): returns s2 = max(RN32(amax * R(7.5)), EPS) and writes
// ceil(n/8) packed words (AWQ order, missing positions 0).
SQ_HD float int4_fp8_stage2_row(const float* f, uint64_t n, uint32_t* words) {
  uint32_t m = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const uint32_t ab = abs_bits(f[i]);
    m = ab > m ? ab : m;
  }
  const float s2 = int4_scale<src_kind::f32>(f32_from_bits(m));
  const float inv = reciprocal_rn(s2);
  for (uint64_t c = 0; c * 8 < n; ++c) {
    int32_t q[8];
    const uint32_t cnt = n - c * 8 < 8 ? static_cast<uint32_t>(n - c * 8) : 8u;
    for (uint32_t i = 0; i < cnt; ++i) q[i] = int4_code(f[c * 8 + i], inv);
    words[c] = pack_nibbles(q, cnt, nibble_order::int4_fp8);
  }
  return s2;
}

}  // namespace shardquant
