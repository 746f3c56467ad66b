// Resume journal: append-only text file, one "KEY SIZE PATH" line per published shard.
#include "pipeline/journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "io/error.h"
#include "io/file.h"

namespace shardquant {

resume_journal::resume_journal(const std::filesystem::path& output_dir, bool load)
    : dir_(output_dir) {
  const auto path = dir_ / file_name;
  if (load && std::filesystem::exists(path)) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      std::string key, rel;
      uint64_t size = 0;
      // A torn last line (crash while appending) simply does not parse.
      if (!(ls >> key >> size) || !std::getline(ls >> std::ws, rel) || rel.empty()) continue;
      entries_[rel] = {key, size};
    }
  }
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw io_error(path.string(), "open", errno);
}

resume_journal::~resume_journal() {
  if (fd_ >= 0) ::close(fd_);
}

bool resume_journal::complete(const std::string& relative_path, const std::string& key,
                              uint64_t size) const {
  auto it = entries_.find(relative_path);
  if (it == entries_.end() || it->second.first != key || it->second.second != size) return false;
  std::error_code ec;
  const auto on_disk = std::filesystem::file_size(dir_ / relative_path, ec);
  return !ec && on_disk == size;
}

std::optional<uint64_t> resume_journal::recorded_size(const std::string& relative_path) const {
  auto it = entries_.find(relative_path);
  if (it == entries_.end()) return std::nullopt;
  return it->second.second;
}

void resume_journal::record(const std::string& relative_path, const std::string& key,
                            uint64_t size) {
  const std::string line = key + " " + std::to_string(size) + " " + relative_path + "\n";
  std::lock_guard lock(mutex_);
  pwrite_all(fd_, std::as_bytes(std::span<const char>(line.data(), line.size())), 0,
             (dir_ / file_name).string());
  if (::fsync(fd_) != 0) throw io_error((dir_ / file_name).string(), "fsync", errno);
  entries_[relative_path] = {key, size};
}

void resume_journal::discard() {
  std::lock_guard lock(mutex_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  const auto path = dir_ / file_name;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    throw io_error(path.string(), "unlink", errno);
  entries_.clear();
}

std::string shard_key(const std::string& header_bytes, const std::string& options_text) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const std::string& s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
    h ^= 0xFF;
    h *= 1099511628211ull;
  };
  mix(header_bytes);
  mix(options_text);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace shardquant
