// Helpers shared by the checkpoint suites: a self-removing temporary directory and writers for
// tiny checkpoint files (shards through the real shard_writer, text files as given).
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "io/safetensors.h"
#include "io/shard_writer.h"

namespace sq_test {

namespace fs = std::filesystem;

struct temp_dir {
  fs::path path;
  explicit temp_dir(const char* tag = "ckpt") {
    std::string tmpl =
        (fs::temp_directory_path() / (std::string("sq-io-") + tag + "-XXXXXX")).string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

inline void write_text(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out << text;
}

inline std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Every regular file under `dir` (relative path -> bytes), the resume journal excluded: what two
// runs that must agree byte for byte are compared by.
inline std::map<std::string, std::string> tree(const fs::path& dir) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename() != ".shardquant-journal")
      m[fs::relative(e.path(), dir).string()] = read_text(e.path());
  return m;
}

// A shard holding U8 tensors of 4 bytes each, filled with the first letter of the name.
inline void write_shard(const fs::path& p, const std::vector<std::string>& names) {
  fs::create_directories(p.parent_path());
  std::vector<shardquant::tensor_spec> specs;
  for (const auto& n : names) specs.push_back({n, shardquant::dtype::u8, {4}});
  shardquant::shard_writer w(shardquant::shard_layout::make(p.string(), specs), p);
  for (const auto& n : names) {
    const std::string d(4, n[0]);
    w.write_tensor(n, std::as_bytes(std::span<const char>(d.data(), d.size())));
  }
  w.commit();
}

}  // namespace sq_test
