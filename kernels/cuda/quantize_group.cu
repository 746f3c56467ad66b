// int4 / uint4 per-group kernels with the transposed packing (formats.md §5.5, §5.6): 64-row x
// 256-column tiles; each warp packs 8 rows into transposed words in registers, staged through
// shared memory so 8 threads store 32 contiguous bytes of an output row. Math from int_quant.h.
#include <algorithm>

#include "kernels/cuda/fast_math.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/int_quant.h"

namespace shardquant::gpu::detail {
namespace {

// ---- int4 / uint4 per-group with the transposed packing
// ------------------------------------------

constexpr unsigned k_tile_rows = 64;   // 8 warps x 8 rows: each warp owns one output word column
constexpr unsigned k_tile_cols = 256;  // 32 lanes x 8 columns

template <class Src, int G, bool Unsigned>
__global__ void __launch_bounds__(k_block, k_min_blocks)
    group_quant_kernel(Src src, uint64_t rows, uint64_t cols, uint64_t row_begin,
                       uint32_t* out_words, uint64_t words_per_col, float* scale_out,
                       int32_t* zp_out, void* ws, bool reorder) {
  constexpr src_kind D = Src::math;
  constexpr int L = G / 8;  // lanes per group
  // Transposed words of the tile, [word column][column + column / 32]: the skew keeps both the
  // staging stores and the row-order reads free of 8-way bank conflicts.
  __shared__ uint32_t tile[8][k_tile_cols + 8];
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const uint64_t tiles_r = (rows + k_tile_rows - 1) / k_tile_rows;
  const uint64_t tiles_c = (cols + k_tile_cols - 1) / k_tile_cols;
  const uint64_t groups_per_row = cols / G;
  for (uint64_t tix = blockIdx.x; tix < tiles_r * tiles_c; tix += gridDim.x) {
    const uint64_t tr = tix / tiles_c, tc = tix - tr * tiles_c;
    const uint64_t col = tc * k_tile_cols + lane * 8;
    const bool col_live = col < cols;  // cols % 32 == 0: a live lane always has 8 columns
    uint32_t words[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    // Two halves of 4 rows: the 4 loads of a half are in flight together (64 bytes/thread).
#pragma unroll 1
    for (unsigned h = 0; h < 2; ++h) {
      float xs[4][8];
      load_result rs[4];
#pragma unroll
      for (unsigned k = 0; k < 4; ++k) {
        const uint64_t row = tr * k_tile_rows + warp * 8 + h * 4 + k;
        if (col_live && row < rows) {
          rs[k] = src.load8(row * cols + col, row, col, 8, xs[k]);
        } else {
#pragma unroll
          for (int j = 0; j < 8; ++j) xs[k][j] = 0.0f;
        }
      }
#pragma unroll
      for (unsigned k = 0; k < 4; ++k) {
        const unsigned i = h * 4 + k;
        const uint64_t row = tr * k_tile_rows + warp * 8 + i;
        const bool live = col_live && row < rows;
        const float(&x)[8] = xs[k];
        if (live && rs[k].flags) report_vector(ws, rs[k], (row_begin + row) * cols + col);
        // Group statistic across the L lanes of the group (all lanes take part in the shuffles).
        int32_t q[8];
        float scale = 0.0f;
        int32_t zero = 0;
        if constexpr (Unsigned) {
          float lo = 0.0f, hi = 0.0f;
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            lo = min_f(lo, x[j]);
            hi = max_f(hi, x[j]);
          }
          lo = group_min_f<L>(lo);
          hi = group_max_f<L>(hi);
          const uint4_params up = fast::uint4_params_from_range<D>(lo, hi);
          scale = up.scale;
          zero = up.zero;
          if (live && lane % L == 0 && !is_finite(scale))
            report_scale(status_of(ws), (row_begin + row) * groups_per_row + col / G,
                         status_nonfinite_scale);
#pragma unroll
          for (int j = 0; j < 8; ++j) q[j] = fast::uint4_code(x[j], up.inv, up.zero_f);
        } else {
          uint32_t m = 0;
#pragma unroll
          for (int j = 0; j < 8; ++j) m = max(m, abs_bits(x[j]));
          m = group_max_u32<L>(m);
          scale = fast::int4_scale<D>(f32_from_bits(m));
          const float inv = reciprocal_rn(scale);
#pragma unroll
          for (int j = 0; j < 8; ++j) q[j] = fast::int4_code(x[j], inv);
        }
        if (live && lane % L == 0) {
          const uint64_t gi = row * groups_per_row + col / G;
          scale_out[gi] = scale;
          if constexpr (Unsigned) zp_out[gi] = zero;
        }
        if (live) {
          // Row i of the 8 goes to nibble i, or with `reorder` to the nibble p whose source
          // [0,2,4,6,1,3,5,7][p] is i.
          const unsigned p = reorder ? (i % 2 == 0 ? i / 2 : 4 + i / 2) : i;
#pragma unroll
          for (int j = 0; j < 8; ++j) words[j] |= (static_cast<uint32_t>(q[j]) & 0xFu) << (4 * p);
        }
      }
    }
    // Stage: word of (column, row group `warp`).
#pragma unroll
    for (int j = 0; j < 8; ++j) tile[warp][lane * 8 + j + lane / 4] = words[j];
    __syncthreads();
    // Store: 8 consecutive threads write the 8 word columns of one output row (32 bytes).
    const uint64_t wc0 = tr * (k_tile_rows / 8);  // first word column of the tile (range-relative)
    const uint64_t live_rows = ::min(static_cast<uint64_t>(k_tile_rows), rows - tr * k_tile_rows);
    const unsigned live_wc = static_cast<unsigned>((live_rows + 7) / 8);
#pragma unroll
    for (unsigned k = 0; k < 8; ++k) {
      const unsigned idx = k * k_block + threadIdx.x;
      const unsigned j = idx / 8, c = idx % 8;
      const uint64_t ocol = tc * k_tile_cols + j;
      if (ocol < cols && c < live_wc)
        out_words[ocol * words_per_col + wc0 + c] = tile[c][j + j / 32];
    }
    __syncthreads();
  }
}

}  // namespace

template <class Src>
void launch_group(const weight_format& si, const Src& src, const launch_geometry& g,
                  const quant_outputs& o, void* ws, cudaStream_t st, bool reorder) {
  const uint64_t tiles =
      ((g.rows + k_tile_rows - 1) / k_tile_rows) * ((g.cols + k_tile_cols - 1) / k_tile_cols);
  const unsigned grid = static_cast<unsigned>(std::min<uint64_t>(tiles, uint64_t(sm_count()) * 8));
  const uint64_t ld = o.weight_ld ? o.weight_ld : (g.rows + 7) / 8;
  auto* w = static_cast<uint32_t*>(o.weight);
  auto* sc = static_cast<float*>(o.scale);
  auto* zp = static_cast<int32_t*>(o.extra);
  auto go = [&](auto g_tag, auto u_tag) {
    constexpr int G = decltype(g_tag)::value;
    constexpr bool U = decltype(u_tag)::value;
    group_quant_kernel<Src, G, U>
        <<<grid, k_block, 0, st>>>(src, g.rows, g.cols, g.row_begin, w, ld, sc, zp, ws, reorder);
    SQ_CUDA_LAUNCH("group_quant_kernel");
  };
  auto with_g = [&](auto u_tag) {
    if (si.group_size == 32)
      go(std::integral_constant<int, 32>{}, u_tag);
    else if (si.group_size == 64)
      go(std::integral_constant<int, 64>{}, u_tag);
    else
      go(std::integral_constant<int, 128>{}, u_tag);
  };
  if (si.family == scheme_family::uint4_group)
    with_g(std::true_type{});
  else
    with_g(std::false_type{});
}

#define SQ_INST(S)                                                                      \
  template void launch_group<S>(const weight_format&, const S&, const launch_geometry&, \
                                const quant_outputs&, void*, cudaStream_t, bool);
SQ_INSTANTIATE_SOURCES(SQ_INST)
SQ_INSTANTIATE_STAGE1_SOURCES(SQ_INST)
#undef SQ_INST

}  // namespace shardquant::gpu::detail
