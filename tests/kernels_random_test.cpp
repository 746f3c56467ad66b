// Fast vs reference quantizers byte for byte on seeded random tensors of many shapes and value
// flavours (ties, saturation, zero rows/blocks, subnormals, huge and tiny scales) for every scheme
// and source dtype; every output byte written (two different poisons give the same bytes); row
// ranges equal the whole tensor; round-trip error within the format's half step; NaN/Inf -> error
// with the first bad index. The seed of a failing case is printed (CAPTURE).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/amdfp4.h"
#include "kernels/cpu_isa.h"
#include "kernels/fp8.h"
#include "kernels/int_quant.h"
#include "kernels/mx.h"
#include "tests/kernels_test_util.h"

using namespace shardquant;
using namespace shardquant::test;

namespace {

enum class flavour { gaussian, ties, saturate, zeros, subnormal, scaled, mixed };
constexpr int k_flavours = 7;

// Encodes fp32 x as the source dtype (RNE) into buf at element i; returns the exact value stored.
float store(dtype d, std::vector<uint8_t>& buf, uint64_t i, float x) {
  if (d == dtype::f32) {
    std::memcpy(&buf[4 * i], &x, 4);
    return x;
  }
  const uint16_t h = d == dtype::bf16 ? to_bf16_rne(x) : to_f16_rne(x);
  std::memcpy(&buf[2 * i], &h, 2);
  return d == dtype::bf16 ? bf16_to_f32(h) : f16_to_f32(h);
}

// Random finite values of a flavour for a tensor of numel elements with rows of `row` elements.
std::vector<uint8_t> make_input(std::mt19937& rng, dtype d, uint64_t numel, uint64_t row,
                                flavour fl) {
  std::vector<uint8_t> buf(numel * (d == dtype::f32 ? 4 : 2));
  std::normal_distribution<float> n01(0.0f, 1.0f);
  const int emax = d == dtype::f16 ? 14 : 120;
  const int emin = d == dtype::f16 ? -26 : -135;
  int row_exp = 0;
  for (uint64_t i = 0; i < numel; ++i) {
    if (i % row == 0) row_exp = emin + static_cast<int>(rng() % static_cast<uint32_t>(emax - emin));
    flavour f = fl == flavour::mixed ? static_cast<flavour>(rng() % 6) : fl;
    float x = 0.0f;
    switch (f) {
      case flavour::gaussian:
        x = n01(rng);
        break;
      case flavour::ties:  // multiples of 1/16 and exact halves: many rounding ties
        x = static_cast<float>(static_cast<int>(rng() % 257) - 128) / 16.0f;
        break;
      case flavour::saturate:  // a few large values next to small ones
        x = rng() % 8 == 0 ? (rng() % 2 ? 448.0f : -450.0f) * 1.0f : n01(rng) * 0.01f;
        if (d == dtype::f16 && rng() % 4 == 0) x = rng() % 2 ? 65504.0f : -65504.0f;
        break;
      case flavour::zeros:  // whole zero stretches, including -0
        x = (i / 32) % 3 == 0 ? n01(rng) : ((rng() % 2) ? -0.0f : 0.0f);
        break;
      case flavour::subnormal:
        x = std::ldexp(static_cast<float>(static_cast<int>(rng() % 64) - 32),
                       d == dtype::f16 ? -24 : -133 + static_cast<int>(rng() % 8));
        break;
      case flavour::scaled:  // each row its own magnitude: huge and tiny scales
        x = std::ldexp(n01(rng), row_exp);
        break;
      default:
        break;
    }
    if (!std::isfinite(x)) x = 0.0f;
    if (d == dtype::f16 && std::fabs(x) > 65504.0f) x = x > 0 ? 65504.0f : -65504.0f;
    store(d, buf, i, x);
  }
  return buf;
}

// A random shape that passes check_shape for the scheme.
std::vector<uint64_t> random_shape(std::mt19937& rng, scheme_id s) {
  const scheme_info& si = info(s);
  static const uint64_t rows_choice[] = {1, 2, 3, 7, 8, 9, 16, 17, 33, 64};
  const uint64_t rows = rows_choice[rng() % 10];
  uint64_t cols = 1 + rng() % 150;
  std::vector<uint64_t> shape{rows};
  switch (si.family) {
    case scheme_family::int4_group:
    case scheme_family::uint4_group:
      cols = si.group_size * (1 + rng() % 3);
      break;
    case scheme_family::mx:
      if (si.element == mx_element::fp4_e2m1) {
        cols += cols % 2;
      } else {
        cols = 4 * (1 + rng() % 40);
        // numel % 32 == 0: force rows * cols to a multiple of 32
        while ((rows * cols) % 32) cols += 4;
      }
      if (rng() % 4 == 0) shape.push_back(1 + rng() % 3);  // rank 3
      break;
    case scheme_family::fp8_tensor:
    case scheme_family::fp8_row:
      if (rng() % 4 == 0) shape.push_back(1 + rng() % 4);
      break;
    case scheme_family::nvfp4:
    case scheme_family::amdfp4:
    case scheme_family::amdfp4_global:
      cols += cols % 2;  // partial last blocks included
      if (rng() % 4 == 0) shape.push_back(1 + rng() % 3);
      break;
    default:
      break;
  }
  shape.push_back(cols);
  REQUIRE(check_shape(s, shape).empty());
  return shape;
}

bool same_bytes(const run_result& a, const run_result& b) {
  if (a.tensors.size() != b.tensors.size()) return false;
  for (size_t t = 0; t < a.tensors.size(); ++t)
    if (a.tensors[t] != b.tensors[t]) return false;
  return true;
}

// Runs with a second poison to prove every byte is written.
run_result run_poisoned(impl i, scheme_id s, dtype d, const std::vector<uint64_t>& shape,
                        const void* data, uint8_t poison) {
  run_result r;
  for (const output_tensor& t : output_tensors(s, shape, d))
    r.tensors.emplace_back(t.byte_size(), poison);
  source_view v{d, shape, data};
  quant_outputs o;
  o.weight = r.tensors[0].data();
  o.scale = r.tensors.size() > 1 ? r.tensors[1].data() : nullptr;
  o.extra = r.tensors.size() > 2 ? r.tensors[2].data() : nullptr;
  r.status = i == impl::reference ? reference::quantize(s, v, o) : quantize(s, v, o);
  return r;
}

float load_f32(const std::vector<uint8_t>& b, uint64_t i) {
  float x;
  std::memcpy(&x, &b[4 * i], 4);
  return x;
}
int32_t load_i32(const std::vector<uint8_t>& b, uint64_t i) {
  int32_t x;
  std::memcpy(&x, &b[4 * i], 4);
  return x;
}

float src_value(dtype d, const std::vector<uint8_t>& in, uint64_t i) {
  if (d == dtype::f32) return load_f32(in, i);
  uint16_t h;
  std::memcpy(&h, &in[2 * i], 2);
  return d == dtype::bf16 ? bf16_to_f32(h) : f16_to_f32(h);
}

double ulp_of(dtype d, double y) {  // unit in the last place of |y| in dtype d (normal range)
  int e;
  std::frexp(std::fabs(y), &e);
  const int mant = d == dtype::bf16 ? 8 : d == dtype::f16 ? 11 : 24;
  return std::ldexp(1.0, e - mant);
}

// Round trip: every element's dequantized value within half a step of the format (plus the
// source-dtype rounding the spec applies before encoding). Returns the number of violations.
int round_trip_violations(scheme_id s, dtype d, const std::vector<uint64_t>& shape,
                          const std::vector<uint8_t>& in, const run_result& r) {
  const scheme_info& si = info(s);
  uint64_t numel = 1;
  for (uint64_t x : shape) numel *= x;
  const uint64_t out = shape[0], cols = shape.back(), inner = numel / out;
  int bad = 0;
  auto note = [&](uint64_t i, double err, double bound) {
    if (err > bound && bad++ < 3)
      std::printf("round trip: element %llu error %g > %g\n", static_cast<unsigned long long>(i),
                  err, bound);
  };
  switch (si.family) {
    case scheme_family::fp8_tensor:
    case scheme_family::fp8_row:
      for (uint64_t i = 0; i < numel; ++i) {
        const float sc =
            load_f32(r.tensors[1], si.family == scheme_family::fp8_row ? i / inner : 0);
        const float sd = round_src(d == dtype::bf16  ? src_kind::bf16
                                   : d == dtype::f16 ? src_kind::f16
                                                     : src_kind::f32,
                                   sc);
        const double y = static_cast<double>(src_value(d, in, i)) / sd;
        if (std::fabs(y) > 448.0) continue;
        const double q = fp8_e4m3fn_decode(r.tensors[0][i]);
        int e;
        std::frexp(std::fabs(y), &e);
        const double half = std::ldexp(1.0, std::max(e - 1, -6) - 4);
        note(i, std::fabs(q - y), half + ulp_of(d, y) + 1e-30);
      }
      break;
    case scheme_family::int8_tensor: {
      const float sc = load_f32(r.tensors[1], 0);
      for (uint64_t i = 0; i < numel; ++i) {
        const double y = static_cast<double>(src_value(d, in, i)) * (1.0 / sc);
        const double q = static_cast<int8_t>(r.tensors[0][i]);
        note(i, std::fabs(q - y), 0.5 + std::fabs(y) * 1e-2 + 1e-6);
      }
      break;
    }
    case scheme_family::mx: {
      const mx_format f = si.element == mx_element::fp4_e2m1   ? mx_fp4_e2m1()
                          : si.element == mx_element::fp6_e2m3 ? mx_fp6_e2m3()
                                                               : mx_fp6_e3m2();
      const uint64_t bpr = (cols + 31) / 32;
      for (uint64_t i = 0; i < numel; ++i) {
        const uint64_t row = i / cols, c = i % cols;
        const uint8_t byte = r.tensors[1][row * bpr + c / 32];
        const double x = src_value(d, in, i);
        const double S = std::ldexp(1.0, byte - 127);
        if (byte == 1) continue;  // k = -127 blocks use the TC6 divisor
        // Unpack the code.
        uint32_t code;
        if (f.code_bits == 4) {
          const uint8_t b = r.tensors[0][row * (cols / 2) + c / 2];
          code = c % 2 ? b >> 4 : b & 15;
        } else {
          const uint64_t flat = row * cols + c, g = flat / 4;
          const uint32_t w =
              r.tensors[0][3 * g] | r.tensors[0][3 * g + 1] << 8 | r.tensors[0][3 * g + 2] << 16;
          code = (w >> (6 * (flat % 4))) & 63;
        }
        const double y = x / S, v = mx_decode_element(code, f);
        int e;
        std::frexp(std::fabs(y), &e);
        const int emin = 1 - static_cast<int>(f.bias);
        const double half = std::ldexp(1.0, std::max(e - 1, emin) - static_cast<int>(f.mbits) - 1);
        note(i, std::fabs(v - y), half * 1.0000001 + 1e-40);
      }
      break;
    }
    case scheme_family::int4_channel:
    case scheme_family::int4_group:
    case scheme_family::uint4_channel:
    case scheme_family::uint4_group: {
      const bool grouped =
          si.family == scheme_family::int4_group || si.family == scheme_family::uint4_group;
      const bool asym =
          si.family == scheme_family::uint4_group || si.family == scheme_family::uint4_channel;
      const uint64_t unit = grouped ? si.group_size : cols;
      const uint64_t units = cols / unit;
      for (uint64_t i = 0; i < numel; ++i) {
        const uint64_t row = i / cols, c = i % cols;
        const float sc = load_f32(r.tensors[1], row * units + c / unit);
        if (sc <= k_eps() || (d == dtype::f16 && sc < std::ldexp(1.0f, -14))) continue;
        uint32_t w;
        int32_t q;
        if (grouped) {
          w = static_cast<uint32_t>(load_i32(r.tensors[0], c * ((out + 7) / 8) + row / 8));
          q = asym ? unpack_uint4(w, row % 8) : unpack_int4(w, row % 8);
        } else {
          w = static_cast<uint32_t>(load_i32(r.tensors[0], row * ((cols + 7) / 8) + c / 8));
          q = asym ? unpack_uint4(w, c % 8) : unpack_int4(w, c % 8);
        }
        const int32_t zp = asym ? load_i32(r.tensors[2], row * units + c / unit) : 0;
        const double y = static_cast<double>(src_value(d, in, i)) / sc + zp;
        // Half a step, plus the source-dtype rounding of s (and of the zero-point quotient).
        note(i, std::fabs(q - y), 0.5 + (asym ? 0.07 : 0.0) + std::fabs(y) * 1e-2 + 1e-6);
      }
      break;
    }
    case scheme_family::nvfp4:
    case scheme_family::amdfp4:
    case scheme_family::amdfp4_global: {
      // Dequantize with the stored scales: the block divisor is value(scale) (* scale_2).
      const uint64_t gs = si.group_size, bpr = (cols + gs - 1) / gs;
      const float s2 = si.family == scheme_family::amdfp4 ? 1.0f : load_f32(r.tensors[2], 0);
      for (uint64_t i = 0; i < numel; ++i) {
        const uint64_t row = i / cols, c = i % cols, si_ = row * bpr + c / gs;
        double S;
        if (si.family == scheme_family::nvfp4) {
          S = static_cast<double>(fp8_e4m3fn_decode(r.tensors[1][si_])) * s2;
        } else if (si.family == scheme_family::amdfp4_global) {
          S = static_cast<double>(e5m3_decode(r.tensors[1][si_])) * s2;
        } else {
          S = d == dtype::f32 ? load_f32(r.tensors[1], si_)
                              : src_value(d, r.tensors[1], si_);  // stored in D
        }
        if (S < 1e-30) continue;  // zero scales divide by EPS (checked by the goldens)
        const uint8_t b = r.tensors[0][row * (cols / 2) + c / 2];
        const uint32_t code = c % 2 ? b >> 4 : b & 15;
        const double y = src_value(d, in, i) / S, v = mx_decode_element(code, mx_fp4_e2m1());
        int e;
        std::frexp(std::fabs(y), &e);
        const double half = std::ldexp(1.0, std::max(e - 1, 0) - 2);
        // The scale's own rounding lets |y| pass 6 slightly: saturation error on top.
        const double over = std::max(0.0, std::fabs(y) - 6.0);
        note(i, std::fabs(v - y), half * 1.00001 + over + 1e-6);
      }
      break;
    }
    case scheme_family::int4_fp8: {
      const float s1 = load_f32(r.tensors[1], 0);
      for (uint64_t i = 0; i < numel; ++i) {
        const uint64_t row = i / cols, c = i % cols;
        const float s2 = load_f32(r.tensors[2], row);
        const uint32_t w =
            static_cast<uint32_t>(load_i32(r.tensors[0], row * ((cols + 7) / 8) + c / 8));
        // AWQ order: element 8c + e sits in nibble (e even ? e/2 : 4 + e/2).
        const uint32_t e = c % 8;
        const int32_t q = unpack_int4(w, e % 2 == 0 ? e / 2 : 4 + e / 2);
        const double deq = q * static_cast<double>(s2) * s1;
        const double x = src_value(d, in, i);
        // int4 half step of s2 * s1 plus the fp8 half step of stage 1 (relative 2^-4, or the
        // subnormal step of fp8 for tiny values) plus D rounding of the quotient.
        const double bound = (0.5 + 1e-2) * s2 * s1 + std::fabs(x) * (1.0 / 16 + 1.0 / 128) +
                             std::ldexp(1.0, -10) * s1 + 1e-30;
        note(i, std::fabs(deq - x), bound);
      }
      break;
    }
  }
  return bad;
}

}  // namespace

