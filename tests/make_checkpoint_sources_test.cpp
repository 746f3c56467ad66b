// make-checkpoint's quantized sources: compressed-tensors (--ct) and presharded block FP8
// (--presharded). Each source is decoded here independently (formats.md §7.2.2, §7.3.2), the
// decode must equal what shardquant's recovery writes (every weight excluded, so the recovered
// values pass through), and it must stay within one quantization step of the plain weights the
// generator started from.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <map>

#include "io/error.h"
#include "kernels/fp8.h"
#include "kernels/numeric.h"
#include "pipeline/api.h"
#include "pipeline/make_checkpoint.h"
#include "plan_test_util.h"
#include "tensor_bytes_util.h"

using namespace sq_plan_test;

namespace {

template <class T>
std::vector<T> as(const std::vector<std::byte>& b) {
  std::vector<T> v(b.size() / sizeof(T));
  std::memcpy(v.data(), b.data(), v.size() * sizeof(T));
  return v;
}

std::vector<float> widen(const std::vector<std::byte>& b, dtype t) {
  if (t == dtype::f32) return as<float>(b);
  std::vector<float> v;
  for (uint16_t h : as<uint16_t>(b)) v.push_back(t == dtype::bf16 ? bf16_to_f32(h) : f16_to_f32(h));
  return v;
}

// The plain fp32 rows the generator quantized (same name, same seed).
std::vector<float> plain_rows(const std::string& name, const std::vector<uint64_t>& shape,
                              uint64_t seed) {
  const synthetic_tensor t{name, shape, dtype::f32, synthetic_kind::linear};
  std::vector<float> v(shape[0] * shape[1]);
  generate_rows(t, seed, 0, shape[0], reinterpret_cast<std::byte*>(v.data()));
  return v;
}

run_report exclude_all(const fs::path& in, const fs::path& out) {
  quantize_options q;
  q.input = in;
  q.output = out;
  q.scheme = "int8";
  q.excludes = std::vector<std::string>{"*"};
  q.quiet = true;
  q.progress_to_stderr = false;
  return quantize_checkpoint(q);
}

// formats.md §7.3.2 decode of one compressed-tensors module from the source shard.
std::vector<float> ct_decode(const fs::path& shard, const std::string& module,
                             const synthetic_ct_args& a, uint64_t R, uint64_t C) {
  const std::vector<float> s = widen(tensor_bytes(shard, module + ".weight_scale"), a.scale_type);
  std::vector<int32_t> q(R * C);
  if (a.format == "pack-quantized") {
    const auto w = as<uint32_t>(tensor_bytes(shard, module + ".weight_packed"));
    const uint64_t words = (C * a.bits + 31) / 32;
    for (uint64_t o = 0; o < R; ++o)
      for (uint64_t j = 0; j < C; ++j) {
        const uint64_t bit = j * a.bits;
        const uint32_t v = (w[o * words + bit / 32] >> (bit % 32)) & ((1u << a.bits) - 1);
        q[o * C + j] = static_cast<int32_t>(v) - (1 << (a.bits - 1));
      }
  } else {
    const auto b = tensor_bytes(shard, module + ".weight");
    for (uint64_t i = 0; i < R * C; ++i)
      q[i] = a.is_float ? 0 : static_cast<int8_t>(std::to_integer<uint8_t>(b[i]));
    if (a.is_float) {
      std::vector<float> out(R * C);
      for (uint64_t o = 0; o < R; ++o)
        for (uint64_t j = 0; j < C; ++j) {
          const float sv = a.strategy == "tensor" ? s[0]
                           : a.strategy == "block"
                               ? s[(o / a.block) * ((C + a.block - 1) / a.block) + j / a.block]
                               : s[o];
          out[o * C + j] = fp8_e4m3fn_decode(std::to_integer<uint8_t>(b[o * C + j])) * sv;
        }
      return out;
    }
  }
  const uint64_t G = a.strategy == "group" ? (C + a.group_size - 1) / a.group_size : 1;
  std::vector<int32_t> zp(R * G, 0);
  if (!a.symmetric) {
    const auto zb = tensor_bytes(shard, module + ".weight_zero_point");
    if (a.format == "pack-quantized") {
      const auto z = as<uint32_t>(zb);
      for (uint64_t o = 0; o < R; ++o)
        for (uint64_t g = 0; g < G; ++g) {
          const uint64_t bit = o * a.bits;
          const uint32_t v = (z[(bit / 32) * G + g] >> (bit % 32)) & ((1u << a.bits) - 1);
          zp[o * G + g] = static_cast<int32_t>(v) - (1 << (a.bits - 1));
        }
    } else {
      for (uint64_t i = 0; i < R * G; ++i)
        zp[i] = static_cast<int8_t>(std::to_integer<uint8_t>(zb[i]));
    }
  }
  std::vector<int32_t> gidx;
  if (a.actorder) gidx = as<int32_t>(tensor_bytes(shard, module + ".weight_g_idx"));
  std::vector<float> out(R * C);
  for (uint64_t o = 0; o < R; ++o)
    for (uint64_t j = 0; j < C; ++j) {
      const uint64_t g = a.strategy != "group" ? 0
                         : a.actorder          ? static_cast<uint64_t>(gidx[j])
                                               : j / a.group_size;
      const float sv = a.strategy == "tensor" ? s[0] : s[o * G + g];
      out[o * C + j] = static_cast<float>(q[o * C + j] - zp[o * G + g]) * sv;
    }
  return out;
}

}  // namespace

