// Command-line parsing and the commands' text output (CLI11 2.1.2).
#include "cli/cli.h"

#include <tbb/global_control.h>
#include <CLI/CLI.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <ostream>

#include "cli/catalog_json.h"
#include "cli/completion.h"
#include "io/checkpoint.h"
#include "io/error.h"
#include "io/file.h"
#include "io/zstd_writer.h"
#include "kernels/schemes.h"
#include "pipeline/api.h"
#include "pipeline/inspect.h"
#include "pipeline/output/decompress.h"
#include "pipeline/output/report.h"
#include "pipeline/output/share_finalize.h"
#include "pipeline/output/shares.h"
#include "pipeline/output/verify.h"
#include "pipeline/plan/converters.h"
#include "pipeline/plan/loader_support.h"
#include "pipeline/plan/plan_rotation.h"
#include "pipeline/plan/quant_spec.h"
#include "pipeline/plan/templates.h"
#include "pipeline/run/memory_limits.h"
#include "pipeline/run/progress.h"
#include "synthetic/make_checkpoint.h"

namespace shardquant {
namespace {

std::string shape_str(std::span<const uint64_t> s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

const char* k_size_help = "sizes take K, M, G or T suffixes, binary (1 K = 1024 bytes)";

// CLI11 with a zero-argument --exclude may store one empty string; fold it to "no patterns".
std::vector<std::string> clean_list(const std::vector<std::string>& v) {
  std::vector<std::string> r;
  for (const auto& s : v)
    if (!s.empty()) r.push_back(s);
  return r;
}

// Shared by run_cli and parse_quantize_args: registers every quantize option on `q`.
void add_quantize_options(CLI::App& q, quantize_args& a, std::vector<std::string>& exclude,
                          std::vector<std::string>& layer, std::vector<std::string>& presharded,
                          std::string& budget) {
  q.add_option("--model-dir,--model_dir", a.model_dir, "source checkpoint directory")->required();
  q.add_option("--output-dir,--output_dir", a.output_dir,
               "output directory (created; must be empty unless --overwrite/--resume)");
  q.add_option("--scheme,--quant_scheme", a.scheme,
               "quantization scheme (see `shardquant schemes`), or a quantization spec .json file");
  q.add_option("--quant-spec", a.quant_spec,
               "JSON quantization spec file (e.g. a progressive pair of weight formats) instead of "
               "--scheme; see README \"Custom progressive specs\"");
  q.add_option("--exclude,--exclude_layers", exclude,
               "module globs left unquantized (Python fnmatch); given with no value: exclude "
               "nothing; absent: the model type's template list")
      ->expected(0, CLI::detail::expected_max_vector_size)
      ->allow_extra_args();
  q.add_option("--layer-scheme", layer,
               "PATTERN SCHEME pairs: modules matching PATTERN use SCHEME, a scheme name or a "
               "quantization spec .json file (first match wins)")
      ->expected(2, CLI::detail::expected_max_vector_size)
      ->allow_extra_args();
  q.add_option("--convert", a.converters,
               "weight converter 'SRC=T1[,T2]:op(arg)' (op: rename, chunk(dim), "
               "split_fused_experts(axis)) or a .json file of them");
  q.add_flag("--no-template-converters", a.no_template_converters,
             "do not apply the model type's converters");
  q.add_option("--presharded", presharded,
               "GLOB=ROWS: FP8 source tensors matching GLOB are TP chunks of ROWS rows");
  q.add_option("--device", a.device,
               "auto (CUDA when built with it and a device is visible, else cpu) | cpu | cuda | "
               "cuda:N | cuda:N,M")
      ->default_val("auto");
  q.add_option(
      "--memory-budget", budget,
      std::string("host buffer budget, at most the machine's memory or the container's cgroup "
                  "limit; 'auto' (the default): half of available memory, at most 16 GiB "
                  "and twice the checkpoint size; ") +
          k_size_help);
  q.add_option("--streams", a.streams, "CUDA streams per GPU / CPU quantize concurrency");
  q.add_option("--io-engine", a.io_engine, "auto | uring | pread")->default_val("auto");
  q.add_option("--rotation", a.rotation,
               "Hadamard rotations before quantization: a subset of r1,r2,r4 (online R1, R2, R4 "
               "with the model type's built-in config, as Quark 0.13; rotated on the CPU path)");
  q.add_option("--rotation-config", a.rotation_config,
               "a JSON file with Quark's RotationConfig fields (instead of --rotation)");
  q.add_option("--kv-cache-scheme,--kv_cache_scheme", a.kv_cache_scheme,
               "fp8: Quark's kv_cache_scheme (config only: static FP8 k/v outputs, no k_scale / "
               "v_scale tensors since nothing is calibrated)");
  q.add_option("--attention-scheme,--attention_scheme", a.attention_scheme,
               "fp8: Quark's attention_scheme (config only: softmax and q output specs)");
  q.add_option("--min-kv-scale,--min_kv_scale", a.min_kv_scale,
               "Quark's min_kv_scale (accepted; its file-to-file export ignores it)");
  q.add_option("--compress", a.compress,
               "zstd[:LEVEL]: write each shard as NAME.safetensors.zst (seekable, level 3 "
               "by default)");
  q.add_flag("--dry-run", a.dry_run, "print the plan and stop");
  q.add_flag("--overwrite", a.overwrite, "replace files shardquant writes in a non-empty output");
  q.add_flag("--resume", a.resume, "keep shards an earlier run completed");
  q.add_flag("--keep-excluded-as-original", a.keep_original,
             "excluded layers quantized in the source keep their source bytes (FP8)");
  q.add_flag("--strict-side-files", a.strict_side_files,
             "a symbolic link in the model folder that leads outside it (and its Hugging Face "
             "cache repository) or to a folder is an error instead of a skipped file");
  q.add_flag("--dynamic-activations", a.dynamic_activations,
             "export static input specs (fp8, int8, mxfp4_fp8) as dynamic: no input scales are "
             "needed (README \"Loading the outputs\")");
  q.add_option("--layout", a.layout,
               "quark-f2f (Quark's file-to-file bytes) | quark-importer (what transformers + "
               "amd-quark and vLLM read for int4/uint4/int8/int4_fp8; CPU device only)")
      ->default_val("quark-f2f");
  q.add_option("--skip-side-files", a.skip_side_files,
               "GLOB (repeatable): side files whose path relative to the model folder matches are "
               "not copied, e.g. 'original/*' (Python fnmatch: * also matches '/'); a shard "
               "matching is an error");
  q.add_option("--threads", a.threads,
               "N: at most N threads of CPU work (oneTBB); default all cores");
  q.add_option("--log-level", a.log_level,
               "error | warn | info | debug: what goes to stderr (README \"Command line\"); "
               "warnings reach --report at every level")
      ->default_val("info");
  q.add_flag("--quiet", a.quiet, "no progress output (the same as --log-level error)");
  q.add_option("--report", a.report, "write a JSON report to FILE (with --dry-run: the plan)");
  q.add_option("--worker", a.worker,
               "I/N: write only share I (0 to N-1) of N, balanced by bytes, for `finalize` to "
               "complete; auto: from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX (README "
               "\"Several machines\")");
  q.add_option("--workers", a.workers,
               "N: the number of workers for --worker auto under Kubernetes (else "
               "SHARDQUANT_WORKERS), or for finalize (default: from the journals)");
  q.add_flag("--file2file_quantization", a.ignored_file2file,
             "accepted for Quark compatibility; ignored");
  q.add_flag("--skip_evaluation", a.ignored_skip_evaluation,
             "accepted for Quark compatibility; ignored");
}

void finish_quantize_args(CLI::App& q, quantize_args& a, const std::vector<std::string>& exclude,
                          const std::vector<std::string>& layer,
                          const std::vector<std::string>& presharded, const std::string& budget) {
  if (a.scheme.empty() == a.quant_spec.empty())
    throw usage_error(a.scheme.empty() ? "--scheme or --quant-spec is required"
                                       : "--scheme and --quant-spec exclude each other");
  if (!a.quant_spec.empty()) {
    // One field downstream: the spec file takes the scheme's place (a ".json" scheme is a file).
    if (!is_quant_spec_file(a.quant_spec))
      throw usage_error("--quant-spec takes a .json file, got '" + a.quant_spec + "'");
    a.scheme = a.quant_spec;
  }
  if (q.count("--exclude") > 0) a.exclude = clean_list(exclude);
  if (layer.size() % 2 != 0)
    throw usage_error("--layer-scheme takes PATTERN SCHEME pairs; got an odd number of values");
  for (size_t i = 0; i < layer.size(); i += 2) a.layer_schemes.emplace_back(layer[i], layer[i + 1]);
  for (const auto& p : presharded) {
    const size_t eq = p.rfind('=');
    if (eq == std::string::npos) throw usage_error("--presharded takes GLOB=ROWS, got '" + p + "'");
    const uint64_t rows = parse_size(p.substr(eq + 1));
    if (rows == 0) throw usage_error("--presharded rows must be positive");
    a.presharded.emplace_back(p.substr(0, eq), rows);
  }
  if (q.count("--memory-budget") > 0) a.memory_budget = parse_memory_budget(budget);
  if (a.overwrite && a.resume) throw usage_error("--overwrite and --resume exclude each other");
  if (!parse_layout(a.layout))
    throw usage_error("--layout takes quark-f2f or quark-importer, got '" + a.layout + "'");
  if (!a.dry_run && a.output_dir.empty()) throw usage_error("--output-dir is required");
  (void)parse_log_level(a.log_level);
  if (q.count("--threads") > 0 && a.threads == 0)
    throw usage_error("--threads takes a positive count (leave it out for all cores)");
  for (auto& g : a.skip_side_files)
    if (g.empty()) throw usage_error("--skip-side-files takes a non-empty GLOB");
}

// A .safetensors file given where the checkpoint folder belongs: say what to pass instead.
void check_model_dir(const std::string& option, const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(dir);
  if (!fs::is_regular_file(p, ec)) return;
  const fs::path folder = fs::absolute(p, ec).parent_path();
  const bool shard = p.filename().string().ends_with(".safetensors") ||
                     p.filename().string().ends_with(".safetensors.zst");
  throw usage_error(option + " " + dir + " is " +
                    (shard ? "a single shard file" : "a file, not a folder") +
                    "; give the checkpoint folder that holds it and its config.json: " + option +
                    " " + folder.string());
}

// SIGINT/SIGTERM during `quantize`: the first one asks the run to stop (the handler only stores
// to lock-free atomics, which is async-signal-safe); the second one exits at once (the next run
// removes the temporary files it leaves, see remove_stale_temporaries).
std::atomic<std::atomic<bool>*> g_cancel_flag{nullptr};
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free);

extern "C" void on_stop_signal(int sig) {
  if (g_stop_signal.exchange(sig) != 0) ::_exit(128 + sig);
  if (std::atomic<bool>* c = g_cancel_flag.load()) c->store(true);
}

// Installs the handler for the life of one run and restores the previous ones after it.
class stop_signals {
 public:
  explicit stop_signals(std::atomic<bool>* flag) {
    g_stop_signal = 0;
    g_cancel_flag = flag;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
  }
  ~stop_signals() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
    g_cancel_flag = nullptr;
  }
  stop_signals(const stop_signals&) = delete;
  stop_signals& operator=(const stop_signals&) = delete;

