// `shardquant verify` (pipeline/output/verify.h, kernels/dequantize.h): outputs of every built-in
// scheme, block-FP8 and compressed-tensors sources and a custom progressive spec verify as sound;
// one flipped byte of a weight or a scale, a truncated shard and an index naming a missing tensor
// are each found and named; the CLI's exit codes; the decoder agrees with the kernels' own codes.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "checkpoint_test_util.h"
#include "io/safetensors.h"
#include "kernels/dequantize.h"
#include "kernels/quantize.h"
#include "kernels/schemes.h"
#include "pipeline/api.h"
#include "pipeline/output/share_finalize.h"
#include "pipeline/output/verify.h"
#include "synthetic/make_checkpoint.h"

using namespace shardquant;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t MiB = uint64_t{1} << 20;

fs::path scratch() {
  static const sq_test::temp_dir d("verify");
  return d.path;
}

fs::path make_source(const std::string& tag, dtype type) {
  make_checkpoint_options o;
  o.arch = "llama";
  o.size = 6 * MiB;
  o.shard_size = 3 * MiB;
  o.type = type;
  o.seed = 11;
  o.out = scratch() / ("src-" + tag);
  (void)make_checkpoint(o);
  return o.out;
}

const fs::path& bf16_source() {
  static const fs::path p = make_source("bf16", dtype::bf16);
  return p;
}

// Quantizes `src` with `scheme` (a name or a spec file) into a fresh folder, with the loader
// options (README "Loading the outputs").
fs::path quantize_to(const fs::path& src, const std::string& scheme, const std::string& tag,
                     bool dynamic_activations = false, const std::string& layout = "quark-f2f") {
  quantize_options o;
  o.input = src;
  o.output = scratch() / ("out-" + tag);
  if (scheme.ends_with(".json"))
    o.quant_spec = scheme;
  else
    o.scheme = scheme;
  o.memory_budget = 64 * MiB;
  o.dynamic_activations = dynamic_activations;
  o.layout = layout;
  o.quiet = true;
  o.progress_to_stderr = false;
  (void)quantize_checkpoint(o);
  return o.output;
}

// A copy of an output folder to damage.
fs::path copy_of(const fs::path& out, const std::string& tag) {
  const fs::path c = scratch() / ("copy-" + tag);
  fs::remove_all(c);
  fs::copy(out, c, fs::copy_options::recursive);
  return c;
}

verify_report run_verify(const fs::path& src, const fs::path& out, uint64_t budget = 32 * MiB) {
  verify_options v;
  v.input = src;
  v.output = out;
  v.memory_budget = budget;
  return verify_checkpoint(v);
}

// The output shard holding `tensor` and the absolute file offset of its first byte.
std::pair<fs::path, uint64_t> locate(const fs::path& out, const std::string& tensor) {
  const nlohmann::json idx =
      nlohmann::json::parse(sq_test::read_text(out / "model.safetensors.index.json"));
  const fs::path shard = out / idx["weight_map"][tensor].get<std::string>();
  const safetensors_header h = read_safetensors_header(shard);
  const tensor_entry* e = h.find(tensor);
  REQUIRE(e != nullptr);
  return {shard, h.data_start + e->begin};
}

void xor_byte(const fs::path& file, uint64_t offset, uint8_t mask) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  REQUIRE(f.good());
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(static_cast<uint8_t>(c) ^ mask);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

