// Device-side building blocks shared by the quantize and recovery kernels: the workspace status
// (first bad element, flags, per-tensor amax), 8-element vector loaders for dense F32/BF16/F16
// and block-FP8 sources (16-byte loads when aligned), warp reductions and launch sizing.
// Every number is computed by the shared math headers (numeric/fp8/mx/int_quant/recover.h):
// this file only moves bytes. For .cu files only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/fast_math.cuh"
#include "kernels/gpu_api.h"
#include "kernels/int_quant.h"
#include "kernels/numeric.h"
#include "kernels/recover.h"
#include "kernels/recover_tensors.h"

namespace shardquant::gpu::detail {

// ---- workspace ----------------------------------------------------------------------------------

inline constexpr size_t k_workspace_bytes = 256;
static_assert(sizeof(kernel_status) == 32, "kernel_status layout");

__device__ __forceinline__ kernel_status* status_of(void* ws) {
  return static_cast<kernel_status*>(ws);
}

// Rare paths. Order-independent (min index, or of flags), so the status is deterministic.
// A bad element (non-finite weight, FP8 NaN code): its whole-tensor index.
__device__ __forceinline__ void report_bad(kernel_status* st, uint64_t index, uint32_t flags) {
  atomicOr(&st->flags, flags);
  atomicMin(reinterpret_cast<unsigned long long*>(&st->first_bad_index),
            static_cast<unsigned long long>(index));
}
// A scale that cannot be used (underflow / overflow in the source dtype): the scale's index.
__device__ __forceinline__ void report_scale(kernel_status* st, uint64_t scale_index,
                                             uint32_t flag) {
  atomicOr(&st->flags, flag);
  atomicMin(reinterpret_cast<unsigned long long*>(&st->scale_error_index),
            static_cast<unsigned long long>(scale_index));
}

__device__ __forceinline__ float tensor_amax_of(const void* ws) {
  return f32_from_bits(static_cast<const kernel_status*>(ws)->amax_bits);
}

// ---- warp reductions ----------------------------------------------------------------------------

// Max / min over aligned groups of `Lanes` lanes (a power of two <= 32); every lane gets the
// result.
template <int Lanes>
__device__ __forceinline__ uint32_t group_max_u32(uint32_t v) {
#pragma unroll
  for (int o = Lanes / 2; o > 0; o /= 2) {
    const uint32_t w = __shfl_xor_sync(0xFFFFFFFFu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

template <int Lanes>
__device__ __forceinline__ float group_max_f(float v) {
#pragma unroll
  for (int o = Lanes / 2; o > 0; o /= 2) v = max_f(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  return v;
}

template <int Lanes>
__device__ __forceinline__ float group_min_f(float v) {
#pragma unroll
  for (int o = Lanes / 2; o > 0; o /= 2) v = min_f(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  return v;
}

// Max of a uint32 over the whole block (blockDim.x a multiple of 32, <= 1024); all threads get it.
// `scratch` holds 32 words of shared memory; the function synchronizes before reusing it.
__device__ __forceinline__ uint32_t block_max_u32(uint32_t v, uint32_t* scratch) {
  v = group_max_u32<32>(v);
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const unsigned nwarps = blockDim.x / 32;
  v = lane < nwarps ? scratch[lane] : 0u;
  return group_max_u32<32>(v);
}

// ---- vector loaders -----------------------------------------------------------------------------
// A loader reads elements [e, e + n) (n <= 8) of the launch's range, e = row * cols + col with
// `row` relative to the range, into x[0..8) (zeros past n), and returns a bit mask of bad
// elements and the status flags they raise. Src::math is the dtype D the scheme math rounds to.

struct load_result {
  uint32_t bad_mask = 0;  // non-finite elements
  uint32_t flags = 0;
  uint64_t bad_scale_index = kernel_status::no_index;  // block FP8: first e8m0 0xFF scale
};

__device__ __forceinline__ bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

__device__ __forceinline__ void unpack_u16x8(const uint4& v, uint16_t (&h)[8]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    h[2 * i] = static_cast<uint16_t>(w[i] & 0xFFFFu);
    h[2 * i + 1] = static_cast<uint16_t>(w[i] >> 16);
  }
}

template <src_kind D>
struct dense_source {
  static constexpr src_kind math = D;
  static constexpr bool needs_row_col = false;
  const void* base;  // the range's first element

  __device__ __forceinline__ load_result load8(uint64_t e, uint64_t /*row*/, uint64_t /*col*/,
                                               uint32_t n, float (&x)[8]) const {
    if constexpr (D == src_kind::f32) {
      const float* p = static_cast<const float*>(base) + e;
      if (n == 8 && aligned16(p)) {
        const float4 a = __ldg(reinterpret_cast<const float4*>(p));
        const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
        x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w;
        x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
      } else {
#pragma unroll
        for (uint32_t i = 0; i < 8; ++i) x[i] = i < n ? p[i] : 0.0f;
      }
      load_result r;
#pragma unroll
      for (uint32_t i = 0; i < 8; ++i)
        if (!is_finite(x[i])) r.bad_mask |= 1u << i;
      if (r.bad_mask) r.flags = status_nonfinite_input;
      return r;
    } else {
      const uint16_t* p = static_cast<const uint16_t*>(base) + e;
      uint4 v;
      if (n == 8 && aligned16(p)) {
        v = __ldg(reinterpret_cast<const uint4*>(p));
      } else {
        uint16_t h[8];
#pragma unroll
        for (uint32_t i = 0; i < 8; ++i) h[i] = i < n ? p[i] : uint16_t{0};
        v = uint4{h[0] | uint32_t{h[1]} << 16, h[2] | uint32_t{h[3]} << 16,
                  h[4] | uint32_t{h[5]} << 16, h[6] | uint32_t{h[7]} << 16};
      }
      uint16_t h[8];
      unpack_u16x8(v, h);
#pragma unroll
      for (int i = 0; i < 8; ++i)
        x[i] = D == src_kind::bf16 ? bf16_to_f32(h[i]) : fast::f16_to_f32(h[i]);
      // A 16-bit float is Inf/NaN iff its magnitude bits reach the all-ones exponent: one
      // per-halfword compare for two elements finds whether any element is bad (ncu: the
      // per-element is_finite() of the widened values cost ~4 instructions per element);
      // the per-element mask is built only then (rare).
      constexpr uint32_t inf2 = D == src_kind::bf16 ? 0x7F807F80u : 0x7C007C00u;
      const uint32_t any =
          __vcmpgeu2(v.x & 0x7FFF7FFFu, inf2) | __vcmpgeu2(v.y & 0x7FFF7FFFu, inf2) |
          __vcmpgeu2(v.z & 0x7FFF7FFFu, inf2) | __vcmpgeu2(v.w & 0x7FFF7FFFu, inf2);
      load_result r;
      if (any) {
#pragma unroll
        for (uint32_t i = 0; i < 8; ++i)
          if ((h[i] & 0x7FFFu) >= (inf2 & 0xFFFFu)) r.bad_mask |= 1u << i;
        r.flags = status_nonfinite_input;
      }
      return r;
    }
  }
};

// DeepSeek block FP8 (formats.md §7.2.2) recovered on the fly: the quantizer sees F32 (D = F32).
// Errors as the CPU's recover_fp8_block(): an FP8 NaN code is a non-finite input (element
// index), an e8m0 0xFF scale a bad scale (flat scale index); any other non-finite product is a
// non-finite input, as quantizing the recovered tensor would find.
struct fp8_block_params {
  const uint8_t* codes;  // the range's first code
  const void* scale;     // the whole scale tensor
  fp8_kind kind;
  scale_kind skind;
  fp8_block_geometry geo;
  uint64_t row_begin;  // tensor row of the range's first row
  bool small;          // rows, columns and scale indices fit 32 bits
};

// fp8_block_scale_row() / the scale column, in 32-bit arithmetic when everything fits (64-bit
// division costs ~4x more and ran once per 8 elements).
__device__ __forceinline__ uint64_t block_scale_row(const fp8_block_params& p, uint64_t tr) {
  if (!p.small) return fp8_block_scale_row(p.geo, tr);
  const uint32_t r32 = static_cast<uint32_t>(tr), cr = static_cast<uint32_t>(p.geo.chunk_rows);
  const uint32_t k = r32 / cr;
  return k * static_cast<uint32_t>(p.geo.blocks_per_chunk) +
         (r32 - k * cr) / static_cast<uint32_t>(p.geo.bh);
}
__device__ __forceinline__ uint64_t block_scale_col(const fp8_block_params& p, uint64_t col) {
  if (!p.small) return col / p.geo.bw;
  return static_cast<uint32_t>(col) / static_cast<uint32_t>(p.geo.bw);
}

// Loads n (<= 8) one-byte codes at c into code[] (zeros past n): one 8-byte load when aligned.
__device__ __forceinline__ void load_codes8(const uint8_t* c, uint32_t n, uint8_t (&code)[8]) {
  if (n == 8 && (reinterpret_cast<uintptr_t>(c) & 7u) == 0) {
    const uint2 v = __ldg(reinterpret_cast<const uint2*>(c));
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      code[i] = static_cast<uint8_t>(v.x >> (8 * i));
      code[4 + i] = static_cast<uint8_t>(v.y >> (8 * i));
    }
  } else {
#pragma unroll
    for (uint32_t i = 0; i < 8; ++i) code[i] = i < n ? c[i] : uint8_t{0};
  }
}

struct fp8_block_loader {
  static constexpr src_kind math = src_kind::f32;
  static constexpr bool needs_row_col = true;
  fp8_block_params p;

  __device__ __forceinline__ load_result load8(uint64_t e, uint64_t row, uint64_t col, uint32_t n,
                                               float (&x)[8]) const {
    const uint8_t* c = p.codes + e;
    uint8_t code[8];
    load_codes8(c, n, code);
    const uint64_t srow = block_scale_row(p, p.row_begin + row) * p.geo.scale_cols;
    const uint64_t scol = block_scale_col(p, col);
    load_result r;
    uint64_t si = srow + scol;
    uint64_t next_block = (scol + 1) * p.geo.bw;
    float s = load_scale(p.skind, p.scale, si);
    bool s_bad = p.skind == scale_kind::e8m0 && static_cast<const uint8_t*>(p.scale)[si] == 255;
    if (n == 8 && next_block - col >= 8) {
      // The whole vector lies in one scale block (the usual case: bw a multiple of 8): one scale,
      // codes decoded in pairs by the hardware (fast::, equal to fp8_decode on every code), then
      // the same per-element checks and product as the general loop below.
      float d[8];
      uint32_t nan_mask = 0;
      if (p.kind == fp8_kind::e4m3fn) {
#pragma unroll
        for (int i = 0; i < 8; i += 2)
          fast::fp8_e4m3fn_decode2(code[i] | static_cast<uint32_t>(code[i + 1]) << 8, d[i],
                                   d[i + 1]);
#pragma unroll
        for (int i = 0; i < 8; ++i)
          if (fp8_e4m3fn_is_nan(code[i])) nan_mask |= 1u << i;
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          d[i] = fast::f16_to_f32(static_cast<uint16_t>(code[i] << 8));
          if (fp8_e5m2_is_nan(code[i])) nan_mask |= 1u << i;
        }
      }
      if (nan_mask) {
        r.bad_mask = nan_mask;
        r.flags = status_nonfinite_input;
      }
      if (s_bad && nan_mask != 0xFFu) {
        r.flags |= status_bad_scale;
        r.bad_scale_index = si;
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        x[i] = (s_bad || (nan_mask >> i & 1u)) ? 0.0f : mul_rn(d[i], s);
        if (!is_finite(x[i])) {
          r.bad_mask |= 1u << i;
          r.flags |= status_nonfinite_input;
        }
      }
      return r;
    }
#pragma unroll
    for (uint32_t i = 0; i < 8; ++i) {
      x[i] = 0.0f;
      if (i >= n) continue;
      if (col + i == next_block) {  // crossed into the next scale block (bw may be < 8)
        si = srow + (col + i) / p.geo.bw;
        next_block += p.geo.bw;
        s = load_scale(p.skind, p.scale, si);
        s_bad = p.skind == scale_kind::e8m0 && static_cast<const uint8_t*>(p.scale)[si] == 255;
      }
      if (fp8_is_nan(p.kind, code[i])) {
        r.bad_mask |= 1u << i;
        r.flags |= status_nonfinite_input;
      } else if (s_bad) {
        r.flags |= status_bad_scale;
        r.bad_scale_index = r.bad_scale_index < si ? r.bad_scale_index : si;
      } else {
        x[i] = fp8_dequant_element(p.kind, code[i], s);
        if (!is_finite(x[i])) {
          r.bad_mask |= 1u << i;
          r.flags |= status_nonfinite_input;
        }
      }
    }
    return r;
  }
};

// The first stage of a progressive pair (formats.md §10 generalized, kernels/schemes.h), fused into
// the second stage's loads: the inner source's values go through the first stage's element
// quantizer and come out as the F32 values of its codes (fp8 values, int8 integers), which the
// second-stage kernel quantizes with D = F32. Per-tensor first stages take their scale from the
// workspace amax; fp8 per-row takes it from `row_scale` (the `_scale` output, written by the
// prepass kernel before). A divisor that underflows gives zeros (the prepass reported it).
enum class stage1_kind : uint8_t { fp8_tensor, fp8_row, int8_tensor };

template <class Inner>
struct stage1_loader {
  static constexpr src_kind math = src_kind::f32;
  static constexpr bool needs_row_col = true;  // the fp8 row scale; dense inner ignores row/col
  Inner inner;
  stage1_kind kind;
  const void* ws;
  const float* row_scale;  // range-relative rows (fp8_row only)

  __device__ __forceinline__ load_result load8(uint64_t e, uint64_t row, uint64_t col, uint32_t n,
                                               float (&x)[8]) const {
    constexpr src_kind D = Inner::math;
    const load_result r = inner.load8(e, row, col, n, x);
    if (kind == stage1_kind::int8_tensor) {
      const float inv = reciprocal_rn(int8_scale<D>(tensor_amax_of(ws)));
#pragma unroll
      for (int i = 0; i < 8; ++i) x[i] = int8_code_value(x[i], inv);
      return r;
    }
    const float s =
        kind == stage1_kind::fp8_row ? row_scale[row] : fp8_tensor_scale(tensor_amax_of(ws));
    const float s_div = fp8_divisor<D>(s);
    if (s_div == 0.0f) {
#pragma unroll
      for (int i = 0; i < 8; ++i) x[i] = 0.0f;
      return r;
    }
    fast::int4_fp8_stage1_8<D>(x, s_div);  // == fp8_e4m3fn_decode(fp8_quantize_element<D>(x, s))
    return r;
  }
};

// Reports the first bad element of a vector that starts at tensor element `tensor_e`, and a bad
// recovery scale. Call when r.flags != 0.
__device__ __forceinline__ void report_vector(void* ws, const load_result& r, uint64_t tensor_e) {
  if (r.bad_mask)
    report_bad(status_of(ws), tensor_e + (__ffs(r.bad_mask) - 1), status_nonfinite_input);
  if (r.flags & status_bad_scale) report_scale(status_of(ws), r.bad_scale_index, status_bad_scale);
}

// ---- launch sizing ------------------------------------------------------------------------------

// Multiprocessor count of the current device (cached per device).
int sm_count();
// A grid for a grid-stride loop over `items` work items of `block` threads: enough blocks to
// fill every SM `per_sm` times, never more than the work needs.
unsigned grid_for(uint64_t items, unsigned block, unsigned per_sm = 8);

// A loader for a block-FP8 source; bad_argument when check_fp8_block() rejects it.
quant_status make_fp8_block(const fp8_block_source& v, fp8_block_loader* out);

inline void check_workspace(void* ws, size_t bytes) {
  if (!ws || bytes < k_workspace_bytes)
    throw launch_error("shardquant gpu: workspace missing or smaller than workspace_bytes()");
}

}  // namespace shardquant::gpu::detail
