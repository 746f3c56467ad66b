// A run split over four worker processes of the built binary (started in a shuffled order, one
// of them killed with SIGKILL after publishing a shard and rerun with --resume), then finalize:
// byte-identical to a single run, for a plain and a block-FP8 source whose scales sit in other
// shards than their weights. finalize refuses while a share is missing (naming the shard and its
// worker), while a worker still holds its lock, and with other options than the workers'.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint_test_util.h"
#include "io/dir_lock.h"
#include "pipeline/output/shares.h"
#include "synthetic/make_checkpoint.h"

using namespace shardquant;
namespace fs = std::filesystem;

namespace {

// Starts the shardquant binary with `args`, stdout and stderr into `log`.
pid_t spawn(const std::vector<std::string>& args, const fs::path& log) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ::dup2(fd, 1) < 0 || ::dup2(fd, 2) < 0) ::_exit(126);
    std::vector<char*> argv{const_cast<char*>(SQ_BINARY_PATH)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(SQ_BINARY_PATH, argv.data());
    ::_exit(127);
  }
  return pid;
}

int wait_status(pid_t pid) {
  int st = 0;
  REQUIRE(::waitpid(pid, &st, 0) == pid);
  return st;
}

// Runs the binary to the end; returns its exit code (128 + signal when killed) and its output.
int run(const std::vector<std::string>& args, const fs::path& log, std::string* output = nullptr) {
  const int st = wait_status(spawn(args, log));
  if (output) *output = sq_test::read_text(log);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// Every regular file under `dir` (hidden ones included): relative path -> bytes.
std::map<std::string, std::string> tree(const fs::path& dir) {
  std::map<std::string, std::string> r;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) r[fs::relative(e.path(), dir).string()] = sq_test::read_text(e.path());
  return r;
}

// Shard lines (not the options line) in a worker's journal.
int published(const fs::path& journal) {
  std::ifstream in(journal);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) n += line.ends_with(".safetensors") ? 1 : 0;
  return n;
}

std::vector<std::string> quantize_args(const fs::path& src, const fs::path& out,
                                       const std::string& scheme) {
  return {"quantize", "--model-dir", src.string(), "--output-dir", out.string(),
          "--scheme", scheme,        "--quiet",    "--streams",    "1"};
}

std::vector<std::string> finalize_args(const fs::path& src, const fs::path& out,
                                       const std::string& scheme) {
  return {"finalize",   "--model-dir", src.string(), "--output-dir",
          out.string(), "--scheme",    scheme};
}

