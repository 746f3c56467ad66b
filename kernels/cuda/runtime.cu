// The CUDA side of kernels/gpu_api.h's runtime part: errors, device queries, RAII handles,
// async copies and completion callbacks. No kernels here; no host library beyond the CUDA
// runtime and the standard library.
#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include "kernels/cuda/check.cuh"
#include "kernels/gpu_api.h"

namespace shardquant::gpu {

namespace detail {

void throw_cuda(cudaError_t e, const char* call, const char* file, int line) {
  // A failed call also leaves its error as the thread's "last error"; clear it so a later
  // launch check (cudaGetLastError) does not report this one again. Sticky errors stay.
  (void)cudaGetLastError();
  throw cuda_error(call, file, line, static_cast<int>(e), cudaGetErrorName(e),
                   cudaGetErrorString(e));
}

void warn_cuda(cudaError_t e, const char* call, const char* file, int line) noexcept {
  std::fprintf(stderr, "shardquant: %s failed at %s:%d: %s (%s)\n", call, file, line,
               cudaGetErrorName(e), cudaGetErrorString(e));
}

}  // namespace detail

namespace {

// Restores the caller's current device: handles switch to their own device for each call so a
// TBB worker serving several GPUs needs no set_device() of its own.
class device_guard {
 public:
  explicit device_guard(int device) {
    SQ_CUDA(cudaGetDevice(&previous_));
    if (previous_ != device)
      SQ_CUDA(cudaSetDevice(device));
    else
      previous_ = -1;
  }
  ~device_guard() {
    if (previous_ >= 0) SQ_CUDA_WARN(cudaSetDevice(previous_));
  }
  device_guard(const device_guard&) = delete;
  device_guard& operator=(const device_guard&) = delete;

 private:
  int previous_ = -1;
};

cudaStream_t cuda_stream(const stream& s) {
  return static_cast<cudaStream_t>(s.native());
}

}  // namespace

bool built_with_cuda() noexcept {
  return true;
}

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the non-sticky error for later callers
    return 0;
  }
  return n;
}

std::string unavailable_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string("no CUDA device: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
           ")";
  }
  if (n == 0) return "no CUDA device present";
  return {};
}

device_properties properties(int device) {
  cudaDeviceProp p{};
  SQ_CUDA(cudaGetDeviceProperties(&p, device));
  device_properties r;
  r.ordinal = device;
  r.name = p.name;
  r.cc_major = p.major;
  r.cc_minor = p.minor;
  r.multiprocessors = p.multiProcessorCount;
  r.global_memory_bytes = p.totalGlobalMem;
  r.l2_bytes = static_cast<uint64_t>(p.l2CacheSize);
  r.shared_memory_per_block_optin = p.sharedMemPerBlockOptin;
  r.memory_bus_bits = p.memoryBusWidth;
  r.pci_bus_id = p.pciBusID;
  return r;
}

memory_info memory(int device) {
  device_guard g(device);
  size_t free_b = 0, total_b = 0;
  SQ_CUDA(cudaMemGetInfo(&free_b, &total_b));
  return {free_b, total_b};
}

void set_device(int device) {
  SQ_CUDA(cudaSetDevice(device));
}

// ---- stream -------------------------------------------------------------------------------------

stream::stream(int device) : device_(device) {
  device_guard g(device);
  cudaStream_t s = nullptr;
  SQ_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  handle_ = s;
}

stream::~stream() {
  if (handle_) SQ_CUDA_WARN(cudaStreamDestroy(static_cast<cudaStream_t>(handle_)));
}

stream::stream(stream&& o) noexcept
    : handle_(std::exchange(o.handle_, nullptr)), device_(o.device_) {}

stream& stream::operator=(stream&& o) noexcept {
  if (this != &o) {
    if (handle_) SQ_CUDA_WARN(cudaStreamDestroy(static_cast<cudaStream_t>(handle_)));
    handle_ = std::exchange(o.handle_, nullptr);
    device_ = o.device_;
  }
  return *this;
}

void stream::synchronize() const {
  SQ_CUDA(cudaStreamSynchronize(cuda_stream(*this)));
}

bool stream::done() const {
  const cudaError_t e = cudaStreamQuery(cuda_stream(*this));
  if (e == cudaErrorNotReady) {
    (void)cudaGetLastError();  // not an error: do not leave it for the next launch check
    return false;
  }
  SQ_CUDA(e);
  return true;
}

void stream::wait(const event& e) const {
  SQ_CUDA(cudaStreamWaitEvent(cuda_stream(*this), static_cast<cudaEvent_t>(e.native()), 0));
}

// ---- event --------------------------------------------------------------------------------------

event::event(int device) : device_(device) {
  device_guard g(device);
  cudaEvent_t e = nullptr;
  SQ_CUDA(cudaEventCreate(&e));
  handle_ = e;
}

