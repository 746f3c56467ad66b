// Opening a source checkpoint for planning (formats.md §3.1): config.json, the optional index
// and every shard header. Reads no tensor data.
#include <algorithm>
#include <map>
#include <set>

#include "io/error.h"
#include "io/file.h"
#include "pipeline/plan.h"

namespace shardquant {

source_checkpoint open_source_checkpoint(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  source_checkpoint c;
  c.dir = dir;
  const fs::path cfg = dir / "config.json";
  if (!fs::is_directory(dir))
    throw input_error(dir.string(), "", input_error::no_offset, "not a directory");
  if (!fs::exists(cfg)) throw input_error(cfg.string(), "", input_error::no_offset, "missing");
  c.config_text = read_file(cfg);
  try {
    c.config = nlohmann::ordered_json::parse(c.config_text);
  } catch (const std::exception& e) {
    throw input_error(cfg.string(), "", input_error::no_offset,
                      std::string("bad JSON: ") + e.what());
  }
  if (!c.config.is_object())
    throw input_error(cfg.string(), "", input_error::no_offset, "not a JSON object");

  std::vector<std::string> rel;
  std::map<std::string, std::string> weight_map;  // tensor -> shard
  const fs::path index = dir / "model.safetensors.index.json";
  std::set<std::string> all_files;
  for (auto it =
           fs::recursive_directory_iterator(dir, fs::directory_options::follow_directory_symlink);
       it != fs::recursive_directory_iterator(); ++it)
    if (it->is_regular_file() && it->path().filename().string().ends_with(".safetensors"))
      all_files.insert(fs::relative(it->path(), dir).generic_string());
  if (fs::exists(index)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file(index));
    } catch (const std::exception& e) {
      throw input_error(index.string(), "", input_error::no_offset,
                        std::string("bad JSON: ") + e.what());
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw input_error(index.string(), "", input_error::no_offset, "no weight_map object");
    std::set<std::string> seen;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw input_error(index.string(), it.key(), input_error::no_offset,
                          "shard is not a string");
      const std::string f = it.value().get<std::string>();
      weight_map[it.key()] = f;
      if (seen.insert(f).second) {
        if (!fs::exists(dir / f))
          throw input_error(index.string(), it.key(), input_error::no_offset,
                            "names missing shard '" + f + "'");
      }
    }
    rel.assign(seen.begin(), seen.end());
    for (const auto& f : all_files)
      if (!seen.count(f))
        c.warnings.push_back("ignoring '" + f + "': not named in model.safetensors.index.json");
  } else {
    rel.assign(all_files.begin(), all_files.end());
    for (const auto& f : rel)
      if (f.find('/') != std::string::npos)
        c.warnings.push_back("shard '" + f + "' is below the top level (no index)");
  }
  if (rel.empty())
    throw input_error(dir.string(), "", input_error::no_offset, "no *.safetensors shards");
  for (const auto& r : rel) {
    source_shard s;
    s.relative_path = r;
    s.path = dir / r;
    s.header = read_safetensors_header(s.path);
    c.shards.push_back(std::move(s));
  }
  if (!weight_map.empty()) {
    std::map<std::string, const source_shard*> by_rel;
    for (const auto& s : c.shards) by_rel[s.relative_path] = &s;
    for (const auto& [t, f] : weight_map)
      if (!by_rel[f]->header.find(t))
        throw input_error(index.string(), t, input_error::no_offset,
                          "index names shard '" + f + "', which lacks the tensor");
    for (const auto& s : c.shards)
      for (const auto& e : s.header.tensors)
        if (!weight_map.count(e.name))
          c.warnings.push_back("tensor '" + e.name + "' of '" + s.relative_path +
                               "' is missing from the index (processed anyway)");
  }
  return c;
}

}  // namespace shardquant
