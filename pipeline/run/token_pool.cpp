// Token pool: allocation of the budget's buffers and live-token accounting.
#include "pipeline/run/token_pool.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "io/error.h"

namespace shardquant {

host_allocator plain_host_allocator() {
  return {[](uint64_t n) {
            void* p = nullptr;
            if (::posix_memalign(&p, 4096, n) != 0) throw std::bad_alloc();
            return static_cast<std::byte*>(p);
          },
          [](std::byte* p, uint64_t) { std::free(p); }};
}

token_geometry choose_token_geometry(uint64_t budget) {
  constexpr uint64_t min_token = uint64_t{4} << 20, max_token = uint64_t{256} << 20;
  constexpr uint64_t grain = uint64_t{64} << 10;
  if (budget < 2 * min_token)
    throw usage_error("memory budget " + std::to_string(budget) +
                      " bytes is below the minimum of " + std::to_string(2 * min_token) +
                      " bytes (two 4 MiB buffers)");
  uint64_t t = budget / 8;
  t = t < min_token ? min_token : (t > max_token ? max_token : t);
  t = t / grain * grain;
  uint64_t n = budget / t;
  if (n < 2) n = 2;
  return {t, n};
}

token_pool::token_pool(token_geometry g, host_allocator alloc)
    : geometry_(g), alloc_(std::move(alloc)), taken_(new std::atomic<bool>[g.count]) {
  tokens_.reserve(g.count);
  try {
    for (uint64_t i = 0; i < g.count; ++i) {
      tokens_.push_back(token{alloc_.allocate(g.token_bytes), g.token_bytes, uint32_t(i)});
      taken_[i] = false;
    }
  } catch (...) {
    for (auto& t : tokens_) alloc_.release(t.data, t.size);
    throw;
  }
}

token_pool::~token_pool() {
  for (auto& t : tokens_) alloc_.release(t.data, t.size);
}

std::vector<token*> token_pool::all() {
  std::vector<token*> v;
  for (auto& t : tokens_) v.push_back(&t);
  return v;
}

void token_pool::on_take(const token* t) {
  if (t->index >= tokens_.size() || taken_[t->index].exchange(true))
    throw std::logic_error("token " + std::to_string(t->index) + " taken twice");
  const uint64_t now = live_.fetch_add(1) + 1;
  if (now > geometry_.count) throw std::logic_error("more live tokens than the pool holds");
  uint64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
}

void token_pool::on_return(const token* t) {
  if (t->index >= tokens_.size() || !taken_[t->index].exchange(false))
    throw std::logic_error("token " + std::to_string(t->index) + " returned but not taken");
  live_.fetch_sub(1);
}

}  // namespace shardquant
