// The Hadamard base matrices of sizes that are not powers of two (Quark 0.13's
// KNOWN_HADAMARD_MATRICES), in Quark's search order. Data only; depends on nothing.
#pragma once

#include <cstddef>

namespace shardquant {

struct known_hadamard {
  std::size_t size;
  const char* const* rows;  // size strings of size characters, '+' for +1 and '-' for -1
};

inline constexpr std::size_t k_known_hadamard_count = 11;
// Order matters: Quark takes the first size s with n % s == 0 and n / s a power of two.
extern const known_hadamard k_known_hadamards[k_known_hadamard_count];

}  // namespace shardquant
