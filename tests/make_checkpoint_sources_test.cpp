// make-checkpoint's quantized sources: compressed-tensors (--ct), presharded block FP8
// (--presharded) and the FP4-packed sources (--ct nvfp4 / mxfp4, --dsv4-mxfp4). Each source is
// decoded here independently (formats.md §7.2.2, §7.3.2), the decode must equal what shardquant's
// recovery writes (every weight excluded, so the recovered values pass through), and it must stay
// within one quantization step of the plain weights the generator started from.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <map>

#include "io/error.h"
#include "kernels/fp8.h"
#include "kernels/numeric.h"
#include "kernels/schemes.h"
#include "pipeline/api.h"
#include "plan_test_util.h"
#include "synthetic/make_checkpoint.h"
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

// Independent FP4 decode (kernels/FORMATS-fp4-sources.md), written from the rules, not the
// kernels: E2M1 table, low nibble first; nvfp4 bf16(q * (bf16(s) / gs)); MXFP4 in bf16
// bf16(q * 2^(e-127)), in f16 with Quark's saturated scale.
std::vector<float> fp4_decode(const std::vector<std::byte>& packed,
                              const std::vector<std::byte>& sc, float gs, uint64_t R, uint64_t C,
                              uint64_t g, bool nv, dtype round) {
  static const float e2m1[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  std::vector<float> out(R * C);
  for (uint64_t o = 0; o < R; ++o)
    for (uint64_t j = 0; j < C; ++j) {
      const uint8_t b = std::to_integer<uint8_t>(packed[o * C / 2 + j / 2]);
      const uint8_t code = j % 2 ? b >> 4 : b & 15;
      const float q = (code & 8 ? -1.0f : 1.0f) * e2m1[code & 7];
      const uint8_t sb = std::to_integer<uint8_t>(sc[o * (C / g) + j / g]);
      float v;
      if (nv) {
        const float s = bf16_to_f32(to_bf16_rne(fp8_e4m3fn_decode(sb)));
        v = bf16_to_f32(to_bf16_rne(q * (s / gs)));
      } else if (round == dtype::f16) {
        const int k = sb - 127;
        const float s = k > 15 ? 32768.0f : k < -24 ? 0.0f : std::ldexp(1.0f, k);
        v = f16_to_f32(to_f16_rne(q * s));
      } else {
        v = bf16_to_f32(to_bf16_rne(q * std::ldexp(1.0f, sb - 127)));
      }
      out[o * C + j] = v;
    }
  return out;
}

// Every quantized module of a made FP4 source: recovered bytes (all excluded, model dtype `t`)
// equal the independent decode, and the decode is close to the plain weights.
void check_fp4_source(const synthetic_model& m, const fs::path& src_dir, const fs::path& out_dir,
                      dtype model, uint64_t seed, size_t* modules) {
  std::map<std::string, std::string> where;
  for (const auto& e : fs::directory_iterator(src_dir))
    if (e.path().extension() == ".safetensors")
      for (const auto& te : read_safetensors_header(e.path()).tensors)
        where[te.name] = e.path().filename().string();
  for (const auto& x : m.tensors) {
    if (x.kind != synthetic_kind::fp4_packed) continue;
    const bool dsv4 = x.ct.format == "dsv4-mxfp4";
    const std::string module = x.base.substr(0, x.base.size() - 7);
    const std::string scale_name = dsv4 ? module + ".scale" : module + ".weight_scale";
    const uint64_t R = x.source_shape[0], C = x.source_shape[1], g = x.ct.group_size;
    const fs::path shard = src_dir / where.at(x.name);
    CHECK(where.at(scale_name) == where.at(x.name));
    float gs = 1.0f;
    if (g == 16) gs = as<float>(tensor_bytes(shard, module + ".weight_global_scale"))[0];
    const std::vector<float> dec =
        fp4_decode(tensor_bytes(shard, x.name), tensor_bytes(shard, scale_name), gs, R, C, g,
                   g == 16, dsv4 ? model : dtype::bf16);
    const std::vector<float> rec = widen(tensor_bytes(out_dir / where.at(x.name), x.base), model);
    REQUIRE(rec.size() == dec.size());
    bool exact = true, close = true;
    const std::vector<float> plain = plain_rows(x.base, {R, C}, seed);
    float amax = 0;
    for (float v : plain) amax = std::max(amax, std::fabs(v));
    for (uint64_t i = 0; i < R * C; ++i) {
      // F16 models see the recovered BF16 values rounded to F16 (cast rule of §4.3).
      const float want = model == dtype::f16 && !dsv4 ? f16_to_f32(to_f16_rne(dec[i])) : dec[i];
      exact &= f32_bits(rec[i]) == f32_bits(want);
      // Within a quarter of the group's range (E2M1 has 1 mantissa bit) plus the bf16 step.
      close &= std::fabs(dec[i] - plain[i]) <= amax / 4 + std::fabs(plain[i]) / 64;
    }
    CHECK(exact);
    CHECK(close);
    ++*modules;
  }
}

}  // namespace

