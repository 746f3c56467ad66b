// The template table of formats.md Appendix A (Quark LLMTemplate at commit 313cb0b7).
#include "pipeline/plan/templates.h"

#include <vector>

#include "io/error.h"

namespace shardquant {
namespace {

using sv = std::vector<std::string>;

const std::vector<model_template>& table() {
  static const std::vector<model_template> t = [] {
    std::vector<model_template> v;
    const sv lm{"lm_head"};
    for (std::string_view m :
         {"llama", "mistral", "qwen", "qwen2", "qwen3", "gemma2", "gptj", "olmo", "opt", "phi",
          "phi3", "cohere", "hunyuan_v1_dense", "instella"})
      v.push_back({m, lm});
    v.push_back({"chatglm", {"transformer.output_layer"}});
    v.push_back({"dbrx", {"lm_head", "*router.layer"}});
    for (std::string_view m : {"deepseek", "grok-1", "mixtral", "qwen3_moe"})
      v.push_back({m, {"lm_head", "*.gate"}});
    for (std::string_view m : {"deepseek_v2", "deepseek_v3"})
      v.push_back({m, {"lm_head", "*self_attn*", "*mlp.gate"}});
    v.push_back({"deepseek_v32", {"lm_head", "*mlp.gate", "model.layers.61.*", "*self_attn*"}});
    v.push_back({"deepseek_v4", {"*attn*", "embed", "head", "*ffn.gate*", "hc_*", "mtp.*"}});
    v.push_back({"deepseek_vl_v2",
                 {"lm_head", "model.sam_model*", "model.vision_model*", "model.projector*"}});
    v.push_back({"gemma3", {"*vision_tower*", "*multi_modal_projector*", "*lm_head"}});
    v.push_back({"gemma3_text", {"*lm_head"}});
    v.push_back({"gemma4",
                 {"*vision_tower*", "*embed_vision*", "*audio_tower*", "*embed_audio*",
                  "*multi_modal_projector*", "*lm_head", "*router.proj"},
                 true});
    v.push_back(
        {"gemma4_unified", {"*embed_vision*", "*vision_embedder*", "*embed_audio*", "*lm_head"}});
    v.push_back({"glm4_moe",
                 {"lm_head", "*mlp.gate", "*self_attn*", "*shared_experts.*", "*mlp.down_proj",
                  "*mlp.gate_proj", "*mlp.up_proj"}});
    v.push_back({"glm4_moe_lite", {"lm_head", "*self_attn*", "*mlp.gate"}});
    v.push_back({"glm_moe_dsa",
                 {"*self_attn*", "*mlp.gate", "*lm_head", "*mlp.gate_proj", "*mlp.up_proj",
                  "*mlp.down_proj"}});
    v.push_back({"glm5_next",
                 {"*self_attn*", "*mlp.gate", "*mlp.gate_proj", "*mlp.up_proj", "*mlp.down_proj",
                  "*visual*", "*lm_head*", "model.language_model.layers.45.*"}});
    for (std::string_view m : {"gpt_oss", "granitemoehybrid"})
      v.push_back({m, {"lm_head", "*router*"}});
    const sv kimi{"*self_attn*",  "*mlp.gate",      "*lm_head",        "*mlp.gate_proj",
                  "*mlp.up_proj", "*mlp.down_proj", "*shared_experts*"};
    v.push_back({"kimi_k2", kimi});
    sv k25 = kimi;
    k25.push_back("*mm_projector*");
    k25.push_back("*vision_tower*");
    v.push_back({"kimi_k25", k25});
    v.push_back({"kimi_k3",
                 {"*block_sparse_moe.gate*", "*block_sparse_moe.routed_expert_down_proj*",
                  "*block_sparse_moe.routed_expert_up_proj*", "*lm_head*", "*vision_tower*",
                  "*mm_projector*", "*self_attention_res_proj*", "*mlp_res_proj*",
                  "*output_attn_res_proj*", "*self_attn.*_conv1d*"}});
    v.push_back({"lfm2", {"lm_head", "*conv.in_proj", "*conv.out_proj"}});
    v.push_back({"llama4",
                 {"multi_modal_projector*", "*feed_forward.router", "vision_model*", "*lm_head"}});
    v.push_back({"minimax_m2", {"lm_head", "*block_sparse_moe.gate*", "*self_attn*"}});
    v.push_back({"minimax_m3_vl",
                 {"*lm_head", "*vision_tower*", "*multi_modal_projector*", "*patch_merge_mlp*",
                  "*block_sparse_moe.gate", "*self_attn*"}});
    v.push_back({"mllama", {"*lm_head", "*patch_embedding", "multi_modal_projector"}});
    v.push_back(
        {"muse_glimmer", {"*vision_tower*", "*vision_adapter*", "*vision_projection*", "lm_head"}});
    v.push_back({"qwen2_moe", {"lm_head", "*.gate", "*.shared_expert_gate"}});
    v.push_back({"qwen3_next",
                 {"lm_head", "mtp.fc", "*linear_attn.in_proj_ba", "*linear_attn.in_proj_qkvz",
                  "*mlp.gate", "*mlp.shared_expert_gate", "*self_attn.k_proj", "*self_attn.q_proj",
                  "*self_attn.v_proj"}});
    v.push_back({"qwen3_vl_moe", {"lm_head", "*mlp.gate", "*.visual.*"}});
    v.push_back({"qwen3_5_moe",
                 {"lm_head", "model.visual.*", "mtp.*", "*mlp.gate", "*shared_expert_gate*",
                  "*.linear_attn.*", "*.self_attn.*", "*.shared_expert.*"},
                 true});
    v.push_back({"qwen3_5", {"lm_head", "model.visual.*", "*mtp*"}});
    const sv q4{"lm_head",       "model.visual.*",       "mtp.*",
                "*mlp.gate",     "*shared_expert_gate*", "*.linear_attn.*",
                "*.self_attn.*", "*hyper_connection*",   "*.ple.*"};
    v.push_back({"qwen4_exp", q4, true});
    v.push_back({"qwen4_exp_text", q4, true});
    return v;
  }();
  return t;
}

}  // namespace

std::vector<converter> model_template::converters() const {
  return fused_expert_converters ? template_expert_converters() : std::vector<converter>{};
}

std::span<const model_template> all_templates() {
  return table();
}

const model_template* find_template(std::string_view model_type) {
  for (const auto& t : table())
    if (t.model_type == model_type) return &t;
  return nullptr;
}

const model_template& template_or_throw(std::string_view model_type) {
  if (const model_template* t = find_template(model_type)) return *t;
  std::string known;
  for (const auto& t : table()) {
    if (!known.empty()) known += ", ";
    known += t.model_type;
  }
  throw usage_error(
      (model_type.empty() ? std::string("config.json names no model_type or architectures")
                          : "model type '" + std::string(model_type) + "' has no template") +
      "; known types: " + known +
      ". Pass an explicit exclude list instead: --exclude PATTERN [PATTERN ...], or --exclude "
      "with no value to exclude nothing.");
}

}  // namespace shardquant
