// async_io: both engines read and write the right bytes, including unaligned ranges, reads
// whose aligned superset runs past the end of the file, O_DIRECT where the file system takes
// it and the buffered fallback where it does not (tmpfs), and errors for reads past the end.
#include "io/async_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <vector>

#include <doctest/doctest.h>

#include "io/error.h"

using namespace shardquant;
namespace fs = std::filesystem;

namespace {

struct aligned_mem {
  explicit aligned_mem(size_t n) : size(n) {
    REQUIRE(posix_memalign(reinterpret_cast<void**>(&p), 4096, n) == 0);
    std::memset(p, 0xCD, n);  // poison: an unwritten byte shows
  }
  ~aligned_mem() { free(p); }
  std::byte* p = nullptr;
  size_t size;
};

std::vector<std::byte> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = std::byte(rng() & 0xFF);
  return v;
}

fs::path scratch_dir(const char* base) {
  fs::path d = fs::path(base) / ("sq_async_io_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

void write_file(const fs::path& p, const std::vector<std::byte>& v) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size()));
}

std::vector<std::byte> read_back(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> v(c.size());
  std::memcpy(v.data(), c.data(), c.size());
  return v;
}

void wait_read(async_io& io, std::shared_ptr<io_file> f, uint64_t off, uint64_t len,
               std::byte* buf) {
  std::promise<std::exception_ptr> p;
  io.read(f, off, len, buf, [&](std::exception_ptr e) { p.set_value(e); });
  auto e = p.get_future().get();
  if (e) std::rethrow_exception(e);
}

std::vector<std::unique_ptr<async_io>> engines() {
  std::vector<std::unique_ptr<async_io>> v;
  v.push_back(async_io::make_exact(io_engine_type::pread, 8));
  try {
    v.push_back(async_io::make_exact(io_engine_type::uring, 8));
  } catch (const io_error& e) {
    MESSAGE("io_uring unavailable here, only the pread engine is tested: " << e.what());
  }
  return v;
}

void check_engine_on(const char* base, async_io& io, bool direct) {
  const uint32_t seed = 1234;
  INFO("engine " << io.name() << " on " << base << " direct=" << direct << " seed " << seed);
  const fs::path dir = scratch_dir(base);
  // Odd size: the last block is partial, so aligned supersets run past the end of the file.
  const size_t n = (size_t(20) << 20) + 12345;
  const auto data = random_bytes(n, seed);
  write_file(dir / "in.bin", data);
  auto in = io_file::open(dir / "in.bin", io_file::mode::read, direct);
  CHECK(in->size() == n);

  struct range {
    uint64_t off, len;
  };
  std::mt19937 rng(seed);
  std::vector<range> ranges{{0, n},           {1, 4095},         {4096, 8192}, {n - 1, 1},
                            {n - 5000, 5000}, {123457, 9 << 20}, {0, 0},       {4095, 2}};
  for (int i = 0; i < 20; ++i) {
    const uint64_t off = rng() % n;
    ranges.push_back({off, rng() % (n - off + 1)});
  }
  aligned_mem buf(read_buffer_bound(n));
  for (const auto& r : ranges) {
    std::memset(buf.p, 0xCD, buf.size);
    wait_read(io, in, r.off, r.len, buf.p);
    const auto e = aligned_read_extent(r.off, r.len);
    CHECK(std::memcmp(buf.p + e.skip, data.data() + r.off, r.len) == 0);
  }
  // A read past the end fails with io_error.
  CHECK_THROWS_AS(wait_read(io, in, n - 10, 11, buf.p), io_error);

  // Writes: several concurrent unaligned ranges tiling the file, data placed at
  // offset % 4096 inside aligned buffers (the direct path) or not (buffered path).
  auto out = io_file::open(dir / "out.bin", io_file::mode::write, direct, n);
  std::vector<uint64_t> cuts{0, 7, 4096, 4099, 1 << 20, (3 << 20) + 5, (13 << 20) + 4096, n};
  std::vector<std::unique_ptr<aligned_mem>> bufs;
  std::vector<std::promise<std::exception_ptr>> done(cuts.size() - 1);
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    const uint64_t off = cuts[i], len = cuts[i + 1] - cuts[i];
    bufs.push_back(std::make_unique<aligned_mem>(len + 2 * 4096));
    std::byte* at = bufs.back()->p + (i % 2 == 0 ? off % 4096 : 1);
    std::memcpy(at, data.data() + off, len);
    io.write(out, off, len, at, [&done, i](std::exception_ptr e) { done[i].set_value(e); });
  }
  for (auto& d : done) {
    auto e = d.get_future().get();
    if (e) std::rethrow_exception(e);
  }
  io.drain();
  out.reset();
  CHECK(read_back(dir / "out.bin") == data);
  fs::remove_all(dir);
}

}  // namespace

TEST_CASE("aligned read extents cover the range and expose its offset") {
  const auto e = aligned_read_extent(5000, 10);
  CHECK(e.begin == 4096);
  CHECK(e.end == 8192);
  CHECK(e.skip == 904);
  CHECK(aligned_read_extent(8192, 4096).span() == 4096);
  CHECK(aligned_read_extent(8191, 2).span() == 8192);
  CHECK(read_buffer_bound(1) >= aligned_read_extent(4095, 1).span());
  CHECK(read_buffer_bound(4097) >= aligned_read_extent(4095, 4097).span());
}

