// The quark-importer output layout (importer_layout.h): shapes, row-range pieces and the byte
// conversion of one row range's kernel outputs. The layout follows Quark 0.13's importer:
// quark/torch/utils/pack.py (Pack_4_bits.pack with reorder, _infer_scale_zero_point_shape) and
// quark/torch/export/nn/modules/realquantizer.py (zero_point buffers for integer dtypes, the
// sequential quantizer's `.0`/`.1` names, E5M3 scale codes).
#include "kernels/importer_layout.h"

#include <array>
#include <cstring>

#include "kernels/amdfp4.h"

namespace shardquant {
namespace {

using sf = scheme_family;

// Nibble i of a "reorder" word holds element k_reorder[i] of its 8 (Quark's order_map).
constexpr std::array<unsigned, 8> k_reorder{0, 2, 4, 6, 1, 3, 5, 7};

bool is_int4(sf f) {
  return f == sf::int4_group || f == sf::uint4_group || f == sf::int4_channel ||
         f == sf::uint4_channel;
}
bool is_group(sf f) {
  return f == sf::int4_group || f == sf::uint4_group;
}
bool is_asym(sf f) {
  return f == sf::uint4_group || f == sf::uint4_channel;
}

// amdfp4's importer scale is U8 E5M3 codes: output_tensors()/range_layout() with a one-byte
// "source" dtype give exactly its shape and pieces (the scale is the only output that follows
// the source dtype).
constexpr dtype k_code_dtype = dtype::u8;

// Sequential word (nibble k = element k) -> reorder word.
uint32_t reorder_word(uint32_t w) {
  uint32_t r = 0;
  for (unsigned i = 0; i < 8; ++i) r |= ((w >> (4 * k_reorder[i])) & 0xFu) << (4 * i);
  return r;
}

// Packs 8 zero points zp(8c + e) (e = 0..7) into one reorder word.
template <class F>
uint32_t pack_zp(F zp) {
  uint32_t r = 0;
  for (unsigned i = 0; i < 8; ++i) r |= (static_cast<uint32_t>(zp(k_reorder[i])) & 0xFu) << (4 * i);
  return r;
}

}  // namespace

std::string_view layout_name(output_layout l) noexcept {
  return l == output_layout::quark_importer ? "quark-importer" : "quark-f2f";
}

std::optional<output_layout> parse_layout(std::string_view s) noexcept {
  if (s == "quark-f2f") return output_layout::quark_f2f;
  if (s == "quark-importer") return output_layout::quark_importer;
  return std::nullopt;
}

bool importer_layout_differs(const weight_scheme& s) noexcept {
  if (s.progressive) return true;
  const sf f = s.first.family;
  return is_int4(f) || f == sf::int8_tensor || f == sf::nvfp4 || f == sf::amdfp4;
}

std::string importer_layout_error(const weight_scheme& s, std::span<const uint64_t> shape) {
  if (!importer_layout_differs(s)) return {};
  const sf f = s.packed().family;
  if (s.progressive && f != sf::int4_channel && f != sf::uint4_channel)
    return "--layout quark-importer supports progressive pairs with an int4/uint4 per-channel "
           "second stage only, not " +
           describe(s);
  if (is_int4(f) && (shape.size() != 2 || shape[0] % 8 != 0 || shape[1] % 8 != 0))
    return "--layout quark-importer needs both dimensions of an int4/uint4 weight to be "
           "multiples of 8 (the importer packs zero points 8 per word)";
  return {};
}

std::vector<output_tensor> importer_output_tensors(const weight_scheme& s,
                                                   std::span<const uint64_t> shape) {
  const weight_format& p = s.packed();
  if (p.family == sf::amdfp4 && !s.progressive) return output_tensors(s, shape, k_code_dtype);
  std::vector<output_tensor> o = output_tensors(s, shape);
  if (!importer_layout_differs(s)) return o;
  const uint64_t out = shape.front(), in = shape.back();
  if (p.family == sf::int8_tensor) {
    o.push_back({"_zero_point", dtype::i8, {}});
    return o;
  }
  if (p.family == sf::nvfp4) {  // the same bytes, named as the sequential quantizer's buffers
    o[1].suffix = "_quantizer.0.scale";
    o[2].suffix = "_quantizer.1.scale";
    return o;
  }
  std::vector<uint64_t> zp_shape{out / 8};
  if (is_group(p.family)) {
    const uint64_t groups = in / p.group_size;
    o[1].shape = {groups, out};
    zp_shape = {groups, out / 8};
  }
  // The f2f zero point (asymmetric only) is last; the importer one replaces or joins it.
  if (is_asym(p.family)) o.pop_back();
  if (s.progressive) {
    o[1].suffix = "_quantizer.0.scale";
    o[2].suffix = "_quantizer.1.scale";
    o.push_back({"_quantizer.1.zero_point", dtype::i32, zp_shape});
  } else {
    o.push_back({"_zero_point", dtype::i32, zp_shape});
  }
  return o;
}

uint32_t importer_row_split_multiple(const weight_scheme& s) noexcept {
  return is_int4(s.packed().family) ? 8 : row_split_multiple(s);
}

std::vector<output_piece> importer_range_layout(const weight_scheme& s,
                                                std::span<const uint64_t> shape, uint64_t row_begin,
                                                uint64_t row_end, std::string* error) {
  const weight_format& p = s.packed();
  if (p.family == sf::amdfp4 && !s.progressive)
    return range_layout(s, shape, row_begin, row_end, error, k_code_dtype);
  std::vector<output_piece> r = range_layout(s, shape, row_begin, row_end, error);
  if (!importer_layout_differs(s) || p.family == sf::nvfp4) return r;
  const uint64_t out = shape.front(), in = shape.back();
  if (row_end == k_all_rows) row_end = out;
  const uint64_t rows = row_end - row_begin;
  if (p.family == sf::int8_tensor) {
    r.push_back({0, 1, 1, 0});
    return r;
  }
  if (error && error->empty() && (row_begin % 8 != 0 || row_end % 8 != 0))
    *error =
        "--layout quark-importer: int4/uint4 row ranges must start and end at multiples "
        "of 8 rows";
  if (is_asym(p.family)) r.pop_back();
  const uint64_t a = row_begin / 8, words = rows / 8;
  if (is_group(p.family)) {
    const uint64_t groups = in / p.group_size;
    r[1] = {row_begin * 4, rows * 4, groups, out * 4};
    r.push_back({a * 4, words * 4, groups, out / 8 * 4});
  } else {
    r.push_back({a * 4, words * 4, 1, 0});
  }
  return r;
}

void to_importer_layout(const weight_scheme& s, std::span<const uint64_t> shape, uint64_t row_begin,
                        uint64_t row_end, const quant_outputs& kernel, std::span<void* const> out,
                        dtype source) {
  const std::vector<output_tensor> f2f = output_tensors(s, shape, source);
  const weight_format& p = s.packed();
  const uint64_t total = shape.front(), in = shape.back();
  if (row_end == k_all_rows) row_end = total;
  const uint64_t rows = row_end - row_begin;
  // Bytes of this range's dense kernel piece of output t (range_layout with weight_ld = 0).
  auto dense = [&](size_t t) {
    const auto pieces = range_layout(s, shape, row_begin, row_end, nullptr, source);
    return pieces[t].run_bytes * pieces[t].count;
  };
  const void* kernel_ptr[4] = {kernel.weight, kernel.scale, kernel.extra, kernel.extra2};

  if (!importer_layout_differs(s) || p.family == sf::nvfp4) {  // the same bytes
    for (size_t t = 0; t < f2f.size(); ++t) std::memcpy(out[t], kernel_ptr[t], dense(t));
    return;
  }
  if (p.family == sf::amdfp4) {
    // The scale values are E5M3 values stored in `source` (exact there): their codes.
    std::memcpy(out[0], kernel.weight, dense(0));
    const uint64_t n = dense(1) / (bits(source) / 8);
    auto* codes = static_cast<uint8_t*>(out[1]);
    for (uint64_t i = 0; i < n; ++i) {
      float v = 0.0f;
      if (source == dtype::f32)
        v = load_src<src_kind::f32>(kernel.scale, i);
      else if (source == dtype::f16)
        v = load_src<src_kind::f16>(kernel.scale, i);
      else
        v = load_src<src_kind::bf16>(kernel.scale, i);
      codes[i] = e5m3_encode(v);
    }
    return;
  }
  if (p.family == sf::int8_tensor) {
    std::memcpy(out[0], kernel.weight, dense(0));
    std::memcpy(out[1], kernel.scale, 4);
    *static_cast<int8_t*>(out[2]) = 0;
    return;
  }

  // Weight: same words, nibbles in the reorder order (pairs are already packed that way).
  const uint64_t words = dense(0) / 4;
  const auto* kw = static_cast<const uint32_t*>(kernel.weight);
  auto* ow = static_cast<uint32_t*>(out[0]);
  for (uint64_t i = 0; i < words; ++i) ow[i] = s.progressive ? kw[i] : reorder_word(kw[i]);

  // Scales: per-group transposed [rows, G] -> [G, rows]; otherwise unchanged.
  const uint64_t groups = is_group(p.family) ? in / p.group_size : 1;
  if (is_group(p.family)) {
    const auto* ks = static_cast<const float*>(kernel.scale);
    auto* os = static_cast<float*>(out[1]);
    for (uint64_t r = 0; r < rows; ++r)
      for (uint64_t k = 0; k < groups; ++k) os[k * rows + r] = ks[r * groups + k];
  } else {
    std::memcpy(out[1], kernel.scale, dense(1));
  }
  size_t next = 2;
  if (s.progressive) {  // scale_2
    std::memcpy(out[2], kernel.extra, dense(2));
    next = 3;
  }

  // Zero points: the kernel's I32 [rows, G] (asymmetric) or zeros, packed 8 per word along out.
  const auto* kz = static_cast<const int32_t*>(
      !is_asym(p.family) ? nullptr : (s.progressive ? kernel.extra2 : kernel.extra));
  auto* oz = static_cast<uint32_t*>(out[next]);
  const uint64_t zwords = rows / 8;
  for (uint64_t k = 0; k < groups; ++k)
    for (uint64_t c = 0; c < zwords; ++c)
      oz[k * zwords + c] =
          kz ? pack_zp([&](unsigned e) { return kz[(8 * c + e) * groups + k]; }) : 0u;
}

}  // namespace shardquant
