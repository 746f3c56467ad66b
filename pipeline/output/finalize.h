// The output directory around the shards (formats.md §3.3-3.6, §6.1): prepared before the graph
// runs, finished after it (side files, model.safetensors.index.json, config.json). Thin layer
// over io/checkpoint.h, kept in its own translation unit so the rest of the pipeline needs only
// plain types. No graph, no math.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "pipeline/api.h"

namespace shardquant {

// §3.6: refuses an output equal to / inside / containing the source, or non-empty without
// overwrite/resume; creates it when missing. Never deletes.
void prepare_output(const std::filesystem::path& source, const std::filesystem::path& output,
                    existing_output mode);

struct finalize_inputs {
  std::filesystem::path source;
  std::filesystem::path output;
  std::string_view config_text;  // the source config.json as read
  std::string config_path;       // for messages
  nlohmann::ordered_json quantization_config;
  std::vector<std::pair<std::string, std::string>> weight_map;  // tensor -> shard rel path
  uint64_t total_size = 0;
  std::function<void(std::string)> warn;
  bool strict_side_files = false;  // a refused symbolic link is an error, not a warning
};
// Side files (§3.3), the index (§3.4) and config.json (§6.1), each written atomically. Shards
// left in the output by an earlier run that the new index does not name are warned about, by
// name, and kept (they may be the user's). Returns the side files copied, with their sizes (for
// the report).
std::vector<side_file> finalize_output(const finalize_inputs& in);

}  // namespace shardquant
