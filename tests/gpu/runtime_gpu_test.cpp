// The runtime half of kernels/gpu_api.h: device queries, RAII handles, async copies, completion
// callbacks (success and a failed stream), events, and typed CUDA errors.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "kernels/gpu_api.h"

using namespace shardquant;

TEST_CASE("the device is reported with a name and a memory size") {
  CHECK(gpu::built_with_cuda());
  REQUIRE(gpu::device_count() >= 1);
  CHECK(gpu::unavailable_reason().empty());
  const gpu::device_properties p = gpu::properties(0);
  CHECK(!p.name.empty());
  CHECK(p.multiprocessors > 0);
  CHECK(p.global_memory_bytes > 0);
  const gpu::memory_info m = gpu::memory(0);
  CHECK(m.free_bytes <= m.total_bytes);
}

TEST_CASE("pinned buffers round-trip through device buffers on a stream") {
  gpu::stream s(0);
  const size_t n = (1 << 20) + 3;
  gpu::pinned_buffer a(n), b(n);
  for (size_t i = 0; i < n; ++i) a.as<uint8_t>()[i] = static_cast<uint8_t>(i * 131 + 7);
  std::memset(b.data(), 0, n);
  gpu::device_buffer d1(n, 0), d2(n, 0);
  gpu::fill_device(d2.data(), 0xEE, n, s);
  gpu::copy_to_device(d1.data(), a.data(), n, s);
  gpu::copy_on_device(d2.data(), d1.data(), n - 1, s);
  gpu::copy_to_host(b.data(), d2.data(), n, s);
  s.synchronize();
  CHECK(std::memcmp(a.data(), b.data(), n - 1) == 0);
  CHECK(b.as<uint8_t>()[n - 1] == 0xEE);
  CHECK(s.done());
  // Moves leave an empty handle behind.
  gpu::device_buffer moved = std::move(d1);
  CHECK(d1.data() == nullptr);
  CHECK(moved.size() == n);
}

TEST_CASE("on_complete runs once after the stream's earlier work, without blocking the caller") {
  gpu::stream s(0);
  gpu::pinned_buffer h(64 << 20);
  gpu::device_buffer d(64 << 20, 0);
  std::atomic<int> calls{0};
  std::atomic<bool> ok{false};
  gpu::copy_to_device(d.data(), h.data(), h.size(), s);
  gpu::on_complete(s, [&](std::exception_ptr e) {
    ok = e == nullptr;
    ++calls;
  });
  s.synchronize();
  // The callback may still be finishing on the driver thread right after the synchronize.
  for (int i = 0; i < 1000 && calls.load() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(calls.load() == 1);
  CHECK(ok.load());
}

TEST_CASE("events order two streams and time the work between them") {
  gpu::stream a(0), b(0);
  gpu::event start(0), stop(0);
  gpu::device_buffer d(32 << 20, 0);
  start.record(a);
  gpu::fill_device(d.data(), 1, d.size(), a);
  stop.record(a);
  b.wait(stop);
  gpu::pinned_buffer h(16);
  gpu::copy_to_host(h.data(), d.data(), 16, b);
  b.synchronize();
  CHECK(stop.done());
  CHECK(h.as<uint8_t>()[15] == 1);
  CHECK(stop.elapsed_ms_since(start) >= 0.0f);
}

TEST_CASE("a failing CUDA call throws cuda_error naming the call and the CUDA error") {
  try {
    gpu::device_buffer huge(size_t{1} << 60, 0);
    FAIL("allocating 2^60 bytes should fail");
  } catch (const gpu::cuda_error& e) {
    const std::string what = e.what();
    CAPTURE(what);
    CHECK(what.find("cudaMalloc") != std::string::npos);
    CHECK(what.find("runtime.cu:") != std::string::npos);
    CHECK(e.code_name() == "cudaErrorMemoryAllocation");
  }
  CHECK_THROWS_AS(gpu::properties(1 << 20), gpu::cuda_error);
}
