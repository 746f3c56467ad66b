// The plan's rotation step (issue 15): resolves plan_options::rotation against the source
// headers and config.json (pipeline/plan/rotation.h), gives each rotated weight part its rotation
// steps and row multiple, and adds one generated I8 `input_rotation` part per online module to the
// weight's output shard. Called by the planner before the shard layouts are made.
#pragma once

#include <string>

#include "pipeline/plan/plan.h"

namespace shardquant {

// Throws usage_error with Quark's reason for a refused configuration.
void plan_rotations(plan& p);

// The rows a range of `part` must be a multiple of because of its rotations (1: none).
[[nodiscard]] uint64_t rotation_row_multiple(const plan_part& part);

// One line for the dry run, e.g. "rotated: online Hadamard 4096 (in, source dtype), R2 128 (out,
// float64; row ranges hold whole blocks of 128 rows)".
[[nodiscard]] std::string rotation_text(const plan_part& part);

}  // namespace shardquant
