// The error every layer above kernels throws for bad input: it names the file, the tensor and
// the byte offset (formats.md §2.3, design.md §5). Owns no I/O.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace shardquant {

// Bad input: a malformed file, an unsupported source, a tensor that cannot be quantized.
class input_error : public std::runtime_error {
 public:
  static constexpr uint64_t no_offset = ~uint64_t{0};
  // what() reads "FILE: tensor 'NAME' at byte OFFSET: MESSAGE" (parts left out when empty).
  input_error(std::string file, std::string tensor, uint64_t offset, const std::string& message);
  [[nodiscard]] const std::string& file() const noexcept { return file_; }
  [[nodiscard]] const std::string& tensor() const noexcept { return tensor_; }
  [[nodiscard]] uint64_t offset() const noexcept { return offset_; }
  [[nodiscard]] const std::string& message() const noexcept { return message_; }

 private:
  std::string file_;
  std::string tensor_;
  uint64_t offset_;
  std::string message_;
};

// A failing system call (open, read, write, rename): names the path and errno's text.
class io_error : public std::runtime_error {
 public:
  io_error(const std::string& path, const std::string& operation, int err);
};

// The run was stopped through quantize_options::cancel (e.g. SIGINT in the CLI). Thrown like
// any other error, after the same cleanup: no temporary file left, the journal consistent.
class cancelled_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// `name` fit for an error message: printable ASCII as is, every other byte (NUL, control
// characters, bytes of 0x7f and above) as \xNN, and a backslash doubled.
[[nodiscard]] std::string escaped_name(std::string_view name);

// A wrong command line or option combination.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace shardquant
