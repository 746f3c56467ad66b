// quantize_checkpoint: options -> plan -> token pool, I/O engine, compute backend -> graph ->
// output directory finalized -> report.
#include "pipeline/api.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "io/checkpoint.h"
#include "io/error.h"
#include "io/file.h"
#include "pipeline/finalize.h"
#include "pipeline/graph.h"
#include "pipeline/jobs.h"
#include "pipeline/journal.h"
#include "pipeline/plan.h"
#include "pipeline/progress.h"
#include "pipeline/report.h"
#include "pipeline/token_pool.h"

namespace shardquant {

io_engine_kind parse_io_engine(const std::string& s) {
  if (s == "auto") return io_engine_kind::automatic;
  if (s == "uring") return io_engine_kind::uring;
  if (s == "pread") return io_engine_kind::pread;
  throw usage_error("--io-engine must be auto, uring or pread, not '" + s + "'");
}

const char* io_engine_name(io_engine_kind k) noexcept {
  switch (k) {
    case io_engine_kind::uring:
      return "uring";
    case io_engine_kind::pread:
      return "pread";
    default:
      return "auto";
  }
}

uint64_t default_memory_budget() {
  uint64_t avail = 0;
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") {
      avail = kib * 1024;
      break;
    }
  const uint64_t lo = uint64_t{256} << 20, hi = uint64_t{16} << 30;
  uint64_t b = avail / 2;
  return b < lo ? lo : (b > hi ? hi : b);
}

