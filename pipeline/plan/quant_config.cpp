// Exported quantization_config (formats.md §6, §8.2). Key orders are part of the contract:
// consumers compare JSON values, but humans diff the files, so every object is built in the
// documented order.
#include "pipeline/plan/quant_config.h"

#include <algorithm>

#include "io/error.h"

namespace shardquant {
namespace {

using j = ordered_json;

// The 17 keys of §6.3 in order, with the per-spec values filled in.
j spec(j dtype, bool is_dynamic, j qscheme, j ch_axis, j group_size, j symmetric, j scale_type,
       j scale_format, j scale_calc, j observer, j block_size = nullptr) {
  j s = j::object();
  s["dtype"] = std::move(dtype);
  s["is_dynamic"] = is_dynamic;
  s["qscheme"] = std::move(qscheme);
  s["ch_axis"] = std::move(ch_axis);
  s["group_size"] = std::move(group_size);
  s["block_size"] = std::move(block_size);
  s["symmetric"] = std::move(symmetric);
  s["round_method"] = "half_even";
  s["scale_type"] = std::move(scale_type);
  s["zero_point_type"] = "int32";
  s["scale_format"] = std::move(scale_format);
  s["scale_calculation_mode"] = std::move(scale_calc);
  s["mx_element_dtype"] = nullptr;
  s["observer_cls"] = std::move(observer);
  s["is_scale_quant"] = false;
  s["enable_buffer_reuse"] = false;
  s["max_input_numel"] = 4194304;
  return s;
}

j I4G(int g, bool d) {
  return spec("int4", d, "per_group", -1, g, true, "float", nullptr, nullptr,
              "PerGroupMinMaxObserver");
}
j I4C(const char* scale_type = "float") {
  return spec("int4", false, "per_channel", 0, nullptr, true, scale_type, nullptr, nullptr,
              "PerChannelMinMaxObserver");
}
j U4G(int g) {
  return spec("uint4", false, "per_group", -1, g, false, "float", nullptr, nullptr,
              "PerGroupMinMaxObserver");
}
j U4C() {
  return spec("uint4", false, "per_channel", 0, nullptr, false, "float", nullptr, nullptr,
              "PerChannelMinMaxObserver");
}
j I8T() {
  return spec("int8", false, "per_tensor", nullptr, nullptr, true, "float", nullptr, nullptr,
              "PerTensorMinMaxObserver");
}
j F8T(j st, bool d) {
  return spec("fp8_e4m3", d, "per_tensor", nullptr, nullptr, true, std::move(st), nullptr, nullptr,
              "PerTensorMinMaxObserver");
}
j F8C(int ax, bool d) {
  return spec("fp8_e4m3", d, "per_channel", ax, nullptr, true, "float", nullptr, nullptr,
              "PerChannelMinMaxObserver");
}
j MX(const char* dt, bool d) {
  return spec(dt, d, "per_group", -1, 32, nullptr, "float", "e8m0", "even", "PerBlockMXObserver");
}

// The scaled-FP4 specs (kernels/FORMATS-fp4.md §6): Quark's FP4PerGroupSpec, AmdFP4Spec and the
// second stage of a ScaleQuantSpec (is_scale_quant: the per-tensor quantizer of the block scales).
j FP4G(int g, bool d) {
  return spec("fp4", d, "per_group", -1, g, nullptr, "float32", "float32", nullptr,
              "PerBlockMXObserver");
}
j AFP4(int g, bool d) {
  return spec("fp4", d, "per_group", -1, g, nullptr, "float8_e5m3", "e5m3", nullptr,
              "PerBlockMXObserver");
}
j scale_quant(const char* dt) {
  j s = spec(dt, false, "per_tensor", nullptr, nullptr, true, "float32", nullptr, nullptr,
             "PerTensorMinMaxObserver");
  s["is_scale_quant"] = true;
  return s;
}
j two_level(int g, bool d, const char* scale_dt) {
  j w = j::array();
  w.push_back(FP4G(g, d));
  w.push_back(scale_quant(scale_dt));
  return w;
}

j layer(j input, j weight) {
  j l = j::object();
  l["input_tensors"] = std::move(input);
  l["output_tensors"] = nullptr;
  l["weight"] = std::move(weight);
  l["bias"] = nullptr;
  l["target_device"] = nullptr;
  return l;
}

}  // namespace

ordered_json layer_config(scheme_id s) {
  switch (s) {
    case scheme_id::int4_wo_32:
      return layer(nullptr, I4G(32, false));
    case scheme_id::int4_wo_64:
      return layer(nullptr, I4G(64, false));
    case scheme_id::int4_wo_128:
      return layer(nullptr, I4G(128, false));
    case scheme_id::int4_wo_per_channel:
      return layer(nullptr, I4C());
    case scheme_id::int4_wa_64:
      return layer(I4G(64, true), I4G(64, false));
    case scheme_id::uint4_wo_32:
      return layer(nullptr, U4G(32));
    case scheme_id::uint4_wo_64:
      return layer(nullptr, U4G(64));
    case scheme_id::uint4_wo_128:
      return layer(nullptr, U4G(128));
    case scheme_id::uint4_wo_per_channel:
      return layer(nullptr, U4C());
    case scheme_id::int8:
      return layer(I8T(), I8T());
    case scheme_id::fp8:
      return layer(F8T("float", false), F8T("float", false));
    case scheme_id::ptpc_fp8:
      return layer(F8C(1, true), F8C(0, false));
    case scheme_id::mxfp4:
      return layer(MX("fp4", true), MX("fp4", false));
    case scheme_id::mxfp4_weight_only:
      return layer(nullptr, MX("fp4", false));
    case scheme_id::mxfp6_e3m2:
      return layer(MX("fp6_e3m2", true), MX("fp6_e3m2", false));
    case scheme_id::mxfp6_e2m3:
      return layer(MX("fp6_e2m3", true), MX("fp6_e2m3", false));
    case scheme_id::mxfp4_mxfp6_e2m3:
      return layer(MX("fp6_e2m3", true), MX("fp4", false));
    case scheme_id::mxfp4_fp8:
      return layer(F8T(nullptr, false), MX("fp4", false));
    case scheme_id::int4_fp8: {
      j w = j::array();
      w.push_back(F8T("float32", false));
      w.push_back(I4C("float32"));
      return layer(F8T("float32", true), std::move(w));
    }
    case scheme_id::nvfp4:
      return layer(two_level(16, true, "fp8_e4m3"), two_level(16, false, "fp8_e4m3"));
    case scheme_id::amdfp4:
      return layer(AFP4(16, true), AFP4(16, false));
    case scheme_id::amdfp4_g32:
      return layer(AFP4(32, true), AFP4(32, false));
    case scheme_id::amdfp4_global16:
      return layer(two_level(16, true, "fp8_e5m3"), two_level(16, false, "fp8_e5m3"));
    case scheme_id::amdfp4_global32:
      return layer(two_level(32, true, "fp8_e5m3"), two_level(32, false, "fp8_e5m3"));
  }
  return nullptr;
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
  const char* dt = p.e5m2 ? "fp8_e5m2" : "fp8_e4m3";
  j in = spec(dt, true, "per_group", -1, p.block_cols, true, nullptr, nullptr, nullptr,
              "PerGroupMinMaxObserver");
  j block = j::array({p.block_rows, p.block_cols});
  j w = spec(dt, false, "per_block", nullptr, nullptr, true, p.weight_scale_type, nullptr, nullptr,
             "PerBlock2DMinMaxObserver", block);
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
  const j out = F8T(nullptr, false);  // FP8E4M3PerTensorSpec(min_max, is_dynamic=False)
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
