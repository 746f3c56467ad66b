// The fast CPU quantizers (what the program runs): the same math headers as the reference, in
// loops shaped for the vectorizer (no branches in the element paths, fixed 32-element MX blocks,
// 8-row int4 word columns) and spread over cores with tbb::parallel_for. Hot loops are compiled
// for AVX-512, AVX2 and a plain x86-64 fallback (kernels/cpu_isa.h); the result is the same bytes
// either way because every step is an exactly specified IEEE or integer operation.
// Must give the same bytes as kernels/reference_quantize.cpp; tested byte for byte.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "kernels/amdfp4.h"
#include "kernels/cpu_isa.h"
#include "kernels/fp4_block.h"
#include "kernels/fp8.h"
#include "kernels/int4_fp8.h"
#include "kernels/int_quant.h"
#include "kernels/mx.h"
#include "kernels/numeric.h"
#include "kernels/nvfp4.h"
#include "kernels/quantize.h"
#include "kernels/quantize_detail.h"

// Each hot loop is compiled for three instruction-set levels and picked at run time
// (kernels/cpu_isa.h); flatten inlines the whole element math into each variant.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SQ_MULTI_ISA 1
#define SQ_ISA_V4 __attribute__((target("arch=x86-64-v4,prefer-vector-width=512"), flatten))
#define SQ_ISA_V3 __attribute__((target("arch=x86-64-v3"), flatten))
#endif
#define SQ_ISA_V1 __attribute__((flatten))

namespace shardquant {
namespace {

using detail::ceil_div;
using detail::error;
using detail::put_f32;
using detail::put_src_scale;
using detail::view_geometry;
using code = quant_status::code;

// Elements per parallel task: large enough to amortize scheduling, small enough to balance.
constexpr uint64_t k_grain_elems = 1 << 16;

// The smallest index reported by any task (k_all_rows = none).
struct first_index {
  std::atomic<uint64_t> v{k_all_rows};
  void offer(uint64_t i) {
    uint64_t cur = v.load(std::memory_order_relaxed);
    while (i < cur && !v.compare_exchange_weak(cur, i, std::memory_order_relaxed)) {
    }
  }
  uint64_t get() const { return v.load(); }
};

// ---- leaf loops (vectorizable; instantiated per source kind, cloned per ISA) -------------------

// Max of |x| bits over n elements (a non-finite element shows as >= 0x7F800000).
template <src_kind D>
inline uint32_t max_abs_bits(const void* src, uint64_t n) {
  uint32_t m = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const uint32_t ab = abs_bits(load_src<D>(src, i));
    m = ab > m ? ab : m;
  }
  return m;
}

template <src_kind D>
uint64_t first_bad_in(const void* src, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i)
    if (!is_finite(load_src<D>(src, i))) return i;
  return n;
}

// Encodes n elements with `encode(w)` into dst and returns the largest |x| bit pattern seen, so
// the caller's non-finite check costs no second pass. One loop shape for every per-element
// encoder below; `encode` inlines, so the loop still vectorizes.
template <src_kind D, typename T, typename F>
inline uint32_t encode_run(const void* src, uint64_t n, T* dst, F encode) {
  uint32_t m = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const float w = load_src<D>(src, i);
    const uint32_t ab = abs_bits(w);
    m = ab > m ? ab : m;
    dst[i] = encode(w);
  }
  return m;
}

template <src_kind D>
inline uint32_t fp8_run(const void* src, uint64_t n, float s_div, uint8_t* dst) {
  return encode_run<D>(src, n, dst, [s_div](float w) { return fp8_quantize_element<D>(w, s_div); });
}

template <src_kind D>
inline uint32_t int8_run(const void* src, uint64_t n, float inv, int8_t* dst) {
  return encode_run<D>(src, n, dst,
                       [inv](float w) { return static_cast<int8_t>(int8_code(w, inv)); });
}

// Elements 2i and 2i+1 of a source buffer as fp32. For bf16 the pair is one 32-bit word whose
// halves widen by a shift and a mask, so the FP4 loop below needs no shuffles.
template <src_kind D>
inline void load_pair(const void* src, uint32_t i, float* even, float* odd) {
  if constexpr (D == src_kind::f32) {
    *even = static_cast<const float*>(src)[2 * i];
    *odd = static_cast<const float*>(src)[2 * i + 1];
  } else {
    uint32_t p;
    std::memcpy(&p, static_cast<const char*>(src) + 4 * i, 4);
    if constexpr (D == src_kind::bf16) {
      *even = f32_from_bits(p << 16);
      *odd = f32_from_bits(p & 0xFFFF0000u);
    } else {
      *even = f16_to_f32(static_cast<uint16_t>(p & 0xFFFFu));
      *odd = f16_to_f32(static_cast<uint16_t>(p >> 16));
    }
  }
}

// fp32 bits of the amax of n source elements (NaN/Inf show as >= 0x7F800000). 16-bit sources
// reduce their own |bits| (ordered like the values, NaN/Inf above every finite value): half the
// vector work of widening first.
template <src_kind D>
inline uint32_t amax_bits_n(const char* src, uint64_t n) {
  if constexpr (D == src_kind::f32) {
    return max_abs_bits<D>(src, n);
  } else {
    uint16_t m = 0;
    for (uint64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      const uint16_t a = static_cast<uint16_t>(h & 0x7FFFu);
      m = a > m ? a : m;
    }
    if constexpr (D == src_kind::bf16) return static_cast<uint32_t>(m) << 16;
    return f32_bits(f16_to_f32(m));
  }
}

template <src_kind D>
inline uint32_t block_amax_bits(const char* src) {
  return amax_bits_n<D>(src, k_mx_block);
}

// MXFP4 full blocks, pairwise (byte i of a block = code(2i) | code(2i+1) << 4), in batches of
// k_fp4_batch blocks: first every block's amax and multiplier, then one long encode loop over the
// whole batch, so the vectorizer uses full-width vectors instead of one 16-byte block at a time.
// Blocks with k = -127 (divisor 0x003FFFFF, not a power of two) are redone with a true division.
constexpr uint32_t k_fp4_batch = 8;

template <src_kind D>
inline uint32_t mx_fp4_full_blocks(const void* src, uint64_t nblocks, uint8_t* packed,
                                   uint8_t* scales) {
  constexpr mx_format f = mx_fp4_e2m1();
  constexpr uint32_t pairs = k_mx_block / 2;
  uint32_t seen = 0;
  for (uint64_t b0 = 0; b0 < nblocks; b0 += k_fp4_batch) {
    const uint32_t nb = static_cast<uint32_t>(std::min<uint64_t>(k_fp4_batch, nblocks - b0));
    const char* s = static_cast<const char*>(src) + b0 * k_mx_block * src_bytes(D);
    uint8_t* out = packed + b0 * pairs;
    float mult[k_fp4_batch * pairs];
    int32_t ks[k_fp4_batch];
    for (uint32_t b = 0; b < nb; ++b) {
      const uint32_t m = block_amax_bits<D>(s + b * k_mx_block * src_bytes(D));
      seen = m > seen ? m : seen;
      ks[b] = mx_shared_exponent(f32_from_bits(m), f);
      scales[b0 + b] = mx_scale_byte(ks[b]);
      // x * 2^-k == RN32(x / 2^k) exactly for k in [-126, 127] (mx_scale_reciprocal).
      const float r = mx_scale_reciprocal(ks[b] == -127 ? 0 : ks[b]);
      for (uint32_t i = 0; i < pairs; ++i) mult[b * pairs + i] = r;
    }
    const uint32_t n = nb * pairs;
    for (uint32_t i = 0; i < n; ++i) {
      float e, o;
      load_pair<D>(s, i, &e, &o);
      out[i] = static_cast<uint8_t>(mx_encode_element(mul_rn(e, mult[i]), f) |
                                    (mx_encode_element(mul_rn(o, mult[i]), f) << 4));
    }
    for (uint32_t b = 0; b < nb; ++b) {
      if (ks[b] != -127) continue;
      const float d = mx_scale_divisor(-127);
      const char* sb = s + b * k_mx_block * src_bytes(D);
      for (uint32_t i = 0; i < pairs; ++i) {
        float e, o;
        load_pair<D>(sb, i, &e, &o);
        out[b * pairs + i] = static_cast<uint8_t>(mx_encode_element(div_rn(e, d), f) |
                                                  (mx_encode_element(div_rn(o, d), f) << 4));
      }
    }
  }
  return seen;
}

