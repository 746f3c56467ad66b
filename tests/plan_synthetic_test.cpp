// Dry-run plans of generated llama / deepseek_v3 / qwen3_moe checkpoints: actions, output
// shapes and bytes, offsets, exported exclude lists, scheme prerequisites on odd shapes.
#include <doctest/doctest.h>

#include <set>

#include "io/error.h"
#include "pipeline/plan/geometry.h"
#include "plan_test_util.h"
#include "synthetic/make_checkpoint.h"

using namespace sq_plan_test;
using shape = std::vector<uint64_t>;

namespace {

fs::path generate(const fs::path& dir, const std::string& arch, uint64_t size, bool odd = false,
                  uint64_t shard = 8ull << 20) {
  make_checkpoint_options o;
  o.arch = arch;
  o.size = size;
  o.shard_size = shard;
  o.out = dir / arch;
  o.seed = 7;
  o.odd_shapes = odd;
  (void)make_checkpoint(o);
  return o.out;
}

// Every output of the plan sits inside its shard's data section, without overlap, and the
// totals add up.
void check_layout_consistency(const plan& p) {
  uint64_t out = 0;
  std::map<uint32_t, std::vector<std::pair<uint64_t, uint64_t>>> ranges;
  for (const auto& it : p.items)
    for (const auto& pt : it.parts)
      for (const auto& o : pt.outputs) {
        const auto& lay = p.shards[pt.output_shard].layout;
        CHECK(o.file_offset >= lay.data_start());
        CHECK(o.file_offset + o.bytes <= lay.file_size());
        ranges[pt.output_shard].push_back({o.file_offset, o.file_offset + o.bytes});
        out += o.bytes;
      }
  for (auto& [s, r] : ranges) {
    std::sort(r.begin(), r.end());
    for (size_t i = 1; i < r.size(); ++i) CHECK(r[i - 1].second <= r[i].first);
    CHECK(r.back().second == p.shards[s].layout.file_size());
  }
  CHECK(out == p.totals.bytes_out);
}

}  // namespace

TEST_CASE("llama mxfp4 plan quantizes Linear weights and keeps lm_head - norms and embeddings") {
  temp_dir t;
  const fs::path d = generate(t.path, "llama", 40ull << 20);
  const plan p = plan_dir(d, opts(scheme_id::mxfp4));
  CHECK(p.facts.model_type == "llama");
  CHECK(p.facts.exclude_from_template);
  CHECK(p.shards.size() >= 3);
  const plan_part* q = part(p, "model.layers.0.self_attn.q_proj.weight");
  REQUIRE(q);
  CHECK(q->action == tensor_action::quantize);
  CHECK(q->scheme == scheme_id::mxfp4);
  REQUIRE(q->outputs.size() == 2);
  const uint64_t out = q->input_shape[0], in = q->input_shape[1];
  CHECK(q->outputs[0].name == "model.layers.0.self_attn.q_proj.weight");
  CHECK(q->outputs[0].type == dtype::u8);
  CHECK(q->outputs[0].shape == shape{out, in / 2});
  CHECK(q->outputs[0].bytes == out * in / 2);
  CHECK(q->outputs[1].name == "model.layers.0.self_attn.q_proj.weight_scale");
  CHECK(q->outputs[1].shape == shape{out, (in + 31) / 32});
  CHECK(q->input_bytes == out * in * 2);

  const plan_part* lm = part(p, "lm_head.weight");
  REQUIRE(lm);
  CHECK(lm->action == tensor_action::pass_through);
  CHECK(lm->outputs[0].type == dtype::bf16);
  CHECK(part(p, "model.embed_tokens.weight")->action == tensor_action::pass_through);
  CHECK(part(p, "model.norm.weight")->action == tensor_action::pass_through);
  CHECK(p.exclude_resolved == std::vector<std::string>{"lm_head"});
  CHECK(p.consumed.empty());
  const uint64_t layers = p.source.config_json()["num_hidden_layers"].get<uint64_t>();
  CHECK(p.totals.quantized == 7 * layers);
  CHECK(p.totals.passed == 2 * layers + 3);
  REQUIRE(p.totals.per_scheme.size() == 1);
  CHECK(p.totals.per_scheme[0].tensors == 7 * layers);
  CHECK(p.totals.bytes_out < p.totals.bytes_in);
  check_layout_consistency(p);
}

