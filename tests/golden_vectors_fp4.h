// The golden vectors of kernels/FORMATS-fp4.md §7 (NV1-NV3, AF1, AG1-AG2, F1) as data, for the CPU
// suite (tests/kernels_fp4_golden_test.cpp) and a later GPU suite. Expected bytes were computed by
// tests/conformance/fp4_ref.py (torch, independent of the C++), whose Quark-on-CPU mode matches
// Quark 0.13's file-to-file output byte for byte; they follow the CUDA rule of FORMATS-fp4.md F1
// (amax / c as amax * RN32(1/c)), and only F1 tells the two rules apart. Inputs are bf16 bits.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/fp4_block.h"
#include "tests/golden_vectors.h"

namespace shardquant::test::golden_fp4 {

using golden::golden_case;

// "40C0 3E80 ..." -> bf16 bits; "07 22 ..." -> bytes.
inline std::vector<uint16_t> h16(const std::string& s) {
  std::istringstream in(s);
  std::vector<uint16_t> v;
  std::string w;
  while (in >> w) v.push_back(static_cast<uint16_t>(std::stoul(w, nullptr, 16)));
  return v;
}
inline std::vector<uint8_t> h8(const std::string& s) {
  std::istringstream in(s);
  std::vector<uint8_t> v;
  std::string w;
  while (in >> w) v.push_back(static_cast<uint8_t>(std::stoul(w, nullptr, 16)));
  return v;
}

inline const std::string k_z15 =
    "0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000";

inline std::vector<golden_case> all() {
  const std::string z = k_z15 + " ";
  std::vector<golden_case> c;
  // NV1: global scale exactly 1 (A = 2688); row 0 every E2M1 tie (0.25 .. 5, -0.25 -> +0, 5.5 ->
  // 6); row 1 the tensor amax (block scale 448 = 0x7E); row 2 saturation (6.375 with block scale
  // 1.0625 -> fp8 tie -> 1.0); row 3 a subnormal fp8 block scale 2^-8 (0x02); row 4 an all-zero
  // block (byte 0x00... of EPS / 1 -> fp8 0, divisor EPS); row 5 a block scale 2^-10 that is an
  // fp8 tie to 0: byte 0x00 and the elements divided by EPS saturate.
  c.push_back(
      {"NV1",
       scheme_id::nvfp4,
       {6, 16},
       h16("40C0 3E80 3F40 3FA0 3FE0 4020 4060 40A0 BE80 C0A0 40B0 0000 8000 3F00 3F80 4000 "
           "4528 " +
           z +
           "40CC 40C0 C0CC 4040 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 "
           "3CC0 3C40 BBC0 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 " +
           z + "3BC0 3B00 BB80 3A00 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000"),
       {h8("07 22 44 66 E0 07 10 42 07 00 00 00 00 00 00 00 77 5F 00 00 00 00 00 00 "
           "57 0B 00 00 00 00 00 00 00 00 00 00 00 00 00 00 77 7F 00 00 00 00 00 00"),
        h8("38 7E 38 02 00 00"), h8("00 00 80 3F")}});
  // NV2: an all-zero tensor: global scale EPS (its lower limit), block byte 0x38 (EPS / EPS = 1).
  c.push_back({"NV2",
               scheme_id::nvfp4,
               {1, 16},
               h16("0000 " + k_z15),
               {h8("00 00 00 00 00 00 00 00"), h8("38"), h8("00 00 00 34")}});
  // NV3: the largest bf16 as the tensor amax (upper limit of the global scale).
  c.push_back(
      {"NV3",
       scheme_id::nvfp4,
       {1, 16},
       h16("7F7F 3F80 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000"),
       {h8("07 00 00 00 00 00 00 00"), h8("7E"), h8("25 49 C2 79")}});
  // F1: A = 1.1328125, where A * RN32(1/2688) and A / 2688 round differently (CUDA rule here).
  c.push_back(
      {"F1 nvfp4",
       scheme_id::nvfp4,
       {1, 16},
       h16("3F91 3F00 3E80 BF80 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000"),
       {h8("57 F3 00 00 00 00 00 00"), h8("7E"),
        h8(k_fp4_scale_by_reciprocal ? "D0 F3 DC 39" : "CF F3 DC 39")}});
  c.push_back(
      {"F1 amdfp4_global16",
       scheme_id::amdfp4_global16,
       {1, 16},
       h16("3F91 3F00 3E80 BF80 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000"),
       {h8("57 F3 00 00 00 00 00 00"), h8("FE"),
        h8(k_fp4_scale_by_reciprocal ? "D0 F3 DC 35" : "CF F3 DC 35")}});
  // AF1: amdfp4 (g16) and amdfp4_g32 on one row: E2M1 ties under scale 1.0 (bf16 3F80); amax 7
  // -> 7/6 -> bf16 1.1640625 -> E5M3 1.125 (3F90), 7 / 1.125 saturates; amax 2^-20 -> scale below
  // E5M3's smallest half-step -> stored 0, elements divided by EPS (2^-20 / 2^-23 = 8 -> 6);
  // amax 0.125 -> 0.0208.. -> E5M3 0.021484375 (3CB0).
  const std::string af =
      "40C0 3E80 3F40 3FA0 3FE0 4020 4060 40A0 BE80 C0A0 40B0 0000 8000 3F00 "
      "3F80 4000 40E0 40C0 BF80 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 "
      "3580 3500 "
      "0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 3E00 BE00 3D80 0000 "
      "0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000";
  c.push_back({"AF1 amdfp4",
               scheme_id::amdfp4,
               {1, 64},
               h16(af),
               {h8("07 22 44 66 E0 07 10 42 77 0A 00 00 00 00 00 00 67 00 00 00 00 00 00 00 "
                   "F7 05 00 00 00 00 00 00"),
                h8("80 3F 90 3F 00 00 B0 3C")}});
  c.push_back({"AF1 amdfp4_g32",
               scheme_id::amdfp4_g32,
               {1, 64},
               h16(af),
               {h8("07 21 43 65 E0 06 10 42 77 0A 00 00 00 00 00 00 00 00 00 00 00 00 00 00 "
                   "F7 05 00 00 00 00 00 00"),
                h8("90 3F B0 3C")}});
  // AG1: amdfp4_global16 with global scale 1 (A = 688128 = 6 * 114688): E2M1 ties under an E5M3
  // block scale 1.0 (0x78), the saturated E5M3 code 0xFE (114688), an all-zero block (code 0).
  c.push_back(
      {"AG1",
       scheme_id::amdfp4_global16,
       {3, 16},
       h16("40C0 3E80 3F40 3FA0 3FE0 4020 4060 40A0 BE80 C0A0 40B0 0000 8000 3F00 3F80 4000 "
           "4928 3F80 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 " +
           k_z15),
       {h8("07 22 44 66 E0 07 10 42 07 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"),
        h8("78 FE 00"), h8("00 00 80 3F")}});
  // AG2: amdfp4_global32 of an all-zero tensor: global EPS, block code 0x78 (EPS / EPS = 1).
  c.push_back(
      {"AG2",
       scheme_id::amdfp4_global32,
       {1, 32},
       h16("0000 " + z + k_z15 + " 0000"),
       {h8("00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"), h8("78"), h8("00 00 00 34")}});
  return c;
}

}  // namespace shardquant::test::golden_fp4
