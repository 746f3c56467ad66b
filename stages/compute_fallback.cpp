// The CPU fallback of a device backend for schemes without a device kernel (compute_fallback.h).
#include "stages/compute_fallback.h"

#include <exception>
#include <string>
#include <utility>

#include "kernels/schemes.h"
#include "stages/compute_cpu.h"

namespace shardquant {

bool needs_cpu_fallback(const job& j, uint8_t device_bit) noexcept {
  if (j.kind != job_kind::amax && j.kind != job_kind::quantize) return false;
  // Hadamard rotation (kernels/FORMATS-rotation.md) has no device kernel yet: a rotated tensor's
  // jobs (all of them carry the steps) rotate and quantize on the CPU path, so its bytes are the
  // CPU backend's by construction.
  if (!j.rotations.empty() && device_bit != backend_cpu) return true;
  return !backend_supports(device_bit, j.scheme);
}

namespace {

class fallback_backend final : public compute_backend {
 public:
  fallback_backend(std::unique_ptr<compute_backend> device, uint8_t bit, cpu_path cpu)
      : device_(std::move(device)), bit_(bit), cpu_(std::move(cpu)) {}
  void run(job& j, compute_done done) override {
    if (!needs_cpu_fallback(j, bit_)) {
      device_->run(j, std::move(done));
      return;
    }
    // All jobs of such a tensor come here (the scheme decides), so a split tensor's amax jobs
    // leave j.range_amax for the graph's fold and its quantize jobs read the folded amax, as on
    // the CPU backend.
    std::exception_ptr e;
    try {
      if (cpu_)
        cpu_(j);
      else
        run_cpu_compute(j);
    } catch (...) {
      e = std::current_exception();
    }
    done(e);
  }
  void drain() override { device_->drain(); }
  [[nodiscard]] unsigned concurrency() const noexcept override { return device_->concurrency(); }
  [[nodiscard]] std::string name() const override { return device_->name(); }
  [[nodiscard]] uint64_t peak_device_bytes() const noexcept override {
    return device_->peak_device_bytes();
  }

 private:
  std::unique_ptr<compute_backend> device_;
  uint8_t bit_;
  cpu_path cpu_;
};

}  // namespace

std::unique_ptr<compute_backend> with_cpu_fallback(std::unique_ptr<compute_backend> device,
                                                   uint8_t device_bit, cpu_path cpu) {
  return std::make_unique<fallback_backend>(std::move(device), device_bit, std::move(cpu));
}

}  // namespace shardquant
