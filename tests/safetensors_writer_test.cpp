// The safetensors writer side (formats.md §2.4): shard_layout's header (sorted names, escaping,
// metadata, 4096-byte alignment, limits), shard_writer's byte accounting and atomic publish,
// and round trips through the reader with random tensors written in row ranges from threads.
#include "io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "io/error.h"
#include "io/file.h"
#include "io/shard_writer.h"

using namespace shardquant;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed (with what the test left) at the end.
struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string tmpl = (fs::temp_directory_path() / "sq-io-writer-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  [[nodiscard]] size_t entries() const {
    return static_cast<size_t>(
        std::distance(fs::directory_iterator(path), fs::directory_iterator()));
  }
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::span<const std::byte> as_bytes(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

}  // namespace

TEST_CASE(
    "the layout header is compact JSON with metadata, byte-wise sorted names and 4096 alignment") {
  const auto l = shard_layout::make("out.safetensors", {{"b", dtype::f32, {2, 3}},
                                                        {"B", dtype::bf16, {}},
                                                        {"a.weight", dtype::u8, {0}},
                                                        {"\xc3\xa9", dtype::i32, {1}},
                                                        {"a", dtype::f4, {4, 2}}});
  const std::string& h = l.header_bytes();
  CHECK(h.size() % 4096 == 0);
  CHECK(l.data_start() == h.size());
  uint64_t n = 0;
  std::memcpy(&n, h.data(), 8);
  CHECK(n + 8 == h.size());
  const std::string expected =
      R"({"__metadata__":{"format":"pt"},"B":{"dtype":"BF16","shape":[],"data_offsets":[0,2]},)"
      R"("a":{"dtype":"F4","shape":[4,2],"data_offsets":[2,6]},)"
      R"("a.weight":{"dtype":"U8","shape":[0],"data_offsets":[6,6]},)"
      R"("b":{"dtype":"F32","shape":[2,3],"data_offsets":[6,30]},)"
      "\"\xc3\xa9\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[30,34]}}";
  CHECK(h.substr(8, expected.size()) == expected);
  CHECK(h.find_first_not_of(' ', 8 + expected.size()) == std::string::npos);
  CHECK(l.data_size() == 34);
  CHECK(l.file_size() == h.size() + 34);
  CHECK(l.file_offset("b") == std::optional<uint64_t>(h.size() + 6));
  CHECK_FALSE(l.file_offset("c").has_value());
  REQUIRE(l.tensors().size() == 5);
  CHECK(l.tensors()[0].name == "B");
}

TEST_CASE("an exactly 4096-byte header gets no padding and one byte more gets a full page") {
  // {"__metadata__":{"format":"pt"},"<name>":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}
  const size_t fixed =
      8 +
      std::string(
          R"({"__metadata__":{"format":"pt"},"":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})")
          .size();
  const auto exact = shard_layout::make("x", {{std::string(4096 - fixed, 'n'), dtype::u8, {0}}});
  CHECK(exact.header_bytes().size() == 4096);
  CHECK(exact.header_bytes().back() == '}');
  const auto over = shard_layout::make("x", {{std::string(4097 - fixed, 'n'), dtype::u8, {0}}});
  CHECK(over.header_bytes().size() == 8192);
}

TEST_CASE("names needing JSON escapes are written escaped and read back unchanged") {
  temp_dir dir;
  const std::vector<std::string> names = {"q\"uote", "back\\slash",     "new\nline", "ctl\x01\x1f",
                                          "tab\t",   "uni\xe2\x82\xac", "sl/ash"};
  std::vector<tensor_spec> specs;
  for (const auto& n : names) specs.push_back({n, dtype::u8, {1}});
  const auto l = shard_layout::make((dir.path / "e.safetensors").string(), specs);
  CHECK(l.header_bytes().find("\"ctl\\u0001\\u001f\"") != std::string::npos);
  CHECK(l.header_bytes().find("\"new\\nline\"") != std::string::npos);
  shard_writer w(l, dir.path / "e.safetensors");
  for (const auto& n : names) w.write_tensor(n, as_bytes(std::string(1, n[0])));
  w.commit();
  const auto hdr = read_safetensors_header(dir.path / "e.safetensors");
  REQUIRE(hdr.tensors.size() == names.size());
  for (const auto& n : names) {
    CAPTURE(n);
    REQUIRE(hdr.find(n) != nullptr);
    CHECK(hdr.find(n)->begin == l.find(n)->begin);
  }
}

