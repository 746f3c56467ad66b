// CUDA recovery kernels (formats.md §7.2.2 block FP8, §7.3.2 compressed-tensors) with the same
// contract and statuses as kernels/recover_tensors.h: F32 rows of the range, one thread per 8
// elements, grid-stride. Element math from kernels/recover.h; the status priority follows the
// CPU reference (scale / g_idx checks over the whole tensor first, then FP8 NaN codes).
#include <algorithm>

#include "kernels/cuda/launch.cuh"
#include "kernels/recover.h"
#include "kernels/recover_tensors.h"

namespace shardquant::gpu {
namespace {

using namespace detail;
using qcode = quant_status::code;

cudaStream_t cuda_stream(const stream& s) {
  return static_cast<cudaStream_t>(s.native());
}

__device__ __forceinline__ void store_f32x8(float* dst, const float (&x)[8], uint32_t n) {
  if (n == 8 && aligned16(dst)) {
    reinterpret_cast<float4*>(dst)[0] = make_float4(x[0], x[1], x[2], x[3]);
    reinterpret_cast<float4*>(dst)[1] = make_float4(x[4], x[5], x[6], x[7]);
  } else {
#pragma unroll
    for (uint32_t i = 0; i < 8; ++i)
      if (i < n) dst[i] = x[i];
  }
}

// Every e8m0 0xFF byte of a scale tensor (the CPU checks the whole scale first).
__global__ void __launch_bounds__(k_block, k_min_blocks)
    e8m0_scan_kernel(const uint8_t* scale, uint64_t n, void* ws) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride)
    if (scale[i] == 0xFF) report_scale(status_of(ws), i, status_bad_scale);
}

// g_idx entries outside [0, groups) (index j), as the CPU reports them.
__global__ void __launch_bounds__(k_block, k_min_blocks)
    g_idx_scan_kernel(const int32_t* g_idx, uint64_t n, uint64_t groups, void* ws) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t j = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; j < n;
       j += stride)
    if (g_idx[j] < 0 || static_cast<uint64_t>(g_idx[j]) >= groups)
      report_scale(status_of(ws), j, status_bad_scale);
}

// Block FP8 -> F32: RN32(fp8(W[r][c]) * S[scale row of r][c div bw]); NaN codes are reported
// (element index), other non-finite products are written as they are (the CPU does the same).
__global__ void __launch_bounds__(k_block, k_min_blocks)
    fp8_block_recover_kernel(fp8_block_params p, uint64_t rows, uint64_t cols, float* out,
                             void* ws) {
  const uint64_t vpr = (cols + 7) / 8;
  const uint64_t nvec = rows * vpr;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t t = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; t < nvec;
       t += stride) {
    const vec_pos vp = vector_position(t, cols, vpr, false);
    const uint64_t row = vp.row, col = vp.col;
    const uint32_t n = vp.n;
    const uint64_t e = row * cols + col;
    const uint8_t* c = p.codes + e;
    uint8_t code[8];
    load_codes8(c, n, code);
    const uint64_t srow = block_scale_row(p, p.row_begin + row) * p.geo.scale_cols;
    float x[8];
    uint32_t nan_mask = 0;
    const uint64_t sc0 = block_scale_col(p, col);
    if (n == 8 && block_scale_col(p, col + 7) == sc0) {
      // All 8 elements share one scale (the usual case, bw a multiple of 8): one scale load and
      // the hardware pair decode (fast::, equal to fp8_decode on every code, NaN codes too),
      // then the same product as fp8_dequant_element.
      const float s = load_scale(p.skind, p.scale, srow + sc0);
      if (p.kind == fp8_kind::e4m3fn) {
#pragma unroll
        for (int i = 0; i < 8; i += 2)
          fast::fp8_e4m3fn_decode2(code[i] | static_cast<uint32_t>(code[i + 1]) << 8, x[i],
                                   x[i + 1]);
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) x[i] = fast::f16_to_f32(static_cast<uint16_t>(code[i] << 8));
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        if (fp8_is_nan(p.kind, code[i])) nan_mask |= 1u << i;
        x[i] = mul_rn(x[i], s);
      }
      if (nan_mask)
        report_bad(status_of(ws), (p.row_begin + row) * cols + col + (__ffs(nan_mask) - 1),
                   status_nonfinite_input);
      store_f32x8(out + e, x, n);
      continue;
    }
    // Not unrolled: the loop-invariant dtype switches would be unswitched 8 times over and the
    // compile time explodes; this kernel is not on the quantize path.
