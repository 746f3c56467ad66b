// The resume journal: one line per published output shard, appended and fsynced right after the
// shard's rename. A line holds what the shard was made from, in three keys (its layout; the
// source checkpoint's fingerprint: every source shard's path, size, modification time and header
// hash, and config.json; the options that change output bytes), then the file's size and the
// checksum computed while it was written (io/checksum.h). `--resume` keeps a shard only when
// all of that still matches, the file included, and otherwise says why it is redone. No graph,
// no math.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "io/checkpoint.h"

namespace shardquant {

// What an output shard is made from; each field a 16-hex-digit hash.
struct shard_inputs {
  std::string layout;   // shard_key(header bytes): tensor names, dtypes, shapes, offsets
  std::string sources;  // source_fingerprint(...)
  std::string options;  // shard_key(options text)
  uint64_t size = 0;    // the output file's size
};

class resume_journal {
 public:
  static constexpr const char* file_name = ".shardquant-journal";

  // Opens the journal in `output_dir`: with `load`, reads the earlier run's lines and appends;
  // otherwise starts it empty. Never follows a symbolic link at its name. `name` is the file's
  // name: the single run's, or a worker's (pipeline/output/shares.h).
  resume_journal(const std::filesystem::path& output_dir, bool load,
                 const std::string& name = file_name);
  ~resume_journal();
  resume_journal(const resume_journal&) = delete;
  resume_journal& operator=(const resume_journal&) = delete;

  // Empty when `relative_path` may be kept (recorded with exactly these inputs, and its file
  // still has the recorded size and checksum); otherwise why it must be redone. A shard the
  // journal does not name gives "not recorded as finished".
  [[nodiscard]] std::string why_redo(const std::string& relative_path,
                                     const shard_inputs& inputs) const;
  // What `relative_path` was recorded with (also for entries that name no file, such as a
  // worker's options line); nullopt when it was not recorded.
  [[nodiscard]] std::optional<shard_inputs> inputs_of(const std::string& relative_path) const;
  // Appends a line and fsyncs it. Thread-safe.
  void record(const std::string& relative_path, const shard_inputs& inputs, uint64_t checksum);
  // Whether any shard is recorded (loaded or recorded by this run).
  [[nodiscard]] bool empty() const;
  // Removes the journal file: the run finished (nothing left to resume), or it published
  // nothing (nothing to resume either).
  void discard();

  static constexpr const char* not_recorded = "not recorded as finished";

 private:
  struct entry {
    shard_inputs inputs;
    uint64_t checksum = 0;
  };
  std::filesystem::path dir_;
  std::filesystem::path path_;  // dir_ / the journal's name
  int fd_ = -1;
  mutable std::mutex mutex_;
  std::map<std::string, entry> entries_;
};

// A 16-hex-digit FNV-1a hash of `bytes` and `more` (kept for layout and option keys).
[[nodiscard]] std::string shard_key(const std::string& bytes, const std::string& more);
// The source's fingerprint: per shard its relative path, size, modification time (ns) and a hash
// of its header bytes, and config.json's text. Reads each header once more; throws io_error.
[[nodiscard]] std::string source_fingerprint(const source_checkpoint& src);

}  // namespace shardquant
