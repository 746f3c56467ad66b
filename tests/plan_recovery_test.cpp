// Plans of hand-made sources: the cast rule (§4.3), the float check (§4.1 step 5), FP8 block
// sources with same- and cross-shard scales (§7.2.1), keep-original (§8), compressed-tensors
// companions and config groups (§7.3.1), unsupported quant_methods, converters (§9).
#include <doctest/doctest.h>

#include "io/error.h"
#include "plan_test_util.h"

using namespace sq_plan_test;
using shape = std::vector<uint64_t>;

namespace {
const char* k_fp8_config = R"({"model_type": "deepseek_v3", "torch_dtype": "bfloat16",
  "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                          "weight_block_size": [128, 128]}})";
}  // namespace

TEST_CASE("pass-through tensors are cast to the model dtype exactly when §4.3 says so") {
  temp_dir t;
  write_checkpoint(
      t.path, R"({"model_type": "llama", "torch_dtype": "bfloat16"})",
      {{"model.safetensors",
        {{"mtp.pre_fc_norm_hidden.weight", dtype::f32, {64}},    // rank 1, name rule: cast
         {"model.norm.weight", dtype::f32, {64}},                // module ends in "norm": as stored
         {"lm_head.weight", dtype::f32, {64, 64}},               // excluded float: kept
         {"model.layers.0.mlp.up_proj.bias", dtype::f32, {64}},  // not .weight
         {"model.embed_tokens.weight", dtype::f32, {128, 64}},   // embed: no rule
         {"model.layers.0.mlp.up_proj.weight", dtype::f32, {64, 64}}}}},
      false);
  const plan p = plan_dir(t.path, opts(scheme_id::mxfp4));
  const plan_part* mtp = part(p, "mtp.pre_fc_norm_hidden.weight");
  CHECK(mtp->action == tensor_action::cast);
  CHECK(mtp->cast_to == dtype::bf16);
  CHECK(mtp->outputs[0].type == dtype::bf16);
  CHECK(mtp->outputs[0].bytes == 128);
  CHECK(part(p, "model.norm.weight")->action == tensor_action::pass_through);
  CHECK(part(p, "model.norm.weight")->outputs[0].type == dtype::f32);
  CHECK(part(p, "lm_head.weight")->action == tensor_action::pass_through);
  CHECK(part(p, "lm_head.weight")->outputs[0].type == dtype::f32);
  CHECK(part(p, "model.layers.0.mlp.up_proj.bias")->action == tensor_action::pass_through);
  CHECK(part(p, "model.embed_tokens.weight")->action == tensor_action::pass_through);
  const plan_part* up = part(p, "model.layers.0.mlp.up_proj.weight");
  CHECK(up->action == tensor_action::quantize);
  CHECK(up->input_type == dtype::f32);
}

TEST_CASE("a non-float weight that would be quantized is an error naming the tensor") {
  temp_dir t;
  write_checkpoint(t.path, R"({"model_type": "llama"})",
                   {{"model.safetensors", {{"x.proj.weight", dtype::i32, {8, 32}}}}}, false);
  try {
    (void)plan_dir(t.path, opts(scheme_id::fp8));
    FAIL("expected input_error");
  } catch (const input_error& e) {
    CHECK(e.tensor() == "x.proj.weight");
    CHECK(std::string(e.what()).find("I32") != std::string::npos);
  }
}

