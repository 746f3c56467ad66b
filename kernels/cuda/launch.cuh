// Internal interface between the quantize API (quantize.cu) and the kernel families, one .cu file
// each so they compile in parallel: the launch geometry, the thread-mapping helpers they share,
// and the launchers, explicitly instantiated for every source type. For .cu files only.
#pragma once

#include "kernels/cuda/common.cuh"

namespace shardquant::gpu::detail {

// The launch geometry of a view: `rows` x `cols` kernel rows (MX: last-dim rows; otherwise dim-0
// rows of `inner` elements), `row_begin` in kernel rows.
struct launch_geometry {
  uint64_t rows = 0, cols = 0, row_begin = 0;
  uint64_t dim0_rows = 0;  // rows of the view along dim 0
};

inline constexpr unsigned k_block = 256;
// Blocks per SM every kernel must fit (register cap 64 per thread, 32 resident warps). On the
// H100 this moved the bench by under 10% (the kernels are bound by INT32 issue of the element
// math, not by latency); kept so no kernel drops to 1-2 resident blocks.
inline constexpr unsigned k_min_blocks = 4;

// Row/vector coordinates of vector t (8 elements of one row) in a range of `cols`-element rows.
struct vec_pos {
  uint64_t row, col, e;  // e = row * cols + col (range-relative)
  uint32_t n;            // valid elements (<= 8)
};

__device__ __forceinline__ vec_pos vector_position(uint64_t t, uint64_t cols, uint64_t vpr,
                                                   bool flat) {
  vec_pos p;
  if (flat) {  // cols % 8 == 0 and the source needs no row: plain flat index
    p.e = t * 8;
    p.row = 0;
    p.col = 0;
    p.n = 8;
  } else {
    if ((t >> 32) == 0 && (vpr >> 32) == 0) {
      const uint32_t r = static_cast<uint32_t>(t) / static_cast<uint32_t>(vpr);
      p.row = r;
      p.col = (t - static_cast<uint64_t>(r) * vpr) * 8;
    } else {
      p.row = t / vpr;
      p.col = (t - p.row * vpr) * 8;
    }
    p.e = p.row * cols + p.col;
    const uint64_t left = cols - p.col;
    p.n = left < 8 ? static_cast<uint32_t>(left) : 8u;
  }
  return p;
}

// Stores n <= 8 bytes b[0..n) at dst (one 8-byte store when aligned and full).
__device__ __forceinline__ void store_bytes8(uint8_t* dst, const uint8_t (&b)[8], uint32_t n) {
  if (n == 8 && (reinterpret_cast<uintptr_t>(dst) & 7u) == 0) {
    uint2 v;
    v.x = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
    v.y = b[4] | (b[5] << 8) | (b[6] << 16) | (static_cast<uint32_t>(b[7]) << 24);
    *reinterpret_cast<uint2*>(dst) = v;
  } else {
#pragma unroll
    for (uint32_t i = 0; i < 8; ++i)
      if (i < n) dst[i] = b[i];
  }
}

// Reports the first e8m0 0xFF byte of a block-FP8 scale tensor (status_bad_scale), as the CPU's
// recover_fp8_block() checks the whole scale first. Nothing for other scale types.
void scan_e8m0(const fp8_block_source& src, void* ws, cudaStream_t st);

template <class Src>
void launch_amax(const Src& src, const launch_geometry& g, void* ws, cudaStream_t st);
template <class Src>
void launch_tensor(scheme_family f, const Src& src, const launch_geometry& g,
                   const quant_outputs& o, void* ws, cudaStream_t st);
// `reorder`: int4/uint4 nibbles in Quark's reorder order [0,2,4,6,1,3,5,7] (the second stage of a
// progressive pair), else sequential.
template <class Src>
void launch_row(scheme_family f, const Src& src, const launch_geometry& g, const quant_outputs& o,
                void* ws, cudaStream_t st, bool reorder = false);
template <class Src>
void launch_mx(mx_element e, const Src& src, const launch_geometry& g, const quant_outputs& o,
               void* ws, cudaStream_t st);
template <class Src>
void launch_group(const weight_format& f, const Src& src, const launch_geometry& g,
                  const quant_outputs& o, void* ws, cudaStream_t st, bool reorder = false);
// The first stage's scales of a progressive pair, before its second stage: per-tensor stages
// write `scale_out[0]` (when set) from the workspace amax; fp8 per-row writes one scale per row of
// the range (scale_out[row]); an underflowing divisor is reported as a scale underflow.
template <class Src>
void launch_stage1_scales(stage1_kind k, const Src& src, const launch_geometry& g, float* scale_out,
                          void* ws, cudaStream_t st);

}  // namespace shardquant::gpu::detail

// Explicit instantiation of a launcher for the four source types (and, for the second stages of
// progressive pairs, the same four behind a stage1_loader).
#define SQ_INSTANTIATE_SOURCES(MACRO)                                          \
  MACRO(::shardquant::gpu::detail::dense_source<::shardquant::src_kind::f32>)  \
  MACRO(::shardquant::gpu::detail::dense_source<::shardquant::src_kind::bf16>) \
  MACRO(::shardquant::gpu::detail::dense_source<::shardquant::src_kind::f16>)  \
  MACRO(::shardquant::gpu::detail::fp8_block_loader)

#define SQ_INSTANTIATE_STAGE1_SOURCES(MACRO)                                    \
  MACRO(::shardquant::gpu::detail::stage1_loader<                               \
        ::shardquant::gpu::detail::dense_source<::shardquant::src_kind::f32>>)  \
  MACRO(::shardquant::gpu::detail::stage1_loader<                               \
        ::shardquant::gpu::detail::dense_source<::shardquant::src_kind::bf16>>) \
  MACRO(::shardquant::gpu::detail::stage1_loader<                               \
        ::shardquant::gpu::detail::dense_source<::shardquant::src_kind::f16>>)  \
  MACRO(::shardquant::gpu::detail::stage1_loader<::shardquant::gpu::detail::fp8_block_loader>)
