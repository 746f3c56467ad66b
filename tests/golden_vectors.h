// The golden vectors of formats.md §12.7 (G1..G11, G1b, G3b and the larger-g / MX-alias variants)
// held once as data, for the CPU suite (tests/kernels_golden_test.cpp) and the GPU suite
// (tests/gpu/golden_gpu_test.cpp); each suite only supplies its runner. Depends on doctest and
// tests/kernels_test_util.h only. Builders REQUIRE that every float input is an exact bf16 value,
// so call them inside a test case.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <utility>
#include <vector>

#include "tests/kernels_test_util.h"

namespace shardquant::test::golden {

// One scheme run: a bf16 tensor in, every output tensor's exact bytes out.
struct golden_case {
  const char* name;  // the vector's sentence (shared by its variants)
  scheme_id scheme;
  std::vector<uint64_t> shape;
  std::vector<uint16_t> input;               // bf16 bits, row-major
  std::vector<std::vector<uint8_t>> expect;  // output tensors in scheme order
};

inline std::vector<uint8_t> bytes(std::initializer_list<int> v) {
  std::vector<uint8_t> b;
  for (int x : v) b.push_back(static_cast<uint8_t>(x));
  return b;
}

// Compares one run's output tensors with the case's expected bytes; prints both in hex on a miss.
inline void check_outputs(const run_result& r, const golden_case& c) {
  REQUIRE(r.status.ok());
  REQUIRE(r.tensors.size() == c.expect.size());
  for (size_t t = 0; t < c.expect.size(); ++t) {
    CAPTURE(t);
    if (r.tensors[t] != c.expect[t])
      std::printf("got    %s\nexpect %s\n", hex(r.tensors[t]).c_str(), hex(c.expect[t]).c_str());
    CHECK(r.tensors[t] == c.expect[t]);
  }
}

inline std::vector<uint16_t> from_floats(const std::vector<float>& f) {
  std::vector<uint16_t> v;
  for (float x : f) {
    const uint16_t b = bf(x);
    REQUIRE(bf16_to_f32(b) == x);  // golden inputs are exact bf16 values
    v.push_back(b);
  }
  return v;
}

// The vectors, one X(builder, sentence) each; a suite expands it into one test case per vector.
#define SQ_GOLDEN_VECTORS(X)                                                                    \
  X(g1, "G1 fp8 per-tensor: clamp, ties, subnormals and signed zeros")                          \
  X(g1b, "G1b fp8 per-tensor scale is a true division")                                         \
  X(g2, "G2 ptpc_fp8 per-row scales multiply by R(448)")                                        \
  X(g3, "G3 int8 uses the full range -128..127")                                                \
  X(g3b, "G3b int8 scale is rounded to the source dtype")                                       \
  X(g4, "G4 int4_wo_32 per-group with transposed packing")                                      \
  X(g4_variants, "G4 variants: int4_wo_64, int4_wa_64 and int4_wo_128 with repeated rows")      \
  X(g5, "G5 int4_wo_per_channel: every element a tie")                                          \
  X(g6, "G6 uint4_wo_32 with zero points")                                                      \
  X(g6_variants, "G6 variants: uint4_wo_64 and uint4_wo_128 with repeated rows")                \
  X(g7, "G7 uint4_wo_per_channel with an all-negative row")                                     \
  X(g8, "G8 mxfp4 and its aliases: scale rounding, ties, zero blocks and the k = -127 divisor") \
  X(g9, "G9 mxfp6_e2m3 codes and 6-bit packing")                                                \
  X(g10, "G10 mxfp6_e3m2 codes and 6-bit packing")                                              \
  X(g11, "G11 int4_fp8: fp8 per-tensor, then int4 per row on the fp8 values, AWQ order")

using cases = std::vector<golden_case>;

inline cases g1(const char* name) {
  return {{name,
           scheme_id::fp8,
           {1, 8},
           {0x3F88, 0xBF88, 0x3C16, 0x3C0D, 0x3742, 0x0000, 0x8000, 0xB580},
           {bytes({0x7E, 0xFE, 0x48, 0x47, 0x02, 0x00, 0x80, 0x80}), le_f32({0x3B1B6DB7})}}};
}

inline cases g1b(const char* name) {
  return {{name,
           scheme_id::fp8,
           {1, 3},
           {0x4040, 0x3F80, 0xBF00},
           {bytes({0x7E, 0x71, 0xE9}), le_f32({0x3BDB6DB7})}}};
}

inline cases g2(const char* name) {
  return {{name,
           scheme_id::ptpc_fp8,
           {3, 8},
           {0x3F88, 0xBF88, 0x3C16, 0x3C0D, 0x3742, 0x0000, 0x8000, 0xB580,  //
            0x4040, 0xBFC0, 0x3F40, 0x3C40, 0x3B80, 0xC040, 0x0000, 0x3F80,  //
            0x0000, 0x8000, 0x0000, 0x0000, 0x0000, 0x0000, 0x0000, 0x0000},
           {bytes({0x7E, 0xFE, 0x48, 0x47, 0x02, 0x00, 0x80, 0x80,  //
                   0x7E, 0xF6, 0x6E, 0x3E, 0x31, 0xFE, 0x00, 0x71,  //
                   0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}),
            le_f32({0x3B1B6DB7, 0x3BDB6DB8, 0x34000000})}}};
}

inline cases g3(const char* name) {
  return {{name,
           scheme_id::int8,
           {1, 8},
           {0x3F7F, 0xBF7F, 0x3C40, 0x3CA0, 0xBC40, 0x0000, 0x3F00, 0x3A80},
           {bytes({0x7F, 0x80, 0x02, 0x02, 0xFE, 0x00, 0x40, 0x00}), le_f32({0x3C000000})}}};
}

inline cases g3b(const char* name) {
  return {{name,
           scheme_id::int8,
           {1, 2},
           {0x4000, 0x3F80},
           {bytes({0x7F, 0x40}), le_f32({0x3C810000})}}};
}

inline std::vector<float> g4_rows() {
  std::vector<float> w;
  for (int j = 0; j < 32; ++j) w.push_back(j == 31 ? -0.0f : (j - 15) / 16.0f);
  for (int j = 0; j < 32; ++j) w.push_back((j - 16) / 16.0f);
  return w;
}
inline const std::vector<uint32_t> k_g4_words = {
    0x98, 0x99, 0x9A, 0xAA, 0xAA, 0xBB, 0xBC, 0xCC, 0xCC, 0xDD, 0xDE, 0xEE, 0xEE, 0xFF, 0xF0, 0x00,
    0x00, 0x01, 0x12, 0x12, 0x22, 0x23, 0x34, 0x34, 0x44, 0x45, 0x56, 0x56, 0x66, 0x67, 0x77, 0x70};

inline std::vector<float> g6_rows() {
  std::vector<float> w;
  for (int j = 0; j < 32; ++j) w.push_back(j / 16.0f);
  for (int j = 0; j < 32; ++j) w.push_back((j - 20) / 8.0f);
  return w;
}
inline const std::vector<uint32_t> k_g6_words = {
    0x00, 0x10, 0x11, 0x21, 0x22, 0x32, 0x33, 0x43, 0x44, 0x54, 0x55, 0x65, 0x66, 0x76, 0x77, 0x87,
    0x88, 0x98, 0x99, 0xA9, 0xAA, 0xAA, 0xBB, 0xBB, 0xCC, 0xCC, 0xDD, 0xDD, 0xEE, 0xEE, 0xFF, 0xFF};

// Each 32-element row repeated `copies` times along the row: the amax/min/max of a group of
// 32*copies elements are those of the 32, so scales and codes repeat.
inline std::vector<float> widen(const std::vector<float>& rows32, int copies) {
  std::vector<float> w;
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < copies; ++c)
      for (int j = 0; j < 32; ++j) w.push_back(rows32[r * 32 + j]);
  return w;
}
inline std::vector<uint32_t> repeat(const std::vector<uint32_t>& words, int copies) {
  std::vector<uint32_t> w;
  for (int c = 0; c < copies; ++c) w.insert(w.end(), words.begin(), words.end());
  return w;
}

