// kernels/cuda/fast_math.cuh equals the shared math headers bit for bit on every input: the
// device-specialised element functions the kernels use are checked exhaustively on the GPU
// (all 2^32 fp32 patterns, all f16 and fp8 code patterns), each against its header function.
#include <doctest/doctest.h>

#include <ios>

#include "kernels/cuda/fast_math_check.h"

using namespace shardquant;

namespace {

void check_all(gpu::fast_fn f, uint64_t expected_inputs) {
  const gpu::fast_check_result r = gpu::check_fast_math(f);
  CHECK(r.inputs == expected_inputs);
  CHECK(r.mismatches == 0);
  if (r.mismatches) MESSAGE("first mismatching input pattern: 0x" << std::hex << r.first_bad);
}

constexpr uint64_t k_all_f32 = uint64_t{1} << 32;
constexpr uint64_t k_all_u16 = uint64_t{1} << 16;

}  // namespace

TEST_CASE("the paired bf16 rounding equals round_src<bf16> on all 2^32 fp32 patterns") {
  check_all(gpu::fast_fn::round_bf16x2, k_all_f32);
}

TEST_CASE("the paired f16 rounding equals round_src<f16> on all 2^32 fp32 patterns") {
  check_all(gpu::fast_fn::round_f16x2, k_all_f32);
}

TEST_CASE("the hardware e4m3fn encoder equals fp8_e4m3fn_encode on all 2^32 fp32 patterns") {
  check_all(gpu::fast_fn::fp8_encode2, k_all_f32);
}

TEST_CASE("the hardware e4m3fn decoder equals fp8_e4m3fn_decode on all code pairs") {
  check_all(gpu::fast_fn::fp8_decode2, k_all_u16);
}

TEST_CASE("the hardware f16 widening equals f16_to_f32 on all 2^16 patterns") {
  check_all(gpu::fast_fn::f16_to_f32, k_all_u16);
}

TEST_CASE("the float rne clamp equals rne_clamp_i on all 2^32 fp32 patterns for every code range") {
  check_all(gpu::fast_fn::rne_clamp_int8, k_all_f32);
  check_all(gpu::fast_fn::rne_clamp_int4, k_all_f32);
  check_all(gpu::fast_fn::rne_clamp_uint4, k_all_f32);
}

TEST_CASE("the hardware MX FP6 encoders equal mx_encode_element on all 2^32 fp32 patterns") {
  check_all(gpu::fast_fn::mx_e2m3_encode2, k_all_f32);
  check_all(gpu::fast_fn::mx_e3m2_encode2, k_all_f32);
}
