// Tensor-level quantization API (plain C++, host only): a source view of a whole weight or of a
// row range of it, a scheme, caller-provided output buffers; the outputs of output_tensors()
// (kernels/schemes.h) are produced byte for byte as formats.md §5 and §10 say.
// Two implementations with the same contract and identical bytes: quantize() (the fast path,
// TBB-parallel, what the program runs) and reference::quantize() (the spec in code).
// Owns no files and throws nothing from the math: errors are values (quant_status).
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "kernels/schemes.h"

namespace shardquant {

inline constexpr uint64_t k_all_rows = std::numeric_limits<uint64_t>::max();

// A quantization source: rows [row_begin, row_end) along dim 0 of a tensor of `shape`.
// `data` holds exactly those rows in C order (element (r, ...) of the range at
// ((r - row_begin) * inner + ...) where inner = numel / shape[0]).
struct source_view {
  dtype type = dtype::bf16;         // F32, BF16 or F16
  std::span<const uint64_t> shape;  // shape of the whole tensor (rank >= 2 for every scheme)
  const void* data = nullptr;       // the bytes of the row range
  uint64_t row_begin = 0;
  uint64_t row_end = k_all_rows;  // k_all_rows = shape[0]

  [[nodiscard]] uint64_t rows() const noexcept;     // row_end - row_begin (resolved)
  [[nodiscard]] uint64_t inner() const noexcept;    // elements per dim-0 row
  [[nodiscard]] uint64_t last() const noexcept;     // shape.back()
  [[nodiscard]] uint64_t end_row() const noexcept;  // resolved row_end
};

// Outcome of a kernel call. index: for non_finite_input, the flat element index in the WHOLE tensor
// (row_begin * inner + offset) of the first NaN/Inf; for the scale errors, the index of the
// scale (0 for per-tensor scales, the row for per-row ones); for recovery, as documented there.
struct quant_status {
  enum class code : uint8_t {
    ok,
    non_finite_input,  // NaN or +-Inf in a weight (formats.md §4.5)
    scale_underflow,   // round_D(scale) == 0 for an F16 source (§5.2 [DIFF])
    non_finite_scale,  // a scale computed in the source dtype overflowed (F16 uint4 ranges)
    bad_argument,      // a row range that cannot be processed alone, a wrong dtype, ...
    bad_scale,         // recovery: an e8m0 scale byte 0xFF or an out-of-range g_idx
  };
  code what = code::ok;
  uint64_t index = 0;
  [[nodiscard]] bool ok() const noexcept { return what == code::ok; }
  // One line, e.g. "NaN or Inf in the weight at element 1234".
  [[nodiscard]] std::string message() const;
};

// ---- per-tensor amax (fp8, int8, int4_fp8)
// --------------------------------------------------------

// Exact max |x| over the view (-0 counts as 0) and the first non-finite element, combinable
// across row ranges in any order.
struct amax_result {
  float amax = 0.0f;
  uint64_t first_bad = k_all_rows;  // flat index in the whole tensor; k_all_rows = none
  [[nodiscard]] bool finite() const noexcept { return first_bad == k_all_rows; }
};
[[nodiscard]] amax_result combine(const amax_result& a, const amax_result& b) noexcept;
[[nodiscard]] amax_result amax(const source_view& v);  // fast (TBB)
namespace reference {
[[nodiscard]] amax_result amax(const source_view& v);
}

// ---- outputs and their layout
// -----------------------------------------------------------------------

// Where this call writes. Each pointer points at the part of its output tensor that belongs to the
// view's row range (see range_layout), in the dtype of output_tensors():
//   weight: F8_E4M3 / I8 / U8 / I32 bytes; scale: F32 (U8 e8m0 bytes for MX, F8_E4M3 bytes for
//   nvfp4, U8 E5M3 codes for amdfp4_global*, the source dtype for amdfp4*); extra:
//   `_zero_point` I32 (uint4) or `_scale_2` F32 (progressive pairs such as int4_fp8, and the
//   global scale of nvfp4 / amdfp4_global*), nullptr otherwise; extra2: `_zero_point` I32 of a pair
//   with an asymmetric (uint4) second stage.
// Per-tensor scales (fp8, int8, int4_fp8 `_scale`, shape []) are written by every call (the same
// value for every range of a tensor); scale may be nullptr to skip it.
struct quant_outputs {
  void* weight = nullptr;
  void* scale = nullptr;
  void* extra = nullptr;
  // int4/uint4 per-group only (also as a second stage): the packed weight is [in, ceil(out/8)]
  // (transposed). This call writes words (j, c) for j in [0, in) and its columns c in [0,
  // ceil(rows/8)) at weight[j * weight_ld + c] (I32 units). 0 means ceil(rows/8): a dense [in,
  // ceil(rows/8)] piece. For the whole tensor either value gives the final layout.
  uint64_t weight_ld = 0;
  void* extra2 = nullptr;  // last, so positional initializers of the fields above keep working
};

// The part of one output tensor a row range writes: `count` runs of `run_bytes` bytes; run i
// starts at byte `offset + i * stride` of the full output tensor. Contiguous parts have count 1.
struct output_piece {
  uint64_t offset = 0;
  uint64_t run_bytes = 0;
  uint64_t count = 1;
  uint64_t stride = 0;
};

// For each tensor of output_tensors(s, shape) (same order): the piece rows [row_begin, row_end)
// write. Rules (formats.md §5.1): elementwise and per-row outputs map rows to contiguous bytes; MX
// maps a dim-0 row to inner/last rows of packed bytes and of e8m0 scales; per-group int4/uint4 map
// rows [8a, 8b) to word columns [a, b) of the transposed [in, ceil(out/8)] weight (count = in
// runs of (b-a)*4 bytes, stride ceil(out/8)*4) and to scale/zero-point rows [8a, 8b);
// per-tensor scales are the whole 4 bytes for every range.
// Empty string in `error` (if given) unless the range is not splittable there: per-group
// int4/uint4 need row_begin % 8 == 0 and (row_end % 8 == 0 or row_end == out).
// `source`: the dtype the weight reaches the kernel in (amdfp4 stores its scale in it).
[[nodiscard]] std::vector<output_piece> range_layout(const weight_scheme& s,
                                                     std::span<const uint64_t> shape,
                                                     uint64_t row_begin, uint64_t row_end,
                                                     std::string* error = nullptr,
                                                     dtype source = dtype::bf16);

// ---- quantization
// -----------------------------------------------------------------------------------

// Quantizes the view with scheme `s` into `out`. The shape must have passed check_shape().
// Per-tensor schemes (fp8, int8, int4_fp8) need `tensor_amax` = amax of the WHOLE tensor (combine
// the amax() of every range) unless the view covers the whole tensor, where it is computed when
// absent. Non-finite input is reported with the first bad index of the view (other outputs are then
// unspecified). Fast path: TBB parallel over rows/blocks.
// Progressive pairs (weight_scheme): stage 1 on the source, stage 2 on its code values as F32.
[[nodiscard]] quant_status quantize(const weight_scheme& s, const source_view& v,
                                    const quant_outputs& out,
                                    std::optional<float> tensor_amax = std::nullopt);
namespace reference {
[[nodiscard]] quant_status quantize(const weight_scheme& s, const source_view& v,
                                    const quant_outputs& out,
                                    std::optional<float> tensor_amax = std::nullopt);
}

}  // namespace shardquant
