// The output shard checksum the resume journal records: a 64-bit positional sum that can be
// computed piece by piece, in any order, from any thread, while the pieces are written (each
// write adds checksum_piece(offset, bytes)), and later recomputed from the finished file in one
// pass. Sum over every 8-byte-aligned word w of the file of word(w) * K(w) mod 2^64, where K(w)
// is odd (a per-4-KiB-block key times a per-word constant): bytes never written count as zero,
// a piece's partial words add up across pieces, and any single changed byte changes the sum.
// A corruption check, not a cryptographic hash. No files other than the one checksum_file reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>

namespace shardquant {

// The contribution of `bytes` lying at file offset `offset`; add contributions (mod 2^64).
[[nodiscard]] uint64_t checksum_piece(uint64_t offset, std::span<const std::byte> bytes) noexcept;
// The whole file's checksum (the sum of every piece); throws io_error.
[[nodiscard]] uint64_t checksum_file(const std::filesystem::path& file);

}  // namespace shardquant
