// The pipeline with --rotation on a generated llama checkpoint: rotated weights equal the kernels'
// rotation then whole-tensor quantization, each online module's I8 input_rotation tensor is in its
// weight's shard with the Hadamard bytes, config.json carries the algo_config, under a budget that
// splits tensors into row ranges; refused configurations name their reason through the API.
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "checkpoint_test_util.h"
#include "io/error.h"
#include "io/safetensors.h"
#include "kernels/hadamard.h"
#include "kernels/quantize.h"
#include "kernels/recover_tensors.h"
#include "pipeline/api.h"
#include "synthetic/make_checkpoint.h"
#include "synthetic_source_util.h"
#include "tensor_bytes_util.h"

using namespace shardquant;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t MiB = uint64_t{1} << 20;

fs::path scratch() {
  static const sq_test::temp_dir d("rotation-e2e");
  return d.path;
}

// hidden 1536 = 12 * 128 (a Kronecker factor), intermediate 4096: gate/up/down and the 16 MiB
// down_proj input_rotation are larger than a 4 MiB token.
const fs::path& source_dir() {
  static const fs::path dir = sq_test::make_llama(scratch() / "src", 400 * MiB, 0, 3);
  return dir;
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

fs::path shard_of(const fs::path& dir, const std::string& tensor) {
  if (!fs::exists(dir / "model.safetensors.index.json")) return dir / "model.safetensors";
  const auto idx = nlohmann::json::parse(read_all(dir / "model.safetensors.index.json"));
  return dir / idx["weight_map"][tensor].get<std::string>();
}

quantize_options options(const std::string& scheme, const fs::path& out, uint64_t budget) {
  quantize_options o;
  o.input = source_dir();
  o.output = out;
  o.scheme = scheme;
  o.rotation = "r1,r2,r4";
  o.memory_budget = budget;
  o.quiet = true;
  o.progress_to_stderr = false;
  return o;
}

// The weight's outputs equal the kernels' rotations (in order) then whole-tensor quantization.
void check_weight(const fs::path& out, const std::string& weight, scheme_id s,
                  const std::vector<rotation_step>& steps) {
  const fs::path src_file = shard_of(source_dir(), weight);
  const safetensors_header h = read_safetensors_header(src_file);
  const tensor_entry* e = h.find(weight);
  REQUIRE(e != nullptr);
  auto src = tensor_bytes(src_file, weight);
  for (const auto& st : steps) apply_rotation(st, src.data(), e->type, e->shape[0], e->shape[1]);
  check_whole_tensor_outputs(shard_of(out, weight), weight, s, e->type, e->shape, src);
}

}  // namespace

TEST_CASE("--rotation r1,r2,r4 writes rotated weights, input_rotation buffers and algo_config") {
  // An 8 MiB budget: gate/up/down are quantized in row ranges after an amax pass (each range
  // rotated on its own) and the 16 MiB down_proj buffer is generated in pieces.
  const fs::path out_small = scratch() / "fp8-8M";
  (void)quantize_checkpoint(options("fp8", out_small, 8 * MiB));
  const std::string l = "model.layers.1.";
  check_weight(out_small, l + "self_attn.q_proj.weight", scheme_id::fp8,
               {{rotation_kind::input_full, 1536}});
  check_weight(out_small, l + "self_attn.v_proj.weight", scheme_id::fp8,
               {{rotation_kind::input_full, 1536}, {rotation_kind::output_blocked, 128}});
  check_weight(out_small, l + "self_attn.o_proj.weight", scheme_id::fp8,
               {{rotation_kind::input_blocked, 128}});
  check_weight(out_small, l + "mlp.down_proj.weight", scheme_id::fp8,
               {{rotation_kind::input_full, 4096}});
  // The buffers: I8 [n, n], the Hadamard signs, next to their weight.
  for (const auto& [m, n] : std::map<std::string, std::size_t>{{l + "mlp.down_proj", 4096},
                                                               {l + "self_attn.k_proj", 1536}}) {
    const fs::path f = shard_of(out_small, m + ".input_rotation");
    CHECK(f == shard_of(out_small, m + ".weight"));
    const safetensors_header h = read_safetensors_header(f);
    const tensor_entry* e = h.find(m + ".input_rotation");
    REQUIRE(e != nullptr);
    CHECK(e->type == dtype::i8);
    REQUIRE(e->shape.size() == 2);
    CHECK(e->shape[0] == n);
    CHECK(e->shape[1] == n);
    const auto bytes = tensor_bytes(f, m + ".input_rotation");
    const auto want = input_rotation_matrix(n);
    CHECK(std::memcmp(bytes.data(), want.data(), want.size()) == 0);
  }
  const auto cfg = nlohmann::ordered_json::parse(read_all(out_small / "config.json"));
  const auto& algo = cfg["quantization_config"]["algo_config"];
  REQUIRE(algo.is_array());
  CHECK(algo[0]["name"] == "rotation");
  CHECK(algo[0]["online_config"]["online_rotation_layers"].size() == 4 * 6);
}

