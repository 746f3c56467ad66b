// shares: the assignment of shards to workers (deterministic, balanced by bytes, every shard
// exactly once), worker identities from "I/N" and from Slurm / Kubernetes environments, and the
// names of the workers' files.
#include "pipeline/output/shares.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "io/error.h"

using namespace shardquant;

namespace {

using shard_list = std::vector<std::pair<std::string, uint64_t>>;

shard_list random_shards(std::mt19937_64& rng, size_t n) {
  shard_list v;
  for (size_t i = 0; i < n; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, n);
    // Mostly similar sizes with a few large outliers and some exact ties, like real checkpoints.
    const uint64_t size = rng() % 7 == 0 ? (rng() % 8 + 1) << 30 : (uint64_t{4} << 30) - rng() % 3;
    v.emplace_back(name, size);
  }
  return v;
}

std::vector<uint64_t> loads(const shard_list& s, const std::vector<uint32_t>& owner, uint32_t n) {
  std::vector<uint64_t> l(n, 0);
  for (size_t i = 0; i < s.size(); ++i) l[owner[i]] += s[i].second;
  return l;
}

// An environment made of a map, for parse_worker.
env_lookup env_of(std::map<std::string, std::string> m) {
  return [m = std::move(m)](const char* name) -> const char* {
    auto it = m.find(name);
    return it == m.end() ? nullptr : it->second.c_str();
  };
}

}  // namespace

TEST_CASE("every shard goes to exactly one worker, and the assignment ignores the listing order") {
  const uint64_t seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 200; ++round) {
    const size_t shards = rng() % 60;
    const uint32_t workers = static_cast<uint32_t>(rng() % 9 + 1);
    shard_list s = random_shards(rng, shards);
    const std::vector<uint32_t> owner = assign_shares(s, workers);
    REQUIRE(owner.size() == s.size());
    for (uint32_t w : owner) CHECK(w < workers);
    // Another worker lists the directory in another order: each shard keeps its owner.
    std::vector<size_t> perm(s.size());
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    shard_list shuffled;
    for (size_t i : perm) shuffled.push_back(s[i]);
    const std::vector<uint32_t> again = assign_shares(shuffled, workers);
    for (size_t k = 0; k < perm.size(); ++k) CHECK(again[k] == owner[perm[k]]);
  }
}

TEST_CASE("the busiest worker has at most one shard's bytes more than the least busy one") {
  const uint64_t seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 200; ++round) {
    const uint32_t workers = static_cast<uint32_t>(rng() % 8 + 1);
    const shard_list s = random_shards(rng, rng() % 80 + workers);
    const auto l = loads(s, assign_shares(s, workers), workers);
    uint64_t largest = 0, total = 0;
    for (const auto& x : s) largest = std::max(largest, x.second), total += x.second;
    const auto [lo, hi] = std::minmax_element(l.begin(), l.end());
    CHECK(*hi - *lo <= largest);
    // Greedy onto the least loaded: the last shard placed on the busiest worker found it at
    // or below the average, so the busiest is within one shard of a perfect split.
    CHECK(*hi <= total / workers + largest);
  }
}

TEST_CASE(
    "four equal shards over four workers give one each, ties going by name to the lowest index") {
  const shard_list s{{"d", 10}, {"b", 10}, {"a", 10}, {"c", 10}};
  CHECK(assign_shares(s, 4) == std::vector<uint32_t>{3, 1, 0, 2});
  // More workers than shards: the extra workers get nothing, which is fine.
  CHECK(assign_shares(s, 6) == std::vector<uint32_t>{3, 1, 0, 2});
  // The big one alone, the small ones on the other worker.
  CHECK(assign_shares({{"x", 100}, {"y", 30}, {"z", 30}}, 2) == std::vector<uint32_t>{0, 1, 1});
  CHECK_THROWS_AS((void)assign_shares(s, 0), usage_error);
}

