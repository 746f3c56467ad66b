// Synthetic checkpoints for tests, demos and benchmarks (`shardquant make-checkpoint`): the real
// architectures' tensor names and shapes (llama, deepseek_v3, qwen3_moe) scaled to a target
// size, a realistic config.json, side files, and weights drawn like trained ones. Writes through
// io's shard_layout/shard_writer; never holds a whole shard in memory.
//
// Quantized sources (formats.md §7), quantized from the same fp32 rows a plain checkpoint holds:
// DeepSeek-style block FP8 (--dtype fp8), optionally TP-presharded (--presharded ROWS, §7.2.4),
// and compressed-tensors (--ct VARIANT, §7.3: pack-quantized, float-quantized, naive/int-quantized,
// nvfp4-/mxfp4-pack-quantized, several config groups) whose module tensors always share one shard;
// with --dtype fp8, --dsv4-mxfp4 makes the routed experts DeepSeek-V4 MXFP4 (I8 + F8_E8M0 .scale).
//
// --odd-shapes: intermediate sizes (dense and MoE) and the DeepSeek LoRA ranks are chosen
// ≡ 2 (mod 4) and the vocabulary odd, so that
//   - int4_wo_* / int4_wa_64 / uint4_wo_* (per-group, in % g) reject mlp.down_proj,
//     experts.N.down_proj, shared_experts.down_proj (in = intermediate size) and, for
//     deepseek_v3, q_b_proj (in = q_lora_rank) and kv_b_proj (in = kv_lora_rank) when they are
//     not excluded (the deepseek_v3 template excludes *self_attn*);
//   - mxfp6_e2m3 / mxfp6_e3m2 (last dim % 4) reject the same tensors;
//   - mxfp4*, fp8, ptpc_fp8, int8, int4_fp8 and the per-channel int4/uint4 schemes accept
//     every tensor (the odd vocabulary only changes lm_head's output dimension, which no scheme
//     constrains).
// Hidden sizes stay multiples of 64 because attention heads need them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/dtype.h"