 private:
  struct sigaction old_int_ {
  }, old_term_{};
};

std::string pct(uint64_t a, uint64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", b ? 100.0 * static_cast<double>(a) / b : 0.0);
  return buf;
}

// The API's options for parsed arguments (converter files expanded to specs, so the API sees
// one form).
quantize_options to_quantize_options(const quantize_args& a) {
  quantize_options o;
  o.input = a.model_dir;
  o.output = a.output_dir;
  o.scheme = a.scheme;
  o.excludes = a.exclude;
  o.overrides = a.layer_schemes;
  o.presharded = a.presharded;
  o.keep_excluded_original = a.keep_original;
  o.no_template_converters = a.no_template_converters;
  o.rotation = a.rotation;
  o.rotation_config = a.rotation_config;
  o.kv_cache_scheme = a.kv_cache_scheme;
  o.attention_scheme = a.attention_scheme;
  o.min_kv_scale = a.min_kv_scale;
  o.strict_side_files = a.strict_side_files;
  o.dynamic_activations = a.dynamic_activations;
  o.layout = a.layout;
  o.device = a.device;
  o.memory_budget = a.memory_budget;
  o.streams = a.streams;
  o.io_engine = parse_io_engine(a.io_engine);
  if (!a.compress.empty()) (void)parse_compress_option(a.compress);  // usage errors before work
  o.compress = a.compress;
  o.existing = a.overwrite ? existing_output::overwrite
               : a.resume  ? existing_output::resume
                           : existing_output::fail;
  o.quiet = a.quiet;
  o.report_json = a.report;
  o.skip_side_files = a.skip_side_files;
  // Converter files are expanded to specs here, so the API sees one form.
  for (const auto& c : to_plan_options(a).converters) o.converters.push_back(c.to_string());
  return o;
}

// --quiet is --log-level error.
log_level level_of(const quantize_args& a) {
  return a.quiet ? log_level::error : parse_log_level(a.log_level);
}

// --threads N for the life of one command (oneTBB's process-wide limit).
std::optional<tbb::global_control> thread_limit(unsigned threads) {
  std::optional<tbb::global_control> g;
  if (threads) g.emplace(tbb::global_control::max_allowed_parallelism, threads);
  return g;
}

// --log-level: below info the pipeline prints nothing itself (o.quiet) and warnings are printed
// here; debug adds the settings and each shard as it starts. Lines from graph threads are
// serialized.
void apply_log_level(const quantize_args& a, quantize_options& o, std::ostream& err) {
  static std::mutex err_mutex;
  const log_level lv = level_of(a);
  o.quiet = lv < log_level::info;
  if (lv == log_level::warn)
    o.on_warning = [&err](const std::string& w) {
      std::lock_guard lock(err_mutex);
      err << "warning: " << w << "\n";
    };
  if (lv == log_level::debug) {
    err << "debug: threads "
        << tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism)
        << " (oneTBB), device " << o.device << ", io engine " << io_engine_name(o.io_engine)
        << ", memory budget "
        << (o.memory_budget ? format_size(o.memory_budget) : std::string("auto")) << "\n";
    o.on_shard_start = [&err](const std::string& shard) {
      std::lock_guard lock(err_mutex);
      err << "debug: shard " << shard << " started\n";
    };
  }
}

