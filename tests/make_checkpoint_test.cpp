// Synthetic checkpoints: determinism, architecture names and shapes, sizes, sharding, side files.
#include "synthetic/make_checkpoint.h"

#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "io/checkpoint.h"
#include "io/error.h"
#include "io/file.h"
#include "kernels/numeric.h"
#include "plan_test_util.h"

using namespace sq_plan_test;
using shape = std::vector<uint64_t>;

namespace {
make_checkpoint_options mk(const fs::path& out, const std::string& arch, uint64_t size,
                           uint64_t seed = 1) {
  make_checkpoint_options o;
  o.arch = arch;
  o.size = size;
  o.shard_size = 6ull << 20;
  o.out = out;
  o.seed = seed;
  return o;
}
std::map<std::string, const synthetic_tensor*> by_name(const synthetic_model& m) {
  std::map<std::string, const synthetic_tensor*> r;
  for (const auto& t : m.tensors) r[t.name] = &t;
  return r;
}
}  // namespace

TEST_CASE("the same seed gives the same bytes and another seed different ones") {
  temp_dir t;
  (void)make_checkpoint(mk(t.path / "a", "llama", 24ull << 20, 5));
  (void)make_checkpoint(mk(t.path / "b", "llama", 24ull << 20, 5));
  (void)make_checkpoint(mk(t.path / "c", "llama", 24ull << 20, 6));
  size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(t.path / "a")) {
    if (!e.is_regular_file()) continue;
    const auto rel = fs::relative(e.path(), t.path / "a");
    CHECK(read_file(e.path()) == read_file(t.path / "b" / rel));
    if (rel.string().ends_with(".safetensors")) {
      CHECK(read_file(e.path()) != read_file(t.path / "c" / rel));
      ++files;
    }
  }
  CHECK(files >= 3);
}

TEST_CASE("row generation does not depend on how rows are split") {
  const synthetic_tensor t{"x.weight", {64, 96}, dtype::bf16, synthetic_kind::linear, {}};
  std::vector<std::byte> whole(64 * 96 * 2), parts(64 * 96 * 2);
  generate_rows(t, 3, 0, 64, whole.data());
  generate_rows(t, 3, 0, 10, parts.data());
  generate_rows(t, 3, 10, 54, parts.data() + 10 * 96 * 2);
  CHECK(whole == parts);
}

TEST_CASE("weights look trained: finite - row scales spread - some zero rows and outliers") {
  const synthetic_tensor t{"big.weight", {4096, 256}, dtype::f32, synthetic_kind::linear, {}};
  std::vector<float> v(4096 * 256);
  generate_rows(t, 11, 0, 4096, reinterpret_cast<std::byte*>(v.data()));
  size_t zero_rows = 0, outlier_rows = 0;
  double min_std = 1e9, max_std = 0;
  bool finite = true;
  for (size_t r = 0; r < 4096; ++r) {
    double s2 = 0, amax = 0;
    for (size_t c = 0; c < 256; ++c) {
      const float x = v[r * 256 + c];
      finite = finite && std::isfinite(x);
      s2 += double(x) * x;
      amax = std::max(amax, std::fabs(double(x)));
    }
    const double sd = std::sqrt(s2 / 256);
    if (sd == 0) {
      ++zero_rows;
      continue;
    }
    min_std = std::min(min_std, sd);
    max_std = std::max(max_std, sd);
    if (amax > 8 * sd) ++outlier_rows;
  }
  CHECK(finite);
  CHECK(zero_rows > 0);
  CHECK(zero_rows < 40);
  CHECK(outlier_rows > 20);
  CHECK(max_std / min_std > 2.0);
}

TEST_CASE("llama checkpoints have the real names - sizes near the target and bounded shards") {
  temp_dir t;
  const auto r = make_checkpoint(mk(t.path, "llama", 40ull << 20));
  CHECK(r.bytes > (40ull << 20) * 7 / 10);
  CHECK(r.bytes < (40ull << 20) * 13 / 10);
  CHECK(r.shards.size() > 1);
  for (const auto& f :
       {"config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
        "generation_config.json", "chat_template.jinja", "original/params.json", "README.md"})
    CHECK(fs::exists(t.path / f));
  const source_checkpoint c = open_source_checkpoint(t.path, {});
  CHECK(c.shards.size() == r.shards.size());
  for (const auto& s : c.shards) {
    uint64_t b = 0;
    for (const auto& e : s.header.tensors) b += e.byte_size();
    CHECK((b <= (6ull << 20) || s.header.tensors.size() == 1));
  }
  const auto cfg = c.config_json();
  CHECK(cfg["model_type"] == "llama");
  CHECK(cfg["architectures"][0] == "LlamaForCausalLM");
  CHECK(cfg["torch_dtype"] == "bfloat16");
  CHECK(cfg["tie_word_embeddings"] == false);
  const uint64_t H = cfg["hidden_size"], I = cfg["intermediate_size"], V = cfg["vocab_size"];
  const auto* sh = c.shard_of("model.layers.0.mlp.down_proj.weight");
  REQUIRE(sh);
  CHECK(sh->header.find("model.layers.0.mlp.down_proj.weight")->shape == shape{H, I});
  CHECK(c.shard_of("lm_head.weight")->header.find("lm_head.weight")->shape == shape{V, H});
  CHECK(I % 128 == 0);
  CHECK(c.model_dtype == dtype::bf16);
}