// MXFP6 full blocks in batches (like the FP4 encoder): amax and multiplier per block, one encode
// loop over the batch into codes, k = -127 blocks redone with a true division, then the 4-codes-
// into-3-bytes packing (word values first, a vectorizable loop, then the byte stores).
template <src_kind D, mx_element E>
inline uint32_t mx_fp6_full_blocks(const void* src, uint64_t nblocks, uint8_t* packed,
                                   uint8_t* scales) {
  constexpr mx_format f = E == mx_element::fp6_e2m3 ? mx_fp6_e2m3() : mx_fp6_e3m2();
  constexpr uint32_t batch = 8;
  constexpr uint32_t bytes = 24;  // per block
  uint32_t seen = 0;
  for (uint64_t b0 = 0; b0 < nblocks; b0 += batch) {
    const uint32_t nb = static_cast<uint32_t>(std::min<uint64_t>(batch, nblocks - b0));
    const char* s = static_cast<const char*>(src) + b0 * k_mx_block * src_bytes(D);
    float mult[batch * k_mx_block];
    int32_t ks[batch];
    for (uint32_t b = 0; b < nb; ++b) {
      const uint32_t m = block_amax_bits<D>(s + b * k_mx_block * src_bytes(D));
      seen = m > seen ? m : seen;
      ks[b] = mx_shared_exponent(f32_from_bits(m), f);
      scales[b0 + b] = mx_scale_byte(ks[b]);
      const float r = mx_scale_reciprocal(ks[b] == -127 ? 0 : ks[b]);
      for (uint32_t i = 0; i < k_mx_block; ++i) mult[b * k_mx_block + i] = r;
    }
    const uint32_t n = nb * k_mx_block;
    uint8_t codes[batch * k_mx_block];
    for (uint32_t i = 0; i < n; ++i)
      codes[i] = static_cast<uint8_t>(mx_encode_element(mul_rn(load_src<D>(s, i), mult[i]), f));
    for (uint32_t b = 0; b < nb; ++b) {
      if (ks[b] != -127) continue;
      const float d = mx_scale_divisor(-127);
      for (uint32_t i = b * k_mx_block; i < (b + 1) * k_mx_block; ++i)
        codes[i] = static_cast<uint8_t>(mx_encode_element(div_rn(load_src<D>(s, i), d), f));
    }
    uint32_t words[batch * k_mx_block / 4];
    for (uint32_t g = 0; g < n / 4; ++g)
      words[g] = static_cast<uint32_t>(codes[4 * g]) | (codes[4 * g + 1] << 6) |
                 (codes[4 * g + 2] << 12) | (codes[4 * g + 3] << 18);
    uint8_t* out = packed + b0 * bytes;
    for (uint32_t g = 0; g < n / 4; ++g) {
      out[3 * g] = static_cast<uint8_t>(words[g] & 0xFFu);
      out[3 * g + 1] = static_cast<uint8_t>((words[g] >> 8) & 0xFFu);
      out[3 * g + 2] = static_cast<uint8_t>((words[g] >> 16) & 0xFFu);
    }
  }
  return seen;
}

// Per-row amax bits of the fp8 values of stage 1 and the values themselves (int4_fp8).
template <src_kind D>
inline uint32_t int4_fp8_stage1_run(const void* src, uint64_t n, float s_div, float* f) {
  return encode_run<D>(src, n, f, [s_div](float w) { return int4_fp8_stage1_value<D>(w, s_div); });
}

// The int8 codes of stage 1 of a progressive pair as F32 values.
template <src_kind D>
inline uint32_t int8_values_run(const void* src, uint64_t n, float inv, float* f) {
  return encode_run<D>(src, n, f, [inv](float w) { return int8_code_value(w, inv); });
}

// rne_clamp_i(x, lo, hi) of kernels/numeric.h for any non-NaN x (the callers' x = RN32(w * inv)
// of finite w is never NaN), in four vector operations instead of about ten, all but the addition
// on integers (float min/max only vectorize as compare + blend here). y = RN32(x + 1.5 * 2^23):
// when y lies in [2^23, 2^24) the fp32 ulp is 1, so the addition rounds x half to even (1.5 * 2^23
// is even) and bits(y) = K + rne(x) with K = bits(1.5 * 2^23). Outside that range the clamp is
// still right, because bits(y) as int32 is monotone in y (negative y give negative ints): y < 2^23
// means x < -2^22, bits(y) < K + lo -> lo; y >= 2^24 means x >= 2^22, bits(y) > K + hi -> hi.
inline int32_t rne_clamp_fast(float x, int32_t lo, int32_t hi) {
  constexpr int32_t k = 0x4B400000;
  int32_t b = static_cast<int32_t>(f32_bits(add_rn(x, 12582912.0f)));
  b = b < k + lo ? k + lo : b;
  b = b > k + hi ? k + hi : b;
  return b - k;
}
inline int8_t int4_code_fast(float w, float inv) {
  return static_cast<int8_t>(rne_clamp_fast(mul_rn(w, inv), -8, 7));
}
inline int8_t uint4_code_fast(float w, float inv, float zero_f) {
  return static_cast<int8_t>(rne_clamp_fast(add_rn(mul_rn(w, inv), zero_f), 0, 15));
}

// An int32 key ordered like the finite float values, with -0 mapped to +0 (so min(x, 0) and
// max(x, 0) of the keys give the same value as the reference's float comparisons).
inline int32_t order_key(float x) {
  uint32_t u = f32_bits(x);
  u = u == 0x80000000u ? 0u : u;
  const uint32_t flip = static_cast<uint32_t>(static_cast<int32_t>(u) >> 31) & 0x7FFFFFFFu;
  return static_cast<int32_t>(u ^ flip);
}
inline float from_order_key(int32_t k) {
  const uint32_t u = static_cast<uint32_t>(k);
  const uint32_t flip = static_cast<uint32_t>(k >> 31) & 0x7FFFFFFFu;
  return f32_from_bits(u ^ flip);
}

// The same keys for the bits of a 16-bit source element (bf16 and f16 are sign and magnitude too),
// and back to the element's fp32 value. Here -0 keeps its own key (-1, just below +0's): a min of
// -1 comes back as -0.0f, whose 32-bit order_key is +0's, so the 32-bit keys the caller stores
// are the same as with -0 mapped first (one select less per element).
inline int16_t order_key16(uint16_t x) {
  const uint16_t flip =
      static_cast<uint16_t>(static_cast<uint16_t>(static_cast<int16_t>(x) >> 15) & 0x7FFFu);
  return static_cast<int16_t>(x ^ flip);
}
template <src_kind D>
inline float from_order_key16(int16_t k) {
  const uint16_t flip = static_cast<uint16_t>(static_cast<uint16_t>(k >> 15) & 0x7FFFu);
  const uint16_t x = static_cast<uint16_t>(static_cast<uint16_t>(k) ^ flip);
  return load_src<D>(&x, 0);
}

