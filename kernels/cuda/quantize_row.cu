// Per-row kernels: ptpc_fp8, int4/uint4 per-channel and int4_fp8 (formats.md §5.3, §5.5, §10),
// also as second stages of progressive pairs, and the first-stage scale prepass of those pairs.
// One block per row; the row stays in registers between the statistic pass and the encode pass
// (rows longer than 4096 elements re-read their tail, from L2). Math from the shared headers.
#include <algorithm>

#include "kernels/cuda/fast_math.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/fp8.h"
#include "kernels/int4_fp8.h"
#include "kernels/int_quant.h"

namespace shardquant::gpu::detail {
namespace {

// ---- per-row schemes ----------------------------------------------------------------------------

enum class row_kind { fp8, int4, uint4, int4_fp8 };

constexpr int k_row_regs = 2;  // vectors of 8 kept in registers per thread (rows <= 4096 elems)

template <class Src, row_kind K>
__global__ void __launch_bounds__(k_block, k_min_blocks)
    row_quant_kernel(Src src, uint64_t rows, uint64_t cols, uint64_t row_begin, void* out,
                     float* scale_out, void* aux_out, void* ws, bool reorder) {
  constexpr src_kind D = Src::math;
  __shared__ uint32_t scratch[32];
  const uint64_t vpr = (cols + 7) / 8;
  // int4_fp8 stage 1: the per-tensor fp8 scale from the tensor amax.
  float s1 = 0.0f, s1_div = 0.0f;
  if constexpr (K == row_kind::int4_fp8) {
    s1 = fp8_tensor_scale(tensor_amax_of(ws));
    s1_div = fp8_divisor<D>(s1);
    if (s1_div == 0.0f) {
      if (blockIdx.x == 0 && threadIdx.x == 0)
        report_scale(status_of(ws), 0, status_scale_underflow);
      return;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0 && aux_out) *static_cast<float*>(aux_out) = s1;
  }
  for (uint64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const uint64_t e_row = row * cols;
    float cache[k_row_regs][8];
    // Pass 1: the row statistic (amax, or the max of positive / of negative magnitudes).
    uint32_t hi = 0, lo = 0;
    uint32_t bad = 0;
    auto stat = [&](const float(&x)[8], uint32_t n) {
#pragma unroll
      for (uint32_t i = 0; i < 8; ++i) {
        if (i >= n) continue;
        const float v = x[i];
        if constexpr (K == row_kind::uint4) {
          const uint32_t b = f32_bits(v);
          if (b >> 31)
            lo = max(lo, b & k_f32_abs_mask);
          else
            hi = max(hi, b);
        } else {
          hi = max(hi, abs_bits(v));
        }
      }
    };
    // int4_fp8 works on the stage-1 fp8 values: computed once, kept in the cache.
    auto stage1 = [&](float(&x)[8]) {
      if constexpr (K == row_kind::int4_fp8) {
        fast::int4_fp8_stage1_8<D>(x, s1_div);  // == int4_fp8_stage1_value<D> per element
      }
    };
    uint64_t v0 = threadIdx.x;
    load_result rs[k_row_regs];
    // All cached loads first (64 bytes in flight per thread), then the checks and statistics.
#pragma unroll
    for (int k = 0; k < k_row_regs; ++k) {
      const uint64_t v = v0 + static_cast<uint64_t>(k) * blockDim.x;
      if (v < vpr) {
        const uint64_t col = v * 8;
        const uint32_t n = cols - col < 8 ? static_cast<uint32_t>(cols - col) : 8u;
        rs[k] = src.load8(e_row + col, row, col, n, cache[k]);
      }
    }
#pragma unroll
    for (int k = 0; k < k_row_regs; ++k) {
      const uint64_t v = v0 + static_cast<uint64_t>(k) * blockDim.x;
      if (v < vpr) {
        const uint64_t col = v * 8;
        const uint32_t n = cols - col < 8 ? static_cast<uint32_t>(cols - col) : 8u;
        if (rs[k].flags) {
          report_vector(ws, rs[k], (row_begin + row) * cols + col);
          bad = 1;
        }
        stage1(cache[k]);
        stat(cache[k], n);
      }
    }
    for (uint64_t v = v0 + static_cast<uint64_t>(k_row_regs) * blockDim.x; v < vpr;
         v += blockDim.x) {
      float x[8];
      const uint64_t col = v * 8;
      const uint32_t n = cols - col < 8 ? static_cast<uint32_t>(cols - col) : 8u;
      const load_result r = src.load8(e_row + col, row, col, n, x);
      if (r.flags) {
        report_vector(ws, r, (row_begin + row) * cols + col);
        bad = 1;
      }
      stage1(x);
      stat(x, n);
    }
    hi = block_max_u32(hi, scratch);
    if constexpr (K == row_kind::uint4) lo = block_max_u32(lo, scratch);
    bad = block_max_u32(bad, scratch);
    if (bad) continue;  // the tensor is an error; its outputs are never written
    // Unit parameters from the shared math.
    float mult = 0.0f, zero_f = 0.0f;
    if constexpr (K == row_kind::fp8) {
      const float s = fp8_row_scale(f32_from_bits(hi));
      mult = fp8_divisor<D>(s);
      if (threadIdx.x == 0) scale_out[row] = s;
      if (mult == 0.0f) {
        if (threadIdx.x == 0) report_scale(status_of(ws), row_begin + row, status_scale_underflow);
        continue;
      }
    } else if constexpr (K == row_kind::int4) {
      const float s = int4_scale<D>(f32_from_bits(hi));
      mult = reciprocal_rn(s);
      if (threadIdx.x == 0) scale_out[row] = s;
    } else if constexpr (K == row_kind::uint4) {
      const float lo_f = lo ? f32_from_bits(lo | 0x80000000u) : 0.0f;
      const uint4_params up = uint4_params_from_range<D>(lo_f, f32_from_bits(hi));
      mult = up.inv;
      zero_f = up.zero_f;
      if (!is_finite(up.scale)) {
        if (threadIdx.x == 0) report_scale(status_of(ws), row_begin + row, status_nonfinite_scale);
        continue;
      }
      if (threadIdx.x == 0) {
        scale_out[row] = up.scale;
        static_cast<int32_t*>(aux_out)[row] = up.zero;
      }
    } else {
      const float s2 = int4_scale<src_kind::f32>(f32_from_bits(hi));
      mult = reciprocal_rn(s2);
      if (threadIdx.x == 0) scale_out[row] = s2;
    }
    // Pass 2: encode.
    auto encode = [&](const float(&x)[8], uint64_t col, uint32_t n) {
      if constexpr (K == row_kind::fp8) {
        uint8_t b[8];
        fast::fp8_quantize8<D>(x, mult, b);  // == fp8_quantize_element<D> per element
        store_bytes8(static_cast<uint8_t*>(out) + e_row + col, b, n);
      } else {
        int32_t q[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          if constexpr (K == row_kind::int4) {
            q[i] = fast::int4_code(x[i], mult);
          } else if constexpr (K == row_kind::uint4) {
            q[i] = fast::uint4_code(x[i], mult, zero_f);
          } else {
            q[i] = fast::int4_code(x[i], mult);  // x holds the stage-1 values
          }
        }
        const nibble_order o =
            K == row_kind::int4_fp8 || reorder ? nibble_order::int4_fp8 : nibble_order::sequential;
        static_cast<uint32_t*>(out)[row * vpr + col / 8] = pack_nibbles(q, n, o);
      }
    };
#pragma unroll
    for (int k = 0; k < k_row_regs; ++k) {
      const uint64_t v = v0 + static_cast<uint64_t>(k) * blockDim.x;
      if (v < vpr) {
        const uint64_t col = v * 8;
        encode(cache[k], col, cols - col < 8 ? static_cast<uint32_t>(cols - col) : 8u);
      }
    }
    for (uint64_t v = v0 + static_cast<uint64_t>(k_row_regs) * blockDim.x; v < vpr;
         v += blockDim.x) {
      float x[8];
      const uint64_t col = v * 8;
      const uint32_t n = cols - col < 8 ? static_cast<uint32_t>(cols - col) : 8u;
      (void)src.load8(e_row + col, row, col, n, x);
      stage1(x);
      encode(x, col, n);
    }
  }
}

// The first stage's scales of a progressive pair (launch_stage1_scales): per-tensor stages from
// the workspace amax (one thread), fp8 per-row one block per row (amax of the row, as the fp8
// per-row quantizer computes it). Non-finite rows are left to the second stage to report.
template <class Src>
__global__ void __launch_bounds__(k_block, k_min_blocks)
    stage1_scale_kernel(Src src, uint64_t rows, uint64_t cols, uint64_t row_begin, stage1_kind k,
                        float* scale_out, void* ws) {
  constexpr src_kind D = Src::math;
  if (k != stage1_kind::fp8_row) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
      const float a = tensor_amax_of(ws);
      if (k == stage1_kind::fp8_tensor) {
        const float s = fp8_tensor_scale(a);
        if (fp8_divisor<D>(s) == 0.0f) report_scale(status_of(ws), 0, status_scale_underflow);
        if (scale_out) scale_out[0] = s;
      } else if (scale_out) {
        scale_out[0] = int8_scale<D>(a);
      }
    }
    return;
  }
  __shared__ uint32_t scratch[32];
  const uint64_t vpr = (cols + 7) / 8;
  for (uint64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    uint32_t m = 0;
    for (uint64_t v = threadIdx.x; v < vpr; v += blockDim.x) {
      float x[8];
      const uint64_t col = v * 8;
      const uint32_t n = cols - col < 8 ? static_cast<uint32_t>(cols - col) : 8u;
      (void)src.load8(row * cols + col, row, col, n, x);
#pragma unroll
      for (uint32_t i = 0; i < 8; ++i)
        if (i < n) m = max(m, abs_bits(x[i]));
    }
    m = block_max_u32(m, scratch);
    if (threadIdx.x == 0) {
      const float s = fp8_row_scale(f32_from_bits(m));
      scale_out[row] = s;
      if (m < k_f32_inf_bits && fp8_divisor<D>(s) == 0.0f)
        report_scale(status_of(ws), row_begin + row, status_scale_underflow);
    }
  }
}

}  // namespace

