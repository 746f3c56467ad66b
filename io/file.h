// Plain POSIX file access: an RAII file descriptor, pread/pwrite loops that never return short,
// and atomic_file, the only way shardquant creates an output file (temporary name in the final
// directory, renamed into place when complete). No JSON, no safetensors knowledge, no io_uring.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

namespace shardquant {

// Owns one file descriptor; closes it on destruction. Move-only.
class file_handle {
 public:
  file_handle() noexcept = default;
  file_handle(int fd, std::string path) noexcept : fd_(fd), path_(std::move(path)) {}
  file_handle(file_handle&& o) noexcept : fd_(o.release()), path_(std::move(o.path_)) {}
  file_handle& operator=(file_handle&& o) noexcept;
  file_handle(const file_handle&) = delete;
  file_handle& operator=(const file_handle&) = delete;
  ~file_handle() { reset(); }

  // Opens with open(2) flags (O_CLOEXEC is always added); throws io_error.
  [[nodiscard]] static file_handle open(const std::filesystem::path& path, int flags,
                                        unsigned mode = 0644);

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  [[nodiscard]] explicit operator bool() const noexcept { return fd_ >= 0; }
  [[nodiscard]] uint64_t size() const;  // fstat; throws io_error
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset() noexcept;

 private:
  int fd_ = -1;
  std::string path_;
};

// Reads exactly out.size() bytes at `offset`, retrying on EINTR and short counts. Throws
// io_error on failure or when the file ends first. `path` is only used for the message.
void pread_all(int fd, std::span<std::byte> out, uint64_t offset, std::string_view path);
// Writes all of `bytes` at `offset`, retrying on EINTR and short counts; throws io_error.
void pwrite_all(int fd, std::span<const std::byte> bytes, uint64_t offset, std::string_view path);

// fsyncs a directory so a rename inside it is durable; throws io_error.
void fsync_directory(const std::filesystem::path& dir);

// An output file under construction: created as `.<name>.sq-tmp-<pid>-<n>` in the final
// directory (same file system, so the final rename is atomic), written at offsets, and published
// by commit(). Destroyed without commit() -> the temporary file is removed, so nothing
// half-written ever appears under the final name. pwrite is safe from several threads.
class atomic_file {
 public:
  explicit atomic_file(std::filesystem::path final_path, unsigned mode = 0644);
  atomic_file(const atomic_file&) = delete;
  atomic_file& operator=(const atomic_file&) = delete;
  ~atomic_file();

  void pwrite(uint64_t offset, std::span<const std::byte> bytes);
  void pwrite(uint64_t offset, std::string_view bytes) {
    pwrite(offset, std::as_bytes(std::span<const char>(bytes.data(), bytes.size())));
  }

  // ftruncate to exactly `size`, fsync, rename over the final name, fsync the directory.
  void commit(uint64_t size);
  // Same, with the size = the highest byte written through pwrite().
  void commit() { commit(high_water_.load()); }

  // For writers that write through their own descriptor (e.g. io_uring): they use fd() or open
  // temp_path() themselves and pass the exact size to commit(size).
  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  [[nodiscard]] const std::filesystem::path& temp_path() const noexcept { return temp_; }
  [[nodiscard]] const std::filesystem::path& final_path() const noexcept { return final_; }
  [[nodiscard]] bool committed() const noexcept { return committed_; }

 private:
  std::filesystem::path final_;
  std::filesystem::path temp_;
  file_handle fd_;
  std::atomic<uint64_t> high_water_{0};
  bool committed_ = false;
};

// Removes the temporary files of atomic_file (`.<name>.sq-tmp-<pid>-<n>`) under `dir` (its
// sub-folders too, never through a symbolic link) whose process is gone: what killed runs left.
// Call it with the folder's lock held (io/dir_lock.h), so no live run of another host can own
// them. Returns the files and bytes removed; throws io_error.
struct stale_removal {
  uint64_t files = 0;
  uint64_t bytes = 0;
};
stale_removal remove_stale_temporaries(const std::filesystem::path& dir);
// Whether `name` (a file name, no folder) has the form of an atomic_file temporary; its pid
// goes to `*pid` when given.
[[nodiscard]] bool is_temporary_name(std::string_view name, long* pid = nullptr);

// Creates `root / rel` folder by folder ('/'-separated `rel`), refusing (io_error with ELOOP)
// any existing component that is a symbolic link, so nothing is ever written through a link
// planted in an output folder; an existing component that is not a folder fails too.
void create_directories_inside(const std::filesystem::path& root, const std::filesystem::path& rel);

// Writes a small whole file atomically (temporary name + rename), e.g. JSON files.
void write_file_atomic(const std::filesystem::path& path, std::string_view content,
                       unsigned mode = 0644);
// Reads a whole (small) file; throws io_error.
[[nodiscard]] std::string read_file(const std::filesystem::path& path);

}  // namespace shardquant
