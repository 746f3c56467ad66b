// Shares: longest-processing-time assignment of shards to workers and worker identities.
#include "pipeline/output/shares.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <numeric>

#include "io/error.h"

namespace shardquant {
namespace {

constexpr uint32_t k_max_workers = 1u << 20;
constexpr std::string_view k_journal_prefix = ".shardquant-journal-worker-";

// A whole decimal number in [0, 2^32); nullopt for anything else ("", "-1", "3x", " 3").
std::optional<uint64_t> parse_number(std::string_view s) {
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v > UINT32_MAX)
    return std::nullopt;
  return v;
}

uint64_t env_number(const env_lookup& env, const char* name, std::optional<uint64_t> fallback) {
  const char* v = env(name);
  if (!v) {
    if (fallback) return *fallback;
    throw usage_error(std::string("--worker auto: ") + name + " is not set");
  }
  const auto n = parse_number(v);
  if (!n)
    throw usage_error(std::string("--worker auto: ") + name + "='" + v +
                      "' is not a non-negative whole number");
  return *n;
}

worker_id checked(uint64_t index, uint64_t count, const std::string& where) {
  if (count == 0 || count > k_max_workers)
    throw usage_error(where + ": the number of workers must be 1 to " +
                      std::to_string(k_max_workers) + ", got " + std::to_string(count));
  if (index >= count)
    throw usage_error(where + ": worker " + std::to_string(index) + " is not below the count " +
                      std::to_string(count) + " (workers are numbered 0 to N-1)");
  return {static_cast<uint32_t>(index), static_cast<uint32_t>(count)};
}

}  // namespace

std::string worker_id::label() const {
  return std::to_string(index) + "/" + std::to_string(count);
}

std::vector<uint32_t> assign_shares(const std::vector<std::pair<std::string, uint64_t>>& shards,
                                    uint32_t count) {
  if (count == 0) throw usage_error("assign_shares: zero workers");
  std::vector<size_t> order(shards.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (shards[a].second != shards[b].second) return shards[a].second > shards[b].second;
    return shards[a].first < shards[b].first;
  });
  std::vector<uint64_t> load(count, 0);
  std::vector<uint32_t> owner(shards.size(), 0);
  for (size_t i : order) {
    // min_element returns the first minimum: ties go to the lowest worker index.
    const auto w = static_cast<uint32_t>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = w;
    load[w] += shards[i].second;
  }
  return owner;
}

worker_id parse_worker(const std::string& spec, uint32_t workers, const env_lookup& env_in) {
  const env_lookup env = env_in ? env_in : env_lookup([](const char* n) { return std::getenv(n); });
  if (spec != "auto") {
    const size_t slash = spec.find('/');
    const auto i = slash == std::string::npos ? std::nullopt : parse_number(spec.substr(0, slash));
    const auto n = slash == std::string::npos ? std::nullopt : parse_number(spec.substr(slash + 1));
    if (!i || !n)
      throw usage_error("--worker takes I/N (worker I of N, I from 0 to N-1) or auto, not '" +
                        spec + "'");
    if (workers && workers != *n)
      throw usage_error("--worker " + spec + " and --workers " + std::to_string(workers) +
                        " disagree on the number of workers");
    return checked(*i, *n, "--worker " + spec);
  }
  if (env("SLURM_ARRAY_TASK_ID")) {
    const uint64_t id = env_number(env, "SLURM_ARRAY_TASK_ID", std::nullopt);
    const uint64_t min = env_number(env, "SLURM_ARRAY_TASK_MIN", 0);
    const uint64_t step = env_number(env, "SLURM_ARRAY_TASK_STEP", 1);
    if (step == 0 || id < min || (id - min) % step != 0)
      throw usage_error("--worker auto: SLURM_ARRAY_TASK_ID " + std::to_string(id) +
                        " is not on the array's range (min " + std::to_string(min) + ", step " +
                        std::to_string(step) + ")");
    uint64_t count = 0;
    if (env("SLURM_ARRAY_TASK_COUNT")) {
      count = env_number(env, "SLURM_ARRAY_TASK_COUNT", std::nullopt);
    } else {
      const uint64_t max = env_number(env, "SLURM_ARRAY_TASK_MAX", std::nullopt);
      if (max < min) throw usage_error("--worker auto: SLURM_ARRAY_TASK_MAX is below _MIN");
      count = (max - min) / step + 1;
    }
    if (workers && workers != count)
      throw usage_error("--workers " + std::to_string(workers) +
                        " disagrees with the Slurm array (" + std::to_string(count) + " tasks)");
    return checked((id - min) / step, count, "--worker auto (Slurm array)");
  }
  if (env("JOB_COMPLETION_INDEX")) {
    const uint64_t index = env_number(env, "JOB_COMPLETION_INDEX", std::nullopt);
    uint64_t count = workers;
    if (!count) {
      if (!env("SHARDQUANT_WORKERS"))
        throw usage_error(
            "--worker auto: JOB_COMPLETION_INDEX is set but the number of workers is not: pass "
            "--workers N or set SHARDQUANT_WORKERS (the Job's completions)");
      count = env_number(env, "SHARDQUANT_WORKERS", std::nullopt);
    }
    return checked(index, count, "--worker auto (Kubernetes Indexed Job)");
  }
  throw usage_error(
      "--worker auto: neither SLURM_ARRAY_TASK_ID (Slurm job array) nor JOB_COMPLETION_INDEX "
      "(Kubernetes Indexed Job) is set; pass --worker I/N");
}

std::string worker_journal_name(const worker_id& w) {
  return std::string(k_journal_prefix) + std::to_string(w.index) + "-of-" + std::to_string(w.count);
}

std::string worker_lock_name(const worker_id& w) {
  return ".shardquant-lock-worker-" + std::to_string(w.index) + "-of-" + std::to_string(w.count);
}

std::optional<worker_id> worker_of_journal_name(const std::string& file_name) {
  if (!file_name.starts_with(k_journal_prefix)) return std::nullopt;
  const std::string rest = file_name.substr(k_journal_prefix.size());
  const size_t of = rest.find("-of-");
  if (of == std::string::npos) return std::nullopt;
  const auto i = parse_number(rest.substr(0, of));
  const auto n = parse_number(rest.substr(of + 4));
  if (!i || !n || *n == 0 || *i >= *n || *n > k_max_workers) return std::nullopt;
  return worker_id{static_cast<uint32_t>(*i), static_cast<uint32_t>(*n)};
}

}  // namespace shardquant