TEST_CASE("deepseek_v3 and qwen3_moe designs carry their MoE and MLA names") {
  make_checkpoint_options o;
  o.arch = "deepseek_v3";
  o.size = 64ull << 20;
  auto m = design_model(o);
  auto n = by_name(m);
  for (const char* k :
       {"model.layers.0.self_attn.q_a_proj.weight",
        "model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
        "model.layers.0.self_attn.kv_a_layernorm.weight", "model.layers.0.mlp.gate_proj.weight",
        "model.layers.1.mlp.gate.weight", "model.layers.1.mlp.gate.e_score_correction_bias",
        "model.layers.1.mlp.experts.0.gate_proj.weight",
        "model.layers.1.mlp.shared_experts.down_proj.weight"})
    CHECK_MESSAGE(n.count(k), k);
  CHECK(n["model.layers.1.mlp.gate.e_score_correction_bias"]->type == dtype::f32);
  const uint64_t E = m.config["n_routed_experts"];
  CHECK(n["model.layers.1.mlp.gate.weight"]->shape[0] == E);
  CHECK(m.config["model_type"] == "deepseek_v3");
  const uint64_t kvl = m.config["kv_lora_rank"], rope = m.config["qk_rope_head_dim"];
  CHECK(n["model.layers.0.self_attn.kv_a_proj_with_mqa.weight"]->shape[0] == kvl + rope);

  o.arch = "qwen3_moe";
  o.odd_shapes = true;
  m = design_model(o);
  n = by_name(m);
  CHECK(n.count("model.layers.0.self_attn.q_norm.weight"));
  CHECK(n.count("model.layers.0.mlp.experts.0.down_proj.weight"));
  CHECK(m.config["moe_intermediate_size"].get<uint64_t>() % 4 == 2);
  CHECK(m.config["architectures"][0] == "Qwen3MoeForCausalLM");
  const double ratio = double(m.bytes()) / double(o.size);
  CHECK(ratio > 0.6);
  CHECK(ratio < 1.4);
  o.arch = "gpt2";
  CHECK_THROWS_AS((void)design_model(o), usage_error);
}

TEST_CASE("large targets scale the hidden size up - not just the layer count") {
  make_checkpoint_options o;
  o.arch = "llama";
  o.size = 16ull << 30;
  const auto m = design_model(o);
  CHECK(m.config["hidden_size"].get<uint64_t>() >= 4096);
  const double ratio = double(m.bytes()) / double(o.size);
  CHECK(ratio > 0.9);
  CHECK(ratio < 1.1);
}

TEST_CASE("fp8 sources: block scales match their weights and plan as recovered DeepSeek FP8") {
  make_checkpoint_options o;
  o.arch = "deepseek_v3";
  o.size = 24ull << 20;
  o.type = dtype::f8_e4m3;
  const auto m = design_model(o);
  CHECK(m.config["quantization_config"]["quant_method"] == "fp8");
  CHECK(m.config["torch_dtype"] == "bfloat16");
  const auto n = by_name(m);
  const synthetic_tensor* w = n.at("model.layers.1.mlp.experts.0.down_proj.weight");
  const synthetic_tensor* s = n.at("model.layers.1.mlp.experts.0.down_proj.weight_scale_inv");
  CHECK(w->type == dtype::f8_e4m3);
  CHECK(n.at("lm_head.weight")->type == dtype::bf16);
  CHECK(n.at("model.layers.1.mlp.gate.weight")->type == dtype::bf16);
  const uint64_t R = w->shape[0], C = w->shape[1];
  REQUIRE(s->shape == shape{(R + 127) / 128, (C + 127) / 128});
  std::vector<std::byte> codes(R * C), scales(s->shape[0] * s->shape[1] * 4);
  generate_rows(*w, 9, 0, 100, codes.data());  // deliberately not block-aligned
  generate_rows(*w, 9, 100, R - 100, codes.data() + 100 * C);
  generate_rows(*s, 9, 0, s->shape[0], scales.data());
  // In each block the element of largest magnitude was scaled to exactly +-448 (code 0x7E/0xFE).
  size_t blocks_with_max = 0, blocks = 0;
  for (uint64_t br = 0; br < s->shape[0]; ++br)
    for (uint64_t bc = 0; bc < s->shape[1]; ++bc) {
      bool has_max = false, any = false;
      for (uint64_t r = br * 128; r < std::min(R, br * 128 + 128); ++r)
        for (uint64_t c = bc * 128; c < std::min(C, bc * 128 + 128); ++c) {
          const auto b = std::to_integer<uint8_t>(codes[r * C + c]);
          has_max |= (b & 0x7F) == 0x7E;
          any |= (b & 0x7F) != 0;
        }
      blocks += any;
      blocks_with_max += has_max;
    }
  CHECK(blocks > 0);
  CHECK(blocks_with_max == blocks);

  temp_dir t;
  o.out = t.path;
  o.shard_size = 4ull << 20;
  (void)make_checkpoint(o);
  plan_options po;
  po.scheme = scheme_id::mxfp4;
  const plan p = plan_dir(t.path, po);
  CHECK(p.facts.quant_method == "fp8");
  CHECK(part(p, "model.layers.1.mlp.experts.0.down_proj.weight")->action ==
        tensor_action::recover_quantize);
  CHECK(part(p, "model.layers.1.self_attn.o_proj.weight")->action == tensor_action::recover_cast);
  CHECK(p.totals.consumed == p.totals.recovered);
}