namespace shardquant {

enum class synthetic_kind : uint8_t {
  linear,      // normal, std 1/sqrt(in) with per-row spread, outliers, some all-zero rows
  embedding,   // normal, std 0.02
  norm,        // around 1.0
  bias,        // small values (e.g. e_score_correction_bias), stored F32
  fp8_weight,  // linear weight stored F8_E4M3 with 128x128 block scales (--dtype fp8)
  fp8_scale,   // the F32 `_scale_inv` of an fp8_weight
  // compressed-tensors (--ct): the tensors of one quantized Linear module, all derived from the
  // same fp32 rows the plain weight would have (keyed by the weight's name, `base`).
  ct_packed,      // `weight_packed` I32 [R, ceil(C*b/32)] (pack-quantized)
  ct_shape,       // `weight_shape` I64 [2] = [R, C]
  ct_weight,      // `weight` F8_E4M3 (float-quantized) or I8 (naive/int-quantized) [R, C]
  ct_scale,       // `weight_scale` in the model dtype, shape by strategy
  ct_zero_point,  // `weight_zero_point`: packed I32 [ceil(R*b/32), G] or I8 [R, 1]
  ct_g_idx,       // `weight_g_idx` I32 [C] (actorder group)
  // FP4-packed sources (kernels/FORMATS-fp4-sources.md): --ct nvfp4 / mxfp4 and --dsv4-mxfp4.
  fp4_packed,        // U8 `weight_packed` (CT) or I8 `weight` (DeepSeek-V4) [R, C/2]
  fp4_scale,         // F8_E4M3 [R, C/16] (nvfp4), U8 [R, C/32] (mxfp4), F8_E8M0 `.scale` (DSV4)
  fp4_global_scale,  // nvfp4 `weight_global_scale` F32 [1]
};

// compressed-tensors weight arguments of one config group (formats.md §7.3).
struct synthetic_ct_args {
  std::string format;     // pack-quantized | float-quantized | naive-quantized | int-quantized
  uint32_t bits = 0;      // 4 or 8
  bool is_float = false;  // type float (fp8 e4m3) instead of int
  std::string strategy;   // tensor | channel | group | block
  uint64_t group_size = 0;
  uint64_t block = 0;  // block strategy: block_structure [block, block]
  bool symmetric = true;
  bool actorder = false;          // actorder "group": a permuted weight_g_idx is written
  dtype scale_type = dtype::f32;  // the model dtype, in which `weight_scale` is stored
};

struct synthetic_tensor {
  synthetic_tensor() = default;
  synthetic_tensor(std::string n, std::vector<uint64_t> s, dtype t, synthetic_kind k,
                   std::vector<uint64_t> src = {})
      : name(std::move(n)), shape(std::move(s)), type(t), kind(k), source_shape(std::move(src)) {}
  std::string name;
  std::vector<uint64_t> shape;
  dtype type = dtype::f32;
  synthetic_kind kind = synthetic_kind::linear;
  std::vector<uint64_t> source_shape;  // fp8_* / ct_*: the weight's [R, C]
  uint64_t chunk_rows = 0;  // fp8_*: presharded chunk rows (0 = R, one chunk), formats.md §7.2.4
  std::string base;         // ct_*: the weight's name (`M.weight`)
  synthetic_ct_args ct;     // ct_*: the arguments of the module's config group
  bool joins_previous = false;  // kept in the previous tensor's shard (CT companions, §7.3.1)
  [[nodiscard]] uint64_t bytes() const;
};

struct synthetic_model {
  nlohmann::ordered_json config;
  std::vector<synthetic_tensor> tensors;  // in model order
  [[nodiscard]] uint64_t bytes() const;
};

struct make_checkpoint_options {
  std::string arch = "llama";  // llama | deepseek_v3 | qwen3_moe
  uint64_t size = 0;           // target total tensor bytes
  // bf16 | f16 | f32, or f8_e4m3 for a DeepSeek-style block-FP8 source (BF16 model dtype,
  // Linear weights except lm_head and routers as F8_E4M3 + F32 `_scale_inv`, quant_method fp8).
  dtype type = dtype::bf16;
  uint64_t shard_size = 0;  // max tensor bytes per shard (a larger tensor gets its own)
  std::filesystem::path out;
  uint64_t seed = 0;
  bool odd_shapes = false;
  // compressed-tensors source (model dtype = type, which must be bf16/f16/f32): one of
  // ct_variants(); empty = none. Linear weights except lm_head and the routers are quantized
  // from the same fp32 rows a plain checkpoint would hold; scales are stored in the model dtype.
  std::string ct;
  // FP8 sources only: the routed experts' Linear weights become DeepSeek-V4-style MXFP4 (I8
  // packed E2M1 pairs + F8_E8M0 sibling `<module>.scale` in 1x32 blocks); needs an MoE arch.
  bool dsv4_mxfp4 = false;
  // FP8 sources only: TP-presharded chunk rows (formats.md §7.2.4). Every weight family whose
  // row count is a multiple of it (at least two chunks) is block-quantized per chunk (scale
  // [(R/cr)*ceil(cr/128), ceil(C/128)]) and listed in quantization_config.presharded_weights
  // under a glob with `*` for the layer and expert numbers. 0 = not presharded.
  uint64_t presharded_rows = 0;
};

// The --ct variants with a one-line description each.
[[nodiscard]] const std::vector<std::pair<std::string, std::string>>& ct_variants();

[[nodiscard]] const std::vector<std::string>& synthetic_architectures();

// The model (config + tensor list) without writing anything; deterministic. Throws
// usage_error for an unknown architecture or a size too small for one layer.
[[nodiscard]] synthetic_model design_model(const make_checkpoint_options& o);

// Fills `out` with rows [row_begin, row_begin + rows) of tensor `t` as raw little-endian bytes
// of t.type (deterministic in seed, tensor name and row; independent of how rows are split).
void generate_rows(const synthetic_tensor& t, uint64_t seed, uint64_t row_begin, uint64_t rows,
                   std::byte* out);

struct make_checkpoint_result {
  uint64_t tensors = 0;
  uint64_t bytes = 0;
  std::vector<std::string> shards;  // relative paths
};

// Writes the checkpoint into o.out (created; must not hold a config.json already).
make_checkpoint_result make_checkpoint(const make_checkpoint_options& o);

}  // namespace shardquant
