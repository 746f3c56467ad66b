// Tests of the scalar math headers against the tables of formats.md §12.1-§12.5, plus exhaustive
// checks of the bit-trick converters against slow, obviously-correct definitions.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>

#include "kernels/fp8.h"
#include "kernels/int_quant.h"
#include "kernels/mx.h"
#include "kernels/numeric.h"
#include "kernels/recover.h"

using namespace shardquant;

namespace {

float fb(uint32_t u) {
  return f32_from_bits(u);
}

// Slow reference: nearest value of a finite grid `vals` (ascending, non-negative) to |y|, ties to
// the entry with an even index (= even mantissa for these grids), returns the index.
int nearest_even_index(double a, const double* vals, int n) {
  if (a >= vals[n - 1]) return n - 1;
  for (int i = 0; i + 1 < n; ++i) {
    if (a <= vals[i + 1]) {
      const double d0 = a - vals[i], d1 = vals[i + 1] - a;
      if (d0 < d1) return i;
      if (d1 < d0) return i + 1;
      return (i % 2 == 0) ? i : i + 1;
    }
  }
  return n - 1;
}

}  // namespace

TEST_CASE("round half even to integer matches the examples of formats.md 12.1") {
  const float in[] = {2.5f, 3.5f, -2.5f, -0.5f, 7.5f, -7.5f, 127.5f, 0.49999997f, 1e30f, -3.2f};
  const float out[] = {2.f, 4.f, -2.f, 0.f, 8.f, -8.f, 128.f, 0.f, 1e30f, -3.f};
  for (size_t i = 0; i < sizeof in / sizeof in[0]; ++i) CHECK(rne_f(in[i]) == out[i]);
  CHECK(rne_clamp_i(127.5f, -128, 127) == 127);
  CHECK(rne_clamp_i(-127.5f, -128, 127) == -128);
  CHECK(rne_clamp_i(1e30f, -8, 7) == 7);
  CHECK(rne_clamp_i(-1e30f, -8, 7) == -8);
}

TEST_CASE("to_bf16_rne matches the table of formats.md 12.2") {
  CHECK(to_bf16_rne(fb(0x3B1B6DB7)) == 0x3B1B);
  CHECK(to_bf16_rne(fb(0x3E088889)) == 0x3E09);
  CHECK(to_bf16_rne(fb(0x3F808000)) == 0x3F80);
  CHECK(to_bf16_rne(fb(0x3F818000)) == 0x3F82);
  CHECK(to_bf16_rne(fb(0x7F7FFFFF)) == 0x7F80);
  CHECK(to_bf16_rne(fb(0x00018000)) == 0x0002);
  CHECK(to_bf16_rne(fb(0x80000000)) == 0x8000);
  CHECK(to_bf16_rne(fb(0x7FC00001)) == 0x7FC0);
}

