// Quark 0.13's other get_config options that shape the exported config (issue 15,
// kernels/FORMATS-rotation.md R.9): kv_cache_scheme, attention_scheme, min_kv_scale. Owns the
// template's kv / q projection names (LLMTemplate.kv_layers_name, q_layer_name) and the steps
// _set_kv_cache_config and _set_attention_config take over the per-layer overrides. Pure: names,
// globs and schemes only; never reads tensors, never includes stages/ or the run.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pipeline/plan/quant_config.h"

namespace shardquant {

struct kv_attention_options {
  std::string kv_cache_scheme;         // "" or "fp8"
  std::string attention_scheme;        // "" or "fp8"
  std::optional<double> min_kv_scale;  // accepted as Quark accepts it; the F2F export ignores it
  [[nodiscard]] bool any() const noexcept {
    return !kv_cache_scheme.empty() || !attention_scheme.empty() || min_kv_scale.has_value();
  }
};

// The template's projection names; nullopt for a model type Quark has no template for.
struct kv_projection_names {
  std::vector<std::string> kv;  // kv_layers_name
  std::vector<std::string> q;   // q_layer_name (a string in Quark becomes a one-element list)
};
[[nodiscard]] std::optional<kv_projection_names> kv_projections_of(std::string_view model_type);

using layer_entries = std::vector<std::pair<std::string, quant_scheme>>;

struct kv_attention_plan {
  // The per-layer overrides after get_config: the user's, then the kv entries, then the q entry
  // (an existing key keeps its place). They apply to tensors like any override (Quark's
  // layer_quant_config is first-match), so a kv entry can change the scheme of a module.
  layer_entries layers;
  kv_attention_export exp;  // what quant_config.cpp adds to the exported config
  std::vector<std::string> warnings;
};

// Quark's get_config steps for the options, in its order (kv cache, then attention):
// `layers` the user's overrides in order, `exclude` the effective exclude globs (template or
// user), `global` the run's scheme. Throws usage_error for an unsupported scheme, a model type
// without kv names, or a negative/non-finite min_kv_scale.
[[nodiscard]] kv_attention_plan plan_kv_attention(const kv_attention_options& o,
                                                  std::string_view model_type,
                                                  const layer_entries& layers,
                                                  const std::vector<std::string>& exclude,
                                                  const quant_scheme& global);

}  // namespace shardquant
