// The GPU backend as plain C++: device queries, RAII handles (stream, event, device buffer,
// pinned host buffer), async copies, completion callbacks, typed CUDA errors, and the kernel
// launch API (quantize, per-tensor amax, recovery) on a caller's stream and device buffers.
// Host code includes this header only; it names no CUDA type, so nvcc and the CUDA headers stay
// out of io/, stages/ and pipeline/. Implemented by kernels/cuda/*.cu, or, in a build without
// CUDA, by kernels/cuda/gpu_nocuda.cpp (every entry point throws unavailable_error and
// device_count() is 0).
//
// Launch protocol (CUB style, query then run):
//   n = workspace_bytes()                       device scratch per tensor in flight
//   reset_workspace(ws, n, stream)              once per tensor (clears status and amax)
//   [per-tensor schemes] tensor_amax(range_k, ws, n, stream) for every row range k
//   quantize(scheme, range_k, outputs_k, ws, n, stream) for every row range k
//   read_status(ws, pinned kernel_status*, stream); on_complete(stream, ...) or an event;
//   then to_quant_status(*pinned) is the CPU API's quant_status for the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>

#include "kernels/dtype.h"
#include "kernels/quantize.h"
#include "kernels/recover_tensors.h"
#include "kernels/schemes.h"

namespace shardquant::gpu {

// ---------------------------------------------------------------------------------------------
// Errors.

// A failed CUDA runtime call: what() reads "CALL failed at FILE:LINE: NAME (message)".
class cuda_error : public std::runtime_error {
 public:
  cuda_error(std::string call, std::string file, int line, int code, std::string code_name,
             const std::string& message);
  [[nodiscard]] const std::string& call() const noexcept { return call_; }
  [[nodiscard]] const std::string& file() const noexcept { return file_; }
  [[nodiscard]] int line() const noexcept { return line_; }
  [[nodiscard]] int code() const noexcept { return code_; }  // the cudaError_t value
  [[nodiscard]] const std::string& code_name() const noexcept { return code_name_; }

 private:
  std::string call_;
  std::string file_;
  int line_;
  int code_;
  std::string code_name_;
};

// The GPU backend cannot run here: the build has no CUDA, or no device is present.
class unavailable_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A launch argument the kernels cannot honour (wrong dtype, shape, misaligned row range...).
class launch_error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// ---------------------------------------------------------------------------------------------
// Devices.

// True when this binary was built with CUDA kernels.
[[nodiscard]] bool built_with_cuda() noexcept;
// Number of usable CUDA devices; 0 without CUDA, without a driver or without a device. Never
// throws.
[[nodiscard]] int device_count() noexcept;
// Why device_count() is 0 ("built without CUDA", "no CUDA device: <driver message>"); "" when a
// device is usable.
[[nodiscard]] std::string unavailable_reason();

struct device_properties {
  int ordinal = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int multiprocessors = 0;
  uint64_t global_memory_bytes = 0;
  uint64_t l2_bytes = 0;
  uint64_t shared_memory_per_block_optin = 0;
  int memory_bus_bits = 0;
  int pci_bus_id = 0;
};
[[nodiscard]] device_properties properties(int device);
// Free and total device memory of `device`, in bytes.
struct memory_info {
  uint64_t free_bytes = 0, total_bytes = 0;
};
[[nodiscard]] memory_info memory(int device);
// Makes `device` current for the calling thread (handles below do this themselves).
void set_device(int device);

// ---------------------------------------------------------------------------------------------
// RAII handles. All are move-only; a moved-from handle is empty and its destructor does nothing.
// Destructors never throw (a failing release is reported to stderr).

class event;

// A non-blocking CUDA stream on one device.
class stream {
 public:
  explicit stream(int device = 0);
  ~stream();
  stream(stream&& o) noexcept;
  stream& operator=(stream&& o) noexcept;
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;

  [[nodiscard]] int device() const noexcept { return device_; }
  // The cudaStream_t, for code that includes the CUDA headers itself.
  [[nodiscard]] void* native() const noexcept { return handle_; }
  // Blocks until all enqueued work is done; throws cuda_error if any of it failed.
  void synchronize() const;
  // True when all enqueued work is done (cudaStreamQuery); throws on a failed stream.
  [[nodiscard]] bool done() const;
  // Later work on this stream waits for `e` (recorded on any stream of the same device).
  void wait(const event& e) const;

