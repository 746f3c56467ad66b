// json_value: parse with simdjson on-demand (every value visited, so all of it is validated),
// pretty-print in the §6.1 style, convert to/from nlohmann.
#include "io/json_value.h"

#include <unordered_set>

#include <simdjson.h>

#include "io/error.h"
#include "io/json_text.h"

namespace shardquant {
namespace {

namespace od = simdjson::ondemand;

class tree_builder {
 public:
  tree_builder(std::string_view path, const char* base, uint64_t base_offset)
      : path_(path), base_(base), base_offset_(base_offset) {}

  [[noreturn]] void fail(uint64_t offset, const std::string& msg) const {
    throw input_error(std::string(path_), "", offset, msg);
  }
  void set_document(od::document* doc) noexcept { doc_ = doc; }
  // Where the iterator stopped, for errors met while stepping between values.
  const char* current_location() noexcept {
    const char* at = nullptr;
    if (doc_ && !doc_->current_location().get(at)) return at;
    return nullptr;
  }

  [[noreturn]] void fail_json(simdjson::error_code e, const char* where) const {
    fail(where ? base_offset_ + static_cast<uint64_t>(where - base_) : input_error::no_offset,
         std::string("invalid JSON: ") + simdjson::error_message(e));
  }

  void object(od::object obj, json_value& out) {
    out.type = json_value::kind::object;
    std::unordered_set<std::string> seen;
    for (auto field_result : obj) {
      od::field field;
      if (auto e = std::move(field_result).get(field)) fail_json(e, current_location());
      const char* key_pos = field.key().raw() - 1;  // the opening quote
      std::string_view key;
      if (auto e = field.unescaped_key().get(key)) fail_json(e, key_pos);
      std::string k(key);
      if (!seen.insert(k).second)
        fail(base_offset_ + static_cast<uint64_t>(key_pos - base_),
             "duplicate key " + quoted(k) + " in JSON object");
      json_value child;
      value(field.value(), child);
      out.members.emplace_back(std::move(k), std::move(child));
    }
  }

  void array(od::array arr, json_value& out) {
    out.type = json_value::kind::array;
    for (auto item : arr) {
      od::value v;
      if (auto e = item.get(v)) fail_json(e, current_location());
      json_value child;
      value(v, child);
      out.items.push_back(std::move(child));
    }
  }

  void value(od::value v, json_value& out) {
    const char* at = nullptr;
    std::string_view raw = v.raw_json_token();
    at = raw.data();
    od::json_type t;
    if (auto e = v.type().get(t)) fail_json(e, at);
    switch (t) {
      case od::json_type::object: {
        od::object o;
        if (auto e = v.get_object().get(o)) fail_json(e, at);
        object(o, out);
        break;
      }
      case od::json_type::array: {
        od::array a;
        if (auto e = v.get_array().get(a)) fail_json(e, at);
        array(a, out);
        break;
      }
      case od::json_type::string: {
        std::string_view s;
        if (auto e = v.get_string().get(s)) fail_json(e, at);
        out.type = json_value::kind::string;
        out.text = std::string(s);
        break;
      }
      case od::json_type::number: {
        while (!raw.empty() && is_json_whitespace(raw.back())) raw.remove_suffix(1);
        if (!is_json_number_token(raw))
          fail(base_offset_ + static_cast<uint64_t>(at - base_),
               "invalid JSON number " + std::string(raw));
        out.type = json_value::kind::number;
        out.text = std::string(raw);
        break;
      }
      case od::json_type::boolean: {
        bool b;
        if (auto e = v.get_bool().get(b)) fail_json(e, at);
        out.type = json_value::kind::boolean;
        out.boolean = b;
        break;
      }
      case od::json_type::null: {
        bool is_null = false;
        if (auto e = v.is_null().get(is_null)) fail_json(e, at);
        if (!is_null) fail_json(simdjson::N_ATOM_ERROR, at);
        out.type = json_value::kind::null;
        break;
      }
    }
  }

  static std::string quoted(std::string_view s) {
    std::string out;
    append_json_string(out, s);
    return out;
  }

