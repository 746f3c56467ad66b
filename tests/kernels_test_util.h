// Helpers shared by the kernels_*_test.cpp suites: run a scheme through the reference or the fast
// quantizer into freshly poisoned (0xCD) output buffers, and small bf16/hex builders.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "kernels/numeric.h"
#include "kernels/quantize.h"
#include "kernels/schemes.h"

namespace shardquant::test {

enum class impl { reference, fast };
inline const char* impl_name(impl i) {
  return i == impl::reference ? "reference" : "fast";
}

inline constexpr uint8_t k_poison = 0xCD;

struct run_result {
  quant_status status;
  std::vector<std::vector<uint8_t>> tensors;  // bytes of each output tensor, output_tensors() order
};

inline amax_result run_amax(impl i, const source_view& v) {
  return i == impl::reference ? reference::amax(v) : amax(v);
}

// Quantizes the whole tensor (or rows [r0, r1) into the right places of whole-tensor buffers, with
// the per-tensor amax passed explicitly for partial ranges).
inline run_result run_scheme(impl i, const weight_scheme& s, dtype d,
                             const std::vector<uint64_t>& shape, const void* data,
                             std::optional<float> tensor_amax = std::nullopt) {
  run_result r;
  for (const output_tensor& t : output_tensors(s, shape, d))
    r.tensors.emplace_back(t.byte_size(), k_poison);
  source_view v{d, shape, data};
  quant_outputs o;
  o.weight = r.tensors[0].data();
  o.scale = r.tensors.size() > 1 ? r.tensors[1].data() : nullptr;
  o.extra = r.tensors.size() > 2 ? r.tensors[2].data() : nullptr;
  o.extra2 = r.tensors.size() > 3 ? r.tensors[3].data() : nullptr;
  r.status = i == impl::reference ? reference::quantize(s, v, o, tensor_amax)
                                  : quantize(s, v, o, tensor_amax);
  return r;
}

// The whole tensor processed as consecutive row ranges split at `cuts` (row indices), each
// writing into its place in whole-tensor buffers (per range_layout), amax combined first.
inline run_result run_ranges(impl i, const weight_scheme& s, dtype d,
                             const std::vector<uint64_t>& shape, const void* data,
                             const std::vector<uint64_t>& cuts) {
  run_result r;
  for (const output_tensor& t : output_tensors(s, shape, d))
    r.tensors.emplace_back(t.byte_size(), k_poison);
  uint64_t inner = 1;
  for (size_t k = 1; k < shape.size(); ++k) inner *= shape[k];
  const uint64_t esize = bits(d) / 8;
  std::vector<uint64_t> bounds{0};
  for (uint64_t c : cuts) bounds.push_back(c);
  bounds.push_back(shape[0]);
  std::optional<float> a;
  if (needs_tensor_amax(s)) {
    amax_result total;
    for (size_t k = 0; k + 1 < bounds.size(); ++k) {
      source_view v{d, shape, static_cast<const char*>(data) + bounds[k] * inner * esize, bounds[k],
                    bounds[k + 1]};
      total = combine(total, run_amax(i, v));
    }
    a = total.amax;
  }
  for (size_t k = 0; k + 1 < bounds.size(); ++k) {
    source_view v{d, shape, static_cast<const char*>(data) + bounds[k] * inner * esize, bounds[k],
                  bounds[k + 1]};
    const std::vector<output_piece> p =
        range_layout(s, shape, bounds[k], bounds[k + 1], nullptr, d);
    quant_outputs o;
    o.weight = r.tensors[0].data() + p[0].offset;
    o.weight_ld = p[0].count > 1 ? p[0].stride / 4 : 0;
    o.scale = r.tensors.size() > 1 ? r.tensors[1].data() + p[1].offset : nullptr;
    o.extra = r.tensors.size() > 2 ? r.tensors[2].data() + p[2].offset : nullptr;
    o.extra2 = r.tensors.size() > 3 ? r.tensors[3].data() + p[3].offset : nullptr;
    r.status = i == impl::reference ? reference::quantize(s, v, o, a) : quantize(s, v, o, a);
    if (!r.status.ok()) return r;
  }
  return r;
}

inline std::vector<uint8_t> le_words(const std::vector<uint32_t>& w) {
  std::vector<uint8_t> b(w.size() * 4);
  std::memcpy(b.data(), w.data(), b.size());
  return b;
}

inline std::vector<uint8_t> le_f32(const std::vector<uint32_t>& bits) {
  return le_words(bits);
}

inline std::string hex(const std::vector<uint8_t>& b) {
  std::string s;
  char buf[4];
  for (uint8_t x : b) {
    std::snprintf(buf, sizeof buf, "%02X ", x);
    s += buf;
  }
  return s;
}

inline uint16_t bf(float x) {
  return to_bf16_rne(x);
}

// The built-in schemes whose weight format is a supported first / second progressive stage, and
// the pair of two of them (the CPU and GPU progressive suites iterate over these).
inline constexpr scheme_id k_first_stages[] = {scheme_id::fp8, scheme_id::ptpc_fp8,
                                               scheme_id::int8};
inline constexpr scheme_id k_second_stages[] = {
    scheme_id::ptpc_fp8,    scheme_id::int4_wo_32,          scheme_id::int4_wo_64,
    scheme_id::int4_wo_128, scheme_id::int4_wo_per_channel, scheme_id::uint4_wo_32,
    scheme_id::uint4_wo_64, scheme_id::uint4_wo_128,        scheme_id::uint4_wo_per_channel};
inline weight_scheme progressive_pair(scheme_id a, scheme_id b) {
  return weight_scheme(weight_scheme(a).first, weight_scheme(b).first);
}

}  // namespace shardquant::test