inline cases g4(const char* name) {
  return {{name,
           scheme_id::int4_wo_32,
           {2, 32},
           from_floats(g4_rows()),
           {le_words(k_g4_words), le_f32({0x3E000000, 0x3E090000})}}};
}

inline cases g4_variants(const char* name) {
  cases c;
  for (auto [s, copies] : {std::pair{scheme_id::int4_wo_64, 2}, std::pair{scheme_id::int4_wa_64, 2},
                           std::pair{scheme_id::int4_wo_128, 4}}) {
    const uint64_t in = 32 * copies;
    c.push_back({name,
                 s,
                 {2, in},
                 from_floats(widen(g4_rows(), copies)),
                 {le_words(repeat(k_g4_words, copies)), le_f32({0x3E000000, 0x3E090000})}});
  }
  return c;
}

inline cases g5(const char* name) {
  std::vector<float> w;
  for (int j = 0; j < 16; ++j) w.push_back((2 * j - 15) / 16.0f);
  for (int j = 0; j < 16; ++j) w.push_back(j == 15 ? -0.0f : 0.0f);
  return {{name,
           scheme_id::int4_wo_per_channel,
           {2, 16},
           from_floats(w),
           {le_words({0x0EECCAA8, 0x76644220, 0, 0}), le_f32({0x3E000000, 0x34000000})}}};
}

