// The exported Quark `quantization_config` (formats.md §6, §8.2): tensor-spec and layer objects
// with their exact key order, exclude list, per-layer overrides, keep-original entries.
// Builds JSON values only; the config.json text is written through io's rewrite helper.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/schemes.h"
#include "pipeline/plan/quant_spec.h"

namespace shardquant {

// The 17 keys of a §6.3 tensor-spec object, in order.
[[nodiscard]] std::span<const std::string_view> tensor_spec_keys() noexcept;
// A tensor spec of the scheme table (kernels/schemes.h) as its §6.3 object, keys in order.
[[nodiscard]] ordered_json tensor_spec_json(const exported_spec& s);

// The layer object of a scheme (§6.2: input_tensors, output_tensors, weight, bias,
// target_device; specs per §6.3).
[[nodiscard]] ordered_json layer_config(scheme_id s);
// The same for a scheme that may be a custom spec (its canonical objects, quant_spec.h).
[[nodiscard]] ordered_json layer_config(const quant_scheme& s);

// Parameters of an FP8 block source needed for a keep-original layer entry (§8.2).
struct fp8_keep_params {
  uint64_t block_rows = 128, block_cols = 128;  // weight_block_size
  bool e5m2 = false;                            // fmt e5m2
  std::string weight_scale_type = "float32";    // "float8_e8m0fnu" for ue8m0/e8m0 scale_fmt
  ordered_json source_overrides = ordered_json::object();  // ch_axis, group_size, round_method,
                                                           // symmetric found in the source config
};
// Reads the §8.2 parameters from a source quantization config (quant_method "fp8") and checks
// the prerequisites (activation_scheme dynamic, weight_block_size present, fmt spelling).
// Throws input_error naming `config_path`.
[[nodiscard]] fp8_keep_params fp8_keep_params_of(const ordered_json& source_qc,
                                                 const std::string& config_path);
[[nodiscard]] ordered_json keep_original_layer_config(const fp8_keep_params& p);

// Deliberate differences for the loaders (README "Loading the outputs"), applied to the layer
// objects after they are built, so the scheme specs above stay Quark's. Default: none.
struct export_options {
  // Static input specs (is_dynamic false: fp8, int8, mxfp4_fp8) exported as dynamic: the
  // file-to-file flow has no calibration and writes no input scales, which a loader would
  // otherwise fill with uninitialized values.
  bool dynamic_activations = false;
};
// `layer` (a §6.2 layer object) with the options applied; unchanged when none applies.
[[nodiscard]] ordered_json apply_export_options(ordered_json layer, const export_options& o);

// kv_cache_scheme / attention_scheme (FORMATS-rotation.md R.9; resolved by
// pipeline/plan/kv_cache_config.h): the layer_quant_config keys that get the static FP8
// `output_tensors` spec, the kv_cache_quant_config entries (nullopt: an excluded k/v layer, whose
// weight and input_tensors are null there), and softmax_quant_spec.
struct kv_attention_export {
  std::vector<std::string> fp8_output_globs;
  std::vector<std::pair<std::string, std::optional<quant_scheme>>> kv_cache;
  bool softmax_fp8 = false;
};

struct quant_config_inputs {
  quant_scheme scheme = scheme_id::mxfp4;
  std::vector<std::string> exclude;                             // resolved module names (§6.4)
  std::vector<std::pair<std::string, quant_scheme>> overrides;  // user order (§6.5)
  std::vector<std::string> kept_modules;                        // §8, any order (sorted here)
  fp8_keep_params keep;                                         // used when kept_modules not empty
  std::string version = std::string("shardquant-") + SHARDQUANT_VERSION;
  export_options exp;      // applied to the global and per-layer objects, not to keep-original ones
  kv_attention_export kv;  // the kv / q entries are in `overrides` already
};

// The `Q` object of §6.2 with its keys in order.
[[nodiscard]] ordered_json quantization_config(const quant_config_inputs& in);

}  // namespace shardquant
