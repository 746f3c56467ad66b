// Synthetic checkpoints for tests, demos and benchmarks (`shardquant make-checkpoint`): the real
// architectures' tensor names and shapes (llama, deepseek_v3, qwen3_moe) scaled to a target
// size, a realistic config.json, side files, and weights drawn like trained ones. Writes through
// io's shard_layout/shard_writer; never holds a whole shard in memory.
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
};

struct synthetic_tensor {
  std::string name;
  std::vector<uint64_t> shape;
  dtype type;
  synthetic_kind kind;
  std::vector<uint64_t> source_shape;  // fp8_weight / fp8_scale: the weight's [R, C]
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
};

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
