// Plan -> jobs: file ranges, row splits, output pieces and token layouts.
#include "pipeline/jobs.h"

#include "io/file.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "io/error.h"
#include "kernels/importer_layout.h"
#include "kernels/quantize.h"
#include "pipeline/plan_rotation.h"

namespace shardquant {

namespace {

constexpr uint64_t k_align = io_alignment;

uint64_t numel_of(const std::vector<uint64_t>& shape) {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

// A token position for bytes that go to file offset `file_offset`: the same offset modulo the
// block size, so whole blocks are memory-aligned and can take the O_DIRECT path.
uint64_t place_for_write(uint64_t cur, uint64_t file_offset) {
  return align_up(cur, k_align) + file_offset % k_align;
}

std::string mib(uint64_t b) {
  return std::to_string((b + (1 << 20) - 1) >> 20) + " MiB";
}

// The rows view of a part's input in the source file: contiguous rows, or `k` runs per row.
struct rows_view {
  uint64_t base = 0;  // absolute file offset of the view's first byte
  uint64_t rows = 1;
  uint64_t row_bytes = 0;     // contiguous: bytes per row
  uint64_t runs_per_row = 0;  // > 0: strided
  uint64_t run_bytes = 0, stride = 0;
};

rows_view make_rows_view(const source_ref& src, const plan_part& part, uint64_t rows) {
  rows_view rv;
  rv.rows = rows;
  if (part.slice.is_whole()) {
    rv.base = src.file_offset;
    rv.row_bytes = rows ? src.bytes / rows : 0;
    return rv;
  }
  const strided_view v = describe_slice(src.shape, bits(src.type), part.slice);
  rv.base = src.file_offset + v.offset;
  if (v.count <= 1) {
    rv.row_bytes = rows ? v.bytes() / rows : 0;
  } else {
    rv.runs_per_row = v.count / rows;
    rv.run_bytes = v.run_bytes;
    rv.stride = v.stride;
  }
  return rv;
}

input_spec rows_input(const rows_view& rv, std::shared_ptr<io_file> f, uint64_t r0, uint64_t r1) {
  input_spec in;
  in.file = std::move(f);
  if (rv.runs_per_row == 0) {
    in.offset = rv.base + r0 * rv.row_bytes;
    in.length = (r1 - r0) * rv.row_bytes;
    return in;
  }
  in.runs = (r1 - r0) * rv.runs_per_row;
  in.run_bytes = rv.run_bytes;
  in.stride = rv.stride;
  in.offset = rv.base + r0 * rv.runs_per_row * rv.stride;
  in.length = in.runs ? (in.runs - 1) * in.stride + in.run_bytes : 0;
  if (in.runs == 1) in.runs = 1;
  return in;
}

// Read area, gather area and scale area of a job; returns the first free position.
uint64_t layout_inputs(job& j) {
  uint64_t pos = read_buffer_bound(j.input.length);
  if (j.input.runs > 1) {
    j.gather_pos = align_up(pos, 64);
    pos = j.gather_pos + j.input.wanted_bytes();
  }
  if (j.fp8_block.enabled) {
    j.scale_pos = align_up(pos, k_align);
    pos = j.scale_pos + read_buffer_bound(j.fp8_block.scale.length);
  }
  if (j.ct.enabled) {
    j.scale_pos = align_up(pos, k_align);
    pos = j.scale_pos + read_buffer_bound(j.ct.scale.length);
    if (j.ct.zero_point.length) {
      j.zp_pos = align_up(pos, k_align);
      pos = j.zp_pos + read_buffer_bound(j.ct.zero_point.length);
    }
    if (j.ct.g_idx.length) {
      j.gidx_pos = align_up(pos, k_align);
      pos = j.gidx_pos + read_buffer_bound(j.ct.g_idx.length);
    }
  }
  if (j.fp8_block.enabled || j.ct.enabled) {  // the recovered F32 rows
    j.work_pos = align_up(pos, 64);
    pos = j.work_pos + j.rows * j.cols * 4;
  }
  return pos;
}

}  // namespace

job_builder::job_builder(const plan& p, std::filesystem::path output_dir, uint64_t token_bytes,
                         bool direct_io)
    : plan_(p),
      output_dir_(std::move(output_dir)),
      token_bytes_(token_bytes),
      direct_(direct_io),
      sources_(p.source.shards.size()),
      streams_(p.source.shards.size()) {}

void job_builder::attach_streams(job& j) {
  for (input_spec* in :
       {&j.input, &j.fp8_block.scale, &j.ct.scale, &j.ct.zero_point, &j.ct.g_idx}) {
    if (!in->file) continue;
    for (uint32_t s = 0; s < sources_.size(); ++s)
      if (sources_[s] == in->file && plan_.source.shards[s].compressed) {
        if (!streams_[s])
          streams_[s] = zstd_source::open(plan_.source.shards[s].path, false,
                                          plan_.source.shards[s].header.file_size);
        in->stream = streams_[s];
      }
  }
}

std::shared_ptr<io_file> job_builder::source_file(uint32_t shard) {
  auto& f = sources_.at(shard);
  if (!f) f = io_file::open(plan_.source.shards[shard].path, io_file::mode::read, direct_);
  return f;
}

uint64_t job_builder::shard_input_bytes(uint32_t s) const {
  uint64_t n = 0;
  for (uint32_t it : plan_.shards[s].items)
    for (const auto& part : plan_.items[it].parts)
      if (part.output_shard == s) n += part.input_bytes;
  return n;
}

std::vector<std::unique_ptr<job>> job_builder::make_shard(uint32_t s, shard_state& state,
                                                          uint64_t& seq) {
  const output_shard_plan& sp = plan_.shards[s];
  const std::filesystem::path final_path = output_dir_ / sp.relative_path;
  create_directories_inside(output_dir_, std::filesystem::path(sp.relative_path).parent_path());
  state.index = s;
  state.relative_path = sp.relative_path;
  state.writer = std::make_unique<shard_writer>(sp.layout, final_path, compress_);
  state.out = io_file::wrap_for_write(state.writer->fd(), final_path.string(), direct_,
                                      sp.layout.file_size());
  state.input_bytes = 0;
  std::vector<std::unique_ptr<job>> jobs;
  // A compressed source is a stream: its tensors are read in file order (one pass).
  std::vector<uint32_t> items = sp.items;
  if (std::all_of(items.begin(), items.end(), [&](uint32_t i) {
        return plan_.source.shards[plan_.items[i].source.shard].compressed;
      }))
    std::stable_sort(items.begin(), items.end(), [&](uint32_t a, uint32_t b) {
      const source_ref &x = plan_.items[a].source, &y = plan_.items[b].source;
      return std::pair(x.shard, x.file_offset) < std::pair(y.shard, y.file_offset);
    });
  for (uint32_t it : items)
    for (const auto& part : plan_.items[it].parts)
      if (part.output_shard == s) {
        state.input_bytes += part.input_bytes;
        add_part_jobs(plan_.items[it], part, state, jobs, seq);
      }
  for (auto& j : jobs) attach_streams(*j);
  state.jobs_left = jobs.size();
  return jobs;
}

namespace {

// The I8 input_rotation buffer of an online rotation: no input, a token's worth of bytes a job.
void add_generated_rotation_jobs(const plan_part& part, std::shared_ptr<io_file> file,
                                 uint64_t token_bytes, shard_state& state,
                                 std::vector<std::unique_ptr<job>>& out, uint64_t& seq) {
  const planned_output& o = part.outputs.at(0);
  const uint64_t per = std::max<uint64_t>((token_bytes - 2 * k_align) / k_align * k_align, k_align);
  for (uint64_t b0 = 0; b0 < o.bytes; b0 += per) {
    auto j = std::make_unique<job>();
    j->seq = seq++;
    j->kind = job_kind::copy;
    j->tensor = part.name;
    j->source = "(generated)";
    j->in_type = dtype::i8;
    j->out_type = dtype::i8;
    j->input.file = file;
    j->input.offset = 0;
    j->input.length = 0;
    j->generated_rotation = part.generated_rotation;
    j->shard = &state;
    write_piece w;
    w.tensor = o.name;
    w.tensor_offset = b0;
    w.file_offset = o.file_offset + b0;
    w.bytes = std::min(per, o.bytes - b0);
    w.token_pos = w.file_offset % k_align;
    j->output_bytes = w.bytes;
    j->needed = w.token_pos + w.bytes;
    j->outputs.push_back(std::move(w));
    out.push_back(std::move(j));
  }
}

}  // namespace

void job_builder::add_part_jobs(const plan_item& item, const plan_part& part, shard_state& state,
                                std::vector<std::unique_ptr<job>>& out, uint64_t& seq) {
  uint64_t out_bytes = 0;
  for (const auto& o : part.outputs) out_bytes += o.bytes;
  if (out_bytes == 0 && part.input_bytes == 0) return;  // empty tensor: nothing to move
  if (part.generated_rotation) {
    add_generated_rotation_jobs(part, source_file(item.source.shard), token_bytes_, state, out,
                                seq);
    return;
  }
  const recovery_kind rk = item.recovery.kind;
  const bool flat =
      rk == recovery_kind::none &&
      (part.action == tensor_action::pass_through || part.action == tensor_action::keep_original ||
       part.action == tensor_action::cast) &&
      part.slice.is_whole();
  if (flat)
    add_flat_jobs(item, part, state, out, seq);
  else
    add_row_jobs(item, part, state, out, seq);
}

// Copies and casts of a whole contiguous tensor: byte / element ranges.
void job_builder::add_flat_jobs(const plan_item& item, const plan_part& part, shard_state& state,
                                std::vector<std::unique_ptr<job>>& out, uint64_t& seq) {
  const source_ref& src = item.source;
  const planned_output& o = part.outputs.at(0);
  const bool cast = part.action == tensor_action::cast;
  const uint64_t ib = cast ? bits(src.type) / 8 : 1, ob = cast ? bits(o.type) / 8 : 1;
  if (cast && (ib == 0 || ob == 0))
    throw input_error(plan_.source.shards[src.shard].path.string(), src.name,
                      input_error::no_offset, "cannot cast sub-byte elements");
  const uint64_t n_elems = src.bytes / ib;
  // Elements per job: read area (+ 2 blocks of slack) and, for casts, the output area.
  const uint64_t room = token_bytes_ - 3 * k_align;
  uint64_t per = cast ? room / (ib + ob) : room;
  per = std::max<uint64_t>(per / k_align * k_align, 1);
  auto file = source_file(src.shard);
  for (uint64_t e0 = 0; e0 < n_elems || (n_elems == 0 && e0 == 0); e0 += per) {
    const uint64_t e1 = std::min(n_elems, e0 + per);
    auto j = std::make_unique<job>();
    j->seq = seq++;
    j->kind = cast ? job_kind::cast : job_kind::copy;
    j->tensor = part.name;
    j->source = file->path();
    j->in_type = src.type;
    j->out_type = o.type;
    j->input.file = file;
    j->input.offset = src.file_offset + e0 * ib;
    j->input.length = (e1 - e0) * ib;
    j->shard = &state;
    j->input_bytes = j->input.length;
    write_piece w;
    w.tensor = o.name;
    w.tensor_offset = e0 * ob;
    w.file_offset = o.file_offset + e0 * ob;
    w.bytes = (e1 - e0) * ob;
    j->output_bytes = w.bytes;
    uint64_t pos = read_buffer_bound(j->input.length);
    if (cast) {
      w.token_pos = place_for_write(pos, w.file_offset);
      pos = w.token_pos + w.bytes;
    } else {
      w.token_pos = w.file_offset % k_align;  // moved in place (arrange_input)
      pos = std::max(pos, w.token_pos + w.bytes);
    }
    j->needed = pos;
    j->outputs.push_back(std::move(w));
    out.push_back(std::move(j));
    if (n_elems == 0) break;
  }
}

// Quantized tensors, recovered tensors and strided converter slices: row ranges.
void job_builder::add_row_jobs(const plan_item& item, const plan_part& part, shard_state& state,
                               std::vector<std::unique_ptr<job>>& out, uint64_t& seq) {
  const source_ref& src = item.source;
  const recovery_kind rk = item.recovery.kind;
  const bool recovered = rk != recovery_kind::none;
  const bool quant =
      part.action == tensor_action::quantize || part.action == tensor_action::recover_quantize;
  const std::string src_path = plan_.source.shards[src.shard].path.string();
  const std::vector<uint64_t>& shape = part.input_shape;
  const uint64_t rows = shape.empty() ? 1 : shape[0];
  const uint64_t cols = rows ? numel_of(shape) / rows : 0;
  if (recovered && !part.slice.is_whole())
    throw input_error(src_path, part.name, input_error::no_offset,
                      "converters on recovered (quantized-source) tensors are not supported");
  const rows_view rv = make_rows_view(src, part, rows);
  auto file = source_file(src.shard);

  // --layout quark-importer changes the outputs of the integer schemes (importer_layout.h).
  const bool importer = quant && plan_.options.layout == output_layout::quark_importer &&
                        importer_layout_differs(part.scheme->kernel());
  const uint64_t scheme_mult =
      !quant     ? 1
      : importer ? std::max<uint32_t>(1, importer_row_split_multiple(part.scheme->kernel()))
                 : std::max<uint32_t>(1, row_split_multiple(part.scheme->kernel()));
  // R2 output-channel rotations need whole blocks of head_dim rows in a range.
  const uint64_t mult = std::lcm<uint64_t>(scheme_mult, rotation_row_multiple(part));

  auto whole = [&](const source_ref& r) {
    input_spec in;
    in.file = source_file(r.shard);
    in.offset = r.file_offset;
    in.length = r.bytes;
    return in;
  };
  ct_spec ct;
  if (rk == recovery_kind::ct_packed || rk == recovery_kind::ct_float ||
      rk == recovery_kind::ct_int || rk == recovery_kind::fp4_packed) {
    const recovery_params& rp = item.recovery;
    const source_ref& sc = rp.scale.value();
    ct.enabled = true;
    ct.layout = rk == recovery_kind::ct_packed  ? ct_layout::pack_quantized
                : rk == recovery_kind::ct_float ? ct_layout::float_quantized
                                                : ct_layout::int_quantized;
    ct.bits = rp.num_bits;
    ct.fp8 = src.type == dtype::f8_e5m2 ? fp8_kind::e5m2 : fp8_kind::e4m3fn;
    ct.strategy = rp.strategy;
    ct.group_size = rp.group_size;
    ct.groups = sc.shape.size() >= 2 ? sc.shape[1] : 1;
    ct.block_rows = rp.block_rows;
    ct.block_cols = rp.block_cols;
    ct.scale = whole(sc);
    ct.scale_type = sc.type;
    if (rp.zero_point) {
      ct.zero_point = whole(*rp.zero_point);
      ct.zero_point_type = rp.zero_point->type;
    }
    if (rp.g_idx) ct.g_idx = whole(*rp.g_idx);
    if (rk == recovery_kind::fp4_packed) {
      ct.layout = rp.fp4_layout;
      ct.strategy = ct_strategy::group;
      ct.groups = rows && rp.group_size ? cols / rp.group_size : 0;
      ct.global_scale = rp.global_scale;
      ct.recovered_type = rp.recovered_type;
      if (sc.type == dtype::u8) ct.scale_type = dtype::f8_e8m0;  // CT stores E8M0 bytes as U8
    }
  }
  fp8_block_spec fb;
  if (rk == recovery_kind::fp8_block) {
    const recovery_params& rp = item.recovery;
    const source_ref& sc = rp.scale.value();
    fb.enabled = true;
    fb.scale.file = source_file(sc.shard);
    fb.scale.offset = sc.file_offset;
    fb.scale.length = sc.bytes;
    fb.scale_type = sc.type;
    fb.scale_rows = sc.shape.size() == 2 ? sc.shape[0] : 0;
    fb.scale_cols = sc.shape.size() == 2 ? sc.shape[1] : 0;
    fb.block_rows = rp.block_rows;
    fb.block_cols = rp.block_cols;
    fb.chunk_rows = rp.chunk_rows;
  }

  // Builds the job for rows [r0, r1) of `kind`; its layout is in job::needed.
  auto make = [&](job_kind kind, uint64_t r0, uint64_t r1) {
    auto j = std::make_unique<job>();
    j->kind = kind;
    j->tensor = part.name;
    j->source = src_path;
    j->in_type = recovered ? src.type : part.input_type;
    j->out_type = part.outputs.at(0).type;
    if (quant) j->scheme = part.scheme->kernel();
    j->shape = shape;
    j->total_rows = rows;
    j->cols = cols;
    j->row_begin = r0;
    j->rows = r1 - r0;
    j->shard = &state;
    j->fp8_block = fb;
    j->ct = ct;
    j->rotations = part.rotations;
    j->input = rows_input(rv, file, r0, r1);
    j->input_bytes = kind == job_kind::amax ? 0 : j->input.wanted_bytes();
    uint64_t pos = layout_inputs(*j);
    if (kind == job_kind::amax) {
      j->needed = pos;
      return j;
    }
    if (quant) {
      std::string err;
      const weight_scheme ks = part.scheme->kernel();
      if (importer) {
        // The kernel's own outputs of the range (dense), converted by the compute stage.
        for (const output_piece& p : range_layout(ks, shape, r0, r1, nullptr, part.input_type)) {
          j->kernel_pos.push_back(align_up(pos, 64));
          pos = j->kernel_pos.back() + p.run_bytes * p.count;
        }
      }
      const auto pieces = importer ? importer_range_layout(ks, shape, r0, r1, &err)
                                   : range_layout(ks, shape, r0, r1, &err, part.input_type);
      if (!err.empty()) throw input_error(src_path, part.name, input_error::no_offset, err);
      for (size_t i = 0; i < pieces.size() && i < part.outputs.size(); ++i) {
        const planned_output& o = part.outputs[i];
        const output_piece& p = pieces[i];
        const bool per_tensor_scale = o.shape.empty();
        if (per_tensor_scale && r0 != 0) {  // written once, by the first range
          if (importer) {                   // still produced by the conversion: scratch room
            j->importer_pos.push_back(align_up(pos, 64));
            pos = j->importer_pos.back() + p.run_bytes * p.count;
          }
          continue;
        }
        write_piece w;
        w.tensor = o.name;
        w.slot = static_cast<uint8_t>(i);
        w.tensor_offset = p.offset;
        w.file_offset = o.file_offset + p.offset;
        w.bytes = p.run_bytes;
        w.segments = p.count;
        w.segment_stride = p.stride;
        if (w.segments > 1 && w.segment_stride == w.bytes) {
          // Runs back to back (e.g. a per-group int4 weight of a whole tensor): one write.
          w.bytes *= w.segments;
          w.segments = 1;
          w.segment_stride = 0;
        }
        w.token_pos = place_for_write(pos, w.file_offset);
        pos = w.token_pos + w.total_bytes();
        if (importer) j->importer_pos.push_back(w.token_pos);
        j->output_bytes += w.total_bytes();
        j->outputs.push_back(std::move(w));
      }
    } else {
      // copy / cast of a strided slice or of recovered rows: one contiguous output range.
      const planned_output& o = part.outputs.at(0);
      const uint64_t orow = rows ? o.bytes / rows : 0;
      write_piece w;
      w.tensor = o.name;
      w.tensor_offset = r0 * orow;
      w.file_offset = o.file_offset + w.tensor_offset;
      w.bytes = (r1 - r0) * orow;
      w.token_pos = place_for_write(pos, w.file_offset);
      pos = w.token_pos + w.bytes;
      j->output_bytes = w.bytes;
      j->outputs.push_back(std::move(w));
    }
    j->needed = pos;
    return j;
  };

  job_kind main_kind = job_kind::quantize;
  if (!quant)
    main_kind = (part.action == tensor_action::cast || part.action == tensor_action::recover_cast)
                    ? job_kind::cast
                    : job_kind::copy;

  // Rows per job: the most (a multiple of `mult`) whose layout fits one token. The layout of
  // the first range is measured; other ranges differ only in where their output pieces sit
  // inside a block (less than one block each), which the slack covers.
  const uint64_t slack = k_align * (part.outputs.size() + 1);
  const uint64_t fit = token_bytes_ > slack ? token_bytes_ - slack : 0;
  uint64_t per = rows;
  if (make(main_kind, 0, rows)->needed > fit) {
    const uint64_t one = std::min(rows, mult);
    const uint64_t need_one = make(main_kind, 0, one)->needed;
    if (need_one > fit)
      throw input_error(src_path, part.name, input_error::no_offset,
                        std::to_string(one) + " row(s) need " + mib(need_one + slack) +
                            " of host buffer but one token holds " + mib(token_bytes_) +
                            "; raise --memory-budget (tokens are budget/8, at most 256 MiB)");
    // The layout grows with the row count: binary search over multiples of `mult`.
    uint64_t lo = 1, hi = rows / mult;  // `lo * mult` rows fit, `(hi + 1) * mult` do not
    while (lo < hi) {
      const uint64_t mid = lo + (hi - lo + 1) / 2;
      if (make(main_kind, 0, mid * mult)->needed <= fit)
        lo = mid;
      else
        hi = mid - 1;
    }
    per = std::max(one, lo * mult);
  }
  const bool split = per < rows;
  std::shared_ptr<tensor_state> ts;
  if (quant && split && needs_tensor_amax(part.scheme->kernel())) {
    ts = std::make_shared<tensor_state>();
    ts->name = part.name;
    ts->amax_jobs_left = (rows + per - 1) / per;
    ts->quantize_jobs_left = (rows + per - 1) / per;
    for (uint64_t r0 = 0; r0 < rows; r0 += per) {
      auto j = make(job_kind::amax, r0, std::min(rows, r0 + per));
      j->seq = seq++;
      j->tensor_shared = ts;
      out.push_back(std::move(j));
    }
  }
  for (uint64_t r0 = 0; r0 < rows || (rows == 0 && r0 == 0); r0 += per) {
    auto j = make(main_kind, r0, std::min(rows, r0 + per));
    j->seq = seq++;
    j->tensor_shared = ts;
    out.push_back(std::move(j));
    if (rows == 0) break;
  }
}

}  // namespace shardquant
