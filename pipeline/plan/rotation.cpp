// Quark 0.13's RotationConfig, its refusals, the model-free rotation plan and the exported
// algo_config (pipeline/plan/rotation.h, kernels/FORMATS-rotation.md). The messages follow Quark's
// so a user who knows one tool recognises the other.
#include "pipeline/plan/rotation.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "pipeline/plan/fnmatch.h"

namespace shardquant {
namespace {

// Quark's ROTATION_MAP["llama"].scaling_layers (quark/torch/quantization/config/algo_configs.py).
constexpr const char* k_llama_scaling_layers =
    R"json({"first_layer":[{"prev_modules":["model.embed_tokens"],"norm_module":"model.layers.layer_id.input_layernorm","next_modules":["model.layers.layer_id.self_attn.q_proj","model.layers.layer_id.self_attn.k_proj","model.layers.layer_id.self_attn.v_proj"]},{"prev_modules":["model.layers.layer_id.self_attn.o_proj"],"norm_module":"model.layers.layer_id.post_attention_layernorm","next_modules":["model.layers.layer_id.mlp.up_proj","model.layers.layer_id.mlp.gate_proj"]}],"middle_layers":[{"prev_modules":["model.layers.pre_layer_id.mlp.down_proj"],"norm_module":"model.layers.layer_id.input_layernorm","next_modules":["model.layers.layer_id.self_attn.q_proj","model.layers.layer_id.self_attn.k_proj","model.layers.layer_id.self_attn.v_proj"]},{"prev_modules":["model.layers.layer_id.self_attn.o_proj"],"norm_module":"model.layers.layer_id.post_attention_layernorm","next_modules":["model.layers.layer_id.mlp.up_proj","model.layers.layer_id.mlp.gate_proj"]}],"last_layer":[{"prev_modules":["model.layers.layer_id.mlp.down_proj"],"norm_module":"model.norm","next_modules":["lm_head"]}]})json";

[[noreturn]] void refuse(const std::string& m) {
  throw rotation_refused(m);
}

std::string substitute_layer_id(std::string s, uint64_t i) {
  // pre_layer_id first: replacing layer_id first would corrupt it (Quark's substitute_layer_id).
  auto replace_all = [&](const std::string& from, const std::string& to) {
    for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size()))
      s.replace(p, from.size(), to);
  };
  replace_all("pre_layer_id", std::to_string(static_cast<int64_t>(i) - 1));
  replace_all("layer_id", std::to_string(i));
  return s;
}

bool has_glob(const std::string& p) {
  return p.find_first_of("*?[") != std::string::npos;
}

std::vector<std::string> match_modules(const std::string& pattern,
                                       const std::set<std::string>& modules) {
  std::vector<std::string> out;
  if (has_glob(pattern)) {
    for (const auto& m : modules)
      if (fnmatch(m, pattern)) out.push_back(m);
  } else if (modules.count(pattern)) {
    out.push_back(pattern);
  }
  return out;
}

// A config.json integer (Quark's _get_dim: isinstance(value, int); text_config wins over root).
std::optional<uint64_t> get_dim(const nlohmann::ordered_json& cfg,
                                std::initializer_list<const char*> keys) {
  for (const char* k : keys) {
    for (const auto* obj :
         {cfg.contains("text_config") && cfg["text_config"].is_object() ? &cfg["text_config"]
                                                                        : nullptr,
          &cfg}) {
      if (!obj || !obj->contains(k)) continue;
      const auto& v = (*obj)[k];
      if (v.is_number_integer() && v.get<int64_t>() > 0) return v.get<uint64_t>();
      if (obj != &cfg) break;  // present in text_config but not an int: Quark does not fall back
    }
  }
  return std::nullopt;
}

void check_size(uint64_t size, const std::string& what) {
  const std::string p = hadamard_size_problem(size);
  if (!p.empty()) refuse(what + ": " + p);
}

template <typename T>
void read_opt(const nlohmann::ordered_json& j, const char* key, std::optional<T>& out) {
  if (!j.contains(key) || j[key].is_null())
    out.reset();
  else
    out = j[key].get<T>();
}

}  // namespace

