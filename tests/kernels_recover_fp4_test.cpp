// FP4-packed source recovery (kernels/FORMATS-fp4-sources.md): golden vectors made by
// compressed-tensors 0.20.1's NVFP4PackedCompressor / MXFP4PackedCompressor.decompress on the CPU
// (the calls Quark 0.13 makes, weight_scale widened to F32 first), the DeepSeek-V4 F16 rule traced
// from Quark's dq_uint8_mxfp4_to_half, the fast path equal to the reference byte for byte, and the
// errors for NaN scale codes and bad arguments.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/recover_tensors.h"

using namespace shardquant;

namespace {

// Two rows of 32 codes: row 0 = j % 16, row 1 = 15 - j % 16 (every code in both nibbles).
std::vector<uint8_t> golden_packed() {
  std::vector<uint8_t> p(32);
  for (int r = 0; r < 2; ++r)
    for (int k = 0; k < 16; ++k) {
      const int lo = r == 0 ? (2 * k) % 16 : 15 - (2 * k) % 16;
      const int hi = r == 0 ? (2 * k + 1) % 16 : 15 - (2 * k + 1) % 16;
      p[r * 16 + k] = static_cast<uint8_t>(lo | (hi << 4));
    }
  return p;
}

ct_source fp4_source(ct_layout l, const std::vector<uint8_t>& w, uint64_t rows, uint64_t cols,
                     const void* scale, scale_kind sk) {
  ct_source s;
  s.layout = l;
  s.rows = rows;
  s.cols = cols;
  s.weight = w.data();
  s.scale = scale;
  s.scale_type = sk;
  s.strategy = ct_strategy::group;
  s.group_size = l == ct_layout::nvfp4_packed ? 16 : 32;
  s.groups = cols / s.group_size;
  return s;
}

// Both implementations, poisoned outputs, must agree byte for byte.
std::vector<float> both(const ct_source& s) {
  const uint64_t end = s.row_end == k_all_rows ? s.rows : s.row_end;
  const uint64_t n = (end - s.row_begin) * s.cols;
  std::vector<float> a(n), b(n);
  std::memset(a.data(), 0xCD, n * 4);
  std::memset(b.data(), 0x32, n * 4);
  REQUIRE(reference::recover_compressed(s, a.data()).ok());
  REQUIRE(recover_compressed(s, b.data()).ok());
  CHECK(std::memcmp(a.data(), b.data(), n * 4) == 0);
  return a;
}

std::vector<uint16_t> bf16_bits(const std::vector<float>& v) {
  std::vector<uint16_t> o;
  for (float x : v) {
    const uint32_t u = f32_bits(x);
    CHECK((u & 0xFFFFu) == 0);  // exactly a bf16 value
    o.push_back(static_cast<uint16_t>(u >> 16));
  }
  return o;
}

struct nv_case {
  uint8_t scales[4];  // [2, 2] F8_E4M3
  uint32_t global_scale;
  uint16_t out[64];  // bf16 bits
};
// nvfp4: scale 448 and a subnormal scale (0x01 = 2^-9); a zero block scale; global scales 3,
// 0.1, 2^-100 (effective scales overflow to +-Inf in bf16) and 2.688e33 (bf16 subnormals).
const nv_case k_nv[] = {
    {{0x7E, 0x01, 0x00, 0x55},
     0x40400000u,
     {0x0000, 0x4295, 0x4315, 0x4360, 0x4395, 0x43E0, 0x4415, 0x4460, 0x8000, 0xC295, 0xC315,
      0xC360, 0xC395, 0xC3E0, 0xC415, 0xC460, 0x0000, 0x39AB, 0x3A2B, 0x3A80, 0x3AAB, 0x3B00,
      0x3B2B, 0x3B80, 0x8000, 0xB9AB, 0xBA2B, 0xBA80, 0xBAAB, 0xBB00, 0xBB2B, 0xBB80, 0x8000,
      0x8000, 0x8000, 0x8000, 0x8000, 0x8000, 0x8000, 0x8000, 0x0000, 0x0000, 0x0000, 0x0000,
      0x0000, 0x0000, 0x0000, 0x0000, 0xC1D0, 0xC18B, 0xC150, 0xC10B, 0xC0D0, 0xC08B, 0xC00B,
      0x8000, 0x41D0, 0x418B, 0x4150, 0x410B, 0x40D0, 0x408B, 0x400B, 0x0000}},
    {{0x7E, 0x01, 0x00, 0x55},
     0x3DCCCCCDu,
     {0x0000, 0x450C, 0x458C, 0x45D2, 0x460C, 0x4652, 0x468C, 0x46D2, 0x8000, 0xC50C, 0xC58C,
      0xC5D2, 0xC60C, 0xC652, 0xC68C, 0xC6D2, 0x0000, 0x3C20, 0x3CA0, 0x3CF0, 0x3D20, 0x3D70,
      0x3DA0, 0x3DF0, 0x8000, 0xBC20, 0xBCA0, 0xBCF0, 0xBD20, 0xBD70, 0xBDA0, 0xBDF0, 0x8000,
      0x8000, 0x8000, 0x8000, 0x8000, 0x8000, 0x8000, 0x8000, 0x0000, 0x0000, 0x0000, 0x0000,
      0x0000, 0x0000, 0x0000, 0x0000, 0xC443, 0xC402, 0xC3C3, 0xC382, 0xC343, 0xC302, 0xC282,
      0x8000, 0x4443, 0x4402, 0x43C3, 0x4382, 0x4343, 0x4302, 0x4282, 0x0000}},
    {{0x7E, 0x7E, 0x08, 0x30},
     0x0D800000u,
     {0x0000, 0x7560, 0x75E0, 0x7628, 0x7660, 0x76A8, 0x76E0, 0x7728, 0x8000, 0xF560, 0xF5E0,
      0xF628, 0xF660, 0xF6A8, 0xF6E0, 0xF728, 0x0000, 0x7560, 0x75E0, 0x7628, 0x7660, 0x76A8,
      0x76E0, 0x7728, 0x8000, 0xF560, 0xF5E0, 0xF628, 0xF660, 0xF6A8, 0xF6E0, 0xF728, 0xEFC0,
      0xEF80, 0xEF40, 0xEF00, 0xEEC0, 0xEE80, 0xEE00, 0x8000, 0x6FC0, 0x6F80, 0x6F40, 0x6F00,
      0x6EC0, 0x6E80, 0x6E00, 0x0000, 0xF240, 0xF200, 0xF1C0, 0xF180, 0xF140, 0xF100, 0xF080,
      0x8000, 0x7240, 0x7200, 0x71C0, 0x7180, 0x7140, 0x7100, 0x7080, 0x0000}},
    {{0x7E, 0x7E, 0x08, 0x30},
     0x77048754u,
     {0x0000, 0x0BD8, 0x0C58, 0x0CA2, 0x0CD8, 0x0D22, 0x0D58, 0x0DA2, 0x8000, 0x8BD8, 0x8C58,
      0x8CA2, 0x8CD8, 0x8D22, 0x8D58, 0x8DA2, 0x0000, 0x0BD8, 0x0C58, 0x0CA2, 0x0CD8, 0x0D22,
      0x0D58, 0x0DA2, 0x8000, 0x8BD8, 0x8C58, 0x8CA2, 0x8CD8, 0x8D22, 0x8D58, 0x8DA2, 0x8639,
      0x85F7, 0x85B9, 0x8577, 0x8539, 0x84F7, 0x8477, 0x8000, 0x0639, 0x05F7, 0x05B9, 0x0577,
      0x0539, 0x04F7, 0x0477, 0x0000, 0x88B9, 0x8877, 0x8839, 0x87F7, 0x87B9, 0x8777, 0x86F7,
      0x8000, 0x08B9, 0x0877, 0x0839, 0x07F7, 0x07B9, 0x0777, 0x06F7, 0x0000}}};

struct mx_case {
  uint8_t scales[2];  // [2, 1] E8M0
  uint16_t out[64];
};
// mxfp4: 2^0 and 2^-127 (bf16 subnormals), 2^127 (+-Inf beyond 1.5 * 2^127) and 2^-126, others.
const mx_case k_mx[] = {
    {{127, 0},
     {0x0000, 0x3F00, 0x3F80, 0x3FC0, 0x4000, 0x4040, 0x4080, 0x40C0, 0x8000, 0xBF00, 0xBF80,
      0xBFC0, 0xC000, 0xC040, 0xC080, 0xC0C0, 0x0000, 0x3F00, 0x3F80, 0x3FC0, 0x4000, 0x4040,
      0x4080, 0x40C0, 0x8000, 0xBF00, 0xBF80, 0xBFC0, 0xC000, 0xC040, 0xC080, 0xC0C0, 0x8140,
      0x8100, 0x80C0, 0x8080, 0x8060, 0x8040, 0x8020, 0x8000, 0x0140, 0x0100, 0x00C0, 0x0080,
      0x0060, 0x0040, 0x0020, 0x0000, 0x8140, 0x8100, 0x80C0, 0x8080, 0x8060, 0x8040, 0x8020,
      0x8000, 0x0140, 0x0100, 0x00C0, 0x0080, 0x0060, 0x0040, 0x0020, 0x0000}},
    {{254, 1},
     {0x0000, 0x7E80, 0x7F00, 0x7F40, 0x7F80, 0x7F80, 0x7F80, 0x7F80, 0x8000, 0xFE80, 0xFF00,
      0xFF40, 0xFF80, 0xFF80, 0xFF80, 0xFF80, 0x0000, 0x7E80, 0x7F00, 0x7F40, 0x7F80, 0x7F80,
      0x7F80, 0x7F80, 0x8000, 0xFE80, 0xFF00, 0xFF40, 0xFF80, 0xFF80, 0xFF80, 0xFF80, 0x81C0,
      0x8180, 0x8140, 0x8100, 0x80C0, 0x8080, 0x8040, 0x8000, 0x01C0, 0x0180, 0x0140, 0x0100,
      0x00C0, 0x0080, 0x0040, 0x0000, 0x81C0, 0x8180, 0x8140, 0x8100, 0x80C0, 0x8080, 0x8040,
      0x8000, 0x01C0, 0x0180, 0x0140, 0x0100, 0x00C0, 0x0080, 0x0040, 0x0000}},
    {{200, 60},
     {0x0000, 0x6380, 0x6400, 0x6440, 0x6480, 0x64C0, 0x6500, 0x6540, 0x8000, 0xE380, 0xE400,
      0xE440, 0xE480, 0xE4C0, 0xE500, 0xE540, 0x0000, 0x6380, 0x6400, 0x6440, 0x6480, 0x64C0,
      0x6500, 0x6540, 0x8000, 0xE380, 0xE400, 0xE440, 0xE480, 0xE4C0, 0xE500, 0xE540, 0x9F40,
      0x9F00, 0x9EC0, 0x9E80, 0x9E40, 0x9E00, 0x9D80, 0x8000, 0x1F40, 0x1F00, 0x1EC0, 0x1E80,
      0x1E40, 0x1E00, 0x1D80, 0x0000, 0x9F40, 0x9F00, 0x9EC0, 0x9E80, 0x9E40, 0x9E00, 0x9D80,
      0x8000, 0x1F40, 0x1F00, 0x1EC0, 0x1E80, 0x1E40, 0x1E00, 0x1D80, 0x0000}}};

}  // namespace

