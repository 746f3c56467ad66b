// Helpers for the plan suites: a temporary directory, tiny hand-made checkpoints (tensor specs
// with zero or given bytes, written through io's shard_writer) and planning a directory.
#pragma once

#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "io/checkpoint.h"
#include "io/shard_writer.h"
#include "pipeline/plan/plan.h"

namespace sq_plan_test {

namespace fs = std::filesystem;
using namespace shardquant;

struct temp_dir {
  fs::path path;
  explicit temp_dir(const char* tag = "plan") {
    std::string t =
        (fs::temp_directory_path() / (std::string("sq-plan-") + tag + "-XXXXXX")).string();
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

inline void write_text(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

struct t_spec {
  std::string name;
  dtype type;
  std::vector<uint64_t> shape;
  std::vector<std::byte> data = {};  // empty: zeros
};

// Writes shards (relative path -> tensors), config.json and, when asked, an index.
inline void write_checkpoint(const fs::path& dir, const std::string& config,
                             const std::map<std::string, std::vector<t_spec>>& shards,
                             bool index = true) {
  fs::create_directories(dir);
  write_text(dir / "config.json", config);
  std::string wm;
  for (const auto& [rel, ts] : shards) {
    std::vector<tensor_spec> specs;
    for (const auto& t : ts) specs.push_back({t.name, t.type, t.shape});
    fs::create_directories((dir / rel).parent_path());
    shard_writer w(shard_layout::make(rel, specs), dir / rel);
    for (const auto& t : ts) {
      std::vector<std::byte> d = t.data;
      if (d.empty()) d.resize(tensor_spec{t.name, t.type, t.shape}.byte_size());
      w.write_tensor(t.name, d);
      wm += std::string(wm.empty() ? "" : ", ") + "\"" + t.name + "\": \"" + rel + "\"";
    }
    w.commit();
  }
  if (index) write_text(dir / "model.safetensors.index.json", "{\"weight_map\": {" + wm + "}}");
}

// Plan options for `s`, with `ex` as the exclude list (nullopt: the scheme's default excludes).
inline plan_options opts(shardquant::scheme_id s,
                         std::optional<std::vector<std::string>> ex = std::nullopt) {
  plan_options o;
  o.scheme = s;
  o.exclude = std::move(ex);
  return o;
}

inline plan plan_dir(const fs::path& dir, plan_options o,
                     std::vector<std::string>* warnings = nullptr) {
  source_checkpoint c = open_source_checkpoint(dir, [&](std::string w) {
    if (warnings) warnings->push_back(std::move(w));
  });
  plan p = make_plan(std::move(c), std::move(o));
  if (warnings) warnings->insert(warnings->end(), p.warnings.begin(), p.warnings.end());
  return p;
}

// The part producing `name` (post-conversion), or nullptr.
inline const plan_part* part(const plan& p, const std::string& name) {
  for (const auto& it : p.items)
    for (const auto& pt : it.parts)
      if (pt.name == name) return &pt;
  return nullptr;
}
inline const plan_item* item_of(const plan& p, const std::string& part_name) {
  for (const auto& it : p.items)
    for (const auto& pt : it.parts)
      if (pt.name == part_name) return &it;
  return nullptr;
}

inline std::vector<std::byte> i64_bytes(std::vector<int64_t> v) {
  std::vector<std::byte> b(v.size() * 8);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

}  // namespace sq_plan_test
