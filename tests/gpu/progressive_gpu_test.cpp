// Progressive pairs on the GPU (the first stage fused into the second stage's loads, kernels/cuda
// stage1_loader) against the CPU reference, byte for byte and status for status: every supported
// (first, second) pair in F32/BF16/F16 on odd shapes, row ranges, the int4_fp8 preset as a pair,
// NaN weights, the F16 scale underflow of an fp8 first stage and a block-FP8 source. Mirrors
// tests/progressive_kernels_test.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tests/gpu/gpu_test_util.h"

using namespace shardquant;
using namespace shardquant::test;

namespace {

constexpr dtype k_dtypes[] = {dtype::f32, dtype::bf16, dtype::f16};

// Rank-2 shapes the second stage accepts: odd row counts, partial words, rows longer than the
// per-row kernels' register cache.
std::vector<std::vector<uint64_t>> shapes_for(scheme_id second) {
  const weight_format f = weight_scheme(second).first;
  if (f.family == scheme_family::int4_group || f.family == scheme_family::uint4_group) {
    const uint64_t g = f.group_size;
    return {{13, g}, {64, 3 * g}, {130, 384}, {9, 1024 + g}};
  }
  return {{7, 33}, {1, 8}, {5, 1000}, {3, 9001}, {64, 512}};
}

uint64_t numel(const std::vector<uint64_t>& shape) {
  return shape[0] * shape[1];
}

void compare(const weight_scheme& s, dtype d, const std::vector<uint64_t>& shape,
             const std::vector<uint8_t>& w, const std::vector<uint64_t>& cuts = {}) {
  const run_result cpu = run_scheme(impl::reference, s, d, shape, w.data());
  gpu_source src;
  src.type = d;
  src.host = w.data();
  check_same(cpu, gpu_run(s, src, shape, cuts));
}

std::string what(scheme_id a, scheme_id b, dtype d, const std::vector<uint64_t>& shape,
                 uint32_t seed) {
  return std::string(info(a).name) + " -> " + std::string(info(b).name) + " " +
         std::string(name(d)) + " [" + std::to_string(shape[0]) + "," + std::to_string(shape[1]) +
         "] seed " + std::to_string(seed);
}

}  // namespace

TEST_CASE("every progressive pair on the GPU matches the CPU reference byte for byte") {
  uint32_t seed = 31000;
  for (scheme_id a : k_first_stages)
    for (scheme_id b : k_second_stages)
      for (dtype d : k_dtypes)
        for (const auto& shape : shapes_for(b)) {
          ++seed;
          const std::string w = what(a, b, d, shape, seed);
          CAPTURE(w);
          compare(progressive_pair(a, b), d, shape, make_weights(d, numel(shape), seed));
        }
}

TEST_CASE("the int4_fp8 preset and its pair give the same bytes on the GPU") {
  const std::vector<uint64_t> shape{37, 203};
  for (dtype d : k_dtypes) {
    const std::vector<uint8_t> w = make_weights(d, numel(shape), 31999);
    gpu_source src;
    src.type = d;
    src.host = w.data();
    const run_result preset = gpu_run(scheme_id::int4_fp8, src, shape);
    const run_result as_pair =
        gpu_run(progressive_pair(scheme_id::fp8, scheme_id::int4_wo_per_channel), src, shape);
    REQUIRE(preset.status.ok());
    check_same(preset, as_pair);
  }
}

TEST_CASE("row ranges of a progressive pair on the GPU equal the whole tensor on the CPU") {
  uint32_t seed = 32000;
  for (scheme_id a : k_first_stages)
    for (scheme_id b : k_second_stages) {
      const weight_format f = weight_scheme(b).first;
      const bool grouped =
          f.family == scheme_family::int4_group || f.family == scheme_family::uint4_group;
      const std::vector<uint64_t> shape{75, grouped ? 2 * f.group_size : 72};
      const std::vector<uint64_t> cuts =
          grouped ? std::vector<uint64_t>{8, 16, 64} : std::vector<uint64_t>{1, 30, 31, 74};
      for (dtype d : k_dtypes) {
        ++seed;
        const std::string w = what(a, b, d, shape, seed) + " in ranges";
        CAPTURE(w);
        compare(progressive_pair(a, b), d, shape, make_weights(d, numel(shape), seed), cuts);
      }
    }
}