// int4 (ASYM = false) or uint4 (ASYM = true) codes of `units` consecutive units of a row, each of
// U elements (U = 0: un elements, known only at run time). Writes each unit's scale (and zero
// point) to scales[u] / zps[u] (unaligned F32 / I32 storage) and its codes to q. Returns the max
// |x| bits seen; units holding NaN/Inf are skipped (the caller reports them); the first unit whose
// scale is not finite is stored in *overflow (left alone if none).
template <src_kind D, bool ASYM, uint32_t U>
inline uint32_t int_row_units(const char* src, uint64_t units, uint64_t un, char* scales, char* zps,
                              int8_t* q, uint64_t* overflow) {
  const uint64_t n = U ? U : un;
  // Units go in chunks of k_chunk: first every unit's reductions, then all scales in one loop
  // (vectorized across units, so the divisions overlap), then the codes.
  constexpr uint64_t k_chunk = 64;
  uint32_t seen = 0;
  for (uint64_t u0 = 0; u0 < units; u0 += k_chunk) {
    const uint64_t cu = std::min<uint64_t>(k_chunk, units - u0);
    uint32_t m[k_chunk];
    int32_t lo[k_chunk], hi[k_chunk];
    for (uint64_t u = 0; u < cu; ++u) {
      const char* s = src + (u0 + u) * n * src_bytes(D);
      if constexpr (!ASYM) {
        m[u] = amax_bits_n<D>(s, n);
      } else {
        // min/max as integer reductions on order-preserving keys (float min/max reductions do
        // not vectorize without -ffinite-math-only); both start at the key of +0 (§5.5 step 1).
        // The amax (and the NaN/Inf check: a NaN key lies beyond the key of +-Inf) follows from
        // them: max(|min|, |max|), as min <= 0 <= max.
        int32_t l = 0, h = 0;
        if constexpr (D == src_kind::f32) {
          for (uint64_t i = 0; i < n; ++i) {
            const int32_t k = order_key(load_src<D>(s, i));
            l = k < l ? k : l;
            h = k > h ? k : h;
          }
        } else {
          // 16-bit sources order their own bits (sign and magnitude, like fp32): keys twice as
          // dense in a vector, and no widening.
          int16_t l16 = 0, h16 = 0;
          for (uint64_t i = 0; i < n; ++i) {
            uint16_t x;
            std::memcpy(&x, s + 2 * i, 2);
            const int16_t k = order_key16(x);
            l16 = k < l16 ? k : l16;
            h16 = k > h16 ? k : h16;
          }
          l = order_key(from_order_key16<D>(l16));
          h = order_key(from_order_key16<D>(h16));
        }
        m[u] = std::max(abs_bits(from_order_key(l)), abs_bits(from_order_key(h)));
        lo[u] = l;
        hi[u] = h;
      }
    }
    float sc[k_chunk], inv[k_chunk], zf[k_chunk];
    int32_t zp[k_chunk];
    for (uint64_t u = 0; u < cu; ++u) {
      if constexpr (!ASYM) {
        sc[u] = int4_scale<D>(f32_from_bits(m[u]));
        inv[u] = reciprocal_rn(sc[u]);
      } else {
        const uint4_params p =
            uint4_params_from_range<D>(from_order_key(lo[u]), from_order_key(hi[u]));
        sc[u] = p.scale;
        inv[u] = p.inv;
        zf[u] = p.zero_f;
        zp[u] = p.zero;
      }
    }
    for (uint64_t u = 0; u < cu; ++u) {
      seen = m[u] > seen ? m[u] : seen;
      if (m[u] >= k_f32_inf_bits) continue;  // reported by the caller
      const char* s = src + (u0 + u) * n * src_bytes(D);
      int8_t* qu = q + (u0 + u) * n;
      std::memcpy(scales + 4 * (u0 + u), &sc[u], 4);
      const float iv = inv[u];
      if constexpr (!ASYM) {
        for (uint64_t i = 0; i < n; ++i) qu[i] = int4_code_fast(load_src<D>(s, i), iv);
      } else {
        if (!is_finite(sc[u]) && *overflow == k_all_rows) *overflow = u0 + u;
        std::memcpy(zps + 4 * (u0 + u), &zp[u], 4);
        const float z = zf[u];
        for (uint64_t i = 0; i < n; ++i) qu[i] = uint4_code_fast(load_src<D>(s, i), iv, z);
      }
    }
  }
  return seen;
}

// One row of int4/uint4 units, with the common group sizes as compile-time trip counts.
template <src_kind D>
inline uint32_t int_row(const void* src, uint64_t units, uint64_t unit, bool asym, void* scales,
                        void* zps, int8_t* q, uint64_t* overflow) {
  const char* s = static_cast<const char*>(src);
  char* sc = static_cast<char*>(scales);
  char* zp = static_cast<char*>(zps);
  if (asym) {
    switch (unit) {
      case 32:
        return int_row_units<D, true, 32>(s, units, unit, sc, zp, q, overflow);
      case 64:
        return int_row_units<D, true, 64>(s, units, unit, sc, zp, q, overflow);
      case 128:
        return int_row_units<D, true, 128>(s, units, unit, sc, zp, q, overflow);
      default:
        return int_row_units<D, true, 0>(s, units, unit, sc, zp, q, overflow);
    }
  }
  switch (unit) {
    case 32:
      return int_row_units<D, false, 32>(s, units, unit, sc, zp, q, overflow);
    case 64:
      return int_row_units<D, false, 64>(s, units, unit, sc, zp, q, overflow);
    case 128:
      return int_row_units<D, false, 128>(s, units, unit, sc, zp, q, overflow);
    default:
      return int_row_units<D, false, 0>(s, units, unit, sc, zp, q, overflow);
  }
}

// Packs 8 rows of codes (row stride `stride`, rows >= n_rows are 0) of columns [0, n) into the
// words w[j * ld] (part of one word column of the transposed output).
// `reorder`: nibble i holds row [0,2,4,6,1,3,5,7][i] (second stage of a progressive pair).
inline void pack_column(const int8_t* q, uint64_t n, uint64_t stride, uint32_t n_rows, uint32_t* w,
                        uint64_t ld, bool reorder) {
  const nibble_order order = reorder ? nibble_order::int4_fp8 : nibble_order::sequential;
  if (n_rows == 8) {  // the common case, unrolled so the loop over j vectorizes
    const int8_t *q0 = q, *q1 = q + nibble_source(order, 1) * stride,
                 *q2 = q + nibble_source(order, 2) * stride,
                 *q3 = q + nibble_source(order, 3) * stride,
                 *q4 = q + nibble_source(order, 4) * stride,
                 *q5 = q + nibble_source(order, 5) * stride,
                 *q6 = q + nibble_source(order, 6) * stride, *q7 = q + 7 * stride;
    auto nib = [](int8_t x, uint32_t i) {
      return (static_cast<uint32_t>(static_cast<uint8_t>(x)) & 0xFu) << (4 * i);
    };
    for (uint64_t j = 0; j < n; ++j) {
      const uint32_t word = nib(q0[j], 0) | nib(q1[j], 1) | nib(q2[j], 2) | nib(q3[j], 3) |
                            nib(q4[j], 4) | nib(q5[j], 5) | nib(q6[j], 6) | nib(q7[j], 7);
      std::memcpy(w + j * ld, &word, 4);  // the output may be unaligned (a progressive piece)
    }
    return;
  }
  for (uint64_t j = 0; j < n; ++j) {
    uint32_t word = 0;
    for (uint32_t i = 0; i < 8; ++i) {
      const uint32_t src = nibble_source(order, i);
      if (src < n_rows)
        word |= (static_cast<uint32_t>(static_cast<uint8_t>(q[src * stride + j])) & 0xFu)
                << (4 * i);
    }
    std::memcpy(w + j * ld, &word, 4);
  }
}

