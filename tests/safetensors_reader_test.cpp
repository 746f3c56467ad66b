// The safetensors header reader (formats.md §2.3): every file of the malformed corpus
// (tests/data/malformed, written by generate.py) is rejected with its own message, tensor and
// byte offset; valid edge cases (empty tensors anywhere in the chain, scalars, padding,
// metadata, no tensors) are accepted and read back exactly.
#include "io/safetensors.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "io/error.h"

using namespace shardquant;
namespace fs = std::filesystem;

namespace {

struct corpus_row {
  std::string file;
  std::string offset;  // "-" = none
  std::string tensor;  // "-" = none
  std::string message;
};

std::vector<corpus_row> load_manifest(const fs::path& dir) {
  std::ifstream in(dir / "manifest.tsv");
  std::vector<corpus_row> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    corpus_row r;
    std::getline(ls, r.file, '\t');
    std::getline(ls, r.offset, '\t');
    std::getline(ls, r.tensor, '\t');
    std::getline(ls, r.message);
    rows.push_back(r);
  }
  return rows;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::span<const std::byte> bytes_of(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

// A safetensors file image from a header string and data bytes.
std::string image(const std::string& header, const std::string& data, size_t pad = 0) {
  std::string out(8, '\0');
  const uint64_t n = header.size() + pad;
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + header + std::string(pad, ' ') + data;
}

safetensors_header parse_image(const std::string& img) {
  return parse_safetensors_header("mem.safetensors", bytes_of(img), img.size());
}

std::string error_of(const std::string& img) {
  try {
    (void)parse_image(img);
  } catch (const input_error& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST_CASE("every malformed corpus file is rejected with its own message and tensor and offset") {
  const fs::path dir = fs::path(SQ_TEST_DATA_DIR) / "malformed";
  const auto rows = load_manifest(dir);
  REQUIRE(rows.size() >= 25);
  std::set<std::string> messages;
  for (const auto& r : rows) {
    const fs::path file = dir / r.file;
    CAPTURE(r.file);
    REQUIRE(fs::exists(file));
    bool thrown = false;
    try {
      (void)read_safetensors_header(file);
    } catch (const input_error& e) {
      thrown = true;
      const std::string what = e.what();
      CAPTURE(what);
      CHECK(e.file() == file.string());
      CHECK(e.message().find(r.message) != std::string::npos);
      CHECK(std::string(e.what()).find(file.string()) == 0);
      if (r.offset == "-") {
        CHECK(e.offset() == input_error::no_offset);
      } else {
        CHECK(e.offset() == std::stoull(r.offset));
      }
      CHECK(e.tensor() == (r.tensor == "-" ? std::string{} : r.tensor));
      messages.insert(e.message());
      // The in-memory entry point used by the fuzzer reports exactly the same error.
      const std::string img = slurp(file);
      try {
        (void)parse_safetensors_header(file.string(), bytes_of(img), img.size());
        FAIL("parse_safetensors_header accepted what read_safetensors_header rejected");
      } catch (const input_error& e2) {
        CHECK(std::string(e2.what()) == std::string(e.what()));
      }
    }
    CHECK(thrown);
  }
  // Distinct files, distinct diagnoses (a few rules share a message on purpose: each row's own
  // substring above is what pins them down).
  CHECK(messages.size() >= 40);
}

TEST_CASE("a header whose length field exceeds the 8+N bytes handed over is refused") {
  std::string img = image("{}", "");
  // Claim the full file but pass only the length field.
  CHECK_THROWS_WITH_AS((void)parse_safetensors_header("x", bytes_of(img).first(8), img.size()),
                       doctest::Contains("only 0 of the 2 header bytes were provided"),
                       input_error);
}

TEST_CASE("empty tensors may sit anywhere in the chain including before the first byte") {
  const std::string h = R"({"e0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                        R"("a":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]},)"
                        R"("e1":{"dtype":"I64","shape":[4,0],"data_offsets":[3,3]},)"
                        R"("b":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[3,4]},)"
                        R"("e2":{"dtype":"U8","shape":[0,7],"data_offsets":[4,4]}})";
  const auto hdr = parse_image(image(h, "abcd"));
  REQUIRE(hdr.tensors.size() == 5);
  CHECK(hdr.tensors[0].name == "e0");  // header order kept
  CHECK(hdr.tensors[1].numel() == 6);
  CHECK(hdr.tensors[1].byte_size() == 3);
  CHECK(hdr.tensors[2].numel() == 0);
  REQUIRE(hdr.find("b") != nullptr);
  CHECK(hdr.find("b")->type == dtype::f8_e4m3);
  CHECK(hdr.find("b")->begin == 3);
  CHECK(hdr.find("zz") == nullptr);
  CHECK(hdr.find("") == nullptr);
  CHECK(hdr.data_start == 8 + h.size());
  CHECK(hdr.file_size == 8 + h.size() + 4);
}

TEST_CASE("an empty tensor past the end of the data is a hole and not a free pass") {
  const std::string h = R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                        R"("e":{"dtype":"U8","shape":[0],"data_offsets":[6,6]}})";
  CHECK(error_of(image(h, "abcd")).find("hole in the data section") != std::string::npos);
}

TEST_CASE("scalars and padding and whitespace inside the JSON and metadata are read exactly") {
  const std::string h =
      "{ \"__metadata__\" : {\"format\":\"pt\", \"k\\u00e9\":\"v\\n\"} ,\n"
      "\t\"s\":{\"data_offsets\":[0,2],\"extra\":{\"ignored\":[1,2]},\"shape\":[],\"dtype\":"
      "\"BF16\"}}";
  const auto hdr = parse_image(image(h, "xy", 100));
  REQUIRE(hdr.tensors.size() == 1);
  CHECK(hdr.tensors[0].shape.empty());
  CHECK(hdr.tensors[0].numel() == 1);
  CHECK(hdr.header_len == h.size() + 100);
  REQUIRE(hdr.metadata.size() == 2);
  CHECK(hdr.metadata[0] == std::pair<std::string, std::string>{"format", "pt"});
  CHECK(hdr.metadata[1] == std::pair<std::string, std::string>{"k\xc3\xa9", "v\n"});
}

TEST_CASE("a header with no tensors needs a file of exactly 8 + N bytes") {
  CHECK(parse_image(image("{}", "", 6)).tensors.empty());
  CHECK(error_of(image("{}", "z")).find("trailing bytes after the last tensor's data: 1 byte") !=
        std::string::npos);
}

TEST_CASE("tensor names are compared as unescaped strings for duplicates") {
  const std::string e = R"({"dtype":"U8","shape":[0],"data_offsets":[0,0]})";
  const std::string h = "{\"a\":" + e + ",\"\\u0061\":" + e + "}";
  const std::string err = error_of(image(h, ""));
  CHECK(err.find("duplicate tensor name") != std::string::npos);
  CHECK(err.find("at byte " + std::to_string(8 + h.find("\"\\u0061\""))) != std::string::npos);
}

TEST_CASE("the largest representable sizes are checked without wrapping") {
  // numel * bits fits, but 8 * bytes would not fit in 64 bits: the reader compares bytes.
  const std::string h =
      R"({"a":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,18446744073709551615]}})";
  const std::string err = error_of(image(h, ""));
  CHECK(err.find("size in bits") != std::string::npos);
  // Offsets near 2^64 do not wrap the error offset either.
  const std::string h2 =
      R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551614,18446744073709551615]}})";
  const std::string err2 = error_of(image(h2, ""));
  CHECK(err2.find("begins at data offset 18446744073709551614, not 0") != std::string::npos);
}

TEST_CASE("every dtype string of the table is accepted with its element size") {
  for (int d = 0; d <= static_cast<int>(dtype::f6_e3m2); ++d) {
    const auto t = static_cast<dtype>(d);
    const uint64_t numel = 8;  // a whole number of bytes for 4- and 6-bit types
    const uint64_t size = numel * bits(t) / 8;
    const std::string h = "{\"t\":{\"dtype\":\"" + std::string(name(t)) +
                          "\",\"shape\":[2,4],\"data_offsets\":[0," + std::to_string(size) + "]}}";
    CAPTURE(name(t));
    const auto hdr = parse_image(image(h, std::string(size, '\0')));
    CHECK(hdr.tensors.at(0).type == t);
  }
}
