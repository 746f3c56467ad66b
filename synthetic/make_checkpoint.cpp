// Synthetic checkpoint generator: architecture shapes, config.json, side files, weights.
// Rows are generated from a counter-based PRNG keyed by (seed, tensor name, row), so the bytes
// do not depend on thread count or on how a tensor is cut into blocks.
#include "synthetic/make_checkpoint.h"

#include <tbb/parallel_for.h>
#include <tbb/parallel_reduce.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <regex>
#include <string_view>

#include "io/error.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "io/shard_writer.h"
#include "kernels/fp8.h"
#include "kernels/mx.h"
#include "kernels/numeric.h"

namespace shardquant {
namespace {

using json = nlohmann::ordered_json;

uint64_t round_up(uint64_t x, uint64_t m) {
  return (x + m - 1) / m * m;
}
// A size ≡ 2 (mod 4): even (mxfp4 accepts it) but not a multiple of 4, 32 or 128.
uint64_t odd_size(uint64_t x) {
  return x / 4 * 4 + 2;
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// wyrand: one multiply per 64 random bits.
struct rng {
  uint64_t s;
  uint64_t next() {
    s += 0xa0761d6478bd642full;
    const __uint128_t m = static_cast<__uint128_t>(s) * (s ^ 0xe7037ed1a0b428dbull);
    return static_cast<uint64_t>(m >> 64) ^ static_cast<uint64_t>(m);
  }
  // Approximately standard normal: Irwin-Hall sum of four 16-bit uniforms, variance scaled to 1.
  float normal() {
    const uint64_t r = next();
    const uint32_t sum = static_cast<uint32_t>((r & 0xFFFF) + ((r >> 16) & 0xFFFF) +
                                               ((r >> 32) & 0xFFFF) + (r >> 48));
    return (static_cast<float>(sum) * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
  }
  float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }
};

void store(dtype t, float v, std::byte* p) {
  switch (t) {
    case dtype::bf16: {
      const uint16_t h = to_bf16_rne(v);
      std::memcpy(p, &h, 2);
      break;
    }
    case dtype::f16: {
      const uint16_t h = to_f16_rne(v);
      std::memcpy(p, &h, 2);
      break;
    }
    default:
      std::memcpy(p, &v, 4);
  }
}

struct builder {
  dtype type;
  std::vector<synthetic_tensor> t;
  void add(std::string name, std::vector<uint64_t> shape, synthetic_kind k) {
    t.push_back(
        {std::move(name), std::move(shape), k == synthetic_kind::bias ? dtype::f32 : type, k, {}});
  }
  void linear(const std::string& n, uint64_t out, uint64_t in) {
    add(n + ".weight", {out, in}, synthetic_kind::linear);
  }
  void norm(const std::string& n, uint64_t d) { add(n + ".weight", {d}, synthetic_kind::norm); }
};

// The real vocabulary from hidden size 2048 up; smaller models get smaller vocabularies so that
// small targets still hold several layers.
uint64_t small_vocab(uint64_t H, uint64_t real) {
  return H >= 2048 ? real : H >= 1024 ? 32000 : H >= 512 ? 16384 : 8192;
}

const std::vector<uint64_t> k_hidden_ladder{256,  512,  768,  1024, 1536, 2048,
                                            3072, 4096, 5120, 6144, 7168, 8192};

// ---- llama ----
struct llama_dims {
  uint64_t H, I, V, heads, kv, hd;
};
llama_dims llama_for(uint64_t H, bool odd) {
  llama_dims d;
  d.H = H;
  d.hd = H <= 1024 ? 64 : 128;
  d.heads = H / d.hd;
  d.kv = std::max<uint64_t>(1, d.heads / 4);
  d.I = odd ? odd_size(H * 8 / 3) : round_up(H * 8 / 3, 256);
  d.V = small_vocab(H, 128256);
  if (odd) d.V += 1;
  return d;
}
uint64_t llama_layer(const llama_dims& d) {
  return 2 * d.H * d.H + 2 * d.kv * d.hd * d.H + 3 * d.H * d.I + 2 * d.H;
}
uint64_t llama_fixed(const llama_dims& d) {
  return 2 * d.V * d.H + d.H;
}

synthetic_model llama_model(const llama_dims& d, uint64_t L, dtype type) {
  builder b{type, {}};
  b.add("model.embed_tokens.weight", {d.V, d.H}, synthetic_kind::embedding);
  for (uint64_t i = 0; i < L; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    b.norm(p + "input_layernorm", d.H);
    b.linear(p + "self_attn.q_proj", d.heads * d.hd, d.H);
    b.linear(p + "self_attn.k_proj", d.kv * d.hd, d.H);
    b.linear(p + "self_attn.v_proj", d.kv * d.hd, d.H);
    b.linear(p + "self_attn.o_proj", d.H, d.heads * d.hd);
    b.norm(p + "post_attention_layernorm", d.H);
    b.linear(p + "mlp.gate_proj", d.I, d.H);
    b.linear(p + "mlp.up_proj", d.I, d.H);
    b.linear(p + "mlp.down_proj", d.H, d.I);
  }
  b.norm("model.norm", d.H);
  b.linear("lm_head", d.V, d.H);
  json c;
  c["architectures"] = {"LlamaForCausalLM"};
  c["attention_bias"] = false;
  c["attention_dropout"] = 0.0;
  c["bos_token_id"] = 1;
  c["eos_token_id"] = 2;
  c["head_dim"] = d.hd;
  c["hidden_act"] = "silu";
  c["hidden_size"] = d.H;
  c["initializer_range"] = 0.02;
  c["intermediate_size"] = d.I;
  c["max_position_embeddings"] = 8192;
  c["mlp_bias"] = false;
  c["model_type"] = "llama";
  c["num_attention_heads"] = d.heads;
  c["num_hidden_layers"] = L;
  c["num_key_value_heads"] = d.kv;
  c["pretraining_tp"] = 1;
  c["rms_norm_eps"] = 1e-05;
  c["rope_scaling"] = nullptr;
  c["rope_theta"] = 500000.0;
  c["tie_word_embeddings"] = false;
  c["use_cache"] = true;
  c["vocab_size"] = d.V;
  return {std::move(c), std::move(b.t)};
}

// ---- deepseek_v3 ----
struct dsv3_dims {
  uint64_t H, I, moe_I, V, heads, q_lora, kv_lora, nope, rope, vdim, E, shared;
};
dsv3_dims dsv3_for(uint64_t H, bool odd) {
  dsv3_dims d;
  d.H = H;
  const bool big = H >= 2048;
  d.nope = big ? 128 : 64;
  d.rope = big ? 64 : 32;
  d.vdim = big ? 128 : 64;
  d.heads = std::max<uint64_t>(2, H / 128);
  d.q_lora = odd ? odd_size(H / 2) : round_up(H / 2, 64);
  d.kv_lora = odd ? odd_size(H / 4) : round_up(H / 4, 64);
  d.I = odd ? odd_size(H * 8 / 3) : round_up(H * 8 / 3, 256);
  d.moe_I = odd ? odd_size(H / 2) : round_up(H / 2, 64);
  d.E = H >= 4096 ? 32 : H >= 1024 ? 16 : 8;
  d.shared = 1;
  d.V = small_vocab(H, 129280);
  if (odd) d.V += 1;
  return d;
}
uint64_t dsv3_attn(const dsv3_dims& d) {
  return d.H * d.q_lora + d.q_lora + d.q_lora * d.heads * (d.nope + d.rope) +
         d.H * (d.kv_lora + d.rope) + d.kv_lora + d.kv_lora * d.heads * (d.nope + d.vdim) +
         d.heads * d.vdim * d.H + 2 * d.H;
}
uint64_t dsv3_moe_layer(const dsv3_dims& d) {
  return dsv3_attn(d) + d.E * d.H + d.E + (d.E + d.shared) * 3 * d.moe_I * d.H;
}
uint64_t dsv3_fixed(const dsv3_dims& d) {
  return 2 * d.V * d.H + d.H + dsv3_attn(d) + 3 * d.H * d.I;  // + the dense first layer
}

synthetic_model dsv3_model(const dsv3_dims& d, uint64_t moe_layers, dtype type) {
  builder b{type, {}};
  b.add("model.embed_tokens.weight", {d.V, d.H}, synthetic_kind::embedding);
  const uint64_t L = moe_layers + 1;
  for (uint64_t i = 0; i < L; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    b.norm(p + "input_layernorm", d.H);
    b.linear(p + "self_attn.q_a_proj", d.q_lora, d.H);
    b.norm(p + "self_attn.q_a_layernorm", d.q_lora);
    b.linear(p + "self_attn.q_b_proj", d.heads * (d.nope + d.rope), d.q_lora);
    b.linear(p + "self_attn.kv_a_proj_with_mqa", d.kv_lora + d.rope, d.H);
    b.norm(p + "self_attn.kv_a_layernorm", d.kv_lora);
    b.linear(p + "self_attn.kv_b_proj", d.heads * (d.nope + d.vdim), d.kv_lora);
    b.linear(p + "self_attn.o_proj", d.H, d.heads * d.vdim);
    b.norm(p + "post_attention_layernorm", d.H);
    if (i == 0) {
      b.linear(p + "mlp.gate_proj", d.I, d.H);
      b.linear(p + "mlp.up_proj", d.I, d.H);
      b.linear(p + "mlp.down_proj", d.H, d.I);
      continue;
    }
    b.linear(p + "mlp.gate", d.E, d.H);
    b.add(p + "mlp.gate.e_score_correction_bias", {d.E}, synthetic_kind::bias);
    for (uint64_t e = 0; e < d.E; ++e) {
      const std::string x = p + "mlp.experts." + std::to_string(e) + ".";
      b.linear(x + "gate_proj", d.moe_I, d.H);
      b.linear(x + "up_proj", d.moe_I, d.H);
      b.linear(x + "down_proj", d.H, d.moe_I);
    }
    b.linear(p + "mlp.shared_experts.gate_proj", d.moe_I * d.shared, d.H);
    b.linear(p + "mlp.shared_experts.up_proj", d.moe_I * d.shared, d.H);
    b.linear(p + "mlp.shared_experts.down_proj", d.H, d.moe_I * d.shared);
  }
  b.norm("model.norm", d.H);
  b.linear("lm_head", d.V, d.H);
  json c;
  c["architectures"] = {"DeepseekV3ForCausalLM"};
  c["attention_bias"] = false;
  c["attention_dropout"] = 0.0;
  c["auto_map"] = {{"AutoConfig", "configuration_deepseek.DeepseekV3Config"},
                   {"AutoModel", "modeling_deepseek.DeepseekV3Model"},
                   {"AutoModelForCausalLM", "modeling_deepseek.DeepseekV3ForCausalLM"}};
  c["bos_token_id"] = 0;
  c["eos_token_id"] = 1;
  c["ep_size"] = 1;
  c["first_k_dense_replace"] = 1;
  c["hidden_act"] = "silu";
  c["hidden_size"] = d.H;
  c["initializer_range"] = 0.02;
  c["intermediate_size"] = d.I;
  c["kv_lora_rank"] = d.kv_lora;
  c["max_position_embeddings"] = 163840;
  c["model_type"] = "deepseek_v3";
  c["moe_intermediate_size"] = d.moe_I;
  c["moe_layer_freq"] = 1;
  c["n_group"] = 1;
  c["n_routed_experts"] = d.E;
  c["n_shared_experts"] = d.shared;
  c["norm_topk_prob"] = true;
  c["num_attention_heads"] = d.heads;
  c["num_experts_per_tok"] = std::min<uint64_t>(8, d.E / 2);
  c["num_hidden_layers"] = L;
  c["num_key_value_heads"] = d.heads;
  c["num_nextn_predict_layers"] = 0;
  c["q_lora_rank"] = d.q_lora;
  c["qk_nope_head_dim"] = d.nope;
  c["qk_rope_head_dim"] = d.rope;
  c["rms_norm_eps"] = 1e-06;
  c["rope_theta"] = 10000;
  c["routed_scaling_factor"] = 2.5;
  c["scoring_func"] = "sigmoid";
  c["tie_word_embeddings"] = false;
  c["topk_group"] = 1;
  c["topk_method"] = "noaux_tc";
  c["use_cache"] = true;
  c["v_head_dim"] = d.vdim;
  c["vocab_size"] = d.V;
  return {std::move(c), std::move(b.t)};
}

// ---- qwen3_moe ----
struct qwen_dims {
  uint64_t H, moe_I, V, heads, kv, hd, E;
};
qwen_dims qwen_for(uint64_t H, bool odd) {
  qwen_dims d;
  d.H = H;
  d.hd = H <= 1024 ? 64 : 128;
  d.heads = 2 * H / d.hd;  // Qwen3-MoE projects to more heads than hidden/head_dim
  d.kv = std::max<uint64_t>(1, d.heads / 8);
  d.moe_I = odd ? odd_size(H * 3 / 8) : round_up(H * 3 / 8, 64);
  d.E = H >= 4096 ? 64 : H >= 1024 ? 32 : 16;
  d.V = small_vocab(H, 151936);
  if (odd) d.V += 1;
  return d;
}
uint64_t qwen_layer(const qwen_dims& d) {
  const uint64_t q = d.heads * d.hd, kv = d.kv * d.hd;
  return 2 * q * d.H + 2 * kv * d.H + 2 * d.hd + 2 * d.H + d.E * d.H + d.E * 3 * d.moe_I * d.H;
}
uint64_t qwen_fixed(const qwen_dims& d) {
  return 2 * d.V * d.H + d.H;
}

synthetic_model qwen_model(const qwen_dims& d, uint64_t L, dtype type) {
  builder b{type, {}};
  b.add("model.embed_tokens.weight", {d.V, d.H}, synthetic_kind::embedding);
  for (uint64_t i = 0; i < L; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    b.norm(p + "input_layernorm", d.H);
    b.linear(p + "self_attn.q_proj", d.heads * d.hd, d.H);
    b.linear(p + "self_attn.k_proj", d.kv * d.hd, d.H);
    b.linear(p + "self_attn.v_proj", d.kv * d.hd, d.H);
    b.linear(p + "self_attn.o_proj", d.H, d.heads * d.hd);
    b.norm(p + "self_attn.q_norm", d.hd);
    b.norm(p + "self_attn.k_norm", d.hd);
    b.norm(p + "post_attention_layernorm", d.H);
    b.linear(p + "mlp.gate", d.E, d.H);
    for (uint64_t e = 0; e < d.E; ++e) {
      const std::string x = p + "mlp.experts." + std::to_string(e) + ".";
      b.linear(x + "gate_proj", d.moe_I, d.H);
      b.linear(x + "up_proj", d.moe_I, d.H);
      b.linear(x + "down_proj", d.H, d.moe_I);
    }
  }
  b.norm("model.norm", d.H);
  b.linear("lm_head", d.V, d.H);
  // Each architecture's config.json is spelled out key by key, in the order Hugging Face writes it,
  // like the llama one above on purpose: the values differ, and a shared helper would hide which
  // keys a model type's loader reads.
  json c;
  c["architectures"] = {"Qwen3MoeForCausalLM"};
  c["attention_bias"] = false;
  c["attention_dropout"] = 0.0;
  c["bos_token_id"] = 151643;
  c["decoder_sparse_step"] = 1;
  c["eos_token_id"] = 151645;
  c["head_dim"] = d.hd;
  c["hidden_act"] = "silu";
  c["hidden_size"] = d.H;
  c["initializer_range"] = 0.02;
  c["intermediate_size"] = d.moe_I * 8;
  c["max_position_embeddings"] = 40960;
  c["max_window_layers"] = L;
  c["mlp_only_layers"] = json::array();
  c["model_type"] = "qwen3_moe";
  c["moe_intermediate_size"] = d.moe_I;
  c["norm_topk_prob"] = true;
  c["num_attention_heads"] = d.heads;
  c["num_experts"] = d.E;
  c["num_experts_per_tok"] = std::min<uint64_t>(8, d.E / 2);
  c["num_hidden_layers"] = L;
  c["num_key_value_heads"] = d.kv;
  c["output_router_logits"] = false;
  c["rms_norm_eps"] = 1e-06;
  c["rope_scaling"] = nullptr;
  c["rope_theta"] = 1000000.0;
  c["router_aux_loss_coef"] = 0.001;
  c["sliding_window"] = nullptr;
  c["tie_word_embeddings"] = false;
  c["use_cache"] = true;
  c["use_sliding_window"] = false;
  c["vocab_size"] = d.V;
  return {std::move(c), std::move(b.t)};
}

// Largest hidden size whose fixed part leaves room for about four layers, then as many layers
// as fill the target.
template <class Dims, class For, class Fixed, class Layer>
std::pair<Dims, uint64_t> fit(uint64_t target, bool odd, For dims_for, Fixed fixed, Layer layer) {
  Dims best = dims_for(k_hidden_ladder.front(), odd);
  for (uint64_t H : k_hidden_ladder) {
    const Dims d = dims_for(H, odd);
    if (fixed(d) + 4 * layer(d) <= target) best = d;
  }
  const uint64_t f = fixed(best), l = layer(best);
  const uint64_t n = target > f ? std::max<uint64_t>(1, (target - f + l / 2) / l) : 1;
  return {best, n};
}

std::string dtype_config_name(dtype t) {
  return t == dtype::bf16 ? "bfloat16" : t == dtype::f16 ? "float16" : "float32";
}

// Linear weights a quantized source stores quantized: all but lm_head and the MoE routers.
bool source_quantized(const synthetic_tensor& x) {
  return x.kind == synthetic_kind::linear && x.name != "lm_head.weight" &&
         !x.name.ends_with("mlp.gate.weight");
}

// ---- compressed-tensors sources (--ct) ----
struct ct_group_def {
  std::vector<std::string> targets;
  synthetic_ct_args args;
};
struct ct_source_def {
  std::string top_format;
  std::vector<ct_group_def> groups;
};

synthetic_ct_args ct_int(const char* format, uint32_t b, const char* strategy, bool sym,
                         bool actorder = false) {
  synthetic_ct_args a;
  a.format = format;
  a.bits = b;
  a.strategy = strategy;
  a.group_size = std::string_view(strategy) == "group" ? 128 : 0;
  a.symmetric = sym;
  a.actorder = actorder;
  return a;
}
synthetic_ct_args ct_fp8(const char* strategy) {
  synthetic_ct_args a;
  a.format = "float-quantized";
  a.bits = 8;
  a.is_float = true;
  a.strategy = strategy;
  a.block = std::string_view(strategy) == "block" ? 128 : 0;
  return a;
}

// nvfp4-pack-quantized (tensor_group, 16, F8_E4M3 scales + F32 global scale) or
// mxfp4-pack-quantized (group 32, U8 E8M0 scales), as llm-compressor writes them.
synthetic_ct_args ct_fp4(bool nv) {
  synthetic_ct_args a;
  a.format = nv ? "nvfp4-pack-quantized" : "mxfp4-pack-quantized";
  a.bits = 4;
  a.is_float = true;
  a.strategy = nv ? "tensor_group" : "group";
  a.group_size = nv ? 16 : 32;
  return a;
}

bool is_fp4_format(const std::string& f) {
  return f == "nvfp4-pack-quantized" || f == "mxfp4-pack-quantized" || f == "dsv4-mxfp4";
}

ct_source_def ct_groups_of(const std::string& v) {
  const std::vector<std::string> lin{"Linear"};
  auto one = [&](synthetic_ct_args a) {
    const std::string f = a.format;
    return ct_source_def{f, {{lin, std::move(a)}}};
  };
  if (v == "int4-group") return one(ct_int("pack-quantized", 4, "group", true));
  if (v == "int4-group-asym") return one(ct_int("pack-quantized", 4, "group", false));
  if (v == "int4-group-actorder") return one(ct_int("pack-quantized", 4, "group", true, true));
  if (v == "int4-channel") return one(ct_int("pack-quantized", 4, "channel", true));
  if (v == "int4-channel-asym") return one(ct_int("pack-quantized", 4, "channel", false));
  if (v == "int8-channel") return one(ct_int("pack-quantized", 8, "channel", true));
  if (v == "fp8-tensor") return one(ct_fp8("tensor"));
  if (v == "fp8-channel") return one(ct_fp8("channel"));
  if (v == "fp8-block") return one(ct_fp8("block"));
  if (v == "naive-int8") return one(ct_int("naive-quantized", 8, "channel", true));
  if (v == "nvfp4") return one(ct_fp4(true));
  if (v == "mxfp4") return one(ct_fp4(false));
  if (v == "int8-asym") return one(ct_int("int-quantized", 8, "channel", false));
  const std::vector<std::string> attn{"re:.*self_attn.*"};
  if (v == "multi-group")  // two groups with equal arguments: attention by regex, the rest
    return {"pack-quantized",
            {{attn, ct_int("pack-quantized", 4, "group", true)},
             {lin, ct_int("pack-quantized", 4, "group", true)}}};
  if (v == "mixed")  // attention fp8 per channel, everything else int4 per group
    return {"mixed-precision",
            {{attn, ct_fp8("channel")}, {lin, ct_int("pack-quantized", 4, "group", true)}}};
  return {};
}

// formats.md §7.3.1 precedence: exact name, then a `re:` target (match at the start), then a
// class-name target; ties go to the first group.
const ct_group_def& ct_group_for(const ct_source_def& d, const std::string& module) {
  for (int level = 0; level < 3; ++level)
    for (const auto& g : d.groups)
      for (const auto& t : g.targets) {
        const bool hit =
            level == 0 ? t == module
            : level == 1
                ? t.starts_with("re:") && std::regex_search(module, std::regex(t.substr(3)),
                                                            std::regex_constants::match_continuous)
                : !t.starts_with("re:") && t.find('.') == std::string::npos;
        if (hit) return g;
      }
  throw usage_error("no --ct config group targets " + module);  // unreachable: `Linear`
}

nlohmann::ordered_json ct_weights_json(const synthetic_ct_args& a) {
  json w;
  w["actorder"] = a.actorder ? json("group") : json(nullptr);
  w["block_structure"] = a.block ? json::array({a.block, a.block}) : json(nullptr);
  w["dynamic"] = false;
  w["group_size"] = a.group_size ? json(a.group_size) : json(nullptr);
  w["num_bits"] = a.bits;
  w["observer"] = "minmax";
  w["observer_kwargs"] = json::object();
  w["strategy"] = a.strategy;
  w["symmetric"] = a.symmetric;
  w["type"] = a.is_float ? "float" : "int";
  return w;
}

void apply_ct(synthetic_model& m, const std::string& variant) {
  const ct_source_def d = ct_groups_of(variant);
  const dtype st = m.tensors.front().type;  // the model dtype stores the scales
  std::vector<synthetic_tensor> out;
  for (auto& x : m.tensors) {
    if (!source_quantized(x)) {
      out.push_back(std::move(x));
      continue;
    }
    const std::string module = x.name.substr(0, x.name.size() - 7);
    const synthetic_ct_args& a = ct_group_for(d, module).args;
    const uint64_t R = x.shape[0], C = x.shape[1];
    const uint64_t G = a.strategy == "group"   ? (C + a.group_size - 1) / a.group_size
                       : a.strategy == "block" ? (C + a.block - 1) / a.block
                                               : 1;
    auto add = [&](const std::string& suffix, std::vector<uint64_t> shape, dtype type,
                   synthetic_kind k) {
      synthetic_tensor t{module + suffix, std::move(shape), type, k, x.shape};
      t.base = x.name;
      t.ct = a;
      t.ct.scale_type = st;
      t.joins_previous = !out.empty() && out.back().base == x.name;
      out.push_back(std::move(t));
    };
    if (is_fp4_format(a.format)) {
      if (C % a.group_size != 0)
        throw usage_error("--ct " + variant + ": '" + x.name + "' has " + std::to_string(C) +
                          " columns, not a multiple of " + std::to_string(a.group_size) +
                          " (drop --odd-shapes)");
      add(".weight_packed", {R, C / 2}, dtype::u8, synthetic_kind::fp4_packed);
      add(".weight_scale", {R, C / a.group_size}, a.group_size == 16 ? dtype::f8_e4m3 : dtype::u8,
          synthetic_kind::fp4_scale);
      if (a.group_size == 16)
        add(".weight_global_scale", {1}, dtype::f32, synthetic_kind::fp4_global_scale);
      continue;
    }
    if (a.format == "pack-quantized") {
      add(".weight_packed", {R, (C * a.bits + 31) / 32}, dtype::i32, synthetic_kind::ct_packed);
    } else {
      add(".weight", {R, C}, a.is_float ? dtype::f8_e4m3 : dtype::i8, synthetic_kind::ct_weight);
    }
    if (a.strategy == "tensor")
      add(".weight_scale", {1}, st, synthetic_kind::ct_scale);
    else if (a.strategy == "block")
      add(".weight_scale", {(R + a.block - 1) / a.block, G}, st, synthetic_kind::ct_scale);
    else
      add(".weight_scale", {R, G}, st, synthetic_kind::ct_scale);
    if (a.format == "pack-quantized")
      add(".weight_shape", {2}, dtype::i64, synthetic_kind::ct_shape);
    if (!a.symmetric) {
      if (a.format == "pack-quantized")
        add(".weight_zero_point", {(R * a.bits + 31) / 32, G}, dtype::i32,
            synthetic_kind::ct_zero_point);
      else
        add(".weight_zero_point", {R, G}, dtype::i8, synthetic_kind::ct_zero_point);
    }
    if (a.actorder) add(".weight_g_idx", {C}, dtype::i32, synthetic_kind::ct_g_idx);
  }
  m.tensors = std::move(out);
  json groups = json::object();
  for (size_t i = 0; i < d.groups.size(); ++i) {
    const auto& g = d.groups[i];
    groups["group_" + std::to_string(i)] = {{"format", g.args.format},
                                            {"input_activations", nullptr},
                                            {"output_activations", nullptr},
                                            {"targets", g.targets},
                                            {"weights", ct_weights_json(g.args)}};
  }
  m.config["quantization_config"] = {{"config_groups", groups},
                                     {"format", d.top_format},
                                     {"global_compression_ratio", nullptr},
                                     {"ignore", {"lm_head", "re:.*mlp\\.gate$"}},
                                     {"kv_cache_scheme", nullptr},
                                     {"quant_method", "compressed-tensors"},
                                     {"quantization_status", "compressed"},
                                     {"sparsity_config", json::object()},
                                     {"transform_config", json::object()},
                                     {"version", "0.20.0"}};
}

// --dsv4-mxfp4: each routed expert's block-FP8 weight (and its `_scale_inv`) becomes an I8
// packed MXFP4 weight with an F8_E8M0 sibling `<module>.scale` [R, C/32] (DeepSeek-V4 layout).
void apply_dsv4_mxfp4(synthetic_model& m) {
  std::vector<synthetic_tensor> out;
  bool any = false;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    auto& x = m.tensors[i];
    const bool expert =
        x.kind == synthetic_kind::fp8_weight && x.name.find(".experts.") != std::string::npos;
    if (!expert) {
      out.push_back(std::move(x));
      continue;
    }
    const uint64_t R = x.shape[0], C = x.shape[1];
    if (C % 32 != 0)
      throw usage_error("--dsv4-mxfp4: '" + x.name + "' has " + std::to_string(C) +
                        " columns, not a multiple of 32 (drop --odd-shapes)");
    const std::string module = x.name.substr(0, x.name.size() - 7);
    synthetic_ct_args a;
    a.format = "dsv4-mxfp4";
    a.bits = 4;
    a.group_size = 32;
    synthetic_tensor w{x.name, {R, C / 2}, dtype::i8, synthetic_kind::fp4_packed, x.shape};
    w.base = x.name;
    w.ct = a;
    synthetic_tensor sc{
        module + ".scale", {R, C / 32}, dtype::f8_e8m0, synthetic_kind::fp4_scale, x.shape};
    sc.base = x.name;
    sc.ct = a;
    sc.joins_previous = true;
    out.push_back(std::move(w));
    out.push_back(std::move(sc));
    ++i;  // skip the `_scale_inv` that followed the weight
    any = true;
  }
  if (!any) throw usage_error("--dsv4-mxfp4: the architecture has no routed experts");
  m.tensors = std::move(out);
}

// The family glob of a tensor name: every all-digit component becomes `*`.
std::string family_glob(const std::string& name) {
  std::string g, part;
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i < name.size() && name[i] != '.') {
      part += name[i];
      continue;
    }
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(),
                                                     [](char c) { return c >= '0' && c <= '9'; });
    if (!g.empty()) g.push_back('.');
    if (digits)
      g.push_back('*');
    else
      g.append(part);
    part.clear();
  }
  return g;
}

