// The plan: every decision about every tensor, made from headers and config.json only
// (design.md §1, formats.md §3-4, §7-9), before any tensor data is read. The pipeline graph
// executes it; --dry-run prints it. Owns no I/O beyond what building it needs (headers, the
// few-byte compressed-tensors `weight_shape` tensors); never includes stages/ or the graph.
//
// Shape of the data:
//   plan
//   ├─ sources[]        one per source shard: relative path, full path, parsed header
//   ├─ shards[]         one per output shard (1:1 with sources, same relative path):
//   │                    shard_layout (every output tensor's file offset) + the items writing it
//   ├─ items[]          one per source tensor that produces output: read `source` (+ recovery
//   │                    companions) once, recover, then cut it into `parts` (converters)
//   │   └─ parts[]      one per post-conversion tensor: action, scheme, input dtype/shape,
//   │                    the output tensors it writes (name, dtype, shape, bytes, offset)
//   └─ consumed[]       source tensors not written (scale_inv, compressed-tensors companions)
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "kernels/dtype.h"
#include "kernels/importer_layout.h"
#include "kernels/recover_tensors.h"
#include "kernels/schemes.h"
#include "pipeline/plan/converters.h"
#include "pipeline/plan/kv_cache_config.h"
#include "pipeline/plan/quant_spec.h"
#include "pipeline/plan/rotation.h"

