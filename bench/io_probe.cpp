// What a directory's file system can do for the pipeline's I/O patterns, measured: reads of
// 8 MiB pieces of one file by N threads (pread), and writes of 8 MiB pieces into one new file by
// N threads five ways: pwrite, a shared mapping per piece (mmap + memcpy + munmap), the same with
// the pages populated first (MADV_POPULATE_WRITE), the same after reserving the whole file with
// fallocate (timed in; what io/async_io.cpp does on tmpfs), and pwrite into N separate files. On
// tmpfs, write(2) to one file holds the inode lock, so N writers of one file run one at a time
// while page faults into a shared mapping do not; this probe shows by how much on a given machine.
// Self-contained (libc only) so it builds anywhere:
//   g++ -std=c++20 -O2 -pthread bench/io_probe.cpp -o io_probe
//   io_probe DIR [GiB=4] [threads=1,2,4,8]
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t k_piece = size_t{8} << 20;

struct fd_guard {
  int fd = -1;
  explicit fd_guard(int f) : fd(f) {}
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
};

[[noreturn]] void die(const std::string& what) {
  std::perror(what.c_str());
  std::exit(1);
}

// Runs body(thread, piece_offset) over every piece of [0, total) split round-robin among
// `threads` threads; returns GB/s of `total` bytes.
double run(unsigned threads, size_t total, const std::function<void(unsigned, size_t)>& body) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (size_t off = t * k_piece; off < total; off += k_piece * threads) body(t, off);
    });
  for (auto& t : ts) t.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(total) / s / 1e9;
}

int open_new(const std::string& path, size_t size) {
  ::unlink(path.c_str());
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) die("open " + path);
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) die("ftruncate " + path);
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: io_probe DIR [GiB=4] [threads=1,2,4,8]\n");
    return 2;
  }
  const std::string dir = argv[1];
  const size_t total =
      static_cast<size_t>((argc > 2 ? std::atof(argv[2]) : 4.0) * (1u << 30)) / k_piece * k_piece;
  std::vector<unsigned> thread_counts;
  {
    std::stringstream ss(argc > 3 ? argv[3] : "1,2,4,8");
    for (std::string t; std::getline(ss, t, ',');) thread_counts.push_back(std::stoul(t));
  }
  unsigned max_threads = 1;
  for (unsigned t : thread_counts) max_threads = std::max(max_threads, t);
  // One source/destination buffer per thread, touched once so page faults stay out of the runs.
  std::vector<std::unique_ptr<char[]>> bufs;
  for (unsigned t = 0; t < max_threads; ++t) {
    bufs.emplace_back(new char[k_piece]);
    std::memset(bufs.back().get(), static_cast<int>(t + 1), k_piece);
  }
  const std::string one = dir + "/io_probe.bin";
  std::printf("io_probe %s: %.2f GiB per pass, %zu MiB pieces\n", dir.c_str(),
              static_cast<double>(total) / (1u << 30), k_piece >> 20);
  std::printf("%-8s %12s %12s %12s %12s %12s %12s\n", "threads", "pread", "pwrite-1", "mmap-1",
              "populate-1", "falloc+mmap", "pwrite-N");
  for (unsigned threads : thread_counts) {
    double pw = 0, mm = 0, mp = 0, fm = 0, pwn = 0, rd = 0, reserve_s = 0;
    std::once_flag reserve_once;
    {
      fd_guard f(open_new(one, total));
      pw = run(threads, total, [&](unsigned t, size_t off) {
        if (::pwrite(f.fd, bufs[t].get(), k_piece, static_cast<off_t>(off)) !=
            static_cast<ssize_t>(k_piece))
          die("pwrite");
      });
      rd = run(threads, total, [&](unsigned t, size_t off) {
        if (::pread(f.fd, bufs[t].get(), k_piece, static_cast<off_t>(off)) !=
            static_cast<ssize_t>(k_piece))
          die("pread");
      });
    }
    {
      fd_guard f(open_new(one, total));
      mm = run(threads, total, [&](unsigned t, size_t off) {
        void* m = ::mmap(nullptr, k_piece, PROT_WRITE, MAP_SHARED, f.fd, static_cast<off_t>(off));
        if (m == MAP_FAILED) die("mmap");
        std::memcpy(m, bufs[t].get(), k_piece);
        ::munmap(m, k_piece);
      });
    }
    {
      fd_guard f(open_new(one, total));
      mp = run(threads, total, [&](unsigned t, size_t off) {
        void* m = ::mmap(nullptr, k_piece, PROT_READ | PROT_WRITE, MAP_SHARED, f.fd,
                         static_cast<off_t>(off));
        if (m == MAP_FAILED) die("mmap");
        if (::madvise(m, k_piece, 23 /* MADV_POPULATE_WRITE */) != 0) die("madvise");
        std::memcpy(m, bufs[t].get(), k_piece);
        ::munmap(m, k_piece);
      });
    }
    {
      fd_guard f(open_new(one, total));
      fm = run(threads, total, [&](unsigned t, size_t off) {
        if (off == t * k_piece) {  // each thread's first piece: wait for the reservation
          std::call_once(reserve_once, [&] {
            const auto r0 = std::chrono::steady_clock::now();
            if (::fallocate(f.fd, 0, 0, static_cast<off_t>(total)) != 0) die("fallocate");
            reserve_s =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - r0).count();
          });
        }
        void* m = ::mmap(nullptr, k_piece, PROT_READ | PROT_WRITE, MAP_SHARED, f.fd,
                         static_cast<off_t>(off));
        if (m == MAP_FAILED) die("mmap");
        std::memcpy(m, bufs[t].get(), k_piece);
        ::munmap(m, k_piece);
      });
    }
    ::unlink(one.c_str());
    {
      std::vector<std::unique_ptr<fd_guard>> fds;
      for (unsigned t = 0; t < threads; ++t)
        fds.push_back(std::make_unique<fd_guard>(
            open_new(dir + "/io_probe." + std::to_string(t), total / threads + k_piece)));
      pwn = run(threads, total, [&](unsigned t, size_t off) {
        const auto local = static_cast<off_t>(off / threads);
        if (::pwrite(fds[t]->fd, bufs[t].get(), k_piece, local) != static_cast<ssize_t>(k_piece))
          die("pwrite");
      });
      for (unsigned t = 0; t < threads; ++t)
        ::unlink((dir + "/io_probe." + std::to_string(t)).c_str());
    }
    std::printf(
        "%-8u %7.2f GB/s %7.2f GB/s %7.2f GB/s %7.2f GB/s %7.2f GB/s %7.2f GB/s"
        "  (fallocate alone %.3f s)\n",
        threads, rd, pw, mm, mp, fm, pwn, reserve_s);
  }
  return 0;
}
