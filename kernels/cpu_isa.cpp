// Run-time detection of the CPU instruction-set level for the fast paths (kernels/cpu_isa.h).
#include "kernels/cpu_isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace shardquant {
namespace {

cpu_isa detect() noexcept {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("fma"))
    return cpu_isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2") &&
      __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return cpu_isa::avx2;
#endif
  return cpu_isa::baseline;
}

cpu_isa from_env(cpu_isa best) noexcept {
  const char* e = std::getenv("SHARDQUANT_CPU_ISA");
  if (e == nullptr) return best;
  cpu_isa want = best;
  if (std::strcmp(e, "baseline") == 0) want = cpu_isa::baseline;
  if (std::strcmp(e, "avx2") == 0) want = cpu_isa::avx2;
  return want < best ? want : best;
}

const cpu_isa k_detected = detect();
std::atomic<cpu_isa> g_active{from_env(k_detected)};

}  // namespace

cpu_isa active_cpu_isa() noexcept {
  return g_active.load(std::memory_order_relaxed);
}

void force_cpu_isa(cpu_isa cap) noexcept {
  g_active.store(cap < k_detected ? cap : k_detected, std::memory_order_relaxed);
}

const char* cpu_isa_name(cpu_isa i) noexcept {
  switch (i) {
    case cpu_isa::avx512:
      return "avx512";
    case cpu_isa::avx2:
      return "avx2";
    default:
      return "baseline";
  }
}

}  // namespace shardquant
