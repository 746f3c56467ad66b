// The per-scheme CPU fallback of a device backend (stages/compute_fallback.h): which jobs leave the
// device, and that the wrapper hands them to the CPU path and everything else to the device.
#include "stages/compute_fallback.h"

#include <doctest/doctest.h>

#include <stdexcept>
#include <tuple>
#include <vector>

using namespace shardquant;

namespace {

// A device backend that records what it was given.
class recording_backend final : public compute_backend {
 public:
  explicit recording_backend(std::vector<std::string>* seen) : seen_(seen) {}
  void run(job& j, compute_done done) override {
    seen_->push_back(j.tensor);
    done(nullptr);
  }
  void drain() override {}
  [[nodiscard]] unsigned concurrency() const noexcept override { return 3; }
  [[nodiscard]] std::string name() const override { return "fake-cuda"; }

 private:
  std::vector<std::string>* seen_;
};

job make_job(job_kind k, const weight_scheme& s, const char* name) {
  job j;
  j.kind = k;
  j.scheme = s;
  j.tensor = name;
  return j;
}

}  // namespace

TEST_CASE(
    "jobs of schemes without a CUDA kernel take the CPU path, the others stay on the device") {
  CHECK(needs_cpu_fallback(make_job(job_kind::quantize, scheme_id::nvfp4, "a"), backend_cuda));
  CHECK(
      needs_cpu_fallback(make_job(job_kind::amax, scheme_id::amdfp4_global16, "a"), backend_cuda));
  CHECK(needs_cpu_fallback(make_job(job_kind::quantize, scheme_id::amdfp4_g32, "a"), backend_cuda));
  CHECK_FALSE(needs_cpu_fallback(make_job(job_kind::quantize, scheme_id::nvfp4, "a"), backend_cpu));
  CHECK_FALSE(
      needs_cpu_fallback(make_job(job_kind::quantize, scheme_id::mxfp4, "a"), backend_cuda));
  CHECK_FALSE(
      needs_cpu_fallback(make_job(job_kind::quantize, scheme_id::int4_fp8, "a"), backend_cuda));
  // Copies and casts are not scheme work: the device backend decides for them.
  CHECK_FALSE(needs_cpu_fallback(make_job(job_kind::copy, scheme_id::nvfp4, "a"), backend_cuda));
}

TEST_CASE("the fallback wrapper sends unsupported jobs to the CPU path and reports the device") {
  std::vector<std::string> device_seen, cpu_seen;
  auto b = with_cpu_fallback(std::make_unique<recording_backend>(&device_seen), backend_cuda,
                             [&](job& j) { cpu_seen.push_back(j.tensor); });
  int done_calls = 0;
  for (auto [k, s, n] :
       {std::tuple{job_kind::quantize, weight_scheme(scheme_id::nvfp4), "nv"},
        std::tuple{job_kind::amax, weight_scheme(scheme_id::amdfp4_global32), "ag"},
        std::tuple{job_kind::quantize, weight_scheme(scheme_id::fp8), "f8"},
        std::tuple{job_kind::copy, weight_scheme(scheme_id::amdfp4), "cp"}}) {
    job j = make_job(k, s, n);
    b->run(j, [&](std::exception_ptr e) {
      CHECK_FALSE(e);
      ++done_calls;
    });
  }
  CHECK(done_calls == 4);
  CHECK(cpu_seen == std::vector<std::string>{"nv", "ag"});
  CHECK(device_seen == std::vector<std::string>{"f8", "cp"});
  CHECK(b->name() == "fake-cuda");
  CHECK(b->concurrency() == 3);
}

TEST_CASE("an error on the CPU path reaches the job's completion") {
  std::vector<std::string> device_seen;
  auto b = with_cpu_fallback(std::make_unique<recording_backend>(&device_seen), backend_cuda,
                             [](job&) { throw std::runtime_error("bad weight"); });
  job j = make_job(job_kind::quantize, scheme_id::nvfp4, "nv");
  bool got = false;
  b->run(j, [&](std::exception_ptr e) { got = static_cast<bool>(e); });
  CHECK(got);
  CHECK(device_seen.empty());
}

TEST_CASE("every job of a rotated tensor takes the CPU path on a device backend") {
  job a = make_job(job_kind::amax, scheme_id::fp8, "w");
  job q = make_job(job_kind::quantize, scheme_id::mxfp4, "w");
  for (job* j : {&a, &q}) j->rotations.push_back({rotation_kind::input_full, 64});
  CHECK(needs_cpu_fallback(a, backend_cuda));
  CHECK(needs_cpu_fallback(q, backend_cuda));
  CHECK_FALSE(needs_cpu_fallback(q, backend_cpu));
  std::vector<std::string> device_seen, cpu_seen;
  auto b = with_cpu_fallback(std::make_unique<recording_backend>(&device_seen), backend_cuda,
                             [&](job& j) { cpu_seen.push_back(j.tensor); });
  b->run(q, [](std::exception_ptr e) { CHECK_FALSE(e); });
  CHECK(cpu_seen == std::vector<std::string>{"w"});
  CHECK(device_seen.empty());
}
