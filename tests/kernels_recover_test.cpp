// Recovery (formats.md §7.2.2, §7.3.2): the §12.8 examples, block sizes other than 128, partial
// blocks, presharded chunks, every scale kind, compressed-tensors packing with zero points and
// g_idx, and the fast path equal to the reference byte for byte (seeded random data).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <random>
#include <vector>

#include "kernels/fp8.h"
#include "kernels/recover_tensors.h"

using namespace shardquant;

namespace {

uint32_t bits_of(float x) {
  return f32_bits(x);
}

std::vector<uint8_t> random_fp8(std::mt19937& rng, uint64_t n, fp8_kind k) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) {
    do b = static_cast<uint8_t>(rng());
    while (fp8_is_nan(k, b));
  }
  return v;
}

// Runs both implementations; they must agree byte for byte (poisoned outputs) and succeed.
std::vector<float> both_fp8(const fp8_block_source& s) {
  const uint64_t end = s.row_end == k_all_rows ? s.rows : s.row_end;
  const uint64_t n = (end - s.row_begin) * s.cols;
  std::vector<float> a(n), b(n);
  std::memset(a.data(), 0xCD, n * 4);
  std::memset(b.data(), 0x32, n * 4);
  REQUIRE(reference::recover_fp8_block(s, a.data()).ok());
  REQUIRE(recover_fp8_block(s, b.data()).ok());
  CHECK(std::memcmp(a.data(), b.data(), n * 4) == 0);
  return a;
}

std::vector<float> both_ct(const ct_source& s) {
  const uint64_t end = s.row_end == k_all_rows ? s.rows : s.row_end;
  const uint64_t n = (end - s.row_begin) * s.cols;
  std::vector<float> a(n), b(n);
  std::memset(a.data(), 0xCD, n * 4);
  std::memset(b.data(), 0x32, n * 4);
  const quant_status sa = reference::recover_compressed(s, a.data());
  const quant_status sb = recover_compressed(s, b.data());
  REQUIRE(sa.ok());
  REQUIRE(sb.ok());
  CHECK(std::memcmp(a.data(), b.data(), n * 4) == 0);
  return a;
}

}  // namespace

TEST_CASE("DeepSeek FP8 example of formats.md 12.8: row 575 col 7000 uses scale [4][54]") {
  std::mt19937 rng(1);
  fp8_block_source s;
  s.rows = 576;
  s.cols = 7168;
  std::vector<uint8_t> w = random_fp8(rng, s.rows * s.cols, fp8_kind::e4m3fn);
  w[575 * 7168 + 7000] = 0x48;
  std::vector<float> sc(5 * 56);
  for (auto& x : sc) x = std::ldexp(1.0f + (rng() % 100) / 128.0f, -static_cast<int>(rng() % 12));
  sc[4 * 56 + 54] = f32_from_bits(0x3B800000);
  s.weight = w.data();
  s.scale = sc.data();
  s.scale_rows = 5;
  s.scale_cols = 56;
  CHECK(check_fp8_block(s).empty());
  const std::vector<float> out = both_fp8(s);
  CHECK(bits_of(out[575 * 7168 + 7000]) == 0x3C800000u);
  // Every element is RN32(fp8 * the scale of its block).
  for (uint64_t r : {0ull, 127ull, 128ull, 575ull})
    for (uint64_t c : {0ull, 127ull, 128ull, 7167ull})
      CHECK(out[r * 7168 + c] == fp8_e4m3fn_decode(w[r * 7168 + c]) * sc[(r / 128) * 56 + c / 128]);
  // A wrong scale shape is an error that names the expected shape.
  s.scale_cols = 55;
  CHECK(check_fp8_block(s).find("expected [5, 56]") != std::string::npos);
}

TEST_CASE("presharded FP8 chunks: row 3400 of 3392-row chunks uses scale row 27") {
  std::mt19937 rng(2);
  fp8_block_source s;
  s.rows = 2 * 3392;
  s.cols = 200;  // partial column block (bw = 128)
  s.chunk_rows = 3392;
  s.scale_rows = 2 * 27;
  s.scale_cols = 2;
  std::vector<uint8_t> w = random_fp8(rng, s.rows * s.cols, fp8_kind::e4m3fn);
  std::vector<float> sc(s.scale_rows * s.scale_cols);
  for (size_t i = 0; i < sc.size(); ++i) sc[i] = static_cast<float>(i + 1) / 64.0f;
  s.weight = w.data();
  s.scale = sc.data();
  REQUIRE(check_fp8_block(s).empty());
  const std::vector<float> out = both_fp8(s);
  for (uint64_t c : {0ull, 150ull})
    CHECK(out[3400 * 200 + c] == fp8_e4m3fn_decode(w[3400 * 200 + c]) * sc[27 * 2 + c / 128]);
  // Row 3391 is the last of chunk 0: scale row 26 (3391 div 128).
  CHECK(out[3391 * 200] == fp8_e4m3fn_decode(w[3391 * 200]) * sc[26 * 2]);
  s.chunk_rows = 3391;
  CHECK(!check_fp8_block(s).empty());
}

