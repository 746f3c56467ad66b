// The whole pipeline on a generated checkpoint whose shards are 4x the small budget: output
// bytes do not depend on the budget (tensors split into row ranges, amax passes) or on the
// number of concurrent jobs or the I/O engine; quantized tensors equal the kernels' whole-tensor
// result; the live-token bound holds; a source shard truncated mid-run fails the run, leaves no
// final-named or temporary file for the unfinished shards, and the CLI exits non-zero; resume
// keeps journaled shards; peak RSS of the program stays under budget + 64 MiB on a source 4x that.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "checkpoint_test_util.h"
#include "io/error.h"
#include "io/safetensors.h"
#include "kernels/quantize.h"
#include "pipeline/api.h"
#include "synthetic/make_checkpoint.h"
#include "synthetic_source_util.h"
#include "tensor_bytes_util.h"

using namespace shardquant;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t MiB = uint64_t{1} << 20;
constexpr uint64_t small_budget = 16 * MiB;  // 4 tokens of 4 MiB
constexpr uint64_t shard_bytes = 4 * small_budget;

// A scratch folder for this process, removed at exit (ctest runs each case as its own process).
fs::path scratch() {
  static const sq_test::temp_dir d("pipeline-e2e");
  return d.path;
}

// A llama checkpoint of about 4 shards, generated once per test binary run.
const fs::path& source_dir() {
  static const fs::path dir =
      sq_test::make_llama(scratch() / "src", 4 * shard_bytes, shard_bytes, 7);
  return dir;
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Every regular file under `dir` (relative path -> bytes), the journal excluded.
using sq_test::tree;

quantize_options base_options(const std::string& scheme, const fs::path& out) {
  quantize_options o;
  o.input = source_dir();
  o.output = out;
  o.scheme = scheme;
  o.excludes = std::vector<std::string>{};  // quantize lm_head too: the largest tensor
  o.quiet = true;
  o.progress_to_stderr = false;
  return o;
}

void check_same_trees(const fs::path& a, const fs::path& b) {
  const auto ta = tree(a), tb = tree(b);
  REQUIRE(ta.size() == tb.size());
  for (const auto& [name, bytes] : ta) {
    INFO("file " << name);
    REQUIRE(tb.count(name) == 1);
    CHECK(tb.at(name) == bytes);
  }
}

// Finds the shard (relative path) holding `tensor` in an output or source directory.
fs::path shard_of(const fs::path& dir, const std::string& tensor) {
  const auto idx = nlohmann::json::parse(read_all(dir / "model.safetensors.index.json"));
  return dir / idx["weight_map"][tensor].get<std::string>();
}

// The output tensors of a quantized weight equal the kernels' whole-tensor quantization.
void check_against_kernels(const fs::path& out, const std::string& weight, scheme_id s) {
  const fs::path src_file = shard_of(source_dir(), weight);
  const safetensors_header h = read_safetensors_header(src_file);
  const tensor_entry* e = h.find(weight);
  REQUIRE(e != nullptr);
  const auto src = tensor_bytes(src_file, weight);
  check_whole_tensor_outputs(shard_of(out, weight), weight, s, e->type, e->shape, src);
}

int run_cli(const std::string& args, std::string* output = nullptr) {
  const std::string cmd = std::string(SQ_BINARY_PATH) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  const int st = ::pclose(p);
  if (output) *output = text;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

}  // namespace

TEST_CASE("the generated checkpoint has shards four times the small budget") {
  uint64_t shards = 0;
  for (const auto& e : fs::directory_iterator(source_dir()))
    if (e.path().extension() == ".safetensors") {
      ++shards;
      CHECK(fs::file_size(e.path()) <= shard_bytes + 64 * MiB);
    }
  CHECK(shards >= 3);
}

TEST_CASE("output bytes do not depend on the memory budget or concurrency or I/O engine") {
  for (const std::string scheme : {"mxfp4", "fp8", "int4_wo_128"}) {
    INFO("scheme " << scheme);
    const fs::path big = scratch() / ("big_" + scheme);
    auto o = base_options(scheme, big);
    o.memory_budget = uint64_t{8} << 30;
    o.streams = 1;
    const run_report rb = quantize_checkpoint(o);
    CHECK(rb.peak_live_tokens <= rb.tokens);
    CHECK(rb.shards_written >= 3);

    const fs::path small = scratch() / ("small_" + scheme);
    o = base_options(scheme, small);
    o.memory_budget = small_budget;
    o.streams = 4;
    o.io_engine = io_engine_kind::pread;
    const run_report rs = quantize_checkpoint(o);
    CHECK(rs.tokens == 4);
    CHECK(rs.peak_live_tokens <= rs.tokens);
    CHECK(rs.peak_live_tokens >= 2);  // the graph really overlapped jobs
    CHECK(rs.jobs > rb.jobs);         // tensors were split into row / byte ranges
    check_same_trees(big, small);

    const fs::path small1 = scratch() / ("small1_" + scheme);
    o = base_options(scheme, small1);
    o.memory_budget = small_budget;
    o.streams = 1;
    o.io_engine = io_engine_kind::uring;
    try {
      (void)quantize_checkpoint(o);
      check_same_trees(big, small1);
    } catch (const io_error& e) {
      MESSAGE("io_uring unavailable, uring run skipped: " << e.what());
    }

    const scheme_id id = *parse_scheme(scheme);
    check_against_kernels(small, "lm_head.weight", id);
    check_against_kernels(small, "model.layers.0.mlp.down_proj.weight", id);
    fs::remove_all(small);
    fs::remove_all(small1);
    fs::remove_all(big);
  }
}

TEST_CASE("a source shard truncated mid-run fails the run and leaves no partial output") {
  const fs::path src = scratch() / "trunc_src";
  fs::remove_all(src);
  fs::copy(source_dir(), src, fs::copy_options::recursive);
  std::vector<fs::path> shards;
  for (const auto& e : fs::directory_iterator(src))
    if (e.path().extension() == ".safetensors") shards.push_back(e.path());
  std::sort(shards.begin(), shards.end());
  REQUIRE(shards.size() >= 3);
  const fs::path last = shards.back();
  const uint64_t half = fs::file_size(last) / 2;

  const fs::path out = scratch() / "trunc_out";
  auto o = base_options("fp8", out);
  o.input = src;
  o.memory_budget = small_budget;
  o.streams = 1;
  o.io_engine = io_engine_kind::pread;
  // When the graph starts the second shard (the first one is in flight), cut the last shard
  // in half: its reads must fail.
  bool truncated = false;
  int started = 0;
  o.on_shard_start = [&](const std::string&) {
    if (++started == 2) {
      fs::resize_file(last, half);
      truncated = true;
    }
  };
  bool threw = false;
  try {
    (void)quantize_checkpoint(o);
  } catch (const input_error& e) {
    // Bad input: the message names the shard, the tensor and the byte offset.
    threw = true;
    CHECK(e.file() == last.string());
    CHECK_FALSE(e.tensor().empty());
    CHECK(e.offset() != input_error::no_offset);
    MESSAGE("run failed as expected: " << std::string(e.what()));
  }
  REQUIRE(truncated);
  CHECK(threw);
  CHECK_FALSE(fs::exists(out / last.filename()));
  for (const auto& e : fs::recursive_directory_iterator(out))
    CHECK(e.path().filename().string().find(".sq-tmp-") == std::string::npos);
  CHECK_FALSE(fs::exists(out / "model.safetensors.index.json"));

  // The CLI reports the first failure and exits non-zero (here the truncated shard is caught
  // by the header checks before any data is read).
  const fs::path out2 = scratch() / "trunc_out_cli";
  std::string text;
  const int rc = run_cli("quantize --model_dir " + src.string() + " --output-dir " + out2.string() +
                             " --scheme mxfp4 --quiet",
                         &text);
  CHECK(rc != 0);
  CHECK(text.find(last.filename().string()) != std::string::npos);
  fs::remove_all(src);
  fs::remove_all(out);
  fs::remove_all(out2);
}

TEST_CASE("resume keeps shards the journal marks complete and rewrites the rest") {
  const fs::path ref = scratch() / "resume_ref";
  auto o = base_options("mxfp4", ref);
  o.memory_budget = small_budget;
  (void)quantize_checkpoint(o);
  CHECK_FALSE(fs::exists(ref / ".shardquant-journal"));  // a finished run leaves no journal

  // A run that dies after publishing every shard: finalize cannot write config.json because a
  // directory holds its name. The journal then lists every shard.
  const fs::path out = scratch() / "resume_out";
  fs::create_directories(out / "config.json" / "blocker");
  o = base_options("mxfp4", out);
  o.memory_budget = small_budget;
  o.existing = existing_output::overwrite;
  CHECK_THROWS(quantize_checkpoint(o));
  REQUIRE(fs::exists(out / ".shardquant-journal"));
  fs::remove_all(out / "config.json");

  // Damage one shard (as if a later run had died while replacing it): resume must redo it only.
  std::vector<fs::path> shards;
  for (const auto& e : fs::directory_iterator(out))
    if (e.path().extension() == ".safetensors") shards.push_back(e.path());
  std::sort(shards.begin(), shards.end());
  REQUIRE(shards.size() >= 2);
  fs::resize_file(shards[1], 100);
  o.existing = existing_output::resume;
  const run_report r = quantize_checkpoint(o);
  CHECK(r.shards_written == 1);
  CHECK(r.shards_skipped == shards.size() - 1);
  CHECK_FALSE(fs::exists(out / ".shardquant-journal"));
  check_same_trees(ref, out);
  fs::remove_all(ref);
  fs::remove_all(out);
}

TEST_CASE("peak RSS of the program stays under the budget plus 64 MiB on a source 4x that") {
  // The CPU device: a CUDA runtime maps hundreds of MiB of its own, which says nothing about
  // our buffers. The source (256 MiB) is 4 times the slack, so a run that kept even a third of
  // what it read (a leak, an unbounded queue) fails; measured about 25 MiB here.
  const fs::path out = scratch() / "rss_out";
  const fs::path rep = scratch() / "rss_report.json";
  const int rc = run_cli(
      "quantize --model_dir " + source_dir().string() + " --output-dir " + out.string() +
      " --scheme mxfp4 --device cpu --memory-budget 16MiB --quiet --report " + rep.string());
  REQUIRE(rc == 0);
  const auto j = nlohmann::json::parse(read_all(rep));
  const uint64_t rss = j["peak_rss_bytes"].get<uint64_t>();
  constexpr uint64_t slack = 64 * MiB;
  static_assert(4 * shard_bytes >= 4 * slack, "the source must dwarf the slack");
  MESSAGE("peak RSS " << rss / MiB << " MiB with a 16 MiB budget on " << 4 * shard_bytes / MiB
                      << " MiB of shards");
  CHECK(rss < small_budget + slack);
  fs::remove_all(out);
}