TEST_CASE("every --ct source decodes to its plain weights and shardquant recovers the same F32") {
  for (const auto& [variant, what] : ct_variants()) {
    INFO("--ct " << variant);
    temp_dir t("mk-ct");
    make_checkpoint_options o;
    o.arch = "qwen3_moe";
    o.size = 3ull << 20;
    o.type = dtype::f32;  // recovered weights pass through as F32: the exact recovered values
    o.out = t.path / "src";
    o.seed = 4;
    o.ct = variant;
    const synthetic_model m = design_model(o);
    const auto& qc = m.config["quantization_config"];
    CHECK(qc["quant_method"] == "compressed-tensors");
    CHECK(qc["ignore"][0] == "lm_head");
    (void)make_checkpoint(o);
    (void)exclude_all(o.out, t.path / "out");
    const fs::path src = o.out / "model.safetensors", out = t.path / "out" / "model.safetensors";
    size_t modules = 0;
    for (const auto& x : m.tensors) {
      if (x.kind != synthetic_kind::ct_scale) continue;
      const std::string module = x.name.substr(0, x.name.size() - 13);
      const uint64_t R = x.source_shape[0], C = x.source_shape[1];
      const std::vector<float> dec = ct_decode(src, module, x.ct, R, C);
      const std::vector<float> rec = as<float>(tensor_bytes(out, module + ".weight"));
      REQUIRE(rec.size() == dec.size());
      CHECK(std::memcmp(rec.data(), dec.data(), rec.size() * 4) == 0);
      // Within one step of the plain weights (int: one scale; fp8: 2^-4 relative or a subnormal
      // step of the scale).
      const std::vector<float> plain = plain_rows(x.base, {R, C}, o.seed);
      const std::vector<float> s = widen(tensor_bytes(src, x.name), x.type);
      const float smax = *std::max_element(s.begin(), s.end());
      bool close = true;
      for (uint64_t i = 0; i < R * C; ++i) {
        const float d = std::fabs(dec[i] - plain[i]);
        close &= x.ct.is_float ? d <= std::fabs(plain[i]) / 16 + smax / 512 : d <= smax;
      }
      CHECK(close);
      ++modules;
    }
    CHECK(modules > 10);
    // lm_head and the routers stay plain.
    CHECK(tensor_bytes(src, "lm_head.weight").size() > 0);
    CHECK(tensor_bytes(src, "model.layers.0.mlp.gate.weight").size() > 0);
  }
}

TEST_CASE("--ct groups: multi-group uses the regex target for attention - mixed has two formats") {
  make_checkpoint_options o;
  o.arch = "llama";
  o.size = 3ull << 20;
  o.ct = "mixed";
  synthetic_model m = design_model(o);
  auto qc = m.config["quantization_config"];
  CHECK(qc["format"] == "mixed-precision");
  CHECK(qc["config_groups"]["group_0"]["targets"][0] == "re:.*self_attn.*");
  CHECK(qc["config_groups"]["group_0"]["format"] == "float-quantized");
  CHECK(qc["config_groups"]["group_1"]["targets"][0] == "Linear");
  CHECK(qc["config_groups"]["group_1"]["format"] == "pack-quantized");
  std::map<std::string, dtype> types;
  for (const auto& t : m.tensors) types[t.name] = t.type;
  CHECK(types.at("model.layers.0.self_attn.q_proj.weight") == dtype::f8_e4m3);
  CHECK(types.at("model.layers.0.mlp.up_proj.weight_packed") == dtype::i32);
  CHECK(types.at("model.layers.0.self_attn.q_proj.weight_scale") == dtype::bf16);
  o.ct = "multi-group";
  m = design_model(o);
  qc = m.config["quantization_config"];
  CHECK(qc["format"] == "pack-quantized");
  CHECK(qc["config_groups"]["group_0"]["weights"] == qc["config_groups"]["group_1"]["weights"]);
}

