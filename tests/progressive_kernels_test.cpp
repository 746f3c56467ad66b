// Progressive pairs (kernels/schemes.h weight_scheme, formats.md §10 generalized): the int4_fp8
// preset is the pair (fp8 per-tensor, int4 per-channel) byte for byte; every supported pair equals
// its two single-stage schemes composed by hand (stage-1 codes decoded to F32, stage 2 on those,
// nibbles permuted to Quark's reorder order); fast == reference on random tensors of every pair
// and source dtype, every output byte written; row ranges equal the whole tensor; bad input and
// unsupported pairs are errors.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/fp8.h"
#include "kernels/int_quant.h"
#include "tests/kernels_test_util.h"

using namespace shardquant;
using namespace shardquant::test;

namespace {

std::string pair_name(scheme_id a, scheme_id b) {
  return std::string(info(a).name) + " -> " + std::string(info(b).name);
}

// Random finite source values: gaussian with per-row magnitudes, exact ties, some zeros rows.
std::vector<uint8_t> random_input(std::mt19937& rng, dtype d, uint64_t rows, uint64_t cols) {
  const uint64_t es = d == dtype::f32 ? 4 : 2;
  std::vector<uint8_t> buf(rows * cols * es);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  for (uint64_t r = 0; r < rows; ++r) {
    const float mag = std::ldexp(1.0f, static_cast<int>(rng() % 12) - 8);
    const bool zero_row = rng() % 9 == 0;
    const bool ties = rng() % 4 == 0;
    for (uint64_t c = 0; c < cols; ++c) {
      float x =
          ties ? static_cast<float>(static_cast<int>(rng() % 65) - 32) / 8.0f : n01(rng) * mag;
      if (zero_row) x = 0.0f;
      const uint64_t i = r * cols + c;
      if (d == dtype::f32) {
        std::memcpy(&buf[4 * i], &x, 4);
      } else {
        const uint16_t h = d == dtype::bf16 ? to_bf16_rne(x) : to_f16_rne(x);
        std::memcpy(&buf[2 * i], &h, 2);
      }
    }
  }
  return buf;
}

run_result poisoned(impl i, const weight_scheme& s, dtype d, const std::vector<uint64_t>& shape,
                    const void* data, uint8_t poison) {
  run_result r;
  for (const output_tensor& t : output_tensors(s, shape))
    r.tensors.emplace_back(t.byte_size(), poison);
  source_view v{d, shape, data};
  quant_outputs o;
  o.weight = r.tensors[0].data();
  o.scale = r.tensors[1].data();
  o.extra = r.tensors.size() > 2 ? r.tensors[2].data() : nullptr;
  o.extra2 = r.tensors.size() > 3 ? r.tensors[3].data() : nullptr;
  r.status = i == impl::reference ? reference::quantize(s, v, o) : quantize(s, v, o);
  return r;
}

// The pair computed from its single-stage schemes: stage 1's codes decoded as F32 values, stage 2
// on them, int4/uint4 words with their nibbles permuted from sequential to [0,2,4,6,1,3,5,7].
run_result composed(scheme_id a, scheme_id b, dtype d, const std::vector<uint64_t>& shape,
                    const void* data) {
  const run_result one = run_scheme(impl::reference, a, d, shape, data);
  REQUIRE(one.status.ok());
  const uint64_t n = shape[0] * shape[1];
  std::vector<float> vals(n);
  for (uint64_t i = 0; i < n; ++i)
    vals[i] = a == scheme_id::int8 ? static_cast<float>(static_cast<int8_t>(one.tensors[0][i]))
                                   : fp8_e4m3fn_decode(one.tensors[0][i]);
  run_result two = run_scheme(impl::reference, b, dtype::f32, shape, vals.data());
  REQUIRE(two.status.ok());
  if (output_tensors(b, shape)[0].type == dtype::i32) {
    std::vector<uint8_t>& w = two.tensors[0];
    for (size_t k = 0; k + 4 <= w.size(); k += 4) {
      uint32_t word, out = 0;
      std::memcpy(&word, &w[k], 4);
      for (uint32_t i = 0; i < 8; ++i)
        out |= ((word >> (4 * nibble_source(nibble_order::int4_fp8, i))) & 0xFu) << (4 * i);
      std::memcpy(&w[k], &out, 4);
    }
  }
  run_result r;
  r.status = {};
  r.tensors.push_back(two.tensors[0]);                              // weight
  r.tensors.push_back(one.tensors[1]);                              // _scale: stage 1
  r.tensors.push_back(two.tensors[1]);                              // _scale_2: stage 2
  if (two.tensors.size() > 2) r.tensors.push_back(two.tensors[2]);  // _zero_point
  return r;
}

std::vector<uint64_t> shape_for(std::mt19937& rng, scheme_id second) {
  const weight_format f = weight_scheme(second).first;
  uint64_t cols = 128 * (1 + rng() % 3);
  if (f.family == scheme_family::int4_channel || f.family == scheme_family::uint4_channel ||
      f.family == scheme_family::fp8_row)
    cols += rng() % 8;  // a partial last word
  return {8 * (1 + rng() % 5) + (rng() % 2 ? 5 : 0), cols};
}

}  // namespace