TEST_CASE("fast and reference quantizers agree byte for byte on random tensors of every scheme") {
  int cases = 0;
  for (const scheme_info& si : all_schemes()) {
    for (dtype d : {dtype::bf16, dtype::f16, dtype::f32}) {
      for (int k = 0; k < 24; ++k) {
        const uint32_t seed =
            static_cast<uint32_t>(1000 * static_cast<int>(si.id) + 100 * static_cast<int>(d) + k);
        CAPTURE(seed);
        const std::string scheme_s(si.name);
        CAPTURE(scheme_s);
        const std::string dtype_s(name(d));
        CAPTURE(dtype_s);
        std::mt19937 rng(seed);
        const std::vector<uint64_t> shape = random_shape(rng, si.id);
        uint64_t numel = 1;
        for (uint64_t x : shape) numel *= x;
        const flavour fl = static_cast<flavour>(k % k_flavours);
        const std::vector<uint8_t> in = make_input(rng, d, numel, shape.back(), fl);
        const run_result ref = run_poisoned(impl::reference, si.id, d, shape, in.data(), 0xCD);
        if (!ref.status.ok()) {
          // Only scale errors of 16-bit sources are legitimate (round_D(s) underflows to 0 for
          // subnormal-only tensors, F16 uint4 ranges overflow).
          CHECK(d != dtype::f32);
          CHECK(ref.status.what != quant_status::code::non_finite_input);
          const run_result fast = run_poisoned(impl::fast, si.id, d, shape, in.data(), 0xCD);
          CHECK(fast.status.what == ref.status.what);
          CHECK(fast.status.index == ref.status.index);
          continue;
        }
        const run_result ref2 = run_poisoned(impl::reference, si.id, d, shape, in.data(), 0x32);
        CHECK(same_bytes(ref, ref2));  // every byte written by the reference
        // The fast path at every instruction-set level this CPU has.
        for (cpu_isa isa : {cpu_isa::baseline, cpu_isa::avx2, cpu_isa::avx512}) {
          force_cpu_isa(isa);
          const std::string isa_s = cpu_isa_name(active_cpu_isa());
          CAPTURE(isa_s);
          const run_result fast = run_poisoned(impl::fast, si.id, d, shape, in.data(), 0xCD);
          const run_result fast2 = run_poisoned(impl::fast, si.id, d, shape, in.data(), 0x32);
          REQUIRE(fast.status.ok());
          CHECK(same_bytes(fast, fast2));  // every byte written by the fast path
          CHECK(same_bytes(ref, fast));
        }
        CHECK(round_trip_violations(si.id, d, shape, in, ref) == 0);
        ++cases;
      }
    }
  }
  MESSAGE("random cases compared: " << cases);
}