#pragma unroll 1
    for (uint32_t i = 0; i < 8; ++i) {
      x[i] = 0.0f;
      if (i >= n) continue;
      if (fp8_is_nan(p.kind, code[i])) nan_mask |= 1u << i;
      const float s = load_scale(p.skind, p.scale, srow + block_scale_col(p, col + i));
      x[i] = fp8_dequant_element(p.kind, code[i], s);
    }
    if (nan_mask)
      report_bad(status_of(ws), (p.row_begin + row) * cols + col + (__ffs(nan_mask) - 1),
                 status_nonfinite_input);
    store_f32x8(out + e, x, n);
  }
}

// Which scale element (o, j) uses (the index rule of the CPU reference, formats.md §7.3.2).
struct ct_params {
  ct_layout layout;
  ct_strategy strategy;
  uint32_t bits;
  fp8_kind fp8;
  const void* weight;
  scale_kind skind;
  const void* scale;
  uint64_t rows, cols, row_begin;
  uint64_t group_size, groups, block_rows, block_cols;
  const void* zero_point;
  bool zp_i8;
  const int32_t* g_idx;
};

__global__ void __launch_bounds__(k_block, k_min_blocks)
    ct_recover_kernel(ct_params p, uint64_t range_rows, float* out, void* ws) {
  const uint64_t cols = p.cols;
  const uint64_t vpr = (cols + 7) / 8;
  const uint64_t nvec = range_rows * vpr;
  const uint64_t words_per_row = (cols * p.bits + 31) / 32;
  const uint64_t zp_groups = p.strategy == ct_strategy::group ? p.groups : 1;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t t = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; t < nvec;
       t += stride) {
    const vec_pos vp = vector_position(t, cols, vpr, false);
    const uint64_t row = vp.row, col = vp.col;
    const uint32_t n = vp.n;
    const uint64_t o = p.row_begin + row;
    float x[8];
    uint32_t nan_mask = 0;
    if (n == 8 && p.layout == ct_layout::pack_quantized &&
        !(p.strategy == ct_strategy::group && p.g_idx)) {
      // Pack-quantized without g_idx: when the 8 elements share one scale and zero point (the
      // usual case), load them once; element i is the loop below's value for j = col + i.
      const bool grp = p.strategy == ct_strategy::group;
      const uint64_t g0 = grp ? col / p.group_size : 0, g7 = grp ? (col + 7) / p.group_size : 0;
      const uint64_t si = ct_scale_index(p, o, col, g0);
      if (g0 == g7 && ct_scale_index(p, o, col + 7, g7) == si) {
        const float s = load_scale(p.skind, p.scale, si);
        const int32_t zp = p.zero_point
                               ? ct_packed_zero_point(static_cast<const uint32_t*>(p.zero_point),
                                                      zp_groups, o, g0, p.bits)
                               : 0;
        const uint32_t* w = static_cast<const uint32_t*>(p.weight) + row * words_per_row;
        if (p.bits == 4) {  // col % 8 == 0: the 8 values are the nibbles of one word
          const uint32_t word = w[col / 8];
#pragma unroll
          for (int i = 0; i < 8; ++i)
            x[i] = int_dequant_element(static_cast<int32_t>((word >> (4 * i)) & 15u) - 8, zp, s);
        } else {
#pragma unroll
          for (int i = 0; i < 8; ++i)
            x[i] = int_dequant_element(ct_packed_value(w, col + i, p.bits), zp, s);
        }
        store_f32x8(out + row * cols + col, x, n);
        continue;
      }
    }
#pragma unroll 1
    for (uint32_t i = 0; i < 8; ++i) {
      x[i] = 0.0f;
      if (i >= n) continue;
      const uint64_t j = col + i;
      uint64_t gj = 0;
      if (p.strategy == ct_strategy::group) {
        if (p.g_idx) {
          const int32_t gi = p.g_idx[j];
          // Out-of-range entries were reported by g_idx_scan_kernel; keep the read in bounds.
          gj = gi < 0 || static_cast<uint64_t>(gi) >= p.groups ? 0 : static_cast<uint64_t>(gi);
        } else {
          gj = j / p.group_size;
        }
      }
      const float s = load_scale(p.skind, p.scale, ct_scale_index(p, o, j, gj));
      if (p.layout == ct_layout::float_quantized) {
        const uint8_t q = static_cast<const uint8_t*>(p.weight)[row * cols + j];
        if (fp8_is_nan(p.fp8, q)) nan_mask |= 1u << i;
        x[i] = fp8_dequant_element(p.fp8, q, s);
      } else {
        int32_t q;
        int32_t zp = 0;
        if (p.layout == ct_layout::pack_quantized) {
          const uint32_t* w = static_cast<const uint32_t*>(p.weight) + row * words_per_row;
          q = ct_packed_value(w, j, p.bits);
          if (p.zero_point)
            zp = ct_packed_zero_point(static_cast<const uint32_t*>(p.zero_point), zp_groups, o, gj,
                                      p.bits);
        } else {
          q = static_cast<const int8_t*>(p.weight)[row * cols + j];
          if (p.zero_point) {
            const uint64_t zi = ct_scale_index(p, o, j, gj);
            zp = p.zp_i8 ? static_cast<const int8_t*>(p.zero_point)[zi]
                         : static_cast<const int32_t*>(p.zero_point)[zi];
          }
        }
        x[i] = int_dequant_element(q, zp, s);
      }
    }
    if (nan_mask)
      report_bad(status_of(ws), o * cols + col + (__ffs(nan_mask) - 1), status_nonfinite_input);
    store_f32x8(out + row * cols + col, x, n);
  }
}

}  // namespace

