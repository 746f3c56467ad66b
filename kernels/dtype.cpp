// The dtype table of formats.md §2.2.
#include "kernels/dtype.h"

#include <array>

namespace shardquant {
namespace {

constexpr std::array<dtype_info, 22> k_dtypes{{
    {dtype::bool_, "BOOL", 8, false},
    {dtype::u8, "U8", 8, false},
    {dtype::i8, "I8", 8, false},
    {dtype::i16, "I16", 16, false},
    {dtype::u16, "U16", 16, false},
    {dtype::i32, "I32", 32, false},
    {dtype::u32, "U32", 32, false},
    {dtype::i64, "I64", 64, false},
    {dtype::u64, "U64", 64, false},
    {dtype::f16, "F16", 16, true},
    {dtype::bf16, "BF16", 16, true},
    {dtype::f32, "F32", 32, true},
    {dtype::f64, "F64", 64, true},
    {dtype::c64, "C64", 64, false},
    {dtype::f8_e4m3, "F8_E4M3", 8, true},
    {dtype::f8_e5m2, "F8_E5M2", 8, true},
    {dtype::f8_e4m3fnuz, "F8_E4M3FNUZ", 8, true},
    {dtype::f8_e5m2fnuz, "F8_E5M2FNUZ", 8, true},
    {dtype::f8_e8m0, "F8_E8M0", 8, true},
    {dtype::f4, "F4", 4, false},
    {dtype::f6_e2m3, "F6_E2M3", 6, false},
    {dtype::f6_e3m2, "F6_E3M2", 6, false},
}};

}  // namespace

const dtype_info& info(dtype d) noexcept { return k_dtypes[static_cast<size_t>(d)]; }
std::string_view name(dtype d) noexcept { return info(d).name; }
uint32_t bits(dtype d) noexcept { return info(d).bits; }
bool is_float(dtype d) noexcept { return info(d).is_float; }
bool is_quantizable_source(dtype d) noexcept {
  return d == dtype::f16 || d == dtype::bf16 || d == dtype::f32;
}

std::optional<dtype> parse_dtype(std::string_view s) noexcept {
  for (const auto& i : k_dtypes)
    if (i.name == s) return i.id;
  return std::nullopt;
}

}  // namespace shardquant
