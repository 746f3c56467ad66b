// Plans of hand-made FP4-packed sources (kernels/FORMATS-fp4-sources.md): DeepSeek-V4 MXFP4
// experts (case 1 of formats.md §7.2.1) and compressed-tensors nvfp4-/mxfp4-pack-quantized
// modules: what is consumed, the recovered weight's name, shape and dtype, and an error naming
// the file and tensor for every malformed input (offsets for bad bytes).
#include <doctest/doctest.h>

#include <cstring>

#include "io/error.h"
#include "pipeline/api.h"
#include "plan_test_util.h"

using namespace sq_plan_test;
using shape = std::vector<uint64_t>;

namespace {

std::string dsv4_config(const char* dtype) {
  return std::string(R"({"model_type": "deepseek_v3", "torch_dtype": ")") + dtype +
         R"(", "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
            "quant_method": "fp8", "weight_block_size": [128, 128]}})";
}

const char* k_expert = "model.layers.1.mlp.experts.0.up_proj.weight";
const char* k_expert_scale = "model.layers.1.mlp.experts.0.up_proj.scale";

void write_dsv4(const fs::path& dir, const char* dtype, std::vector<std::byte> scale = {}) {
  write_checkpoint(dir, dsv4_config(dtype),
                   {{"model.safetensors",
                     {{k_expert, dtype::i8, {8, 32}},
                      {k_expert_scale, dtype::f8_e8m0, {8, 2}, std::move(scale)},
                      {"lm_head.weight", dtype::bf16, {16, 64}}}}});
}

std::string ct_fp4_config(const char* format, const char* strategy, int group) {
  return std::string(R"({"model_type": "llama", "torch_dtype": "bfloat16",
    "quantization_config": {"quant_method": "compressed-tensors", "format": ")") +
         format + R"(", "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
         "num_bits": 4, "type": "float", "symmetric": true, "strategy": ")" +
         strategy + R"(", "group_size": )" + std::to_string(group) + "}}}}}";
}

std::vector<std::byte> f32_bytes(float v) {
  std::vector<std::byte> b(4);
  std::memcpy(b.data(), &v, 4);
  return b;
}

const char* k_mod = "model.layers.0.mlp.up_proj";

