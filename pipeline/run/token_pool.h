// The memory budget as a fixed set of equal-size host buffers: the tokens of the flow graph
// (oneTBB token recipe; the buffer itself is the token). All tensor-sized host memory of a run is
// allocated here, once, at start; a job holds one token from its read until its output is
// written. Counts live tokens so tests and the report can check the bound. No file I/O, no math.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "stages/token.h"

namespace shardquant {

// Allocates and frees one host buffer (page-aligned; pinned when a GPU backend provides it).
struct host_allocator {
  std::function<std::byte*(uint64_t)> allocate;
  std::function<void(std::byte*, uint64_t)> release;
};
// Page-aligned plain memory (posix_memalign). Pages become resident as jobs first use them, so
// a budget larger than the data costs only the pages the run touches.
[[nodiscard]] host_allocator plain_host_allocator();
// Page-locked memory through kernels/gpu_api.h (cudaHostAlloc), for the CUDA backend: async
// copies from and to it overlap with kernels. Throws gpu::unavailable_error without CUDA.
[[nodiscard]] host_allocator pinned_host_allocator();

// How a budget is cut into tokens.
struct token_geometry {
  uint64_t token_bytes = 0;
  uint64_t count = 0;
};
// budget / 8 per token, clamped to [4 MiB, 256 MiB] and to a multiple of 64 KiB; at least two
// tokens. Throws usage_error for a budget below two minimum tokens.
[[nodiscard]] token_geometry choose_token_geometry(uint64_t budget);

class token_pool {
 public:
  token_pool(token_geometry g, host_allocator alloc);
  ~token_pool();
  token_pool(const token_pool&) = delete;
  token_pool& operator=(const token_pool&) = delete;

  [[nodiscard]] uint64_t token_bytes() const noexcept { return geometry_.token_bytes; }
  [[nodiscard]] uint64_t count() const noexcept { return geometry_.count; }
  [[nodiscard]] uint64_t total_bytes() const noexcept {
    return geometry_.token_bytes * geometry_.count;
  }
  // Every token, for seeding the graph's token buffer.
  [[nodiscard]] std::vector<token*> all();

  // Bookkeeping: a job took / gave back a token. Throws std::logic_error when more tokens are
  // live than exist (a token handed out twice) or one is returned that was not taken.
  void on_take(const token* t);
  void on_return(const token* t);
  [[nodiscard]] uint64_t live() const noexcept { return live_.load(); }
  [[nodiscard]] uint64_t peak_live() const noexcept { return peak_.load(); }

 private:
  token_geometry geometry_;
  host_allocator alloc_;
  std::vector<token> tokens_;
  std::unique_ptr<std::atomic<bool>[]> taken_;
  std::atomic<uint64_t> live_{0};
  std::atomic<uint64_t> peak_{0};
};

}  // namespace shardquant