namespace detail {
void scan_e8m0(const fp8_block_source& src, void* ws, cudaStream_t st) {
  if (src.scale_type != scale_kind::e8m0) return;
  const uint64_t n = src.scale_rows * src.scale_cols;
  e8m0_scan_kernel<<<grid_for(n, k_block, 2), k_block, 0, st>>>(
      static_cast<const uint8_t*>(src.scale), n, ws);
  SQ_CUDA_LAUNCH("e8m0_scan_kernel");
}
}  // namespace detail

quant_status recover_fp8_block(const fp8_block_source& src, float* out, void* ws, size_t bytes,
                               const stream& s) {
  check_workspace(ws, bytes);
  fp8_block_loader l;
  if (quant_status st = make_fp8_block(src, &l); !st.ok()) return st;
  if (!out) return {qcode::bad_argument, 0};
  cudaStream_t st = cuda_stream(s);
  scan_e8m0(src, ws, st);
  const uint64_t end = src.row_end == k_all_rows ? src.rows : src.row_end;
  const uint64_t rows = end - src.row_begin;
  const uint64_t nvec = rows * ((src.cols + 7) / 8);
  fp8_block_recover_kernel<<<grid_for(nvec, k_block), k_block, 0, st>>>(l.p, rows, src.cols, out,
                                                                        ws);
  SQ_CUDA_LAUNCH("fp8_block_recover_kernel");
  return {};
}

quant_status recover_compressed(const ct_source& src, float* out, void* ws, size_t bytes,
                                const stream& s) {
  check_workspace(ws, bytes);
  if (!check_compressed(src).empty() || !out) return {qcode::bad_argument, 0};
  cudaStream_t st = cuda_stream(s);
  if (src.g_idx) {
    g_idx_scan_kernel<<<grid_for(src.cols, k_block, 2), k_block, 0, st>>>(src.g_idx, src.cols,
                                                                          src.groups, ws);
    SQ_CUDA_LAUNCH("g_idx_scan_kernel");
  }
  ct_params p{};
  p.layout = src.layout;
  p.strategy = src.strategy;
  p.bits = src.layout == ct_layout::pack_quantized ? src.bits : 8;
  p.fp8 = src.fp8;
  p.weight = src.weight;
  p.skind = src.scale_type;
  p.scale = src.scale;
  p.rows = src.rows;
  p.cols = src.cols;
  p.row_begin = src.row_begin;
  p.group_size = src.group_size;
  p.groups = src.groups;
  p.block_rows = src.block_rows;
  p.block_cols = src.block_cols;
  p.zero_point = src.zero_point;
  p.zp_i8 = src.zero_point_type == dtype::i8;
  p.g_idx = src.g_idx;
  const uint64_t end = src.row_end == k_all_rows ? src.rows : src.row_end;
  const uint64_t rows = end - src.row_begin;
  const uint64_t nvec = rows * ((src.cols + 7) / 8);
  ct_recover_kernel<<<grid_for(nvec, k_block), k_block, 0, st>>>(p, rows, out, ws);
  SQ_CUDA_LAUNCH("ct_recover_kernel");
  return {};
}

}  // namespace shardquant::gpu
