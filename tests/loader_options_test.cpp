// The options for the loaders (README "Loading the outputs", issue 12): --dynamic-activations
// changes only the is_dynamic of static input specs in the exported config; --layout
// quark-importer writes the importer's tensors and shapes (checked against the default run's
// bytes); the default stays as it was; the loader table, the plan's notes, the CLI's schemes
// list and its option errors.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/error.h"
#include "io/safetensors.h"
#include "pipeline/api.h"
#include "pipeline/plan/loader_support.h"
#include "pipeline/plan/quant_config.h"
#include "plan_test_util.h"
#include "synthetic/make_checkpoint.h"
#include "tensor_bytes_util.h"

using namespace sq_plan_test;

namespace {

// A small llama checkpoint (one shard) generated once per process.
const fs::path& source() {
  static temp_dir dir("loaders");
  static const fs::path src = [] {
    make_checkpoint_options o;
    o.arch = "llama";
    o.size = 6 << 20;
    o.type = dtype::bf16;
    o.seed = 3;
    o.out = dir.path / "src";
    (void)make_checkpoint(o);
    return o.out;
  }();
  return src;
}

fs::path quantize(const std::string& scheme, const std::string& tag, bool dynamic,
                  const std::string& layout) {
  quantize_options o;
  o.input = source();
  o.output = source().parent_path() / tag;
  o.scheme = scheme;
  o.dynamic_activations = dynamic;
  o.layout = layout;
  o.quiet = true;
  o.existing = existing_output::overwrite;
  (void)quantize_checkpoint(o);
  return o.output;
}

fs::path shard_of(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") return e.path();
  FAIL("no shard in " << dir);
  return {};
}

nlohmann::json qconfig(const fs::path& dir) {
  std::ifstream f(dir / "config.json");
  return nlohmann::json::parse(f)["quantization_config"];
}

template <class T>
T at(const std::vector<std::byte>& b, uint64_t i) {
  T v;
  std::memcpy(&v, b.data() + i * sizeof(T), sizeof(T));
  return v;
}

}  // namespace

TEST_CASE("--dynamic-activations turns exactly the static input specs dynamic") {
  for (const auto& s : all_schemes()) {
    CAPTURE(s.name);
    quant_config_inputs a, b;
    a.scheme = b.scheme = s.id;
    b.exp.dynamic_activations = true;
    const ordered_json qa = quantization_config(a), qb = quantization_config(b);
    const ordered_json& ia = qa["global_quant_config"]["input_tensors"];
    ordered_json expect = qa;
    // An input spec is an object, or a list of them (the two-level FP4 schemes: the element spec
    // and the static per-tensor spec of its scale).
    bool static_input = false;
    auto flip = [&](ordered_json& spec) {
      if (spec.is_object() && spec["is_dynamic"] == false) {
        spec["is_dynamic"] = true;
        static_input = true;
      }
    };
    ordered_json& ie = expect["global_quant_config"]["input_tensors"];
    if (ia.is_array())
      for (auto& spec : ie) flip(spec);
    else
      flip(ie);
    CHECK(qb == expect);
    CHECK(static_input == (s.id == scheme_id::fp8 || s.id == scheme_id::int8 ||
                           s.id == scheme_id::mxfp4_fp8 || s.id == scheme_id::nvfp4 ||
                           s.id == scheme_id::amdfp4_global16 ||
                           s.id == scheme_id::amdfp4_global32));
  }
  // Per-layer overrides get it too; the defaults stay Quark's.
  quant_config_inputs c;
  c.scheme = scheme_id::mxfp4;
  c.overrides.emplace_back("*down_proj", scheme_id::fp8);
  c.exp.dynamic_activations = true;
  CHECK(quantization_config(c)["layer_quant_config"]["*down_proj"]["input_tensors"]["is_dynamic"] ==
        true);
  c.exp = {};
  CHECK(quantization_config(c)["layer_quant_config"]["*down_proj"] == layer_config(scheme_id::fp8));
}