TEST_CASE(
    "llama overrides: the first matching glob picks the scheme - int8 writes a scalar scale") {
  temp_dir t;
  const fs::path d = generate(t.path, "llama", 40ull << 20);
  plan_options o = opts(scheme_id::fp8);
  o.layer_schemes = {{"*down_proj", scheme_id::int8}, {"*mlp*", scheme_id::int4_wo_64}};
  o.exclude = std::vector<std::string>{};  // explicitly nothing: lm_head is quantized too
  const plan p = plan_dir(d, o);
  const plan_part* down = part(p, "model.layers.1.mlp.down_proj.weight");
  REQUIRE(down);
  CHECK(down->scheme == scheme_id::int8);
  CHECK(down->outputs[0].type == dtype::i8);
  CHECK(down->outputs[1].shape.empty());
  const plan_part* up = part(p, "model.layers.1.mlp.up_proj.weight");
  CHECK(up->scheme == scheme_id::int4_wo_64);
  CHECK(up->outputs[0].shape == shape{up->input_shape[1], (up->input_shape[0] + 7) / 8});
  CHECK(part(p, "lm_head.weight")->scheme == scheme_id::fp8);
  CHECK(p.exclude_resolved.empty());
  CHECK(p.totals.per_scheme.size() == 3);
  check_layout_consistency(p);
}

TEST_CASE("a small token marks per-tensor tensors for an amax pass and splits per-row ones") {
  temp_dir t;
  const fs::path d = generate(t.path, "llama", 160ull << 20);
  plan_options o = opts(scheme_id::fp8);
  o.exclude = std::vector<std::string>{};
  o.layer_schemes = {{"lm_head", scheme_id::mxfp4}};
  plan p = plan_dir(d, o);
  CHECK(p.totals.amax_pass == 0);  // make_plan leaves the cut to the geometry
  const run_geometry g = decide_geometry(p, 8ull << 20);  // two 4 MiB tokens: 3 MiB up_proj
                                                          // + 1.5 MiB of fp8 codes do not fit
  CHECK(g.tokens.token_bytes == (4ull << 20));
  CHECK(g.split_tensors.size() >= g.amax_tensors.size());
  const plan_part* up = part(p, "model.layers.0.mlp.up_proj.weight");
  CHECK(up->split_rows > 0);
  CHECK(up->amax_pass);
  const plan_part* head = part(p, "lm_head.weight");
  CHECK(head->split_rows > 0);
  CHECK_FALSE(head->amax_pass);
  CHECK(p.totals.amax_pass == g.amax_tensors.size());
  CHECK(p.totals.amax_pass > 0);
}

TEST_CASE("odd shapes: per-group int4 and mxfp6 reject down_proj - mxfp4 and fp8 accept all") {
  temp_dir t;
  const fs::path d = generate(t.path, "llama", 40ull << 20, true);
  const auto cfg = open_source_checkpoint(d, {}).config_json();
  CHECK(cfg["intermediate_size"].get<uint64_t>() % 4 == 2);
  CHECK(cfg["vocab_size"].get<uint64_t>() % 2 == 1);
  for (scheme_id s : {scheme_id::int4_wo_128, scheme_id::uint4_wo_32, scheme_id::mxfp6_e2m3}) {
    try {
      (void)plan_dir(d, opts(s));
      FAIL("expected a shape error");
    } catch (const input_error& e) {
      CHECK(std::string(e.what()).find("down_proj") != std::string::npos);
    }
  }
  for (scheme_id s : {scheme_id::mxfp4, scheme_id::fp8, scheme_id::int4_wo_per_channel})
    CHECK_NOTHROW((void)plan_dir(d, opts(s)));
}