std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The whole scenario on one source.
void four_workers_match_one_run(const fs::path& src, const std::string& scheme,
                                const fs::path& work) {
  const uint64_t seed = std::random_device{}();
  INFO("seed " << seed << ", source " << src.string() << ", scheme " << scheme);
  std::mt19937_64 rng(seed);

  const fs::path single = work / "single", multi = work / "multi";
  std::string text;
  REQUIRE(run(quantize_args(src, single, scheme), work / "single.log", &text) == 0);

  // The assignment every worker computes, from the source shards' sizes.
  std::vector<std::pair<std::string, uint64_t>> sizes;
  for (const auto& e : fs::directory_iterator(src))
    if (e.path().extension() == ".safetensors")
      sizes.emplace_back(e.path().filename().string(), e.file_size());
  const std::vector<uint32_t> owner = assign_shares(sizes, 4);
  std::vector<int> owned(4, 0);
  for (uint32_t o : owner) ++owned[o];

  // Four workers started in a shuffled order; one that owns the most shards is killed once it
  // has published one (the others run meanwhile, so it is slowed down by them).
  std::vector<uint32_t> order{0, 1, 2, 3};
  std::shuffle(order.begin(), order.end(), rng);
  const uint32_t victim =
      static_cast<uint32_t>(std::max_element(owned.begin(), owned.end()) - owned.begin());
  REQUIRE(owned[victim] >= 2);
  INFO("start order " << order[0] << order[1] << order[2] << order[3] << ", killed " << victim);
  std::map<uint32_t, pid_t> pids;
  for (uint32_t w : order)
    pids[w] = spawn(plus(quantize_args(src, multi, scheme), {"--worker", worker_id{w, 4}.label()}),
                    work / ("worker" + std::to_string(w) + ".log"));
  const fs::path victim_journal = multi / worker_journal_name({victim, 4});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (published(victim_journal) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  ::kill(pids[victim], SIGKILL);
  const int victim_status = wait_status(pids[victim]);
  for (uint32_t w : order)
    if (w != victim) CHECK(WIFEXITED(wait_status(pids[w])));
  // It must really have died mid-share: killed, with a shard published and one not.
  REQUIRE(WIFSIGNALED(victim_status));
  const int before = published(victim_journal);
  CHECK(before >= 1);
  CHECK(before < owned[victim]);

  // finalize refuses the incomplete share, naming the missing shard and its worker, and writes
  // nothing.
  REQUIRE(run(finalize_args(src, multi, scheme), work / "refused.log", &text) == 1);
  CHECK(text.find("worker " + worker_id{victim, 4}.label() + " has not published model-") !=
        std::string::npos);
  CHECK_FALSE(fs::exists(multi / "model.safetensors.index.json"));
  CHECK_FALSE(fs::exists(multi / "config.json"));

  // Rerun with --resume: keeps what it published, writes the rest.
  const fs::path report = work / "resume.json";
  REQUIRE(run(plus(quantize_args(src, multi, scheme), {"--worker", worker_id{victim, 4}.label(),
                                                       "--resume", "--report", report.string()}),
              work / "resume.log", &text) == 0);
  const auto rep = nlohmann::json::parse(sq_test::read_text(report));
  CHECK(rep["shards_skipped"].get<int>() == before);
  CHECK(rep["shards_written"].get<int>() >= 1);

  // finalize with other options is refused (the workers recorded theirs).
  REQUIRE(run(finalize_args(src, multi, scheme == "fp8" ? "mxfp4" : "fp8"), work / "other.log",
              &text) == 1);
  CHECK(text.find("ran with other options") != std::string::npos);

  REQUIRE(run(finalize_args(src, multi, scheme), work / "finalize.log", &text) == 0);
  INFO(text);
  const auto want = tree(single);
  const auto got = tree(multi);
  CHECK(want.size() == got.size());
  for (const auto& [rel, bytes] : want) {
    INFO("file " << rel);
    REQUIRE(got.count(rel) == 1);
    CHECK(got.at(rel) == bytes);
  }
  for (const auto& [rel, bytes] : got) {
    INFO("extra file " << rel);
    CHECK(want.count(rel) == 1);
  }

  // Twice is harmless: nothing changes.
  REQUIRE(run(finalize_args(src, multi, scheme), work / "again.log", &text) == 0);
  CHECK(text.find("already finalized") != std::string::npos);
  CHECK(tree(multi) == got);
}

}  // namespace

TEST_CASE("four worker processes, one killed and resumed, then finalize: a plain source") {
  sq_test::temp_dir d("workers");
  make_checkpoint_options mk;
  mk.arch = "llama";
  mk.size = uint64_t{12} << 20;
  mk.shard_size = uint64_t{192} << 10;
  mk.out = d.path / "src";
  const auto made = make_checkpoint(mk);
  REQUIRE(made.shards.size() >= 12);
  four_workers_match_one_run(mk.out, "mxfp4", d.path);
}

