// MX kernels (formats.md §5.7): 4 lanes per 32-element block (shuffle amax), FP4 / FP6 E2M3 /
// FP6 E3M2 codes and packing, e8m0 scale bytes. Math from kernels/mx.h.
#include <algorithm>

#include "kernels/cuda/fast_mx.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/mx.h"

namespace shardquant::gpu::detail {
namespace {

// ---- MX -----------------------------------------------------------------------------------------

// 4 lanes (32 elements) per MX block. Flat: cols % 32 == 0 and the source needs no row, so the
// range is one stream of blocks; otherwise vectors are mapped per row, each row padded to whole
// blocks (lanes past the row end hold the zero padding of a partial block).
template <int Fmt>
__host__ __device__ constexpr mx_format format_of() {
  return Fmt == 0 ? mx_fp4_e2m1() : (Fmt == 1 ? mx_fp6_e2m3() : mx_fp6_e3m2());
}

template <class Src, int Fmt, bool Flat>
__global__ void __launch_bounds__(k_block, k_min_blocks)
    mx_kernel(Src src, uint64_t rows, uint64_t cols, uint64_t row_begin, uint8_t* out,
              uint8_t* scale_out, void* ws) {
  const uint64_t vpr = Flat ? cols / 8 : ((cols + 31) / 32) * 4;  // vectors per row, whole blocks
  const uint64_t nvec = rows * vpr;
  const uint64_t scols = (cols + 31) / 32;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  // Every lane of a warp runs the same trip count (nvec rounded up to the warp) so the block
  // shuffles always see all 32 lanes.
  const uint64_t nvec_warp = (nvec + 31) / 32 * 32;
  struct vec {
    uint64_t row, col, e;
    uint32_t n;
    float x[8];
    load_result r;
  };
  auto fetch = [&](uint64_t t, vec& v) {
    uint64_t& row = v.row;
    uint64_t& col = v.col;
    uint64_t& e = v.e;
    uint32_t& n = v.n;
    float(&x)[8] = v.x;
    load_result& r = v.r;
    row = col = e = 0;
    n = 0;
    r = load_result{};
    const bool live = t < nvec;
    if (live) {
      if (Flat) {
        e = t * 8;
        n = 8;
      } else {
        if ((t >> 32) == 0 && (vpr >> 32) == 0) {
          const uint32_t q = static_cast<uint32_t>(t) / static_cast<uint32_t>(vpr);
          row = q;
          col = (t - static_cast<uint64_t>(q) * vpr) * 8;
        } else {
          row = t / vpr;
          col = (t - row * vpr) * 8;
        }
        e = row * cols + col;
        n = col < cols ? (cols - col < 8 ? static_cast<uint32_t>(cols - col) : 8u) : 0u;
      }
    }
    if (n) {
      if constexpr (Src::needs_row_col) {
        if (Flat) {
          row = e / cols;
          col = e - row * cols;
        }
      }
      r = src.load8(e, row, col, n, x);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) x[i] = 0.0f;
    }
  };
  auto finish = [&](uint64_t t, vec& v) {
    constexpr mx_format f = format_of<Fmt>();
    const uint64_t row = v.row, col = v.col, e = v.e;
    const uint32_t n = v.n;
    const float(&x)[8] = v.x;
    const load_result& r = v.r;
    if (n && r.flags) report_vector(ws, r, row_begin * cols + e);
    uint32_t m = 0;
    if (r.bad_mask == 0) {  // the usual case: no per-element mask test
#pragma unroll
      for (int i = 0; i < 8; ++i) m = max(m, abs_bits(x[i]));
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i)
        if (!(r.bad_mask >> i & 1u)) m = max(m, abs_bits(x[i]));
    }
    m = group_max_u32<4>(m);
    if (!n) return;
    const int32_t k = mx_shared_exponent(f32_from_bits(m), f);
    // x * 2^-k equals RN32(x / 2^k) for k > -127 (mx.h); k = -127 divides by the TC6 value.
    const bool use_div = k == -127;
    const float div = mx_scale_divisor(k);
    const float rec = mx_scale_reciprocal(k);
    uint8_t codes[8];
    float y[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) y[i] = use_div ? div_rn(x[i], div) : mul_rn(x[i], rec);
    if constexpr (Fmt == 0) {
#pragma unroll
      for (int i = 0; i < 8; ++i) codes[i] = static_cast<uint8_t>(mx_encode_element(y[i], f));
    } else {
      // FP6: hardware fp8 conversion on the scaled grid, equal to mx_encode_element (fast_mx.cuh).
#pragma unroll
      for (int i = 0; i < 8; i += 2) {
        const uint32_t p = Fmt == 1 ? fast::mx_e2m3_encode2(y[i], y[i + 1])
                                    : fast::mx_e3m2_encode2(y[i], y[i + 1]);
        codes[i] = static_cast<uint8_t>(p & 0xFFu);
        codes[i + 1] = static_cast<uint8_t>(p >> 8);
      }
    }
    // Scale byte: the first lane of the block.
    const uint64_t blk = Flat ? t / 4 : row * scols + col / 32;
    if ((Flat ? (t & 3u) : (col / 8) & 3u) == 0) scale_out[blk] = mx_scale_byte(k);
    if constexpr (Fmt == 0) {  // FP4
      uint8_t pk[4];
      mx_pack_codes(codes, 8, f, pk);
      uint8_t* dst = out + e / 2;
      const uint32_t nb = n / 2;
      if (nb == 4 && (reinterpret_cast<uintptr_t>(dst) & 3u) == 0) {
        *reinterpret_cast<uint32_t*>(dst) =
            pk[0] | (pk[1] << 8) | (pk[2] << 16) | (static_cast<uint32_t>(pk[3]) << 24);
      } else {
        for (uint32_t i = 0; i < nb; ++i) dst[i] = pk[i];
      }
    } else {
      uint8_t pk[6];
      mx_pack_codes(codes, 8, f, pk);
      uint8_t* dst = out + e / 4 * 3;
      const uint32_t nb = n / 4 * 3;
      if (nb == 6 && (reinterpret_cast<uintptr_t>(dst) & 1u) == 0) {
        uint16_t* d16 = reinterpret_cast<uint16_t*>(dst);
        d16[0] = static_cast<uint16_t>(pk[0] | (pk[1] << 8));
        d16[1] = static_cast<uint16_t>(pk[2] | (pk[3] << 8));
        d16[2] = static_cast<uint16_t>(pk[4] | (pk[5] << 8));
      } else {
        for (uint32_t i = 0; i < nb; ++i) dst[i] = pk[i];
      }
    }
  };
  // Two vectors per iteration, both loads issued first. The trip count stays warp-uniform.
  for (uint64_t t = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; t < nvec_warp;
       t += 2 * stride) {
    vec a, b;
    fetch(t, a);
    const bool two = t + stride < nvec_warp;
    if (two) fetch(t + stride, b);
    finish(t, a);
    if (two) finish(t + stride, b);
  }
}

}  // namespace

