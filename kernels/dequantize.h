// Decoding of quantized weights (formats.md §5.1, §5.6, §5.7, §5.11, §10): the stored tensors of
// a whole weight or of a row range back to fp32, and the per-element check that every code lies
// within half a step of its format's grid from the value the quantizer saw (the bound `verify`
// enforces). Every built-in scheme and every progressive pair (kernels/schemes.h). Reuses the
// element decoders of fp8.h, mx.h and int_quant.h. Host only, no files, errors are values.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/quantize.h"
#include "kernels/schemes.h"

namespace shardquant {

// The stored tensors of rows [row_begin, row_end) of a quantized weight of `shape` (the input
// shape of the weight, as for quantize()), each laid out exactly as quantize() writes that range
// with weight_ld = 0: range_layout()'s pieces gathered back to back. For a per-group int4/uint4
// weight that is the dense [in, ceil(rows/8)] word block; per-tensor scales are their 4 bytes.
// Pointers in output_tensors() order: weight, scale, extra (`_zero_point` of uint4 or `_scale_2`
// of a pair), extra2 (`_zero_point` of a pair with a uint4 second stage).
struct quantized_view {
  std::span<const uint64_t> shape;
  uint64_t row_begin = 0;
  uint64_t row_end = k_all_rows;
  const void* weight = nullptr;
  const void* scale = nullptr;
  const void* extra = nullptr;
  const void* extra2 = nullptr;
};

// out[(r - row_begin) * inner + j] = the dequantized value of formats.md §5.11 (a pair:
// RN32(RN32((q - zp) * s2) * s1)). Errors: bad_argument (shape, row range or scheme), bad_scale
// (an e8m0 scale byte 0xFF; index = flat scale index of the range).
[[nodiscard]] quant_status dequantize(const weight_scheme& s, const quantized_view& q, float* out);

// Result of check_bounds over a range: how many elements break the bound, and the first one.
struct bound_report {
  uint64_t checked = 0;
  uint64_t violations = 0;
  uint64_t first = k_all_rows;  // flat element index in the WHOLE tensor of the first violation
  // At `first`: the value the quantizer rounded (in grid units, after the clamp), the code's
  // grid value, and the largest distance the bound allows.
  double target = 0, value = 0, limit = 0;
};

// Checks every element of `src` (the source rows the quantizer saw: F32/BF16/F16, same rows as
// `q`) against its stored code. The bound, per format (exact: the quantizer's own fp32 steps are
// replayed with the stored scales, so no tolerance is needed):
//   fp8 e4m3 (per-tensor, per-row, a pair's fp8 stage): y = round_D(RN32(w / round_D(s))),
//     clamped to +-448; |y - fp8(q)| <= half the fp8 spacing at |y| (2^(e-4) in binade e >= -6,
//     2^-10 among the subnormals). Taking the spacing of |y|'s own binade is right at binade
//     edges too: a y just below 2^e rounds up by at most half the finer spacing below.
//   int8 / int4: y = RN32(w * RN32(1/s)); |clamp(y, lo, hi) - q| <= 0.5 (rne never moves
//     further; a clamped y must give the end code).
//   uint4: y = RN32(RN32(w * RN32(1/s)) + zp); |clamp(y, 0, 15) - q| <= 0.5.
//   MX: y = RN32(w / 2^(byte-127)), clamped to +-max; |y - value(code)| <= half the element
//     spacing at |y| (2^(e - mbits - 1) for normals, 2^(-bias - mbits) below the smallest
//     normal). A block stored with byte 1 may have been divided by the k = -127 divisor of TC6;
//     either divisor is accepted there.
//   pairs: stage 1 is replayed from the source with the stored `_scale` (its codes are not
//     stored), then the stored codes are checked against stage 2's bound on those values (F32).
// Errors as dequantize(); also bad_argument when src does not cover the same rows.
[[nodiscard]] quant_status check_bounds(const weight_scheme& s, const source_view& src,
                                        const quantized_view& q, bound_report* out);

// Where the stored bytes of element `flat` (index in the whole tensor) lie, as byte offsets
// inside the weight tensor and inside its (first) scale tensor, for error messages.
struct element_location {
  uint64_t weight_byte = 0;
  uint64_t scale_byte = 0;
};
[[nodiscard]] element_location locate_element(const weight_scheme& s,
                                              std::span<const uint64_t> shape, uint64_t flat);

}  // namespace shardquant