TEST_CASE("FP8 block recovery with other block sizes, every scale dtype, e5m2 and row ranges") {
  for (uint32_t seed = 10; seed < 40; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    fp8_block_source s;
    s.rows = 1 + rng() % 300;
    s.cols = 1 + rng() % 300;
    s.block_rows = 1 + rng() % 140;
    s.block_cols = 1 + rng() % 140;
    s.weight_kind = rng() % 3 == 0 ? fp8_kind::e5m2 : fp8_kind::e4m3fn;
    s.scale_type = static_cast<scale_kind>(rng() % 4);
    s.scale_rows = (s.rows + s.block_rows - 1) / s.block_rows;
    s.scale_cols = (s.cols + s.block_cols - 1) / s.block_cols;
    std::vector<uint8_t> w = random_fp8(rng, s.rows * s.cols, s.weight_kind);
    std::vector<uint8_t> sc(s.scale_rows * s.scale_cols * 4);
    for (uint64_t i = 0; i < s.scale_rows * s.scale_cols; ++i) {
      switch (s.scale_type) {
        case scale_kind::f32: {
          const float x =
              std::ldexp(static_cast<float>(rng() % 1000 + 1), -static_cast<int>(rng() % 140));
          std::memcpy(&sc[4 * i], &x, 4);
          break;
        }
        case scale_kind::bf16:
        case scale_kind::f16: {
          const uint16_t h = static_cast<uint16_t>(rng() % 0x7800);
          std::memcpy(&sc[2 * i], &h, 2);
          break;
        }
        case scale_kind::e8m0:
          sc[i] = static_cast<uint8_t>(rng() % 255);
          break;
        case scale_kind::e4m3:  // FP4 sources only (kernels_recover_fp4_test); not drawn here
          break;
      }
    }
    s.weight = w.data();
    s.scale = sc.data();
    REQUIRE(check_fp8_block(s).empty());
    const std::vector<float> whole = both_fp8(s);
    for (uint64_t i = 0; i < s.rows * s.cols; i += 7) {
      const uint64_t r = i / s.cols, c = i % s.cols;
      const float scale =
          load_scale(s.scale_type, sc.data(), (r / s.block_rows) * s.scale_cols + c / s.block_cols);
      CHECK(bits_of(whole[i]) == bits_of(fp8_decode(s.weight_kind, w[i]) * scale));
    }
    // A row range gives the same rows.
    fp8_block_source part = s;
    part.row_begin = s.rows / 3;
    part.row_end = s.rows / 3 + 1 + (s.rows - s.rows / 3 - 1) / 2;
    part.weight = w.data() + part.row_begin * s.cols;
    const std::vector<float> p = both_fp8(part);
    CHECK(std::memcmp(p.data(), whole.data() + part.row_begin * s.cols, p.size() * 4) == 0);
  }
}

TEST_CASE("FP8 recovery reports NaN codes and e8m0 NaN scales with their first index") {
  std::vector<uint8_t> w(4 * 10, 0x38);
  w[2 * 10 + 3] = 0x7F;
  w[3 * 10 + 1] = 0xFF;
  std::vector<uint8_t> sc = {127, 127};
  fp8_block_source s;
  s.rows = 4;
  s.cols = 10;
  s.block_rows = 2;
  s.block_cols = 16;
  s.scale_type = scale_kind::e8m0;
  s.scale_rows = 2;
  s.scale_cols = 1;
  s.weight = w.data();
  s.scale = sc.data();
  std::vector<float> out(40);
  for (auto f : {&reference::recover_fp8_block, &recover_fp8_block}) {
    quant_status st = f(s, out.data());
    CHECK(st.what == quant_status::code::non_finite_input);
    CHECK(st.index == 23);
  }
  sc[1] = 0xFF;
  for (auto f : {&reference::recover_fp8_block, &recover_fp8_block}) {
    quant_status st = f(s, out.data());
    CHECK(st.what == quant_status::code::bad_scale);
    CHECK(st.index == 1);
  }
}

namespace {

// Independent packer: values v (signed, range of b bits) of a row, stored as v + 2^(b-1).
std::vector<uint32_t> pack_line(const std::vector<int32_t>& v, uint32_t b) {
  std::vector<uint32_t> w((v.size() * b + 31) / 32, 0);
  for (size_t i = 0; i < v.size(); ++i) {
    const uint32_t stored = static_cast<uint32_t>(v[i] + (1 << (b - 1)));
    w[i * b / 32] |= stored << (i * b % 32);
  }
  return w;
}

}  // namespace

