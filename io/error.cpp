// Formatting of the error messages.
#include "io/error.h"

#include <cstring>

namespace shardquant {
namespace {

std::string compose(const std::string& file, const std::string& tensor, uint64_t offset,
                    const std::string& message) {
  std::string s = file.empty() ? std::string{} : file + ": ";
  if (!tensor.empty()) s += "tensor '" + tensor + "' ";
  if (offset != input_error::no_offset) s += "at byte " + std::to_string(offset) + " ";
  if (!tensor.empty() || offset != input_error::no_offset) {
    s.back() = ':';
    s += ' ';
  }
  return s + message;
}

}  // namespace

input_error::input_error(std::string file, std::string tensor, uint64_t offset,
                         const std::string& message)
    : std::runtime_error(compose(file, tensor, offset, message)),
      file_(std::move(file)),
      tensor_(std::move(tensor)),
      offset_(offset),
      message_(message) {}

std::string escaped_name(std::string_view name) {
  static const char hex[] = "0123456789abcdef";
  std::string r;
  r.reserve(name.size());
  for (const char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\\') {
      r += "\\\\";
    } else if (c >= 0x20 && c < 0x7f) {
      r += ch;
    } else {
      r += "\\x";
      r += hex[c >> 4];
      r += hex[c & 15];
    }
  }
  return r;
}

io_error::io_error(const std::string& path, const std::string& operation, int err)
    : std::runtime_error(path + ": " + operation + " failed: " + std::strerror(err)) {}

}  // namespace shardquant
