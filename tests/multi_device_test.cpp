// Several device backends as one (stages/compute_multi, issue 20's CPU part): the scheduler that
// assigns jobs to devices (balance, every job exactly once, a slow device does not starve the
// others, a split tensor stays on one device), and whole runs spread over 1, 2 and 4 CPU
// backends giving the bytes of one backend, for several budgets and stream counts.
#include <atomic>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

#include "graph_test_util.h"
#include "pipeline/run_options.h"
#include "stages/compute_multi.h"

using namespace sq_graph_test;

namespace {

// A device backend that does no math: it records the jobs it gets and completes them at once,
// or (held) only when the test says so.
class recording_backend final : public compute_backend {
 public:
  recording_backend(unsigned capacity, bool held) : capacity_(capacity), held_(held) {}
  void run(job& j, compute_done done) override {
    {
      std::lock_guard lock(mutex_);
      got_.push_back(&j);
      if (held_) {
        waiting_.push_back(std::move(done));
        return;
      }
    }
    done(nullptr);
  }
  void drain() override {}
  [[nodiscard]] unsigned concurrency() const noexcept override { return capacity_; }
  [[nodiscard]] std::string name() const override { return "fake"; }

  // Completes every held job.
  void release_all() {
    std::deque<compute_done> w;
    {
      std::lock_guard lock(mutex_);
      w.swap(waiting_);
    }
    for (auto& d : w) d(nullptr);
  }
  [[nodiscard]] std::vector<job*> got() const {
    std::lock_guard lock(mutex_);
    return got_;
  }

 private:
  unsigned capacity_;
  bool held_;
  mutable std::mutex mutex_;
  std::vector<job*> got_;
  std::deque<compute_done> waiting_;
};

}  // namespace

TEST_CASE("idle backends of equal capacity take the jobs in turn") {
  device_scheduler s({2, 2, 2});
  std::vector<uint64_t> count(3, 0);
  for (int i = 0; i < 300; ++i) {
    const size_t b = s.acquire(nullptr);
    ++count.at(b);
    s.release(b);
  }
  CHECK(count == std::vector<uint64_t>{100, 100, 100});
}

TEST_CASE("busy backends are offered jobs in proportion to their capacity") {
  device_scheduler s({1, 3});
  std::vector<uint64_t> count(2, 0);
  for (int i = 0; i < 4; ++i) ++count.at(s.acquire(nullptr));
  CHECK(count == std::vector<uint64_t>{1, 3});
  CHECK(s.in_flight(0) == 1);
  CHECK(s.in_flight(1) == 3);
  CHECK_THROWS_AS(s.release(5), std::logic_error);
}

TEST_CASE("every job of a split tensor goes to the backend its first job went to") {
  device_scheduler s({2, 2});
  tensor_state a, b;
  const size_t ba = s.acquire(&a);
  // The least loaded backend is now the other one, yet a's jobs stay where a's amax is.
  for (int i = 0; i < 4; ++i) CHECK(s.acquire(&a) == ba);
  CHECK(s.in_flight(ba) == 5);
  const size_t bb = s.acquire(&b);
  CHECK(bb != ba);  // a new tensor goes to the idle backend
  for (int i = 0; i < 4; ++i) s.release(ba);
  // a's backend is now the idle one, yet b's jobs stay on b's.
  for (int i = 0; i < 3; ++i) CHECK(s.acquire(&b) == bb);
  CHECK(s.in_flight(bb) == 4);
  CHECK(s.acquire(&a) == ba);
}

TEST_CASE("a slow device does not starve the others: the fast one takes the jobs it cannot") {
  std::vector<std::unique_ptr<compute_backend>> v;
  v.push_back(std::make_unique<recording_backend>(2, true));   // slow: holds its jobs
  v.push_back(std::make_unique<recording_backend>(2, false));  // fast: done at once
  auto* slow = static_cast<recording_backend*>(v[0].get());
  auto* fast = static_cast<recording_backend*>(v[1].get());
  auto multi = make_multi_backend(std::move(v));
  CHECK(multi->concurrency() == 4);
  std::vector<job> jobs(100);
  std::atomic<uint64_t> done{0};
  for (auto& j : jobs) multi->run(j, [&](std::exception_ptr) { done.fetch_add(1); });
  // Round robin would have left 50 jobs waiting on the slow device.
  const uint64_t on_slow = slow->got().size();
  CHECK(on_slow >= 1);
  CHECK(on_slow <= 2);  // never more than it can hold at once
  CHECK(fast->got().size() == 100 - on_slow);
  CHECK(done.load() == 100 - on_slow);
  slow->release_all();
  CHECK(done.load() == 100);
}

