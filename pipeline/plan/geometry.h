// The run's geometry, decided in one place (issue 13): the memory budget, how it is cut into
// tokens, and how every planned tensor is cut into jobs (row splits, amax passes), by the job
// builder's own rule (pipeline/run/jobs.h cut_part). quantize_checkpoint and plan_checkpoint (the
// dry run) both call decide_geometry, so the plan a user reads is the run that happens. Owns no
// I/O and no graph; never reads tensor data.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/zstd_source.h"
#include "pipeline/plan/plan.h"
#include "pipeline/run/token_pool.h"

namespace shardquant {

struct run_geometry {
  uint64_t budget = 0;         // bytes of host buffers
  bool budget_chosen = false;  // picked automatically (the options gave 0)
  token_geometry tokens;       // the budget less zstd_reserve as `count` buffers of `token_bytes`
  // Compressed source shards: the decompression contexts' share of the budget and the limits
  // that keep them in it (io/zstd_source.h); unset without compressed shards.
  uint64_t zstd_reserve = 0;
  std::optional<zstd_read_limits> zstd;
  uint64_t jobs = 0;  // graph jobs of every shard (amax jobs included)
  // Parts cut into row ranges (plan order), and those of them that get an amax pass first.
  std::vector<std::string> split_tensors, amax_tensors;
};

// The budget a run uses: `requested` when not 0; otherwise default_memory_budget() (half of
// what is free) but no more than the checkpoint can use: twice its shard bytes (inputs plus
// outputs in flight), at least 256 MiB. Pinning 16 GiB for a 50 MB model costs seconds for
// nothing.
[[nodiscard]] uint64_t run_budget(uint64_t requested, const source_checkpoint& source);

// Chooses the budget and tokens and cuts every part of `p` into jobs: sets each part's
// split_rows / amax_pass and p.totals.amax_pass. Throws usage_error for a budget below two
// minimum tokens and input_error for a tensor whose one row does not fit a token.
[[nodiscard]] run_geometry decide_geometry(plan& p, uint64_t requested_budget);

}  // namespace shardquant