TEST_CASE("nvfp4-pack-quantized golden vectors equal compressed-tensors 0.20.1 bit for bit") {
  const std::vector<uint8_t> w = golden_packed();
  for (const auto& c : k_nv) {
    INFO("global scale bits " << c.global_scale);
    ct_source s = fp4_source(ct_layout::nvfp4_packed, w, 2, 32, c.scales, scale_kind::e4m3);
    s.global_scale = f32_from_bits(c.global_scale);
    const std::vector<uint16_t> got = bf16_bits(both(s));
    CHECK(std::memcmp(got.data(), c.out, sizeof c.out) == 0);
    // The same scales stored as F32 (Quark widens F8_E4M3 to F32 first): same values.
    std::vector<float> f(4);
    for (int i = 0; i < 4; ++i) f[i] = fp8_e4m3fn_decode(c.scales[i]);
    ct_source s32 = s;
    s32.scale = f.data();
    s32.scale_type = scale_kind::f32;
    CHECK(bf16_bits(both(s32)) == got);
  }
}

TEST_CASE("nvfp4 F32 block scales are rounded to bf16 before the division by the global scale") {
  // 1.5 * bf16(0x3F808001) = 1.5 * 0x3F810000 = 1.51171875, a bf16 tie -> 0x3FC2; without the
  // scale rounding 1.5 * 1.0039064 -> 0x3FC1. Checked with torch 2.11 (compressed-tensors' steps).
  const std::vector<uint8_t> w(8, 0x33);  // code 3 = 1.5
  const float sc[1] = {f32_from_bits(0x3F808001u)};
  ct_source s = fp4_source(ct_layout::nvfp4_packed, w, 1, 16, sc, scale_kind::f32);
  s.global_scale = 1.0f;
  const std::vector<float> v = both(s);
  CHECK(f32_bits(v[0]) == 0x3FC20000u);
}

