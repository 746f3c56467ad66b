// Hostile inputs the checkpoint reader must refuse cleanly: JSON nested past 256 levels or over
// 64 MiB (config.json, the index), a NUL byte in an index path (names escaped in messages), a
// config.json that is a folder; and memory budgets that are zero or more than the machine or
// container has.
#include <doctest/doctest.h>

#include <string>

#include "checkpoint_test_util.h"
#include "cli/cli.h"
#include "io/checkpoint.h"
#include "io/error.h"
#include "io/json_value.h"
#include "pipeline/run/memory_limits.h"

using namespace shardquant;
using namespace sq_test;

namespace {

std::string nested(size_t levels) {
  std::string s = "{\"a\": ";
  s.append(levels - 1, '[');
  s += "1";
  s.append(levels - 1, ']');
  return s + "}";
}

fs::path small_model(const fs::path& dir) {
  write_text(dir / "config.json", "{}");
  write_shard(dir / "model.safetensors", {"a.weight"});
  return dir;
}

}  // namespace

TEST_CASE("JSON nested 100,000 levels deep is refused with the file named, 256 levels parse") {
  CHECK_NOTHROW((void)parse_json_object_text(nested(256), "ok.json"));
  CHECK_THROWS_WITH_AS((void)parse_json_object_text(nested(257), "deep.json"),
                       doctest::Contains("deep.json"), input_error);
  temp_dir d("limits");
  const fs::path src = small_model(d.path / "m");
  write_text(src / "config.json", nested(100000));
  CHECK_THROWS_WITH_AS((void)open_source_checkpoint(src, {}), doctest::Contains("levels deep"),
                       input_error);
  write_text(src / "config.json", "{}");
  write_text(src / "model.safetensors.index.json", nested(100000));
  CHECK_THROWS_WITH_AS((void)open_source_checkpoint(src, {}),
                       doctest::Contains("model.safetensors.index.json"), input_error);
  // Unterminated and deep: refused too, never parsed recursively.
  write_text(src / "model.safetensors.index.json", "{\"a\": " + std::string(100000, '['));
  CHECK_THROWS_AS((void)open_source_checkpoint(src, {}), input_error);
}

TEST_CASE("a config.json or index over 64 MiB is refused before it is read") {
  temp_dir d("limits");
  const fs::path src = small_model(d.path / "m");
  {
    // A sparse file: 65 MiB that cost no disk.
    std::ofstream f(src / "config.json", std::ios::binary | std::ios::trunc);
    f << "{";
  }
  fs::resize_file(src / "config.json", (65ull << 20));
  CHECK_THROWS_WITH_AS((void)open_source_checkpoint(src, {}), doctest::Contains("64 MiB"),
                       input_error);
  write_text(src / "config.json", "{}");
  write_text(src / "model.safetensors.index.json", "{}");
  fs::resize_file(src / "model.safetensors.index.json", (65ull << 20));
  CHECK_THROWS_WITH_AS((void)open_source_checkpoint(src, {}),
                       doctest::Contains("model.safetensors.index.json"), input_error);
}

TEST_CASE("a NUL byte inside an index path is refused and shown escaped") {
  temp_dir d("limits");
  const fs::path src = small_model(d.path / "m");
  write_text(src / "model.safetensors.index.json",
             R"({"weight_map": {"a.weight": "model.safetensors\u0000.evil"}})");
  try {
    (void)open_source_checkpoint(src, {});
    FAIL("accepted a NUL byte in a shard path");
  } catch (const input_error& e) {
    const std::string m = e.what();
    CHECK(m.find("NUL") != std::string::npos);
    CHECK(m.find("model.safetensors\\x00.evil") != std::string::npos);
    CHECK(m.find('\0') == std::string::npos);
  }
  CHECK(escaped_name(std::string("a\x01\xff\\b", 5)) == "a\\x01\\xff\\\\b");
}

TEST_CASE("a config.json that is a folder is reported as a folder, not as missing") {
  temp_dir d("limits");
  const fs::path src = small_model(d.path / "m");
  fs::remove(src / "config.json");
  fs::create_directories(src / "config.json");
  CHECK_THROWS_WITH_AS((void)open_source_checkpoint(src, {}), doctest::Contains("is a folder"),
                       input_error);
}

TEST_CASE(
    "--memory-budget: auto means automatic; empty, zero and sizes rounding to zero are errors") {
  CHECK(parse_memory_budget("auto") == 0);
  CHECK(parse_memory_budget("64M") == (64ull << 20));
  CHECK_THROWS_AS((void)parse_memory_budget(""), usage_error);
  CHECK_THROWS_AS((void)parse_memory_budget("0"), usage_error);
  CHECK_THROWS_AS((void)parse_memory_budget("0G"), usage_error);
  CHECK_THROWS_AS((void)parse_memory_budget("0.0000001K"), usage_error);
  CHECK_THROWS_AS((void)parse_quantize_args({"--model-dir", "m", "--output-dir", "o", "--scheme",
                                             "mxfp4", "--memory-budget", ""}),
                  usage_error);
  CHECK(parse_quantize_args({"--model-dir", "m", "--output-dir", "o", "--scheme", "mxfp4",
                             "--memory-budget", "auto"})
            .memory_budget == 0);
}

TEST_CASE("a budget above physical memory or the cgroup v2 memory.max is refused, naming it") {
  temp_dir d("limits");
  // A fake /proc and /sys/fs/cgroup: 24 GiB of RAM, the group limited to 4 GiB by a parent.
  write_text(d.path / "proc" / "meminfo",
             "MemTotal:       25165824 kB\nMemFree:  1 kB\nMemAvailable:   20971520 kB\n");
  write_text(d.path / "proc" / "self" / "cgroup", "0::/jobs/run1\n");
  write_text(d.path / "sys" / "fs" / "cgroup" / "jobs" / "memory.max", "4294967296\n");
  write_text(d.path / "sys" / "fs" / "cgroup" / "jobs" / "run1" / "memory.max", "max\n");
  write_text(d.path / "sys" / "fs" / "cgroup" / "jobs" / "run1" / "memory.current", "1073741824\n");
  const memory_limits m = read_memory_limits(d.path);
  CHECK(m.physical == (24ull << 30));
  REQUIRE(m.cgroup_max.has_value());
  CHECK(*m.cgroup_max == (4ull << 30));
  CHECK(m.ceiling() == (4ull << 30));
  CHECK(m.free() == (3ull << 30));  // the group's headroom, below MemAvailable
  CHECK_NOTHROW(check_memory_budget(2ull << 30, m));
  CHECK_THROWS_WITH_AS(check_memory_budget(8ull << 30, m), doctest::Contains("memory.max"),
                       usage_error);
  // "max" everywhere: physical memory is the ceiling; 64T on a 24 GiB machine is refused.
  write_text(d.path / "sys" / "fs" / "cgroup" / "jobs" / "memory.max", "max\n");
  const memory_limits n = read_memory_limits(d.path);
  CHECK_FALSE(n.cgroup_max.has_value());
  CHECK_THROWS_WITH_AS(check_memory_budget(64ull << 40, n), doctest::Contains("physical memory"),
                       usage_error);
  // This machine: a budget of 4000000T is refused at once.
  CHECK_THROWS_AS(check_memory_budget(parse_size("4000000T"), read_memory_limits()), usage_error);
}
