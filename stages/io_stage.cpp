// Read and write stages over async_io: one countdown per job joins its requests.
#include "stages/io_stage.h"

#include <atomic>
#include <memory>
#include <mutex>

namespace shardquant {

namespace {

// Joins several requests into one completion, keeping the first error.
struct countdown {
  std::atomic<uint64_t> left;
  std::mutex mutex;
  std::exception_ptr error;
  stage_done done;
  countdown(uint64_t n, stage_done d) : left(n), done(std::move(d)) {}
  void arrive(std::exception_ptr e) {
    if (e) {
      std::lock_guard lock(mutex);
      if (!error) error = e;
    }
    if (left.fetch_sub(1) == 1) done(error);
  }
};

}  // namespace

void start_read(async_io& io, job& j, stage_done done) {
  const bool scale = j.fp8_block.enabled;
  auto c = std::make_shared<countdown>(scale ? 2 : 1, std::move(done));
  io.read(j.input.file, j.input.offset, j.input.length, j.tok->data,
          [c](std::exception_ptr e) { c->arrive(e); });
  if (scale) {
    const input_spec& s = j.fp8_block.scale;
    io.read(s.file, s.offset, s.length, j.tok->data + j.scale_pos,
            [c](std::exception_ptr e) { c->arrive(e); });
  }
}

void start_write(async_io& io, job& j, stage_done done) {
  uint64_t n = 0;
  for (const auto& p : j.outputs) {
    for (uint64_t s = 0; s < p.segments; ++s)
      j.shard->writer->note_written(p.tensor, p.tensor_offset + s * p.segment_stride, p.bytes);
    n += p.segments;
  }
  if (n == 0) {
    done(nullptr);
    return;
  }
  auto c = std::make_shared<countdown>(n, std::move(done));
  for (const auto& p : j.outputs)
    for (uint64_t s = 0; s < p.segments; ++s)
      io.write(j.shard->out, p.file_offset + s * p.segment_stride, p.bytes,
               j.tok->data + p.token_pos + s * p.bytes,
               [c](std::exception_ptr e) { c->arrive(e); });
}

}  // namespace shardquant
