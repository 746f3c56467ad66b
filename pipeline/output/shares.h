// Shares of one checkpoint for workers on several machines (`quantize --worker I/N`, then
// `finalize`): which worker owns which source shard, a worker's identity from the command line or
// from the scheduler's environment (Slurm job arrays, Kubernetes Indexed Jobs), and the names of
// a worker's lock and journal files in the shared output folder. Pure: names and sizes in, owners
// out; no files, no plan, no graph.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace shardquant {

// Worker `index` of `count` (0 <= index < count).
struct worker_id {
  uint32_t index = 0;
  uint32_t count = 1;
  [[nodiscard]] std::string label() const;  // "2/4"
  friend bool operator==(const worker_id&, const worker_id&) = default;
};

// The owner of each shard, given (name, bytes) of every source shard: sorted by bytes (largest
// first, ties by name), each shard goes to the least loaded worker so far (ties: lowest index).
// Deterministic in the set of shards alone (their order in `shards` does not matter), so every
// worker computes the same assignment from the headers without talking to the others.
[[nodiscard]] std::vector<uint32_t> assign_shares(
    const std::vector<std::pair<std::string, uint64_t>>& shards, uint32_t count);

// Reads an environment variable; nullptr when unset (std::getenv by default, a map in tests).
using env_lookup = std::function<const char*(const char*)>;

// `spec` is "I/N" (I from 0 to N-1) or "auto":
//   Slurm: SLURM_ARRAY_TASK_ID, minus SLURM_ARRAY_TASK_MIN (0 when unset), divided by
//          SLURM_ARRAY_TASK_STEP (1 when unset); N from SLURM_ARRAY_TASK_COUNT, else from
//          SLURM_ARRAY_TASK_MAX (N = (MAX - MIN) / STEP + 1);
//   Kubernetes Indexed Job: JOB_COMPLETION_INDEX, N from `workers` (--workers) or else
//          SHARDQUANT_WORKERS.
// `workers` (0 = not given) must agree with N when both are known. Throws usage_error.
[[nodiscard]] worker_id parse_worker(const std::string& spec, uint32_t workers,
                                     const env_lookup& env = {});

// Files of worker I/N in the output folder: ".shardquant-journal-worker-I-of-N" and
// ".shardquant-lock-worker-I-of-N"; the finalize lock ".shardquant-lock-finalize".
[[nodiscard]] std::string worker_journal_name(const worker_id& w);
[[nodiscard]] std::string worker_lock_name(const worker_id& w);
inline constexpr const char* finalize_lock_name = ".shardquant-lock-finalize";
// The worker a file name ".shardquant-journal-worker-I-of-N" belongs to; nullopt otherwise.
[[nodiscard]] std::optional<worker_id> worker_of_journal_name(const std::string& file_name);

}  // namespace shardquant