TEST_CASE("compressed-tensors example of formats.md 12.8: word 0x76543210 holds -8..-1") {
  const uint32_t word = 0x76543210u;
  const float scale = 0.5f;
  ct_source s;
  s.rows = 1;
  s.cols = 8;
  s.bits = 4;
  s.weight = &word;
  s.scale = &scale;
  s.strategy = ct_strategy::tensor;
  const std::vector<float> out = both_ct(s);
  for (int i = 0; i < 8; ++i) CHECK(out[i] == (i - 8) * 0.5f);
}

TEST_CASE("compressed-tensors pack-quantized int4/int8 with zero points along dim 0 and g_idx") {
  for (uint32_t seed = 100; seed < 140; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    ct_source s;
    s.bits = rng() % 2 ? 4 : 8;
    s.rows = 1 + rng() % 40;
    const uint64_t g = s.bits == 4 ? 8 : 16;
    s.cols = g * (1 + rng() % 6) + (rng() % 2 ? 0 : 3);  // sometimes a partial last word
    s.strategy = rng() % 2 ? ct_strategy::group : ct_strategy::channel;
    s.group_size = g;
    s.groups = s.strategy == ct_strategy::group ? (s.cols + g - 1) / g : 1;
    const bool asym = rng() % 2;
    const bool use_gidx = s.strategy == ct_strategy::group && rng() % 2;
    const int32_t lo = -(1 << (s.bits - 1)), span = 1 << s.bits;
    std::vector<std::vector<int32_t>> q(s.rows, std::vector<int32_t>(s.cols));
    std::vector<uint32_t> packed;
    for (auto& row : q) {
      for (auto& x : row) x = lo + static_cast<int32_t>(rng() % span);
      const std::vector<uint32_t> p = pack_line(row, s.bits);
      packed.insert(packed.end(), p.begin(), p.end());
    }
    std::vector<int32_t> gidx(s.cols);
    for (uint64_t j = 0; j < s.cols; ++j)
      gidx[j] = use_gidx ? static_cast<int32_t>(rng() % s.groups) : static_cast<int32_t>(j / g);
    std::vector<uint16_t> sc(s.rows * s.groups);
    for (auto& x : sc) x = to_bf16_rne(std::ldexp(1.0f + (rng() % 128) / 128.0f, -int(rng() % 10)));
    // Zero points [out, G] packed down each column into [ceil(out*b/32), G].
    std::vector<std::vector<int32_t>> zp(s.rows, std::vector<int32_t>(s.groups, 0));
    std::vector<uint32_t> zpk(((s.rows * s.bits + 31) / 32) * s.groups, 0);
    if (asym) {
      for (uint64_t gg = 0; gg < s.groups; ++gg) {
        std::vector<int32_t> col(s.rows);
        for (uint64_t o = 0; o < s.rows; ++o) col[o] = zp[o][gg] = lo + int32_t(rng() % span);
        const std::vector<uint32_t> p = pack_line(col, s.bits);
        for (size_t k = 0; k < p.size(); ++k) zpk[k * s.groups + gg] = p[k];
      }
      s.zero_point = zpk.data();
    }
    s.weight = packed.data();
    s.scale_type = scale_kind::bf16;
    s.scale = sc.data();
    s.g_idx = use_gidx ? gidx.data() : nullptr;
    REQUIRE(check_compressed(s) == "");
    const std::vector<float> out = both_ct(s);
    int bad = 0;
    for (uint64_t o = 0; o < s.rows; ++o)
      for (uint64_t j = 0; j < s.cols; ++j) {
        const uint64_t gj = s.strategy == ct_strategy::group ? gidx[j] : 0;
        const float sv = bf16_to_f32(sc[o * s.groups + gj]);
        const float expect = static_cast<float>(q[o][j] - zp[o][gj]) * sv;
        if (bits_of(out[o * s.cols + j]) != bits_of(expect)) ++bad;
      }
    CHECK(bad == 0);
    // Row range equals the whole.
    if (s.rows > 2) {
      ct_source part = s;
      part.row_begin = 1;
      part.row_end = s.rows - 1;
      part.weight = packed.data() + (s.cols * s.bits + 31) / 32;
      const std::vector<float> p = both_ct(part);
      CHECK(std::memcmp(p.data(), out.data() + s.cols, p.size() * 4) == 0);
    }
  }
}

