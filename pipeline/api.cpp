// quantize_checkpoint: options -> plan -> token pool, I/O engine, compute backend -> graph ->
// output directory finalized -> report.
#include "pipeline/api.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <unordered_map>

#include "io/checkpoint.h"
#include "io/checksum.h"
#include "io/dir_lock.h"
#include "io/error.h"
#include "io/file.h"
#include "io/zstd_source.h"
#include "io/zstd_writer.h"
#include "pipeline/finalize.h"
#include "pipeline/graph.h"
#include "pipeline/jobs.h"
#include "pipeline/journal.h"
#include "pipeline/memory_limits.h"
#include "pipeline/plan.h"
#include "pipeline/progress.h"
#include "pipeline/report.h"
#include "pipeline/run_options.h"
#include "pipeline/share_finalize.h"
#include "pipeline/shares.h"
#include "pipeline/token_pool.h"
#include "stages/compute_fallback.h"

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
  // Half of what is free, counting the container's headroom (cgroup v2 memory.max) too.
  const uint64_t avail = read_memory_limits().free();
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

}  // namespace

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
  // Only when set, so the keys of default runs stay what they were.
  s += o.dynamic_activations ? "dyn;" : "";
  s += o.layout != "quark-f2f" ? "layout=" + o.layout + ";" : "";
  if (!o.compress.empty()) s += "compress=" + o.compress + ";";
  s += "v=" SHARDQUANT_VERSION;
  return s;
}

std::string published_shard_name(const std::string& relative_path, const quantize_options& o) {
  return o.compress.empty() ? relative_path : relative_path + ".zst";
}

finalize_inputs finalize_inputs_of(const plan& p, const quantize_options& o) {
  finalize_inputs fin;
  fin.source = o.input;
  fin.output = o.output;
  fin.config_text = p.source.config_text;
  fin.config_path = (o.input / "config.json").string();
  fin.quantization_config = exported_quantization_config(p);
  for (const auto& sh : p.shards) {
    for (const auto& t : sh.layout.tensors()) {
      fin.weight_map.emplace_back(t.name, published_shard_name(sh.relative_path, o));
      fin.total_size += t.byte_size();
    }
  }
  fin.strict_side_files = o.strict_side_files;
  return fin;
}

plan_options plan_options_of(const quantize_options& o) {
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
  po.dynamic_activations = o.dynamic_activations;
  const auto layout = parse_layout(o.layout);
  if (!layout)
    throw usage_error("unknown layout '" + o.layout + "'; known: quark-f2f, quark-importer");
  po.layout = *layout;
  // The GPU backend writes the file-to-file layout only (the conversion runs in the CPU stage).
  if (po.layout == output_layout::quark_importer && o.device != "cpu")
    throw usage_error(
        "--layout quark-importer is written by the CPU backend only; use --device cpu");
  return po;
}

