// What the async I/O engines share: io_file, request splitting, the copy threads of memory-backed
// files, the engine choice over io/io_engine.h's table. The engines themselves are one file each
// (io/uring_engine.cpp, io/pread_engine.cpp). Owns file descriptors; no tensor knowledge.
#include "io/async_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "io/async_io_internal.h"
#include "io/error.h"

namespace shardquant {

// ---------------------------------------------------------------------------------------------
// io_file

std::shared_ptr<io_file> io_file::open(const std::filesystem::path& path, mode m, bool try_direct,
                                       uint64_t size) {
  std::shared_ptr<io_file> f(new io_file());
  f->path_ = path.string();
  const int flags = m == mode::read ? O_RDONLY | O_CLOEXEC : O_RDWR | O_CREAT | O_CLOEXEC;
  f->fd_ = ::open(f->path_.c_str(), flags, 0644);
  if (f->fd_ < 0) throw io_error(f->path_, "open", errno);
  if (m == mode::write) {
    if (::ftruncate(f->fd_, 0) != 0 || ::ftruncate(f->fd_, static_cast<off_t>(size)) != 0)
      throw io_error(f->path_, "ftruncate", errno);
    f->size_ = size;
  } else {
    struct stat st {};
    if (::fstat(f->fd_, &st) != 0) throw io_error(f->path_, "fstat", errno);
    f->size_ = static_cast<uint64_t>(st.st_size);
  }
  f->detect_file_system();
  if (try_direct) {
    const int dflags = (m == mode::read ? O_RDONLY : O_WRONLY) | O_DIRECT | O_CLOEXEC;
    f->direct_fd_ = ::open(f->path_.c_str(), dflags);
    // EINVAL: the file system refuses O_DIRECT (tmpfs); buffered I/O is then the only path.
    if (f->direct_fd_ < 0 && errno != EINVAL) throw io_error(f->path_, "open(O_DIRECT)", errno);
  }
  return f;
}

std::shared_ptr<io_file> io_file::wrap_for_write(int fd, std::string path, bool try_direct,
                                                 uint64_t final_size) {
  std::shared_ptr<io_file> f(new io_file());
  f->path_ = std::move(path);
  f->fd_ = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (f->fd_ < 0) throw io_error(f->path_, "dup", errno);
  struct stat st {};
  if (::fstat(f->fd_, &st) != 0) throw io_error(f->path_, "fstat", errno);
  f->size_ = static_cast<uint64_t>(st.st_size);
  f->detect_file_system();
  if (f->memory_backed_ && final_size > f->size_) {
    if (::ftruncate(f->fd_, static_cast<off_t>(final_size)) != 0)
      throw io_error(f->path_, "ftruncate", errno);
    f->size_ = final_size;
    // Reserve the pages now: a full tmpfs is then an error here, naming the file, and a write
    // fault into the mapping cannot fail for space later (it would be a SIGBUS).
    // SHARDQUANT_TMPFS_RESERVE=0 skips it (benchmarks); writes then populate each piece first.
    const char* env = std::getenv("SHARDQUANT_TMPFS_RESERVE");
    if (!(env && std::string_view(env) == "0")) {
      if (::fallocate(f->fd_, 0, 0, static_cast<off_t>(final_size)) != 0)
        throw io_error(f->path_,
                       "fallocate (reserving " + std::to_string(final_size) +
                           " bytes on a memory file system)",
                       errno);
      f->reserved_ = true;
    }
  }
  if (try_direct) {
    const std::string proc = "/proc/self/fd/" + std::to_string(fd);
    f->direct_fd_ = ::open(proc.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
    // EINVAL: no O_DIRECT on this file system; ENOENT: no /proc. Buffered writes then.
    if (f->direct_fd_ < 0 && errno != EINVAL && errno != ENOENT)
      throw io_error(f->path_, "open(O_DIRECT)", errno);
  }
  return f;
}

void io_file::detect_file_system() {
  struct statfs fs {};
  constexpr long tmpfs_magic = 0x01021994;
  memory_backed_ = ::fstatfs(fd_, &fs) == 0 && static_cast<long>(fs.f_type) == tmpfs_magic;
}

io_file::~io_file() {
  if (direct_fd_ >= 0) ::close(direct_fd_);
  if (fd_ >= 0) ::close(fd_);
}

// ---------------------------------------------------------------------------------------------
// request splitting shared by both engines

void async_io::split_and_submit(const std::shared_ptr<request>& r, int fd, bool is_write,
                                uint64_t offset, uint64_t length, std::byte* data,
                                uint64_t min_length) {
  std::atomic<uint64_t>& path = r->file->memory_backed()     ? copied_bytes_
                                : fd == r->file->direct_fd() ? direct_bytes_
                                                             : buffered_bytes_;
  path.fetch_add(length, std::memory_order_relaxed);
  for (uint64_t pos = 0; pos < length; pos += max_piece) {
    const uint64_t n = std::min(max_piece, length - pos);
    const uint64_t need = min_length > pos ? std::min(n, min_length - pos) : 0;
    dispatch(piece{r, fd, is_write, offset + pos, n, data + pos, need});
  }
}

static uint64_t pieces_of(uint64_t length) {
  return (length + async_io::max_piece - 1) / async_io::max_piece;
}

void async_io::read(std::shared_ptr<io_file> f, uint64_t offset, uint64_t length, std::byte* buffer,
                    io_callback done) {
  const read_extent e = aligned_read_extent(offset, length);
  if (offset + length < offset || offset + length > f->size()) {
    done(std::make_exception_ptr(io_error(f->path(), "read past end of file", EIO)));
    return;
  }
  auto r = std::make_shared<request>();
  r->file = f;
  r->done = std::move(done);
  // The superset may run past the end of the file; only bytes up to offset + length must come.
  const uint64_t need = offset + length - e.begin;
  const bool direct = f->direct() && reinterpret_cast<uintptr_t>(buffer) % io_alignment == 0;
  const int fd = direct ? f->direct_fd() : f->buffered_fd();
  const uint64_t span = direct ? e.span() : std::min(e.span(), f->size() - e.begin);
  if (span == 0) {
    r->done(nullptr);
    return;
  }
  r->pending = pieces_of(span);
  split_and_submit(r, fd, false, e.begin, span, buffer, need);
}

void async_io::write(std::shared_ptr<io_file> f, uint64_t offset, uint64_t length,
                     const std::byte* data, io_callback done) {
  if (length == 0) {
    done(nullptr);
    return;
  }
  auto r = std::make_shared<request>();
  r->file = f;
  r->done = std::move(done);
  auto* d = const_cast<std::byte*>(data);  // pieces share one type for reads and writes
  const uint64_t mid_begin = align_up(offset, io_alignment);
  const uint64_t mid_end = align_down(offset + length, io_alignment);
  const bool direct = f->direct() && mid_end > mid_begin &&
                      reinterpret_cast<uintptr_t>(data + (mid_begin - offset)) % io_alignment == 0;
  if (!direct) {
    r->pending = pieces_of(length);
    split_and_submit(r, f->buffered_fd(), true, offset, length, d, length);
    return;
  }
  const uint64_t head = mid_begin - offset, mid = mid_end - mid_begin;
  const uint64_t tail = offset + length - mid_end;
  r->pending = pieces_of(head) + pieces_of(mid) + pieces_of(tail);
  if (head) split_and_submit(r, f->buffered_fd(), true, offset, head, d, head);
  split_and_submit(r, f->direct_fd(), true, mid_begin, mid, d + head, mid);
  if (tail) split_and_submit(r, f->buffered_fd(), true, mid_end, tail, d + head + mid, tail);
}

void async_io::complete(piece& p, int64_t result) {
  if (result == -EINTR || result == -EAGAIN) {
    dispatch(std::move(p));
    return;
  }
  if (result < 0) {
    p.req->fail(std::make_exception_ptr(
        io_error(p.req->file->path(), p.is_write ? "write" : "read", static_cast<int>(-result))));
    p.req->piece_finished();
    return;
  }
  const auto n = static_cast<uint64_t>(result);
  // Done: every byte, or a read that stopped (end of file) after the bytes it needed.
  if (n >= p.length || (!p.is_write && n >= p.min_length)) {
    p.req->piece_finished();
    return;
  }
  if (n == 0) {
    p.req->fail(std::make_exception_ptr(
        io_error(p.req->file->path(),
                 p.is_write ? "write (no progress)" : "read (unexpected end of file)", EIO)));
    p.req->piece_finished();
    return;
  }
  // Short transfer: the rest continues through the buffered descriptor, which has no alignment
  // rules (the remainder's offset is usually unaligned).
  p.offset += n;
  p.length -= n;
  p.data += n;
  p.min_length = p.min_length > n ? p.min_length - n : 0;
  p.fd = p.req->file->buffered_fd();
  dispatch(std::move(p));
}

namespace {

#ifdef MADV_POPULATE_WRITE
constexpr int k_populate_write = MADV_POPULATE_WRITE;
#else
constexpr int k_populate_write = 23;  // Linux 5.14; older kernels refuse it (EINVAL)
#endif

// A write to a memory-backed file through a shared mapping of the piece's pages when the file is
// long enough. Any failure falls back to pwrite(), which then reports the file system's own error.
int64_t mapped_write(int fd, const io_file& f, uint64_t offset, uint64_t length,
                     const std::byte* data) {
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (offset + length <= f.size()) {
    const uint64_t begin = align_down(offset, page);
    const uint64_t span = offset + length - begin;
    void* m =
        ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(begin));
    if (m != MAP_FAILED) {
      // Reserved pages take plain write faults (measured faster than populating); others are
      // populated first so a full file system is an error, not a SIGBUS in memcpy.
      const bool ok = f.reserved() || ::madvise(m, span, k_populate_write) == 0;
      if (ok) std::memcpy(static_cast<std::byte*>(m) + (offset - begin), data, length);
      ::munmap(m, span);
      if (ok) return static_cast<int64_t>(length);
    }
  }
  return io_result_of(::pwrite(fd, data, length, static_cast<off_t>(offset)));
}

}  // namespace

async_io::async_io() = default;
async_io::~async_io() = default;  // the engine's destructor has drained; copier_ joins its threads

async_io::piece_workers& async_io::copier() {
  std::call_once(copier_once_, [this] {
    // One per core, 2 to 16. The copies are the work of a tmpfs run (the GPU, or the CPU
    // kernels, take a fraction of the time), so they may use every core. H100 machine (16
    // cores), 16.96 GB bf16 -> mxfp4 from and to /dev/shm: 8 threads 7.56 GB/s input, 12 7.97,
    // 16 9.37 (bench/README.md). SHARDQUANT_COPY_THREADS=N overrides the count (benchmarks).
    unsigned n = std::clamp(std::thread::hardware_concurrency(), 2u, 16u);
    if (const char* t = std::getenv("SHARDQUANT_COPY_THREADS"))
      n = std::clamp(static_cast<unsigned>(std::strtoul(t, nullptr, 10)), 1u, 64u);
    // Mapped writes pay page faults and a TLB shootdown per piece; they beat pwrite() only with
    // several writers (H100 machine: 1.6 vs 1.6 GB/s at 1 thread, 2.5 vs 2.9 at 2, 4.2 vs 2.9 at
    // 4; on a 2-core VM 0.9 vs 1.6 at 1-2 threads).
    // SHARDQUANT_TMPFS_WRITES=map|pwrite overrides the choice (benchmarks, tests).
    const char* env = std::getenv("SHARDQUANT_TMPFS_WRITES");
    const std::string_view forced = env ? env : "";
    const bool mapped = forced == "map" ? true : forced == "pwrite" ? false : n >= 4;
    copier_ = std::make_unique<piece_workers>(*this, n, [mapped](const piece& p) {
      const int fd = p.req->file->buffered_fd();
      if (!p.is_write)
        return io_result_of(::pread(fd, p.data, p.length, static_cast<off_t>(p.offset)));
      if (mapped) return mapped_write(fd, *p.req->file, p.offset, p.length, p.data);
      return io_result_of(::pwrite(fd, p.data, p.length, static_cast<off_t>(p.offset)));
    });
  });
  return *copier_;
}

void async_io::dispatch(piece p) {
  if (p.req->file->memory_backed())
    copier().submit(std::move(p));
  else
    submit(std::move(p));
}

void async_io::drain() {
  // A callback of either side may start requests on the other: repeat until a full round finds
  // both idle.
  for (;;) {
    const bool waited = copier_ && copier_->drain();
    drain_engine();
    if (!waited && !(copier_ && copier_->drain())) return;
  }
}

std::unique_ptr<async_io> async_io::make_exact(io_engine_type t, unsigned queue_depth) {
  return io_engine_row_of(t).make(queue_depth);
}

std::unique_ptr<async_io> async_io::make_automatic(unsigned queue_depth) {
  std::string skipped;
  const auto rows = io_engines();
  for (size_t i = 0; i < rows.size(); ++i) {
    try {
      std::unique_ptr<async_io> io = rows[i].make(queue_depth);
      io->fallback_reason_ = skipped;
      return io;
    } catch (const io_error& e) {
      // Refused here (io_uring under a container's seccomp profile, an old kernel): the next
      // engine does the same job. The last engine's failure is the caller's.
      if (i + 1 == rows.size()) throw;
      skipped += (skipped.empty() ? "" : "; ") + std::string(rows[i].name) + ": " + e.what();
    }
  }
  throw std::logic_error("no I/O engine in io_engines()");
}

io_path_bytes async_io::path_bytes() const noexcept {
  return {direct_bytes_.load(), buffered_bytes_.load(), copied_bytes_.load()};
}

}  // namespace shardquant