TEST_CASE("the importer layout writes the importer's tensors from the same codes as the default") {
  const fs::path def = quantize("int4_wo_128", "i4-default", false, "quark-f2f");
  const fs::path imp = quantize("int4_wo_128", "i4-importer", false, "quark-importer");
  const std::string w = "model.layers.0.mlp.down_proj.weight";
  const auto hd = read_safetensors_header(shard_of(def));
  const auto hi = read_safetensors_header(shard_of(imp));
  const tensor_entry* sd = hd.find(w + "_scale");
  const tensor_entry* si = hi.find(w + "_scale");
  REQUIRE(sd != nullptr);
  REQUIRE(si != nullptr);
  REQUIRE(sd->shape.size() == 2);
  const uint64_t out = sd->shape[0], groups = sd->shape[1];
  CHECK(si->shape == std::vector<uint64_t>{groups, out});
  CHECK(hd.find(w + "_zero_point") == nullptr);  // the default is Quark's: no zero point
  const tensor_entry* zi = hi.find(w + "_zero_point");
  REQUIRE(zi != nullptr);
  CHECK(zi->shape == std::vector<uint64_t>{groups, out / 8});
  const auto bd = tensor_bytes(shard_of(def), w + "_scale");
  const auto bi = tensor_bytes(shard_of(imp), w + "_scale");
  for (uint64_t r = 0; r < out; r += 7)
    for (uint64_t k = 0; k < groups; ++k)
      CHECK(at<float>(bi, k * out + r) == at<float>(bd, r * groups + k));
  for (const auto& z : tensor_bytes(shard_of(imp), w + "_zero_point")) CHECK(z == std::byte{0});
  // Weight words: the same nibbles, sequential in the default, [0,2,4,6,1,3,5,7] in the importer.
  const auto wd = tensor_bytes(shard_of(def), w), wi = tensor_bytes(shard_of(imp), w);
  REQUIRE(wd.size() == wi.size());
  const unsigned order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  for (uint64_t i = 0; i < wd.size() / 4; i += 97) {
    const uint32_t a = at<uint32_t>(wd, i), b = at<uint32_t>(wi, i);
    for (unsigned n = 0; n < 8; ++n) CHECK(((b >> (4 * n)) & 0xF) == ((a >> (4 * order[n])) & 0xF));
  }
  // The config is the same in both layouts: the importer layout is what it already declares.
  CHECK(qconfig(def) == qconfig(imp));
}

TEST_CASE("fp8 with --dynamic-activations differs from the default only in is_dynamic") {
  const fs::path def = quantize("fp8", "fp8-default", false, "quark-f2f");
  const fs::path dyn = quantize("fp8", "fp8-dynamic", true, "quark-importer");
  nlohmann::json a = qconfig(def), b = qconfig(dyn);
  CHECK(a["global_quant_config"]["input_tensors"]["is_dynamic"] == false);
  CHECK(b["global_quant_config"]["input_tensors"]["is_dynamic"] == true);
  b["global_quant_config"]["input_tensors"]["is_dynamic"] = false;
  CHECK(a == b);
  // fp8 tensors are the same in both layouts.
  const std::string w = "model.layers.0.self_attn.q_proj.weight";
  CHECK(tensor_bytes(shard_of(def), w) == tensor_bytes(shard_of(dyn), w));
  CHECK(tensor_bytes(shard_of(def), w + "_scale") == tensor_bytes(shard_of(dyn), w + "_scale"));
}

TEST_CASE("the plan says which schemes will not run in a loader and which option fixes them") {
  plan_options o;
  o.scheme = scheme_id::fp8;
  plan p = make_plan(open_source_checkpoint(source(), [](std::string) {}), o);
  REQUIRE(p.loader_notes.size() == 1);
  CHECK(p.loader_notes[0].find("--dynamic-activations") != std::string::npos);
  o.dynamic_activations = true;
  p = make_plan(open_source_checkpoint(source(), [](std::string) {}), o);
  CHECK(p.loader_notes.empty());
  o.scheme = scheme_id::int8;
  p = make_plan(open_source_checkpoint(source(), [](std::string) {}), o);
  REQUIRE(p.loader_notes.size() == 1);
  CHECK(p.loader_notes[0].find("--layout quark-importer") != std::string::npos);
  CHECK(p.loader_notes[0].find("--dynamic-activations") == std::string::npos);
  o.scheme = scheme_id::mxfp4;
  o.dynamic_activations = false;
  p = make_plan(open_source_checkpoint(source(), [](std::string) {}), o);
  CHECK(p.loader_notes.empty());
}

