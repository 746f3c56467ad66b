// Argument checks of the recovery API (kernels/recover_tensors.h), shared by both implementations.
#include <string>

#include "kernels/recover_tensors.h"

namespace shardquant {

namespace {
uint64_t cdiv(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}
std::string dims(uint64_t a, uint64_t b) {
  // Appends, not "[" + to_string(...): GCC 12 -O3 warns falsely (-Wrestrict) on the latter.
  std::string r = "[";
  r.append(std::to_string(a)).append(", ").append(std::to_string(b)).append("]");
  return r;
}
}  // namespace

std::optional<scale_kind> scale_kind_of(dtype d) noexcept {
  switch (d) {
    case dtype::f32:
      return scale_kind::f32;
    case dtype::bf16:
      return scale_kind::bf16;
    case dtype::f16:
      return scale_kind::f16;
    case dtype::f8_e8m0:
      return scale_kind::e8m0;
    case dtype::f8_e4m3:
      return scale_kind::e4m3;
    default:
      return std::nullopt;
  }
}

std::optional<fp8_kind> fp8_kind_of(dtype d) noexcept {
  if (d == dtype::f8_e4m3) return fp8_kind::e4m3fn;
  if (d == dtype::f8_e5m2) return fp8_kind::e5m2;
  return std::nullopt;
}

fp8_block_span fp8_block_span_of(const fp8_block_source& s) {
  const uint64_t end = s.row_end == k_all_rows ? s.rows : s.row_end;
  const uint64_t cr = s.chunk_rows ? s.chunk_rows : s.rows;
  return {end, {s.block_rows, s.block_cols, cr, cdiv(cr, s.block_rows), s.scale_cols}};
}

std::string check_fp8_block(const fp8_block_source& s) {
  if (s.rows == 0 || s.cols == 0) return "FP8 weight has a 0 dimension";
  if (s.block_rows == 0 || s.block_cols == 0) return "weight_block_size has a 0 entry";
  const uint64_t cr = s.chunk_rows ? s.chunk_rows : s.rows;
  if (s.rows % cr != 0)
    return "presharded chunk rows " + std::to_string(cr) + " do not divide the " +
           std::to_string(s.rows) + " weight rows";
  const uint64_t nb = cdiv(cr, s.block_rows);
  const uint64_t want_r = (s.rows / cr) * nb;
  const uint64_t want_c = cdiv(s.cols, s.block_cols);
  if (s.scale_rows != want_r || s.scale_cols != want_c)
    return "scale shape " + dims(s.scale_rows, s.scale_cols) + " does not match weight " +
           dims(s.rows, s.cols) + " with block " + dims(s.block_rows, s.block_cols) +
           (s.chunk_rows ? " and chunk rows " + std::to_string(cr) : std::string()) +
           " (expected " + dims(want_r, want_c) + ")";
  const uint64_t end = s.row_end == k_all_rows ? s.rows : s.row_end;
  if (s.row_begin >= end || end > s.rows) return "invalid row range";
  if (s.weight == nullptr || s.scale == nullptr) return "missing weight or scale data";
  return {};
}

std::string check_compressed(const ct_source& s) {
  if (s.rows == 0 || s.cols == 0) return "compressed-tensors weight has a 0 dimension";
  if (is_fp4_layout(s.layout)) {
    const uint64_t g = s.layout == ct_layout::nvfp4_packed ? 16 : 32;
    if (s.strategy != ct_strategy::group || s.group_size != g)
      return "FP4-packed weights need group strategy with group_size " + std::to_string(g);
    if (s.cols % g != 0)
      return "FP4-packed weight has " + std::to_string(s.cols) +
             " columns, not a multiple of the group size " + std::to_string(g);
    if (s.groups != s.cols / g)
      return "scale has " + std::to_string(s.groups) + " groups, expected " +
             std::to_string(s.cols / g);
    if (s.zero_point || s.g_idx) return "FP4-packed weights have no zero point or g_idx";
    const bool e8m0 = s.scale_type == scale_kind::e8m0;
    if ((s.layout == ct_layout::nvfp4_packed) == e8m0)
      return s.layout == ct_layout::nvfp4_packed
                 ? "nvfp4 scales are F8_E4M3, F32, BF16 or F16, not E8M0"
                 : "MXFP4 scales must be E8M0 bytes (U8 or F8_E8M0)";
    if (s.layout == ct_layout::nvfp4_packed &&
        !(s.global_scale > 0.0f && is_finite(s.global_scale)))
      return "nvfp4 global scale must be positive and finite";
    if (s.fp4_round != dtype::bf16 &&
        !(s.layout == ct_layout::mxfp4_dsv4 && s.fp4_round == dtype::f16))
      return "FP4-packed values round to BF16 (or F16 for DeepSeek-V4 experts)";
  }
  if (s.layout == ct_layout::pack_quantized && s.bits != 4 && s.bits != 8)
    return "pack-quantized num_bits must be 4 or 8, got " + std::to_string(s.bits);
  switch (s.strategy) {
    case ct_strategy::group:
      if (s.group_size == 0 && s.g_idx == nullptr) return "group strategy without group_size";
      if (s.groups == 0) return "group strategy with an empty scale";
      if (s.g_idx == nullptr && cdiv(s.cols, s.group_size) != s.groups)
        return "scale has " + std::to_string(s.groups) + " groups, expected " +
               std::to_string(cdiv(s.cols, s.group_size));
      break;
    case ct_strategy::block:
      if (s.block_rows == 0 || s.block_cols == 0) return "block strategy without block_structure";
      if (s.zero_point) return "asymmetric block strategy is not in the first version";
      break;
    case ct_strategy::tensor:
      if (s.zero_point) return "asymmetric tensor strategy is not in the first version";
      break;
    case ct_strategy::channel:
      break;
  }
  if (s.zero_point && s.layout == ct_layout::float_quantized)
    return "zero points with a float format";
  if (s.zero_point && s.layout == ct_layout::int_quantized && s.zero_point_type != dtype::i8 &&
      s.zero_point_type != dtype::i32)
    return "zero point dtype must be I8 or I32";
  const uint64_t end = s.row_end == k_all_rows ? s.rows : s.row_end;
  if (s.row_begin >= end || end > s.rows) return "invalid row range";
  if (s.weight == nullptr || s.scale == nullptr) return "missing weight or scale data";
  return {};
}

}  // namespace shardquant
