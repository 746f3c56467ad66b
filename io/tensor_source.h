// The source seam (design.md §3): where a tensor's bytes are and how they land in a token.
// - The landing rules: every read area of a token starts on a 4 KiB boundary (O_DIRECT) and is
//   read_area_bytes() long; the wanted bytes start read_skip() bytes into it; output areas sit at
//   their file offset modulo 4 KiB (write_start: whole blocks take the O_DIRECT path); device
//   copies start at the 16-byte boundary below a host position (device_start). The job builder,
//   the read stage and both compute backends use these functions and do no such arithmetic
//   themselves.
// - source_range: the bytes one job reads from one source (a covering range, or strided runs of
//   a converter slice that are gathered back to back after the read).
// - tensor_source: one source shard opened for reading. Kinds: plain shards (io/plain_source.h,
//   through the async I/O engine) and zstd-compressed shards (io/zstd_source.h, decompressed as
//   a stream). Every kind lands bytes by the same rules, so a job's token layout is fixed from the
//   plan alone (the dry run's geometry is the run's) whatever the kind. A new kind is one io/ file
//   with a tensor_source subclass, plus its row in tensor_source.cpp's table.
// Knows nothing about jobs, schemes, the plan or the graph.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "io/async_io.h"

namespace shardquant {

// ---- how bytes land in a token --------------------------------------------------------------

// Every area of a token that an engine reads into or writes from starts on this boundary.
inline constexpr uint64_t token_area_alignment = io_alignment;
// Scratch areas (gathered runs, recovered rows, kernel outputs) start on a cache line.
inline constexpr uint64_t token_scratch_alignment = 64;
// The CUDA kernels load and store 16-byte vectors.
inline constexpr uint64_t device_vector_bytes = 16;

// The start of a read area at or after token position `pos`.
[[nodiscard]] constexpr uint64_t read_area_start(uint64_t pos) noexcept {
  return align_up(pos, token_area_alignment);
}
// Bytes of a read area for `length` bytes at any offset (the aligned superset is at most one
// block longer at each end).
[[nodiscard]] constexpr uint64_t read_area_bytes(uint64_t length) noexcept {
  return read_buffer_bound(length);
}
// Where in its read area the bytes read from `offset` start: the offset within its block, so
// the read itself can be whole aligned blocks (aligned_read_extent(offset, n).skip).
[[nodiscard]] constexpr uint64_t read_skip(uint64_t offset) noexcept {
  return offset % token_area_alignment;
}
// The start of a scratch area at or after `pos`.
[[nodiscard]] constexpr uint64_t scratch_start(uint64_t pos) noexcept {
  return align_up(pos, token_scratch_alignment);
}
// A token position at or after `pos` for bytes written to file offset `file_offset`: the same
// offset modulo the block size, so the whole blocks among them are memory-aligned and take the
// O_DIRECT path. The area of one write starts at most one block past `pos`.
[[nodiscard]] constexpr uint64_t write_start(uint64_t pos, uint64_t file_offset) noexcept {
  return align_up(pos, token_area_alignment) + file_offset % token_area_alignment;
}
// Token bytes a layout of `areas` block-aligned areas can lose to alignment: less than one block
// each. Part sizes are chosen to fit a token minus this.
[[nodiscard]] constexpr uint64_t alignment_slack(uint64_t areas) noexcept {
  return areas * token_area_alignment;
}
// The largest whole-block amount of `bytes`.
[[nodiscard]] constexpr uint64_t whole_blocks(uint64_t bytes) noexcept {
  return align_down(bytes, token_area_alignment);
}
// Where the bytes at host token position `pos` go in a device copy of the token: the 16-byte
// boundary at or below it (a tensor's bytes can start at any byte of its area, since Python's
// writer packs tensors back to back, and the kernels load 16-byte vectors). It never leaves the
// area: every area starts on a block boundary. The copy back to the host moves them to `pos`.
[[nodiscard]] constexpr uint64_t device_start(uint64_t pos) noexcept {
  return pos & ~(device_vector_bytes - 1);
}

// ---- the bytes a job reads ------------------------------------------------------------------

class tensor_source;

// The covering range [offset, offset + length) of a source (offsets of the plain bytes, whatever
// the kind); when runs > 1 the wanted bytes are `runs` runs of `run_bytes`, `stride` apart,
// starting at `offset` (a strided converter slice), gathered back to back after the read.
struct source_range {
  std::shared_ptr<tensor_source> source;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t runs = 1;
  uint64_t run_bytes = 0;
  uint64_t stride = 0;
  [[nodiscard]] uint64_t wanted_bytes() const noexcept {
    return runs > 1 ? runs * run_bytes : length;
  }
  // The read area this range needs, and where its first byte lands in it.
  [[nodiscard]] uint64_t area_bytes() const noexcept { return read_area_bytes(length); }
  [[nodiscard]] uint64_t skip() const noexcept { return read_skip(offset); }
  // Copies the runs of a strided range from its read area to `dest`, back to back.
  void gather(const std::byte* area, std::byte* dest) const noexcept;
};

// ---- sources --------------------------------------------------------------------------------

// One source shard opened for reading; shared by the jobs that read it. Reads may be asked from
// any thread, several at once.
class tensor_source {
 public:
  virtual ~tensor_source();
  tensor_source() = default;
  tensor_source(const tensor_source&) = delete;
  tensor_source& operator=(const tensor_source&) = delete;

  [[nodiscard]] virtual const std::string& path() const noexcept = 0;
  // The kind's name ("plain", "zstd"), as in the table of tensor_source.cpp.
  [[nodiscard]] virtual std::string_view kind() const noexcept = 0;
  // Reads the plain bytes [offset, offset + length) into the read area `area` (aligned to
  // token_area_alignment, read_area_bytes(length) long): they land at area + read_skip(offset);
  // other bytes of the area are unspecified. `companion`: a small tensor read next to a job's
  // main range (a block-FP8 scale), which a stream serves from a cursor of its own. `tensor`
  // names the tensor in errors. `done` runs once, on an engine or pool thread, with nullptr or
  // the failure (io_error; input_error for bad compressed data; a range past the end of the
  // plain bytes fails with an io_error saying "end of file").
  virtual void read(async_io& io, uint64_t offset, uint64_t length, std::byte* area, bool companion,
                    const std::string& tensor, io_callback done) = 0;
  // The same bytes to dest[0, length), waiting for them (probes of a few bytes); rethrows.
  virtual void read_now(uint64_t offset, uint64_t length, std::byte* dest,
                        const std::string& tensor) = 0;
  // Reads take the O_DIRECT path (the file system accepted it and it was asked for).
  [[nodiscard]] virtual bool direct() const noexcept { return false; }
};

struct source_open_options {
  bool direct = true;       // open with O_DIRECT where the file system takes it
  uint64_t plain_size = 0;  // the plain bytes' size (the header's file_size); 0: unknown
};

// Opens `file` as the kind its name says (the first row of tensor_source.cpp's table whose name
// test matches: "X.safetensors.zst" is a zstd shard, anything else a plain one). Throws io_error.
[[nodiscard]] std::shared_ptr<tensor_source> open_tensor_source(const std::filesystem::path& file,
                                                                const source_open_options& o);

// Blocks until every read submitted to a source so far that runs outside the async_io engine
// (a stream's decompression pool) has completed and its callback returned; the graph's drain
// after a failure, next to async_io::drain().
void drain_tensor_sources();

}  // namespace shardquant
