// What a quantization run did (public): run_report, the value quantize_checkpoint returns and
// --report writes. A leaf: only the standard library and the export macro.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shardquant/export.h"

namespace shardquant {

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
  // Side files not copied because a --skip-side-files glob matched (relative paths).
  std::vector<std::string> side_files_skipped;
  // The JSON object written by --report.
  [[nodiscard]] SHARDQUANT_API std::string to_json() const;
};

}  // namespace shardquant
