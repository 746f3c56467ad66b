// kv_cache_scheme / attention_scheme / min_kv_scale (pipeline/plan/kv_cache_config.h), as Quark
// 0.13's LLMTemplate.get_config applies them (quark/torch/quantization/config/template.py:
// _set_kv_cache_config, _set_attention_config, _resolve_projection_base_spec; and
// get_layer_quant_config of quark/torch/export/main_export/quant_config_parser.py).
#include "pipeline/plan/kv_cache_config.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "io/error.h"
#include "pipeline/plan/fnmatch.h"

namespace shardquant {
namespace {

// LLMTemplate.get(t).kv_layers_name / q_layer_name for every template of Quark 0.13 (dumped from
// amd-quark 0.13 on the CPU; the same 51 model types as pipeline/plan/templates.cpp).
const std::map<std::string, kv_projection_names, std::less<>>& table() {
  static const std::map<std::string, kv_projection_names, std::less<>> t{
      {"chatglm", {{"*query_key_value"}, {"*query_key_value"}}},
      {"cohere", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"dbrx", {{"*Wqkv"}, {"*Wqkv"}}},
      {"deepseek", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"deepseek_v2", {{"*kv_b_proj"}, {"*q_a_proj", "*q_b_proj"}}},
      {"deepseek_v3", {{"*kv_b_proj"}, {"*q_a_proj", "*q_b_proj"}}},
      {"deepseek_v32", {{"*kv_b_proj"}, {"*q_a_proj", "*q_b_proj"}}},
      {"deepseek_v4", {{"*wkv"}, {"*wq_a", "*wq_b"}}},
      {"deepseek_vl_v2", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"gemma2", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"gemma3",
       {{"*language_model.*k_proj", "*language_model.*v_proj"}, {"*language_model.*q_proj"}}},
      {"gemma3_text", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"gemma4",
       {{"*language_model.*k_proj", "*language_model.*v_proj"}, {"*language_model.*q_proj"}}},
      {"gemma4_unified",
       {{"*language_model.*k_proj", "*language_model.*v_proj"}, {"*language_model.*q_proj"}}},
      {"glm4_moe", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"glm4_moe_lite", {{"*kv_a_proj_with_mqa", "*kv_b_proj"}, {"*q_a_proj"}}},
      {"glm_moe_dsa", {{"*kv_a_proj_with_mqa", "*kv_b_proj"}, {"*q_a_proj"}}},
      {"glm5_next", {{"*self_attn.kv_b_proj"}, {"*self_attn.q_b_proj"}}},
      {"gptj", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"gpt_oss", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"granitemoehybrid", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"grok-1", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"hunyuan_v1_dense", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"instella", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"kimi_k2", {{"*kv_a_proj_with_mqa", "*kv_b_proj"}, {"*q_a_proj"}}},
      {"kimi_k25", {{"*kv_a_proj_with_mqa", "*kv_b_proj"}, {"*q_a_proj"}}},
      {"kimi_k3",
       {{"*self_attn.k_proj", "*self_attn.v_proj", "*self_attn.kv_a_proj_with_mqa"},
        {"*self_attn.q_proj", "*self_attn.q_a_proj", "*self_attn.q_b_proj"}}},
      {"lfm2", {{"*self_attn.k_proj", "*self_attn.v_proj"}, {"*self_attn.q_proj"}}},
      {"llama", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"llama4",
       {{"*language_model.*.k_proj", "*language_model.*.v_proj"}, {"*language_model.*.q_proj"}}},
      {"minimax_m2", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"minimax_m3_vl",
       {{"*language_model.*k_proj", "*language_model.*v_proj"}, {"*language_model.*q_proj"}}},
      {"mistral", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"mixtral", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"mllama", {{"*language_model.*k_proj", "*language_model.*v_proj"}, {"*self_attn.q_proj"}}},
      {"muse_glimmer",
       {{"*language_model.*k_proj", "*language_model.*v_proj"}, {"*language_model.*q_proj"}}},
      {"olmo", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"opt", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"phi", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"phi3", {{"*qkv_proj"}, {"*qkv_proj"}}},
      {"qwen", {{"*c_attn"}, {"*c_attn"}}},
      {"qwen2", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"qwen2_moe", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"qwen3", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"qwen3_moe", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"qwen3_next", {{"*qkvz"}, {"*qkvz"}}},
      {"qwen3_vl_moe", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"qwen3_5_moe", {{"*k_proj", "*v_proj"}, {"*q_proj"}}},
      {"qwen3_5", {{"*self_attn.k_proj", "*self_attn.v_proj"}, {"*self_attn.q_proj"}}},
      {"qwen4_exp", {{"*self_attn.k_proj", "*self_attn.v_proj"}, {"*self_attn.q_proj"}}},
      {"qwen4_exp_text", {{"*self_attn.k_proj", "*self_attn.v_proj"}, {"*self_attn.q_proj"}}},
  };
  return t;
}

bool matches(const std::string& glob, const std::string& name) {
  return glob_pattern(glob).matches(name);
}

// What get_layer_quant_config(config, nn.Linear, name) returns for a projection pattern.
struct lookup {
  bool excluded = false;
  bool global = false;  // `is config.global_quant_config`: no override matched
  quant_scheme scheme = scheme_id::mxfp4;
};

}  // namespace

std::optional<kv_projection_names> kv_projections_of(std::string_view model_type) {
  const auto it = table().find(model_type);
  if (it == table().end()) return std::nullopt;
  return it->second;
}

kv_attention_plan plan_kv_attention(const kv_attention_options& o, std::string_view model_type,
                                    const layer_entries& layers,
                                    const std::vector<std::string>& exclude,
                                    const quant_scheme& global) {
  kv_attention_plan r;
  r.layers = layers;
  if (!o.kv_cache_scheme.empty() && o.kv_cache_scheme != "fp8")
    throw usage_error("Unsupported KV cache scheme: " + o.kv_cache_scheme +
                      " (Quark 0.13 has fp8)");
  if (!o.attention_scheme.empty() && o.attention_scheme != "fp8")
    throw usage_error("Unsupported attention scheme: " + o.attention_scheme +
                      " (Quark 0.13 has fp8)");
  if (o.min_kv_scale && !std::isfinite(*o.min_kv_scale))
    throw usage_error("--min-kv-scale must be a finite number");
  if (o.min_kv_scale)
    r.warnings.push_back(
        "--min-kv-scale has no effect on the output: Quark 0.13's file-to-file export writes "
        "export.min_kv_scale 0.0 whatever get_config received");
  if (o.kv_cache_scheme.empty() && o.attention_scheme.empty()) return r;
  const auto names = kv_projections_of(model_type);
  if (!names)
    throw usage_error(
        "--kv-cache-scheme / --attention-scheme need the model type's k/v/q "
        "projection names, and model type '" +
        std::string(model_type) + "' has no Quark template");

  auto find_layer = [&](const std::string& glob) {
    return std::find_if(r.layers.begin(), r.layers.end(),
                        [&](const auto& e) { return e.first == glob; });
  };
  // get_layer_quant_config: the first override matching the pattern string itself (fnmatch of
  // "*k_proj" against each key), else the global config; None when an exclude glob matches it.
  auto get = [&](const std::string& name) {
    lookup l;
    l.global = true;
    l.scheme = global;
    for (const auto& [glob, s] : r.layers)
      if (matches(glob, name)) {
        l.global = false;
        l.scheme = s;
        break;
      }
    for (const auto& x : exclude)
      if (matches(x, name)) {
        // Quark keeps an excluded layer's kv-cache spec when a kv_cache_quant_config key
        // matches it; no template's kv and q names match each other, so refuse, not guess.
        for (const auto& [kv, s] : r.exp.kv_cache)
          if (matches(kv, name))
            throw usage_error("'" + name + "' is excluded and matches the kv-cache entry '" + kv +
                              "' (not supported)");
        l.excluded = true;
      }
    return l;
  };
  // _resolve_projection_base_spec: an override whose key ends with the projection's leaf, or
  // names an attention container, else the global config.
  auto resolve = [&](const std::string& name) -> quant_scheme {
    std::string leaf = name.substr(name.rfind('.') == std::string::npos ? 0 : name.rfind('.') + 1);
    leaf.erase(0, leaf.find_first_not_of('*'));
    leaf.erase(leaf.find_last_not_of('*') + 1);
    for (const auto& [glob, s] : r.layers) {
      if (!leaf.empty() && glob.ends_with(leaf)) return s;
      for (const char* token : {"self_attn", "self_attention", "attn", "attention"})
        if (glob.find(token) != std::string::npos) return s;
    }
    return global;
  };
  auto set_layer = [&](const std::string& name, const quant_scheme& s) {
    const auto it = find_layer(name);
    if (it != r.layers.end())
      it->second = s;  // a Python dict keeps the key's place
    else
      r.layers.emplace_back(name, s);
    if (std::find(r.exp.fp8_output_globs.begin(), r.exp.fp8_output_globs.end(), name) ==
        r.exp.fp8_output_globs.end())
      r.exp.fp8_output_globs.push_back(name);
  };

  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  };
  if (!o.kv_cache_scheme.empty()) {
    for (const auto& name : names->kv) {
      const lookup l = get(name);
      if (l.excluded) {
        r.exp.kv_cache.emplace_back(name, std::nullopt);
        continue;
      }
      const quant_scheme s = l.global ? resolve(name) : l.scheme;
      set_layer(name, s);
      r.exp.kv_cache.emplace_back(name, s);
    }
    r.warnings.push_back(
        "--kv-cache-scheme fp8: config.json declares static FP8 k/v cache outputs (" +
        list(names->kv) +
        ") but the file-to-file flow has no calibration and writes no k_scale / v_scale tensors "
        "(as Quark 0.13's); vLLM then uses a KV cache scale of 1.0 (its warning 'Using KV cache "
        "scaling factor 1.0 for fp8_e4m3'), which may cost accuracy");
  }
  if (!o.attention_scheme.empty()) {
    r.exp.softmax_fp8 = true;
    for (const auto& name : names->q) {
      const lookup l = get(name);
      if (l.excluded) continue;
      set_layer(name, l.global ? resolve(name) : l.scheme);
    }
    r.warnings.push_back(
        "--attention-scheme fp8: config.json declares static FP8 softmax and q outputs (" +
        list(names->q) +
        ") but no q_scale / prob_scale tensors are written (no calibration); vLLM then uses "
        "uncalibrated scales of 1.0 (its warning 'Using uncalibrated q_scale 1.0 and/or "
        "prob_scale 1.0 with fp8 attention')");
  }
  return r;
}

}  // namespace shardquant
