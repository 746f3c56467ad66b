// quantize_options (the public API's value type) -> what the plan and the backends take: scheme
// names and spec files resolved, converters parsed, the device string resolved to device
// numbers. Shared by quantize_checkpoint and plan_checkpoint so both read options one way.
// No I/O beyond reading spec files; no graph.
#pragma once

#include <string>
#include <vector>

#include "pipeline/api.h"
#include "pipeline/plan.h"

namespace shardquant {

// Throws usage_error (unknown scheme, both scheme and spec given, bad converter) or
// input_error (a bad spec file).
[[nodiscard]] plan_options plan_options_of(const quantize_options& o);

// The device a run uses: "auto" is "cuda" when this build has CUDA and a device is visible,
// else "cpu"; anything else is returned as given.
[[nodiscard]] std::string resolve_device(const std::string& device);

// "cpu" -> {}, "cuda" -> {0}, "cuda:N[,M...]" -> {N, M...}; "auto" is resolved first. Throws
// usage_error.
[[nodiscard]] std::vector<int> parse_devices(const std::string& device);

}  // namespace shardquant