TEST_CASE("mxfp4-pack-quantized golden vectors equal compressed-tensors 0.20.1 bit for bit") {
  const std::vector<uint8_t> w = golden_packed();
  for (const auto& c : k_mx) {
    INFO("scales " << int(c.scales[0]) << ", " << int(c.scales[1]));
    const ct_source s = fp4_source(ct_layout::mxfp4_packed, w, 2, 32, c.scales, scale_kind::e8m0);
    const std::vector<uint16_t> got = bf16_bits(both(s));
    CHECK(std::memcmp(got.data(), c.out, sizeof c.out) == 0);
    // DeepSeek-V4 experts with a BF16 model dtype decode the same way.
    ct_source d = s;
    d.layout = ct_layout::mxfp4_dsv4;
    CHECK(bf16_bits(both(d)) == got);
  }
}

TEST_CASE(
    "DeepSeek-V4 experts in F16: scales saturate at 2^15, vanish below 2^-24, products round") {
  // Codes 0x71 per byte: element 2k = 0.5 (code 1), element 2k+1 = 6 (code 7).
  const std::vector<uint8_t> w(16, 0x71);
  const uint8_t sc[1] = {0};
  ct_source s = fp4_source(ct_layout::mxfp4_dsv4, w, 1, 32, sc, scale_kind::e8m0);
  s.fp4_round = dtype::f16;
  auto at = [&](uint8_t e, int j) {
    const uint8_t b[1] = {e};
    ct_source t = s;
    t.scale = b;
    return both(t)[j];
  };
  CHECK(at(127, 0) == 0.5f);
  CHECK(at(127, 1) == 6.0f);
  CHECK(at(142, 1) == f32_from_bits(0x7F800000u));         // 6 * 2^15 overflows F16
  CHECK(at(142, 0) == 16384.0f);                           // 0.5 * 2^15
  CHECK(at(200, 0) == 16384.0f);                           // 2^73 saturates to 2^15
  CHECK(at(103, 0) == 0.0f);                               // 0.5 * 2^-24 = 2^-25: tie to even, 0
  CHECK(at(103, 1) == f32_from_bits(0x33800000u) * 6.0f);  // 6 * 2^-24 exact
  CHECK(at(102, 1) == 0.0f);                               // 2^-25 scale: 0
  CHECK(at(127 - 20, 0) == f32_from_bits(0x35000000u));    // 0.5 * 2^-20 = 2^-21
}