void apply_presharding(synthetic_model& m, uint64_t cr) {
  json globs = json::object();
  std::string rows;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    auto& w = m.tensors[i];
    if (w.kind != synthetic_kind::fp8_weight) continue;
    const uint64_t R = w.shape[0];
    if (R % cr != 0 || R / cr < 2) {
      if (rows.find(" " + std::to_string(R) + ",") == std::string::npos)
        rows += " " + std::to_string(R) + ",";
      continue;
    }
    const std::string g = family_glob(w.name);
    if (!globs.contains(g)) globs[g] = cr;
    w.chunk_rows = cr;
    auto& sc = m.tensors[i + 1];  // the `_scale_inv` follows its weight
    sc.chunk_rows = cr;
    sc.shape[0] = R / cr * ((cr + 127) / 128);
  }
  if (globs.empty())
    throw usage_error("--presharded " + std::to_string(cr) +
                      ": no FP8 weight has a row count that is a multiple of it with at least two "
                      "chunks (row counts:" +
                      rows.substr(0, rows.size() - 1) + ")");
  m.config["quantization_config"]["presharded_weights"] = globs;
}

}  // namespace

uint64_t synthetic_tensor::bytes() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n * bits(type) / 8;
}

uint64_t synthetic_model::bytes() const {
  uint64_t b = 0;
  for (const auto& t : tensors) b += t.bytes();
  return b;
}

