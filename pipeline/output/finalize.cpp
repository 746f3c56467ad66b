// Output directory preparation and finalization through io/checkpoint.h.
#include "pipeline/output/finalize.h"

#include <algorithm>
#include <set>

#include "io/checkpoint.h"

namespace shardquant {

void prepare_output(const std::filesystem::path& source, const std::filesystem::path& output,
                    existing_output mode) {
  const output_mode m = mode == existing_output::overwrite ? output_mode::overwrite
                        : mode == existing_output::resume  ? output_mode::resume
                                                           : output_mode::fresh;
  prepare_output_dir(source, output, m);
}

std::vector<side_file> finalize_output(const finalize_inputs& in) {
  const warning_fn warn = in.warn ? warning_fn(in.warn) : warning_fn([](std::string) {});
  side_copy_stats copied = copy_side_files(in.source, in.output, warn, in.strict_side_files);
  std::vector<side_file> side;
  for (auto& [rel, bytes] : copied.copied) side.push_back({std::move(rel), bytes});
  std::set<std::string> named;
  for (const auto& [tensor, rel] : in.weight_map) named.insert(rel);
  std::error_code ec;
  std::vector<std::string> old;
  for (std::filesystem::recursive_directory_iterator it(in.output, ec), end; !ec && it != end;
       it.increment(ec)) {
    const auto rel = it->path().lexically_relative(in.output).generic_string();
    if (rel.ends_with(".safetensors") && !named.count(rel)) old.push_back(rel);
  }
  std::sort(old.begin(), old.end());
  for (const auto& rel : old)
    warn((in.output / rel).string() +
         ": a shard the new index does not name (left by an earlier run?); kept, delete it if "
         "it is not needed");
  write_index_json(in.output, in.weight_map, in.total_size);
  write_config_json(in.output, in.config_text, in.quantization_config, in.config_path);
  return side;
}

}  // namespace shardquant