TEST_CASE("a NaN weight of a progressive pair is reported with the CPU's first bad index") {
  const std::vector<uint64_t> shape{24, 64};
  std::vector<float> w(24 * 64, 0.5f);
  w[13 * 64 + 7] = std::numeric_limits<float>::quiet_NaN();
  std::vector<uint8_t> bytes(w.size() * 4);
  std::memcpy(bytes.data(), w.data(), bytes.size());
  for (scheme_id a : k_first_stages) {
    const std::string first(info(a).name);
    CAPTURE(first);
    compare(progressive_pair(a, scheme_id::uint4_wo_32), dtype::f32, shape, bytes);
  }
}

TEST_CASE("an fp8 first stage whose F16 scale underflows is the CPU's error on the GPU") {
  // Every element the smallest F16 subnormal: the fp8 scale rounds to 0 in F16.
  const std::vector<uint64_t> shape{16, 64};
  std::vector<uint16_t> w(16 * 64, 0x0001);
  std::vector<uint8_t> bytes(w.size() * 2);
  std::memcpy(bytes.data(), w.data(), bytes.size());
  for (scheme_id a : {scheme_id::fp8, scheme_id::ptpc_fp8}) {
    const std::string first(info(a).name);
    CAPTURE(first);
    const run_result cpu = run_scheme(impl::reference, progressive_pair(a, scheme_id::int4_wo_32),
                                      dtype::f16, shape, bytes.data());
    CHECK(cpu.status.what == quant_status::code::scale_underflow);
    compare(progressive_pair(a, scheme_id::int4_wo_32), dtype::f16, shape, bytes);
  }
}

TEST_CASE("a progressive pair on a block-FP8 source equals CPU recovery then the CPU pair") {
  // Random e4m3 codes (no NaN) with F32 block scales of 128 x 128 (a partial last block row and
  // column), recovered in the kernel's loads, then the first stage, then the second.
  const uint64_t rows = 200, cols = 384;
  std::mt19937 rng(33000);
  std::vector<uint8_t> codes(rows * cols);
  for (auto& b : codes) {
    uint8_t x;
    do x = static_cast<uint8_t>(rng());
    while ((x & 0x7F) == 0x7F);
    b = x;
  }
  const uint64_t srows = (rows + 127) / 128, scols = (cols + 127) / 128;
  std::vector<float> scales(srows * scols);
  for (auto& s : scales) s = std::exp2(static_cast<float>(static_cast<int>(rng() % 12) - 10));
  fp8_block_source fb;
  fb.rows = rows;
  fb.cols = cols;
  fb.weight = codes.data();
  fb.scale = scales.data();
  fb.scale_rows = srows;
  fb.scale_cols = scols;
  std::vector<float> rec(rows * cols);
  REQUIRE(reference::recover_fp8_block(fb, rec.data()).ok());
  const std::vector<uint64_t> shape{rows, cols};
  for (scheme_id a : k_first_stages)
    for (scheme_id b :
         {scheme_id::int4_wo_128, scheme_id::uint4_wo_per_channel, scheme_id::ptpc_fp8}) {
      const std::string w = std::string(info(a).name) + " -> " + std::string(info(b).name);
      CAPTURE(w);
      const run_result cpu =
          run_scheme(impl::reference, progressive_pair(a, b), dtype::f32, shape, rec.data());
      gpu_source src;
      src.fp8_block = true;
      src.fp8 = fb;
      src.scale_bytes = scales.size() * 4;
      check_same(cpu, gpu_run(progressive_pair(a, b), src, shape));
      check_same(cpu, gpu_run(progressive_pair(a, b), src, shape, {64, 136}));
    }
}
