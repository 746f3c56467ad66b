// The pipeline on quantized sources: DeepSeek-style block FP8 (cross-shard scale) and
// compressed-tensors pack-quantized weights are recovered row range by row range inside the
// graph. The output does not depend on the budget (recovered tensors split, per-tensor schemes
// take the amax pass over recovered rows) and equals whole-tensor recovery + quantization
// through the kernels' API.
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "kernels/quantize.h"
#include "kernels/recover_tensors.h"
#include "pipeline/api.h"
#include "plan_test_util.h"
#include "tensor_bytes_util.h"

using namespace sq_plan_test;

namespace {

constexpr uint64_t MiB = uint64_t{1} << 20;
constexpr uint64_t R = 2048, C = 2048;  // recovered F32 = 16 MiB: larger than a 4 MiB token

std::vector<std::byte> random_fp8_codes(uint64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) {
    uint8_t c = static_cast<uint8_t>(rng());
    if ((c & 0x7F) == 0x7F) c &= 0xFE;  // no NaN codes
    b = std::byte{c};
  }
  return v;
}

std::vector<std::byte> random_words(uint64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> v(n * 4);
  for (uint64_t i = 0; i < n; ++i) {
    const uint32_t w = rng();
    std::memcpy(v.data() + 4 * i, &w, 4);
  }
  return v;
}

