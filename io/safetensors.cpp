// safetensors header reader (every check of formats.md §2.3) and output layout (§2.4).
// Every length, offset and shape comes from an untrusted file: all arithmetic on them is
// overflow-checked, and every rejection names the file, the tensor and a byte offset.
#include "io/safetensors.h"

#include <fcntl.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <unordered_set>

#include <simdjson.h>

#include "io/error.h"
#include "io/file.h"
#include "io/json_text.h"

namespace shardquant {
namespace {

constexpr uint64_t no_offset = input_error::no_offset;

[[nodiscard]] bool mul_overflows(uint64_t a, uint64_t b, uint64_t& out) noexcept {
  return __builtin_mul_overflow(a, b, &out);
}

// a + b, saturated: error offsets built from hostile data_offsets must not wrap.
[[nodiscard]] uint64_t sat_add(uint64_t a, uint64_t b) noexcept {
  uint64_t r;
  return __builtin_add_overflow(a, b, &r) ? ~uint64_t{0} - 1 : r;
}

uint64_t read_le64(const std::byte* p) noexcept {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<uint64_t>(p[i]);
  return v;
}

std::string shape_text(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string printable(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

// A JSON value as text for a message, cut short: hostile values can be megabytes long.
std::string brief(simdjson::dom::element e) {
  std::string s = simdjson::to_string(e);
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

// The parse of one header: holds what the error messages need.
class header_parser {
 public:
  header_parser(std::string_view path, uint64_t file_size) : path_(path), file_size_(file_size) {}

  [[noreturn]] void fail(std::string_view tensor, uint64_t offset, const std::string& msg) const {
    throw input_error(std::string(path_), std::string(tensor), offset, msg);
  }

  safetensors_header parse(std::span<const std::byte> bytes);

 private:
  uint64_t read_uint(simdjson::dom::element e, std::string_view tensor, uint64_t at,
                     std::string_view what) const;
  void check_no_duplicates(simdjson::dom::element e, std::string_view tensor, uint64_t at) const;
  void parse_metadata(simdjson::dom::element e, uint64_t at, safetensors_header& h) const;
  tensor_entry parse_entry(std::string_view name, simdjson::dom::element e, uint64_t at) const;
  void check_tiling(const safetensors_header& h) const;

  std::string_view path_;
  uint64_t file_size_;
};

uint64_t header_parser::read_uint(simdjson::dom::element e, std::string_view tensor, uint64_t at,
                                  std::string_view what) const {
  using simdjson::dom::element_type;
  switch (e.type()) {
    case element_type::UINT64: {
      uint64_t v = 0;
      if (!e.get(v)) return v;
      break;
    }
    case element_type::INT64: {
      int64_t v = 0;
      if (e.get(v)) break;
      if (v < 0) fail(tensor, at, std::string(what) + " is negative (" + std::to_string(v) + ")");
      return static_cast<uint64_t>(v);
    }
    case element_type::DOUBLE:
      fail(tensor, at, std::string(what) + " is not an integer (" + brief(e) + ")");
    default:
      break;
  }
  fail(tensor, at, std::string(what) + " is not a number (" + brief(e) + ")");
}

void header_parser::check_no_duplicates(simdjson::dom::element e, std::string_view tensor,
                                        uint64_t at) const {
  simdjson::dom::object obj;
  simdjson::dom::array arr;
  if (!e.get(obj)) {
    std::unordered_set<std::string_view> seen;
    for (auto field : obj) {
      if (!seen.insert(field.key).second)
        fail(tensor, at, "duplicate key " + printable(field.key) + " inside the entry");
      check_no_duplicates(field.value, tensor, at);
    }
  } else if (!e.get(arr)) {
    for (auto v : arr) check_no_duplicates(v, tensor, at);
  }
}

void header_parser::parse_metadata(simdjson::dom::element e, uint64_t at,
                                   safetensors_header& h) const {
  simdjson::dom::object obj;
  if (e.get(obj)) fail("", at, "__metadata__ is not a JSON object");
  std::unordered_set<std::string_view> seen;
  for (auto field : obj) {
    if (!seen.insert(field.key).second)
      fail("", at, "duplicate key " + printable(field.key) + " in __metadata__");
    std::string_view value;
    if (field.value.get(value))
      fail("", at,
           "__metadata__ value of key " + printable(field.key) + " is not a string (" +
               brief(field.value) + ")");
    h.metadata.emplace_back(std::string(field.key), std::string(value));
  }
}

tensor_entry header_parser::parse_entry(std::string_view name, simdjson::dom::element e,
                                        uint64_t at) const {
  simdjson::dom::object obj;
  if (e.get(obj)) fail(name, at, "tensor entry is not a JSON object");
  check_no_duplicates(e, name, at);
  simdjson::dom::element dt, shape, offsets;
  if (obj["dtype"].get(dt)) fail(name, at, "tensor entry has no \"dtype\"");
  if (obj["shape"].get(shape)) fail(name, at, "tensor entry has no \"shape\"");
  if (obj["data_offsets"].get(offsets)) fail(name, at, "tensor entry has no \"data_offsets\"");

  tensor_entry t;
  t.name = std::string(name);
  std::string_view dts;
  if (dt.get(dts)) fail(name, at, "\"dtype\" is not a string");
  const auto parsed = parse_dtype(dts);
  if (!parsed) fail(name, at, "unknown dtype " + printable(dts));
  t.type = *parsed;

  simdjson::dom::array shape_arr;
  if (shape.get(shape_arr)) fail(name, at, "\"shape\" is not an array");
  for (auto d : shape_arr) t.shape.push_back(read_uint(d, name, at, "shape dimension"));

  simdjson::dom::array arr;
  if (offsets.get(arr)) fail(name, at, "\"data_offsets\" is not an array");
  if (arr.size() != 2)
    fail(name, at, "\"data_offsets\" has " + std::to_string(arr.size()) + " elements, expected 2");
  simdjson::dom::element b, e2;
  if (arr.at(0).get(b) || arr.at(1).get(e2)) fail(name, at, "\"data_offsets\" is unreadable");
  t.begin = read_uint(b, name, at, "data_offsets begin");
  t.end = read_uint(e2, name, at, "data_offsets end");
  return t;
}

void header_parser::check_tiling(const safetensors_header& h) const {
  const uint64_t data_size = file_size_ - h.data_start;
  // Size rules first (rule 6), then the tiling of the data section (rules 7-8).
  for (const auto& t : h.tensors) {
    const uint64_t at = sat_add(h.data_start, t.begin);
    if (t.begin > t.end)
      fail(t.name, at,
           "data_offsets begin " + std::to_string(t.begin) + " is greater than end " +
               std::to_string(t.end));
    uint64_t numel = 1;
    for (uint64_t d : t.shape)
      if (mul_overflows(numel, d, numel))
        fail(t.name, at, "element count of shape " + shape_text(t.shape) + " overflows 64 bits");
    uint64_t total_bits;
    if (mul_overflows(numel, bits(t.type), total_bits))
      fail(t.name, at,
           "size in bits of " + std::to_string(numel) + " " + std::string(name(t.type)) +
               " elements overflows 64 bits");
    if (total_bits % 8 != 0)
      fail(t.name, at,
           std::to_string(numel) + " elements of " + std::string(name(t.type)) + " are " +
               std::to_string(total_bits) + " bits, not a whole number of bytes");
    if (total_bits / 8 != t.end - t.begin)
      fail(t.name, at,
           "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "] span " +
               std::to_string(t.end - t.begin) + " bytes but dtype " + std::string(name(t.type)) +
               " with shape " + shape_text(t.shape) + " needs " + std::to_string(total_bits / 8) +
               " bytes");
  }
  std::vector<uint32_t> order(h.tensors.size());
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    const auto& x = h.tensors[a];
    const auto& y = h.tensors[b];
    return x.begin != y.begin ? x.begin < y.begin : x.end < y.end;
  });
  uint64_t expected = 0;
  const tensor_entry* prev = nullptr;
  for (uint32_t i : order) {
    const auto& t = h.tensors[i];
    const uint64_t at = sat_add(h.data_start, t.begin);
    if (t.begin < expected)
      fail(t.name, at,
           "data [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
               ") overlaps tensor '" + prev->name + "' which ends at data offset " +
               std::to_string(expected));
    if (t.begin > expected) {
      if (expected == 0)
        fail(t.name, at,
             "first tensor in data order begins at data offset " + std::to_string(t.begin) +
                 ", not 0 (hole at the start of the data section)");
      fail(t.name, at,
           "hole in the data section: data begins at data offset " + std::to_string(t.begin) +
               " but tensor '" + prev->name + "' ends at " + std::to_string(expected));
    }
    expected = t.end;
    prev = &t;
  }
  if (expected > data_size)
    fail(prev->name, file_size_,
         "data ends at data offset " + std::to_string(expected) +
             ", past the end of the file (data section is " + std::to_string(data_size) +
             " bytes, file size " + std::to_string(file_size_) + ")");
  if (expected < data_size) {
    const uint64_t extra = data_size - expected;
    fail("", h.data_start + expected,
         "trailing bytes after the last tensor's data: " + std::to_string(extra) +
             (extra == 1 ? " byte" : " bytes") + " from byte " +
             std::to_string(h.data_start + expected) + " to the end of the file (file size " +
             std::to_string(file_size_) + ")");
  }
}

safetensors_header header_parser::parse(std::span<const std::byte> bytes) {
  if (file_size_ < 8)
    fail("", 0,
         "file is " + std::to_string(file_size_) +
             " bytes, shorter than the 8-byte header length field");
  if (bytes.size() < 8) fail("", 0, "fewer than 8 bytes were provided for the header length");
  const uint64_t n = read_le64(bytes.data());
  if (n > max_header_len)
    fail("", 0,
         "header length " + std::to_string(n) + " exceeds the limit of " +
             std::to_string(max_header_len) + " bytes");
  if (8 + n > file_size_)
    fail("", 0,
         "header length " + std::to_string(n) + " runs past the end of the file (file size " +
             std::to_string(file_size_) + ")");
  if (bytes.size() < 8 + n)
    fail("", bytes.size(),
         "only " + std::to_string(bytes.size() - 8) + " of the " + std::to_string(n) +
             " header bytes were provided");
  safetensors_header h;
  h.path = std::string(path_);
  h.file_size = file_size_;
  h.header_len = n;
  h.data_start = 8 + n;

  const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8, n);
  if (n == 0) fail("", 8, "header is empty (length 0), expected a JSON object");
  // simdjson's vectorized check first; the scalar one only runs to locate the bad byte.
  if (!simdjson::validate_utf8(text.data(), text.size())) {
    const size_t bad = find_invalid_utf8(text);
    fail("", 8 + (bad == std::string_view::npos ? 0 : bad), "header is not valid UTF-8");
  }
  if (text[0] != '{') {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned char>(text[0]));
    fail("", 8, std::string("header does not start with '{' (first byte ") + hex + ")");
  }
  const json_object_scan scan = scan_json_object(text);
  const size_t json_len = scan.end;
  if (scan.closed) {
    for (size_t i = scan.end; i < text.size(); ++i)
      if (!is_json_whitespace(text[i]))
        fail("", 8 + i,
             "unexpected bytes after the header's JSON object (only whitespace may follow)");
  }