TEST_CASE("to_f16_rne equals an exact double-based rounding on a dense sweep of fp32") {
  // Every 97th fp32 pattern plus all patterns around the f16 subnormal/normal/overflow edges.
  auto slow = [](float x) -> uint16_t {
    const double a = std::fabs(static_cast<double>(x));
    const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    if (std::isnan(x)) return sign | 0x7E00;
    if (a >= 65520.0) return sign | 0x7C00;
    // Candidates: scan exponents; f16 value = m * 2^(e) with integer m.
    int ex0;
    std::frexp(a, &ex0);  // a = fr * 2^ex0, fr in [0.5, 1): floor(log2 a) = ex0 - 1
    int e = a < std::ldexp(1.0, -14) ? -24 : ex0 - 1 - 10;
    if (e < -24) e = -24;
    const double step = std::ldexp(1.0, e);
    double q = a / step;
    double fl = std::floor(q);
    double r = q - fl;
    double m = r > 0.5 ? fl + 1 : (r < 0.5 ? fl : (std::fmod(fl, 2.0) == 0 ? fl : fl + 1));
    const double v = m * step;
    // Encode v exactly.
    if (v == 0) return sign;
    if (v < std::ldexp(1.0, -14)) return sign | static_cast<uint16_t>(v / std::ldexp(1.0, -24));
    int ex;
    std::frexp(v, &ex);
    ex -= 1;
    const double mant = v / std::ldexp(1.0, ex) - 1.0;
    return sign | static_cast<uint16_t>(((ex + 15) << 10) | static_cast<int>(mant * 1024));
  };
  int bad = 0;
  auto check = [&](uint32_t u) {
    const float x = fb(u);
    if (to_f16_rne(x) != slow(x) && bad++ < 5)
      std::printf("f16 mismatch for %08X: %04X vs %04X\n", u, to_f16_rne(x), slow(x));
    if (!std::isnan(x)) {
      const uint16_t h = to_f16_rne(x);
      const float back = f16_to_f32(h);
      if ((h & 0x7C00) != 0x7C00 &&
          std::fabs(static_cast<double>(back) - x) >
              std::ldexp(std::fabs(static_cast<double>(back)), -11) + std::ldexp(1.0, -25) &&
          bad++ < 5)
        std::printf("f16 round trip too far for %08X\n", u);
    }
  };
  for (uint64_t u = 0; u < 0x100000000ull; u += 97) check(static_cast<uint32_t>(u));
  for (uint32_t base :
       {0x33000000u, 0x33800000u, 0x38800000u, 0x477FE000u, 0x477FF000u, 0x47800000u, 0x3F800000u})
    for (uint32_t d = 0; d < 0x4000; ++d) {
      check(base + d);
      check((base + d) | 0x80000000u);
      check(base - d);
    }
  CHECK(bad == 0);
  CHECK(to_f16_rne(65519.996f) == 0x7BFF);
  CHECK(to_f16_rne(65520.0f) == 0x7C00);
  CHECK(to_f16_rne(-0.0f) == 0x8000);
}

TEST_CASE("f16 and bf16 widening are exact for every 16-bit pattern") {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    const uint32_t em = h & 0x7FFF;
    if (em > 0x7C00) {
      CHECK(std::isnan(f));
      continue;
    }
    double expect;
    if (em == 0x7C00)
      expect = INFINITY;
    else if (em < 0x400)
      expect = std::ldexp(static_cast<double>(em), -24);
    else
      expect = std::ldexp(1.0 + (em & 0x3FF) / 1024.0, static_cast<int>(em >> 10) - 15);
    if (h & 0x8000) expect = -expect;
    CHECK(static_cast<double>(f) == expect);
    CHECK(std::signbit(f) == ((h & 0x8000) != 0));
    CHECK(to_f16_rne(f) == h);
    if ((h & 0x7F80) != 0x7F80 || (h & 0x7F) == 0) {
      CHECK(to_bf16_rne(bf16_to_f32(static_cast<uint16_t>(h))) == h);
    }
  }
}

TEST_CASE("fp8 e4m3fn encoding matches the table of formats.md 12.3") {
  CHECK(fp8_e4m3fn_encode(448.f) == 0x7E);
  CHECK(fp8_e4m3fn_encode(3.625f) == 0x46);
  CHECK(fp8_e4m3fn_encode(3.875f) == 0x48);
  CHECK(fp8_e4m3fn_encode(17.f) == 0x58);
  CHECK(fp8_e4m3fn_encode(std::ldexp(2.5f, -9)) == 0x02);
  CHECK(fp8_e4m3fn_encode(std::ldexp(0.5f, -9)) == 0x00);
  CHECK(fp8_e4m3fn_encode(std::ldexp(0.75f, -9)) == 0x01);
  CHECK(fp8_e4m3fn_encode(-0.0f) == 0x80);
  CHECK(fp8_e4m3fn_encode(450.f) == 0x7E);
  CHECK(fp8_e4m3fn_encode(-1e30f) == 0xFE);
  CHECK(fp8_e4m3fn_encode(-1e-30f) == 0x80);
}