uint64_t rotation_plan::row_multiple(const std::string& weight) const {
  const auto it = steps.find(weight);
  if (it == steps.end()) return 1;
  uint64_t m = 1;
  for (const auto& s : it->second)
    if (s.kind == rotation_kind::output_blocked) m = std::max<uint64_t>(m, s.size);
  return m;
}

rotation_config rotation_from_flags(const std::string& flags, const std::string& model_type) {
  rotation_config c;
  c.r1 = c.r2 = c.r3 = c.r4 = false;
  std::stringstream ss(flags);
  for (std::string t; std::getline(ss, t, ',');) {
    if (t == "r1")
      c.r1 = true;
    else if (t == "r2")
      c.r2 = true;
    else if (t == "r4")
      c.r4 = true;
    else if (t == "r3")
      refuse(
          "--rotation r3: R3 is applied by patching the model forward (post-RoPE) and cannot be "
          "reconstructed from a serialized checkpoint (Quark's file-to-file flow refuses it too)");
    else
      refuse("--rotation: unknown rotation '" + t + "' (use a comma-separated subset of r1,r2,r4)");
  }
  if (!c.r1 && !c.r2 && !c.r4) refuse("--rotation: no rotation given (use r1, r2 and/or r4)");
  if (model_type != "llama") {
    refuse("No built-in rotation configuration is available for the '" + model_type +
           "' architecture (Quark has one for llama only): pass --rotation-config FILE.json with "
           "RotationConfig's fields");
  }
  c.scaling_layers = nlohmann::ordered_json::parse(k_llama_scaling_layers);
  if (c.r1) c.online_r1_rotation = true;
  validate_rotation(c);
  return c;
}

rotation_config rotation_from_json(const nlohmann::ordered_json& j, const std::string& where) {
  static const std::set<std::string> known = {"scaling_layers",
                                              "name",
                                              "r1",
                                              "r2",
                                              "r3",
                                              "r4",
                                              "rotation_size",
                                              "random_r1",
                                              "random_r2",
                                              "backbone",
                                              "model_decoder_layers",
                                              "v_proj",
                                              "o_proj",
                                              "self_attn",
                                              "mlp",
                                              "online_r1_rotation",
                                              "online_config",
                                              "trainable",
                                              "train_smooth",
                                              "smooth_positions"};
  if (!j.is_object()) refuse(where + ": a rotation config must be a JSON object");
  for (const auto& [k, v] : j.items())
    if (!known.count(k)) refuse(where + ": unknown RotationConfig field '" + k + "'");
  if (!j.contains("scaling_layers") || !j["scaling_layers"].is_object())
    refuse(where +
           ": RotationConfig needs 'scaling_layers' (an object with first_layer, "
           "middle_layers, last_layer)");
  rotation_config c;
  try {
    c.scaling_layers = j["scaling_layers"];
    c.name = j.value("name", c.name);
    c.r1 = j.value("r1", c.r1);
    c.r2 = j.value("r2", c.r2);
    c.r3 = j.value("r3", c.r3);
    c.r4 = j.value("r4", c.r4);
    read_opt(j, "rotation_size", c.rotation_size);
    c.random_r1 = j.value("random_r1", c.random_r1);
    c.random_r2 = j.value("random_r2", c.random_r2);
    c.backbone = j.value("backbone", c.backbone);
    c.model_decoder_layers = j.value("model_decoder_layers", c.model_decoder_layers);
    c.v_proj = j.value("v_proj", c.v_proj);
    c.o_proj = j.value("o_proj", c.o_proj);
    c.self_attn = j.value("self_attn", c.self_attn);
    c.mlp = j.value("mlp", c.mlp);
    read_opt(j, "online_r1_rotation", c.online_r1_rotation);
    if (j.contains("online_config") && !j["online_config"].is_null()) {
      const auto& o = j["online_config"];
      online_rotation_config oc;
      read_opt(o, "shared_parallel", oc.shared_parallel);
      read_opt(o, "online_rotation_layers", oc.online_rotation_layers);
      oc.use_input_prescale = o.value("use_input_prescale", false);
      c.online_config = oc;
    }
    c.trainable = j.value("trainable", c.trainable);
    read_opt(j, "train_smooth", c.train_smooth);
    read_opt(j, "smooth_positions", c.smooth_positions);
  } catch (const nlohmann::json::exception& e) {
    refuse(where + ": a RotationConfig field has the wrong type (" + e.what() + ")");
  }
  if (c.online_config && c.online_config->use_input_prescale)
    refuse(where +
           ": online_config.use_input_prescale needs input_prescale tensors (AWQ), which "
           "this flow does not produce");
  validate_rotation(c);
  return c;
}

