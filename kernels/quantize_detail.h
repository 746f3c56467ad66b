// Internals shared by the reference and the fast quantizers (kernels/quantize.h): argument checks,
// the resolved geometry of a source view, and the dispatch from dtype to src_kind templates.
// Host only; not part of the API.
#pragma once

#include <cstdint>
#include <optional>

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

}  // namespace shardquant::detail