TEST_CASE("fp8 e4m3fn encoding is the nearest-even code for every value between codes") {
  // All 126 non-negative finite code values; midpoints and neighbours must encode as the spec says.
  double vals[127];
  for (int c = 0; c < 127; ++c) vals[c] = fp8_e4m3fn_decode(static_cast<uint8_t>(c));
  for (int c = 0; c < 127; ++c) CHECK(fp8_e4m3fn_encode(static_cast<float>(vals[c])) == c);
  int bad = 0;
  for (uint32_t u = 0; u < 0x43E10000u; u += 0x101) {  // every 257th pattern up to past 448
    const float y = fb(u);
    const int expect = nearest_even_index(y, vals, 127);
    if (fp8_e4m3fn_encode(y) != expect && bad++ < 5) std::printf("fp8 %08X\n", u);
    if (fp8_e4m3fn_encode(-y) != (expect | 0x80) && bad++ < 5) std::printf("fp8 -%08X\n", u);
  }
  CHECK(bad == 0);
  CHECK(fp8_e4m3fn_is_nan(0x7F));
  CHECK(fp8_e4m3fn_is_nan(0xFF));
  CHECK(fp8_e5m2_decode(0x3C) == 1.0f);
  CHECK(fp8_e5m2_decode(0x01) == std::ldexp(1.0f, -16));
  CHECK(fp8_e5m2_decode(0xC0) == -2.0f);
  CHECK(fp8_e5m2_is_nan(0x7D));
  CHECK(!fp8_e5m2_is_nan(0x7C));
}

TEST_CASE("quantize_lp codes match the FP4 list and ties of formats.md 12.4") {
  const mx_format f = mx_fp4_e2m1();
  const float v[] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f};
  for (uint32_t c = 0; c < 8; ++c) {
    CHECK(mx_encode_element(v[c], f) == c);
    if (c) CHECK(mx_encode_element(-v[c], f) == (c | 8));
    CHECK(mx_decode_element(c, f) == v[c]);
  }
  CHECK(mx_encode_element(0.25f, f) == 0);
  CHECK(mx_encode_element(0.75f, f) == 2);
  CHECK(mx_encode_element(1.25f, f) == 2);
  CHECK(mx_encode_element(1.75f, f) == 4);
  CHECK(mx_encode_element(2.5f, f) == 4);
  CHECK(mx_encode_element(3.5f, f) == 6);
  CHECK(mx_encode_element(5.f, f) == 6);
  CHECK(mx_encode_element(5.5f, f) == 7);
  CHECK(mx_encode_element(-0.25f, f) == 0);
  CHECK(mx_encode_element(-0.0f, f) == 0);
  CHECK(mx_encode_element(7.f, f) == 7);
  CHECK(mx_encode_element(1e30f, f) == 7);
}

TEST_CASE("quantize_lp codes are the nearest-even grid value for FP4 and both FP6 formats") {
  for (const mx_format f : {mx_fp4_e2m1(), mx_fp6_e2m3(), mx_fp6_e3m2()}) {
    const int n = 1 << (f.ebits + f.mbits);
    double vals[64];
    for (int c = 0; c < n; ++c) vals[c] = mx_decode_element(static_cast<uint32_t>(c), f);
    CHECK(vals[n - 1] == static_cast<double>(fb(f.max_bits)));
    int bad = 0;
    for (uint32_t u = 0; u < 0x42000000u; u += 0x77) {
      const float y = fb(u);
      const uint32_t expect = static_cast<uint32_t>(nearest_even_index(y, vals, n));
      if (mx_encode_element(y, f) != expect && bad++ < 5) std::printf("mx %08X\n", u);
      const uint32_t neg = expect == 0 ? 0 : (expect | static_cast<uint32_t>(n));
      if (mx_encode_element(-y, f) != neg && bad++ < 5) std::printf("mx -%08X\n", u);
    }
    CHECK(bad == 0);
  }
}

