// Helpers for the graph, job-builder and multi-device suites: a synthetic llama source made once
// per test process, a fake compute backend that runs the CPU math but completes jobs out of
// order on its own thread (and lets a test watch each job start and finish), a graph run
// assembled by hand (so a test sees the token pool), and output-folder comparison.
#pragma once

#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "checkpoint_test_util.h"
#include "io/checkpoint.h"
#include "pipeline/plan/geometry.h"
#include "pipeline/plan/plan.h"
#include "pipeline/run/graph.h"
#include "pipeline/run/jobs.h"
#include "pipeline/run/token_pool.h"
#include "stages/compute_cpu.h"
#include "synthetic/make_checkpoint.h"
#include "synthetic_source_util.h"

namespace sq_graph_test {

namespace fs = std::filesystem;
using namespace shardquant;

constexpr uint64_t MiB = uint64_t{1} << 20;

inline fs::path scratch() {
  static const sq_test::temp_dir d("graph");
  return d.path;
}

// A bf16 llama checkpoint of about 24 MiB in 3 shards: its larger tensors do not fit a 4 MiB
// token, so small budgets split them (and fp8 gives them an amax pass).
inline const fs::path& source_dir() {
  static const fs::path dir = sq_test::make_llama(scratch() / "src", 24 * MiB, 8 * MiB, 11);
  return dir;
}

inline plan plan_of(scheme_id scheme) {
  plan_options po;
  po.scheme = scheme;
  po.exclude = std::vector<std::string>{};  // lm_head too: the largest tensor
  return make_plan(open_source_checkpoint(source_dir(), [](std::string) {}), po);
}

// The compute backend of these suites: the CPU math (run_cpu_compute), run on one thread of its
// own in an order the test chooses, so completions come back in another order than the jobs
// came. It waits a moment for more jobs before it picks one, so there is something to reorder.
class shuffling_backend final : public compute_backend {
 public:
  enum class order { newest, random, amax_last };
  // What happens to a job, seen from the backend: `start` before its math, `finish` after it,
  // before the graph hears of it.
  struct hooks {
    std::function<void(const job&)> start, finish;
  };

  shuffling_backend(order o, unsigned concurrency, uint64_t seed, hooks h = {})
      : order_(o), concurrency_(concurrency), rng_(seed), hooks_(std::move(h)) {
    worker_ = std::thread([this] { work(); });
  }
  ~shuffling_backend() override {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  void run(job& j, compute_done done) override {
    std::lock_guard lock(mutex_);
    held_.push_back({&j, std::move(done)});
    arrivals_.push_back(&j);
    cv_.notify_all();
  }
  void drain() override {
    std::unique_lock lock(mutex_);
    idle_cv_.wait(lock, [this] { return held_.empty() && !busy_; });
  }
  [[nodiscard]] unsigned concurrency() const noexcept override { return concurrency_; }
  [[nodiscard]] std::string name() const override { return "cpu"; }

  // Jobs in the order they arrived and in the order they completed.
  [[nodiscard]] std::vector<const job*> arrivals() const {
    std::lock_guard lock(mutex_);
    return arrivals_;
  }
  [[nodiscard]] std::vector<const job*> completions() const {
    std::lock_guard lock(mutex_);
    return completions_;
  }

 private:
  struct held_job {
    job* j;
    compute_done done;
  };

  size_t pick_locked() {
    if (order_ == order::random)
      return std::uniform_int_distribution<size_t>(0, held_.size() - 1)(rng_);
    if (order_ == order::amax_last)
      for (size_t i = held_.size(); i-- > 0;)
        if (held_[i].j->kind != job_kind::amax) return i;
    return held_.size() - 1;
  }

  void work() {
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || !held_.empty(); });
      if (stop_) return;
      // A moment for the graph to hand over more (up to its concurrency).
      cv_.wait_for(lock, std::chrono::milliseconds(2),
                   [this] { return stop_ || held_.size() >= concurrency_; });
      const size_t i = pick_locked();
      held_job h = std::move(held_[i]);
      held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(i));
      busy_ = true;
      lock.unlock();
      std::exception_ptr e;
      try {
        if (hooks_.start) hooks_.start(*h.j);
        run_cpu_compute(*h.j);
        if (hooks_.finish) hooks_.finish(*h.j);
      } catch (...) {
        e = std::current_exception();
      }
      lock.lock();
      completions_.push_back(h.j);
      lock.unlock();
      h.done(e);
      lock.lock();
      busy_ = false;
      if (held_.empty()) idle_cv_.notify_all();
    }
  }

  order order_;
  unsigned concurrency_;
  std::mt19937_64 rng_;
  hooks hooks_;
  mutable std::mutex mutex_;
  std::condition_variable cv_, idle_cv_;
  std::vector<held_job> held_;
  std::vector<const job*> arrivals_, completions_;
  bool busy_ = false, stop_ = false;
  std::thread worker_;
};

// A graph run assembled by hand, as quantize_checkpoint assembles it (no journal, no finalize):
// every shard of the plan into `out`.
struct graph_fixture {
  plan p;
  run_geometry geo;
  token_pool pool;
  std::unique_ptr<async_io> io;
  job_builder builder;
  graph_counters counters;

  graph_fixture(scheme_id scheme, uint64_t budget, const fs::path& out)
      : p(plan_of(scheme)),
        geo(decide_geometry(p, budget)),
        pool(geo.tokens, plain_host_allocator()),
        io(async_io::make_exact(io_engine_type::pread, 64)),
        builder(p, out, geo.tokens.token_bytes, true) {
    fs::create_directories(out);
  }

  // Runs the graph over every shard; rethrows what run_graph throws.
  void run(compute_backend& backend, const std::atomic<bool>* cancel = nullptr) {
    graph_run r;
    r.p = &p;
    r.builder = &builder;
    r.pool = &pool;
    r.io = io.get();
    r.backend = &backend;
    r.counters = &counters;
    r.cancel = cancel;
    for (uint32_t s = 0; s < p.shards.size(); ++s) r.shards.push_back(s);
    run_graph(r);
  }
};

using sq_test::tree;

// The shards a plain CPU graph run of `scheme` writes (made once per scheme and process).
inline const std::map<std::string, std::string>& reference_shards(scheme_id scheme) {
  static std::map<scheme_id, std::map<std::string, std::string>> cache;
  auto it = cache.find(scheme);
  if (it != cache.end()) return it->second;
  const fs::path out = scratch() / ("ref-" + std::string(info(scheme).name));
  graph_fixture f(scheme, 64 * MiB, out);
  auto cpu = make_cpu_backend(2);
  f.run(*cpu);
  return cache[scheme] = tree(out);
}

}  // namespace sq_graph_test
