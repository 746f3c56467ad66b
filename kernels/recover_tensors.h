// Tensor-level recovery API (plain C++, host only): already-quantized source weights back to fp32
// (formats.md §7.2.2 DeepSeek-style block FP8, §7.3.2 compressed-tensors pack-/int-/naive-/
// float-quantized). The caller (io/pipeline) finds the tensors, checks dtypes and shapes against
// the source config and passes plain pointers; these functions own only the math and report
// bad data as quant_status values. Fast path (TBB) and reference:: give identical bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "kernels/dtype.h"
#include "kernels/quantize.h"
#include "kernels/recover.h"

namespace shardquant {

// dtype -> element kinds of the recovery math; nullopt for a dtype that cannot be that operand
// (scale: F32, BF16, F16, F8_E8M0; FP8 weight: F8_E4M3, F8_E5M2).
[[nodiscard]] std::optional<scale_kind> scale_kind_of(dtype d) noexcept;
[[nodiscard]] std::optional<fp8_kind> fp8_kind_of(dtype d) noexcept;

// ---- DeepSeek-style block FP8 (§7.2.2)
// -------------------------------------------------------------

struct fp8_block_source {
  fp8_kind weight_kind = fp8_kind::e4m3fn;  // F8_E4M3 or F8_E5M2
  uint64_t rows = 0;                        // R of the whole weight [R, C]
  uint64_t cols = 0;                        // C
  const uint8_t* weight = nullptr;          // rows [row_begin, row_end) of the weight, C order
  uint64_t row_begin = 0;
  uint64_t row_end = k_all_rows;            // k_all_rows = rows
  scale_kind scale_type = scale_kind::f32;  // F32, BF16, F16 or F8_E8M0
  const void* scale = nullptr;              // the WHOLE scale tensor [scale_rows, scale_cols]
  uint64_t scale_rows = 0;
  uint64_t scale_cols = 0;
  uint64_t block_rows = 128;  // bh of weight_block_size
  uint64_t block_cols = 128;  // bw
  uint64_t chunk_rows = 0;    // presharded cr; 0 = not presharded (cr = R)
};

// The shape rules of §7.2.2 (R % cr == 0, scale shape [(R/cr)*ceil(cr/bh), ceil(C/bw)], block
// sizes > 0, a valid row range); "" when fine, else a sentence naming the mismatch.
[[nodiscard]] std::string check_fp8_block(const fp8_block_source& s);

// The end of a view's row range and its scale-row geometry, one rule for both recoverers.
struct fp8_block_span {
  uint64_t end;  // one past the view's last row
  fp8_block_geometry geo;
};
[[nodiscard]] fp8_block_span fp8_block_span_of(const fp8_block_source& s);

// out[(r - row_begin) * C + c] = RN32(fp8(W[r][c]) * S[k*nb + (r mod cr) div bh][c div bw]).
// Errors: bad_argument (check_fp8_block fails), bad_scale (an e8m0 byte 0xFF; index = flat scale
// index), non_finite_input (an FP8 NaN code; index = flat element index in the whole weight).
[[nodiscard]] quant_status recover_fp8_block(const fp8_block_source& s, float* out);

// ---- compressed-tensors (§7.3.2)
// ---------------------------------------------------------------------

enum class ct_strategy : uint8_t { tensor, channel, group, block };

// Index into the flat scale (or zero-point) tensor for element (o, j) with group index gj; S is the
// host's ct_source or the CUDA kernel's ct_params (same field names), so both use one rule.
template <class S>
SQ_HD uint64_t ct_scale_index(const S& s, uint64_t o, uint64_t j, uint64_t gj) {
  switch (s.strategy) {
    case ct_strategy::tensor:
      return 0;
    case ct_strategy::channel:
      return o;
    case ct_strategy::group:
      return o * s.groups + gj;
    case ct_strategy::block:
      return (o / s.block_rows) * ((s.cols + s.block_cols - 1) / s.block_cols) + j / s.block_cols;
  }
  return 0;
}
enum class ct_layout : uint8_t {
  pack_quantized,   // weight_packed I32 [out, ceil(in*b/32)], b = 4 or 8
  int_quantized,    // weight I8 [out, in] (naive-quantized / int-quantized with type int)
  float_quantized,  // weight F8_E4M3 (or E5M2) [out, in] (float-quantized, naive with type float)
  // FP4-packed sources (kernels/FORMATS-fp4-sources.md): weight U8 (I8) [out, in/2], two E2M1
  // codes per byte (low nibble first); group strategy with g = 16 or 32.
  nvfp4_packed,  // nvfp4-pack-quantized: F8_E4M3 (or F32/BF16/F16) scale [out, in/16] and an
                 // F32 global scale; values are bf16(RN32(q * RN32(bf16(s) / gs)))
  mxfp4_packed,  // mxfp4-pack-quantized: U8/F8_E8M0 scale [out, in/32]; bf16(q * 2^(e-127))
  mxfp4_dsv4     // DeepSeek-V4 MXFP4 experts: F8_E8M0 scale [out, in/32]; values in the model
                 // dtype `fp4_round` (BF16: as mxfp4_packed; F16: Quark's e8m0_to_half + __hmul)
};

struct ct_source {
  ct_layout layout = ct_layout::pack_quantized;
  uint64_t rows = 0;  // out (logical shape [out, in], from weight_shape for packed weights)
  uint64_t cols = 0;  // in
  uint32_t bits = 4;  // pack_quantized: 4 or 8
  fp8_kind fp8 = fp8_kind::e4m3fn;  // float_quantized element kind
  const void* weight = nullptr;     // rows [row_begin, row_end) of the stored weight tensor
  uint64_t row_begin = 0;
  uint64_t row_end = k_all_rows;
  // weight_scale (whole tensor): tensor [1]/[] ; channel [out, 1]; group [out, groups];
  // block [ceil(out/bh), ceil(in/bw)].
  scale_kind scale_type = scale_kind::f32;
  const void* scale = nullptr;
  ct_strategy strategy = ct_strategy::channel;
  uint64_t group_size = 0;  // group: g (G(j) = j div g without g_idx)
  uint64_t groups = 0;      // group: scale columns G
  uint64_t block_rows = 0;  // block: bh, bw from block_structure
  uint64_t block_cols = 0;
  // Zero points (asymmetric only; nullptr = symmetric, zp = 0):
  //   pack_quantized: I32 [ceil(out*b/32), groups] packed down dim 0 (groups = 1 for channel);
  //   int_quantized: same shape as the scale, I8 or I32 (zero_point_type).
  const void* zero_point = nullptr;
  dtype zero_point_type = dtype::i32;
  const int32_t* g_idx = nullptr;  // weight_g_idx [in] (actorder group), nullptr if absent
  // FP4 layouts: the global scale (nvfp4_packed) and the 16-bit dtype the values are rounded to
  // (BF16 for the compressed-tensors layouts; BF16 or F16 for mxfp4_dsv4). Output stays F32.
  float global_scale = 1.0f;
  dtype fp4_round = dtype::bf16;
};

// True for the FP4-packed layouts.
[[nodiscard]] constexpr bool is_fp4_layout(ct_layout l) noexcept {
  return l == ct_layout::nvfp4_packed || l == ct_layout::mxfp4_packed || l == ct_layout::mxfp4_dsv4;
}

// The argument rules (bits, strategy parameters, row range); "" when fine.
[[nodiscard]] std::string check_compressed(const ct_source& s);

// out[(o - row_begin) * in + j] = RN32((q[o][j] - zp) * s[selected]) (int layouts) or
// RN32(fp8(q) * s[selected]) (float), or the FP4 rules of recover.h. Errors: bad_argument,
// bad_scale (a g_idx entry outside [0, groups), index = j; an e8m0 scale byte 0xFF or an FP8
// NaN block scale, index = flat scale index), non_finite_input (an FP8 NaN code; index = flat
// element index).
[[nodiscard]] quant_status recover_compressed(const ct_source& s, float* out);

namespace reference {
[[nodiscard]] quant_status recover_fp8_block(const fp8_block_source& s, float* out);
[[nodiscard]] quant_status recover_compressed(const ct_source& s, float* out);
}  // namespace reference

}  // namespace shardquant
