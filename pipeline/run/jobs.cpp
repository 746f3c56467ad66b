// Plan -> jobs: file ranges, row splits, output pieces and token layouts.
#include "pipeline/run/jobs.h"

#include "io/file.h"

#include <algorithm>
#include <functional>
#include <numeric>
#include <string>

#include "io/error.h"
#include "kernels/importer_layout.h"
#include "kernels/quantize.h"
#include "pipeline/plan/plan_rotation.h"

namespace shardquant {

namespace {

uint64_t numel_of(const std::vector<uint64_t>& shape) {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
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

input_spec rows_input(const rows_view& rv, std::shared_ptr<tensor_source> f, uint64_t r0,
                      uint64_t r1) {
  input_spec in;
  in.source = std::move(f);
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

// Read area, gather area and scale area of a job (the landing rules of io/tensor_source.h);
// returns the first free position.
uint64_t layout_inputs(job& j) {
  uint64_t pos = j.input.area_bytes();  // the main read area starts at 0
  if (j.input.runs > 1) {
    j.gather_pos = scratch_start(pos);
    pos = j.gather_pos + j.input.wanted_bytes();
  }
  if (j.fp8_block.enabled) {
    j.scale_pos = read_area_start(pos);
    pos = j.scale_pos + j.fp8_block.scale.area_bytes();
  }
  if (j.ct.enabled) {
    j.scale_pos = read_area_start(pos);
    pos = j.scale_pos + j.ct.scale.area_bytes();
    if (j.ct.zero_point.length) {
      j.zp_pos = read_area_start(pos);
      pos = j.zp_pos + j.ct.zero_point.area_bytes();
    }
    if (j.ct.g_idx.length) {
      j.gidx_pos = read_area_start(pos);
      pos = j.gidx_pos + j.ct.g_idx.area_bytes();
    }
  }
  if (j.fp8_block.enabled || j.ct.enabled) {  // the recovered F32 rows
    j.work_pos = scratch_start(pos);
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
      sources_(p.source.shards.size()) {}

std::shared_ptr<tensor_source> job_builder::source_file(uint32_t shard) {
  auto& f = sources_.at(shard);
  const source_shard& sh = plan_.source.shards[shard];
  // The kind (plain, zstd) follows the file name (io/tensor_source.h).
  if (!f) f = open_tensor_source(sh.path, {.direct = direct_, .plain_size = sh.header.file_size});
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
  state.jobs_left = jobs.size();
  return jobs;
}

namespace {

// Bytes of a generated input_rotation buffer one job writes: a token's worth, whole blocks.
uint64_t generated_bytes_per_job(uint64_t token_bytes) {
  return std::max(whole_blocks(token_bytes - alignment_slack(2)), token_area_alignment);
}

// The I8 input_rotation buffer of an online rotation: no input, a token's worth of bytes a job.
void add_generated_rotation_jobs(const plan_part& part, std::shared_ptr<tensor_source> file,
                                 uint64_t token_bytes, shard_state& state,
                                 std::vector<std::unique_ptr<job>>& out, uint64_t& seq) {
  const planned_output& o = part.outputs.at(0);
  const uint64_t per = generated_bytes_per_job(token_bytes);
  for (uint64_t b0 = 0; b0 < o.bytes; b0 += per) {
    auto j = std::make_unique<job>();
    j->seq = seq++;
    j->kind = job_kind::copy;
    j->tensor = part.name;
    j->source = "(generated)";
    j->in_type = dtype::i8;
    j->out_type = dtype::i8;
    j->input.source = file;
    j->input.offset = 0;
    j->input.length = 0;
    j->generated_rotation = part.generated_rotation;
    j->shard = &state;
    write_piece w;
    w.tensor = o.name;
    w.tensor_offset = b0;
    w.file_offset = o.file_offset + b0;
    w.bytes = std::min(per, o.bytes - b0);
    w.token_pos = write_start(0, w.file_offset);
    j->output_bytes = w.bytes;
    j->needed = w.token_pos + w.bytes;
    j->outputs.push_back(std::move(w));
    out.push_back(std::move(j));
  }
}

// Elements per job of a whole contiguous copy or cast: the read area (+ 2 blocks of slack)
// and, for casts, the output area.
uint64_t flat_elements_per_job(const plan_part& part, dtype in, dtype out, uint64_t token_bytes) {
  const bool cast = part.action == tensor_action::cast;
  const uint64_t ib = cast ? bits(in) / 8 : 1, ob = cast ? bits(out) / 8 : 1;
  const uint64_t room = token_bytes > alignment_slack(3) ? token_bytes - alignment_slack(3) : 0;
  const uint64_t per = cast ? (ib + ob ? room / (ib + ob) : room) : room;
  return std::max<uint64_t>(whole_blocks(per), 1);
}

bool is_flat(const plan_item& item, const plan_part& part) {
  return item.recovery.kind == recovery_kind::none &&
         (part.action == tensor_action::pass_through ||
          part.action == tensor_action::keep_original || part.action == tensor_action::cast) &&
         part.slice.is_whole();
}

bool moves_nothing(const plan_part& part) {
  uint64_t out_bytes = 0;
  for (const auto& o : part.outputs) out_bytes += o.bytes;
  return out_bytes == 0 && part.input_bytes == 0;  // empty tensor: no job
}

// The jobs of one row-range part (quantized tensors, recovered tensors, strided converter
// slices). `open` gives a shard's source file; a maker whose `open` returns null only measures
// layouts (the run geometry of the dry run), which never touch a file.
class row_job_maker {
 public:
  row_job_maker(const plan& p, const plan_item& item, const plan_part& part,
                std::function<std::shared_ptr<tensor_source>(uint32_t)> open, shard_state* state)
      : item_(item), part_(part), open_(std::move(open)), state_(state) {
    const source_ref& src = item.source;
    const recovery_kind rk = item.recovery.kind;
    recovered_ = rk != recovery_kind::none;
    quant_ =
        part.action == tensor_action::quantize || part.action == tensor_action::recover_quantize;
    src_path_ = p.source.shards[src.shard].path.string();
    const std::vector<uint64_t>& shape = part.input_shape;
    rows_ = shape.empty() ? 1 : shape[0];
    cols_ = rows_ ? numel_of(shape) / rows_ : 0;
    if (recovered_ && !part.slice.is_whole())
      throw input_error(src_path_, part.name, input_error::no_offset,
                        "converters on recovered (quantized-source) tensors are not supported");
    rv_ = make_rows_view(src, part, rows_);
    file_ = open_(src.shard);
    // --layout quark-importer changes the outputs of the integer schemes (importer_layout.h).
    importer_ = quant_ && p.options.layout == output_layout::quark_importer &&
                importer_layout_differs(part.scheme->kernel());
    mult_ = !quant_     ? 1
            : importer_ ? std::max<uint32_t>(1, importer_row_split_multiple(part.scheme->kernel()))
                        : std::max<uint32_t>(1, row_split_multiple(part.scheme->kernel()));
    // R2 output-channel rotations need whole blocks of head_dim rows in a range.
    mult_ = std::lcm<uint64_t>(mult_, rotation_row_multiple(part));
    main_kind_ = job_kind::quantize;
    if (!quant_)
      main_kind_ =
          (part.action == tensor_action::cast || part.action == tensor_action::recover_cast)
              ? job_kind::cast
              : job_kind::copy;
    if (rk == recovery_kind::ct_packed || rk == recovery_kind::ct_float ||
        rk == recovery_kind::ct_int || rk == recovery_kind::fp4_packed)
      init_ct();
    if (rk == recovery_kind::fp8_block) init_fp8_block();
  }

  [[nodiscard]] uint64_t rows() const noexcept { return rows_; }
  [[nodiscard]] job_kind main_kind() const noexcept { return main_kind_; }
  [[nodiscard]] bool needs_amax_when_split() const {
    return quant_ && needs_tensor_amax(part_.scheme->kernel());
  }

  // Rows per job: the most (a multiple of the scheme's row multiple) whose layout fits one
  // token. The layout of the first range is measured; other ranges differ only in where their
  // output pieces sit inside a block (less than one block each), which the slack covers.
  [[nodiscard]] uint64_t rows_per_job(uint64_t token_bytes) const {
    const uint64_t slack = alignment_slack(part_.outputs.size() + 1);
    const uint64_t fit = token_bytes > slack ? token_bytes - slack : 0;
    if (make(main_kind_, 0, rows_)->needed <= fit) return rows_;
    const uint64_t one = std::min(rows_, mult_);
    const uint64_t need_one = make(main_kind_, 0, one)->needed;
    if (need_one > fit)
      throw input_error(src_path_, part_.name, input_error::no_offset,
                        std::to_string(one) + " row(s) need " + mib(need_one + slack) +
                            " of host buffer but one token holds " + mib(token_bytes) +
                            "; raise --memory-budget (tokens are budget/8, at most 256 MiB)");
    // The layout grows with the row count: binary search over multiples of `mult_`.
    uint64_t lo = 1, hi = rows_ / mult_;  // `lo * mult_` rows fit, `(hi + 1) * mult_` do not
    while (lo < hi) {
      const uint64_t mid = lo + (hi - lo + 1) / 2;
      if (make(main_kind_, 0, mid * mult_)->needed <= fit)
        lo = mid;
      else
        hi = mid - 1;
    }
    return std::max(one, lo * mult_);
  }

  // The job for rows [r0, r1) of `kind`; its layout is in job::needed.
  [[nodiscard]] std::unique_ptr<job> make(job_kind kind, uint64_t r0, uint64_t r1) const {
    const plan_part& part = part_;
    const source_ref& src = item_.source;
    auto j = std::make_unique<job>();
    j->kind = kind;
    j->tensor = part.name;
    j->source = src_path_;
    j->in_type = recovered_ ? src.type : part.input_type;
    j->out_type = part.outputs.at(0).type;
    if (quant_) j->scheme = part.scheme->kernel();
    j->shape = part.input_shape;
    j->total_rows = rows_;
    j->cols = cols_;
    j->row_begin = r0;
    j->rows = r1 - r0;
    j->shard = state_;
    j->fp8_block = fb_;
    j->ct = ct_;
    j->rotations = part.rotations;
    j->input = rows_input(rv_, file_, r0, r1);
    j->input_bytes = kind == job_kind::amax ? 0 : j->input.wanted_bytes();
    uint64_t pos = layout_inputs(*j);
    if (kind == job_kind::amax) {
      j->needed = pos;
      return j;
    }
    if (quant_) {
      std::string err;
      const weight_scheme ks = part.scheme->kernel();
      const std::vector<uint64_t>& shape = part.input_shape;
      if (importer_) {
        // The kernel's own outputs of the range (dense), converted by the compute stage.
        for (const output_piece& p : range_layout(ks, shape, r0, r1, nullptr, part.input_type)) {
          j->kernel_pos.push_back(scratch_start(pos));
          pos = j->kernel_pos.back() + p.run_bytes * p.count;
        }
      }
      const auto pieces = importer_ ? importer_range_layout(ks, shape, r0, r1, &err)
                                    : range_layout(ks, shape, r0, r1, &err, part.input_type);
      if (!err.empty()) throw input_error(src_path_, part.name, input_error::no_offset, err);
      for (size_t i = 0; i < pieces.size() && i < part.outputs.size(); ++i) {
        const planned_output& o = part.outputs[i];
        const output_piece& p = pieces[i];
        const bool per_tensor_scale = o.shape.empty();
        if (per_tensor_scale && r0 != 0) {  // written once, by the first range
          if (importer_) {                  // still produced by the conversion: scratch room
            j->importer_pos.push_back(scratch_start(pos));
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
        w.token_pos = write_start(pos, w.file_offset);
        pos = w.token_pos + w.total_bytes();
        if (importer_) j->importer_pos.push_back(w.token_pos);
        j->output_bytes += w.total_bytes();
        j->outputs.push_back(std::move(w));
      }
    } else {
      // copy / cast of a strided slice or of recovered rows: one contiguous output range.
      const planned_output& o = part.outputs.at(0);
      const uint64_t orow = rows_ ? o.bytes / rows_ : 0;
      write_piece w;
      w.tensor = o.name;
      w.tensor_offset = r0 * orow;
      w.file_offset = o.file_offset + w.tensor_offset;
      w.bytes = (r1 - r0) * orow;
      w.token_pos = write_start(pos, w.file_offset);
      pos = w.token_pos + w.bytes;
      j->output_bytes = w.bytes;
      j->outputs.push_back(std::move(w));
    }
    j->needed = pos;
    return j;
  }

 private:
  input_spec whole(const source_ref& r) const {
    input_spec in;
    in.source = open_(r.shard);
    in.offset = r.file_offset;
    in.length = r.bytes;
    return in;
  }

  void init_ct() {
    const recovery_kind rk = item_.recovery.kind;
    const recovery_params& rp = item_.recovery;
    const source_ref& sc = rp.scale.value();
    ct_.enabled = true;
    ct_.layout = rk == recovery_kind::ct_packed  ? ct_layout::pack_quantized
                 : rk == recovery_kind::ct_float ? ct_layout::float_quantized
                                                 : ct_layout::int_quantized;
    ct_.bits = rp.num_bits;
    ct_.fp8 = item_.source.type == dtype::f8_e5m2 ? fp8_kind::e5m2 : fp8_kind::e4m3fn;
    ct_.strategy = rp.strategy;
    ct_.group_size = rp.group_size;
    ct_.groups = sc.shape.size() >= 2 ? sc.shape[1] : 1;
    ct_.block_rows = rp.block_rows;
    ct_.block_cols = rp.block_cols;
    ct_.scale = whole(sc);
    ct_.scale_type = sc.type;
    if (rp.zero_point) {
      ct_.zero_point = whole(*rp.zero_point);
      ct_.zero_point_type = rp.zero_point->type;
    }
    if (rp.g_idx) ct_.g_idx = whole(*rp.g_idx);
    if (rk == recovery_kind::fp4_packed) {
      ct_.layout = rp.fp4_layout;
      ct_.strategy = ct_strategy::group;
      ct_.groups = rows_ && rp.group_size ? cols_ / rp.group_size : 0;
      ct_.global_scale = rp.global_scale;
      ct_.recovered_type = rp.recovered_type;
      if (sc.type == dtype::u8) ct_.scale_type = dtype::f8_e8m0;  // CT stores E8M0 bytes as U8
    }
  }

  void init_fp8_block() {
    const recovery_params& rp = item_.recovery;
    const source_ref& sc = rp.scale.value();
    fb_.enabled = true;
    fb_.scale = whole(sc);
    fb_.scale_type = sc.type;
    fb_.scale_rows = sc.shape.size() == 2 ? sc.shape[0] : 0;
    fb_.scale_cols = sc.shape.size() == 2 ? sc.shape[1] : 0;
    fb_.block_rows = rp.block_rows;
    fb_.block_cols = rp.block_cols;
    fb_.chunk_rows = rp.chunk_rows;
  }

  const plan_item& item_;
  const plan_part& part_;
  std::function<std::shared_ptr<tensor_source>(uint32_t)> open_;
  shard_state* state_;
  bool recovered_ = false, quant_ = false, importer_ = false;
  std::string src_path_;
  uint64_t rows_ = 1, cols_ = 0, mult_ = 1;
  rows_view rv_;
  std::shared_ptr<tensor_source> file_;
  job_kind main_kind_ = job_kind::copy;
  ct_spec ct_;
  fp8_block_spec fb_;
};

uint64_t ceil_div(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}

part_cut cut_of(const row_job_maker& m, uint64_t token_bytes) {
  part_cut c;
  c.row_ranges = true;
  c.per_job = m.rows_per_job(token_bytes);
  c.main_jobs = m.rows() == 0 ? 1 : ceil_div(m.rows(), c.per_job);
  if (c.main_jobs > 1 && m.needs_amax_when_split()) c.amax_jobs = c.main_jobs;
  return c;
}

}  // namespace

part_cut cut_part(const plan& p, const plan_item& item, const plan_part& part,
                  uint64_t token_bytes) {
  if (moves_nothing(part)) return {};
  if (part.generated_rotation) {
    part_cut c;
    c.per_job = generated_bytes_per_job(token_bytes);
    c.main_jobs = ceil_div(part.outputs.at(0).bytes, c.per_job);
    return c;
  }
  if (is_flat(item, part)) {
    part_cut c;
    const uint64_t ib = part.action == tensor_action::cast ? bits(item.source.type) / 8 : 1;
    const uint64_t n_elems = ib ? item.source.bytes / ib : 0;
    c.per_job = flat_elements_per_job(part, item.source.type, part.outputs.at(0).type, token_bytes);
    c.main_jobs = n_elems == 0 ? 1 : ceil_div(n_elems, c.per_job);
    return c;
  }
  const row_job_maker m(
      p, item, part, [](uint32_t) { return std::shared_ptr<tensor_source>(); }, nullptr);
  return cut_of(m, token_bytes);
}

void job_builder::add_part_jobs(const plan_item& item, const plan_part& part, shard_state& state,
                                std::vector<std::unique_ptr<job>>& out, uint64_t& seq) {
  if (moves_nothing(part)) return;
  if (part.generated_rotation) {
    add_generated_rotation_jobs(part, source_file(item.source.shard), token_bytes_, state, out,
                                seq);
    return;
  }
  if (is_flat(item, part))
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
  const uint64_t per = flat_elements_per_job(part, src.type, o.type, token_bytes_);
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
    j->input.source = file;
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
    uint64_t pos = j->input.area_bytes();
    if (cast) {
      w.token_pos = write_start(pos, w.file_offset);
      pos = w.token_pos + w.bytes;
    } else {
      w.token_pos = write_start(0, w.file_offset);  // moved in place (arrange_input)
      pos = std::max(pos, w.token_pos + w.bytes);
    }
    j->needed = pos;
    j->outputs.push_back(std::move(w));
    out.push_back(std::move(j));
    if (n_elems == 0) break;
  }
}

// Quantized tensors, recovered tensors and strided converter slices: row ranges, cut by the
// same rule (cut_of) the run geometry reports.
void job_builder::add_row_jobs(const plan_item& item, const plan_part& part, shard_state& state,
                               std::vector<std::unique_ptr<job>>& out, uint64_t& seq) {
  const row_job_maker m(
      plan_, item, part, [this](uint32_t shard) { return source_file(shard); }, &state);
  const part_cut c = cut_of(m, token_bytes_);
  const uint64_t rows = m.rows(), per = c.per_job;
  std::shared_ptr<tensor_state> ts;
  if (c.amax_jobs) {
    ts = std::make_shared<tensor_state>();
    ts->name = part.name;
    ts->amax_jobs_left = c.amax_jobs;
    ts->quantize_jobs_left = c.main_jobs;
    for (uint64_t r0 = 0; r0 < rows; r0 += per) {
      auto j = m.make(job_kind::amax, r0, std::min(rows, r0 + per));
      j->seq = seq++;
      j->tensor_shared = ts;
      out.push_back(std::move(j));
    }
  }
  for (uint64_t r0 = 0; r0 < rows || (rows == 0 && r0 == 0); r0 += per) {
    auto j = m.make(m.main_kind(), r0, std::min(rows, r0 + per));
    j->seq = seq++;
    j->tensor_shared = ts;
    out.push_back(std::move(j));
    if (rows == 0) break;
  }
}

}  // namespace shardquant
