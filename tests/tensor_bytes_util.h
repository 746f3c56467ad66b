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
#include "kernels/quantize.h"

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

// The output tensors of `weight` in `out_file` equal quantize() of the whole source tensor `src`
// (its dtype and shape): a run's bytes against the kernels' whole-tensor quantization.
inline void check_whole_tensor_outputs(const std::filesystem::path& out_file,
                                       const std::string& weight,
                                       const shardquant::weight_scheme& s, shardquant::dtype type,
                                       const std::vector<uint64_t>& shape,
                                       const std::vector<std::byte>& src) {
  const auto outs = shardquant::output_tensors(s, shape);
  std::vector<std::vector<std::byte>> expect;
  for (const auto& t : outs) expect.emplace_back(t.byte_size(), std::byte{0xEE});
  shardquant::source_view v;
  v.type = type;
  v.shape = shape;
  v.data = src.data();
  shardquant::quant_outputs qo;
  qo.weight = expect[0].data();
  if (outs.size() > 1) qo.scale = expect[1].data();
  if (outs.size() > 2) qo.extra = expect[2].data();
  REQUIRE(shardquant::quantize(s, v, qo).ok());
  for (size_t i = 0; i < outs.size(); ++i) {
    INFO("tensor " << weight << outs[i].suffix);
    CHECK(tensor_bytes(out_file, weight + outs[i].suffix) == expect[i]);
  }
}