TEST_CASE("row ranges processed one by one equal the whole tensor for every scheme") {
  for (const scheme_info& si : all_schemes()) {
    for (dtype d : {dtype::bf16, dtype::f32}) {
      for (int k = 0; k < 6; ++k) {
        const uint32_t seed = static_cast<uint32_t>(77000 + 100 * static_cast<int>(si.id) +
                                                    10 * static_cast<int>(d) + k);
        CAPTURE(seed);
        const std::string scheme_s(si.name);
        CAPTURE(scheme_s);
        std::mt19937 rng(seed);
        std::vector<uint64_t> shape = random_shape(rng, si.id);
        shape[0] = 8 * (2 + rng() % 4) + (rng() % 2 ? 3 : 0);  // several 8-row blocks + a tail
        if (!check_shape(si.id, shape).empty()) shape[0] = 32;
        uint64_t numel = 1;
        for (uint64_t x : shape) numel *= x;
        const std::vector<uint8_t> in =
            make_input(rng, d, numel, shape.back(), static_cast<flavour>(k % k_flavours));
        const uint64_t mult = row_split_multiple(si.family);
        std::vector<uint64_t> cuts;
        for (uint64_t r = mult * (1 + rng() % 2); r < shape[0]; r += mult * (1 + rng() % 3))
          cuts.push_back(r);
        for (impl i : {impl::reference, impl::fast}) {
          const std::string impl_s = impl_name(i);
          CAPTURE(impl_s);
          const run_result whole = run_scheme(i, si.id, d, shape, in.data());
          const run_result parts = run_ranges(i, si.id, d, shape, in.data(), cuts);
          if (!whole.status.ok()) {  // a scale underflow of a subnormal-only bf16 tensor
            CHECK(whole.status.what == quant_status::code::scale_underflow);
            CHECK(parts.status.what == whole.status.what);
            continue;
          }
          REQUIRE(parts.status.ok());
          CHECK(same_bytes(whole, parts));
        }
      }
    }
  }
}