TEST_CASE("compressed-tensors float-quantized and int-quantized for every strategy") {
  for (uint32_t seed = 200; seed < 240; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    ct_source s;
    s.layout = rng() % 2 ? ct_layout::float_quantized : ct_layout::int_quantized;
    s.rows = 1 + rng() % 50;
    s.cols = 1 + rng() % 70;
    s.strategy = static_cast<ct_strategy>(rng() % 4);
    s.group_size = 1 + rng() % 16;
    s.groups = (s.cols + s.group_size - 1) / s.group_size;
    s.block_rows = 1 + rng() % 20;
    s.block_cols = 1 + rng() % 20;
    uint64_t nscale = 1;
    if (s.strategy == ct_strategy::channel) nscale = s.rows;
    if (s.strategy == ct_strategy::group) nscale = s.rows * s.groups;
    if (s.strategy == ct_strategy::block)
      nscale = ((s.rows + s.block_rows - 1) / s.block_rows) *
               ((s.cols + s.block_cols - 1) / s.block_cols);
    std::vector<float> sc(nscale);
    for (auto& x : sc) x = std::ldexp(static_cast<float>(rng() % 4000 + 1), -int(rng() % 30));
    s.scale = sc.data();
    std::vector<uint8_t> w(s.rows * s.cols);
    if (s.layout == ct_layout::float_quantized)
      w = random_fp8(rng, w.size(), fp8_kind::e4m3fn);
    else
      for (auto& b : w) b = static_cast<uint8_t>(rng());
    s.weight = w.data();
    std::vector<int8_t> zp(nscale);
    const bool asym = s.layout == ct_layout::int_quantized &&
                      (s.strategy == ct_strategy::channel || s.strategy == ct_strategy::group) &&
                      rng() % 2;
    if (asym) {
      for (auto& z : zp) z = static_cast<int8_t>(rng() % 256 - 128);
      s.zero_point = zp.data();
      s.zero_point_type = dtype::i8;
    }
    REQUIRE(check_compressed(s) == "");
    const std::vector<float> out = both_ct(s);
    int bad = 0;
    for (uint64_t o = 0; o < s.rows; ++o)
      for (uint64_t j = 0; j < s.cols; ++j) {
        uint64_t si = 0;
        if (s.strategy == ct_strategy::channel) si = o;
        if (s.strategy == ct_strategy::group) si = o * s.groups + j / s.group_size;
        if (s.strategy == ct_strategy::block)
          si = (o / s.block_rows) * ((s.cols + s.block_cols - 1) / s.block_cols) + j / s.block_cols;
        const uint8_t q = w[o * s.cols + j];
        const float expect =
            s.layout == ct_layout::float_quantized
                ? fp8_e4m3fn_decode(q) * sc[si]
                : static_cast<float>(static_cast<int8_t>(q) - (asym ? zp[si] : 0)) * sc[si];
        if (bits_of(out[o * s.cols + j]) != bits_of(expect)) ++bad;
      }
    CHECK(bad == 0);
  }
}

TEST_CASE("compressed-tensors errors: bad g_idx, NaN codes, bad arguments") {
  const uint32_t word = 0x76543210u;
  const float scale[2] = {1.0f, 2.0f};
  const int32_t gidx[8] = {0, 0, 1, 1, 0, 2, 1, 1};
  ct_source s;
  s.rows = 1;
  s.cols = 8;
  s.weight = &word;
  s.scale = scale;
  s.strategy = ct_strategy::group;
  s.group_size = 4;
  s.groups = 2;
  s.g_idx = gidx;
  std::vector<float> out(8);
  for (auto f : {&reference::recover_compressed, &recover_compressed}) {
    const quant_status st = f(s, out.data());
    CHECK(st.what == quant_status::code::bad_scale);
    CHECK(st.index == 5);
  }
  const uint8_t fw[4] = {0x38, 0x38, 0xFF, 0x7F};
  ct_source f8;
  f8.layout = ct_layout::float_quantized;
  f8.rows = 2;
  f8.cols = 2;
  f8.weight = fw;
  f8.scale = scale;
  f8.strategy = ct_strategy::tensor;
  for (auto f : {&reference::recover_compressed, &recover_compressed}) {
    const quant_status st = f(f8, out.data());
    CHECK(st.what == quant_status::code::non_finite_input);
    CHECK(st.index == 2);
  }
  s.bits = 5;
  CHECK(!check_compressed(s).empty());
  CHECK(recover_compressed(s, out.data()).what == quant_status::code::bad_argument);
}

TEST_CASE("dtype to recovery operand kinds") {
  CHECK(scale_kind_of(dtype::f8_e8m0) == scale_kind::e8m0);
  CHECK(scale_kind_of(dtype::bf16) == scale_kind::bf16);
  CHECK(!scale_kind_of(dtype::i32).has_value());
  CHECK(fp8_kind_of(dtype::f8_e5m2) == fp8_kind::e5m2);
  CHECK(!fp8_kind_of(dtype::f8_e4m3fnuz).has_value());
}
