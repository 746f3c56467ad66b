// `shardquant verify`: proves that an output checkpoint is sound against its source. Rebuilds the
// plan the output config records (scheme, excludes, per-layer overrides, keep-original modules),
// then checks every output shard against the safetensors rules and the planned layout, the index
// against the files, config.json against what the exporter writes, every pass-through tensor
// byte for byte (or as the §4.3 cast), and every quantized tensor decoded (kernels/dequantize.h)
// against its source (recovered when the source is quantized): error norms, NaN/Inf and the
// per-element bound of its format. Reads one tensor or row range at a time under a memory
// budget; never writes anything. Owns no math and no file format.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kernels/dtype.h"

namespace shardquant {

struct verify_options {
  std::filesystem::path input;   // the source checkpoint directory
  std::filesystem::path output;  // the quantized checkpoint to check
  uint64_t memory_budget = 0;    // bytes of read and work buffers; 0 = default_memory_budget()
  std::string device = "cpu";    // only "cpu" decodes today
  bool quiet = true;             // no progress lines on stderr
};

// A structural problem or a bound violation: file, tensor (may be empty), byte offset in the
// file (input_error::no_offset when none applies) and what is wrong.
struct verify_problem {
  std::string file;
  std::string tensor;
  uint64_t offset = ~uint64_t{0};
  std::string message;
  [[nodiscard]] std::string to_string() const;
};

// The comparison of one quantized tensor with its source.
struct tensor_verdict {
  std::string name;    // the output weight name
  std::string shard;   // its output shard (relative path)
  std::string scheme;  // the built-in name, or "custom" (the config does not record a spec's name)
  std::vector<uint64_t> shape;
  uint64_t elements = 0;
  double rel_l2 = 0;        // ||dequant - source|| / ||source|| (0 when the source is all zero)
  double max_abs = 0;       // max |dequant - source|
  uint64_t non_finite = 0;  // NaN/Inf among the dequantized values
  uint64_t violations = 0;  // elements outside their format's bound
};

struct scheme_verdict {
  std::string scheme;
  uint64_t tensors = 0;
  uint64_t elements = 0;
  double mean_rel_l2 = 0;  // over its tensors
  double worst_rel_l2 = 0;
  double max_abs = 0;
  uint64_t violations = 0;
  uint64_t non_finite = 0;
};

struct verify_report {
  std::string output_dir;
  bool sound = true;  // no problem of any kind
  std::vector<verify_problem> problems;
  std::vector<tensor_verdict> quantized;  // in plan order
  std::vector<scheme_verdict> per_scheme;
  uint64_t shards = 0;
  uint64_t passed_through = 0;  // pass-through / kept tensors compared byte for byte
  uint64_t cast = 0;            // pass-through tensors compared with the §4.3 cast of the source
  uint64_t recovered = 0;       // quantized tensors whose source was recovered first (§7)
  uint64_t bytes_read = 0;      // source and output bytes read
  double seconds = 0;
  uint64_t memory_budget = 0;
  // The `--json` object: verdict, problems, per-scheme summary, every quantized tensor.
  [[nodiscard]] std::string to_json() const;
  // The text summary: per scheme, the worst tensors, the problems.
  [[nodiscard]] std::string to_text(size_t worst = 5) const;
};

// Runs every check. Problems in the output are collected in the report (sound = false), not
// thrown; a source that cannot be opened or an output without a readable config.json throws
// input_error / io_error, and bad options usage_error.
[[nodiscard]] verify_report verify_checkpoint(const verify_options& options);

}  // namespace shardquant
