// The rotation options of a run (issue 15, kernels/FORMATS-rotation.md): Quark 0.13's
// RotationConfig as `--rotation r1,r2,r4` or a `--rotation-config FILE.json` builds it, Quark's
// refusals with their reasons, the per-tensor rotation plan resolved from tensor names, shapes and
// config.json alone (no data), and the exported `algo_config`. Owns no I/O beyond reading the
// config file; never includes stages/ or the graph.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/hadamard.h"

namespace shardquant {

// A configuration Quark refuses; what() names the reason in Quark's words.
class rotation_refused : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct online_rotation_config {
  std::optional<bool> shared_parallel;  // null when Quark's planner created it
  std::optional<std::vector<std::string>> online_rotation_layers;
  bool use_input_prescale = false;
};

// Quark's RotationConfig, field for field (config/config.py), in its field order.
struct rotation_config {
  nlohmann::ordered_json scaling_layers = nlohmann::ordered_json::object();
  std::string name = "rotation";
  bool r1 = true, r2 = false, r3 = false, r4 = false;
  std::optional<uint64_t> rotation_size;
  bool random_r1 = false, random_r2 = false;
  std::string backbone = "model";
  std::string model_decoder_layers = "model.layers";
  std::string v_proj = "self_attn.v_proj";
  std::string o_proj = "self_attn.o_proj";
  std::string self_attn = "self_attn";
  std::string mlp = "mlp";
  std::optional<bool> online_r1_rotation;
  std::optional<online_rotation_config> online_config;
  bool trainable = false;
  std::optional<bool> train_smooth;
  std::optional<std::vector<std::string>> smooth_positions;
};

// `--rotation r1,r2,r4` (any subset of r1, r2, r4): the model type's built-in config (Quark has
// one for llama only) with those rotations on and R1 online. Throws rotation_refused.
[[nodiscard]] rotation_config rotation_from_flags(const std::string& flags,
                                                  const std::string& model_type);
// A JSON object with RotationConfig's fields (scaling_layers required, unknown keys refused).
// `where` names the file in messages. Throws rotation_refused.
[[nodiscard]] rotation_config rotation_from_json(const nlohmann::ordered_json& j,
                                                 const std::string& where);
[[nodiscard]] rotation_config rotation_from_file(const std::filesystem::path& file);

// RotationConfig.__post_init__ then validate_file_to_file(), in Quark's order (FORMATS R.3).
// Fills the defaults __post_init__ fills (online_r1_rotation, online_config, train_smooth).
void validate_rotation(rotation_config& c);

// What the checkpoint offers the planner: every 2-D linear weight (name -> shape) and every
// `.bias` tensor name; `exclude` the effective exclude globs.
struct rotation_inputs {
  std::map<std::string, std::vector<uint64_t>> linear_weights;
  std::set<std::string> biases;
  std::vector<std::string> exclude;
};

struct rotation_plan {
  // Weight tensor name -> the rotations applied to it, in order (online, R2 out, R2 in).
  std::map<std::string, std::vector<rotation_step>> steps;
  // Online module name (no ".weight") -> the size of its I8 [n, n] `input_rotation` buffer.
  std::map<std::string, uint64_t> online;
  uint64_t r2_out = 0, r2_in = 0;
  // The weight tensors a row range of which must cover whole blocks of this many rows.
  [[nodiscard]] uint64_t row_multiple(const std::string& weight) const;
};

// Resolves the plan as Quark's build_rotation_plan does, and checks every size it will use (the
// division and the Hadamard factor) up front. Sets c.online_config's layer list as Quark does.
// Throws rotation_refused.
[[nodiscard]] rotation_plan plan_rotation(rotation_config& c,
                                          const nlohmann::ordered_json& model_config,
                                          const rotation_inputs& in);

// RotationConfig.to_dict(): the element of quantization_config.algo_config.
[[nodiscard]] nlohmann::ordered_json rotation_algo_config(const rotation_config& c);

}  // namespace shardquant
