// CPU compute stage: gather, block-FP8 recovery, cast, amax and quantize of one job in its token.
#include "stages/compute_cpu.h"

#include "stages/compute_backend.h"

#include <tbb/parallel_for.h>

#include <cstring>
#include <string>

#include "io/error.h"
#include "kernels/element_cast.h"
#include "kernels/fp8.h"
#include "kernels/importer_layout.h"
#include "kernels/numeric.h"
#include "kernels/quantize.h"
#include "kernels/recover.h"
#include "kernels/recover_tensors.h"

namespace shardquant {

namespace {

std::byte* at(job& j, uint64_t pos) {
  return j.tok->data + pos;
}

[[noreturn]] void fail(const job& j, const std::string& message,
                       uint64_t offset = input_error::no_offset) {
  throw input_error(j.source, j.tensor, offset, message);
}

bool castable_from(dtype t) {
  return t == dtype::f32 || t == dtype::bf16 || t == dtype::f16 || t == dtype::f64 ||
         t == dtype::f8_e4m3 || t == dtype::f8_e5m2;
}
bool castable_to(dtype t) {
  return t == dtype::f32 || t == dtype::bf16 || t == dtype::f16 || t == dtype::f64;
}

void cast_elements(const job& j, const std::byte* in, std::byte* out, uint64_t n) {
  if (!castable_from(j.in_type) || !castable_to(j.out_type))
    fail(j, std::string("cannot cast ") + std::string(name(j.in_type)) + " to " +
                std::string(name(j.out_type)));
  if (j.in_type == dtype::f64 && j.out_type == dtype::f64) {
    std::memcpy(out, in, n * 8);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<uint64_t>(0, n, 1 << 16), [&](const auto& r) {
    for (uint64_t i = r.begin(); i != r.end(); ++i)
      store_float(j.out_type, out, i, load_float(j.in_type, in, i));
  });
}

scale_kind scale_kind_of(const job& j, dtype t) {
  if (const auto k = scale_kind_of(t)) return *k;  // the kernels' table of scale dtypes
  fail(j, "block-FP8 scale of dtype " + std::string(name(t)) + " is not supported");
}

// formats.md §7.2.2 for rows [row_begin, row_begin + rows) into F32 at work_pos, through the
// kernels' recovery API.
void recover_fp8_block_rows(job& j) {
  const fp8_block_source s = fp8_block_source_of(j, at(j, j.data_pos), at(j, j.scale_data_pos));
  if (std::string why = check_fp8_block(s); !why.empty()) fail(j, why);
  const quant_status st = recover_fp8_block(s, reinterpret_cast<float*>(at(j, j.work_pos)));
  if (!st.ok()) fail(j, st.message());
}

// formats.md §7.3.2 for rows [row_begin, row_begin + rows) into F32 at work_pos.
void recover_ct_rows(job& j) {
  const ct_spec& c = j.ct;
  ct_source s;
  s.layout = c.layout;
  s.rows = j.total_rows;
  s.cols = j.cols;
  s.bits = c.bits;
  s.fp8 = c.fp8;
  s.weight = at(j, j.data_pos);
  s.row_begin = j.row_begin;
  s.row_end = j.row_begin + j.rows;
  s.scale_type = scale_kind_of(j, c.scale_type);
  s.scale = at(j, j.scale_data_pos);
  s.strategy = c.strategy;
  s.group_size = c.group_size;
  s.groups = c.groups;
  s.block_rows = c.block_rows;
  s.block_cols = c.block_cols;
  if (c.zero_point.length) {
    s.zero_point = at(j, j.zp_data_pos);
    s.zero_point_type = c.zero_point_type;
  }
  if (c.g_idx.length) s.g_idx = reinterpret_cast<const int32_t*>(at(j, j.gidx_data_pos));
  s.global_scale = c.global_scale;
  if (c.recovered_type != dtype::f32) s.fp4_round = c.recovered_type;
  if (std::string why = check_compressed(s); !why.empty()) fail(j, why);
  float* out = reinterpret_cast<float*>(at(j, j.work_pos));
  const quant_status st = recover_compressed(s, out);
  if (st.what == quant_status::code::bad_scale && is_fp4_layout(c.layout) && c.scale.runs <= 1) {
    // A NaN scale code (E8M0 0xFF, F8_E4M3 S.1111.111): name its byte in the source file.
    const uint64_t eb = std::max<uint32_t>(1, bits(c.scale_type) / 8);
    fail(j,
         "scale element " + std::to_string(st.index) + " is a NaN code (" +
             std::string(name(c.scale_type)) + ")",
         c.scale.offset + st.index * eb);
  }
  if (!st.ok()) fail(j, st.message());
  // FP4 sources reach the quantizer in a 16-bit dtype (as in the reference): narrow in place
  // (exact: the values are already rounded to it; element i moves from 4i to 2i, front first).
  if (c.recovered_type == dtype::bf16 || c.recovered_type == dtype::f16) {
    auto* dst = reinterpret_cast<uint16_t*>(out);
    const uint64_t n = j.rows * j.cols;
    for (uint64_t i = 0; i < n; ++i)
      dst[i] = c.recovered_type == dtype::bf16 ? to_bf16_rne(out[i]) : to_f16_rne(out[i]);
  }
}

}  // namespace

dtype recovered_type_of(const job& j) {
  return j.ct.enabled && j.ct.recovered_type != dtype::f32 ? j.ct.recovered_type : dtype::f32;
}

bool recover_rows(job& j) {
  if (j.fp8_block.enabled)
    recover_fp8_block_rows(j);
  else if (j.ct.enabled)
    recover_ct_rows(j);
  else
    return false;
  return true;
}

fp8_block_source fp8_block_source_of(const job& j, const void* weight, const void* scale) {
  const fp8_block_spec& b = j.fp8_block;
  if (j.in_type != dtype::f8_e4m3 && j.in_type != dtype::f8_e5m2)
    fail(j, "block-FP8 weight of dtype " + std::string(name(j.in_type)));
  fp8_block_source s;
  s.weight_kind = j.in_type == dtype::f8_e4m3 ? fp8_kind::e4m3fn : fp8_kind::e5m2;
  s.rows = j.total_rows;
  s.cols = j.cols;
  s.weight = static_cast<const uint8_t*>(weight);
  s.row_begin = j.row_begin;
  s.row_end = j.row_begin + j.rows;
  s.scale_type = scale_kind_of(j, b.scale_type);
  s.scale = scale;
  s.scale_rows = b.scale_rows;
  s.scale_cols = b.scale_cols;
  s.block_rows = b.block_rows;
  s.block_cols = b.block_cols;
  s.chunk_rows = b.chunk_rows;
  return s;
}

void arrange_input(job& j) {
  // Each read landed read_skip(offset) bytes into its area (io/tensor_source.h).
  const input_spec& in = j.input;
  if (in.runs > 1) {
    in.gather(at(j, 0), at(j, j.gather_pos));
    j.data_pos = j.gather_pos;
  } else {
    j.data_pos = in.skip();
  }
  if (j.fp8_block.enabled) j.scale_data_pos = j.scale_pos + j.fp8_block.scale.skip();
  if (j.ct.enabled) {
    j.scale_data_pos = j.scale_pos + j.ct.scale.skip();
    j.zp_data_pos = j.zp_pos + j.ct.zero_point.skip();
    j.gidx_data_pos = j.gidx_pos + j.ct.g_idx.skip();
  }
  if (j.kind == job_kind::copy && !j.outputs.empty() && j.outputs[0].token_pos != j.data_pos) {
    std::memmove(at(j, j.outputs[0].token_pos), at(j, j.data_pos), j.outputs[0].bytes);
    j.data_pos = j.outputs[0].token_pos;
  }
}

void run_cpu_compute_then(job& j, const compute_done& done) {
  std::exception_ptr e;
  try {
    run_cpu_compute(j);
  } catch (...) {
    e = std::current_exception();
  }
  done(e);
}

void run_cpu_compute(job& j) {
  if (j.generated_rotation) {
    for (const auto& p : j.outputs)
      input_rotation_bytes(j.generated_rotation, p.tensor_offset, p.bytes,
                           reinterpret_cast<int8_t*>(at(j, p.token_pos)));
    return;
  }
  arrange_input(j);
  if (j.kind == job_kind::copy) return;
  const bool recovered = j.fp8_block.enabled || j.ct.enabled;
  if (j.kind == job_kind::cast && !recovered) {
    const uint64_t n = j.outputs[0].bytes * 8 / bits(j.out_type);
    cast_elements(j, at(j, j.data_pos), at(j, j.outputs[0].token_pos), n);
    return;
  }
  // Everything else works on rows of the (recovered) input.
  dtype src = j.in_type;
  const std::byte* data = at(j, j.data_pos);
  if (recover_rows(j)) {
    src = recovered_type_of(j);
    data = at(j, j.work_pos);
    if (j.kind == job_kind::cast) {
      job tmp_view = j;  // only the dtypes differ for the element loop
      tmp_view.in_type = src;
      cast_elements(tmp_view, data, at(j, j.outputs[0].token_pos), j.rows * j.cols);
      return;
    }
  }
  if (!j.rotations.empty()) {
    // The weight's rows are rotated in place (their token area is the job's own) before the
    // amax pass or quantization, as Quark rotates the recovered tensor before quantizing it.
    std::byte* rows = at(j, data == at(j, j.work_pos) ? j.work_pos : j.data_pos);
    try {
      for (const auto& s : j.rotations) apply_rotation(s, rows, src, j.rows, j.cols);
    } catch (const std::invalid_argument& e) {
      fail(j, e.what());
    }
  }
  source_view v;
  v.type = src;
  v.shape = j.shape;
  v.data = data;
  v.row_begin = j.row_begin;
  v.row_end = j.row_begin + j.rows;
  if (j.kind == job_kind::amax) {
    const amax_result a = amax(v);
    if (!a.finite()) fail(j, "NaN or Inf in the weight at element " + std::to_string(a.first_bad));
    j.range_amax = a.amax;
    return;  // the graph folds it into the tensor (fold_amax)
  }
  quant_outputs out;
  if (!j.kernel_pos.empty()) {  // --layout quark-importer: own room, converted below
    void** slot[4] = {&out.weight, &out.scale, &out.extra, &out.extra2};
    for (size_t i = 0; i < j.kernel_pos.size() && i < 4; ++i) *slot[i] = at(j, j.kernel_pos[i]);
  } else {
    for (const auto& p : j.outputs) {
      void* dst = at(j, p.token_pos);
      if (p.slot == 0) out.weight = dst;
      if (p.slot == 1) out.scale = dst;
      if (p.slot == 2) out.extra = dst;
      if (p.slot == 3) out.extra2 = dst;  // zero point of a pair's asymmetric second stage
    }
  }
  std::optional<float> ta;
  if (j.tensor_shared) ta = tensor_amax_of(j);
  const quant_status st = quantize(j.scheme, v, out, ta);
  if (!st.ok()) fail(j, st.message());
  if (!j.kernel_pos.empty()) {
    std::vector<void*> dst;
    for (uint64_t pos : j.importer_pos) dst.push_back(at(j, pos));
    to_importer_layout(j.scheme, j.shape, j.row_begin, j.row_begin + j.rows, out, dst, src);
  }
}

std::vector<job*> fold_amax(job& j, float range_amax) {
  tensor_state& t = *j.tensor_shared;
  uint32_t bits_now = f32_bits(range_amax);
  uint32_t cur = t.amax_bits.load();
  while (bits_now > cur && !t.amax_bits.compare_exchange_weak(cur, bits_now)) {
  }
  if (t.amax_jobs_left.fetch_sub(1) != 1) return {};
  std::lock_guard lock(t.mutex);
  t.amax_ready = true;
  return std::move(t.parked);
}

bool park_until_amax(job& j) {
  tensor_state& t = *j.tensor_shared;
  std::lock_guard lock(t.mutex);
  if (t.amax_ready) return false;
  t.parked.push_back(&j);
  return true;
}

float tensor_amax_of(const job& j) {
  return f32_from_bits(j.tensor_shared->amax_bits.load());
}

}  // namespace shardquant

namespace shardquant {

namespace {

class cpu_backend final : public compute_backend {
 public:
  explicit cpu_backend(unsigned n) : n_(n ? n : 1) {}
  void run(job& j, compute_done done) override { run_cpu_compute_then(j, done); }
  void drain() override {}
  unsigned concurrency() const noexcept override { return n_; }
  std::string name() const override { return "cpu"; }

 private:
  unsigned n_;
};

}  // namespace

std::unique_ptr<compute_backend> make_cpu_backend(unsigned concurrency) {
  return std::make_unique<cpu_backend>(concurrency);
}

}  // namespace shardquant
