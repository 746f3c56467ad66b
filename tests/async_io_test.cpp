// async_io: both engines read and write the right bytes, including unaligned ranges, reads
// whose aligned superset runs past the end of the file, and errors for reads past the end; and
// they take the path they claim, checked through the engine's own accounting (path_bytes): the
// O_DIRECT descriptor where the file system takes it, the buffered one where O_DIRECT is refused
// (simulated with a seccomp filter that fails O_DIRECT opens with EINVAL, as such a file system
// does), the copy threads for tmpfs; the automatic choice is io_uring where it can be set up and
// the pread pool, with the reason, where io_uring is refused (a seccomp filter again).
#include "io/async_io.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <thread>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
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

// Whether the file system of `dir` opens files with O_DIRECT, asked directly.
bool takes_direct(const fs::path& dir) {
  const fs::path p = dir / "direct-probe";
  write_file(p, random_bytes(10, 1));
  const int fd = ::open(p.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd >= 0) ::close(fd);
  fs::remove(p);
  return fd >= 0;
}

bool on_tmpfs(const fs::path& dir) {
  struct statfs st {};
  return ::statfs(dir.c_str(), &st) == 0 && static_cast<long>(st.f_type) == 0x01021994;
}

// A folder on a disk file system that takes O_DIRECT: /tmp, /var/tmp or the working directory
// (the build folder); empty when none does.
fs::path direct_capable_base() {
  for (const fs::path& b : {fs::path("/tmp"), fs::path("/var/tmp"), fs::current_path()}) {
    if (!fs::is_directory(b) || on_tmpfs(b)) continue;
    const fs::path d = scratch_dir(b.c_str());
    const bool ok = takes_direct(d);
    fs::remove_all(d);
    if (ok) return b;
  }
  return {};
}

// The path each byte should take, by the rule async_io.h states: O_DIRECT when the file has a
// direct descriptor and the buffer (for a write: the data of its first whole block) is aligned;
// the copy threads for memory-backed files; the buffered descriptor otherwise.
struct expected_paths {
  uint64_t direct = 0;
  bool memory = false;
};

void check_engine_on(const char* base, async_io& io, bool direct) {
  const uint32_t seed = 1234;
  INFO("engine " << io.name() << " on " << base << " direct=" << direct << " seed " << seed);
  const fs::path dir = scratch_dir(base);
  const bool fs_direct = takes_direct(dir);
  // Odd size: the last block is partial, so aligned supersets run past the end of the file.
  const size_t n = (size_t(20) << 20) + 12345;
  const auto data = random_bytes(n, seed);
  write_file(dir / "in.bin", data);
  auto in = io_file::open(dir / "in.bin", io_file::mode::read, direct);
  CHECK(in->size() == n);
  // The file has an O_DIRECT descriptor exactly when it was asked for and the file system
  // takes it.
  CHECK(in->direct() == (direct && fs_direct));
  const io_path_bytes before = io.path_bytes();
  expected_paths want;
  want.memory = in->memory_backed();
  const bool direct_path = in->direct() && !want.memory;

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
    if (direct_path) want.direct += e.span();  // an aligned buffer: the whole superset
  }
  // A read past the end fails with io_error.
  CHECK_THROWS_AS(wait_read(io, in, n - 10, 11, buf.p), io_error);

  // Writes: several concurrent unaligned ranges tiling the file, data placed at
  // offset % 4096 inside aligned buffers (the direct path) or not (buffered path).
  auto out = io_file::open(dir / "out.bin", io_file::mode::write, direct, n);
  CHECK(out->direct() == (direct && fs_direct));
  std::vector<uint64_t> cuts{0, 7, 4096, 4099, 1 << 20, (3 << 20) + 5, (13 << 20) + 4096, n};
  std::vector<std::unique_ptr<aligned_mem>> bufs;
  std::vector<std::promise<std::exception_ptr>> done(cuts.size() - 1);
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    const uint64_t off = cuts[i], len = cuts[i + 1] - cuts[i];
    bufs.push_back(std::make_unique<aligned_mem>(len + 2 * 4096));
    std::byte* at = bufs.back()->p + (i % 2 == 0 ? off % 4096 : 1);
    std::memcpy(at, data.data() + off, len);
    const uint64_t mid_begin = align_up(off, 4096), mid_end = align_down(off + len, 4096);
    if (direct_path && mid_end > mid_begin &&
        reinterpret_cast<uintptr_t>(at + (mid_begin - off)) % 4096 == 0)
      want.direct += mid_end - mid_begin;
    io.write(out, off, len, at, [&done, i](std::exception_ptr e) { done[i].set_value(e); });
  }
  for (auto& d : done) {
    auto e = d.get_future().get();
    if (e) std::rethrow_exception(e);
  }
  io.drain();
  out.reset();
  CHECK(read_back(dir / "out.bin") == data);

  // The engine's own account of the paths taken.
  const io_path_bytes after = io.path_bytes();
  const uint64_t direct_bytes = after.direct - before.direct;
  const uint64_t buffered_bytes = after.buffered - before.buffered;
  const uint64_t copied_bytes = after.copied - before.copied;
  INFO("direct " << direct_bytes << ", buffered " << buffered_bytes << ", copied " << copied_bytes);
  if (want.memory) {
    CHECK(direct_bytes == 0);
    CHECK(buffered_bytes == 0);
    CHECK(copied_bytes >= 2 * n);  // every read and write went to the copy threads
  } else {
    CHECK(copied_bytes == 0);
    CHECK(direct_bytes == want.direct);
    if (direct_path) CHECK(direct_bytes > n);  // most reads and the aligned writes' blocks
    CHECK(buffered_bytes > 0);                 // unaligned writes and heads and tails at least
  }
  fs::remove_all(dir);
}

