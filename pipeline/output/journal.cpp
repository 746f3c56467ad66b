// Resume journal: append-only text file, "sq2 LAYOUT SOURCES OPTIONS SIZE CHECKSUM PATH" lines.
#include "pipeline/output/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "io/checksum.h"
#include "io/error.h"
#include "io/file.h"

namespace shardquant {

namespace {

std::string hex16(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

struct fnv {
  uint64_t h = 1469598103934665603ull;
  void add(std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
    h ^= 0xFF;  // separator: "ab"+"c" differs from "a"+"bc"
    h *= 1099511628211ull;
  }
};

}  // namespace

resume_journal::resume_journal(const std::filesystem::path& output_dir, bool load,
                               const std::string& name)
    : dir_(output_dir), path_(output_dir / name) {
  const auto& path = path_;
  std::error_code ec;
  if (load && std::filesystem::is_regular_file(std::filesystem::symlink_status(path, ec))) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      std::string tag, rel;
      entry e;
      std::string sum;
      // A torn last line (crash while appending) or a line of an older format does not parse:
      // its shard is redone.
      if (!(ls >> tag >> e.inputs.layout >> e.inputs.sources >> e.inputs.options >> e.inputs.size >>
            sum) ||
          tag != "sq2" || !std::getline(ls >> std::ws, rel) || rel.empty() || sum.size() != 16)
        continue;
      e.checksum = std::stoull(sum, nullptr, 16);
      entries_[rel] = e;
    }
  }
  fd_ = ::open(path.c_str(),
               O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | (load ? 0 : O_TRUNC), 0644);
  if (fd_ < 0) throw io_error(path.string(), "open", errno);
}

resume_journal::~resume_journal() {
  if (fd_ >= 0) ::close(fd_);
}

std::string resume_journal::why_redo(const std::string& relative_path,
                                     const shard_inputs& in) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(relative_path);
  if (it == entries_.end()) return not_recorded;
  const entry& e = it->second;
  if (e.inputs.layout != in.layout || e.inputs.size != in.size)
    return "its tensor layout changed since it was written";
  if (e.inputs.sources != in.sources)
    return "the source checkpoint changed since it was written (a source shard's size, "
           "modification time or header, or config.json)";
  if (e.inputs.options != in.options)
    return "the options that shape its bytes changed since it was written";
  const auto file = dir_ / relative_path;
  struct stat st {};
  if (::lstat(file.c_str(), &st) != 0) return "its file is gone";
  if (!S_ISREG(st.st_mode)) return "its path is no longer a regular file";
  if (static_cast<uint64_t>(st.st_size) != e.inputs.size)
    return "its file is " + std::to_string(st.st_size) + " bytes, " +
           std::to_string(e.inputs.size) + " were written";
  const uint64_t sum = checksum_file(file);
  if (sum != e.checksum)
    return "its file was altered after it was written (checksum " + hex16(sum) + ", recorded " +
           hex16(e.checksum) + ")";
  return {};
}

void resume_journal::record(const std::string& relative_path, const shard_inputs& in,
                            uint64_t checksum) {
  const std::string line = "sq2 " + in.layout + " " + in.sources + " " + in.options + " " +
                           std::to_string(in.size) + " " + hex16(checksum) + " " + relative_path +
                           "\n";
  std::lock_guard lock(mutex_);
  pwrite_all(fd_, std::as_bytes(std::span<const char>(line.data(), line.size())), 0,
             path_.string());
  if (::fsync(fd_) != 0) throw io_error(path_.string(), "fsync", errno);
  entries_[relative_path] = {in, checksum};
}

std::optional<shard_inputs> resume_journal::inputs_of(const std::string& relative_path) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(relative_path);
  if (it == entries_.end()) return std::nullopt;
  return it->second.inputs;
}

bool resume_journal::empty() const {
  std::lock_guard lock(mutex_);
  return entries_.empty();
}

void resume_journal::discard() {
  std::lock_guard lock(mutex_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  const auto& path = path_;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    throw io_error(path.string(), "unlink", errno);
  entries_.clear();
}

std::string shard_key(const std::string& bytes, const std::string& more) {
  fnv f;
  f.add(bytes);
  f.add(more);
  return hex16(f.h);
}

std::string source_fingerprint(const source_checkpoint& src) {
  fnv f;
  f.add(src.config_text);
  for (const auto& sh : src.shards) {
    file_handle fh = file_handle::open(sh.path, O_RDONLY);
    struct stat st {};
    if (::fstat(fh.get(), &st) != 0) throw io_error(sh.path.string(), "fstat", errno);
    const uint64_t mtime_ns =
        static_cast<uint64_t>(st.st_mtim.tv_sec) * 1000000000ull + st.st_mtim.tv_nsec;
    std::string head(8 + sh.header.header_len, '\0');
    pread_all(fh.get(), std::as_writable_bytes(std::span<char>(head.data(), head.size())), 0,
              fh.path());
    f.add(sh.rel_path);
    f.add(std::to_string(st.st_size) + " " + std::to_string(mtime_ns));
    f.add(head);
  }
  return hex16(f.h);
}

}  // namespace shardquant
