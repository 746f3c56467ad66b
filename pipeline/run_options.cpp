// Options -> plan options and device numbers.
#include "pipeline/run_options.h"

#include <optional>
#include <sstream>
#include <stdexcept>

#include "io/error.h"
#include "kernels/gpu_api.h"
#include "pipeline/plan/quant_spec.h"

namespace shardquant {
plan_options plan_options_of(const quantize_options& o) {
  plan_options po;
  if (!o.quant_spec.empty() && !o.scheme.empty())
    throw usage_error("give a scheme or a quantization spec file, not both");
  po.scheme = parse_scheme_arg(o.quant_spec.empty() ? o.scheme : o.quant_spec);
  po.exclude = o.excludes;
  for (const auto& [glob, sc] : o.overrides)
    po.layer_schemes.push_back({glob, parse_scheme_arg(sc)});
  for (const auto& c : o.converters) po.converters.push_back(parse_converter(c));
  po.use_template_converters = !o.no_template_converters;
  po.keep_excluded_as_original = o.keep_excluded_original;
  po.presharded = o.presharded;
  po.rotation = o.rotation;
  po.rotation_config_file = o.rotation_config;
  po.kv = {o.kv_cache_scheme, o.attention_scheme, o.min_kv_scale};
  po.dynamic_activations = o.dynamic_activations;
  po.skip_side_files = o.skip_side_files;
  const auto layout = parse_layout(o.layout);
  if (!layout)
    throw usage_error("unknown layout '" + o.layout + "'; known: quark-f2f, quark-importer");
  po.layout = *layout;
  // The GPU backend writes the file-to-file layout only (the conversion runs in the CPU stage).
  if (po.layout == output_layout::quark_importer && resolve_device(o.device) != "cpu")
    throw usage_error(
        "--layout quark-importer is written by the CPU backend only; use --device cpu");
  return po;
}

std::string resolve_device(const std::string& device) {
  if (device != "auto") return device;
  return gpu::built_with_cuda() && gpu::device_count() > 0 ? "cuda" : "cpu";
}

std::vector<int> parse_devices(const std::string& device) {
  const std::string d = resolve_device(device);
  if (d == "cpu") return {};
  if (d == "cuda") return {0};
  if (d.rfind("cuda:", 0) != 0)
    throw usage_error("--device must be auto, cpu, cuda or cuda:N[,M...]");
  std::vector<int> out;
  std::stringstream ss(d.substr(5));
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const int n = std::stoi(item, &used);
      if (used != item.size() || n < 0) throw std::invalid_argument(item);
      out.push_back(n);
    } catch (const std::exception&) {
      throw usage_error("--device: bad CUDA device number '" + item + "'");
    }
  }
  if (out.empty()) throw usage_error("--device cuda: needs at least one device number");
  return out;
}

// ---- the I/O engine: public io_engine_kind <-> io/io_engine.h ----

namespace {

// io_engine_kind is `automatic` followed by io_engine_type's engines in the same order; the
// asserts catch an engine added on one side only.
constexpr std::optional<io_engine_type> engine_type_of(io_engine_kind k) noexcept {
  if (k == io_engine_kind::automatic) return std::nullopt;
  return static_cast<io_engine_type>(static_cast<uint8_t>(k) - 1);
}
constexpr io_engine_kind engine_kind_of(io_engine_type t) noexcept {
  return static_cast<io_engine_kind>(static_cast<uint8_t>(t) + 1);
}
static_assert(engine_type_of(io_engine_kind::uring) == io_engine_type::uring);
static_assert(engine_type_of(io_engine_kind::pread) == io_engine_type::pread);
static_assert(static_cast<size_t>(io_engine_kind::pread) == io_engine_count,
              "io_engine_kind must list automatic, then every io_engine_type in its order");

}  // namespace

io_engine_kind parse_io_engine(const std::string& s) {
  if (s == "auto") return io_engine_kind::automatic;
  if (const auto t = find_io_engine(s)) return engine_kind_of(*t);
  throw usage_error("--io-engine must be auto, " + io_engine_names() + ", not '" + s + "'");
}

const char* io_engine_name(io_engine_kind k) noexcept {
  const auto t = engine_type_of(k);
  return t ? io_engine_type_name(*t) : "auto";
}

std::unique_ptr<async_io> make_io_engine(io_engine_kind k, unsigned queue_depth) {
  const auto t = engine_type_of(k);
  return t ? async_io::make_exact(*t, queue_depth) : async_io::make_automatic(queue_depth);
}

}  // namespace shardquant
