// Custom quantization spec files (pipeline/plan/quant_spec.h): parsing, checks with the file and
// JSON path in every message, the canonical §6.3 tensor-spec objects, and the weight formats the
// kernels run (looked up in the scheme table, kernels/schemes.h), and the one parser of a scheme
// argument. What "compatible" means for a progressive pair is decided by the kernels'
// progressive_error(); this file only maps JSON to formats.
#include "pipeline/plan/quant_spec.h"

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include "io/error.h"
#include "pipeline/plan/quant_config.h"

namespace shardquant {
namespace {

using j = ordered_json;

[[noreturn]] void fail(const std::string& file, const std::string& where, const std::string& why) {
  throw usage_error(file + ": " + where + ": " + why);
}

std::string quoted(const j& v) {
  return v.dump();
}

// One tensor-spec object being read: its keys, and errors naming the file and the JSON path.
class spec_reader {
 public:
  spec_reader(const j& in, const std::string& file, const std::string& where)
      : in_(in), file_(file), where_(where) {}

  [[nodiscard]] const j* get(std::string_view k) const {
    auto it = in_.find(std::string(k));
    return it == in_.end() ? nullptr : &*it;
  }
  [[noreturn]] void fail_here(const std::string& why) const { fail(file_, where_, why); }
  [[noreturn]] void fail_at(std::string_view k, const std::string& why) const {
    fail(file_, where_ + "." + std::string(k), why);
  }
  // A key that must be present and a string.
  [[nodiscard]] std::string_view str(std::string_view k) const {
    const j* v = get(k);
    if (!v) fail_here("missing \"" + std::string(k) + "\"");
    if (!v->is_string()) fail_at(k, "expected a string, got " + quoted(*v));
    return v->get_ref<const std::string&>();
  }
  // A key that may be absent or hold the one value shardquant supports.
  void only(std::string_view k, const j& want, const std::string& why) const {
    if (const j* v = get(k); v && *v != want) fail_at(k, why);
  }
  [[nodiscard]] const j& object() const noexcept { return in_; }