TEST_CASE("FP4 fast path equals the reference on random data, every layout, row ranges") {
  std::mt19937 rng(7);
  for (ct_layout l : {ct_layout::nvfp4_packed, ct_layout::mxfp4_packed, ct_layout::mxfp4_dsv4}) {
    for (dtype round : {dtype::bf16, dtype::f16}) {
      if (round == dtype::f16 && l != ct_layout::mxfp4_dsv4) continue;
      const uint64_t rows = 37, cols = 96;
      std::vector<uint8_t> w(rows * cols / 2);
      for (auto& b : w) b = static_cast<uint8_t>(rng());
      const uint64_t g = l == ct_layout::nvfp4_packed ? 16 : 32;
      std::vector<uint8_t> sc(rows * cols / g);
      for (auto& b : sc) {
        b = static_cast<uint8_t>(rng());
        if (l == ct_layout::nvfp4_packed && fp8_e4m3fn_is_nan(b)) b = 0x7E;
        if (l != ct_layout::nvfp4_packed && b == 0xFF) b = 0;
      }
      ct_source s = fp4_source(l, w, rows, cols, sc.data(),
                               l == ct_layout::nvfp4_packed ? scale_kind::e4m3 : scale_kind::e8m0);
      s.fp4_round = round;
      s.global_scale = 37.25f;
      const std::vector<float> all = both(s);
      ct_source part = s;
      part.row_begin = 5;
      part.row_end = 23;
      part.weight = w.data() + 5 * cols / 2;
      const std::vector<float> mid = both(part);
      CHECK(std::memcmp(mid.data(), all.data() + 5 * cols, mid.size() * 4) == 0);
    }
  }
}