TEST_CASE("--ct nvfp4 and mxfp4: independent decode equals shardquant's recovery in every dtype") {
  for (const char* variant : {"nvfp4", "mxfp4"})
    for (dtype model : {dtype::bf16, dtype::f16, dtype::f32}) {
      INFO("--ct " << variant << " model " << name(model));
      temp_dir t("mk-fp4");
      make_checkpoint_options o;
      o.arch = "qwen3_moe";
      o.size = 2ull << 20;
      o.type = model;
      o.out = t.path / "src";
      o.seed = 9;
      o.ct = variant;
      const synthetic_model m = design_model(o);
      const auto& qc = m.config["quantization_config"];
      CHECK(qc["format"] == std::string(variant) + "-pack-quantized");
      CHECK(qc["config_groups"]["group_0"]["weights"]["group_size"] ==
            (std::string(variant) == "nvfp4" ? 16 : 32));
      (void)make_checkpoint(o);
      (void)exclude_all(o.out, t.path / "out");
      size_t modules = 0;
      check_fp4_source(m, o.out, t.path / "out", model, o.seed, &modules);
      CHECK(modules > 10);
      // The consumed companions are gone; the weight is back under its plain name.
      const fs::path out = t.path / "out" / "model.safetensors";
      const auto h = read_safetensors_header(out);
      CHECK(h.find("model.layers.0.mlp.experts.0.up_proj.weight") != nullptr);
      CHECK(h.find("model.layers.0.mlp.experts.0.up_proj.weight_packed") == nullptr);
      CHECK(h.find("model.layers.0.mlp.experts.0.up_proj.weight_scale") == nullptr);
      CHECK(h.find("model.layers.0.mlp.experts.0.up_proj.weight_global_scale") == nullptr);
    }
}

TEST_CASE("--dsv4-mxfp4: routed experts are I8 + F8_E8M0 .scale and recover in the model dtype") {
  temp_dir t("mk-dsv4");
  make_checkpoint_options o;
  o.arch = "deepseek_v3";
  o.size = 6ull << 20;
  o.shard_size = 1ull << 20;
  o.type = dtype::f8_e4m3;
  o.dsv4_mxfp4 = true;
  o.out = t.path / "src";
  o.seed = 3;
  const synthetic_model m = design_model(o);
  size_t experts = 0, fp8 = 0;
  for (const auto& x : m.tensors) {
    if (x.kind == synthetic_kind::fp4_packed) {
      ++experts;
      CHECK(x.type == dtype::i8);
      CHECK(x.name.find(".experts.") != std::string::npos);
    }
    fp8 += x.kind == synthetic_kind::fp8_weight;
  }
  CHECK(experts > 0);
  CHECK(fp8 > 0);  // attention and shared experts stay block FP8
  (void)make_checkpoint(o);
  (void)exclude_all(o.out, t.path / "out");
  size_t modules = 0;
  check_fp4_source(m, o.out, t.path / "out", dtype::bf16, o.seed, &modules);
  CHECK(modules == experts);
  o.dsv4_mxfp4 = true;
  o.type = dtype::bf16;
  CHECK_THROWS_AS((void)design_model(o), usage_error);  // not an FP8 source
  o.type = dtype::f8_e4m3;
  o.arch = "llama";
  CHECK_THROWS_AS((void)design_model(o), usage_error);  // no routed experts
  o.arch = "qwen3_moe";
  o.dsv4_mxfp4 = false;
  o.type = dtype::bf16;
  o.ct = "nvfp4";
  o.odd_shapes = true;  // down_proj in = intermediate = 2 mod 4
  CHECK_THROWS_AS((void)design_model(o), usage_error);
}

