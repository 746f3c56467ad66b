// The parts of kernels/quantize.h both implementations share: view geometry, status messages,
// amax combination and the output layout of row ranges. No math beyond index arithmetic.
#include <algorithm>
#include <string>

#include "kernels/quantize.h"
#include "kernels/quantize_detail.h"

namespace shardquant {

uint64_t source_view::end_row() const noexcept {
  if (shape.empty()) return 0;
  return row_end == k_all_rows ? shape[0] : row_end;
}
uint64_t source_view::rows() const noexcept {
  return end_row() - row_begin;
}
uint64_t source_view::inner() const noexcept {
  uint64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
  return n;
}
uint64_t source_view::last() const noexcept {
  return shape.empty() ? 0 : shape.back();
}

std::string quant_status::message() const {
  switch (what) {
    case code::ok:
      return "ok";
    case code::non_finite_input:
      return "NaN or Inf in the weight at element " + std::to_string(index);
    case code::scale_underflow:
      return "scale " + std::to_string(index) +
             " rounds to 0 in the source dtype (F16): the weight is too small to quantize";
    case code::non_finite_scale:
      return "scale " + std::to_string(index) + " overflows in the source dtype";
    case code::bad_argument:
      return "invalid argument to the quantizer (index " + std::to_string(index) + ")";
    case code::bad_scale:
      return "invalid scale or group index at element " + std::to_string(index);
  }
  return "unknown status";
}

amax_result combine(const amax_result& a, const amax_result& b) noexcept {
  return {std::max(a.amax, b.amax), std::min(a.first_bad, b.first_bad)};
}

std::vector<output_piece> range_layout(const weight_scheme& s, std::span<const uint64_t> shape,
                                       uint64_t row_begin, uint64_t row_end, std::string* error,
                                       dtype source) {
  using detail::ceil_div;
  const std::vector<output_tensor> outs = output_tensors(s, shape, source);
  const weight_format& si = s.packed();
  const uint64_t out = shape.front();
  const uint64_t in = shape.back();
  if (row_end == k_all_rows) row_end = out;
  uint64_t inner = 1;
  for (size_t i = 1; i < shape.size(); ++i) inner *= shape[i];
  const uint64_t rows = row_end - row_begin;
  if (error) error->clear();
  std::vector<output_piece> r;
  for (size_t t = 0; t < outs.size(); ++t) {
    const output_tensor& o = outs[t];
    const uint64_t esize = bits(o.type) / 8;
    if (o.shape.empty()) {  // per-tensor scale
      r.push_back({0, esize, 1, 0});
      continue;
    }
    // A pair's scales follow their own stage; only the weight (t == 0) and the second stage's
    // scale and zero point (t >= 2) follow the packed format's layout.
    const bool stage1_scale = s.progressive && t == 1;
    switch (stage1_scale ? scheme_family::fp8_row : si.family) {
      case scheme_family::int4_group:
      case scheme_family::uint4_group:
        if (error && (row_begin % 8 != 0 || (row_end % 8 != 0 && row_end != out)))
          *error = "per-group int4/uint4 row ranges must start and end at multiples of 8 rows";
        if (t == 0) {
          const uint64_t words = ceil_div(out, 8);
          const uint64_t a = row_begin / 8;
          const uint64_t b = ceil_div(row_end, 8);
          r.push_back({a * 4, (b - a) * 4, in, words * 4});
        } else {
          const uint64_t per_row = in / si.group_size * 4;
          r.push_back({row_begin * per_row, rows * per_row, 1, 0});
        }
        break;
      case scheme_family::mx: {
        const uint64_t sub_rows = inner / in;  // last-dim rows per dim-0 row
        const uint64_t per_row =
            t == 0 ? (si.element == mx_element::fp4_e2m1 ? in / 2 : 3 * in / 4) : ceil_div(in, 32);
        r.push_back({row_begin * sub_rows * per_row, rows * sub_rows * per_row, 1, 0});
        break;
      }
      case scheme_family::nvfp4:
      case scheme_family::amdfp4:
      case scheme_family::amdfp4_global: {
        const uint64_t sub_rows = inner / in;
        const uint64_t per_row = t == 0 ? in / 2 : ceil_div(in, si.group_size) * esize;
        r.push_back({row_begin * sub_rows * per_row, rows * sub_rows * per_row, 1, 0});
        break;
      }
      default: {
        // Row-major outputs whose dim 0 is the weight's dim 0: elementwise weights, packed rows,
        // per-row scales, zero points and scale_2.
        uint64_t per_row = esize;
        for (size_t i = 1; i < o.shape.size(); ++i) per_row *= o.shape[i];
        r.push_back({row_begin * per_row, rows * per_row, 1, 0});
        break;
      }
    }
  }
  return r;
}

namespace detail {

quant_status check_view(const weight_scheme& s, const source_view& v, view_geometry* g) {
  using c = quant_status::code;
  switch (v.type) {
    case dtype::f32:
      g->kind = src_kind::f32;
      break;
    case dtype::bf16:
      g->kind = src_kind::bf16;
      break;
    case dtype::f16:
      g->kind = src_kind::f16;
      break;
    default:
      return error(c::bad_argument, 0);
  }
  if (v.shape.size() < 2 || v.data == nullptr) return error(c::bad_argument, 0);
  for (uint64_t d : v.shape)
    if (d == 0) return error(c::bad_argument, 0);
  g->out = v.shape[0];
  g->row_begin = v.row_begin;
  const uint64_t end = v.end_row();
  if (end > g->out || v.row_begin >= end) return error(c::bad_argument, v.row_begin);
  g->rows = end - v.row_begin;
  g->inner = v.inner();
  g->last = v.last();
  const weight_format& si = s.packed();
  if (si.family == scheme_family::int4_group || si.family == scheme_family::uint4_group) {
    if (v.row_begin % 8 != 0 || (end % 8 != 0 && end != g->out))
      return error(c::bad_argument, v.row_begin);
  }
  return {};
}

quant_status need_amax(const view_geometry& g, std::optional<float> a) {
  if (a || (g.row_begin == 0 && g.rows == g.out)) return {};
  return error(quant_status::code::bad_argument, g.row_begin);
}

}  // namespace detail
}  // namespace shardquant
