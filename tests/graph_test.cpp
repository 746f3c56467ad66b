// The flow graph (pipeline/run/graph) with a fake compute backend that runs the CPU math but
// finishes jobs out of order: cancel and drain, the amax gate, and output offsets that do not
// depend on the order computes finish in.
#include <atomic>
#include <map>
#include <mutex>

#include "graph_test_util.h"
#include "io/error.h"

using namespace sq_graph_test;

namespace {

constexpr uint64_t small_budget = 16 * MiB;  // 4 tokens of 4 MiB: the large tensors are split

// Files under `dir` whose names say they are temporaries of a run.
std::vector<std::string> temporaries(const fs::path& dir) {
  std::vector<std::string> t;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename().string().find(".sq-tmp") != std::string::npos)
      t.push_back(e.path().string());
  return t;
}

}  // namespace

TEST_CASE("a cancel mid-run returns every token and leaves no partial file under a final name") {
  for (const uint64_t seed : {1u, 2u}) {
    CAPTURE(seed);
    const fs::path out = scratch() / ("cancel-" + std::to_string(seed));
    graph_fixture f(scheme_id::fp8, small_budget, out);
    const uint64_t cancel_after = f.geo.jobs / 3;
    REQUIRE(cancel_after > 2);
    std::atomic<bool> cancel{false};
    std::atomic<uint64_t> finished{0};
    shuffling_backend::hooks h;
    h.finish = [&](const job&) {
      if (finished.fetch_add(1) + 1 == cancel_after) cancel = true;
    };
    shuffling_backend backend(shuffling_backend::order::random, 3, seed, h);
    CHECK_THROWS_AS(f.run(backend, &cancel), cancelled_error);

    CHECK(f.pool.live() == 0);
    CHECK(f.counters.jobs_done.load() < f.geo.jobs);
    CHECK(temporaries(out).empty());
    // What has a final name is a whole shard, byte for byte what an uncancelled run writes.
    const auto& ref = reference_shards(scheme_id::fp8);
    const auto got = tree(out);
    CHECK(got.size() < ref.size());
    for (const auto& [name, bytes] : got) {
      CAPTURE(name);
      REQUIRE(ref.count(name) == 1);
      CHECK(bytes == ref.at(name));
    }
  }
}

TEST_CASE("a quantize job of a split fp8 tensor starts only after every amax job of it finished") {
  const fs::path out = scratch() / "amax-gate";
  graph_fixture f(scheme_id::fp8, small_budget, out);
  REQUIRE(!f.geo.amax_tensors.empty());

  std::mutex m;
  std::map<const tensor_state*, uint64_t> amax_finished;
  // For each quantize job of a split tensor: how many amax jobs of its tensor had finished.
  std::vector<std::pair<const tensor_state*, uint64_t>> quantize_starts;
  shuffling_backend::hooks h;
  h.start = [&](const job& j) {
    if (j.kind != job_kind::quantize || !j.tensor_shared) return;
    std::lock_guard lock(m);
    quantize_starts.emplace_back(j.tensor_shared.get(), amax_finished[j.tensor_shared.get()]);
  };
  h.finish = [&](const job& j) {
    if (j.kind != job_kind::amax) return;
    std::lock_guard lock(m);
    ++amax_finished[j.tensor_shared.get()];
  };
  // The backend runs every other job before an amax job, so quantize jobs would overtake the
  // amax pass of their tensor if the gate let them.
  shuffling_backend backend(shuffling_backend::order::amax_last, 4, 1, h);
  f.run(backend);

  CHECK(amax_finished.size() == f.geo.amax_tensors.size());
  REQUIRE(!quantize_starts.empty());
  for (const auto& [t, seen] : quantize_starts) CHECK(seen == amax_finished.at(t));
  CHECK(tree(out) == reference_shards(scheme_id::fp8));
}

TEST_CASE("writes land at their planned offsets whatever order the computes finish in") {
  for (const scheme_id scheme : {scheme_id::mxfp4, scheme_id::int4_wo_128, scheme_id::fp8}) {
    for (const auto order : {shuffling_backend::order::newest, shuffling_backend::order::random}) {
      const std::string name = std::string(info(scheme).name) + "-" +
                               (order == shuffling_backend::order::newest ? "newest" : "random");
      CAPTURE(name);
      const fs::path out = scratch() / ("order-" + name);
      graph_fixture f(scheme, small_budget, out);
      shuffling_backend backend(order, 4, 7);
      f.run(backend);
      // The test means something only if completions came back in another order.
      CHECK(backend.completions() != backend.arrivals());
      CHECK(f.pool.live() == 0);
      CHECK(tree(out) == reference_shards(scheme));
    }
  }
}
