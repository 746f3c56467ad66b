// The CPU bodies of the recover / convert / quantize nodes: everything a job does to the bytes
// in its token between read and write (gather a strided converter slice, recover block-FP8 rows
// to F32, cast pass-through elements, fold an amax, quantize a row range through
// kernels/quantize.h). Also the amax gate that holds a split per-tensor-scheme tensor's quantize
// jobs until its amax is complete. No file I/O, no graph.
#pragma once

#include <vector>

#include "kernels/recover_tensors.h"
#include "stages/compute_backend.h"
#include "stages/job.h"

namespace shardquant {

// Moves the read bytes to where the job's input lies contiguously (job.data_pos): gathers the
// runs of a strided slice; a copy job moves its bytes to its write position. Sets data_pos and
// scale_data_pos. Cheap; called first by every compute backend.
void arrange_input(job& j);

// The recovery description of a block-FP8 job whose weight codes (rows of the range) and whole
// scale tensor lie at `weight` and `scale` (host or device pointers). Throws input_error for a
// weight or scale dtype recovery does not take.
[[nodiscard]] fp8_block_source fp8_block_source_of(const job& j, const void* weight,
                                                   const void* scale);

// Recovers the job's rows (block FP8 or compressed-tensors) to F32 at work_pos; false when the
// job has no recovery. Call after arrange_input(). Throws input_error on bad codes or scales.
bool recover_rows(job& j);

// The dtype of the rows recover_rows() leaves at work_pos: F32, or BF16/F16 for FP4-packed
// sources (their reference values are 16-bit). Call before recover_rows() clears anything.
[[nodiscard]] dtype recovered_type_of(const job& j);

// Runs the job's CPU work (kinds copy, cast, amax, quantize) in its token and leaves every output
// piece at its token_pos. Throws input_error naming the source file and tensor on bad data
// (non-finite weights, NaN FP8 codes, bad scales).
void run_cpu_compute(job& j);
// run_cpu_compute, with its outcome (nullptr, or the exception it threw) passed to `done`: how a
// backend hands a job to the CPU path.
void run_cpu_compute_then(job& j, const compute_done& done);

// Amax gate. After an amax job computed its range's amax: folds it into the tensor and, for the
// last amax job of the tensor, returns the quantize jobs parked meanwhile (to be put back into
// the graph). Throws input_error for a non-finite range.
[[nodiscard]] std::vector<job*> fold_amax(job& j, float range_amax);
// For a quantize job of a split per-tensor tensor: true when the amax is not complete yet; the
// job is then parked and fold_amax() hands it back later.
[[nodiscard]] bool park_until_amax(job& j);
// The tensor's amax, once complete.
[[nodiscard]] float tensor_amax_of(const job& j);

}  // namespace shardquant