TEST_CASE(
    "deepseek_v3 plan follows the template: attention and router excluded and experts quantized") {
  temp_dir t;
  const fs::path d = generate(t.path, "deepseek_v3", 48ull << 20);
  const plan p = plan_dir(d, opts(scheme_id::ptpc_fp8));
  CHECK(p.facts.model_type == "deepseek_v3");
  const plan_part* qa = part(p, "model.layers.1.self_attn.q_a_proj.weight");
  REQUIRE(qa);
  CHECK(qa->action == tensor_action::pass_through);
  CHECK(part(p, "model.layers.1.self_attn.kv_a_proj_with_mqa.weight")->action ==
        tensor_action::pass_through);
  const plan_part* gate = part(p, "model.layers.1.mlp.gate.weight");
  REQUIRE(gate);
  CHECK(gate->action == tensor_action::pass_through);
  const plan_part* bias = part(p, "model.layers.1.mlp.gate.e_score_correction_bias");
  REQUIRE(bias);
  CHECK(bias->action == tensor_action::pass_through);
  CHECK(bias->outputs[0].type == dtype::f32);  // not a .weight: never cast
  const plan_part* e = part(p, "model.layers.1.mlp.experts.3.gate_proj.weight");
  REQUIRE(e);
  CHECK(e->action == tensor_action::quantize);
  CHECK(e->outputs[0].type == dtype::f8_e4m3);
  CHECK(e->outputs[1].shape == shape{e->input_shape[0]});
  CHECK(part(p, "model.layers.1.mlp.shared_experts.down_proj.weight")->action ==
        tensor_action::quantize);
  CHECK(part(p, "model.layers.0.mlp.down_proj.weight")->action == tensor_action::quantize);
  const std::set<std::string> ex(p.exclude_resolved.begin(), p.exclude_resolved.end());
  CHECK(ex.count("lm_head"));
  CHECK(ex.count("model.layers.1.mlp.gate"));
  CHECK(ex.count("model.layers.0.self_attn.kv_b_proj"));
  CHECK_FALSE(ex.count("model.layers.0.self_attn.q_a_layernorm"));  // norms never listed
  CHECK(std::is_sorted(p.exclude_resolved.begin(), p.exclude_resolved.end()));
  check_layout_consistency(p);
}

TEST_CASE("qwen3_moe plan excludes the router (*.gate) and quantizes every expert") {
  temp_dir t;
  const fs::path d = generate(t.path, "qwen3_moe", 48ull << 20);
  const plan p = plan_dir(d, opts(scheme_id::int4_fp8));
  const uint64_t E = p.source.config_json()["num_experts"].get<uint64_t>();
  const uint64_t L = p.source.config_json()["num_hidden_layers"].get<uint64_t>();
  CHECK(part(p, "model.layers.0.mlp.gate.weight")->action == tensor_action::pass_through);
  CHECK(part(p, "model.layers.0.self_attn.q_norm.weight")->action == tensor_action::pass_through);
  const plan_part* x = part(p, "model.layers.0.mlp.experts.0.down_proj.weight");
  REQUIRE(x);
  REQUIRE(x->outputs.size() == 3);
  CHECK(x->outputs[2].name == "model.layers.0.mlp.experts.0.down_proj.weight_scale_2");
  CHECK(p.totals.quantized == L * (4 + 3 * E));
  CHECK(p.exclude_resolved.size() == L + 1);
  check_layout_consistency(p);
}

TEST_CASE("an unknown model type needs an explicit exclude list - an empty one is accepted") {
  temp_dir t;
  write_checkpoint(t.path, R"({"model_type": "mystery", "torch_dtype": "bfloat16"})",
                   {{"model.safetensors", {{"lm_head.weight", dtype::bf16, {64, 32}}}}}, false);
  CHECK_THROWS_AS((void)plan_dir(t.path, opts(scheme_id::fp8)), usage_error);
  plan_options o = opts(scheme_id::fp8);
  o.exclude = std::vector<std::string>{};
  const plan p = plan_dir(t.path, o);
  CHECK(part(p, "lm_head.weight")->action == tensor_action::quantize);
}
