// The exported quantization_config (formats.md §6): the §6.6 worked example byte for byte
// through io's config.json rewrite, and the spec values of every scheme (§6.3).
#include "pipeline/plan/quant_config.h"

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "io/checkpoint.h"
#include "io/error.h"

using namespace shardquant;

namespace {
std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}
// Quark 0.13's key order written out here on purpose, not read from tensor_spec_keys(): the test
// states the reference independently of the code it checks.
const char* k_keys[] = {"dtype",
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
void check_spec_keys(const ordered_json& s) {
  REQUIRE(s.is_object());
  REQUIRE(s.size() == 17);
  size_t i = 0;
  for (auto it = s.begin(); it != s.end(); ++it, ++i) CHECK(it.key() == k_keys[i]);
}
}  // namespace

TEST_CASE("the mxfp4 llama worked example of formats.md 6.6 is reproduced byte for byte") {
  const std::string dir = std::string(SQ_TEST_DATA_DIR) + "/quant_config/";
  const std::string src = slurp(dir + "llama_source_config.json");
  const std::string want = slurp(dir + "llama_mxfp4_expected_config.json");
  quant_config_inputs in;
  in.scheme = scheme_id::mxfp4;
  in.exclude = {"lm_head"};
  in.version = "shardquant-0.1.0";
  const std::string got = rewrite_config_json(src, quantization_config(in), "config.json");
  CHECK(got == want);
}

TEST_CASE("every scheme row exports the layer object Quark 0.13 writes, byte for byte") {
  // scheme_layers.json: each scheme's global_quant_config as the exporter wrote it before the
  // specs moved into the scheme table (conformance-checked against Quark 0.13).
  const ordered_json want = ordered_json::parse(
      slurp(std::string(SQ_TEST_DATA_DIR) + "/quant_config/scheme_layers.json"));
  CHECK(want.size() == all_schemes().size());
  for (const auto& s : all_schemes()) {
    INFO(s.name);
    REQUIRE(want.contains(s.name));
    CHECK(layer_config(s.id).dump() == want[std::string(s.name)].dump());
  }
}

TEST_CASE("every layer object has its five keys in order and 17-key specs") {
  for (const auto& s : all_schemes()) {
    INFO(s.name);
    const ordered_json l = layer_config(s.id);
    std::vector<std::string> keys;
    for (auto it = l.begin(); it != l.end(); ++it) keys.push_back(it.key());
    CHECK(keys == std::vector<std::string>{"input_tensors", "output_tensors", "weight", "bias",
                                           "target_device"});
    CHECK(l["output_tensors"].is_null());
    CHECK(l["bias"].is_null());
    if (l["weight"].is_array())
      for (const auto& w : l["weight"]) check_spec_keys(w);
    else
      check_spec_keys(l["weight"]);
    if (l["input_tensors"].is_array())
      for (const auto& w : l["input_tensors"]) check_spec_keys(w);
    else if (!l["input_tensors"].is_null())
      check_spec_keys(l["input_tensors"]);
  }
}

TEST_CASE("the scaled-FP4 rows match the config Quark 0.13 exports (FORMATS-fp4.md 6)") {
  const ordered_json nv = layer_config(scheme_id::nvfp4);
  REQUIRE(nv["weight"].is_array());
  REQUIRE(nv["input_tensors"].is_array());
  CHECK(nv["weight"][0]["dtype"] == "fp4");
  CHECK(nv["weight"][0]["scale_format"] == "float32");
  CHECK(nv["weight"][0]["symmetric"].is_null());
  CHECK(nv["weight"][0]["is_scale_quant"] == false);
  CHECK(nv["weight"][1]["dtype"] == "fp8_e4m3");
  CHECK(nv["weight"][1]["is_scale_quant"] == true);
  CHECK(nv["input_tensors"][0]["is_dynamic"] == true);
  CHECK(nv["input_tensors"][1]["is_dynamic"] == false);
  const ordered_json af = layer_config(scheme_id::amdfp4_g32);
  CHECK(af["weight"]["scale_type"] == "float8_e5m3");
  CHECK(af["weight"]["scale_format"] == "e5m3");
  CHECK(af["weight"]["group_size"] == 32);
  const ordered_json ag = layer_config(scheme_id::amdfp4_global16);
  CHECK(ag["weight"][1]["dtype"] == "fp8_e5m3");
  CHECK(ag["weight"][0]["group_size"] == 16);
}