// Packs one row of n codes sequentially / in AWQ order into ceil(n/8) words (unaligned storage).
// Eight codes are one 64-bit load; their nibbles are gathered with shifts and masks (vectorizes),
// not one byte at a time.
template <nibble_order O>
inline void pack_row(const int8_t* q, uint64_t n, uint32_t* w) {
  const uint64_t full = n / 8;
  for (uint64_t c = 0; c < full; ++c) {
    uint64_t x;
    std::memcpy(&x, q + 8 * c, 8);
    x &= 0x0F0F0F0F0F0F0F0Full;  // byte b holds code b's nibble
    uint32_t word;
    if constexpr (O == nibble_order::sequential) {
      x = (x | x >> 4) & 0x00FF00FF00FF00FFull;  // 16-bit lane k: codes 2k, 2k+1
      x = (x | x >> 8) & 0x0000FFFF0000FFFFull;  // 32-bit lane k: codes 4k..4k+3
      word = static_cast<uint32_t>(x | x >> 16);
    } else {
      // Nibbles [0,2,4,6] from the even bytes, then [1,3,5,7] from the odd ones; each set has its
      // nibble at bits 0, 16, 32, 48 and is squeezed into 16 bits.
      auto squeeze = [](uint64_t v) {
        v = (v | v >> 12) & 0x000000FF000000FFull;
        return static_cast<uint32_t>((v | v >> 24) & 0xFFFFu);
      };
      word = squeeze(x & 0x00FF00FF00FF00FFull) | squeeze((x >> 8) & 0x00FF00FF00FF00FFull) << 16;
    }
    std::memcpy(w + c, &word, 4);
  }
  if (n % 8) {
    int32_t tail[8] = {};
    for (uint64_t i = 0; i < n % 8; ++i) tail[i] = q[8 * full + i];
    const uint32_t word = pack_nibbles(tail, static_cast<uint32_t>(n % 8), O);
    std::memcpy(w + full, &word, 4);
  }
}

// fp8_e4m3fn_decode(fp8_e4m3fn_encode(y)) for finite y, without the code: the encoder's two
// roundings (to a multiple of 2^-9 below 2^-6, to 3 fraction bits above, both half to even, |y|
// clamped to 448 first) applied to the value itself. A third of int4_fp8's time went to the decode
// (perf); the tests compare with the reference byte for byte.
inline float fp8_e4m3fn_round(float y) {
  const uint32_t u = f32_bits(y);
  const uint32_t sign = u & 0x80000000u;
  uint32_t a = u & k_f32_abs_mask;
  a = a > k_fp8_max_bits ? k_fp8_max_bits : a;
  // rne(|y| * 2^9) * 2^-9 as in the encoder: |y| + 2^14 lies in [2^14, 2^14 + 2^-6), where the
  // fp32 ulp is 2^-9, so the addition rounds |y| to a multiple of 2^-9, half to even (an even
  // multiple of 2^-9 has an even mantissa there); subtracting 2^14 is exact.
  const uint32_t sub = f32_bits(sub_rn(add_rn(f32_from_bits(a), 16384.0f), 16384.0f));
  const uint32_t nrm = (a + 0x7FFFFu + ((a >> 20) & 1u)) & 0xFFF00000u;
  return f32_from_bits((a < 0x3C800000u ? sub : nrm) | sign);
}

// round_src<D>(x) for a non-NaN x (w / s_div of a finite w): bf16 without the NaN select.
template <src_kind D>
inline float round_src_no_nan(float x) {
  if constexpr (D == src_kind::bf16) {
    const uint32_t u = f32_bits(x);
    return f32_from_bits((u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u);
  } else {
    return round_src<D>(x);
  }
}

// One int4_fp8 row: stage 1 (fp8 codes -> values f, and their amax in the same pass), stage 2
// (int4 per row on f, D = F32), AWQ packing. Returns the max |x| bits of the source row (NaN/Inf:
// nothing else is meaningful).
template <src_kind D>
inline uint32_t int4_fp8_row(const void* src, uint64_t in, float s_div, float* f, int8_t* q,
                             uint32_t* words, float* s2) {
  uint32_t m = 0, mf = 0;
  for (uint64_t i = 0; i < in; ++i) {
    const float w = load_src<D>(src, i);
    const uint32_t ab = abs_bits(w);
    m = ab > m ? ab : m;
    const float v = fp8_e4m3fn_round(round_src_no_nan<D>(div_rn(w, s_div)));
    const uint32_t av = abs_bits(v);
    mf = av > mf ? av : mf;
    f[i] = v;
  }
  if (m >= k_f32_inf_bits) return m;
  const float s = int4_scale<src_kind::f32>(f32_from_bits(mf));
  const float inv = reciprocal_rn(s);
  *s2 = s;
  for (uint64_t i = 0; i < in; ++i) q[i] = int4_code_fast(f[i], inv);
  pack_row<nibble_order::int4_fp8>(q, in, words);
  return m;
}

// ---- ISA-cloned entry points of the hot loops --------------------------------------------------

// NAME(PARAMS) calling CALL, compiled per ISA level and dispatched on active_cpu_isa().
#if defined(SQ_MULTI_ISA)
#define SQ_DISPATCHED(RET, NAME, PARAMS, ARGS, CALL) \
  SQ_ISA_V4 RET NAME##_v4 PARAMS {                   \
    return CALL;                                     \
  }                                                  \
  SQ_ISA_V3 RET NAME##_v3 PARAMS {                   \
    return CALL;                                     \
  }                                                  \
  SQ_ISA_V1 RET NAME##_v1 PARAMS {                   \
    return CALL;                                     \
  }                                                  \
  RET NAME PARAMS {                                  \
    switch (active_cpu_isa()) {                      \
      case cpu_isa::avx512:                          \
        return NAME##_v4 ARGS;                       \
      case cpu_isa::avx2:                            \
        return NAME##_v3 ARGS;                       \
      default:                                       \
        return NAME##_v1 ARGS;                       \
    }                                                \
  }
#else
#define SQ_DISPATCHED(RET, NAME, PARAMS, ARGS, CALL) \
  SQ_ISA_V1 RET NAME PARAMS {                        \
    return CALL;                                     \
  }
#endif

