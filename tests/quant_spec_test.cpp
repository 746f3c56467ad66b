// Quantization spec files (pipeline/plan/quant_spec.h): the example of README "Custom progressive
// specs" and other valid forms (built-in scheme names as stages, one stage, defaults), the
// canonical 17-key tensor-spec objects of the exported config, and every error naming the file and
// the JSON path of what is wrong.
#include <doctest/doctest.h>

#include <string>

#include "io/error.h"
#include "pipeline/plan/quant_config.h"
#include "pipeline/plan/quant_spec.h"

using namespace shardquant;

namespace {

const char* k_example = R"({"name": "w4a8_g128",
 "weight": [ {"dtype": "fp8_e4m3", "qscheme": "per_tensor"},
             {"dtype": "int4", "qscheme": "per_group", "group_size": 128, "symmetric": true} ],
 "input_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_tensor", "is_dynamic": true}})";

// The usage_error message of parsing `text` as "spec.json" ("" when it parses).
std::string error_of(const std::string& text) {
  try {
    (void)parse_quant_spec(text, "spec.json");
  } catch (const usage_error& e) {
    return e.what();
  }
  return {};
}

std::string keys_of(const ordered_json& o) {
  std::string k;
  for (auto it = o.begin(); it != o.end(); ++it) k += it.key() + ",";
  return k;
}

const std::string k_17 =
    "dtype,is_dynamic,qscheme,ch_axis,group_size,block_size,symmetric,round_method,scale_type,"
    "zero_point_type,scale_format,scale_calculation_mode,mx_element_dtype,observer_cls,"
    "is_scale_quant,enable_buffer_reuse,max_input_numel,";

}  // namespace

TEST_CASE("the README example is an fp8 per-tensor then int4 per-group 128 pair") {
  const custom_spec s = parse_quant_spec(k_example, "spec.json");
  CHECK(s.name == "w4a8_g128");
  CHECK(s.kernel == weight_scheme(weight_scheme(scheme_id::fp8).first,
                                  weight_scheme(scheme_id::int4_wo_128).first));
  REQUIRE(s.weight.is_array());
  REQUIRE(s.weight.size() == 2);
  CHECK(keys_of(s.weight[0]) == k_17);
  CHECK(keys_of(s.weight[1]) == k_17);
  CHECK(s.weight[0]["observer_cls"] == "PerTensorMinMaxObserver");
  CHECK(s.weight[0]["scale_type"] == "float");
  CHECK(s.weight[0]["ch_axis"].is_null());
  CHECK(s.weight[1]["group_size"] == 128);
  CHECK(s.weight[1]["ch_axis"] == -1);
  CHECK(s.weight[1]["observer_cls"] == "PerGroupMinMaxObserver");
  CHECK(keys_of(s.input_tensors) == k_17);
  CHECK(s.input_tensors["is_dynamic"] == true);
  // The exported layer object: weight is the list of the two specs (formats.md §6.2).
  const ordered_json layer = layer_config(quant_scheme(std::make_shared<custom_spec>(s)));
  CHECK(keys_of(layer) == "input_tensors,output_tensors,weight,bias,target_device,");
  CHECK(layer["weight"] == s.weight);
}

TEST_CASE("built-in scheme names as stages take those schemes' own tensor specs") {
  const custom_spec s = parse_quant_spec(
      R"({"weight": ["fp8", "int4_wo_per_channel"], "input_tensors": "int4_fp8"})", "dir/x.json");
  CHECK(s.name == "x");  // the file name without .json
  CHECK(s.kernel == weight_scheme(scheme_id::int4_fp8));
  CHECK(s.weight[0] == layer_config(scheme_id::fp8)["weight"]);
  CHECK(s.weight[1] == layer_config(scheme_id::int4_wo_per_channel)["weight"]);
  CHECK(s.input_tensors == layer_config(scheme_id::int4_fp8)["input_tensors"]);
}

TEST_CASE("the int4_fp8 config written as a spec file is the built-in layer object") {
  const ordered_json builtin = layer_config(scheme_id::int4_fp8);
  ordered_json file = ordered_json::object();
  file["weight"] = builtin["weight"];
  file["input_tensors"] = builtin["input_tensors"];
  const custom_spec s = parse_quant_spec(file.dump(), "w4a8.json");
  CHECK(s.kernel == weight_scheme(scheme_id::int4_fp8));
  CHECK(layer_config(quant_scheme(std::make_shared<custom_spec>(s))) == builtin);
}

