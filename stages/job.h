// The message that flows through the graph (fgbzip2 style: a struct with a sequence number):
// one job = one tensor, or one row range / byte range of a large one. Everything a stage needs
// is in the job as plain data (file ranges, element types, row ranges, output offsets, where in
// its token each piece lives), so stages never see the plan. Also the shared state of the jobs
// of one output shard and of one split per-tensor-scheme tensor. No graph code here.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "io/async_io.h"
#include "io/shard_writer.h"
#include "io/tensor_source.h"
#include "kernels/dtype.h"
#include "kernels/hadamard.h"
#include "kernels/recover_tensors.h"
#include "kernels/schemes.h"
#include "stages/token.h"

namespace shardquant {

enum class job_kind : uint8_t {
  copy,      // bytes unchanged (pass-through, keep-original)
  cast,      // pass-through converted elementwise to another float dtype (§4.3)
  amax,      // per-tensor scheme, split tensor: fold this range into the tensor's amax
  quantize,  // quantize rows [row_begin, row_begin + rows)
};
[[nodiscard]] const char* job_kind_name(job_kind k) noexcept;

// Bytes to read (io/tensor_source.h: the source, the covering range, strided runs).
using input_spec = source_range;

// DeepSeek-style block FP8 source (formats.md §7.2.2): the weight rows are F8 codes; the whole
// scale tensor is read next to them.
struct fp8_block_spec {
  bool enabled = false;
  input_spec scale;
  dtype scale_type = dtype::f32;
  uint64_t scale_rows = 0, scale_cols = 0;
  uint64_t block_rows = 128, block_cols = 128, chunk_rows = 0;
};

// compressed-tensors source (formats.md §7.3.2): the weight rows are stored codes; the whole
// scale, zero-point and g_idx tensors are read next to them. Recovered on the CPU to F32.
struct ct_spec {
  bool enabled = false;
  ct_layout layout = ct_layout::pack_quantized;
  uint32_t bits = 4;
  fp8_kind fp8 = fp8_kind::e4m3fn;
  ct_strategy strategy = ct_strategy::channel;
  uint64_t group_size = 0, groups = 0, block_rows = 0, block_cols = 0;
  input_spec scale;
  dtype scale_type = dtype::f32;
  input_spec zero_point;  // length 0: symmetric
  dtype zero_point_type = dtype::i32;
  input_spec g_idx;  // length 0: none
  // FP4-packed layouts: the nvfp4 global scale (read by the planner) and the dtype the recovered
  // values have in the reference (BF16 / F16); the recovered rows are stored in that dtype.
  float global_scale = 1.0f;
  dtype recovered_type = dtype::f32;
};

// One output tensor's bytes produced by a job: `segments` pieces of `bytes` each, the first at
// `tensor_offset` inside the tensor, then every `segment_stride` bytes (the transposed int4 /
// uint4 per-group weight of a row range); in the token they lie back to back from `token_pos`.
struct write_piece {
  std::string tensor;
  uint8_t slot = 0;  // quantize: index in output_tensors() order (weight, scale, extra)
  uint64_t tensor_offset = 0;
  uint64_t file_offset = 0;  // absolute offset of tensor_offset in the shard file
  uint64_t bytes = 0;
  uint64_t segments = 1;
  uint64_t segment_stride = 0;
  uint64_t token_pos = 0;
  [[nodiscard]] uint64_t total_bytes() const noexcept { return bytes * segments; }
};

// The jobs of one output shard: the writer (temporary file, header already written), the
// descriptor set the async engine writes through, and how many jobs are still to finish.
struct shard_state {
  uint32_t index = 0;
  std::string relative_path;
  std::unique_ptr<shard_writer> writer;
  std::shared_ptr<io_file> out;
  std::atomic<uint64_t> jobs_left{0};
  uint64_t input_bytes = 0;
};

// The jobs of one split tensor whose scheme needs the whole tensor's amax (fp8, int8,
// int4_fp8): amax jobs fold into `amax_bits`; quantize jobs that arrive before the last amax job
// finishes are parked here and released by it.
struct job;
struct tensor_state {
  std::string name;
  std::atomic<uint64_t> amax_jobs_left{0};
  std::atomic<uint64_t> quantize_jobs_left{0};
  std::atomic<uint32_t> amax_bits{0};  // fp32 bits of a non-negative value: integer max works
  std::mutex mutex;
  bool amax_ready = false;
  std::vector<job*> parked;
  // GPU backend: the device and workspace the tensor's launches share.
  int device = -1;
  void* device_workspace = nullptr;
  uint64_t workspace_bytes = 0;
};

struct job {
  uint64_t seq = 0;
  job_kind kind = job_kind::copy;
  std::string tensor;  // the (output) tensor name, for messages
  std::string source;  // the source shard path, for messages

  input_spec input;
  dtype in_type = dtype::u8;  // stored dtype of the input (F8 / I32 / I8 codes when recovered)
  // cast: element dtype written
  dtype out_type = dtype::u8;
  // amax / quantize
  weight_scheme scheme = scheme_id::fp8;  // a built-in scheme or a custom progressive pair
  std::vector<uint64_t> shape;  // the whole input tensor's shape (after recovery/conversion)
  uint64_t total_rows = 0, cols = 0, row_begin = 0, rows = 0;
  fp8_block_spec fp8_block;
  ct_spec ct;
  std::shared_ptr<tensor_state> tensor_shared;  // split per-tensor-scheme tensors only
  // Hadamard rotations of the (recovered) rows before amax / quantize, in order.
  std::vector<rotation_step> rotations;
  // copy jobs: > 0 = no input; the output is bytes of the I8 [n, n] input_rotation buffer.
  uint64_t generated_rotation = 0;

  std::vector<write_piece> outputs;
  // --layout quark-importer (kernels/importer_layout.h), for schemes it changes: the kernel
  // writes its usual outputs at `kernel_pos` (output_tensors() order, dense pieces), which the
  // compute stage converts into the importer outputs at `importer_pos` (importer_output_tensors()
  // order; the write pieces point into them). Both empty otherwise.
  std::vector<uint64_t> kernel_pos;
  std::vector<uint64_t> importer_pos;
  shard_state* shard = nullptr;
  uint64_t input_bytes = 0;  // source bytes this job accounts for (progress)
  uint64_t output_bytes = 0;

  // Token layout, fixed when the job is made: the read area starts at 0; `data_pos` is where
  // the contiguous input lies once read (and gathered); `scale_pos` the fp8 scale read area;
  // `work_pos` scratch; `needed` the bytes of the token the job uses.
  uint64_t gather_pos = 0, scale_pos = 0, work_pos = 0, needed = 0;
  uint64_t zp_pos = 0, gidx_pos = 0;  // compressed-tensors companion read areas
  uint64_t data_pos = 0;              // set after the read (skip or gather area)
  uint64_t scale_data_pos = 0;        // set after the read
  uint64_t zp_data_pos = 0, gidx_data_pos = 0;
  token* tok = nullptr;
  int device = -1;  // GPU backend: the device this job runs on
  int lane = -1;    // GPU backend: the stream slot it holds

  float range_amax = 0;      // amax jobs: the range's amax once computed
  std::exception_ptr error;  // set by an async completion; rethrown by the next stage
  std::chrono::steady_clock::time_point t0;
  double read_seconds = 0, compute_seconds = 0, write_seconds = 0;
};

}  // namespace shardquant