namespace shardquant {

// Input: io's source_checkpoint (io/checkpoint.h): config.json, the shard set and every header.

// ---------------------------------------------------------------------------------------------
// Options (formats.md §1.6).

struct layer_override {
  std::string glob;  // as the user wrote it; also the exported layer_quant_config key
  quant_scheme scheme;
};

struct plan_options {
  quant_scheme scheme = scheme_id::mxfp4;  // a built-in scheme or a custom spec (quant_spec.h)
  // nullopt: the model type's template list (Appendix A); an empty vector: exclude nothing.
  std::optional<std::vector<std::string>> exclude;
  std::vector<layer_override> layer_schemes;  // first match wins (user order)
  std::vector<converter> converters;          // user converters, tried before template ones
  bool use_template_converters = true;        // Appendix A "+ converters" of the model type
  bool keep_excluded_as_original = false;     // §8
  std::vector<std::pair<std::string, uint64_t>> presharded;  // §7.2.4 CLI globs -> chunk rows
  // Hadamard rotation (issue 15, pipeline/plan/rotation.h): `--rotation r1,r2,r4` (resolved with
  // the model type's built-in config) or a RotationConfig JSON file; both empty = no rotation.
  std::string rotation;
  std::filesystem::path rotation_config_file;
  // get_config's kv_cache_scheme / attention_scheme / min_kv_scale (kv_cache_config.h); the plan
  // appends the kv / q entries Quark adds to `layer_schemes` (they apply to tensors too).
  kv_attention_options kv;
  // Deliberate differences for the loaders (README "Loading the outputs"); the defaults are
  // byte-identical to Quark's file-to-file output.
  bool dynamic_activations = false;  // static input specs exported as dynamic
  output_layout layout = output_layout::quark_f2f;
};

// ---------------------------------------------------------------------------------------------
// Output.

enum class tensor_action : uint8_t {
  quantize,          // quantized with `scheme` from the dtype stored in the source
  pass_through,      // bytes copied unchanged
  cast,              // pass-through converted to the model dtype (§4.3), rne via fp32
  recover_quantize,  // recovered to F32 (§7), then quantized with `scheme`
  recover_cast,      // recovered to F32 (§7), excluded, written in the model dtype (§4.3)
  keep_original,     // §8: source bytes unchanged (FP8 weight or its renamed scale)
};
[[nodiscard]] std::string_view action_name(tensor_action a) noexcept;

// One source tensor's bytes on disk.
struct source_ref {
  uint32_t shard = 0;  // index into plan::source.shards
  std::string name;
  dtype type = dtype::u8;
  std::vector<uint64_t> shape;
  uint64_t file_offset = 0;  // absolute offset of the first byte in the shard file
  uint64_t bytes = 0;
};

enum class recovery_kind : uint8_t {
  none,
  fp8_block,   // §7.2: F8 weight x block scale (`_scale_inv` or sibling `.scale`)
  ct_packed,   // §7.3 pack-quantized: I32 words, b = 4 or 8
  ct_float,    // §7.3 float-quantized / naive-quantized float: F8_E4M3 x scale
  ct_int,      // §7.3 naive-quantized / int-quantized: I8 codes (- zp) x scale
  fp4_packed,  // FP4-packed sources (kernels/FORMATS-fp4-sources.md): U8/I8 E2M1 pairs x group
               // scale; `fp4_layout` says which (nvfp4/mxfp4-pack-quantized, DeepSeek-V4 MXFP4)
};

// ct_strategy (tensor, channel, group, block) comes from kernels/recover_tensors.h.

// Everything the recover stage needs besides the weight bytes. Recovered weights are F32 with
// shape `recovered_shape`.
struct recovery_params {
  recovery_kind kind = recovery_kind::none;
  std::vector<uint64_t> recovered_shape;  // logical [out, in] (CT: from `weight_shape`)
  std::optional<source_ref> scale;        // fp8_block and every ct_* kind
  // fp8_block (§7.2.2): block [block_rows, block_cols]; chunk_rows = presharded chunk (= R if
  // none). Sibling `.scale` tensors never use chunk rows (Quark applies them to _scale_inv only).
  uint64_t block_rows = 128, block_cols = 128, chunk_rows = 0;
  // compressed-tensors (§7.3.2)
  uint32_t num_bits = 0;  // 4 or 8
  ct_strategy strategy = ct_strategy::tensor;
  uint64_t group_size = 0;  // group strategy
  bool symmetric = true;
  std::optional<source_ref> zero_point;  // asymmetric group/channel only
  std::optional<source_ref> g_idx;       // actorder group
  // fp4_packed: layout, the nvfp4 global scale (read from the source at plan time) and the dtype
  // the reference's recovered values have (BF16 for compressed-tensors, the model dtype for
  // DeepSeek-V4 experts); the recovered weight reaches quantization in that dtype.
  ct_layout fp4_layout = ct_layout::mxfp4_packed;
  float global_scale = 1.0f;
  dtype recovered_type = dtype::f32;
};

// One tensor written to an output shard.
struct planned_output {
  std::string name;
  dtype type = dtype::u8;
  std::vector<uint64_t> shape;
  uint64_t bytes = 0;
  uint64_t file_offset = 0;  // absolute offset in the output shard (from shards[].layout)
};

// One post-conversion tensor and what happens to it.
struct plan_part {
  std::string name;       // post-conversion name (the weight name for quantized tensors)
  converter_slice slice;  // which part of the (recovered) source; whole() when unconverted
  tensor_action action = tensor_action::pass_through;
  std::optional<quant_scheme> scheme;  // quantize / recover_quantize
  dtype input_type = dtype::u8;        // dtype reaching this step (F32 when recovered)
  std::vector<uint64_t> input_shape;   // after recovery and conversion
  uint64_t input_bytes = 0;
  dtype cast_to = dtype::u8;  // cast / recover_cast: the model dtype
  uint32_t output_shard = 0;  // index into plan::shards
  // For quantized parts: weight, scale, then scale_2 or zero_point (kernels/schemes.h order).
  // Otherwise exactly one output.
  std::vector<planned_output> outputs;
  // Row ranges when the part's job layout does not fit one token: rows per range (a multiple of
  // row_split_multiple), 0 = one job for the whole tensor. Left 0 by make_plan; set by
  // decide_geometry (pipeline/plan/geometry.h) with the job builder's own rule.
  uint64_t split_rows = 0;
  bool amax_pass = false;  // split and the scheme needs the whole tensor's amax first
  std::string warning;     // e.g. rank >= 3 weight quantized as Quark does (§5.10)
  // Hadamard rotations of the weight before quantization, in order
  // (pipeline/plan/plan_rotation.cpp).
  std::vector<rotation_step> rotations;
  // > 0: not read but generated, the I8 [n, n] `input_rotation` buffer of an online rotation.
  uint64_t generated_rotation = 0;
};

// One source tensor read once (plus recovery companions), cut into parts.
struct plan_item {
  source_ref source;
  recovery_params recovery;
  std::optional<size_t> converter;  // index into plan::converters when one fired
  std::vector<plan_part> parts;
};

// A source tensor that is not written.
struct consumed_tensor {
  source_ref source;
  std::string reason;  // e.g. "scale of model.layers.0.mlp.up_proj.weight"
};

struct output_shard_plan {
  std::string relative_path;  // same as the source shard's (§3.2)
  uint32_t source_shard = 0;
  shard_layout layout;          // header bytes and every tensor's offset
  std::vector<uint32_t> items;  // indices into plan::items with a part writing here
};

struct scheme_count {
  quant_scheme scheme;
  uint64_t tensors = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
};

struct plan_totals {
  uint64_t bytes_in = 0;   // Σ source tensor bytes of all shards
  uint64_t bytes_out = 0;  // Σ output tensor bytes (index total_size)
  uint64_t quantized = 0, passed = 0, cast = 0, recovered = 0, kept = 0, consumed = 0;
  uint64_t amax_pass = 0;                // quantized tensors that need an amax pass (geometry)
  std::vector<scheme_count> per_scheme;  // in scheme table order (custom specs last), only used
};

// The resolved source facts the rest of the run needs (config export, report).
struct model_facts {
  std::string model_type;                      // "" when neither model_type nor architectures[0]
  dtype model_dtype = dtype::bf16;             // §3.7
  std::string quant_method;                    // source quant_method, "" when unquantized
  nlohmann::ordered_json source_quant_config;  // the §3.7 object, null when unquantized
  std::vector<std::string> exclude_globs;      // effective list (template or user)
  bool exclude_from_template = false;
};

// FP8 keep-original entry for the exported config (§8.2).
struct kept_module {
  std::string module;  // exact module name
};

struct plan {
  std::filesystem::path model_dir;
  source_checkpoint source;  // owns the headers; source_ref::shard indexes source.shards
  model_facts facts;
  plan_options options;
  std::vector<converter> converters;  // effective list: user, then template
  std::vector<plan_item> items;
  std::vector<consumed_tensor> consumed;
  std::vector<output_shard_plan> shards;      // 1:1 with source.shards, same order
  std::vector<std::string> exclude_resolved;  // §6.4, sorted, unique (kept modules removed)
  std::vector<kept_module> kept;              // §8, sorted by module name
  std::vector<std::string> warnings;
  // Schemes of this run whose output will not run correctly in transformers / vLLM with the
  // chosen options, one line each (pipeline/plan/loader_support.h); also in `warnings`.
  std::vector<std::string> loader_notes;
  plan_totals totals;
  // The rotation config as planned (online_config's layer list filled), exported as algo_config.
  std::optional<rotation_config> rotation;
  rotation_plan rotation_targets;
  kv_attention_export kv;  // the exported kv / attention entries (kv_cache_config.h)
};

// Builds the whole plan. Throws input_error (file, tensor, offset) or usage_error.
[[nodiscard]] plan make_plan(source_checkpoint source, plan_options options);

// The `quantization_config` object to append to config.json (formats.md §6.2).
[[nodiscard]] nlohmann::ordered_json exported_quantization_config(const plan& p);

// §4.1 step 1: ".weight" suffix, module not ending in "norm", not containing "embed".
[[nodiscard]] bool passes_name_rule(std::string_view tensor_name) noexcept;

}  // namespace shardquant
