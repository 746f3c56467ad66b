// What a quantization run did (public): run_report, the value quantize_checkpoint returns and
// --report writes, and the pieces it shares with the dry run's plan_report (plan.h). Its JSON
// schema is documented field by field in pipeline/output/REPORT.md and versioned by
// report_schema_version. A leaf: only the standard library and the export macro.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "shardquant/export.h"

namespace shardquant {

// The `schema_version` of every report JSON (run and plan). Raised when a field is removed or
// changes meaning; fields may be added within a version (readers ignore unknown keys).
inline constexpr int report_schema_version = 1;

// Busy seconds of one stage: the sum over its jobs of the time each spent in it (may exceed
// wall time when jobs overlap).
struct stage_times {
  double read = 0;
  double quantize = 0;
  double write = 0;
};

// Wall-clock seconds of the run's phases (quantize_checkpoint's own clock).
struct run_timings {
  double plan = 0;      // call start to graph start: output folder, lock, headers, plan
  double graph = 0;     // the graph: read, quantize, write, publish every shard
  double finalize = 0;  // side files, index, config.json
  double total = 0;     // call start to the report (failed runs: to the error)
};

// Planned tensors per action (the `action` of the dry run's tensor list), counted once per
// tensor the plan handles: a quantized weight counts once although it writes its scales too.
struct action_counts {
  uint64_t quantize = 0;          // quantized from the source dtype
  uint64_t pass = 0;              // bytes copied unchanged
  uint64_t cast = 0;              // converted to the model dtype
  uint64_t recover_quantize = 0;  // recovered (block-FP8, compressed-tensors, FP4) and quantized
  uint64_t recover_cast = 0;      // recovered and written in the model dtype (excluded)
  uint64_t keep_original = 0;     // source bytes kept (--keep-excluded-as-original)
  uint64_t generate = 0;          // written without a source (rotation `input_rotation`)
  uint64_t consumed = 0;          // source tensors read but not written (scales of recovery)
};

// One scheme's share of the plan (built-in name, or a spec file's name).
struct scheme_tensors {
  std::string scheme;
  uint64_t tensors = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
};

// A file copied beside the shards (tokenizer, generation config, ...): path relative to the
// output folder, '/'-separated, and its size.
struct side_file {
  std::string path;
  uint64_t bytes = 0;
};

// Why a run did not finish (empty `kind` when it did).
struct report_error {
  std::string kind;     // "input" | "io" | "usage" | "cancelled" | "internal"
  std::string message;  // the exception's what()
  // input errors: the file, tensor and byte offset named by the message ("" / no offset).
  std::string file, tensor;
  uint64_t offset = ~uint64_t{0};
};

struct run_report {
  // "ok" | "failed" | "cancelled". A returned report is always "ok"; the other two are written
  // to quantize_options::report_json before the error is thrown.
  std::string status = "ok";
  report_error error;
  std::string tool_version;  // shardquant's version, e.g. "0.1.0"
  std::string started_at;    // UTC, ISO 8601 ("2026-01-31T12:00:00Z")
  std::string model_dir;     // the source folder
  std::string output_dir;    // where the quantized checkpoint is
  std::string model_type;    // config.json's model_type ("" when none)
  std::string scheme;        // the scheme's name (a custom spec's "name")
  std::string quant_spec;    // the spec file when the scheme is one ("" for built-in schemes)
  std::vector<std::pair<std::string, std::string>> layer_schemes;  // (glob, scheme), in order
  std::vector<std::string> exclude;  // the resolved exclude list written to the config
  std::string worker;                // "I/N" for one share of a --worker run, else ""
  std::string compress;              // "" or the --compress value ("zstd:3")
  action_counts actions;             // the plan's tensors per action (a worker: its shards')
  std::vector<scheme_tensors> per_scheme;
  uint64_t tensors_out = 0;           // tensors in the output shards
  uint64_t bytes_in = 0;              // source tensor bytes read
  uint64_t bytes_out = 0;             // output file bytes written (headers included)
  std::vector<side_file> side_files;  // copied, in copy order (none for a worker)
  run_timings timings;
  double wall_seconds = 0;  // graph start to final index/config written
  double gb_per_s = 0;      // bytes_in / wall_seconds / 1e9
  stage_times busy;
  uint64_t peak_rss_bytes = 0;     // getrusage(RUSAGE_SELF).ru_maxrss
  uint64_t peak_device_bytes = 0;  // device arena high-water mark (0 on CPU)
  uint64_t memory_budget = 0;      // the budget used (after the automatic choice)
  uint64_t token_bytes = 0;        // size of one host buffer
  uint64_t tokens = 0;             // number of host buffers
  uint64_t peak_live_tokens = 0;   // most buffers held at once (<= tokens)
  uint64_t jobs = 0;               // graph jobs run (tensors and row ranges)
  // Tensors cut into row ranges, and those that got an amax pass first (plan order).
  std::vector<std::string> split_tensors, amax_tensors;
  uint64_t shards_written = 0;
  uint64_t shards_skipped = 0;  // kept from an earlier run (--resume)
  std::string io_engine;        // the engine that actually ran ("uring" | "pread")
  bool direct_io = false;       // O_DIRECT reads were used
  std::string device;           // "cpu" or "cuda:N[,M]"
  unsigned streams = 0;
  std::vector<std::string> warnings;  // every warning of the run, in order
  std::string layout;                 // the output layout written ("quark-f2f" | "quark-importer")
  bool dynamic_activations = false;
  // Schemes whose output will not run correctly in transformers / vLLM with this run's options,
  // with the options that fix them (README "Loading the outputs"); empty when all will.
  std::vector<std::string> loader_notes;
  // The JSON object written by --report (pipeline/output/REPORT.md).
  [[nodiscard]] SHARDQUANT_API std::string to_json() const;
};

}  // namespace shardquant
