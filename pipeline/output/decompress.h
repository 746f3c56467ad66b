// `shardquant decompress DIR`: restores the plain shards of a checkpoint written with
// `--compress zstd` (or compressed by the `zstd` command): every `*.safetensors.zst` under DIR is
// decompressed beside itself to its plain name (atomically), and an index naming compressed files
// is rewritten to name the plain ones. The compressed files are kept (nothing is ever deleted).
// No graph, no math.
#pragma once

#include <cstdint>
#include <filesystem>

namespace shardquant {

struct decompress_result {
  uint64_t shards = 0;
  uint64_t plain_bytes = 0;
  bool index_rewritten = false;
};

// A plain shard that already exists is refused (usage_error) unless `overwrite`.
[[nodiscard]] decompress_result decompress_checkpoint(const std::filesystem::path& dir,
                                                      bool overwrite);

}  // namespace shardquant