TEST_CASE("a refused rotation configuration names its reason before anything is written") {
  quantize_options o = options("mxfp4", scratch() / "refused", 64 * MiB);
  o.rotation = "r1,r3";
  CHECK_THROWS_WITH_AS((void)quantize_checkpoint(o), doctest::Contains("R3"), usage_error);
  o.rotation.clear();
  const fs::path cfg = scratch() / "trainable.json";
  std::ofstream(cfg) << R"({"scaling_layers": {"first_layer": [], "middle_layers": [],
                           "last_layer": []}, "trainable": true, "online_r1_rotation": true})";
  o.rotation_config = cfg;
  CHECK_THROWS_WITH_AS((void)quantize_checkpoint(o), doctest::Contains("trainable=True"),
                       usage_error);
  CHECK_FALSE(fs::exists(scratch() / "refused" / "config.json"));
}

TEST_CASE(
    "rotation targets of a block-FP8 source are recovered to F32, then rotated, then quantized") {
  // Quark's recovery returns float32 for dequantized FP8 weights and rotates that tensor
  // (FORMATS-rotation R.1), so the expected bytes are: recover -> rotate in F32 -> quantize.
  make_checkpoint_options mo;
  mo.arch = "llama";
  mo.size = 100 * MiB;  // hidden 768, intermediate 2048: sizes with a Hadamard matrix
  mo.type = dtype::f8_e4m3;
  mo.seed = 5;
  mo.out = scratch() / "src-fp8";
  (void)make_checkpoint(mo);
  quantize_options o = options("mxfp4", scratch() / "fp8src-mxfp4", 64 * MiB);
  o.input = mo.out;
  (void)quantize_checkpoint(o);
  const auto cfg = nlohmann::json::parse(read_all(mo.out / "config.json"));
  const uint64_t heads = cfg["num_attention_heads"].get<uint64_t>();
  const uint64_t hidden = cfg["hidden_size"].get<uint64_t>();
  const uint64_t head_dim =
      cfg.contains("head_dim") ? cfg["head_dim"].get<uint64_t>() : hidden / heads;
  const std::string l = "model.layers.1.self_attn.";
  for (const auto& [weight, steps] : std::map<std::string, std::vector<rotation_step>>{
           {l + "q_proj.weight", {{rotation_kind::input_full, hidden}}},
           {l + "o_proj.weight", {{rotation_kind::input_blocked, head_dim}}}}) {
    INFO(weight);
    const fs::path src_file = shard_of(mo.out, weight);
    const safetensors_header h = read_safetensors_header(src_file);
    const tensor_entry* e = h.find(weight);
    REQUIRE(e != nullptr);
    REQUIRE(e->type == dtype::f8_e4m3);
    const auto w = tensor_bytes(src_file, weight);
    const fs::path scale_file = shard_of(mo.out, weight + "_scale_inv");
    const safetensors_header sh = read_safetensors_header(scale_file);
    const tensor_entry* s = sh.find(weight + "_scale_inv");
    REQUIRE(s != nullptr);
    REQUIRE(s->type == dtype::f32);
    const auto scale = tensor_bytes(scale_file, weight + "_scale_inv");
    fp8_block_source fb;
    fb.rows = e->shape[0];
    fb.cols = e->shape[1];
    fb.weight = reinterpret_cast<const uint8_t*>(w.data());
    fb.scale = scale.data();
    fb.scale_rows = s->shape[0];
    fb.scale_cols = s->shape[1];
    std::vector<float> rec(fb.rows * fb.cols);
    REQUIRE(recover_fp8_block(fb, rec.data()).ok());
    for (const auto& st : steps) apply_rotation(st, rec.data(), dtype::f32, fb.rows, fb.cols);
    const auto outs = output_tensors(scheme_id::mxfp4, e->shape);
    std::vector<std::vector<std::byte>> expect;
    for (const auto& t : outs) expect.emplace_back(t.byte_size(), std::byte{0xEE});
    source_view v;
    v.type = dtype::f32;
    v.shape = e->shape;
    v.data = rec.data();
    quant_outputs qo;
    qo.weight = expect[0].data();
    qo.scale = expect[1].data();
    REQUIRE(quantize(scheme_id::mxfp4, v, qo).ok());
    const fs::path out_file = shard_of(o.output, weight);
    for (size_t i = 0; i < outs.size(); ++i)
      CHECK(tensor_bytes(out_file, weight + outs[i].suffix) == expect[i]);
  }
}

TEST_CASE("an excluded R2 target is refused with the reason, before anything is written") {
  // Quark rotates an excluded o_proj and writes it unquantized; shardquant's copy path does not
  // rotate, so it refuses instead of writing an unrotated weight next to rotated ones.
  quantize_options o = options("mxfp4", scratch() / "excluded-r2", 64 * MiB);
  o.excludes = std::vector<std::string>{"lm_head", "*o_proj"};
  CHECK_THROWS_WITH_AS((void)quantize_checkpoint(o),
                       doctest::Contains("self_attn.o_proj.weight' is a rotation target but is "
                                         "excluded"),
                       usage_error);
  CHECK_FALSE(fs::exists(scratch() / "excluded-r2" / "config.json"));
}