 private:
  const j& in_;
  const std::string& file_;
  const std::string& where_;
};

bool is_mx_dtype(std::string_view dtype) {
  return dtype == "fp4" || dtype == "fp6_e2m3" || dtype == "fp6_e3m2";
}

// Step 1: every key is one of §6.3's.
void check_keys(const spec_reader& r) {
  if (!r.object().is_object()) r.fail_here("expected a tensor-spec object or a scheme name");
  const auto keys = tensor_spec_keys();
  for (auto it = r.object().begin(); it != r.object().end(); ++it)
    if (std::find(keys.begin(), keys.end(), it.key()) == keys.end())
      r.fail_at(it.key(),
                "unknown key (tensor-spec keys are those of formats.md §6.3: dtype, qscheme, "
                "ch_axis, group_size, symmetric, is_dynamic, scale_type, ...)");
}

// Step 2: what is quantized and at which granularity (dtype, qscheme), static or dynamic.
void read_kind(const spec_reader& r, bool weight, exported_spec& t) {
  t.dtype = r.str("dtype");
  t.qscheme = r.str("qscheme");
  const std::string dtype(t.dtype), qscheme(t.qscheme);
  if (dtype != "fp8_e4m3" && dtype != "int8" && dtype != "int4" && dtype != "uint4" &&
      !is_mx_dtype(dtype))
    r.fail_at("dtype", "unsupported dtype \"" + dtype +
                           "\" (supported: fp8_e4m3, int8, int4, uint4, fp4, fp6_e2m3, fp6_e3m2)");
  if (qscheme != "per_tensor" && qscheme != "per_channel" && qscheme != "per_group")
    r.fail_at("qscheme", "unsupported qscheme \"" + qscheme +
                             "\" (supported: per_tensor, per_channel, per_group)");
  if (const j* v = r.get("is_dynamic")) {
    if (!v->is_boolean()) r.fail_at("is_dynamic", "expected true or false");
    t.is_dynamic = v->get<bool>();
  }
  if (weight && t.is_dynamic) r.fail_at("is_dynamic", "a weight is quantized statically");
}

// Step 3: the axis and the block (ch_axis, group_size, block_size). ch_axis: per_channel 0 by
// default (weights: must be 0, the output-channel rows), per_group -1.
void read_blocking(const spec_reader& r, bool weight, exported_spec& t) {
  const bool mx = is_mx_dtype(t.dtype);
  if (t.qscheme == "per_channel") t.ch_axis = 0;
  if (t.qscheme == "per_group") t.ch_axis = -1;
  if (const j* v = r.get("ch_axis")) {
    if (t.qscheme == "per_tensor") {
      if (!v->is_null()) r.fail_at("ch_axis", "must be null for per_tensor");
    } else {
      if (!v->is_number_integer()) r.fail_at("ch_axis", "expected an integer");
      t.ch_axis = v->get<int64_t>();
    }
  }
  if (weight && t.qscheme == "per_channel" && t.ch_axis != 0)
    r.fail_at("ch_axis", "a per_channel weight stage needs ch_axis 0 (rows)");
  if (weight && t.qscheme == "per_group" && t.ch_axis != -1)
    r.fail_at("ch_axis", "a per_group weight stage needs ch_axis -1 (the last dim)");
  std::optional<int64_t> group;
  if (mx) group = 32;
  if (const j* v = r.get("group_size")) {
    if (t.qscheme != "per_group") {
      if (!v->is_null()) r.fail_at("group_size", "must be null unless per_group");
    } else {
      if (!v->is_number_integer()) r.fail_at("group_size", "expected an integer");
      group = v->get<int64_t>();
    }
  }
  if (t.qscheme == "per_group") {
    if (!group) r.fail_here("per_group needs \"group_size\"");
    const int64_t g = *group;
    if (mx ? g != 32 : (g != 32 && g != 64 && g != 128))
      r.fail_at("group_size", "unsupported group_size " + std::to_string(g) +
                                  (mx ? " (MX blocks are 32)" : " (supported: 32, 64, 128)"));
    t.group_size = static_cast<uint64_t>(g);
  } else if (mx) {
    r.fail_at("qscheme", "MX dtypes need per_group with group_size 32");
  }
  if (const j* v = r.get("block_size"); v && !v->is_null())
    r.fail_at("block_size", "only null is supported");
}

// Step 4: symmetric. Quark's defaults are true for int4/int8/fp8, false for uint4, null for MX.
void read_symmetric(const spec_reader& r, exported_spec& t) {
  const bool mx = is_mx_dtype(t.dtype);
  const bool sym = t.dtype != "uint4";
  if (!mx) t.symmetric = sym;
  const j* v = r.get("symmetric");
  if (!v) return;
  if (mx) {
    if (!v->is_null()) r.fail_at("symmetric", "must be null for MX dtypes");
    return;
  }
  if (!v->is_boolean()) r.fail_at("symmetric", "expected true or false");
  if (v->get<bool>() != sym)
    r.fail_at("symmetric", t.dtype == "uint4"
                               ? "uint4 is asymmetric (with a zero point): symmetric must be false"
                               : std::string(t.dtype) +
                                     " is symmetric here (an asymmetric 4-bit format is uint4)");
}

// Step 5: rounding and scales (round_method, scale_type, zero_point_type, scale_format,
// scale_calculation_mode).
void read_scale(const spec_reader& r, bool weight, exported_spec& t) {
  r.only("round_method", "half_even", "only \"half_even\" is supported");
  // scale_type: "float" (default) or "float32" (the same bytes: F32 scales either way); weights
  // may not use null (Quark then keeps the scale in the source dtype, which is not traced).
  t.scale_type = "float";
  if (const j* v = r.get("scale_type")) {
    if (!(v->is_null() || *v == "float" || *v == "float32"))
      r.fail_at("scale_type", "supported: \"float\", \"float32\" or null");
    if (weight && v->is_null())
      r.fail_at("scale_type", "null is not supported for a weight (use \"float\" or \"float32\")");
    t.scale_type = v->is_null() ? std::string_view() : v->get_ref<const std::string&>();
  }
  r.only("zero_point_type", "int32", "only \"int32\" is supported");
  const bool mx = is_mx_dtype(t.dtype);
  const j want_format = mx ? j("e8m0") : j(nullptr);
  const j want_mode = mx ? j("even") : j(nullptr);
  r.only("scale_format", want_format,
         "must be " + quoted(want_format) + " for " + std::string(t.dtype));
  r.only("scale_calculation_mode", want_mode,
         "must be " + quoted(want_mode) + " for " + std::string(t.dtype));
  if (mx) {
    t.scale_format = "e8m0";
    t.scale_calculation_mode = "even";
  }
}

// Step 6: the keys with one supported value, the observer following from the kind.
void read_fixed(const spec_reader& r, exported_spec& t) {
  if (const j* v = r.get("mx_element_dtype"); v && !v->is_null())
    r.fail_at("mx_element_dtype", "only null is supported (MX uses dtype fp4/fp6_*)");
  t.observer_cls = is_mx_dtype(t.dtype)         ? "PerBlockMXObserver"
                   : t.qscheme == "per_tensor"  ? "PerTensorMinMaxObserver"
                   : t.qscheme == "per_channel" ? "PerChannelMinMaxObserver"
                                                : "PerGroupMinMaxObserver";
  r.only("observer_cls", std::string(t.observer_cls),
         "must be \"" + std::string(t.observer_cls) + "\" here");
  r.only("is_scale_quant", false, "only false is supported (scale quantization is not)");
  r.only("enable_buffer_reuse", false, "only false is supported");
  r.only("max_input_numel", 4194304, "only 4194304 is supported");
}

// Step 7 (weights): the math the kernels run, from the scheme table: the single-stage built-in
// whose exported weight spec has this dtype, qscheme, group size and scale format.
weight_format weight_format_of(const spec_reader& r, const exported_spec& t) {
  std::vector<std::string_view> qschemes;  // those the table has for this dtype, in table order
  for (const scheme_info& row : all_schemes()) {
    if (row.weight.count != 1 || row.weight.at[0].dtype != t.dtype) continue;
    const exported_spec& w = row.weight.at[0];
    if (w.qscheme == t.qscheme && w.group_size == t.group_size && w.scale_format == t.scale_format)
      return weight_scheme(row.id).first;
    if (std::find(qschemes.begin(), qschemes.end(), w.qscheme) == qschemes.end())
      qschemes.push_back(w.qscheme);
  }
  std::string list;
  for (size_t i = 0; i < qschemes.size(); ++i)
    list += (i == 0 ? "" : i + 1 == qschemes.size() ? " or " : ", ") + std::string(qschemes[i]);
  r.fail_at("qscheme", std::string(t.dtype) + " weights are supported " + list +
                           (qschemes.size() == 1 ? " only" : ""));
}

// One tensor spec (a stage of the weight, or the input spec) checked against what shardquant
// supports, with Quark's defaults filled in, as its canonical 17-key object. `weight`: a weight
// stage (static, per-channel on axis 0, a scale type whose math is traced); `fmt` receives its
// weight format.
j canonical_tensor_spec(const j& in, const std::string& file, const std::string& where, bool weight,
                        weight_format* fmt) {
  const spec_reader r(in, file, where);
  check_keys(r);
  exported_spec t;
  read_kind(r, weight, t);
  read_blocking(r, weight, t);
  read_symmetric(r, t);
  read_scale(r, weight, t);
  read_fixed(r, t);
  if (fmt) *fmt = weight_format_of(r, t);
  return tensor_spec_json(t);
}

// A built-in scheme named in a spec file.
scheme_id builtin(const j& v, const std::string& file, const std::string& where) {
  const std::string n = v.get<std::string>();
  if (auto id = parse_scheme(n)) return *id;
  fail(file, where, scheme_name_error(n));
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

quant_scheme parse_scheme_arg(const std::string& arg) {
  if (is_quant_spec_file(arg))
    return quant_scheme(std::make_shared<const custom_spec>(read_quant_spec(arg)));
  if (auto id = parse_scheme(arg)) return *id;
  throw usage_error(scheme_name_error(arg));
}

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
