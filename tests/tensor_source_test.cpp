// io/tensor_source (the source seam): the landing rules every layout relies on, and both source
// kinds (plain and zstd) landing the same bytes at the same place of a read area, never past it,
// for ranges at any offset; read_now; a range past the end fails; the kind follows the name;
// gather puts strided runs back to back.
#include "io/tensor_source.h"

#include <fcntl.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "checkpoint_test_util.h"
#include "io/error.h"
#include "io/file.h"
#include "io/zstd_writer.h"

using namespace shardquant;
namespace fs = std::filesystem;

namespace {

struct aligned_area {
  explicit aligned_area(size_t n) : size(n) {
    REQUIRE(posix_memalign(reinterpret_cast<void**>(&p), token_area_alignment, n) == 0);
    std::memset(p, 0xCD, n);  // poison: an unwritten or overwritten byte shows
  }
  ~aligned_area() { free(p); }
  aligned_area(const aligned_area&) = delete;
  aligned_area& operator=(const aligned_area&) = delete;
  std::byte* p = nullptr;
  size_t size;
};

std::vector<std::byte> random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = std::byte(rng() % 23);  // compressible, not constant
  return v;
}

// A plain file `X.safetensors` of `data` and its zstd twin `X.safetensors.zst` (several frames,
// so ranges start inside frames too). The plain source does not parse the bytes.
struct twin_sources {
  sq_test::temp_dir dir{"tensor-source"};
  std::vector<std::byte> data;
  fs::path plain, zst;
  explicit twin_sources(size_t n) : data(random_bytes(n, 42)) {
    plain = dir.path / "x.safetensors";
    zst = dir.path / "x.safetensors.zst";
    sq_test::write_text(plain, std::string(reinterpret_cast<const char*>(data.data()), n));
    shardquant::file_handle f = shardquant::file_handle::open(plain, O_RDONLY);
    (void)write_zstd_seekable(f.get(), plain.string(), n, {4096, 100000, 1 << 20}, zst, {});
  }
};

std::exception_ptr read_into(tensor_source& s, async_io& io, uint64_t off, uint64_t len,
                             std::byte* area) {
  std::promise<std::exception_ptr> p;
  s.read(io, off, len, area, false, "t", [&](std::exception_ptr e) { p.set_value(e); });
  return p.get_future().get();
}

}  // namespace

TEST_CASE("the landing rules: read skip, write placement, scratch and device rounding") {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 10000; ++i) {
    const uint64_t off = rng() % (uint64_t{1} << 40), len = rng() % (uint64_t{1} << 24);
    const uint64_t pos = rng() % (uint64_t{1} << 30);
    INFO("offset " << off << " length " << len << " pos " << pos);
    // The wanted bytes start where the aligned superset read puts them, inside the area.
    CHECK(read_skip(off) == aligned_read_extent(off, len).skip);
    CHECK(aligned_read_extent(off, len).span() <= read_area_bytes(len));
    CHECK(read_skip(off) + len <= read_area_bytes(len));
    // Areas and scratch start at or after pos, aligned, less than one alignment unit later.
    CHECK(read_area_start(pos) % token_area_alignment == 0);
    CHECK(read_area_start(pos) - pos < token_area_alignment);
    CHECK(scratch_start(pos) % token_scratch_alignment == 0);
    CHECK(scratch_start(pos) - pos < token_scratch_alignment);
    // A write's bytes keep the file offset's place in its block (O_DIRECT for whole blocks),
    // start at or after pos and lose less than the slack of one area.
    const uint64_t w = write_start(pos, off);
    CHECK(w % token_area_alignment == off % token_area_alignment);
    CHECK(w >= pos);
    CHECK(w - pos < alignment_slack(2));
    // Device copies start on a 16-byte boundary inside the block-aligned area of the position.
    const uint64_t d = device_start(w);
    CHECK(d % device_vector_bytes == 0);
    CHECK(d <= w);
    CHECK(w - d < device_vector_bytes);
    CHECK(d >= align_down(w, token_area_alignment));
  }
  CHECK(whole_blocks(3 * token_area_alignment - 1) == 2 * token_area_alignment);
}

