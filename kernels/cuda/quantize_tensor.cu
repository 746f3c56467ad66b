// Per-tensor kernels: the amax pass (order-independent atomic max of fp32 bits, first non-finite
// element by atomic min) and the elementwise fp8 / int8 quantizers (formats.md §5.2, §5.4), one
// thread per 8 elements with 16-byte loads, grid-stride. Math from kernels/fp8.h, int_quant.h.
#include <algorithm>
#include <type_traits>

#include "kernels/cuda/fast_math.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/fp8.h"
#include "kernels/int_quant.h"

namespace shardquant::gpu::detail {
namespace {

// ---- per-tensor amax ----------------------------------------------------------------------------

template <class Src>
struct is_dense16 : std::false_type {};
template <>
struct is_dense16<dense_source<src_kind::bf16>> : std::true_type {};
template <>
struct is_dense16<dense_source<src_kind::f16>> : std::true_type {};

// Max |x| bits of a thread's vectors of a flat, 16-byte-aligned BF16/F16 range, two halves per
// instruction: |h| of a 16-bit float orders like the unsigned value of its low 15 bits, so the
// per-halfword unsigned max (__vmaxu2) of (word & 0x7FFF7FFF) is the max magnitude. Returns false
// when some |h| is Inf/NaN (exponent all ones): the caller then takes the generic loop, which
// reports the first bad element. Otherwise *m = abs_bits of the widened max, exactly what the
// generic loop computes (widening is exact and monotone).
template <src_kind D>
__device__ __forceinline__ bool amax_dense16(const uint4* v, uint64_t t0, uint64_t nvec,
                                             uint64_t stride, uint32_t* m) {
  uint32_t acc = 0;
  for (uint64_t t = t0; t < nvec; t += 2 * stride) {
    const uint4 a = __ldg(v + t);
    const bool has2 = t + stride < nvec;
    const uint4 b = has2 ? __ldg(v + t + stride) : uint4{0, 0, 0, 0};
    acc = __vmaxu2(acc, a.x & 0x7FFF7FFFu);
    acc = __vmaxu2(acc, a.y & 0x7FFF7FFFu);
    acc = __vmaxu2(acc, a.z & 0x7FFF7FFFu);
    acc = __vmaxu2(acc, a.w & 0x7FFF7FFFu);
    acc = __vmaxu2(acc, b.x & 0x7FFF7FFFu);
    acc = __vmaxu2(acc, b.y & 0x7FFF7FFFu);
    acc = __vmaxu2(acc, b.z & 0x7FFF7FFFu);
    acc = __vmaxu2(acc, b.w & 0x7FFF7FFFu);
  }
  const uint32_t h = max(acc & 0xFFFFu, acc >> 16);
  if (h >= (D == src_kind::bf16 ? 0x7F80u : 0x7C00u)) return false;
  *m = D == src_kind::bf16 ? h << 16 : f32_bits(fast::f16_to_f32(static_cast<uint16_t>(h)));
  return true;
}

template <class Src>
__global__ void __launch_bounds__(k_block, k_min_blocks)
    amax_kernel(Src src, uint64_t rows, uint64_t cols, uint64_t row_begin, void* ws) {
  __shared__ uint32_t scratch[32];
  const uint64_t vpr = (cols + 7) / 8;
  const bool flat = cols % 8 == 0 && !Src::needs_row_col;
  const uint64_t nvec = rows * vpr;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  const uint64_t t0 = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x;
  uint32_t m = 0;
  bool done = false;
  if constexpr (is_dense16<Src>::value) {
    // ncu on the H100: the generic loop below issued 14.8 instructions per BF16 element (ALU
    // pipe 65% busy, DRAM 63%); this one is load-bound.
    if (flat && aligned16(src.base))
      done = amax_dense16<Src::math>(static_cast<const uint4*>(src.base), t0, nvec, stride, &m);
  }
  if (!done) {
    m = 0;
    for (uint64_t t = t0; t < nvec; t += 2 * stride) {
      // Two independent vectors per iteration keep 32 bytes per thread in flight.
      float x[8], y[8];
      const vec_pos p = vector_position(t, cols, vpr, flat);
      const load_result r = src.load8(p.e, p.row, p.col, p.n, x);
      const bool has2 = t + stride < nvec;
      vec_pos q{};
      load_result r2;
      if (has2) {
        q = vector_position(t + stride, cols, vpr, flat);
        r2 = src.load8(q.e, q.row, q.col, q.n, y);
      }
      if (r.flags) report_vector(ws, r, row_begin * cols + p.e);
#pragma unroll
      for (int i = 0; i < 8; ++i)
        if (!(r.bad_mask >> i & 1u)) m = max(m, abs_bits(x[i]));
      if (has2) {
        if (r2.flags) report_vector(ws, r2, row_begin * cols + q.e);
#pragma unroll
        for (int i = 0; i < 8; ++i)
          if (!(r2.bad_mask >> i & 1u)) m = max(m, abs_bits(y[i]));
      }
    }
  }
  m = block_max_u32(m, scratch);
  if (threadIdx.x == 0 && m != 0) atomicMax(&status_of(ws)->amax_bits, m);
}

// ---- per-tensor fp8 / int8 ----------------------------------------------------------------------

enum class tensor_kind { fp8, int8 };

template <class Src, tensor_kind K>
__global__ void __launch_bounds__(k_block, k_min_blocks)
    tensor_quant_kernel(Src src, uint64_t rows, uint64_t cols, uint64_t row_begin, uint8_t* out,
                        float* scale_out, void* ws) {
  constexpr src_kind D = Src::math;
  const float amax = tensor_amax_of(ws);
  float s, mult;
  if constexpr (K == tensor_kind::fp8) {
    s = fp8_tensor_scale(amax);
    mult = fp8_divisor<D>(s);  // the divisor of every element
    if (mult == 0.0f) {
      if (blockIdx.x == 0 && threadIdx.x == 0)
        report_scale(status_of(ws), 0, status_scale_underflow);
      return;
    }
  } else {
    s = int8_scale<D>(amax);
    mult = reciprocal_rn(s);
  }
  if (blockIdx.x == 0 && threadIdx.x == 0 && scale_out) *scale_out = s;
  const uint64_t vpr = (cols + 7) / 8;
  const bool flat = cols % 8 == 0 && !Src::needs_row_col;
  const uint64_t nvec = rows * vpr;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  auto encode = [&](const float(&x)[8], const vec_pos& p) {
    uint8_t b[8];
    // fast:: forms equal fp8_quantize_element<D> / int8_code on every input (fast_math.cuh).
    if constexpr (K == tensor_kind::fp8) {
      fast::fp8_quantize8<D>(x, mult, b);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(fast::int8_code(x[i], mult));
    }
    store_bytes8(out + p.e, b, p.n);
  };
  // Two vectors per iteration, both loads issued before any math: 32 bytes in flight per thread.
  for (uint64_t t = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; t < nvec;
       t += 2 * stride) {
    float x[8], y[8];
    const vec_pos p = vector_position(t, cols, vpr, flat);
    const load_result r = src.load8(p.e, p.row, p.col, p.n, x);
    const bool has2 = t + stride < nvec;
    vec_pos q{};
    load_result r2;
    if (has2) {
      q = vector_position(t + stride, cols, vpr, flat);
      r2 = src.load8(q.e, q.row, q.col, q.n, y);
    }
    if (r.flags) report_vector(ws, r, row_begin * cols + p.e);
    encode(x, p);
    if (has2) {
      if (r2.flags) report_vector(ws, r2, row_begin * cols + q.e);
      encode(y, q);
    }
  }
}

}  // namespace

template <class Src>
void launch_amax(const Src& src, const launch_geometry& g, void* ws, cudaStream_t st) {
  const uint64_t nvec = g.rows * ((g.cols + 7) / 8);
  amax_kernel<Src>
      <<<grid_for((nvec + 1) / 2, k_block), k_block, 0, st>>>(src, g.rows, g.cols, g.row_begin, ws);
  SQ_CUDA_LAUNCH("amax_kernel");
}

template <class Src>
void launch_tensor(scheme_family f, const Src& src, const launch_geometry& g,
                   const quant_outputs& o, void* ws, cudaStream_t st) {
  const uint64_t nvec = g.rows * ((g.cols + 7) / 8);
  if (f == scheme_family::fp8_tensor) {
    tensor_quant_kernel<Src, tensor_kind::fp8>
        <<<grid_for((nvec + 1) / 2, k_block), k_block, 0, st>>>(src, g.rows, g.cols, g.row_begin,
                                                                static_cast<uint8_t*>(o.weight),
                                                                static_cast<float*>(o.scale), ws);
    SQ_CUDA_LAUNCH("tensor_quant_kernel<fp8>");
  } else {
    tensor_quant_kernel<Src, tensor_kind::int8>
        <<<grid_for((nvec + 1) / 2, k_block), k_block, 0, st>>>(src, g.rows, g.cols, g.row_begin,
                                                                static_cast<uint8_t*>(o.weight),
                                                                static_cast<float*>(o.scale), ws);
    SQ_CUDA_LAUNCH("tensor_quant_kernel<int8>");
  }
}

#define SQ_INST(S)                                                                     \
  template void launch_amax<S>(const S&, const launch_geometry&, void*, cudaStream_t); \
  template void launch_tensor<S>(scheme_family, const S&, const launch_geometry&,      \
                                 const quant_outputs&, void*, cudaStream_t);
SQ_INSTANTIATE_SOURCES(SQ_INST)
#undef SQ_INST

}  // namespace shardquant::gpu::detail
