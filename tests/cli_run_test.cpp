// The shardquant program end to end on the CPU: make-checkpoint, inspect, quantize --dry-run
// (the README demo), schemes, templates, exit codes (0 ok, 1 input error, 2 usage error).
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <cstdio>
#include <cstdlib>

#include "plan_test_util.h"

using namespace sq_plan_test;

namespace {
struct result {
  int code;
  std::string out;
};
result run(const std::string& args, const fs::path& tmp) {
  const fs::path out = tmp / "stdout.txt";
  const std::string cmd = std::string(SQ_BINARY_PATH) + " " + args + " > " + out.string() + " 2>&1";
  const int st = std::system(cmd.c_str());
  std::ifstream f(out);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, s};
}
bool has(const std::string& s, const std::string& x) {
  return s.find(x) != std::string::npos;
}
}  // namespace

TEST_CASE("the README demo runs: make-checkpoint then an mxfp4 dry run") {
  temp_dir t("cli");
  const fs::path d = t.path / "llama";
  auto r =
      run("make-checkpoint --arch llama --size 30M --dtype bf16 --shard-size 10M --seed 1 "
          "--out " +
              d.string(),
          t.path);
  REQUIRE_MESSAGE(r.code == 0, r.out);
  CHECK(fs::exists(d / "model.safetensors.index.json"));
  r = run("quantize --model-dir " + d.string() + " --output-dir " + (t.path / "o").string() +
              " --scheme mxfp4 --dry-run --report " + (t.path / "plan.json").string(),
          t.path);
  REQUIRE_MESSAGE(r.code == 0, r.out);
  CHECK(has(r.out, "quantize mxfp4"));
  CHECK(has(r.out, "model.layers.0.mlp.down_proj.weight_scale  U8"));
  CHECK(has(r.out, "totals:"));
  CHECK(has(r.out, "exclude (exported): lm_head"));
  CHECK(fs::exists(t.path / "plan.json"));
  CHECK_FALSE(fs::exists(t.path / "o"));  // a dry run writes nothing

  r = run("inspect " + d.string(), t.path);
  CHECK(r.code == 0);
  CHECK(has(r.out, "BF16"));
  CHECK(has(r.out, "quantization_config: none"));
  fs::path shard;
  for (const auto& e : fs::directory_iterator(d))
    if (e.path().extension() == ".safetensors") shard = e.path();
  r = run("inspect --json " + shard.string(), t.path);
  CHECK(r.code == 0);
  CHECK(has(r.out, "\"dtype_totals\""));
}

TEST_CASE("exit codes: 2 for usage errors - 1 for input errors") {
  temp_dir t("cli");
  auto r = run("quantize --model-dir x --scheme", t.path);
  CHECK(r.code == 2);
  r = run("frobnicate", t.path);
  CHECK(r.code == 2);
  r = run("quantize --model-dir " + (t.path / "missing").string() + " --scheme fp8 --dry-run",
          t.path);
  CHECK(r.code == 1);
  CHECK(has(r.out, "missing"));
  r = run("quantize --model-dir x --scheme bfp16 --dry-run", t.path);
  CHECK(r.code == 2);
  CHECK(has(r.out, "qscheme for <module> must not be None"));
  r = run("make-checkpoint --arch llama --size 10Q --out " + (t.path / "m").string(), t.path);
  CHECK(r.code == 2);
}

TEST_CASE("schemes and templates list the tables") {
  temp_dir t("cli");
  auto r = run("schemes", t.path);
  CHECK(r.code == 0);
  CHECK(has(r.out, "int4_fp8"));
  CHECK(has(r.out, "nvfp4"));
  CHECK(has(r.out, "amdfp4_global32"));
  CHECK(has(r.out, "fp4_block16_scale_e4m3 alias of nvfp4"));
  CHECK(has(r.out, "mx9"));
  r = run("templates", t.path);
  CHECK(r.code == 0);
  CHECK(has(r.out, "deepseek_v3"));
  CHECK(has(r.out, "split_fused_experts(0)"));
  r = run("--help", t.path);
  CHECK(r.code == 0);
  CHECK(has(r.out, "make-checkpoint"));
  r = run("make-checkpoint --help", t.path);
  CHECK(r.code == 0);
  CHECK(has(r.out, "1024"));
}
