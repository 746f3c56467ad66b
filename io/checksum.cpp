// checksum_piece: the positional word sum; checksum_file: the same over a whole file.
#include "io/checksum.h"

#include <fcntl.h>

#include <array>
#include <cstring>
#include <vector>

#include "io/file.h"

namespace shardquant {

namespace {

constexpr uint64_t block_bytes = 4096;
constexpr uint64_t words_per_block = block_bytes / 8;

constexpr uint64_t splitmix(uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

constexpr std::array<uint64_t, words_per_block> make_table() {
  std::array<uint64_t, words_per_block> t{};
  for (uint64_t i = 0; i < words_per_block; ++i) t[i] = splitmix(i + 0x5151) | 1;
  return t;
}
constexpr auto word_key = make_table();

uint64_t block_key(uint64_t block) noexcept {
  return splitmix(block ^ 0xa5a5a5a5ull) | 1;
}

uint64_t load_word(const std::byte* p) noexcept {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return w;  // little-endian hosts only (as the rest of shardquant)
}

}  // namespace

uint64_t checksum_piece(uint64_t offset, std::span<const std::byte> bytes) noexcept {
  uint64_t sum = 0;
  const std::byte* p = bytes.data();
  uint64_t pos = offset;
  uint64_t left = bytes.size();
  // A partial word (head or tail): its bytes in their lanes, the other lanes zero.
  auto partial = [&](uint64_t n) {
    const uint64_t word_pos = pos & ~uint64_t{7};
    const uint64_t lane = pos - word_pos;
    std::byte buf[8] = {};
    std::memcpy(buf + lane, p, n);
    const uint64_t w = word_pos / 8;
    sum += load_word(buf) * (block_key(w / words_per_block) * word_key[w % words_per_block]);
    p += n;
    pos += n;
    left -= n;
  };
  if (left && (pos & 7)) partial(std::min<uint64_t>(left, 8 - (pos & 7)));
  while (left >= 8) {
    // Whole words up to the end of this 4 KiB block: one block key, four accumulators.
    const uint64_t w0 = pos / 8;
    const uint64_t in_block = w0 % words_per_block;
    const uint64_t n = std::min<uint64_t>(left / 8, words_per_block - in_block);
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const uint64_t* k = word_key.data() + in_block;
    uint64_t i = 0;
    for (; i + 4 <= n; i += 4) {
      a0 += load_word(p + 8 * i) * k[i];
      a1 += load_word(p + 8 * i + 8) * k[i + 1];
      a2 += load_word(p + 8 * i + 16) * k[i + 2];
      a3 += load_word(p + 8 * i + 24) * k[i + 3];
    }
    for (; i < n; ++i) a0 += load_word(p + 8 * i) * k[i];
    sum += (a0 + a1 + a2 + a3) * block_key(w0 / words_per_block);
    p += 8 * n;
    pos += 8 * n;
    left -= 8 * n;
  }
  if (left) partial(left);
  return sum;
}

uint64_t checksum_file(const std::filesystem::path& file) {
  file_handle f = file_handle::open(file, O_RDONLY);
  const uint64_t size = f.size();
  std::vector<std::byte> buf(std::min<uint64_t>(size, uint64_t{8} << 20));
  uint64_t sum = 0;
  for (uint64_t off = 0; off < size;) {
    const auto n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off));
    pread_all(f.get(), std::span<std::byte>(buf.data(), n), off, f.path());
    sum += checksum_piece(off, std::span<const std::byte>(buf.data(), n));
    off += n;
  }
  return sum;
}

}  // namespace shardquant