inline cases g6(const char* name) {
  return {{name,
           scheme_id::uint4_wo_32,
           {2, 32},
           from_floats(g6_rows()),
           {le_words(k_g6_words), le_f32({0x3E040000, 0x3E840000}), le_words({0, 10})}}};
}

inline cases g6_variants(const char* name) {
  cases c;
  for (auto [s, copies] :
       {std::pair{scheme_id::uint4_wo_64, 2}, std::pair{scheme_id::uint4_wo_128, 4}}) {
    const uint64_t in = 32 * copies;
    c.push_back({name,
                 s,
                 {2, in},
                 from_floats(widen(g6_rows(), copies)),
                 {le_words(repeat(k_g6_words, copies)), le_f32({0x3E040000, 0x3E840000}),
                  le_words({0, 10})}});
  }
  return c;
}

inline cases g7(const char* name) {
  std::vector<float> w;
  for (int j = 0; j < 16; ++j) w.push_back(-(j + 1) / 16.0f);
  for (int j = 0; j < 16; ++j) w.push_back(0.0f);
  return {{name,
           scheme_id::uint4_wo_per_channel,
           {2, 16},
           from_floats(w),
           {le_words({0x889ABCDE, 0x01234567, 0, 0}), le_f32({0x3D890000, 0x34000000}),
            le_words({15, 0})}}};
}

inline std::vector<uint16_t> g8_input() {
  std::vector<uint16_t> v = {0x3E80, 0x3F40, 0x3FA0, 0x3FE0, 0x4020, 0x4060, 0x40A0, 0x40C0,
                             0xBE80, 0xBF40, 0xBFA0, 0xBFE0, 0xC020, 0xC060, 0xC0A0, 0xC0C0,
                             0x0000, 0x8000, 0x3F00, 0x3F80, 0x3FC0, 0x4000, 0x4040, 0x4080,
                             0x3E84, 0x40B0, 0x4090, 0x3C00, 0xBC00, 0x3E00, 0x3EC0, 0x3F20};
  for (int t = -16; t < 16; ++t) v.push_back(bf(7.0f * t / 16.0f));
  for (int j = 0; j < 32; ++j) v.push_back(j == 31 ? 0x8000 : 0x0000);
  for (int t = -16; t < 16; ++t) {
    const float x = std::ldexp(static_cast<float>(t), -129);
    REQUIRE(bf16_to_f32(bf(x)) == x);
    v.push_back(bf(x));
  }
  return v;
}

