// Custom progressive specs end to end on the CPU (pipeline/api.h quant_spec, the CLI's
// --quant-spec and --layer-scheme PATTERN FILE.json) on a generated checkpoint: a spec equal to
// int4_fp8 writes exactly the built-in scheme's files; other pairs export the spec's two 17-key
// tensor-spec objects as the weight list, name `_scale_2` / `_zero_point` in the index, split
// tensors into row ranges (amax pass for a per-tensor first stage) without changing a byte, and
// quantized tensors equal the kernels' whole-tensor result. Bad spec files fail before anything is
// written, with the file named.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "checkpoint_test_util.h"
#include "io/checkpoint.h"
#include "io/error.h"
#include "io/safetensors.h"
#include "kernels/quantize.h"
#include "pipeline/api.h"
#include "pipeline/plan/geometry.h"
#include "pipeline/plan/plan.h"
#include "pipeline/plan/quant_spec.h"
#include "synthetic/make_checkpoint.h"
#include "synthetic_source_util.h"
#include "tensor_bytes_util.h"

using namespace shardquant;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t MiB = uint64_t{1} << 20;

fs::path scratch() {
  static const sq_test::temp_dir d("progressive-e2e");
  return d.path;
}

// A bf16 llama checkpoint of 2 shards (about 12 MiB), generated once.
const fs::path& source_dir() {
  static const fs::path dir = sq_test::make_llama(scratch() / "src", 12 * MiB, 6 * MiB, 11);
  return dir;
}

fs::path write_spec(const std::string& file, const std::string& text) {
  const fs::path p = scratch() / file;
  std::ofstream(p) << text;
  return p;
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::map<std::string, std::string> tree(const fs::path& dir) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) m[fs::relative(e.path(), dir).string()] = read_all(e.path());
  return m;
}

quantize_options options(const fs::path& out) {
  quantize_options o;
  o.input = source_dir();
  o.output = out;
  o.quiet = true;
  o.progress_to_stderr = false;
  o.memory_budget = 256 * MiB;
  return o;
}

nlohmann::ordered_json quant_config_of(const fs::path& dir) {
  return nlohmann::ordered_json::parse(read_all(dir / "config.json"))["quantization_config"];
}

// The shard holding `name` according to the output index.
fs::path shard_of(const fs::path& dir, const std::string& name) {
  const auto idx = nlohmann::json::parse(read_all(dir / "model.safetensors.index.json"));
  REQUIRE(idx["weight_map"].contains(name));
  return dir / idx["weight_map"][name].get<std::string>();
}

const char* k_w4a8_g128 = R"({"name": "w4a8_g128",
 "weight": [ {"dtype": "fp8_e4m3", "qscheme": "per_tensor"},
             {"dtype": "int4", "qscheme": "per_group", "group_size": 128, "symmetric": true} ],
 "input_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_tensor", "is_dynamic": true}})";

}  // namespace

TEST_CASE("a spec file equal to int4_fp8 writes exactly the built-in scheme's files") {
  const fs::path spec = write_spec(
      "int4_fp8_as_spec.json",
      R"({"weight": [{"dtype": "fp8_e4m3", "qscheme": "per_tensor", "scale_type": "float32"},
                     {"dtype": "int4", "qscheme": "per_channel", "ch_axis": 0,
                      "scale_type": "float32"}],
          "input_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_tensor", "is_dynamic": true,
                            "scale_type": "float32"}})");
  quantize_options a = options(scratch() / "builtin");
  a.scheme = "int4_fp8";
  (void)quantize_checkpoint(a);
  quantize_options b = options(scratch() / "custom");
  b.quant_spec = spec.string();
  (void)quantize_checkpoint(b);
  const auto ta = tree(a.output), tb = tree(b.output);
  REQUIRE(ta.size() == tb.size());
  for (const auto& [name, bytes] : ta) {
    CAPTURE(name);
    REQUIRE(tb.count(name) == 1);
    CHECK(tb.at(name) == bytes);
  }
}