int run_finalize(const quantize_args& a, std::ostream& out) {
  if (!a.worker.empty())
    throw usage_error("finalize takes --workers N (or reads N from the journals), not --worker");
  quantize_options o = to_quantize_options(a);
  o.worker_count = a.workers;
  const finalize_report r = finalize_shares(o);
  if (level_of(a) >= log_level::info)
    for (const auto& line : r.log) out << line << "\n";
  return 0;
}

// --dry-run: plan_checkpoint (the run's own geometry), printed; --report gets the plan report
// (the run report's schema, pipeline/output/REPORT.md) followed by the plan's tensor lists.
int run_dry(const quantize_args& a, std::ostream& out, std::ostream& err,
            const std::optional<worker_id>& worker) {
  // The report as the run writes it (pipeline/output/report.h): path checked first, a failed
  // plan's report says so.
  check_report_path(a.report, {});
  quantize_options o = to_quantize_options(a);
  apply_log_level(a, o, err);
  o.on_warning = nullptr;  // printed below, once
  plan_report r;
  try {
    r = plan_checkpoint(o);
  } catch (...) {
    if (!a.report.empty()) {
      const std::string not_written = write_report_noexcept(
          a.report, failed_plan_report(o, std::current_exception()).to_json());
      if (!not_written.empty()) err << "warning: " << not_written << "\n";
    }
    throw;
  }
  if (level_of(a) >= log_level::warn)
    for (const auto& w : r.warnings) err << "warning: " << w << "\n";
  out << "memory budget " << format_size(r.memory_budget)
      << (r.budget_chosen ? " (chosen from free memory and the checkpoint size)" : "") << ": "
      << r.tokens << " buffers of " << format_size(r.token_bytes) << "; " << r.jobs
      << " jobs; device " << r.device << "\n";
  print_plan(*r.detail, out);
  if (worker) {
    const plan& p = *r.detail;
    const std::vector<uint32_t> owner = shard_owners(p, worker->count);
    out << "worker " << worker->label() << " writes:";
    for (size_t s = 0; s < p.shards.size(); ++s)
      if (owner[s] == worker->index) out << " " << p.shards[s].relative_path;
    out << "\n";
  }
  if (!a.report.empty()) {  // the plan report's fields, then the plan's tensor lists
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(r.to_json());
    const nlohmann::ordered_json tensors = plan_json(*r.detail);  // (outlives the loop)
    for (const auto& [k, v] : tensors.items())
      if (!j.contains(k)) j[k] = v;
    write_file_atomic(a.report, j.dump(2) + "\n");
  }
  return 0;
}

