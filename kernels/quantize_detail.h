// Internals shared by the reference and the fast quantizers (kernels/quantize.h): argument checks,
// the resolved geometry of a source view, and the dispatch from dtype to src_kind templates.
// Host only; not part of the API.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>

#include "kernels/mx.h"
#include "kernels/numeric.h"
#include "kernels/quantize.h"

namespace shardquant::detail {

// Geometry of a view, resolved once.
struct view_geometry {
  src_kind kind;
  uint64_t out;        // shape[0]
  uint64_t row_begin;  // first dim-0 row of the view
  uint64_t rows;       // dim-0 rows in the view
  uint64_t inner;      // elements per dim-0 row
  uint64_t last;       // shape.back(): MX row length, int group/channel row length
  uint64_t numel() const { return rows * inner; }
  uint64_t base() const { return row_begin * inner; }  // flat index of the view's first element
};

// Checks the view against the scheme (dtype, rank, row range); fills g on success.
[[nodiscard]] quant_status check_view(const weight_scheme& s, const source_view& v,
                                      view_geometry* g);

// The per-tensor amax to use: the given one, or (whole-tensor views only) none -> the caller
// computes it. Returns bad_argument for a partial view without an amax.
[[nodiscard]] quant_status need_amax(const view_geometry& g, std::optional<float> a);

inline quant_status error(quant_status::code c, uint64_t index) {
  return {c, index};
}

// Calls f.template operator()<D>() with the view's source kind as a template argument.
template <class F>
decltype(auto) dispatch_kind(src_kind k, F&& f) {
  switch (k) {
    case src_kind::bf16:
      return f.template operator()<src_kind::bf16>();
    case src_kind::f16:
      return f.template operator()<src_kind::f16>();
    default:
      return f.template operator()<src_kind::f32>();
  }
}

inline uint64_t ceil_div(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}

// Output stores shared by the reference, the fast quantizers and the dequantizer.
inline void put_f32(void* p, uint64_t i, float x) {
  std::memcpy(static_cast<char*>(p) + 4 * i, &x, 4);
}
inline void put_i32(void* p, uint64_t i, int32_t x) {
  std::memcpy(static_cast<char*>(p) + 4 * i, &x, 4);
}
// A scale value exact in the source dtype D, stored as a D element (bf16/f16 bits or f32).
template <src_kind D>
void put_src_scale(void* p, uint64_t i, float s) {
  if constexpr (D == src_kind::f32) {
    put_f32(p, i, s);
  } else {
    const uint16_t h = D == src_kind::bf16 ? to_bf16_rne(s) : to_f16_rne(s);
    std::memcpy(static_cast<char*>(p) + 2 * i, &h, 2);
  }
}

// The MX element format of a scheme's element kind (FP4 E2M1 for every non-FP6 kind).
inline mx_format mx_format_of(mx_element e) {
  switch (e) {
    case mx_element::fp6_e2m3:
      return mx_fp6_e2m3();
    case mx_element::fp6_e3m2:
      return mx_fp6_e3m2();
    default:
      return mx_fp4_e2m1();
  }
}

}  // namespace shardquant::detail