// NAME_k<D>(...) -> NAME_bf16 / NAME_f16 / NAME_f32, each dispatched per ISA.
#define SQ_KIND_WRAPPERS(NAME, RET, PARAMS, ARGS)                          \
  SQ_DISPATCHED(RET, NAME##_bf16, PARAMS, ARGS, NAME<src_kind::bf16> ARGS) \
  SQ_DISPATCHED(RET, NAME##_f16, PARAMS, ARGS, NAME<src_kind::f16> ARGS)   \
  SQ_DISPATCHED(RET, NAME##_f32, PARAMS, ARGS, NAME<src_kind::f32> ARGS)   \
  template <src_kind D>                                                    \
  RET NAME##_k PARAMS {                                                    \
    if constexpr (D == src_kind::bf16)                                     \
      return NAME##_bf16 ARGS;                                             \
    else if constexpr (D == src_kind::f16)                                 \
      return NAME##_f16 ARGS;                                              \
    else                                                                   \
      return NAME##_f32 ARGS;                                              \
  }

SQ_KIND_WRAPPERS(max_abs_bits, uint32_t, (const void* src, uint64_t n), (src, n))
SQ_KIND_WRAPPERS(fp8_run, uint32_t, (const void* src, uint64_t n, float s, uint8_t* d),
                 (src, n, s, d))
SQ_KIND_WRAPPERS(int8_run, uint32_t, (const void* src, uint64_t n, float s, int8_t* d),
                 (src, n, s, d))
SQ_DISPATCHED(void, pack_column_d,
              (const int8_t* q, uint64_t n, uint64_t stride, uint32_t n_rows, uint32_t* w,
               uint64_t ld, bool reorder),
              (q, n, stride, n_rows, w, ld, reorder),
              pack_column(q, n, stride, n_rows, w, ld, reorder))
SQ_KIND_WRAPPERS(int4_fp8_stage1_run, uint32_t,
                 (const void* src, uint64_t n, float s_div, float* f), (src, n, s_div, f))
SQ_KIND_WRAPPERS(int8_values_run, uint32_t, (const void* src, uint64_t n, float inv, float* f),
                 (src, n, inv, f))
SQ_KIND_WRAPPERS(int4_fp8_row, uint32_t,
                 (const void* src, uint64_t in, float s_div, float* f, int8_t* q, uint32_t* w,
                  float* s2),
                 (src, in, s_div, f, q, w, s2))
SQ_KIND_WRAPPERS(int_row, uint32_t,
                 (const void* src, uint64_t units, uint64_t unit, bool asym, void* scales,
                  void* zps, int8_t* q, uint64_t* overflow),
                 (src, units, unit, asym, scales, zps, q, overflow))

template <src_kind D, mx_element E>
uint32_t mx_blocks(const void* src, uint64_t nb, uint8_t* p, uint8_t* s) {
  if constexpr (E == mx_element::fp4_e2m1)
    return mx_fp4_full_blocks<D>(src, nb, p, s);
  else
    return mx_fp6_full_blocks<D, E>(src, nb, p, s);
}

#define SQ_MX_WRAPPER(KIND, ELEM)                                                        \
  SQ_DISPATCHED(uint32_t, mx_blocks_##KIND##_##ELEM,                                     \
                (const void* src, uint64_t nb, uint8_t* p, uint8_t* s), (src, nb, p, s), \
                (mx_blocks<src_kind::KIND, mx_element::ELEM>(src, nb, p, s)))
SQ_MX_WRAPPER(bf16, fp4_e2m1)
SQ_MX_WRAPPER(bf16, fp6_e2m3)
SQ_MX_WRAPPER(bf16, fp6_e3m2)
SQ_MX_WRAPPER(f16, fp4_e2m1)
SQ_MX_WRAPPER(f16, fp6_e2m3)
SQ_MX_WRAPPER(f16, fp6_e3m2)
SQ_MX_WRAPPER(f32, fp4_e2m1)
SQ_MX_WRAPPER(f32, fp6_e2m3)
SQ_MX_WRAPPER(f32, fp6_e3m2)

using mx_blocks_fn = uint32_t (*)(const void*, uint64_t, uint8_t*, uint8_t*);
mx_blocks_fn mx_blocks_for(src_kind d, mx_element e) {
  switch (d) {
    case src_kind::bf16:
      return e == mx_element::fp4_e2m1   ? mx_blocks_bf16_fp4_e2m1
             : e == mx_element::fp6_e2m3 ? mx_blocks_bf16_fp6_e2m3
                                         : mx_blocks_bf16_fp6_e3m2;
    case src_kind::f16:
      return e == mx_element::fp4_e2m1   ? mx_blocks_f16_fp4_e2m1
             : e == mx_element::fp6_e2m3 ? mx_blocks_f16_fp6_e2m3
                                         : mx_blocks_f16_fp6_e3m2;
    default:
      return e == mx_element::fp4_e2m1   ? mx_blocks_f32_fp4_e2m1
             : e == mx_element::fp6_e2m3 ? mx_blocks_f32_fp6_e2m3
                                         : mx_blocks_f32_fp6_e3m2;
  }
}

// ---- helpers
// -------------------------------------------------------------------------------------

const char* elem_ptr(const source_view& v, src_kind d, uint64_t i) {
  return static_cast<const char*>(v.data) + i * src_bytes(d);
}

// First non-finite element of the whole view (flat index in the tensor) or k_all_rows.
template <src_kind D>
uint64_t scan_first_bad(const source_view& v, const view_geometry& g) {
  first_index bad;
  const uint64_t n = g.numel();
  tbb::parallel_for(tbb::blocked_range<uint64_t>(0, n, k_grain_elems), [&](const auto& r) {
    const uint64_t len = r.end() - r.begin();
    if (max_abs_bits_k<D>(elem_ptr(v, D, r.begin()), len) >= k_f32_inf_bits)
      bad.offer(g.base() + r.begin() + first_bad_in<D>(elem_ptr(v, D, r.begin()), len));
  });
  return bad.get();
}

// Rows per task so that a task holds about k_grain_elems elements (a multiple of `mult`).
uint64_t row_grain(uint64_t row_elems, uint64_t mult) {
  uint64_t g = std::max<uint64_t>(1, k_grain_elems / std::max<uint64_t>(1, row_elems));
  return ceil_div(g, mult) * mult;
}

// ---- per-family fast paths
// ------------------------------------------------------------------------- Each returns ok or an
// error; a non-finite input found anywhere makes the caller rescan for the first bad element, so
// the reported index equals the reference's.

// Per-tensor schemes: every element encoded in parallel chunks by `run(src, n, dst)`, which
// returns the largest |x| bits it saw; true when some element was not finite.
template <src_kind D, typename T, typename Run>
bool encode_tensor(const source_view& v, const view_geometry& g, T* dst, Run run) {
  std::atomic<bool> bad{false};
  tbb::parallel_for(tbb::blocked_range<uint64_t>(0, g.numel(), k_grain_elems), [&](const auto& r) {
    if (run(elem_ptr(v, D, r.begin()), r.end() - r.begin(), dst + r.begin()) >= k_f32_inf_bits)
      bad = true;
  });
  return bad;
}

template <src_kind D>
quant_status fp8_tensor(const source_view& v, const view_geometry& g, const quant_outputs& o,
                        float a, bool* saw_bad) {
  const float s = fp8_tensor_scale(a);
  const float s_div = fp8_divisor<D>(s);
  if (s_div == 0.0f) return error(code::scale_underflow, 0);
  if (o.scale) put_f32(o.scale, 0, s);
  *saw_bad = encode_tensor<D>(v, g, static_cast<uint8_t*>(o.weight),
                              [s_div](const void* src, uint64_t n, uint8_t* dst) {
                                return fp8_run_k<D>(src, n, s_div, dst);
                              });
  return {};
}

template <src_kind D>
quant_status int8_tensor(const source_view& v, const view_geometry& g, const quant_outputs& o,
                         float a, bool* saw_bad) {
  const float s = int8_scale<D>(a);
  const float inv = reciprocal_rn(s);
  if (o.scale) put_f32(o.scale, 0, s);
  *saw_bad = encode_tensor<D>(
      v, g, static_cast<int8_t*>(o.weight),
      [inv](const void* src, uint64_t n, int8_t* dst) { return int8_run_k<D>(src, n, inv, dst); });
  return {};
}

template <src_kind D>
quant_status fp8_row(const source_view& v, const view_geometry& g, const quant_outputs& o,
                     bool* saw_bad) {
  std::atomic<bool> bad{false};
  first_index underflow;
  uint8_t* dst = static_cast<uint8_t*>(o.weight);
  tbb::parallel_for(tbb::blocked_range<uint64_t>(0, g.rows, row_grain(g.inner, 1)),
                    [&](const auto& rr) {
                      for (uint64_t r = rr.begin(); r < rr.end(); ++r) {
                        const char* src = elem_ptr(v, D, r * g.inner);
                        const uint32_t m = max_abs_bits_k<D>(src, g.inner);
                        if (m >= k_f32_inf_bits) {
                          bad = true;
                          continue;
                        }
                        const float s = fp8_row_scale(f32_from_bits(m));
                        const float s_div = fp8_divisor<D>(s);
                        if (s_div == 0.0f) {
                          underflow.offer(g.row_begin + r);
                          continue;
                        }
                        put_f32(o.scale, r, s);
                        fp8_run_k<D>(src, g.inner, s_div, dst + r * g.inner);
                      }
                    });
  *saw_bad = bad;
  if (underflow.get() != k_all_rows) return error(code::scale_underflow, underflow.get());
  return {};
}

template <src_kind D>
quant_status mx(const source_view& v, const view_geometry& g, const quant_outputs& o, mx_element e,
                bool* saw_bad) {
  const mx_format f = e == mx_element::fp4_e2m1   ? mx_fp4_e2m1()
                      : e == mx_element::fp6_e2m3 ? mx_fp6_e2m3()
                                                  : mx_fp6_e3m2();
  const uint64_t in = g.last;
  const uint64_t rows = g.numel() / in;
  const uint64_t full = in / k_mx_block;
  const uint64_t tail = in % k_mx_block;
  const uint64_t bpr = full + (tail ? 1 : 0);
  const uint64_t row_bytes = mx_packed_bytes(in, f);
  const uint64_t block_bytes = mx_packed_bytes(k_mx_block, f);
  const mx_blocks_fn blocks = mx_blocks_for(D, e);
  uint8_t* packed = static_cast<uint8_t*>(o.weight);
  uint8_t* scales = static_cast<uint8_t*>(o.scale);
  std::atomic<bool> bad{false};
  auto do_row_blocks = [&](uint64_t r, uint64_t b0, uint64_t b1) {
    // Blocks [b0, b1) of row r; the tail block (index full) goes through the header's block
    // encoder, which handles n < 32.
    uint32_t m = 0;
    const uint64_t fb1 = std::min(b1, full);
    if (fb1 > b0)
      m = blocks(elem_ptr(v, D, r * in + b0 * k_mx_block), fb1 - b0,
                 packed + r * row_bytes + b0 * block_bytes, scales + r * bpr + b0);
    if (tail && b1 == bpr) {
      const char* src = elem_ptr(v, D, r * in + full * k_mx_block);
      const uint32_t mt = max_abs_bits_k<D>(src, tail);
      m = mt > m ? mt : m;
      if (mt < k_f32_inf_bits)
        scales[r * bpr + full] = mx_encode_block_src<D>(
            src, static_cast<uint32_t>(tail), f, packed + r * row_bytes + full * block_bytes);
    }
    if (m >= k_f32_inf_bits) bad = true;
  };
  if (bpr * k_mx_block >= k_grain_elems || rows == 1) {
    // Long rows: split each row into block ranges.
    const uint64_t grain_blocks = std::max<uint64_t>(1, k_grain_elems / k_mx_block);
    tbb::parallel_for(tbb::blocked_range<uint64_t>(0, rows * bpr, grain_blocks),
                      [&](const auto& br) {
                        uint64_t b = br.begin();
                        while (b < br.end()) {
                          const uint64_t r = b / bpr;
                          const uint64_t b0 = b % bpr;
                          const uint64_t b1 = std::min(bpr, b0 + (br.end() - b));
                          do_row_blocks(r, b0, b1);
                          b += b1 - b0;
                        }
                      });
  } else {
    tbb::parallel_for(tbb::blocked_range<uint64_t>(0, rows, row_grain(in, 1)), [&](const auto& rr) {
      for (uint64_t r = rr.begin(); r < rr.end(); ++r) do_row_blocks(r, 0, bpr);
    });
  }
  *saw_bad = bad;
  return {};
}

// int4/uint4 per-group (transposed packing, 8-row tasks) and per-channel (row tasks).
template <src_kind D>
quant_status int_family(const source_view& v, const view_geometry& g, const quant_outputs& o,
                        bool asym, bool grouped, uint64_t unit, nibble_order order, bool* saw_bad) {
  const uint64_t in = g.last;
  const uint64_t units = in / unit;
  std::atomic<bool> bad{false};
  first_index overflow;
  uint32_t* wout = static_cast<uint32_t*>(o.weight);
  char* scales = static_cast<char*>(o.scale);
  char* zps = static_cast<char*>(o.extra);
  // A tile's rows [r0, r0 + nr) x columns [j0, j0 + jw).
  struct tile {
    uint64_t r0, nr, j0, jw;
  };
  // Codes of the tile's rows into q (row stride qs); scales and zero points straight to their
  // outputs. False if a row holds NaN/Inf.
  auto rows_codes = [&](const tile& t, int8_t* q, uint64_t qs) {
    const uint64_t r0 = t.r0, nr = t.nr, j0 = t.j0, jw = t.jw;
    bool ok = true;
    for (uint64_t i = 0; i < nr; ++i) {
      const uint64_t r = r0 + i;
      const uint64_t u0 = r * units + j0 / unit;
      uint64_t ovf = k_all_rows;
      const uint32_t m =
          int_row_k<D>(elem_ptr(v, D, r * in + j0), jw / unit, unit, asym, scales + 4 * u0,
                       asym ? zps + 4 * u0 : nullptr, q + i * qs, &ovf);
      if (ovf != k_all_rows) overflow.offer((g.row_begin + r) * units + j0 / unit + ovf);
      if (m >= k_f32_inf_bits) ok = false;
    }
    return ok;
  };
  if (grouped) {
    // Tasks of 16 word columns (128 rows) x up to 4096 input columns, done one word column (8
    // rows) at a time: its codes (the 8 rows read as 8 KiB pieces, one contiguous run when a row
    // fits the tile, which the hardware prefetchers follow), then its words into a transposed
    // buffer (256 KiB, stays in L2), which goes out as one 64-byte store per output row j.
    // Measured (perf, cpu_quant_bench): the earlier 128-row x 1024-column order read 2 KiB pieces
    // and stalled on its loads a third of the time; writing the words straight to the output
    // (4-byte stores, each output row in its own page) ran at half the speed; 2048-column tiles
    // were about 15% slower than 4096 in one comparison (a noisy shared machine).
    constexpr uint64_t k_tile_words = 16;
    const uint64_t cols = ceil_div(g.rows, 8);
    const uint64_t ld = o.weight_ld ? o.weight_ld : cols;
    const uint64_t tile_j = std::max<uint64_t>(unit, 4096 / unit * unit);
    const uint64_t j_tiles = ceil_div(in, tile_j);
    const uint64_t tasks = ceil_div(cols, k_tile_words) * j_tiles;
    const bool reorder = order == nibble_order::int4_fp8;
    tbb::parallel_for(tbb::blocked_range<uint64_t>(0, tasks, 1), [&](const auto& tr) {
      // Per-thread scratch, kept between calls: fresh vectors of this size come from mmap, and
      // faulting their pages in took about 10% of the time (perf).
      thread_local std::vector<int8_t> q;
      thread_local std::vector<uint32_t> buf;
      if (q.size() < 8 * tile_j) q.resize(8 * tile_j);
      if (buf.size() < k_tile_words * tile_j) buf.resize(k_tile_words * tile_j);
      for (uint64_t t = tr.begin(); t < tr.end(); ++t) {
        const uint64_t c0 = (t / j_tiles) * k_tile_words;
        const uint64_t j0 = (t % j_tiles) * tile_j;
        const uint64_t jw = std::min(tile_j, in - j0);
        const uint64_t nc = std::min(cols, c0 + k_tile_words) - c0;
        bool ok = true;
        for (uint64_t c = 0; c < nc && ok; ++c) {
          const uint64_t nr = std::min<uint64_t>(8, g.rows - 8 * (c0 + c));
          ok = rows_codes(tile{8 * (c0 + c), nr, j0, jw}, q.data(), tile_j);
          if (ok)
            pack_column_d(q.data(), jw, tile_j, static_cast<uint32_t>(nr), buf.data() + c,
                          k_tile_words, reorder);
        }
        if (!ok) {
          bad = true;
          continue;
        }
        if (nc == k_tile_words) {  // a constant size: inline moves, not a libc call per row
          for (uint64_t j = 0; j < jw; ++j)
            std::memcpy(wout + (j0 + j) * ld + c0, buf.data() + k_tile_words * j, 4 * k_tile_words);
        } else {
          for (uint64_t j = 0; j < jw; ++j)
            std::memcpy(wout + (j0 + j) * ld + c0, buf.data() + k_tile_words * j, 4 * nc);
        }
      }
    });
  } else {
    const uint64_t words_per_row = ceil_div(in, 8);
    tbb::parallel_for(
        tbb::blocked_range<uint64_t>(0, g.rows, row_grain(in, 1)), [&](const auto& tr) {
          std::vector<int8_t> q(in);
          for (uint64_t r = tr.begin(); r < tr.end(); ++r) {
            if (!rows_codes(tile{r, 1, 0, in}, q.data(), in)) {
              bad = true;
              continue;
            }
            if (order == nibble_order::sequential)
              pack_row<nibble_order::sequential>(q.data(), in, wout + r * words_per_row);
            else
              pack_row<nibble_order::int4_fp8>(q.data(), in, wout + r * words_per_row);
          }
        });
  }
  *saw_bad = bad;
  if (overflow.get() != k_all_rows) return error(code::non_finite_scale, overflow.get());
  return {};
}

template <src_kind D>
quant_status int4_fp8(const source_view& v, const view_geometry& g, const quant_outputs& o, float a,
                      bool* saw_bad) {
  const float s1 = fp8_tensor_scale(a);
  const float s_div = fp8_divisor<D>(s1);
  if (s_div == 0.0f) return error(code::scale_underflow, 0);
  if (o.scale) put_f32(o.scale, 0, s1);
  const uint64_t in = g.last;
  const uint64_t words = ceil_div(in, 8);
  std::atomic<bool> bad{false};
  uint32_t* wout = static_cast<uint32_t*>(o.weight);
  tbb::parallel_for(tbb::blocked_range<uint64_t>(0, g.rows, row_grain(in, 1)), [&](const auto& rr) {
    std::vector<float> f(in);
    std::vector<int8_t> q(in);
    for (uint64_t r = rr.begin(); r < rr.end(); ++r) {
      float s2;
      const uint32_t m = int4_fp8_row_k<D>(elem_ptr(v, D, r * in), in, s_div, f.data(), q.data(),
                                           wout + r * words, &s2);
      if (m >= k_f32_inf_bits) {
        bad = true;
        continue;
      }
      put_f32(o.extra, r, s2);
    }
  });
  *saw_bad = bad;
  return {};
}

// The scaled-FP4 schemes (kernels/FORMATS-fp4.md): rows of the last dim in parallel, each block
// through the header's block functions (the same calls as the reference, so the same bytes).
// Scalar per block: the CUDA kernels are these schemes' throughput path; this one is correct and
// parallel, not vectorized.
template <src_kind D, scheme_family F>
void fp4_scaled_rows(const source_view& v, uint64_t r0, uint64_t r1, uint64_t in, uint32_t gs,
                     float global, const quant_outputs& o, std::atomic<bool>& bad) {
  const uint64_t blocks = ceil_div(in, gs);
  uint8_t* packed = static_cast<uint8_t*>(o.weight);
  for (uint64_t r = r0; r < r1; ++r) {
    const char* row = elem_ptr(v, D, r * in);
    for (uint64_t b = 0; b < blocks; ++b) {
      const uint64_t first = b * gs;
      const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(gs, in - first));
      float x[k_fp4_max_group];
      for (uint32_t i = 0; i < n; ++i) x[i] = load_src<D>(row, first + i);
      const uint32_t m = abs_bits(fp4_block_amax(x, n));
      if (m >= k_f32_inf_bits) {
        bad = true;
        continue;
      }
      const uint64_t si = r * blocks + b;
      float divisor;
      if constexpr (F == scheme_family::nvfp4) {
        const nvfp4_block_scale bs = nvfp4_scale_of_block(f32_from_bits(m), global);
        static_cast<uint8_t*>(o.scale)[si] = bs.byte;
        divisor = bs.divisor;
      } else if constexpr (F == scheme_family::amdfp4_global) {
        const amdfp4_block_scale bs = amdfp4_global_scale_of_block(f32_from_bits(m), global);
        static_cast<uint8_t*>(o.scale)[si] = bs.code;
        divisor = bs.divisor;
      } else {
        const float s = amdfp4_scale<D>(f32_from_bits(m));
        put_src_scale<D>(o.scale, si, s);
        divisor = fp4_nonzero(s);
      }
      fp4_encode_elements(x, n, divisor, packed + r * (in / 2) + first / 2);
    }
  }
}

template <src_kind D>
quant_status fp4_scaled(const weight_format& f, const source_view& v, const view_geometry& g,
                        const quant_outputs& o, float a, bool* saw_bad) {
  const uint64_t in = g.last;
  const uint64_t rows = g.numel() / in;
  float global = 0.0f;
  if (f.family == scheme_family::nvfp4) global = nvfp4_global_scale(a);
  if (f.family == scheme_family::amdfp4_global) global = amdfp4_global_scale(a);
  if (f.family != scheme_family::amdfp4 && o.extra) put_f32(o.extra, 0, global);
  std::atomic<bool> bad{false};
  tbb::parallel_for(tbb::blocked_range<uint64_t>(0, rows, row_grain(in, 1)), [&](const auto& rr) {
    switch (f.family) {
      case scheme_family::nvfp4:
        fp4_scaled_rows<D, scheme_family::nvfp4>(v, rr.begin(), rr.end(), in, f.group_size, global,
                                                 o, bad);
        break;
      case scheme_family::amdfp4_global:
        fp4_scaled_rows<D, scheme_family::amdfp4_global>(v, rr.begin(), rr.end(), in, f.group_size,
                                                         global, o, bad);
        break;
      default:
        fp4_scaled_rows<D, scheme_family::amdfp4>(v, rr.begin(), rr.end(), in, f.group_size, global,
                                                  o, bad);
        break;
    }
  });
  *saw_bad = bad;
  return {};
}

// One single-stage format; `order` is the int4/uint4 nibble order (sequential, or Quark's
// reorder order for the second stage of a pair). Sets *saw_bad when an element was not finite.
template <src_kind D>
quant_status run_single(const weight_format& f, const source_view& v, const view_geometry& g,
                        const quant_outputs& o, float a, nibble_order order, bool* saw_bad) {
  switch (f.family) {
    case scheme_family::fp8_tensor:
      return fp8_tensor<D>(v, g, o, a, saw_bad);
    case scheme_family::fp8_row:
      return fp8_row<D>(v, g, o, saw_bad);
    case scheme_family::int8_tensor:
      return int8_tensor<D>(v, g, o, a, saw_bad);
    case scheme_family::int4_group:
    case scheme_family::uint4_group:
      return int_family<D>(v, g, o, f.family == scheme_family::uint4_group, true, f.group_size,
                           order, saw_bad);
    case scheme_family::int4_channel:
    case scheme_family::uint4_channel:
      return int_family<D>(v, g, o, f.family == scheme_family::uint4_channel, false, g.last, order,
                           saw_bad);
    case scheme_family::mx:
      return mx<D>(v, g, o, f.element, saw_bad);
    case scheme_family::nvfp4:
    case scheme_family::amdfp4:
    case scheme_family::amdfp4_global:
      return fp4_scaled<D>(f, v, g, o, a, saw_bad);
    case scheme_family::int4_fp8:
      break;
  }
  return error(code::bad_argument, 0);
}

// A progressive pair other than the int4_fp8 preset: row chunks in parallel; per chunk the
// first stage's code values go to an F32 buffer (its scales straight to o.scale), then the second
// stage runs on that buffer as an F32 view of the same rows (nested parallelism), packed in
// Quark's reorder order, its scale to o.extra and zero point to o.extra2.
template <src_kind D>
quant_status progressive(const weight_scheme& s, const source_view& v, const view_geometry& g,
                         const quant_outputs& o, float a, bool* saw_bad) {
  const weight_format& f1 = s.first;
  float s_div = 0.0f, inv = 0.0f;
  if (f1.family == scheme_family::fp8_tensor) {
    const float s1 = fp8_tensor_scale(a);
    s_div = fp8_divisor<D>(s1);
    if (s_div == 0.0f) return error(code::scale_underflow, 0);
    if (o.scale) put_f32(o.scale, 0, s1);
  } else if (f1.family == scheme_family::int8_tensor) {
    const float s1 = int8_scale<D>(a);
    inv = reciprocal_rn(s1);
    if (o.scale) put_f32(o.scale, 0, s1);
  }
  const uint64_t mult = std::max<uint32_t>(1, row_split_multiple(s));
  const uint64_t chunk = row_grain(g.inner, mult);
  const uint64_t chunks = ceil_div(g.rows, chunk);
  const std::vector<output_piece> base =
      range_layout(s, v.shape, g.row_begin, g.row_begin + g.rows);
  std::atomic<bool> bad{false};
  first_index underflow;
  first_index second_error;
  std::atomic<uint8_t> second_code{0};
  tbb::parallel_for(tbb::blocked_range<uint64_t>(0, chunks, 1), [&](const auto& cr) {
    std::vector<float> vals;
    for (uint64_t c = cr.begin(); c < cr.end(); ++c) {
      const uint64_t r0 = c * chunk;
      const uint64_t nr = std::min(chunk, g.rows - r0);
      vals.resize(nr * g.inner);
      bool chunk_ok = true;
      for (uint64_t r = r0; r < r0 + nr; ++r) {
        const char* src = elem_ptr(v, D, r * g.inner);
        float* dst = vals.data() + (r - r0) * g.inner;
        uint32_t m = 0;
        if (f1.family == scheme_family::fp8_row) {
          m = max_abs_bits_k<D>(src, g.inner);
          if (m >= k_f32_inf_bits) {
            chunk_ok = false;
            continue;
          }
          const float s1 = fp8_row_scale(f32_from_bits(m));
          const float d = fp8_divisor<D>(s1);
          if (d == 0.0f) {
            underflow.offer(g.row_begin + r);
            chunk_ok = false;
            continue;
          }
          put_f32(o.scale, r, s1);
          int4_fp8_stage1_run_k<D>(src, g.inner, d, dst);
        } else if (f1.family == scheme_family::fp8_tensor) {
          m = int4_fp8_stage1_run_k<D>(src, g.inner, s_div, dst);
        } else {
          m = int8_values_run_k<D>(src, g.inner, inv, dst);
        }
        if (m >= k_f32_inf_bits) chunk_ok = false;
      }
      if (!chunk_ok) {
        bad = true;
        continue;
      }
      // The chunk's part of each output, relative to the view's part.
      const std::vector<output_piece> here =
          range_layout(s, v.shape, g.row_begin + r0, g.row_begin + r0 + nr);
      auto at_piece = [&](void* p, size_t t) -> void* {
        return p ? static_cast<char*>(p) + (here[t].offset - base[t].offset) : nullptr;
      };
      source_view fv = v;
      fv.type = dtype::f32;
      fv.data = vals.data();
      fv.row_begin = g.row_begin + r0;
      fv.row_end = g.row_begin + r0 + nr;
      view_geometry fg = g;
      fg.kind = src_kind::f32;
      fg.row_begin = fv.row_begin;
      fg.rows = nr;
      quant_outputs o2;
      o2.weight = at_piece(o.weight, 0);
      o2.scale = at_piece(o.extra, 2);
      o2.extra = here.size() > 3 ? at_piece(o.extra2, 3) : nullptr;
      // Per-group: the word columns of this chunk inside the view's [in, ld] piece.
      o2.weight_ld = o.weight_ld ? o.weight_ld : ceil_div(g.rows, 8);
      bool sb = false;
      const quant_status st =
          run_single<src_kind::f32>(s.second, fv, fg, o2, 0.0f, nibble_order::int4_fp8, &sb);
      if (!st.ok()) {
        second_error.offer(st.index);
        second_code = static_cast<uint8_t>(st.what);
      }
    }
  });
  *saw_bad = bad;
  if (underflow.get() != k_all_rows) return error(code::scale_underflow, underflow.get());
  if (second_error.get() != k_all_rows)
    return error(static_cast<code>(second_code.load()), second_error.get());
  return {};
}

template <src_kind D>
quant_status run(const weight_scheme& s, const source_view& v, const view_geometry& g,
                 const quant_outputs& o, std::optional<float> tensor_amax) {
  float a = 0.0f;
  if (needs_tensor_amax(s)) {
    if (quant_status st = detail::need_amax(g, tensor_amax); !st.ok()) return st;
    if (tensor_amax) {
      a = *tensor_amax;
    } else {
      const amax_result r = amax(v);
      if (!r.finite()) return error(code::non_finite_input, r.first_bad);
      a = r.amax;
    }
  }
  bool saw_bad = false;
  quant_status st;
  if (!s.progressive) {
    st = run_single<D>(s.first, v, g, o, a, nibble_order::sequential, &saw_bad);
  } else if (!progressive_error(s.first, s.second).empty()) {
    return error(code::bad_argument, 0);
  } else if (s == weight_scheme(scheme_id::int4_fp8)) {
    st = int4_fp8<D>(v, g, o, a, &saw_bad);  // the preset, fused per row (§10)
  } else {
    st = progressive<D>(s, v, g, o, a, &saw_bad);
  }
  // Errors are rare: on any, report what the reference reports (the first non-finite element
  // wins over scale errors).
  if (saw_bad || !st.ok()) {
    if (const uint64_t bad = scan_first_bad<D>(v, g); bad != k_all_rows)
      return error(code::non_finite_input, bad);
  }
  return st;
}

}  // namespace