TEST_CASE("a progressive spec exports its two tensor specs and writes scale_2 and zero points") {
  const fs::path g128 = write_spec("w4a8_g128.json", k_w4a8_g128);
  const fs::path u64 = write_spec(
      "ptpc_uint4.json", R"({"weight": ["ptpc_fp8", "uint4_wo_64"], "input_tensors": null})");
  const custom_spec want_g128 = read_quant_spec(g128.string());
  const custom_spec want_u64 = read_quant_spec(u64.string());
  quantize_options o = options(scratch() / "pairs");
  o.quant_spec = g128.string();
  o.overrides = {{"*mlp.down_proj", u64.string()}};
  o.excludes = std::vector<std::string>{};
  (void)quantize_checkpoint(o);

  const auto q = quant_config_of(o.output);
  const auto& global = q["global_quant_config"];
  REQUIRE(global["weight"].is_array());
  REQUIRE(global["weight"].size() == 2);
  for (const auto& spec : global["weight"]) CHECK(spec.size() == 17);
  CHECK(global["weight"] == nlohmann::ordered_json(want_g128.weight));
  CHECK(global["input_tensors"] == nlohmann::ordered_json(want_g128.input_tensors));
  REQUIRE(q["layer_quant_config"].contains("*mlp.down_proj"));
  const auto& down = q["layer_quant_config"]["*mlp.down_proj"];
  CHECK(down["weight"] == nlohmann::ordered_json(want_u64.weight));
  CHECK(down["input_tensors"].is_null());

  // Outputs: names, dtypes, shapes in the index and the shards; bytes as the kernels compute.
  const std::string q_proj = "model.layers.0.self_attn.q_proj.weight";
  const std::string down_proj = "model.layers.0.mlp.down_proj.weight";
  for (const char* sfx : {"", "_scale", "_scale_2"}) {
    (void)shard_of(o.output, q_proj + sfx);
    (void)shard_of(o.output, down_proj + sfx);
  }
  (void)shard_of(o.output, down_proj + "_zero_point");
  const auto src_idx =
      nlohmann::json::parse(read_all(source_dir() / "model.safetensors.index.json"));
  for (const auto& [name, s] : std::vector<std::pair<std::string, weight_scheme>>{
           {q_proj, want_g128.kernel}, {down_proj, want_u64.kernel}}) {
    CAPTURE(name);
    const fs::path src_file = source_dir() / src_idx["weight_map"][name].get<std::string>();
    const safetensors_header h = read_safetensors_header(src_file);
    const tensor_entry* e = h.find(name);
    REQUIRE(e != nullptr);
    const std::vector<std::byte> in = tensor_bytes(src_file, name);
    const std::vector<output_tensor> outs = output_tensors(s, e->shape);
    std::vector<std::vector<std::byte>> expect;
    for (const auto& t : outs) expect.emplace_back(t.byte_size());
    quant_outputs qo;
    qo.weight = expect[0].data();
    qo.scale = expect[1].data();
    qo.extra = expect[2].data();
    if (outs.size() > 3) qo.extra2 = expect[3].data();
    const source_view v{e->type, e->shape, in.data()};
    REQUIRE(reference::quantize(s, v, qo).ok());
    for (size_t t = 0; t < outs.size(); ++t) {
      const std::string out_name = name + outs[t].suffix;
      CAPTURE(out_name);
      const fs::path f = shard_of(o.output, out_name);
      const safetensors_header oh = read_safetensors_header(f);
      const tensor_entry* oe = oh.find(out_name);
      REQUIRE(oe != nullptr);
      CHECK(oe->type == outs[t].type);
      CHECK(oe->shape == outs[t].shape);
      CHECK(tensor_bytes(f, out_name) == expect[t]);
    }
  }
}

