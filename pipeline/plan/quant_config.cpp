// Exported quantization_config (formats.md §6, §8.2). Key orders are part of the contract:
// consumers compare JSON values, but humans diff the files, so every object is built in the
// documented order. Generic over the scheme table: a built-in's layer object is its row's specs
// (kernels/schemes.h) written as JSON; no scheme is named here.
#include "pipeline/plan/quant_config.h"

#include <algorithm>
#include <array>

#include "io/error.h"

namespace shardquant {
namespace {

using j = ordered_json;

j null_or(std::string_view v) {
  return v.empty() ? j(nullptr) : j(std::string(v));
}

j layer(j input, j weight, j output = nullptr) {
  j l = j::object();
  l["input_tensors"] = std::move(input);
  l["output_tensors"] = std::move(output);
  l["weight"] = std::move(weight);
  l["bias"] = nullptr;
  l["target_device"] = nullptr;
  return l;
}

j spec_list_json(const spec_list& l) {
  if (l.count == 0) return nullptr;
  if (l.count == 1) return tensor_spec_json(l.at[0]);
  j a = j::array();
  for (const exported_spec& s : l.specs()) a.push_back(tensor_spec_json(s));
  return a;
}

}  // namespace

std::span<const std::string_view> tensor_spec_keys() noexcept {
  static constexpr std::array<std::string_view, 17> k{"dtype",
                                                      "is_dynamic",
                                                      "qscheme",
                                                      "ch_axis",
                                                      "group_size",
                                                      "block_size",
                                                      "symmetric",
                                                      "round_method",
                                                      "scale_type",
                                                      "zero_point_type",
                                                      "scale_format",
                                                      "scale_calculation_mode",
                                                      "mx_element_dtype",
                                                      "observer_cls",
                                                      "is_scale_quant",
                                                      "enable_buffer_reuse",
                                                      "max_input_numel"};
  return k;
}

ordered_json tensor_spec_json(const exported_spec& t) {
  j s = j::object();
  s["dtype"] = std::string(t.dtype);
  s["is_dynamic"] = t.is_dynamic;
  s["qscheme"] = std::string(t.qscheme);
  s["ch_axis"] = t.ch_axis ? j(*t.ch_axis) : j(nullptr);
  s["group_size"] = t.group_size ? j(t.group_size) : j(nullptr);
  s["block_size"] = t.block_size[0] ? j::array({t.block_size[0], t.block_size[1]}) : j(nullptr);
  s["symmetric"] = t.symmetric ? j(*t.symmetric) : j(nullptr);
  s["round_method"] = null_or(t.round_method);
  s["scale_type"] = null_or(t.scale_type);
  s["zero_point_type"] = "int32";
  s["scale_format"] = null_or(t.scale_format);
  s["scale_calculation_mode"] = null_or(t.scale_calculation_mode);
  s["mx_element_dtype"] = nullptr;
  s["observer_cls"] = null_or(t.observer_cls);
  s["is_scale_quant"] = t.is_scale_quant;
  s["enable_buffer_reuse"] = false;
  s["max_input_numel"] = 4194304;
  return s;
}

ordered_json layer_config(scheme_id s) {
  const scheme_info& r = info(s);
  return layer(spec_list_json(r.input), spec_list_json(r.weight), spec_list_json(r.output));
}

ordered_json layer_config(const quant_scheme& s) {
  if (!s.custom) return layer_config(s.id);
  return layer(s.custom->input_tensors, s.custom->weight);
}

fp8_keep_params fp8_keep_params_of(const ordered_json& qc, const std::string& config_path) {
  auto fail = [&](const std::string& m) {
    throw input_error(config_path, "", input_error::no_offset, "--keep-excluded-as-original: " + m);
  };
  fp8_keep_params p;
  if (!qc.contains("activation_scheme") || qc["activation_scheme"] != "dynamic")
    fail("the source quantization_config must have \"activation_scheme\": \"dynamic\"");
  if (!qc.contains("weight_block_size"))
    fail("the source quantization_config has no weight_block_size");
  const auto& wbs = qc["weight_block_size"];
  if (!wbs.is_array() || wbs.size() != 2 || !wbs[0].is_number_unsigned() ||
      !wbs[1].is_number_unsigned() || wbs[0].get<uint64_t>() == 0 || wbs[1].get<uint64_t>() == 0)
    fail("weight_block_size must be two positive integers");
  p.block_rows = wbs[0].get<uint64_t>();
  p.block_cols = wbs[1].get<uint64_t>();
  if (qc.contains("fmt")) {
    if (!qc["fmt"].is_string()) fail("fmt must be a string");
    const std::string f = qc["fmt"].get<std::string>();
    if (f == "e5m2" || f == "float8_e5m2")
      p.e5m2 = true;
    else if (f != "e4m3" && f != "float8_e4m3fn" && f != "float8_e4m3")
      fail("unknown fmt '" + f + "'");
  }
  if (qc.contains("scale_fmt") && qc["scale_fmt"].is_string()) {
    const std::string sf = qc["scale_fmt"].get<std::string>();
    if (sf == "ue8m0" || sf == "e8m0") p.weight_scale_type = "float8_e8m0fnu";
  }
  if (qc.contains("scale_type")) p.weight_scale_type = qc["scale_type"].get<std::string>();
  for (const char* k : {"ch_axis", "group_size", "round_method", "symmetric"})
    if (qc.contains(k)) p.source_overrides[k] = qc[k];
  return p;
}

ordered_json keep_original_layer_config(const fp8_keep_params& p) {
  const std::string_view dt = p.e5m2 ? "fp8_e5m2" : "fp8_e4m3";
  j in = tensor_spec_json({.dtype = dt,
                           .is_dynamic = true,
                           .qscheme = "per_group",
                           .ch_axis = -1,
                           .group_size = p.block_cols,
                           .symmetric = true,
                           .observer_cls = "PerGroupMinMaxObserver"});
  j w = tensor_spec_json({.dtype = dt,
                          .qscheme = "per_block",
                          .block_size = {p.block_rows, p.block_cols},
                          .symmetric = true,
                          .scale_type = p.weight_scale_type,
                          .observer_cls = "PerBlock2DMinMaxObserver"});
  // Quark copies these keys from the source config into both specs when present.
  for (auto it = p.source_overrides.begin(); it != p.source_overrides.end(); ++it) {
    in[it.key()] = it.value();
    w[it.key()] = it.value();
  }
  return layer(std::move(in), std::move(w));
}

ordered_json apply_export_options(ordered_json layer, const export_options& o) {
  if (o.dynamic_activations && layer.contains("input_tensors")) {
    // A spec object or a list of them (progressive input specs); null stays null.
    auto make_dynamic = [](j& spec) {
      if (spec.is_object() && spec.contains("is_dynamic")) spec["is_dynamic"] = true;
    };
    j& in = layer["input_tensors"];
    if (in.is_array())
      for (auto& s : in) make_dynamic(s);
    else
      make_dynamic(in);
  }
  return layer;
}

namespace {

// get_config's kv_cache_scheme / attention_scheme (FORMATS-rotation.md R.9): the FP8 output spec
// on the kv / q entries of layer_quant_config, kv_cache_quant_config, softmax_quant_spec.
void add_kv_attention(j& q, const quant_config_inputs& in) {
  // FP8E4M3PerTensorSpec(min_max, is_dynamic=False): scale_type None.
  const j out = tensor_spec_json({.dtype = "fp8_e4m3",
                                  .qscheme = "per_tensor",
                                  .symmetric = true,
                                  .observer_cls = "PerTensorMinMaxObserver"});
  for (const auto& g : in.kv.fp8_output_globs) q["layer_quant_config"][g]["output_tensors"] = out;
  j kv = j::object();
  for (const auto& [g, s] : in.kv.kv_cache) {
    j l = s ? apply_export_options(layer_config(*s), in.exp) : layer(nullptr, nullptr);
    l["output_tensors"] = out;
    kv[g] = std::move(l);
  }
  q["kv_cache_quant_config"] = std::move(kv);
  if (in.kv.softmax_fp8) q["softmax_quant_spec"] = out;
}

}  // namespace

ordered_json quantization_config(const quant_config_inputs& in) {
  j q = j::object();
  q["global_quant_config"] = apply_export_options(layer_config(in.scheme), in.exp);
  std::vector<std::string> ex = in.exclude;
  std::sort(ex.begin(), ex.end());
  ex.erase(std::unique(ex.begin(), ex.end()), ex.end());
  q["exclude"] = ex;
  q["algo_config"] = nullptr;
  q["softmax_quant_spec"] = nullptr;
  q["quant_method"] = "quark";
  q["layer_type_quant_config"] = j::object();
  j lqc = j::object();
  for (const auto& [glob, s] : in.overrides)
    lqc[glob] = apply_export_options(layer_config(s), in.exp);
  std::vector<std::string> kept = in.kept_modules;
  std::sort(kept.begin(), kept.end());
  kept.erase(std::unique(kept.begin(), kept.end()), kept.end());
  for (const auto& m : kept) lqc[m] = keep_original_layer_config(in.keep);
  q["layer_quant_config"] = std::move(lqc);
  q["kv_cache_quant_config"] = j::object();
  q["kv_cache_post_rope"] = false;
  q["quant_mode"] = "eager_mode";
  q["version"] = in.version;
  j exp = j::object();
  exp["kv_cache_group"] = j::array();
  exp["min_kv_scale"] = 0.0;
  exp["pack_method"] = "reorder";
  exp["weight_format"] = "real_quantized";
  exp["weight_merge_groups"] = nullptr;
  q["export"] = std::move(exp);
  add_kv_attention(q, in);
  return q;
}

}  // namespace shardquant
