// The two async I/O engines (io_uring and a pread/pwrite thread pool) and the request
// splitting they share. Owns file descriptors and engine threads; no tensor knowledge.
#include "io/async_io.h"

#include <fcntl.h>
#include <liburing.h>
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

struct async_io::request {
  std::shared_ptr<io_file> file;
  io_callback done;
  std::atomic<uint64_t> pending{0};
  std::mutex error_mutex;
  std::exception_ptr error;

  void fail(std::exception_ptr e) {
    std::lock_guard lock(error_mutex);
    if (!error) error = std::move(e);
  }
  // Called when one piece finishes for good; the last one runs the callback.
  void piece_finished() {
    if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) done(error);
  }
};

void async_io::split_and_submit(const std::shared_ptr<request>& r, int fd, bool is_write,
                                uint64_t offset, uint64_t length, std::byte* data,
                                uint64_t min_length) {
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

// ---------------------------------------------------------------------------------------------
// Threads that run blocking piece transfers: the pread engine's workers, and the copy threads of
// memory-backed files (see io_file::memory_backed()).

class async_io::piece_workers {
 public:
  // run(p) does the transfer and returns bytes or -errno; complete() is called with it.
  piece_workers(async_io& owner, unsigned threads, std::function<int64_t(const piece&)> run)
      : owner_(owner), run_(std::move(run)) {
    for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
  }
  ~piece_workers() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    for (auto& t : threads_) t.join();
  }
  piece_workers(const piece_workers&) = delete;
  piece_workers& operator=(const piece_workers&) = delete;

  void submit(piece p) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(p));
    }
    ready_.notify_one();
  }
  // Waits until no piece is queued or running; true if it had to wait.
  bool drain() {
    std::unique_lock lock(mutex_);
    if (queue_.empty() && busy_ == 0) return false;
    idle_.wait(lock, [this] { return queue_.empty() && busy_ == 0; });
    return true;
  }

 private:
  void work() {
    for (;;) {
      piece p;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        p = std::move(queue_.front());
        queue_.pop_front();
        ++busy_;
      }
      owner_.complete(p, run_(p));
      {
        std::lock_guard lock(mutex_);
        --busy_;
        if (queue_.empty() && busy_ == 0) idle_.notify_all();
      }
    }
  }

  async_io& owner_;
  std::function<int64_t(const piece&)> run_;
  std::mutex mutex_;
  std::condition_variable ready_, idle_;
  std::deque<piece> queue_;
  unsigned busy_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

namespace {

int64_t result_of(ssize_t n) {
  return n < 0 ? -static_cast<int64_t>(errno) : static_cast<int64_t>(n);
}

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
  return result_of(::pwrite(fd, data, length, static_cast<off_t>(offset)));
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
        return result_of(::pread(fd, p.data, p.length, static_cast<off_t>(p.offset)));
      if (mapped) return mapped_write(fd, *p.req->file, p.offset, p.length, p.data);
      return result_of(::pwrite(fd, p.data, p.length, static_cast<off_t>(p.offset)));
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

// ---------------------------------------------------------------------------------------------
// io_uring engine: submissions under a mutex, one completion thread. Pieces beyond the queue
// depth wait in a deque and are submitted as completions free slots.

namespace {

class uring_engine final : public async_io {
 public:
  explicit uring_engine(unsigned depth) : depth_(depth) {
    const int rc = io_uring_queue_init(depth * 2, &ring_, 0);
    if (rc < 0) throw io_error("io_uring", "io_uring_queue_init", -rc);
    reaper_ = std::thread([this] { reap(); });
  }
  ~uring_engine() override {
    drain();
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      // A NOP wakes the reaper out of io_uring_wait_cqe.
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data(sqe, nullptr);
      io_uring_submit(&ring_);
    }
    reaper_.join();
    io_uring_queue_exit(&ring_);
  }
  io_engine_type type() const noexcept override { return io_engine_type::uring; }