TEST_CASE("MX shared exponent and e8m0 byte match the table of formats.md 12.5") {
  auto k_of = [](float a, mx_format f) { return mx_shared_exponent(a, f); };
  CHECK(k_of(6.f, mx_fp4_e2m1()) == 0);
  CHECK(k_of(7.f, mx_fp4_e2m1()) == 1);
  CHECK(k_of(1.75f, mx_fp4_e2m1()) == -1);
  CHECK(k_of(7.5f, mx_fp6_e2m3()) == 0);
  CHECK(k_of(28.f, mx_fp6_e3m2()) == 0);
  CHECK(k_of(0.f, mx_fp6_e3m2()) == -127);
  CHECK(k_of(std::ldexp(1.f, -125), mx_fp4_e2m1()) == -127);
  CHECK(mx_scale_byte(0) == 127);
  CHECK(mx_scale_byte(1) == 128);
  CHECK(mx_scale_byte(-1) == 126);
  CHECK(mx_scale_byte(-127) == 1);
  CHECK(mx_scale_byte(127) == 254);
  CHECK(k_of(fb(0x7F7FFFFF), mx_fp4_e2m1()) == 127);  // rounds up to +Inf
  CHECK(k_of(fb(0x7F7FFFFF), mx_fp6_e3m2()) == 127);
  CHECK(k_of(fb(0x7F000000), mx_fp6_e3m2()) == 123);
  CHECK(f32_bits(mx_scale_divisor(-127)) == 0x003FFFFFu);
  CHECK(f32_bits(mx_scale_divisor(-126)) == 0x00800000u);
  for (int32_t k = -126; k <= 127; ++k) {
    const float s = mx_scale_divisor(k);
    CHECK(static_cast<double>(s) == std::ldexp(1.0, k));
    CHECK(static_cast<double>(mx_scale_reciprocal(k)) == std::ldexp(1.0, -k));
  }
  CHECK(e8m0_decode(0) == std::ldexp(1.0f, -127));
  CHECK(e8m0_decode(127) == 1.0f);
  CHECK(e8m0_decode(254) == std::ldexp(1.0f, 127));
}

TEST_CASE("the R(c) constants are RN32 of the reciprocals") {
  CHECK(k_r448() == static_cast<float>(1.0 / 448.0));
  CHECK(f32_from_bits(k_r127_5_bits) == static_cast<float>(1.0 / 127.5));
  CHECK(k_r7_5() == static_cast<float>(1.0 / 7.5));
  CHECK(k_r15() == static_cast<float>(1.0 / 15.0));
  CHECK(k_eps() == std::ldexp(1.0f, -23));
}

TEST_CASE("int4 nibble packing follows the sequential and the int4_fp8 orders") {
  const int32_t q[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  CHECK(pack_nibbles(q, 8, nibble_order::sequential) == 0x76543210u);
  CHECK(pack_nibbles(q, 8, nibble_order::int4_fp8) == 0x75316420u);
  const int32_t neg[3] = {-8, -1, 7};
  CHECK(pack_nibbles(neg, 3, nibble_order::sequential) == 0x7F8u);
  CHECK(unpack_int4(0x7F8u, 0) == -8);
  CHECK(unpack_int4(0x7F8u, 1) == -1);
  CHECK(unpack_uint4(0x7F8u, 1) == 15);
}

TEST_CASE("compressed-tensors unpacking gives the example of formats.md 12.8") {
  const uint32_t w[1] = {0x76543210u};
  for (uint32_t i = 0; i < 8; ++i) CHECK(ct_packed_value(w, i, 4) == static_cast<int32_t>(i) - 8);
  const uint32_t w8[1] = {0x80FF0001u};
  CHECK(ct_packed_value(w8, 0, 8) == -127);
  CHECK(ct_packed_value(w8, 2, 8) == 127);
  CHECK(ct_packed_value(w8, 3, 8) == 0);
  // 12.8 DeepSeek example: code 0x48 (4.0) times 2^-8.
  CHECK(f32_bits(fp8_dequant_element(fp8_kind::e4m3fn, 0x48, fb(0x3B800000))) == 0x3C800000u);
  fp8_block_geometry g{128, 128, 3392, 27, 56};
  CHECK(fp8_block_scale_row(g, 3400) == 27);
  fp8_block_geometry g2{128, 128, 576, 5, 56};
  CHECK(fp8_block_scale_row(g2, 575) == 4);
}
