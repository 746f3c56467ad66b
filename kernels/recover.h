// Element math of input recovery (formats.md §7.2.2, §7.3.2): DeepSeek-style block FP8 element
// dequantization with chunked ("presharded") scale rows, scale widening (F32/BF16/F16/F8_E8M0),
// and compressed-tensors pack-quantized unpacking (values along a row, zero points along dim 0),
// and the FP4-packed sources (kernels/FORMATS-fp4-sources.md): compressed-tensors
// nvfp4-/mxfp4-pack-quantized and DeepSeek-V4-style MXFP4 experts.
// Host and device (SQ_HD); depends only on kernels/numeric.h, fp8.h and mx.h.
#pragma once

#include <cstdint>

#include "kernels/fp8.h"
#include "kernels/mx.h"
#include "kernels/numeric.h"

namespace shardquant {

// Scale storage kinds a recovery source may have.
enum class scale_kind : uint8_t { f32, bf16, f16, e8m0, e4m3 };

// Exact fp32 value of scale element i (e8m0 255 and the e4m3 NaN codes decode to NaN: callers
// check for them first; see scale_code_is_nan).
SQ_HD float load_scale(scale_kind k, const void* base, uint64_t i) {
  switch (k) {
    case scale_kind::f32:
      return static_cast<const float*>(base)[i];
    case scale_kind::bf16:
      return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case scale_kind::f16:
      return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case scale_kind::e4m3:
      return fp8_e4m3fn_decode(static_cast<const uint8_t*>(base)[i]);
    default:
      return e8m0_decode(static_cast<const uint8_t*>(base)[i]);
  }
}

// Whether scale element i is a NaN code (e8m0 0xFF, e4m3 S.1111.111); float scales: false.
SQ_HD bool scale_code_is_nan(scale_kind k, const void* base, uint64_t i) {
  const uint8_t c = static_cast<const uint8_t*>(base)[i];
  if (k == scale_kind::e8m0) return c == 0xFFu;
  if (k == scale_kind::e4m3) return fp8_e4m3fn_is_nan(c);
  return false;
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

// ---- FP4-packed sources (kernels/FORMATS-fp4-sources.md) --------------------------------------

// E2M1 code of element j of a packed row: byte j/2, low nibble for even j, high nibble for odd j
// (compressed-tensors unpack_fp4_from_uint8 and Quark's dq_uint8_mxfp4_to_half agree).
SQ_HD uint32_t fp4_packed_code(const uint8_t* row, uint64_t j) {
  return (row[j >> 1] >> ((j & 1u) * 4u)) & 0xFu;
}

// Exact value of an E2M1 code (code 8 is -0), kernels/mx.h's element decoder.
SQ_HD float fp4_value(uint32_t code) {
  return mx_decode_element(code, mx_fp4_e2m1());
}

// x rounded (RNE) to bf16 / f16 and widened back: the value a 16-bit result tensor holds.
SQ_HD float round_bf16(float x) {
  return bf16_to_f32(to_bf16_rne(x));
}
SQ_HD float round_f16(float x) {
  return f16_to_f32(to_f16_rne(x));
}

// nvfp4-pack-quantized block scale: compressed-tensors casts the (fp32-widened) weight_scale to
// the bf16 of the unpacked values, then divides by the F32 global scale in fp32.
SQ_HD float nvfp4_effective_scale(float weight_scale, float global_scale) {
  return div_rn(round_bf16(weight_scale), global_scale);
}

// nvfp4-pack-quantized element: bf16(RN32(q * eff)) (fp32 product, then the cast to bf16).
SQ_HD float nvfp4_dequant_element(uint32_t code, float eff) {
  return round_bf16(mul_rn(fp4_value(code), eff));
}

// mxfp4-pack-quantized scale: bf16 2^(e-127) (decompress_mx_scale); e = 255 is the caller's
// error. Every e in 0..254 is exact in bf16 (2^-127 is a bf16 subnormal).
SQ_HD float ct_mxfp4_scale(uint8_t e) {
  return e8m0_decode(e);
}

// MXFP4 element in bf16: bf16(q * s); q * s is exact in fp32, so one rounding (overflow -> Inf).
// Serves mxfp4-pack-quantized and DeepSeek-V4 experts with a BF16 model dtype.
SQ_HD float mxfp4_dequant_bf16(uint32_t code, float s) {
  return round_bf16(mul_rn(fp4_value(code), s));
}

// DeepSeek-V4 MXFP4 experts with an F16 model dtype: Quark's e8m0_to_half scale (2^(e-127)
// saturated at 2^15 above, exact down to 2^-24, 0 below), then __hmul (RNE of the exact product).
SQ_HD float dsv4_f16_scale(uint8_t e) {
  const int32_t k = static_cast<int32_t>(e) - 127;
  if (k > 15) return f32_from_bits(0x47000000u);  // 2^15
  if (k < -24) return 0.0f;
  return f32_from_bits(static_cast<uint32_t>(k + 127) << 23);
}
SQ_HD float mxfp4_dequant_f16(uint32_t code, float s) {
  return round_f16(mul_rn(fp4_value(code), s));
}

}  // namespace shardquant
