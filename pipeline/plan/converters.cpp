// Weight converters (formats.md §9): parsing, name/shape rules and byte slicing.
#include "pipeline/plan/converters.h"

#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/error.h"

namespace shardquant {
namespace {

std::string_view op_name(converter_op op) {
  switch (op) {
    case converter_op::rename:
      return "rename";
    case converter_op::chunk:
      return "chunk";
    case converter_op::split_fused_experts:
      return "split_fused_experts";
  }
  return "?";
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return std::string(s.substr(b, e - b));
}

converter_op parse_op(std::string_view s, const std::string& spec) {
  if (s == "rename") return converter_op::rename;
  if (s == "chunk") return converter_op::chunk;
  if (s == "split_fused_experts") return converter_op::split_fused_experts;
  throw usage_error("converter '" + spec + "': unknown operation '" + std::string(s) +
                    "' (rename, chunk(dim), split_fused_experts(axis))");
}

void validate(const converter& c, const std::string& spec) {
  if (c.source.empty()) throw usage_error("converter '" + spec + "': empty source pattern");
  for (const auto& t : c.targets)
    if (t.empty()) throw usage_error("converter '" + spec + "': empty target");
  const size_t n = c.targets.size();
  if (c.op == converter_op::rename && n != 1)
    throw usage_error("converter '" + spec + "': rename takes exactly one target");
  if (c.op == converter_op::chunk && n < 2)
    throw usage_error("converter '" + spec + "': chunk needs at least two targets");
  if (c.op == converter_op::split_fused_experts && (n < 1 || n > 2))
    throw usage_error("converter '" + spec + "': split_fused_experts takes one or two targets");
}

uint64_t product(std::span<const uint64_t> s, size_t b, size_t e) {
  uint64_t p = 1;
  for (size_t i = b; i < e; ++i) p *= s[i];
  return p;
}

std::string shape_str(std::span<const uint64_t> s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

}  // namespace

std::string converter::to_string() const {
  std::string s = source + "=";
  for (size_t i = 0; i < targets.size(); ++i) s += (i ? "," : "") + targets[i];
  s += ":" + std::string(op_name(op));
  if (op != converter_op::rename) s += "(" + std::to_string(arg) + ")";
  return s;
}

converter parse_converter(std::string_view spec_sv) {
  const std::string spec(spec_sv);
  const size_t eq = spec.find('=');
  const size_t colon = spec.rfind(':');
  if (eq == std::string::npos || colon == std::string::npos || colon < eq)
    throw usage_error("converter '" + spec +
                      "': expected SRC=TARGET[,TARGET...]:op(args), e.g. "
                      "'gate_up_proj=gate_proj.weight,up_proj.weight:split_fused_experts(0)'");
  converter c;
  c.source = trim(std::string_view(spec).substr(0, eq));
  std::string_view targets = std::string_view(spec).substr(eq + 1, colon - eq - 1);
  size_t p = 0;
  while (p <= targets.size()) {
    size_t q = targets.find(',', p);
    if (q == std::string_view::npos) q = targets.size();
    c.targets.push_back(trim(targets.substr(p, q - p)));
    p = q + 1;
  }
  std::string op = trim(std::string_view(spec).substr(colon + 1));
  std::string arg;
  if (const size_t lp = op.find('('); lp != std::string::npos) {
    if (op.back() != ')') throw usage_error("converter '" + spec + "': missing ')'");
    arg = trim(std::string_view(op).substr(lp + 1, op.size() - lp - 2));
    op = trim(std::string_view(op).substr(0, lp));
  }
  c.op = parse_op(op, spec);
  if (c.op == converter_op::rename) {
    if (!arg.empty()) throw usage_error("converter '" + spec + "': rename takes no argument");
  } else {
    if (arg.empty()) arg = "0";
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), v);
    if (ec != std::errc{} || ptr != arg.data() + arg.size())
      throw usage_error("converter '" + spec + "': argument '" + arg + "' is not an integer");
    c.arg = v;
  }
  validate(c, spec);
  return c;
}

std::vector<converter> read_converter_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw usage_error("converter file '" + path + "' cannot be opened");
  std::stringstream ss;
  ss << f.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const std::exception& e) {
    throw usage_error("converter file '" + path + "': " + e.what());
  }
  if (j.is_object() && j.contains("converters")) j = j["converters"];
  if (!j.is_array())
    throw usage_error("converter file '" + path +
                      "': expected a list of {\"source\", \"targets\", \"op\", \"arg\"} objects");
  std::vector<converter> out;
  for (const auto& e : j) {
    if (!e.is_object() || !e.contains("source") || !e["source"].is_string() ||
        !e.contains("targets") || !e["targets"].is_array() || !e.contains("op") ||
        !e["op"].is_string())
      throw usage_error("converter file '" + path + "': bad entry " + e.dump());
    converter c;
    c.source = e["source"].get<std::string>();
    for (const auto& t : e["targets"]) {
      if (!t.is_string())
        throw usage_error("converter file '" + path + "': bad target " + t.dump());
      c.targets.push_back(t.get<std::string>());
    }
    c.op = parse_op(e["op"].get<std::string>(), path);
    if (e.contains("arg")) {
      if (!e["arg"].is_number_integer())
        throw usage_error("converter file '" + path + "': 'arg' must be an integer");
      c.arg = e["arg"].get<int64_t>();
    }
    validate(c, path);
    out.push_back(std::move(c));
  }
  return out;
}

std::optional<size_t> match_converter(std::span<const converter> list,
                                      std::string_view name) noexcept {
  for (size_t i = 0; i < list.size(); ++i)
    if (name.ends_with(list[i].source)) return i;
  return std::nullopt;
}

