// zstd-compressed safetensors shards as a tensor source (the source seam of design.md §3 for one
// kind of source): where a tensor's plain bytes are in a `.safetensors.zst` file and how they are
// decompressed, as a stream, straight into a caller's buffer (a token). Standard zstd frames (one
// frame as the `zstd` command writes, several, skippable frames, zstd's seekable format). A shard
// is read by streaming cursors whose reads are serialised per shard on a small pool of threads;
// shards decompress in parallel. Every decompression context is counted against a process-wide
// byte limit (idle contexts are evicted to stay under it) and frames whose window is larger than
// the window limit are refused, so the memory they take is bounded. No tensors, no graph, no math.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/safetensors.h"
#include "io/tensor_source.h"

namespace shardquant {

// "X.safetensors.zst"; the plain name of such a shard is the name without ".zst".
inline constexpr std::string_view zstd_shard_suffix = ".safetensors.zst";
[[nodiscard]] bool is_zstd_shard_name(std::string_view name) noexcept;
[[nodiscard]] std::string plain_shard_name(std::string_view name);  // drops a trailing ".zst"

// zstd's seekable format (contrib/seekable_format/zstd_seekable_compression_format.md): a
// skippable frame (magic 0x184D2A5E) at the end of the file whose last 9 bytes are the number of
// frames (u32 LE), a descriptor byte (bit 7: each entry carries a checksum) and the seekable magic
// 0x8F92EAB1; before them one entry per frame: compressed size, decompressed size (u32 LE each)
// [, XXH64 low 32 bits].
inline constexpr uint32_t zstd_skippable_magic = 0x184D2A5E;
inline constexpr uint32_t zstd_seekable_magic = 0x8F92EAB1;
struct zstd_seek_entry {
  uint32_t compressed_size = 0;
  uint32_t decompressed_size = 0;
};
// The seek table's bytes (the whole skippable frame) for `frames`, without checksums.
[[nodiscard]] std::string make_zstd_seek_table(const std::vector<zstd_seek_entry>& frames);
// Reads the seek table of an open file of `file_size` bytes; nullopt when the file does not end
// with one. A table that is present but inconsistent with the file size is an input_error.
[[nodiscard]] std::optional<std::vector<zstd_seek_entry>> read_zstd_seek_table(
    int fd, uint64_t file_size, const std::string& path);

// Memory limits of the compressed reader, process-wide. `window_limit`: the largest frame window
// accepted (a power of two; larger frames fail with a message saying which budget admits them);
// `context_limit`: the bytes all live decompression cursors together may hold.
struct zstd_read_limits {
  uint64_t window_limit = uint64_t{8} << 20;
  uint64_t context_limit = uint64_t{64} << 20;
};
void set_zstd_read_limits(const zstd_read_limits& limits);
[[nodiscard]] zstd_read_limits get_zstd_read_limits();
// The host bytes one cursor may hold with frames of window `window`: the decompression context
// (window + block buffers), its input buffer and its cache of small reads.
[[nodiscard]] uint64_t zstd_cursor_bytes(uint64_t window);
// The limits for a memory budget: window = max(`min_window`, the power of two <= budget / 32,
// clamped to [1 MiB, 128 MiB]); context_limit = 4 cursors, else 2, when that is at most half the
// budget, else 2 anyway (the floor: one shard's main and companion cursors). The caller takes
// min(context_limit, budget / 2) out of the token budget. A `min_window` above 128 MiB is an
// input_error naming `what`.
[[nodiscard]] zstd_read_limits zstd_limits_for_budget(uint64_t budget, uint64_t min_window,
                                                      const std::string& what);

// What the first bytes of a compressed shard say: its safetensors header (decompressing only the
// first 8 + N bytes; file_size is the plain size: from the seek table, else the first frame's
// content size, else what the header implies) and the first frame's window.
struct zstd_shard_info {
  safetensors_header header;
  uint64_t compressed_size = 0;
  uint64_t first_window = 0;
  bool seekable = false;
};
[[nodiscard]] zstd_shard_info read_zstd_shard_info(const std::filesystem::path& file);

using zstd_read_done = std::function<void(std::exception_ptr)>;

// One compressed shard opened for reading. Reads may be asked from any thread, in any order;
// each is served on the pool by one of the shard's two cursors ("main" for tensor data, the other
// for small companion tensors such as block-FP8 scales, which usually lie elsewhere in the file),
// never two at a time for one shard. A cursor moves forward by decompressing; moving backward
// restarts it at the nearest known frame start at or before the target (frame starts come from
// the seek table and from every frame end the cursor passed), so reads in file order cost one
// pass. Bad data is an input_error naming the file, the tensor and the compressed byte offset.
class zstd_source {
 public:
  // `probe`: a header probe, run before the limits are known (zstd's own 128 MiB window maximum).
  // `plain_size`: where the plain data ends (the header's file size); a read that ends there also
  // reads the rest of the frame, so zstd verifies the frame's checksum before the last bytes are
  // handed over, and data past that end is an error. 0: unknown.
  [[nodiscard]] static std::shared_ptr<zstd_source> open(const std::filesystem::path& file,
                                                         bool probe = false,
                                                         uint64_t plain_size = 0);
  ~zstd_source();
  zstd_source(const zstd_source&) = delete;
  zstd_source& operator=(const zstd_source&) = delete;

  [[nodiscard]] const std::string& path() const noexcept;

  // Decompresses plain bytes [offset, offset + length) to dest[0..length). `done` runs once, on
  // a pool thread, with nullptr or the failure. `tensor` names the tensor in errors.
  void read(uint64_t offset, uint64_t length, std::byte* dest, bool companion, std::string tensor,
            zstd_read_done done);
  // The same, waiting for it; rethrows the failure.
  void read_now(uint64_t offset, uint64_t length, std::byte* dest, bool companion = false,
                std::string tensor = {});

  struct state;

 private:
  explicit zstd_source(std::shared_ptr<state> s) : s_(std::move(s)) {}
  std::shared_ptr<state> s_;
};

// The zstd kind of the source seam (io/tensor_source.h): a zstd_source whose reads decompress
// into a token's read area at read_skip(offset), where a plain read would put the bytes, so a
// job's layout does not depend on the kind. O_DIRECT does not apply (`o.direct` is ignored).
[[nodiscard]] std::shared_ptr<tensor_source> open_zstd_tensor_source(
    const std::filesystem::path& file, const source_open_options& o);

// Blocks until every read submitted to any zstd_source so far has completed and its callback
// returned (the graph's drain after a failure).
void drain_zstd_reads();

}  // namespace shardquant