TEST_CASE("every job reaches exactly one backend and completes once, from several threads") {
  std::vector<std::unique_ptr<compute_backend>> v;
  std::vector<recording_backend*> each;
  for (int i = 0; i < 4; ++i) {
    v.push_back(std::make_unique<recording_backend>(1 + i % 2, false));
    each.push_back(static_cast<recording_backend*>(v.back().get()));
  }
  auto multi = make_multi_backend(std::move(v));
  std::vector<job> jobs(4000);
  std::vector<std::atomic<int>> done(jobs.size());
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = t; i < jobs.size(); i += 4)
        multi->run(jobs[i], [&, i](std::exception_ptr) { done[i].fetch_add(1); });
    });
  for (auto& t : threads) t.join();
  multi->drain();
  std::multiset<const job*> seen;
  for (auto* b : each) {
    const auto got = b->got();
    CHECK(got.size() > 0);  // none left idle
    seen.insert(got.begin(), got.end());
  }
  CHECK(seen.size() == jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    CHECK(seen.count(&jobs[i]) == 1);
    CHECK(done[i].load() == 1);
  }
}

TEST_CASE("one backend given to the multi-device backend is that backend itself") {
  std::vector<std::unique_ptr<compute_backend>> v;
  v.push_back(make_cpu_backend(3));
  const compute_backend* only = v.front().get();
  auto multi = make_multi_backend(std::move(v));
  CHECK(multi.get() == only);
}

namespace {

quantize_options run_options(scheme_id scheme, uint64_t budget, unsigned streams,
                             const fs::path& out) {
  quantize_options o;
  o.input = source_dir();
  o.output = out;
  o.scheme = std::string(info(scheme).name);
  o.excludes = std::vector<std::string>{};
  o.device = "cpu";
  o.memory_budget = budget;
  o.streams = streams;
  o.quiet = true;
  o.progress_to_stderr = false;
  return o;
}

}  // namespace

TEST_CASE("a run spread over 1, 2 or 4 CPU backends writes the bytes of one backend") {
  for (const scheme_id scheme : {scheme_id::mxfp4, scheme_id::fp8}) {
    const std::string sn(info(scheme).name);
    const fs::path ref_dir = scratch() / ("multi-ref-" + sn);
    (void)quantize_checkpoint(run_options(scheme, 64 * MiB, 0, ref_dir));
    const auto ref = tree(ref_dir);
    for (const uint64_t budget : {16 * MiB, 64 * MiB})
      for (const unsigned streams : {1u, 3u})
        for (const unsigned n : {1u, 2u, 4u}) {
          const std::string name = sn + "-" + std::to_string(budget >> 20) + "M-s" +
                                   std::to_string(streams) + "-x" + std::to_string(n);
          CAPTURE(name);
          const fs::path out = scratch() / ("multi-" + name);
          backend_seam seam;
          seam.cpu_backends = n;
          const run_report r = quantize_checkpoint(run_options(scheme, budget, streams, out), seam);
          CHECK(r.jobs > 0);
          CHECK(tree(out) == ref);
          fs::remove_all(out);
        }
  }
}

TEST_CASE("CPU backends that finish jobs out of order still write the bytes of one backend") {
  const fs::path ref_dir = scratch() / "multi-shuffled-ref";
  (void)quantize_checkpoint(run_options(scheme_id::fp8, 64 * MiB, 0, ref_dir));
  const auto ref = tree(ref_dir);
  std::vector<std::atomic<uint64_t>> ran(3);  // jobs each backend ran
  backend_seam seam;
  seam.cpu_backends = 3;
  seam.make_cpu = [&](unsigned index, unsigned streams) {
    shuffling_backend::hooks h;
    h.finish = [&ran, index](const job&) { ran.at(index).fetch_add(1); };
    return std::make_unique<shuffling_backend>(shuffling_backend::order::random, streams,
                                               100 + index, h);
  };
  const fs::path out = scratch() / "multi-shuffled";
  (void)quantize_checkpoint(run_options(scheme_id::fp8, 16 * MiB, 2, out), seam);
  CHECK(tree(out) == ref);
  for (const auto& n : ran) CHECK(n.load() > 0);
}