namespace {

// A built-in scheme name, or a quantization spec file (pipeline/quant_spec.h) ending in ".json".
quant_scheme scheme_or_throw(const std::string& name) {
  if (is_quant_spec_file(name))
    return quant_scheme(std::make_shared<const custom_spec>(read_quant_spec(name)));
  if (auto id = parse_scheme(name)) return *id;
  if (auto why = unsupported_scheme_reason(name))
    throw usage_error("scheme '" + name + "' is not supported: " + std::string(*why));
  std::string known;
  for (const auto& s : all_schemes()) known += (known.empty() ? "" : ", ") + std::string(s.name);
  throw usage_error("unknown scheme '" + name + "' (known: " + known + ")");
}

std::vector<int> parse_devices(const std::string& d) {
  if (d == "cpu") return {};
  if (d == "cuda") return {0};
  if (d.rfind("cuda:", 0) != 0) throw usage_error("--device must be cpu, cuda or cuda:N[,M...]");
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

// What changes output bytes without changing the layout (part of each shard's resume key).
// A custom spec is keyed by its canonical content, so an edited spec file is not resumed.
std::string options_text(const quantize_options& o, const plan_options& po) {
  auto key = [](const quant_scheme& q) {
    return q.custom ? "spec:" + q.custom->fingerprint() : std::string(q.name());
  };
  std::string s = "scheme=" + key(po.scheme) + ";";
  if (o.excludes)
    for (const auto& e : *o.excludes) s += "x=" + e + ";";
  for (const auto& ov : po.layer_schemes) s += "o=" + ov.glob + ":" + key(ov.scheme) + ";";
  for (const auto& [g, n] : o.presharded) s += "p=" + g + ":" + std::to_string(n) + ";";
  for (const auto& c : o.converters) s += "c=" + c + ";";
  s += o.keep_excluded_original ? "keep;" : "";
  s += o.no_template_converters ? "notemplate;" : "";
  if (!o.rotation.empty()) s += "rot=" + o.rotation + ";";
  if (!o.rotation_config.empty()) s += "rotfile=" + o.rotation_config.string() + ";";
  s += "v=" SHARDQUANT_VERSION;
  return s;
}

}  // namespace

run_report quantize_checkpoint(const quantize_options& o) {
  if (o.input.empty() || o.output.empty()) throw usage_error("input and output are required");
  plan_options po;
  if (!o.quant_spec.empty() && !o.scheme.empty())
    throw usage_error("give a scheme or a quantization spec file, not both");
  po.scheme = scheme_or_throw(o.quant_spec.empty() ? o.scheme : o.quant_spec);
  po.exclude = o.excludes;
  for (const auto& [glob, sc] : o.overrides)
    po.layer_schemes.push_back({glob, scheme_or_throw(sc)});
  for (const auto& c : o.converters) po.converters.push_back(parse_converter(c));
  po.use_template_converters = !o.no_template_converters;
  po.keep_excluded_as_original = o.keep_excluded_original;
  po.presharded = o.presharded;
  po.rotation = o.rotation;
  po.rotation_config_file = o.rotation_config;

  const std::vector<int> devices = parse_devices(o.device);
  const bool talk = !o.quiet && o.progress_to_stderr;

  prepare_output(o.input, o.output, o.existing);
  std::vector<std::string> early_warnings;
  source_checkpoint src =
      open_source_checkpoint(o.input, [&](std::string w) { early_warnings.push_back(w); });
  // A budget chosen for the user need not exceed what the checkpoint can use (inputs plus
  // outputs in flight): pinning 16 GiB for a 50 MB model costs seconds for nothing.
  uint64_t budget = o.memory_budget;
  if (!budget) {
    uint64_t source_bytes = 0;
    for (const auto& sh : src.shards) source_bytes += sh.header.file_size;
    budget = std::min(default_memory_budget(), std::max(uint64_t{256} << 20, 2 * source_bytes));
  }
  const token_geometry geom = choose_token_geometry(budget);
  // The plan reports splits and amax passes for inputs above about half a token (the rest of a
  // token holds outputs and alignment); the job builder makes the exact cut.
  po.token_bytes = geom.token_bytes / 2;
  plan p = make_plan(std::move(src), po);
  if (talk) {
    for (const auto& w : early_warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    for (const auto& w : p.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    std::fprintf(stderr, "memory budget %s: %llu buffers of %s%s\n", human_bytes(budget).c_str(),
                 (unsigned long long)geom.count, human_bytes(geom.token_bytes).c_str(),
                 o.memory_budget ? "" : " (chosen from free memory)");
  }

  std::unique_ptr<compute_backend> backend;
  const unsigned streams = o.streams ? o.streams : (devices.empty() ? 2u : 4u);
  if (devices.empty())
    backend = make_cpu_backend(streams);
  else
    backend = make_gpu_backend(devices, streams, geom.token_bytes, geom.count);
  token_pool pool(geom, devices.empty() ? plain_host_allocator() : pinned_host_allocator());

  std::unique_ptr<async_io> io;
  const unsigned depth = 64;
  if (o.io_engine == io_engine_kind::automatic)
    io = async_io::make(true, depth);
  else
    io = async_io::make_exact(
        o.io_engine == io_engine_kind::uring ? io_engine_type::uring : io_engine_type::pread,
        depth);

  resume_journal journal(o.output, o.existing == existing_output::resume);
  const std::string opt_text = options_text(o, p.options);
  job_builder builder(p, o.output, geom.token_bytes, true);
  graph_run run;
  run.p = &p;
  run.builder = &builder;
  run.pool = &pool;
  run.io = io.get();
  run.backend = backend.get();
  graph_counters counters;
  run.counters = &counters;
  run_report rep;
  uint64_t bytes_total = 0;
  for (uint32_t s = 0; s < p.shards.size(); ++s) {
    const auto& layout = p.shards[s].layout;
    if (o.existing == existing_output::resume &&
        journal.complete(p.shards[s].relative_path, shard_key(layout.header_bytes(), opt_text),
                         layout.file_size())) {
      ++rep.shards_skipped;
      continue;
    }
    run.shards.push_back(s);
    bytes_total += builder.shard_input_bytes(s);
  }
  if (o.on_shard_start)
    run.on_shard_started = [&](const shard_state& s) { o.on_shard_start(s.relative_path); };
  uint64_t file_bytes = 0;
  std::mutex file_bytes_mutex;
  run.on_shard_committed = [&](const shard_state& s) {
    const auto& layout = p.shards[s.index].layout;
    journal.record(s.relative_path, shard_key(layout.header_bytes(), opt_text), layout.file_size());
    std::lock_guard lock(file_bytes_mutex);
    file_bytes += layout.file_size();
  };

  const auto t0 = std::chrono::steady_clock::now();
  {
    progress_reporter progress(counters, bytes_total, run.shards.size(), talk, o.on_progress);
    run_graph(run);
    progress.finish();
  }

  finalize_inputs fin;
  fin.source = o.input;
  fin.output = o.output;
  fin.config_text = p.source.config_text;
  fin.config_path = (o.input / "config.json").string();
  fin.quantization_config = exported_quantization_config(p);
  for (const auto& sh : p.shards) {
    for (const auto& t : sh.layout.tensors()) {
      fin.weight_map.emplace_back(t.name, sh.relative_path);
      fin.total_size += t.byte_size();
    }
  }
  fin.warn = [talk](std::string w) {
    if (talk) std::fprintf(stderr, "warning: %s\n", w.c_str());
  };
  finalize_output(fin);
  journal.discard();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  rep.output_dir = o.output.string();
  rep.tensors_out = fin.weight_map.size();
  rep.bytes_in = counters.bytes_done.load();
  rep.bytes_out = file_bytes;
  rep.wall_seconds = wall;
  rep.gb_per_s = wall > 0 ? double(rep.bytes_in) / wall / 1e9 : 0;
  rep.busy.read = counters.read_ns.load() / 1e9;
  rep.busy.quantize = counters.compute_ns.load() / 1e9;
  rep.busy.write = counters.write_ns.load() / 1e9;
  rep.peak_rss_bytes = peak_rss_bytes();
  rep.peak_device_bytes = backend->peak_device_bytes();
  rep.memory_budget = budget;
  rep.token_bytes = geom.token_bytes;
  rep.tokens = geom.count;
  rep.peak_live_tokens = pool.peak_live();
  rep.jobs = counters.jobs_done.load();
  rep.shards_written = counters.shards_done.load();
  rep.io_engine = io->name();
  rep.direct_io = !p.source.shards.empty() &&
                  io_file::open(p.source.shards[0].path, io_file::mode::read, true)->direct();
  rep.device = devices.empty() ? "cpu" : o.device;
  rep.streams = streams;
  if (!o.report_json.empty()) write_file_atomic(o.report_json, rep.to_json());
  if (talk) std::fputs(report_text(rep).c_str(), stderr);
  return rep;
}

}  // namespace shardquant
