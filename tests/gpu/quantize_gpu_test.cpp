// Every scheme on the GPU against the CPU reference (kernels/quantize.h), byte for byte and status
// for status: seeded random weights mixing the hard cases (ties, zeros, -0, subnormals,
// outliers) in F32/BF16/F16, odd shapes, partial MX blocks, rank-3 tensors, rows longer than the
// register cache, row ranges, NaN/Inf, and the F16 scale underflow / overflow errors.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "tests/gpu/gpu_test_util.h"

using namespace shardquant;
using namespace shardquant::test;

namespace {

constexpr dtype k_dtypes[] = {dtype::f32, dtype::bf16, dtype::f16};

// Shapes that satisfy the scheme's prerequisites: odd, partial, rank-3 where allowed, and one
// with rows longer than 8192 elements (the per-row kernels' register cache).
std::vector<std::vector<uint64_t>> shapes_for(scheme_id s) {
  const scheme_info& si = info(s);
  switch (si.family) {
    case scheme_family::int4_group:
    case scheme_family::uint4_group: {
      const uint64_t g = si.group_size;
      return {{13, g}, {64, 3 * g}, {72, 2 * g}, {130, 384}, {9, 1024 + g}};
    }
    case scheme_family::mx:
      if (si.element == mx_element::fp4_e2m1)
        return {{5, 50}, {3, 2}, {4, 64}, {2, 3, 96}, {7, 330}, {33, 1024}};
      return {{8, 36}, {4, 64}, {2, 3, 64}, {3, 352}, {17, 1024}};
    case scheme_family::fp8_tensor:
    case scheme_family::fp8_row:
      return {{7, 33}, {1, 8}, {2, 3, 40}, {5, 1000}, {3, 9001}, {64, 512}};
    default:  // int8, int4/uint4 per-channel, int4_fp8 (rank 2)
      return {{7, 33}, {1, 8}, {5, 1000}, {3, 9001}, {64, 512}, {2, 17000}};
  }
}

uint64_t numel(const std::vector<uint64_t>& shape) {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

void compare(scheme_id s, dtype d, const std::vector<uint64_t>& shape,
             const std::vector<uint8_t>& w, const std::vector<uint64_t>& cuts = {}) {
  const run_result cpu = run_scheme(impl::reference, s, d, shape, w.data());
  gpu_source src;
  src.type = d;
  src.host = w.data();
  const run_result g = gpu_run(s, src, shape, cuts);
  check_same(cpu, g);
}

std::string describe(scheme_id s, dtype d, const std::vector<uint64_t>& shape, uint32_t seed) {
  std::string r = std::string(info(s).name) + " " + std::string(name(d)) + " [";
  for (size_t i = 0; i < shape.size(); ++i) r.append(i ? "," : "").append(std::to_string(shape[i]));
  return r.append("] seed ").append(std::to_string(seed));
}

}  // namespace

TEST_CASE("every scheme on the GPU matches the CPU reference byte for byte on random weights") {
  uint32_t seed = 1000;
  for (const scheme_info& si : all_schemes()) {
    if (!backend_supports(backend_cuda, weight_scheme(si.id))) continue;  // CPU fallback schemes
    for (dtype d : k_dtypes) {
      for (const auto& shape : shapes_for(si.id)) {
        ++seed;
        const std::string what = describe(si.id, d, shape, seed);
        CAPTURE(what);
        compare(si.id, d, shape, make_weights(d, numel(shape), seed));
      }
    }
  }
}

TEST_CASE("row ranges on the GPU write the same bytes as the whole tensor on the CPU") {
  uint32_t seed = 5000;
  for (const scheme_info& si : all_schemes()) {
    if (!backend_supports(backend_cuda, weight_scheme(si.id))) continue;  // CPU fallback schemes
    const bool grouped =
        si.family == scheme_family::int4_group || si.family == scheme_family::uint4_group;
    const uint64_t in = grouped ? 2 * si.group_size : (si.family == scheme_family::mx ? 96 : 72);
    const std::vector<uint64_t> shape{75, in};
    // Per-group int4/uint4 split at multiples of 8 rows; the others anywhere.
    const std::vector<uint64_t> cuts =
        grouped ? std::vector<uint64_t>{8, 16, 64} : std::vector<uint64_t>{1, 30, 31, 74};
    for (dtype d : k_dtypes) {
      ++seed;
      const std::string what = describe(si.id, d, shape, seed) + " in ranges";
      CAPTURE(what);
      compare(si.id, d, shape, make_weights(d, numel(shape), seed), cuts);
    }
  }
}

TEST_CASE("a NaN or an Inf weight is reported with the CPU's first bad index") {
  uint32_t seed = 7000;
  for (const scheme_info& si : all_schemes()) {
    if (!backend_supports(backend_cuda, weight_scheme(si.id))) continue;  // CPU fallback schemes
    for (dtype d : k_dtypes) {
      const std::vector<uint64_t> shape{16, 256};
      ++seed;
      std::vector<uint8_t> w = make_weights(d, numel(shape), seed);
      // Two bad elements: the later one a NaN, the earlier one an Inf (index must be the first).
      const uint64_t bad[2] = {seed % 4096, (seed * 7) % 1000};
      for (int k = 0; k < 2; ++k) {
        const float x = k == 0 ? std::nanf("") : -INFINITY;
        const uint64_t i = bad[k];
        if (d == dtype::f32)
          std::memcpy(&w[i * 4], &x, 4);
        else {
          const uint16_t h = d == dtype::bf16 ? to_bf16_rne(x) : to_f16_rne(x);
          std::memcpy(&w[i * 2], &h, 2);
        }
      }
      const std::string what = describe(si.id, d, shape, seed) + " with NaN/Inf";
      CAPTURE(what);
      const run_result cpu = run_scheme(impl::reference, si.id, d, shape, w.data());
      REQUIRE(cpu.status.what == quant_status::code::non_finite_input);
      gpu_source src;
      src.type = d;
      src.host = w.data();
      check_same(cpu, gpu_run(si.id, src, shape));
      if (si.family != scheme_family::int4_group && si.family != scheme_family::uint4_group)
        check_same(cpu, gpu_run(si.id, src, shape, {5, 9}));
    }
  }
}

TEST_CASE("F16 scale underflow and uint4 range overflow are the CPU's errors") {
  // Tiny F16 weights: round_f16(amax / 448) == 0 for fp8, int4_fp8 and ptpc_fp8.
  const std::vector<uint64_t> shape{8, 64};
  std::vector<uint8_t> w(numel(shape) * 2);
  for (uint64_t i = 0; i < numel(shape); ++i) {
    const uint16_t h = to_f16_rne(i % 3 == 0 ? std::ldexp(1.0f, -24) : 0.0f);  // 2^-24, f16 min
    std::memcpy(&w[i * 2], &h, 2);
  }
  for (scheme_id s : {scheme_id::fp8, scheme_id::ptpc_fp8, scheme_id::int4_fp8}) {
    const std::string what(info(s).name);
    CAPTURE(what);
    const run_result cpu = run_scheme(impl::reference, s, dtype::f16, shape, w.data());
    REQUIRE(cpu.status.what == quant_status::code::scale_underflow);
    gpu_source src;
    src.type = dtype::f16;
    src.host = w.data();
    check_same(cpu, gpu_run(s, src, shape));
  }
  // F16 uint4 ranges wider than 65504: the range d overflows to Inf.
  std::vector<uint8_t> big(numel(shape) * 2);
  for (uint64_t i = 0; i < numel(shape); ++i) {
    const float x = (i / 64) % 2 == 1 ? ((i % 2) ? 60000.0f : -60000.0f) : 1.0f;
    const uint16_t h = to_f16_rne(x);
    std::memcpy(&big[i * 2], &h, 2);
  }
  for (scheme_id s : {scheme_id::uint4_wo_32, scheme_id::uint4_wo_per_channel}) {
    const std::string what(info(s).name);
    CAPTURE(what);
    const run_result cpu = run_scheme(impl::reference, s, dtype::f16, shape, big.data());
    REQUIRE(cpu.status.what == quant_status::code::non_finite_scale);
    gpu_source src;
    src.type = dtype::f16;
    src.host = big.data();
    check_same(cpu, gpu_run(s, src, shape));
  }
}

TEST_CASE("all-zero and single-value tensors give the CPU's EPS scales and codes") {
  for (const scheme_info& si : all_schemes()) {
    if (!backend_supports(backend_cuda, weight_scheme(si.id))) continue;  // CPU fallback schemes
    for (dtype d : k_dtypes) {
      const std::vector<uint64_t> shape{8, 128};
      for (float v : {0.0f, -0.0f, 448.0f, -3.0e-39f}) {
        std::vector<uint8_t> w(numel(shape) * bits(d) / 8);
        for (uint64_t i = 0; i < numel(shape); ++i) {
          if (d == dtype::f32)
            std::memcpy(&w[i * 4], &v, 4);
          else {
            const uint16_t h = d == dtype::bf16 ? to_bf16_rne(v) : to_f16_rne(v);
            std::memcpy(&w[i * 2], &h, 2);
          }
        }
        const std::string what =
            describe(si.id, d, shape, 0).append(" value ").append(std::to_string(v));
        CAPTURE(what);
        compare(si.id, d, shape, w);
      }
    }
  }
}

TEST_CASE("argument errors come back at once as bad_argument") {
  gpu_ctx& c = ctx();
  const std::vector<uint64_t> shape{16, 64};
  std::vector<uint8_t> w = make_weights(dtype::bf16, numel(shape), 3);
  gpu::device_buffer in = upload(w.data(), w.size());
  gpu::device_buffer out = poisoned(4096);
  quant_outputs o{out.data(), out.data(), out.data()};
  // Per-group int4 ranges must start at a multiple of 8 rows.
  source_view v{dtype::bf16, shape, in.data(), 4, 16};
  CHECK(gpu::quantize(scheme_id::int4_wo_32, v, o, c.ws.data(), c.ws.size(), c.s).what ==
        quant_status::code::bad_argument);
  // A dtype that is not a quantizable source.
  source_view bad{dtype::i32, shape, in.data()};
  CHECK(gpu::quantize(scheme_id::fp8, bad, o, c.ws.data(), c.ws.size(), c.s).what ==
        quant_status::code::bad_argument);
  // An MX FP4 row of odd length.
  const std::vector<uint64_t> odd{2, 33};
  source_view vo{dtype::bf16, odd, in.data()};
  CHECK(gpu::quantize(scheme_id::mxfp4, vo, o, c.ws.data(), c.ws.size(), c.s).what ==
        quant_status::code::bad_argument);
  // A workspace that is too small is a usage error, thrown.
  CHECK_THROWS_AS((void)gpu::quantize(scheme_id::fp8, v, o, c.ws.data(), 8, c.s),
                  gpu::launch_error);
  c.s.synchronize();
}