TEST_CASE("a one-stage weight list is an ordinary single-stage scheme") {
  const custom_spec s = parse_quant_spec(
      R"({"weight": [{"dtype": "uint4", "qscheme": "per_group", "group_size": 64}]})", "u.json");
  CHECK(!s.kernel.progressive);
  CHECK(s.kernel == weight_scheme(scheme_id::uint4_wo_64));
  CHECK(s.weight.is_object());
  CHECK(s.weight["symmetric"] == false);  // Quark's uint4 default
  CHECK(s.input_tensors.is_null());
  const custom_spec m = parse_quant_spec(
      R"({"weight": [{"dtype": "fp4", "qscheme": "per_group", "group_size": 32}]})", "m.json");
  CHECK(m.kernel == weight_scheme(scheme_id::mxfp4));
  CHECK(m.weight == layer_config(scheme_id::mxfp4)["weight"]);
}

TEST_CASE("spec file errors name the file and the JSON path of the problem") {
  struct bad {
    const char* text;
    const char* expect;  // a substring of the message
  };
  const bad cases[] = {
      {"{", "spec.json: not valid JSON"},
      {"[]", "spec.json: (top level): expected an object"},
      {R"({"input_tensors": null})", "spec.json: (top level): missing \"weight\""},
      {R"({"weight": ["fp8"], "extra": 1})", "spec.json: extra: unknown key"},
      {R"({"weight": []})", "spec.json: weight: expected a list of 1 or 2"},
      {R"({"weight": ["fp8", "int8", "fp8"]})", "spec.json: weight: expected a list of 1 or 2"},
      {R"({"weight": "fp8"})", "spec.json: weight: expected a list"},
      {R"({"name": 3, "weight": ["fp8"]})", "spec.json: name: expected a non-empty string"},
      {R"({"weight": ["fp9"]})", "spec.json: weight[0]: unknown scheme 'fp9' (known: int4_wo_32"},
      {R"({"weight": ["fp8", "int4_fp8"]})", "spec.json: weight[1]: scheme \"int4_fp8\" is itself"},
      {R"({"weight": [{"dtype": "fp8_e4m3"}]})", "spec.json: weight[0]: missing \"qscheme\""},
      {R"({"weight": [{"qscheme": "per_tensor"}]})", "spec.json: weight[0]: missing \"dtype\""},
      {R"({"weight": [{"dtype": "int3", "qscheme": "per_group"}]})",
       "spec.json: weight[0].dtype: unsupported dtype \"int3\""},
      {R"({"weight": [{"dtype": "int4", "qscheme": "per_block"}]})",
       "spec.json: weight[0].qscheme: unsupported qscheme"},
      {R"({"weight": ["fp8", {"dtype": "int4", "qscheme": "per_group", "group_size": 48}]})",
       "spec.json: weight[1].group_size: unsupported group_size 48"},
      {R"({"weight": ["fp8", {"dtype": "int4", "qscheme": "per_group"}]})",
       "spec.json: weight[1]: per_group needs \"group_size\""},
      {R"({"weight": ["fp8", {"dtype": "int4", "qscheme": "per_channel", "symmetric": false}]})",
       "spec.json: weight[1].symmetric: int4 is symmetric here"},
      {R"({"weight": ["fp8", {"dtype": "uint4", "qscheme": "per_channel", "symmetric": true}]})",
       "spec.json: weight[1].symmetric: uint4 is asymmetric"},
      {R"({"weight": [{"dtype": "fp8_e4m3", "qscheme": "per_tensor", "is_dynamic": true}]})",
       "spec.json: weight[0].is_dynamic: a weight is quantized statically"},
      {R"({"weight": [{"dtype": "fp8_e4m3", "qscheme": "per_channel", "ch_axis": 1}]})",
       "spec.json: weight[0].ch_axis: a per_channel weight stage needs ch_axis 0"},
      {R"({"weight": [{"dtype": "fp8_e4m3", "qscheme": "per_tensor", "scale_type": null}]})",
       "spec.json: weight[0].scale_type: null is not supported for a weight"},
      {R"({"weight": [{"dtype": "fp8_e4m3", "qscheme": "per_tensor", "scale_type": "bfloat16"}]})",
       "spec.json: weight[0].scale_type: supported"},
      {R"({"weight": [{"dtype": "fp8_e4m3", "qscheme": "per_tensor", "round_method": "floor"}]})",
       "spec.json: weight[0].round_method: only \"half_even\""},
      {R"({"weight": [{"dtype": "fp8_e4m3", "qscheme": "per_tensor", "observer": "x"}]})",
       "spec.json: weight[0].observer: unknown key"},
      {R"({"weight": [{"dtype": "fp8_e4m3", "qscheme": "per_tensor",
                       "observer_cls": "PerChannelMinMaxObserver"}]})",
       "spec.json: weight[0].observer_cls: must be \"PerTensorMinMaxObserver\""},
      {R"({"weight": [{"dtype": "int8", "qscheme": "per_channel"}]})",
       "spec.json: weight[0].qscheme: int8 weights are supported per_tensor only"},
      {R"({"weight": [{"dtype": "fp8_e4m3", "qscheme": "per_tensor", "is_scale_quant": true}]})",
       "spec.json: weight[0].is_scale_quant: only false"},
      {R"({"weight": [{"dtype": "fp4", "qscheme": "per_channel"}]})",
       "spec.json: weight[0].qscheme: MX dtypes need per_group"},
      {R"({"weight": ["fp8", "mxfp4"]})",
       "spec.json: weight: (fp8_e4m3 per-tensor, mxfp4) is not a supported progressive pair: an "
       "MX second stage"},
      {R"({"weight": ["int8", "fp8"]})",
       "is not a supported progressive pair: a per-tensor second"},
      {R"({"weight": ["int4_wo_per_channel", "int8"]})", "an int4/uint4 first stage"},
      {R"({"weight": ["fp8", "int4_wo_32"], "input_tensors": "mx6"})",
       "spec.json: input_tensors: scheme 'mx6' is refused: Quark 0.13"},
      {R"({"weight": [{"dtype": "fp8_e4m3", "qscheme": "per_group", "group_size": 32}]})",
       "spec.json: weight[0].qscheme: fp8_e4m3 weights are supported per_tensor or per_channel"},
      {R"({"weight": [{"dtype": "fp4", "qscheme": "per_group", "group_size": 32,
                       "scale_format": "e5m3"}]})",
       "spec.json: weight[0].scale_format: must be \"e8m0\" for fp4"},
      {R"({"weight": ["fp8", "int4_wo_32"], "input_tensors": {"dtype": "fp8_e4m3",
          "qscheme": "per_tensor", "dynamic": true}})",
       "spec.json: input_tensors.dynamic: unknown key"},
  };
  for (const bad& b : cases) {
    const std::string text = b.text;
    CAPTURE(text);
    const std::string msg = error_of(text);
    CAPTURE(msg);
    CHECK(msg.find(b.expect) != std::string::npos);
  }
}

