// How much memory this process may use: physical memory (/proc/meminfo MemTotal, MemAvailable)
// and the cgroup v2 limit of its control group (memory.max of its group and every parent,
// "max" meaning no limit; memory.current for what the group already uses). Used to refuse a
// --memory-budget the machine or container cannot give and to choose the automatic budget.
// Reads files only; no pipeline, no graph.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace shardquant {

struct memory_limits {
  uint64_t physical = 0;               // MemTotal (0 = unknown)
  uint64_t available = 0;              // MemAvailable (0 = unknown)
  std::optional<uint64_t> cgroup_max;  // smallest memory.max on the group's path; nullopt: none
  uint64_t cgroup_current = 0;         // memory.current of the group (0 = unknown)
  std::string cgroup_file;             // the memory.max file that set cgroup_max
  // The most a budget may be: physical memory, or the cgroup limit when smaller (0 = unknown).
  [[nodiscard]] uint64_t ceiling() const noexcept;
  // Memory free for a new budget: MemAvailable, or the cgroup's headroom when smaller.
  [[nodiscard]] uint64_t free() const noexcept;
};

// Reads the limits from `root`/proc and `root`/sys/fs/cgroup (root "/" = this machine; tests
// pass a fake tree). Missing or unreadable files count as "unknown", never as an error.
[[nodiscard]] memory_limits read_memory_limits(const std::filesystem::path& root = "/");

// Throws usage_error when `budget` exceeds limits.ceiling(), naming both and where the limit
// comes from.
void check_memory_budget(uint64_t budget, const memory_limits& limits);

}  // namespace shardquant