TEST_CASE(
    "layouts refuse duplicate, empty, __metadata__ and non-UTF-8 names, size overflow and huge "
    "headers") {
  CHECK_THROWS_WITH_AS(
      (void)shard_layout::make("s", {{"a", dtype::u8, {1}}, {"a", dtype::f32, {1}}}),
      doctest::Contains("tensor name appears twice in one shard"), input_error);
  CHECK_THROWS_WITH_AS((void)shard_layout::make("s", {{"__metadata__", dtype::u8, {1}}}),
                       doctest::Contains("cannot write a tensor named __metadata__"), input_error);
  CHECK_THROWS_WITH_AS((void)shard_layout::make("s", {{"", dtype::u8, {1}}}),
                       doctest::Contains("empty tensor name"), input_error);
  CHECK_THROWS_WITH_AS((void)shard_layout::make("s", {{"a\xff", dtype::u8, {1}}}),
                       doctest::Contains("not valid UTF-8"), input_error);
  CHECK_THROWS_WITH_AS((void)shard_layout::make("s", {{"w", dtype::f32, {uint64_t{1} << 62}}}),
                       doctest::Contains("overflows 64 bits"), input_error);
  CHECK_THROWS_WITH_AS((void)shard_layout::make("s", {{"w", dtype::f4, {3}}}),
                       doctest::Contains("not a whole number of bytes"), input_error);
  try {
    // Each tensor is 2^60 bytes (its bit count still fits in 64 bits); 16 of them do not.
    std::vector<tensor_spec> many;
    for (int i = 0; i < 16; ++i)
      many.push_back({std::string("t").append(std::to_string(i)), dtype::u8, {1ull << 60}});
    (void)shard_layout::make("s", std::move(many));
    FAIL("overflowing data size accepted");
  } catch (const input_error& e) {
    CHECK(e.file() == "s");
    CHECK(std::string(e.what()).find("shard data size overflows") != std::string::npos);
  }
  std::vector<tensor_spec> big;
  for (int i = 0; i < 3; ++i) big.push_back({std::string(40'000'000, 'a' + i), dtype::u8, {1}});
  CHECK_THROWS_WITH_AS((void)shard_layout::make("big.safetensors", std::move(big)),
                       doctest::Contains("over the limit of 100000000"), input_error);
}

TEST_CASE("random shards written in row ranges from several threads read back byte for byte") {
  temp_dir dir;
  const uint32_t seed = std::random_device{}();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const dtype types[] = {dtype::f32, dtype::bf16, dtype::u8, dtype::i32, dtype::f4, dtype::f64};
  for (int round = 0; round < 4; ++round) {
    std::vector<tensor_spec> specs;
    const int count = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < count; ++i) {
      const dtype type = types[rng() % std::size(types)];
      std::vector<uint64_t> shape;
      const int rank = static_cast<int>(rng() % 4);
      for (int r = 0; r < rank; ++r) shape.push_back(rng() % 37);
      if (type == dtype::f4) shape.push_back(2 * (rng() % 5));  // F4 needs an even count
      specs.push_back({std::string("t")
                           .append(std::to_string(rng() % 100000))
                           .append(".")
                           .append(std::to_string(i)),
                       type, shape});
    }
    const fs::path file =
        dir.path / std::string("r").append(std::to_string(round)).append(".safetensors");
    const auto layout = shard_layout::make(file.string(), specs);
    std::vector<std::string> data;
    for (const auto& t : layout.tensors()) {
      std::string d(t.byte_size(), '\0');
      for (auto& c : d) c = static_cast<char>(rng());
      data.push_back(std::move(d));
    }
    {
      shard_writer w(layout, file);
      // Each tensor split into up to 3 ranges, written by 3 threads in an interleaved order.
      std::vector<std::thread> threads;
      for (int th = 0; th < 3; ++th) {
        threads.emplace_back([&, th] {
          for (size_t i = 0; i < data.size(); ++i) {
            const uint64_t size = data[i].size();
            const uint64_t b = size * th / 3, e = size * (th + 1) / 3;
            if (e > b) w.write_at(layout.tensors()[i].name, b, as_bytes(data[i]).subspan(b, e - b));
          }
        });
      }
      for (auto& t : threads) t.join();
      w.commit();
    }
    CHECK(dir.entries() == static_cast<size_t>(round + 1));  // no temporary file left
    const auto hdr = read_safetensors_header(file);
    CHECK(hdr.file_size == layout.file_size());
    CHECK(hdr.data_start % 4096 == 0);
    REQUIRE(hdr.metadata.size() == 1);
    CHECK(hdr.metadata[0].second == "pt");
    const std::string bytes = slurp(file);
    REQUIRE(bytes.size() == layout.file_size());
    for (size_t i = 0; i < layout.tensors().size(); ++i) {
      const auto& t = layout.tensors()[i];
      const tensor_entry* r = hdr.find(t.name);
      REQUIRE(r != nullptr);
      CHECK(r->type == t.type);
      CHECK(r->shape == t.shape);
      CHECK(r->begin == t.begin);
      CHECK(r->end == t.end);
      CHECK(bytes.substr(hdr.data_start + r->begin, r->byte_size()) == data[i]);
    }
  }
}