// Runs `body` on a thread of its own under a seccomp filter that fails the system call `nr`
// with `error`, only when `flag` is set in its argument `arg` (flag 0: always). The filter
// dies with the thread (and the threads it starts, e.g. an engine's): the rest of the test
// process is untouched. Failures inside `body` are rethrown here.
void with_failing_syscall(long nr, int error, unsigned arg, uint32_t flag,
                          const std::function<void()>& body) {
  std::exception_ptr failure;
  bool installed = false;
  int install_errno = 0;
  std::thread t([&] {
    const uint32_t arg_low = offsetof(seccomp_data, args) + 8 * arg;  // little-endian low word
    std::vector<sock_filter> f{BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
                               BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0,
                                        static_cast<uint8_t>(flag ? 3 : 1))};
    if (flag) {
      f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, arg_low));
      f.push_back(BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, flag, 0, 1));
    }
    f.push_back(BPF_STMT(BPF_RET | BPF_K,
                         SECCOMP_RET_ERRNO | (static_cast<uint32_t>(error) & SECCOMP_RET_DATA)));
    f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    const sock_fprog prog{static_cast<unsigned short>(f.size()), f.data()};
    installed = ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
                ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
    install_errno = errno;
    if (!installed) return;
    try {
      body();
    } catch (...) {
      failure = std::current_exception();
    }
  });
  t.join();
  REQUIRE_MESSAGE(installed, "a seccomp filter could not be installed here (errno "
                                 << install_errno << "): the condition cannot be simulated");
  if (failure) std::rethrow_exception(failure);
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
  const fs::path base = direct_capable_base();
  REQUIRE_MESSAGE(!base.empty(), "no folder on a file system that takes O_DIRECT was found");
  for (auto& io : engines()) check_engine_on(base.c_str(), *io, true);
}

TEST_CASE("both engines fall back to buffered I/O where the file system refuses O_DIRECT") {
  const fs::path base = direct_capable_base();
  REQUIRE(!base.empty());
  // Every open with O_DIRECT fails with EINVAL, as on a file system without direct I/O.
#if defined(__x86_64__) || defined(__aarch64__)
  with_failing_syscall(SYS_openat, EINVAL, 2, O_DIRECT, [&] {
    CHECK_FALSE(takes_direct(base));  // the simulation holds
    for (auto& io : engines()) check_engine_on(base.c_str(), *io, true);
  });
#else
  MESSAGE("the O_DIRECT refusal is simulated on x86-64 and aarch64 only");
#endif
}

TEST_CASE("tmpfs files skip O_DIRECT whether or not tmpfs takes it: every byte is a copy") {
  if (!fs::exists("/dev/shm") || !on_tmpfs("/dev/shm")) {
    MESSAGE("no tmpfs at /dev/shm; nothing to check");
    return;
  }
  for (auto& io : engines()) check_engine_on("/dev/shm", *io, true);
}

TEST_CASE("buffered-only files read and write correctly with both engines") {
  const fs::path base = direct_capable_base();
  REQUIRE(!base.empty());
  for (auto& io : engines()) check_engine_on(base.c_str(), *io, false);
}

TEST_CASE("the automatic engine choice is io_uring where it can be set up, with no reason") {
  bool uring_here = true;
  try {
    (void)async_io::make_exact(io_engine_type::uring, 4);
  } catch (const io_error&) {
    uring_here = false;
  }
  auto io = async_io::make_automatic(4);
  REQUIRE(io != nullptr);
  if (uring_here) {
    CHECK(io->type() == io_engine_type::uring);
    CHECK(std::string(io->name()) == "uring");
    CHECK(io->fallback_reason().empty());
  } else {
    CHECK(io->type() == io_engine_type::pread);
    CHECK(io->fallback_reason().find("uring: ") == 0);
  }
}

TEST_CASE(
    "the automatic engine choice falls back to pread when io_uring is refused, and says why") {
  // io_uring_setup fails with EPERM, as under a container's seccomp profile.
  with_failing_syscall(SYS_io_uring_setup, EPERM, 0, 0, [] {
    CHECK_THROWS_AS((void)async_io::make_exact(io_engine_type::uring, 4), io_error);
    auto io = async_io::make_automatic(4);
    CHECK(io->type() == io_engine_type::pread);
    CHECK(std::string(io->name()) == "pread");
    INFO("fallback reason: " << io->fallback_reason());
    CHECK(io->fallback_reason().find("uring: ") == 0);
    CHECK(io->fallback_reason().find("io_uring_queue_init") != std::string::npos);
    check_engine_on(direct_capable_base().c_str(), *io, true);
  });
}

TEST_CASE("the engine table names every engine once and make_exact gives the engine named") {
  CHECK(io_engines().size() == io_engine_count);
  for (const auto& row : io_engines()) {
    CHECK(find_io_engine(row.name) == row.type);
    CHECK(std::string(io_engine_type_name(row.type)) == row.name);
    try {
      CHECK(async_io::make_exact(row.type, 2)->type() == row.type);
    } catch (const io_error& e) {
      MESSAGE(row.name << " cannot be set up here: " << e.what());
    }
  }
  CHECK_FALSE(find_io_engine("auto").has_value());
  CHECK(io_engine_names() == "uring or pread");
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
      CHECK(io->path_bytes().copied == n - 100);  // all of it through the copy threads
      CHECK(io->path_bytes().direct == 0);
      CHECK(io->path_bytes().buffered == 0);

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