TEST_CASE("--ct companions stay in the shard of their scale however small the shards are") {
  temp_dir t("mk-ct-shards");
  make_checkpoint_options o;
  o.arch = "llama";
  o.size = 3ull << 20;
  o.shard_size = 1;  // every tensor would start a new shard
  o.out = t.path;
  o.ct = "int4-group-asym";
  const make_checkpoint_result r = make_checkpoint(o);
  const synthetic_model m = design_model(o);
  size_t ct_tensors = 0;
  for (const auto& x : m.tensors) ct_tensors += x.kind >= synthetic_kind::ct_packed;
  CHECK(r.shards.size() == m.tensors.size() - ct_tensors + ct_tensors / 4);  // 4 per module
  plan_options po;
  po.scheme = scheme_id::int8;
  const plan p = plan_dir(t.path, po);  // would fail on a companion in another shard
  CHECK(p.facts.quant_method == "compressed-tensors");
  CHECK(p.totals.recovered > 0);
}

TEST_CASE("--presharded: per-chunk block scales, listed globs, and shardquant recovers them") {
  temp_dir t("mk-presharded");
  make_checkpoint_options o;
  o.arch = "llama";
  o.size = 6000000;
  o.shard_size = 2500000;
  o.type = dtype::f8_e4m3;
  o.odd_shapes = true;
  o.presharded_rows = 341;  // gate/up proj: 682 rows = 2 chunks; 341 % 128 = 85
  o.out = t.path / "src";
  o.seed = 2;
  const synthetic_model m = design_model(o);
  const auto& ps = m.config["quantization_config"]["presharded_weights"];
  CHECK(ps.size() == 2);
  CHECK(ps["model.layers.*.mlp.gate_proj.weight"] == 341);
  CHECK(ps["model.layers.*.mlp.up_proj.weight"] == 341);
  (void)make_checkpoint(o);
  (void)exclude_all(o.out, t.path / "out");
  std::map<std::string, std::string> where;  // tensor -> shard file
  for (const auto& e : fs::directory_iterator(o.out))
    if (e.path().extension() == ".safetensors")
      for (const auto& te : read_safetensors_header(e.path()).tensors)
        where[te.name] = e.path().filename().string();
  const std::string w = "model.layers.0.mlp.up_proj.weight";
  const synthetic_tensor* wt = nullptr;
  for (const auto& x : m.tensors)
    if (x.name == w) wt = &x;
  REQUIRE(wt != nullptr);
  const uint64_t R = wt->shape[0], C = wt->shape[1], cr = 341, nb = 3, ncol = (C + 127) / 128;
  REQUIRE(R == 682);
  const auto codes = tensor_bytes(o.out / where.at(w), w);
  const auto sc = as<float>(tensor_bytes(o.out / where.at(w + "_scale_inv"), w + "_scale_inv"));
  REQUIRE(sc.size() == R / cr * nb * ncol);
  // Each chunk's blocks hold their own max code (0x7E): scales come from the chunk's rows only.
  for (uint64_t k = 0; k < R / cr; ++k)
    for (uint64_t b = 0; b < nb; ++b) {
      bool has_max = false;
      for (uint64_t r = k * cr + b * 128; r < std::min(k * cr + cr, k * cr + b * 128 + 128); ++r)
        for (uint64_t c = 0; c < 128 && c < C; ++c)
          has_max |= (std::to_integer<uint8_t>(codes[r * C + c]) & 0x7F) == 0x7E;
      CHECK(has_max);
    }
  // Recovered (excluded, so written in the model dtype BF16) = bf16(RN32(fp8 * S[k*nb + rl/128])).
  const auto rec = as<uint16_t>(tensor_bytes(t.path / "out" / where.at(w), w));
  const std::vector<float> plain = plain_rows(w, {R, C}, o.seed);
  bool exact = true, close = true;
  for (uint64_t r = 0; r < R; ++r)
    for (uint64_t c = 0; c < C; ++c) {
      const float s = sc[((r / cr) * nb + (r % cr) / 128) * ncol + c / 128];
      const float v = fp8_e4m3fn_decode(std::to_integer<uint8_t>(codes[r * C + c])) * s;
      exact &= rec[r * C + c] == to_bf16_rne(v);
      close &= std::fabs(v - plain[r * C + c]) <= std::fabs(plain[r * C + c]) / 16 + s / 512;
    }
  CHECK(exact);
  CHECK(close);
}

TEST_CASE("--ct and --presharded refuse what they cannot make") {
  make_checkpoint_options o;
  o.arch = "llama";
  o.size = 3ull << 20;
  o.ct = "int3-group";
  CHECK_THROWS_AS((void)design_model(o), usage_error);
  o.ct = "fp8-block";
  o.type = dtype::f8_e4m3;
  CHECK_THROWS_AS((void)design_model(o), usage_error);
  o.ct.clear();
  o.presharded_rows = 7;  // no llama row count is a multiple of 7
  CHECK_THROWS_AS((void)design_model(o), usage_error);
  o.type = dtype::bf16;
  o.presharded_rows = 64;
  CHECK_THROWS_AS((void)design_model(o), usage_error);  // not an FP8 source
}
