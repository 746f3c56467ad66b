// decide_geometry: budget -> tokens -> per-part job cuts (the job builder's rule).
#include "pipeline/plan/geometry.h"

#include <algorithm>

#include "pipeline/api.h"
#include "pipeline/run/jobs.h"

namespace shardquant {

uint64_t run_budget(uint64_t requested, const source_checkpoint& source) {
  if (requested) return requested;
  uint64_t source_bytes = 0;
  for (const auto& sh : source.shards) source_bytes += sh.header.file_size;
  return std::min(default_memory_budget(), std::max(uint64_t{256} << 20, 2 * source_bytes));
}

run_geometry decide_geometry(plan& p, uint64_t requested_budget) {
  run_geometry g;
  g.budget = run_budget(requested_budget, p.source);
  g.budget_chosen = requested_budget == 0;
  // Compressed shards: their decompression contexts are part of the budget (io/zstd_source.h).
  uint64_t window = 0;
  std::string widest;
  for (const auto& sh : p.source.shards)
    if (sh.compressed && sh.zstd_window >= window) {
      window = sh.zstd_window;
      widest = sh.path.string();
    }
  if (!widest.empty()) {
    g.zstd = zstd_limits_for_budget(g.budget, window, widest);
    g.zstd_reserve = std::min(g.zstd->context_limit, g.budget / 2);
  }
  g.tokens = choose_token_geometry(g.budget - g.zstd_reserve);
  p.totals.amax_pass = 0;
  // Shard by shard in plan order, as the job builder makes them (jobs.cpp make_shard).
  for (uint32_t s = 0; s < p.shards.size(); ++s)
    for (uint32_t ii : p.shards[s].items)
      for (auto& part : p.items[ii].parts) {
        if (part.output_shard != s) continue;
        const part_cut c = cut_part(p, p.items[ii], part, g.tokens.token_bytes);
        g.jobs += c.main_jobs + c.amax_jobs;
        part.split_rows = c.row_ranges && c.split() ? c.per_job : 0;
        part.amax_pass = c.amax_jobs > 0;
        if (part.split_rows) g.split_tensors.push_back(part.name);
        if (part.amax_pass) {
          g.amax_tensors.push_back(part.name);
          ++p.totals.amax_pass;
        }
      }
  return g;
}

}  // namespace shardquant
