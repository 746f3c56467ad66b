// Fast recovery (what the program runs): the reference's element math (kernels/recover.h) with
// per-row hoisting of scale rows and zero points, rows spread over cores with tbb::parallel_for.
// Same bytes as kernels/reference_recover.cpp; tested byte for byte.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "kernels/recover.h"
#include "kernels/recover_tensors.h"

namespace shardquant {
namespace {

using code = quant_status::code;

uint64_t cdiv(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}

uint64_t grain_rows(uint64_t cols) {
  return std::max<uint64_t>(1, (1u << 16) / cols);
}

struct first_index {
  std::atomic<uint64_t> v{k_all_rows};
  void offer(uint64_t i) {
    uint64_t cur = v.load(std::memory_order_relaxed);
    while (i < cur && !v.compare_exchange_weak(cur, i, std::memory_order_relaxed)) {
    }
  }
};

// Widened scale row (all scale columns) so the element loop is a plain multiply.
void widen_scales(scale_kind k, const void* base, uint64_t first, uint64_t n, float* dst) {
  for (uint64_t i = 0; i < n; ++i) dst[i] = load_scale(k, base, first + i);
}

template <fp8_kind K>
void fp8_row(const uint8_t* q, uint64_t cols, const float* srow, uint64_t bw, float* out) {
  for (uint64_t c0 = 0; c0 < cols; c0 += bw) {
    const float s = srow[c0 / bw];
    const uint64_t c1 = std::min(cols, c0 + bw);
    for (uint64_t c = c0; c < c1; ++c) out[c] = fp8_dequant_element(K, q[c], s);
  }
}

bool row_has_nan(fp8_kind k, const uint8_t* q, uint64_t n) {
  bool bad = false;
  if (k == fp8_kind::e4m3fn) {
    for (uint64_t i = 0; i < n; ++i) bad |= fp8_e4m3fn_is_nan(q[i]);
  } else {
    for (uint64_t i = 0; i < n; ++i) bad |= fp8_e5m2_is_nan(q[i]);
  }
  return bad;
}

}  // namespace

quant_status recover_fp8_block(const fp8_block_source& s, float* out) {
  if (!check_fp8_block(s).empty()) return {code::bad_argument, 0};
  const auto [end, g] = fp8_block_span_of(s);
  if (s.scale_type == scale_kind::e8m0) {
    const uint8_t* b = static_cast<const uint8_t*>(s.scale);
    const uint8_t* hit = std::find(b, b + s.scale_rows * s.scale_cols, uint8_t{0xFF});
    if (hit != b + s.scale_rows * s.scale_cols)
      return {code::bad_scale, static_cast<uint64_t>(hit - b)};
  }
  first_index bad;
  tbb::parallel_for(
      tbb::blocked_range<uint64_t>(s.row_begin, end, grain_rows(s.cols)), [&](const auto& rr) {
        std::vector<float> srow(s.scale_cols);
        uint64_t cached = k_all_rows;
        for (uint64_t r = rr.begin(); r < rr.end(); ++r) {
          const uint8_t* q = s.weight + (r - s.row_begin) * s.cols;
          if (row_has_nan(s.weight_kind, q, s.cols)) {
            for (uint64_t c = 0; c < s.cols; ++c)
              if (fp8_is_nan(s.weight_kind, q[c])) {
                bad.offer(r * s.cols + c);
                break;
              }
            continue;
          }
          const uint64_t sr = fp8_block_scale_row(g, r);
          if (sr != cached) {
            widen_scales(s.scale_type, s.scale, sr * s.scale_cols, s.scale_cols, srow.data());
            cached = sr;
          }
          float* o = out + (r - s.row_begin) * s.cols;
          if (s.weight_kind == fp8_kind::e4m3fn)
            fp8_row<fp8_kind::e4m3fn>(q, s.cols, srow.data(), s.block_cols, o);
          else
            fp8_row<fp8_kind::e5m2>(q, s.cols, srow.data(), s.block_cols, o);
        }
      });
  if (bad.v.load() != k_all_rows) return {code::non_finite_input, bad.v.load()};
  return {};
}

// FP4-packed layouts: per row, the group scales are widened once (for nvfp4 the effective
// scale bf16(s)/gs), then each byte gives two elements through the reference's element math.
quant_status recover_fp4(const ct_source& s, float* out) {
  const uint64_t end = s.row_end == k_all_rows ? s.rows : s.row_end;
  const uint64_t g = s.group_size;
  {
    const uint64_t first = s.row_begin * s.groups, last = end * s.groups;
    for (uint64_t i = first; i < last; ++i)
      if (scale_code_is_nan(s.scale_type, s.scale, i)) return {code::bad_scale, i};
  }
  const bool f16 = s.layout == ct_layout::mxfp4_dsv4 && s.fp4_round == dtype::f16;
  tbb::parallel_for(
      tbb::blocked_range<uint64_t>(s.row_begin, end, grain_rows(s.cols)), [&](const auto& rr) {
        std::vector<float> srow(s.groups);
        for (uint64_t o = rr.begin(); o < rr.end(); ++o) {
          for (uint64_t k = 0; k < s.groups; ++k) {
            const uint64_t si = o * s.groups + k;
            if (s.layout == ct_layout::nvfp4_packed)
              srow[k] =
                  nvfp4_effective_scale(load_scale(s.scale_type, s.scale, si), s.global_scale);
            else if (f16)
              srow[k] = dsv4_f16_scale(static_cast<const uint8_t*>(s.scale)[si]);
            else
              srow[k] = ct_mxfp4_scale(static_cast<const uint8_t*>(s.scale)[si]);
          }
          const uint8_t* row =
              static_cast<const uint8_t*>(s.weight) + (o - s.row_begin) * (s.cols / 2);
          float* dst = out + (o - s.row_begin) * s.cols;
          for (uint64_t k = 0; k < s.groups; ++k) {
            const float sc = srow[k];
            const uint64_t j0 = k * g, j1 = j0 + g;
            if (s.layout == ct_layout::nvfp4_packed) {
              for (uint64_t j = j0; j < j1; ++j)
                dst[j] = nvfp4_dequant_element(fp4_packed_code(row, j), sc);
            } else if (f16) {
              for (uint64_t j = j0; j < j1; ++j)
                dst[j] = mxfp4_dequant_f16(fp4_packed_code(row, j), sc);
            } else {
              for (uint64_t j = j0; j < j1; ++j)
                dst[j] = mxfp4_dequant_bf16(fp4_packed_code(row, j), sc);
            }
          }
        }
      });
  return {};
}

quant_status recover_compressed(const ct_source& s, float* out) {
  if (!check_compressed(s).empty()) return {code::bad_argument, 0};
  if (is_fp4_layout(s.layout)) return recover_fp4(s, out);
  const uint64_t end = s.row_end == k_all_rows ? s.rows : s.row_end;
  // G(j) once for all rows.
  std::vector<uint32_t> gidx;
  if (s.strategy == ct_strategy::group) {
    gidx.resize(s.cols);
    for (uint64_t j = 0; j < s.cols; ++j) {
      if (s.g_idx) {
        if (s.g_idx[j] < 0 || static_cast<uint64_t>(s.g_idx[j]) >= s.groups)
          return {code::bad_scale, j};
        gidx[j] = static_cast<uint32_t>(s.g_idx[j]);
      } else {
        gidx[j] = static_cast<uint32_t>(j / s.group_size);
      }
    }
  }
  const uint64_t words_per_row = cdiv(s.cols * s.bits, 32);
  const uint64_t zp_groups = s.strategy == ct_strategy::group ? s.groups : 1;
  const uint64_t scale_cols = s.strategy == ct_strategy::group   ? s.groups
                              : s.strategy == ct_strategy::block ? cdiv(s.cols, s.block_cols)
                                                                 : 1;
  first_index bad;
  tbb::parallel_for(
      tbb::blocked_range<uint64_t>(s.row_begin, end, grain_rows(s.cols)), [&](const auto& rr) {
        std::vector<float> srow(scale_cols);
        std::vector<int32_t> zrow(zp_groups);
        std::vector<int32_t> q(s.cols);
        for (uint64_t o = rr.begin(); o < rr.end(); ++o) {
          const uint64_t lr = o - s.row_begin;
          // The scale row (and zero points) this output row uses.
          uint64_t first = 0;
          switch (s.strategy) {
            case ct_strategy::tensor:
              first = 0;
              break;
            case ct_strategy::channel:
              first = o;
              break;
            case ct_strategy::group:
              first = o * s.groups;
              break;
            case ct_strategy::block:
              first = (o / s.block_rows) * scale_cols;
              break;
          }
          widen_scales(s.scale_type, s.scale, first, scale_cols, srow.data());
          float* dst = out + lr * s.cols;
          if (s.layout == ct_layout::float_quantized) {
            const uint8_t* w = static_cast<const uint8_t*>(s.weight) + lr * s.cols;
            if (row_has_nan(s.fp8, w, s.cols)) {
              for (uint64_t c = 0; c < s.cols; ++c)
                if (fp8_is_nan(s.fp8, w[c])) {
                  bad.offer(o * s.cols + c);
                  break;
                }
              continue;
            }
            for (uint64_t j = 0; j < s.cols; ++j) {
              const uint64_t col = s.strategy == ct_strategy::group   ? gidx[j]
                                   : s.strategy == ct_strategy::block ? j / s.block_cols
                                                                      : 0;
              dst[j] = fp8_dequant_element(s.fp8, w[j], srow[col]);
            }
            continue;
          }
          if (s.layout == ct_layout::pack_quantized) {
            const uint32_t* words = static_cast<const uint32_t*>(s.weight) + lr * words_per_row;
            for (uint64_t j = 0; j < s.cols; ++j) q[j] = ct_packed_value(words, j, s.bits);
            for (uint64_t g = 0; g < zp_groups; ++g)
              zrow[g] = s.zero_point
                            ? ct_packed_zero_point(static_cast<const uint32_t*>(s.zero_point),
                                                   zp_groups, o, g, s.bits)
                            : 0;
          } else {
            const int8_t* w = static_cast<const int8_t*>(s.weight) + lr * s.cols;
            for (uint64_t j = 0; j < s.cols; ++j) q[j] = w[j];
            for (uint64_t g = 0; g < zp_groups; ++g) {
              int32_t z = 0;
              if (s.zero_point) {
                const uint64_t zi = s.strategy == ct_strategy::group ? o * s.groups + g : o;
                if (s.zero_point_type == dtype::i8) {
                  z = static_cast<const int8_t*>(s.zero_point)[zi];
                } else {
                  std::memcpy(&z, static_cast<const char*>(s.zero_point) + 4 * zi, 4);
                }
              }
              zrow[g] = z;
            }
          }
          for (uint64_t j = 0; j < s.cols; ++j) {
            const uint64_t col = s.strategy == ct_strategy::group   ? gidx[j]
                                 : s.strategy == ct_strategy::block ? j / s.block_cols
                                                                    : 0;
            const uint64_t zc = s.strategy == ct_strategy::group ? gidx[j] : 0;
            dst[j] = int_dequant_element(q[j], zrow[zc], srow[col]);
          }
        }
      });
  if (bad.v.load() != k_all_rows) return {code::non_finite_input, bad.v.load()};
  return {};
}

}  // namespace shardquant