TEST_CASE("the int4_fp8 scheme is the progressive pair of fp8 per-tensor and int4 per-channel") {
  const weight_scheme preset(scheme_id::int4_fp8);
  CHECK(preset.progressive);
  CHECK(preset == progressive_pair(scheme_id::fp8, scheme_id::int4_wo_per_channel));
  CHECK(describe(preset) == "fp8_e4m3 per-tensor -> int4 per-channel");
  std::mt19937 rng(4242);
  for (dtype d : {dtype::bf16, dtype::f16, dtype::f32}) {
    const std::vector<uint64_t> shape{37, 203};
    const std::vector<uint8_t> in = random_input(rng, d, shape[0], shape[1]);
    for (impl i : {impl::reference, impl::fast}) {
      const run_result a = run_scheme(i, scheme_id::int4_fp8, d, shape, in.data());
      const run_result b = run_scheme(
          i, progressive_pair(scheme_id::fp8, scheme_id::int4_wo_per_channel), d, shape, in.data());
      REQUIRE(a.status.ok());
      REQUIRE(b.status.ok());
      CHECK(a.tensors == b.tensors);
      // ... and the composition of the fp8 and int4_wo_per_channel schemes.
      CHECK(a.tensors ==
            composed(scheme_id::fp8, scheme_id::int4_wo_per_channel, d, shape, in.data()).tensors);
    }
  }
}

TEST_CASE("every supported pair equals its two single-stage schemes composed in reorder order") {
  int cases = 0;
  for (scheme_id a : k_first_stages)
    for (scheme_id b : k_second_stages)
      for (dtype d : {dtype::bf16, dtype::f16, dtype::f32}) {
        const std::string name = pair_name(a, b) + " " + std::string(shardquant::name(d));
        CAPTURE(name);
        std::mt19937 rng(static_cast<uint32_t>(100 * static_cast<int>(a) + static_cast<int>(b) +
                                               1000 * static_cast<int>(d)));
        const std::vector<uint64_t> shape = shape_for(rng, b);
        const std::vector<uint8_t> in = random_input(rng, d, shape[0], shape[1]);
        const weight_scheme s = progressive_pair(a, b);
        const run_result want = composed(a, b, d, shape, in.data());
        const std::vector<output_tensor> outs = output_tensors(s, shape);
        REQUIRE(outs.size() == want.tensors.size());
        CHECK(outs[1].suffix == "_scale");
        CHECK(outs[2].suffix == "_scale_2");
        for (impl i : {impl::reference, impl::fast}) {
          const std::string impl_s = impl_name(i);
          CAPTURE(impl_s);
          const run_result got = poisoned(i, s, d, shape, in.data(), 0xCD);
          const run_result got2 = poisoned(i, s, d, shape, in.data(), 0x32);
          REQUIRE(got.status.ok());
          CHECK(got.tensors == got2.tensors);  // every byte written
          for (size_t t = 0; t < want.tensors.size(); ++t) {
            CAPTURE(t);
            CHECK(got.tensors[t] == want.tensors[t]);
          }
        }
        ++cases;
      }
  MESSAGE("pairs x dtypes compared: " << cases);
}

TEST_CASE("row ranges of a progressive pair equal the whole tensor") {
  for (scheme_id a : k_first_stages)
    for (scheme_id b : k_second_stages) {
      const std::string name = pair_name(a, b);
      CAPTURE(name);
      std::mt19937 rng(
          static_cast<uint32_t>(5000 + 100 * static_cast<int>(a) + static_cast<int>(b)));
      const weight_scheme s = progressive_pair(a, b);
      std::vector<uint64_t> shape = shape_for(rng, b);
      shape[0] = 8 * (3 + rng() % 3) + 3;
      const std::vector<uint8_t> in = random_input(rng, dtype::bf16, shape[0], shape[1]);
      const uint64_t mult = row_split_multiple(s);
      CHECK(needs_tensor_amax(s) == (a != scheme_id::ptpc_fp8));
      std::vector<uint64_t> cuts;
      for (uint64_t r = mult * (1 + rng() % 2); r < shape[0]; r += mult * (1 + rng() % 3))
        cuts.push_back(r);
      for (impl i : {impl::reference, impl::fast}) {
        const run_result whole = run_scheme(i, s, dtype::bf16, shape, in.data());
        const run_result parts = run_ranges(i, s, dtype::bf16, shape, in.data(), cuts);
        REQUIRE(whole.status.ok());
        REQUIRE(parts.status.ok());
        CHECK(whole.tensors == parts.tensors);
      }
    }
}