TEST_CASE("FP8 block sources: same-shard and cross-shard _scale_inv are recovered and consumed") {
  temp_dir t;
  write_checkpoint(t.path, k_fp8_config,
                   {{"model-00001-of-00002.safetensors",
                     {{"model.layers.0.mlp.up_proj.weight", dtype::f8_e4m3, {256, 300}},
                      {"model.layers.0.mlp.up_proj.weight_scale_inv", dtype::f32, {2, 3}},
                      {"model.layers.0.mlp.down_proj.weight", dtype::f8_e4m3, {300, 256}},
                      {"model.layers.0.self_attn.o_proj.weight", dtype::f8_e4m3, {128, 128}},
                      {"model.layers.0.mlp.gate.weight", dtype::bf16, {8, 128}}}},
                    {"model-00002-of-00002.safetensors",
                     {{"model.layers.0.mlp.down_proj.weight_scale_inv", dtype::f32, {3, 2}},
                      {"model.layers.0.self_attn.o_proj.weight_scale_inv", dtype::f32, {1, 1}},
                      {"model.layers.9.orphan.weight_scale_inv", dtype::f32, {1, 1}}}}});
  std::vector<std::string> warnings;
  const plan p = plan_dir(t.path, opts(scheme_id::mxfp4), &warnings);
  const plan_part* up = part(p, "model.layers.0.mlp.up_proj.weight");
  REQUIRE(up);
  CHECK(up->action == tensor_action::recover_quantize);
  CHECK(up->input_type == dtype::f32);
  CHECK(up->input_bytes == 256 * 300 * 4);
  const plan_item* upi = item_of(p, "model.layers.0.mlp.up_proj.weight");
  CHECK(upi->recovery.kind == recovery_kind::fp8_block);
  CHECK(upi->recovery.scale->name == "model.layers.0.mlp.up_proj.weight_scale_inv");
  CHECK(upi->recovery.chunk_rows == 256);
  const plan_item* down = item_of(p, "model.layers.0.mlp.down_proj.weight");
  REQUIRE(down->recovery.scale);
  CHECK(down->recovery.scale->shard == 1);  // cross-shard scale
  CHECK(part(p, "model.layers.0.mlp.down_proj.weight")->output_shard == 0);
  // Excluded (*self_attn*) recovered weight: written in the model dtype.
  const plan_part* o = part(p, "model.layers.0.self_attn.o_proj.weight");
  CHECK(o->action == tensor_action::recover_cast);
  CHECK(o->outputs[0].type == dtype::bf16);
  // Router stored BF16: not quantized in the source, excluded by *mlp.gate.
  CHECK(part(p, "model.layers.0.mlp.gate.weight")->action == tensor_action::pass_through);
  CHECK(p.consumed.size() == 4);  // three scales + the orphan
  CHECK(part(p, "model.layers.9.orphan.weight_scale_inv") == nullptr);
  bool orphan_warned = false;
  for (const auto& w : warnings) orphan_warned |= w.find("orphan") != std::string::npos;
  CHECK(orphan_warned);
  // The second shard keeps no tensor.
  CHECK(p.shards[1].layout.tensors().empty());
}

TEST_CASE("FP8 sources: wrong scale shapes and non-Linear bases are errors") {
  temp_dir t;
  write_checkpoint(t.path, k_fp8_config,
                   {{"model.safetensors",
                     {{"a.proj.weight", dtype::f8_e4m3, {256, 256}},
                      {"a.proj.weight_scale_inv", dtype::f32, {2, 3}}}}},
                   false);
  CHECK_THROWS_AS((void)plan_dir(t.path, opts(scheme_id::fp8)), input_error);
  temp_dir u;
  write_checkpoint(u.path, k_fp8_config,
                   {{"model.safetensors",
                     {{"model.embed_tokens.weight", dtype::f8_e4m3, {256, 256}},
                      {"model.embed_tokens.weight_scale_inv", dtype::f32, {2, 2}}}}},
                   false);
  CHECK_THROWS_AS((void)plan_dir(u.path, opts(scheme_id::fp8)), input_error);
}