event::~event() {
  if (handle_) SQ_CUDA_WARN(cudaEventDestroy(static_cast<cudaEvent_t>(handle_)));
}

event::event(event&& o) noexcept : handle_(std::exchange(o.handle_, nullptr)), device_(o.device_) {}

event& event::operator=(event&& o) noexcept {
  if (this != &o) {
    if (handle_) SQ_CUDA_WARN(cudaEventDestroy(static_cast<cudaEvent_t>(handle_)));
    handle_ = std::exchange(o.handle_, nullptr);
    device_ = o.device_;
  }
  return *this;
}

void event::record(const stream& s) {
  SQ_CUDA(cudaEventRecord(static_cast<cudaEvent_t>(handle_), cuda_stream(s)));
}

bool event::done() const {
  const cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(handle_));
  if (e == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  SQ_CUDA(e);
  return true;
}

void event::synchronize() const {
  SQ_CUDA(cudaEventSynchronize(static_cast<cudaEvent_t>(handle_)));
}

float event::elapsed_ms_since(const event& start) const {
  float ms = 0;
  SQ_CUDA(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start.handle_),
                               static_cast<cudaEvent_t>(handle_)));
  return ms;
}

// ---- buffers ------------------------------------------------------------------------------------

device_buffer::device_buffer(size_t bytes, int device) : bytes_(bytes), device_(device) {
  device_guard g(device);
  if (bytes) SQ_CUDA(cudaMalloc(&ptr_, bytes));
}

device_buffer::~device_buffer() {
  if (ptr_) SQ_CUDA_WARN(cudaFree(ptr_));
}

device_buffer::device_buffer(device_buffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)),
      bytes_(std::exchange(o.bytes_, 0)),
      device_(o.device_) {}

device_buffer& device_buffer::operator=(device_buffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) SQ_CUDA_WARN(cudaFree(ptr_));
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    device_ = o.device_;
  }
  return *this;
}

pinned_buffer::pinned_buffer(size_t bytes) : bytes_(bytes) {
  if (bytes) SQ_CUDA(cudaHostAlloc(&ptr_, bytes, cudaHostAllocPortable));
}

pinned_buffer::~pinned_buffer() {
  if (ptr_) SQ_CUDA_WARN(cudaFreeHost(ptr_));
}

pinned_buffer::pinned_buffer(pinned_buffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

pinned_buffer& pinned_buffer::operator=(pinned_buffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) SQ_CUDA_WARN(cudaFreeHost(ptr_));
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

// ---- copies and callbacks -----------------------------------------------------------------------

void copy_to_device(void* dst_device, const void* src_host, size_t bytes, const stream& s) {
  if (bytes)
    SQ_CUDA(cudaMemcpyAsync(dst_device, src_host, bytes, cudaMemcpyHostToDevice, cuda_stream(s)));
}

void copy_to_host(void* dst_host, const void* src_device, size_t bytes, const stream& s) {
  if (bytes)
    SQ_CUDA(cudaMemcpyAsync(dst_host, src_device, bytes, cudaMemcpyDeviceToHost, cuda_stream(s)));
}

void copy_on_device(void* dst_device, const void* src_device, size_t bytes, const stream& s) {
  if (bytes)
    SQ_CUDA(
        cudaMemcpyAsync(dst_device, src_device, bytes, cudaMemcpyDeviceToDevice, cuda_stream(s)));
}

void fill_device(void* dst_device, uint8_t byte, size_t bytes, const stream& s) {
  if (bytes) SQ_CUDA(cudaMemsetAsync(dst_device, byte, bytes, cuda_stream(s)));
}

namespace {

// cudaStreamAddCallback (not cudaLaunchHostFunc): it runs exactly once even when the stream
// failed, and says so, so a pipeline waiting on it can never hang on a device error.
void CUDART_CB completion_trampoline(cudaStream_t, cudaError_t status, void* user) {
  std::unique_ptr<std::function<void(std::exception_ptr)>> fn(
      static_cast<std::function<void(std::exception_ptr)>*>(user));
  std::exception_ptr err;
  if (status != cudaSuccess) {
    err = std::make_exception_ptr(cuda_error("stream work before on_complete", __FILE__, __LINE__,
                                             static_cast<int>(status), cudaGetErrorName(status),
                                             cudaGetErrorString(status)));
  }
  try {
    (*fn)(err);
  } catch (...) {
    std::fprintf(stderr, "shardquant: an on_complete callback threw; exception dropped\n");
  }
}

}  // namespace

void on_complete(const stream& s, std::function<void(std::exception_ptr)> done) {
  auto fn = std::make_unique<std::function<void(std::exception_ptr)>>(std::move(done));
  SQ_CUDA(cudaStreamAddCallback(cuda_stream(s), completion_trampoline, fn.get(), 0));
  fn.release();  // owned by the trampoline from here on
}

}  // namespace shardquant::gpu
