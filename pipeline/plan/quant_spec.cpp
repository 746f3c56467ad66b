// Custom quantization spec files (pipeline/plan/quant_spec.h): parsing, checks with the file and
// JSON path in every message, the canonical §6.3 tensor-spec objects, and the weight formats the
// kernels run. What "compatible" means for a progressive pair is decided by the kernels'
// progressive_error() (kernels/schemes.h); this file only maps JSON to formats.
#include "pipeline/plan/quant_spec.h"

#include <array>
#include <fstream>
#include <sstream>

#include "io/error.h"
#include "pipeline/plan/quant_config.h"

namespace shardquant {
namespace {

using j = ordered_json;

// The 17 keys of formats.md §6.3, in order.
constexpr std::array<std::string_view, 17> k_spec_keys{"dtype",
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

[[noreturn]] void fail(const std::string& file, const std::string& where, const std::string& why) {
  throw usage_error(file + ": " + where + ": " + why);
}

std::string quoted(const j& v) {
  return v.dump();
}

// One tensor spec (a stage of the weight, or the input spec) checked against what shardquant
// supports, with Quark's defaults filled in. `weight`: a weight stage (static, per-channel on
// axis 0, a scale type whose math is traced); `fmt` receives its weight format.
j canonical_tensor_spec(const j& in, const std::string& file, const std::string& where, bool weight,
                        weight_format* fmt) {
  if (!in.is_object()) fail(file, where, "expected a tensor-spec object or a scheme name");
  for (auto it = in.begin(); it != in.end(); ++it) {
    bool known = false;
    for (auto k : k_spec_keys) known = known || it.key() == k;
    if (!known)
      fail(file, where + "." + it.key(),
           "unknown key (tensor-spec keys are those of formats.md §6.3: dtype, qscheme, ch_axis, "
           "group_size, symmetric, is_dynamic, scale_type, ...)");
  }
  auto get = [&](std::string_view k) -> const j* {
    auto it = in.find(std::string(k));
    return it == in.end() ? nullptr : &*it;
  };
  auto key_path = [&](std::string_view k) { return where + "." + std::string(k); };
  auto str = [&](std::string_view k) -> std::string {
    const j* v = get(k);
    if (!v) fail(file, where, "missing \"" + std::string(k) + "\"");
    if (!v->is_string()) fail(file, key_path(k), "expected a string, got " + quoted(*v));
    return v->get<std::string>();
  };
  const std::string dtype = str("dtype");
  const std::string qscheme = str("qscheme");
  const bool mx_dtype = dtype == "fp4" || dtype == "fp6_e2m3" || dtype == "fp6_e3m2";
  if (dtype != "fp8_e4m3" && dtype != "int8" && dtype != "int4" && dtype != "uint4" && !mx_dtype)
    fail(file, key_path("dtype"),
         "unsupported dtype \"" + dtype +
             "\" (supported: fp8_e4m3, int8, int4, uint4, fp4, fp6_e2m3, fp6_e3m2)");
  if (qscheme != "per_tensor" && qscheme != "per_channel" && qscheme != "per_group")
    fail(file, key_path("qscheme"),
         "unsupported qscheme \"" + qscheme + "\" (supported: per_tensor, per_channel, per_group)");

  j out = j::object();
  out["dtype"] = dtype;
  // is_dynamic
  bool dynamic = false;
  if (const j* v = get("is_dynamic")) {
    if (!v->is_boolean()) fail(file, key_path("is_dynamic"), "expected true or false");
    dynamic = v->get<bool>();
  }
  if (weight && dynamic) fail(file, key_path("is_dynamic"), "a weight is quantized statically");
  out["is_dynamic"] = dynamic;
  out["qscheme"] = qscheme;
  // ch_axis: per_channel 0 by default (weights: must be 0, the output-channel rows), per_group -1.
  j axis = nullptr;
  if (qscheme == "per_channel") axis = 0;
  if (qscheme == "per_group") axis = -1;
  if (const j* v = get("ch_axis")) {
    if (qscheme == "per_tensor") {
      if (!v->is_null()) fail(file, key_path("ch_axis"), "must be null for per_tensor");
    } else {
      if (!v->is_number_integer()) fail(file, key_path("ch_axis"), "expected an integer");
      axis = *v;
    }
  }
  if (weight && qscheme == "per_channel" && axis != 0)
    fail(file, key_path("ch_axis"), "a per_channel weight stage needs ch_axis 0 (rows)");
  if (weight && qscheme == "per_group" && axis != -1)
    fail(file, key_path("ch_axis"), "a per_group weight stage needs ch_axis -1 (the last dim)");
  out["ch_axis"] = axis;
  // group_size
  j group = nullptr;
  if (mx_dtype) group = 32;
  if (const j* v = get("group_size")) {
    if (qscheme != "per_group") {
      if (!v->is_null()) fail(file, key_path("group_size"), "must be null unless per_group");
    } else {
      if (!v->is_number_integer()) fail(file, key_path("group_size"), "expected an integer");
      group = *v;
    }
  }
  if (qscheme == "per_group") {
    if (group.is_null()) fail(file, where, "per_group needs \"group_size\"");
    const int64_t g = group.get<int64_t>();
    if (mx_dtype ? g != 32 : (g != 32 && g != 64 && g != 128))
      fail(file, key_path("group_size"),
           "unsupported group_size " + std::to_string(g) +
               (mx_dtype ? " (MX blocks are 32)" : " (supported: 32, 64, 128)"));
  } else if (mx_dtype) {
    fail(file, key_path("qscheme"), "MX dtypes need per_group with group_size 32");
  }
  out["group_size"] = group;
  if (const j* v = get("block_size"); v && !v->is_null())
    fail(file, key_path("block_size"), "only null is supported");
  out["block_size"] = nullptr;
  // symmetric: Quark's defaults are true for int4/int8/fp8, false for uint4, null for MX.
  j sym = mx_dtype ? j(nullptr) : j(dtype != "uint4");
  if (const j* v = get("symmetric")) {
    if (mx_dtype) {
      if (!v->is_null()) fail(file, key_path("symmetric"), "must be null for MX dtypes");
    } else {
      if (!v->is_boolean()) fail(file, key_path("symmetric"), "expected true or false");
      if (v->get<bool>() != (dtype != "uint4"))
        fail(file, key_path("symmetric"),
             dtype == "uint4" ? "uint4 is asymmetric (with a zero point): symmetric must be false"
                              : dtype + " is symmetric here (an asymmetric 4-bit format is uint4)");
      sym = *v;
    }
  }
  out["symmetric"] = sym;
  if (const j* v = get("round_method"); v && *v != "half_even")
    fail(file, key_path("round_method"), "only \"half_even\" is supported");
  out["round_method"] = "half_even";
  // scale_type: "float" (default) or "float32" (the same bytes: F32 scales either way); weights
  // may not use null (Quark then keeps the scale in the source dtype, which is not traced).
  j st = "float";
  if (const j* v = get("scale_type")) {
    if (!(v->is_null() || *v == "float" || *v == "float32"))
      fail(file, key_path("scale_type"), "supported: \"float\", \"float32\" or null");
    if (weight && v->is_null())
      fail(file, key_path("scale_type"),
           "null is not supported for a weight (use \"float\" or \"float32\")");
    st = *v;
  }
  out["scale_type"] = st;
  if (const j* v = get("zero_point_type"); v && *v != "int32")
    fail(file, key_path("zero_point_type"), "only \"int32\" is supported");
  out["zero_point_type"] = "int32";
  const j want_format = mx_dtype ? j("e8m0") : j(nullptr);
  const j want_mode = mx_dtype ? j("even") : j(nullptr);
  if (const j* v = get("scale_format"); v && *v != want_format)
    fail(file, key_path("scale_format"), "must be " + quoted(want_format) + " for " + dtype);
  out["scale_format"] = want_format;
  if (const j* v = get("scale_calculation_mode"); v && *v != want_mode)
    fail(file, key_path("scale_calculation_mode"),
         "must be " + quoted(want_mode) + " for " + dtype);
  out["scale_calculation_mode"] = want_mode;
  if (const j* v = get("mx_element_dtype"); v && !v->is_null())
    fail(file, key_path("mx_element_dtype"), "only null is supported (MX uses dtype fp4/fp6_*)");
  out["mx_element_dtype"] = nullptr;
  const char* observer = mx_dtype                   ? "PerBlockMXObserver"
                         : qscheme == "per_tensor"  ? "PerTensorMinMaxObserver"
                         : qscheme == "per_channel" ? "PerChannelMinMaxObserver"
                                                    : "PerGroupMinMaxObserver";
  if (const j* v = get("observer_cls"); v && *v != observer)
    fail(file, key_path("observer_cls"), std::string("must be \"") + observer + "\" here");
  out["observer_cls"] = observer;
  if (const j* v = get("is_scale_quant"); v && *v != false)
    fail(file, key_path("is_scale_quant"), "only false is supported (scale quantization is not)");
  out["is_scale_quant"] = false;
  if (const j* v = get("enable_buffer_reuse"); v && *v != false)
    fail(file, key_path("enable_buffer_reuse"), "only false is supported");
  out["enable_buffer_reuse"] = false;
  if (const j* v = get("max_input_numel"); v && *v != 4194304)
    fail(file, key_path("max_input_numel"), "only 4194304 is supported");
  out["max_input_numel"] = 4194304;

  if (fmt) {
    using sf = scheme_family;
    const uint32_t g = group.is_null() ? 0 : group.get<uint32_t>();
    if (mx_dtype) {
      *fmt = {sf::mx,
              dtype == "fp4"        ? mx_element::fp4_e2m1
              : dtype == "fp6_e2m3" ? mx_element::fp6_e2m3
                                    : mx_element::fp6_e3m2,
              32};
    } else if (dtype == "fp8_e4m3") {
      if (qscheme == "per_group")
        fail(file, key_path("qscheme"), "fp8_e4m3 per_group weights are not supported");
      *fmt = {qscheme == "per_tensor" ? sf::fp8_tensor : sf::fp8_row, mx_element::none, 0};
    } else if (dtype == "int8") {
      if (qscheme != "per_tensor")
        fail(file, key_path("qscheme"), "int8 weights are supported per_tensor only");
      *fmt = {sf::int8_tensor, mx_element::none, 0};
    } else {
      if (qscheme == "per_tensor")
        fail(file, key_path("qscheme"), dtype + " weights are supported per_channel or per_group");
      const bool u = dtype == "uint4";
      *fmt = qscheme == "per_group"
                 ? weight_format{u ? sf::uint4_group : sf::int4_group, mx_element::none, g}
                 : weight_format{u ? sf::uint4_channel : sf::int4_channel, mx_element::none, 0};
    }
  }
  return out;
}

// A built-in scheme named in a spec file.
scheme_id builtin(const j& v, const std::string& file, const std::string& where) {
  const std::string n = v.get<std::string>();
  if (auto id = parse_scheme(n)) return *id;
  std::string known;
  for (const auto& s : all_schemes()) known += (known.empty() ? "" : ", ") + std::string(s.name);
  fail(file, where, "unknown scheme \"" + n + "\" (known: " + known + ")");
}

// One weight stage: a tensor-spec object or a built-in scheme name (its weight spec).
j weight_stage(const j& v, const std::string& file, const std::string& where, weight_format* f) {
  if (!v.is_string()) return canonical_tensor_spec(v, file, where, true, f);
  const scheme_id id = builtin(v, file, where);
  const weight_scheme ws(id);
  if (ws.progressive)
    fail(file, where, "scheme \"" + v.get<std::string>() + "\" is itself progressive");
  *f = ws.first;
  return layer_config(id)["weight"];
}

}  // namespace

bool is_quant_spec_file(std::string_view scheme_arg) noexcept {
  return scheme_arg.size() > 5 && scheme_arg.ends_with(".json");
}

std::string custom_spec::fingerprint() const {
  j f = j::object();
  f["name"] = name;
  f["weight"] = weight;
  f["input_tensors"] = input_tensors;
  return f.dump();
}

bool quant_scheme::before(const quant_scheme& o) const noexcept {
  if (!custom || !o.custom) {
    if (!custom && !o.custom) return id < o.id;
    return !custom;  // built-ins first
  }
  if (custom->name != o.custom->name) return custom->name < o.custom->name;
  return custom->path < o.custom->path;
}

custom_spec parse_quant_spec(std::string_view text, const std::string& path) {
  j doc;
  try {
    doc = j::parse(text);
  } catch (const std::exception& e) {
    throw usage_error(path + ": not valid JSON: " + e.what());
  }
  if (!doc.is_object()) fail(path, "(top level)", "expected an object with \"weight\"");
  for (auto it = doc.begin(); it != doc.end(); ++it)
    if (it.key() != "name" && it.key() != "weight" && it.key() != "input_tensors")
      fail(path, it.key(), "unknown key (a spec file has name, weight, input_tensors)");
  custom_spec s;
  s.path = path;
  if (auto it = doc.find("name"); it != doc.end()) {
    if (!it->is_string() || it->get<std::string>().empty())
      fail(path, "name", "expected a non-empty string");
    s.name = it->get<std::string>();
  } else {
    const size_t slash = path.find_last_of('/');
    s.name = path.substr(slash == std::string::npos ? 0 : slash + 1);
    if (s.name.ends_with(".json")) s.name.resize(s.name.size() - 5);
  }
  auto w = doc.find("weight");
  if (w == doc.end()) fail(path, "(top level)", "missing \"weight\"");
  if (!w->is_array() || w->empty() || w->size() > 2)
    fail(path, "weight",
         "expected a list of 1 or 2 stage specs (tensor-spec objects or scheme names)");
  weight_format f1, f2;
  j w1 = weight_stage((*w)[0], path, "weight[0]", &f1);
  if (w->size() == 1) {
    s.kernel = weight_scheme(f1);
    s.weight = std::move(w1);
  } else {
    j w2 = weight_stage((*w)[1], path, "weight[1]", &f2);
    if (const std::string why = progressive_error(f1, f2); !why.empty())
      fail(path, "weight",
           "(" + describe(f1) + ", " + describe(f2) +
               ") is not a supported progressive pair: " + why);
    s.kernel = weight_scheme(f1, f2);
    s.weight = j::array({std::move(w1), std::move(w2)});
  }
  s.input_tensors = nullptr;
  if (auto in = doc.find("input_tensors"); in != doc.end() && !in->is_null()) {
    if (in->is_string())
      s.input_tensors = layer_config(builtin(*in, path, "input_tensors"))["input_tensors"];
    else
      s.input_tensors = canonical_tensor_spec(*in, path, "input_tensors", false, nullptr);
  }
  return s;
}

custom_spec read_quant_spec(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw usage_error(path + ": quantization spec file cannot be opened");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_quant_spec(ss.str(), path);
}

}  // namespace shardquant