int run_quantize(const quantize_args& a, std::ostream& out, std::ostream& err) {
  std::optional<worker_id> worker;
  if (!a.worker.empty())
    worker = parse_worker(a.worker, a.workers);
  else if (a.workers)
    throw usage_error("--workers goes with --worker auto (or with finalize)");
  if (a.dry_run) return run_dry(a, out, err, worker);
  quantize_options o = to_quantize_options(a);
  apply_log_level(a, o, err);
  if (worker) {
    o.worker_index = worker->index;
    o.worker_count = worker->count;
  }
  o.cancel = std::make_shared<std::atomic<bool>>(false);
  // The pipeline prints its own summary (unless --quiet) and writes --report.
  try {
    stop_signals signals(o.cancel.get());
    (void)quantize_checkpoint(o);
  } catch (const cancelled_error&) {
    const int sig = g_stop_signal.load();
    const bool kept = std::filesystem::exists(
        std::filesystem::path(a.output_dir) /
        (worker ? worker_journal_name(*worker) : std::string(resume_journal::file_name)));
    err << "shardquant: stopped by " << (sig == SIGTERM ? "SIGTERM" : "SIGINT") << "; "
        << (kept ? "finished shards are kept: run the same command with --resume to continue"
                 : "nothing was kept: run the same command again to start over")
        << "\n";
    return sig == SIGTERM ? 128 + SIGTERM : 128 + SIGINT;
  }
  (void)out;
  return 0;
}

void print_schemes(std::ostream& out) {
  out << "schemes:\n";
  for (const auto& s : all_schemes()) {
    char line[160];
    std::snprintf(line, sizeof line, "  %-22s %s\n", std::string(s.name).c_str(),
                  std::string(s.help).c_str());
    out << line;
  }
  // Where the outputs run (README "Loading the outputs", pipeline/plan/loader_support.h).
  out << "loaders (options each scheme's output needs; \"default\": none):\n";
  char head[160];
  std::snprintf(head, sizeof head, "  %-22s %-46s %s\n", "scheme", "transformers + amd-quark",
                "vLLM (quantization=\"quark\")");
  out << head;
  for (const auto& s : all_schemes()) {
    const loader_row r = loader_support(s.id);
    const std::string hf = !r.hf_runs     ? "no (Quark 0.13 importer fails)"
                           : r.hf_options ? loader_options_text(r.hf_options)
                                          : "default";
    std::string vl = r.vllm == vllm_status::runs
                         ? (r.vllm_options ? loader_options_text(r.vllm_options) : "default")
                     : r.vllm == vllm_status::unsupported ? "no"
                                                          : "not checked";
    vl += ": " + std::string(r.vllm_note);
    char line[400];
    std::snprintf(line, sizeof line, "  %-22s %-46s %s\n", std::string(s.name).c_str(), hf.c_str(),
                  vl.c_str());
    out << line;
  }
  out << "custom progressive specs: --quant-spec FILE.json (README \"Custom progressive specs\"):\n"
         "  first stage fp8_e4m3 per_tensor/per_channel or int8 per_tensor, then fp8_e4m3 "
         "per_channel or int4/uint4 per_channel/per_group (32, 64, 128) on its code values\n";
  for (const auto& s : all_schemes()) {
    if (s.alias.empty()) continue;
    char line[160];
    std::snprintf(line, sizeof line, "  %-22s alias of %s\n", std::string(s.alias).c_str(),
                  std::string(s.name).c_str());
    out << line;
  }
  out << "refused (Quark 0.13 itself fails on them):\n";
  for (const auto& r : refused_schemes()) {
    char line[200];
    std::snprintf(line, sizeof line, "  %-22s %s\n", std::string(r.name).c_str(),
                  std::string(r.reason).c_str());
    out << line;
  }
}

void print_templates(std::ostream& out) {
  for (const auto& t : all_templates()) {
    out << t.model_type << "\n  exclude:";
    for (const auto& e : t.exclude) out << " " << e;
    out << "\n";
    for (const auto& c : t.converters()) out << "  convert: " << c.to_string() << "\n";
  }
}

}  // namespace

uint64_t parse_size(const std::string& s0) {
  std::string s = s0;
  for (const char* suf : {"iB", "B"})
    if (s.size() > std::string(suf).size() && s.ends_with(suf)) {
      s.resize(s.size() - std::string(suf).size());
      break;
    }
  if (s.empty()) throw usage_error("empty size");
  uint64_t mult = 1;
  switch (s.back()) {
    case 'K':
    case 'k':
      mult = 1ull << 10;
      break;
    case 'M':
    case 'm':
      mult = 1ull << 20;
      break;
    case 'G':
    case 'g':
      mult = 1ull << 30;
      break;
    case 'T':
    case 't':
      mult = 1ull << 40;
      break;
    default:
      break;
  }
  if (mult != 1) s.pop_back();
  if (s.empty() || !(std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '.'))
    throw usage_error("bad size '" + s0 + "' (e.g. 2G, 500M, 64K; binary units)");
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    throw usage_error("bad size '" + s0 + "'");
  }
  if (used != s.size() || !(v >= 0) || v * static_cast<double>(mult) > 1.8e19)
    throw usage_error("bad size '" + s0 + "' (e.g. 2G, 500M, 64K; binary units)");
  if (s.find_first_of(".eE") == std::string::npos) {
    const uint64_t n = std::stoull(s);
    if (n > UINT64_MAX / mult) throw usage_error("size '" + s0 + "' is too large");
    return n * mult;
  }
  return static_cast<uint64_t>(std::llround(v * static_cast<double>(mult)));
}

