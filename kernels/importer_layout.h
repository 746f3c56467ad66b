// The "quark-importer" output layout (README "Loading the outputs"): the tensors Quark's own
// importer (quark.torch.export QParamsLinear, used by transformers' "quark" quantizer) builds
// for the integer schemes, as a byte transform of the file-to-file layout that the kernels
// write. Pure data layout: shapes, where a row range writes, and the conversion of one row
// range's kernel outputs. No files, no JSON, no scheme math (the codes and scales are the
// kernels' own, unchanged).
//
// What differs from the file-to-file layout (formats.md §5.1, §5.6), for int4/uint4 and int8:
//   * int4/uint4 nibbles in the "reorder" order [0,2,4,6,1,3,5,7] the exported config declares
//     (the file-to-file flow packs single-stage schemes sequentially);
//   * per-group scales transposed to [in/g, out];
//   * a `.weight_zero_point` for every integer weight (zeros for symmetric schemes): I32 packed
//     8 per word along `out` (int4/uint4: per-group [in/g, out/8], per-channel [out/8]), I8 []
//     for int8;
//   * progressive pairs name their tensors as the importer's sequential quantizer does:
//     `.weight_quantizer.0.scale`, `.weight_quantizer.1.scale`, `.weight_quantizer.1.zero_point`;
//   * nvfp4 likewise: `.weight_quantizer.0.scale` (the F8_E4M3 block scales) and
//     `.weight_quantizer.1.scale` (the F32 global scale), the same bytes;
//   * amdfp4 / amdfp4_g32: `.weight_scale` as U8 E5M3 codes (what Quark's exporter writes and its
//     importer's e5m3 dequantizer requires) instead of the E5M3 values in the source dtype.
// Every other scheme (fp8, ptpc_fp8, MX, amdfp4_global*) is written the same in both layouts.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/quantize.h"
#include "kernels/schemes.h"

namespace shardquant {

enum class output_layout : uint8_t {
  quark_f2f,       // byte-identical to Quark's file-to-file quantizer (the default)
  quark_importer,  // what Quark's importer and vLLM's Quark loader read (see above)
};
[[nodiscard]] std::string_view layout_name(output_layout l) noexcept;  // "quark-f2f", ...
[[nodiscard]] std::optional<output_layout> parse_layout(std::string_view s) noexcept;

// Whether the importer layout writes other bytes or names than the file-to-file layout.
[[nodiscard]] bool importer_layout_differs(const weight_scheme& s) noexcept;
// Why the importer layout cannot be written for a weight of `shape` ("" = it can): int4/uint4
// need out and in multiples of 8 (the importer packs zero points 8 per word and infers packed
// shapes by floor division); progressive pairs need a per-channel second stage.
[[nodiscard]] std::string importer_layout_error(const weight_scheme& s,
                                                std::span<const uint64_t> shape);
// The outputs in the importer layout, in the order of output_tensors(): weight, scale, then
// scale_2 / zero point. `shape` must have passed check_shape and importer_layout_error.
[[nodiscard]] std::vector<output_tensor> importer_output_tensors(const weight_scheme& s,
                                                                 std::span<const uint64_t> shape);
// Row ranges of per-channel int4/uint4 weights must be multiples of 8 as well (packed zero
// points); otherwise row_split_multiple(s).
[[nodiscard]] uint32_t importer_row_split_multiple(const weight_scheme& s) noexcept;
// range_layout() for the importer outputs; `error` as there.
[[nodiscard]] std::vector<output_piece> importer_range_layout(const weight_scheme& s,
                                                              std::span<const uint64_t> shape,
                                                              uint64_t row_begin, uint64_t row_end,
                                                              std::string* error = nullptr);

// Converts what quantize() wrote for rows [row_begin, row_end) (`kernel`, dense pieces:
// weight_ld = 0) into the importer pieces of the same rows, back to back per tensor as
// importer_range_layout describes them (`out[i]` for output i; runs of a strided piece
// consecutive). Buffers must not overlap. `source`: the dtype the kernel saw (range_layout's
// `source`; amdfp4 wrote its scale in it).
void to_importer_layout(const weight_scheme& s, std::span<const uint64_t> shape, uint64_t row_begin,
                        uint64_t row_end, const quant_outputs& kernel, std::span<void* const> out,
                        dtype source = dtype::bf16);

}  // namespace shardquant
