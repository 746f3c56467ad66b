// The shard checksum: pieces in any order and any split add up to the whole file's checksum,
// unwritten (zero) gaps count as nothing, and any single changed byte changes it.
#include "io/checksum.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "checkpoint_test_util.h"

using namespace shardquant;

TEST_CASE("checksum pieces written in any order and split add up to the file's checksum") {
  std::mt19937_64 rng(3);
  std::vector<std::byte> data(100000);
  for (auto& b : data) b = std::byte(rng() & 0xff);
  const uint64_t whole = checksum_piece(0, data);
  // Random cuts, summed in shuffled order.
  std::vector<size_t> cuts = {0, data.size()};
  for (int i = 0; i < 40; ++i) cuts.push_back(rng() % data.size());
  std::sort(cuts.begin(), cuts.end());
  std::vector<std::pair<size_t, size_t>> pieces;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) pieces.emplace_back(cuts[i], cuts[i + 1]);
  std::shuffle(pieces.begin(), pieces.end(), rng);
  uint64_t sum = 0;
  for (auto [a, b] : pieces)
    sum += checksum_piece(a, std::span<const std::byte>(data.data() + a, b - a));
  CHECK(sum == whole);
  // A file holding the data after a zero gap: the gap adds nothing.
  sq_test::temp_dir d("sum");
  const std::string text(reinterpret_cast<const char*>(data.data()), data.size());
  sq_test::write_text(d.path / "f", std::string(4093, '\0') + text);
  CHECK(checksum_file(d.path / "f") == checksum_piece(4093, data));
}

TEST_CASE("every single changed byte changes the checksum") {
  std::vector<std::byte> data(9000, std::byte{0x5a});
  const uint64_t base = checksum_piece(0, data);
  for (size_t i = 0; i < data.size(); i += 7) {
    for (unsigned x : {1u, 0x80u, 0xffu}) {
      data[i] ^= std::byte(x);
      CHECK(checksum_piece(0, data) != base);
      data[i] ^= std::byte(x);
    }
  }
}

TEST_CASE("checksum cost on 1 GiB of shard bytes (printed, not asserted)") {
  std::vector<std::byte> block(64ull << 20, std::byte{1});
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t sum = 0;
  for (uint64_t off = 0; off < (1ull << 30); off += block.size()) sum += checksum_piece(off, block);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("checksum of 1 GiB: " << s << " s (" << 1.073741824 / s << " GB/s), sum " << sum);
  CHECK(s > 0);
}
