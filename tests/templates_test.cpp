// The template table of formats.md Appendix A and the unknown-type error.
#include "pipeline/plan/templates.h"

#include <doctest/doctest.h>

#include <set>
#include <string>

#include "io/error.h"

using namespace shardquant;

TEST_CASE("every Appendix A model type has a template and no type appears twice") {
  const char* types[] = {"llama",
                         "mistral",
                         "qwen",
                         "qwen2",
                         "qwen3",
                         "gemma2",
                         "gptj",
                         "olmo",
                         "opt",
                         "phi",
                         "phi3",
                         "cohere",
                         "hunyuan_v1_dense",
                         "instella",
                         "chatglm",
                         "dbrx",
                         "deepseek",
                         "grok-1",
                         "mixtral",
                         "qwen3_moe",
                         "deepseek_v2",
                         "deepseek_v3",
                         "deepseek_v32",
                         "deepseek_v4",
                         "deepseek_vl_v2",
                         "gemma3",
                         "gemma3_text",
                         "gemma4",
                         "gemma4_unified",
                         "glm4_moe",
                         "glm4_moe_lite",
                         "glm_moe_dsa",
                         "glm5_next",
                         "gpt_oss",
                         "granitemoehybrid",
                         "kimi_k2",
                         "kimi_k25",
                         "kimi_k3",
                         "lfm2",
                         "llama4",
                         "minimax_m2",
                         "minimax_m3_vl",
                         "mllama",
                         "muse_glimmer",
                         "qwen2_moe",
                         "qwen3_next",
                         "qwen3_vl_moe",
                         "qwen3_5_moe",
                         "qwen3_5",
                         "qwen4_exp",
                         "qwen4_exp_text"};
  std::set<std::string> seen;
  for (const auto& t : all_templates()) CHECK(seen.insert(std::string(t.model_type)).second);
  for (const char* t : types) {
    INFO(t);
    CHECK(find_template(t) != nullptr);
  }
  CHECK(seen.size() == std::size(types));
}

TEST_CASE("template exclude lists match Appendix A for representative types") {
  using v = std::vector<std::string>;
  CHECK(find_template("llama")->exclude == v{"lm_head"});
  CHECK(find_template("qwen3_moe")->exclude == v{"lm_head", "*.gate"});
  CHECK(find_template("deepseek_v3")->exclude == v{"lm_head", "*self_attn*", "*mlp.gate"});
  CHECK(find_template("deepseek_v32")->exclude ==
        v{"lm_head", "*mlp.gate", "model.layers.61.*", "*self_attn*"});
  CHECK(find_template("chatglm")->exclude == v{"transformer.output_layer"});
  CHECK(find_template("kimi_k25")->exclude.size() == 9);
  CHECK(find_template("kimi_k25")->exclude.back() == "*vision_tower*");
  CHECK(find_template("qwen3_next")->exclude.size() == 9);
  CHECK(find_template("glm5_next")->exclude.back() == "model.language_model.layers.45.*");
}

TEST_CASE("only gemma4 - qwen3_5_moe and qwen4_exp(_text) carry the fused-expert converters") {
  std::set<std::string> with;
  for (const auto& t : all_templates())
    if (!t.converters().empty()) with.insert(std::string(t.model_type));
  CHECK(with == std::set<std::string>{"gemma4", "qwen3_5_moe", "qwen4_exp", "qwen4_exp_text"});
  const auto c = find_template("gemma4")->converters();
  REQUIRE(c.size() == 2);
  CHECK(c[0].to_string() == "gate_up_proj=gate_proj.weight,up_proj.weight:split_fused_experts(0)");
  CHECK(c[1].to_string() == "down_proj=down_proj.weight:split_fused_experts(0)");
}

TEST_CASE("an unknown model type names the known types and how to pass an exclude list") {
  CHECK(find_template("no_such_model") == nullptr);
  try {
    (void)template_or_throw("no_such_model");
    FAIL("expected a usage_error");
  } catch (const usage_error& e) {
    const std::string m = e.what();
    CHECK(m.find("no_such_model") != std::string::npos);
    CHECK(m.find("deepseek_v3") != std::string::npos);
    CHECK(m.find("--exclude") != std::string::npos);
    CHECK(m.find("no value") != std::string::npos);
  }
}
