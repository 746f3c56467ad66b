// A run split over machines, around the graph: which shards of a plan a worker writes (and the
// check that it overwrites nothing it should not), and `finalize`, which verifies that every
// worker published its shards with the same plan and options, then writes the index, config.json
// and side files once (pipeline/output/finalize.h) and removes the workers' journals and locks. The
// assignment itself lives in pipeline/output/shares.h. No graph, no math.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/api.h"
#include "pipeline/output/journal.h"
#include "pipeline/output/shares.h"
#include "pipeline/plan/plan.h"

namespace shardquant {

// The journal entry (no file of that name) where a worker records the keys of its source and
// options and, as its size, the number of workers: finalize refuses shares made otherwise.
inline constexpr const char* worker_options_entry = "@options";
[[nodiscard]] shard_inputs worker_options_inputs(const std::string& sources_key,
                                                 const std::string& options_key,
                                                 const worker_id& w);

// Removes every temporary (io/file.h names them "." + file name + ".sq-tmp-PID-N") of the shard
// whose final path is `final_path`, whoever left it: for a caller that holds the lock of everyone
// who writes that shard (its worker, or finalize holding every worker's lock).
void remove_shard_temporaries(const std::filesystem::path& final_path);

// The owner of each output shard of `p` (1:1 with its source shards) among `count` workers,
// balanced by source shard bytes.
[[nodiscard]] std::vector<uint32_t> shard_owners(const plan& p, uint32_t count);

// shard_owners for worker `w`. With existing_output::fail, throws usage_error when one of the
// worker's own shards is already in the output folder (other workers' files are expected there).
[[nodiscard]] std::vector<uint32_t> worker_shares(const plan& p, const worker_id& w,
                                                  existing_output existing,
                                                  const std::filesystem::path& output);

struct finalize_report {
  uint32_t workers = 0;          // N of the shares found
  uint64_t shards = 0;           // output shards checked
  bool already_done = false;     // no journals left and the output was complete: nothing written
  std::vector<std::string> log;  // one line per notable step, for the CLI
};

// `finalize`: o.input, o.output and the options that shape bytes as the workers got them;
// o.worker_count = the number of workers when known (0: read from the journals' names).
// Takes the finalize lock, the single run's folder lock and every worker's lock (refusing while
// a worker runs), then checks every share against the plan (journal keys and file sizes; the
// checksums are the workers' --resume's to check); throws input_error naming each missing or
// mismatched shard and the worker that owns it ("worker 2/4 has not published
// model-00003-of-00004.safetensors"). Running it again after success finds no journals and a
// complete output, and does nothing.
[[nodiscard]] finalize_report finalize_shares(const quantize_options& o);

}  // namespace shardquant
