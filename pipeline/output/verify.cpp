// `shardquant verify`: plan rebuilt from the output config, structural checks (shards, index,
// config.json), then every tensor compared with its source one row range at a time.
#include "pipeline/output/verify.h"

#include <fcntl.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_reduce.h>
#include <tbb/partitioner.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/error.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "io/zstd_source.h"
#include "kernels/dequantize.h"
#include "kernels/element_cast.h"
#include "kernels/fp8.h"
#include "kernels/numeric.h"
#include "kernels/quantize.h"
#include "kernels/recover_tensors.h"
#include "pipeline/api.h"
#include "pipeline/plan/plan.h"
#include "pipeline/plan/quant_config.h"
#include "pipeline/plan/quant_spec.h"

namespace shardquant {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

constexpr uint64_t no_offset = input_error::no_offset;
constexpr const char* k_index_name = "model.safetensors.index.json";

uint64_t numel_of(const std::vector<uint64_t>& shape) {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

std::string shape_text(const std::vector<uint64_t>& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

// ---- the scheme a layer object of the output config describes ---------------------------------

// A built-in scheme whose layer object equals `layer`, else a custom spec rebuilt from its
// `weight` and `input_tensors` (quant_spec.h reads exactly the §6.3 objects it exports). A layer
// that matches only with its static input specs made dynamic (`--dynamic-activations`,
// apply_export_options) sets *dynamic.
std::optional<quant_scheme> scheme_of_layer(const json& layer, bool* dynamic) {
  const export_options dyn{.dynamic_activations = true};
  for (const scheme_info& s : all_schemes()) {
    if (layer_config(s.id) == layer) return quant_scheme(s.id);
    if (apply_export_options(layer_config(s.id), dyn) == layer) {
      *dynamic = true;
      return quant_scheme(s.id);
    }
  }
  if (!layer.is_object() || !layer.contains("weight")) return std::nullopt;
  json spec = json::object();
  spec["name"] = "custom";
  spec["weight"] = layer["weight"];
  spec["input_tensors"] = layer.contains("input_tensors") ? layer["input_tensors"] : json(nullptr);
  try {
    auto c = std::make_shared<const custom_spec>(parse_quant_spec(spec.dump(), "config.json"));
    quant_scheme q(c);
    if (layer_config(q) == layer) return q;
    if (apply_export_options(layer_config(q), dyn) == layer) {
      *dynamic = true;
      return q;
    }
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

// A keep-original entry of layer_quant_config (§8.2): a per-block weight spec.
bool is_keep_original_layer(const json& layer) {
  return layer.is_object() && layer.contains("weight") && layer["weight"].is_object() &&
         layer["weight"].value("qscheme", "") == "per_block";
}

// Element casts of §4.3: kernels/element_cast.h, shared with the cast stage.

// Squared error and source sums of a range of dequantized values.
struct error_sums {
  double d2 = 0, x2 = 0, max_abs = 0;
  uint64_t non_finite = 0;
};

// One shard opened for reading: a plain file (pread) or a `.safetensors.zst` shard decompressed
// by io/zstd_source (offsets are plain-byte offsets either way).
struct shard_reader {
  file_handle fd;
  std::shared_ptr<zstd_source> zst;

  static shard_reader open(const fs::path& path, bool compressed, uint64_t plain_size) {
    shard_reader r;
    if (compressed)
      r.zst = zstd_source::open(path, false, plain_size);
    else
      r.fd = file_handle::open(path, O_RDONLY);
    return r;
  }
  void read(std::byte* out, uint64_t bytes, uint64_t offset) {
    if (zst)
      zst->read_now(offset, bytes, out);
    else
      pread_all(fd.get(), std::span<std::byte>(out, bytes), offset, fd.path());
  }
};

// ---- the checker --------------------------------------------------------------------------------

class verifier {
 public:
  verifier(const verify_options& o, verify_report& r) : opt_(o), rep_(r) {}

  void run() {
    rep_.output_dir = opt_.output.string();
    source_checkpoint src = open_source_checkpoint(opt_.input, [](const std::string&) {});
    const fs::path config_path = opt_.output / "config.json";
    if (!fs::is_regular_file(config_path)) {
      problem(config_path.string(), "", no_offset, "missing (or not a regular file)");
      return;
    }
    out_config_ = to_nlohmann(read_json_object_file(config_path));
    std::optional<plan_options> po = options_from_config(config_path.string());
    if (!po) return;
    try {
      plan_ = make_plan(std::move(src), std::move(*po));
    } catch (const input_error& e) {
      problem(e.file(), e.tensor(), e.offset(),
              "cannot rebuild the plan the output config records: " + e.message());
      return;
    }
    if (written_with_importer_layout()) return;
    check_config(config_path.string());
    check_shards();
    check_index();
    check_tensors();
    summarize();
  }

 private:
  void problem(std::string file, std::string tensor, uint64_t offset, std::string message) {
    rep_.sound = false;
    rep_.problems.push_back({std::move(file), std::move(tensor), offset, std::move(message)});
  }

  // plan_options from the output's quantization_config: the global scheme, the per-layer
  // overrides in order, the resolved excludes (module names are globs matching themselves) and
  // the keep-original modules (excluded at quantization time, §6.4).
  std::optional<plan_options> options_from_config(const std::string& path) {
    const json* qc =
        out_config_.contains("quantization_config") ? &out_config_["quantization_config"] : nullptr;
    if (!qc || !qc->is_object() || !qc->contains("global_quant_config")) {
      problem(path, "", no_offset, "no quantization_config with a global_quant_config");
      return std::nullopt;
    }
    plan_options po;
    bool dynamic = false;
    const auto global = scheme_of_layer((*qc)["global_quant_config"], &dynamic);
    if (!global) {
      problem(path, "", no_offset,
              "quantization_config.global_quant_config is no scheme shardquant writes");
      return std::nullopt;
    }
    po.scheme = *global;
    std::vector<std::string> exclude;
    if (qc->contains("exclude") && (*qc)["exclude"].is_array())
      for (const auto& e : (*qc)["exclude"])
        if (e.is_string()) exclude.push_back(e.get<std::string>());
    if (qc->contains("layer_quant_config") && (*qc)["layer_quant_config"].is_object()) {
      const json& lqc = (*qc)["layer_quant_config"];
      for (auto it = lqc.begin(); it != lqc.end(); ++it) {
        if (is_keep_original_layer(it.value())) {
          po.keep_excluded_as_original = true;
          exclude.push_back(it.key());
          continue;
        }
        const auto s = scheme_of_layer(it.value(), &dynamic);
        if (!s) {
          problem(path, "", no_offset,
                  "quantization_config.layer_quant_config['" + it.key() +
                      "'] is no scheme shardquant writes");
          return std::nullopt;
        }
        po.layer_schemes.push_back({it.key(), *s});
      }
    }
    po.exclude = std::move(exclude);
    // The config does not say whether the option was given for layers whose input specs are
    // dynamic anyway; check_config compares the whole object written with the choice made here.
    po.dynamic_activations = dynamic;
    return po;
  }

  // Outputs of `--layout quark-importer` (kernels/importer_layout.h): the config is the same as
  // the file-to-file one, so the layout shows only in the shards. When the plan has a tensor
  // the two layouts write differently and an output shard holds the importer plan's tensors
  // (names, dtypes, shapes), verify refuses with one clear problem instead of reporting every
  // tensor as wrong: it decodes the file-to-file layout only.
  bool written_with_importer_layout() {
    const quant_part_count differ = importer_parts();
    if (differ.count == 0) return false;
    plan imp;
    try {
      plan_options po = plan_.options;
      po.layout = output_layout::quark_importer;
      imp = make_plan(open_source_checkpoint(opt_.input, [](const std::string&) {}), po);
    } catch (const std::exception&) {
      return false;  // no importer plan exists for this source: not that layout
    }
    for (size_t s = 0; s < imp.shards.size() && s < plan_.shards.size(); ++s) {
      const shard_layout& want = imp.shards[s].layout;
      if (want.header_bytes() == plan_.shards[s].layout.header_bytes()) continue;
      fs::path p = opt_.output / imp.shards[s].relative_path;
      const bool zst = !fs::is_regular_file(p) && fs::is_regular_file(p.string() + ".zst");
      if (zst) p += ".zst";
      safetensors_header h;
      try {
        h = zst ? read_zstd_shard_info(p).header : read_safetensors_header(p);
      } catch (const std::exception&) {
        return false;
      }
      bool same = h.tensors.size() == want.tensors().size();
      for (const tensor_entry& e : want.tensors()) {
        const tensor_entry* a = h.find(e.name);
        same = same && a && a->type == e.type && a->shape == e.shape;
      }
      if (!same) return false;
      problem(p.string(), differ.first, no_offset,
              "written with --layout quark-importer (" + differ.scheme +
                  " weights in the importer's names and packing); verify decodes the "
                  "quark-f2f layout only: verify an output written without --layout "
                  "quark-importer (the codes and scales are the same)");
      return true;
    }
    return false;
  }

  struct quant_part_count {
    uint64_t count = 0;
    std::string first, scheme;
  };
  // The quantized tensors of the plan whose importer layout differs from the file-to-file one.
  quant_part_count importer_parts() const {
    quant_part_count c;
    for (const plan_item& item : plan_.items)
      for (const plan_part& part : item.parts)
        if ((part.action == tensor_action::quantize ||
             part.action == tensor_action::recover_quantize) &&
            importer_layout_differs(part.scheme->kernel()) && c.count++ == 0) {
          c.first = part.name;
          c.scheme = std::string(part.scheme->name());
        }
    return c;
  }

  // config.json as the exporter writes it for this plan, compared as JSON values; `version`
  // differs between builds and is ignored.
  void check_config(const std::string& path) {
    json expected;
    try {
      const json qc = exported_quantization_config(plan_);
      expected =
          json::parse(rewrite_config_json(plan_.source.config_text, qc, plan_.source.dir.string()));
    } catch (const std::exception& e) {
      problem(path, "", no_offset, std::string("cannot rebuild the expected config: ") + e.what());
      return;
    }
    json actual = out_config_;
    for (json* j : {&expected, &actual})
      if (j->contains("quantization_config") && (*j)["quantization_config"].is_object())
        (*j)["quantization_config"].erase("version");
    if (expected == actual) return;
    const json patch = json::diff(actual, expected);
    std::string where;
    for (size_t i = 0; i < patch.size() && i < 3; ++i)
      where += (i ? ", " : "") + patch[i].value("path", std::string("/"));
    problem(path, "", no_offset,
            "differs from what the scheme writes (" + std::to_string(patch.size()) +
                " difference(s), at " + where + ")");
  }

  // Every planned output shard: present, valid (§2.3) and holding exactly the planned tensors.
  void check_shards() {
    headers_.resize(plan_.shards.size());
    out_zst_.assign(plan_.shards.size(), false);
    out_rel_.clear();
    for (const output_shard_plan& sp : plan_.shards) out_rel_.push_back(sp.relative_path);
    for (size_t s = 0; s < plan_.shards.size(); ++s) {
      const output_shard_plan& sp = plan_.shards[s];
      fs::path p = opt_.output / sp.relative_path;
      ++rep_.shards;
      // `--compress zstd` publishes NAME.safetensors.zst instead (a plain twin is read first, as
      // the source reader does).
      const fs::path pz = fs::path(p.string() + ".zst");
      out_zst_[s] = !fs::is_regular_file(p) && fs::is_regular_file(pz);
      if (out_zst_[s]) {
        p = pz;
        out_rel_[s] += ".zst";
      }
      if (!fs::is_regular_file(p)) {
        problem(p.string(), "", no_offset, "output shard missing");
        continue;
      }
      safetensors_header h;
      try {
        h = out_zst_[s] ? read_zstd_shard_info(p).header : read_safetensors_header(p);
      } catch (const input_error& e) {
        problem(e.file(), e.tensor(), e.offset(), e.message());
        continue;
      }
      bool ok = true;
      for (const tensor_entry& e : sp.layout.tensors()) {
        const tensor_entry* a = h.find(e.name);
        if (!a) {
          problem(p.string(), e.name, no_offset, "planned tensor missing from the shard");
          ok = false;
        } else if (a->type != e.type || a->shape != e.shape || a->byte_size() != e.byte_size()) {
          problem(p.string(), e.name, h.data_start + a->begin,
                  "is " + std::string(name(a->type)) + " " + shape_text(a->shape) +
                      ", the plan writes " + std::string(name(e.type)) + " " + shape_text(e.shape));
          ok = false;
        }
      }
      for (const tensor_entry& a : h.tensors)
        if (!sp.layout.find(a.name)) {
          problem(p.string(), a.name, h.data_start + a.begin, "tensor the plan does not write");
          ok = false;
        }
      if (ok) headers_[s] = std::move(h);
    }
  }

  // The index against the files (§3.4): every entry names a tensor its shard holds, every shard
  // tensor is listed with its own shard, total_size is the sum of the tensor bytes.
  void check_index() {
    const fs::path p = opt_.output / k_index_name;
    json idx;
    try {
      idx = to_nlohmann(read_json_object_file(p));
    } catch (const std::exception& e) {
      problem(p.string(), "", no_offset, std::string("unreadable index: ") + e.what());
      return;
    }
    if (!idx.contains("weight_map") || !idx["weight_map"].is_object()) {
      problem(p.string(), "", no_offset, "no weight_map object");
      return;
    }
    std::map<std::string, size_t> shard_of_path;
    for (size_t s = 0; s < plan_.shards.size(); ++s) shard_of_path[out_rel_[s]] = s;
    const json& wm = idx["weight_map"];
    std::map<std::string, std::string> listed;
    for (auto it = wm.begin(); it != wm.end(); ++it) {
      if (!it.value().is_string()) {
        problem(p.string(), it.key(), no_offset, "weight_map value is not a string");
        continue;
      }
      const std::string file = it.value().get<std::string>();
      listed[it.key()] = file;
      const auto s = shard_of_path.find(file);
      if (s == shard_of_path.end()) {
        problem(p.string(), it.key(), no_offset,
                "the index names shard '" + file + "', which is not an output shard");
        continue;
      }
      const output_shard_plan& sp = plan_.shards[s->second];
      const safetensors_header* h = headers_[s->second] ? &*headers_[s->second] : nullptr;
      const bool held = h ? h->find(it.key()) != nullptr : sp.layout.find(it.key()) != nullptr;
      if (!held)
        problem(p.string(), it.key(), no_offset,
                "the index names this tensor in shard '" + file + "', which does not hold it");
    }
    uint64_t total = 0;
    for (size_t s = 0; s < plan_.shards.size(); ++s) {
      const std::string& rel = out_rel_[s];
      for (const tensor_entry& e : plan_.shards[s].layout.tensors()) {
        total += e.byte_size();
        const auto l = listed.find(e.name);
        if (l == listed.end())
          problem(p.string(), e.name, no_offset, "tensor of shard '" + rel + "' not in the index");
        else if (l->second != rel)
          problem(p.string(), e.name, no_offset,
                  "the index names shard '" + l->second + "', the tensor is in '" + rel + "'");
      }
    }
    const json* meta = idx.contains("metadata") ? &idx["metadata"] : nullptr;
    if (!meta || !meta->contains("total_size") || !(*meta)["total_size"].is_number_unsigned() ||
        (*meta)["total_size"].get<uint64_t>() != total)
      problem(
          p.string(), "", no_offset,
          "metadata.total_size is not the sum of the tensor bytes (" + std::to_string(total) + ")");
  }

  // ---- reading
  // -----------------------------------------------------------------------------------

  shard_reader& source_fd(uint32_t shard) {
    auto it = src_fds_.find(shard);
    if (it == src_fds_.end()) {
      const source_shard& sh = plan_.source.shards[shard];
      it = src_fds_.emplace(shard, shard_reader::open(sh.path, sh.compressed, sh.header.file_size))
               .first;
    }
    return it->second;
  }
  shard_reader& output_fd(uint32_t shard) {
    auto it = out_fds_.find(shard);
    if (it == out_fds_.end())
      it = out_fds_
               .emplace(shard, shard_reader::open(opt_.output / out_rel_[shard], out_zst_[shard],
                                                  headers_[shard]->file_size))
               .first;
    return it->second;
  }

  void read_at(shard_reader& f, std::byte* out, uint64_t bytes, uint64_t offset) {
    f.read(out, bytes, offset);
    rep_.bytes_read += bytes;
  }

  std::vector<std::byte> read_whole(const source_ref& r) {
    std::vector<std::byte> b(r.bytes);
    read_at(source_fd(r.shard), b.data(), r.bytes, r.file_offset);
    return b;
  }

  // Rows [r0, r1) of a part's input as the quantizer saw it: the stored dtype (strided converter
  // slices gathered), or F32 recovered through the kernels' recovery API.
  std::vector<std::byte> source_rows(const plan_item& item, const plan_part& part, uint64_t r0,
                                     uint64_t r1) {
    const source_ref& src = item.source;
    const uint64_t rows = part.input_shape.empty() ? 1 : part.input_shape[0];
    const uint64_t cols = rows ? numel_of(part.input_shape) / rows : 0;
    const recovery_params& rp = item.recovery;
    const std::string path = plan_.source.shards[src.shard].path.string();
    if (rp.kind == recovery_kind::none) {
      if (part.slice.is_whole()) {
        const uint64_t row_bytes = rows ? src.bytes / rows : 0;
        std::vector<std::byte> b((r1 - r0) * row_bytes);
        read_at(source_fd(src.shard), b.data(), b.size(), src.file_offset + r0 * row_bytes);
        return b;
      }
      const strided_view v = describe_slice(src.shape, bits(src.type), part.slice);
      if (v.count <= 1) {
        const uint64_t row_bytes = rows ? v.bytes() / rows : 0;
        std::vector<std::byte> b((r1 - r0) * row_bytes);
        read_at(source_fd(src.shard), b.data(), b.size(),
                src.file_offset + v.offset + r0 * row_bytes);
        return b;
      }
      const uint64_t per_row = v.count / rows;
      std::vector<std::byte> b((r1 - r0) * per_row * v.run_bytes);
      for (uint64_t k = r0 * per_row; k < r1 * per_row; ++k)
        read_at(source_fd(src.shard), b.data() + (k - r0 * per_row) * v.run_bytes, v.run_bytes,
                src.file_offset + v.offset + k * v.stride);
      return b;
    }
    // Recovered sources: the stored weight rows and the whole companion tensors.
    const uint64_t row_bytes = rows ? src.bytes / rows : 0;
    std::vector<std::byte> w((r1 - r0) * row_bytes);
    read_at(source_fd(src.shard), w.data(), w.size(), src.file_offset + r0 * row_bytes);
    const source_ref& sc = rp.scale.value();
    const std::vector<std::byte> scale = read_whole(sc);
    std::vector<std::byte> out((r1 - r0) * cols * 4);
    float* f = reinterpret_cast<float*>(out.data());
    quant_status st;
    std::string why;
    if (rp.kind == recovery_kind::fp8_block) {
      fp8_block_source s;
      const auto wk = fp8_kind_of(src.type);
      const auto sk = scale_kind_of(sc.type);
      if (!wk || !sk) throw input_error(path, src.name, no_offset, "unsupported recovery dtype");
      s.weight_kind = *wk;
      s.rows = rows;
      s.cols = cols;
      s.weight = reinterpret_cast<const uint8_t*>(w.data());
      s.row_begin = r0;
      s.row_end = r1;
      s.scale_type = *sk;
      s.scale = scale.data();
      s.scale_rows = sc.shape.size() == 2 ? sc.shape[0] : 0;
      s.scale_cols = sc.shape.size() == 2 ? sc.shape[1] : 0;
      s.block_rows = rp.block_rows;
      s.block_cols = rp.block_cols;
      s.chunk_rows = rp.chunk_rows;
      why = check_fp8_block(s);
      if (why.empty()) st = recover_fp8_block(s, f);
    } else {
      std::vector<std::byte> zp, gidx;
      if (rp.zero_point) zp = read_whole(*rp.zero_point);
      if (rp.g_idx) gidx = read_whole(*rp.g_idx);
      ct_source s;
      s.layout = rp.kind == recovery_kind::ct_packed  ? ct_layout::pack_quantized
                 : rp.kind == recovery_kind::ct_float ? ct_layout::float_quantized
                                                      : ct_layout::int_quantized;
      s.rows = rows;
      s.cols = cols;
      s.bits = rp.num_bits;
      s.fp8 = src.type == dtype::f8_e5m2 ? fp8_kind::e5m2 : fp8_kind::e4m3fn;
      s.weight = w.data();
      s.row_begin = r0;
      s.row_end = r1;
      const auto sk = scale_kind_of(sc.type);
      if (!sk) throw input_error(path, sc.name, no_offset, "unsupported scale dtype");
      s.scale_type = *sk;
      s.scale = scale.data();
      s.strategy = rp.strategy;
      s.group_size = rp.group_size;
      s.groups = sc.shape.size() >= 2 ? sc.shape[1] : 1;
      s.block_rows = rp.block_rows;
      s.block_cols = rp.block_cols;
      if (rp.zero_point) {
        s.zero_point = zp.data();
        s.zero_point_type = rp.zero_point->type;
      }
      if (rp.g_idx) s.g_idx = reinterpret_cast<const int32_t*>(gidx.data());
      why = check_compressed(s);
      if (why.empty()) st = recover_compressed(s, f);
    }
    if (!why.empty()) throw input_error(path, src.name, no_offset, why);
    if (!st.ok()) throw input_error(path, src.name, no_offset, st.message());
    return out;
  }

  // ---- tensors
  // -----------------------------------------------------------------------------------

  // Rows per range: the most (a multiple of `mult`) whose buffers fit the budget, at least one
  // multiple (a tensor whose single row does not fit is still checked: the budget is a target
  // for the bulk, as quantize's tokens are).
  uint64_t rows_per_range(uint64_t rows, uint64_t bytes_per_row, uint64_t fixed, uint64_t mult) {
    const uint64_t budget = rep_.memory_budget > fixed ? rep_.memory_budget - fixed : 0;
    uint64_t per = bytes_per_row ? budget / bytes_per_row : rows;
    per = per / mult * mult;
    return std::clamp<uint64_t>(per, std::min(rows, mult), std::max<uint64_t>(rows, 1));
  }

  void check_tensors() {
    for (const plan_item& item : plan_.items)
      for (const plan_part& part : item.parts) {
        const uint32_t s = part.output_shard;
        if (s >= headers_.size() || !headers_[s]) continue;  // already reported
        try {
          switch (part.action) {
            case tensor_action::quantize:
            case tensor_action::recover_quantize:
              check_quantized(item, part);
              break;
            default:
              check_copied(item, part);
              break;
          }
        } catch (const input_error& e) {
          problem(e.file(), e.tensor().empty() ? part.name : e.tensor(), e.offset(), e.message());
        } catch (const io_error& e) {
          problem(out_rel_[s], part.name, no_offset, e.what());
        }
      }
  }

  // Where an output tensor lies in its (validated) shard.
  uint64_t output_offset(uint32_t shard, const std::string& tensor) {
    const safetensors_header& h = *headers_[shard];
    return h.data_start + h.find(tensor)->begin;
  }

  void check_quantized(const plan_item& item, const plan_part& part) {
    const weight_scheme ws = part.scheme->kernel();
    const std::vector<uint64_t>& shape = part.input_shape;
    const uint64_t rows = shape.at(0);
    const uint64_t inner = rows ? numel_of(shape) / rows : 0;
    const uint32_t shard = part.output_shard;
    const std::string out_path = (opt_.output / out_rel_[shard]).string();
    const bool recovered = item.recovery.kind != recovery_kind::none;
    const dtype in_type = recovered ? dtype::f32 : part.input_type;

    tensor_verdict v;
    v.name = part.name;
    v.shard = out_rel_[shard];
    v.scheme = std::string(part.scheme->name());
    v.shape = shape;
    v.elements = rows * inner;
    if (recovered) ++rep_.recovered;

    uint64_t out_per_row = 0;
    for (const planned_output& o : part.outputs) out_per_row += rows ? o.bytes / rows + 1 : 0;
    uint64_t fixed = 0;
    if (recovered) {
      fixed += item.recovery.scale ? item.recovery.scale->bytes : 0;
      fixed += item.recovery.zero_point ? item.recovery.zero_point->bytes : 0;
      fixed += item.recovery.g_idx ? item.recovery.g_idx->bytes : 0;
    }
    // Source rows (stored + recovered F32), output pieces, dequantized F32.
    const uint64_t per_row =
        inner * (bits(item.source.type) / 8 + 1 + (recovered ? 4 : 0) + 4) + out_per_row;
    const uint64_t mult = std::max<uint32_t>(1, row_split_multiple(ws));
    const uint64_t per = rows_per_range(rows, per_row, fixed, mult);

    std::vector<uint64_t> base;
    for (const planned_output& o : part.outputs) base.push_back(output_offset(shard, o.name));
    double sum_d2 = 0, sum_x2 = 0;
    bool reported = false;
    std::vector<float> deq;
    for (uint64_t r0 = 0; r0 < rows; r0 += per) {
      const uint64_t r1 = std::min(rows, r0 + per);
      const std::vector<std::byte> src = source_rows(item, part, r0, r1);
      std::string err;
      const std::vector<output_piece> pieces = range_layout(ws, shape, r0, r1, &err, in_type);
      if (!err.empty()) throw input_error(out_path, part.name, no_offset, err);
      std::vector<std::vector<std::byte>> stored(pieces.size());
      for (size_t i = 0; i < pieces.size() && i < base.size(); ++i) {
        const output_piece& p = pieces[i];
        stored[i].resize(p.run_bytes * p.count);
        for (uint64_t k = 0; k < p.count; ++k)
          read_at(output_fd(shard), stored[i].data() + k * p.run_bytes, p.run_bytes,
                  base[i] + p.offset + k * p.stride);
      }
      quantized_view q;
      q.shape = shape;
      q.row_begin = r0;
      q.row_end = r1;
      q.source = in_type;
      const void* ptr[4] = {nullptr, nullptr, nullptr, nullptr};
      for (size_t i = 0; i < stored.size() && i < 4; ++i) ptr[i] = stored[i].data();
      q.weight = ptr[0];
      q.scale = ptr[1];
      q.extra = ptr[2];
      q.extra2 = ptr[3];
      const uint64_t n = (r1 - r0) * inner;
      deq.assign(n, 0.0f);
      quant_status st = dequantize(ws, q, deq.data());
      if (!st.ok()) {
        problem(out_path, part.outputs.at(1).name, no_offset,
                "cannot decode rows " + std::to_string(r0) + ".." + std::to_string(r1) + ": " +
                    st.message());
        ++v.violations;
        break;
      }
      source_view sv;
      sv.type = in_type;
      sv.shape = shape;
      sv.data = src.data();
      sv.row_begin = r0;
      sv.row_end = r1;
      // Error sums in fixed chunks combined in a fixed order: the same numbers on every run.
      const error_sums es = tbb::parallel_deterministic_reduce(
          tbb::blocked_range<uint64_t>(0, n, 1 << 16), error_sums{},
          [&](const tbb::blocked_range<uint64_t>& br, error_sums acc) {
            for (uint64_t i = br.begin(); i != br.end(); ++i) {
              const double x = load_float(in_type, src.data(), i);
              const double d = deq[i];
              if (!std::isfinite(d)) {
                ++acc.non_finite;
                continue;
              }
              const double e = d - x;
              acc.d2 += e * e;
              acc.x2 += x * x;
              acc.max_abs = std::max(acc.max_abs, std::fabs(e));
            }
            return acc;
          },
          [](error_sums a, const error_sums& b) {
            a.d2 += b.d2;
            a.x2 += b.x2;
            a.max_abs = std::max(a.max_abs, b.max_abs);
            a.non_finite += b.non_finite;
            return a;
          },
          tbb::simple_partitioner());
      sum_d2 += es.d2;
      sum_x2 += es.x2;
      v.max_abs = std::max(v.max_abs, es.max_abs);
      v.non_finite += es.non_finite;
      bound_report br;
      st = check_bounds(ws, sv, q, &br);
      if (!st.ok()) {
        problem(out_path, part.name, no_offset, "cannot check bounds: " + st.message());
        ++v.violations;
        break;
      }
      v.violations += br.violations;
      if (br.violations && !reported) {
        reported = true;
        const element_location loc = locate_element(ws, shape, br.first, in_type);
        const uint64_t r = br.first / inner, j = br.first % inner;
        std::ostringstream m;
        m << "element (" << r << ", " << j << ") breaks the " << describe(ws)
          << " bound: the quantizer rounded " << br.target << " (grid units) but the code holds "
          << br.value << ", more than " << br.limit << " away (scale " << part.outputs.at(1).name
          << " at byte " << base.at(1) + loc.scale_byte << "); " << br.violations
          << " element(s) of rows " << r0 << ".." << r1 << " break it";
        problem(out_path, part.name, base[0] + loc.weight_byte, m.str());
      }
    }
    v.rel_l2 = sum_x2 > 0 ? std::sqrt(sum_d2 / sum_x2) : std::sqrt(sum_d2);
    if (v.non_finite)
      problem(out_path, part.name, no_offset,
              std::to_string(v.non_finite) + " dequantized value(s) are NaN or Inf");
    rep_.quantized.push_back(std::move(v));
  }

  // Pass-through, keep-original and cast tensors: the output bytes against the source bytes or
  // their §4.3 cast, a range at a time.
  void check_copied(const plan_item& item, const plan_part& part) {
    const planned_output& o = part.outputs.at(0);
    const uint32_t shard = part.output_shard;
    const std::string out_path = (opt_.output / out_rel_[shard]).string();
    const uint64_t base = output_offset(shard, o.name);
    const bool cast =
        part.action == tensor_action::cast || part.action == tensor_action::recover_cast;
    // Kept tensors are the stored bytes, never recovered ones (§8).
    const bool recovered =
        item.recovery.kind != recovery_kind::none && part.action != tensor_action::keep_original;
    const dtype in_type = recovered ? dtype::f32 : part.input_type;
    if (cast)
      ++rep_.cast;
    else
      ++rep_.passed_through;
    if (o.bytes == 0) return;
    const uint64_t ib = std::max<uint32_t>(bits(in_type) / 8, 1);
    const uint64_t ob = std::max<uint32_t>(bits(o.type) / 8, 1);
    // Flat tensors are compared in element ranges; slices and recovered tensors in row ranges.
    const bool flat = !recovered && part.slice.is_whole();
    const std::vector<uint64_t>& shape = part.input_shape;
    const uint64_t rows = flat ? numel_of(shape) : (shape.empty() ? 1 : shape[0]);
    const uint64_t row_out = rows ? o.bytes / rows : 0;
    const uint64_t row_in = rows ? (recovered ? o.bytes / ob * 4 : part.input_bytes) / rows : 0;
    const uint64_t fixed = recovered && item.recovery.scale ? item.recovery.scale->bytes : 0;
    const uint64_t per = rows_per_range(rows, 2 * row_in + 2 * row_out + 1, fixed, 1);
    std::vector<std::byte> expect, actual;
    for (uint64_t r0 = 0; r0 < rows; r0 += per) {
      const uint64_t r1 = std::min(rows, r0 + per);
      std::vector<std::byte> src;
      if (flat && bits(part.input_type) % 8 == 0) {
        src.resize((r1 - r0) * ib);
        read_at(source_fd(item.source.shard), src.data(), src.size(),
                item.source.file_offset + r0 * ib);
      } else if (flat) {  // sub-byte elements (F4/F6 pass-through): the whole tensor's bytes
        src.resize(part.input_bytes);
        read_at(source_fd(item.source.shard), src.data(), src.size(), item.source.file_offset);
        r0 = 0;
      } else {
        src = source_rows(item, part, r0, r1);
      }
      const uint64_t n_out = flat && bits(part.input_type) % 8 ? o.bytes : (r1 - r0) * row_out;
      if (cast) {
        const uint64_t n = n_out / ob;
        expect.assign(n_out, std::byte{0});
        for (uint64_t i = 0; i < n; ++i)
          store_float(o.type, expect.data(), i, load_float(in_type, src.data(), i));
      } else {
        expect = std::move(src);
      }
      actual.resize(n_out);
      const uint64_t off = flat && bits(part.input_type) % 8 ? 0 : r0 * row_out;
      read_at(output_fd(shard), actual.data(), n_out, base + off);
      if (expect.size() != actual.size() || std::memcmp(expect.data(), actual.data(), n_out)) {
        uint64_t k = 0;
        while (k < n_out && k < expect.size() && expect[k] == actual[k]) ++k;
        problem(out_path, o.name, base + off + k,
                cast ? "differs from the source cast to " + std::string(name(o.type)) +
                           " (formats.md §4.3)"
                     : "differs from the source bytes");
        return;
      }
      if (flat && bits(part.input_type) % 8) break;
    }
  }

  // Per-scheme summary in scheme order of first appearance.
  void summarize() {
    std::map<std::string, size_t> at;
    for (const tensor_verdict& t : rep_.quantized) {
      auto it = at.find(t.scheme);
      if (it == at.end()) {
        it = at.emplace(t.scheme, rep_.per_scheme.size()).first;
        rep_.per_scheme.push_back({});
        rep_.per_scheme.back().scheme = t.scheme;
      }
      scheme_verdict& s = rep_.per_scheme[it->second];
      ++s.tensors;
      s.elements += t.elements;
      s.mean_rel_l2 += t.rel_l2;
      s.worst_rel_l2 = std::max(s.worst_rel_l2, t.rel_l2);
      s.max_abs = std::max(s.max_abs, t.max_abs);
      s.violations += t.violations;
      s.non_finite += t.non_finite;
    }
    for (scheme_verdict& s : rep_.per_scheme)
      if (s.tensors) s.mean_rel_l2 /= static_cast<double>(s.tensors);
  }

  const verify_options& opt_;
  verify_report& rep_;
  json out_config_;
  plan plan_;
  std::vector<std::optional<safetensors_header>> headers_;  // valid shards matching the plan
  std::vector<bool> out_zst_;         // output shard s is NAME.safetensors.zst
  std::vector<std::string> out_rel_;  // the output shard files, relative ('.zst' when so)
  std::map<uint32_t, shard_reader> src_fds_, out_fds_;
};

}  // namespace

std::string verify_problem::to_string() const {
  return input_error(file, tensor, offset, message).what();
}

verify_report verify_checkpoint(const verify_options& options) {
  if (options.device != "cpu")
    throw usage_error("verify decodes on the CPU only: --device '" + options.device +
                      "' is not supported (use --device cpu)");
  verify_report rep;
  rep.memory_budget = options.memory_budget ? options.memory_budget : default_memory_budget();
  const auto t0 = std::chrono::steady_clock::now();
  verifier(options, rep).run();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const tensor_verdict& t : rep.quantized)
    if (t.violations || t.non_finite) rep.sound = false;
  return rep;
}

}  // namespace shardquant