TEST_CASE("every single-stage built-in weight spec read as a stage object runs that row's math") {
  // The spec file's weight stages take their kernel format from the scheme table: the exported
  // spec of a row, given back as a tensor-spec object, must give the row's own format.
  int checked = 0;
  for (const scheme_info& s : all_schemes()) {
    INFO(s.name);
    if (s.weight.count != 1 || s.weight.at[0].scale_format == "e5m3") continue;  // not spec-file
    ordered_json file = ordered_json::object();
    file["weight"] = ordered_json::array({layer_config(s.id)["weight"]});
    const custom_spec c = parse_quant_spec(file.dump(), "s.json");
    CHECK(c.kernel == weight_scheme(s.id));
    CHECK(c.weight == layer_config(s.id)["weight"]);
    ++checked;
  }
  CHECK(checked == 18);
}

TEST_CASE("a scheme argument is parsed in one place: names, aliases, spec files, one wording") {
  CHECK(parse_scheme_arg("fp8") == scheme_id::fp8);
  CHECK(parse_scheme_arg("fp4_block16_scale_e4m3") == scheme_id::nvfp4);
  CHECK_THROWS_WITH_AS((void)parse_scheme_arg("fp7"),
                       doctest::Contains("unknown scheme 'fp7' (known: int4_wo_32, "), usage_error);
  CHECK_THROWS_WITH_AS((void)parse_scheme_arg("bfp16"),
                       doctest::Contains("scheme 'bfp16' is refused: Quark 0.13's file-to-file"),
                       usage_error);
  CHECK_THROWS_WITH_AS((void)parse_scheme_arg("/nonexistent/w.json"),
                       doctest::Contains("/nonexistent/w.json: quantization spec file cannot be"),
                       usage_error);
}

TEST_CASE("a spec file that cannot be read is a usage error naming it") {
  CHECK_THROWS_WITH_AS((void)read_quant_spec("/nonexistent/dir/spec.json"),
                       doctest::Contains("/nonexistent/dir/spec.json: quantization spec file "
                                         "cannot be opened"),
                       usage_error);
  CHECK(is_quant_spec_file("a/b.json"));
  CHECK(!is_quant_spec_file("fp8"));
}

TEST_CASE("quant_scheme compares and orders built-ins and custom specs") {
  const auto a = std::make_shared<custom_spec>(parse_quant_spec(k_example, "a.json"));
  const quant_scheme c(a);
  const quant_scheme b = scheme_id::fp8;
  CHECK(b == scheme_id::fp8);
  CHECK(!(c == scheme_id::fp8));
  CHECK(c.name() == "w4a8_g128");
  CHECK(b.name() == "fp8");
  CHECK(b.before(c));
  CHECK(!c.before(b));
  CHECK(c.kernel().progressive);
  CHECK(c == quant_scheme(a));
  CHECK(!(c == quant_scheme(std::make_shared<custom_spec>(*a))));  // another spec object
}
