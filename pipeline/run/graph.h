// The oneTBB flow graph that executes a plan: jobs from the job builder join tokens (reserving
// join: a job enters only with a free host buffer), then read (async I/O) -> compute (recover,
// convert, quantize; CPU or CUDA backend, completion through an async_node gateway) -> write
// (async I/O at precomputed offsets) -> done (token back to the pool; the last job of a shard
// commits it). An error anywhere cancels the graph and resurfaces from run_graph(); temporary
// files of unfinished shards are removed, so no partial file gets a final name.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "io/async_io.h"
#include "pipeline/run/jobs.h"
#include "pipeline/run/token_pool.h"
#include "stages/compute_backend.h"

namespace shardquant {

// Counters the progress reporter samples while the graph runs.
struct graph_counters {
  std::atomic<uint64_t> bytes_done{0};   // input bytes of finished jobs
  std::atomic<uint64_t> bytes_out{0};    // output bytes written
  std::atomic<uint64_t> shards_done{0};  // committed shards
  std::atomic<uint64_t> jobs_done{0};
  // Busy time per stage, in nanoseconds summed over jobs.
  std::atomic<uint64_t> read_ns{0}, compute_ns{0}, write_ns{0};
};

struct graph_run {
  const plan* p = nullptr;
  job_builder* builder = nullptr;
  token_pool* pool = nullptr;
  async_io* io = nullptr;
  compute_backend* backend = nullptr;
  std::vector<uint32_t> shards;  // output shards to produce, in order
  graph_counters* counters = nullptr;
  // Set (from any thread, or a signal handler) to stop the run: checked before each job is fed
  // and before each job starts reading; the graph then stops as on an error, throwing
  // cancelled_error. May be null.
  const std::atomic<bool>* cancel = nullptr;
  // Called when the graph starts a shard (its temporary file exists, nothing read yet).
  std::function<void(const shard_state&)> on_shard_started;
  // Called after a shard has been committed (renamed into place), from a graph worker.
  std::function<void(const shard_state&)> on_shard_committed;
};

// Runs the graph to completion. Rethrows the first error after every in-flight request has
// finished (no callback outlives this call).
void run_graph(graph_run& r);

}  // namespace shardquant