uint64_t parse_memory_budget(const std::string& s) {
  if (s == "auto") return 0;
  if (s.empty())
    throw usage_error(
        "--memory-budget is empty; give a size such as 8G, or 'auto' for the "
        "automatic choice");
  const uint64_t b = parse_size(s);
  if (b == 0)
    throw usage_error(
        "--memory-budget '" + s +
        "' is zero bytes; give a size such as 8G, or 'auto' for the automatic choice");
  return b;
}

log_level parse_log_level(const std::string& s) {
  if (s == "error") return log_level::error;
  if (s == "warn") return log_level::warn;
  if (s == "info") return log_level::info;
  if (s == "debug") return log_level::debug;
  throw usage_error("--log-level takes error, warn, info or debug, got '" + s + "'");
}

// The run's own formatter, so the dry run and the run print sizes alike.
std::string format_size(uint64_t b) {
  return human_bytes(static_cast<double>(b));
}

quantize_args parse_quantize_args(const std::vector<std::string>& args) {
  CLI::App q{"quantize"};
  quantize_args a;
  std::vector<std::string> exclude, layer, presharded;
  std::string budget;
  add_quantize_options(q, a, exclude, layer, presharded, budget);
  std::vector<std::string> rev(args.rbegin(), args.rend());
  try {
    q.parse(rev);
  } catch (const CLI::Error& e) {
    throw usage_error(e.what());
  }
  finish_quantize_args(q, a, exclude, layer, presharded, budget);
  return a;
}

plan_options to_plan_options(const quantize_args& a) {
  plan_options o;
  o.scheme = parse_scheme_arg(a.scheme);
  o.exclude = a.exclude;
  for (const auto& [g, s] : a.layer_schemes) o.layer_schemes.push_back({g, parse_scheme_arg(s)});
  for (const auto& c : a.converters) {
    if (c.find('=') == std::string::npos && c.ends_with(".json")) {
      for (auto& x : read_converter_file(c)) o.converters.push_back(std::move(x));
    } else {
      o.converters.push_back(parse_converter(c));
    }
  }
  o.use_template_converters = !a.no_template_converters;
  o.keep_excluded_as_original = a.keep_original;
  o.presharded = a.presharded;
  o.rotation = a.rotation;
  o.rotation_config_file = a.rotation_config;
  o.kv = {a.kv_cache_scheme, a.attention_scheme, a.min_kv_scale};
  o.dynamic_activations = a.dynamic_activations;
  o.layout = parse_layout(a.layout).value_or(output_layout::quark_f2f);
  return o;
}