TEST_CASE("a row range that splits a word column of per-group int4 is refused") {
  const std::vector<uint64_t> shape{16, 32};
  std::vector<uint16_t> in(16 * 32, 0x3F80);
  std::vector<uint8_t> w(32 * 2 * 4), sc(16 * 4);
  std::string err;
  (void)range_layout(scheme_id::int4_wo_32, shape, 4, 16, &err);
  CHECK(!err.empty());
  source_view v{dtype::bf16, shape, in.data(), 4, 16};
  quant_outputs o{w.data(), sc.data(), nullptr, 2};
  CHECK(quantize(scheme_id::int4_wo_32, v, o).what == quant_status::code::bad_argument);
  CHECK(reference::quantize(scheme_id::int4_wo_32, v, o).what == quant_status::code::bad_argument);
  // A per-tensor scheme on a partial view without the tensor amax is refused too.
  source_view p{dtype::bf16, shape, in.data(), 0, 8};
  std::vector<uint8_t> q(16 * 32), s1(4);
  CHECK(quantize(scheme_id::fp8, p, {q.data(), s1.data()}).what ==
        quant_status::code::bad_argument);
}

TEST_CASE("NaN and Inf inputs are errors carrying the first bad element index") {
  for (const scheme_info& si : all_schemes()) {
    for (dtype d : {dtype::bf16, dtype::f16, dtype::f32}) {
      const uint32_t seed = 5000 + 10 * static_cast<uint32_t>(si.id) + static_cast<uint32_t>(d);
      CAPTURE(seed);
      const std::string scheme_s(si.name);
      CAPTURE(scheme_s);
      std::mt19937 rng(seed);
      const std::vector<uint64_t> shape = random_shape(rng, si.id);
      uint64_t numel = 1;
      for (uint64_t x : shape) numel *= x;
      std::vector<uint8_t> in = make_input(rng, d, numel, shape.back(), flavour::gaussian);
      const uint64_t first = rng() % numel;
      const uint64_t second = first + (numel - first) / 2;
      const float bad1 = rng() % 2 ? NAN : -INFINITY;
      store(d, in, first, bad1);
      if (second != first) store(d, in, second, INFINITY);
      for (impl i : {impl::reference, impl::fast}) {
        const std::string impl_s = impl_name(i);
        CAPTURE(impl_s);
        const run_result r = run_scheme(i, si.id, d, shape, in.data());
        CHECK(r.status.what == quant_status::code::non_finite_input);
        CHECK(r.status.index == first);
        const amax_result a = run_amax(i, source_view{d, shape, in.data()});
        CHECK(a.first_bad == first);
      }
    }
  }
  // A partial view reports the index in the whole tensor.
  std::vector<uint16_t> in(4 * 8, 0x3F80);
  in[2 * 8 + 5] = 0x7FC0;
  const std::vector<uint64_t> shape{4, 8};
  source_view v{dtype::bf16, shape, in.data() + 16, 2, 4};
  std::vector<uint8_t> q(16), s(8);
  for (impl i : {impl::reference, impl::fast}) {
    const quant_status st = i == impl::reference
                                ? reference::quantize(scheme_id::ptpc_fp8, v, {q.data(), s.data()})
                                : quantize(scheme_id::ptpc_fp8, v, {q.data(), s.data()});
    CHECK(st.what == quant_status::code::non_finite_input);
    CHECK(st.index == 21);
    CHECK(run_amax(i, v).first_bad == 21);
  }
}

