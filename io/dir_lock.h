// An exclusive lock on a folder: flock(LOCK_EX | LOCK_NB) on a lock file inside it whose name is
// a parameter (the whole-folder lock today; per-worker and finalize locks later use other names).
// The holder's PID and host name are written into the file so that a refused run can name the
// other process. The kernel drops the lock when the holder dies, so a killed run never blocks
// the next one. The file stays unless release_and_remove() is called; a locker checks that the
// file it locked is still the one the path names, so removal never lets two processes in. No JSON,
// no safetensors, no pipeline.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace shardquant {

class dir_lock {
 public:
  // The whole-output-folder lock of a quantize run.
  static constexpr const char* output_lock_name = ".shardquant-lock";

  // Takes the lock on `dir / name` or returns nullopt when another process (or another
  // descriptor of this one) holds it; `holder` then receives what the file says about it
  // ("pid 1234 on host-a", or "an unknown process"). Throws io_error when the file cannot be
  // opened or written.
  [[nodiscard]] static std::optional<dir_lock> try_lock(const std::filesystem::path& dir,
                                                        const std::string& name,
                                                        std::string* holder = nullptr);
  // Takes the lock or throws usage_error naming the folder and the holder.
  [[nodiscard]] static dir_lock lock_or_throw(const std::filesystem::path& dir,
                                              const std::string& name = output_lock_name);

  dir_lock(dir_lock&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  dir_lock& operator=(dir_lock&& o) noexcept;
  dir_lock(const dir_lock&) = delete;
  dir_lock& operator=(const dir_lock&) = delete;
  ~dir_lock();

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  // Releases the lock now (also done by the destructor). The file stays.
  void release() noexcept;
  // Removes the lock file while still holding it, then releases: for a run that leaves the
  // folder as it found it (a waiting locker notices the file went and opens the new one).
  void release_and_remove() noexcept;

 private:
  dir_lock(int fd, std::filesystem::path path) noexcept : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::filesystem::path path_;
};

}  // namespace shardquant