// The offset of the first F32 at or after `offset` whose value is not tiny (an all-zero group's
// EPS scale, moved by any power of two, still decodes its zero codes within the bound).
uint64_t first_big_f32(const fs::path& file, uint64_t offset) {
  std::ifstream f(file, std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  for (float v = 0;; offset += 4) {
    f.read(reinterpret_cast<char*>(&v), 4);
    REQUIRE(f.good());
    if (v > 1e-6f) return offset;
  }
}

uint8_t byte_at(const fs::path& file, uint64_t offset) {
  std::ifstream f(file, std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  return static_cast<uint8_t>(c);
}

bool names(const verify_report& r, const std::string& what) {
  for (const verify_problem& p : r.problems)
    if (p.to_string().find(what) != std::string::npos) return true;
  return false;
}

std::string problems_text(const verify_report& r) {
  std::string s;
  for (const verify_problem& p : r.problems) s += p.to_string() + "\n";
  return s;
}

int run_cli_status(const std::string& args, std::string* output = nullptr) {
  const fs::path log = scratch() / "cli.log";
  const std::string cmd =
      std::string(SQ_BINARY_PATH) + " " + args + " > '" + log.string() + "' 2>&1";
  const int st = std::system(cmd.c_str());
  if (output) *output = sq_test::read_text(log);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const char* k_weight = "model.layers.0.mlp.down_proj.weight";

}  // namespace

TEST_CASE("verify passes the output of every built-in scheme and decodes every quantized tensor") {
  for (const scheme_info& s : all_schemes()) {
    CAPTURE(s.name);
    const fs::path out = quantize_to(bf16_source(), std::string(s.name), std::string(s.name));
    const verify_report r = run_verify(bf16_source(), out);
    CHECK_MESSAGE(r.sound, problems_text(r));
    CHECK(r.problems.empty());
    CHECK(r.quantized.size() > 5);
    CHECK(r.passed_through > 0);
    REQUIRE(r.per_scheme.size() == 1);
    CHECK(r.per_scheme[0].scheme == s.name);
    CHECK(r.per_scheme[0].violations == 0);
    CHECK(r.per_scheme[0].non_finite == 0);
    // A quantizer's error is small against the weights' own size.
    CHECK(r.per_scheme[0].worst_rel_l2 < 0.5);
    CHECK(r.per_scheme[0].worst_rel_l2 > 0);
    MESSAGE(s.name << ": " << r.bytes_read / 1e6 << " MB in " << r.seconds << " s, rel L2 mean "
                   << r.per_scheme[0].mean_rel_l2);
  }
}

TEST_CASE("verify passes amdfp4 outputs of F32 and F16 sources, whose scales are in that dtype") {
  for (const dtype t : {dtype::f32, dtype::f16}) {
    CAPTURE(name(t));
    const fs::path src = make_source(std::string("amd-") + std::string(name(t)), t);
    for (const char* scheme : {"amdfp4", "amdfp4_g32", "nvfp4"}) {
      CAPTURE(scheme);
      const fs::path out =
          quantize_to(src, scheme, std::string(scheme) + "-" + std::string(name(t)));
      const verify_report r = run_verify(src, out);
      CHECK_MESSAGE(r.sound, problems_text(r));
      REQUIRE(r.per_scheme.size() == 1);
      CHECK(r.per_scheme[0].violations == 0);
      CHECK(r.per_scheme[0].worst_rel_l2 > 0);
      CHECK(r.per_scheme[0].worst_rel_l2 < 0.5);
    }
  }
}

TEST_CASE("verify passes outputs written with --dynamic-activations, reading it from the config") {
  for (const char* scheme : {"fp8", "int8", "mxfp4_fp8", "nvfp4"}) {
    CAPTURE(scheme);
    const fs::path out = quantize_to(bf16_source(), scheme, std::string("dyn-") + scheme, true);
    const verify_report r = run_verify(bf16_source(), out);
    CHECK_MESSAGE(r.sound, problems_text(r));
    CHECK(r.quantized.size() > 5);
  }
  // The same config with one static input spec left static is no config shardquant writes.
  const fs::path out = copy_of(quantize_to(bf16_source(), "fp8", "dyn-fp8-b", true), "dyn-mixed");
  nlohmann::ordered_json cfg =
      nlohmann::ordered_json::parse(sq_test::read_text(out / "config.json"));
  cfg["quantization_config"]["layer_quant_config"]["model.layers.0.mlp.*"] =
      cfg["quantization_config"]["global_quant_config"];
  cfg["quantization_config"]["layer_quant_config"]["model.layers.0.mlp.*"]["input_tensors"]
     ["is_dynamic"] = false;
  std::ofstream(out / "config.json") << cfg.dump(2);
  const verify_report r = run_verify(bf16_source(), out);
  CHECK_FALSE(r.sound);
}

TEST_CASE("verify refuses --layout quark-importer outputs of integer schemes, passes the others") {
  SUBCASE("int4 per-group: refused with one problem naming the layout") {
    const fs::path out =
        quantize_to(bf16_source(), "int4_wo_128", "imp-int4", true, "quark-importer");
    const verify_report r = run_verify(bf16_source(), out);
    CHECK_FALSE(r.sound);
    REQUIRE(r.problems.size() == 1);
    CHECK_MESSAGE(names(r, "written with --layout quark-importer"), problems_text(r));
    CHECK(r.quantized.empty());
  }
  SUBCASE("int8 with --compress zstd: refused the same way") {
    quantize_options o;
    o.input = bf16_source();
    o.output = scratch() / "out-imp-int8-zst";
    o.scheme = "int8";
    o.layout = "quark-importer";
    o.compress = "zstd";
    o.memory_budget = 64 * MiB;
    o.quiet = true;
    o.progress_to_stderr = false;
    (void)quantize_checkpoint(o);
    const verify_report r = run_verify(bf16_source(), o.output);
    CHECK_FALSE(r.sound);
    REQUIRE(r.problems.size() == 1);
    CHECK_MESSAGE(names(r, "written with --layout quark-importer"), problems_text(r));
  }
  SUBCASE("fp8 and mxfp4: the same bytes as quark-f2f, verified") {
    for (const char* scheme : {"fp8", "mxfp4"}) {
      CAPTURE(scheme);
      const fs::path out =
          quantize_to(bf16_source(), scheme, std::string("imp-") + scheme, true, "quark-importer");
      const verify_report r = run_verify(bf16_source(), out);
      CHECK_MESSAGE(r.sound, problems_text(r));
      CHECK(r.quantized.size() > 5);
    }
  }
}

// A copy of `src` whose shards are compressed by the zstd command (the index keeps the plain names,
// which the source reader accepts).
fs::path zstd_copy_of(const fs::path& src, const std::string& tag) {
  const fs::path c = copy_of(src, tag);
  for (const auto& e : fs::directory_iterator(c))
    if (e.path().extension() == ".safetensors")
      REQUIRE(std::system(("zstd -q --rm '" + e.path().string() + "'").c_str()) == 0);
  return c;
}

TEST_CASE("verify reads --compress zstd output shards and compressed sources") {
  const fs::path zsrc = zstd_copy_of(bf16_source(), "zsrc");
  quantize_options o;
  o.input = zsrc;
  o.output = scratch() / "out-zst-nvfp4";
  o.scheme = "nvfp4";
  o.compress = "zstd";
  o.memory_budget = 64 * MiB;
  o.quiet = true;
  o.progress_to_stderr = false;
  (void)quantize_checkpoint(o);
  bool any_zst = false;
  for (const auto& e : fs::directory_iterator(o.output))
    any_zst = any_zst || e.path().extension() == ".zst";
  REQUIRE(any_zst);
  for (const fs::path& src : {zsrc, bf16_source()}) {
    CAPTURE(src);
    const verify_report r = run_verify(src, o.output, 64 * 1024);  // row ranges: reads go back
    CHECK_MESSAGE(r.sound, problems_text(r));
    CHECK(r.quantized.size() > 5);
    CHECK(r.passed_through > 0);
  }
  // A truncated compressed shard is reported with its file named.
  const fs::path bad = copy_of(o.output, "zst-truncated");
  fs::path shard;
  for (const auto& e : fs::directory_iterator(bad))
    if (e.path().extension() == ".zst") shard = e.path();
  fs::resize_file(shard, fs::file_size(shard) / 2);
  const verify_report r = run_verify(bf16_source(), bad);
  CHECK_FALSE(r.sound);
  CHECK_MESSAGE(names(r, shard.string()), problems_text(r));
}

TEST_CASE("verify passes an output written by two --worker shares and finalize") {
  for (const bool compressed : {false, true}) {
    CAPTURE(compressed);
    quantize_options o;
    o.input = bf16_source();
    o.output = scratch() / (compressed ? "out-workers-zst" : "out-workers");
    o.scheme = "int4_wo_128";
    if (compressed) o.compress = "zstd";
    o.memory_budget = 64 * MiB;
    o.quiet = true;
    o.progress_to_stderr = false;
    o.worker_count = 2;
    for (uint32_t w = 0; w < 2; ++w) {
      o.worker_index = w;
      (void)quantize_checkpoint(o);
    }
    REQUIRE_FALSE(fs::exists(o.output / "config.json"));  // finalize writes it
    (void)finalize_shares(o);
    const verify_report r = run_verify(bf16_source(), o.output);
    CHECK_MESSAGE(r.sound, problems_text(r));
    CHECK(r.quantized.size() > 5);
    CHECK(r.passed_through > 0);
  }
}

TEST_CASE("verify passes outputs of a block-FP8 source, recovered through the recovery code") {
  const fs::path src = make_source("fp8", dtype::f8_e4m3);
  for (const std::string scheme : {"mxfp4", "int4_fp8", "uint4_wo_128", "ptpc_fp8"}) {
    CAPTURE(scheme);
    const fs::path out = quantize_to(src, scheme, std::string("fp8src-") + scheme);
    const verify_report r = run_verify(src, out);
    CHECK_MESSAGE(r.sound, problems_text(r));
    CHECK(r.quantized.size() > 5);
    CHECK(r.recovered == r.quantized.size());  // every quantized Linear was stored as FP8
  }
}

TEST_CASE(
    "verify passes outputs of compressed-tensors sources, recovered through the recovery code") {
  for (const std::string ct : {"int4-group-asym", "int8-asym", "fp8-block"}) {
    CAPTURE(ct);
    make_checkpoint_options o;
    o.arch = "llama";
    o.size = 6 * MiB;
    o.shard_size = 3 * MiB;
    o.ct = ct;
    o.seed = 3;
    o.out = scratch() / ("src-ct-" + ct);
    (void)make_checkpoint(o);
    const fs::path out = quantize_to(o.out, "mxfp6_e2m3", "ct-" + ct);
    const verify_report r = run_verify(o.out, out);
    CHECK_MESSAGE(r.sound, problems_text(r));
    CHECK(r.recovered > 5);
    CHECK(r.recovered == r.quantized.size());
  }
}

TEST_CASE("verify passes a custom progressive spec output and a budget smaller than a tensor") {
  const fs::path spec = scratch() / "w4a8_g128.json";
  sq_test::write_text(spec, R"({"name": "w4a8_g128",
    "weight": [{"dtype": "fp8_e4m3", "qscheme": "per_tensor"},
               {"dtype": "uint4", "qscheme": "per_group", "group_size": 128, "symmetric": false}],
    "input_tensors": null})");
  const fs::path out = quantize_to(bf16_source(), spec.string(), "spec");
  const verify_report r = run_verify(bf16_source(), out, 64 * 1024);  // row ranges everywhere
  CHECK_MESSAGE(r.sound, problems_text(r));
  REQUIRE(r.per_scheme.size() == 1);
  // The config records the spec's objects, not its name.
  CHECK(r.per_scheme[0].scheme == "custom");
  CHECK(r.per_scheme[0].tensors == r.quantized.size());
}

TEST_CASE("verify fails naming the tensor when one byte of a weight is flipped") {
  const fs::path out = copy_of(quantize_to(bf16_source(), "fp8", "flip-w-fp8"), "flip-w");
  auto [shard, off] = locate(out, k_weight);
  // The exponent's top bit of a code: its value moves by 2^8, far outside half a step.
  xor_byte(shard, off + 37, 0x40);
  const verify_report r = run_verify(bf16_source(), out);
  CHECK_FALSE(r.sound);
  CHECK_MESSAGE(names(r, std::string("tensor '") + k_weight + "'"), problems_text(r));
  CHECK(names(r, "at byte " + std::to_string(off + 37)));
  CHECK(names(r, shard.string()));
}

TEST_CASE("verify fails naming the tensor when a high bit of a scale is flipped") {
  SUBCASE("an MX e8m0 scale byte") {
    const fs::path out = copy_of(quantize_to(bf16_source(), "mxfp4", "flip-s-mx"), "flip-s-mx");
    auto [shard, off] = locate(out, std::string(k_weight) + "_scale");
    uint64_t k = 0;
    while (byte_at(shard, off + k) <= 1) ++k;  // a block that is not all zero
    xor_byte(shard, off + k, 0x40);            // the scale moves by 2^64
    const verify_report r = run_verify(bf16_source(), out);
    CHECK_FALSE(r.sound);
    CHECK_MESSAGE(names(r, std::string("tensor '") + k_weight + "'"), problems_text(r));
  }
  SUBCASE("an int4 per-group F32 scale") {
    const fs::path out = copy_of(quantize_to(bf16_source(), "int4_wo_128", "flip-s-i4"), "flip-i4");
    auto [shard, off] = locate(out, std::string(k_weight) + "_scale");
    // Exponent bit 6 of a group's scale: it moves by 2^64 either way.
    xor_byte(shard, first_big_f32(shard, off) + 3, 0x20);
    const verify_report r = run_verify(bf16_source(), out);
    CHECK_FALSE(r.sound);
    CHECK_MESSAGE(names(r, std::string("tensor '") + k_weight + "'"), problems_text(r));
  }
  SUBCASE("an nvfp4 F8_E4M3 block scale byte") {
    const fs::path out = copy_of(quantize_to(bf16_source(), "nvfp4", "flip-s-nv"), "flip-nv");
    auto [shard, off] = locate(out, std::string(k_weight) + "_scale");
    uint64_t k = 0;
    while ((byte_at(shard, off + k) & 0x78) < 0x20) ++k;  // a block of sizeable values
    xor_byte(shard, off + k, 0x40);                       // exponent top bit: x2^8 or /2^8
    const verify_report r = run_verify(bf16_source(), out);
    CHECK_FALSE(r.sound);
    CHECK_MESSAGE(names(r, std::string("tensor '") + k_weight + "'"), problems_text(r));
  }
  SUBCASE("an amdfp4 block scale stored as BF16") {
    const fs::path out = copy_of(quantize_to(bf16_source(), "amdfp4", "flip-s-amd"), "flip-amd");
    auto [shard, off] = locate(out, std::string(k_weight) + "_scale");
    uint64_t k = 0;
    while (byte_at(shard, off + k + 1) < 0x30) k += 2;  // a BF16 scale of at least 2^-31
    xor_byte(shard, off + k + 1, 0x20);                 // exponent bit: x2^64 or /2^64
    const verify_report r = run_verify(bf16_source(), out);
    CHECK_FALSE(r.sound);
    CHECK_MESSAGE(names(r, std::string("tensor '") + k_weight + "'"), problems_text(r));
  }
  SUBCASE("the per-tensor first-stage scale of int4_fp8") {
    const fs::path out = copy_of(quantize_to(bf16_source(), "int4_fp8", "flip-s-w4a8"), "flip-w4");
    auto [shard, off] = locate(out, std::string(k_weight) + "_scale");
    xor_byte(shard, off + 3, 0x20);
    const verify_report r = run_verify(bf16_source(), out);
    CHECK_FALSE(r.sound);
    CHECK_MESSAGE(names(r, std::string("tensor '") + k_weight + "'"), problems_text(r));
  }
}

TEST_CASE("verify fails naming the shard when a shard is truncated") {
  const fs::path out = copy_of(quantize_to(bf16_source(), "mxfp4", "trunc"), "trunc");
  auto [shard, off] = locate(out, k_weight);
  fs::resize_file(shard, fs::file_size(shard) - 1000);
  const verify_report r = run_verify(bf16_source(), out);
  CHECK_FALSE(r.sound);
  CHECK_MESSAGE(names(r, shard.string()), problems_text(r));
}

TEST_CASE("verify fails naming the tensor when the index names a missing tensor") {
  const fs::path out = copy_of(quantize_to(bf16_source(), "int8", "index"), "index");
  const fs::path ip = out / "model.safetensors.index.json";
  nlohmann::ordered_json idx = nlohmann::ordered_json::parse(sq_test::read_text(ip));
  const std::string shard = idx["weight_map"][k_weight].get<std::string>();
  idx["weight_map"]["model.layers.0.mlp.ghost.weight"] = shard;
  sq_test::write_text(ip, idx.dump(4));
  const verify_report r = run_verify(bf16_source(), out);
  CHECK_FALSE(r.sound);
  CHECK_MESSAGE(names(r, "model.layers.0.mlp.ghost.weight"), problems_text(r));
  CHECK(names(r, "does not hold it"));
}

TEST_CASE("verify fails when config.json's quantization_config is not what the scheme writes") {
  const fs::path out = copy_of(quantize_to(bf16_source(), "fp8", "config"), "config");
  const fs::path cp = out / "config.json";
  nlohmann::ordered_json c = nlohmann::ordered_json::parse(sq_test::read_text(cp));
  c["quantization_config"]["quant_mode"] = "fx_graph_mode";
  sq_test::write_text(cp, c.dump(4));
  const verify_report r = run_verify(bf16_source(), out);
  CHECK_FALSE(r.sound);
  CHECK_MESSAGE(names(r, "/quantization_config/quant_mode"), problems_text(r));
}

TEST_CASE("shardquant verify exits 0 when sound, 1 on a problem, 2 on bad options") {
  const fs::path out = quantize_to(bf16_source(), "ptpc_fp8", "cli");
  const std::string args = "verify --model-dir '" + bf16_source().string() + "' --output-dir '";
  std::string text;
  CHECK(run_cli_status(args + out.string() + "' --memory-budget 16M", &text) == 0);
  CHECK(text.find("SOUND") != std::string::npos);
  CHECK(text.find("ptpc_fp8:") != std::string::npos);
  CHECK(run_cli_status(args + out.string() + "' --json", &text) == 0);
  const nlohmann::json j = nlohmann::json::parse(text);
  CHECK(j["sound"] == true);
  CHECK(j["per_scheme"][0]["scheme"] == "ptpc_fp8");

  const fs::path bad = copy_of(out, "cli-bad");
  auto [shard, off] = locate(bad, k_weight);
  xor_byte(shard, off, 0x40);
  CHECK(run_cli_status(args + bad.string() + "' --json", &text) == 1);
  CHECK(nlohmann::json::parse(text)["sound"] == false);
  CHECK(run_cli_status(args + bad.string() + "'", &text) == 1);
  CHECK(text.find(k_weight) != std::string::npos);
  CHECK(run_cli_status("verify --model-dir '" + bf16_source().string() + "'") == 2);
  CHECK(run_cli_status(args + out.string() + "' --device cuda") == 2);
}

TEST_CASE("dequantize inverts the kernels' codes within the bound for random weights") {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  const std::vector<uint64_t> shape = {24, 256};
  std::vector<float> w(24 * 256);
  for (float& x : w) x = nd(rng);
  w[7] = 0.9f;  // an outlier
  for (const scheme_info& s : all_schemes()) {
    CAPTURE(s.name);
    const weight_scheme ws(s.id);
    const auto outs = output_tensors(ws, shape, dtype::f32);  // amdfp4: F32 `_scale`
    std::vector<std::vector<std::byte>> buf;
    for (const auto& o : outs) buf.emplace_back(o.byte_size());
    quant_outputs qo;
    void* p[4] = {nullptr, nullptr, nullptr, nullptr};
    for (size_t i = 0; i < buf.size(); ++i) p[i] = buf[i].data();
    qo = {p[0], p[1], p[2], 0, p[3]};
    source_view sv;
    sv.type = dtype::f32;
    sv.shape = shape;
    sv.data = w.data();
    REQUIRE(quantize(ws, sv, qo).ok());
    quantized_view q;
    q.shape = shape;
    q.weight = p[0];
    q.scale = p[1];
    q.extra = p[2];
    q.extra2 = p[3];
    q.source = dtype::f32;
    std::vector<float> d(w.size());
    REQUIRE(dequantize(ws, q, d.data()).ok());
    double e2 = 0, x2 = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      e2 += (d[i] - w[i]) * (d[i] - w[i]);
      x2 += w[i] * w[i];
    }
    CHECK(std::sqrt(e2 / x2) < 0.3);
    bound_report br;
    REQUIRE(check_bounds(ws, sv, q, &br).ok());
    CHECK(br.checked == w.size());
    CHECK(br.violations == 0);
    // The element with the outlier, moved by two steps of its grid, breaks the bound.
    w[7] = 0.9f;
    std::vector<float> moved = w;
    moved[7] = -0.9f;
    sv.data = moved.data();
    REQUIRE(check_bounds(ws, sv, q, &br).ok());
    CHECK(br.violations >= 1);
    CHECK(br.first == 7);
  }
}