const std::vector<std::pair<std::string, std::string>>& ct_variants() {
  static const std::vector<std::pair<std::string, std::string>> v{
      {"int4-group", "pack-quantized int4, group 128, symmetric"},
      {"int4-group-asym", "pack-quantized int4, group 128, asymmetric (packed zero points)"},
      {"int4-group-actorder", "pack-quantized int4, group 128, actorder group (weight_g_idx)"},
      {"int4-channel", "pack-quantized int4, per channel, symmetric"},
      {"int4-channel-asym", "pack-quantized int4, per channel, asymmetric"},
      {"int8-channel", "pack-quantized int8, per channel, symmetric"},
      {"fp8-tensor", "float-quantized fp8 e4m3, per tensor"},
      {"fp8-channel", "float-quantized fp8 e4m3, per channel"},
      {"fp8-block", "float-quantized fp8 e4m3, 128x128 blocks"},
      {"naive-int8", "naive-quantized int8 (I8 weight), per channel, symmetric"},
      {"nvfp4", "nvfp4-pack-quantized: E2M1 pairs, F8_E4M3 scales per 16, F32 global scale"},
      {"mxfp4", "mxfp4-pack-quantized: E2M1 pairs, U8 E8M0 scales per 32"},
      {"int8-asym", "int-quantized int8 (I8 weight), per channel, asymmetric (I8 zero points)"},
      {"multi-group",
       "two config groups with equal int4-group arguments: re:.*self_attn.* and Linear"},
      {"mixed", "mixed-precision: re:.*self_attn.* fp8 per channel, other Linear int4 group"},
  };
  return v;
}