TEST_CASE("end to end: each FP4 source quantizes with mxfp4 and ptpc_fp8 close to its decode") {
  for (const std::string kind : {"nvfp4", "mxfp4", "dsv4"}) {
    INFO(kind);
    temp_dir t("mk-fp4-e2e");
    make_checkpoint_options o;
    o.arch = std::string(kind) == "dsv4" ? "deepseek_v3" : "qwen3_moe";
    o.size = 3ull << 20;
    o.out = t.path / "src";
    o.seed = 5;
    if (std::string(kind) == "dsv4") {
      o.type = dtype::f8_e4m3;
      o.dsv4_mxfp4 = true;
    } else {
      o.ct = kind;
    }
    (void)make_checkpoint(o);
    (void)exclude_all(o.out, t.path / "ref");  // the recovered weights, BF16
    for (const std::string scheme : {"mxfp4", "ptpc_fp8"}) {
      INFO(scheme);
      quantize_options q;
      q.input = o.out;
      q.output = t.path / scheme;
      q.scheme = scheme;
      q.quiet = true;
      q.progress_to_stderr = false;
      const run_report r = quantize_checkpoint(q);
      CHECK(r.tensors_out > 0);
      // One expert weight: the quantized output dequantizes close to the recovered weight.
      std::string w;
      std::map<std::string, std::string> where;
      for (const auto& e : fs::directory_iterator(q.output))
        if (e.path().extension() == ".safetensors")
          for (const auto& te : read_safetensors_header(e.path()).tensors) {
            where[te.name] = e.path().filename().string();
            if (w.empty() && te.name.find(".experts.1.up_proj.weight") != std::string::npos &&
                te.name.ends_with(".weight"))
              w = te.name;
          }
      REQUIRE(!w.empty());
      const std::vector<float> ref =
          widen(tensor_bytes(t.path / "ref" / where.at(w), w), dtype::bf16);
      const auto qb = tensor_bytes(q.output / where.at(w), w);
      const auto sb = tensor_bytes(q.output / where.at(w + "_scale"), w + "_scale");
      float err = 0, amax = 0;
      if (std::string(scheme) == "ptpc_fp8") {
        const auto s = as<float>(sb);  // one scale per row
        const uint64_t C = qb.size() / s.size();
        for (uint64_t i = 0; i < qb.size(); ++i) {
          const float v = fp8_e4m3fn_decode(std::to_integer<uint8_t>(qb[i])) * s[i / C];
          err = std::max(err, std::fabs(v - ref[i]) - std::fabs(ref[i]) / 16);
          amax = std::max(amax, std::fabs(ref[i]));
        }
      } else {  // every expert row is a whole number of 32-blocks: scale i / 32 of the flat row
        static const float e2m1[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
        for (uint64_t i = 0; i < ref.size(); ++i) {
          const uint8_t b = std::to_integer<uint8_t>(qb[i / 2]);
          const uint8_t code = i % 2 ? b >> 4 : b & 15;
          const float s = std::ldexp(1.0f, std::to_integer<uint8_t>(sb[i / 32]) - 127);
          const float v = (code & 8 ? -1.0f : 1.0f) * e2m1[code & 7] * s;
          err = std::max(err, std::fabs(v - ref[i]) - std::fabs(ref[i]) / 4);
          amax = std::max(amax, std::fabs(ref[i]));
        }
      }
      // ptpc_fp8: 2^-4 relative plus a little; mxfp4: the E2M1 step of the block (<= amax / 8).
      CHECK(amax > 0);
      CHECK(err <= amax / (scheme == "ptpc_fp8" ? 64 : 8));
    }
  }
}

TEST_CASE("every --ct source decodes to its plain weights and shardquant recovers the same F32") {
  for (const auto& [variant, what] : ct_variants()) {
    if (variant == "nvfp4" || variant == "mxfp4") continue;  // the FP4 test case below
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