  if (!scan.closed) fail("", 8, "header is not valid JSON: the top-level object is never closed");
  simdjson::dom::parser parser;
  const simdjson::padded_string padded(text.substr(0, json_len));
  simdjson::dom::element root;
  if (const auto err = parser.parse(padded).get(root))
    fail("", 8, std::string("header is not valid JSON: ") + simdjson::error_message(err));
  simdjson::dom::object obj;
  if (root.get(obj)) fail("", 8, "header is not a JSON object");

  std::unordered_set<std::string_view> seen;
  size_t index = 0;
  for (auto field : obj) {
    // The scanner saw the same valid text, so its i-th key is simdjson's i-th key.
    const uint64_t at = index < scan.key_positions.size() ? 8 + scan.key_positions[index] : 8;
    ++index;
    if (!seen.insert(field.key).second) {
      if (field.key == "__metadata__") fail("", at, "duplicate key \"__metadata__\" in header");
      fail(field.key, at, "duplicate tensor name in header");
    }
    if (field.key == "__metadata__") {
      parse_metadata(field.value, at, h);
      continue;
    }
    if (field.key.empty()) fail("", at, "empty tensor name in header");
    h.tensors.push_back(parse_entry(field.key, field.value, at));
  }
  check_tiling(h);

  h.by_name.resize(h.tensors.size());
  std::iota(h.by_name.begin(), h.by_name.end(), 0u);
  std::sort(h.by_name.begin(), h.by_name.end(),
            [&](uint32_t a, uint32_t b) { return h.tensors[a].name < h.tensors[b].name; });
  return h;
}

}  // namespace

