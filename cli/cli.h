// The `shardquant` command line: subcommands inspect, make-checkpoint, quantize, finalize,
// verify, schemes, templates. Owns argument parsing (CLI11) and the text the commands print; the
// work itself is done by plan, make_checkpoint, inspect and the pipeline API. No catch of library
// errors here: main() has the one catch that maps them to exit codes.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pipeline/plan/plan.h"

namespace shardquant {

// Exit codes: 0 success, 1 bad input (input_error, io_error), 2 usage error.
inline constexpr int k_exit_input = 1;
inline constexpr int k_exit_usage = 2;

// "2G", "500M", "64K", "1024", "1.5G": binary (1024-based) multiples K, M, G, T (an optional
// trailing "B" or "iB" is accepted). Throws usage_error.
[[nodiscard]] uint64_t parse_size(const std::string& s);
[[nodiscard]] std::string format_size(uint64_t bytes);  // "1.50 GiB"
// --memory-budget: "auto" -> 0 (automatic); a size as parse_size. An empty value and sizes that
// are (or round to) zero bytes are usage errors. Not checked against memory here (the API does).
[[nodiscard]] uint64_t parse_memory_budget(const std::string& s);

// Everything `quantize` accepts, after parsing (reference spellings folded in).
struct quantize_args {
  std::string model_dir, output_dir, scheme;
  std::string quant_spec;                           // --quant-spec FILE.json instead of --scheme
  std::optional<std::vector<std::string>> exclude;  // nullopt = template default
  std::vector<std::pair<std::string, std::string>> layer_schemes;
  std::vector<std::string> converters;  // SPEC or a .json file path
  std::vector<std::pair<std::string, uint64_t>> presharded;
  std::string device = "auto";
  uint64_t memory_budget = 0;  // 0 = automatic
  unsigned streams = 0;
  std::string io_engine = "auto";
  std::string compress;  // "" or "zstd[:LEVEL]"
  bool dry_run = false, overwrite = false, resume = false, keep_original = false, quiet = false;
  bool no_template_converters = false;
  bool strict_side_files = false;
  bool dynamic_activations = false;  // README "Loading the outputs"
  std::string layout = "quark-f2f";  // "quark-f2f" | "quark-importer"
  bool ignored_file2file = false, ignored_skip_evaluation = false;  // Quark flags, no effect
  std::string report;
  std::string rotation;                           // --rotation r1,r2,r4
  std::string rotation_config;                    // --rotation-config FILE.json
  std::string kv_cache_scheme, attention_scheme;  // --kv-cache-scheme / --attention-scheme fp8
  std::optional<double> min_kv_scale;             // --min-kv-scale (not exported, as Quark)
  std::string worker;    // --worker I/N | auto: one share of a run split over machines
  uint32_t workers = 0;  // --workers N: the count for --worker auto (Kubernetes) or finalize
};

// Parses `argv` (argv[0] = program) and runs the chosen command, writing to out/err.
// Returns the exit code; throws input_error / io_error / usage_error for main's catch.
[[nodiscard]] int run_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

// Parses only the `quantize` arguments (for tests). `args` excludes the program name and
// the word "quantize". Throws usage_error.
[[nodiscard]] quantize_args parse_quantize_args(const std::vector<std::string>& args);

// plan_options from parsed arguments (scheme names resolved, converters parsed).
[[nodiscard]] plan_options to_plan_options(const quantize_args& a);

// The dry-run text of a plan.
void print_plan(const plan& p, std::ostream& out);
// The plan as JSON (dry-run --report): totals and every part with its outputs.
[[nodiscard]] nlohmann::ordered_json plan_json(const plan& p);

}  // namespace shardquant