TEST_CASE("presharded chunk rows change the expected block-scale shape") {
  temp_dir t;
  write_checkpoint(t.path, k_fp8_config,
                   {{"model.safetensors",
                     {{"m.qkv.weight", dtype::f8_e4m3, {384, 128}},
                      {"m.qkv.weight_scale_inv", dtype::f32, {4, 1}}}}},  // 2 chunks x 2 blocks
                   false);
  plan_options o = opts(scheme_id::fp8, std::vector<std::string>{});
  CHECK_THROWS_AS((void)plan_dir(t.path, o), input_error);  // one chunk: scale must be [3, 1]
  o.presharded = {{"*qkv*", 192}};  // 2 chunks of ceil(192/128) = 2 blocks: [4, 1]
  const plan p = plan_dir(t.path, o);
  CHECK(item_of(p, "m.qkv.weight")->recovery.chunk_rows == 192);
}

TEST_CASE(
    "keep-original keeps excluded FP8 weights and renames their scale into the weight's shard") {
  temp_dir t;
  write_checkpoint(
      t.path, k_fp8_config,
      {{"a.safetensors", {{"model.layers.0.self_attn.o_proj.weight", dtype::f8_e4m3, {128, 256}}}},
       {"b.safetensors",
        {{"model.layers.0.self_attn.o_proj.weight_scale_inv", dtype::f32, {1, 2}},
         {"model.layers.0.mlp.up_proj.weight", dtype::bf16, {64, 64}}}}});
  plan_options o = opts(scheme_id::mxfp4);
  o.keep_excluded_as_original = true;
  const plan p = plan_dir(t.path, o);
  const plan_part* w = part(p, "model.layers.0.self_attn.o_proj.weight");
  CHECK(w->action == tensor_action::keep_original);
  CHECK(w->outputs[0].type == dtype::f8_e4m3);
  const plan_part* s = part(p, "model.layers.0.self_attn.o_proj.weight_scale");
  REQUIRE(s);
  CHECK(s->action == tensor_action::keep_original);
  CHECK(s->output_shard == 0);
  CHECK(item_of(p, "model.layers.0.self_attn.o_proj.weight_scale")->source.shard == 1);
  REQUIRE(p.kept.size() == 1);
  CHECK(p.kept[0].module == "model.layers.0.self_attn.o_proj");
  CHECK(p.exclude_resolved.empty());
  const auto q = exported_quantization_config(p);
  CHECK(q["layer_quant_config"].contains("model.layers.0.self_attn.o_proj"));
  CHECK(p.consumed.empty());
}

TEST_CASE("unsupported source quant_methods are errors naming the value") {
  temp_dir t;
  write_checkpoint(t.path,
                   R"({"model_type": "llama", "quantization_config": {"quant_method": "gptq"}})",
                   {{"model.safetensors", {{"lm_head.weight", dtype::bf16, {8, 8}}}}}, false);
  try {
    (void)plan_dir(t.path, opts(scheme_id::fp8));
    FAIL("expected input_error");
  } catch (const input_error& e) {
    CHECK(std::string(e.what()).find("gptq") != std::string::npos);
  }
}

