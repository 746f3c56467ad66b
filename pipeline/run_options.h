// What quantize_checkpoint and finalize_shares (pipeline/share_finalize.h) both derive from
// quantize_options: the plan options, the text of every option that shapes output bytes (part of
// each shard's journal key), and what finalize_output needs. Defined in api.cpp next to their
// first user. No graph.
#pragma once

#include <string>

#include "pipeline/api.h"
#include "pipeline/finalize.h"
#include "pipeline/plan.h"

namespace shardquant {

// Scheme names and spec files resolved, converters parsed; token_bytes left 0.
[[nodiscard]] plan_options plan_options_of(const quantize_options& o);
// What changes output bytes without changing the layout (part of each shard's resume key).
[[nodiscard]] std::string options_text(const quantize_options& o, const plan_options& po);
// Index, config and side-file inputs of a finished run of plan `p` (warn left empty).
// The name a source shard's output is published under: `relative_path`, or with `.zst` appended
// when the run compresses its output (io/zstd_writer.h).
[[nodiscard]] std::string published_shard_name(const std::string& relative_path,
                                               const quantize_options& o);
[[nodiscard]] finalize_inputs finalize_inputs_of(const plan& p, const quantize_options& o);

}  // namespace shardquant
