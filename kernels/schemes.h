// The one table of quantization schemes (formats.md §5.1): per scheme its names, the weight math
// (family, element format, group size), the backends with a kernel for it, the tensor specs the
// exported config declares (as plain data), and the output tensors its weights turn into; plus
// the refused names with their reason. It drives the CLI's scheme list and name parsing, the
// plan, the exporter, the kernels' dispatch, the CPU fallback of the CUDA backend and the tests.
// Pure data and shape rules; no files, no JSON (pipeline/plan/quant_config.cpp writes the specs).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/dtype.h"

namespace shardquant {

// How the weight is quantized (the math), independent of the activation spec in the config.
enum class scheme_family : uint8_t {
  fp8_tensor,     // fp8 e4m3fn, per-tensor scale (§5.2)
  fp8_row,        // fp8 e4m3fn, per-row scale (§5.3)
  int8_tensor,    // int8 symmetric, per-tensor (§5.4)
  int4_group,     // int4 symmetric, per-group, transposed packing (§5.5, §5.6)
  int4_channel,   // int4 symmetric, per-row
  uint4_group,    // uint4 asymmetric, per-group, with int32 zero points
  uint4_channel,  // uint4 asymmetric, per-row
  mx,             // OCP MX: 32-element blocks, e8m0 scale (§5.7)
  int4_fp8,       // progressive: fp8 per-tensor, then int4 per-row on the fp8 values (§10)
  nvfp4,          // fp4 e2m1 per-group 16, F8_E4M3 block scale, F32 global scale (FORMATS-fp4 §2)
  amdfp4,         // fp4 e2m1 per-group 16/32, E5M3 scale stored in the source dtype (§3)
  amdfp4_global,  // fp4 e2m1 per-group 16/32, U8 E5M3 scale codes, F32 global scale (§4)
};

// Which compute backends have a kernel for a scheme (bit set). A job whose scheme its backend
// lacks runs on the CPU path of the same run (stages/compute_gpu.cpp).
enum backend_bits : uint8_t { backend_cpu = 1, backend_cuda = 2, backend_all = 3 };

// Element format of the MX family.
enum class mx_element : uint8_t { none, fp4_e2m1, fp6_e2m3, fp6_e3m2 };

enum class scheme_id : uint8_t {
  int4_wo_32,
  int4_wo_64,
  int4_wo_128,
  int4_wo_per_channel,
  int4_wa_64,
  uint4_wo_32,
  uint4_wo_64,
  uint4_wo_128,
  uint4_wo_per_channel,
  int8,
  fp8,
  ptpc_fp8,
  mxfp4,
  mxfp4_weight_only,
  mxfp6_e2m3,
  mxfp6_e3m2,
  mxfp4_mxfp6_e2m3,
  mxfp4_fp8,
  int4_fp8,
  nvfp4,
  amdfp4,
  amdfp4_g32,
  amdfp4_global16,
  amdfp4_global32,
};

// One exported tensor spec of a scheme (formats.md §6.3, Quark's QuantizationSpec) as plain data:
// pipeline/plan/quant_config.cpp writes it as the 17-key object in §6.3's order. An empty string,
// a zero size or an absent optional is JSON null. The keys not here are the same for every spec
// shardquant writes (zero_point_type "int32", mx_element_dtype null, enable_buffer_reuse false,
// max_input_numel 4194304).
struct exported_spec {
  std::string_view dtype{};          // "int4", "uint4", "int8", "fp8_e4m3", "fp4", "fp6_e2m3", ...
  bool is_dynamic = false;           // weights: always false
  std::string_view qscheme{};        // "per_tensor", "per_channel", "per_group", "per_block"
  std::optional<int64_t> ch_axis{};  // per_channel: 0 (weight rows) or 1 (tokens); per_group: -1
  uint64_t group_size = 0;           // per_group only
  std::array<uint64_t, 2> block_size{};  // per_block only: [rows, cols]
  std::optional<bool> symmetric{};       // null for the MX and FP4 element specs
  std::string_view round_method = "half_even";
  std::string_view scale_type{};              // "float", "float32", "float8_e5m3", ...
  std::string_view scale_format{};            // "e8m0", "e5m3", "float32"
  std::string_view scale_calculation_mode{};  // "even" for MX
  std::string_view observer_cls{};            // Quark's observer class name
  bool is_scale_quant = false;  // the per-tensor quantizer of a two-level scheme's block scales
};

// The exported value of one layer-object key (§6.2): null (no spec), one spec (an object) or two
// (a list: a progressive weight's stages, or a two-level FP4 spec then its scale quantizer).
struct spec_list {
  std::array<exported_spec, 2> at{};
  uint8_t count = 0;
  [[nodiscard]] std::span<const exported_spec> specs() const noexcept { return {at.data(), count}; }
};

// A scheme's whole identity, one row per scheme (the way a ggml type-traits row is): its names,
// the weight math the kernels run, the backends that have a kernel for it, and the specs the
// exported quantization_config declares. The output tensors it writes follow from the math
// (output_tensors() below). A new scheme whose math exists is a new row here and nothing else in
// pipeline/ or cli/.
struct scheme_info {
  scheme_id id{};
  std::string_view name{};
  scheme_family family{};
  mx_element element = mx_element::none;  // mx family only
  uint32_t group_size = 0;                // int4/uint4 per-group: g; mx: 32; fp4: 16/32; else 0
  std::string_view help{};                // one line for `shardquant schemes`
  uint8_t backends = backend_all;         // backend_bits: kernels that exist (and are confirmed)
  std::string_view alias{};               // another accepted name ("" none)
  spec_list input{};                      // exported "input_tensors"
  spec_list weight{};                     // exported "weight"
  spec_list output{};                     // exported "output_tensors" (null for every scheme)
};

// A name formats.md §5.9 or Quark refuses: asking for it is an error with this reason.
struct refused_scheme {
  std::string_view name;
  std::string_view reason;
};

// Every scheme, in the order of formats.md §5.1.
[[nodiscard]] std::span<const scheme_info> all_schemes() noexcept;
[[nodiscard]] const scheme_info& info(scheme_id s) noexcept;
// A name or an alias (e.g. "fp4_block16_scale_e4m3" -> nvfp4).
[[nodiscard]] std::optional<scheme_id> parse_scheme(std::string_view name) noexcept;
// The refused rows, e.g. "mx6" with Quark 0.13's own failure.
[[nodiscard]] std::span<const refused_scheme> refused_schemes() noexcept;
[[nodiscard]] std::optional<std::string_view> unsupported_scheme_reason(
    std::string_view name) noexcept;
// Why `name` is not a scheme, in the one wording every caller uses: "scheme 'mx6' is refused:
// REASON" or "unknown scheme 'x' (known: ...)". "" when parse_scheme accepts it.
[[nodiscard]] std::string scheme_name_error(std::string_view name);

// Whether the scheme needs the amax of the whole tensor before any element can be encoded
// (per-tensor scale). Such tensors split into row ranges need an amax pass first.
[[nodiscard]] bool needs_tensor_amax(scheme_family f) noexcept;
// The smallest row count a row range of the tensor may be split at: 8 for per-group int4/uint4
// (8 rows share an output word after the transpose), 1 for per-row schemes, 0 when the output
// of one row is not independent of the others (per-tensor schemes still split, after amax).
[[nodiscard]] uint32_t row_split_multiple(scheme_family f) noexcept;

// One tensor a quantized weight `<m>.weight` turns into.
struct output_tensor {
  std::string suffix;  // appended to the weight name: "", "_scale", "_scale_2", "_zero_point"
  dtype type;
  std::vector<uint64_t> shape;
  [[nodiscard]] uint64_t byte_size() const noexcept;
};

// Checks formats.md §4.4 for a weight of `shape`; returns an error message ("" = fine).
// `warning` receives the rank >= 3 warning of §4.4 / §5.10 when it applies.
[[nodiscard]] std::string check_shape(scheme_id s, std::span<const uint64_t> shape,
                                      std::string* warning = nullptr);

// ---- weight schemes as the kernels see them: a single-stage format or a progressive pair
// ----------

// One single-stage weight quantization: the math and granularity of a row of the scheme table,
// without its activation spec. `family` is never scheme_family::int4_fp8 (that is a pair).
struct weight_format {
  scheme_family family = scheme_family::fp8_tensor;
  mx_element element = mx_element::none;  // mx only
  uint32_t group_size = 0;  // int4/uint4 per-group: g; mx: 32; nvfp4: 16; amdfp4*: 16/32; else 0
  friend bool operator==(const weight_format&, const weight_format&) = default;
};

// What a weight is quantized with (formats.md §5, §10): one format, or a progressive pair whose
// first stage quantizes the source and whose second stage quantizes the first stage's code
// values as F32 and is packed in Quark's "reorder" mode (int4/uint4 nibbles [0,2,4,6,1,3,5,7]).
// Outputs of a pair: `.weight` (second stage, packed), `_scale` (first stage), `_scale_2` (second
// stage), `_zero_point` (asymmetric second stage, [DIFF 4]). Built-in int4_fp8 is the pair
// (fp8 per-tensor, int4 per-channel). Every scheme_id converts to its weight_scheme.
struct weight_scheme {
  weight_format first;   // the only stage of a single-stage scheme
  weight_format second;  // progressive only
  bool progressive = false;

