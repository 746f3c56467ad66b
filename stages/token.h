// A token of the graph: one host buffer of the memory budget (pipeline/token_pool owns them).
// Here so that jobs (stages) can name it without depending on the pipeline layer.
#pragma once

#include <cstddef>
#include <cstdint>

namespace shardquant {

struct token {
  std::byte* data = nullptr;
  uint64_t size = 0;
  uint32_t index = 0;
};

}  // namespace shardquant