TEST_CASE("both engines read and write exact bytes on a disk file system with O_DIRECT") {
  for (auto& io : engines()) check_engine_on("/tmp", *io, true);
}

TEST_CASE("both engines fall back to buffered I/O where O_DIRECT is refused (tmpfs)") {
  if (!fs::exists("/dev/shm")) return;
  {
    const fs::path dir = scratch_dir("/dev/shm");
    write_file(dir / "x", random_bytes(100, 1));
    auto f = io_file::open(dir / "x", io_file::mode::read, true);
    // tmpfs may accept O_DIRECT on newer kernels; either way the bytes must be right.
    const std::string what = f->direct() ? "accepted" : "refused (fallback used)";
    MESSAGE("O_DIRECT on /dev/shm: " << what);
    fs::remove_all(dir);
  }
  for (auto& io : engines()) check_engine_on("/dev/shm", *io, true);
}

TEST_CASE("buffered-only files read and write correctly with both engines") {
  for (auto& io : engines()) check_engine_on("/tmp", *io, false);
}

TEST_CASE("the automatic engine choice gives a working engine") {
  auto io = async_io::make(true, 4);
  REQUIRE(io != nullptr);
  CHECK((io->type() == io_engine_type::uring || io->type() == io_engine_type::pread));
}

TEST_CASE(
    "tmpfs files go through the copy threads: growth to the final size, mapped writes "
    "and the pwrite fallback past the end give exact bytes") {
  if (!fs::exists("/dev/shm")) return;
  const fs::path dir = scratch_dir("/dev/shm");
  {
    auto probe = io_file::open(dir / "probe", io_file::mode::write, false, 10);
    if (!probe->memory_backed()) {
      MESSAGE("/dev/shm is not tmpfs here; memory path not tested");
      fs::remove_all(dir);
      return;
    }
  }
  const size_t n = (size_t(9) << 20) + 777;
  const auto data = random_bytes(n, 99);
  // Both ways of writing (the copy threads read the knob when an engine first meets a tmpfs file).
  for (const char* how : {"map", "pwrite"}) {
    ::setenv("SHARDQUANT_TMPFS_WRITES", how, 1);
    for (auto& io : engines()) {
      INFO("engine " << io->name() << ", tmpfs writes: " << how);
      // A temporary file as the shard writer makes it: a few header bytes written, the rest to
      // come. wrap_for_write grows a tmpfs file to the final size, so mapped writes apply.
      const fs::path p = dir / "grow.bin";
      const int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      REQUIRE(fd >= 0);
      REQUIRE(::pwrite(fd, data.data(), 100, 0) == 100);
      auto out = io_file::wrap_for_write(fd, p.string(), true, n);
      CHECK(out->memory_backed());
      CHECK(out->size() == n);
      // Many concurrent pieces of one file, unaligned cuts (the head and tail pages are shared
      // between neighbouring pieces' mappings).
      std::vector<std::promise<std::exception_ptr>> done;
      std::vector<uint64_t> cuts{100};
      for (uint64_t c = 100 + 4001; c < n; c += (uint64_t{1} << 20) + 4093) cuts.push_back(c);
      cuts.push_back(n);
      done.resize(cuts.size() - 1);
      for (size_t i = 0; i + 1 < cuts.size(); ++i)
        io->write(out, cuts[i], cuts[i + 1] - cuts[i], data.data() + cuts[i],
                  [&done, i](std::exception_ptr e) { done[i].set_value(e); });
      for (auto& d : done) {
        auto e = d.get_future().get();
        if (e) std::rethrow_exception(e);
      }
      io->drain();
      out.reset();
      ::close(fd);
      CHECK(read_back(p) == data);

      // A file that is NOT grown (final size 0 = unknown): writes past its end take the pwrite
      // fallback and extend it.
      const int fd2 = ::open(p.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      REQUIRE(fd2 >= 0);
      auto out2 = io_file::wrap_for_write(fd2, p.string(), false);
      CHECK(out2->size() == 0);
      std::promise<std::exception_ptr> d2;
      io->write(out2, 0, n, data.data(), [&](std::exception_ptr e) { d2.set_value(e); });
      auto e2 = d2.get_future().get();
      if (e2) std::rethrow_exception(e2);
      out2.reset();
      ::close(fd2);
      CHECK(read_back(p) == data);
    }
  }
  ::unsetenv("SHARDQUANT_TMPFS_WRITES");
  // A disk file is never grown by wrap_for_write.
  {
    const fs::path d = scratch_dir("/tmp");
    const int fd = ::open((d / "g").c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    auto f = io_file::wrap_for_write(fd, (d / "g").string(), false, 1 << 20);
    if (!f->memory_backed()) CHECK(f->size() == 0);
    f.reset();
    ::close(fd);
    fs::remove_all(d);
  }
  fs::remove_all(dir);
}