template <class T>
std::vector<std::byte> bytes_of(const std::vector<T>& v) {
  std::vector<std::byte> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<float> positive_scales(uint64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(1e-4f, 1e-2f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<uint16_t> bf16_scales(uint64_t n, uint32_t seed) {
  std::vector<uint16_t> v;
  for (float f : positive_scales(n, seed)) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    v.push_back(static_cast<uint16_t>(u >> 16));  // truncation is fine for test data
  }
  return v;
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Quantizes `dir` into `out` with `scheme` and `budget`; returns the run's report.
run_report run(const fs::path& dir, const fs::path& out, const std::string& scheme, uint64_t budget,
               unsigned streams) {
  quantize_options o;
  o.input = dir;
  o.output = out;
  o.scheme = scheme;
  o.excludes = std::vector<std::string>{};
  o.memory_budget = budget;
  o.streams = streams;
  o.quiet = true;
  o.progress_to_stderr = false;
  return quantize_checkpoint(o);
}

// The expected output tensors of weight `name` (recovered F32 [R, C]) for scheme `s`.
std::vector<std::vector<std::byte>> expected(const std::vector<float>& w, scheme_id s) {
  const std::vector<uint64_t> shape{R, C};
  std::vector<std::vector<std::byte>> out;
  for (const auto& t : output_tensors(s, shape)) out.emplace_back(t.byte_size());
  source_view v;
  v.type = dtype::f32;
  v.shape = shape;
  v.data = w.data();
  quant_outputs q;
  q.weight = out[0].data();
  if (out.size() > 1) q.scale = out[1].data();
  if (out.size() > 2) q.extra = out[2].data();
  REQUIRE(quantize(s, v, q).ok());
  return out;
}

void check_outputs(const fs::path& shard, const std::string& weight,
                   const std::vector<float>& recovered, scheme_id s) {
  const auto exp = expected(recovered, s);
  const auto outs = output_tensors(s, std::vector<uint64_t>{R, C});
  for (size_t i = 0; i < outs.size(); ++i) {
    INFO(weight << outs[i].suffix);
    CHECK(tensor_bytes(shard, weight + outs[i].suffix) == exp[i]);
  }
}

}  // namespace

TEST_CASE("block-FP8 sources are recovered in row ranges with the same bytes at any budget") {
  temp_dir t("pipe-fp8");
  const fs::path src = t.path / "src";
  const auto codes = random_fp8_codes(R * C, 11);
  const auto scale = positive_scales((R / 128) * (C / 128), 12);
  write_checkpoint(src, R"({"model_type": "deepseek_v3", "torch_dtype": "bfloat16",
      "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                              "quant_method": "fp8", "weight_block_size": [128, 128]}})",
                   {{"model-00001-of-00002.safetensors",
                     {{"model.layers.0.mlp.up_proj.weight", dtype::f8_e4m3, {R, C}, codes}}},
                    {"model-00002-of-00002.safetensors",
                     {{"model.layers.0.mlp.up_proj.weight_scale_inv",
                       dtype::f32,
                       {R / 128, C / 128},
                       bytes_of(scale)}}}});
  fp8_block_source fs;
  fs.rows = R;
  fs.cols = C;
  fs.weight = reinterpret_cast<const uint8_t*>(codes.data());
  fs.scale = scale.data();
  fs.scale_rows = R / 128;
  fs.scale_cols = C / 128;
  std::vector<float> recovered(R * C);
  REQUIRE(recover_fp8_block(fs, recovered.data()).ok());

  for (const std::string scheme : {"fp8", "mxfp4", "int4_wo_128"}) {
    INFO("scheme " << scheme);
    const run_report small = run(src, t.path / ("small-" + scheme), scheme, 16 * MiB, 2);
    const run_report big = run(src, t.path / ("big-" + scheme), scheme, 1024 * MiB, 1);
    CHECK(small.jobs > big.jobs);  // split into row ranges (and, for fp8, an amax pass)
    CHECK(small.peak_live_tokens <= small.tokens);
    const fs::path shard = "model-00001-of-00002.safetensors";
    CHECK(read_all(t.path / ("small-" + scheme) / shard) ==
          read_all(t.path / ("big-" + scheme) / shard));
    check_outputs(t.path / ("small-" + scheme) / shard, "model.layers.0.mlp.up_proj.weight",
                  recovered, *parse_scheme(scheme));
  }
}

TEST_CASE("compressed-tensors sources are recovered in row ranges with the same bytes") {
  temp_dir t("pipe-ct");
  const fs::path src = t.path / "src";
  const uint64_t words = C * 4 / 32;  // int4: 8 values per I32 word
  const auto packed = random_words(R * words, 21);
  const auto scale = bf16_scales(R * (C / 128), 22);
  write_checkpoint(
      src, R"({"model_type": "llama", "torch_dtype": "bfloat16",
    "quantization_config": {"quant_method": "compressed-tensors", "format": "pack-quantized",
      "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4,
        "type": "int", "symmetric": true, "strategy": "group", "group_size": 128}}}}})",
      {{"model.safetensors",
        {{"model.layers.0.mlp.up_proj.weight_packed", dtype::i32, {R, words}, packed},
         {"model.layers.0.mlp.up_proj.weight_shape",
          dtype::i64,
          {2},
          i64_bytes({int64_t(R), int64_t(C)})},
         {"model.layers.0.mlp.up_proj.weight_scale", dtype::bf16, {R, C / 128}, bytes_of(scale)}}}},
      false);
  ct_source cs;
  cs.layout = ct_layout::pack_quantized;
  cs.rows = R;
  cs.cols = C;
  cs.bits = 4;
  cs.weight = packed.data();
  cs.scale_type = scale_kind::bf16;
  cs.scale = scale.data();
  cs.strategy = ct_strategy::group;
  cs.group_size = 128;
  cs.groups = C / 128;
  std::vector<float> recovered(R * C);
  REQUIRE(check_compressed(cs).empty());
  REQUIRE(recover_compressed(cs, recovered.data()).ok());

  for (const std::string scheme : {"fp8", "mxfp4"}) {
    INFO("scheme " << scheme);
    const run_report small = run(src, t.path / ("small-" + scheme), scheme, 16 * MiB, 2);
    const run_report big = run(src, t.path / ("big-" + scheme), scheme, 1024 * MiB, 1);
    CHECK(small.jobs > big.jobs);
    CHECK(read_all(t.path / ("small-" + scheme) / "model.safetensors") ==
          read_all(t.path / ("big-" + scheme) / "model.safetensors"));
    check_outputs(t.path / ("small-" + scheme) / "model.safetensors",
                  "model.layers.0.mlp.up_proj.weight", recovered, *parse_scheme(scheme));
  }
}