  void drain_engine() override {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return in_flight_ == 0 && waiting_.empty() && in_callback_ == 0; });
  }

 protected:
  void submit(piece p) override {
    std::lock_guard lock(mutex_);
    if (in_flight_ >= depth_) {
      waiting_.push_back(std::move(p));
      return;
    }
    push_locked(std::move(p));
    io_uring_submit(&ring_);
  }

 private:
  void push_locked(piece p) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    auto* heap = new piece(std::move(p));
    if (heap->is_write)
      io_uring_prep_write(sqe, heap->fd, heap->data, static_cast<unsigned>(heap->length),
                          heap->offset);
    else
      io_uring_prep_read(sqe, heap->fd, heap->data, static_cast<unsigned>(heap->length),
                         heap->offset);
    // Buffered requests that would complete inline during submit (page-cache copies) go to the
    // kernel's io-wq workers on machines with cores to spare, so large copies run in parallel
    // rather than one by one in the submitting thread. On 2 cores inline copies measured faster
    // (tmpfs floor 1.9 vs 1.1-1.3 GB/s input), hence the core count. (tmpfs files never get
    // here: the copy threads of async_io::copier().)
    const bool inline_copy = heap->fd != heap->req->file->direct_fd();
    if (punt_copies_ && inline_copy && heap->length >= (uint64_t{64} << 10))
      sqe->flags |= IOSQE_ASYNC;
    io_uring_sqe_set_data(sqe, heap);
    ++in_flight_;
  }

  void reap() {
    for (;;) {
      io_uring_cqe* cqe = nullptr;
      const int rc = io_uring_wait_cqe(&ring_, &cqe);
      if (rc == -EINTR) continue;
      if (rc < 0) std::terminate();  // the ring itself is broken: nothing sane is left to do
      auto* p = static_cast<piece*>(io_uring_cqe_get_data(cqe));
      const int64_t res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      if (p == nullptr) {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
        continue;
      }
      {
        std::lock_guard lock(mutex_);
        --in_flight_;
        ++in_callback_;
        bool pushed = false;
        while (in_flight_ < depth_ && !waiting_.empty()) {
          push_locked(std::move(waiting_.front()));
          waiting_.pop_front();
          pushed = true;
        }
        if (pushed) io_uring_submit(&ring_);
      }
      std::unique_ptr<piece> owned(p);
      complete(*owned, res);
      {
        std::lock_guard lock(mutex_);
        --in_callback_;
        if (in_flight_ == 0 && waiting_.empty() && in_callback_ == 0) idle_.notify_all();
      }
    }
  }

  io_uring ring_{};
  unsigned depth_;
  const bool punt_copies_ = std::thread::hardware_concurrency() >= 8;
  std::mutex mutex_;
  std::condition_variable idle_;
  std::deque<piece> waiting_;
  unsigned in_flight_ = 0;
  unsigned in_callback_ = 0;
  bool stopping_ = false;
  std::thread reaper_;
};

// pread/pwrite engine: a few threads run blocking system calls from a queue.
class pread_engine final : public async_io {
 public:
  explicit pread_engine(unsigned threads)
      : workers_(*this, threads, [](const piece& p) {
          return result_of(p.is_write
                               ? ::pwrite(p.fd, p.data, p.length, static_cast<off_t>(p.offset))
                               : ::pread(p.fd, p.data, p.length, static_cast<off_t>(p.offset)));
        }) {}
  ~pread_engine() override { drain(); }
  io_engine_type type() const noexcept override { return io_engine_type::pread; }
  void drain_engine() override { (void)workers_.drain(); }

 protected:
  void submit(piece p) override { workers_.submit(std::move(p)); }

 private:
  piece_workers workers_;
};

}  // namespace

std::unique_ptr<async_io> async_io::make_exact(io_engine_type t, unsigned queue_depth) {
  if (queue_depth == 0) queue_depth = 1;
  if (t == io_engine_type::uring) return std::make_unique<uring_engine>(queue_depth);
  // Blocking calls need threads to overlap; a handful keeps a disk queue busy.
  return std::make_unique<pread_engine>(std::min(queue_depth, 8u));
}

std::unique_ptr<async_io> async_io::make(bool prefer_uring, unsigned queue_depth) {
  if (prefer_uring) {
    try {
      return make_exact(io_engine_type::uring, queue_depth);
    } catch (const io_error&) {
      // io_uring refused (seccomp in containers, old kernel): the pread pool does the same job.
    }
  }
  return make_exact(io_engine_type::pread, queue_depth);
}

}  // namespace shardquant
