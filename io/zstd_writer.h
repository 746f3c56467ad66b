// Writing and restoring zstd-compressed shards: a finished plain shard compressed into
// `NAME.safetensors.zst` (the header and each tensor in their own frames, at most 128 MiB of
// plain bytes per frame, zstd's seekable-format table at the end, multithreaded in libzstd,
// published atomically), and a whole `.zst` file decompressed back to its plain twin. Plain
// `zstd -d` reads these files too. No tensors beyond frame cuts, no graph, no math.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace shardquant {

struct zstd_compress_options {
  int level = 3;
  unsigned workers = 0;  // libzstd worker threads (ZSTD_c_nbWorkers); 0: cores, at most 8
};

// "zstd" or "zstd:LEVEL" (1..19, or 20..22) -> options; usage_error otherwise.
[[nodiscard]] zstd_compress_options parse_compress_option(const std::string& text);

inline constexpr uint64_t zstd_max_frame_bytes = uint64_t{128} << 20;

// Compresses bytes [0, plain_size) of the open file `plain_fd` into `final_path` (temporary name,
// renamed when complete). `cuts`: plain offsets where a frame must start (0 is implied; frames are
// also cut every zstd_max_frame_bytes). One shard compresses at a time in the process (its
// workers use every core it is given), so the compression memory is that of one context.
// Returns the compressed file's size.
[[nodiscard]] uint64_t write_zstd_seekable(int plain_fd, const std::string& plain_path,
                                           uint64_t plain_size, std::vector<uint64_t> cuts,
                                           const std::filesystem::path& final_path,
                                           const zstd_compress_options& options);

// Decompresses every frame of `in` (skippable frames skipped) into `out`, atomically; returns
// the plain size. Errors name `in` and the compressed byte offset.
[[nodiscard]] uint64_t decompress_zstd_file(const std::filesystem::path& in,
                                            const std::filesystem::path& out);

}  // namespace shardquant
