// Builds the plan (formats.md §3-4, §7-9) from headers and config.json. Every rule is decided
// here once, so the graph only moves bytes and the dry run shows exactly what will happen.
#include "pipeline/plan/plan.h"

#include <fcntl.h>
#include <algorithm>
#include <map>
#include <regex>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "io/error.h"
#include "io/file.h"
#include "io/zstd_source.h"
#include "kernels/numeric.h"
#include "pipeline/plan/fnmatch.h"
#include "pipeline/plan/loader_support.h"
#include "pipeline/plan/plan_rotation.h"
#include "pipeline/plan/quant_config.h"
#include "pipeline/plan/templates.h"

namespace shardquant {
namespace {

using json = nlohmann::ordered_json;

std::string shape_str(std::span<const uint64_t> s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

uint64_t ceil_div(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}

uint64_t numel(std::span<const uint64_t> s) {
  uint64_t n = 1;
  for (uint64_t d : s) n *= d;
  return n;
}

uint64_t bytes_of(dtype t, std::span<const uint64_t> s) {
  return numel(s) * bits(t) / 8;
}

std::string module_of(std::string_view name) {
  const size_t dot = name.rfind('.');
  return dot == std::string_view::npos ? std::string(name) : std::string(name.substr(0, dot));
}

bool is_16_32_float(dtype t) {
  return is_quantizable_source(t);
}

// Where a tensor lives.
struct loc {
  uint32_t shard;
  const tensor_entry* entry;
};

source_ref make_ref(const source_checkpoint& src, loc l) {
  const auto& h = src.shards[l.shard].header;
  return source_ref{l.shard,
                    l.entry->name,
                    l.entry->type,
                    l.entry->shape,
                    h.data_start + l.entry->begin,
                    l.entry->byte_size()};
}

// A source tensor after recovery: what the converters and §4 see.
struct stage1 {
  loc main;
  std::string name;  // post-recovery name (CT: M.weight)
  dtype type;        // F32 when recovered
  std::vector<uint64_t> shape;
  recovery_params recovery;
  bool keep = false;  // §8 keep-original weight
};

// ---------------------------------------------------------------------------------------------
// compressed-tensors config groups (§7.3.1)

struct ct_group {
  std::string name;
  std::vector<std::string> targets;
  json weights;
  std::string format;
};

bool python_re_match(const std::string& re, const std::string& s) {
  try {
    std::regex r(re, std::regex::ECMAScript);
    return std::regex_search(s, r, std::regex_constants::match_continuous);
  } catch (const std::regex_error&) {
    return false;
  }
}

const ct_group* ct_group_for(const std::vector<ct_group>& groups, const std::string& module) {
  for (int level = 1; level <= 3; ++level) {
    for (const auto& g : groups) {
      for (const auto& t : g.targets) {
        bool hit = false;
        if (level == 1) hit = t == module;
        if (level == 2) hit = t.starts_with("re:") && python_re_match(t.substr(3), module);
        if (level == 3)
          hit = !t.starts_with("re:") && t.find('.') == std::string::npos && !t.empty() &&
                t[0] >= 'A' && t[0] <= 'Z';
        if (hit) return &g;
      }
    }
  }
  return nullptr;
}

class planner {
 public:
  planner(source_checkpoint src, plan_options opt) {
    p_.source = std::move(src);
    p_.model_dir = p_.source.dir;
    p_.options = std::move(opt);
    config_path_ = (p_.model_dir / "config.json").string();
  }

  plan run() {
    facts();
    index_tensors();
    if (method_ == "fp8") plan_fp8_recovery();
    if (method_ == "compressed-tensors") plan_ct_recovery();
    plan_keep_original();
    for (uint32_t s = 0; s < p_.source.shards.size(); ++s) plan_shard(s);
    resolve_exclude();
    if (!p_.options.rotation.empty() || !p_.options.rotation_config_file.empty())
      plan_rotations(p_);
    layouts();
    totals();
    loader_notes();
    return std::move(p_);
  }

 private:
  plan p_;
  std::string config_path_;
  std::string method_;
  std::vector<glob_pattern> exclude_;
  std::vector<std::pair<glob_pattern, quant_scheme>> overrides_;
  std::unordered_map<std::string, loc> where_;
  std::set<std::pair<uint32_t, std::string>> consumed_;  // (shard, name) never written as is
  std::map<std::pair<uint32_t, std::string>, stage1> recovered_;  // by main tensor
  std::set<std::string> excluded_modules_;
  std::set<std::string> kept_modules_;
  // keep-original scale tensor (shard,name) -> weight it belongs to
  std::map<std::pair<uint32_t, std::string>, std::pair<uint32_t, std::string>> kept_scales_;

  [[noreturn]] void fail_tensor(uint32_t shard, const tensor_entry& e, const std::string& m) {
    const auto& h = p_.source.shards[shard].header;
    throw input_error(p_.source.shards[shard].path.string(), e.name, h.data_start + e.begin, m);
  }
  [[noreturn]] void fail_config(const std::string& m) {
    throw input_error(config_path_, "", input_error::no_offset, m);
  }

  void facts() {
    const json c = p_.source.config_json();
    model_facts& f = p_.facts;
    if (c.contains("model_type") && c["model_type"].is_string())
      f.model_type = c["model_type"].get<std::string>();
    else if (c.contains("architectures") && c["architectures"].is_array() &&
             !c["architectures"].empty() && c["architectures"][0].is_string())
      f.model_type = c["architectures"][0].get<std::string>();
    f.model_dtype = p_.source.model_dtype;
    if (p_.source.quantization) f.source_quant_config = p_.source.quantization->json();
    if (!f.source_quant_config.is_null()) {
      const json& q = f.source_quant_config;
      if (!q.contains("quant_method") || !q["quant_method"].is_string())
        fail_config("quantization_config has no quant_method string");
      f.quant_method = q["quant_method"].get<std::string>();
      if (f.quant_method != "fp8" && f.quant_method != "compressed-tensors")
        fail_config("source quant_method '" + f.quant_method +
                    "' is not supported (only unquantized, \"fp8\" block and "
                    "\"compressed-tensors\" sources can be re-quantized)");
    }
    method_ = f.quant_method;

    const model_template* t = find_template(f.model_type);
    if (p_.options.exclude) {
      f.exclude_globs = *p_.options.exclude;
    } else {
      const model_template& tt = template_or_throw(f.model_type);
      f.exclude_globs = tt.exclude;
      f.exclude_from_template = true;
    }
    for (const auto& g : f.exclude_globs) exclude_.emplace_back(g);
    if (p_.options.kv.any()) kv_attention();
    for (const auto& o : p_.options.layer_schemes)
      overrides_.emplace_back(glob_pattern(o.glob), o.scheme);
    p_.converters = p_.options.converters;
    if (t && p_.options.use_template_converters)
      for (auto& c2 : t->converters()) p_.converters.push_back(std::move(c2));
    if (p_.options.keep_excluded_as_original && method_ == "compressed-tensors") {
      const json& q = p_.facts.source_quant_config;
      const std::string fmt =
          q.contains("format") && q["format"].is_string() ? q["format"].get<std::string>() : "";
      // kernels/FORMATS-fp4-sources.md §4: Quark keeps mxfp4-pack-quantized layers (U8 bytes,
      // layer_quant_config = its MXFP4 scheme); every other format fails in its config step.
      if (fmt == "mxfp4-pack-quantized")
        fail_config(
            "--keep-excluded-as-original with an mxfp4-pack-quantized source is not supported "
            "(Quark keeps the U8 bytes and writes its MXFP4 scheme into layer_quant_config; "
            "shardquant's config writer has no such entry yet)");
      fail_config(
          "--keep-excluded-as-original with a compressed-tensors source is not in the first "
          "version (Quark 0.13 fails in its config step: the source has no activation_scheme "
          "'dynamic' / weight_block_size)");
    }
  }

  void index_tensors() {
    for (uint32_t s = 0; s < p_.source.shards.size(); ++s) {
      for (const auto& e : p_.source.shards[s].header.tensors) {
        auto [it, fresh] = where_.emplace(e.name, loc{s, &e});
        if (!fresh)
          fail_tensor(s, e,
                      "tensor also present in " + p_.source.shards[it->second.shard].path.string());
      }
    }
  }

  const loc* find(const std::string& name) const {
    auto it = where_.find(name);
    return it == where_.end() ? nullptr : &it->second;
  }
  const tensor_entry* find_in(uint32_t shard, const std::string& name) const {
    const loc* l = find(name);
    return l && l->shard == shard ? l->entry : nullptr;
  }

  bool is_excluded(const std::string& module) const { return fnmatch_any(module, exclude_); }

  // ----- §7.2 FP8 block sources -----
  void plan_fp8_recovery() {
    const json& q = p_.facts.source_quant_config;
    uint64_t bh = 128, bw = 128;
    if (q.contains("weight_block_size")) {
      const auto& w = q["weight_block_size"];
      if (!w.is_array() || w.size() != 2 || !w[0].is_number_unsigned() ||
          !w[1].is_number_unsigned() || w[0].get<uint64_t>() == 0 || w[1].get<uint64_t>() == 0)
        fail_config("weight_block_size must be two positive integers");
      bh = w[0].get<uint64_t>();
      bw = w[1].get<uint64_t>();
    }
    std::vector<std::pair<glob_pattern, uint64_t>> preshard;
    for (const auto& [g, r] : p_.options.presharded) preshard.emplace_back(glob_pattern(g), r);
    if (q.contains("presharded_weights") && q["presharded_weights"].is_object())
      for (auto it = q["presharded_weights"].begin(); it != q["presharded_weights"].end(); ++it) {
        if (!it.value().is_number_unsigned() || it.value().get<uint64_t>() == 0)
          fail_config("presharded_weights['" + it.key() + "'] must be a positive integer");
        preshard.emplace_back(glob_pattern(it.key()), it.value().get<uint64_t>());
      }

    for (uint32_t s = 0; s < p_.source.shards.size(); ++s) {
      for (const auto& e : p_.source.shards[s].header.tensors) {
        // Scale tensors without a usable base.
        if (e.name.ends_with("_scale_inv")) {
          const std::string base = e.name.substr(0, e.name.size() - 10);
          const loc* b = find(base);
          if (!b) {
            p_.warnings.push_back("dropping '" + e.name + "': no tensor '" + base + "'");
            consume(s, e, "scale without a base tensor (dropped, as Quark)");
          } else if (!passes_name_rule(base) || b->entry->shape.size() < 2) {
            fail_tensor(s, e,
                        "block-FP8 scale of '" + base +
                            "', which is not a rank >= 2 Linear weight (name rule of §4.1)");
          }
          continue;
        }
        if (!passes_name_rule(e.name) || e.shape.size() < 2) continue;
        const std::string module = module_of(e.name);
        const tensor_entry* sib = find_in(s, module + ".scale");
        // Case 1: MXFP4 expert pattern.
        if (sib && (e.type == dtype::i8 || e.type == dtype::u8) && sib->type == dtype::f8_e8m0 &&
            sib->shape.size() == e.shape.size() && !e.shape.empty() &&
            std::equal(e.shape.begin(), e.shape.end() - 1, sib->shape.begin()) &&
            e.shape.back() == 16 * sib->shape.back()) {
          plan_dsv4_mxfp4(s, e, *sib);
          continue;
        }
        const std::string inv = e.name + "_scale_inv";
        const tensor_entry* same = find_in(s, inv);
        const loc* any = find(inv);
        loc scale{};
        bool sibling = false;
        if (same) {
          scale = loc{s, same};
        } else if (sib) {
          scale = loc{s, sib};
          sibling = true;
        } else if (any) {
          scale = *any;
        } else {
          continue;  // case 5: not quantized in the source
        }
        stage1 st;
        st.main = loc{s, &e};
        st.name = e.name;
        st.type = dtype::f32;
        st.shape = e.shape;
        recovery_params& r = st.recovery;
        r.kind = recovery_kind::fp8_block;
        r.recovered_shape = e.shape;
        r.scale = make_ref(p_.source, scale);
        r.block_rows = bh;
        r.block_cols = bw;
        if (e.type != dtype::f8_e4m3 && e.type != dtype::f8_e5m2)
          fail_tensor(s, e,
                      "has a block-FP8 scale but dtype " + std::string(name(e.type)) +
                          " (expected F8_E4M3 or F8_E5M2)");
        if (e.shape.size() != 2)
          fail_tensor(s, e, "block-FP8 weights must be rank 2, got " + shape_str(e.shape));
        const tensor_entry& se = *scale.entry;
        if (se.type != dtype::f32 && se.type != dtype::bf16 && se.type != dtype::f16 &&
            se.type != dtype::f8_e8m0)
          fail_tensor(scale.shard, se,
                      "block-FP8 scale dtype " + std::string(name(se.type)) +
                          " (expected F32, BF16, F16 or F8_E8M0)");
        const uint64_t R = e.shape[0], C = e.shape[1];
        uint64_t cr = R;
        if (!sibling)
          for (const auto& [g, rows] : preshard)
            if (g.matches(e.name)) {
              cr = rows;
              break;
            }
        if (cr == 0 || R % cr != 0)
          fail_tensor(s, e,
                      "presharded chunk rows " + std::to_string(cr) + " do not divide " +
                          std::to_string(R) + " rows");
        r.chunk_rows = cr;
        const uint64_t nb = ceil_div(cr, bh);
        const std::vector<uint64_t> want{(R / cr) * nb, ceil_div(C, bw)};
        if (se.shape != want)
          fail_tensor(scale.shard, se,
                      "block-FP8 scale shape " + shape_str(se.shape) + " does not fit weight '" +
                          e.name + "' " + shape_str(e.shape) + " with blocks [" +
                          std::to_string(bh) + ", " + std::to_string(bw) + "] (expected " +
                          shape_str(want) + ")");
        consume(scale.shard, se, "block-FP8 scale of " + e.name);
        recovered_[{s, e.name}] = std::move(st);
      }
    }
  }

  // Case 1 of §7.2.1: DeepSeek-V4 MXFP4 experts (kernels/FORMATS-fp4-sources.md §2). Quark
  // dequantizes them with dq_uint8_mxfp4_to_half into the model dtype, which must be BF16 or F16.
  void plan_dsv4_mxfp4(uint32_t s, const tensor_entry& e, const tensor_entry& sc) {
    const dtype model = p_.facts.model_dtype;
    if (model != dtype::bf16 && model != dtype::f16)
      fail_tensor(s, e,
                  "MXFP4 source experts dequantize to the model dtype, which must be BF16 or F16 "
                  "(got " +
                      std::string(name(model)) +
                      "; Quark's dq_uint8_mxfp4_to_half fails with 'Wrong output dtype')");
    stage1 st;
    st.main = loc{s, &e};
    st.name = e.name;
    st.type = model;
    st.shape = e.shape;
    st.shape.back() *= 2;
    recovery_params& r = st.recovery;
    r.kind = recovery_kind::fp4_packed;
    r.fp4_layout = ct_layout::mxfp4_dsv4;
    r.recovered_shape = st.shape;
    r.recovered_type = model;
    r.group_size = 32;
    r.strategy = ct_strategy::group;
    r.scale = make_ref(p_.source, loc{s, &sc});
    consume(s, sc, "MXFP4 scale of " + e.name);
    recovered_[{s, e.name}] = std::move(st);
  }

  void consume(uint32_t shard, const tensor_entry& e, std::string reason) {
    if (!consumed_.insert({shard, e.name}).second) return;
    p_.consumed.push_back({make_ref(p_.source, loc{shard, &e}), std::move(reason)});
  }

  // ----- §7.3 compressed-tensors -----
  void plan_ct_recovery() {
    const json& q = p_.facts.source_quant_config;
    std::vector<ct_group> groups;
    const std::string top_format =
        q.contains("format") && q["format"].is_string() ? q["format"].get<std::string>() : "";
    if (q.contains("config_groups") && q["config_groups"].is_object())
      for (auto it = q["config_groups"].begin(); it != q["config_groups"].end(); ++it) {
        ct_group g;
        g.name = it.key();
        const json& v = it.value();
        if (v.contains("targets") && v["targets"].is_array())
          for (const auto& t : v["targets"])
            if (t.is_string()) g.targets.push_back(t.get<std::string>());
        g.weights = v.contains("weights") ? v["weights"] : json();
        g.format = v.contains("format") && v["format"].is_string() ? v["format"].get<std::string>()
                                                                   : top_format;
        groups.push_back(std::move(g));
      }
    for (uint32_t s = 0; s < p_.source.shards.size(); ++s) {
      for (const auto& e : p_.source.shards[s].header.tensors) {
        if (!e.name.ends_with(".weight_scale")) continue;
        const std::string module = e.name.substr(0, e.name.size() - 13);
        const ct_group* g = ct_group_for(groups, module);
        if (!g)
          fail_tensor(s, e, "no compressed-tensors config group targets module '" + module + "'");
        plan_ct_module(s, e, module, *g);
      }
    }
  }

  // A compressed-tensors companion of the module whose `weight_scale` is `scale_e` (shard s):
  // null when absent; an error when it lives in another shard (formats.md §7.3.1).
  const tensor_entry* ct_companion(uint32_t s, const tensor_entry& scale_e,
                                   const std::string& name) {
    const loc* l = find(name);
    if (!l) return nullptr;
    if (l->shard != s)
      fail_tensor(l->shard, *l->entry,
                  "compressed-tensors companion is not in the shard of '" + scale_e.name + "' (" +
                      p_.source.shards[s].rel_path + ")");
    return l->entry;
  }

  void plan_ct_module(uint32_t s, const tensor_entry& scale_e, const std::string& module,
                      const ct_group& g) {
    const json& w = g.weights;
    auto get_u = [&](const char* k, uint64_t d) {
      return w.contains(k) && w[k].is_number_unsigned() ? w[k].get<uint64_t>() : d;
    };
    auto get_s = [&](const char* k, const std::string& d) {
      return w.contains(k) && w[k].is_string() ? w[k].get<std::string>() : d;
    };
    if (g.format == "nvfp4-pack-quantized" || g.format == "mxfp4-pack-quantized") {
      plan_ct_fp4_module(s, scale_e, module, g);
      return;
    }
    const uint32_t nbits = static_cast<uint32_t>(get_u("num_bits", 8));
    const std::string type = get_s("type", "int");
    const bool symmetric =
        !(w.contains("symmetric") && w["symmetric"].is_boolean()) || w["symmetric"].get<bool>();
    const std::string strategy = get_s("strategy", "tensor");
    const std::string actorder = get_s("actorder", "");
    stage1 st;
    recovery_params& r = st.recovery;
    r.num_bits = nbits;
    r.symmetric = symmetric;
    r.group_size = get_u("group_size", 0);
    if (strategy == "tensor")
      r.strategy = ct_strategy::tensor;
    else if (strategy == "channel")
      r.strategy = ct_strategy::channel;
    else if (strategy == "group")
      r.strategy = ct_strategy::group;
    else if (strategy == "block")
      r.strategy = ct_strategy::block;
    else
      fail_tensor(s, scale_e,
                  "compressed-tensors strategy '" + strategy + "' is not in the first version");
    if (r.strategy == ct_strategy::group && r.group_size == 0)
      fail_tensor(s, scale_e, "group strategy without group_size");
    if (r.strategy == ct_strategy::block) {
      if (!w.contains("block_structure") || !w["block_structure"].is_array() ||
          w["block_structure"].size() != 2)
        fail_tensor(s, scale_e, "block strategy without a [rows, cols] block_structure");
      r.block_rows = w["block_structure"][0].get<uint64_t>();
      r.block_cols = w["block_structure"][1].get<uint64_t>();
    }
    r.scale = make_ref(p_.source, loc{s, &scale_e});
    auto companion = [&](const std::string& suffix) {
      return ct_companion(s, scale_e, module + suffix);
    };
    const tensor_entry* zp = companion(".weight_zero_point");
    const tensor_entry* gidx = companion(".weight_g_idx");
    const tensor_entry* gscale = companion(".weight_global_scale");
    if (zp && symmetric) fail_tensor(s, *zp, "stored zero point with symmetric: true");
    if (!symmetric && r.strategy == ct_strategy::tensor)
      fail_tensor(s, scale_e,
                  "asymmetric per-tensor compressed-tensors weights are not in the first version");
    if (gscale)
      fail_tensor(
          s, *gscale,
          "compressed-tensors weight_global_scale (" + g.format + "): not in the first version");
    const tensor_entry* main = nullptr;
    const std::string& fmt = g.format;
    if (fmt == "pack-quantized" && type == "int" && (nbits == 4 || nbits == 8)) {
      r.kind = recovery_kind::ct_packed;
      main = companion(".weight_packed");
      const tensor_entry* ws = companion(".weight_shape");
      if (!main) fail_tensor(s, scale_e, "pack-quantized module without weight_packed");
      if (!ws) fail_tensor(s, *main, "pack-quantized module without weight_shape");
      if (main->type != dtype::i32) fail_tensor(s, *main, "weight_packed must be I32");
      r.recovered_shape = read_weight_shape(s, *ws);
      if (r.recovered_shape.size() != 2)
        fail_tensor(s, *ws, "weight_shape must hold a rank-2 shape");
      const std::vector<uint64_t> want{r.recovered_shape[0],
                                       ceil_div(r.recovered_shape[1] * nbits, 32)};
      if (main->shape != want)
        fail_tensor(s, *main,
                    "weight_packed shape " + shape_str(main->shape) + " does not match logical " +
                        shape_str(r.recovered_shape) + " (expected " + shape_str(want) + ")");
      consume(s, *ws, "compressed-tensors shape of " + module);
    } else if ((fmt == "float-quantized" || fmt == "naive-quantized") && type == "float" &&
               nbits == 8) {
      r.kind = recovery_kind::ct_float;
      main = companion(".weight");
      if (!main) fail_tensor(s, scale_e, "float-quantized module without weight");
      if (main->type != dtype::f8_e4m3)
        fail_tensor(s, *main, "float-quantized weight must be F8_E4M3");
      r.recovered_shape = main->shape;
    } else if ((fmt == "naive-quantized" || fmt == "int-quantized") && type == "int") {
      r.kind = recovery_kind::ct_int;
      main = companion(".weight");
      if (!main) fail_tensor(s, scale_e, "int-quantized module without weight");
      if (main->type != dtype::i8) fail_tensor(s, *main, "int-quantized weight must be I8");
      r.recovered_shape = main->shape;
    } else {
      fail_tensor(s, scale_e,
                  "compressed-tensors format '" + fmt + "' (type " + type + ", " +
                      std::to_string(nbits) + " bits): not in the first version");
    }
    if (scale_e.type != dtype::f32 && scale_e.type != dtype::bf16 && scale_e.type != dtype::f16)
      fail_tensor(s, scale_e, "compressed-tensors scale must be F32, BF16 or F16");
    const auto& L = r.recovered_shape;
    if (L.size() != 2) fail_tensor(s, *main, "compressed-tensors weights must be rank 2");
    // Scale shape by strategy.
    std::vector<std::vector<uint64_t>> ok;
    switch (r.strategy) {
      case ct_strategy::tensor:
        ok = {{1}, {}};
        break;
      case ct_strategy::channel:
        ok = {{L[0], 1}};
        break;
      case ct_strategy::group:
        ok = {{L[0], ceil_div(L[1], r.group_size)}};
        break;
      case ct_strategy::block:
        ok = {{ceil_div(L[0], r.block_rows), ceil_div(L[1], r.block_cols)}};
        break;
    }
    if (std::find(ok.begin(), ok.end(), scale_e.shape) == ok.end())
      fail_tensor(s, scale_e,
                  "scale shape " + shape_str(scale_e.shape) + " does not fit weight " +
                      shape_str(L) + " with strategy " + strategy);
    if (zp) {
      r.zero_point = make_ref(p_.source, loc{s, zp});
      consume(s, *zp, "compressed-tensors zero point of " + module);
    } else if (!symmetric && r.kind == recovery_kind::ct_packed) {
      fail_tensor(s, scale_e, "asymmetric module without weight_zero_point");
    }
    if (gidx) {
      if (actorder != "group")
        p_.warnings.push_back(module + ": weight_g_idx present; used for group lookup");
      r.g_idx = make_ref(p_.source, loc{s, gidx});
      consume(s, *gidx, "compressed-tensors g_idx of " + module);
    }
    consume(s, scale_e, "compressed-tensors scale of " + module);
    st.main = loc{s, main};
    st.name = module + ".weight";
    st.type = dtype::f32;
    st.shape = r.recovered_shape;
    recovered_[{s, main->name}] = std::move(st);
  }

  // compressed-tensors nvfp4-/mxfp4-pack-quantized (kernels/FORMATS-fp4-sources.md §1): Quark
  // runs compressed-tensors 0.20's NVFP4PackedCompressor / MXFP4PackedCompressor.decompress.
  void plan_ct_fp4_module(uint32_t s, const tensor_entry& scale_e, const std::string& module,
                          const ct_group& g) {
    const bool nv = g.format == "nvfp4-pack-quantized";
    const json& w = g.weights;
    const uint64_t gs = nv ? 16 : 32;
    if (w.contains("num_bits") && !(w["num_bits"].is_number_unsigned() && w["num_bits"] == 4))
      fail_tensor(s, scale_e, g.format + " needs num_bits 4");
    if (w.contains("type") && w["type"] != "float")
      fail_tensor(s, scale_e, g.format + " needs type float");
    if (w.contains("group_size") &&
        !(w["group_size"].is_number_unsigned() && w["group_size"] == gs))
      fail_tensor(s, scale_e, g.format + " needs group_size " + std::to_string(gs));
    if (w.contains("symmetric") && w["symmetric"].is_boolean() && !w["symmetric"].get<bool>())
      fail_tensor(s, scale_e, g.format + ": asymmetric FP4 weights are not supported");
    auto companion = [&](const std::string& suffix) {
      return ct_companion(s, scale_e, module + suffix);
    };
    const tensor_entry* main = companion(".weight_packed");
    if (!main) fail_tensor(s, scale_e, g.format + " module without weight_packed");
    if (main->type != dtype::u8)
      fail_tensor(s, *main,
                  g.format + " weight_packed must be U8, got " + std::string(name(main->type)));
    if (main->shape.size() != 2)
      fail_tensor(s, *main,
                  g.format + " weight_packed must be rank 2, got " + shape_str(main->shape));
    for (const char* bad : {".weight_zero_point", ".weight_g_idx"})
      if (const tensor_entry* t = companion(bad))
        fail_tensor(s, *t,
                    std::string("unexpected ") + (bad + 1) + " in a " + g.format + " module");
    const uint64_t out = main->shape[0], in = main->shape[1] * 2;
    if (const tensor_entry* ws = companion(".weight_shape")) {
      const std::vector<uint64_t> logical = read_weight_shape(s, *ws);
      if (logical != std::vector<uint64_t>{out, in})
        fail_tensor(s, *ws,
                    "weight_shape " + shape_str(logical) + " does not match weight_packed " +
                        shape_str(main->shape) + " (expected [" + std::to_string(out) + ", " +
                        std::to_string(in) + "])");
      consume(s, *ws, "compressed-tensors shape of " + module);
    }
    if (in % gs != 0)
      fail_tensor(s, *main,
                  std::to_string(in) + " columns are not a multiple of the group size " +
                      std::to_string(gs) +
                      " (compressed-tensors: 'tensor column shape must be divisble by the given "
                      "group_size')");
    const bool e8m0 = scale_e.type == dtype::u8 || scale_e.type == dtype::f8_e8m0;
    const bool ok_scale = nv ? (scale_e.type == dtype::f8_e4m3 || scale_e.type == dtype::f32 ||
                                scale_e.type == dtype::bf16 || scale_e.type == dtype::f16)
                             : e8m0;
    if (!ok_scale)
      fail_tensor(s, scale_e,
                  g.format + " scale dtype " + std::string(name(scale_e.type)) +
                      (nv ? " (expected F8_E4M3, F32, BF16 or F16)" : " (expected U8 or F8_E8M0)"));
    const std::vector<uint64_t> want{out, in / gs};
    if (scale_e.shape != want)
      fail_tensor(s, scale_e,
                  "scale shape " + shape_str(scale_e.shape) + " does not fit weight_packed " +
                      shape_str(main->shape) + " (expected " + shape_str(want) + ")");
    stage1 st;
    recovery_params& r = st.recovery;
    r.kind = recovery_kind::fp4_packed;
    r.fp4_layout = nv ? ct_layout::nvfp4_packed : ct_layout::mxfp4_packed;
    r.strategy = ct_strategy::group;
    r.group_size = gs;
    r.recovered_shape = {out, in};
    r.recovered_type = dtype::bf16;
    r.scale = make_ref(p_.source, loc{s, &scale_e});
    const tensor_entry* gsc = companion(".weight_global_scale");
    if (nv) {
      if (!gsc) fail_tensor(s, scale_e, "nvfp4-pack-quantized module without weight_global_scale");
      r.global_scale = read_global_scale(s, *gsc);
      consume(s, *gsc, "compressed-tensors global scale of " + module);
    } else if (gsc) {
      fail_tensor(s, *gsc, "unexpected weight_global_scale in an mxfp4-pack-quantized module");
    }
    consume(s, scale_e, "compressed-tensors scale of " + module);
    st.main = loc{s, main};
    st.name = module + ".weight";
    st.type = dtype::bf16;
    st.shape = r.recovered_shape;
    recovered_[{s, main->name}] = std::move(st);
  }

  // The nvfp4 global scale: one positive finite F32 of shape [1] (what compressed-tensors
  // writes) or [] (the bf16 / F32 division gives the same bytes, checked with torch 2.11 on CPU).
  float read_global_scale(uint32_t s, const tensor_entry& e) {
    if (e.type != dtype::f32 || (e.shape != std::vector<uint64_t>{1} && !e.shape.empty()))
      fail_tensor(s, e,
                  "weight_global_scale must be F32 [1], got " + std::string(name(e.type)) + " " +
                      shape_str(e.shape));
    float v = 0;
    const auto& sh = p_.source.shards[s];
    if (sh.compressed) {
      zstd_source::open(sh.path, true)
          ->read_now(sh.header.data_start + e.begin, sizeof v, reinterpret_cast<std::byte*>(&v),
                     false, e.name);
    } else {
      file_handle f = file_handle::open(sh.path, O_RDONLY);
      pread_all(f.get(), std::as_writable_bytes(std::span(&v, 1)), sh.header.data_start + e.begin,
                sh.path.string());
    }
    if (!(v > 0.0f) || !is_finite(v))
      fail_tensor(s, e,
                  "weight_global_scale is " + std::to_string(v) + " (must be positive and finite)");
    return v;
  }

  std::vector<uint64_t> read_weight_shape(uint32_t s, const tensor_entry& e) {
    if (e.type != dtype::i64 || e.shape.size() != 1 || e.shape[0] > 8)
      fail_tensor(s, e, "weight_shape must be a short I64 vector");
    std::vector<int64_t> v(e.shape[0]);
    const auto& sh = p_.source.shards[s];
    if (sh.compressed) {
      zstd_source::open(sh.path, true)
          ->read_now(sh.header.data_start + e.begin, v.size() * sizeof(int64_t),
                     reinterpret_cast<std::byte*>(v.data()), false, e.name);
    } else {
      file_handle f = file_handle::open(sh.path, O_RDONLY);
      pread_all(f.get(), std::as_writable_bytes(std::span(v)), sh.header.data_start + e.begin,
                sh.path.string());
    }
    std::vector<uint64_t> out;
    for (int64_t x : v) {
      if (x <= 0) fail_tensor(s, e, "weight_shape holds a non-positive dimension");
      out.push_back(static_cast<uint64_t>(x));
    }
    return out;
  }

  // ----- §8 keep-original -----
  void plan_keep_original() {
    if (!p_.options.keep_excluded_as_original || method_ != "fp8") return;
    // §8.2 prerequisites, checked before anything is written.
    (void)fp8_keep_params_of(p_.facts.source_quant_config, config_path_);
    for (uint32_t s = 0; s < p_.source.shards.size(); ++s) {
      for (const auto& e : p_.source.shards[s].header.tensors) {
        if (!passes_name_rule(e.name) || e.shape.size() < 2) continue;
        const std::string module = module_of(e.name);
        if (!is_excluded(module) || is_16_32_float(e.type)) continue;
        auto it = recovered_.find({s, e.name});
        if (it == recovered_.end() || !it->second.recovery.scale)
          fail_tensor(s, e,
                      "--keep-excluded-as-original: excluded " + std::string(name(e.type)) +
                          " weight has no scale (_scale_inv or sibling .scale)");
        if (it->second.recovery.kind == recovery_kind::fp4_packed)
          fail_tensor(s, e,
                      "--keep-excluded-as-original: keeping MXFP4 source experts is not supported "
                      "(Quark keeps the bytes as U8 with a renamed F8_E8M0 '_scale' and describes "
                      "the layer as MXFP4 in layer_quant_config; shardquant's config writer has no "
                      "such entry yet)");
        it->second.keep = true;
        const source_ref& sc = *it->second.recovery.scale;
        // The scale is written (renamed) instead of consumed.
        consumed_.erase({sc.shard, sc.name});
        std::erase_if(p_.consumed, [&](const consumed_tensor& c) {
          return c.source.shard == sc.shard && c.source.name == sc.name;
        });
        consumed_.insert({sc.shard, sc.name});  // not planned on its own
        kept_scales_[{sc.shard, sc.name}] = {s, e.name};
        kept_modules_.insert(module);
      }
    }
  }

  // ----- per shard -----
  void plan_shard(uint32_t s) {
    const auto& h = p_.source.shards[s].header;
    for (const auto& e : h.tensors) {
      if (consumed_.count({s, e.name})) continue;
      stage1 st;
      auto it = recovered_.find({s, e.name});
      if (it != recovered_.end()) {
        st = it->second;
      } else {
        st.main = loc{s, &e};
        st.name = e.name;
        st.type = e.type;
        st.shape = e.shape;
      }
      plan_item item;
      item.source = make_ref(p_.source, st.main);
      item.recovery = st.recovery;
      if (st.keep) item.recovery = recovery_params{};  // kept bytes are not recovered
      std::vector<converter_output> outs;
      if (auto ci = match_converter(p_.converters, st.name)) {
        item.converter = *ci;
        try {
          outs = apply_converter(p_.converters[*ci], st.name, st.shape);
        } catch (const input_error& err) {
          fail_tensor(s, e, err.message());
        }
      } else {
        outs.push_back({st.name, st.shape, converter_slice::whole()});
      }
      const dtype in_type = st.keep ? e.type : st.type;
      const bool recovered = st.recovery.kind != recovery_kind::none && !st.keep;
      for (auto& o : outs) item.parts.push_back(plan_part_for(s, e, st, o, in_type, recovered));
      p_.items.push_back(std::move(item));
      if (st.keep) plan_kept_scale(s, e, st);
    }
  }

  plan_part plan_part_for(uint32_t s, const tensor_entry& e, const stage1& st,
                          const converter_output& o, dtype in_type, bool recovered) {
    plan_part pt;
    pt.name = o.name;
    pt.slice = o.slice;
    pt.input_type = in_type;
    pt.input_shape = o.shape;
    pt.input_bytes = bytes_of(in_type, o.shape);
    pt.output_shard = s;
    const bool name_ok = passes_name_rule(o.name);
    const bool rank_ok = o.shape.size() >= 2;
    const std::string module = module_of(o.name);
    const bool excluded = name_ok && rank_ok && is_excluded(module);
    if (excluded && st.main.entry != nullptr && o.name != e.name) excluded_modules_.insert(module);
    if (st.keep) {
      pt.action = tensor_action::keep_original;
      pt.outputs.push_back({o.name, e.type, o.shape, bytes_of(e.type, o.shape), 0});
      return pt;
    }
    if (name_ok && rank_ok && !excluded) {
      quant_scheme sch = p_.options.scheme;
      for (const auto& [g, sc] : overrides_)
        if (g.matches(module)) {
          sch = sc;
          break;
        }
      if (!is_16_32_float(in_type))
        fail_tensor(s, e,
                    "'" + o.name + "' would be quantized but has dtype " +
                        std::string(name(in_type)) +
                        " (only F16, BF16 and F32 weights can be quantized; exclude it or fix the "
                        "source quantization_config)");
      std::string warning;
      const std::string msg = check_shape(sch.kernel(), o.shape, &warning, sch.name());
      if (!msg.empty()) fail_tensor(s, e, "'" + o.name + "' " + shape_str(o.shape) + ": " + msg);
      if (!warning.empty()) {
        pt.warning = o.name + ": " + warning;
        p_.warnings.push_back(pt.warning);
      }
      pt.action = recovered ? tensor_action::recover_quantize : tensor_action::quantize;
      pt.scheme = sch;
      const bool importer = p_.options.layout == output_layout::quark_importer;
      if (importer) {
        const std::string why = importer_layout_error(sch.kernel(), o.shape);
        if (!why.empty()) fail_tensor(s, e, "'" + o.name + "' " + shape_str(o.shape) + ": " + why);
      }
      // amdfp4 stores its scale in the dtype the kernel sees (the recovered F32 or the source's).
      for (auto& ot : importer ? importer_output_tensors(sch.kernel(), o.shape)
                               : output_tensors(sch.kernel(), o.shape, in_type))
        pt.outputs.push_back({o.name + ot.suffix, ot.type, ot.shape, ot.byte_size(), 0});
      return pt;
    }
    // Pass-through and the cast rule of §4.3.
    const dtype model = p_.facts.model_dtype;
    const bool excluded_float_source = excluded && is_16_32_float(e.type);
    const bool cast = name_ok && is_float(in_type) && !excluded_float_source && in_type != model;
    if (recovered) {
      pt.action = tensor_action::recover_cast;
      pt.cast_to = model;
    } else if (cast) {
      pt.action = tensor_action::cast;
      pt.cast_to = model;
    } else {
      pt.action = tensor_action::pass_through;
    }
    const dtype out = (recovered || cast) ? model : in_type;
    pt.outputs.push_back({o.name, out, o.shape, bytes_of(out, o.shape), 0});
    return pt;
  }

  // Quark's get_config kv / attention steps: its layer_quant_config gains the kv and q entries,
  // which (first match wins) can change a module's scheme, so they join the overrides here.
  void kv_attention() {
    layer_entries in;
    for (const auto& o : p_.options.layer_schemes) in.emplace_back(o.glob, o.scheme);
    kv_attention_plan k = plan_kv_attention(p_.options.kv, p_.facts.model_type, in,
                                            p_.facts.exclude_globs, p_.options.scheme);
    p_.options.layer_schemes.clear();
    for (auto& [g, s] : k.layers) p_.options.layer_schemes.push_back({g, s});
    p_.kv = std::move(k.exp);
    for (auto& w : k.warnings) p_.warnings.push_back(std::move(w));
  }

  // Schemes whose output will not run correctly in a loader with this run's options.
  void loader_notes() {
    const uint8_t opts = loader_options_of(p_.options.dynamic_activations, p_.options.layout);
    for (const auto& sc : p_.totals.per_scheme) {
      const std::string w = loader_warning(sc.scheme, opts);
      if (w.empty()) continue;
      p_.loader_notes.push_back(w);
      p_.warnings.push_back(w);
    }
  }

  void plan_kept_scale(uint32_t weight_shard, const tensor_entry& w, const stage1& st) {
    const source_ref& sc = *st.recovery.scale;
    plan_item item;
    item.source = sc;
    plan_part pt;
    pt.name = w.name + "_scale";
    pt.action = tensor_action::keep_original;
    pt.input_type = sc.type;
    pt.input_shape = sc.shape;
    pt.input_bytes = sc.bytes;
    pt.output_shard = weight_shard;
    pt.outputs.push_back({pt.name, sc.type, sc.shape, sc.bytes, 0});
    item.parts.push_back(std::move(pt));
    p_.items.push_back(std::move(item));
  }

  // ----- §6.4 -----
  void resolve_exclude() {
    for (const auto& sh : p_.source.shards)
      for (const auto& e : sh.header.tensors) {
        std::string n = e.name;
        if (method_ == "compressed-tensors" && n.ends_with(".weight_packed"))
          n = n.substr(0, n.size() - 7);
        if (passes_name_rule(n) && e.shape.size() >= 2 && is_excluded(module_of(n)))
          excluded_modules_.insert(module_of(n));
      }
    for (const auto& m : excluded_modules_)
      if (!kept_modules_.count(m)) p_.exclude_resolved.push_back(m);
    for (const auto& m : kept_modules_) p_.kept.push_back({m});
  }

  void layouts() {
    const size_t n = p_.source.shards.size();
    std::vector<std::vector<tensor_spec>> specs(n);
    std::vector<std::vector<uint32_t>> items(n);
    for (uint32_t i = 0; i < p_.items.size(); ++i)
      for (const auto& pt : p_.items[i].parts) {
        for (const auto& o : pt.outputs)
          specs[pt.output_shard].push_back({o.name, o.type, o.shape});
        auto& v = items[pt.output_shard];
        if (v.empty() || v.back() != i) v.push_back(i);
      }
    for (uint32_t s = 0; s < n; ++s) {
      output_shard_plan o;
      o.relative_path = p_.source.shards[s].rel_path;
      o.source_shard = s;
      o.layout = shard_layout::make(o.relative_path, std::move(specs[s]));
      o.items = std::move(items[s]);
      p_.shards.push_back(std::move(o));
    }
    for (auto& it : p_.items)
      for (auto& pt : it.parts)
        for (auto& o : pt.outputs)
          o.file_offset = *p_.shards[pt.output_shard].layout.file_offset(o.name);
  }

  void totals() {
    plan_totals& t = p_.totals;
    for (const auto& sh : p_.source.shards)
      for (const auto& e : sh.header.tensors) t.bytes_in += e.byte_size();
    auto order = [](const quant_scheme& a, const quant_scheme& b) { return a.before(b); };
    std::map<quant_scheme, scheme_count, decltype(order)> per(order);
    for (const auto& it : p_.items)
      for (const auto& pt : it.parts) {
        uint64_t out = 0;
        for (const auto& o : pt.outputs) out += o.bytes;
        t.bytes_out += out;
        switch (pt.action) {
          case tensor_action::quantize:
          case tensor_action::recover_quantize: {
            ++t.quantized;
            if (pt.action == tensor_action::recover_quantize) ++t.recovered;
            auto& c = per.try_emplace(*pt.scheme).first->second;
            c.scheme = *pt.scheme;
            ++c.tensors;
            c.bytes_in += pt.input_bytes;
            c.bytes_out += out;
            break;
          }
          case tensor_action::pass_through:
            ++t.passed;
            break;
          case tensor_action::cast:
            ++t.cast;
            break;
          case tensor_action::recover_cast:
            ++t.recovered;
            ++t.cast;
            break;
          case tensor_action::keep_original:
            ++t.kept;
            break;
        }
      }
    t.consumed = p_.consumed.size();
    for (auto& [k, v] : per) t.per_scheme.push_back(v);
  }
};

}  // namespace

std::string_view action_name(tensor_action a) noexcept {
  switch (a) {
    case tensor_action::quantize:
      return "quantize";
    case tensor_action::pass_through:
      return "pass";
    case tensor_action::cast:
      return "cast";
    case tensor_action::recover_quantize:
      return "recover+quantize";
    case tensor_action::recover_cast:
      return "recover+cast";
    case tensor_action::keep_original:
      return "keep-original";
  }
  return "?";
}

bool passes_name_rule(std::string_view n) noexcept {
  const size_t dot = n.rfind('.');
  if (dot == std::string_view::npos || n.substr(dot + 1) != "weight") return false;
  const std::string_view module = n.substr(0, dot);
  return !module.ends_with("norm") && module.find("embed") == std::string_view::npos;
}

nlohmann::ordered_json exported_quantization_config(const plan& p) {
  quant_config_inputs in;
  in.scheme = p.options.scheme;
  in.exclude = p.exclude_resolved;
  for (const auto& o : p.options.layer_schemes) in.overrides.emplace_back(o.glob, o.scheme);
  for (const auto& k : p.kept) in.kept_modules.push_back(k.module);
  in.exp.dynamic_activations = p.options.dynamic_activations;
  in.kv = p.kv;
  if (!p.kept.empty())
    in.keep =
        fp8_keep_params_of(p.facts.source_quant_config, (p.model_dir / "config.json").string());
  nlohmann::ordered_json q = quantization_config(in);
  if (p.rotation)
    q["algo_config"] = nlohmann::ordered_json::array({rotation_algo_config(*p.rotation)});
  return q;
}

plan make_plan(source_checkpoint source, plan_options options) {
  return planner(std::move(source), std::move(options)).run();
}

}  // namespace shardquant