amax_result amax(const source_view& v) {
  view_geometry g;
  if (!detail::check_view(scheme_id::fp8, v, &g).ok()) return {0.0f, 0};
  return detail::dispatch_kind(g.kind, [&]<src_kind D>() {
    std::atomic<uint32_t> m{0};
    std::atomic<bool> bad{false};
    tbb::parallel_for(
        tbb::blocked_range<uint64_t>(0, g.numel(), k_grain_elems), [&](const auto& r) {
          const uint32_t x = max_abs_bits_k<D>(elem_ptr(v, D, r.begin()), r.end() - r.begin());
          if (x >= k_f32_inf_bits) {
            bad = true;
            return;
          }
          uint32_t cur = m.load(std::memory_order_relaxed);
          while (x > cur && !m.compare_exchange_weak(cur, x)) {
          }
        });
    amax_result r;
    if (bad) {
      // The amax of the finite elements (as the reference reports it) and the first bad index.
      r = reference::amax(v);
      return r;
    }
    r.amax = f32_from_bits(m.load());
    return r;
  });
}

quant_status quantize(const weight_scheme& s, const source_view& v, const quant_outputs& out,
                      std::optional<float> tensor_amax) {
  view_geometry g;
  if (quant_status st = detail::check_view(s, v, &g); !st.ok()) return st;
  return detail::dispatch_kind(g.kind,
                               [&]<src_kind D>() { return run<D>(s, v, g, out, tensor_amax); });
}

}  // namespace shardquant