TEST_CASE("compressed-tensors pack-quantized modules are recovered with their config group") {
  temp_dir t;
  const char* cfg = R"({"model_type": "llama", "torch_dtype": "bfloat16",
    "quantization_config": {"quant_method": "compressed-tensors", "format": "pack-quantized",
      "config_groups": {
        "group_0": {"targets": ["re:.*mlp.*"], "weights": {"num_bits": 4, "type": "int",
                     "symmetric": true, "strategy": "group", "group_size": 128}},
        "group_1": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "int",
                     "symmetric": true, "strategy": "channel"}}}}})";
  write_checkpoint(
      t.path, cfg,
      {{"model.safetensors",
        {{"model.layers.0.mlp.up_proj.weight_packed", dtype::i32, {64, 32}},
         {"model.layers.0.mlp.up_proj.weight_shape", dtype::i64, {2}, i64_bytes({64, 256})},
         {"model.layers.0.mlp.up_proj.weight_scale", dtype::bf16, {64, 2}},
         {"model.layers.0.self_attn.q_proj.weight_packed", dtype::i32, {32, 16}},
         {"model.layers.0.self_attn.q_proj.weight_shape", dtype::i64, {2}, i64_bytes({32, 64})},
         {"model.layers.0.self_attn.q_proj.weight_scale", dtype::f32, {32, 1}},
         {"lm_head.weight", dtype::bf16, {16, 64}}}}},
      false);
  const plan p = plan_dir(t.path, opts(scheme_id::mxfp4));
  const plan_part* up = part(p, "model.layers.0.mlp.up_proj.weight");
  REQUIRE(up);
  CHECK(up->action == tensor_action::recover_quantize);
  CHECK(up->input_shape == shape{64, 256});
  const plan_item* ui = item_of(p, "model.layers.0.mlp.up_proj.weight");
  CHECK(ui->recovery.kind == recovery_kind::ct_packed);
  CHECK(ui->recovery.num_bits == 4);
  CHECK(ui->recovery.group_size == 128);
  CHECK(ui->source.name == "model.layers.0.mlp.up_proj.weight_packed");
  const plan_item* qi = item_of(p, "model.layers.0.self_attn.q_proj.weight");
  REQUIRE(qi);
  CHECK(qi->recovery.num_bits == 8);
  CHECK(qi->recovery.strategy == ct_strategy::channel);
  CHECK(p.consumed.size() == 4);  // two scales, two shapes
  CHECK(part(p, "model.layers.0.mlp.up_proj.weight_shape") == nullptr);
}

TEST_CASE("template converters split fused experts and the parts are planned by their new names") {
  temp_dir t;
  write_checkpoint(t.path, R"({"model_type": "qwen3_5_moe", "torch_dtype": "bfloat16"})",
                   {{"model.safetensors",
                     {{"model.layers.0.mlp.experts.gate_up_proj", dtype::bf16, {4, 128, 64}},
                      {"model.layers.0.mlp.experts.down_proj", dtype::bf16, {4, 64, 64}},
                      {"model.layers.0.mlp.gate.weight", dtype::bf16, {4, 64}}}}},
                   false);
  const plan p = plan_dir(t.path, opts(scheme_id::mxfp4));
  const plan_part* g = part(p, "model.layers.0.mlp.experts.2.gate_proj.weight");
  REQUIRE(g);
  CHECK(g->action == tensor_action::quantize);
  CHECK(g->input_shape == shape{64, 64});
  CHECK(g->slice.expert == uint64_t{2});
  CHECK(g->slice.begin == 0);
  const plan_part* u = part(p, "model.layers.0.mlp.experts.2.up_proj.weight");
  CHECK(u->slice.begin == 64);
  CHECK(part(p, "model.layers.0.mlp.experts.3.down_proj.weight")->action ==
        tensor_action::quantize);
  CHECK(part(p, "model.layers.0.mlp.experts.gate_up_proj") == nullptr);
  CHECK(p.totals.quantized == 12);
  // Excluded converter outputs are listed in the exported exclude list [DIFF §6.4].
  plan_options o = opts(scheme_id::mxfp4, std::vector<std::string>{"*experts.1.*"});
  const plan q = plan_dir(t.path, o);
  CHECK(q.exclude_resolved == std::vector<std::string>{"model.layers.0.mlp.experts.1.down_proj",
                                                       "model.layers.0.mlp.experts.1.gate_proj",
                                                       "model.layers.0.mlp.experts.1.up_proj"});
  // Rank-3 weights without a converter: MX schemes quantize them with a warning, int8 refuses.
  plan_options nc = opts(scheme_id::mxfp4);
  nc.use_template_converters = false;
  nc.converters = {parse_converter("gate_up_proj=gate_up.weight:rename")};
  std::vector<std::string> w;
  const plan r = plan_dir(t.path, nc, &w);
  CHECK(part(r, "model.layers.0.mlp.experts.gate_up.weight")->action == tensor_action::quantize);
  CHECK_FALSE(w.empty());
  nc.scheme = scheme_id::int8;
  CHECK_THROWS_AS((void)plan_dir(t.path, nc), input_error);
}
