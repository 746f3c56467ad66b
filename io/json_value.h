// A small ordered JSON tree for the checkpoint's JSON files (config.json, the index): keys keep
// source order, numbers keep the exact token text they were written with (1e-05 stays 1e-05,
// 500000.0 stays 500000.0; nlohmann would re-format them), duplicate keys are an error.
// Parsed with simdjson; written in the §6.1 style. No file I/O here.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace shardquant {

struct json_member;

struct json_value {
  enum class kind { null, boolean, number, string, array, object };

  kind type = kind::null;
  bool boolean = false;
  std::string text;               // number: the token as written; string: the unescaped value
  std::vector<json_value> items;  // array
  // Object members in source order. (A std::pair<std::string, json_value> member would need
  // json_value complete here, which libc++/clang refuse; json_member is defined below.)
  std::vector<json_member> members;

  [[nodiscard]] bool is_object() const noexcept { return type == kind::object; }
  [[nodiscard]] bool is_string() const noexcept { return type == kind::string; }
  // The member named `key` of an object; nullptr when absent or not an object.
  [[nodiscard]] const json_value* find(std::string_view key) const noexcept;
  [[nodiscard]] json_value* find(std::string_view key) noexcept;
};

struct json_member {
  std::string first;  // the key, unescaped
  json_value second;
  json_member(std::string key, json_value value)
      : first(std::move(key)), second(std::move(value)) {}
};

// Parses a document whose root must be an object. Throws input_error naming `path` and the byte
// offset for invalid JSON, invalid UTF-8, trailing bytes and duplicate keys at any depth.
[[nodiscard]] json_value parse_json_object_text(std::string_view text, std::string_view path);

// Writes `v` with 4-space indentation, "key": value, items separated by ",\n", empty {} / [],
// raw UTF-8, numbers as their stored tokens (formats.md §6.1 step 4). No trailing newline.
void write_json_pretty(std::string& out, const json_value& v, int depth = 0);

// Conversions to and from nlohmann (numbers go through their text in both directions).
[[nodiscard]] nlohmann::ordered_json to_nlohmann(const json_value& v);
[[nodiscard]] json_value from_nlohmann(const nlohmann::ordered_json& j);

}  // namespace shardquant
