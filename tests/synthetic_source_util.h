// The synthetic llama checkpoint the end-to-end suites quantize, generated through the real
// generator (synthetic/make_checkpoint.h); the suites differ only in these numbers.
#pragma once

#include <cstdint>
#include <filesystem>

#include "synthetic/make_checkpoint.h"

namespace sq_test {

// shard_size 0: the generator's default sharding.
inline std::filesystem::path make_llama(const std::filesystem::path& out, uint64_t size,
                                        uint64_t shard_size, uint64_t seed,
                                        shardquant::dtype type = shardquant::dtype::bf16) {
  shardquant::make_checkpoint_options o;
  o.arch = "llama";
  o.size = size;
  o.shard_size = shard_size;
  o.type = type;
  o.seed = seed;
  o.out = out;
  (void)shardquant::make_checkpoint(o);
  return o.out;
}

}  // namespace sq_test
