// pipeline/rotation: Quark 0.13's RotationConfig from --rotation / --rotation-config, every
// refusal with its reason, the per-tensor plan on a llama and a qwen3_moe layout, and the exported
// algo_config against the one Quark wrote (tests/data/rotation/llama_r1r2r4_algo_config.json, from
// Quark 0.13 F2F on CPU: llama bf16 toy checkpoint of tests/conformance/make_ckpt.py, mxfp4, with
// the llama RotationConfig and r1=r2=r4=True, online_r1_rotation=True).
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "pipeline/plan/rotation.h"

using namespace shardquant;
using oj = nlohmann::ordered_json;

namespace {

// make_ckpt.py --arch llama: hidden 256, intermediate 768, 4 heads (head_dim 64), 2 kv heads.
rotation_inputs llama_inputs() {
  rotation_inputs in;
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    in.linear_weights[p + "self_attn.q_proj.weight"] = {256, 256};
    in.linear_weights[p + "self_attn.k_proj.weight"] = {128, 256};
    in.linear_weights[p + "self_attn.v_proj.weight"] = {128, 256};
    in.linear_weights[p + "self_attn.o_proj.weight"] = {256, 256};
    in.linear_weights[p + "mlp.gate_proj.weight"] = {768, 256};
    in.linear_weights[p + "mlp.up_proj.weight"] = {768, 256};
    in.linear_weights[p + "mlp.down_proj.weight"] = {256, 768};
  }
  in.linear_weights["lm_head.weight"] = {512, 256};
  in.exclude = {"lm_head"};
  return in;
}

oj llama_config() {
  return oj{{"hidden_size", 256},
            {"intermediate_size", 768},
            {"num_attention_heads", 4},
            {"model_type", "llama"}};
}

std::string refusal(auto&& f) {
  try {
    f();
  } catch (const rotation_refused& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("--rotation r1,r2,r4 on llama plans what Quark plans and exports Quark's algo_config") {
  rotation_config c = rotation_from_flags("r1,r2,r4", "llama");
  const rotation_plan p = plan_rotation(c, llama_config(), llama_inputs());
  CHECK(p.online.size() == 12);
  CHECK(p.r2_out == 2);
  CHECK(p.r2_in == 2);
  CHECK(p.online.at("model.layers.0.self_attn.q_proj") == 256);
  CHECK(p.online.at("model.layers.1.mlp.down_proj") == 768);
  CHECK_FALSE(p.online.count("lm_head"));
  CHECK_FALSE(p.steps.count("lm_head.weight"));
  const std::vector<rotation_step> v = p.steps.at("model.layers.0.self_attn.v_proj.weight");
  REQUIRE(v.size() == 2);  // R1 on the input channels first, then R2 on the outputs
  CHECK(v[0] == rotation_step{rotation_kind::input_full, 256});
  CHECK(v[1] == rotation_step{rotation_kind::output_blocked, 64});
  CHECK(p.steps.at("model.layers.1.self_attn.o_proj.weight") ==
        std::vector<rotation_step>{{rotation_kind::input_blocked, 64}});
  CHECK(p.row_multiple("model.layers.0.self_attn.v_proj.weight") == 64);
  CHECK(p.row_multiple("model.layers.0.self_attn.q_proj.weight") == 1);

  std::ifstream f(std::string(SQ_TEST_DATA_DIR) + "/rotation/llama_r1r2r4_algo_config.json");
  REQUIRE(f.good());
  const oj quark = oj::parse(f);
  REQUIRE(quark.is_array());
  CHECK(rotation_algo_config(c).dump(1) == quark[0].dump(1));
}

TEST_CASE("R4 alone: the planner creates the online config, with a null shared_parallel") {
  rotation_config c = rotation_from_flags("r4", "llama");
  CHECK_FALSE(c.online_config.has_value());
  const rotation_plan p = plan_rotation(c, llama_config(), llama_inputs());
  CHECK(p.online.size() == 2);
  const oj out = rotation_algo_config(c);
  CHECK(out["online_r1_rotation"].is_null());
  CHECK(out["online_config"]["shared_parallel"].is_null());
  CHECK(out["online_config"]["online_rotation_layers"].size() == 2);
}

TEST_CASE("a rotation_size smaller than in_features gives blocked float64 rotations") {
  oj j = rotation_algo_config(rotation_from_flags("r1,r4", "llama"));
  j["rotation_size"] = 128;
  j["online_config"] = nullptr;
  rotation_config c = rotation_from_json(j, "test.json");
  const rotation_plan p = plan_rotation(c, llama_config(), llama_inputs());
  CHECK(p.steps.at("model.layers.0.mlp.down_proj.weight") ==
        std::vector<rotation_step>{{rotation_kind::input_blocked, 128}});
  CHECK(p.online.at("model.layers.0.mlp.down_proj") == 128);
}

TEST_CASE("a qwen3_moe rotation config reaches every expert through an mlp glob") {
  oj j = rotation_algo_config(rotation_from_flags("r1", "llama"));
  j["r4"] = true;
  j["mlp"] = "mlp.experts.*";
  j["online_config"] = nullptr;
  j["scaling_layers"]["first_layer"][1]["target_modules"] = {
      "model.layers.layer_id.mlp.experts.*.up_proj",
      "model.layers.layer_id.mlp.experts.*.gate_proj"};
  j["scaling_layers"]["middle_layers"][1]["target_modules"] =
      j["scaling_layers"]["first_layer"][1]["target_modules"];
  rotation_config c = rotation_from_json(j, "qwen3_moe.json");
  rotation_inputs in;
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* w : {"q_proj", "k_proj", "v_proj", "o_proj"})
      in.linear_weights[p + "self_attn." + w + ".weight"] = {256, 256};
    in.linear_weights[p + "mlp.gate.weight"] = {4, 256};  // the router: not a target
    for (int e = 0; e < 4; ++e) {
      const std::string x = p + "mlp.experts." + std::to_string(e) + ".";
      in.linear_weights[x + "gate_proj.weight"] = {96, 256};
      in.linear_weights[x + "up_proj.weight"] = {96, 256};
      in.linear_weights[x + "down_proj.weight"] = {256, 96};
    }
  }
  const oj cfg{{"hidden_size", 256},
               {"moe_intermediate_size", 96},
               {"intermediate_size", 768},
               {"num_attention_heads", 4},
               {"head_dim", 64}};
  const rotation_plan p = plan_rotation(c, cfg, in);
  CHECK(p.online.size() == 2 * (3 + 4 * 3));
  CHECK(p.online.at("model.layers.1.mlp.experts.3.down_proj") == 96);  // moe_intermediate_size
  CHECK(p.steps.at("model.layers.1.mlp.experts.3.down_proj.weight")[0].kind ==
        rotation_kind::input_full);
  CHECK_FALSE(p.online.count("model.layers.0.mlp.gate"));
  const oj out = rotation_algo_config(c);
  CHECK(out["online_config"]["shared_parallel"] == false);  // r1 online: __post_init__ made it
  CHECK(out["online_config"]["online_rotation_layers"][0] ==
        "model.layers.0.mlp.experts.0.down_proj");
}