TEST_CASE("a shard with an unwritten byte is not published and leaves no temporary file") {
  temp_dir dir;
  const fs::path file = dir.path / "m.safetensors";
  const auto layout =
      shard_layout::make(file.string(), {{"a", dtype::u8, {4}}, {"b", dtype::u8, {2}}});
  {
    shard_writer w(layout, file);
    w.write_tensor("a", as_bytes(std::string("abcd")));
    w.write_at("b", 0, as_bytes(std::string("x")));
    CHECK(w.written_bytes("b") == 1);
    CHECK_THROWS_WITH_AS(w.commit(),
                         doctest::Contains("tensor 'b' is incomplete at commit (1 of 2"),
                         std::logic_error);
    CHECK(dir.entries() == 1);  // only the temporary file
    CHECK_FALSE(fs::exists(file));
  }
  CHECK(dir.entries() == 0);
}

TEST_CASE("shard_writer refuses overlapping and out-of-range and wrong-size and unknown writes") {
  temp_dir dir;
  const fs::path file = dir.path / "o.safetensors";
  shard_writer w(shard_layout::make(file.string(), {{"a", dtype::u8, {8}}}), file);
  w.write_at("a", 2, as_bytes(std::string("cdef")));
  CHECK_THROWS_WITH_AS(w.write_at("a", 5, as_bytes(std::string("xy"))),
                       doctest::Contains("were already written"), std::logic_error);
  CHECK_THROWS_WITH_AS(w.write_at("a", 0, as_bytes(std::string("xyz"))),
                       doctest::Contains("were already written"), std::logic_error);
  CHECK_THROWS_WITH_AS(w.write_at("a", 7, as_bytes(std::string("xy"))),
                       doctest::Contains("leaves tensor 'a'"), std::logic_error);
  CHECK_THROWS_WITH_AS(w.write_tensor("a", as_bytes(std::string("xy"))),
                       doctest::Contains("is 8 bytes, got 2"), std::logic_error);
  CHECK_THROWS_WITH_AS(w.write_tensor("zz", as_bytes(std::string("xy"))),
                       doctest::Contains("not in this shard's layout"), std::logic_error);
  w.write_at("a", 0, as_bytes(std::string("ab")));
  w.write_at("a", 6, as_bytes(std::string("gh")));
  w.commit();
  const std::string bytes = slurp(file);
  CHECK(bytes.substr(bytes.size() - 8) == "abcdefgh");
}

TEST_CASE(
    "atomic_file publishes only on commit, truncates to the exact size and replaces atomically") {
  temp_dir dir;
  const fs::path file = dir.path / "f.bin";
  {
    atomic_file f(file);
    f.pwrite(0, std::string_view("hello world"));
    CHECK(f.temp_path().filename().string().rfind(".f.bin.sq-tmp-", 0) == 0);
    CHECK(fs::exists(f.temp_path()));
    CHECK_FALSE(fs::exists(file));
  }
  CHECK(dir.entries() == 0);
  {
    atomic_file f(file);
    f.pwrite(0, std::string_view("hello world"));
    f.commit(5);
  }
  CHECK(slurp(file) == "hello");
  write_file_atomic(file, "replaced");
  CHECK(slurp(file) == "replaced");
  CHECK(dir.entries() == 1);
  CHECK(read_file(file) == "replaced");
}

TEST_CASE("pread_all reports a file that ends early and io errors name the path") {
  temp_dir dir;
  const fs::path file = dir.path / "short.bin";
  write_file_atomic(file, "abc");
  shardquant::file_handle f = shardquant::file_handle::open(file, O_RDONLY);
  std::vector<std::byte> buf(5);
  CHECK_THROWS_WITH_AS(pread_all(f.get(), buf, 0, f.path()),
                       doctest::Contains("file ends at byte 3"), io_error);
  CHECK_THROWS_WITH_AS((void)shardquant::file_handle::open(dir.path / "missing", O_RDONLY),
                       doctest::Contains("missing: open failed"), io_error);
}