const std::vector<std::string>& synthetic_architectures() {
  static const std::vector<std::string> a{"llama", "deepseek_v3", "qwen3_moe"};
  return a;
}

synthetic_model design_model(const make_checkpoint_options& o) {
  if (o.type != dtype::bf16 && o.type != dtype::f16 && o.type != dtype::f32 &&
      o.type != dtype::f8_e4m3)
    throw usage_error("--dtype must be bf16, fp16, fp32 or fp8");
  const bool fp8 = o.type == dtype::f8_e4m3;
  if (o.presharded_rows && !fp8)
    throw usage_error("--presharded needs --dtype fp8 (a DeepSeek-style block-FP8 source)");
  if (!o.ct.empty() && fp8)
    throw usage_error("--ct needs --dtype bf16, fp16 or fp32 (the model and scale dtype)");
  if (o.dsv4_mxfp4 && !fp8)
    throw usage_error("--dsv4-mxfp4 needs --dtype fp8 (a DeepSeek-style source)");
  if (!o.ct.empty() && ct_groups_of(o.ct).groups.empty()) {
    std::string names;
    for (const auto& v : ct_variants()) names += (names.empty() ? "" : ", ") + v.first;
    throw usage_error("unknown --ct '" + o.ct + "' (" + names + ")");
  }
  // FP8 and CT sources: Linear weights take about 1 byte per element.
  const dtype base_type = fp8 ? dtype::bf16 : o.type;
  const uint64_t elems = o.size / (fp8 || !o.ct.empty() ? 1 : bits(o.type) / 8);
  synthetic_model m;
  if (o.arch == "llama") {
    auto [d, L] = fit<llama_dims>(elems, o.odd_shapes, llama_for, llama_fixed, llama_layer);
    m = llama_model(d, L, base_type);
  } else if (o.arch == "deepseek_v3") {
    auto [d, L] = fit<dsv3_dims>(elems, o.odd_shapes, dsv3_for, dsv3_fixed, dsv3_moe_layer);
    m = dsv3_model(d, L, base_type);
  } else if (o.arch == "qwen3_moe") {
    auto [d, L] = fit<qwen_dims>(elems, o.odd_shapes, qwen_for, qwen_fixed, qwen_layer);
    m = qwen_model(d, L, base_type);
  } else {
    throw usage_error("unknown --arch '" + o.arch + "' (llama, deepseek_v3, qwen3_moe)");
  }
  m.config["torch_dtype"] = dtype_config_name(base_type);
  m.config["transformers_version"] = "4.51.0";
  if (fp8) {
    // DeepSeek-V3 style: every Linear weight except lm_head and the routers (mlp.gate) is block
    // FP8 with an F32 `_scale_inv` [ceil(R/128), ceil(C/128)] right after it.
    std::vector<synthetic_tensor> t;
    for (auto& x : m.tensors) {
      if (!source_quantized(x)) {
        t.push_back(std::move(x));
        continue;
      }
      synthetic_tensor w{x.name, x.shape, dtype::f8_e4m3, synthetic_kind::fp8_weight, x.shape};
      synthetic_tensor sc{x.name + "_scale_inv",
                          {(x.shape[0] + 127) / 128, (x.shape[1] + 127) / 128},
                          dtype::f32,
                          synthetic_kind::fp8_scale,
                          x.shape};
      t.push_back(std::move(w));
      t.push_back(std::move(sc));
    }
    m.tensors = std::move(t);
    m.config["quantization_config"] = {{"activation_scheme", "dynamic"},
                                       {"fmt", "e4m3"},
                                       {"quant_method", "fp8"},
                                       {"weight_block_size", {128, 128}}};
    if (o.presharded_rows) apply_presharding(m, o.presharded_rows);
    if (o.dsv4_mxfp4) apply_dsv4_mxfp4(m);
  }
  if (!o.ct.empty()) apply_ct(m, o.ct);
  return m;
}

