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
#include "pipeline/output/finalize.h"
#include "pipeline/output/journal.h"
#include "pipeline/output/report.h"
#include "pipeline/output/share_finalize.h"
#include "pipeline/output/shares.h"
#include "pipeline/plan/geometry.h"
#include "pipeline/plan/plan.h"
#include "pipeline/run/graph.h"
#include "pipeline/run/jobs.h"
#include "pipeline/run/memory_limits.h"
#include "pipeline/run/progress.h"
#include "pipeline/run/token_pool.h"
#include "pipeline/run_options.h"
#include "stages/compute_fallback.h"

namespace shardquant {

uint64_t default_memory_budget() {
  // Half of what is free, counting the container's headroom (cgroup v2 memory.max) too.
  const uint64_t avail = read_memory_limits().free();
  const uint64_t lo = uint64_t{256} << 20, hi = uint64_t{16} << 30;
  uint64_t b = avail / 2;
  return b < lo ? lo : (b > hi ? hi : b);
}

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
  // kv / q entries may change a module's scheme (pipeline/plan/kv_cache_config.h).
  if (!o.kv_cache_scheme.empty()) s += "kv=" + o.kv_cache_scheme + ";";
  if (!o.attention_scheme.empty()) s += "attn=" + o.attention_scheme + ";";
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

namespace {

// The share of a worker run, when o.worker_count is set (pipeline/output/shares.h).
std::optional<worker_id> worker_of(const quantize_options& o) {
  if (!o.worker_count) return std::nullopt;
  return worker_id{o.worker_index, o.worker_count};
}

// Fills `rep` as it goes, so the report of a run that fails has what was known by then.
void run_locked(const quantize_options& o, plan_options& po, const std::vector<int>& devices,
                bool talk, std::optional<resume_journal>& journal, bool& published, run_report& rep,
                std::chrono::steady_clock::time_point started) {
  std::vector<std::string> early_warnings;
  source_checkpoint src = open_source_checkpoint(
      o.input, [&](std::string w) { early_warnings.push_back(w); }, o.strict_side_files);
  // Taken before planning moves the source: the fingerprint of what the shards are made from.
  const std::string sources_key = source_fingerprint(src);
  plan p = make_plan(std::move(src), po);
  fill_plan_facts(rep, p);
  // Budget, tokens, row splits and amax passes: the same decision the dry run shows.
  const run_geometry geo = decide_geometry(p, o.memory_budget);
  if (geo.zstd) set_zstd_read_limits(*geo.zstd);
  const uint64_t budget = geo.budget;
  const token_geometry geom = geo.tokens;
  rep.memory_budget = budget;
  rep.token_bytes = geom.token_bytes;
  rep.tokens = geom.count;
  rep.split_tensors = geo.split_tensors;
  rep.amax_tensors = geo.amax_tensors;
  // Every warning goes to the report, to options.on_warning and (unless quiet) to stderr.
  std::mutex warnings_mutex;  // finalize may warn from its side-file copies
  auto warn = [&](const std::string& w) {
    std::lock_guard lock(warnings_mutex);
    rep.warnings.push_back(w);
    if (o.on_warning) o.on_warning(w);
    if (talk) std::fprintf(stderr, "warning: %s\n", w.c_str());
  };
  for (const auto& w : early_warnings) warn(w);
  for (const auto& w : p.warnings) warn(w);
  if (talk) {
    std::fprintf(stderr, "memory budget %s: %llu buffers of %s%s%s\n", human_bytes(budget).c_str(),
                 (unsigned long long)geom.count, human_bytes(geom.token_bytes).c_str(),
                 geo.zstd_reserve
                     ? (", " + human_bytes(geo.zstd_reserve) + " for zstd contexts").c_str()
                     : "",
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

  std::unique_ptr<async_io> io = make_io_engine(o.io_engine, 64);

  const std::optional<worker_id> worker = worker_of(o);
  std::vector<uint32_t> owner;
  if (worker) {
    owner = worker_shares(p, *worker, o.existing, o.output);
    std::vector<bool> mine(owner.size());
    for (size_t s = 0; s < owner.size(); ++s) mine[s] = owner[s] == worker->index;
    rep.actions = count_actions(p, mine);
  }
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
  rep.timings.plan = std::chrono::duration<double>(t0 - started).count();
  rep.device = devices.empty() ? "cpu" : resolve_device(o.device);
  rep.streams = streams;
  rep.io_engine = io->name();
  // Also when the graph fails: what was read and published by then (the failed run's report).
  auto record_counters = [&] {
    rep.bytes_in = counters.bytes_done.load();
    rep.bytes_out = file_bytes;
    rep.shards_written = counters.shards_done.load();
    rep.jobs = counters.jobs_done.load();
    rep.timings.graph =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  try {
    progress_reporter progress(counters, bytes_total, run.shards.size(), talk, o.on_progress);
    run_graph(run);
    progress.finish();
  } catch (...) {
    record_counters();
    throw;
  }
  record_counters();
  const auto t1 = std::chrono::steady_clock::now();

  if (worker) {  // finalize (another process, once every worker is done) writes the rest
    if (talk)
      std::fprintf(stderr,
                   "worker %s: %llu shard(s) written, %llu kept; run `shardquant finalize` "
                   "once every worker is done\n",
                   worker->label().c_str(), (unsigned long long)rep.shards_written,
                   (unsigned long long)rep.shards_skipped);
    return;
  }
  finalize_inputs fin = finalize_inputs_of(p, o);
  fin.warn = [&](std::string w) { warn(w); };
  published = true;  // side files, index and config.json from here on
  rep.side_files = finalize_output(fin);
  const auto t2 = std::chrono::steady_clock::now();
  rep.timings.finalize = std::chrono::duration<double>(t2 - t1).count();
  const double wall = std::chrono::duration<double>(t2 - t0).count();

  rep.tensors_out = fin.weight_map.size();
  rep.wall_seconds = wall;
  rep.gb_per_s = wall > 0 ? double(rep.bytes_in) / wall / 1e9 : 0;
  rep.busy.read = counters.read_ns.load() / 1e9;
  rep.busy.quantize = counters.compute_ns.load() / 1e9;
  rep.busy.write = counters.write_ns.load() / 1e9;
  rep.peak_rss_bytes = peak_rss_bytes();
  rep.peak_device_bytes = backend->peak_device_bytes();
  rep.peak_live_tokens = pool.peak_live();
  rep.direct_io = !p.source.shards.empty() &&
                  io_file::open(p.source.shards[0].path, io_file::mode::read, true)->direct();
  if (talk) std::fputs(report_text(rep).c_str(), stderr);
}

// Options checked, output folder created and locked, then run_locked; whatever happens, the
// folder is left clean (see clean_up).
void run_checkpoint(const quantize_options& o, run_report& rep,
                    std::chrono::steady_clock::time_point started) {
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
    // A worker cannot judge the others' temporaries (their PIDs live on other hosts); it removes
    // those of its own shards once planned (run_locked).
    const stale_removal stale = worker ? stale_removal{} : remove_stale_temporaries(o.output);
    if (talk && stale.files)
      std::fprintf(stderr, "removed %llu temporary file(s) of earlier killed runs (%s)\n",
                   static_cast<unsigned long long>(stale.files), human_bytes(stale.bytes).c_str());
    if (!worker) {
      // What a run killed before it published anything leaves (its temporaries went above): the
      // lock file and an empty journal. Such a folder is as good as empty for a plain rerun.
      std::vector<std::string> leftovers{dir_lock::output_lock_name};
      std::error_code ec;
      if (std::filesystem::file_size(o.output / resume_journal::file_name, ec) == 0 && !ec)
        leftovers.emplace_back(resume_journal::file_name);
      check_output_empty(
          o.output, o.existing == existing_output::fail ? output_mode::fresh : output_mode::resume,
          leftovers);
    }
    run_locked(o, po, devices, talk, journal, published, rep, started);
    if (!worker) journal->discard();  // a worker's journal is finalize's to check and remove
    clean_up();
  } catch (...) {
    clean_up();
    throw;
  }
}

}  // namespace

// The report is written whatever the outcome (status ok, failed or cancelled), atomically, to a
// path checked before anything else happens (pipeline/output/report.h).
run_report quantize_checkpoint(const quantize_options& o) {
  const auto started = std::chrono::steady_clock::now();
  check_report_path(o.report_json, o.output);
  run_report rep;
  rep.tool_version = SHARDQUANT_VERSION;
  rep.started_at = utc_now_iso8601();
  rep.model_dir = o.input.string();
  rep.output_dir = o.output.string();
  rep.scheme = o.scheme.empty() ? o.quant_spec : o.scheme;
  rep.compress = o.compress;
  if (const auto w = worker_of(o)) rep.worker = w->label();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  try {
    run_checkpoint(o, rep, started);
  } catch (...) {
    if (!o.report_json.empty()) {
      rep.error = report_error_of(std::current_exception());
      rep.status = rep.error.kind == "cancelled" ? "cancelled" : "failed";
      rep.timings.total = seconds();
      rep.peak_rss_bytes = peak_rss_bytes();
      const std::string not_written = write_report_noexcept(o.report_json, rep.to_json());
      if (!not_written.empty() && !o.quiet && o.progress_to_stderr)
        std::fprintf(stderr, "warning: %s\n", not_written.c_str());
    }
    throw;
  }
  rep.timings.total = seconds();
  if (!o.report_json.empty()) write_file_atomic(o.report_json, rep.to_json());
  return rep;
}

}  // namespace shardquant