  weight_scheme(
      scheme_id s) noexcept;  // NOLINT(google-explicit-constructor): built-ins are schemes
  explicit weight_scheme(weight_format single) noexcept : first(single) {}
  weight_scheme(weight_format stage1, weight_format stage2) noexcept
      : first(stage1), second(stage2), progressive(true) {}
  // The format whose codes the `.weight` output holds.
  [[nodiscard]] const weight_format& packed() const noexcept {
    return progressive ? second : first;
  }
  friend bool operator==(const weight_scheme&, const weight_scheme&) = default;
};

// "fp8_e4m3 per-tensor", "int4 per-group 128", "fp4 mx", ... and "A -> B" for a pair.
[[nodiscard]] std::string describe(const weight_format& f);
[[nodiscard]] std::string describe(const weight_scheme& s);
// Why (first, second) cannot be a progressive pair; "" when it can. First stages: fp8 per-tensor,
// fp8 per-row, int8 per-tensor (codes whose values are exact floats, per-tensor or per-row);
// second stages: fp8 per-row, int4/uint4 per-group or per-channel.
[[nodiscard]] std::string progressive_error(const weight_format& first,
                                            const weight_format& second);

[[nodiscard]] bool needs_tensor_amax(const weight_scheme& s) noexcept;
[[nodiscard]] uint32_t row_split_multiple(const weight_scheme& s) noexcept;
// check_shape for any weight scheme; `name` names it in the message (default: describe(s)).
[[nodiscard]] std::string check_shape(const weight_scheme& s, std::span<const uint64_t> shape,
                                      std::string* warning = nullptr, std::string_view name = {});

// The output tensors, in the order: weight, scale, then scale_2 or zero_point (formats.md §5.1,
// §5.10); a pair: weight, scale, scale_2 [, zero_point]. `shape` must have passed check_shape.
// `source` is the dtype the weight reaches the kernel in: amdfp4's scale is stored in it.
[[nodiscard]] std::vector<output_tensor> output_tensors(const weight_scheme& s,
                                                        std::span<const uint64_t> shape,
                                                        dtype source = dtype::bf16);

// Whether backend `b` (backend_cuda, ...) has a kernel for the weight scheme: every stage's
// family must have one (the `backends` column of the table, by family).
[[nodiscard]] bool backend_supports(uint8_t b, const weight_scheme& s) noexcept;

}  // namespace shardquant