namespace {

// One row of a matrix-shaped tensor in fp32 (linear weights: per-row spread, ~1/32 rows with
// outliers, ~1/512 rows all zero; embeddings: plain normal).
void matrix_row_f32(bool linear, uint64_t key, uint64_t row, uint64_t cols, float base, float* o) {
  rng r{splitmix(key + row * 0x9e3779b97f4a7c15ull)};
  const uint64_t h = r.next();
  if (linear && (h & 511) == 7) {
    std::fill(o, o + cols, 0.0f);
    return;
  }
  const float scale = base * std::exp(0.35f * r.normal());
  for (uint64_t c = 0; c < cols; ++c) o[c] = scale * r.normal();
  if (linear && ((h >> 9) & 31) == 0) {
    const int n = 1 + static_cast<int>((h >> 14) & 3);
    for (int k = 0; k < n; ++k) {
      const uint64_t c = r.next() % cols;
      const float mag = scale * (10.0f + 20.0f * r.uniform());
      o[c] = (r.next() & 1) ? mag : -mag;
    }
  }
}

constexpr uint64_t k_fp8_block = 128;

// Scale rows per chunk (nb) and the scale row of weight row r (formats.md §7.2.2).
uint64_t fp8_scale_row(uint64_t cr, uint64_t r) {
  const uint64_t nb = (cr + k_fp8_block - 1) / k_fp8_block;
  return (r / cr) * nb + (r % cr) / k_fp8_block;
}

// The fp32 rows of the block behind scale row `sr` of an FP8 weight (chunks of cr rows, each cut
// into 128-row blocks) and that block row's scales (amax / 448 per 128 columns; 1 for an all-zero
// block). Returns the block's first weight row; vals holds its rows.
uint64_t fp8_block_rows(uint64_t key, uint64_t rows, uint64_t cr, uint64_t cols, uint64_t sr,
                        float base, std::vector<float>& vals, std::vector<float>& scales) {
  const uint64_t nb = (cr + k_fp8_block - 1) / k_fp8_block;
  const uint64_t r0 = (sr / nb) * cr + (sr % nb) * k_fp8_block;
  const uint64_t n = std::min({k_fp8_block, rows - r0, cr - (sr % nb) * k_fp8_block});
  vals.resize(n * cols);
  tbb::parallel_for(uint64_t{0}, n, [&](uint64_t i) {
    matrix_row_f32(true, key, r0 + i, cols, base, vals.data() + i * cols);
  });
  const uint64_t nbw = (cols + k_fp8_block - 1) / k_fp8_block;
  scales.assign(nbw, 0.0f);
  for (uint64_t i = 0; i < n; ++i)
    for (uint64_t c = 0; c < cols; ++c)
      scales[c / k_fp8_block] = std::max(scales[c / k_fp8_block], std::fabs(vals[i * cols + c]));
  for (float& sc : scales) sc = sc > 0 ? sc / 448.0f : 1.0f;
  return r0;
}

// ---- compressed-tensors quantization of the fp32 rows ----

float round_to(dtype t, float v) {
  return t == dtype::bf16  ? bf16_to_f32(to_bf16_rne(v))
         : t == dtype::f16 ? f16_to_f32(to_f16_rne(v))
                           : v;
}

// actorder group: column j belongs to group g_idx[j]; groups are filled in a seeded random
// column order (as GPTQ's activation order would), so g_idx[j] != j div g.
std::vector<int32_t> ct_g_idx(uint64_t key, uint64_t cols, uint64_t g) {
  std::vector<uint64_t> perm(cols);
  for (uint64_t i = 0; i < cols; ++i) perm[i] = i;
  rng r{splitmix(key ^ 0x67696478ull)};
  for (uint64_t i = cols; i > 1; --i) std::swap(perm[i - 1], perm[r.next() % i]);
  std::vector<int32_t> gi(cols);
  for (uint64_t k = 0; k < cols; ++k) gi[perm[k]] = static_cast<int32_t>(k / g);
  return gi;
}

// Max |x| over a whole weight (tensor strategy); cached because every row request needs it.
float ct_tensor_amax(uint64_t key, uint64_t rows, uint64_t cols, float base) {
  static std::mutex mu;
  static std::map<std::pair<uint64_t, uint64_t>, float> cache;
  {
    std::lock_guard<std::mutex> l(mu);
    if (auto it = cache.find({key, rows * cols}); it != cache.end()) return it->second;
  }
  const float amax = tbb::parallel_reduce(
      tbb::blocked_range<uint64_t>(0, rows, 64), 0.0f,
      [&](const auto& rg, float a) {
        std::vector<float> row(cols);
        for (uint64_t r = rg.begin(); r < rg.end(); ++r) {
          matrix_row_f32(true, key, r, cols, base, row.data());
          for (float x : row) a = std::max(a, std::fabs(x));
        }
        return a;
      },
      [](float a, float b) { return std::max(a, b); });
  std::lock_guard<std::mutex> l(mu);
  cache[{key, rows * cols}] = amax;
  return amax;
}

// Codes of weight rows [r0, r0 + n): q (n x C), and per row `ns` scales and zero points
// (group: one per group; channel/tensor: 1; block: one per 128-column block of the row's block).
struct ct_rows {
  uint64_t ns = 1;
  std::vector<int32_t> q;
  std::vector<float> s;
  std::vector<int32_t> zp;
};

int32_t rne_clamp(float y, int32_t lo, int32_t hi) {
  const float r = std::nearbyint(y);  // round half to even (default rounding mode)
  return static_cast<int32_t>(std::clamp(r, static_cast<float>(lo), static_cast<float>(hi)));
}

// One row of codes from its values and the per-column scale/zero point.
void ct_encode_row(const synthetic_ct_args& a, const float* x, uint64_t cols,
                   const std::vector<uint64_t>& col_group, const float* s, const int32_t* zp,
                   int32_t* q) {
  const int32_t qmin = -(1 << (a.bits - 1)), qmax = (1 << (a.bits - 1)) - 1;
  for (uint64_t c = 0; c < cols; ++c) {
    const uint64_t g = col_group[c];
    const float y = x[c] / s[g];
    q[c] = a.is_float ? fp8_e4m3fn_encode(y) : rne_clamp(y + static_cast<float>(zp[g]), qmin, qmax);
  }
}

void ct_quantize_rows(const synthetic_tensor& t, uint64_t seed, uint64_t r0, uint64_t n,
                      ct_rows& o) {
  const synthetic_ct_args& a = t.ct;
  const uint64_t R = t.source_shape[0], C = t.source_shape[1];
  const uint64_t key = splitmix(seed ^ fnv1a(t.base));
  const float base = 1.0f / std::sqrt(static_cast<float>(C));
  const float qmax = a.is_float ? 448.0f : static_cast<float>((1 << (a.bits - 1)) - 1);
  const int32_t qlo = -(1 << (a.bits - 1)), qhi = (1 << (a.bits - 1)) - 1;
  const dtype sdt = a.scale_type;  // codes are computed with the stored (rounded) scale
  std::vector<uint64_t> col_group(C);
  std::vector<int32_t> gidx;
  if (a.actorder) gidx = ct_g_idx(key, C, a.group_size);
  for (uint64_t c = 0; c < C; ++c)
    col_group[c] = a.strategy == "group"
                       ? (a.actorder ? static_cast<uint64_t>(gidx[c]) : c / a.group_size)
                   : a.strategy == "block" ? c / a.block
                                           : 0;
  o.ns = a.strategy == "group"   ? (C + a.group_size - 1) / a.group_size
         : a.strategy == "block" ? (C + a.block - 1) / a.block
                                 : 1;
  o.q.assign(n * C, 0);
  o.s.assign(n * o.ns, 1.0f);
  o.zp.assign(n * o.ns, 0);
  if (a.strategy == "block") {
    // Whole blocks of a.block rows, scales over each block, then the requested rows.
    std::vector<float> vals;
    for (uint64_t r = r0; r < r0 + n;) {
      const uint64_t b0 = r / a.block * a.block, bn = std::min(a.block, R - b0);
      vals.resize(bn * C);
      tbb::parallel_for(uint64_t{0}, bn, [&](uint64_t i) {
        matrix_row_f32(true, key, b0 + i, C, base, vals.data() + i * C);
      });
      std::vector<float> s(o.ns, 0.0f);
      for (uint64_t i = 0; i < bn * C; ++i)
        s[col_group[i % C]] = std::max(s[col_group[i % C]], std::fabs(vals[i]));
      for (float& v : s) v = v > 0 ? round_to(sdt, v / qmax) : 1.0f;
      const std::vector<int32_t> zero(o.ns, 0);
      const uint64_t end = std::min(r0 + n, b0 + bn);
      for (; r < end; ++r) {
        ct_encode_row(a, vals.data() + (r - b0) * C, C, col_group, s.data(), zero.data(),
                      o.q.data() + (r - r0) * C);
        std::copy(s.begin(), s.end(), o.s.begin() + static_cast<ptrdiff_t>((r - r0) * o.ns));
      }
    }
    return;
  }
  const float tensor_s =
      a.strategy == "tensor"
          ? [&] {
              const float am = ct_tensor_amax(key, R, C, base);
              return am > 0 ? round_to(sdt, am / qmax) : 1.0f;
            }()
          : 0.0f;
  tbb::parallel_for(tbb::blocked_range<uint64_t>(0, n, 16), [&](const auto& rg) {
    std::vector<float> x(C), lo(o.ns), hi(o.ns);
    for (uint64_t i = rg.begin(); i < rg.end(); ++i) {
      matrix_row_f32(true, key, r0 + i, C, base, x.data());
      float* s = o.s.data() + i * o.ns;
      int32_t* zp = o.zp.data() + i * o.ns;
      if (a.strategy == "tensor") {
        s[0] = tensor_s;
      } else {
        std::fill(lo.begin(), lo.end(), 0.0f);  // ranges include 0 (as CT's min-max observer)
        std::fill(hi.begin(), hi.end(), 0.0f);
        for (uint64_t c = 0; c < C; ++c) {
          lo[col_group[c]] = std::min(lo[col_group[c]], x[c]);
          hi[col_group[c]] = std::max(hi[col_group[c]], x[c]);
        }
        for (uint64_t g = 0; g < o.ns; ++g) {
          if (a.symmetric) {
            const float amax = std::max(-lo[g], hi[g]);
            s[g] = amax > 0 ? round_to(sdt, amax / qmax) : 1.0f;
          } else {
            const float span = hi[g] - lo[g];
            s[g] = span > 0 ? round_to(sdt, span / static_cast<float>(qhi - qlo)) : 1.0f;
            zp[g] = rne_clamp(static_cast<float>(qlo) - lo[g] / s[g], qlo, qhi);
          }
        }
      }
      ct_encode_row(a, x.data(), C, col_group, s, zp, o.q.data() + i * C);
    }
  });
}

// Stored unsigned value v (q + 2^(b-1)) of element i of a packed line (formats.md §7.3.2).
void ct_pack_put(uint32_t* words, uint64_t i, uint32_t b, uint32_t v) {
  const uint64_t bit = i * b;
  words[bit >> 5] |= v << (bit & 31u);
}

// FP4-packed rows [r0, r0 + n) of weight t.base: packed E2M1 pairs (n x C/2) and per-group
// scale bytes (n x C/g). MXFP4 blocks use kernels/mx.h's encoder (Quark's rule); NVFP4 follows
// llm-compressor: global scale gs = 448 * 6 / amax(W), block scale e4m3(amax_b / 6 * gs),
// elements e2m1(x / (scale / gs)).
void fp4_rows(const synthetic_tensor& t, uint64_t seed, uint64_t r0, uint64_t n,
              std::vector<uint8_t>& packed, std::vector<uint8_t>& scales, float* global_scale) {
  const uint64_t R = t.source_shape[0], C = t.source_shape[1];
  const uint64_t g = t.ct.group_size;
  const uint64_t key = splitmix(seed ^ fnv1a(t.base));
  const float base = 1.0f / std::sqrt(static_cast<float>(C));
  const bool nv = g == 16;
  float gs = 1.0f;
  if (nv) {
    const float am = ct_tensor_amax(key, R, C, base);
    gs = am > 0 ? 448.0f * 6.0f / am : 1.0f;
  }
  if (global_scale) *global_scale = gs;
  packed.assign(n * C / 2, 0);
  scales.assign(n * C / g, 0);
  tbb::parallel_for(uint64_t{0}, n, [&](uint64_t i) {
    std::vector<float> x(C);
    matrix_row_f32(true, key, r0 + i, C, base, x.data());
    uint8_t* prow = packed.data() + i * C / 2;
    for (uint64_t k = 0; k < C / g; ++k) {
      const float* b = x.data() + k * g;
      if (!nv) {
        scales[i * C / g + k] =
            mx_encode_block(b, static_cast<uint32_t>(g), mx_fp4_e2m1(), prow + k * g / 2);
        continue;
      }
      float am = 0;
      for (uint64_t e = 0; e < g; ++e) am = std::max(am, std::fabs(b[e]));
      const uint8_t sc = fp8_e4m3fn_encode(am / 6.0f * gs);
      scales[i * C / g + k] = sc;
      const float eff = fp8_e4m3fn_decode(sc) / gs;
      uint8_t codes[16] = {};
      if (eff > 0)
        for (uint64_t e = 0; e < g; ++e)
          codes[e] = static_cast<uint8_t>(mx_encode_element(b[e] / eff, mx_fp4_e2m1()));
      mx_pack_codes(codes, 16, mx_fp4_e2m1(), prow + k * g / 2);
    }
  });
}

void ct_generate(const synthetic_tensor& t, uint64_t seed, uint64_t row_begin, uint64_t rows,
                 std::byte* out) {
  if (t.kind == synthetic_kind::fp4_packed || t.kind == synthetic_kind::fp4_scale ||
      t.kind == synthetic_kind::fp4_global_scale) {
    std::vector<uint8_t> packed, scales;
    float gs = 1.0f;
    fp4_rows(t, seed, t.kind == synthetic_kind::fp4_global_scale ? 0 : row_begin,
             t.kind == synthetic_kind::fp4_global_scale ? 0 : rows, packed, scales, &gs);
    if (t.kind == synthetic_kind::fp4_packed)
      std::memcpy(out, packed.data(), packed.size());
    else if (t.kind == synthetic_kind::fp4_scale)
      std::memcpy(out, scales.data(), scales.size());
    else
      std::memcpy(out, &gs, 4);
    return;
  }
  const synthetic_ct_args& a = t.ct;
  const uint64_t R = t.source_shape[0], C = t.source_shape[1];
  const uint32_t off = 1u << (a.bits - 1);
  ct_rows q;
  switch (t.kind) {
    case synthetic_kind::ct_shape: {
      const int64_t v[2] = {static_cast<int64_t>(R), static_cast<int64_t>(C)};
      std::memcpy(out, v, sizeof v);
      return;
    }
    case synthetic_kind::ct_g_idx: {
      const auto gi = ct_g_idx(splitmix(seed ^ fnv1a(t.base)), C, a.group_size);
      std::memcpy(out, gi.data(), gi.size() * 4);
      return;
    }
    case synthetic_kind::ct_packed: {
      ct_quantize_rows(t, seed, row_begin, rows, q);
      const uint64_t words = t.shape[1];
      std::vector<uint32_t> w(rows * words, 0);
      for (uint64_t i = 0; i < rows; ++i)
        for (uint64_t c = 0; c < C; ++c)
          ct_pack_put(w.data() + i * words, c, a.bits,
                      static_cast<uint32_t>(q.q[i * C + c] + static_cast<int32_t>(off)));
      std::memcpy(out, w.data(), w.size() * 4);
      return;
    }
    case synthetic_kind::ct_weight: {
      ct_quantize_rows(t, seed, row_begin, rows, q);
      auto* o = reinterpret_cast<uint8_t*>(out);
      for (uint64_t i = 0; i < rows * C; ++i) o[i] = static_cast<uint8_t>(q.q[i]);
      return;
    }
    case synthetic_kind::ct_scale: {
      const uint64_t eb = bits(t.type) / 8;
      if (a.strategy == "tensor") {
        ct_quantize_rows(t, seed, 0, 1, q);
        store(t.type, q.s[0], out);
        return;
      }
      for (uint64_t i = 0; i < rows; ++i) {
        // block strategy: scale row b is the scale row of weight row b * block
        const uint64_t wr = a.strategy == "block" ? (row_begin + i) * a.block : row_begin + i;
        if (a.strategy == "block" || i == 0)
          ct_quantize_rows(t, seed, wr, a.strategy == "block" ? 1 : rows, q);
        const uint64_t qi = a.strategy == "block" ? 0 : i;
        for (uint64_t g = 0; g < q.ns; ++g)
          store(t.type, q.s[qi * q.ns + g], out + (i * q.ns + g) * eb);
      }
      return;
    }
    case synthetic_kind::ct_zero_point: {
      if (a.format != "pack-quantized") {  // I8 [R, G], same shape as the scale
        ct_quantize_rows(t, seed, row_begin, rows, q);
        auto* o = reinterpret_cast<int8_t*>(out);
        for (uint64_t i = 0; i < rows * q.ns; ++i) o[i] = static_cast<int8_t>(q.zp[i]);
        return;
      }
      // Packed down each column: word row w holds weight rows [w * 32/b, (w + 1) * 32/b).
      const uint64_t per = 32 / a.bits;
      const uint64_t w0 = row_begin * per, w1 = std::min(R, (row_begin + rows) * per);
      ct_quantize_rows(t, seed, w0, w1 - w0, q);
      const uint64_t G = q.ns;
      std::vector<uint32_t> w(rows * G, 0);
      for (uint64_t r = w0; r < w1; ++r)
        for (uint64_t g = 0; g < G; ++g)
          w[(r / per - row_begin) * G + g] |=
              static_cast<uint32_t>(q.zp[(r - w0) * G + g] + static_cast<int32_t>(off))
              << ((r * a.bits) & 31u);
      std::memcpy(out, w.data(), w.size() * 4);
      return;
    }
    default:
      return;
  }
}

}  // namespace

