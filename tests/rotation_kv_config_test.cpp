// get_config's kv_cache_scheme / attention_scheme / min_kv_scale (pipeline/plan/kv_cache_config.h,
// kernels/FORMATS-rotation.md R.9): the exported layer_quant_config, kv_cache_quant_config,
// softmax_quant_spec and export objects equal Quark 0.13's for the runs of
// tests/conformance/rotation/kv_jobs.txt (tests/data/rotation/kv_goldens.json, made by Quark on
// the CPU), key order included; and the refusals and warnings.
#include "pipeline/plan/kv_cache_config.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "io/error.h"

using namespace shardquant;

namespace {

struct kv_case {
  const char* run;
  const char* model_type;
  scheme_id scheme;
  layer_entries overrides;
  std::vector<std::string> exclude;
  kv_attention_options kv;
};

ordered_json goldens() {
  std::ifstream f(std::filesystem::path(SQ_TEST_DATA_DIR) / "rotation" / "kv_goldens.json");
  REQUIRE(f.good());
  return ordered_json::parse(f);
}

ordered_json exported(const kv_case& c, kv_attention_plan& k) {
  k = plan_kv_attention(c.kv, c.model_type, c.overrides, c.exclude, c.scheme);
  quant_config_inputs in;
  in.scheme = c.scheme;
  in.overrides = k.layers;
  in.kv = k.exp;
  return quantization_config(in);
}

const std::vector<std::string> k_llama_ex{"lm_head"};
const std::vector<std::string> k_moe_ex{"lm_head", "*.gate"};
const kv_attention_options k_kv{"fp8", "", std::nullopt};
const kv_attention_options k_attn{"", "fp8", std::nullopt};
const kv_attention_options k_both{"fp8", "fp8", std::nullopt};

}  // namespace

TEST_CASE("the kv-cache and attention entries of the exported config are Quark's") {
  const ordered_json g = goldens();
  const std::vector<kv_case> cases{
      {"llama_mxfp4_kv_attn", "llama", scheme_id::mxfp4, {}, k_llama_ex, {"fp8", "fp8", 0.5}},
      {"llama_fp8_kv", "llama", scheme_id::fp8, {}, k_llama_ex, k_kv},
      {"llama_int4_attn", "llama", scheme_id::int4_wo_128, {}, k_llama_ex, k_attn},
      {"llama_mxfp4_kv_override",
       "llama",
       scheme_id::mxfp4,
       {{"*self_attn*", scheme_id::fp8}, {"*k_proj", scheme_id::mxfp6_e2m3}},
       k_llama_ex,
       k_both},
      {"llama_mxfp4_kv_attn1",
       "llama",
       scheme_id::mxfp4,
       {{"*layers.1.self_attn*", scheme_id::fp8}},
       k_llama_ex,
       k_kv},
      {"llama_mxfp4_kv_exclk",
       "llama",
       scheme_id::mxfp4,
       {},
       {"lm_head", "*k_proj", "*q_proj"},
       k_both},
      {"llama_mxfp4_kv_rot", "llama", scheme_id::mxfp4, {}, k_llama_ex, k_kv},
      {"qwen3_moe_fp8_kv", "qwen3_moe", scheme_id::fp8, {}, k_moe_ex, k_kv},
      {"qwen3_moe_mxfp4_kv_attn", "qwen3_moe", scheme_id::mxfp4, {}, k_moe_ex, k_both},
  };
  CHECK(g.size() == cases.size());
  for (const auto& c : cases) {
    CAPTURE(c.run);
    REQUIRE(g.contains(c.run));
    kv_attention_plan k;
    const ordered_json q = exported(c, k);
    for (const char* key :
         {"layer_quant_config", "kv_cache_quant_config", "softmax_quant_spec", "export"}) {
      CAPTURE(key);
      CHECK(q[key].dump() == g[c.run][key].dump());
    }
  }
}

TEST_CASE("a kv entry resolved from an attention override changes the scheme of other layers") {
  // Quark resolves "*k_proj" to the spec of "*layers.1.self_attn*" (the key names an attention
  // container) and adds it to layer_quant_config, so layer 0's k_proj (first match) gets fp8 too.
  kv_attention_plan k = plan_kv_attention(k_kv, "llama", {{"*layers.1.self_attn*", scheme_id::fp8}},
                                          k_llama_ex, scheme_id::mxfp4);
  REQUIRE(k.layers.size() == 3);
  CHECK(k.layers[1].first == "*k_proj");
  CHECK(k.layers[1].second == quant_scheme(scheme_id::fp8));
  CHECK(k.layers[2].first == "*v_proj");
  CHECK(k.exp.kv_cache.size() == 2);
  CHECK_FALSE(k.exp.softmax_fp8);
}

TEST_CASE("an excluded k projection keeps a kv-cache entry without weight or input spec") {
  kv_attention_plan k =
      plan_kv_attention(k_both, "llama", {}, {"lm_head", "*k_proj", "*q_proj"}, scheme_id::mxfp4);
  REQUIRE(k.exp.kv_cache.size() == 2);
  CHECK(k.exp.kv_cache[0].first == "*k_proj");
  CHECK_FALSE(k.exp.kv_cache[0].second.has_value());
  CHECK(k.exp.fp8_output_globs == std::vector<std::string>{"*v_proj"});
  CHECK(k.exp.softmax_fp8);
}

TEST_CASE("kv-cache and attention options name their refusal and warn about missing scales") {
  CHECK_THROWS_WITH_AS(
      (void)plan_kv_attention({"int8", "", std::nullopt}, "llama", {}, {}, scheme_id::mxfp4),
      doctest::Contains("Unsupported KV cache scheme: int8"), usage_error);
  CHECK_THROWS_WITH_AS(
      (void)plan_kv_attention({"", "mxfp4", std::nullopt}, "llama", {}, {}, scheme_id::mxfp4),
      doctest::Contains("Unsupported attention scheme: mxfp4"), usage_error);
  CHECK_THROWS_WITH_AS((void)plan_kv_attention(k_kv, "my_model", {}, {}, scheme_id::mxfp4),
                       doctest::Contains("model type 'my_model' has no Quark template"),
                       usage_error);
  kv_attention_plan k = plan_kv_attention({"fp8", "fp8", 2.0}, "llama", {}, {}, scheme_id::fp8);
  REQUIRE(k.warnings.size() == 3);
  CHECK(k.warnings[0].find("--min-kv-scale has no effect") != std::string::npos);
  CHECK(k.warnings[1].find("no k_scale / v_scale tensors") != std::string::npos);
  CHECK(k.warnings[2].find("no q_scale / prob_scale tensors") != std::string::npos);
  // Only min_kv_scale: nothing but the warning.
  k = plan_kv_attention({"", "", 0.25}, "llama", {{"*mlp*", scheme_id::fp8}}, {}, scheme_id::fp8);
  CHECK(k.layers.size() == 1);
  CHECK(k.exp.kv_cache.empty());
}

TEST_CASE("every template has kv and q projection names") {
  for (const char* t : {"llama", "qwen3_moe", "deepseek_v3", "chatglm", "gemma3", "kimi_k3"}) {
    CAPTURE(t);
    const auto n = kv_projections_of(t);
    REQUIRE(n.has_value());
    CHECK_FALSE(n->kv.empty());
    CHECK_FALSE(n->q.empty());
  }
  CHECK(kv_projections_of("deepseek_v3")->kv == std::vector<std::string>{"*kv_b_proj"});
  CHECK_FALSE(kv_projections_of("nope").has_value());
}
