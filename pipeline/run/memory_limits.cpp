// Physical and cgroup v2 memory limits from /proc and /sys/fs/cgroup.
#include "pipeline/run/memory_limits.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "io/error.h"

namespace shardquant {

namespace {

std::optional<uint64_t> read_number_file(const std::filesystem::path& p, bool* is_max = nullptr) {
  std::ifstream in(p);
  std::string s;
  if (!(in >> s)) return std::nullopt;
  if (s == "max") {
    if (is_max) *is_max = true;
    return std::nullopt;
  }
  try {
    size_t used = 0;
    const uint64_t v = std::stoull(s, &used);
    if (used != s.size()) return std::nullopt;
    return v;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string human(uint64_t b) {
  char buf[48];
  if (b >= (uint64_t{1} << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / double(uint64_t{1} << 30));
  else
    std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(b) / double(uint64_t{1} << 20));
  return buf;
}

}  // namespace

uint64_t memory_limits::ceiling() const noexcept {
  if (cgroup_max && (physical == 0 || *cgroup_max < physical)) return *cgroup_max;
  return physical;
}

uint64_t memory_limits::free() const noexcept {
  uint64_t f = available;
  if (cgroup_max) {
    const uint64_t headroom = *cgroup_max > cgroup_current ? *cgroup_max - cgroup_current : 0;
    f = f == 0 ? headroom : std::min(f, headroom);
  }
  return f;
}

memory_limits read_memory_limits(const std::filesystem::path& root) {
  memory_limits m;
  {
    std::ifstream in(root / "proc/meminfo");
    std::string key, unit;
    uint64_t kib = 0;
    while (in >> key >> kib >> unit) {
      if (key == "MemTotal:") m.physical = kib * 1024;
      if (key == "MemAvailable:") m.available = kib * 1024;
    }
  }
  // cgroup v2: the line "0::/PATH"; the limit is the smallest memory.max from the group up.
  std::ifstream cg(root / "proc/self/cgroup");
  std::string line, group;
  while (std::getline(cg, line))
    if (line.rfind("0::", 0) == 0) group = line.substr(3);
  if (group.empty() || group.front() != '/') return m;
  const std::filesystem::path base = root / "sys/fs/cgroup";
  std::filesystem::path rel = std::filesystem::path(group).relative_path();
  if (auto cur = read_number_file(base / rel / "memory.current")) m.cgroup_current = *cur;
  for (;;) {
    const auto file = base / rel / "memory.max";
    if (auto v = read_number_file(file); v && (!m.cgroup_max || *v < *m.cgroup_max)) {
      m.cgroup_max = v;
      m.cgroup_file = file.lexically_normal().string();
    }
    if (rel.empty()) break;
    rel = rel.parent_path();
  }
  return m;
}

void check_memory_budget(uint64_t budget, const memory_limits& limits) {
  const uint64_t ceiling = limits.ceiling();
  if (ceiling == 0 || budget <= ceiling) return;
  const bool by_cgroup = limits.cgroup_max && *limits.cgroup_max == ceiling;
  throw usage_error("--memory-budget " + human(budget) + " is more than this " +
                    (by_cgroup ? "container may use (cgroup limit " + human(ceiling) + " in " +
                                     limits.cgroup_file + ")"
                               : "machine has (" + human(ceiling) + " of physical memory)") +
                    "; give a smaller budget or 'auto'");
}

}  // namespace shardquant