TEST_CASE("every built-in scheme has a loader row, the scaled-FP4 ones as measured") {
  for (const auto& s : all_schemes()) {
    CAPTURE(s.name);
    const loader_row r = loader_support(s.id);
    CHECK(r.vllm != vllm_status::not_checked);
    CHECK((r.hf_options == opt_none && r.hf_runs) == r.hf_why.empty());
    CHECK_FALSE(r.vllm_note.empty());
  }
  // scripts/check_loaders.py (README "Loading the outputs"): nvfp4 runs with both options,
  // amdfp4 with the importer layout (U8 E5M3 scale codes); Quark 0.13's importer fails on the
  // amdfp4_global scales whatever the layout; vLLM's Quark loader has no scheme for any.
  CHECK(loader_support(scheme_id::nvfp4).hf_options ==
        (opt_dynamic_activations | opt_importer_layout));
  CHECK(loader_support(scheme_id::amdfp4).hf_options == opt_importer_layout);
  CHECK(loader_support(scheme_id::amdfp4_g32).hf_options == opt_importer_layout);
  for (scheme_id id : {scheme_id::nvfp4, scheme_id::amdfp4, scheme_id::amdfp4_g32,
                       scheme_id::amdfp4_global16, scheme_id::amdfp4_global32}) {
    CAPTURE(info(id).name);
    CHECK(loader_support(id).vllm == vllm_status::unsupported);
    CHECK(loader_support(id).hf_runs ==
          (id != scheme_id::amdfp4_global16 && id != scheme_id::amdfp4_global32));
  }
  const std::string w = loader_warning(quant_scheme(scheme_id::amdfp4_global16),
                                       opt_dynamic_activations | opt_importer_layout);
  CHECK(w.find("with any option") != std::string::npos);
  CHECK(w.find("reference_dequantize_float8_e5m3") != std::string::npos);
  CHECK(loader_warning(quant_scheme(scheme_id::nvfp4), opt_importer_layout)
            .find("add --dynamic-activations") != std::string::npos);
  CHECK(loader_warning(quant_scheme(scheme_id::amdfp4), opt_importer_layout).empty());
  CHECK(loader_options_text(opt_dynamic_activations | opt_importer_layout) ==
        "--dynamic-activations --layout quark-importer");
}

TEST_CASE(
    "the CLI lists the loader column and rejects a bad layout or the importer layout on cuda") {
  temp_dir t("loaders-cli");
  auto run = [&](const std::string& args) {
    const fs::path out = t.path / "stdout.txt";
    const int st = std::system(
        (std::string(SQ_BINARY_PATH) + " " + args + " > " + out.string() + " 2>&1").c_str());
    std::ifstream f(out);
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    return std::make_pair(WIFEXITED(st) ? WEXITSTATUS(st) : -1, s);
  };
  auto [code, out] = run("schemes");
  CHECK(code == 0);
  CHECK(out.find("transformers + amd-quark") != std::string::npos);
  CHECK(out.find("QuarkW8A8Fp8") != std::string::npos);
  std::tie(code, out) = run("quantize --model-dir " + source().string() + " --output-dir " +
                            (t.path / "o").string() + " --scheme fp8 --layout importer");
  CHECK(code == 2);
  CHECK(out.find("--layout") != std::string::npos);
  std::tie(code, out) = run("quantize --model-dir " + source().string() + " --output-dir " +
                            (t.path / "o").string() + " --scheme fp8 --dry-run");
  CHECK(code == 0);
  CHECK(out.find("add --dynamic-activations") != std::string::npos);
  quantize_options o;
  o.input = source();
  o.output = t.path / "o2";
  o.scheme = "int8";
  o.layout = "quark-importer";
  o.device = "cuda";
  CHECK_THROWS_AS((void)quantize_checkpoint(o), usage_error);
}
