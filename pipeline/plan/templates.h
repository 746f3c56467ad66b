// Quark's LLMTemplate defaults (formats.md Appendix A, §3.8): per model type, the default
// exclude globs and the weight converters. Pure data; no files.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pipeline/plan/converters.h"

namespace shardquant {

struct model_template {
  std::string_view model_type;
  std::vector<std::string> exclude;
  bool fused_expert_converters = false;  // Appendix A "+ converters"
  [[nodiscard]] std::vector<converter> converters() const;
};

// Every template, in Appendix A order.
[[nodiscard]] std::span<const model_template> all_templates();
// nullptr for an unknown model type.
[[nodiscard]] const model_template* find_template(std::string_view model_type);

// The model type of a config.json (§3.8): model_type, else architectures[0]; "" if neither.
// Declared here, implemented with the plan (it reads JSON).

// The default exclude list for `model_type`; throws usage_error listing the known types and
// how to pass an explicit list (--exclude PATTERN ..., or --exclude alone for none) when the
// type is unknown.
[[nodiscard]] const model_template& template_or_throw(std::string_view model_type);

}  // namespace shardquant
