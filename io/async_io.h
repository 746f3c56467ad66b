// Asynchronous file I/O for the pipeline: large reads and writes at given offsets, several in
// flight, completion reported through a callback on the engine's own thread (the graph's
// async_node gateway puts the job back into the graph from there, so no graph worker blocks).
// The engines (io_uring, a pread/pwrite thread pool) are listed in io/io_engine.h, one io/ file
// each; this file holds what they share.
// Files are opened with O_DIRECT where the file system allows it; a refused O_DIRECT (EINVAL on
// tmpfs) falls back to buffered I/O for that file. Files on a memory file system (tmpfs) bypass
// both engines: their I/O is a memory copy, run on a pool of copy threads (see memory_backed()).
// Knows nothing about safetensors or tensors.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "io/io_engine.h"

namespace shardquant {

// O_DIRECT alignment of file offsets, lengths and memory addresses.
inline constexpr uint64_t io_alignment = 4096;

[[nodiscard]] constexpr uint64_t align_down(uint64_t v, uint64_t a) noexcept {
  return v / a * a;
}
[[nodiscard]] constexpr uint64_t align_up(uint64_t v, uint64_t a) noexcept {
  return (v + a - 1) / a * a;
}

// A read of bytes [offset, offset + length) is done as the aligned superset [begin, end); the
// wanted bytes then start `skip` bytes into the buffer.
struct read_extent {
  uint64_t begin = 0;
  uint64_t end = 0;
  uint64_t skip = 0;
  [[nodiscard]] uint64_t span() const noexcept { return end - begin; }
};
[[nodiscard]] constexpr read_extent aligned_read_extent(uint64_t offset, uint64_t length) noexcept {
  const uint64_t b = align_down(offset, io_alignment);
  return {b, align_up(offset + length, io_alignment), offset - b};
}
// Buffer bytes a read of `length` bytes at any offset can need: the superset adds at most one
// block at each end.
[[nodiscard]] constexpr uint64_t read_buffer_bound(uint64_t length) noexcept {
  return align_up(length, io_alignment) + io_alignment;
}

// An open file. Holds a buffered descriptor always and an O_DIRECT one when the file system
// accepts it (and direct I/O was asked for).
class io_file {
 public:
  enum class mode : uint8_t { read, write };
  // mode::write creates or truncates the file and sets its size to `size` (sparse).
  [[nodiscard]] static std::shared_ptr<io_file> open(const std::filesystem::path& path, mode m,
                                                     bool try_direct, uint64_t size = 0);
  // Shares an already open, writable descriptor (e.g. an atomic_file's temporary file): the
  // buffered descriptor is a dup(), the direct one a reopen through /proc/self/fd. `final_size`
  // is the size the file will have once written: a memory-backed file shorter than that is
  // extended to it and its pages reserved (fallocate; a full file system is an io_error here) so
  // writes can go through a shared mapping; other files keep their size. size() is the file's
  // size after that.
  [[nodiscard]] static std::shared_ptr<io_file> wrap_for_write(int fd, std::string path,
                                                               bool try_direct,
                                                               uint64_t final_size = 0);
  ~io_file();
  io_file(const io_file&) = delete;
  io_file& operator=(const io_file&) = delete;

  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  [[nodiscard]] int buffered_fd() const noexcept { return fd_; }
  [[nodiscard]] int direct_fd() const noexcept { return direct_fd_; }  // -1 when none
  [[nodiscard]] bool direct() const noexcept { return direct_fd_ >= 0; }
  [[nodiscard]] uint64_t size() const noexcept { return size_; }
  // On a memory file system (tmpfs): its I/O is a memory copy. io_uring would run it inline in
  // the submitting thread, or serialize writes to one file in one io-wq worker, and tmpfs's
  // write(2) holds the inode lock, so parallel pwrite()s to one file run one at a time (measured
  // on the H100 machine: 2.4-2.9 GB/s for 1 to 12 writer threads). Both engines hand such files
  // to copy threads: reads are pread()s, writes go through a shared mapping of the piece
  // (page faults do not take the inode lock), falling back to pwrite() where mapping fails.
  [[nodiscard]] bool memory_backed() const noexcept { return memory_backed_; }
  // A memory-backed file whose pages wrap_for_write reserved (fallocate) up to its final size.
  [[nodiscard]] bool reserved() const noexcept { return reserved_; }