 private:
  void* handle_ = nullptr;
  int device_ = 0;
};

// A CUDA event (timing enabled) on one device.
class event {
 public:
  explicit event(int device = 0);
  ~event();
  event(event&& o) noexcept;
  event& operator=(event&& o) noexcept;
  event(const event&) = delete;
  event& operator=(const event&) = delete;

  void record(const stream& s);
  // True once the work before the last record() is done; throws on a failed stream.
  [[nodiscard]] bool done() const;
  void synchronize() const;
  // Milliseconds between `start` (recorded earlier) and this event; both must be done.
  [[nodiscard]] float elapsed_ms_since(const event& start) const;
  [[nodiscard]] void* native() const noexcept { return handle_; }

 private:
  void* handle_ = nullptr;
  int device_ = 0;
};

// Device memory (cudaMalloc): the pipeline's device arena is one or more of these, cut up by the
// pipeline. Alignment of data() is at least 256 bytes.
class device_buffer {
 public:
  device_buffer() = default;
  device_buffer(size_t bytes, int device);
  ~device_buffer();
  device_buffer(device_buffer&& o) noexcept;
  device_buffer& operator=(device_buffer&& o) noexcept;
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;

  [[nodiscard]] void* data() const noexcept { return ptr_; }
  [[nodiscard]] size_t size() const noexcept { return bytes_; }
  [[nodiscard]] int device() const noexcept { return device_; }
  template <class T>
  [[nodiscard]] T* as() const noexcept {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

// Page-locked host memory (cudaHostAlloc, portable to every device): the pipeline's memory
// tokens. Async copies from/to it overlap with kernels; pageable memory would not.
class pinned_buffer {
 public:
  pinned_buffer() = default;
  explicit pinned_buffer(size_t bytes);
  ~pinned_buffer();
  pinned_buffer(pinned_buffer&& o) noexcept;
  pinned_buffer& operator=(pinned_buffer&& o) noexcept;
  pinned_buffer(const pinned_buffer&) = delete;
  pinned_buffer& operator=(const pinned_buffer&) = delete;

  [[nodiscard]] void* data() const noexcept { return ptr_; }
  [[nodiscard]] size_t size() const noexcept { return bytes_; }
  template <class T>
  [[nodiscard]] T* as() const noexcept {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Async copies and fills on a stream (host pointers should be pinned for real overlap).

void copy_to_device(void* dst_device, const void* src_host, size_t bytes, const stream& s);
void copy_to_host(void* dst_host, const void* src_device, size_t bytes, const stream& s);
void copy_on_device(void* dst_device, const void* src_device, size_t bytes, const stream& s);
void fill_device(void* dst_device, uint8_t byte, size_t bytes, const stream& s);

// Completion without blocking a worker: `done` runs exactly once on a CUDA driver thread after
// all work enqueued on `s` before this call, with nullptr on success or a cuda_error if the
// stream failed. It must be short and must not call any CUDA function (e.g. it puts a message
// into a TBB async_node gateway). Work enqueued after it waits until it returns.
void on_complete(const stream& s, std::function<void(std::exception_ptr)> done);

// ---------------------------------------------------------------------------------------------
// Kernel launches: the GPU twin of kernels/quantize.h. The same source_view / quant_outputs
// structs, with device pointers; the same output bytes and row-range layouts (range_layout()).
// Argument errors come back at once as quant_status (bad_argument); CUDA failures throw
// cuda_error; what the kernels find in the data (non-finite weights, scale underflow, bad
// recovery codes) lands in the workspace status, read back with read_status() and turned into
// the CPU's quant_status by to_quant_status(). Per-tensor schemes (fp8, int8, int4_fp8) take the
// tensor amax from the workspace: run tensor_amax() over every row range first (or
// set_tensor_amax() with an amax from elsewhere) -- quantize() never computes it itself.

// The workspace status, 32 bytes of device scratch (POD; read_status() copies it to the host).
struct kernel_status {
  static constexpr uint64_t no_index = ~uint64_t{0};
  uint64_t first_bad_index = no_index;    // first non-finite / NaN-code element (whole tensor)
  uint64_t scale_error_index = no_index;  // first scale that underflows / overflows / is bad
  uint32_t amax_bits = 0;                 // per-tensor amax (fp32 bits, order-independent max)
  uint32_t flags = 0;                     // status_flag bits
  uint64_t reserved = 0;
};
enum status_flag : uint32_t {
  status_nonfinite_input = 1u << 0,  // NaN/Inf weight, or FP8 NaN code in a recovered source
  status_scale_underflow = 1u << 1,  // round_D(scale) == 0 (F16 fp8 schemes)
  status_nonfinite_scale = 1u << 2,  // a uint4 scale overflowed in the source dtype
  status_bad_scale = 1u << 3,        // recovery: E8M0 0xFF / non-finite scale, bad g_idx
};
// The CPU API's status for what the kernels recorded (ok when nothing was).
[[nodiscard]] inline quant_status to_quant_status(const kernel_status& st) noexcept {
  using c = quant_status::code;
  // The CPU's order: recovery checks every scale / g_idx first, then non-finite input.
  if (st.flags & status_bad_scale) return {c::bad_scale, st.scale_error_index};
  if (st.flags & status_nonfinite_input) return {c::non_finite_input, st.first_bad_index};
  if (st.flags & status_scale_underflow) return {c::scale_underflow, st.scale_error_index};
  if (st.flags & status_nonfinite_scale) return {c::non_finite_scale, st.scale_error_index};
  return {};
}
// The amax of the tensor_amax() calls so far, as the CPU's amax() reports it.
[[nodiscard]] inline amax_result to_amax_result(const kernel_status& st) noexcept {
  amax_result r;
  std::memcpy(&r.amax, &st.amax_bits, sizeof r.amax);
  r.first_bad = (st.flags & status_nonfinite_input) ? st.first_bad_index : k_all_rows;
  return r;
}

// Bytes of device scratch every launch below needs (the same for all; one per tensor in flight).
[[nodiscard]] size_t workspace_bytes() noexcept;
// Clears the status and the amax; once per tensor before its first launch.
void reset_workspace(void* workspace, size_t bytes, const stream& s);
// Folds the range's amax (and its first non-finite element) into the workspace.
// Order-independent, so ranges may run in any order, on any stream of the device.
[[nodiscard]] quant_status tensor_amax(const source_view& v, void* workspace, size_t bytes,
                                       const stream& s);
// Block-FP8 sources (formats.md §7.2.2; kernels/recover_tensors.h, device pointers): fused
// recovery, the F32 intermediate never reaches device memory. Quantized with D = F32.
[[nodiscard]] quant_status tensor_amax(const fp8_block_source& v, void* workspace, size_t bytes,
                                       const stream& s);
// Puts an amax computed elsewhere (e.g. combine() of CPU amax() results) into the workspace.
void set_tensor_amax(void* workspace, float amax, const stream& s);
// Quantizes the range into `out` (device pointers, layout of kernels/quantize.h). Every range
// writes the per-tensor scale when out.scale is set, like the CPU.
[[nodiscard]] quant_status quantize(const weight_scheme& scheme, const source_view& v,
                                    const quant_outputs& out, void* workspace, size_t bytes,
                                    const stream& s);
[[nodiscard]] quant_status quantize(const weight_scheme& scheme, const fp8_block_source& v,
                                    const quant_outputs& out, void* workspace, size_t bytes,
                                    const stream& s);
// Copies the workspace's kernel_status to `dst` (pinned host memory) on `s`.
void read_status(const void* workspace, kernel_status* dst, const stream& s);

// Recovery to F32 (formats.md §7), the GPU twin of kernels/recover_tensors.h: same structs with
// device pointers (`out` = F32 rows [row_begin, row_end) of the recovered tensor), same bytes,
// same statuses (through the workspace). For tensors that are passed through / cast after
// recovery; a recovered tensor that is quantized should use the fused quantize() above.
[[nodiscard]] quant_status recover_fp8_block(const fp8_block_source& src, float* out,
                                             void* workspace, size_t bytes, const stream& s);
[[nodiscard]] quant_status recover_compressed(const ct_source& src, float* out, void* workspace,
                                              size_t bytes, const stream& s);

}  // namespace shardquant::gpu