TEST_CASE("FP4 recovery errors: NaN scale codes with their index, bad shapes and arguments") {
  std::vector<uint8_t> w(64, 0x11);
  std::vector<uint8_t> sc(4, 127);
  ct_source s = fp4_source(ct_layout::mxfp4_packed, w, 4, 32, sc.data(), scale_kind::e8m0);
  std::vector<float> out(4 * 32);
  sc[2] = 0xFF;
  for (auto* f : {&reference::recover_compressed, &recover_compressed}) {
    const quant_status st = (*f)(s, out.data());
    CHECK(st.what == quant_status::code::bad_scale);
    CHECK(st.index == 2);
  }
  std::vector<uint8_t> nsc(8, 0x38);
  ct_source n = fp4_source(ct_layout::nvfp4_packed, w, 4, 32, nsc.data(), scale_kind::e4m3);
  n.global_scale = 1.0f;
  nsc[5] = 0xFF;  // e4m3 NaN
  for (auto* f : {&reference::recover_compressed, &recover_compressed}) {
    const quant_status st = (*f)(n, out.data());
    CHECK(st.what == quant_status::code::bad_scale);
    CHECK(st.index == 5);
  }
  nsc[5] = 0x38;
  CHECK(check_compressed(n).empty());
  ct_source bad = n;
  bad.global_scale = 0.0f;
  CHECK(check_compressed(bad).find("global scale") != std::string::npos);
  bad = n;
  bad.cols = 24;
  CHECK(check_compressed(bad).find("multiple of the group size 16") != std::string::npos);
  bad = n;
  bad.groups = 3;
  CHECK(check_compressed(bad).find("groups") != std::string::npos);
  bad = n;
  bad.scale_type = scale_kind::e8m0;
  CHECK(check_compressed(bad).find("nvfp4 scales") != std::string::npos);
  bad = s;
  bad.scale_type = scale_kind::bf16;
  CHECK(check_compressed(bad).find("E8M0") != std::string::npos);
  bad = s;
  bad.fp4_round = dtype::f16;  // F16 only for DeepSeek-V4 experts
  CHECK(!check_compressed(bad).empty());
  CHECK(reference::recover_compressed(bad, out.data()).what == quant_status::code::bad_argument);
}