TEST_CASE(
    "four worker processes, one killed and resumed, then finalize: block FP8 with scales in other "
    "shards") {
  sq_test::temp_dir d("workers8");
  make_checkpoint_options mk;
  mk.arch = "llama";
  mk.size = uint64_t{8} << 20;
  mk.type = dtype::f8_e4m3;
  mk.out = d.path / "src";
  // A shard exactly as large as the largest FP8 weight: a shard that starts with such a weight
  // is full, so its `_scale_inv` opens the next shard.
  for (const auto& t : design_model(mk).tensors)
    if (t.kind == synthetic_kind::fp8_weight) mk.shard_size = std::max(mk.shard_size, t.bytes());
  (void)make_checkpoint(mk);
  const auto idx =
      nlohmann::json::parse(sq_test::read_text(mk.out / "model.safetensors.index.json"));
  const auto& map = idx["weight_map"];
  int cross = 0;
  for (const auto& [name, shard] : map.items())
    if (name.ends_with("_scale_inv") &&
        map[name.substr(0, name.size() - std::string("_scale_inv").size())] != shard)
      ++cross;
  REQUIRE(cross >= 4);
  four_workers_match_one_run(mk.out, "fp8", d.path);
}

TEST_CASE("finalize refuses while a worker still holds its lock, naming the worker") {
  sq_test::temp_dir d("workerslock");
  make_checkpoint_options mk;
  mk.arch = "llama";
  mk.size = uint64_t{2} << 20;
  mk.shard_size = uint64_t{256} << 10;
  mk.out = d.path / "src";
  (void)make_checkpoint(mk);
  const fs::path out = d.path / "out";
  std::string text;
  for (uint32_t w = 0; w < 2; ++w)
    REQUIRE(run(plus(quantize_args(mk.out, out, "mxfp4"), {"--worker", worker_id{w, 2}.label()}),
                d.path / "w.log", &text) == 0);
  {
    auto held = dir_lock::try_lock(out, worker_lock_name({1, 2}));
    REQUIRE(held.has_value());
    REQUIRE(run(finalize_args(mk.out, out, "mxfp4"), d.path / "f.log", &text) == 2);
    CHECK(text.find("worker 1/2 is still running") != std::string::npos);
    CHECK(text.find("pid " + std::to_string(::getpid())) != std::string::npos);
    CHECK_FALSE(fs::exists(out / "model.safetensors.index.json"));
  }
  REQUIRE(run(finalize_args(mk.out, out, "mxfp4"), d.path / "f.log", &text) == 0);
  CHECK(fs::exists(out / "model.safetensors.index.json"));
  // Neither journals nor locks are left.
  for (const auto& e : fs::directory_iterator(out))
    CHECK_FALSE(e.path().filename().string().starts_with(".shardquant"));
}

TEST_CASE(
    "two worker processes writing compressed shards, then finalize, equal one compressed run") {
  sq_test::temp_dir d("workers-zstd");
  make_checkpoint_options mk;
  mk.arch = "llama";
  mk.size = uint64_t{4} << 20;
  mk.shard_size = uint64_t{512} << 10;
  mk.out = d.path / "src";
  REQUIRE(make_checkpoint(mk).shards.size() >= 4);
  const std::vector<std::string> zstd{"--compress", "zstd:3"};
  const fs::path single = d.path / "single", multi = d.path / "multi";
  std::string text;
  REQUIRE(run(plus(quantize_args(mk.out, single, "mxfp4"), zstd), d.path / "single.log", &text) ==
          0);
  for (uint32_t w : {1u, 0u})
    REQUIRE(run(plus(quantize_args(mk.out, multi, "mxfp4"),
                     plus({"--worker", worker_id{w, 2}.label()}, zstd)),
                d.path / ("w" + std::to_string(w) + ".log"), &text) == 0);
  // finalize must look for the published (compressed) names the workers journaled.
  REQUIRE(run(plus(finalize_args(mk.out, multi, "mxfp4"), zstd), d.path / "fin.log", &text) == 0);
  INFO(text);
  CHECK(tree(multi) == tree(single));
  CHECK(fs::exists(multi / "model-00001-of-00004.safetensors.zst") ==
        fs::exists(single / "model-00001-of-00004.safetensors.zst"));
}