 private:
  io_file() = default;
  std::string path_;
  int fd_ = -1;
  int direct_fd_ = -1;
  uint64_t size_ = 0;
  bool memory_backed_ = false;
  bool reserved_ = false;
  void detect_file_system();
};

// Called once per request, on an engine thread, with nullptr on success or the failure
// (io_error naming the path; a short read past the end of the file is an io_error too).
using io_callback = std::function<void(std::exception_ptr)>;

// Bytes handed to each path so far (a piece counts where it was first sent): the O_DIRECT
// descriptor, the buffered descriptor, and the copy threads of memory-backed files. Says which
// path requests really took (tests, benchmarks).
struct io_path_bytes {
  uint64_t direct = 0;
  uint64_t buffered = 0;
  uint64_t copied = 0;
};

class async_io {
 public:
  virtual ~async_io();

  // The first engine of io_engines() that can be set up here (io_uring, else the pread pool);
  // fallback_reason() then says why the engines before it were skipped. `queue_depth`: requests
  // the engine keeps in flight at once (pieces of at most `max_piece` bytes each).
  [[nodiscard]] static std::unique_ptr<async_io> make_automatic(unsigned queue_depth = 32);
  // Exactly the engine asked for; throws io_error when it cannot be set up.
  [[nodiscard]] static std::unique_ptr<async_io> make_exact(io_engine_type t,
                                                            unsigned queue_depth = 32);

  [[nodiscard]] virtual io_engine_type type() const noexcept = 0;
  async_io();
  [[nodiscard]] const char* name() const noexcept { return io_engine_type_name(type()); }
  // Empty unless make_automatic() skipped an engine: then "uring: <why it failed>".
  [[nodiscard]] const std::string& fallback_reason() const noexcept { return fallback_reason_; }
  [[nodiscard]] io_path_bytes path_bytes() const noexcept;

  // Reads the aligned superset `e = aligned_read_extent(offset, length)` into `buffer`
  // (`buffer` aligned to io_alignment, capacity >= e.span()); the wanted bytes then start at
  // buffer + e.skip. Bytes past the end of the file are left unspecified; the request fails
  // unless [offset, offset + length) lies inside the file.
  void read(std::shared_ptr<io_file> f, uint64_t offset, uint64_t length, std::byte* buffer,
            io_callback done);

  // Writes `length` bytes from `data` at `offset`. The part of the range covering whole aligned
  // blocks goes through the O_DIRECT descriptor when `data` + (that part's start - offset) is
  // memory-aligned too; head and tail (and everything when not aligned) go through the
  // buffered descriptor. Place data at buffer + offset % io_alignment to get the direct path.
  void write(std::shared_ptr<io_file> f, uint64_t offset, uint64_t length, const std::byte* data,
             io_callback done);

  // Blocks until every request submitted so far has completed and its callback returned.
  void drain();

  static constexpr uint64_t max_piece = uint64_t{8} << 20;

 protected:
  struct request;
  struct piece {
    std::shared_ptr<request> req;
    int fd;
    bool is_write;
    uint64_t offset;
    uint64_t length;
    std::byte* data;
    uint64_t min_length;  // a read may stop short at end of file only after this many bytes
  };
  // The engine's own path (never called for memory-backed files) and its drain().
  virtual void submit(piece p) = 0;
  virtual void drain_engine() = 0;
  // Completes a piece: `result` bytes transferred or -errno. Resubmits short transfers.
  void complete(piece& p, int64_t result);
  // Threads that run blocking calls for pieces from a queue and complete() them (the pread
  // engine's workers and the copy threads of memory-backed files).
  class piece_workers;

 private:
  // A piece goes to the copy threads when its file is memory-backed, else to submit().
  void dispatch(piece p);
  [[nodiscard]] piece_workers& copier();
  std::once_flag copier_once_;
  std::unique_ptr<piece_workers> copier_;

  void split_and_submit(const std::shared_ptr<request>& r, int fd, bool is_write, uint64_t offset,
                        uint64_t length, std::byte* data, uint64_t min_length);

  std::string fallback_reason_;
  std::atomic<uint64_t> direct_bytes_{0}, buffered_bytes_{0}, copied_bytes_{0};
};

}  // namespace shardquant
