// Test helper: the data bytes of one tensor of a safetensors file, located through the validated
// header reader. Shared by the pipeline suites that compare output tensors with the kernels.
#pragma once

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "io/safetensors.h"

inline std::vector<std::byte> tensor_bytes(const std::filesystem::path& file,
                                           const std::string& name) {
  const shardquant::safetensors_header h = shardquant::read_safetensors_header(file);
  const shardquant::tensor_entry* e = h.find(name);
  REQUIRE(e != nullptr);
  std::vector<std::byte> v(e->byte_size());
  std::ifstream f(file, std::ios::binary);
  f.seekg(static_cast<std::streamoff>(h.data_start + e->begin));
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size()));
  REQUIRE(f.good());
  return v;
}
