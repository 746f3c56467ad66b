// The reference quantizers: one plain loop per scheme family, written to read like formats.md §5
// and §10 (the spec in code); a progressive pair is the composition of two of them.
// Single-threaded, no tricks; the fast path is tested against these byte for byte. Depends only on
// the math headers and kernels/quantize.h.
#include <cstring>
#include <vector>

#include "kernels/amdfp4.h"
#include "kernels/fp4_block.h"
#include "kernels/fp8.h"
#include "kernels/int_quant.h"
#include "kernels/mx.h"
#include "kernels/numeric.h"
#include "kernels/nvfp4.h"
#include "kernels/quantize.h"
#include "kernels/quantize_detail.h"

namespace shardquant::reference {
namespace {

using detail::ceil_div;
using detail::error;
using detail::mx_format_of;
using detail::put_f32;
using detail::put_i32;
using detail::put_src_scale;
using detail::view_geometry;
using code = quant_status::code;

template <src_kind D>
float at(const source_view& v, uint64_t i) {
  return load_src<D>(v.data, i);
}

// First non-finite element of the view (flat index in the whole tensor), or k_all_rows.
template <src_kind D>
uint64_t first_non_finite(const source_view& v, const view_geometry& g) {
  for (uint64_t i = 0; i < g.numel(); ++i)
    if (!is_finite(at<D>(v, i))) return g.base() + i;
  return k_all_rows;
}

void put_u32(void* p, uint64_t i, uint32_t x) {
  std::memcpy(static_cast<char*>(p) + 4 * i, &x, 4);
}
void put_u8(void* p, uint64_t i, uint8_t x) {
  static_cast<uint8_t*>(p)[i] = x;
}

// §5.2 fp8 per-tensor.
template <src_kind D>
quant_status fp8_tensor(const source_view& v, const view_geometry& g, const quant_outputs& o,
                        float a) {
  const float s = fp8_tensor_scale(a);
  const float s_div = fp8_divisor<D>(s);
  if (s_div == 0.0f) return error(code::scale_underflow, 0);
  if (o.scale) put_f32(o.scale, 0, s);
  for (uint64_t i = 0; i < g.numel(); ++i)
    put_u8(o.weight, i, fp8_quantize_element<D>(at<D>(v, i), s_div));
  return {};
}

// §5.3 fp8 per-row (row = dim-0 index).
template <src_kind D>
quant_status fp8_row(const source_view& v, const view_geometry& g, const quant_outputs& o) {
  for (uint64_t r = 0; r < g.rows; ++r) {
    float a = 0.0f;
    for (uint64_t j = 0; j < g.inner; ++j) a = max_f(a, abs_f(at<D>(v, r * g.inner + j)));
    const float s = fp8_row_scale(a);
    const float s_div = fp8_divisor<D>(s);
    if (s_div == 0.0f) return error(code::scale_underflow, g.row_begin + r);
    put_f32(o.scale, r, s);
    for (uint64_t j = 0; j < g.inner; ++j) {
      const uint64_t i = r * g.inner + j;
      put_u8(o.weight, i, fp8_quantize_element<D>(at<D>(v, i), s_div));
    }
  }
  return {};
}

// §5.4 int8 per-tensor.
template <src_kind D>
quant_status int8_tensor(const source_view& v, const view_geometry& g, const quant_outputs& o,
                         float a) {
  const float s = int8_scale<D>(a);
  const float inv = reciprocal_rn(s);
  if (o.scale) put_f32(o.scale, 0, s);
  for (uint64_t i = 0; i < g.numel(); ++i)
    static_cast<int8_t*>(o.weight)[i] = static_cast<int8_t>(int8_code(at<D>(v, i), inv));
  return {};
}

// §5.5 int4 / uint4 codes and scales of a row range: units of `unit` elements of each row.
// Fills q[rows * last] and writes scales / zero points.
template <src_kind D>
quant_status int_codes(const source_view& v, const view_geometry& g, const quant_outputs& o,
                       bool asym, uint64_t unit, std::vector<int32_t>& q) {
  const uint64_t in = g.last;
  const uint64_t units = in / unit;
  q.assign(g.rows * in, 0);
  for (uint64_t r = 0; r < g.rows; ++r) {
    for (uint64_t u = 0; u < units; ++u) {
      const uint64_t first = r * in + u * unit;
      const uint64_t si = r * units + u;
      if (!asym) {
        float a = 0.0f;
        for (uint64_t j = 0; j < unit; ++j) a = max_f(a, abs_f(at<D>(v, first + j)));
        const float s = int4_scale<D>(a);
        const float inv = reciprocal_rn(s);
        put_f32(o.scale, si, s);
        for (uint64_t j = 0; j < unit; ++j) q[first + j] = int4_code(at<D>(v, first + j), inv);
      } else {
        float lo = 0.0f, hi = 0.0f;
        for (uint64_t j = 0; j < unit; ++j) {
          lo = min_f(lo, at<D>(v, first + j));
          hi = max_f(hi, at<D>(v, first + j));
        }
        const uint4_params p = uint4_params_from_range<D>(lo, hi);
        if (!is_finite(p.scale))
          return error(code::non_finite_scale, (g.row_begin + r) * units + u);
        put_f32(o.scale, si, p.scale);
        put_i32(o.extra, si, p.zero);
        for (uint64_t j = 0; j < unit; ++j)
          q[first + j] = uint4_code(at<D>(v, first + j), p.inv, p.zero_f);
      }
    }
  }
  return {};
}

// §5.6 per-group: transpose, pack along out. Word (j, c) = q[8c + i][j], i = 0..7.
void pack_transposed(const std::vector<int32_t>& q, const view_geometry& g, const quant_outputs& o,
                     nibble_order order) {
  const uint64_t in = g.last;
  const uint64_t cols = ceil_div(g.rows, 8);
  const uint64_t ld = o.weight_ld ? o.weight_ld : cols;
  for (uint64_t j = 0; j < in; ++j) {
    for (uint64_t c = 0; c < cols; ++c) {
      int32_t col[8];
      uint32_t n = 0;
      for (uint64_t i = 0; i < 8 && 8 * c + i < g.rows; ++i, ++n) col[i] = q[(8 * c + i) * in + j];
      put_u32(o.weight, j * ld + c, pack_nibbles(col, n, order));
    }
  }
}

// §5.6 per-channel: no transpose, word (r, c) = q[r][8c + i].
void pack_rows(const std::vector<int32_t>& q, const view_geometry& g, const quant_outputs& o,
               nibble_order order) {
  const uint64_t in = g.last;
  const uint64_t words = ceil_div(in, 8);
  for (uint64_t r = 0; r < g.rows; ++r)
    for (uint64_t c = 0; c < words; ++c) {
      const uint64_t n = in - 8 * c < 8 ? in - 8 * c : 8;
      put_u32(o.weight, r * words + c,
              pack_nibbles(&q[r * in + 8 * c], static_cast<uint32_t>(n), order));
    }
}

// §5.7 MX: blocks of 32 along the last dim of every last-dim row.
template <src_kind D>
quant_status mx(const source_view& v, const view_geometry& g, const quant_outputs& o, mx_format f) {
  const uint64_t in = g.last;
  const uint64_t rows = g.numel() / in;
  const uint64_t blocks = ceil_div(in, k_mx_block);
  const uint64_t row_bytes = mx_packed_bytes(in, f);
  for (uint64_t r = 0; r < rows; ++r) {
    for (uint64_t b = 0; b < blocks; ++b) {
      const uint64_t first = b * k_mx_block;
      const uint32_t n = static_cast<uint32_t>(in - first < k_mx_block ? in - first : k_mx_block);
      // Step 1-2: amax of the block (zero padding does not change it), shared exponent, divisor.
      float a = 0.0f;
      for (uint32_t i = 0; i < n; ++i) a = max_f(a, abs_f(at<D>(v, r * in + first + i)));
      const int32_t k = mx_shared_exponent(a, f);
      const float s = mx_scale_divisor(k);
      // Step 3: the stored byte.
      put_u8(o.scale, r * blocks + b, mx_scale_byte(k));
      // Steps 4-6: elements, codes, packing.
      uint8_t codes[k_mx_block];
      for (uint32_t i = 0; i < n; ++i)
        codes[i] =
            static_cast<uint8_t>(mx_encode_element(div_rn(at<D>(v, r * in + first + i), s), f));
      mx_pack_codes(codes, n, f,
                    static_cast<uint8_t*>(o.weight) + r * row_bytes + mx_packed_bytes(first, f));
    }
  }
  return {};
}

// kernels/FORMATS-fp4.md §2-§4: nvfp4, amdfp4, amdfp4_global. Blocks of g along the last dim of
// every last-dim row (a last partial block is shorter; its padding would not change the amax).
// `a` is the amax of the whole tensor (the two-level schemes' global scale goes to o.extra).
template <src_kind D>
quant_status fp4_scaled(const weight_format& f, const source_view& v, const view_geometry& g,
                        const quant_outputs& o, float a) {
  const uint64_t in = g.last;
  const uint64_t rows = g.numel() / in;
  const uint64_t gs = f.group_size;
  const uint64_t blocks = ceil_div(in, gs);
  float global = 0.0f;
  if (f.family == scheme_family::nvfp4) global = nvfp4_global_scale(a);
  if (f.family == scheme_family::amdfp4_global) global = amdfp4_global_scale(a);
  if (f.family != scheme_family::amdfp4 && o.extra) put_f32(o.extra, 0, global);
  for (uint64_t r = 0; r < rows; ++r) {
    for (uint64_t b = 0; b < blocks; ++b) {
      const uint64_t first = b * gs;
      const uint32_t n = static_cast<uint32_t>(in - first < gs ? in - first : gs);
      float x[k_fp4_max_group];
      for (uint32_t i = 0; i < n; ++i) x[i] = at<D>(v, r * in + first + i);
      const float amax = fp4_block_amax(x, n);
      const uint64_t si = r * blocks + b;
      float divisor = 0.0f;
      if (f.family == scheme_family::nvfp4) {
        const nvfp4_block_scale bs = nvfp4_scale_of_block(amax, global);
        put_u8(o.scale, si, bs.byte);
        divisor = bs.divisor;
      } else if (f.family == scheme_family::amdfp4_global) {
        const amdfp4_block_scale bs = amdfp4_global_scale_of_block(amax, global);
        put_u8(o.scale, si, bs.code);
        divisor = bs.divisor;
      } else {
        // The E5M3 value is stored in D (exact there) and divides the elements (EPS if 0).
        const float s = amdfp4_scale<D>(amax);
        put_src_scale<D>(o.scale, si, s);
        divisor = fp4_nonzero(s);
      }
      fp4_encode_elements(x, n, divisor,
                          static_cast<uint8_t*>(o.weight) + r * (in / 2) + first / 2);
    }
  }
  return {};
}

// §10 and custom pairs, stage 1: the code values of the first stage as F32 (fp8 values in +-448,
// int8 integers), its scale written to o.scale.
template <src_kind D>
quant_status stage1_values(const weight_format& f, const source_view& v, const view_geometry& g,
                           const quant_outputs& o, float a, std::vector<float>& vals) {
  vals.assign(g.numel(), 0.0f);
  switch (f.family) {
    case scheme_family::fp8_tensor: {
      const float s = fp8_tensor_scale(a);
      const float s_div = fp8_divisor<D>(s);
      if (s_div == 0.0f) return error(code::scale_underflow, 0);
      if (o.scale) put_f32(o.scale, 0, s);
      for (uint64_t i = 0; i < g.numel(); ++i)
        vals[i] = fp8_e4m3fn_decode(fp8_quantize_element<D>(at<D>(v, i), s_div));
      return {};
    }
    case scheme_family::fp8_row:
      for (uint64_t r = 0; r < g.rows; ++r) {
        float ar = 0.0f;
        for (uint64_t j = 0; j < g.inner; ++j) ar = max_f(ar, abs_f(at<D>(v, r * g.inner + j)));
        const float s = fp8_row_scale(ar);
        const float s_div = fp8_divisor<D>(s);
        if (s_div == 0.0f) return error(code::scale_underflow, g.row_begin + r);
        put_f32(o.scale, r, s);
        for (uint64_t j = 0; j < g.inner; ++j) {
          const uint64_t i = r * g.inner + j;
          vals[i] = fp8_e4m3fn_decode(fp8_quantize_element<D>(at<D>(v, i), s_div));
        }
      }
      return {};
    case scheme_family::int8_tensor: {
      const float s = int8_scale<D>(a);
      const float inv = reciprocal_rn(s);
      if (o.scale) put_f32(o.scale, 0, s);
      for (uint64_t i = 0; i < g.numel(); ++i) vals[i] = int8_code_value(at<D>(v, i), inv);
      return {};
    }
    default:
      return error(code::bad_argument, 0);
  }
}

// One single-stage format on a finite view; `order` is the int4/uint4 nibble order (sequential
// for single-stage schemes, [0,2,4,6,1,3,5,7] for the second stage of a pair).
template <src_kind D>
quant_status run_single(const weight_format& f, const source_view& v, const view_geometry& g,
                        const quant_outputs& o, float a, nibble_order order) {
  std::vector<int32_t> q;
  switch (f.family) {
    case scheme_family::fp8_tensor:
      return fp8_tensor<D>(v, g, o, a);
    case scheme_family::fp8_row:
      return fp8_row<D>(v, g, o);
    case scheme_family::int8_tensor:
      return int8_tensor<D>(v, g, o, a);
    case scheme_family::int4_group:
    case scheme_family::uint4_group: {
      const bool asym = f.family == scheme_family::uint4_group;
      if (quant_status st = int_codes<D>(v, g, o, asym, f.group_size, q); !st.ok()) return st;
      pack_transposed(q, g, o, order);
      return {};
    }
    case scheme_family::int4_channel:
    case scheme_family::uint4_channel: {
      const bool asym = f.family == scheme_family::uint4_channel;
      if (quant_status st = int_codes<D>(v, g, o, asym, g.last, q); !st.ok()) return st;
      pack_rows(q, g, o, order);
      return {};
    }
    case scheme_family::mx:
      return mx<D>(v, g, o, mx_format_of(f.element));
    case scheme_family::nvfp4:
    case scheme_family::amdfp4:
    case scheme_family::amdfp4_global:
      return fp4_scaled<D>(f, v, g, o, a);
    case scheme_family::int4_fp8:
      break;
  }
  return error(code::bad_argument, 0);
}

template <src_kind D>
quant_status run(const weight_scheme& s, const source_view& v, const view_geometry& g,
                 const quant_outputs& o, std::optional<float> tensor_amax) {
  // §4.5: non-finite input is an error, checked before anything is written.
  if (const uint64_t bad = first_non_finite<D>(v, g); bad != k_all_rows)
    return error(code::non_finite_input, bad);
  float a = 0.0f;
  if (needs_tensor_amax(s)) {
    if (quant_status st = detail::need_amax(g, tensor_amax); !st.ok()) return st;
    // Written out as in the fast path on purpose: the reference stays independent of the code it
    // checks (its amax is this scalar loop, the fast path's is amax()).
    if (tensor_amax) {
      a = *tensor_amax;
    } else {
      for (uint64_t i = 0; i < g.numel(); ++i) a = max_f(a, abs_f(at<D>(v, i)));
    }
  }
  if (!s.progressive) return run_single<D>(s.first, v, g, o, a, nibble_order::sequential);
  if (!progressive_error(s.first, s.second).empty()) return error(code::bad_argument, 0);
  // A pair (§10): stage 1 on the source, stage 2 on its code values with D = F32, packed in
  // Quark's reorder mode; the second stage's scale goes to `extra` (_scale_2), its zero point to
  // `extra2`.
  std::vector<float> vals;
  if (quant_status st = stage1_values<D>(s.first, v, g, o, a, vals); !st.ok()) return st;
  source_view fv = v;
  fv.type = dtype::f32;
  fv.data = vals.data();
  view_geometry fg = g;
  fg.kind = src_kind::f32;
  quant_outputs o2;
  o2.weight = o.weight;
  o2.scale = o.extra;
  o2.extra = o.extra2;
  o2.weight_ld = o.weight_ld;
  return run_single<src_kind::f32>(s.second, fv, fg, o2, 0.0f, nibble_order::int4_fp8);
}

}  // namespace

amax_result amax(const source_view& v) {
  detail::view_geometry g;
  if (!detail::check_view(scheme_id::fp8, v, &g).ok()) return {0.0f, 0};
  return detail::dispatch_kind(g.kind, [&]<src_kind D>() {
    amax_result r;
    for (uint64_t i = 0; i < g.numel(); ++i) {
      const float x = at<D>(v, i);
      if (!is_finite(x)) {
        if (r.first_bad == k_all_rows) r.first_bad = g.base() + i;
        continue;
      }
      r.amax = max_f(r.amax, abs_f(x));
    }
    return r;
  });
}

quant_status quantize(const weight_scheme& s, const source_view& v, const quant_outputs& out,
                      std::optional<float> tensor_amax) {
  detail::view_geometry g;
  if (quant_status st = detail::check_view(s, v, &g); !st.ok()) return st;
  return detail::dispatch_kind(g.kind,
                               [&]<src_kind D>() { return run<D>(s, v, g, out, tensor_amax); });
}

}  // namespace shardquant::reference