uint64_t tensor_entry::numel() const noexcept {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

const tensor_entry* safetensors_header::find(std::string_view name) const noexcept {
  if (by_name.size() == tensors.size()) {
    auto it = std::lower_bound(by_name.begin(), by_name.end(), name,
                               [&](uint32_t i, std::string_view n) { return tensors[i].name < n; });
    if (it != by_name.end() && tensors[*it].name == name) return &tensors[*it];
    return nullptr;
  }
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

safetensors_header parse_safetensors_header(std::string_view path, std::span<const std::byte> bytes,
                                            uint64_t file_size) {
  return header_parser(path, file_size).parse(bytes);
}

safetensors_header read_safetensors_header(const std::filesystem::path& file) {
  const std::string path = file.string();
  file_handle f = file_handle::open(file, O_RDONLY);
  const uint64_t size = f.size();
  std::vector<std::byte> buf(std::min<uint64_t>(size, 8));
  pread_all(f.get(), buf, 0, path);
  if (size >= 8) {
    const uint64_t n = read_le64(buf.data());
    // Only read a header the parser could accept; otherwise let it report the length error.
    if (n <= max_header_len && 8 + n <= size) {
      buf.resize(8 + n);
      pread_all(f.get(), std::span<std::byte>(buf).subspan(8), 8, path);
    }
  }
  return parse_safetensors_header(path, buf, size);
}

// ---- writer layout (§2.4) ----

uint64_t tensor_spec::byte_size() const {
  uint64_t numel = 1;
  for (uint64_t d : shape)
    if (mul_overflows(numel, d, numel))
      throw input_error("", name, no_offset,
                        "element count of shape " + shape_text(shape) + " overflows 64 bits");
  uint64_t total_bits;
  if (mul_overflows(numel, bits(type), total_bits))
    throw input_error("", name, no_offset, "tensor size in bits overflows 64 bits");
  if (total_bits % 8 != 0)
    throw input_error("", name, no_offset,
                      std::to_string(numel) + " elements of " +
                          std::string(shardquant::name(type)) + " are not a whole number of bytes");
  return total_bits / 8;
}

shard_layout shard_layout::make(std::string path, std::vector<tensor_spec> tensors) {
  std::sort(tensors.begin(), tensors.end(),
            [](const tensor_spec& a, const tensor_spec& b) { return a.name < b.name; });
  shard_layout l;
  std::string json = "{\"__metadata__\":{\"format\":\"pt\"}";
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    auto& t = tensors[i];
    if (t.name.empty()) throw input_error(path, "", no_offset, "cannot write an empty tensor name");
    if (t.name == "__metadata__")
      throw input_error(path, t.name, no_offset, "cannot write a tensor named __metadata__");
    if (i > 0 && tensors[i - 1].name == t.name)
      throw input_error(path, t.name, no_offset, "tensor name appears twice in one shard");
    if (find_invalid_utf8(t.name) != std::string_view::npos)
      throw input_error(path, t.name, no_offset, "tensor name is not valid UTF-8");
    uint64_t size;
    try {
      size = t.byte_size();
    } catch (const input_error& e) {
      throw input_error(path, t.name, no_offset, e.message());
    }
    tensor_entry e{t.name, t.type, t.shape, offset, 0};
    if (__builtin_add_overflow(offset, size, &e.end))
      throw input_error(path, t.name, no_offset, "shard data size overflows 64 bits");
    offset = e.end;
    json += ',';
    append_json_string(json, t.name);
    json += ":{\"dtype\":\"";
    json += name(t.type);
    json += "\",\"shape\":[";
    for (size_t k = 0; k < t.shape.size(); ++k) {
      if (k) json += ',';
      json += std::to_string(t.shape[k]);
    }
    json += "],\"data_offsets\":[" + std::to_string(e.begin) + "," + std::to_string(e.end) + "]}";
    l.entries_.push_back(std::move(e));
  }
  json += '}';
  const uint64_t unpadded = 8 + json.size();
  const uint64_t padded = (unpadded + 4095) / 4096 * 4096;
  const uint64_t n = padded - 8;
  if (n > max_header_len)
    throw input_error(path, "", no_offset,
                      "shard header would be " + std::to_string(n) + " bytes, over the limit of " +
                          std::to_string(max_header_len));
  l.header_.reserve(padded);
  for (int i = 0; i < 8; ++i) l.header_.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  l.header_ += json;
  l.header_.append(padded - unpadded, ' ');
  l.data_size_ = offset;
  return l;
}

const tensor_entry* shard_layout::find(std::string_view name) const noexcept {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const tensor_entry& e, std::string_view n) { return e.name < n; });
  return it != entries_.end() && it->name == name ? &*it : nullptr;
}

std::optional<uint64_t> shard_layout::file_offset(std::string_view name) const noexcept {
  const tensor_entry* e = find(name);
  if (!e) return std::nullopt;
  return data_start() + e->begin;
}

}  // namespace shardquant
