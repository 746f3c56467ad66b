// POSIX file helpers and atomic_file.
#include "io/file.h"

#include <signal.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "io/error.h"

namespace shardquant {

file_handle& file_handle::operator=(file_handle&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = o.release();
    path_ = std::move(o.path_);
  }
  return *this;
}

file_handle file_handle::open(const std::filesystem::path& path, int flags, unsigned mode) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, static_cast<mode_t>(mode));
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw io_error(path.string(), "open", errno);
  return file_handle(fd, path.string());
}

uint64_t file_handle::size() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw io_error(path_, "fstat", errno);
  return static_cast<uint64_t>(st.st_size);
}

void file_handle::reset() noexcept {
  // close() is not retried on EINTR: on Linux the descriptor is released either way.
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void pread_all(int fd, std::span<std::byte> out, uint64_t offset, std::string_view path) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t r =
        ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw io_error(std::string(path), "pread at byte " + std::to_string(offset + done), errno);
    }
    if (r == 0) {
      throw io_error(std::string(path),
                     "pread of " + std::to_string(out.size()) + " bytes at byte " +
                         std::to_string(offset) + " (file ends at byte " +
                         std::to_string(offset + done) + ")",
                     EIO);
    }
    done += static_cast<size_t>(r);
  }
}

void pwrite_all(int fd, std::span<const std::byte> bytes, uint64_t offset, std::string_view path) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t r =
        ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw io_error(std::string(path), "pwrite at byte " + std::to_string(offset + done), errno);
    }
    if (r == 0) throw io_error(std::string(path), "pwrite (no progress)", EIO);
    done += static_cast<size_t>(r);
  }
}

void fsync_directory(const std::filesystem::path& dir) {
  file_handle d =
      file_handle::open(dir.empty() ? std::filesystem::path(".") : dir, O_RDONLY | O_DIRECTORY);
  if (::fsync(d.get()) != 0) throw io_error(d.path(), "fsync", errno);
}

namespace {
std::atomic<uint64_t> g_temp_counter{0};
}  // namespace

atomic_file::atomic_file(std::filesystem::path final_path, unsigned mode)
    : final_(std::move(final_path)) {
  // The counter keeps two writers of one process apart; the pid keeps processes apart.
  // Appends, not "." + ...: GCC 12 -O3 warns falsely (-Wrestrict) on literal + string chains.
  std::string name = ".";
  name.append(final_.filename().string())
      .append(".sq-tmp-")
      .append(std::to_string(::getpid()))
      .append("-")
      .append(std::to_string(g_temp_counter.fetch_add(1)));
  temp_ = final_.parent_path() / name;
  fd_ = file_handle::open(temp_, O_RDWR | O_CREAT | O_EXCL, mode);
}

atomic_file::~atomic_file() {
  if (!committed_) {
    fd_.reset();
    ::unlink(temp_.c_str());
  }
}

void atomic_file::pwrite(uint64_t offset, std::span<const std::byte> bytes) {
  pwrite_all(fd_.get(), bytes, offset, temp_.string());
  const uint64_t end = offset + bytes.size();
  uint64_t cur = high_water_.load();
  while (cur < end && !high_water_.compare_exchange_weak(cur, end)) {
  }
}

void atomic_file::commit(uint64_t size) {
  if (committed_) return;
  if (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0)
    throw io_error(temp_.string(), "ftruncate", errno);
  if (::fsync(fd_.get()) != 0) throw io_error(temp_.string(), "fsync", errno);
  if (::rename(temp_.c_str(), final_.c_str()) != 0)
    throw io_error(final_.string(), "rename from " + temp_.string(), errno);
  committed_ = true;
  fd_.reset();
  fsync_directory(final_.parent_path());
}

bool is_temporary_name(std::string_view name, long* pid) {
  if (name.empty() || name.front() != '.') return false;
  const size_t at = name.rfind(".sq-tmp-");
  if (at == std::string_view::npos || at == 0) return false;
  const std::string_view rest = name.substr(at + 8);  // "<pid>-<n>"
  const size_t dash = rest.find('-');
  if (dash == 0 || dash == std::string_view::npos || dash + 1 == rest.size()) return false;
  for (size_t i = 0; i < rest.size(); ++i)
    if (i != dash && (rest[i] < '0' || rest[i] > '9')) return false;
  if (dash > 9) return false;
  if (pid) *pid = std::stol(std::string(rest.substr(0, dash)));
  return true;
}

stale_removal remove_stale_temporaries(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  stale_removal r;
  std::error_code ec;
  // recursive_directory_iterator does not follow directory symlinks by default.
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::directory_entry& e = *it;
    long pid = 0;
    if (!is_temporary_name(e.path().filename().string(), &pid)) continue;
    std::error_code ec2;
    if (!e.is_regular_file(ec2) || e.is_symlink(ec2)) continue;
    if (pid == ::getpid()) continue;  // ours: removed by its atomic_file
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      const uint64_t size = e.file_size(ec2);
      if (::unlink(e.path().c_str()) == 0) {
        ++r.files;
        r.bytes += ec2 ? 0 : size;
      } else if (errno != ENOENT) {
        throw io_error(e.path().string(), "unlink stale temporary file", errno);
      }
    }
  }
  if (ec) throw io_error(dir.string(), "list directory", ec.value());
  return r;
}

void create_directories_inside(const std::filesystem::path& root,
                               const std::filesystem::path& rel) {
  std::filesystem::path p = root;
  for (const auto& part : rel) {
    if (part.empty() || part == ".") continue;
    p /= part;
    struct stat st {};
    if (::lstat(p.c_str(), &st) == 0) {
      if (S_ISLNK(st.st_mode))
        throw io_error(p.string(),
                       "create folder (it is a symbolic link; shardquant never writes through one)",
                       ELOOP);
      if (!S_ISDIR(st.st_mode)) throw io_error(p.string(), "create folder", ENOTDIR);
      continue;
    }
    if (::mkdir(p.c_str(), 0755) != 0 && errno != EEXIST)
      throw io_error(p.string(), "create folder", errno);
  }
}

void write_file_atomic(const std::filesystem::path& path, std::string_view content, unsigned mode) {
  atomic_file f(path, mode);
  f.pwrite(0, content);
  f.commit(content.size());
}

std::string read_file(const std::filesystem::path& path) {
  file_handle f = file_handle::open(path, O_RDONLY);
  const uint64_t size = f.size();
  std::string s(size, '\0');
  pread_all(f.get(), std::as_writable_bytes(std::span<char>(s.data(), s.size())), 0, f.path());
  return s;
}

}  // namespace shardquant