TEST_CASE("the source kind follows the file name: .safetensors.zst is a stream, others plain") {
  twin_sources t(300000);
  CHECK(open_tensor_source(t.plain, {})->kind() == "plain");
  CHECK(open_tensor_source(t.zst, {.direct = true, .plain_size = t.data.size()})->kind() == "zstd");
  CHECK(open_tensor_source(t.zst, {})->path() == t.zst.string());
  CHECK_THROWS_AS((void)open_tensor_source(t.dir.path / "missing.safetensors", {}), io_error);
}

TEST_CASE("both kinds land a range at read_skip of its area and write nothing past the area") {
  const size_t n = (size_t(3) << 20) + 4321;  // a partial last block
  twin_sources t(n);
  auto io = async_io::make_exact(io_engine_type::pread, 8);
  struct range {
    uint64_t off, len;
  };
  std::vector<range> ranges{{0, n},           {1, 4095},  {4096, 8192}, {n - 1, 1},
                            {n - 5000, 5000}, {99999, 2}, {0, 0},       {4095, 2}};
  std::mt19937_64 rng(3);
  for (int i = 0; i < 30; ++i) {
    const uint64_t off = rng() % n;
    ranges.push_back({off, rng() % std::min<uint64_t>(n - off + 1, 1 << 20)});
  }
  for (const fs::path& file : {t.plain, t.zst}) {
    auto src = open_tensor_source(file, {.direct = true, .plain_size = n});
    for (const auto& r : ranges) {
      INFO(src->kind() << " offset " << r.off << " length " << r.len);
      const uint64_t area = read_area_bytes(r.len);
      aligned_area buf(area + token_area_alignment);  // one poisoned block past the area
      const std::exception_ptr e = read_into(*src, *io, r.off, r.len, buf.p);
      REQUIRE(e == nullptr);
      CHECK(std::memcmp(buf.p + read_skip(r.off), t.data.data() + r.off, r.len) == 0);
      bool past_untouched = true;
      for (uint64_t b = area; b < buf.size; ++b) past_untouched &= buf.p[b] == std::byte{0xCD};
      CHECK(past_untouched);
      // read_now: the same bytes, to the start of the destination.
      std::vector<std::byte> now(r.len);
      src->read_now(r.off, r.len, now.data(), "t");
      CHECK(std::memcmp(now.data(), t.data.data() + r.off, r.len) == 0);
    }
  }
}

TEST_CASE("a range past the end of the plain bytes fails for both kinds") {
  const size_t n = 200000;
  twin_sources t(n);
  auto io = async_io::make_exact(io_engine_type::pread, 4);
  for (const fs::path& file : {t.plain, t.zst}) {
    auto src = open_tensor_source(file, {.direct = true, .plain_size = n});
    INFO(src->kind());
    aligned_area buf(read_area_bytes(20));
    CHECK(read_into(*src, *io, n - 10, 20, buf.p) != nullptr);
  }
}

TEST_CASE("gather puts the runs of a strided range back to back from where they landed") {
  source_range r;
  r.offset = 4096 * 3 + 100;  // lands 100 bytes into its area
  r.runs = 5;
  r.run_bytes = 7;
  r.stride = 33;
  r.length = (r.runs - 1) * r.stride + r.run_bytes;
  CHECK(r.wanted_bytes() == 35);
  CHECK(r.skip() == 100);
  CHECK(r.area_bytes() == read_area_bytes(r.length));
  std::vector<std::byte> area(r.area_bytes());
  for (size_t i = 0; i < area.size(); ++i) area[i] = std::byte(i & 0xFF);
  std::vector<std::byte> out(r.wanted_bytes(), std::byte{0xEE});
  r.gather(area.data(), out.data());
  for (uint64_t k = 0; k < r.runs; ++k)
    for (uint64_t b = 0; b < r.run_bytes; ++b)
      CHECK(out[k * r.run_bytes + b] == area[r.skip() + k * r.stride + b]);
}
