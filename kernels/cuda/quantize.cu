// kernels/gpu_api.h's launch API: argument checks mirroring the CPU API (kernels/quantize.h),
// the workspace/status protocol, block-FP8 source validation, and the dispatch from a scheme to
// its kernel family (quantize_tensor/row/mx/group.cu). No kernel math here.
#include <algorithm>
#include <atomic>
#include <string>

#include "kernels/cuda/launch.cuh"

namespace shardquant::gpu {
namespace detail {

int sm_count() {
  static std::atomic<int> cache[64];
  int dev = 0;
  SQ_CUDA(cudaGetDevice(&dev));
  if (dev < 64) {
    const int c = cache[dev].load(std::memory_order_relaxed);
    if (c > 0) return c;
  }
  int n = 0;
  SQ_CUDA(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  if (dev < 64) cache[dev].store(n, std::memory_order_relaxed);
  return n;
}

unsigned grid_for(uint64_t items, unsigned block, unsigned per_sm) {
  const uint64_t need = (items + block - 1) / block;
  const uint64_t cap = static_cast<uint64_t>(sm_count()) * per_sm;
  return static_cast<unsigned>(std::max<uint64_t>(1, std::min(need, cap)));
}

}  // namespace detail

namespace {

using namespace detail;

cudaStream_t cuda_stream(const stream& s) {
  return static_cast<cudaStream_t>(s.native());
}

using qcode = quant_status::code;

// Checks what the CPU API checks (kernels/quantize_detail.h) plus the shape prerequisites of
// check_shape(), and resolves the kernel geometry.
quant_status resolve(const weight_scheme& scheme, std::span<const uint64_t> shape, const void* data,
                     uint64_t row_begin, uint64_t row_end, const quant_outputs& out,
                     launch_geometry* g) {
  if (shape.size() < 2 || data == nullptr) return {qcode::bad_argument, 0};
  for (uint64_t d : shape)
    if (d == 0) return {qcode::bad_argument, 0};
  if (!check_shape(scheme, shape).empty()) return {qcode::bad_argument, 0};
  const uint64_t total = shape[0];
  const uint64_t end = row_end == k_all_rows ? total : row_end;
  if (end > total || row_begin >= end) return {qcode::bad_argument, row_begin};
  if (scheme.progressive && !progressive_error(scheme.first, scheme.second).empty())
    return {qcode::bad_argument, 0};
  // No CUDA kernel for these yet (the scheme table's backends column): the CUDA backend runs their
  // jobs on the CPU path (stages/compute_fallback.h); a direct call is refused.
  if (!backend_supports(backend_cuda, scheme)) return {qcode::bad_argument, 0};
  const weight_format& si = scheme.packed();
  const bool asym =
      si.family == scheme_family::uint4_group || si.family == scheme_family::uint4_channel;
  if (si.family == scheme_family::int4_group || si.family == scheme_family::uint4_group) {
    if (row_begin % 8 != 0 || (end % 8 != 0 && end != total))
      return {qcode::bad_argument, row_begin};
  }
  if (!out.weight) return {qcode::bad_argument, 0};
  const bool per_tensor_scale = needs_tensor_amax(scheme);
  if (!per_tensor_scale && !out.scale) return {qcode::bad_argument, 0};
  // A pair writes `_scale_2` to extra and an asymmetric second stage's zero point to extra2.
  if ((asym || scheme.progressive) && !out.extra) return {qcode::bad_argument, 0};
  if (scheme.progressive && asym && !out.extra2) return {qcode::bad_argument, 0};
  uint64_t inner = 1;
  for (size_t i = 1; i < shape.size(); ++i) inner *= shape[i];
  g->dim0_rows = end - row_begin;
  if (si.family == scheme_family::mx) {
    const uint64_t sub = inner / shape.back();
    g->rows = g->dim0_rows * sub;
    g->cols = shape.back();
    g->row_begin = row_begin * sub;
  } else {
    g->rows = g->dim0_rows;
    g->cols = inner;
    g->row_begin = row_begin;
  }
  return {};
}

// A progressive pair other than the int4_fp8 preset: the first stage's scales (prepass), then the
// second stage's kernel on a stage1_loader over the source (the first stage fused into its loads),
// packed in Quark's reorder order; its scale goes to extra (_scale_2), zero point to extra2.
template <class Src>
void launch_progressive(const weight_scheme& s, const Src& src, const launch_geometry& g,
                        const quant_outputs& o, void* ws, cudaStream_t st) {
  const stage1_kind k = s.first.family == scheme_family::fp8_row       ? stage1_kind::fp8_row
                        : s.first.family == scheme_family::int8_tensor ? stage1_kind::int8_tensor
                                                                       : stage1_kind::fp8_tensor;
  launch_stage1_scales(k, src, g, static_cast<float*>(o.scale), ws, st);
  const stage1_loader<Src> s1{src, k, ws, static_cast<const float*>(o.scale)};
  quant_outputs o2;
  o2.weight = o.weight;
  o2.scale = o.extra;
  o2.extra = o.extra2;
  o2.weight_ld = o.weight_ld;
  switch (s.second.family) {
    case scheme_family::fp8_row:
    case scheme_family::int4_channel:
    case scheme_family::uint4_channel:
      launch_row(s.second.family, s1, g, o2, ws, st, true);
      return;
    case scheme_family::int4_group:
    case scheme_family::uint4_group:
      launch_group(s.second, s1, g, o2, ws, st, true);
      return;
    default:
      return;  // refused by resolve() (progressive_error)
  }
}

template <class Src>
void launch_quantize(const weight_scheme& scheme, const Src& src, const launch_geometry& g,
                     const quant_outputs& o, void* ws, cudaStream_t st) {
  if (scheme.progressive) {
    if (scheme == weight_scheme(scheme_id::int4_fp8))
      launch_row(scheme_family::int4_fp8, src, g, o, ws, st);  // the preset, fused (§10)
    else
      launch_progressive(scheme, src, g, o, ws, st);
    return;
  }
  const weight_format& si = scheme.first;
  switch (si.family) {
    case scheme_family::fp8_tensor:
    case scheme_family::int8_tensor:
      launch_tensor(si.family, src, g, o, ws, st);
      return;
    case scheme_family::fp8_row:
    case scheme_family::int4_channel:
    case scheme_family::uint4_channel:
    case scheme_family::int4_fp8:
      launch_row(si.family, src, g, o, ws, st);
      return;
    case scheme_family::mx:
      launch_mx(si.element, src, g, o, ws, st);
      return;
    case scheme_family::int4_group:
    case scheme_family::uint4_group:
      launch_group(si, src, g, o, ws, st);
      return;
    case scheme_family::nvfp4:
    case scheme_family::amdfp4:
    case scheme_family::amdfp4_global:
      return;  // refused by resolve() (no CUDA kernel yet)
  }
}

// Typed dense source of a view; calls fn(source).
template <class Fn>
void with_dense(dtype t, const void* data, Fn&& fn) {
  switch (t) {
    case dtype::f32:
      fn(dense_source<src_kind::f32>{data});
      break;
    case dtype::bf16:
      fn(dense_source<src_kind::bf16>{data});
      break;
    default:
      fn(dense_source<src_kind::f16>{data});
      break;
  }
}

bool dense_type_ok(dtype t) {
  return t == dtype::f32 || t == dtype::bf16 || t == dtype::f16;
}

}  // namespace

namespace detail {

quant_status make_fp8_block(const fp8_block_source& v, fp8_block_loader* out) {
  if (!check_fp8_block(v).empty() || !v.weight || !v.scale) return {qcode::bad_argument, 0};
  const uint64_t cr = v.chunk_rows ? v.chunk_rows : v.rows;
  out->p.codes = v.weight;
  out->p.scale = v.scale;
  out->p.kind = v.weight_kind;
  out->p.skind = v.scale_type;
  out->p.geo = {v.block_rows, v.block_cols, cr, (cr + v.block_rows - 1) / v.block_rows,
                (v.cols + v.block_cols - 1) / v.block_cols};
  out->p.row_begin = v.row_begin;
  const uint64_t lim = uint64_t{1} << 31;
  out->p.small = v.rows < lim && v.cols < lim && v.scale_rows * v.scale_cols < lim;
  return {};
}

}  // namespace detail

size_t workspace_bytes() noexcept {
  return k_workspace_bytes;
}

void reset_workspace(void* workspace, size_t bytes, const stream& s) {
  check_workspace(workspace, bytes);
  // first_bad_index and scale_error_index = no_index (all ones); amax, flags = 0.
  SQ_CUDA(cudaMemsetAsync(workspace, 0xFF, 2 * sizeof(uint64_t), cuda_stream(s)));
  SQ_CUDA(cudaMemsetAsync(static_cast<char*>(workspace) + 2 * sizeof(uint64_t), 0,
                          k_workspace_bytes - 2 * sizeof(uint64_t), cuda_stream(s)));
}

namespace {
__global__ void set_amax_kernel(void* ws, uint32_t bits) {
  atomicMax(&status_of(ws)->amax_bits, bits);
}
}  // namespace

void set_tensor_amax(void* workspace, float amax, const stream& s) {
  if (!workspace) throw launch_error("shardquant gpu: missing workspace");
  set_amax_kernel<<<1, 1, 0, cuda_stream(s)>>>(workspace, f32_bits(amax) & k_f32_abs_mask);
  SQ_CUDA_LAUNCH("set_amax_kernel");
}

void read_status(const void* workspace, kernel_status* dst, const stream& s) {
  SQ_CUDA(cudaMemcpyAsync(dst, workspace, sizeof(kernel_status), cudaMemcpyDeviceToHost,
                          cuda_stream(s)));
}

quant_status tensor_amax(const source_view& v, void* ws, size_t bytes, const stream& s) {
  check_workspace(ws, bytes);
  if (!dense_type_ok(v.type)) return {qcode::bad_argument, 0};
  launch_geometry g;
  // Any scheme without shape prerequisites resolves an amax range: fp8 (rank >= 2).
  if (quant_status st = resolve(scheme_id::fp8, v.shape, v.data, v.row_begin, v.row_end,
                                quant_outputs{reinterpret_cast<void*>(1)}, &g);
      !st.ok())
    return st;
  with_dense(v.type, v.data, [&](auto src) { launch_amax(src, g, ws, cuda_stream(s)); });
  return {};
}

quant_status tensor_amax(const fp8_block_source& v, void* ws, size_t bytes, const stream& s) {
  check_workspace(ws, bytes);
  fp8_block_loader src;
  if (quant_status st = make_fp8_block(v, &src); !st.ok()) return st;
  launch_geometry g;
  const uint64_t shape[2] = {v.rows, v.cols};
  if (quant_status st = resolve(scheme_id::fp8, shape, v.weight, v.row_begin, v.row_end,
                                quant_outputs{reinterpret_cast<void*>(1)}, &g);
      !st.ok())
    return st;
  scan_e8m0(v, ws, cuda_stream(s));
  launch_amax(src, g, ws, cuda_stream(s));
  return {};
}

quant_status quantize(const weight_scheme& scheme, const source_view& v, const quant_outputs& out,
                      void* ws, size_t bytes, const stream& s) {
  check_workspace(ws, bytes);
  if (!dense_type_ok(v.type)) return {qcode::bad_argument, 0};
  launch_geometry g;
  if (quant_status st = resolve(scheme, v.shape, v.data, v.row_begin, v.row_end, out, &g); !st.ok())
    return st;
  with_dense(v.type, v.data,
             [&](auto src) { launch_quantize(scheme, src, g, out, ws, cuda_stream(s)); });
  return {};
}

quant_status quantize(const weight_scheme& scheme, const fp8_block_source& v,
                      const quant_outputs& out, void* ws, size_t bytes, const stream& s) {
  check_workspace(ws, bytes);
  fp8_block_loader src;
  if (quant_status st = make_fp8_block(v, &src); !st.ok()) return st;
  launch_geometry g;
  const uint64_t shape[2] = {v.rows, v.cols};
  if (quant_status st = resolve(scheme, shape, v.weight, v.row_begin, v.row_end, out, &g); !st.ok())
    return st;
  scan_e8m0(v, ws, cuda_stream(s));
  launch_quantize(scheme, src, g, out, ws, cuda_stream(s));
  return {};
}

}  // namespace shardquant::gpu