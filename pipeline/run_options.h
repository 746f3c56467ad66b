// quantize_options (the public API's value type) -> what the plan, the backends, the journal and
// finalize take: scheme names and spec files resolved, converters parsed, the device string
// resolved to device numbers, the text of every option that shapes output bytes (part of each
// shard's journal key) and what finalize_output needs. Shared by quantize_checkpoint,
// plan_checkpoint and finalize_shares (pipeline/output/share_finalize.h) so all read options one
// way. No I/O beyond reading spec files; no graph.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/async_io.h"
#include "pipeline/api.h"
#include "pipeline/output/finalize.h"
#include "pipeline/plan/plan.h"

namespace shardquant {

// Throws usage_error (unknown scheme, both scheme and spec given, bad converter or layout) or
// input_error (a bad spec file).
[[nodiscard]] plan_options plan_options_of(const quantize_options& o);

// The device a run uses: "auto" is "cuda" when this build has CUDA and a device is visible,
// else "cpu"; anything else is returned as given.
[[nodiscard]] std::string resolve_device(const std::string& device);

// "cpu" -> {}, "cuda" -> {0}, "cuda:N[,M...]" -> {N, M...}; "auto" is resolved first. Throws
// usage_error.
[[nodiscard]] std::vector<int> parse_devices(const std::string& device);

// What changes output bytes without changing the layout (part of each shard's resume key).
[[nodiscard]] std::string options_text(const quantize_options& o, const plan_options& po);
// The name a source shard's output is published under: `relative_path`, or with `.zst` appended
// when the run compresses its output (io/zstd_writer.h).
[[nodiscard]] std::string published_shard_name(const std::string& relative_path,
                                               const quantize_options& o);
// The I/O engine of a run (io/io_engine.h's table; the public io_engine_kind maps onto it here
// and nowhere else): `automatic` is the first engine that can be set up on this machine (its
// fallback_reason() says why others were skipped), another kind exactly that engine (io_error
// when it cannot be set up).
[[nodiscard]] std::unique_ptr<async_io> make_io_engine(io_engine_kind k, unsigned queue_depth);

// Index, config and side-file inputs of a finished run of plan `p` (warn left empty).
[[nodiscard]] finalize_inputs finalize_inputs_of(const plan& p, const quantize_options& o);

}  // namespace shardquant