 private:
  std::string_view path_;
  const char* base_;
  uint64_t base_offset_;
  od::document* doc_ = nullptr;
};

void indent(std::string& out, int depth) {
  out.append(static_cast<size_t>(depth) * 4, ' ');
}

}  // namespace

const json_value* json_value::find(std::string_view key) const noexcept {
  if (type != kind::object) return nullptr;
  for (const auto& [k, v] : members)
    if (k == key) return &v;
  return nullptr;
}

json_value* json_value::find(std::string_view key) noexcept {
  return const_cast<json_value*>(static_cast<const json_value*>(this)->find(key));
}

json_value parse_json_object_text(std::string_view text, std::string_view path) {
  auto fail = [&](uint64_t off, const std::string& msg) {
    throw input_error(std::string(path), "", off, msg);
  };
  if (const size_t bad = find_invalid_utf8(text); bad != std::string_view::npos)
    fail(bad, "not valid UTF-8");
  size_t start = 0;
  while (start < text.size() && is_json_whitespace(text[start])) ++start;
  if (start == text.size()) fail(start, "empty JSON document, expected an object");
  if (text[start] != '{') fail(start, "the JSON document is not an object");
  const json_object_scan scan = scan_json_object(text.substr(start));
  if (scan.max_depth > max_json_depth)
    fail(start + scan.deepest_at, "JSON nested " + std::to_string(scan.max_depth) +
                                      " levels deep; more than " + std::to_string(max_json_depth) +
                                      " are refused");
  if (!scan.closed) fail(start, "invalid JSON: the top-level object is not terminated");
  for (size_t i = start + scan.end; i < text.size(); ++i)
    if (!is_json_whitespace(text[i])) fail(i, "unexpected bytes after the top-level JSON object");

  const simdjson::padded_string padded(text.substr(start, scan.end));
  od::parser parser;
  od::document doc;
  tree_builder b(path, padded.data(), start);
  if (auto e = parser.iterate(padded).get(doc)) b.fail_json(e, padded.data());
  b.set_document(&doc);
  od::object obj;
  if (auto e = doc.get_object().get(obj)) b.fail_json(e, padded.data());
  json_value root;
  b.object(obj, root);
  return root;
}

void write_json_pretty(std::string& out, const json_value& v, int depth) {
  switch (v.type) {
    case json_value::kind::null:
      out += "null";
      break;
    case json_value::kind::boolean:
      out += v.boolean ? "true" : "false";
      break;
    case json_value::kind::number:
      out += v.text;
      break;
    case json_value::kind::string:
      append_json_string(out, v.text);
      break;
    case json_value::kind::array:
      if (v.items.empty()) {
        out += "[]";
        break;
      }
      out += "[\n";
      for (size_t i = 0; i < v.items.size(); ++i) {
        if (i) out += ",\n";
        indent(out, depth + 1);
        write_json_pretty(out, v.items[i], depth + 1);
      }
      out += '\n';
      indent(out, depth);
      out += ']';
      break;
    case json_value::kind::object:
      if (v.members.empty()) {
        out += "{}";
        break;
      }
      out += "{\n";
      for (size_t i = 0; i < v.members.size(); ++i) {
        if (i) out += ",\n";
        indent(out, depth + 1);
        append_json_string(out, v.members[i].first);
        out += ": ";
        write_json_pretty(out, v.members[i].second, depth + 1);
      }
      out += '\n';
      indent(out, depth);
      out += '}';
      break;
  }
}

nlohmann::ordered_json to_nlohmann(const json_value& v) {
  switch (v.type) {
    case json_value::kind::null:
      return nullptr;
    case json_value::kind::boolean:
      return v.boolean;
    case json_value::kind::number:
      // A token nlohmann cannot hold (e.g. 1e400) becomes null rather than aborting the caller.
      {
        auto n = nlohmann::ordered_json::parse(v.text, nullptr, false);
        return n.is_discarded() ? nlohmann::ordered_json() : n;
      }
    case json_value::kind::string:
      return v.text;
    case json_value::kind::array: {
      auto a = nlohmann::ordered_json::array();
      for (const auto& i : v.items) a.push_back(to_nlohmann(i));
      return a;
    }
    case json_value::kind::object: {
      auto o = nlohmann::ordered_json::object();
      for (const auto& [k, m] : v.members) o[k] = to_nlohmann(m);
      return o;
    }
  }
  return nullptr;
}

json_value from_nlohmann(const nlohmann::ordered_json& j) {
  json_value v;
  switch (j.type()) {
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded:
    case nlohmann::json::value_t::binary:
      break;
    case nlohmann::json::value_t::boolean:
      v.type = json_value::kind::boolean;
      v.boolean = j.get<bool>();
      break;
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
    case nlohmann::json::value_t::number_float:
      v.type = json_value::kind::number;
      v.text = j.dump();
      break;
    case nlohmann::json::value_t::string:
      v.type = json_value::kind::string;
      v.text = j.get<std::string>();
      break;
    case nlohmann::json::value_t::array:
      v.type = json_value::kind::array;
      for (const auto& i : j) v.items.push_back(from_nlohmann(i));
      break;
    case nlohmann::json::value_t::object:
      v.type = json_value::kind::object;
      for (const auto& [k, m] : j.items()) v.members.emplace_back(k, from_nlohmann(m));
      break;
  }
  return v;
}

}  // namespace shardquant
