// Exhaustive equality of kernels/cuda/fast_math.cuh with the shared math headers: one thread per
// input pattern (grid-stride over up to 2^32 patterns), both functions evaluated on the device,
// mismatches counted and the smallest mismatching pattern kept. See fast_math_check.h.
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/fast_math.cuh"
#include "kernels/cuda/fast_math_check.h"
#include "kernels/cuda/fast_mx.cuh"

namespace shardquant::gpu {
namespace {

struct check_state {
  unsigned long long mismatches;
  unsigned long long first_bad;
};

__device__ __forceinline__ void note(check_state* st, bool bad, uint64_t input) {
  if (bad) {
    atomicAdd(&st->mismatches, 1ull);
    atomicMin(&st->first_bad, static_cast<unsigned long long>(input));
  }
}

// Second element of a pair: a bijection of the first, so every pattern is also seen in the
// other half, next to varied neighbours.
__device__ __forceinline__ uint32_t partner(uint32_t u) {
  return ~u * 0x9E3779B1u;
}

template <fast_fn F>
__global__ void check_kernel(uint64_t count, check_state* st) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < count;
       i += stride) {
    const uint32_t u = static_cast<uint32_t>(i);
    const float x = f32_from_bits(u);
    const float y = f32_from_bits(partner(u));
    bool bad = false;
    if constexpr (F == fast_fn::round_bf16x2 || F == fast_fn::round_f16x2) {
      constexpr src_kind D = F == fast_fn::round_bf16x2 ? src_kind::bf16 : src_kind::f16;
      float a = x, b = y;
      detail::fast::round_src2<D>(a, b);
      bad = f32_bits(a) != f32_bits(round_src<D>(x)) || f32_bits(b) != f32_bits(round_src<D>(y));
    } else if constexpr (F == fast_fn::fp8_encode2) {
      const uint32_t p = detail::fast::fp8_e4m3fn_encode2(x, y);
      bad = p != (fp8_e4m3fn_encode(x) | static_cast<uint32_t>(fp8_e4m3fn_encode(y)) << 8);
    } else if constexpr (F == fast_fn::fp8_decode2) {
      float lo, hi;
      detail::fast::fp8_e4m3fn_decode2(u, lo, hi);
      bad = f32_bits(lo) != f32_bits(fp8_e4m3fn_decode(static_cast<uint8_t>(u & 0xFFu))) ||
            f32_bits(hi) != f32_bits(fp8_e4m3fn_decode(static_cast<uint8_t>(u >> 8)));
    } else if constexpr (F == fast_fn::f16_to_f32) {
      const uint16_t h = static_cast<uint16_t>(u);
      bad = f32_bits(detail::fast::f16_to_f32(h)) != f32_bits(shardquant::f16_to_f32(h));
    } else if constexpr (F == fast_fn::mx_e2m3_encode2 || F == fast_fn::mx_e3m2_encode2) {
      constexpr bool e2m3 = F == fast_fn::mx_e2m3_encode2;
      constexpr mx_format fmt = e2m3 ? mx_fp6_e2m3() : mx_fp6_e3m2();
      const uint32_t p =
          e2m3 ? detail::fast::mx_e2m3_encode2(x, y) : detail::fast::mx_e3m2_encode2(x, y);
      bad = p != (mx_encode_element(x, fmt) | mx_encode_element(y, fmt) << 8);
    } else {
      constexpr int32_t lo =
          F == fast_fn::rne_clamp_int8 ? -128 : (F == fast_fn::rne_clamp_int4 ? -8 : 0);
      constexpr int32_t hi =
          F == fast_fn::rne_clamp_int8 ? 127 : (F == fast_fn::rne_clamp_int4 ? 7 : 15);
      bad = detail::fast::rne_clamp_i(x, static_cast<float>(lo), static_cast<float>(hi)) !=
            shardquant::rne_clamp_i(x, lo, hi);
    }
    note(st, bad, i);
  }
}

template <fast_fn F>
void launch(uint64_t count, check_state* st) {
  check_kernel<F><<<132 * 16, 256>>>(count, st);
  SQ_CUDA_LAUNCH("fast_math check_kernel");
}

}  // namespace

fast_check_result check_fast_math(fast_fn f) {
  const bool small = f == fast_fn::fp8_decode2 || f == fast_fn::f16_to_f32;
  const uint64_t count = small ? (uint64_t{1} << 16) : (uint64_t{1} << 32);
  check_state* st = nullptr;
  SQ_CUDA(cudaMalloc(&st, sizeof(check_state)));
  const check_state init{0ull, ~0ull};
  SQ_CUDA(cudaMemcpy(st, &init, sizeof init, cudaMemcpyHostToDevice));
  switch (f) {
    case fast_fn::round_bf16x2:
      launch<fast_fn::round_bf16x2>(count, st);
      break;
    case fast_fn::round_f16x2:
      launch<fast_fn::round_f16x2>(count, st);
      break;
    case fast_fn::fp8_encode2:
      launch<fast_fn::fp8_encode2>(count, st);
      break;
    case fast_fn::fp8_decode2:
      launch<fast_fn::fp8_decode2>(count, st);
      break;
    case fast_fn::f16_to_f32:
      launch<fast_fn::f16_to_f32>(count, st);
      break;
    case fast_fn::rne_clamp_int8:
      launch<fast_fn::rne_clamp_int8>(count, st);
      break;
    case fast_fn::rne_clamp_int4:
      launch<fast_fn::rne_clamp_int4>(count, st);
      break;
    case fast_fn::rne_clamp_uint4:
      launch<fast_fn::rne_clamp_uint4>(count, st);
      break;
    case fast_fn::mx_e2m3_encode2:
      launch<fast_fn::mx_e2m3_encode2>(count, st);
      break;
    case fast_fn::mx_e3m2_encode2:
      launch<fast_fn::mx_e3m2_encode2>(count, st);
      break;
  }
  check_state out{};
  SQ_CUDA(cudaMemcpy(&out, st, sizeof out, cudaMemcpyDeviceToHost));
  SQ_CUDA(cudaFree(st));
  return {count, out.mismatches, out.first_bad};
}

}  // namespace shardquant::gpu
