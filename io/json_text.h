// Byte-level JSON helpers shared by the safetensors reader/writer and the checkpoint files:
// UTF-8 validation with the position of the first bad byte, a scanner that finds where the
// top-level object ends (simdjson does not say where trailing garbage starts, nor where a key
// sits), and the JSON string escaping our writers use. No file I/O, no tensor knowledge.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace shardquant {

// Position of the first byte that is not part of a valid UTF-8 sequence (overlong forms,
// surrogates and code points past U+10FFFF are invalid); npos when `s` is valid.
[[nodiscard]] size_t find_invalid_utf8(std::string_view s) noexcept;

[[nodiscard]] constexpr bool is_json_whitespace(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// Result of scanning a text that starts with '{'.
struct json_object_scan {
  bool closed = false;  // the matching '}' was found
  size_t end = 0;       // one past the matching '}' (valid when closed)
  // Offset of the opening quote of every top-level key, in text order. Exact only when the
  // text is valid JSON (callers validate with simdjson and then use these for error offsets).
  std::vector<size_t> key_positions;
  size_t max_depth = 0;   // deepest nesting of objects and arrays met (the root object is 1)
  size_t deepest_at = 0;  // offset of the first bracket that reached max_depth
};

// Finds the end of the object that starts at text[0] == '{' by tracking strings, escapes and
// nesting; no validation beyond that.
[[nodiscard]] json_object_scan scan_json_object(std::string_view text);

// The deepest nesting shardquant parses (recursive descent and the value tree's destructor
// must not run out of stack on hostile files).
inline constexpr size_t max_json_depth = 256;

// Appends `s` as a JSON string literal: escapes only '"', '\\' and control characters
// (\b \f \n \r \t short forms, others \u00XX); every other byte, UTF-8 included, stays raw.
void append_json_string(std::string& out, std::string_view s);

// True when `token` is a JSON number token (RFC 8259 grammar), e.g. "-0", "1e-05", "500000.0".
[[nodiscard]] bool is_json_number_token(std::string_view token) noexcept;

}  // namespace shardquant
