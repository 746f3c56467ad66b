// The pinned host allocator of the token pool (its own translation unit: it is the only pipeline
// file that needs kernels/gpu_api.h).
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "kernels/gpu_api.h"
#include "pipeline/run/token_pool.h"

namespace shardquant {

host_allocator pinned_host_allocator() {
  // The buffers' owners live in a table shared by both functions.
  struct table {
    std::mutex mutex;
    std::unordered_map<std::byte*, gpu::pinned_buffer> buffers;
  };
  auto t = std::make_shared<table>();
  return {[t](uint64_t n) {
            gpu::pinned_buffer b(n);
            auto* p = static_cast<std::byte*>(b.data());
            std::lock_guard lock(t->mutex);
            t->buffers.emplace(p, std::move(b));
            return p;
          },
          [t](std::byte* p, uint64_t) {
            std::lock_guard lock(t->mutex);
            t->buffers.erase(p);
          }};
}

}  // namespace shardquant
