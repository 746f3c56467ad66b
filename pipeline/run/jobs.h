// Turns the plan into graph jobs, one output shard at a time: one job per tensor, or per row
// range (per byte range for plain copies and casts) when it does not fit one token; split
// per-tensor-scheme tensors get their amax jobs first. Fixes each job's file ranges, output
// offsets and token layout. Opens the shard's temporary output file (header written) when its
// jobs are made. No graph code, no math.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "io/tensor_source.h"
#include "pipeline/plan/plan.h"
#include "stages/job.h"

namespace shardquant {

// How the jobs of one plan part are cut: the one rows-per-job rule (issue 13), used by the job
// builder and by the run geometry (pipeline/plan/geometry.h) that the dry run and the report show.
struct part_cut {
  bool row_ranges = false;  // row ranges (quantize, recover, strided); else byte/element ranges
  uint64_t per_job = 0;     // rows (or elements) per job
  uint64_t main_jobs = 0;   // jobs writing output (0: an empty tensor, nothing to move)
  uint64_t amax_jobs = 0;   // amax jobs run first (split per-tensor schemes)
  [[nodiscard]] bool split() const noexcept { return main_jobs > 1; }
};
// Throws input_error for a tensor whose single row (or row group) does not fit one token.
[[nodiscard]] part_cut cut_part(const plan& p, const plan_item& item, const plan_part& part,
                                uint64_t token_bytes);

class job_builder {
 public:
  // `token_bytes`: the size of one token; `direct_io`: open files with O_DIRECT where possible.
  job_builder(const plan& p, std::filesystem::path output_dir, uint64_t token_bytes,
              bool direct_io);

  // Creates output shard `s` (temporary file with its header) and every job writing it, in
  // plan order, with sequence numbers from `seq`. Throws input_error for a tensor whose single
  // row (or row group) does not fit one token, naming it and the budget needed.
  [[nodiscard]] std::vector<std::unique_ptr<job>> make_shard(uint32_t s, shard_state& state,
                                                             uint64_t& seq);

  // Output shards are published compressed (io/zstd_writer.h).
  void set_compression(std::optional<zstd_compress_options> c) { compress_ = c; }

  // Source bytes shard `s`'s jobs read once (the progress total; amax passes not counted).
  [[nodiscard]] uint64_t shard_input_bytes(uint32_t s) const;

 private:
  std::shared_ptr<tensor_source> source_file(uint32_t shard);
  void add_part_jobs(const plan_item& item, const plan_part& part, shard_state& state,
                     std::vector<std::unique_ptr<job>>& out, uint64_t& seq);
  void add_flat_jobs(const plan_item& item, const plan_part& part, shard_state& state,
                     std::vector<std::unique_ptr<job>>& out, uint64_t& seq);
  void add_row_jobs(const plan_item& item, const plan_part& part, shard_state& state,
                    std::vector<std::unique_ptr<job>>& out, uint64_t& seq);

  const plan& plan_;
  std::filesystem::path output_dir_;
  uint64_t token_bytes_;
  bool direct_;
  std::vector<std::shared_ptr<tensor_source>> sources_;  // opened when first read
  std::optional<zstd_compress_options> compress_;
};

}  // namespace shardquant
