// The public C++ API as a service uses it (include/shardquant/): warnings through on_warning and
// in the report, a cancel from another thread (says "cancelled", no final-named partial file),
// plan_checkpoint leaving the output untouched and agreeing with the run.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include <shardquant/shardquant.h>

#include "trust_test_util.h"

using namespace shardquant;
using namespace sq_trust;

TEST_CASE("warnings reach on_warning and the report, and the plan reports them too") {
  sq_test::temp_dir d("api");
  make_llama(d.path / "src");
  // A side file linking outside the model folder is skipped with a warning.
  sq_test::write_text(d.path / "outside.txt", "not part of the model");
  fs::create_symlink(d.path / "outside.txt", d.path / "src" / "notes.txt");
  auto o = options(d.path / "src", d.path / "out");
  std::vector<std::string> seen;
  o.on_warning = [&](const std::string& w) { seen.push_back(w); };
  const plan_report plan = plan_checkpoint(o);
  CHECK(seen.size() == plan.warnings.size());
  REQUIRE_FALSE(plan.warnings.empty());
  CHECK_FALSE(fs::exists(d.path / "out"));  // planning writes nothing
  seen.clear();
  const run_report r = quantize_checkpoint(o);
  CHECK(r.warnings == seen);
  for (const auto& w : plan.warnings)  // the run may add finalize's own (the skipped copy)
    CHECK(std::find(r.warnings.begin(), r.warnings.end(), w) != r.warnings.end());
  CHECK(r.to_json().find("notes.txt") != std::string::npos);
  CHECK(r.jobs == plan.jobs);
  CHECK(r.memory_budget == plan.memory_budget);
}

TEST_CASE("a cancel from another thread says cancelled and leaves no final-named partial file") {
  sq_test::temp_dir d("api");
  make_llama(d.path / "src", 24ull << 20, 2ull << 20);
  auto whole = options(d.path / "src", d.path / "whole");
  (void)quantize_checkpoint(whole);
  const auto complete = tree(d.path / "whole");

  auto o = options(d.path / "src", d.path / "out");
  o.memory_budget = 8ull << 20;
  o.cancel = std::make_shared<std::atomic<bool>>(false);
  std::atomic<bool> started{false};
  o.on_shard_start = [&](const std::string&) { started = true; };
  std::thread stopper([&] {
    while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    o.cancel->store(true);
  });
  std::string what;
  try {
    (void)quantize_checkpoint(o);
  } catch (const cancelled_error& e) {
    what = e.what();
  }
  stopper.join();
  CHECK(what.find("cancelled") != std::string::npos);
  // Whatever the run left under a final name is complete: byte-identical to the whole run's.
  for (const auto& [rel, bytes] : tree(d.path / "out")) {
    CAPTURE(rel);
    CHECK(rel.find(".sq-tmp-") == std::string::npos);
    if (rel.ends_with(".safetensors")) CHECK(complete.at(rel) == bytes);
  }
  CHECK_FALSE(fs::exists(d.path / "out" / "config.json"));  // never finalized
}
