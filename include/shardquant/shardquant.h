// The public C++ API of shardquant (installed as include/shardquant/; link
// shardquant::shardquant from find_package(shardquant), or `pkg-config shardquant`): quantize
// one checkpoint directory into another under a fixed memory budget and return what happened,
// or plan it without running (plan.h). Errors are the typed errors of errors.h: input_error for
// bad input, io_error for a failing system call, usage_error for bad options. Every header here
// is a leaf over the standard library: nothing internal is reachable from it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shardquant/errors.h"
#include "shardquant/export.h"
#include "shardquant/options.h"
#include "shardquant/plan.h"
#include "shardquant/progress.h"
#include "shardquant/report.h"

namespace shardquant {

// Plans, runs the graph and finalizes the output directory. Throws input_error, io_error or
// usage_error; on any error no output shard is left under its final name by this run.
[[nodiscard]] SHARDQUANT_API run_report quantize_checkpoint(const quantize_options& options);

// The budget picked when options.memory_budget is 0: half of MemAvailable, clamped to
// [256 MiB, 16 GiB] (a run also caps it at twice the checkpoint's size).
[[nodiscard]] SHARDQUANT_API uint64_t default_memory_budget();

// The library's version, e.g. "0.1.0" (the program's `--version`).
[[nodiscard]] SHARDQUANT_API const char* version() noexcept;

// One built-in scheme: its name (formats.md §5.1) and what it writes.
struct scheme_entry {
  std::string name;
  std::string help;
};
// Every built-in scheme, in table order (`shardquant schemes`).
[[nodiscard]] SHARDQUANT_API std::vector<scheme_entry> schemes();

// `shardquant inspect --json PATH` as a JSON text: tensors, dtypes, shapes, bytes, per-dtype
// totals and the quantization_config of a .safetensors file or a checkpoint directory. Reads
// headers and config.json only. Throws input_error / io_error.
[[nodiscard]] SHARDQUANT_API std::string inspect(const std::string& path);

}  // namespace shardquant
