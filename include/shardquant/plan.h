// What a run would do, without running it (public): plan_report and plan_checkpoint, the dry
// run. Includes only the standard library and the public options and report headers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "shardquant/export.h"
#include "shardquant/options.h"
#include "shardquant/report.h"

namespace shardquant {

struct plan;  // pipeline/plan/plan.h: every decision about every tensor (internal)

// What a run of the same options would do, from headers and config.json only (no tensor data
// read, the output folder untouched): the --dry-run of the CLI. Its JSON has the run report's
// schema where a field means the same (pipeline/output/REPORT.md).
struct plan_report {
  // "ok" for a returned plan; the CLI's --dry-run --report writes "failed" with the error when
  // planning throws.
  std::string status = "ok";
  report_error error;
  std::string model_dir;
  std::string output_dir;  // the folder the run would write (as given; "" when none)
  std::string model_type;  // "" when config.json names none
  std::string scheme;      // the scheme's name (a spec file's name for custom specs)
  std::string quant_spec;  // the spec file when the scheme is one
  std::vector<std::pair<std::string, std::string>> layer_schemes;  // (glob, scheme), in order
  std::string device;  // the device the run would use ("cpu" or "cuda[:N]")
  std::string layout;  // the output layout ("quark-f2f" | "quark-importer")
  bool dynamic_activations = false;
  action_counts actions;  // planned tensors per action, as in run_report
  std::vector<scheme_tensors> per_scheme;
  uint64_t shards = 0;
  uint64_t tensors_out = 0;
  uint64_t quantized = 0;  // tensors quantized (recovered ones included)
  uint64_t bytes_in = 0;   // source tensor bytes
  uint64_t bytes_out = 0;  // output tensor bytes
  // The run geometry, the same decision quantize_checkpoint makes (pipeline/plan/geometry.h).
  uint64_t memory_budget = 0;
  bool budget_chosen = false;  // picked from free memory and the checkpoint size
  uint64_t token_bytes = 0;
  uint64_t tokens = 0;
  uint64_t jobs = 0;
  std::vector<std::string> split_tensors, amax_tensors;
  std::vector<std::string> exclude;       // the resolved exclude list written to the config
  std::vector<std::string> warnings;      // also passed to quantize_options::on_warning
  std::vector<std::string> loader_notes;  // as in run_report
  // The whole plan, for callers that link the internal headers (the CLI prints it).
  std::shared_ptr<const plan> detail;
  // The JSON object of these fields (the CLI's --dry-run --report adds every tensor).
  [[nodiscard]] SHARDQUANT_API std::string to_json() const;
};

// Plans the run `options` describe without running it. Reads only headers and config.json;
// ignores `output`. Throws like quantize_checkpoint.
[[nodiscard]] SHARDQUANT_API plan_report plan_checkpoint(const quantize_options& options);

}  // namespace shardquant
