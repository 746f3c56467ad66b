// The scheme table and the output-shape rules of formats.md §4.4, §5.1 and §5.10.
#include "kernels/schemes.h"

#include <array>

namespace shardquant {
namespace {

using sf = scheme_family;
using me = mx_element;

// ---- exported specs (formats.md §6.3; kernels/FORMATS-fp4.md §6 for the scaled-FP4 ones) --------

constexpr exported_spec int4_group_spec(uint32_t g, bool dynamic) {
  return {.dtype = "int4",
          .is_dynamic = dynamic,
          .qscheme = "per_group",
          .ch_axis = -1,
          .group_size = g,
          .symmetric = true,
          .scale_type = "float",
          .observer_cls = "PerGroupMinMaxObserver"};
}
constexpr exported_spec int4_channel_spec(std::string_view scale_type = "float") {
  return {.dtype = "int4",
          .qscheme = "per_channel",
          .ch_axis = 0,
          .symmetric = true,
          .scale_type = scale_type,
          .observer_cls = "PerChannelMinMaxObserver"};
}
constexpr exported_spec uint4_group_spec(uint32_t g) {
  return {.dtype = "uint4",
          .qscheme = "per_group",
          .ch_axis = -1,
          .group_size = g,
          .symmetric = false,
          .scale_type = "float",
          .observer_cls = "PerGroupMinMaxObserver"};
}
constexpr exported_spec uint4_channel_spec() {
  return {.dtype = "uint4",
          .qscheme = "per_channel",
          .ch_axis = 0,
          .symmetric = false,
          .scale_type = "float",
          .observer_cls = "PerChannelMinMaxObserver"};
}
constexpr exported_spec int8_tensor_spec() {
  return {.dtype = "int8",
          .qscheme = "per_tensor",
          .symmetric = true,
          .scale_type = "float",
          .observer_cls = "PerTensorMinMaxObserver"};
}
// scale_type "" is Quark's None (mxfp4_fp8's input spec).
constexpr exported_spec fp8_tensor_spec(std::string_view scale_type, bool dynamic) {
  return {.dtype = "fp8_e4m3",
          .is_dynamic = dynamic,
          .qscheme = "per_tensor",
          .symmetric = true,
          .scale_type = scale_type,
          .observer_cls = "PerTensorMinMaxObserver"};
}
// axis 0: the weight's output channels; 1: per-token inputs.
constexpr exported_spec fp8_channel_spec(int axis, bool dynamic) {
  return {.dtype = "fp8_e4m3",
          .is_dynamic = dynamic,
          .qscheme = "per_channel",
          .ch_axis = axis,
          .symmetric = true,
          .scale_type = "float",
          .observer_cls = "PerChannelMinMaxObserver"};
}
constexpr exported_spec mx_spec(std::string_view dtype, bool dynamic) {
  return {.dtype = dtype,
          .is_dynamic = dynamic,
          .qscheme = "per_group",
          .ch_axis = -1,
          .group_size = 32,
          .scale_type = "float",
          .scale_format = "e8m0",
          .scale_calculation_mode = "even",
          .observer_cls = "PerBlockMXObserver"};
}
// Quark's FP4PerGroupSpec (the element spec of a two-level scheme) and AmdFP4Spec.
constexpr exported_spec fp4_group_spec(uint32_t g, bool dynamic) {
  return {.dtype = "fp4",
          .is_dynamic = dynamic,
          .qscheme = "per_group",
          .ch_axis = -1,
          .group_size = g,
          .scale_type = "float32",
          .scale_format = "float32",
          .observer_cls = "PerBlockMXObserver"};
}
constexpr exported_spec amdfp4_spec(uint32_t g, bool dynamic) {
  return {.dtype = "fp4",
          .is_dynamic = dynamic,
          .qscheme = "per_group",
          .ch_axis = -1,
          .group_size = g,
          .scale_type = "float8_e5m3",
          .scale_format = "e5m3",
          .observer_cls = "PerBlockMXObserver"};
}
// The second stage of Quark's ScaleQuantSpec: the per-tensor quantizer of the block scales.
constexpr exported_spec scale_quant_spec(std::string_view dtype) {
  return {.dtype = dtype,
          .qscheme = "per_tensor",
          .symmetric = true,
          .scale_type = "float32",
          .observer_cls = "PerTensorMinMaxObserver",
          .is_scale_quant = true};
}

constexpr spec_list one(exported_spec a) {
  return {{a, exported_spec{}}, 1};
}
constexpr spec_list two(exported_spec a, exported_spec b) {
  return {{a, b}, 2};
}
constexpr spec_list two_level(uint32_t g, bool dynamic, std::string_view scale_dtype) {
  return two(fp4_group_spec(g, dynamic), scale_quant_spec(scale_dtype));
}

// ---- the table ----------------------------------------------------------------------------------

constexpr std::array<scheme_info, 24> k_schemes{{
    {.id = scheme_id::int4_wo_32,
     .name = "int4_wo_32",
     .family = sf::int4_group,
     .group_size = 32,
     .help = "int4 symmetric weights, per-group 32",
     .weight = one(int4_group_spec(32, false))},
    {.id = scheme_id::int4_wo_64,
     .name = "int4_wo_64",
     .family = sf::int4_group,
     .group_size = 64,
     .help = "int4 symmetric weights, per-group 64",
     .weight = one(int4_group_spec(64, false))},
    {.id = scheme_id::int4_wo_128,
     .name = "int4_wo_128",
     .family = sf::int4_group,
     .group_size = 128,
     .help = "int4 symmetric weights, per-group 128",
     .weight = one(int4_group_spec(128, false))},
    {.id = scheme_id::int4_wo_per_channel,
     .name = "int4_wo_per_channel",
     .family = sf::int4_channel,
     .help = "int4 symmetric weights, per output channel",
     .weight = one(int4_channel_spec())},
    {.id = scheme_id::int4_wa_64,
     .name = "int4_wa_64",
     .family = sf::int4_group,
     .group_size = 64,
     .help = "int4 per-group 64 weights, dynamic int4 per-group 64 activations",
     .input = one(int4_group_spec(64, true)),
     .weight = one(int4_group_spec(64, false))},
    {.id = scheme_id::uint4_wo_32,
     .name = "uint4_wo_32",
     .family = sf::uint4_group,
     .group_size = 32,
     .help = "uint4 asymmetric weights with zero points, per-group 32",
     .weight = one(uint4_group_spec(32))},
    {.id = scheme_id::uint4_wo_64,
     .name = "uint4_wo_64",
     .family = sf::uint4_group,
     .group_size = 64,
     .help = "uint4 asymmetric weights with zero points, per-group 64",
     .weight = one(uint4_group_spec(64))},
    {.id = scheme_id::uint4_wo_128,
     .name = "uint4_wo_128",
     .family = sf::uint4_group,
     .group_size = 128,
     .help = "uint4 asymmetric weights with zero points, per-group 128",
     .weight = one(uint4_group_spec(128))},
    {.id = scheme_id::uint4_wo_per_channel,
     .name = "uint4_wo_per_channel",
     .family = sf::uint4_channel,
     .help = "uint4 asymmetric weights with zero points, per output channel",
     .weight = one(uint4_channel_spec())},
    {.id = scheme_id::int8,
     .name = "int8",
     .family = sf::int8_tensor,
     .help = "int8 symmetric per-tensor weights, static int8 activations",
     .input = one(int8_tensor_spec()),
     .weight = one(int8_tensor_spec())},
    {.id = scheme_id::fp8,
     .name = "fp8",
     .family = sf::fp8_tensor,
     .help = "fp8 e4m3 per-tensor weights, static fp8 activations",
     .input = one(fp8_tensor_spec("float", false)),
     .weight = one(fp8_tensor_spec("float", false))},
    {.id = scheme_id::ptpc_fp8,
     .name = "ptpc_fp8",
     .family = sf::fp8_row,
     .help = "fp8 e4m3 per-channel weights, dynamic per-token fp8 activations",
     .input = one(fp8_channel_spec(1, true)),
     .weight = one(fp8_channel_spec(0, false))},
    {.id = scheme_id::mxfp4,
     .name = "mxfp4",
     .family = sf::mx,
     .element = me::fp4_e2m1,
     .group_size = 32,
     .help = "OCP MXFP4 weights and activations",
     .input = one(mx_spec("fp4", true)),
     .weight = one(mx_spec("fp4", false))},
    {.id = scheme_id::mxfp4_weight_only,
     .name = "mxfp4_weight_only",
     .family = sf::mx,
     .element = me::fp4_e2m1,
     .group_size = 32,
     .help = "OCP MXFP4 weights only",
     .weight = one(mx_spec("fp4", false))},
    {.id = scheme_id::mxfp6_e2m3,
     .name = "mxfp6_e2m3",
     .family = sf::mx,
     .element = me::fp6_e2m3,
     .group_size = 32,
     .help = "OCP MXFP6 (E2M3) weights and activations",
     .input = one(mx_spec("fp6_e2m3", true)),
     .weight = one(mx_spec("fp6_e2m3", false))},
    {.id = scheme_id::mxfp6_e3m2,
     .name = "mxfp6_e3m2",
     .family = sf::mx,
     .element = me::fp6_e3m2,
     .group_size = 32,
     .help = "OCP MXFP6 (E3M2) weights and activations",
     .input = one(mx_spec("fp6_e3m2", true)),
     .weight = one(mx_spec("fp6_e3m2", false))},
    {.id = scheme_id::mxfp4_mxfp6_e2m3,
     .name = "mxfp4_mxfp6_e2m3",
     .family = sf::mx,
     .element = me::fp4_e2m1,
     .group_size = 32,
     .help = "MXFP4 weights, MXFP6 (E2M3) activations",
     .input = one(mx_spec("fp6_e2m3", true)),
     .weight = one(mx_spec("fp4", false))},
    {.id = scheme_id::mxfp4_fp8,
     .name = "mxfp4_fp8",
     .family = sf::mx,
     .element = me::fp4_e2m1,
     .group_size = 32,
     .help = "MXFP4 weights, static fp8 per-tensor activations",
     .input = one(fp8_tensor_spec("", false)),
     .weight = one(mx_spec("fp4", false))},
    {.id = scheme_id::int4_fp8,
     .name = "int4_fp8",
     .family = sf::int4_fp8,
     .help = "W4A8: fp8 per-tensor then int4 per-channel weights, dynamic fp8 activations",
     .input = one(fp8_tensor_spec("float32", true)),
     .weight = two(fp8_tensor_spec("float32", false), int4_channel_spec("float32"))},
    // The scaled-FP4 schemes (kernels/FORMATS-fp4.md): CPU kernels only until a GPU run confirms
    // CUDA ones; their jobs in a CUDA run go to the CPU path.
    {.id = scheme_id::nvfp4,
     .name = "nvfp4",
     .family = sf::nvfp4,
     .element = me::fp4_e2m1,
     .group_size = 16,
     .help = "NVFP4: fp4 per-group 16, fp8 e4m3 block scales, f32 global scale (weights, dynamic "
             "activations); alias fp4_block16_scale_e4m3",
     .backends = backend_cpu,
     .alias = "fp4_block16_scale_e4m3",
     .input = two_level(16, true, "fp8_e4m3"),
     .weight = two_level(16, false, "fp8_e4m3")},
    {.id = scheme_id::amdfp4,
     .name = "amdfp4",
     .family = sf::amdfp4,
     .element = me::fp4_e2m1,
     .group_size = 16,
     .help = "AMDFP4: fp4 per-group 16, e5m3 scales (weights, dynamic activations)",
     .backends = backend_cpu,
     .input = one(amdfp4_spec(16, true)),
     .weight = one(amdfp4_spec(16, false))},
    {.id = scheme_id::amdfp4_g32,
     .name = "amdfp4_g32",
     .family = sf::amdfp4,
     .element = me::fp4_e2m1,
     .group_size = 32,
     .help = "AMDFP4: fp4 per-group 32, e5m3 scales (weights, dynamic activations)",
     .backends = backend_cpu,
     .input = one(amdfp4_spec(32, true)),
     .weight = one(amdfp4_spec(32, false))},
    {.id = scheme_id::amdfp4_global16,
     .name = "amdfp4_global16",
     .family = sf::amdfp4_global,
     .element = me::fp4_e2m1,
     .group_size = 16,
     .help = "AMDFP4: fp4 per-group 16, e5m3 block scales, f32 global scale",
     .backends = backend_cpu,
     .input = two_level(16, true, "fp8_e5m3"),
     .weight = two_level(16, false, "fp8_e5m3")},
    {.id = scheme_id::amdfp4_global32,
     .name = "amdfp4_global32",
     .family = sf::amdfp4_global,
     .element = me::fp4_e2m1,
     .group_size = 32,
     .help = "AMDFP4: fp4 per-group 32, e5m3 block scales, f32 global scale",
     .backends = backend_cpu,
     .input = two_level(32, true, "fp8_e5m3"),
     .weight = two_level(32, false, "fp8_e5m3")},
}};

// Rows are looked up by index: the table's order is scheme_id's.
constexpr bool ids_in_order() {
  for (size_t i = 0; i < k_schemes.size(); ++i)
    if (static_cast<size_t>(k_schemes[i].id) != i) return false;
  return true;
}
static_assert(ids_in_order(), "k_schemes rows must be in scheme_id order");

// Quark 0.13's own failure for these (its file-to-file flow hands the "non-scaled" MX6/MX9/BFP16
// specs, whose qscheme is None, to the single-stage path).
constexpr std::string_view k_non_scaled_reason =
    "Quark 0.13's file-to-file flow fails on it: \"AssertionError: qscheme for <module> must not "
    "be "
    "None\" (a non-scaled quantizer; nothing to match)";
constexpr std::array<refused_scheme, 3> k_refused{{
    {"mx6", k_non_scaled_reason},
    {"mx9", k_non_scaled_reason},
    {"bfp16", k_non_scaled_reason},
}};

uint64_t ceil_div(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}

bool is_int_family(sf f) {
  return f == sf::int8_tensor || f == sf::int4_group || f == sf::int4_channel ||
         f == sf::uint4_group || f == sf::uint4_channel || f == sf::int4_fp8;
}

std::string shape_string(std::span<const uint64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace

std::span<const scheme_info> all_schemes() noexcept {
  return k_schemes;
}
const scheme_info& info(scheme_id s) noexcept {
  return k_schemes[static_cast<size_t>(s)];
}

std::optional<scheme_id> parse_scheme(std::string_view name) noexcept {
  for (const auto& s : k_schemes)
    if (s.name == name || (!s.alias.empty() && s.alias == name)) return s.id;
  return std::nullopt;
}

std::span<const refused_scheme> refused_schemes() noexcept {
  return k_refused;
}

std::optional<std::string_view> unsupported_scheme_reason(std::string_view name) noexcept {
  for (const auto& u : k_refused)
    if (u.name == name) return u.reason;
  return std::nullopt;
}

std::string scheme_name_error(std::string_view name) {
  if (parse_scheme(name)) return {};
  const std::string quoted = "'" + std::string(name) + "'";
  if (auto why = unsupported_scheme_reason(name))
    return "scheme " + quoted + " is refused: " + std::string(*why);
  std::string known;
  for (const auto& s : k_schemes) known += (known.empty() ? "" : ", ") + std::string(s.name);
  return "unknown scheme " + quoted + " (known: " + known + ")";
}

bool needs_tensor_amax(scheme_family f) noexcept {
  // The two-level FP4 schemes need it for their global scale (the max of the block amaxes).
  return f == sf::fp8_tensor || f == sf::int8_tensor || f == sf::int4_fp8 || f == sf::nvfp4 ||
         f == sf::amdfp4_global;
}

namespace {
uint8_t family_backends(sf f) noexcept {
  for (const auto& s : k_schemes)
    if (s.family == f) return s.backends;
  return backend_all;  // families that are only stages of pairs (none today)
}
}  // namespace

bool backend_supports(uint8_t b, const weight_scheme& s) noexcept {
  if ((family_backends(s.first.family) & b) == 0) return false;
  return !s.progressive || (family_backends(s.second.family) & b) != 0;
}

uint32_t row_split_multiple(scheme_family f) noexcept {
  switch (f) {
    case sf::int4_group:
    case sf::uint4_group:
      return 8;
    default:
      return 1;
  }
}

uint64_t output_tensor::byte_size() const noexcept {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n * bits(type) / 8;
}

weight_scheme::weight_scheme(scheme_id s) noexcept {
  const scheme_info& si = info(s);
  if (si.family == sf::int4_fp8) {
    // §10: the preset pair of the general progressive mechanism.
    first = {sf::fp8_tensor, me::none, 0};
    second = {sf::int4_channel, me::none, 0};
    progressive = true;
    return;
  }
  first = {si.family, si.element, si.group_size};
}

std::string describe(const weight_format& f) {
  switch (f.family) {
    case sf::fp8_tensor:
      return "fp8_e4m3 per-tensor";
    case sf::fp8_row:
      return "fp8_e4m3 per-channel";
    case sf::int8_tensor:
      return "int8 per-tensor";
    case sf::int4_group:
      return "int4 per-group " + std::to_string(f.group_size);
    case sf::int4_channel:
      return "int4 per-channel";
    case sf::uint4_group:
      return "uint4 per-group " + std::to_string(f.group_size);
    case sf::uint4_channel:
      return "uint4 per-channel";
    case sf::mx:
      return f.element == me::fp4_e2m1   ? "mxfp4"
             : f.element == me::fp6_e2m3 ? "mxfp6_e2m3"
                                         : "mxfp6_e3m2";
    case sf::int4_fp8:
      return "fp8_e4m3 per-tensor -> int4 per-channel";
    case sf::nvfp4:
      return "nvfp4";
    case sf::amdfp4:
      return "amdfp4 per-group " + std::to_string(f.group_size);
    case sf::amdfp4_global:
      return "amdfp4 global per-group " + std::to_string(f.group_size);
  }
  return "?";
}

std::string describe(const weight_scheme& s) {
  return s.progressive ? describe(s.first) + " -> " + describe(s.second) : describe(s.first);
}

std::string progressive_error(const weight_format& first, const weight_format& second) {
  switch (first.family) {
    case sf::fp8_tensor:
    case sf::fp8_row:
    case sf::int8_tensor:
      break;
    case sf::int4_group:
    case sf::int4_channel:
    case sf::uint4_group:
    case sf::uint4_channel:
      return "an int4/uint4 first stage is not supported (its zero point and packed scale layout "
             "do not survive Quark's progressive path; first stages: fp8_e4m3 per_tensor or "
             "per_channel, int8 per_tensor)";
    case sf::mx:
      return "an MX first stage is not supported (its codes are not kept as values by Quark's "
             "real quantizer; first stages: fp8_e4m3 per_tensor or per_channel, int8 per_tensor)";
    case sf::nvfp4:
    case sf::amdfp4:
    case sf::amdfp4_global:
      return "a scaled-FP4 first stage is not supported (first stages: fp8_e4m3 per_tensor or "
             "per_channel, int8 per_tensor)";
    case sf::int4_fp8:
      return "a progressive scheme cannot be a stage";
  }
  switch (second.family) {
    case sf::fp8_row:
    case sf::int4_group:
    case sf::int4_channel:
    case sf::uint4_group:
    case sf::uint4_channel:
      return {};
    case sf::fp8_tensor:
    case sf::int8_tensor:
      return "a per-tensor second stage is not supported (it needs the amax of the first stage's "
             "codes over the whole tensor; two per-tensor scales are one scale)";
    case sf::mx:
      return "an MX second stage is not supported (Quark's progressive path stores the raw MX "
             "scale, not the e8m0 bytes of the MX schemes; not traced)";
    case sf::nvfp4:
    case sf::amdfp4:
    case sf::amdfp4_global:
      return "a scaled-FP4 second stage is not supported (Quark's progressive path stores the raw "
             "block scale, not the bytes of these schemes; not traced)";
    case sf::int4_fp8:
      return "a progressive scheme cannot be a stage";
  }
  return "unknown stage";
}

bool needs_tensor_amax(const weight_scheme& s) noexcept {
  return needs_tensor_amax(s.first.family);
}

uint32_t row_split_multiple(const weight_scheme& s) noexcept {
  return row_split_multiple(s.packed().family);
}

std::string check_shape(scheme_id s, std::span<const uint64_t> shape, std::string* warning) {
  return check_shape(weight_scheme(s), shape, warning, info(s).name);
}

std::string check_shape(const weight_scheme& ws, std::span<const uint64_t> shape,
                        std::string* warning, std::string_view name) {
  const std::string nm = name.empty() ? describe(ws) : std::string(name);
  const weight_format& f = ws.packed();
  const std::string sh = shape_string(shape);
  if (shape.size() < 2) return "scheme " + nm + " needs rank >= 2, got " + sh;
  for (uint64_t d : shape)
    if (d == 0) return "scheme " + nm + " cannot quantize a 0 dimension " + sh;
  const uint64_t in = shape.back();
  if ((ws.progressive || is_int_family(f.family)) && shape.size() != 2)
    return "scheme " + nm + " needs a rank-2 weight, got " + sh +
           " (split it with a converter or exclude it)";
  if ((f.family == sf::int4_group || f.family == sf::uint4_group) && in % f.group_size != 0)
    return "scheme " + nm + " needs the input dimension to be a multiple of " +
           std::to_string(f.group_size) + ", got " + sh;
  if (f.family == sf::nvfp4 || f.family == sf::amdfp4 || f.family == sf::amdfp4_global) {
    if (in % 2 != 0) return "scheme " + nm + " needs an even last dimension, got " + sh;
  }
  if (f.family == sf::mx) {
    if (f.element == me::fp4_e2m1 && in % 2 != 0)
      return "scheme " + nm + " needs an even last dimension, got " + sh;
    if (f.element != me::fp4_e2m1) {
      uint64_t numel = 1;
      for (uint64_t d : shape) numel *= d;
      if (in % 4 != 0 || numel % 32 != 0)
        return "scheme " + nm +
               " needs the last dimension % 4 == 0 and the element count % 32 == 0, got " + sh;
    }
  }
  if (shape.size() >= 3 && warning)
    *warning = "rank-" + std::to_string(shape.size()) + " weight " + sh + " quantized with " + nm +
               " as Quark does; consider a converter to split it or an exclude";
  return {};
}

namespace {

// The outputs of one single-stage format (weight, scale[, zero_point]).
std::vector<output_tensor> single_outputs(const weight_format& f, std::span<const uint64_t> shape,
                                          dtype source) {
  const std::vector<uint64_t> full(shape.begin(), shape.end());
  const uint64_t out = shape.front();
  const uint64_t in = shape.back();
  std::vector<output_tensor> r;
  switch (f.family) {
    case sf::fp8_tensor:
      r.push_back({"", dtype::f8_e4m3, full});
      r.push_back({"_scale", dtype::f32, {}});
      break;
    case sf::fp8_row:
      r.push_back({"", dtype::f8_e4m3, full});
      r.push_back({"_scale", dtype::f32, {out}});
      break;
    case sf::int8_tensor:
      r.push_back({"", dtype::i8, full});
      r.push_back({"_scale", dtype::f32, {}});
      break;
    case sf::int4_group:
    case sf::uint4_group:
      r.push_back({"", dtype::i32, {in, ceil_div(out, 8)}});
      r.push_back({"_scale", dtype::f32, {out, in / f.group_size}});
      if (f.family == sf::uint4_group)
        r.push_back({"_zero_point", dtype::i32, {out, in / f.group_size}});
      break;
    case sf::int4_channel:
    case sf::uint4_channel:
      r.push_back({"", dtype::i32, {out, ceil_div(in, 8)}});
      r.push_back({"_scale", dtype::f32, {out}});
      if (f.family == sf::uint4_channel) r.push_back({"_zero_point", dtype::i32, {out}});
      break;
    case sf::mx: {
      std::vector<uint64_t> packed = full;
      packed.back() = f.element == me::fp4_e2m1 ? in / 2 : 3 * in / 4;
      uint64_t lead = 1;
      for (size_t i = 0; i + 1 < shape.size(); ++i) lead *= shape[i];
      r.push_back({"", dtype::u8, packed});
      r.push_back({"_scale", dtype::u8, {lead, ceil_div(in, 32)}});
      break;
    }
    case sf::nvfp4:
    case sf::amdfp4:
    case sf::amdfp4_global: {
      // As MX: packed rows, and a 2-D scale [rows of the last dim, blocks] for any rank.
      std::vector<uint64_t> packed = full;
      packed.back() = in / 2;
      uint64_t lead = 1;
      for (size_t i = 0; i + 1 < shape.size(); ++i) lead *= shape[i];
      const std::vector<uint64_t> scale_shape{lead, ceil_div(in, f.group_size)};
      r.push_back({"", dtype::u8, packed});
      if (f.family == sf::nvfp4) {
        r.push_back({"_scale", dtype::f8_e4m3, scale_shape});
        r.push_back({"_scale_2", dtype::f32, {}});
      } else if (f.family == sf::amdfp4) {
        r.push_back({"_scale", source, scale_shape});
      } else {
        r.push_back({"_scale", dtype::u8, scale_shape});
        r.push_back({"_scale_2", dtype::f32, {}});
      }
      break;
    }
    case sf::int4_fp8:
      break;  // never a single stage
  }
  return r;
}

}  // namespace

std::vector<output_tensor> output_tensors(const weight_scheme& s, std::span<const uint64_t> shape,
                                          dtype source) {
  if (!s.progressive) return single_outputs(s.first, shape, source);
  // A pair: the second stage's packed weight, the first stage's scale as `_scale`, the second
  // stage's scale as `_scale_2` and its zero point (asymmetric second stage) as `_zero_point`.
  std::vector<output_tensor> one = single_outputs(s.first, shape, source);
  std::vector<output_tensor> two = single_outputs(s.second, shape, source);
  std::vector<output_tensor> r;
  r.push_back(two[0]);
  r.push_back(one[1]);
  two[1].suffix = "_scale_2";
  r.push_back(two[1]);
  if (two.size() > 2) r.push_back(two[2]);
  return r;
}

}  // namespace shardquant
