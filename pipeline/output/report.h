// The end-of-run report: measurements (peak RSS from getrusage) and its text and JSON forms
// (run_report is declared in pipeline/api.h). No graph code.
#pragma once

#include <cstdint>
#include <string>

#include "pipeline/api.h"

namespace shardquant {

// Peak resident set size of this process so far, in bytes (getrusage ru_maxrss).
[[nodiscard]] uint64_t peak_rss_bytes();
// Human-readable summary, several lines.
[[nodiscard]] std::string report_text(const run_report& r);

}  // namespace shardquant
