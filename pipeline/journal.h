// The resume journal: one line per published output shard (relative path, file size and a key
// that changes with the shard's layout and the options that shape its bytes), appended and
// fsynced right after the shard's rename. `--resume` keeps a shard only when its line matches and
// the file on disk has that exact size. No graph, no math.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace shardquant {

class resume_journal {
 public:
  static constexpr const char* file_name = ".shardquant-journal";

  // Opens (creating) the journal in `output_dir`; reads existing lines when `load` is set.
  resume_journal(const std::filesystem::path& output_dir, bool load);
  ~resume_journal();
  resume_journal(const resume_journal&) = delete;
  resume_journal& operator=(const resume_journal&) = delete;

  // True when `relative_path` was published with this key and size and is still there intact.
  [[nodiscard]] bool complete(const std::string& relative_path, const std::string& key,
                              uint64_t size) const;
  // The size recorded for `relative_path`, if any (a compressed shard's size is known only once
  // it is written).
  [[nodiscard]] std::optional<uint64_t> recorded_size(const std::string& relative_path) const;
  // Appends a line and fsyncs it. Thread-safe.
  void record(const std::string& relative_path, const std::string& key, uint64_t size);
  // The run is complete (shards, index, config, side files): nothing is left to resume, so the
  // journal goes and the output folder holds exactly the files of a finished checkpoint.
  void discard();

 private:
  std::filesystem::path dir_;
  int fd_ = -1;
  std::mutex mutex_;
  std::map<std::string, std::pair<std::string, uint64_t>> entries_;
};

// A key for a shard: FNV-1a of the header bytes (every tensor name, dtype, shape and offset) and
// of `options_text` (scheme, overrides, ... anything that changes bytes without changing shapes).
[[nodiscard]] std::string shard_key(const std::string& header_bytes,
                                    const std::string& options_text);

}  // namespace shardquant
