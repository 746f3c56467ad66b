// safetensors headers: the parsed, fully validated view of one file (formats.md §2.1-2.3) and
// the layout of a file to write (§2.4). No quantization math; no tensor data held here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kernels/dtype.h"

namespace shardquant {

struct tensor_entry {
  std::string name;
  dtype type;
  std::vector<uint64_t> shape;
  uint64_t begin = 0;  // data_offsets, relative to the data section
  uint64_t end = 0;
  [[nodiscard]] uint64_t numel() const noexcept;  // validated not to overflow by the reader
  [[nodiscard]] uint64_t byte_size() const noexcept { return end - begin; }
};

struct safetensors_header {
  std::string path;  // as given, for error messages
  uint64_t file_size = 0;
  uint64_t header_len = 0;            // N
  uint64_t data_start = 0;            // 8 + N: absolute file offset of data_offsets 0
  std::vector<tensor_entry> tensors;  // in header order
  std::vector<std::pair<std::string, std::string>> metadata;  // __metadata__, in header order
  // Indices into `tensors` sorted by name, filled by the reader so find() is a binary search;
  // when left empty (a header built by hand) find() scans linearly.
  std::vector<uint32_t> by_name;
  [[nodiscard]] const tensor_entry* find(std::string_view name) const noexcept;
};

// The largest header length N a reader accepts and a writer produces (§2.3 rule 1, §2.4 rule 6).
inline constexpr uint64_t max_header_len = 100'000'000;

// Reads the 8-byte length and the header with one pread each (never the data) and validates
// every rule of formats.md §2.3. Throws input_error naming file, tensor and byte offset.
[[nodiscard]] safetensors_header read_safetensors_header(const std::filesystem::path& file);

// Same validation on bytes already in memory: `bytes` holds the first 8 + N bytes (or fewer
// when the file is shorter), `file_size` the whole file's size. Used by the reader and the fuzzer.
[[nodiscard]] safetensors_header parse_safetensors_header(std::string_view path,
                                                          std::span<const std::byte> bytes,
                                                          uint64_t file_size);

// One tensor to be written.
struct tensor_spec {
  std::string name;
  dtype type;
  std::vector<uint64_t> shape;
  [[nodiscard]] uint64_t byte_size() const;  // throws on overflow
};

// The complete layout of an output file, computed before any data exists (§2.4): tensors in
// byte-wise name order, back to back; header compact JSON with __metadata__ {"format":"pt"},
// padded with spaces so the data section starts at a multiple of 4096.
class shard_layout {
 public:
  // Throws input_error (naming `path`) on duplicate names, a tensor named __metadata__, or a
  // header over 100,000,000 bytes.
  [[nodiscard]] static shard_layout make(std::string path, std::vector<tensor_spec> tensors);

  [[nodiscard]] const std::string& header_bytes() const noexcept { return header_; }  // 8 + N
  [[nodiscard]] uint64_t data_start() const noexcept { return header_.size(); }
  [[nodiscard]] uint64_t file_size() const noexcept { return data_start() + data_size_; }
  [[nodiscard]] uint64_t data_size() const noexcept { return data_size_; }
  [[nodiscard]] const std::vector<tensor_entry>& tensors() const noexcept { return entries_; }
  // Absolute file offset of a tensor's first byte; nullopt when not in the layout.
  [[nodiscard]] std::optional<uint64_t> file_offset(std::string_view name) const noexcept;
  [[nodiscard]] const tensor_entry* find(std::string_view name) const noexcept;

 private:
  std::string header_;
  uint64_t data_size_ = 0;
  std::vector<tensor_entry> entries_;  // sorted by name
};

}  // namespace shardquant