std::vector<converter_output> apply_converter(const converter& c, std::string_view name,
                                              std::span<const uint64_t> shape) {
  const std::string prefix(name.substr(0, name.size() - c.source.size()));
  const std::string tname(name);
  std::vector<converter_output> out;
  const std::vector<uint64_t> full(shape.begin(), shape.end());
  switch (c.op) {
    case converter_op::rename:
      out.push_back({prefix + c.targets[0], full, converter_slice::whole()});
      break;
    case converter_op::chunk: {
      const int64_t rank = static_cast<int64_t>(shape.size());
      int64_t dim = c.arg < 0 ? c.arg + rank : c.arg;
      if (dim < 0 || dim >= rank)
        throw input_error("", tname, input_error::no_offset,
                          "converter " + c.to_string() + ": dimension out of range for shape " +
                              shape_str(shape));
      const uint64_t size = shape[static_cast<size_t>(dim)];
      const uint64_t n = c.targets.size();
      if (size == 0)
        throw input_error("", tname, input_error::no_offset,
                          "converter " + c.to_string() + ": cannot chunk a 0-size dimension");
      const uint64_t len = (size + n - 1) / n;
      for (uint64_t i = 0; i < n && i * len < size; ++i) {
        converter_slice s;
        s.axis = static_cast<int32_t>(dim);
        s.begin = i * len;
        s.length = std::min(len, size - i * len);
        std::vector<uint64_t> sh = full;
        sh[static_cast<size_t>(dim)] = s.length;
        out.push_back({prefix + c.targets[i], std::move(sh), s});
      }
      break;
    }
    case converter_op::split_fused_experts: {
      if (shape.size() != 3)
        throw input_error("", tname, input_error::no_offset,
                          "converter " + c.to_string() + " needs a rank-3 [E, a, b] tensor, got " +
                              shape_str(shape));
      const std::vector<uint64_t> per{shape[1], shape[2]};
      int64_t axis = c.arg < 0 ? c.arg + 2 : c.arg;
      if (c.targets.size() == 2 && (axis < 0 || axis > 1))
        throw input_error(
            "", tname, input_error::no_offset,
            "converter " + c.to_string() + ": split axis out of range for " + shape_str(per));
      if (c.targets.size() == 2 && per[static_cast<size_t>(axis)] % 2 != 0)
        throw input_error(
            "", tname, input_error::no_offset,
            "converter " + c.to_string() + ": split axis has odd size in " + shape_str(shape));
      for (uint64_t e = 0; e < shape[0]; ++e) {
        const std::string base = prefix + std::to_string(e) + ".";
        if (c.targets.size() == 1) {
          converter_slice s;
          s.expert = e;
          out.push_back({base + c.targets[0], per, s});
        } else {
          const uint64_t half = per[static_cast<size_t>(axis)] / 2;
          for (uint64_t h = 0; h < 2; ++h) {
            converter_slice s;
            s.expert = e;
            s.axis = static_cast<int32_t>(axis);
            s.begin = h * half;
            s.length = half;
            std::vector<uint64_t> sh = per;
            sh[static_cast<size_t>(axis)] = half;
            out.push_back({base + c.targets[h], std::move(sh), s});
          }
        }
      }
      break;
    }
  }
  return out;
}

strided_view describe_slice(std::span<const uint64_t> source_shape, uint32_t element_bits,
                            const converter_slice& slice) {
  if (element_bits % 8 != 0)
    throw input_error(
        "", "", input_error::no_offset,
        "converters cannot slice sub-byte elements (" + std::to_string(element_bits) + " bits)");
  const uint64_t eb = element_bits / 8;
  strided_view v;
  std::vector<uint64_t> sub(source_shape.begin(), source_shape.end());
  if (slice.expert) {
    if (sub.empty() || *slice.expert >= sub[0])
      throw input_error("", "", input_error::no_offset,
                        "expert index " + std::to_string(*slice.expert) + " out of range for " +
                            shape_str(source_shape));
    sub.erase(sub.begin());
    v.offset = *slice.expert * product(sub, 0, sub.size()) * eb;
  }
  if (slice.axis < 0) {
    v.run_bytes = product(sub, 0, sub.size()) * eb;
    v.count = 1;
    v.stride = v.run_bytes;
    v.shape = sub;
    return v;
  }
  const auto ax = static_cast<size_t>(slice.axis);
  if (ax >= sub.size() || slice.begin + slice.length > sub[ax])
    throw input_error("", "", input_error::no_offset,
                      "slice out of range for " + shape_str(source_shape));
  const uint64_t inner = product(sub, ax + 1, sub.size()) * eb;
  v.offset += slice.begin * inner;
  v.run_bytes = slice.length * inner;
  v.count = product(sub, 0, ax);
  v.stride = sub[ax] * inner;
  v.shape = sub;
  v.shape[ax] = slice.length;
  return v;
}

void copy_slice(std::span<const std::byte> source, const strided_view& view,
                std::span<std::byte> out) {
  if (out.size() < view.bytes() ||
      (view.count > 0 &&
       view.offset + (view.count - 1) * view.stride + view.run_bytes > source.size()))
    throw input_error("", "", input_error::no_offset, "copy_slice: buffer too small");
  for (uint64_t k = 0; k < view.count; ++k)
    std::memcpy(out.data() + k * view.run_bytes, source.data() + view.offset + k * view.stride,
                view.run_bytes);
}

std::vector<converter> template_expert_converters() {
  return {
      {"gate_up_proj",
       {"gate_proj.weight", "up_proj.weight"},
       converter_op::split_fused_experts,
       0},
      {"down_proj", {"down_proj.weight"}, converter_op::split_fused_experts, 0},
  };
}

}  // namespace shardquant