void print_plan(const plan& p, std::ostream& out) {
  const auto& f = p.facts;
  out << "model " << p.model_dir.string() << ": type "
      << (f.model_type.empty() ? "?" : f.model_type) << ", dtype " << name(f.model_dtype)
      << ", source " << (f.quant_method.empty() ? "unquantized" : f.quant_method) << "\n";
  out << "scheme " << p.options.scheme.name();
  if (p.options.scheme.custom)
    out << " (" << describe(p.options.scheme.kernel()) << ", from " << p.options.scheme.custom->path
        << ")";
  out << "; exclude" << (f.exclude_from_template ? " (template)" : "") << ":";
  if (f.exclude_globs.empty()) out << " (none)";
  for (const auto& g : f.exclude_globs) out << " " << g;
  out << "\n";
  for (const auto& o : p.options.layer_schemes)
    out << "override " << o.glob << " -> " << o.scheme.name() << "\n";
  for (const auto& c : p.converters) out << "converter " << c.to_string() << "\n";

  for (const auto& sh : p.shards) {
    const auto& src = p.source.shards[sh.source_shard];
    uint64_t in = 0;
    for (const auto& e : src.header.tensors) in += e.byte_size();
    out << "\nshard " << sh.relative_path << ": " << src.header.tensors.size() << " tensors in ("
        << format_size(in) << "), " << sh.layout.tensors().size() << " out ("
        << format_size(sh.layout.data_size()) << ", file " << format_size(sh.layout.file_size())
        << ")\n";
    for (uint32_t ii : sh.items) {
      const plan_item& it = p.items[ii];
      for (const auto& pt : it.parts) {
        if (pt.output_shard != sh.source_shard) continue;
        std::string act(action_name(pt.action));
        if (pt.scheme) act += " " + std::string(pt.scheme->name());
        if (pt.action == tensor_action::cast || pt.action == tensor_action::recover_cast)
          act += " ->" + std::string(name(pt.cast_to));
        char head[96];
        std::snprintf(head, sizeof head, "  %-26s ", act.c_str());
        out << head << pt.name << "  " << name(pt.input_type) << " " << shape_str(pt.input_shape)
            << " " << pt.input_bytes;
        if (it.source.name != pt.name || it.source.shard != pt.output_shard)
          out << "  (from " << it.source.name
              << (it.source.shard != pt.output_shard
                      ? " in " + p.source.shards[it.source.shard].rel_path
                      : "")
              << ")";
        if (it.recovery.kind != recovery_kind::none && pt.action != tensor_action::keep_original)
          out << "  (recovered with " << it.recovery.scale->name << ")";
        if (pt.action == tensor_action::pass_through && pt.outputs.size() == 1 &&
            pt.outputs[0].name == pt.name && !pt.generated_rotation) {
          out << "  (unchanged)\n";
          continue;
        }
        out << "\n";
        for (const auto& o : pt.outputs)
          out << "      -> " << o.name << "  " << name(o.type) << " " << shape_str(o.shape) << " "
              << o.bytes << "\n";
        if (pt.split_rows)
          out << "      split into row ranges of " << pt.split_rows << " rows"
              << (pt.amax_pass ? ", amax pass first" : "") << "\n";
        if (!pt.rotations.empty()) out << "      " << rotation_text(pt) << "\n";
        if (pt.generated_rotation) out << "      generated: Hadamard signs (online rotation)\n";
      }
    }
    for (const auto& c : p.consumed)
      if (c.source.shard == sh.source_shard)
        out << "  consumed                   " << c.source.name << "  " << name(c.source.type)
            << " " << shape_str(c.source.shape) << " " << c.source.bytes << "  (" << c.reason
            << ")\n";
  }
  const auto& t = p.totals;
  out << "\ntotals: " << t.bytes_in << " bytes in (" << format_size(t.bytes_in) << "), "
      << t.bytes_out << " bytes out (" << format_size(t.bytes_out) << ", "
      << pct(t.bytes_out, t.bytes_in) << ")\n";
  out << "  quantized " << t.quantized << ", passed " << t.passed << ", cast " << t.cast
      << ", recovered " << t.recovered << ", kept original " << t.kept << ", consumed "
      << t.consumed << "\n";
  for (const auto& s : t.per_scheme)
    out << "  " << s.scheme.name() << ": " << s.tensors << " tensors, " << format_size(s.bytes_in)
        << " -> " << format_size(s.bytes_out) << "\n";
  if (t.amax_pass == 0) {
    out << "  amax pass: none needed\n";
  } else {
    out << "  amax pass (split by the memory budget, per-tensor scale): " << t.amax_pass
        << " tensors\n";
    for (const auto& it : p.items)
      for (const auto& pt : it.parts)
        if (pt.amax_pass) out << "    " << pt.name << "\n";
  }
  uint64_t side_bytes = 0, skipped = 0;
  for (const auto& f : p.side_files) (f.skipped_by.empty() ? side_bytes : skipped) += f.bytes;
  out << "side files: " << p.side_files.size() << " (" << format_size(side_bytes) << " copied"
      << (skipped ? ", " + format_size(skipped) + " skipped" : std::string()) << ")\n";
  for (const auto& f : p.side_files)
    out << "  " << (f.skipped_by.empty() ? "copy " : "skip ") << f.rel_path << "  "
        << format_size(f.bytes)
        << (f.skipped_by.empty() ? std::string() : "  (--skip-side-files " + f.skipped_by + ")")
        << "\n";
  out << "exclude (exported):";
  if (p.exclude_resolved.empty()) out << " (none)";
  for (const auto& m : p.exclude_resolved) out << " " << m;
  out << "\n";
  out << "loaders (layout " << layout_name(p.options.layout)
      << (p.options.dynamic_activations ? ", dynamic activations" : "") << "):";
  if (p.loader_notes.empty())
    out << " transformers + amd-quark run every scheme of this plan\n";
  else
    out << "\n";
  for (const auto& n : p.loader_notes) out << "  " << n << "\n";
}

nlohmann::ordered_json plan_json(const plan& p) {
  using json = nlohmann::ordered_json;
  json r;
  r["model_dir"] = p.model_dir.string();
  r["model_type"] = p.facts.model_type;
  r["scheme"] = std::string(p.options.scheme.name());
  const auto& t = p.totals;
  r["totals"] = {{"bytes_in", t.bytes_in}, {"bytes_out", t.bytes_out}, {"quantized", t.quantized},
                 {"passed", t.passed},     {"cast", t.cast},           {"recovered", t.recovered},
                 {"kept", t.kept},         {"consumed", t.consumed},   {"amax_pass", t.amax_pass}};
  json per = json::object();
  for (const auto& s : t.per_scheme)
    per[std::string(s.scheme.name())] = {
        {"tensors", s.tensors}, {"bytes_in", s.bytes_in}, {"bytes_out", s.bytes_out}};
  r["per_scheme"] = per;
  r["layout"] = std::string(layout_name(p.options.layout));
  r["dynamic_activations"] = p.options.dynamic_activations;
  r["loader_notes"] = p.loader_notes;
  json parts = json::array();
  for (const auto& it : p.items)
    for (const auto& pt : it.parts) {
      json o = json::array();
      for (const auto& x : pt.outputs)
        o.push_back({{"name", x.name},
                     {"dtype", std::string(name(x.type))},
                     {"shape", x.shape},
                     {"bytes", x.bytes},
                     {"offset", x.file_offset}});
      json j = {{"name", pt.name},
                {"source", it.source.name},
                {"action", std::string(action_name(pt.action))},
                {"scheme", pt.scheme ? json(std::string(pt.scheme->name())) : json()},
                {"dtype", std::string(name(pt.input_type))},
                {"shape", pt.input_shape},
                {"bytes", pt.input_bytes},
                {"shard", p.shards[pt.output_shard].relative_path},
                {"outputs", o}};
      if (pt.amax_pass) j["amax_pass"] = true;
      parts.push_back(std::move(j));
    }
  r["tensors"] = parts;
  json cons = json::array();
  for (const auto& c : p.consumed) cons.push_back({{"name", c.source.name}, {"reason", c.reason}});
  r["consumed"] = cons;
  r["exclude"] = p.exclude_resolved;
  json side = json::array();
  for (const auto& f : p.side_files)
    side.push_back({{"path", f.rel_path},
                    {"bytes", f.bytes},
                    {"skipped_by", f.skipped_by.empty() ? json() : json(f.skipped_by)}});
  r["side_files"] = side;
  return r;
}

