// kernels/gpu_api.h for a build without CUDA: device_count() is 0, and every entry point that
// would touch a device throws unavailable_error saying the binary was built without CUDA.
// Compiled instead of kernels/cuda/*.cu when SHARDQUANT_CUDA is OFF; depends on nothing else.
#include <string>
#include <utility>

#include "kernels/gpu_api.h"

namespace shardquant::gpu {

namespace {

constexpr const char* k_reason =
    "built without CUDA: this shardquant binary has no GPU support (rebuild with "
    "-DSHARDQUANT_CUDA=ON and nvcc available to use a GPU)";

[[noreturn]] void unavailable() {
  throw unavailable_error(k_reason);
}

}  // namespace

bool built_with_cuda() noexcept {
  return false;
}
int device_count() noexcept {
  return 0;
}
std::string unavailable_reason() {
  return k_reason;
}
device_properties properties(int) {
  unavailable();
}
memory_info memory(int) {
  unavailable();
}
void set_device(int) {
  unavailable();
}

stream::stream(int) {
  unavailable();
}
stream::~stream() = default;
stream::stream(stream&& o) noexcept
    : handle_(std::exchange(o.handle_, nullptr)), device_(o.device_) {}
stream& stream::operator=(stream&& o) noexcept {
  handle_ = std::exchange(o.handle_, nullptr);
  device_ = o.device_;
  return *this;
}
void stream::synchronize() const {
  unavailable();
}
bool stream::done() const {
  unavailable();
}
void stream::wait(const event&) const {
  unavailable();
}

event::event(int) {
  unavailable();
}
event::~event() = default;
event::event(event&& o) noexcept : handle_(std::exchange(o.handle_, nullptr)), device_(o.device_) {}
event& event::operator=(event&& o) noexcept {
  handle_ = std::exchange(o.handle_, nullptr);
  device_ = o.device_;
  return *this;
}
void event::record(const stream&) {
  unavailable();
}
bool event::done() const {
  unavailable();
}
void event::synchronize() const {
  unavailable();
}
float event::elapsed_ms_since(const event&) const {
  unavailable();
}

device_buffer::device_buffer(size_t, int) {
  unavailable();
}
device_buffer::~device_buffer() = default;
device_buffer::device_buffer(device_buffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)),
      bytes_(std::exchange(o.bytes_, 0)),
      device_(o.device_) {}
device_buffer& device_buffer::operator=(device_buffer&& o) noexcept {
  ptr_ = std::exchange(o.ptr_, nullptr);
  bytes_ = std::exchange(o.bytes_, 0);
  device_ = o.device_;
  return *this;
}

pinned_buffer::pinned_buffer(size_t) {
  unavailable();
}
pinned_buffer::~pinned_buffer() = default;
pinned_buffer::pinned_buffer(pinned_buffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
pinned_buffer& pinned_buffer::operator=(pinned_buffer&& o) noexcept {
  ptr_ = std::exchange(o.ptr_, nullptr);
  bytes_ = std::exchange(o.bytes_, 0);
  return *this;
}

void copy_to_device(void*, const void*, size_t, const stream&) {
  unavailable();
}
void copy_to_host(void*, const void*, size_t, const stream&) {
  unavailable();
}
void copy_on_device(void*, const void*, size_t, const stream&) {
  unavailable();
}
void fill_device(void*, uint8_t, size_t, const stream&) {
  unavailable();
}
void on_complete(const stream&, std::function<void(std::exception_ptr)>) {
  unavailable();
}

size_t workspace_bytes() noexcept {
  return 0;
}
void reset_workspace(void*, size_t, const stream&) {
  unavailable();
}
quant_status tensor_amax(const source_view&, void*, size_t, const stream&) {
  unavailable();
}
quant_status tensor_amax(const fp8_block_source&, void*, size_t, const stream&) {
  unavailable();
}
void set_tensor_amax(void*, float, const stream&) {
  unavailable();
}
quant_status quantize(const weight_scheme&, const source_view&, const quant_outputs&, void*, size_t,
                      const stream&) {
  unavailable();
}
quant_status quantize(const weight_scheme&, const fp8_block_source&, const quant_outputs&, void*,
                      size_t, const stream&) {
  unavailable();
}
void read_status(const void*, kernel_status*, const stream&) {
  unavailable();
}
quant_status recover_fp8_block(const fp8_block_source&, float*, void*, size_t, const stream&) {
  unavailable();
}
quant_status recover_compressed(const ct_source&, float*, void*, size_t, const stream&) {
  unavailable();
}

}  // namespace shardquant::gpu
