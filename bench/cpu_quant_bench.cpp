// CPU quantization throughput: for every scheme, GB/s of source bytes through the fast path
// (kernels/quantize.h) with one thread and with all threads, next to memcpy bandwidth measured in
// the same run (the floor a memory-bound kernel is judged against). Also the reference loop's
// single-thread rate, to show what the fast path buys.
// Usage: cpu_quant_bench [--mb N] [--cols C] [--dtype BF16|F16|F32] [--reps R] [--reference]
//                        [--scheme NAME]...
#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/info.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_isa.h"
#include "kernels/numeric.h"
#include "kernels/quantize.h"
#include "kernels/schemes.h"

using namespace shardquant;

namespace {

using clock_type = std::chrono::steady_clock;

double cpu_now() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Best wall-clock seconds of `reps` runs, and the process CPU seconds of that run: on a shared
// machine the CPU time shows what the code costs when other processes take the cores.
struct timing {
  double wall = 1e30;
  double cpu = 1e30;
};

template <class F>
timing best_seconds(int reps, F&& f) {
  timing best;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = clock_type::now();
    const double c0 = cpu_now();
    f();
    const double c = cpu_now() - c0;
    const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
    if (s < best.wall) best = {s, c};
  }
  return best;
}

struct rate {
  double wall;     // GB/s of source bytes, wall clock
  double per_cpu;  // GB/s per CPU-second (per busy thread)
};
rate rate_of(uint64_t bytes, timing t) {
  return {static_cast<double>(bytes) / t.wall / 1e9, static_cast<double>(bytes) / t.cpu / 1e9};
}

rate memcpy_rate(const std::vector<uint8_t>& src, std::vector<uint8_t>& dst, int threads,
                 int reps) {
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  const size_t n = src.size();
  const timing t = best_seconds(reps, [&] {
    tbb::parallel_for(tbb::blocked_range<size_t>(0, n, 1 << 22), [&](const auto& r) {
      std::memcpy(dst.data() + r.begin(), src.data() + r.begin(), r.end() - r.begin());
    });
  });
  return rate_of(n, t);
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t mb = 128;
  uint64_t cols = 4096;
  int reps = 3;
  bool with_reference = false;
  dtype d = dtype::bf16;
  std::vector<scheme_id> schemes;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value after %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--mb") {
      mb = std::stoull(next());
    } else if (a == "--cols") {
      cols = std::stoull(next());
    } else if (a == "--reps") {
      reps = std::stoi(next());
    } else if (a == "--reference") {
      with_reference = true;
    } else if (a == "--dtype") {
      const auto p = parse_dtype(next());
      if (!p || !is_quantizable_source(*p)) {
        std::fprintf(stderr, "--dtype must be BF16, F16 or F32\n");
        return 2;
      }
      d = *p;
    } else if (a == "--scheme") {
      const auto s = parse_scheme(next());
      if (!s) {
        std::fprintf(stderr, "unknown scheme\n");
        return 2;
      }
      schemes.push_back(*s);
    } else {
      std::fprintf(stderr,
                   "usage: %s [--mb N] [--cols C] [--dtype BF16|F16|F32] [--reps R] "
                   "[--reference] [--scheme NAME]...\n",
                   argv[0]);
      return 2;
    }
  }
  if (schemes.empty())
    for (const scheme_info& si : all_schemes()) schemes.push_back(si.id);

  const uint64_t esize = bits(d) / 8;
  const uint64_t rows = std::max<uint64_t>(8, (mb << 20) / esize / cols / 8 * 8);
  const std::vector<uint64_t> shape{rows, cols};
  const uint64_t numel = rows * cols;
  const uint64_t src_bytes = numel * esize;

  // Gaussian weights with per-row magnitudes, like a real checkpoint (no NaN/Inf).
  std::vector<uint8_t> src(src_bytes);
  {
    std::mt19937 rng(42);
    std::normal_distribution<float> n01(0.0f, 0.02f);
    for (uint64_t i = 0; i < numel; ++i) {
      const float x = n01(rng);
      if (d == dtype::f32) {
        std::memcpy(&src[4 * i], &x, 4);
      } else {
        const uint16_t h = d == dtype::bf16 ? to_bf16_rne(x) : to_f16_rne(x);
        std::memcpy(&src[2 * i], &h, 2);
      }
    }
  }
  std::vector<uint8_t> copy(src_bytes);
  const int all = tbb::info::default_concurrency();
  // Touch the destination once so page faults are not timed.
  (void)memcpy_rate(src, copy, all, 1);
  const rate mem1 = memcpy_rate(src, copy, 1, reps);
  const rate memall = memcpy_rate(src, copy, all, reps);
  copy.clear();
  copy.shrink_to_fit();

  std::printf("fast path ISA level: %s (cap with SHARDQUANT_CPU_ISA=baseline|avx2)\n",
              cpu_isa_name(active_cpu_isa()));
  std::printf("source: %s [%llu, %llu] = %.1f MiB; threads: 1 and %d; best of %d runs\n",
              std::string(name(d)).c_str(), static_cast<unsigned long long>(rows),
              static_cast<unsigned long long>(cols), src_bytes / 1048576.0, all, reps);
  std::printf(
      "memcpy: 1 thread %.2f GB/s wall, %.2f GB/s per CPU-s; %d threads %.2f GB/s wall, "
      "%.2f GB/s per CPU-s\n\n",
      mem1.wall, mem1.per_cpu, all, memall.wall, memall.per_cpu);
  std::printf("%-22s %9s %9s %8s | %9s %9s %8s%s\n", "scheme", "1T wall", "1T /CPUs", "/memcpy",
              "allT wall", "allT/CPUs", "/memcpy", with_reference ? " | ref 1T /CPUs" : "");
  for (scheme_id s : schemes) {
    std::vector<std::vector<uint8_t>> outs;
    for (const output_tensor& t : output_tensors(s, shape)) outs.emplace_back(t.byte_size(), 0);
    quant_outputs o;
    o.weight = outs[0].data();
    o.scale = outs.size() > 1 ? outs[1].data() : nullptr;
    o.extra = outs.size() > 2 ? outs[2].data() : nullptr;
    const source_view v{d, shape, src.data()};
    bool failed = false;
    auto once = [&] {
      if (!quantize(s, v, o).ok()) failed = true;
    };
    timing t1, tall;
    {
      tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 1);
      once();  // warm-up: page in the outputs
      t1 = best_seconds(reps, once);
    }
    {
      tbb::global_control gc(tbb::global_control::max_allowed_parallelism, all);
      tall = best_seconds(reps, once);
    }
    timing tref;
    if (with_reference)
      tref = best_seconds(1, [&] {
        if (!reference::quantize(s, v, o).ok()) failed = true;
      });
    if (failed) {
      std::printf("%-22s quantize failed\n", std::string(info(s).name).c_str());
      return 1;
    }
    const rate r1 = rate_of(src_bytes, t1), rall = rate_of(src_bytes, tall);
    // The ratio to memcpy compares like with like: per CPU-second for one thread (robust to other
    // processes on the machine), wall clock for all threads.
    std::printf("%-22s %9.2f %9.2f %8.2f | %9.2f %9.2f %8.2f", std::string(info(s).name).c_str(),
                r1.wall, r1.per_cpu, r1.per_cpu / mem1.per_cpu, rall.wall, rall.per_cpu,
                rall.wall / memall.wall);
    if (with_reference) std::printf(" | %9.2f", rate_of(src_bytes, tref).per_cpu);
    std::printf("\n");
    std::fflush(stdout);
  }
  return 0;
}