TEST_CASE("fast and reference agree on a progressive pair large enough for many parallel tasks") {
  std::mt19937 rng(99);
  const std::vector<uint64_t> shape{515, 1024};
  const std::vector<uint8_t> in = random_input(rng, dtype::bf16, shape[0], shape[1]);
  for (scheme_id b : {scheme_id::uint4_wo_128, scheme_id::int4_wo_per_channel}) {
    const weight_scheme s = progressive_pair(scheme_id::ptpc_fp8, b);
    const run_result ref = poisoned(impl::reference, s, dtype::bf16, shape, in.data(), 0xCD);
    const run_result fast = poisoned(impl::fast, s, dtype::bf16, shape, in.data(), 0xCD);
    REQUIRE(ref.status.ok());
    CHECK(ref.tensors == fast.tensors);
  }
}

TEST_CASE("a NaN in the source of a progressive pair is reported at its element") {
  const std::vector<uint64_t> shape{24, 64};
  std::vector<float> in(24 * 64, 0.5f);
  in[13 * 64 + 7] = std::numeric_limits<float>::quiet_NaN();
  for (scheme_id a : k_first_stages) {
    const weight_scheme s = progressive_pair(a, scheme_id::uint4_wo_32);
    for (impl i : {impl::reference, impl::fast}) {
      const run_result r = run_scheme(i, s, dtype::f32, shape, in.data());
      CHECK(r.status.what == quant_status::code::non_finite_input);
      CHECK(r.status.index == 13 * 64 + 7);
    }
  }
}

TEST_CASE("pairs outside the supported stages are refused with a reason") {
  const weight_format fp8t = weight_scheme(scheme_id::fp8).first;
  const weight_format i4c = weight_scheme(scheme_id::int4_wo_per_channel).first;
  const weight_format mx4 = weight_scheme(scheme_id::mxfp4).first;
  const weight_format i8t = weight_scheme(scheme_id::int8).first;
  CHECK(progressive_error(fp8t, i4c).empty());
  CHECK(progressive_error(fp8t, mx4).find("MX second stage") != std::string::npos);
  CHECK(progressive_error(i8t, fp8t).find("per-tensor second stage") != std::string::npos);
  CHECK(progressive_error(i4c, i8t).find("int4/uint4 first stage") != std::string::npos);
  CHECK(progressive_error(mx4, i4c).find("MX first stage") != std::string::npos);
  // The kernels refuse such a pair instead of writing something.
  const std::vector<uint64_t> shape{8, 64};
  std::vector<float> in(8 * 64, 1.0f);
  std::vector<uint8_t> w(8 * 64), s1(8 * 4), s2(8 * 4);
  quant_outputs o{w.data(), s1.data(), s2.data()};
  const source_view v{dtype::f32, shape, in.data()};
  CHECK(quantize(weight_scheme(fp8t, mx4), v, o).what == quant_status::code::bad_argument);
  CHECK(reference::quantize(weight_scheme(i8t, fp8t), v, o).what ==
        quant_status::code::bad_argument);
}

TEST_CASE("a pair's output tensors follow its stages and shapes are checked on the packed stage") {
  const weight_scheme s = progressive_pair(scheme_id::ptpc_fp8, scheme_id::uint4_wo_64);
  const std::vector<uint64_t> shape{20, 128};
  const std::vector<output_tensor> o = output_tensors(s, shape);
  REQUIRE(o.size() == 4);
  CHECK(o[0].suffix == "");
  CHECK(o[0].type == dtype::i32);
  CHECK(o[0].shape == std::vector<uint64_t>{128, 3});
  CHECK(o[1].shape == std::vector<uint64_t>{20});
  CHECK(o[2].suffix == "_scale_2");
  CHECK(o[2].shape == std::vector<uint64_t>{20, 2});
  CHECK(o[3].suffix == "_zero_point");
  CHECK(o[3].type == dtype::i32);
  const std::vector<uint64_t> bad{20, 96};
  CHECK(check_shape(s, bad, nullptr, "my_spec").find("scheme my_spec needs the input dimension") !=
        std::string::npos);
  const std::vector<uint64_t> rank3{2, 20, 128};
  CHECK(check_shape(s, rank3).find("rank-2") != std::string::npos);
}