void generate_rows(const synthetic_tensor& t, uint64_t seed, uint64_t row_begin, uint64_t rows,
                   std::byte* out) {
  const uint64_t cols = t.shape.size() >= 2 ? t.shape.back() : (t.shape.empty() ? 1 : t.shape[0]);
  const uint64_t eb = bits(t.type) / 8;
  if (t.kind == synthetic_kind::fp8_weight || t.kind == synthetic_kind::fp8_scale) {
    // Both are derived from the weight's fp32 rows, keyed by the weight's name.
    const bool is_scale = t.kind == synthetic_kind::fp8_scale;
    const std::string wname = is_scale ? t.name.substr(0, t.name.size() - 10) : t.name;
    const uint64_t key = splitmix(seed ^ fnv1a(wname));
    const uint64_t R = t.source_shape[0], C = t.source_shape[1];
    const uint64_t cr = t.chunk_rows ? t.chunk_rows : R;
    const float base = 1.0f / std::sqrt(static_cast<float>(C));
    std::vector<float> vals, scales;
    if (is_scale) {
      for (uint64_t b = row_begin; b < row_begin + rows; ++b) {
        (void)fp8_block_rows(key, R, cr, C, b, base, vals, scales);
        std::memcpy(out + (b - row_begin) * cols * 4, scales.data(), cols * 4);
      }
      return;
    }
    uint64_t done = 0;
    while (done < rows) {
      const uint64_t r = row_begin + done;
      const uint64_t b0 = fp8_block_rows(key, R, cr, C, fp8_scale_row(cr, r), base, vals, scales);
      const uint64_t end = std::min(row_begin + rows, b0 + vals.size() / C);
      for (uint64_t rr = r; rr < end; ++rr) {
        const float* v = vals.data() + (rr - b0) * C;
        auto* o = reinterpret_cast<uint8_t*>(out) + (rr - row_begin) * C;
        for (uint64_t c = 0; c < C; ++c) o[c] = fp8_e4m3fn_encode(v[c] / scales[c / k_fp8_block]);
      }
      done += end - r;
    }
    return;
  }
  if (t.kind >= synthetic_kind::ct_packed) {
    ct_generate(t, seed, row_begin, rows, out);
    return;
  }
  const uint64_t key = splitmix(seed ^ fnv1a(t.name));
  if (t.shape.size() < 2) {  // rank 0/1: one "row" holds the whole vector
    rng r{splitmix(key)};
    for (uint64_t c = 0; c < cols; ++c) {
      float v = t.kind == synthetic_kind::norm   ? 1.0f + 0.05f * r.normal()
                : t.kind == synthetic_kind::bias ? 0.01f * r.normal()
                                                 : 0.02f * r.normal();
      store(t.type, v, out + c * eb);
    }
    return;
  }
  const bool linear = t.kind == synthetic_kind::linear;
  const float base = linear ? 1.0f / std::sqrt(static_cast<float>(t.shape.back())) : 0.02f;
  tbb::parallel_for(tbb::blocked_range<uint64_t>(0, rows, 64), [&](const auto& range) {
    std::vector<float> row(cols);
    for (uint64_t i = range.begin(); i < range.end(); ++i) {
      matrix_row_f32(linear, key, row_begin + i, cols, base, row.data());
      std::byte* o = out + i * cols * eb;
      for (uint64_t c = 0; c < cols; ++c) store(t.type, row[c], o + c * eb);
    }
  });
}

