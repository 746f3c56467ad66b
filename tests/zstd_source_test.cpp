// io/zstd_source and io/zstd_writer on their own: the seek table round trip and its damage, the
// header probe of a compressed shard against the plain reader, reads at any offset in any order
// (backward reads restart a cursor) against the plain bytes, and the window refusal.
#include <fcntl.h>
#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "checkpoint_test_util.h"
#include "io/error.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "io/zstd_source.h"
#include "io/zstd_writer.h"

using namespace shardquant;
namespace fs = std::filesystem;

namespace {

int sh(const std::string& cmd) {
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

// A plain shard of a few U8 tensors with pseudo-random (but compressible) bytes.
fs::path make_plain(const fs::path& dir, uint64_t seed) {
  const fs::path p = dir / "model.safetensors";
  std::vector<tensor_spec> specs{
      {"a", dtype::u8, {300000}}, {"b", dtype::u8, {7}}, {"c", dtype::u8, {2, 1000003}}};
  shard_writer w(shard_layout::make(p.string(), specs), p);
  std::mt19937_64 rng(seed);
  for (const auto& s : specs) {
    std::vector<std::byte> d(s.byte_size());
    for (auto& b : d) b = std::byte(rng() % 17);
    w.write_tensor(s.name, d);
  }
  w.commit();
  return p;
}

}  // namespace

TEST_CASE("the seek table reads back as written and a damaged one is an error naming the file") {
  sq_test::temp_dir d("zstd-seek");
  const fs::path plain = make_plain(d.path, 1);
  const fs::path z = d.path / "model.safetensors.zst";
  shardquant::file_handle f = shardquant::file_handle::open(plain, O_RDONLY);
  const uint64_t size = fs::file_size(plain);
  (void)write_zstd_seekable(f.get(), plain.string(), size, {4096, 100000}, z, {});
  shardquant::file_handle zf = shardquant::file_handle::open(z, O_RDONLY);
  const auto table = read_zstd_seek_table(zf.get(), fs::file_size(z), z.string());
  REQUIRE(table.has_value());
  uint64_t plain_total = 0, comp_total = 0;
  for (const auto& e : *table) {
    plain_total += e.decompressed_size;
    comp_total += e.compressed_size;
  }
  CHECK(plain_total == size);
  CHECK(table->size() >= 3);  // header, the cut, and the tensors' own frames
  CHECK(comp_total + 8 + 8 * table->size() + 9 == fs::file_size(z));

  // One compressed size too large: the frames no longer add up to the file.
  std::string bytes = sq_test::read_text(z);
  const size_t first_entry = bytes.size() - 9 - 8 * table->size();
  bytes[first_entry] = static_cast<char>(bytes[first_entry] + 1);
  sq_test::write_text(d.path / "bad.safetensors.zst", bytes);
  shardquant::file_handle bf =
      shardquant::file_handle::open(d.path / "bad.safetensors.zst", O_RDONLY);
  CHECK_THROWS_WITH_AS(
      (void)read_zstd_seek_table(bf.get(), bytes.size(), (d.path / "bad.safetensors.zst").string()),
      doctest::Contains("bad.safetensors.zst"), input_error);
}

TEST_CASE("the header of a zstd-command shard equals the plain shard's, and reads match bytes") {
  sq_test::temp_dir d("zstd-read");
  const fs::path plain = make_plain(d.path, 2);
  REQUIRE(sh("zstd -q -k '" + plain.string() + "'") == 0);
  const fs::path z = plain.string() + ".zst";
  const safetensors_header h = read_safetensors_header(plain);
  const zstd_shard_info info = read_zstd_shard_info(z);
  CHECK_FALSE(info.seekable);
  CHECK(info.header.file_size == h.file_size);
  CHECK(info.header.data_start == h.data_start);
  REQUIRE(info.header.tensors.size() == h.tensors.size());
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    CHECK(info.header.tensors[i].name == h.tensors[i].name);
    CHECK(info.header.tensors[i].begin == h.tensors[i].begin);
  }
  const std::string bytes = sq_test::read_text(plain);
  auto src = zstd_source::open(z, false, h.file_size);
  // Forward, backward (restart), companion cursor, a read that ends the file.
  const std::vector<std::pair<uint64_t, uint64_t>> reads{
      {5000, 70000}, {100, 10}, {h.file_size - 1000, 1000}, {200000, 1}, {0, 8}};
  for (const auto& [off, len] : reads) {
    for (bool companion : {false, true}) {
      INFO("offset " << off << " length " << len << (companion ? " companion" : ""));
      std::vector<std::byte> out(len, std::byte{0xEE});
      src->read_now(off, len, out.data(), companion, "t");
      CHECK(std::memcmp(out.data(), bytes.data() + off, len) == 0);
    }
  }
  // A read past the data the stream holds names the file.
  std::vector<std::byte> out(16);
  const std::string zname = z.string();
  CHECK_THROWS_WITH_AS(src->read_now(h.file_size, 16, out.data(), false, "t"),
                       doctest::Contains(zname.c_str()), input_error);
}

TEST_CASE("a frame whose window is above 128 MiB is refused when the shard is opened") {
  sq_test::temp_dir d("zstd-window");
  const fs::path plain = make_plain(d.path, 3);
  const fs::path z = d.path / "wide.safetensors.zst";
  // From a pipe zstd does not know the size, so the window stays 2 GiB.
  REQUIRE(sh("cat '" + plain.string() + "' | zstd -q --long=31 -c > '" + z.string() + "'") == 0);
  CHECK_THROWS_WITH_AS((void)read_zstd_shard_info(z), doctest::Contains("window"), input_error);
}
