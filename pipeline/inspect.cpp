// Header-only inspection of safetensors files and checkpoint directories.
#include "pipeline/inspect.h"

#include <cstdio>
#include <filesystem>
#include <map>
#include <ostream>

#include "io/checkpoint.h"
#include "io/error.h"
#include "io/safetensors.h"
#include "io/zstd_source.h"

namespace shardquant {
namespace {

using json = nlohmann::ordered_json;

std::string shape_str(const json& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i].get<uint64_t>());
  return r + "]";
}

json file_json(const std::string& rel, const safetensors_header& h) {
  json f;
  f["path"] = rel;
  f["file_size"] = h.file_size;
  f["header_bytes"] = h.data_start;
  json md = json::object();
  for (const auto& [k, v] : h.metadata) md[k] = v;
  f["metadata"] = md;
  json ts = json::array();
  for (const auto& e : h.tensors)
    ts.push_back({{"name", e.name},
                  {"dtype", std::string(name(e.type))},
                  {"shape", e.shape},
                  {"bytes", e.byte_size()},
                  {"offset", h.data_start + e.begin}});
  f["tensors"] = ts;
  return f;
}

// A short description of one layer object (global_quant_config or a layer_quant_config value).
std::string describe_layer(const json& l) {
  // A progressive (two-stage) weight is described stage by stage: "fp8_e4m3 per_tensor + int4 ...".
  auto spec = [](const json& s, auto&& self) -> std::string {
    if (s.is_null()) return "none";
    if (s.is_array()) {
      std::string r;
      for (const auto& x : s) r += (r.empty() ? "" : " + ") + self(x, self);
      return r;
    }
    if (!s.is_object()) return "?";
    std::string r =
        s.contains("dtype") && s["dtype"].is_string() ? s["dtype"].get<std::string>() : "?";
    if (s.contains("qscheme") && s["qscheme"].is_string())
      r += " " + s["qscheme"].get<std::string>();
    if (s.contains("group_size") && s["group_size"].is_number())
      r += " g" + std::to_string(s["group_size"].get<int64_t>());
    if (s.contains("is_dynamic") && s["is_dynamic"].is_boolean() && s["is_dynamic"].get<bool>())
      r += " dynamic";
    return r;
  };
  if (!l.is_object()) return "?";
  return "weight " + spec(l.contains("weight") ? l["weight"] : json(), spec) + ", input " +
         spec(l.contains("input_tensors") ? l["input_tensors"] : json(), spec);
}

json quant_summary(const json& qc) {
  json s;
  s["quant_method"] = qc.contains("quant_method") ? qc["quant_method"] : json();
  if (qc.contains("global_quant_config")) s["global"] = describe_layer(qc["global_quant_config"]);
  if (qc.contains("exclude")) s["exclude"] = qc["exclude"];
  if (qc.contains("layer_quant_config") && qc["layer_quant_config"].is_object()) {
    json l = json::object();
    for (auto it = qc["layer_quant_config"].begin(); it != qc["layer_quant_config"].end(); ++it)
      l[it.key()] = describe_layer(it.value());
    s["layer_quant_config"] = l;
  }
  for (const char* k : {"weight_block_size", "fmt", "activation_scheme", "format", "version"})
    if (qc.contains(k)) s[k] = qc[k];
  if (qc.contains("config_groups") && qc["config_groups"].is_object()) {
    json g = json::object();
    for (auto it = qc["config_groups"].begin(); it != qc["config_groups"].end(); ++it)
      g[it.key()] = it.value().contains("weights") ? it.value()["weights"] : json();
    s["config_groups"] = g;
  }
  return s;
}

}  // namespace

json inspect_json(const std::string& path) {
  namespace fs = std::filesystem;
  json r;
  r["path"] = path;
  json files = json::array();
  json cfg = nullptr, q = nullptr;
  if (fs::is_directory(path)) {
    std::vector<std::string> warnings;
    const source_checkpoint c =
        open_source_checkpoint(path, [&](std::string w) { warnings.push_back(std::move(w)); });
    for (const auto& s : c.shards)
      files.push_back(file_json(s.compressed ? s.rel_path + ".zst" : s.rel_path, s.header));
    const json conf = c.config_json();
    cfg = json::object();
    for (const char* k : {"model_type", "architectures", "torch_dtype", "dtype",
                          "tie_word_embeddings", "num_hidden_layers", "hidden_size"})
      if (conf.contains(k)) cfg[k] = conf[k];
    cfg["model_dtype"] = std::string(name(c.model_dtype));
    if (c.quantization) {
      q = quant_summary(c.quantization->json());
      q["location"] = c.quantization->location;
    }
    r["warnings"] = warnings;
  } else if (fs::exists(path)) {
    // A compressed shard: only its first bytes are decompressed.
    files.push_back(file_json(path, is_zstd_shard_name(path) ? read_zstd_shard_info(path).header
                                                             : read_safetensors_header(path)));
  } else {
    throw input_error(path, "", input_error::no_offset, "no such file or directory");
  }
  std::map<std::string, std::pair<uint64_t, uint64_t>> per;
  uint64_t total = 0, count = 0;
  for (const auto& f : files)
    for (const auto& t : f["tensors"]) {
      auto& p = per[t["dtype"].get<std::string>()];
      ++p.first;
      p.second += t["bytes"].get<uint64_t>();
      total += t["bytes"].get<uint64_t>();
      ++count;
    }
  json dt = json::object();
  for (const auto& [k, v] : per) dt[k] = {{"tensors", v.first}, {"bytes", v.second}};
  r["files"] = files;
  r["tensor_count"] = count;
  r["total_bytes"] = total;
  r["dtype_totals"] = dt;
  r["config"] = cfg;
  r["quantization"] = q;
  return r;
}

void print_inspect(const std::string& path, bool as_json, std::ostream& out) {
  const json r = inspect_json(path);
  if (as_json) {
    out << r.dump(2) << "\n";
    return;
  }
  if (r.contains("warnings"))
    for (const auto& w : r["warnings"]) out << "warning: " << w.get<std::string>() << "\n";
  for (const auto& f : r["files"]) {
    out << f["path"].get<std::string>() << "  (" << f["tensors"].size() << " tensors, "
        << f["file_size"].get<uint64_t>() << " bytes)\n";
    for (const auto& t : f["tensors"]) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "  %-8s", t["dtype"].get<std::string>().c_str());
      out << buf << " " << t["name"].get<std::string>() << "  " << shape_str(t["shape"]) << "  "
          << t["bytes"].get<uint64_t>() << "\n";
    }
  }
  out << "totals: " << r["tensor_count"].get<uint64_t>() << " tensors, "
      << r["total_bytes"].get<uint64_t>() << " bytes\n";
  for (auto it = r["dtype_totals"].begin(); it != r["dtype_totals"].end(); ++it)
    out << "  " << it.key() << ": " << it.value()["tensors"].get<uint64_t>() << " tensors, "
        << it.value()["bytes"].get<uint64_t>() << " bytes\n";
  if (!r["config"].is_null()) {
    out << "config:";
    for (auto it = r["config"].begin(); it != r["config"].end(); ++it)
      out << " " << it.key() << "=" << it.value().dump();
    out << "\n";
  }
  if (r["quantization"].is_null()) {
    if (!r["config"].is_null()) out << "quantization_config: none (unquantized)\n";
  } else {
    out << "quantization_config:\n";
    for (auto it = r["quantization"].begin(); it != r["quantization"].end(); ++it)
      out << "  " << it.key() << ": " << it.value().dump() << "\n";
  }
}

}  // namespace shardquant