make_checkpoint_result make_checkpoint(const make_checkpoint_options& o) {
  namespace fs = std::filesystem;
  if (o.out.empty()) throw usage_error("--out is required");
  if (o.size == 0) throw usage_error("--size must be positive");
  const synthetic_model m = design_model(o);
  fs::create_directories(o.out);
  if (fs::exists(o.out / "config.json"))
    throw usage_error(o.out.string() + " already holds a config.json; pick an empty directory");
  const uint64_t shard_max = o.shard_size ? o.shard_size : UINT64_MAX;

  // Greedy sharding in model order, like Hugging Face's save_pretrained.
  std::vector<std::vector<const synthetic_tensor*>> shards(1);
  uint64_t cur = 0;
  for (const auto& t : m.tensors) {
    if (cur > 0 && cur + t.bytes() > shard_max && !t.joins_previous) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(&t);
    cur += t.bytes();
  }
  make_checkpoint_result res;
  const size_t n = shards.size();
  auto shard_name = [&](size_t i) {
    if (n == 1) return std::string("model.safetensors");
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
    return std::string(buf);
  };
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  std::vector<std::byte> buf;
  constexpr uint64_t k_block = 16ull << 20;  // bytes generated per write
  for (size_t i = 0; i < n; ++i) {
    const std::string rel = shard_name(i);
    std::vector<tensor_spec> specs;
    for (const auto* t : shards[i]) specs.push_back({t->name, t->type, t->shape});
    shard_writer w(shard_layout::make(rel, std::move(specs)), o.out / rel);
    for (const auto* t : shards[i]) {
      const uint64_t rows = t->shape.size() >= 2 ? t->shape[0] : 1;
      const uint64_t row_bytes = rows ? t->bytes() / rows : 0;
      if (t->bytes() == 0) continue;
      uint64_t per = std::max<uint64_t>(1, k_block / std::max<uint64_t>(1, row_bytes));
      if (t->kind == synthetic_kind::fp8_weight)  // whole 128-row scale blocks per call
        per = std::max<uint64_t>(1, per / 128) * 128;
      for (uint64_t r = 0; r < rows; r += per) {
        const uint64_t k = std::min(per, rows - r);
        buf.resize(k * row_bytes);
        generate_rows(*t, o.seed, r, k, buf.data());
        w.write_at(t->name, r * row_bytes, buf);
      }
      weight_map[t->name] = rel;
      ++res.tensors;
      res.bytes += t->bytes();
    }
    w.commit();
    res.shards.push_back(rel);
  }
  if (n > 1) {
    nlohmann::ordered_json idx;
    idx["metadata"] = {{"total_size", res.bytes}};
    idx["weight_map"] = weight_map;
    write_file_atomic(o.out / "model.safetensors.index.json", idx.dump(2) + "\n");
  }

  // Side files (formats.md §3.3 copies every one of them byte for byte).
  const auto& cfg = m.config;
  write_file_atomic(o.out / "generation_config.json",
                    nlohmann::ordered_json{{"bos_token_id", cfg["bos_token_id"]},
                                           {"do_sample", true},
                                           {"eos_token_id", cfg["eos_token_id"]},
                                           {"temperature", 0.6},
                                           {"top_p", 0.9},
                                           {"transformers_version", "4.51.0"}}
                            .dump(2) +
                        "\n");
  const std::string chat =
      "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}"
      "<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";
  write_file_atomic(o.out / "chat_template.jinja", chat + "\n");
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (int i = 0; i < 256; ++i) vocab["<0x" + std::to_string(i) + ">"] = i;
  write_file_atomic(
      o.out / "tokenizer.json",
      nlohmann::ordered_json{
          {"version", "1.0"},
          {"added_tokens", nlohmann::ordered_json::array()},
          {"model",
           {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::ordered_json::array()}}}}
              .dump(2) +
          "\n");
  write_file_atomic(o.out / "tokenizer_config.json",
                    nlohmann::ordered_json{{"bos_token", "<s>"},
                                           {"eos_token", "</s>"},
                                           {"model_max_length", 8192},
                                           {"tokenizer_class", "PreTrainedTokenizerFast"},
                                           {"chat_template", chat}}
                            .dump(2) +
                        "\n");
  fs::create_directories(o.out / "original");
  write_file_atomic(o.out / "original" / "params.json",
                    nlohmann::ordered_json{{"dim", cfg["hidden_size"]},
                                           {"n_layers", cfg["num_hidden_layers"]},
                                           {"vocab_size", cfg["vocab_size"]}}
                            .dump() +
                        "\n");
  write_file_atomic(o.out / "README.md", "# synthetic " + o.arch +
                                             " checkpoint\n\nGenerated by `shardquant "
                                             "make-checkpoint` (seed " +
                                             std::to_string(o.seed) +
                                             "); random weights, not a usable model.\n");
  write_file_atomic(o.out / "config.json", m.config.dump(2) + "\n");
  return res;
}

}  // namespace shardquant