rotation_config rotation_from_file(const std::filesystem::path& file) {
  std::ifstream f(file);
  if (!f) refuse(file.string() + ": cannot open the rotation config");
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    refuse(file.string() + ": not JSON (" + e.what() + ")");
  }
  return rotation_from_json(j, file.string());
}

void validate_rotation(rotation_config& c) {
  // RotationConfig.__post_init__
  if ((c.random_r1 || c.random_r2) && c.rotation_size)
    refuse("random_r1=True or random_r2=True along with a custom rotation_size=" +
           std::to_string(*c.rotation_size) + " is not supported");
  if (c.r1) {
    if (!c.online_r1_rotation) c.online_r1_rotation = false;
  } else if (c.online_r1_rotation) {
    refuse(std::string("The configuration online_r1_rotation=") +
           (*c.online_r1_rotation ? "True" : "False") + " has no effect along r1=False");
  }
  if (c.trainable && c.r3) refuse("trainable=True along r3=True is not implemented");
  if (c.online_config) {
    if (!c.online_r1_rotation.value_or(false) && !c.r1 && !c.r4)
      refuse("online_config has no effect without r1 or r4");
  } else if (c.r1 && *c.online_r1_rotation) {
    c.online_config = online_rotation_config{false, std::nullopt, false};
  }
  if (c.trainable && !c.train_smooth) {
    c.train_smooth = false;
    c.smooth_positions = std::vector<std::string>{};
  }
  if (c.train_smooth.value_or(false) && !c.trainable)
    refuse("train_smooth=True along trainable=False is not supported");
  if (c.train_smooth.value_or(false) && !c.smooth_positions)
    refuse("smooth_positions needs to be set in case train_smooth=True");
  // RotationConfig.validate_file_to_file
  if (c.trainable)
    refuse(
        "trainable=True (learned/SpinQuant rotation) is not supported: fixed Hadamard "
        "rotations only, which require no training");
  if (c.r3)
    refuse(
        "r3=True is not supported: R3 is applied by patching the model forward (post-RoPE) "
        "and cannot be reconstructed from a serialized checkpoint");
  if (c.r1 && !*c.online_r1_rotation)
    refuse(
        "Offline R1 (r1=True, online_r1_rotation=False) is not supported: it fuses "
        "normalization weights and shares a residual-basis rotation across layers, which "
        "requires the full model graph; use online_r1_rotation=True");
  if (c.random_r1 || c.random_r2)
    refuse(
        "random_r1/random_r2=True is not supported: a random rotation basis cannot be "
        "deterministically reconstructed at inference");
}

