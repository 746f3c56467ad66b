// Decoding and bound checks of quantized weights: one element visitor per stored layout
// (fp8/int8 bytes, int4/uint4 words transposed or not, MX packed codes with e8m0 bytes) feeds
// both dequantize() and check_bounds(), run over chunks of rows (MX: lines) with TBB, as the fast
// quantizers are. Depends only on the math headers and TBB's parallel_for.
#include "kernels/dequantize.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>

#include "kernels/amdfp4.h"
#include "kernels/fp4_block.h"
#include "kernels/fp8.h"
#include "kernels/int_quant.h"
#include "kernels/mx.h"
#include "kernels/numeric.h"
#include "kernels/quantize_detail.h"

namespace shardquant {

namespace {

using code = quant_status::code;
using detail::mx_format_of;

struct geom {
  uint64_t out = 0, row_begin = 0, rows = 0, inner = 0, last = 0;
  dtype source = dtype::bf16;  // amdfp4*: the dtype of the stored `_scale`
  [[nodiscard]] uint64_t numel() const { return rows * inner; }
};

uint64_t ceil_div(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}

float f32_at(const void* p, uint64_t i) {
  float v;
  std::memcpy(&v, static_cast<const char*>(p) + 4 * i, 4);
  return v;
}
int32_t i32_at(const void* p, uint64_t i) {
  int32_t v;
  std::memcpy(&v, static_cast<const char*>(p) + 4 * i, 4);
  return v;
}
uint32_t u32_at(const void* p, uint64_t i) {
  return static_cast<uint32_t>(i32_at(p, i));
}
uint8_t u8_at(const void* p, uint64_t i) {
  return static_cast<const uint8_t*>(p)[i];
}

// Nibble of a word holding element e (0..7) of its 8: the inverse of nibble_source().
uint32_t nibble_of(nibble_order o, uint32_t e) {
  if (o == nibble_order::sequential) return e;
  return (e & 1u) ? 4 + e / 2 : e / 2;  // [0,2,4,6,1,3,5,7]
}

// One stored element, decoded: the grid value of its code, its scale (2^(byte-127) for MX) and
// zero point; `min_byte` marks an MX block stored with byte 1 (k may have been -127, TC6).
struct element_code {
  float value = 0;
  float scale = 1;
  float zero = 0;
  bool min_byte = false;
};

// The block formats whose blocks run along the last dimension of every leading index.
bool is_block_family(scheme_family f) {
  return f == scheme_family::mx || f == scheme_family::nvfp4 || f == scheme_family::amdfp4 ||
         f == scheme_family::amdfp4_global;
}

// The units visit() splits a range into: dim-0 rows, or last-dim lines for the block formats.
uint64_t units_of(const weight_format& f, const geom& g) {
  return is_block_family(f.family) && g.last ? g.numel() / g.last : g.rows;
}

// A scaled-FP4 block's scale as stored, widened to fp32: nvfp4 value(e4m3 byte) * s2,
// amdfp4_global* value(e5m3 code) * s2 (RN32, as the quantizer's s'), amdfp4* the E5M3 value
// stored in the source dtype. NaN for a NaN code.
float fp4_block_scale(const weight_format& f, const geom& g, const void* scale, const void* s2,
                      uint64_t si) {
  switch (f.family) {
    case scheme_family::nvfp4:
      return mul_rn(fp8_e4m3fn_decode(u8_at(scale, si)), f32_at(s2, 0));
    case scheme_family::amdfp4_global:
      return mul_rn(e5m3_decode(u8_at(scale, si)), f32_at(s2, 0));
    default: {
      if (g.source == dtype::f32) return f32_at(scale, si);
      uint16_t h;
      std::memcpy(&h, static_cast<const char*>(scale) + 2 * si, 2);
      return g.source == dtype::f16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
  }
}

// Calls fn(i, element_code) for every element i (flat index inside the range) of units
// [u0, u1) of a single-stage format whose codes are at `weight`, scales at `scale`, zero points
// at `zp`. Returns bad_scale for an e8m0 byte 0xFF.
template <class F>
quant_status visit(const weight_format& f, const geom& g, const void* weight, const void* scale,
                   const void* zp, nibble_order order, uint64_t u0, uint64_t u1, F&& fn) {
  const uint64_t n0 = u0 * g.inner, n1 = u1 * g.inner;  // fp8/int8: elements of rows [u0, u1)
  switch (f.family) {
    case scheme_family::fp8_tensor:
    case scheme_family::fp8_row: {
      const bool row = f.family == scheme_family::fp8_row;
      for (uint64_t i = n0; i < n1; ++i) {
        element_code e;
        e.value = fp8_e4m3fn_decode(u8_at(weight, i));
        e.scale = f32_at(scale, row ? i / g.inner : 0);
        fn(i, e);
      }
      return {};
    }
    case scheme_family::int8_tensor: {
      const float s = f32_at(scale, 0);
      for (uint64_t i = n0; i < n1; ++i) {
        element_code e;
        e.value = static_cast<float>(static_cast<int8_t>(u8_at(weight, i)));
        e.scale = s;
        fn(i, e);
      }
      return {};
    }
    case scheme_family::int4_group:
    case scheme_family::uint4_group:
    case scheme_family::int4_channel:
    case scheme_family::uint4_channel: {
      const bool asym =
          f.family == scheme_family::uint4_group || f.family == scheme_family::uint4_channel;
      const bool group =
          f.family == scheme_family::int4_group || f.family == scheme_family::uint4_group;
      const uint64_t in = g.last;
      const uint64_t units = group ? in / f.group_size : 1;
      const uint64_t cols = ceil_div(g.rows, 8);  // per-group: word columns of the range
      const uint64_t words = ceil_div(in, 8);     // per-channel: words per row
      for (uint64_t r = u0; r < u1; ++r)
        for (uint64_t j = 0; j < in; ++j) {
          uint32_t w, nib;
          if (group) {  // word (j, c) holds rows 8c..8c+7 of column j (§5.6, transposed)
            w = u32_at(weight, j * cols + r / 8);
            nib = nibble_of(order, static_cast<uint32_t>(r % 8));
          } else {  // word (r, c) holds columns 8c..8c+7 of row r
            w = u32_at(weight, r * words + j / 8);
            nib = nibble_of(order, static_cast<uint32_t>(j % 8));
          }
          const uint64_t si = group ? r * units + j / f.group_size : r;
          element_code e;
          e.value = static_cast<float>(asym ? unpack_uint4(w, nib) : unpack_int4(w, nib));
          e.scale = f32_at(scale, si);
          e.zero = asym ? static_cast<float>(i32_at(zp, si)) : 0.0f;
          fn(r * in + j, e);
        }
      return {};
    }
    case scheme_family::mx: {
      const mx_format mf = mx_format_of(f.element);
      const uint64_t in = g.last;
      const uint64_t blocks = ceil_div(in, k_mx_block);
      const uint64_t line_bytes = mx_packed_bytes(in, mf);
      for (uint64_t l = u0; l < u1; ++l)
        for (uint64_t c = 0; c < in; ++c) {
          const uint64_t si = l * blocks + c / k_mx_block;
          const uint8_t b = u8_at(scale, si);
          if (b == 255) return {code::bad_scale, si};
          const uint8_t* row = static_cast<const uint8_t*>(weight) + l * line_bytes;
          uint32_t cd;
          if (mf.code_bits == 4) {
            const uint8_t byte = row[c / 2];
            cd = (c & 1) ? byte >> 4 : byte & 0xFu;
          } else {  // 4 codes in 3 little-endian bytes (§5.7 step 6)
            const uint8_t* p = row + 3 * (c / 4);
            const uint32_t w =
                p[0] | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16);
            cd = (w >> (6 * (c % 4))) & 63u;
          }
          element_code e;
          e.value = mx_decode_element(cd, mf);
          e.scale = e8m0_decode(b);
          e.min_byte = b == 1;
          fn(l * in + c, e);
        }
      return {};
    }
    case scheme_family::nvfp4:
    case scheme_family::amdfp4:
    case scheme_family::amdfp4_global: {
      const uint64_t in = g.last;
      const uint64_t blocks = ceil_div(in, f.group_size);
      for (uint64_t l = u0; l < u1; ++l)
        for (uint64_t c = 0; c < in; ++c) {
          const uint64_t si = l * blocks + c / f.group_size;
          const float s = fp4_block_scale(f, g, scale, zp, si);
          if (std::isnan(s)) return {code::bad_scale, si};
          const uint8_t byte = u8_at(weight, l * (in / 2) + c / 2);
          element_code e;
          e.value = mx_decode_element((c & 1) ? byte >> 4 : byte & 0xFu, mx_fp4_e2m1());
          e.scale = s;
          fn(l * in + c, e);
        }
      return {};
    }
    case scheme_family::int4_fp8:
      break;
  }
  return {code::bad_argument, 0};
}

// Runs body(u0, u1) -> quant_status over chunks of [0, units) in parallel (about 64K elements
// each); returns the error with the smallest index, if any.
template <class B>
quant_status for_chunks(uint64_t units, uint64_t per_unit, B&& body) {
  const uint64_t grain =
      std::max<uint64_t>(1, (uint64_t{1} << 16) / std::max<uint64_t>(1, per_unit));
  std::mutex m;
  quant_status first;
  tbb::parallel_for(tbb::blocked_range<uint64_t>(0, units, grain), [&](const auto& r) {
    const quant_status st = body(r.begin(), r.end());
    if (st.ok()) return;
    const std::lock_guard<std::mutex> lock(m);
    if (first.ok() || st.index < first.index) first = st;
  });
  return first;
}

// The dequantized value of one single-stage element: (q - zp) * s, fp8(q) * s, value * 2^k.
float dequant(const element_code& e) {
  return mul_rn(sub_rn(e.value, e.zero), e.scale);
}

// 2^e as a double (e well inside the normal range here).
double pow2(int e) {
  return f32_from_bits(static_cast<uint32_t>(e + 127) << 23);
}

// Exponent of a positive normal value's binade: floor(log2 a), read from its fp32 bits (`a` is
// a clamped fp32 quotient, so the conversion is exact).
int binade(double a) {
  return static_cast<int>(f32_bits(static_cast<float>(a)) >> 23) - 127;
}

// Half the spacing of the fp8 e4m3 grid at a (0 <= a <= 448): 2^(e-4) in binade e >= -6, and
// 2^-10 (half the subnormal step 2^-9) below 2^-6.
double fp8_half_step(double a) {
  if (a < 0x1p-6) return 0x1p-10;
  return pow2(binade(a) - 4);
}

// Half the spacing of an MX element grid at a (0 <= a <= max): subnormal step 2^(1-bias-mbits).
double mx_half_step(double a, const mx_format& f) {
  const int min_normal_exp = 1 - static_cast<int>(f.bias);
  if (a < pow2(min_normal_exp)) return pow2(min_normal_exp - static_cast<int>(f.mbits) - 1);
  return pow2(binade(a) - static_cast<int>(f.mbits) - 1);
}

double clamp_d(double y, double lo, double hi) {
  return y < lo ? lo : (y > hi ? hi : y);
}

// One element against its bound (see dequantize.h). x: the value the stage quantized (finite,
// checked by the caller); kind: its source dtype (F32 for a pair's second stage).
struct element_bound {
  double target = 0, limit = 0;
  bool ok = false;
};

element_bound bound_of(const weight_format& f, src_kind kind, float x, const element_code& e) {
  element_bound b;
  const double v = e.value;
  switch (f.family) {
    case scheme_family::fp8_tensor:
    case scheme_family::fp8_row: {
      const float s_div = round_src(kind, e.scale);
      if (!(s_div > 0.0f) || !is_finite(s_div) || std::isnan(e.value)) return b;  // not ok
      const float y = round_src(kind, div_rn(x, s_div));
      if (std::isnan(y)) return b;
      b.target = clamp_d(y, -448.0, 448.0);  // an infinite quotient saturates like 448
      b.limit = fp8_half_step(std::fabs(b.target));
      break;
    }
    case scheme_family::int8_tensor:
    case scheme_family::int4_group:
    case scheme_family::int4_channel:
    case scheme_family::uint4_group:
    case scheme_family::uint4_channel: {
      if (!(e.scale > 0.0f) || !is_finite(e.scale)) return b;
      const bool i8 = f.family == scheme_family::int8_tensor;
      const bool asym =
          f.family == scheme_family::uint4_group || f.family == scheme_family::uint4_channel;
      const float inv = reciprocal_rn(e.scale);
      float y = mul_rn(x, inv);
      if (asym) y = add_rn(y, e.zero);
      if (std::isnan(y)) return b;
      const double lo = i8 ? -128 : (asym ? 0 : -8), hi = i8 ? 127 : (asym ? 15 : 7);
      b.target = clamp_d(y, lo, hi);
      b.limit = 0.5;
      break;
    }
    case scheme_family::mx: {
      const mx_format mf = mx_format_of(f.element);
      const double mx = f32_from_bits(mf.max_bits);
      auto at = [&](float divisor) {
        element_bound r;
        const float y = div_rn(x, divisor);
        r.target = clamp_d(y, -mx, mx);
        r.limit = mx_half_step(std::fabs(r.target), mf);
        r.ok = std::fabs(r.target - v) <= r.limit;
        return r;
      };
      b = at(e.scale);
      if (!b.ok && e.min_byte) {
        const element_bound alt = at(mx_scale_divisor(-127));
        if (alt.ok) b = alt;
      }
      return b;
    }
    case scheme_family::nvfp4:
    case scheme_family::amdfp4:
    case scheme_family::amdfp4_global: {
      // The elements were divided by the block scale, or by EPS where it is 0 (fp4_nonzero).
      const mx_format mf = mx_fp4_e2m1();
      const float y = div_rn(x, fp4_nonzero(e.scale));
      if (std::isnan(y) || !(e.scale >= 0.0f) || !is_finite(e.scale)) return b;
      b.target = clamp_d(y, -6.0, 6.0);
      b.limit = mx_half_step(std::fabs(b.target), mf);
      break;
    }
    case scheme_family::int4_fp8:
      return b;
  }
  b.ok = std::fabs(b.target - v) <= b.limit;
  return b;
}

// Resolves the geometry and checks the scheme, shape and row range.
quant_status geometry_of(const weight_scheme& s, std::span<const uint64_t> shape, uint64_t rb,
                         uint64_t re, geom* g) {
  if (shape.empty() || !check_shape(s, shape).empty()) return {code::bad_argument, 0};
  if (s.progressive && !progressive_error(s.first, s.second).empty())
    return {code::bad_argument, 0};
  if (!s.progressive && s.first.family == scheme_family::int4_fp8) return {code::bad_argument, 0};
  g->out = shape[0];
  g->row_begin = rb;
  const uint64_t end = re == k_all_rows ? shape[0] : re;
  if (rb > end || end > shape[0]) return {code::bad_argument, 0};
  g->rows = end - rb;
  uint64_t inner = 1;
  for (size_t d = 1; d < shape.size(); ++d) inner *= shape[d];
  g->inner = inner;
  g->last = shape.back();
  std::string err;
  (void)range_layout(s, shape, rb, end, &err);
  if (!err.empty()) return {code::bad_argument, rb};
  return {};
}

// The first stage's scale of element i of a pair: per-tensor (one value) or per-row.
float stage1_scale(const weight_format& f, const geom& g, const void* scale, uint64_t i) {
  return f.family == scheme_family::fp8_row ? f32_at(scale, i / g.inner) : f32_at(scale, 0);
}

// Stage 1 of a pair replayed from the source element x (dtype kind) with its stored scale: the
// F32 value of its code (fp8 value or int8 integer), as the quantizer passed it to stage 2.
// nullopt-like NaN when the stored scale cannot have been used.
float stage1_value(const weight_format& f, src_kind kind, float x, float s1) {
  if (f.family == scheme_family::int8_tensor) {
    if (!(s1 > 0.0f) || !is_finite(s1)) return f32_from_bits(0x7FC00000u);
    return int8_code_value(x, reciprocal_rn(s1));
  }
  const float s_div = round_src(kind, s1);
  if (!(s_div > 0.0f) || !is_finite(s_div)) return f32_from_bits(0x7FC00000u);
  const float y = round_src(kind, div_rn(x, s_div));
  return fp8_e4m3fn_decode(fp8_e4m3fn_encode(y));
}

template <src_kind D>
float src_at(const void* p, uint64_t i) {
  return load_src<D>(p, i);
}

}  // namespace

quant_status dequantize(const weight_scheme& s, const quantized_view& q, float* out) {
  geom g;
  if (quant_status st = geometry_of(s, q.shape, q.row_begin, q.row_end, &g); !st.ok()) return st;
  g.source = q.source;
  const weight_format& f = s.packed();
  const uint64_t units = units_of(f, g);
  return for_chunks(units, units ? g.numel() / units : 1, [&](uint64_t u0, uint64_t u1) {
    if (!s.progressive)
      return visit(f, g, q.weight, q.scale, q.extra, nibble_order::sequential, u0, u1,
                   [&](uint64_t i, const element_code& e) { out[i] = dequant(e); });
    return visit(f, g, q.weight, q.extra, q.extra2, nibble_order::int4_fp8, u0, u1,
                 [&](uint64_t i, const element_code& e) {
                   out[i] = mul_rn(dequant(e), stage1_scale(s.first, g, q.scale, i));
                 });
  });
}

quant_status check_bounds(const weight_scheme& s, const source_view& src, const quantized_view& q,
                          bound_report* out) {
  geom g;
  if (quant_status st = geometry_of(s, q.shape, q.row_begin, q.row_end, &g); !st.ok()) return st;
  g.source = q.source;
  if (src.row_begin != g.row_begin || src.end_row() != g.row_begin + g.rows ||
      (src.type != dtype::f32 && src.type != dtype::bf16 && src.type != dtype::f16))
    return {code::bad_argument, 0};
  const src_kind kind = src.type == dtype::f32    ? src_kind::f32
                        : src.type == dtype::bf16 ? src_kind::bf16
                                                  : src_kind::f16;
  auto load = [&](uint64_t i) {
    switch (kind) {
      case src_kind::bf16:
        return src_at<src_kind::bf16>(src.data, i);
      case src_kind::f16:
        return src_at<src_kind::f16>(src.data, i);
      default:
        return src_at<src_kind::f32>(src.data, i);
    }
  };
  bound_report& total = *out;
  total = {};
  std::mutex m;
  const weight_format& f = s.packed();
  const uint64_t units = units_of(f, g);
  return for_chunks(units, units ? g.numel() / units : 1, [&](uint64_t u0, uint64_t u1) {
    bound_report r;  // this chunk's; elements are visited in increasing index order
    auto note = [&](uint64_t i, const element_code& e, const element_bound& b) {
      ++r.checked;
      if (b.ok) return;
      if (r.violations++ == 0) {
        r.first = g.row_begin * g.inner + i;
        r.target = b.target;
        r.value = e.value;
        r.limit = b.limit;
      }
    };
    quant_status st;
    if (!s.progressive)
      st = visit(
          f, g, q.weight, q.scale, q.extra, nibble_order::sequential, u0, u1,
          [&](uint64_t i, const element_code& e) { note(i, e, bound_of(f, kind, load(i), e)); });
    else
      st = visit(f, g, q.weight, q.extra, q.extra2, nibble_order::int4_fp8, u0, u1,
                 [&](uint64_t i, const element_code& e) {
                   const float x1 =
                       stage1_value(s.first, kind, load(i), stage1_scale(s.first, g, q.scale, i));
                   element_bound b;  // a scale stage 1 cannot have used breaks the bound
                   if (!std::isnan(x1)) b = bound_of(f, src_kind::f32, x1, e);
                   note(i, e, b);
                 });
    const std::lock_guard<std::mutex> lock(m);
    total.checked += r.checked;
    total.violations += r.violations;
    if (r.first < total.first) {
      total.first = r.first;
      total.target = r.target;
      total.value = r.value;
      total.limit = r.limit;
    }
    return st;
  });
}

element_location locate_element(const weight_scheme& s, std::span<const uint64_t> shape,
                                uint64_t flat, dtype source) {
  element_location loc;
  if (shape.empty()) return loc;
  uint64_t inner = 1;
  for (size_t d = 1; d < shape.size(); ++d) inner *= shape[d];
  const uint64_t out = shape[0], last = shape.back();
  const uint64_t r = inner ? flat / inner : 0, j = inner ? flat % inner : 0;
  const weight_format& f = s.packed();
  switch (f.family) {
    case scheme_family::fp8_tensor:
    case scheme_family::fp8_row:
    case scheme_family::int8_tensor:
      loc.weight_byte = flat;
      loc.scale_byte = f.family == scheme_family::fp8_row ? 4 * r : 0;
      break;
    case scheme_family::int4_group:
    case scheme_family::uint4_group:
      loc.weight_byte = 4 * (j * ceil_div(out, 8) + r / 8);
      loc.scale_byte = 4 * (r * (last / f.group_size) + j / f.group_size);
      break;
    case scheme_family::int4_channel:
    case scheme_family::uint4_channel:
      loc.weight_byte = 4 * (r * ceil_div(last, 8) + j / 8);
      loc.scale_byte = 4 * r;
      break;
    case scheme_family::mx: {
      const mx_format mf = mx_format_of(f.element);
      const uint64_t l = flat / last, c = flat % last;
      loc.weight_byte = l * mx_packed_bytes(last, mf) + (mf.code_bits == 4 ? c / 2 : 3 * (c / 4));
      loc.scale_byte = l * ceil_div(last, k_mx_block) + c / k_mx_block;
      break;
    }
    case scheme_family::nvfp4:
    case scheme_family::amdfp4:
    case scheme_family::amdfp4_global: {
      const uint64_t l = flat / last, c = flat % last;
      const uint64_t si = l * ceil_div(last, f.group_size) + c / f.group_size;
      loc.weight_byte = l * (last / 2) + c / 2;
      loc.scale_byte = f.family == scheme_family::amdfp4 ? si * (bits(source) / 8) : si;
      break;
    }
    case scheme_family::int4_fp8:
      break;
  }
  // A pair's `_scale` is stage 1's: per-tensor, or per-row for an fp8 per-row first stage.
  if (s.progressive) loc.scale_byte = s.first.family == scheme_family::fp8_row ? 4 * r : 0;
  return loc;
}

}  // namespace shardquant