template <class Src>
void launch_stage1_scales(stage1_kind k, const Src& src, const launch_geometry& g, float* scale_out,
                          void* ws, cudaStream_t st) {
  const unsigned grid =
      k == stage1_kind::fp8_row
          ? static_cast<unsigned>(std::min<uint64_t>(g.rows, uint64_t(sm_count()) * 16))
          : 1u;
  stage1_scale_kernel<Src>
      <<<grid, k_block, 0, st>>>(src, g.rows, g.cols, g.row_begin, k, scale_out, ws);
  SQ_CUDA_LAUNCH("stage1_scale_kernel");
}

template <class Src>
void launch_row(scheme_family f, const Src& src, const launch_geometry& g, const quant_outputs& o,
                void* ws, cudaStream_t st, bool reorder) {
  const unsigned grid =
      static_cast<unsigned>(std::min<uint64_t>(g.rows, uint64_t(sm_count()) * 16));
  auto go = [&](auto kind_tag) {
    constexpr row_kind K = decltype(kind_tag)::value;
    // The kernel's per-row scale and its other output: int4_fp8 writes scale_2 per row (extra)
    // and s1 (scale, optional); uint4 writes zero points (extra).
    float* row_scale = static_cast<float*>(K == row_kind::int4_fp8 ? o.extra : o.scale);
    void* other = K == row_kind::int4_fp8 ? o.scale : o.extra;
    row_quant_kernel<Src, K><<<grid, k_block, 0, st>>>(src, g.rows, g.cols, g.row_begin, o.weight,
                                                       row_scale, other, ws, reorder);
    SQ_CUDA_LAUNCH("row_quant_kernel");
  };
  if (f == scheme_family::fp8_row)
    go(std::integral_constant<row_kind, row_kind::fp8>{});
  else if (f == scheme_family::int4_channel)
    go(std::integral_constant<row_kind, row_kind::int4>{});
  else if (f == scheme_family::uint4_channel)
    go(std::integral_constant<row_kind, row_kind::uint4>{});
  else
    go(std::integral_constant<row_kind, row_kind::int4_fp8>{});
}

#define SQ_INST(S)                                                                             \
  template void launch_row<S>(scheme_family, const S&, const launch_geometry&,                 \
                              const quant_outputs&, void*, cudaStream_t, bool);                \
  template void launch_stage1_scales<S>(stage1_kind, const S&, const launch_geometry&, float*, \
                                        void*, cudaStream_t);
SQ_INSTANTIATE_SOURCES(SQ_INST)
#undef SQ_INST
#define SQ_INST(S)                                                             \
  template void launch_row<S>(scheme_family, const S&, const launch_geometry&, \
                              const quant_outputs&, void*, cudaStream_t, bool);
SQ_INSTANTIATE_STAGE1_SOURCES(SQ_INST)
#undef SQ_INST

}  // namespace shardquant::gpu::detail