TEST_CASE("every configuration Quark refuses is refused with its reason") {
  const oj base = rotation_algo_config(rotation_from_flags("r1,r2,r4", "llama"));
  auto with = [&](const char* key, oj v) {
    oj j = base;
    j[key] = std::move(v);
    return j;
  };
  CHECK(refusal([&] {
          (void)rotation_from_json(with("trainable", true), "t.json");
        }).find("trainable=True") != std::string::npos);
  CHECK(refusal([&] {
          (void)rotation_from_json(with("online_r1_rotation", false), "t.json");
        }).find("Offline R1") != std::string::npos);
  CHECK(refusal([&] { (void)rotation_from_json(with("r3", true), "t.json"); }).find("r3=True") !=
        std::string::npos);
  CHECK(refusal([&] { (void)rotation_from_flags("r1,r3", "llama"); }).find("R3") !=
        std::string::npos);
  CHECK(refusal([&] {
          (void)rotation_from_json(with("random_r1", true), "t.json");
        }).find("random") != std::string::npos);
  CHECK(refusal([&] {
          (void)rotation_from_json(with("random_r2", true), "t.json");
        }).find("random") != std::string::npos);
  CHECK(refusal([&] {
          (void)rotation_from_json(with("bogus", 1), "t.json");
        }).find("unknown RotationConfig field 'bogus'") != std::string::npos);
  CHECK(refusal([&] {
          (void)rotation_from_flags("r1", "qwen3_moe");
        }).find("No built-in rotation configuration") != std::string::npos);

  // An online target that is also excluded.
  {
    rotation_config c = rotation_from_flags("r1", "llama");
    rotation_inputs in = llama_inputs();
    in.exclude.push_back("*.k_proj");
    CHECK(refusal([&] {
            (void)plan_rotation(c, llama_config(), in);
          }).find("also matches the quantization exclude pattern '*.k_proj'") != std::string::npos);
  }
  // A rotation size that does not divide the dimension.
  {
    rotation_config c = rotation_from_json(with("rotation_size", 96), "t.json");
    CHECK(refusal([&] {
            (void)plan_rotation(c, llama_config(), llama_inputs());
          }).find("rotation_size=96 does not divide in_features=256") != std::string::npos);
  }
  // A biased v_proj for R2.
  {
    rotation_config c = rotation_from_flags("r2", "llama");
    rotation_inputs in = llama_inputs();
    in.biases.insert("model.layers.1.self_attn.v_proj.bias");
    CHECK(refusal([&] { (void)plan_rotation(c, llama_config(), in); }).find(".bias' in lockstep") !=
          std::string::npos);
  }
  // A size with no Hadamard matrix (hidden 1040 = 52 * 20).
  {
    rotation_config c = rotation_from_flags("r1", "llama");
    rotation_inputs in;
    in.linear_weights["model.layers.0.self_attn.q_proj.weight"] = {1040, 1040};
    oj cfg = llama_config();
    cfg["hidden_size"] = 1040;
    CHECK(refusal([&] { (void)plan_rotation(c, cfg, in); }).find("n=1040") != std::string::npos);
  }
  // A config that names no layer of the checkpoint.
  {
    rotation_config c = rotation_from_json(with("model_decoder_layers", "transformer.h"), "t.json");
    CHECK(refusal([&] {
            (void)plan_rotation(c, llama_config(), llama_inputs());
          }).find("zero target layers") != std::string::npos);
  }
}