TEST_CASE("--worker I/N is worker I of N, numbered from 0, and bad spellings are refused") {
  const auto none = env_of({});
  CHECK(parse_worker("2/4", 0, none) == worker_id{2, 4});
  CHECK(parse_worker("0/1", 0, none) == worker_id{0, 1});
  CHECK(parse_worker("3/4", 4, none) == worker_id{3, 4});
  CHECK(parse_worker("2/4", 0, none).label() == "2/4");
  for (const char* bad : {"4/4", "1/0", "-1/4", "1", "1/", "/4", "a/b", "1/4x", " 1/4", "1/2/3"}) {
    INFO(bad);
    CHECK_THROWS_AS((void)parse_worker(bad, 0, none), usage_error);
  }
  CHECK_THROWS_AS((void)parse_worker("1/4", 8, none), usage_error);   // --workers disagrees
  CHECK_THROWS_AS((void)parse_worker("auto", 0, none), usage_error);  // no scheduler
}

TEST_CASE("--worker auto reads a Slurm array's task id, count, min and step") {
  CHECK(parse_worker("auto", 0,
                     env_of({{"SLURM_ARRAY_TASK_ID", "2"}, {"SLURM_ARRAY_TASK_COUNT", "4"}})) ==
        worker_id{2, 4});
  // --array=1-4: ids start at 1.
  CHECK(parse_worker("auto", 0,
                     env_of({{"SLURM_ARRAY_TASK_ID", "1"},
                             {"SLURM_ARRAY_TASK_MIN", "1"},
                             {"SLURM_ARRAY_TASK_MAX", "4"}})) == worker_id{0, 4});
  // --array=10-16:2: ids 10, 12, 14, 16.
  CHECK(parse_worker("auto", 0,
                     env_of({{"SLURM_ARRAY_TASK_ID", "14"},
                             {"SLURM_ARRAY_TASK_MIN", "10"},
                             {"SLURM_ARRAY_TASK_MAX", "16"},
                             {"SLURM_ARRAY_TASK_STEP", "2"}})) == worker_id{2, 4});
  CHECK_THROWS_AS((void)parse_worker("auto", 0, env_of({{"SLURM_ARRAY_TASK_ID", "2"}})),
                  usage_error);  // no count
  CHECK_THROWS_AS(
      (void)parse_worker("auto", 0,
                         env_of({{"SLURM_ARRAY_TASK_ID", "4"}, {"SLURM_ARRAY_TASK_COUNT", "4"}})),
      usage_error);  // ids 0-3 only
  CHECK_THROWS_AS(
      (void)parse_worker("auto", 3,
                         env_of({{"SLURM_ARRAY_TASK_ID", "1"}, {"SLURM_ARRAY_TASK_COUNT", "4"}})),
      usage_error);  // --workers disagrees
}

TEST_CASE(
    "--worker auto reads a Kubernetes Indexed Job's index with --workers or SHARDQUANT_WORKERS") {
  CHECK(parse_worker("auto", 8, env_of({{"JOB_COMPLETION_INDEX", "7"}})) == worker_id{7, 8});
  CHECK(parse_worker("auto", 0,
                     env_of({{"JOB_COMPLETION_INDEX", "0"}, {"SHARDQUANT_WORKERS", "3"}})) ==
        worker_id{0, 3});
  CHECK_THROWS_AS((void)parse_worker("auto", 0, env_of({{"JOB_COMPLETION_INDEX", "0"}})),
                  usage_error);
  CHECK_THROWS_AS((void)parse_worker("auto", 2, env_of({{"JOB_COMPLETION_INDEX", "2"}})),
                  usage_error);
}

TEST_CASE("a worker's journal name gives back the worker and other names give nothing") {
  const worker_id w{3, 16};
  CHECK(worker_journal_name(w) == ".shardquant-journal-worker-3-of-16");
  CHECK(worker_of_journal_name(worker_journal_name(w)) == w);
  CHECK(worker_lock_name(w) != worker_journal_name(w));
  for (const char* other :
       {".shardquant-journal", ".shardquant-journal-worker-3", ".shardquant-journal-worker-4-of-4",
        ".shardquant-journal-worker-x-of-4", "model-00001-of-00004.safetensors"})
    CHECK_FALSE(worker_of_journal_name(other).has_value());
}