int run_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"shardquant " SHARDQUANT_VERSION
               ": quantize LLM safetensors checkpoints file to file, bit-identical to AMD "
               "Quark's file-to-file quantizer"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("shardquant ") + SHARDQUANT_VERSION);

  // inspect
  std::string inspect_path;
  bool inspect_json = false;
  CLI::App* ins =
      app.add_subcommand("inspect",
                         "list tensors, dtypes, shapes, bytes and the quantization_config of a "
                         "safetensors file or checkpoint directory");
  ins->add_option("PATH", inspect_path, "a .safetensors file or a checkpoint directory")
      ->required();
  ins->add_flag("--json", inspect_json, "machine-readable output");

  // decompress
  std::string dec_dir;
  bool dec_overwrite = false;
  CLI::App* dec = app.add_subcommand(
      "decompress",
      "restore plain shards (and an index naming them) beside the *.safetensors.zst files of a "
      "checkpoint; the compressed files are kept");
  dec->add_option("DIR", dec_dir, "checkpoint directory")->required();
  dec->add_flag("--overwrite", dec_overwrite, "replace plain shards that already exist");

  // make-checkpoint
  make_checkpoint_options mk;
  std::string mk_size, mk_shard = "4G", mk_dtype = "bf16", mk_out;
  CLI::App* mkc = app.add_subcommand(
      "make-checkpoint",
      std::string("write a synthetic checkpoint with a real architecture's names and shapes; ") +
          k_size_help);
  mkc->add_option("--arch", mk.arch, "llama | deepseek_v3 | qwen3_moe")
      ->required()
      ->check(CLI::IsMember(synthetic_architectures()));
  mkc->add_option("--size", mk_size, "approximate total tensor bytes, e.g. 2G (binary units)")
      ->required();
  mkc->add_option("--dtype", mk_dtype,
                  "bf16 | fp16 | fp32 | fp8 (fp8: DeepSeek-style block-FP8 source, BF16 model)")
      ->default_val("bf16")
      ->check(CLI::IsMember({"bf16", "fp16", "fp32", "fp8"}));
  mkc->add_option("--shard-size", mk_shard, "max tensor bytes per shard (binary units)")
      ->default_val("4G");
  mkc->add_option("--out", mk_out, "output directory")->required();
  mkc->add_option("--seed", mk.seed, "PRNG seed (same seed, same bytes)")->default_val(0);
  mkc->add_flag("--odd-shapes", mk.odd_shapes,
                "intermediate sizes and LoRA ranks = 2 mod 4, odd vocabulary: per-group int4/uint4 "
                "and mxfp6 schemes then reject down_proj (and DeepSeek q_b_proj/kv_b_proj)");
  std::string ct_help =
      "compressed-tensors source: Linear weights (not lm_head, routers) quantized into one of";
  std::vector<std::string> ct_names;
  for (const auto& [name, what] : ct_variants()) {
    ct_help += "\n  " + name + ": " + what;
    ct_names.push_back(name);
  }
  mkc->add_option("--ct", mk.ct, ct_help + "\n(scales in --dtype, the model dtype)")
      ->check(CLI::IsMember(ct_names));
  mkc->add_flag("--dsv4-mxfp4", mk.dsv4_mxfp4,
                "with --dtype fp8: routed experts as DeepSeek-V4 MXFP4 (I8 packed E2M1 pairs + "
                "F8_E8M0 sibling .scale per 32 columns)");
  mkc->add_option("--presharded", mk.presharded_rows,
                  "with --dtype fp8: TP-presharded chunk rows; weights whose row count is a "
                  "multiple (>= 2 chunks) get per-chunk block scales, listed in "
                  "quantization_config.presharded_weights");

  // quantize
  quantize_args qa;
  std::vector<std::string> q_exclude, q_layer, q_presharded;
  std::string q_budget;
  CLI::App* qc = app.add_subcommand(
      "quantize",
      "quantize a checkpoint directory (Quark spellings --model_dir, --output_dir, "
      "--quant_scheme, --exclude_layers accepted)");
  add_quantize_options(*qc, qa, q_exclude, q_layer, q_presharded, q_budget);

  // verify (pipeline/output/verify.h)
  verify_options vo;
  std::string v_budget;
  bool v_json = false;
  CLI::App* vc = app.add_subcommand(
      "verify",
      "check a quantized output against its source: shards, index, config.json, every "
      "tensor decoded and compared (exit 0 sound, 1 not sound)");
  vc->add_option("--model-dir,--model_dir", vo.input, "the source checkpoint directory")
      ->required();
  vc->add_option("--output-dir,--output_dir", vo.output, "the quantized checkpoint directory")
      ->required();
  vc->add_flag("--json", v_json, "print the report as JSON");
  vc->add_option("--memory-budget", v_budget, "bytes of read and work buffers, e.g. 2G");
  vc->add_option("--device", vo.device, "cpu (decoding runs on the CPU)")->default_val("cpu");
  // finalize: the same options as quantize (those that shape bytes must match the workers')
  quantize_args fa;
  std::vector<std::string> f_exclude, f_layer, f_presharded;
  std::string f_budget;
  CLI::App* fc = app.add_subcommand(
      "finalize",
      "after `quantize --worker I/N` ran for every I: check every share and write the index, "
      "config.json and side files (give the options the workers got)");
  add_quantize_options(*fc, fa, f_exclude, f_layer, f_presharded, f_budget);

  CLI::App* sc = app.add_subcommand("schemes", "list the quantization schemes");
  bool schemes_json = false;
  sc->add_flag("--json", schemes_json,
               "machine-readable: {schemes: [{name, description, group_size, backends, aliases, "
               "transformers: {options, why}, vllm: {status, options, note}}], refused: [{name, "
               "reason}]}");
  CLI::App* tc = app.add_subcommand("templates",
                                    "list model types with their default excludes "
                                    "and converters");
  bool templates_json = false;
  tc->add_flag("--json", templates_json,
               "machine-readable: {templates: [{model_type, exclude, converters}]}");

  // help [SUBCOMMAND]: the same text as --help
  std::string help_topic;
  CLI::App* hc = app.add_subcommand("help", "print this help, or a subcommand's (help quantize)");
  hc->add_option("SUBCOMMAND", help_topic, "the subcommand to describe");
  // completion bash|zsh
  std::string completion_shell;
  CLI::App* cc = app.add_subcommand(
      "completion",
      "print a shell completion script: source <(shardquant completion bash) (or zsh)");
  cc->add_option("SHELL", completion_shell, "bash | zsh")
      ->required()
      ->check(CLI::IsMember({"bash", "zsh"}));
  unsigned v_threads = 0;
  vc->add_option("--threads", v_threads, "N: at most N threads of CPU work (oneTBB)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --help-all, --version
    return app.exit(e, out, err);
  } catch (const CLI::ParseError& e) {
    err << "shardquant: " << e.what() << "\n";
    if (!app.get_subcommands().empty())
      err << "run 'shardquant " << app.get_subcommands().front()->get_name()
          << " --help' for usage\n";
    else
      err << "run 'shardquant --help' for usage\n";
    return k_exit_usage;
  }

  if (hc->parsed()) {
    // Parsed again as `[SUBCOMMAND] --help`, so the text is --help's own.
    std::vector<const char*> args{argc > 0 ? argv[0] : "shardquant"};
    if (!help_topic.empty()) {
      bool known = false;
      for (const CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; }))
        known = known || s->get_name() == help_topic;
      if (!known) {
        err << "shardquant: no subcommand '" << help_topic
            << "'; run 'shardquant help' for the list\n";
        return k_exit_usage;
      }
      args.push_back(help_topic.c_str());
    }
    args.push_back("--help");
    return run_cli(static_cast<int>(args.size()), args.data(), out, err);
  }
  if (cc->parsed()) {
    out << (completion_shell == "zsh" ? zsh_completion_script(app) : bash_completion_script(app));
    return 0;
  }
  if (ins->parsed()) {
    print_inspect(inspect_path, inspect_json, out);
    return 0;
  }
  if (dec->parsed()) {
    const decompress_result r = decompress_checkpoint(dec_dir, dec_overwrite);
    out << "decompressed " << r.shards << " shard(s), " << format_size(r.plain_bytes)
        << (r.index_rewritten ? "; index now names the plain shards" : "") << "\n";
    return 0;
  }
  if (mkc->parsed()) {
    mk.size = parse_size(mk_size);
    mk.shard_size = parse_size(mk_shard);
    mk.type = mk_dtype == "bf16"   ? dtype::bf16
              : mk_dtype == "fp16" ? dtype::f16
              : mk_dtype == "fp8"  ? dtype::f8_e4m3
                                   : dtype::f32;
    mk.out = mk_out;
    const make_checkpoint_result r = make_checkpoint(mk);
    out << "wrote " << r.tensors << " tensors, " << format_size(r.bytes) << " in "
        << r.shards.size() << " shard(s) to " << mk_out << "\n";
    return 0;
  }
  if (qc->parsed()) {
    finish_quantize_args(*qc, qa, q_exclude, q_layer, q_presharded, q_budget);
    check_model_dir("--model-dir", qa.model_dir);
    const auto threads = thread_limit(qa.threads);
    return run_quantize(qa, out, err);
  }
  if (vc->parsed()) {
    check_model_dir("--model-dir", vo.input.string());
    if (vc->count("--threads") > 0 && v_threads == 0)
      throw usage_error("--threads takes a positive count (leave it out for all cores)");
    const auto threads = thread_limit(v_threads);
    if (!v_budget.empty()) vo.memory_budget = parse_size(v_budget);
    const verify_report r = verify_checkpoint(vo);
    out << (v_json ? r.to_json() : r.to_text());
    return r.sound ? 0 : k_exit_input;
  }
  if (fc->parsed()) {
    finish_quantize_args(*fc, fa, f_exclude, f_layer, f_presharded, f_budget);
    if (fa.output_dir.empty()) throw usage_error("finalize: --output-dir is required");
    check_model_dir("--model-dir", fa.model_dir);
    const auto threads = thread_limit(fa.threads);
    return run_finalize(fa, out);
  }
  if (sc->parsed()) {
    if (schemes_json)
      print_schemes_json(out);
    else
      print_schemes(out);
    return 0;
  }
  if (tc->parsed()) {
    if (templates_json)
      print_templates_json(out);
    else
      print_templates(out);
    return 0;
  }
  return k_exit_usage;
}

}  // namespace shardquant
