// Which instruction-set level the CPU fast paths run with. Each hot loop is compiled three times
// (x86-64 baseline, AVX2 "x86-64-v3", AVX-512 "x86-64-v4" with 512-bit vectors) and picked at run
// time; every level gives the same bytes (the math is exact IEEE/integer operations), which the
// tests check by forcing each level. Non-x86 builds have only the baseline.
#pragma once

#include <cstdint>

namespace shardquant {

enum class cpu_isa : uint8_t { baseline, avx2, avx512 };

// The best level this CPU supports, capped by force_cpu_isa() and by the environment variable
// SHARDQUANT_CPU_ISA=baseline|avx2|avx512 (read once).
[[nodiscard]] cpu_isa active_cpu_isa() noexcept;
// Caps the level (a level above the CPU's is ignored). For tests and benchmarks.
void force_cpu_isa(cpu_isa cap) noexcept;
[[nodiscard]] const char* cpu_isa_name(cpu_isa i) noexcept;

}  // namespace shardquant
