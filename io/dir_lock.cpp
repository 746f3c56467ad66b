// dir_lock: flock on a named lock file, holder identity written into it.
#include "io/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <string>

#include "io/error.h"
#include "io/file.h"

namespace shardquant {

namespace {

constexpr const char* k_empty_holder = "an unknown process (the lock file is empty)";

std::string holder_text(int fd) {
  char buf[512];
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return k_empty_holder;
  std::string s(buf, static_cast<size_t>(n));
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  return s.empty() ? "an unknown process" : s;
}

}  // namespace

std::optional<dir_lock> dir_lock::try_lock(const std::filesystem::path& dir,
                                           const std::string& name, std::string* holder) {
  const std::filesystem::path p = dir / name;
  int fd = -1;
  for (;;) {
    // O_NOFOLLOW: a planted link must not make us create or truncate a file elsewhere.
    fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) throw io_error(p.string(), "open lock file", errno);
    int r = 0;
    while ((r = ::flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
    }
    if (r != 0) {
      const int err = errno;
      if (err == EWOULDBLOCK) {
        if (holder) {
          // The holder writes its identity right after its flock: a run started at the same
          // moment may find the file still empty, so give it a moment (up to 0.2 s) to appear.
          *holder = holder_text(fd);
          for (int i = 0; i < 20 && holder->starts_with(k_empty_holder); ++i) {
            ::usleep(10'000);
            *holder = holder_text(fd);
          }
        }
        ::close(fd);
        return std::nullopt;
      }
      ::close(fd);
      throw io_error(p.string(), "flock", err);
    }
    // The previous holder may have removed the file (release_and_remove) between our open and
    // our flock: then we lock an orphan inode. Only a lock on the file the path names counts.
    struct stat a {
    }, b{};
    if (::fstat(fd, &a) == 0 && ::lstat(p.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
      break;
    ::close(fd);
  }
  // We hold it: say who we are. The file is rewritten whole; a reader that races with this
  // write only sees a shorter text.
  char host[HOST_NAME_MAX + 1] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  const std::string me =
      "pid " + std::to_string(::getpid()) + (host[0] ? std::string(" on ") + host : "") + "\n";
  dir_lock lock(fd, p);
  if (::ftruncate(fd, 0) != 0) throw io_error(p.string(), "ftruncate", errno);
  pwrite_all(fd, std::as_bytes(std::span<const char>(me.data(), me.size())), 0, p.string());
  return lock;
}

dir_lock dir_lock::lock_or_throw(const std::filesystem::path& dir, const std::string& name) {
  std::string holder;
  auto l = try_lock(dir, name, &holder);
  if (!l)
    throw usage_error("output directory " + dir.string() +
                      " is in use by another shardquant run (" + holder + ", lock file " +
                      (dir / name).string() + "); wait for it to finish or stop it");
  return std::move(*l);
}

dir_lock& dir_lock::operator=(dir_lock&& o) noexcept {
  if (this != &o) {
    release();
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
}

dir_lock::~dir_lock() {
  release();
}

void dir_lock::release_and_remove() noexcept {
  if (fd_ >= 0) ::unlink(path_.c_str());  // still held: nobody else can own this inode yet
  release();
}

void dir_lock::release() noexcept {
  if (fd_ >= 0) {
    // Closing the descriptor drops the flock; the holder text is left (harmless: the next
    // holder rewrites it, and a reader only consults it when the lock is held).
    ::close(fd_);
    fd_ = -1;
  }
}

}  // namespace shardquant
