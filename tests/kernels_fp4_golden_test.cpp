// The scaled-FP4 golden vectors (tests/golden_vectors_fp4.h, kernels/FORMATS-fp4.md §7) byte for
// byte through the reference and the fast quantizer, and the E5M3 scale format on its own.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/amdfp4.h"
#include "kernels/nvfp4.h"
#include "tests/golden_vectors_fp4.h"
#include "tests/kernels_test_util.h"

using namespace shardquant;
using namespace shardquant::test;

TEST_CASE(
    "nvfp4 and amdfp4 golden vectors: ties, saturation, zero blocks, subnormal and limit scales") {
  for (const golden::golden_case& c : golden_fp4::all()) {
    CAPTURE(std::string(c.name));
    for (impl i : {impl::reference, impl::fast}) {
      CAPTURE(std::string(impl_name(i)));
      const run_result r = run_scheme(i, c.scheme, dtype::bf16, c.shape, c.input.data());
      golden::check_outputs(r, c);
    }
  }
}

TEST_CASE("every E5M3 code decodes to a value that encodes back to the same code") {
  for (uint32_t code = 0; code < 0xFF; ++code) {
    const float v = e5m3_decode(static_cast<uint8_t>(code));
    CAPTURE(code);
    CHECK(std::isfinite(v));
    CHECK(e5m3_encode(v) == code);
  }
  CHECK(e5m3_decode(0x78) == 1.0f);
  CHECK(e5m3_decode(0xFE) == 114688.0f);
  CHECK(e5m3_decode(0x01) == std::ldexp(1.0f, -17));
  CHECK(std::isnan(e5m3_decode(0xFF)));
}

TEST_CASE("E5M3 rounding: ties to an even mantissa, subnormals, clamp at 114688, no sign") {
  CHECK(e5m3_encode(1.0625f) == 0x78);                 // tie between 1 and 1.125 -> 1
  CHECK(e5m3_encode(1.1875f) == 0x7A);                 // tie between 1.125 and 1.25 -> 1.25
  CHECK(e5m3_encode(std::ldexp(1.5f, -17)) == 0x02);   // subnormal tie -> even (2)
  CHECK(e5m3_encode(std::ldexp(1.0f, -18)) == 0x00);   // half the smallest subnormal -> 0
  CHECK(e5m3_encode(std::ldexp(1.01f, -18)) == 0x01);  // just above it -> 2^-17
  CHECK(e5m3_encode(std::ldexp(15.5f, -18)) == 0x08);  // 7.75 * 2^-17 rounds up to 2^-14
  CHECK(e5m3_encode(120000.0f) == 0xFE);               // clamped: never the NaN code 0xFF
  CHECK(e5m3_encode(1e30f) == 0xFE);
  CHECK(e5m3_encode(-3.0f) == 0x00);  // clamp(min = 0)
  CHECK(e5m3_encode(-0.0f) == 0x00);
  // Against the definition (nearest value, ties to the even code) on random positive floats.
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> ex(-20.0f, 17.5f);
  for (int k = 0; k < 20000; ++k) {
    const float y = std::exp2(ex(rng));
    const uint8_t c = e5m3_encode(y);
    const double d = std::fabs(static_cast<double>(e5m3_decode(c)) - y);
    const double lo = c > 0 ? std::fabs(static_cast<double>(e5m3_decode(c - 1)) - y) : 1e300;
    const double hi = c < 0xFE ? std::fabs(static_cast<double>(e5m3_decode(c + 1)) - y) : 1e300;
    CAPTURE(y);
    CHECK(d <= lo);
    if (y <= 114688.0f) CHECK(d <= hi);
  }
}

TEST_CASE("a zero fp8 block scale makes the elements divide by EPS while the byte stays 0") {
  // Block amax 2^-10 * 6 under a global scale of 1: s = 2^-10 is an fp8 tie to 0.
  const nvfp4_block_scale bs = nvfp4_scale_of_block(std::ldexp(6.0f, -10), 1.0f);
  CHECK(bs.byte == 0x00);
  CHECK(bs.divisor == k_eps());
  const amdfp4_block_scale as = amdfp4_global_scale_of_block(0.0f, 1.0f);
  CHECK(as.code == 0x00);  // EPS / 1 is below E5M3's smallest half-step
  CHECK(as.divisor == k_eps());
}
