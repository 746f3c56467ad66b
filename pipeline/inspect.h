// `shardquant inspect`: tensors, dtypes, shapes, bytes, per-dtype totals and the
// quantization_config summary of a safetensors file or a checkpoint directory. Reads headers
// and config.json only.
#pragma once

#include <iosfwd>
#include <string>

#include <nlohmann/json.hpp>

namespace shardquant {

// The inspection as JSON: {"path", "files": [{"path", "metadata", "tensors": [...]}],
// "dtype_totals": {DTYPE: {"tensors", "bytes"}}, "total_bytes", "config": {...} | null,
// "quantization": {...} | null}.
[[nodiscard]] nlohmann::ordered_json inspect_json(const std::string& path);
// Prints inspect_json(path) as text, or as JSON when `as_json`.
void print_inspect(const std::string& path, bool as_json, std::ostream& out);

}  // namespace shardquant
