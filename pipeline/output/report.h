// The reports of a run and of a dry run (include/shardquant/report.h, plan.h): their JSON (one
// schema, pipeline/output/REPORT.md) and text forms, the facts they take from a plan, peak RSS,
// and the report file's life: its path checked before a run writes anything, and the file
// written atomically at the end whether the run succeeded, failed or was cancelled. No graph
// code; the run fills the measured fields itself (pipeline/api.cpp).
#pragma once

#include <cstdint>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "pipeline/api.h"

namespace shardquant {

struct plan;

// Peak resident set size of this process so far, in bytes (getrusage ru_maxrss).
[[nodiscard]] uint64_t peak_rss_bytes();
// Human-readable summary, several lines.
[[nodiscard]] std::string report_text(const run_report& r);

// The current time, UTC, ISO 8601 to the second ("2026-01-31T12:00:00Z").
[[nodiscard]] std::string utc_now_iso8601();

// Planned tensors per action over the output shards s with `shard_selected[s]` (all shards when
// the vector is empty); consumed tensors counted by the shard they were read from.
[[nodiscard]] action_counts count_actions(const plan& p,
                                          const std::vector<bool>& shard_selected = {});
[[nodiscard]] std::vector<scheme_tensors> scheme_shares(const plan& p);
// What a run report knows once the plan is made (source, scheme, excludes, per-action counts,
// layout, loader notes): filled before any data is read so a failed run's report has them.
void fill_plan_facts(run_report& r, const plan& p);

// The error of a failed run as the report says it (kind, message; file, tensor and offset of
// an input_error).
[[nodiscard]] report_error report_error_of(const std::exception_ptr& e);

// The dry run's report when planning threw `e`: status failed, the error, and the folders and
// scheme the options name.
[[nodiscard]] plan_report failed_plan_report(const quantize_options& o,
                                             const std::exception_ptr& e);

// Refuses (usage_error naming the report and the reason), before anything else happens, a report
// path the run could not write at the end: a folder, a path in a missing folder (except the
// output folder itself, which the run creates) or in a folder where a file cannot be created.
// Creates nothing that stays (a probe file is created and removed).
void check_report_path(const std::filesystem::path& report, const std::filesystem::path& output);

// Writes `json` to `report` atomically. Never throws: a report that cannot be written is a
// warning (returned as the message; "" on success), so the run's own error is what the caller
// sees.
[[nodiscard]] std::string write_report_noexcept(const std::filesystem::path& report,
                                                const std::string& json) noexcept;

}  // namespace shardquant
