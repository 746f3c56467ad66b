// NVFP4 (Quark's `nvfp4` = `fp4_block16_scale_e4m3`) block math, kernels/FORMATS-fp4.md §2: the
// F32 global scale from the tensor amax, the FP8 E4M3 block scale quantized against it, and one
// 16-element block. Host and device (SQ_HD); depends only on kernels/fp4_block.h, kernels/fp8.h.
#pragma once

#include <cstdint>

#include "kernels/fp4_block.h"
#include "kernels/fp8.h"
#include "kernels/numeric.h"

namespace shardquant {

inline constexpr uint32_t k_nvfp4_block = 16;

// `weight_scale_2`: RN32(A / 2688) as the device computes it (fp4_div_const), EPS when 0, where A
// is the amax of the whole tensor (= the max of the block amaxes Quark's per-tensor observer
// sees).
SQ_HD float nvfp4_global_scale(float tensor_amax) {
  return fp4_nonzero(fp4_div_const(tensor_amax, k_2688_bits, k_r2688_bits));
}

// One block's scale: the fp32 block scale s = RN32(a / 6) (EPS if 0) is fake-quantized against
// the global scale g: q = e4m3(clamp(RN32(s / g), +-448)), s' = RN32(value(q) * g). The elements
// are divided by s' (EPS if 0); the stored byte is e4m3(clamp(RN32(s' / g))) (Quark re-quantizes
// s', which gives q back except where s' is an fp32 subnormal).
struct nvfp4_block_scale {
  float divisor;  // s' with the EPS rule: what the elements are divided by
  uint8_t byte;   // the F8_E4M3 `weight_scale` byte
};

SQ_HD nvfp4_block_scale nvfp4_scale_of_block(float block_amax, float global) {
  const float s = fp4_nonzero(fp4_div_const(block_amax, k_six_bits, k_r6_bits));
  const uint8_t q = fp8_e4m3fn_encode(div_rn(s, global));  // the encoder saturates at 448
  const float s_fq = mul_rn(fp8_e4m3fn_decode(q), global);
  return {fp4_nonzero(s_fq), fp8_e4m3fn_encode(div_rn(s_fq, global))};
}

// Encodes one block of n <= 16 finite values (n even): writes n / 2 bytes, returns the scale byte.
SQ_HD uint8_t nvfp4_encode_block(const float* x, uint32_t n, float global, uint8_t* packed) {
  const nvfp4_block_scale bs = nvfp4_scale_of_block(fp4_block_amax(x, n), global);
  fp4_encode_elements(x, n, bs.divisor, packed);
  return bs.byte;
}

}  // namespace shardquant