template <class Src>
void launch_mx(mx_element e, const Src& src, const launch_geometry& g, const quant_outputs& o,
               void* ws, cudaStream_t st) {
  const bool flat = g.cols % 32 == 0 && !Src::needs_row_col;
  const uint64_t vecs = flat ? g.rows * (g.cols / 8) : g.rows * ((g.cols + 31) / 32) * 4;
  const unsigned grid = grid_for((vecs + 1) / 2, k_block);
  auto go = [&](auto fmt_tag) {
    constexpr int F = decltype(fmt_tag)::value;
    auto* w = static_cast<uint8_t*>(o.weight);
    auto* sc = static_cast<uint8_t*>(o.scale);
    if (flat)
      mx_kernel<Src, F, true>
          <<<grid, k_block, 0, st>>>(src, g.rows, g.cols, g.row_begin, w, sc, ws);
    else
      mx_kernel<Src, F, false>
          <<<grid, k_block, 0, st>>>(src, g.rows, g.cols, g.row_begin, w, sc, ws);
    SQ_CUDA_LAUNCH("mx_kernel");
  };
  if (e == mx_element::fp4_e2m1)
    go(std::integral_constant<int, 0>{});
  else if (e == mx_element::fp6_e2m3)
    go(std::integral_constant<int, 1>{});
  else
    go(std::integral_constant<int, 2>{});
}

#define SQ_INST(S)                                                                               \
  template void launch_mx<S>(mx_element, const S&, const launch_geometry&, const quant_outputs&, \
                             void*, cudaStream_t);
SQ_INSTANTIATE_SOURCES(SQ_INST)
#undef SQ_INST

}  // namespace shardquant::gpu::detail
