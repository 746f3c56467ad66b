// What a quantization run is asked to do (public): quantize_options and its enums. Value types
// only; the functions that take them are in shardquant/shardquant.h. Includes only the
// standard library and the public progress/export headers.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shardquant/export.h"
#include "shardquant/progress.h"

namespace shardquant {

// Which file I/O engine moves the bytes. `automatic` tries io_uring and falls back to pread
// when io_uring cannot be set up (e.g. a container that forbids it). The library's table of
// engines and names (io/io_engine.h) is the definition: this enum is `automatic` followed by its
// engines in its order, which the library checks at compile time.
enum class io_engine_kind : uint8_t { automatic, uring, pread };
// Parses "auto" | "uring" | "pread"; throws usage_error otherwise.
[[nodiscard]] SHARDQUANT_API io_engine_kind parse_io_engine(const std::string& s);
[[nodiscard]] SHARDQUANT_API const char* io_engine_name(io_engine_kind k) noexcept;

// What to do with an output directory that already holds files (formats.md §3.6).
enum class existing_output : uint8_t { fail, overwrite, resume };

struct quantize_options {
  std::filesystem::path input;   // source checkpoint directory
  std::filesystem::path output;  // output directory (created when missing)
  // A name of formats.md §5.1, e.g. "mxfp4", or the path of a quantization spec file ending in
  // ".json" (pipeline/plan/quant_spec.h; README "Custom progressive specs").
  std::string scheme;
  std::string quant_spec;  // a quantization spec file instead of `scheme` (give one of the two)
  // Exclude globs; nullopt = the template default of the model type (formats.md §3.8).
  std::optional<std::vector<std::string>> excludes;
  // (glob, scheme or spec file .json), first match wins
  std::vector<std::pair<std::string, std::string>> overrides;
  std::vector<std::pair<std::string, uint64_t>> presharded;  // (glob, chunk rows), §7.2.4
  bool keep_excluded_original = false;                       // §8
  // User converters "SRC=T1[,T2]:op(arg)" (pipeline/plan/converters.h), tried before template ones.
  std::vector<std::string> converters;
  bool no_template_converters = false;  // skip the Appendix A converters of the model type
  // A symbolic link in the source that leads outside the model folder (and its Hugging Face
  // cache repository) or to a folder is an error instead of being skipped with a warning.
  // Hadamard rotation (kernels/FORMATS-rotation.md): "r1,r2,r4" (a subset), or a file with
  // Quark's RotationConfig fields. Rotated tensors run on the CPU path (also with --device cuda).
  std::string rotation;
  std::filesystem::path rotation_config;
  // Quark get_config's kv_cache_scheme / attention_scheme ("" or "fp8") and min_kv_scale: only
  // config.json changes (no k/v/q scale tensors: no calibration); min_kv_scale is not exported.
  std::string kv_cache_scheme, attention_scheme;
  std::optional<double> min_kv_scale;
  bool strict_side_files = false;

  // Deliberate differences for the loaders (README "Loading the outputs"); the defaults are
  // byte-identical to Quark's file-to-file output.
  bool dynamic_activations = false;  // static input specs exported as dynamic (no input scales)
  std::string layout = "quark-f2f";  // "quark-f2f" | "quark-importer" (CPU device only)
  // One share of a run split over machines (README "Several machines"): worker `worker_index` of
  // `worker_count` writes only the shards it owns and its own journal, never the index, config
  // or side files (`finalize` writes those). worker_count 0 = a whole single run.
  uint32_t worker_index = 0;
  uint32_t worker_count = 0;
  // "" (plain shards) or "zstd[:LEVEL]": each shard written as NAME.safetensors.zst with a seek
  // table, the index naming the compressed files (README "Compressed checkpoints").
  std::string compress;

  // "auto" (CUDA when the build has it and a device is visible, else the CPU; the report says
  // which) | "cpu" | "cuda" (= cuda:0) | "cuda:N" | "cuda:N,M,..."
  std::string device = "auto";
  uint64_t memory_budget = 0;  // bytes of host buffers; 0 = chosen from free memory
  // CUDA streams per GPU (default 4), or jobs quantized at once on the CPU (default 2; each
  // job is itself TBB-parallel). 0 = default.
  unsigned streams = 0;
  io_engine_kind io_engine = io_engine_kind::automatic;
  existing_output existing = existing_output::fail;

  bool quiet = false;              // no progress output on stderr
  bool progress_to_stderr = true;  // bar when stderr is a TTY, periodic lines otherwise
  std::function<void(const progress_sample&)> on_progress;  // may be empty
  // Called from a graph thread when the graph starts an output shard (its relative path),
  // before any of its data is read. May be empty.
  std::function<void(const std::string&)> on_shard_start;
  // Called once per warning (e.g. a side file skipped, a rank-3 weight quantized as Quark does),
  // from the calling thread or a graph thread; the report lists them too. May be empty.
  std::function<void(const std::string&)> on_warning;
  std::filesystem::path report_json;  // empty = no JSON report file
  // Cooperative stop: store true (from any thread, or from a signal handler: the store is
  // lock-free) and the run stops before its next job, cleans up as after an error (this run's
  // temporary files removed, shards already published kept and journaled for --resume) and
  // throws cancelled_error. Null = cannot be cancelled. The CLI sets it on SIGINT/SIGTERM.
  std::shared_ptr<std::atomic<bool>> cancel;
};

}  // namespace shardquant