std::string plan_error(const fs::path& dir, plan_options o) {
  try {
    (void)plan_dir(dir, std::move(o));
  } catch (const input_error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("DeepSeek-V4 MXFP4 experts are recovered in the model dtype and their .scale consumed") {
  temp_dir t;
  write_dsv4(t.path, "bfloat16");
  const plan p = plan_dir(t.path, opts(scheme_id::ptpc_fp8));
  const plan_part* w = part(p, k_expert);
  REQUIRE(w);
  CHECK(w->action == tensor_action::recover_quantize);
  CHECK(w->input_shape == shape{8, 64});
  CHECK(w->input_type == dtype::bf16);
  const plan_item* it = item_of(p, k_expert);
  CHECK(it->recovery.kind == recovery_kind::fp4_packed);
  CHECK(it->recovery.fp4_layout == ct_layout::mxfp4_dsv4);
  CHECK(it->recovery.recovered_type == dtype::bf16);
  CHECK(it->recovery.scale->name == k_expert_scale);
  CHECK(part(p, k_expert_scale) == nullptr);
  CHECK(p.consumed.size() == 1);
  // Excluded: recovered, then written in the model dtype.
  const plan px =
      plan_dir(t.path, opts(scheme_id::ptpc_fp8, std::vector<std::string>{"*experts*"}));
  CHECK(part(px, k_expert)->action == tensor_action::recover_cast);
  CHECK(part(px, k_expert)->outputs[0].type == dtype::bf16);
  // F16 model: F16 values.
  temp_dir t16;
  write_dsv4(t16.path, "float16");
  CHECK(item_of(plan_dir(t16.path, opts(scheme_id::fp8)), k_expert)->recovery.recovered_type ==
        dtype::f16);
}

TEST_CASE("DeepSeek-V4 MXFP4 experts: F32 models and keep-original are refused with the reason") {
  temp_dir t;
  write_dsv4(t.path, "float32");
  const std::string e = plan_error(t.path, opts(scheme_id::fp8));
  CHECK(e.find(k_expert) != std::string::npos);
  CHECK(e.find("BF16 or F16") != std::string::npos);
  CHECK(e.find("model.safetensors") != std::string::npos);
  temp_dir k;
  write_dsv4(k.path, "bfloat16");
  plan_options o = opts(scheme_id::fp8, std::vector<std::string>{"*experts*"});
  o.keep_excluded_as_original = true;
  CHECK(plan_error(k.path, o).find("keeping MXFP4 source experts is not supported") !=
        std::string::npos);
}

TEST_CASE("an E8M0 0xFF scale in a DeepSeek-V4 expert is an error naming file, tensor and byte") {
  temp_dir t;
  std::vector<std::byte> sc(16, std::byte{127});
  sc[5] = std::byte{0xFF};
  write_dsv4(t.path / "src", "bfloat16", sc);
  quantize_options q;
  q.input = t.path / "src";
  q.output = t.path / "out";
  q.scheme = "fp8";
  q.quiet = true;
  q.progress_to_stderr = false;
  std::string msg;
  try {
    (void)quantize_checkpoint(q);
  } catch (const input_error& e) {
    msg = e.what();
  }
  CHECK(msg.find(k_expert) != std::string::npos);
  CHECK(msg.find("model.safetensors") != std::string::npos);
  CHECK(msg.find("scale element 5 is a NaN code") != std::string::npos);
  const auto h = read_safetensors_header(t.path / "src" / "model.safetensors");
  const uint64_t off = h.data_start + h.find(k_expert_scale)->begin + 5;
  CHECK(msg.find(std::to_string(off)) != std::string::npos);
  CHECK(!fs::exists(t.path / "out" / "model.safetensors"));  // nothing under a final name
}

TEST_CASE("compressed-tensors nvfp4 and mxfp4 modules: consumed companions, BF16 weight") {
  temp_dir t;
  write_checkpoint(
      t.path, ct_fp4_config("nvfp4-pack-quantized", "tensor_group", 16),
      {{"model.safetensors",
        {{std::string(k_mod) + ".weight_packed", dtype::u8, {8, 32}},
         {std::string(k_mod) + ".weight_scale", dtype::f8_e4m3, {8, 4}},
         {std::string(k_mod) + ".weight_global_scale", dtype::f32, {1}, f32_bytes(12.5f)},
         {std::string(k_mod) + ".input_global_scale", dtype::f32, {1}, f32_bytes(3.0f)},
         {"lm_head.weight", dtype::bf16, {16, 64}}}}});
  const plan p = plan_dir(t.path, opts(scheme_id::mxfp4));
  const std::string w = std::string(k_mod) + ".weight";
  REQUIRE(part(p, w));
  CHECK(part(p, w)->input_shape == shape{8, 64});
  CHECK(part(p, w)->input_type == dtype::bf16);
  const plan_item* it = item_of(p, w);
  CHECK(it->recovery.fp4_layout == ct_layout::nvfp4_packed);
  CHECK(it->recovery.global_scale == 12.5f);
  CHECK(it->recovery.group_size == 16);
  CHECK(p.consumed.size() == 2);  // scale and global scale; the packed weight is the item
  CHECK(part(p, std::string(k_mod) + ".input_global_scale") != nullptr);  // copied, as Quark

  temp_dir m;
  write_checkpoint(m.path, ct_fp4_config("mxfp4-pack-quantized", "group", 32),
                   {{"model.safetensors",
                     {{std::string(k_mod) + ".weight_packed", dtype::u8, {8, 32}},
                      {std::string(k_mod) + ".weight_scale", dtype::u8, {8, 2}}}}});
  const plan pm = plan_dir(m.path, opts(scheme_id::fp8));
  CHECK(item_of(pm, w)->recovery.fp4_layout == ct_layout::mxfp4_packed);
  CHECK(part(pm, w)->input_shape == shape{8, 64});
}

TEST_CASE("malformed compressed-tensors FP4 modules are errors naming the tensor") {
  const std::string packed = std::string(k_mod) + ".weight_packed";
  const std::string scale = std::string(k_mod) + ".weight_scale";
  const std::string gsc = std::string(k_mod) + ".weight_global_scale";
  struct bad {
    const char* what;
    std::vector<t_spec> tensors;
    const char* names;  // tensor named by the error
    const char* says;
  };
  const std::vector<bad> cases = {
      {"I32 packed weight",
       {{packed, dtype::i32, {8, 8}},
        {scale, dtype::f8_e4m3, {8, 4}},
        {gsc, dtype::f32, {1}, f32_bytes(1)}},
       "weight_packed",
       "must be U8"},
      {"scale shape",
       {{packed, dtype::u8, {8, 32}},
        {scale, dtype::f8_e4m3, {8, 3}},
        {gsc, dtype::f32, {1}, f32_bytes(1)}},
       "weight_scale",
       "expected [8, 4]"},
      {"no global scale",
       {{packed, dtype::u8, {8, 32}}, {scale, dtype::f8_e4m3, {8, 4}}},
       "weight_scale",
       "without weight_global_scale"},
      {"zero global scale",
       {{packed, dtype::u8, {8, 32}},
        {scale, dtype::f8_e4m3, {8, 4}},
        {gsc, dtype::f32, {1}, f32_bytes(0)}},
       "weight_global_scale",
       "positive and finite"},
      {"F16 global scale",
       {{packed, dtype::u8, {8, 32}}, {scale, dtype::f8_e4m3, {8, 4}}, {gsc, dtype::f16, {1}}},
       "weight_global_scale",
       "must be F32"},
      {"columns not a multiple of 16",
       {{packed, dtype::u8, {8, 4}},
        {scale, dtype::f8_e4m3, {8, 1}},
        {gsc, dtype::f32, {1}, f32_bytes(1)}},
       "weight_packed",
       "not a multiple of the group size 16"},
      {"E8M0 scale for nvfp4",
       {{packed, dtype::u8, {8, 32}},
        {scale, dtype::u8, {8, 4}},
        {gsc, dtype::f32, {1}, f32_bytes(1)}},
       "weight_scale",
       "expected F8_E4M3"},
      {"zero point",
       {{packed, dtype::u8, {8, 32}},
        {scale, dtype::f8_e4m3, {8, 4}},
        {gsc, dtype::f32, {1}, f32_bytes(1)},
        {std::string(k_mod) + ".weight_zero_point", dtype::u8, {8, 4}}},
       "weight_zero_point",
       "unexpected"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    temp_dir t;
    write_checkpoint(t.path, ct_fp4_config("nvfp4-pack-quantized", "tensor_group", 16),
                     {{"model.safetensors", c.tensors}});
    const std::string e = plan_error(t.path, opts(scheme_id::fp8));
    CHECK(e.find(std::string(k_mod) + "." + c.names) != std::string::npos);
    CHECK(e.find(c.says) != std::string::npos);
    CHECK(e.find("model.safetensors") != std::string::npos);
  }
  temp_dir m;
  write_checkpoint(
      m.path, ct_fp4_config("mxfp4-pack-quantized", "group", 32),
      {{"model.safetensors", {{packed, dtype::u8, {8, 32}}, {scale, dtype::bf16, {8, 2}}}}});
  CHECK(plan_error(m.path, opts(scheme_id::fp8)).find("expected U8 or F8_E8M0") !=
        std::string::npos);
}
