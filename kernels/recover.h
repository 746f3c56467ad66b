// Element math of input recovery (formats.md §7.2.2, §7.3.2): DeepSeek-style block FP8 element
// dequantization with chunked ("presharded") scale rows, scale widening (F32/BF16/F16/F8_E8M0),
// and compressed-tensors pack-quantized unpacking (values along a row, zero points along dim 0).
// Host and device (SQ_HD); depends only on kernels/numeric.h, fp8.h and mx.h.
#pragma once

#include <cstdint>

#include "kernels/fp8.h"
#include "kernels/mx.h"
#include "kernels/numeric.h"

namespace shardquant {

// Scale storage kinds a recovery source may have.
enum class scale_kind : uint8_t { f32, bf16, f16, e8m0 };

// Exact fp32 value of scale element i (e8m0 255 decodes to NaN: callers check for it first).
SQ_HD float load_scale(scale_kind k, const void* base, uint64_t i) {
  switch (k) {
    case scale_kind::f32:
      return static_cast<const float*>(base)[i];
    case scale_kind::bf16:
      return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case scale_kind::f16:
      return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
    default:
      return e8m0_decode(static_cast<const uint8_t*>(base)[i]);
  }
}

// Element kind of an FP8 weight.
enum class fp8_kind : uint8_t { e4m3fn, e5m2 };

SQ_HD bool fp8_is_nan(fp8_kind k, uint8_t c) {
  return k == fp8_kind::e4m3fn ? fp8_e4m3fn_is_nan(c) : fp8_e5m2_is_nan(c);
}
SQ_HD float fp8_decode(fp8_kind k, uint8_t c) {
  return k == fp8_kind::e4m3fn ? fp8_e4m3fn_decode(c) : fp8_e5m2_decode(c);
}

// Geometry of a DeepSeek-style block scale (§7.2.2): block [bh, bw], chunk rows cr (= R when not
// presharded), nb = ceil(cr / bh) scale rows per chunk, scale columns ceil(C / bw).
struct fp8_block_geometry {
  uint64_t bh;
  uint64_t bw;
  uint64_t chunk_rows;
  uint64_t blocks_per_chunk;  // nb
  uint64_t scale_cols;
};

// Scale row of weight row r: (r div cr) * nb + (r mod cr) div bh.
SQ_HD uint64_t fp8_block_scale_row(const fp8_block_geometry& g, uint64_t r) {
  return (r / g.chunk_rows) * g.blocks_per_chunk + (r % g.chunk_rows) / g.bh;
}

// W32 = RN32(fp8(code) * s).
SQ_HD float fp8_dequant_element(fp8_kind k, uint8_t code, float s) {
  return mul_rn(fp8_decode(k, code), s);
}

// ---- compressed-tensors pack-quantized (§7.3.2) -----------------------------------------------

// Stored unsigned value of element i of a packed line of `bits` (4 or 8) per value: word
// (i*b) div 32, bit offset (i*b) mod 32.
SQ_HD uint32_t ct_packed_stored(const uint32_t* words, uint64_t i, uint32_t bits) {
  const uint64_t bit = i * bits;
  return (words[bit >> 5] >> (bit & 31u)) & ((1u << bits) - 1u);
}

// Signed value: stored - 2^(b-1).
SQ_HD int32_t ct_packed_value(const uint32_t* words, uint64_t i, uint32_t bits) {
  return static_cast<int32_t>(ct_packed_stored(words, i, bits)) - (1 << (bits - 1));
}

// Zero point of (row o, group g) from the [ceil(out*b/32), G] matrix packed down each column.
SQ_HD int32_t ct_packed_zero_point(const uint32_t* zp_words, uint64_t groups, uint64_t o,
                                   uint64_t g, uint32_t bits) {
  const uint64_t bit = o * bits;
  const uint32_t w = zp_words[(bit >> 5) * groups + g];
  return static_cast<int32_t>((w >> (bit & 31u)) & ((1u << bits) - 1u)) - (1 << (bits - 1));
}

// W32 = RN32((q - zp) * s); q - zp is a small exact integer.
SQ_HD float int_dequant_element(int32_t q, int32_t zp, float s) {
  return mul_rn(static_cast<float>(q - zp), s);
}

}  // namespace shardquant
