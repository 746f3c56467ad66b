// The safetensors dtype strings (formats.md §2.2) and their element sizes.
// Owns the dtype table only; knows nothing about files.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace shardquant {

enum class dtype : uint8_t {
  bool_,
  u8,
  i8,
  i16,
  u16,
  i32,
  u32,
  i64,
  u64,
  f16,
  bf16,
  f32,
  f64,
  c64,
  f8_e4m3,
  f8_e5m2,
  f8_e4m3fnuz,
  f8_e5m2fnuz,
  f8_e8m0,
  f4,
  f6_e2m3,
  f6_e3m2,
};

struct dtype_info {
  dtype id;
  std::string_view name;  // the safetensors string, e.g. "BF16"
  uint32_t bits;          // bits per element (4 and 6 for packed float formats)
  bool is_float;          // a float dtype in the sense of formats.md §4.3 (b)
};

// Every dtype, in enum order.
[[nodiscard]] const dtype_info& info(dtype d) noexcept;
[[nodiscard]] std::string_view name(dtype d) noexcept;
[[nodiscard]] uint32_t bits(dtype d) noexcept;
[[nodiscard]] bool is_float(dtype d) noexcept;
// The three float dtypes that can be quantized as sources (F16, BF16, F32).
[[nodiscard]] bool is_quantizable_source(dtype d) noexcept;
// Parses a safetensors dtype string; nullopt for an unknown string.
[[nodiscard]] std::optional<dtype> parse_dtype(std::string_view s) noexcept;

}  // namespace shardquant
