// Element casts of formats.md §4.3 on raw little-endian buffers: the value of a float element as
// fp32 and its store into a target float dtype, rounding to nearest even via fp32. Shared by the
// CPU cast stage (stages/compute_cpu.cpp) and `verify` (pipeline/output/verify.cpp), which must
// compute exactly the bytes the cast stage writes. Host only; no files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/dtype.h"
#include "kernels/fp8.h"
#include "kernels/numeric.h"

namespace shardquant {

// Value of element `i` of a float buffer of dtype `t` as fp32: exact for every dtype but F64,
// which rounds to nearest even (the F64 -> F32 -> target path of §4.3). Callers check that `t`
// is F32, BF16, F16, F64, F8_E4M3 or F8_E5M2 (anything else reads as F8_E5M2).
inline float load_float(dtype t, const std::byte* p, uint64_t i) {
  switch (t) {
    case dtype::f32: {
      float v;
      std::memcpy(&v, p + 4 * i, 4);
      return v;
    }
    case dtype::bf16: {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return bf16_to_f32(h);
    }
    case dtype::f16: {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return f16_to_f32(h);
    }
    case dtype::f64: {
      double d;
      std::memcpy(&d, p + 8 * i, 8);
      return static_cast<float>(d);  // F64 -> F32 with round to nearest even (§4.3)
    }
    case dtype::f8_e4m3:
      return fp8_e4m3fn_decode(static_cast<uint8_t>(p[i]));
    default:  // f8_e5m2 (checked by the caller)
      return fp8_e5m2_decode(static_cast<uint8_t>(p[i]));
  }
}

// Stores `v` as element `i` of a buffer of dtype `t` (F32, BF16 or F16 rounded to nearest even;
// anything else is written as an exact F64 widening).
inline void store_float(dtype t, std::byte* p, uint64_t i, float v) {
  switch (t) {
    case dtype::f32:
      std::memcpy(p + 4 * i, &v, 4);
      break;
    case dtype::bf16: {
      const uint16_t h = to_bf16_rne(v);
      std::memcpy(p + 2 * i, &h, 2);
      break;
    }
    case dtype::f16: {
      const uint16_t h = to_f16_rne(v);
      std::memcpy(p + 2 * i, &h, 2);
      break;
    }
    default: {  // f64: exact widening
      const double d = v;
      std::memcpy(p + 8 * i, &d, 8);
      break;
    }
  }
}

}  // namespace shardquant
