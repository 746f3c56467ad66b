// Weight converters (formats.md §9): rename, chunk(dim), split_fused_experts(axis). Owns the
// converter description, its parsing (`--convert 'SRC=T1,T2:op(args)'` and a JSON file), the
// name/shape rules the plan applies, and the pure byte-slicing the pipeline's convert stage
// runs. No files besides the JSON converter file; no graph.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace shardquant {

enum class converter_op : uint8_t { rename, chunk, split_fused_experts };

struct converter {
  std::string source;                // suffix matched with ends_with (§9)
  std::vector<std::string> targets;  // target keys, appended to the prefix
  converter_op op = converter_op::rename;
  int64_t arg = 0;  // chunk: dim; split_fused_experts: split axis (may be < 0)
  [[nodiscard]] std::string to_string() const;  // "SRC=T1,T2:op(arg)"
  bool operator==(const converter&) const = default;
};

// Parses "SRC=T1[,T2...]:op(args)" with op one of rename, chunk(dim), split_fused_experts(axis)
// ("rename" takes no argument and exactly one target). Throws usage_error.
[[nodiscard]] converter parse_converter(std::string_view spec);
// A JSON file: [{"source": "...", "targets": [...], "op": "chunk", "arg": 0}, ...].
// Throws usage_error naming the file.
[[nodiscard]] std::vector<converter> read_converter_file(const std::string& path);

// Which part of a source tensor one converter output is. The source is first indexed at
// `expert` along dim 0 (dropping that dim) when set, then cut to [begin, begin+length) along
// `axis` of what remains when axis >= 0.
struct converter_slice {
  std::optional<uint64_t> expert;
  int32_t axis = -1;
  uint64_t begin = 0, length = 0;
  [[nodiscard]] static converter_slice whole() { return {}; }
  [[nodiscard]] bool is_whole() const noexcept { return !expert && axis < 0; }
  bool operator==(const converter_slice&) const = default;
};

struct converter_output {
  std::string name;
  std::vector<uint64_t> shape;
  converter_slice slice;
};

// Index of the first converter whose source is a suffix of `name`, if any.
[[nodiscard]] std::optional<size_t> match_converter(std::span<const converter> list,
                                                    std::string_view name) noexcept;
// The outputs of `c` applied to tensor `name` of `shape` (names, shapes, slices), in target
// order (split_fused_experts: expert-major). Throws input_error naming the tensor when the op
// does not fit the shape (e.g. split_fused_experts on rank != 3, odd split size).
[[nodiscard]] std::vector<converter_output> apply_converter(const converter& c,
                                                            std::string_view name,
                                                            std::span<const uint64_t> shape);

// A slice as byte runs of a C-order source: `count` runs of `run_bytes`, the first at `offset`,
// each `stride` bytes after the previous one. Copying the runs back to back gives the output
// tensor's C-order bytes.
struct strided_view {
  uint64_t offset = 0;
  uint64_t run_bytes = 0;
  uint64_t count = 0;
  uint64_t stride = 0;
  std::vector<uint64_t> shape;  // output shape
  [[nodiscard]] uint64_t bytes() const noexcept { return run_bytes * count; }
};
// Throws input_error when the element size is not a whole number of bytes or the slice is out
// of range.
[[nodiscard]] strided_view describe_slice(std::span<const uint64_t> source_shape,
                                          uint32_t element_bits, const converter_slice& slice);
// Copies the slice out of `source` (the whole source tensor) into `out` (view.bytes()).
void copy_slice(std::span<const std::byte> source, const strided_view& view,
                std::span<std::byte> out);

// The template converters of Appendix A (gemma4, qwen3_5_moe, qwen4_exp, qwen4_exp_text).
[[nodiscard]] std::vector<converter> template_expert_converters();

}  // namespace shardquant
