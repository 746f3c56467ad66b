// The loader support table (loader_support.h). The transformers column was measured with
// scripts/check_loaders.py (transformers 5 + amd-quark 0.13 on the CPU); the vLLM column was
// read from vLLM's Quark loader (vllm/model_executor/layers/quantization/quark/), see README
// "Loading the outputs" for the files and commits.
#include "pipeline/plan/loader_support.h"

#include <array>

namespace shardquant {
namespace {

using v = vllm_status;
constexpr uint8_t dyn = opt_dynamic_activations;
constexpr uint8_t imp = opt_importer_layout;

constexpr std::string_view k_int4_why =
    "the importer reads int4/uint4 nibbles in the \"reorder\" order the config declares, "
    "per-group scales as [in/g, out] and a packed weight_zero_point (absent: uninitialized)";
constexpr std::string_view k_static_why =
    "the static input spec needs input_quantizer.scale, which the file-to-file flow (no "
    "calibration) does not write: the loader leaves it uninitialized";
constexpr std::string_view k_w4a16 =
    "QuarkW4A16Int4 (per-group weight-only int4/uint4; vLLM builds with PR #48606)";

constexpr std::string_view k_e5m3_why =
    "Quark's importer dequantizes E5M3 scales only from U8 codes "
    "(quark/torch/kernel/float8_e5m3/reference.py, reference_dequantize_float8_e5m3), and the "
    "file-to-file flow stores the E5M3 scale values in the source dtype";
constexpr std::string_view k_amdfp4_vllm =
    "no Quark scheme for E5M3 block scales (QuarkOCP_MX needs e8m0; _get_scheme_from_config "
    "raises NotImplementedError)";
constexpr std::string_view k_global_why =
    "Quark 0.13's importer cannot run it: SequentialRealQuantizer.forward "
    "(quark/torch/export/nn/modules/realquantizer.py) casts the stored U8 E5M3 block-scale codes "
    "to float32 before dequantizing them, and reference_dequantize_float8_e5m3 "
    "(quark/torch/kernel/float8_e5m3/reference.py) refuses non-uint8 input (ValueError)";
constexpr std::string_view k_global_vllm =
    "no Quark scheme for an fp4 weight with an fp8_e5m3 scale quantizer (_get_scheme_from_config "
    "raises NotImplementedError)";

constexpr std::array<loader_row, 24> k_rows{{
    {scheme_id::int4_wo_32, imp, k_int4_why, v::runs, imp, k_w4a16},
    {scheme_id::int4_wo_64, imp, k_int4_why, v::runs, imp, k_w4a16},
    {scheme_id::int4_wo_128, imp, k_int4_why, v::runs, imp, k_w4a16},
    {scheme_id::int4_wo_per_channel, imp, k_int4_why, v::unsupported, opt_none,
     "no Quark scheme for per-channel int4 weights (QuarkW4A16Int4 needs a group_size)"},
    {scheme_id::int4_wa_64, imp, k_int4_why, v::unsupported, opt_none,
     "no Quark scheme for int4 activations"},
    {scheme_id::uint4_wo_32, imp, k_int4_why, v::runs, imp, k_w4a16},
    {scheme_id::uint4_wo_64, imp, k_int4_why, v::runs, imp, k_w4a16},
    {scheme_id::uint4_wo_128, imp, k_int4_why, v::runs, imp, k_w4a16},
    {scheme_id::uint4_wo_per_channel, imp, k_int4_why, v::unsupported, opt_none,
     "no Quark scheme for per-channel uint4 weights (QuarkW4A16Int4 needs a group_size)"},
    {scheme_id::int8, dyn | imp,
     "the static input spec needs input scales the file-to-file flow does not write, and the "
     "importer reads a weight_zero_point for int8 weights",
     v::unsupported, opt_none,
     "QuarkW8A8Int8 needs calibrated static per-tensor input scales or dynamic per-token "
     "inputs; dynamic per-tensor int8 inputs match no Quark scheme"},
    {scheme_id::fp8, dyn, k_static_why, v::runs, dyn,
     "QuarkW8A8Fp8 (dynamic per-tensor fp8 inputs; static ones need input_scale)"},
    {scheme_id::ptpc_fp8, opt_none, "", v::runs, opt_none,
     "QuarkW8A8Fp8 (per-channel weights, dynamic per-token inputs)"},
    {scheme_id::mxfp4, opt_none, "", v::runs, opt_none, "QuarkOCP_MX"},
    {scheme_id::mxfp4_weight_only, opt_none, "", v::runs, opt_none,
     "QuarkOCP_MX (vLLM builds whose Quark loader accepts MX weights without an input spec)"},
    {scheme_id::mxfp6_e2m3, opt_none, "", v::runs, opt_none, "QuarkOCP_MX"},
    {scheme_id::mxfp6_e3m2, opt_none, "", v::runs, opt_none, "QuarkOCP_MX"},
    {scheme_id::mxfp4_mxfp6_e2m3, opt_none, "", v::runs, opt_none, "QuarkOCP_MX"},
    {scheme_id::mxfp4_fp8, dyn, k_static_why, v::unsupported, opt_none,
     "QuarkW4A8_MXFP4_FP8 needs calibrated static fp8 input scales; QuarkOCP_MX takes MX "
     "inputs only"},
    {scheme_id::int4_fp8, imp,
     "the importer's two-stage weight quantizer reads weight_quantizer.0.scale, "
     "weight_quantizer.1.scale and weight_quantizer.1.zero_point, not weight_scale / "
     "weight_scale_2",
     v::unsupported, opt_none, "W4A8 (fp8 -> int4) is a Quark MoE method only, not for Linear"},
    {scheme_id::nvfp4, dyn | imp,
     "the importer's sequential quantizer reads weight_quantizer.0.scale and "
     "weight_quantizer.1.scale, not weight_scale / weight_scale_2, and the static scale "
     "quantizer of the inputs needs input_quantizer.1.scale, which the file-to-file flow (no "
     "calibration) does not write",
     v::unsupported, opt_none,
     "QuarkNVFP4 needs the calibrated static global input scale input_scale_2, which the "
     "file-to-file flow does not write (with --dynamic-activations no Quark scheme matches)"},
    {scheme_id::amdfp4, imp, k_e5m3_why, v::unsupported, opt_none, k_amdfp4_vllm},
    {scheme_id::amdfp4_g32, imp, k_e5m3_why, v::unsupported, opt_none, k_amdfp4_vllm},
    {scheme_id::amdfp4_global16, opt_none, k_global_why, v::unsupported, opt_none, k_global_vllm,
     false},
    {scheme_id::amdfp4_global32, opt_none, k_global_why, v::unsupported, opt_none, k_global_vllm,
     false},
}};

}  // namespace

loader_row loader_support(scheme_id s) noexcept {
  for (const loader_row& r : k_rows)
    if (r.id == s) return r;
  return {s, opt_none, "", vllm_status::not_checked, opt_none, "not checked"};
}

std::string loader_options_text(uint8_t options) {
  std::string t;
  if (options & opt_dynamic_activations) t += "--dynamic-activations";
  if (options & opt_importer_layout)
    t += std::string(t.empty() ? "" : " ") + "--layout quark-importer";
  return t;
}

uint8_t loader_options_of(bool dynamic_activations, output_layout layout) noexcept {
  return static_cast<uint8_t>((dynamic_activations ? opt_dynamic_activations : 0) |
                              (layout == output_layout::quark_importer ? opt_importer_layout : 0));
}

std::string loader_warning(const quant_scheme& s, uint8_t options) {
  if (s.custom) return {};
  const loader_row r = loader_support(s.id);
  if (!r.hf_runs)
    return std::string(s.name()) +
           ": this output does not run in transformers + amd-quark with any option (" +
           std::string(r.hf_why) + ")";
  const uint8_t missing = static_cast<uint8_t>(r.hf_options & ~options);
  if (missing == 0) return {};
  std::string w = std::string(s.name()) +
                  ": this output will not compute correctly in transformers + amd-quark (" +
                  std::string(r.hf_why) + "); add " + loader_options_text(missing);
  const uint8_t vllm_missing = static_cast<uint8_t>(r.vllm_options & ~options);
  if (r.vllm == vllm_status::runs && vllm_missing != 0)
    w += vllm_missing == missing ? " (the same for vLLM)"
                                 : " (vLLM needs " + loader_options_text(vllm_missing) + ")";
  return w;
}

}  // namespace shardquant