namespace {

// The share of a worker run, when o.worker_count is set (pipeline/shares.h).
std::optional<worker_id> worker_of(const quantize_options& o) {
  if (!o.worker_count) return std::nullopt;
  return worker_id{o.worker_index, o.worker_count};
}

run_report run_locked(const quantize_options& o, plan_options& po, const std::vector<int>& devices,
                      bool talk, std::optional<resume_journal>& journal, bool& published) {
  std::vector<std::string> early_warnings;
  source_checkpoint src = open_source_checkpoint(
      o.input, [&](std::string w) { early_warnings.push_back(w); }, o.strict_side_files);
  // A budget chosen for the user need not exceed what the checkpoint can use (inputs plus
  // outputs in flight): pinning 16 GiB for a 50 MB model costs seconds for nothing.
  uint64_t budget = o.memory_budget;
  if (!budget) {
    uint64_t source_bytes = 0;
    for (const auto& sh : src.shards) source_bytes += sh.header.file_size;
    budget = std::min(default_memory_budget(), std::max(uint64_t{256} << 20, 2 * source_bytes));
  }
  // Compressed shards: their decompression contexts are part of the budget (io/zstd_source.h).
  uint64_t zstd_reserve = 0;
  {
    uint64_t window = 0;
    std::string widest;
    for (const auto& sh : src.shards)
      if (sh.compressed && sh.zstd_window >= window) {
        window = sh.zstd_window;
        widest = sh.path.string();
      }
    if (!widest.empty()) {
      const zstd_read_limits zl = zstd_limits_for_budget(budget, window, widest);
      set_zstd_read_limits(zl);
      zstd_reserve = std::min(zl.context_limit, budget / 2);
    }
  }
  const token_geometry geom = choose_token_geometry(budget - zstd_reserve);
  // The plan reports splits and amax passes for inputs above about half a token (the rest of a
  // token holds outputs and alignment); the job builder makes the exact cut.
  po.token_bytes = geom.token_bytes / 2;
  // Taken before planning moves the source: the fingerprint of what the shards are made from.
  const std::string sources_key = source_fingerprint(src);
  plan p = make_plan(std::move(src), po);
  if (talk) {
    for (const auto& w : early_warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    for (const auto& w : p.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    std::fprintf(
        stderr, "memory budget %s: %llu buffers of %s%s%s\n", human_bytes(budget).c_str(),
        (unsigned long long)geom.count, human_bytes(geom.token_bytes).c_str(),
        zstd_reserve ? (", " + human_bytes(zstd_reserve) + " for zstd contexts").c_str() : "",
        o.memory_budget ? "" : " (chosen from free memory)");
  }

  std::unique_ptr<compute_backend> backend;
  const unsigned streams = o.streams ? o.streams : (devices.empty() ? 2u : 4u);
  if (devices.empty())
    backend = make_cpu_backend(streams);
  else
    // Schemes without a CUDA kernel (the table's backends column) run on the CPU path.
    backend = with_cpu_fallback(make_gpu_backend(devices, streams, geom.token_bytes, geom.count),
                                backend_cuda);
  token_pool pool(geom, devices.empty() ? plain_host_allocator() : pinned_host_allocator());

  std::unique_ptr<async_io> io;
  const unsigned depth = 64;
  if (o.io_engine == io_engine_kind::automatic)
    io = async_io::make(true, depth);
  else
    io = async_io::make_exact(
        o.io_engine == io_engine_kind::uring ? io_engine_type::uring : io_engine_type::pread,
        depth);

  const std::optional<worker_id> worker = worker_of(o);
  std::vector<uint32_t> owner;
  if (worker) owner = worker_shares(p, *worker, o.existing, o.output);
  journal.emplace(o.output, o.existing == existing_output::resume,
                  worker ? worker_journal_name(*worker) : resume_journal::file_name);
  const std::string options_key = shard_key(options_text(o, p.options), "");
  // A compressed shard's size is known only once written: the journal's record of it stands in
  // (the file's size and checksum are still checked against that record).
  auto inputs_of = [&](uint32_t s) {
    const auto& layout = p.shards[s].layout;
    uint64_t size = layout.file_size();
    if (!o.compress.empty()) {
      const auto recorded = journal->inputs_of(published_shard_name(p.shards[s].relative_path, o));
      size = recorded ? recorded->size : 0;
    }
    return shard_inputs{shard_key(layout.header_bytes(), ""), sources_key, options_key, size};
  };
  if (worker) {
    // What finalize checks this share against, and the temporaries a killed run of this worker
    // left (no one else writes its shards: it holds its lock).
    journal->record(worker_options_entry, worker_options_inputs(sources_key, options_key, *worker),
                    0);
    for (uint32_t s = 0; s < p.shards.size(); ++s)
      if (owner[s] == worker->index) remove_shard_temporaries(o.output / p.shards[s].relative_path);
  }
  job_builder builder(p, o.output, geom.token_bytes, true);
  std::optional<zstd_compress_options> compress;
  if (!o.compress.empty()) compress = parse_compress_option(o.compress);
  builder.set_compression(compress);
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
    if (worker && owner[s] != worker->index) continue;
    if (o.existing == existing_output::resume) {
      const std::string why =
          journal->why_redo(published_shard_name(p.shards[s].relative_path, o), inputs_of(s));
      if (why.empty()) {
        ++rep.shards_skipped;
        continue;
      }
      if (talk && why != resume_journal::not_recorded)
        std::fprintf(stderr, "resume: redoing %s: %s\n",
                     escaped_name(p.shards[s].relative_path).c_str(), why.c_str());
    }
    run.shards.push_back(s);
    bytes_total += builder.shard_input_bytes(s);
  }
  if (o.on_shard_start)
    run.on_shard_started = [&](const shard_state& s) { o.on_shard_start(s.relative_path); };
  run.cancel = o.cancel.get();
  uint64_t file_bytes = 0;
  std::mutex file_bytes_mutex;
  run.on_shard_committed = [&](const shard_state& s) {
    shard_inputs in = inputs_of(s.index);
    in.size = s.writer->published_size();
    // The checksum taken while writing covers the plain bytes; a compressed shard is summed as
    // published (read back once, from the page cache).
    const uint64_t sum =
        o.compress.empty() ? s.writer->checksum() : checksum_file(s.writer->published_path());
    journal->record(published_shard_name(s.relative_path, o), in, sum);
    std::lock_guard lock(file_bytes_mutex);
    published = true;
    file_bytes += in.size;
  };

  if (run.cancel && run.cancel->load()) throw cancelled_error("the run was cancelled");
  const auto t0 = std::chrono::steady_clock::now();
  {
    progress_reporter progress(counters, bytes_total, run.shards.size(), talk, o.on_progress);
    run_graph(run);
    progress.finish();
  }

  if (worker) {  // finalize (another process, once every worker is done) writes the rest
    rep.output_dir = o.output.string();
    rep.bytes_in = counters.bytes_done.load();
    rep.bytes_out = file_bytes;
    rep.shards_written = counters.shards_done.load();
    rep.device = devices.empty() ? "cpu" : o.device;
    if (!o.report_json.empty()) write_file_atomic(o.report_json, rep.to_json());
    if (talk)
      std::fprintf(stderr,
                   "worker %s: %llu shard(s) written, %llu kept; run `shardquant finalize` "
                   "once every worker is done\n",
                   worker->label().c_str(), (unsigned long long)rep.shards_written,
                   (unsigned long long)rep.shards_skipped);
    return rep;
  }
  finalize_inputs fin = finalize_inputs_of(p, o);
  fin.warn = [talk](std::string w) {
    if (talk) std::fprintf(stderr, "warning: %s\n", w.c_str());
  };
  published = true;  // side files, index and config.json from here on
  finalize_output(fin);
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
  rep.layout = std::string(layout_name(po.layout));
  rep.dynamic_activations = po.dynamic_activations;
  rep.loader_notes = p.loader_notes;
  if (!o.report_json.empty()) write_file_atomic(o.report_json, rep.to_json());
  if (talk) std::fputs(report_text(rep).c_str(), stderr);
  return rep;
}

}  // namespace

run_report quantize_checkpoint(const quantize_options& o) {
  if (o.input.empty() || o.output.empty()) throw usage_error("input and output are required");
  plan_options po = plan_options_of(o);
  // A worker shares the folder with the other workers: its own lock, its own journal, no
  // emptiness check (its own shards are checked once planned), no folder-wide cleanup.
  const std::optional<worker_id> worker = worker_of(o);

  const std::vector<int> devices = parse_devices(o.device);
  const bool talk = !o.quiet && o.progress_to_stderr;
  const memory_limits limits = read_memory_limits();
  if (o.memory_budget) check_memory_budget(o.memory_budget, limits);

  // One run per output folder: the lock is taken before the folder is judged empty, so two runs
  // started together cannot both find it empty (io/dir_lock.h).
  const std::filesystem::path created_root = create_output_dir(o.input, o.output);
  std::optional<dir_lock> lock;
  try {
    lock.emplace(worker ? dir_lock::lock_or_throw(o.output, worker_lock_name(*worker))
                        : dir_lock::lock_or_throw(o.output));
  } catch (...) {
    if (!worker) remove_created_output_dirs(o.output, created_root);  // (other workers: below)
    throw;
  }
  // Whatever happens next, a run that published nothing leaves nothing: no journal, no lock
  // file, not the folder it created. A run that published shards keeps them and the journal.
  std::optional<resume_journal> journal;
  bool published = false;
  auto clean_up = [&]() noexcept {
    const bool nothing = !published && (!journal || journal->empty());
    try {
      if (nothing && journal) journal->discard();
    } catch (const std::exception&) {  // the run's own error matters more
    }
    lock->release_and_remove();
    // Other workers may be about to use a folder a worker created: it stays.
    if (nothing && !worker) remove_created_output_dirs(o.output, created_root);
  };
  try {
    if (!worker)
      check_output_empty(
          o.output, o.existing == existing_output::fail ? output_mode::fresh : output_mode::resume,
          {dir_lock::output_lock_name});
    // A worker cannot judge the others' temporaries (their PIDs live on other hosts); it removes
    // those of its own shards once planned (run_locked).
    const stale_removal stale = worker ? stale_removal{} : remove_stale_temporaries(o.output);
    if (talk && stale.files)
      std::fprintf(stderr, "removed %llu temporary file(s) of earlier killed runs (%s)\n",
                   static_cast<unsigned long long>(stale.files), human_bytes(stale.bytes).c_str());
    run_report rep = run_locked(o, po, devices, talk, journal, published);
    if (!worker) journal->discard();  // a worker's journal is finalize's to check and remove
    clean_up();
    return rep;
  } catch (...) {
    clean_up();
    throw;
  }
}

}  // namespace shardquant