inline const std::vector<uint8_t> k_g8_weight = {
    0x20, 0x42, 0x64, 0x76, 0xA0, 0xCA, 0xEC, 0xFE, 0x00, 0x21, 0x43, 0x65, 0x71, 0x06, 0x00, 0x11,
    0xDE, 0xDD, 0xCD, 0xCC, 0xBC, 0xAB, 0x9A, 0x09, 0x00, 0x11, 0x22, 0x33, 0x44, 0x44, 0x55, 0x55,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xEE, 0xDE, 0xDD, 0xCD, 0xCC, 0xBB, 0xAA, 0x99, 0x10, 0x21, 0x32, 0x43, 0x44, 0x55, 0x55, 0x66};

// mxfp4 and the schemes whose weights are mxfp4 (formats.md: same bytes as G8).
inline cases g8(const char* name) {
  cases c;
  for (scheme_id s : {scheme_id::mxfp4, scheme_id::mxfp4_weight_only, scheme_id::mxfp4_fp8,
                      scheme_id::mxfp4_mxfp6_e2m3})
    c.push_back({name, s, {2, 64}, g8_input(), {k_g8_weight, bytes({127, 128, 1, 1})}});
  return c;
}

inline cases g9(const char* name) {
  return {{name,
           scheme_id::mxfp6_e2m3,
           {1, 32},
           {0x40F0, 0xC0F0, 0x3D80, 0x3E40, 0x3F88, 0x4008, 0x4018, 0x4088, 0x4098, 0x40E8, 0xBD00,
            0x0000, 0x8000, 0x3E00, 0x3F60, 0x3F80, 0x3FF0, 0x4070, 0x40C0, 0xBE40, 0xC018, 0xC098,
            0x3F00, 0x3EA0, 0x3EE0, 0x40B0, 0x40D0, 0x4048, 0x3FB8, 0x3C00, 0xBF88, 0x4000},
           {bytes({0xDF, 0x0F, 0x08, 0x08, 0x24, 0x61, 0x9A, 0x07, 0x00, 0x40, 0x70, 0x20,
                   0xCF, 0xC5, 0x89, 0xB2, 0x4E, 0x08, 0xC4, 0xD6, 0x51, 0x0C, 0x80, 0x42}),
            bytes({127})}}};
}

inline cases g10(const char* name) {
  return {{name,
           scheme_id::mxfp6_e3m2,
           {1, 32},
           {0x41E0, 0xC1E0, 0x3D00, 0x3DC0, 0x3F90, 0x3FB0, 0x4190, 0x41B0, 0x41D0, 0xC1B0, 0x0000,
            0x8000, 0xBC80, 0x3D80, 0x3E40, 0x3E80, 0x4040, 0x40A0, 0x4110, 0x4130, 0x3F38, 0x4010,
            0x4030, 0x40D0, 0x4150, 0x3F00, 0x3F80, 0x4080, 0x4180, 0xBFB0, 0xBDC0, 0x41D8},
           {bytes({0xDF, 0x0F, 0x08, 0x8C, 0xC3, 0x79, 0x9E, 0x0F, 0x00, 0x40, 0x30, 0x10,
                   0x52, 0x85, 0x69, 0x0A, 0x24, 0x59, 0x1A, 0xC2, 0x50, 0x9C, 0x2B, 0x7E}),
            bytes({127})}}};
}

inline cases g11(const char* name) {
  std::vector<uint16_t> in = {0x3F88, 0xBF88, 0x3C16, 0x3C0D, 0x3F00, 0xBE80, 0x3E00, 0x0000,
                              0x8000, 0x3F40, 0x3EA0, 0xBF30, 0x3D80, 0x3D00, 0x3F80, 0xBF00};
  for (int j = 0; j < 16; ++j) in.push_back(bf((j - 8) / 64.0f));
  return {{name,
           scheme_id::int4_fp8,
           {2, 16},
           in,
           {le_words({0x0E081307, 0xD0B57020, 0xFDB9ECA9, 0x75316420}), le_f32({0x3B1B6DB7}),
            le_f32({0x426EEEF0, 0x40DDDDDF})}}};
}

}  // namespace shardquant::test::golden
