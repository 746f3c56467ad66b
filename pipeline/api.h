// The public C++ API of shardquant for services and the CLI: quantize one checkpoint directory
// into another under a fixed memory budget and return what happened. Errors are thrown as the
// typed errors of io/error.h (input_error for bad input, io_error for a failing system call,
// usage_error for bad options, cancelled_error after quantize_options::cancel). Owns no math and no
// file format; it assembles plan, graph, progress and report. Stable: the CLI's `quantize` command
// calls exactly this.
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

namespace shardquant {

// Which file I/O engine moves the bytes. `automatic` tries io_uring and falls back to pread
// when io_uring cannot be set up (e.g. a container that forbids it).
enum class io_engine_kind : uint8_t { automatic, uring, pread };
// Parses "auto" | "uring" | "pread"; throws usage_error otherwise.
[[nodiscard]] io_engine_kind parse_io_engine(const std::string& s);
[[nodiscard]] const char* io_engine_name(io_engine_kind k) noexcept;

// What to do with an output directory that already holds files (formats.md §3.6).
enum class existing_output : uint8_t { fail, overwrite, resume };

// One progress sample, delivered from a background thread about 4 times a second and once at
// the end (done == true).
struct progress_sample {
  uint64_t bytes_done = 0;   // input bytes fully processed (read, quantized and written)
  uint64_t bytes_total = 0;  // input bytes the run will process
  uint64_t shards_done = 0;
  uint64_t shards_total = 0;
  double seconds = 0;  // since the graph started
  bool done = false;
};

struct quantize_options {
  std::filesystem::path input;   // source checkpoint directory
  std::filesystem::path output;  // output directory (created when missing)
  // A name of formats.md §5.1, e.g. "mxfp4", or the path of a quantization spec file ending in
  // ".json" (pipeline/quant_spec.h; README "Custom progressive specs").
  std::string scheme;
  std::string quant_spec;  // a quantization spec file instead of `scheme` (give one of the two)
  // Exclude globs; nullopt = the template default of the model type (formats.md §3.8).
  std::optional<std::vector<std::string>> excludes;
  // (glob, scheme or spec file .json), first match wins
  std::vector<std::pair<std::string, std::string>> overrides;
  std::vector<std::pair<std::string, uint64_t>> presharded;  // (glob, chunk rows), §7.2.4
  bool keep_excluded_original = false;                       // §8
  // User converters "SRC=T1[,T2]:op(arg)" (pipeline/converters.h), tried before template ones.
  std::vector<std::string> converters;
  bool no_template_converters = false;  // skip the Appendix A converters of the model type
  // Hadamard rotation (kernels/FORMATS-rotation.md): "r1,r2,r4" (a subset), or a file with
  // Quark's RotationConfig fields. CPU backend only for now.
  std::string rotation;
  std::filesystem::path rotation_config;
  // A symbolic link in the source that leads outside the model folder (and its Hugging Face
  // cache repository) or to a folder is an error instead of being skipped with a warning.
  bool strict_side_files = false;

  // Deliberate differences for the loaders (README "Loading the outputs"); the defaults are
  // byte-identical to Quark's file-to-file output.
  bool dynamic_activations = false;  // static input specs exported as dynamic (no input scales)
  std::string layout = "quark-f2f";  // "quark-f2f" | "quark-importer" (CPU device only)

  std::string device = "cpu";  // "cpu" | "cuda" (= cuda:0) | "cuda:N" | "cuda:N,M,..."
  uint64_t memory_budget = 0;  // bytes of host buffers; 0 = chosen from free memory
  // CUDA streams per GPU (default 4), or jobs quantized at once on the CPU (default 2; each
  // job is itself TBB-parallel). 0 = default.
  unsigned streams = 0;
  io_engine_kind io_engine = io_engine_kind::automatic;
  existing_output existing = existing_output::fail;
  // One share of a run split over machines (pipeline/shares.h): worker `worker_index` of
  // `worker_count` writes only the shards it owns and its own journal, never the index, config
  // or side files (`finalize` writes those). worker_count 0 = a whole single run.
  uint32_t worker_index = 0;
  uint32_t worker_count = 0;
  // "" (plain shards) or "zstd[:LEVEL]": each shard written as NAME.safetensors.zst with a seek
  // table (io/zstd_writer.h), the index naming the compressed files.
  std::string compress;

  bool quiet = false;              // no progress output on stderr
  bool progress_to_stderr = true;  // bar when stderr is a TTY, periodic lines otherwise
  std::function<void(const progress_sample&)> on_progress;  // may be empty
  // Called from a graph thread when the graph starts an output shard (its relative path),
  // before any of its data is read. May be empty.
  std::function<void(const std::string&)> on_shard_start;
  std::filesystem::path report_json;  // empty = no JSON report file
  // Cooperative stop: store true (from any thread, or from a signal handler: the store is
  // lock-free) and the run stops before its next job, cleans up as after an error (this run's
  // temporary files removed, shards already published kept and journaled for --resume) and
  // throws cancelled_error. Null = cannot be cancelled. The CLI sets it on SIGINT/SIGTERM.
  std::shared_ptr<std::atomic<bool>> cancel;
};

// Busy seconds of one stage: the sum over its jobs of the time each spent in it (may exceed
// wall time when jobs overlap).
struct stage_times {
  double read = 0;
  double quantize = 0;
  double write = 0;
};

struct run_report {
  std::string output_dir;    // where the quantized checkpoint is
  uint64_t tensors_out = 0;  // tensors in the output shards
  uint64_t bytes_in = 0;     // source tensor bytes read
  uint64_t bytes_out = 0;    // output file bytes written (headers included)
  double wall_seconds = 0;   // graph start to final index/config written
  double gb_per_s = 0;       // bytes_in / wall_seconds / 1e9
  stage_times busy;
  uint64_t peak_rss_bytes = 0;     // getrusage(RUSAGE_SELF).ru_maxrss
  uint64_t peak_device_bytes = 0;  // device arena high-water mark (0 on CPU)
  uint64_t memory_budget = 0;      // the budget used (after the automatic choice)
  uint64_t token_bytes = 0;        // size of one host buffer
  uint64_t tokens = 0;             // number of host buffers
  uint64_t peak_live_tokens = 0;   // most buffers held at once (<= tokens)
  uint64_t jobs = 0;               // graph jobs run (tensors and row ranges)
  uint64_t shards_written = 0;
  uint64_t shards_skipped = 0;  // kept from an earlier run (--resume)
  std::string io_engine;        // the engine that actually ran ("uring" | "pread")
  bool direct_io = false;       // O_DIRECT reads were used
  std::string device;           // "cpu" or "cuda:N[,M]"
  unsigned streams = 0;
  std::string layout;  // the output layout written ("quark-f2f" | "quark-importer")
  bool dynamic_activations = false;
  // Schemes whose output will not run correctly in transformers / vLLM with this run's options,
  // with the options that fix them (pipeline/loader_support.h); empty when all will.
  std::vector<std::string> loader_notes;
  // The JSON object written by --report.
  [[nodiscard]] std::string to_json() const;
};

// Plans, runs the graph and finalizes the output directory. Throws input_error, io_error or
// usage_error; on any error no output shard is left under its final name by this run.
[[nodiscard]] run_report quantize_checkpoint(const quantize_options& options);

// The budget picked when options.memory_budget is 0: half of MemAvailable, clamped to
// [256 MiB, 16 GiB].
[[nodiscard]] uint64_t default_memory_budget();

}  // namespace shardquant
