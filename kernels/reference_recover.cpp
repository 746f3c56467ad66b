// Reference recovery loops (formats.md §7.2.2, §7.3.2): one element at a time, exactly as the spec
// reads. The fast path (kernels/fast_recover.cpp) is tested against these byte for byte.
#include <cstring>

#include "kernels/recover.h"
#include "kernels/recover_tensors.h"

namespace shardquant::reference {
namespace {

using code = quant_status::code;

uint64_t cdiv(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}

int32_t load_i32(const void* p, uint64_t i) {
  int32_t x;
  std::memcpy(&x, static_cast<const char*>(p) + 4 * i, 4);
  return x;
}

}  // namespace

quant_status recover_fp8_block(const fp8_block_source& s, float* out) {
  if (!check_fp8_block(s).empty()) return {code::bad_argument, 0};
  const auto [end, g] = fp8_block_span_of(s);
  if (s.scale_type == scale_kind::e8m0)
    for (uint64_t i = 0; i < s.scale_rows * s.scale_cols; ++i)
      if (static_cast<const uint8_t*>(s.scale)[i] == 0xFF) return {code::bad_scale, i};
  for (uint64_t r = s.row_begin; r < end; ++r)
    for (uint64_t c = 0; c < s.cols; ++c)
      if (fp8_is_nan(s.weight_kind, s.weight[(r - s.row_begin) * s.cols + c]))
        return {code::non_finite_input, r * s.cols + c};
  for (uint64_t r = s.row_begin; r < end; ++r) {
    for (uint64_t c = 0; c < s.cols; ++c) {
      const uint64_t si = fp8_block_scale_row(g, r) * s.scale_cols + c / s.block_cols;
      const float scale = load_scale(s.scale_type, s.scale, si);
      const uint8_t q = s.weight[(r - s.row_begin) * s.cols + c];
      out[(r - s.row_begin) * s.cols + c] = fp8_dequant_element(s.weight_kind, q, scale);
    }
  }
  return {};
}

// FP4-packed layouts (kernels/FORMATS-fp4-sources.md), element by element.
quant_status recover_fp4(const ct_source& s, float* out) {
  const uint64_t end = s.row_end == k_all_rows ? s.rows : s.row_end;
  const uint64_t g = s.group_size;
  // Every scale the rows use must be a number (0xFF e8m0, e4m3 NaN codes are errors).
  for (uint64_t o = s.row_begin; o < end; ++o)
    for (uint64_t k = 0; k < s.groups; ++k)
      if (scale_code_is_nan(s.scale_type, s.scale, o * s.groups + k))
        return {code::bad_scale, o * s.groups + k};
  const uint8_t* w = static_cast<const uint8_t*>(s.weight);
  for (uint64_t o = s.row_begin; o < end; ++o) {
    const uint8_t* row = w + (o - s.row_begin) * (s.cols / 2);
    for (uint64_t j = 0; j < s.cols; ++j) {
      const uint64_t si = o * s.groups + j / g;
      const uint32_t q = fp4_packed_code(row, j);
      float v;
      if (s.layout == ct_layout::nvfp4_packed) {
        v = nvfp4_dequant_element(
            q, nvfp4_effective_scale(load_scale(s.scale_type, s.scale, si), s.global_scale));
      } else if (s.layout == ct_layout::mxfp4_dsv4 && s.fp4_round == dtype::f16) {
        v = mxfp4_dequant_f16(q, dsv4_f16_scale(static_cast<const uint8_t*>(s.scale)[si]));
      } else {
        v = mxfp4_dequant_bf16(q, ct_mxfp4_scale(static_cast<const uint8_t*>(s.scale)[si]));
      }
      out[(o - s.row_begin) * s.cols + j] = v;
    }
  }
  return {};
}

quant_status recover_compressed(const ct_source& s, float* out) {
  if (!check_compressed(s).empty()) return {code::bad_argument, 0};
  if (is_fp4_layout(s.layout)) return recover_fp4(s, out);
  const uint64_t end = s.row_end == k_all_rows ? s.rows : s.row_end;
  if (s.g_idx)
    for (uint64_t j = 0; j < s.cols; ++j)
      if (s.g_idx[j] < 0 || static_cast<uint64_t>(s.g_idx[j]) >= s.groups)
        return {code::bad_scale, j};
  if (s.layout == ct_layout::float_quantized)
    for (uint64_t r = s.row_begin; r < end; ++r)
      for (uint64_t c = 0; c < s.cols; ++c)
        if (fp8_is_nan(s.fp8,
                       static_cast<const uint8_t*>(s.weight)[(r - s.row_begin) * s.cols + c]))
          return {code::non_finite_input, r * s.cols + c};
  const uint64_t words_per_row = cdiv(s.cols * s.bits, 32);
  const uint64_t zp_groups = s.strategy == ct_strategy::group ? s.groups : 1;
  for (uint64_t o = s.row_begin; o < end; ++o) {
    for (uint64_t j = 0; j < s.cols; ++j) {
      // G(j): g_idx[j] if present, else j div g (group); channel/tensor use column 0.
      uint64_t gj = 0;
      if (s.strategy == ct_strategy::group)
        gj = s.g_idx ? static_cast<uint64_t>(s.g_idx[j]) : j / s.group_size;
      const float scale = load_scale(s.scale_type, s.scale, ct_scale_index(s, o, j, gj));
      float w;
      if (s.layout == ct_layout::float_quantized) {
        const uint8_t q = static_cast<const uint8_t*>(s.weight)[(o - s.row_begin) * s.cols + j];
        w = fp8_dequant_element(s.fp8, q, scale);
      } else {
        int32_t q;
        int32_t zp = 0;
        if (s.layout == ct_layout::pack_quantized) {
          const uint32_t* row =
              static_cast<const uint32_t*>(s.weight) + (o - s.row_begin) * words_per_row;
          q = ct_packed_value(row, j, s.bits);
          if (s.zero_point)
            zp = ct_packed_zero_point(static_cast<const uint32_t*>(s.zero_point), zp_groups, o, gj,
                                      s.bits);
        } else {
          q = static_cast<const int8_t*>(s.weight)[(o - s.row_begin) * s.cols + j];
          if (s.zero_point) {
            const uint64_t zi = ct_scale_index(s, o, j, gj);
            zp = s.zero_point_type == dtype::i8 ? static_cast<const int8_t*>(s.zero_point)[zi]
                                                : load_i32(s.zero_point, zi);
          }
        }
        w = int_dequant_element(q, zp, scale);
      }
      out[(o - s.row_begin) * s.cols + j] = w;
    }
  }
  return {};
}

}  // namespace shardquant::reference