TEST_CASE("F16 scale underflow is an error, not NaN codes") {
  // amax = 2^-24 (smallest f16 subnormal): s = 2^-24 / 448 rounds to 0 in f16.
  const std::vector<uint64_t> shape{1, 4};
  const std::vector<uint16_t> in = {0x0001, 0x0000, 0x8001, 0x0000};
  std::vector<uint8_t> q(4), s(4);
  for (scheme_id id : {scheme_id::fp8, scheme_id::ptpc_fp8, scheme_id::int4_fp8}) {
    std::vector<uint8_t> w(16), s2(4);
    quant_outputs o{id == scheme_id::int4_fp8 ? w.data() : q.data(), s.data(), s2.data()};
    source_view v{dtype::f16, shape, in.data()};
    CHECK(reference::quantize(id, v, o).what == quant_status::code::scale_underflow);
    CHECK(quantize(id, v, o).what == quant_status::code::scale_underflow);
  }
}

TEST_CASE("fast and reference agree on tensors large enough to split into many parallel tasks") {
  struct big {
    scheme_id s;
    std::vector<uint64_t> shape;
  };
  const std::vector<big> cases = {
      {scheme_id::fp8, {67, 3001}},
      {scheme_id::ptpc_fp8, {300, 1001}},
      {scheme_id::int8, {129, 2047}},
      {scheme_id::int4_wo_128, {203, 1024}},
      {scheme_id::uint4_wo_32, {77, 2048}},
      // Per-group tiles are 4096 columns x 128 rows: rows wider than a tile with a partial last
      // tile, and row counts that are not a multiple of 8 or 128.
      {scheme_id::int4_wo_32, {141, 6176}},
      {scheme_id::uint4_wo_128, {45, 8320}},
      {scheme_id::int4_wo_per_channel, {150, 3003}},
      {scheme_id::uint4_wo_per_channel, {90, 2050}},
      {scheme_id::mxfp4, {2, 70002}},
      {scheme_id::mxfp4, {300, 1000}},
      {scheme_id::mxfp6_e2m3, {3, 66016}},
      {scheme_id::mxfp6_e3m2, {64, 2052}},
      {scheme_id::int4_fp8, {131, 2001}},
      {scheme_id::nvfp4, {300, 1002}},
      {scheme_id::amdfp4, {3, 70000}},
      {scheme_id::amdfp4_global32, {129, 2050}},
  };
  uint32_t seed = 900;
  for (const big& b : cases) {
    for (dtype d : {dtype::bf16, dtype::f32}) {
      ++seed;
      CAPTURE(seed);
      const std::string scheme_s(info(b.s).name);
      CAPTURE(scheme_s);
      REQUIRE(check_shape(b.s, b.shape).empty());
      std::mt19937 rng(seed);
      uint64_t numel = 1;
      for (uint64_t x : b.shape) numel *= x;
      const std::vector<uint8_t> in = make_input(rng, d, numel, b.shape.back(), flavour::mixed);
      const run_result ref = run_poisoned(impl::reference, b.s, d, b.shape, in.data(), 0xCD);
      REQUIRE(ref.status.ok());
      for (cpu_isa isa : {cpu_isa::baseline, cpu_isa::avx2, cpu_isa::avx512}) {
        force_cpu_isa(isa);
        const std::string isa_s = cpu_isa_name(active_cpu_isa());
        CAPTURE(isa_s);
        const run_result fast = run_poisoned(impl::fast, b.s, d, b.shape, in.data(), 0x32);
        REQUIRE(fast.status.ok());
        CHECK(same_bytes(ref, fast));
      }
    }
  }
}
