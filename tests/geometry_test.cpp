// One geometry decision (issue 13): the dry run's plan report and the real run's report agree on
// budget, token size and count, jobs, split tensors and amax tensors, through the program itself.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "plan_test_util.h"

using namespace sq_plan_test;

namespace {

int run_program(const std::string& args, const fs::path& log) {
  const std::string cmd =
      std::string(SQ_BINARY_PATH) + " " + args + " > '" + log.string() + "' 2>&1";
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(f);
}

}  // namespace

TEST_CASE("the dry run's report and the run's report agree on budget, tokens, jobs and cuts") {
  temp_dir t("geometry");
  const fs::path model = t.path / "llama";
  REQUIRE(run_program("make-checkpoint --arch llama --size 96M --shard-size 32M --seed 3 --out '" +
                          model.string() + "'",
                      t.path / "make.log") == 0);
  // lm_head (no exclude) with fp8: per-tensor, so a split lm_head needs an amax pass.
  const std::string common = "quantize --model-dir '" + model.string() +
                             "' --scheme fp8 --exclude --layer-scheme '*down_proj' mxfp4 --quiet";
  for (const std::string budget : {"64M", "1G", ""}) {
    CAPTURE(budget);
    const std::string b = budget.empty() ? "" : " --memory-budget " + budget;
    const fs::path plan_json = t.path / ("plan" + budget + ".json");
    const fs::path run_json = t.path / ("run" + budget + ".json");
    const fs::path out = t.path / ("out" + budget);
    REQUIRE(run_program(common + b + " --dry-run --report '" + plan_json.string() + "'",
                        t.path / "dry.log") == 0);
    REQUIRE(run_program(common + b + " --output-dir '" + out.string() + "' --report '" +
                            run_json.string() + "'",
                        t.path / "run.log") == 0);
    const nlohmann::json a = read_json(plan_json), r = read_json(run_json);
    for (const char* key :
         {"memory_budget", "token_bytes", "tokens", "jobs", "split_tensors", "amax_tensors"}) {
      CAPTURE(key);
      REQUIRE(a.contains(key));
      REQUIRE(r.contains(key));
      CHECK(a[key] == r[key]);
    }
    if (budget == "64M") {  // 8 MiB tokens: lm_head [32000, 768] BF16 is cut, with an amax pass
      CHECK(a["token_bytes"] == 8ull << 20);
      CHECK_FALSE(a["split_tensors"].empty());
      CHECK(a["amax_tensors"].size() >= 1);
      CHECK(a["budget_chosen"] == false);
    }
    if (budget.empty()) CHECK(a["budget_chosen"] == true);
  }
}
