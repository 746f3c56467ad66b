// token_pool: geometry from a budget, allocation once, and live-token accounting that catches
// double takes and foreign returns.
#include "pipeline/run/token_pool.h"

#include <cstdint>
#include <stdexcept>

#include <doctest/doctest.h>

#include "io/error.h"

using namespace shardquant;

TEST_CASE("a budget is cut into equal tokens that never exceed it") {
  for (uint64_t mib : {8ull, 64ull, 100ull, 1024ull, 8192ull, 65536ull}) {
    const uint64_t b = mib << 20;
    const auto g = choose_token_geometry(b);
    INFO("budget MiB " << mib);
    CHECK(g.count >= 2);
    CHECK(g.token_bytes * g.count <= b);
    CHECK(g.token_bytes % 65536 == 0);
    CHECK(g.token_bytes >= (uint64_t{4} << 20));
    CHECK(g.token_bytes <= (uint64_t{256} << 20));
  }
  CHECK_THROWS_AS((void)choose_token_geometry(uint64_t{7} << 20), usage_error);
}

TEST_CASE("the pool hands out page-aligned buffers and counts live tokens") {
  token_pool pool(token_geometry{uint64_t{4} << 20, 3}, plain_host_allocator());
  auto all = pool.all();
  REQUIRE(all.size() == 3);
  for (auto* t : all) {
    CHECK(reinterpret_cast<uintptr_t>(t->data) % 4096 == 0);
    CHECK(t->size == (uint64_t{4} << 20));
  }
  pool.on_take(all[0]);
  pool.on_take(all[2]);
  CHECK(pool.live() == 2);
  CHECK_THROWS_AS(pool.on_take(all[0]), std::logic_error);
  pool.on_return(all[0]);
  CHECK_THROWS_AS(pool.on_return(all[0]), std::logic_error);
  pool.on_take(all[0]);
  pool.on_take(all[1]);
  CHECK(pool.live() == 3);
  CHECK(pool.peak_live() == 3);
  for (auto* t : all) pool.on_return(t);
  CHECK(pool.live() == 0);
  CHECK(pool.peak_live() == 3);
}
