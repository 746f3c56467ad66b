// Writes one output safetensors shard whose layout was fixed in advance (shard_layout): the
// header first, then tensors (whole or in row ranges, from any thread) at their precomputed
// offsets, and commit() publishes the file only when every byte of every tensor has been
// written. Built on atomic_file; knows nothing about quantization or the flow graph.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "io/file.h"
#include "io/safetensors.h"
#include "io/zstd_writer.h"

namespace shardquant {

class shard_writer {
 public:
  // Creates the temporary file next to `final_path` and writes the header. With `compress`, the
  // shard is published as `final_path` + ".zst" (io/zstd_writer.h) and the plain temporary file
  // goes away; nothing appears under the plain name.
  shard_writer(shard_layout layout, std::filesystem::path final_path,
               std::optional<zstd_compress_options> compress = std::nullopt);

  // Writes a whole tensor; `bytes` must be exactly its byte size.
  void write_tensor(std::string_view name, std::span<const std::byte> bytes);
  // Writes part of a tensor (e.g. a row range) starting `offset` bytes into the tensor's data.
  // A range that leaves the tensor or overlaps bytes already written is a logic_error.
  void write_at(std::string_view name, uint64_t offset, std::span<const std::byte> bytes);
  // For bytes written through fd() by another writer (e.g. io_uring): records them as written.
  void note_written(std::string_view name, uint64_t offset, uint64_t size);

  // Adds the checksum (io/checksum.h) of bytes written at absolute file `offset` by another
  // writer (write_tensor/write_at and the header count themselves). Thread-safe.
  void add_checksum(uint64_t offset, std::span<const std::byte> bytes) noexcept;
  // The checksum of every byte written so far; after commit(), of the whole file.
  [[nodiscard]] uint64_t checksum() const noexcept { return checksum_.load(); }

  // Checks that every tensor is complete (logic_error naming the first incomplete one), then
  // truncates to the layout's exact size, fsyncs and renames into place (or compresses).
  void commit();
  // After commit(): the file published and its size (the compressed file when compressing).
  [[nodiscard]] const std::filesystem::path& published_path() const noexcept {
    return published_path_;
  }
  [[nodiscard]] uint64_t published_size() const noexcept { return published_size_; }

  [[nodiscard]] const shard_layout& layout() const noexcept { return layout_; }
  [[nodiscard]] int fd() const noexcept { return file_.fd(); }
  [[nodiscard]] const std::filesystem::path& final_path() const noexcept {
    return file_.final_path();
  }
  // Bytes of `name` recorded as written so far.
  [[nodiscard]] uint64_t written_bytes(std::string_view name) const;

 private:
  struct progress {
    std::map<uint64_t, uint64_t> ranges;  // begin -> end within the tensor, disjoint
    uint64_t written = 0;
  };
  // Checks the range and records it; returns the absolute file offset.
  uint64_t record(std::string_view name, uint64_t offset, uint64_t size);

  shard_layout layout_;
  atomic_file file_;
  mutable std::mutex mutex_;
  std::vector<progress> progress_;  // parallel to layout_.tensors()
  std::atomic<uint64_t> checksum_{0};
  std::optional<zstd_compress_options> compress_;
  std::filesystem::path published_path_;
  uint64_t published_size_ = 0;
};

}  // namespace shardquant
