// The scheme table and the output-shape rules of formats.md §4.4, §5.1 and §5.10.
#include "kernels/schemes.h"

#include <array>

namespace shardquant {
namespace {

using sf = scheme_family;
using me = mx_element;

constexpr std::array<scheme_info, 24> k_schemes{{
    {scheme_id::int4_wo_32, "int4_wo_32", sf::int4_group, me::none, 32,
     "int4 symmetric weights, per-group 32"},
    {scheme_id::int4_wo_64, "int4_wo_64", sf::int4_group, me::none, 64,
     "int4 symmetric weights, per-group 64"},
    {scheme_id::int4_wo_128, "int4_wo_128", sf::int4_group, me::none, 128,
     "int4 symmetric weights, per-group 128"},
    {scheme_id::int4_wo_per_channel, "int4_wo_per_channel", sf::int4_channel, me::none, 0,
     "int4 symmetric weights, per output channel"},
    {scheme_id::int4_wa_64, "int4_wa_64", sf::int4_group, me::none, 64,
     "int4 per-group 64 weights, dynamic int4 per-group 64 activations"},
    {scheme_id::uint4_wo_32, "uint4_wo_32", sf::uint4_group, me::none, 32,
     "uint4 asymmetric weights with zero points, per-group 32"},
    {scheme_id::uint4_wo_64, "uint4_wo_64", sf::uint4_group, me::none, 64,
     "uint4 asymmetric weights with zero points, per-group 64"},
    {scheme_id::uint4_wo_128, "uint4_wo_128", sf::uint4_group, me::none, 128,
     "uint4 asymmetric weights with zero points, per-group 128"},
    {scheme_id::uint4_wo_per_channel, "uint4_wo_per_channel", sf::uint4_channel, me::none, 0,
     "uint4 asymmetric weights with zero points, per output channel"},
    {scheme_id::int8, "int8", sf::int8_tensor, me::none, 0,
     "int8 symmetric per-tensor weights, static int8 activations"},
    {scheme_id::fp8, "fp8", sf::fp8_tensor, me::none, 0,
     "fp8 e4m3 per-tensor weights, static fp8 activations"},
    {scheme_id::ptpc_fp8, "ptpc_fp8", sf::fp8_row, me::none, 0,
     "fp8 e4m3 per-channel weights, dynamic per-token fp8 activations"},
    {scheme_id::mxfp4, "mxfp4", sf::mx, me::fp4_e2m1, 32, "OCP MXFP4 weights and activations"},
    {scheme_id::mxfp4_weight_only, "mxfp4_weight_only", sf::mx, me::fp4_e2m1, 32,
     "OCP MXFP4 weights only"},
    {scheme_id::mxfp6_e2m3, "mxfp6_e2m3", sf::mx, me::fp6_e2m3, 32,
     "OCP MXFP6 (E2M3) weights and activations"},
    {scheme_id::mxfp6_e3m2, "mxfp6_e3m2", sf::mx, me::fp6_e3m2, 32,
     "OCP MXFP6 (E3M2) weights and activations"},
    {scheme_id::mxfp4_mxfp6_e2m3, "mxfp4_mxfp6_e2m3", sf::mx, me::fp4_e2m1, 32,
     "MXFP4 weights, MXFP6 (E2M3) activations"},
    {scheme_id::mxfp4_fp8, "mxfp4_fp8", sf::mx, me::fp4_e2m1, 32,
     "MXFP4 weights, static fp8 per-tensor activations"},
    {scheme_id::int4_fp8, "int4_fp8", sf::int4_fp8, me::none, 0,
     "W4A8: fp8 per-tensor then int4 per-channel weights, dynamic fp8 activations"},
    // The scaled-FP4 schemes (kernels/FORMATS-fp4.md): CPU kernels only until a GPU run confirms
    // CUDA ones; their jobs in a CUDA run go to the CPU path.
    {scheme_id::nvfp4, "nvfp4", sf::nvfp4, me::fp4_e2m1, 16,
     "NVFP4: fp4 per-group 16, fp8 e4m3 block scales, f32 global scale (weights, dynamic "
     "activations); alias fp4_block16_scale_e4m3",
     backend_cpu},
    {scheme_id::amdfp4, "amdfp4", sf::amdfp4, me::fp4_e2m1, 16,
     "AMDFP4: fp4 per-group 16, e5m3 scales (weights, dynamic activations)", backend_cpu},
    {scheme_id::amdfp4_g32, "amdfp4_g32", sf::amdfp4, me::fp4_e2m1, 32,
     "AMDFP4: fp4 per-group 32, e5m3 scales (weights, dynamic activations)", backend_cpu},
    {scheme_id::amdfp4_global16, "amdfp4_global16", sf::amdfp4_global, me::fp4_e2m1, 16,
     "AMDFP4: fp4 per-group 16, e5m3 block scales, f32 global scale", backend_cpu},
    {scheme_id::amdfp4_global32, "amdfp4_global32", sf::amdfp4_global, me::fp4_e2m1, 32,
     "AMDFP4: fp4 per-group 32, e5m3 block scales, f32 global scale", backend_cpu},
}};

constexpr std::array<scheme_alias, 1> k_aliases{{
    {"fp4_block16_scale_e4m3", scheme_id::nvfp4},
}};

struct unsupported {
  std::string_view name;
  std::string_view reason;
};
// Quark 0.13's own failure for these (its file-to-file flow hands the "non-scaled" MX6/MX9/BFP16
// specs, whose qscheme is None, to the single-stage path).
constexpr std::string_view k_non_scaled_reason =
    "Quark 0.13's file-to-file flow fails on it: \"AssertionError: qscheme for <module> must not "
    "be "
    "None\" (a non-scaled quantizer; nothing to match)";
constexpr std::array<unsupported, 3> k_unsupported{{
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
    if (s.name == name) return s.id;
  for (const auto& a : k_aliases)
    if (a.alias == name) return a.id;
  return std::nullopt;
}

std::span<const scheme_alias> scheme_aliases() noexcept {
  return k_aliases;
}

std::optional<std::string_view> unsupported_scheme_reason(std::string_view name) noexcept {
  for (const auto& u : k_unsupported)
    if (u.name == name) return u.reason;
  return std::nullopt;
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