rotation_plan plan_rotation(rotation_config& c, const nlohmann::ordered_json& model_config,
                            const rotation_inputs& in) {
  std::set<std::string> modules;
  for (const auto& [name, shape] : in.linear_weights) {
    if (name.size() > 7 && name.ends_with(".weight"))
      modules.insert(name.substr(0, name.size() - 7));
  }
  std::set<std::string> biased;
  for (const auto& b : in.biases)
    if (b.ends_with(".bias")) biased.insert(b.substr(0, b.size() - 5));
  // Decoder layer indices (Quark's iter_layer_indices).
  std::vector<uint64_t> layers;
  {
    const std::string prefix = c.model_decoder_layers + ".";
    std::set<uint64_t> idx;
    for (const auto& [name, shape] : in.linear_weights) {
      if (!name.starts_with(prefix)) continue;
      const std::string head =
          name.substr(prefix.size(), name.find('.', prefix.size()) - prefix.size());
      if (!head.empty() && head.size() < 19 &&
          std::all_of(head.begin(), head.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
        idx.insert(std::stoull(head));
    }
    layers.assign(idx.begin(), idx.end());
  }
  rotation_plan p;
  std::map<std::string, uint64_t> online_in, r2_out, r2_in;
  auto guard_not_excluded = [&](const std::string& module, const char* which) {
    for (const auto& g : in.exclude) {
      if (fnmatch(module, g))
        refuse(std::string(which) + " online rotation targets module '" + module +
               "', but it also matches the quantization exclude pattern '" + g +
               "'. Excluded layers are not wrapped at inference, so an online rotation on them "
               "would silently break correctness");
    }
  };
  if (c.r1) {
    std::optional<uint64_t> size = c.rotation_size;
    if (!size) size = get_dim(model_config, {"hidden_size"});
    if (!size)
      refuse(
          "R1 rotation size could not be determined: rotation_size is null and 'hidden_size' "
          "is missing from the model config");
    for (uint64_t li : layers) {
      const char* key = li == layers.front() ? "first_layer" : "middle_layers";
      if (!c.scaling_layers.contains(key) || !c.scaling_layers[key].is_array())
        refuse(std::string("scaling_layers has no '") + key + "' list");
      for (const auto& entry : c.scaling_layers[key]) {
        const nlohmann::ordered_json* targets = nullptr;
        if (entry.contains("target_modules") && !entry["target_modules"].is_null())
          targets = &entry["target_modules"];
        else if (entry.contains("next_modules"))
          targets = &entry["next_modules"];
        if (!targets) continue;
        for (const auto& t : *targets) {
          for (const auto& m :
               match_modules(substitute_layer_id(t.get<std::string>(), li), modules)) {
            guard_not_excluded(m, "R1");
            online_in[m + ".weight"] = *size;
          }
        }
      }
    }
  }
  if (c.r2) {
    std::optional<uint64_t> head_dim = get_dim(model_config, {"head_dim"});
    if (!head_dim) {
      const auto h = get_dim(model_config, {"hidden_size"});
      const auto n = get_dim(model_config, {"num_attention_heads"});
      if (!h || !n)
        refuse(
            "R2 rotation size (head_dim) could not be determined: provide 'head_dim', or both "
            "'hidden_size' and 'num_attention_heads', in the model config");
      head_dim = *h / *n;
    }
    for (uint64_t li : layers) {
      const std::string base = c.model_decoder_layers + "." + std::to_string(li) + ".";
      for (const auto& m : match_modules(base + c.v_proj, modules)) {
        if (biased.count(m))
          refuse("R2 rotates the output channels of '" + m + "', which requires rotating '" + m +
                 ".bias' in lockstep; the per-tensor file-to-file flow cannot");
        r2_out[m + ".weight"] = *head_dim;
      }
      for (const auto& m : match_modules(base + c.o_proj, modules))
        r2_in[m + ".weight"] = *head_dim;
    }
  }
  if (c.r4) {
    std::optional<uint64_t> size = c.rotation_size;
    if (!size) size = get_dim(model_config, {"moe_intermediate_size", "intermediate_size"});
    if (!size)
      refuse(
          "R4 rotation size could not be determined: rotation_size is null and neither "
          "'moe_intermediate_size' nor 'intermediate_size' is present in the model config");
    for (uint64_t li : layers) {
      const std::string pat =
          c.model_decoder_layers + "." + std::to_string(li) + "." + c.mlp + ".down_proj";
      for (const auto& m : match_modules(pat, modules)) {
        guard_not_excluded(m, "R4");
        online_in[m + ".weight"] = *size;
      }
    }
  }
  if (online_in.empty() && r2_out.empty() && r2_in.empty())
    refuse(
        "A rotation config was provided but resolved to zero target layers in the checkpoint "
        "(searched decoder layers under model_decoder_layers='" +
        c.model_decoder_layers + "', found " + std::to_string(layers.size()) +
        " layer indices); fix scaling_layers, "
        "v_proj/o_proj or mlp so they name real layers, or remove the rotation");
  // Steps, in Quark's order per tensor (online, R2 out, R2 in), every size checked now.
  for (const auto& [w, size] : online_in) {
    const auto& shape = in.linear_weights.at(w);
    const uint64_t cols = shape.back();
    if (cols % size != 0)
      refuse("rotation_size=" + std::to_string(size) +
             " does not divide in_features=" + std::to_string(cols) + " of '" + w +
             "'. Choose a rotation_size that divides the "
             "input dimension");
    check_size(size, "'" + w + "'");
    p.steps[w].push_back({size == cols ? rotation_kind::input_full : rotation_kind::input_blocked,
                          static_cast<std::size_t>(size)});
    p.online[w.substr(0, w.size() - 7)] = size;
  }
  for (const auto& [w, hd] : r2_out) {
    const uint64_t rows = in.linear_weights.at(w).front();
    if (rows % hd != 0)
      refuse("R2 output (v_proj) rotation size (head_dim=" + std::to_string(hd) +
             ") does not divide the output (v_proj) dimension " + std::to_string(rows) + " of '" +
             w + "'. Set 'head_dim' explicitly in the model config");
    check_size(hd, "'" + w + "'");
    p.steps[w].push_back({rotation_kind::output_blocked, static_cast<std::size_t>(hd)});
    ++p.r2_out;
  }
  for (const auto& [w, hd] : r2_in) {
    const uint64_t cols = in.linear_weights.at(w).back();
    if (cols % hd != 0)
      refuse("R2 input (o_proj) rotation size (head_dim=" + std::to_string(hd) +
             ") does not divide the input (o_proj) dimension " + std::to_string(cols) + " of '" +
             w + "'. Set 'head_dim' explicitly in the model config");
    check_size(hd, "'" + w + "'");
    p.steps[w].push_back({rotation_kind::input_blocked, static_cast<std::size_t>(hd)});
    ++p.r2_in;
  }
  if (!p.online.empty()) {
    std::vector<std::string> names;
    for (const auto& [m, n] : p.online) names.push_back(m);
    std::sort(names.begin(), names.end());  // Python's sorted(): code point order
    if (!c.online_config) c.online_config = online_rotation_config{std::nullopt, {}, false};
    c.online_config->online_rotation_layers = names;
  }
  return p;
}

nlohmann::ordered_json rotation_algo_config(const rotation_config& c) {
  using oj = nlohmann::ordered_json;
  auto opt = [](const auto& o) -> oj { return o ? oj(*o) : oj(nullptr); };
  oj j = oj::object();
  j["scaling_layers"] = c.scaling_layers;
  j["name"] = c.name;
  j["r1"] = c.r1;
  j["r2"] = c.r2;
  j["r3"] = c.r3;
  j["r4"] = c.r4;
  j["rotation_size"] = opt(c.rotation_size);
  j["random_r1"] = c.random_r1;
  j["random_r2"] = c.random_r2;
  j["backbone"] = c.backbone;
  j["model_decoder_layers"] = c.model_decoder_layers;
  j["v_proj"] = c.v_proj;
  j["o_proj"] = c.o_proj;
  j["self_attn"] = c.self_attn;
  j["mlp"] = c.mlp;
  j["online_r1_rotation"] = opt(c.online_r1_rotation);
  if (c.online_config) {
    oj o = oj::object();
    o["shared_parallel"] = opt(c.online_config->shared_parallel);
    o["online_rotation_layers"] = opt(c.online_config->online_rotation_layers);
    o["use_input_prescale"] = c.online_config->use_input_prescale;
    j["online_config"] = o;
  } else {
    j["online_config"] = nullptr;
  }
  j["trainable"] = c.trainable;
  j["train_smooth"] = opt(c.train_smooth);
  j["smooth_positions"] = opt(c.smooth_positions);
  return j;
}

}  // namespace shardquant