TEST_CASE("a small memory budget splits progressive tensors without changing a byte") {
  const fs::path g128 = write_spec("w4a8_g128_split.json", k_w4a8_g128);
  const fs::path i8 = write_spec(
      "int8_int4.json", R"({"weight": ["int8", "int4_wo_per_channel"], "input_tensors": "int8"})");
  for (const fs::path& spec : {g128, i8}) {
    CAPTURE(spec);
    quantize_options big = options(scratch() / ("big_" + spec.stem().string()));
    big.quant_spec = spec.string();
    big.excludes = std::vector<std::string>{};  // lm_head [8192, 256] (4 MiB) is quantized
    (void)quantize_checkpoint(big);
    quantize_options small = options(scratch() / ("small_" + spec.stem().string()));
    small.quant_spec = spec.string();
    small.excludes = big.excludes;
    small.memory_budget = 16 * MiB;  // 4 MiB tokens: lm_head is split into row ranges
    small.streams = 3;
    (void)quantize_checkpoint(small);
    CHECK(tree(big.output) == tree(small.output));
    // The run geometry at that budget (what the API runs with) splits lm_head, with an amax
    // pass first: both specs have a per-tensor first stage.
    plan_options po;
    po.scheme = quant_scheme(std::make_shared<const custom_spec>(read_quant_spec(spec.string())));
    po.exclude = std::vector<std::string>{};
    plan pl = make_plan(open_source_checkpoint(source_dir(), [](std::string) {}), po);
    (void)decide_geometry(pl, small.memory_budget);
    bool lm_head_split = false;
    for (const auto& it : pl.items)
      for (const auto& pt : it.parts)
        if (pt.name == "lm_head.weight") lm_head_split = pt.split_rows > 0 && pt.amax_pass;
    CHECK(lm_head_split);
  }
}

TEST_CASE("the CLI takes --quant-spec and spec files in --layer-scheme and refuses bad ones") {
  const fs::path g128 = write_spec("cli_g128.json", k_w4a8_g128);
  const fs::path bad = write_spec("cli_bad.json", R"({"weight": ["fp8", "mxfp4"]})");
  auto run = [](const std::string& args, std::string* out) {
    const std::string cmd = std::string(SQ_BINARY_PATH) + " " + args + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
    const int st = ::pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  };
  std::string out;
  CHECK(run("quantize --model-dir " + source_dir().string() + " --dry-run --quant-spec " +
                g128.string() + " --layer-scheme '*down_proj' int8",
            &out) == 0);
  CHECK(out.find("scheme w4a8_g128 (fp8_e4m3 per-tensor -> int4 per-group 128, from") !=
        std::string::npos);
  CHECK(out.find("quantize w4a8_g128") != std::string::npos);
  out.clear();
  const fs::path o1 = scratch() / "cli_bad_out";
  CHECK(run("quantize --model-dir " + source_dir().string() + " --output-dir " + o1.string() +
                " --scheme fp8 --layer-scheme '*down_proj' " + bad.string(),
            &out) == 2);
  CHECK(out.find(bad.string() + ": weight: (fp8_e4m3 per-tensor, mxfp4) is not a supported") !=
        std::string::npos);
  CHECK((!fs::exists(o1) || fs::is_empty(o1)));
  out.clear();
  CHECK(run("quantize --model-dir " + source_dir().string() + " --output-dir " + o1.string() +
                " --scheme fp8 --quant-spec " + g128.string(),
            &out) == 2);
  CHECK(out.find("--scheme and --quant-spec exclude each other") != std::string::npos);
  out.clear();
  CHECK(run("quantize --model-dir " + source_dir().string() + " --output-dir " + o1.string(),
            &out) == 2);
  CHECK(out.find("--scheme or --quant-spec is required") != std::string::npos);
}

TEST_CASE("resuming with an edited spec file redoes every shard with the new spec") {
  const fs::path spec = write_spec("resume.json", R"({"weight": ["fp8", "int4_wo_128"]})");
  quantize_options o = options(scratch() / "resume");
  o.quant_spec = spec.string();
  (void)quantize_checkpoint(o);
  write_spec("resume.json", R"({"weight": ["fp8", "int4_wo_64"]})");
  o.existing = existing_output::resume;
  (void)quantize_checkpoint(o);
  quantize_options fresh = options(scratch() / "resume_fresh");
  fresh.quant_spec = spec.string();
  (void)quantize_checkpoint(fresh);
  CHECK(tree(o.output) == tree(fresh.output));
  CHECK(quant_config_of(o.output)["global_quant_config"]["weight"][1]["group_size"] == 64);
}