TEST_CASE("spec values follow the per-scheme table of 6.3") {
  auto l = layer_config(scheme_id::int4_wo_128);
  CHECK(l["input_tensors"].is_null());
  CHECK(l["weight"]["dtype"] == "int4");
  CHECK(l["weight"]["group_size"] == 128);
  CHECK(l["weight"]["observer_cls"] == "PerGroupMinMaxObserver");
  l = layer_config(scheme_id::int4_wa_64);
  CHECK(l["input_tensors"]["is_dynamic"] == true);
  CHECK(l["weight"]["is_dynamic"] == false);
  l = layer_config(scheme_id::uint4_wo_per_channel);
  CHECK(l["weight"]["symmetric"] == false);
  CHECK(l["weight"]["ch_axis"] == 0);
  CHECK(l["weight"]["group_size"].is_null());
  l = layer_config(scheme_id::int8);
  CHECK(l["input_tensors"] == l["weight"]);
  CHECK(l["weight"]["qscheme"] == "per_tensor");
  l = layer_config(scheme_id::ptpc_fp8);
  CHECK(l["weight"]["ch_axis"] == 0);
  CHECK(l["input_tensors"]["ch_axis"] == 1);
  CHECK(l["input_tensors"]["is_dynamic"] == true);
  l = layer_config(scheme_id::mxfp4_weight_only);
  CHECK(l["input_tensors"].is_null());
  CHECK(l["weight"]["scale_format"] == "e8m0");
  CHECK(l["weight"]["symmetric"].is_null());
  l = layer_config(scheme_id::mxfp6_e3m2);
  CHECK(l["weight"]["dtype"] == "fp6_e3m2");
  l = layer_config(scheme_id::mxfp4_mxfp6_e2m3);
  CHECK(l["weight"]["dtype"] == "fp4");
  CHECK(l["input_tensors"]["dtype"] == "fp6_e2m3");
  l = layer_config(scheme_id::mxfp4_fp8);
  CHECK(l["input_tensors"]["dtype"] == "fp8_e4m3");
  CHECK(l["input_tensors"]["scale_type"].is_null());
  l = layer_config(scheme_id::int4_fp8);
  REQUIRE(l["weight"].is_array());
  CHECK(l["weight"][0]["scale_type"] == "float32");
  CHECK(l["weight"][1]["dtype"] == "int4");
  CHECK(l["weight"][1]["scale_type"] == "float32");
  CHECK(l["input_tensors"]["is_dynamic"] == true);
}

TEST_CASE("Q keys are in order - overrides keep user order - kept modules follow sorted") {
  quant_config_inputs in;
  in.scheme = scheme_id::fp8;
  in.exclude = {"z", "a", "a"};
  in.overrides = {{"*down_proj", scheme_id::int8}, {"*experts*", scheme_id::mxfp4}};
  in.kept_modules = {"model.layers.1.self_attn.q_a_proj", "model.layers.0.self_attn.o_proj"};
  const ordered_json q = quantization_config(in);
  std::vector<std::string> keys;
  for (auto it = q.begin(); it != q.end(); ++it) keys.push_back(it.key());
  CHECK(keys == std::vector<std::string>{"global_quant_config", "exclude", "algo_config",
                                         "softmax_quant_spec", "quant_method",
                                         "layer_type_quant_config", "layer_quant_config",
                                         "kv_cache_quant_config", "kv_cache_post_rope",
                                         "quant_mode", "version", "export"});
  CHECK(q["exclude"] == ordered_json{"a", "z"});
  std::vector<std::string> lq;
  for (auto it = q["layer_quant_config"].begin(); it != q["layer_quant_config"].end(); ++it)
    lq.push_back(it.key());
  CHECK(lq == std::vector<std::string>{"*down_proj", "*experts*", "model.layers.0.self_attn.o_proj",
                                       "model.layers.1.self_attn.q_a_proj"});
  const auto& kept = q["layer_quant_config"]["model.layers.0.self_attn.o_proj"];
  CHECK(kept["weight"]["qscheme"] == "per_block");
  CHECK(kept["weight"]["block_size"] == ordered_json{128, 128});
  CHECK(kept["input_tensors"]["group_size"] == 128);
  check_spec_keys(kept["weight"]);
}

TEST_CASE("keep-original parameters come from the FP8 source config and are checked first") {
  ordered_json qc = ordered_json::parse(
      R"({"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
          "scale_fmt": "ue8m0", "weight_block_size": [128, 64]})");
  const fp8_keep_params p = fp8_keep_params_of(qc, "config.json");
  CHECK(p.block_rows == 128);
  CHECK(p.block_cols == 64);
  CHECK(p.weight_scale_type == "float8_e8m0fnu");
  qc["activation_scheme"] = "static";
  CHECK_THROWS_AS((void)fp8_keep_params_of(qc, "config.json"), input_error);
  qc["activation_scheme"] = "dynamic";
  qc.erase("weight_block_size");
  CHECK_THROWS_AS((void)fp8_keep_params_of(qc, "config.json"), input_error);
}
