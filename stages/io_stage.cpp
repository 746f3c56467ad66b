// Read and write stages over async_io: one countdown per job joins its requests.
#include "stages/io_stage.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "io/error.h"

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
  // The weight range plus the companions a recovery needs, each into its own token area.
  std::vector<std::pair<const input_spec*, uint64_t>> reads{{&j.input, 0}};
  if (j.fp8_block.enabled) reads.emplace_back(&j.fp8_block.scale, j.scale_pos);
  if (j.ct.enabled) {
    reads.emplace_back(&j.ct.scale, j.scale_pos);
    if (j.ct.zero_point.length) reads.emplace_back(&j.ct.zero_point, j.zp_pos);
    if (j.ct.g_idx.length) reads.emplace_back(&j.ct.g_idx, j.gidx_pos);
  }
  // A source shard that ends before the bytes its header promises is bad input: the error
  // names the file, the tensor and the offset. Other failures stay io_error.
  stage_done named = [done = std::move(done), file = j.source, tensor = j.tensor,
                      offset = j.input.offset](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const io_error& x) {
        const std::string what = x.what();
        if (what.find("end of file") != std::string::npos)
          e = std::make_exception_ptr(input_error(
              file, tensor, offset,
              "file ends before the tensor's bytes (" + what + "); was it truncated or modified?"));
      } catch (...) {
      }
    }
    done(e);
  };
  auto c = std::make_shared<countdown>(reads.size(), std::move(named));
  // Each source kind lands its bytes at read_skip(offset) of the area (io/tensor_source.h).
  for (const auto& [spec, pos] : reads)
    spec->source->read(io, spec->offset, spec->length, j.tok->data + pos, spec != &j.input,
                       j.tensor, [c](std::exception_ptr e) { c->arrive(e); });
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
  // The journal's checksum of the shard, taken from the bytes as they leave (io/checksum.h):
  // a pass over data already in cache, on this job's thread, in parallel with other jobs.
  for (const auto& p : j.outputs)
    for (uint64_t s = 0; s < p.segments; ++s)
      j.shard->writer->add_checksum(
          p.file_offset + s * p.segment_stride,
          std::span<const std::byte>(j.tok->data + p.token_pos + s * p.bytes, p.bytes));
  auto c = std::make_shared<countdown>(n, std::move(done));
  for (const auto& p : j.outputs)
    for (uint64_t s = 0; s < p.segments; ++s)
      io.write(j.shard->out, p.file_offset + s * p.segment_stride, p.bytes,
               j.tok->data + p.token_pos + s * p.bytes,
               [c](std::exception_ptr e) { c->arrive(e); });
}

}  // namespace shardquant
